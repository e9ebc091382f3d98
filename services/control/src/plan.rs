//! Plans and the limits a tenant carries (enforced by the gateway later).

use serde::{Deserialize, Serialize};

/// The plan every new tenant starts on.
pub const FREE_PLAN: &str = "free";

/// Per-tenant limits (DESIGN.md, "Limits per tenant"). Stored with the tenant,
/// so an operator can change one tenant's limits without changing its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    /// Concurrent MQTT connections.
    pub connections: u32,
    /// PUBLISH packets per second, tenant-wide.
    pub publish_rate_msgs: u32,
    /// PUBLISH payload bytes per second, tenant-wide.
    pub publish_rate_bytes: u64,
    /// Largest MQTT packet, bytes.
    pub max_packet_size: u32,
    pub subscriptions_per_client: u32,
    pub retained_messages: u32,
    pub retained_bytes: u64,
    /// Ceiling on the session expiry interval, seconds.
    pub session_expiry_max: u32,
    /// Messages queued per offline session.
    pub queued_messages: u32,
    /// QoS 1/2 messages in flight per client.
    pub inflight: u16,
}

impl Limits {
    /// The free plan: enough for a hobby project or a pilot.
    pub const FREE: Limits = Limits {
        connections: 100,
        publish_rate_msgs: 100,
        publish_rate_bytes: 1024 * 1024,
        max_packet_size: 256 * 1024,
        subscriptions_per_client: 50,
        retained_messages: 1_000,
        retained_bytes: 10 * 1024 * 1024,
        session_expiry_max: 7 * 24 * 3600,
        queued_messages: 1_000,
        inflight: 32,
    };
}
