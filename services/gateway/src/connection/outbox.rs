//! The write side of a connection: packets are encoded into one buffer and
//! written with as few writes as the socket allows, so a burst of deliveries
//! costs one syscall. Writing is a step the connection's loop selects on, so
//! a socket that takes nothing never wedges the connection.

use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aerie_core::metrics as m;
use aerie_proto::{EncodeError, Packet, ProtocolVersion};
use bytes::BytesMut;
use tokio::io::AsyncWrite;

pub(crate) struct Outbox {
    pub version: ProtocolVersion,
    pub buf: BytesMut,
    /// How much of `buf` the socket has taken.
    written: usize,
    /// Everything was written but not yet flushed (TLS, WebSocket).
    unflushed: bool,
    /// The client's maximum packet size: larger packets are never sent.
    pub max_packet_size: u32,
}

thread_local! {
    /// Packets encoded on this thread since its last report, by packet
    /// type: metrics are added once per write, not once per packet. Kept
    /// per thread rather than per connection (32 bytes in every idle
    /// connection's task): a connection's write reports what its thread
    /// encoded, its own packets and any another connection encoded there
    /// since (each connection writes right after it encodes, in the same
    /// poll, so nothing waits long).
    static SENT: [Cell<u32>; 16] = const { [const { Cell::new(0) }; 16] };
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
        count_sent(usize::from(packet.packet_type()));
        Ok(true)
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
    /// A poll function, not an `async fn`: its future would be in every
    /// connection's task.
    pub fn poll_write_step<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.buf.is_empty() {
            ready!(Pin::new(&mut *wr).poll_flush(cx))?;
            self.unflushed = false;
            return Poll::Ready(Ok(()));
        }
        report_sent();
        let n = ready!(Pin::new(&mut *wr).poll_write(cx, &self.buf[self.written..]))?;
        if n == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
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
            // In the same step (a no-op on TCP); if it cannot finish now,
            // the next step flushes.
            if let Poll::Ready(r) = Pin::new(&mut *wr).poll_flush(cx) {
                r?;
                self.unflushed = false;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// [`Outbox::poll_write_step`] as a future.
    pub async fn write_step<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> std::io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_step(wr, cx)).await
    }

    /// Writes and flushes everything.
    pub async fn write_all<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> std::io::Result<()> {
        report_sent();
        while self.is_pending() {
            self.write_step(wr).await?;
        }
        Ok(())
    }
}

fn count_sent(kind: usize) {
    SENT.with(|sent| {
        if sent[kind].get() == u32::MAX {
            report_sent();
        }
        sent[kind].set(sent[kind].get() + 1);
    });
}

/// Adds the packets this thread encoded since its last report to the
/// metrics.
fn report_sent() {
    SENT.with(|sent| {
        for (n, counter) in sent.iter().zip(&m::hot().packets_sent) {
            let n = n.replace(0);
            if n > 0 {
                counter.increment(u64::from(n));
            }
        }
    });
}

/// Adds per-packet-type counts to their counters and zeroes them.
pub(crate) fn report_counts<N>(counts: &mut [N; 16], counters: &[metrics::Counter; 16])
where
    N: Copy + Default + PartialEq + Into<u64>,
{
    for (n, counter) in counts.iter_mut().zip(counters) {
        if *n != N::default() {
            counter.increment((*n).into());
            *n = N::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_counted_on_their_thread_until_a_write_reports_them() {
        let kind = usize::from(Packet::PingResp.packet_type());
        let mut out = Outbox::new(ProtocolVersion::V5);
        for _ in 0..3 {
            assert!(out.push(&Packet::PingResp).unwrap());
        }
        assert_eq!(SENT.with(|s| s[kind].get()), 3);
        report_sent();
        assert_eq!(SENT.with(|s| s[kind].get()), 0);
    }
}
