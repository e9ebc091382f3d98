//! The write side of a connection: packets are encoded into one buffer and
//! written with as few writes as the socket allows, so a burst of deliveries
//! costs one syscall. Writing is a step the connection's loop selects on, so
//! a socket that takes nothing never wedges the connection.

use aerie_core::metrics as m;
use aerie_proto::{EncodeError, Packet, ProtocolVersion};
use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub(crate) struct Outbox {
    pub version: ProtocolVersion,
    pub buf: BytesMut,
    /// How much of `buf` the socket has taken.
    written: usize,
    /// Everything was written but not yet flushed (TLS, WebSocket).
    unflushed: bool,
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
            written: 0,
            unflushed: false,
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

    /// Bytes encoded but not yet taken by the socket.
    pub fn unwritten(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Something is left to write or flush.
    pub fn is_pending(&self) -> bool {
        !self.buf.is_empty() || self.unflushed
    }

    /// One step of writing: one write of what the socket takes now, or the
    /// flush once everything is written. Cancel safe, so the connection can
    /// select on it: a write either took bytes (and `written` moved) or not.
    pub async fn write_step<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> std::io::Result<()> {
        if self.buf.is_empty() {
            wr.flush().await?;
            self.unflushed = false;
            return Ok(());
        }
        self.report();
        let n = wr.write(&self.buf[self.written..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        m::hot().bytes_sent.increment(n as u64);
        self.written += n;
        self.unflushed = true;
        if self.written == self.buf.len() {
            self.written = 0;
            self.buf.clear();
            if self.buf.capacity() > 64 * 1024 {
                // Shrink after a burst so idle connections stay small.
                self.buf = BytesMut::new();
            }
            // In the same step (a no-op on TCP); if cancelled here, the
            // next step flushes.
            wr.flush().await?;
            self.unflushed = false;
        }
        Ok(())
    }

    /// Writes and flushes everything.
    pub async fn write_all<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> std::io::Result<()> {
        self.report();
        while self.is_pending() {
            self.write_step(wr).await?;
        }
        Ok(())
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
