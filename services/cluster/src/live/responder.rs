//! The gateway's side: answers the control plane's live-state requests on
//! `<prefix>.live.<node>.>` from this node alone, through the same
//! `BrokerPort` the embedded shape's routes use over its in-process broker.

use std::sync::Arc;

use aerie_control::broker::BrokerPort;
use aerie_core::Broker;
use aerie_core::trace_context::TraceParent;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::wire::{self, Answer, Op};

/// Requests this gateway answered, by `op`.
pub const SERVED_TOTAL: &str = "aerie_live_requests_served_total";
/// Requests that did not decode (answered 503) or found this gateway busy.
pub const REFUSED_TOTAL: &str = "aerie_live_requests_refused_total";

/// The most of an answer one message carries (NATS's `max_payload`
/// permitting): a listing of many clients goes in several.
const FRAME_BYTES: usize = 256 * 1024;
/// Requests answered at once; past it a request is answered "busy" at once
/// instead of queueing behind slow ones (a publish may wait for JetStream).
const IN_FLIGHT: usize = 64;

/// Answers the control plane for `node` (this gateway's incarnation) until
/// `stop`: `port` is this gateway's in-process broker, `broker` its core
/// (for counting matches). Subscribed before it returns.
pub async fn serve(
    client: async_nats::Client,
    prefix: &str,
    node: &str,
    port: Arc<dyn BrokerPort>,
    broker: Broker,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let root = wire::node_root(prefix, node);
    let mut requests = client.subscribe(format!("{root}.>")).await?;
    client.flush().await?;
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    tokio::spawn(async move {
        loop {
            let request = tokio::select! {
                r = requests.next() => match r { Some(r) => r, None => break },
                () = stop.cancelled() => break,
            };
            let Some(reply) = request.reply else {
                continue;
            };
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                metrics::counter!(REFUSED_TOTAL, "why" => "busy").increment(1);
                let busy = Answer::<()>::Unavailable("the gateway is busy".into());
                send_answer(&client, reply, &busy.encode()).await;
                continue;
            };
            let (client, port, broker) = (client.clone(), port.clone(), broker.clone());
            let parsed = wire::parse_subject(&root, &request.subject);
            let span = request_span(
                parsed.as_ref().map(|(op, _)| op.label()),
                request.headers.as_ref(),
            );
            tokio::spawn(async move {
                let answer = match parsed {
                    Some((op, tenant)) => {
                        answer(op, &tenant, &request.payload, &*port, &broker)
                            .instrument(span)
                            .await
                    }
                    None => None,
                };
                let answer = answer.unwrap_or_else(|| {
                    metrics::counter!(REFUSED_TOTAL, "why" => "malformed").increment(1);
                    tracing::warn!(
                        subject = %request.subject,
                        bytes = request.payload.len(),
                        "a malformed live-state request; answered 503"
                    );
                    Answer::<()>::Unavailable("malformed request".into()).encode()
                });
                send_answer(&client, reply, &answer).await;
                drop(permit);
            });
        }
    });
    Ok(())
}

/// The span a request is answered in: in the control plane's trace when
/// the request carries one (a `traceparent` header that parses).
fn request_span(op: Option<&str>, headers: Option<&async_nats::HeaderMap>) -> tracing::Span {
    let span = tracing::info_span!("live.request", op);
    let trace = headers
        .and_then(|h| h.get(wire::TRACEPARENT))
        .and_then(|v| TraceParent::parse(v.as_str()));
    if let Some(trace) = trace {
        trace.adopt(&span);
    }
    span
}

/// Sends `answer` to `reply` in frames small enough for NATS.
async fn send_answer(client: &async_nats::Client, reply: async_nats::Subject, answer: &[u8]) {
    let frame_bytes = FRAME_BYTES.min(client.server_info().max_payload.saturating_sub(1));
    for frame in wire::frames(answer, frame_bytes) {
        if let Err(error) = client.publish(reply.clone(), frame).await {
            tracing::warn!(%error, "cannot send a live-state answer");
            return;
        }
    }
}

/// The answer to `op` about `tenant`; `None` if the payload is not one.
/// The tenant of the subject is the only scope of every call.
async fn answer(
    op: Op,
    tenant: &str,
    payload: &[u8],
    port: &dyn BrokerPort,
    broker: &Broker,
) -> Option<Bytes> {
    let answer = match op {
        Op::Clients => Answer::from(port.clients(tenant).await).encode(),
        Op::Kick => {
            let client_id = std::str::from_utf8(payload).ok()?;
            Answer::from(port.disconnect(tenant, client_id).await).encode()
        }
        Op::Publish => {
            let message = wire::decode_publish(payload)?;
            Answer::from(port.publish(tenant, message).await.map(|_| ())).encode()
        }
        Op::Matching => {
            let topic = std::str::from_utf8(payload).ok()?;
            aerie_proto::topic::validate_topic_name(topic).ok()?;
            let matched = broker
                .existing_tenant(tenant)
                .map_or(0, |t| t.matching_subscriptions(topic) as u64);
            Answer::Ok(matched).encode()
        }
    };
    metrics::counter!(SERVED_TOTAL, "op" => op.label()).increment(1);
    Some(answer)
}
