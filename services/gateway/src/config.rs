//! What a gateway announces to clients and enforces on them.

use std::sync::Arc;
use std::time::Duration;

use aerie_core::quota::{LocalConnections, TenantConnections};

use crate::auth::Verifier;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Accept clients without credentials into [`GatewayConfig::anonymous_tenant`].
    pub allow_anonymous: bool,
    pub anonymous_tenant: String,
    /// Verifies the CONNECT password as a token (JWT); `None`: no tokens.
    pub verifier: Option<Arc<Verifier>>,
    /// Largest packet a client may send us (announced in CONNACK).
    pub max_packet_size: u32,
    /// QoS 1/2 PUBLISHes a client may have unacknowledged towards us.
    pub receive_maximum: u16,
    /// QoS 1/2 messages we send a client before waiting for its acks: the
    /// client's receive maximum, but never more than this (3.1.1 clients
    /// announce none).
    pub max_inflight: u16,
    /// A subscriber whose socket takes nothing for this long while its queue
    /// is full is disconnected as a slow consumer; `None`: never.
    pub slow_consumer_timeout: Option<Duration>,
    /// Topic aliases a client may use towards us.
    pub topic_alias_maximum: u16,
    /// Upper bound on a client's keep alive (seconds); 0 = take the client's.
    /// Announced as Server Keep Alive when it changes the client's value.
    pub max_keep_alive: u16,
    /// Time a new connection has to send CONNECT.
    pub connect_timeout: Duration,
    /// Time a TLS handshake, and a WebSocket upgrade request's headers,
    /// may take; the connection holds a permit meanwhile.
    pub handshake_timeout: Duration,
    /// Connections accepted at once on the MQTT listeners (TCP, TLS, WS,
    /// WSS), counted from the accept: TLS handshakes and WebSocket upgrades
    /// hold one too. Past it new ones are refused.
    pub max_connections: usize,
    /// How long a PUBACK/PUBREC may wait for the store (a failing disk):
    /// then a v5 client gets the ack with 0x80 and a 3.1.1 client, which
    /// cannot be told, is disconnected without it.
    pub store_ack_timeout: Duration,
    /// Where a tenant's connection limit is counted: this process, or
    /// every gateway of the scale-out shape.
    pub connections: Arc<dyn TenantConnections>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            allow_anonymous: false,
            anonymous_tenant: "local".to_owned(),
            verifier: None,
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_inflight: 256,
            slow_consumer_timeout: Some(Duration::from_secs(30)),
            max_keep_alive: 0,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1_000_000,
            store_ack_timeout: Duration::from_secs(10),
            connections: Arc::new(LocalConnections),
        }
    }
}
