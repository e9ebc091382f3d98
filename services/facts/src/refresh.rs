//! A gateway met a token whose `kid` its tenant issuer lacks (a key rotated
//! a moment ago): it cannot fetch the issuer's JWKS URL itself, so it asks
//! the control plane over NATS (request/reply on
//! `<prefix>.facts.refresh_issuer`). The control plane fetches that issuer
//! now, publishes the facts, and answers once a pass that began after the
//! request has finished; the gateway then waits briefly for its watch to
//! bring the change. The gateway's `DirectoryCache` already limits this to
//! issuers it knows, at most every few seconds per issuer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::connect::Nats;
use crate::control::ControlFacts;

/// How long a gateway waits for the control plane's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the control plane waits for the publishing pass.
const PASS_TIMEOUT: Duration = Duration::from_secs(3);

/// The subject of the requests for bucket prefix `prefix`.
pub fn subject(prefix: &str) -> String {
    format!("{prefix}.facts.refresh_issuer")
}

#[derive(Serialize, Deserialize)]
pub(crate) struct RefreshIssuer {
    pub tenant: String,
    pub issuer: String,
}

/// The publisher's passes: numbered when they start, counted when they end,
/// so a waiter can wait for one that started after it asked.
#[derive(Default)]
pub(crate) struct Passes {
    started: std::sync::atomic::AtomicU64,
    finished: watch::Sender<u64>,
}

impl Passes {
    pub fn start(&self) {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn finish(&self) {
        self.finished.send_modify(|n| *n += 1);
    }

    /// Pokes the publisher and waits (at most `PASS_TIMEOUT`) for a pass
    /// that started after this call to end.
    async fn poke_and_wait(&self, poke: &Notify) {
        let mut finished = self.finished.subscribe();
        let wanted = self.started.load(std::sync::atomic::Ordering::SeqCst) + 1;
        poke.notify_one();
        let _ = tokio::time::timeout(PASS_TIMEOUT, finished.wait_for(|n| *n >= wanted)).await;
    }
}

/// The control side: answers refresh requests until `shutdown` (one control
/// plane of a queue group answers each).
pub(crate) async fn serve(
    nats: Nats,
    prefix: String,
    facts: Arc<ControlFacts>,
    poke: Arc<Notify>,
    passes: Arc<Passes>,
    shutdown: CancellationToken,
) {
    let subject = subject(&prefix);
    let mut requests = loop {
        match nats
            .client
            .queue_subscribe(subject.clone(), "aerie-control".into())
            .await
        {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(%subject, error = %e, "cannot subscribe to issuer refresh requests; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    };
    loop {
        let request = tokio::select! {
            r = requests.next() => match r { Some(r) => r, None => return },
            _ = shutdown.cancelled() => return,
        };
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let Ok(ask) = serde_json::from_slice::<RefreshIssuer>(&request.payload) else {
            tracing::warn!("an issuer refresh request that does not parse; ignored");
            continue;
        };
        let (nats, facts, poke, passes) =
            (nats.clone(), facts.clone(), poke.clone(), passes.clone());
        // Apart: one slow JWKS URL must not hold the others' requests.
        tokio::spawn(async move {
            facts.refresh_issuer(&ask.tenant, &ask.issuer).await;
            passes.poke_and_wait(&poke).await;
            if let Err(e) = nats.client.publish(reply, bytes::Bytes::new()).await {
                tracing::debug!(error = %e, "cannot answer an issuer refresh request");
            }
        });
    }
}

/// The gateway side: asks and waits for the answer (or gives up after
/// [`ANSWER_TIMEOUT`]). Returns whether the control plane answered.
pub(crate) async fn ask(nats: &Nats, prefix: &str, tenant: &str, issuer: &str) -> bool {
    let Ok(payload) = serde_json::to_vec(&RefreshIssuer {
        tenant: tenant.to_owned(),
        issuer: issuer.to_owned(),
    }) else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            ANSWER_TIMEOUT,
            nats.client.request(subject(prefix), payload.into())
        )
        .await,
        Ok(Ok(_))
    )
}
