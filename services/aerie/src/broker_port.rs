//! The control plane's [`BrokerPort`] over the in-process broker and gateway
//! of `aerie serve`: live clients from the gateway's registry, publishing
//! and retained messages through the tenant's core.
//!
//! The tenant id from the route is the only scope: every call goes through
//! that tenant's registry entry or core tenant, never another's.

use std::time::Duration;

use aerie_control::broker::{
    BrokerError, BrokerPort, ClientInfo, HttpPublish, MqttProtocol, PublishOutcome,
    RetainedMessage, Transport,
};
use aerie_core::{Kick, Later, Message};
use aerie_gateway::Gateway;
use aerie_gateway::connection::Transport as GatewayTransport;
use aerie_proto::{ProtocolVersion, PublishProperties, QoS, ReasonCode};
use async_trait::async_trait;
use bytes::Bytes;
use time::OffsetDateTime;
use tracing::Instrument;

/// How long a QoS 1 publish waits for the store to make it durable.
const DURABLE_WAIT: Duration = Duration::from_secs(10);
/// How long a disconnect waits for the connection to leave the registry.
const DISCONNECT_WAIT: Duration = Duration::from_secs(2);

/// The control plane's window on the broker of this process.
#[derive(Clone)]
pub struct InProcessBroker {
    gateway: Gateway,
}

impl InProcessBroker {
    pub fn new(gateway: Gateway) -> InProcessBroker {
        InProcessBroker { gateway }
    }
}

impl std::fmt::Debug for InProcessBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBroker").finish_non_exhaustive()
    }
}

fn protocol(v: ProtocolVersion) -> MqttProtocol {
    match v {
        ProtocolVersion::V311 => MqttProtocol::V311,
        ProtocolVersion::V5 => MqttProtocol::V5,
    }
}

fn transport(t: GatewayTransport) -> Transport {
    match t {
        GatewayTransport::Tcp => Transport::Tcp,
        GatewayTransport::Tls => Transport::Tls,
        GatewayTransport::Ws => Transport::Ws,
        GatewayTransport::Wss => Transport::Wss,
    }
}

/// The kick an administrator's disconnect sends (v5 DISCONNECT 0x98).
const ADMIN_DISCONNECT: Kick = Kick {
    reason: ReasonCode::ADMINISTRATIVE_ACTION,
    why: "admin_disconnect",
};

impl InProcessBroker {
    /// [`BrokerPort::publish`], its counts recorded on `span`.
    async fn publish_in(
        &self,
        span: &tracing::Span,
        tenant_id: &str,
        message: HttpPublish,
    ) -> Result<PublishOutcome, BrokerError> {
        let qos = match message.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            q => return Err(BrokerError::Refused(format!("qos {q} is not 0 or 1"))),
        };
        let broker = self.gateway.broker();
        // Subscribe to the durable ticket before publishing, so its move
        // past our writes cannot be missed.
        let mut durable = broker.store().durable();
        let tenant = broker.tenant(tenant_id);
        aerie_gateway::limits::check_tenant_publish(&tenant, message.payload.len())
            .map_err(|limit| BrokerError::Refused(over(limit)))?;
        let published = tenant.publish(Message::published(
            message.topic.into(),
            Bytes::from(message.payload),
            qos,
            message.retain,
            PublishProperties::default(),
            tenant.node().origin(0),
            tenant.node().next_message_id(),
        ));
        span.record("matched", published.matched);
        span.record("deliveries", published.routed);
        if let Some(limit) = published.refused {
            return Err(BrokerError::Refused(over(limit)));
        }
        // A retained store over the network (`aerie gateway`'s JetStream)
        // keeps it later: answer, as a client's PUBACK, once it has.
        let mut ticket = published.ticket;
        if let Some(stored) = published.stored_later {
            match tokio::time::timeout(DURABLE_WAIT, stored).await {
                Ok(Ok(Later::Kept(kept))) => ticket = kept,
                Ok(Ok(Later::Refused(limit))) => return Err(BrokerError::Refused(over(limit))),
                Ok(Ok(Later::Unavailable) | Err(_)) => {
                    return Err(BrokerError::Unavailable(
                        "the retained message was dropped before it was kept".into(),
                    ));
                }
                Err(_) => {
                    tracing::warn!(
                        tenant_id,
                        "HTTP publish's retained message not kept in time"
                    );
                    return Err(BrokerError::Unavailable(
                        "the retained message was not kept in time".into(),
                    ));
                }
            }
        }
        // As a client's PUBACK: QoS 1 answers once a persistent session's
        // copy (and a retained one) is durable.
        if qos == QoS::AtLeastOnce && ticket > 0 {
            match tokio::time::timeout(DURABLE_WAIT, durable.wait_for(|t| *t >= ticket)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    return Err(BrokerError::Unavailable(
                        "the broker's store is shutting down".into(),
                    ));
                }
                Err(_) => {
                    tracing::warn!(tenant_id, ticket, "HTTP publish not durable in time");
                    return Err(BrokerError::Unavailable(
                        "the broker's store did not make the message durable in time".into(),
                    ));
                }
            }
        }
        Ok(PublishOutcome {
            matched_subscriptions: published.matched as u64,
        })
    }
}

#[async_trait]
impl BrokerPort for InProcessBroker {
    fn unready(&self) -> Option<String> {
        self.gateway
            .broker()
            .store()
            .is_failing()
            .then(|| "the broker's store cannot write (is the data dir's disk full?); acknowledgements wait".into())
    }

    async fn clients(&self, tenant_id: &str) -> Result<Vec<ClientInfo>, BrokerError> {
        Ok(self
            .gateway
            .registry()
            .connections(tenant_id)
            .into_iter()
            .map(|c| ClientInfo {
                client_id: c.client_id().to_string(),
                protocol: protocol(c.protocol),
                transport: transport(c.transport),
                connected_at: OffsetDateTime::from(c.connected_at),
                subscriptions: c.subscriptions(),
            })
            .collect())
    }

    async fn disconnect(&self, tenant_id: &str, client_id: &str) -> Result<bool, BrokerError> {
        let registry = self.gateway.registry();
        let Some(live) = registry.find(tenant_id, client_id) else {
            return Ok(false);
        };
        if !live.kick(ADMIN_DISCONNECT) {
            return Ok(false);
        }
        // Answer once the connection is gone, so a listing right after
        // the answer no longer shows it.
        let gone = || {
            registry
                .find(tenant_id, client_id)
                .is_none_or(|c| c.connection_id != live.connection_id)
        };
        let deadline = tokio::time::Instant::now() + DISCONNECT_WAIT;
        while !gone() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(true)
    }

    /// In a `broker.publish` span under the request's trace (in `aerie
    /// gateway`, the control plane's live request's), with how many
    /// subscriptions matched and how many sessions here it was queued for:
    /// an HTTP publish followed to its deliveries, at no cost to the MQTT
    /// PUBLISH path.
    async fn publish(
        &self,
        tenant_id: &str,
        message: HttpPublish,
    ) -> Result<PublishOutcome, BrokerError> {
        let span = tracing::info_span!(
            "broker.publish",
            tenant = tenant_id,
            qos = message.qos,
            retain = message.retain,
            matched = tracing::field::Empty,
            deliveries = tracing::field::Empty,
        );
        self.publish_in(&span, tenant_id, message)
            .instrument(span.clone())
            .await
    }

    async fn retained(
        &self,
        tenant_id: &str,
        filter: &str,
    ) -> Result<Vec<RetainedMessage>, BrokerError> {
        let Some(tenant) = self.gateway.broker().existing_tenant(tenant_id) else {
            return Ok(Vec::new());
        };
        Ok(tenant
            .retained_matching(filter)
            .await
            .into_iter()
            .map(|m| RetainedMessage {
                topic: m.topic.to_string(),
                payload: m.payload.to_vec(),
                qos: m.qos as u8,
            })
            .collect())
    }
}

/// The 422 detail of an HTTP publish over one of the tenant's limits.
fn over(limit: aerie_core::Limit) -> String {
    format!("over the tenant's `{}` limit", limit.label())
}
