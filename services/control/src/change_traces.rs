//! The trace of each recent change that gateways enforce (a revocation, a
//! tenant's status), kept for a short while so the facts that carry the
//! change to gateways carry its trace too, and a gateway's kick joins the
//! request's trace. Recorded before the store is written: a facts read
//! that sees the change sees its trace.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aerie_core::trace_context::{ChangeTraces, TraceParent};
use parking_lot::Mutex;

/// Long enough for the next facts pass (the embedded reload is 1 s, the
/// publisher's safety net 5 s); only the write that carries the change
/// needs the trace.
const KEEP: Duration = Duration::from_secs(60);
/// A bound on memory whatever the request rate: past it, changes go
/// untraced until older ones age out.
const MAX_KEPT: usize = 10_000;

#[derive(Debug, Default)]
pub struct RecentChanges {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    revoked: HashMap<(String, String), (TraceParent, Instant)>,
    tenants: HashMap<String, (TraceParent, Instant)>,
}

impl Kept {
    fn len(&self) -> usize {
        self.revoked.len() + self.tenants.len()
    }

    fn forget_old(&mut self, now: Instant) {
        self.revoked
            .retain(|_, (_, at)| now.duration_since(*at) < KEEP);
        self.tenants
            .retain(|_, (_, at)| now.duration_since(*at) < KEEP);
    }

    /// Room for one more, forgetting what is too old if need be.
    fn room(&mut self, now: Instant) -> bool {
        if self.len() >= MAX_KEPT {
            self.forget_old(now);
        }
        self.len() < MAX_KEPT
    }
}

impl RecentChanges {
    /// The current request (its span) is revoking tenant `tenant`'s `jti`.
    pub fn revoking(&self, tenant: &str, jti: &str) {
        self.keep(|kept, trace| {
            kept.revoked
                .insert((tenant.to_owned(), jti.to_owned()), trace);
        });
    }

    /// The current request is changing tenant `tenant`'s status.
    pub fn changing_status(&self, tenant: &str) {
        self.keep(|kept, trace| {
            kept.tenants.insert(tenant.to_owned(), trace);
        });
    }

    /// Keeps the current span's trace with `put`, if it is exported.
    fn keep(&self, put: impl FnOnce(&mut Kept, (TraceParent, Instant))) {
        let Some(trace) = TraceParent::current() else {
            return;
        };
        let now = Instant::now();
        let mut kept = self.kept.lock();
        if kept.room(now) {
            put(&mut kept, (trace, now));
        }
    }

    /// The traces of the changes made lately.
    pub fn traces(&self) -> ChangeTraces {
        let mut kept = self.kept.lock();
        kept.forget_old(Instant::now());
        ChangeTraces {
            revoked: kept
                .revoked
                .iter()
                .map(|(k, (t, _))| (k.clone(), t.clone()))
                .collect(),
            tenants: kept
                .tenants
                .iter()
                .map(|(k, (t, _))| (k.clone(), t.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace() -> TraceParent {
        TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap()
    }

    #[test]
    fn what_is_kept_is_bounded_and_makes_room_by_forgetting_the_old() {
        let now = Instant::now();
        let mut kept = Kept::default();
        for i in 0..MAX_KEPT {
            kept.tenants.insert(format!("t{i}"), (trace(), now));
        }
        assert!(!kept.room(now), "full of recent changes: no room");
        assert_eq!(kept.len(), MAX_KEPT);
        assert!(kept.room(now + KEEP), "all of them old by then");
        assert_eq!(kept.len(), 0);
    }

    #[test]
    fn without_an_exported_span_nothing_is_kept() {
        let recent = RecentChanges::default();
        recent.revoking("t", "jti");
        recent.changing_status("t");
        assert_eq!(recent.traces(), ChangeTraces::default());
    }
}
