//! `$SYS/…` per tenant: every interval, each tenant with a live connection
//! gets its own figures published into its own namespace (QoS 0, not
//! retained). No tenant sees another's, and no client can write there:
//! PUBLISHes and wills to `$`-topics are refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aerie_core::{Broker, Message, Tenant};
use aerie_proto::QoS;
use bytes::Bytes;

use crate::registry::Registry;

/// Publishes every tenant's figures every `interval` until `shutdown`.
pub fn spawn_sys_publisher(
    broker: Broker,
    registry: Arc<Registry>,
    interval: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let started = Instant::now();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            for tenant in registry.tenants() {
                publish_figures(&broker, &registry, &tenant, started.elapsed());
            }
        }
    })
}

/// The figures of one tenant, as (topic, value).
pub fn figures(
    tenant: &Tenant,
    registry: &Registry,
    uptime: Duration,
) -> Vec<(&'static str, String)> {
    vec![
        (
            "$SYS/broker/version",
            format!("aerie {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/uptime",
            format!("{} seconds", uptime.as_secs()),
        ),
        (
            "$SYS/broker/clients/connected",
            registry.count(&tenant.id).to_string(),
        ),
        (
            "$SYS/broker/sessions/count",
            tenant.session_count().to_string(),
        ),
        (
            "$SYS/broker/subscriptions/count",
            tenant.subscription_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            tenant.retained_count().to_string(),
        ),
        (
            "$SYS/broker/messages/queued",
            tenant.queued_messages().to_string(),
        ),
    ]
}

fn publish_figures(broker: &Broker, registry: &Registry, tenant_id: &str, uptime: Duration) {
    let tenant = broker.tenant(tenant_id);
    for (topic, value) in figures(&tenant, registry, uptime) {
        tenant.publish(Message::published(
            topic.into(),
            Bytes::from(value),
            QoS::AtMostOnce,
            false,
            Default::default(),
            tenant.node().origin(0),
            tenant.node().next_message_id(),
        ));
    }
}
