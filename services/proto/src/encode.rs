use bytes::BytesMut;

use crate::{EncodeError, Packet, ProtocolVersion};

/// Appends the encoding of `packet` for `version` to `buf`.
pub fn encode(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let _ = (packet, version, buf);
    todo!("codec helper")
}

/// The number of bytes [`encode`] would append.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let _ = (packet, version);
    todo!("codec helper")
}
