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
    /// Packets encoded since the last report, by packet type: metrics are
    /// added once per write, not once per packet.
    sent: [u32; 16],
}

impl Outbox {
    pub fn new(version: ProtocolVersion) -> Outbox {
        Outbox {
            version,
            // Allocated on first use: an idle connection holds no write buffer.
            buf: BytesMut::new(),
            max_packet_size: u32::MAX,
            sent: [0; 16],
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
        self.sent[usize::from(packet.packet_type())] += 1;
        Ok(true)
    }

    /// Adds the packets counted since the last call to the metrics.
    pub fn report(&mut self) {
        report_counts(&mut self.sent, &m::hot().packets_sent);
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Adds per-packet-type counts to their counters and zeroes them.
pub(crate) fn report_counts(counts: &mut [u32; 16], counters: &[metrics::Counter; 16]) {
    for (n, counter) in counts.iter_mut().zip(counters) {
        if *n > 0 {
            counter.increment(u64::from(*n));
            *n = 0;
        }
    }
}
