//! Per-tenant series on `/metrics` (label `tenant`, the tenant id), for the
//! tenant dashboard: connections, sessions, retained messages, messages and
//! payload bytes in and out, limit refusals by limit.
//!
//! Bounded: only the first [`MAX_TENANTS`] tenants this process serves get
//! series (kept until it exits, so a counter never vanishes under a rate);
//! the others are counted only in the unlabelled process-wide metrics. One
//! series per tenant, never per client. Written from the tenants' own
//! counters at each upkeep tick (`Broker::refresh_gauges`), so the message
//! path pays nothing for them.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::tenant::Tenant;

/// Tenants with series of their own, per process.
pub const MAX_TENANTS: usize = 100;

pub const TENANT_CONNECTIONS: &str = "aerie_tenant_connections";
pub const TENANT_SESSIONS: &str = "aerie_tenant_sessions";
pub const TENANT_RETAINED_MESSAGES: &str = "aerie_tenant_retained_messages";
pub const TENANT_MESSAGES_RECEIVED_TOTAL: &str = "aerie_tenant_messages_received_total";
pub const TENANT_MESSAGES_DELIVERED_TOTAL: &str = "aerie_tenant_messages_delivered_total";
pub const TENANT_PAYLOAD_BYTES_RECEIVED_TOTAL: &str = "aerie_tenant_payload_bytes_received_total";
pub const TENANT_PAYLOAD_BYTES_DELIVERED_TOTAL: &str = "aerie_tenant_payload_bytes_delivered_total";
pub const TENANT_LIMIT_EXCEEDED_TOTAL: &str = "aerie_tenant_limit_exceeded_total";

/// Which tenants have series: the first `max` admitted, for good.
#[derive(Debug)]
pub struct Chosen {
    max: usize,
    ids: HashSet<Arc<str>>,
}

impl Chosen {
    pub fn new(max: usize) -> Chosen {
        Chosen {
            max,
            ids: HashSet::new(),
        }
    }

    /// Whether `id` has series (admitting it while there is room).
    pub fn admit(&mut self, id: &Arc<str>) -> bool {
        if self.ids.contains(id) {
            return true;
        }
        if self.ids.len() >= self.max {
            return false;
        }
        self.ids.insert(id.clone());
        true
    }
}

static CHOSEN: Mutex<Option<Chosen>> = Mutex::new(None);

/// Writes the series of every tenant with series of its own.
pub fn export(tenants: &[Arc<Tenant>]) {
    let mut chosen = CHOSEN.lock();
    let chosen = chosen.get_or_insert_with(|| Chosen::new(MAX_TENANTS));
    for tenant in tenants {
        if chosen.admit(&tenant.id) {
            export_one(tenant);
        }
    }
}

fn export_one(tenant: &Tenant) {
    let id = tenant.id.to_string();
    let label = [("tenant", id.clone())];
    let quota = tenant.quota();
    metrics::gauge!(TENANT_CONNECTIONS, &label).set(f64::from(quota.live_connections()));
    metrics::gauge!(TENANT_SESSIONS, &label).set(tenant.session_count() as f64);
    metrics::gauge!(TENANT_RETAINED_MESSAGES, &label).set(tenant.retained_count() as f64);
    let totals = tenant.usage().totals();
    metrics::counter!(TENANT_MESSAGES_RECEIVED_TOTAL, &label).absolute(totals.messages_in);
    metrics::counter!(TENANT_MESSAGES_DELIVERED_TOTAL, &label).absolute(totals.messages_out);
    metrics::counter!(TENANT_PAYLOAD_BYTES_RECEIVED_TOTAL, &label).absolute(totals.bytes_in);
    metrics::counter!(TENANT_PAYLOAD_BYTES_DELIVERED_TOTAL, &label).absolute(totals.bytes_out);
    for (limit, n) in quota.refusals() {
        metrics::counter!(TENANT_LIMIT_EXCEEDED_TOTAL, "tenant" => id.clone(), "limit" => limit.label())
            .absolute(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_tenants_get_series_and_keep_them() {
        let mut chosen = Chosen::new(2);
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into());
        assert!(chosen.admit(&a));
        assert!(chosen.admit(&b));
        assert!(!chosen.admit(&c), "a third tenant is past the bound");
        assert!(chosen.admit(&a), "a chosen tenant keeps its series");
        assert!(!chosen.admit(&c));
    }
}
