//! Usage metering per tenant: what its clients did, for billing and the
//! control plane's usage report.
//!
//! Counters are plain atomics bumped once per routed message (in) and once
//! per delivery batch (out), so metering allocates nothing and takes no lock
//! on the message path. Whoever reports usage drains them with
//! [`Usage::take`] every few seconds. Bytes are payload bytes: stable whatever
//! the protocol version, topic aliases or properties.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::seams::BoxFuture;

/// Where a node's per-tenant usage goes: the control plane's store in the
/// embedded shape (the binary implements it), a stream the control plane
/// folds in the scale-out shape.
pub trait UsageSink: Send + Sync + 'static {
    /// Records what each tenant did since the last report. On an error the
    /// caller keeps the counts for the next report.
    fn report(
        &self,
        counts: Vec<(Arc<str>, UsageCounts)>,
    ) -> BoxFuture<Result<(), UsageReportError>>;
}

/// Why a usage report did not go through (said in the log; the counts stay).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageReportError(pub String);

/// A tenant's counters since they were last taken.
#[derive(Debug, Default)]
pub struct Usage {
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    connection_ms: AtomicU64,
    /// What `take` drained so far, less what `restore` put back (messages
    /// in, bytes in, messages out, bytes out): with the counters not yet
    /// taken, the totals of the tenant's own series on /metrics
    /// (`crate::tenant_series`). Locked by `take`, `restore` and `totals`
    /// only, never on the message path, so that a total never goes back.
    taken: parking_lot::Mutex<[u64; 4]>,
}

/// Messages and payload bytes in and out since the tenant was made here.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UsageTotals {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
}

/// What [`Usage::take`] drained.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UsageCounts {
    /// Whole seconds of connection time; the fraction stays for the next take.
    pub connection_seconds: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
}

impl UsageCounts {
    pub fn is_zero(&self) -> bool {
        *self == UsageCounts::default()
    }
}

impl Usage {
    /// One message routed into the tenant (a client's PUBLISH, a will, an
    /// HTTP publish) with `payload_bytes`.
    pub fn published(&self, payload_bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(payload_bytes as u64, Relaxed);
    }

    /// `messages` deliveries written to subscribers, `payload_bytes` in all.
    pub fn delivered(&self, messages: u64, payload_bytes: u64) {
        self.messages_out.fetch_add(messages, Relaxed);
        self.bytes_out.fetch_add(payload_bytes, Relaxed);
    }

    fn counters(&self) -> [&AtomicU64; 4] {
        [
            &self.messages_in,
            &self.bytes_in,
            &self.messages_out,
            &self.bytes_out,
        ]
    }

    /// What the tenant did since it was made here ([`Usage::take`] does not
    /// drain these).
    pub fn totals(&self) -> UsageTotals {
        let taken = self.taken.lock();
        let mut totals = *taken;
        for (total, counter) in totals.iter_mut().zip(self.counters()) {
            *total += counter.load(Relaxed);
        }
        drop(taken);
        let [messages_in, bytes_in, messages_out, bytes_out] = totals;
        UsageTotals {
            messages_in,
            bytes_in,
            messages_out,
            bytes_out,
        }
    }

    /// Connection time of the tenant's clients.
    pub fn connected_for(&self, ms: u64) {
        if ms > 0 {
            self.connection_ms.fetch_add(ms, Relaxed);
        }
    }

    /// Drains the counters (connection time in whole seconds).
    pub fn take(&self) -> UsageCounts {
        let seconds = self.connection_ms.load(Relaxed) / 1000;
        if seconds > 0 {
            self.connection_ms.fetch_sub(seconds * 1000, Relaxed);
        }
        let mut taken = self.taken.lock();
        let drained = self.counters().map(|c| c.swap(0, Relaxed));
        for (total, d) in taken.iter_mut().zip(drained) {
            *total += d;
        }
        let [messages_in, bytes_in, messages_out, bytes_out] = drained;
        UsageCounts {
            connection_seconds: seconds,
            messages_in,
            bytes_in,
            messages_out,
            bytes_out,
        }
    }

    /// Puts back counts that could not be reported.
    pub fn restore(&self, c: UsageCounts) {
        self.connected_for(c.connection_seconds * 1000);
        let mut taken = self.taken.lock();
        let back = [c.messages_in, c.bytes_in, c.messages_out, c.bytes_out];
        for ((total, counter), n) in taken.iter_mut().zip(self.counters()).zip(back) {
            *total = total.saturating_sub(n);
            counter.fetch_add(n, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_drains_and_keeps_the_fraction_of_a_second() {
        let u = Usage::default();
        u.published(10);
        u.published(5);
        u.delivered(3, 45);
        u.connected_for(2_500);
        let c = u.take();
        assert_eq!(
            c,
            UsageCounts {
                connection_seconds: 2,
                messages_in: 2,
                bytes_in: 15,
                messages_out: 3,
                bytes_out: 45,
            }
        );
        assert!(u.take().is_zero());
        u.connected_for(600);
        assert_eq!(u.take().connection_seconds, 1);
    }

    #[test]
    fn restore_adds_back() {
        let u = Usage::default();
        u.published(7);
        let c = u.take();
        u.published(1);
        u.restore(c);
        let again = u.take();
        assert_eq!((again.messages_in, again.bytes_in), (2, 8));
    }

    #[test]
    fn totals_only_grow_whatever_take_drains() {
        let u = Usage::default();
        u.published(10);
        u.delivered(2, 20);
        let unreported = u.take();
        u.published(5);
        u.restore(unreported);
        u.take();
        let t = u.totals();
        assert_eq!(
            (t.messages_in, t.bytes_in, t.messages_out, t.bytes_out),
            (2, 15, 2, 20)
        );
    }
}
