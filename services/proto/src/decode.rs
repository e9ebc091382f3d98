use bytes::BytesMut;

use crate::{DecodeError, Packet, ProtocolVersion};

/// Total length (fixed header + remaining length) of the packet at the start of
/// `buf`, once its fixed header is complete; `Ok(None)` while it is not.
pub fn peek_packet_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let _ = buf;
    todo!("codec helper")
}

/// Decodes one packet from the front of `buf`, removing its bytes.
///
/// `Ok(None)`: not enough bytes yet (nothing is consumed). The size check runs
/// on the fixed header alone, so an oversized packet fails before its body is
/// buffered. `version` is the connection's negotiated version; CONNECT reads its
/// own version from its variable header.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let _ = (buf, version, max_packet_size);
    todo!("codec helper")
}
