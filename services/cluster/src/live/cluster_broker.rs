//! The control plane's side: [`ClusterBroker`], the `BrokerPort` of
//! `aerie control --nats`, which asks the gateways instead of a broker of
//! its own.

use std::time::Duration;

use aerie_control::broker::{
    BrokerError, BrokerPort, ClientInfo, HttpPublish, PublishOutcome, RetainedMessage,
};
use aerie_core::trace_context::TraceParent;
use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::join_all;
use futures_util::{StreamExt, TryStreamExt};
use rand::seq::SliceRandom;
use tokio::sync::OnceCell;

use super::wire::{self, Op};
use crate::retained::JetStreamRetainedStores;

/// Requests to gateways by `op` and `outcome`: `answered`, `gone` (no
/// responders: the gateway stopped, its connections with it), `timed_out`
/// or `failed` (NATS did not take the request).
pub const REQUESTS_TOTAL: &str = "aerie_live_requests_total";

/// How long a gateway has to answer a listing, a kick or a count. A kick
/// waits there for the connection to close (at most 2 s).
const DEADLINE: Duration = Duration::from_secs(3);
/// How long a gateway has to publish: a retained message waits for
/// JetStream to keep it.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// The live-state routes of the scale-out shape, over NATS: listings and
/// counts are asked of every live gateway (the bucket `<prefix>_nodes`), a
/// kick of the gateway that owns the client id (`<prefix>_owners`), a
/// publish of one live gateway; retained messages are read from the
/// JetStream stream itself.
pub struct ClusterBroker {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    retained: JetStreamRetainedStores,
    nodes: OnceCell<kv::Store>,
    owners: OnceCell<kv::Store>,
}

impl std::fmt::Debug for ClusterBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBroker")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// `work`'s value, or its error (`None`: it took longer than `deadline`).
async fn within<T, E>(
    deadline: Duration,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Option<E>> {
    match tokio::time::timeout(deadline, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// The 503 of a route whose answer needs NATS, which did not give it.
fn nats_unavailable() -> BrokerError {
    BrokerError::Unavailable("the cluster's state cannot be read now (NATS does not answer)".into())
}

/// Whether opening a bucket failed because its stream does not exist
/// (rather than because NATS did not answer).
fn bucket_missing(error: &async_nats::jetstream::context::KeyValueError) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<GetStreamError>())
        .is_some_and(|e| {
            matches!(e.kind(), GetStreamErrorKind::JetStream(j)
                if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
        })
}

/// Why a request got no answer.
enum Asked {
    NoResponders,
    Failed(String),
}

/// Why a gateway gave no answer.
enum Unanswered {
    /// No one serves its subject: it stopped (or was killed).
    Gone,
    /// It did not answer in time, or NATS did not take the request.
    Silent,
}

impl ClusterBroker {
    /// `replicas`: of the retained stream, should this be the first to open it.
    pub fn new(client: async_nats::Client, prefix: &str, replicas: usize) -> ClusterBroker {
        ClusterBroker {
            js: jetstream::new(client.clone()),
            retained: JetStreamRetainedStores::new(client.clone(), prefix, replicas),
            client,
            prefix: prefix.to_owned(),
            nodes: OnceCell::new(),
            owners: OnceCell::new(),
        }
    }

    /// A bucket the gateways make; `None` while none has (no gateway ever
    /// started, so there is nothing live to ask about).
    async fn bucket<'a>(
        &self,
        cell: &'a OnceCell<kv::Store>,
        name: String,
    ) -> Result<Option<&'a kv::Store>, BrokerError> {
        let opened = cell.get_or_try_init(|| self.js.get_key_value(name));
        match within(DEADLINE, opened).await {
            Ok(kv) => Ok(Some(kv)),
            Err(Some(e)) if bucket_missing(&e) => Ok(None),
            Err(e) => {
                tracing::warn!(error = ?e.map(|e| e.to_string()), "cannot open a cluster bucket");
                Err(nats_unavailable())
            }
        }
    }

    /// The gateways alive now.
    async fn live_nodes(&self) -> Result<Vec<String>, BrokerError> {
        let Some(nodes) = self
            .bucket(&self.nodes, crate::nodes::bucket(&self.prefix))
            .await?
        else {
            return Ok(Vec::new());
        };
        let listed = async {
            let keys = nodes.keys().await?;
            Ok::<_, async_nats::Error>(keys.try_collect().await?)
        };
        within(DEADLINE, listed).await.map_err(|e| {
            tracing::warn!(error = ?e.map(|e| e.to_string()), "cannot list the live gateways");
            nats_unavailable()
        })
    }

    /// Asks `node` `op` about `tenant`; counted by outcome.
    async fn ask(
        &self,
        node: &str,
        op: Op,
        tenant: &str,
        payload: Bytes,
        deadline: Duration,
    ) -> Result<Bytes, Unanswered> {
        let subject = wire::subject(&self.prefix, node, op, tenant);
        let asked = tokio::time::timeout(deadline, self.request(subject, payload)).await;
        let (outcome, result) = match asked {
            Ok(Ok(answer)) => ("answered", Ok(answer)),
            Ok(Err(Asked::NoResponders)) => ("gone", Err(Unanswered::Gone)),
            Ok(Err(Asked::Failed(e))) => {
                tracing::warn!(%node, op = op.label(), error = %e, "a live-state request failed");
                ("failed", Err(Unanswered::Silent))
            }
            Err(_) => {
                tracing::warn!(%node, op = op.label(), ?deadline, "a gateway did not answer in time");
                ("timed_out", Err(Unanswered::Silent))
            }
        };
        metrics::counter!(REQUESTS_TOTAL, "op" => op.label(), "outcome" => outcome).increment(1);
        result
    }

    /// A request whose answer may come in several frames (a plain NATS
    /// request takes the first message only).
    async fn request(&self, subject: String, payload: Bytes) -> Result<Bytes, Asked> {
        let failed = |e: &dyn std::fmt::Display| Asked::Failed(e.to_string());
        let inbox = self.client.new_inbox();
        let mut replies = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| failed(&e))?;
        // The request's trace, when spans are exported: what the gateway
        // does for it (an HTTP publish's deliveries) joins it.
        let sent = match TraceParent::current() {
            Some(trace) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(wire::TRACEPARENT, trace.as_str());
                self.client
                    .publish_with_reply_and_headers(subject, inbox, headers, payload)
                    .await
            }
            None => {
                self.client
                    .publish_with_reply(subject, inbox, payload)
                    .await
            }
        };
        sent.map_err(|e| failed(&e))?;
        let mut reassembly = wire::Reassembly::default();
        while let Some(frame) = replies.next().await {
            if frame.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Err(Asked::NoResponders);
            }
            match reassembly.push(&frame.payload) {
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) => {}
                Err(()) => return Err(failed(&"an answer frame does not decode")),
            }
        }
        Err(failed(&"the reply subscription ended"))
    }

    /// How many subscriptions of the tenant match `topic`, summed over the
    /// gateways that answer (one that does not is left out of the sum).
    async fn matching(&self, tenant: &str, topic: &str, nodes: &[String]) -> u64 {
        let asked = nodes.iter().map(|node| {
            self.ask(
                node,
                Op::Matching,
                tenant,
                Bytes::copy_from_slice(topic.as_bytes()),
                DEADLINE,
            )
        });
        join_all(asked)
            .await
            .into_iter()
            .filter_map(|a| a.ok())
            .filter_map(|bytes| wire::decode_answer::<u64>(&bytes).ok())
            .sum()
    }

    /// Publishes through one live gateway (the first of them, shuffled,
    /// that serves its subject).
    async fn publish_through_one(
        &self,
        tenant: &str,
        message: &HttpPublish,
        nodes: &[String],
    ) -> Result<(), BrokerError> {
        let mut order = nodes.to_vec();
        order.shuffle(&mut rand::rng());
        let request = wire::encode_publish(message);
        for node in &order {
            match self
                .ask(node, Op::Publish, tenant, request.clone(), PUBLISH_DEADLINE)
                .await
            {
                Ok(answer) => return wire::decode_answer::<()>(&answer),
                Err(Unanswered::Gone) => continue,
                // It may have published: trying another could publish twice.
                Err(Unanswered::Silent) => {
                    return Err(BrokerError::Unavailable(format!(
                        "the gateway asked to publish did not answer within {PUBLISH_DEADLINE:?}"
                    )));
                }
            }
        }
        Err(BrokerError::Unavailable(
            "no gateway is running to publish through".into(),
        ))
    }
}

#[async_trait]
impl BrokerPort for ClusterBroker {
    /// Every live gateway's clients of the tenant. A gateway that stopped
    /// has no clients left; one that does not answer within [`DEADLINE`]
    /// makes the whole listing a 503 rather than a silently partial one.
    async fn clients(&self, tenant_id: &str) -> Result<Vec<ClientInfo>, BrokerError> {
        let nodes = self.live_nodes().await?;
        let asked = nodes
            .iter()
            .map(|node| self.ask(node, Op::Clients, tenant_id, Bytes::new(), DEADLINE));
        let mut clients = Vec::new();
        let mut silent = 0;
        for answer in join_all(asked).await {
            match answer {
                Ok(bytes) => match wire::decode_answer::<Vec<ClientInfo>>(&bytes) {
                    Ok(theirs) => clients.extend(theirs),
                    Err(_) => silent += 1,
                },
                Err(Unanswered::Gone) => {}
                Err(Unanswered::Silent) => silent += 1,
            }
        }
        if silent > 0 {
            return Err(BrokerError::Unavailable(format!(
                "{silent} of {} gateways did not answer within {DEADLINE:?}; the list would be partial",
                nodes.len()
            )));
        }
        Ok(clients)
    }

    /// Asks the gateway that owns the client id (`<prefix>_owners`) to
    /// close it; `false` if no gateway owns it, the owner is gone, or the
    /// owner holds no connection of it.
    async fn disconnect(&self, tenant_id: &str, client_id: &str) -> Result<bool, BrokerError> {
        let Some(owners) = self
            .bucket(&self.owners, crate::owners::bucket(&self.prefix))
            .await?
        else {
            return Ok(false);
        };
        let read = owners.entry(crate::owners::owner_key(tenant_id, client_id));
        let entry = within(DEADLINE, read).await.map_err(|e| {
            tracing::warn!(error = ?e.map(|e| e.to_string()), "cannot read a session owner");
            nats_unavailable()
        })?;
        let Some(node) = entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| crate::owners::owning_node(&e.value))
        else {
            return Ok(false);
        };
        let payload = Bytes::copy_from_slice(client_id.as_bytes());
        match self
            .ask(&node, Op::Kick, tenant_id, payload, DEADLINE)
            .await
        {
            Ok(answer) => wire::decode_answer::<bool>(&answer),
            Err(Unanswered::Gone) => Ok(false),
            Err(Unanswered::Silent) => Err(BrokerError::Unavailable(format!(
                "the gateway holding the client did not answer within {DEADLINE:?}"
            ))),
        }
    }

    /// Publishes through one live gateway's core (routed to the others
    /// through the backbone, a retained one kept in JetStream before the
    /// answer); `matched_subscriptions` is the sum of every live gateway's
    /// matching subscriptions, counted at the same time.
    async fn publish(
        &self,
        tenant_id: &str,
        message: HttpPublish,
    ) -> Result<PublishOutcome, BrokerError> {
        let nodes = self.live_nodes().await?;
        let (published, matched) = tokio::join!(
            self.publish_through_one(tenant_id, &message, &nodes),
            self.matching(tenant_id, &message.topic, &nodes),
        );
        published?;
        Ok(PublishOutcome {
            matched_subscriptions: matched,
        })
    }

    /// Read from the retained stream itself: no gateway is asked.
    async fn retained(
        &self,
        tenant_id: &str,
        filter: &str,
    ) -> Result<Vec<RetainedMessage>, BrokerError> {
        let found = self
            .retained
            .matching(tenant_id, filter)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot read retained messages");
                BrokerError::Unavailable("cannot read the retained messages (NATS)".into())
            })?;
        Ok(found
            .into_iter()
            .map(|m| RetainedMessage {
                topic: m.topic.to_string(),
                payload: m.payload.to_vec(),
                qos: m.qos as u8,
            })
            .collect())
    }
}
