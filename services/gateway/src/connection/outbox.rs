//! The write side of a connection: packets are encoded into one buffer and
//! written with a single write per loop turn, so a burst of deliveries costs
//! one syscall.

use aerie_core::metrics as m;
use aerie_proto::{EncodeError, Packet, ProtocolVersion};
use bytes::BytesMut;

pub(crate) struct Outbox {
    pub version: ProtocolVersion,
    pub buf: BytesMut,
    /// The client's maximum packet size: larger packets are never sent.
    pub max_packet_size: u32,
}

impl Outbox {
    pub fn new(version: ProtocolVersion) -> Outbox {
        Outbox {
            version,
            // Allocated on first use: an idle connection holds no write buffer.
            buf: BytesMut::new(),
            max_packet_size: u32::MAX,
        }
    }

    /// Encodes `packet`. A packet over the client's maximum size is left out
    /// and reported as `Ok(false)`.
    pub fn push(&mut self, packet: &Packet) -> Result<bool, EncodeError> {
        let start = self.buf.len();
        aerie_proto::encode(packet, self.version, &mut self.buf)?;
        if self.buf.len() - start > self.max_packet_size as usize {
            self.buf.truncate(start);
            return Ok(false);
        }
        m::hot().packets_sent[usize::from(packet.packet_type())].increment(1);
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}
