//! The broker as the control plane sees it: the port behind the routes that
//! act on live MQTT state (connected clients, publishing, retained messages).
//!
//! `aerie serve` attaches an implementation over its in-process broker with
//! [`crate::AppState::with_broker`], `aerie control --nats` one that asks the
//! gateways over NATS; a control plane with none attached (`aerie control`
//! without NATS) answers those routes with 503.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// The MQTT protocol version a client connected with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum MqttProtocol {
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5.0")]
    V5,
}

/// How a client reached the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

/// A connected MQTT client of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClientInfo {
    pub client_id: String,
    pub protocol: MqttProtocol,
    pub transport: Transport,
    #[serde(with = "time::serde::rfc3339")]
    pub connected_at: OffsetDateTime,
    /// The topic filters it is subscribed to.
    pub subscriptions: Vec<String>,
}

/// A message published through the REST API: already validated (topic name,
/// QoS 0 or 1, payload size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPublish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
}

/// What became of a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct PublishOutcome {
    /// Subscriptions of the tenant that matched the topic. In the scale-out
    /// shape (`aerie control --nats`), the sum of every live gateway's count:
    /// a shared subscription with members on several gateways counts once
    /// per gateway, and a gateway that does not answer in time is left out.
    pub matched_subscriptions: u64,
}

/// A retained message of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
}

/// Why the broker did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The tenant's limits refuse it (rate, retained quota, packet size): 422.
    #[error("{0}")]
    Refused(String),
    /// The broker cannot be reached or is shutting down: 503.
    #[error("{0}")]
    Unavailable(String),
}

/// The broker operations the REST API needs, per tenant. Implementations
/// must keep tenants apart: `tenant_id` is the only scope.
#[async_trait]
pub trait BrokerPort: Send + Sync + Debug {
    /// Why the broker cannot take work it would have to acknowledge (a
    /// failing store), for `/readyz`; `None` when it can.
    fn unready(&self) -> Option<String> {
        None
    }
    /// The tenant's connected clients, in any order.
    async fn clients(&self, tenant_id: &str) -> Result<Vec<ClientInfo>, BrokerError>;
    /// Disconnects the tenant's client `client_id`: `false` if it is not connected.
    async fn disconnect(&self, tenant_id: &str, client_id: &str) -> Result<bool, BrokerError>;
    /// Publishes as the broker itself would route a client's PUBLISH.
    async fn publish(
        &self,
        tenant_id: &str,
        message: HttpPublish,
    ) -> Result<PublishOutcome, BrokerError>;
    /// The tenant's retained messages whose topics match `filter` (a valid filter).
    async fn retained(
        &self,
        tenant_id: &str,
        filter: &str,
    ) -> Result<Vec<RetainedMessage>, BrokerError>;
}
