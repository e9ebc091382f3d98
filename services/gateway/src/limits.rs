//! Per-tenant limits at the gateway: the directory's limits applied to the
//! core's tenants, and the checks a connection makes with them.
//!
//! Where each limit is enforced:
//! - CONNECT (`handshake.rs`): connect rate (CONNACK 0x9F), connections
//!   (0x97), session expiry ceiling (clamped, announced), Receive Maximum and
//!   Maximum Packet Size announced as min(server, tenant);
//! - the connection task: packet size (DISCONNECT 0x95), publish rates per
//!   client and per tenant (PUBACK/PUBREC 0x97: 0x96 is not allowed there), subscriptions per client
//!   (SUBACK 0x97), inbound QoS 2 window (DISCONNECT 0x93), outbound window;
//! - the core (`core::quota`): retained messages and bytes (PUBACK 0x97),
//!   queued messages per offline session (dropped, `queue_full`).

use std::sync::Arc;
use std::time::Duration;

use aerie_core::quota::{Limit, LocalRate, TenantConnections, now_nanos};
use aerie_core::{Broker, Tenant};

use crate::auth::{Directory, DirectoryCache};

/// How often the limits are applied again without a new snapshot, for
/// tenants loaded since (by the HTTP API or a restore, not a CONNECT).
pub const REAPPLY_PERIOD: Duration = Duration::from_secs(1);

/// Applies every directory snapshot's limits to the tenants the broker has
/// loaded, and again every [`REAPPLY_PERIOD`] (a tenant's first CONNECT
/// also brings them). Limit changes reach live connections with the next
/// snapshot (about a second).
pub fn spawn_apply(broker: Broker, directory: &DirectoryCache) -> tokio::task::JoinHandle<()> {
    let mut snapshots = directory.subscribe();
    tokio::spawn(async move {
        loop {
            let current = snapshots.borrow_and_update().clone();
            apply(&broker, &current);
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(REAPPLY_PERIOD) => {}
            }
        }
    })
}

/// Sets the limits of every loaded tenant the directory knows.
pub fn apply(broker: &Broker, directory: &Directory) {
    for (id, facts) in &directory.tenants {
        if let Some(tenant) = broker.existing_tenant(id)
            && tenant.set_limits(facts.limits)
        {
            tracing::info!(tenant = %id, limits = ?facts.limits, "tenant limits applied");
        }
    }
}

/// A client's own publish rates (per connection, no atomics).
#[derive(Debug, Default)]
pub(crate) struct ClientRates {
    msgs: LocalRate,
    bytes: LocalRate,
}

impl ClientRates {
    /// Whether a PUBLISH with `payload` bytes fits the client's rates and
    /// then the tenant's; the refusal is counted.
    pub fn check_publish(&mut self, tenant: &Tenant, payload: usize) -> Result<(), Limit> {
        let now = now_nanos();
        let quota = tenant.quota();
        let (max_msgs, max_bytes) = quota.client_publish_rates();
        let (max_msgs, bytes) = (u64::from(max_msgs), payload as u64);
        // A publish refused by one rate takes nothing from the others.
        let result = if !self.msgs.try_take(now, 1, max_msgs) {
            Err(Limit::ClientPublishRate)
        } else if !self.bytes.try_take(now, bytes, max_bytes) {
            self.msgs.give_back(1, max_msgs);
            Err(Limit::ClientPublishBytesRate)
        } else {
            quota.try_publish(now, bytes).inspect_err(|_| {
                self.msgs.give_back(1, max_msgs);
                self.bytes.give_back(bytes, max_bytes);
            })
        };
        if let Err(limit) = result {
            quota.refused(limit);
        }
        result
    }
}

/// Whether a publish that comes from no client (the HTTP API, which checks
/// the payload against `max_packet_size` itself) fits the tenant-wide
/// rates; the refusal is counted.
pub fn check_tenant_publish(tenant: &Tenant, payload: usize) -> Result<(), Limit> {
    let result = tenant.quota().try_publish(now_nanos(), payload as u64);
    if let Err(limit) = result {
        tenant.quota().refused(limit);
    }
    result
}

/// Checks the connect rate, then counts the connection against the tenant's
/// connections (where `connections` counts them); the refusal (with its
/// CONNACK reason) is counted.
pub(crate) async fn admit_connection(
    connections: &dyn TenantConnections,
    tenant: &Arc<Tenant>,
    takeover: bool,
) -> Result<aerie_core::quota::ConnectionSlot, aerie_proto::ReasonCode> {
    if !tenant
        .quota()
        .try_connect_rate(now_nanos(), connections.connect_rate_share())
    {
        tenant.quota().refused(Limit::ConnectRate);
        return Err(aerie_proto::ReasonCode::CONNECTION_RATE_EXCEEDED);
    }
    connections.admit(tenant, takeover).await.ok_or_else(|| {
        tenant.quota().refused(Limit::Connections);
        aerie_proto::ReasonCode::QUOTA_EXCEEDED
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{TenantFacts, TenantLimits};
    use aerie_core::CoreConfig;

    #[test]
    fn a_publish_refused_by_one_rate_takes_nothing_from_the_client_s_others() {
        let broker = Broker::new(CoreConfig::default());
        let tenant = broker.tenant("t1");
        tenant.quota().set_limits(TenantLimits {
            client_publish_rate_msgs: 2,
            client_publish_rate_bytes: 100,
            publish_rate_bytes: 10,
            ..TenantLimits::UNLIMITED
        });
        let mut rates = ClientRates::default();
        // Refused by the client's byte rate, then by the tenant's.
        assert_eq!(
            rates.check_publish(&tenant, 101),
            Err(Limit::ClientPublishBytesRate)
        );
        assert_eq!(
            rates.check_publish(&tenant, 11),
            Err(Limit::PublishBytesRate)
        );
        // The client's two messages (and its bytes) are all still there.
        assert_eq!(rates.check_publish(&tenant, 5), Ok(()));
        assert_eq!(rates.check_publish(&tenant, 5), Ok(()));
        assert_eq!(
            rates.check_publish(&tenant, 1),
            Err(Limit::ClientPublishRate)
        );
    }

    #[test]
    fn a_directory_sets_the_limits_of_loaded_tenants_only() {
        let broker = Broker::new(CoreConfig::default());
        let loaded = broker.tenant("t1");
        let limits = TenantLimits {
            connections: 2,
            ..TenantLimits::UNLIMITED
        };
        let mut d = Directory::default();
        for id in ["t1", "t2"] {
            d.tenants.insert(
                id.into(),
                TenantFacts {
                    limits,
                    ..TenantFacts::active()
                },
            );
        }
        apply(&broker, &d);
        assert_eq!(loaded.quota().limits(), limits);
        assert!(broker.existing_tenant("t2").is_none(), "not created");
        // A later first connection's (older) limits do not undo a change.
        loaded.init_limits(TenantLimits::UNLIMITED);
        assert_eq!(loaded.quota().limits(), limits);
    }

    #[test]
    fn the_client_rate_refuses_before_the_tenant_rate_is_touched() {
        let broker = Broker::new(CoreConfig::default());
        let tenant = broker.tenant("t");
        tenant.quota().set_limits(TenantLimits {
            client_publish_rate_msgs: 2,
            publish_rate_msgs: 3,
            ..TenantLimits::UNLIMITED
        });
        let mut a = ClientRates::default();
        let mut b = ClientRates::default();
        assert_eq!(a.check_publish(&tenant, 1), Ok(()));
        assert_eq!(a.check_publish(&tenant, 1), Ok(()));
        assert_eq!(a.check_publish(&tenant, 1), Err(Limit::ClientPublishRate));
        assert_eq!(b.check_publish(&tenant, 1), Ok(()));
        assert_eq!(b.check_publish(&tenant, 1), Err(Limit::PublishRate));
        // Another tenant is not affected.
        let other = broker.tenant("u");
        let mut c = ClientRates::default();
        assert!((0..100).all(|_| c.check_publish(&other, 1000).is_ok()));
    }

    #[tokio::test]
    async fn connections_over_the_limit_are_quota_exceeded_and_connects_over_the_rate_0x9f() {
        let broker = Broker::new(CoreConfig::default());
        let tenant = broker.tenant("t");
        tenant.quota().set_limits(TenantLimits {
            connections: 1,
            connect_rate: 2,
            ..TenantLimits::UNLIMITED
        });
        let local = aerie_core::quota::LocalConnections;
        let slot = admit_connection(&local, &tenant, false)
            .await
            .expect("first");
        assert_eq!(
            admit_connection(&local, &tenant, false).await.err(),
            Some(aerie_proto::ReasonCode::QUOTA_EXCEEDED)
        );
        drop(slot);
        assert_eq!(
            admit_connection(&local, &tenant, false).await.err(),
            Some(aerie_proto::ReasonCode::CONNECTION_RATE_EXCEEDED)
        );
    }
}
