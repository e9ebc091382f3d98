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
    /// PUBLISH packets per second, per client.
    #[serde(default = "free::client_publish_rate_msgs")]
    pub client_publish_rate_msgs: u32,
    /// PUBLISH payload bytes per second, per client.
    #[serde(default = "free::client_publish_rate_bytes")]
    pub client_publish_rate_bytes: u64,
    /// CONNECTs per second, tenant-wide (counted once authenticated).
    #[serde(default = "free::connect_rate")]
    pub connect_rate: u32,
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
    /// How long the tenant's message log keeps a QoS 1/2 message, seconds:
    /// how far back a persistent session resumed on another gateway is
    /// replayed (scale-out shape).
    #[serde(default = "free::message_log_max_age")]
    pub message_log_max_age: u32,
    /// How many bytes of messages the tenant's log keeps (oldest dropped).
    #[serde(default = "free::message_log_max_bytes")]
    pub message_log_max_bytes: u64,
}

impl Limits {
    /// The free plan: enough for a hobby project or a pilot.
    pub const FREE: Limits = Limits {
        connections: 100,
        publish_rate_msgs: 100,
        publish_rate_bytes: 1024 * 1024,
        client_publish_rate_msgs: 20,
        client_publish_rate_bytes: 256 * 1024,
        connect_rate: 10,
        max_packet_size: 256 * 1024,
        subscriptions_per_client: 50,
        retained_messages: 1_000,
        retained_bytes: 10 * 1024 * 1024,
        session_expiry_max: 7 * 24 * 3600,
        queued_messages: 1_000,
        inflight: 32,
        message_log_max_age: 24 * 3600,
        message_log_max_bytes: 64 * 1024 * 1024,
    };
}

/// Defaults for fields added after tenants were stored: the free plan's.
mod free {
    use super::Limits;

    pub fn client_publish_rate_msgs() -> u32 {
        Limits::FREE.client_publish_rate_msgs
    }
    pub fn client_publish_rate_bytes() -> u64 {
        Limits::FREE.client_publish_rate_bytes
    }
    pub fn connect_rate() -> u32 {
        Limits::FREE.connect_rate
    }
    pub fn message_log_max_age() -> u32 {
        Limits::FREE.message_log_max_age
    }
    pub fn message_log_max_bytes() -> u64 {
        Limits::FREE.message_log_max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_stored_before_the_per_client_and_connect_rates_reads_with_the_free_plans() {
        let old = serde_json::json!({
            "connections": 7, "publish_rate_msgs": 1, "publish_rate_bytes": 2,
            "max_packet_size": 1024, "subscriptions_per_client": 3,
            "retained_messages": 4, "retained_bytes": 5, "session_expiry_max": 6,
            "queued_messages": 8, "inflight": 9
        });
        let limits: Limits = serde_json::from_value(old).unwrap();
        assert_eq!(limits.connections, 7);
        assert_eq!(
            limits.client_publish_rate_msgs,
            Limits::FREE.client_publish_rate_msgs
        );
        assert_eq!(
            limits.client_publish_rate_bytes,
            Limits::FREE.client_publish_rate_bytes
        );
        assert_eq!(limits.connect_rate, Limits::FREE.connect_rate);
        assert_eq!(
            limits.message_log_max_bytes,
            Limits::FREE.message_log_max_bytes
        );
    }
}
