//! Limits and knobs of the core. Per-tenant plans will override these.

use std::time::Duration;

use crate::node::NodeId;

#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Messages a session may hold queued (offline, or waiting for its window).
    pub max_queued_messages: usize,
    /// Bytes a session may hold queued.
    pub max_queued_bytes: usize,
    /// Ceiling on session expiry intervals clients ask for (seconds).
    pub max_session_expiry: u32,
    /// Whether QoS 0 messages are queued for offline persistent sessions.
    pub queue_qos0_offline: bool,
    /// How long a new connection waits for the old one to hand over its session.
    pub takeover_timeout: Duration,
    /// This process among the nodes routing messages (origins, message ids).
    pub node_id: NodeId,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_session_expiry: u32::MAX,
            queue_qos0_offline: false,
            takeover_timeout: Duration::from_secs(5),
            node_id: NodeId::generate(),
        }
    }
}
