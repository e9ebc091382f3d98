//! One session per client id per tenant across gateways: the owners of
//! sessions in the KV bucket `<prefix>_owners`, one key per tenant and
//! client id (`<tenant>.<client id>`), whose value names the owning node
//! and a claim generation. A claim writes it with compare-and-set (create
//! if absent, else update at the revision it read), so of two gateways
//! claiming at once one write wins and the other reads again and takes it
//! over. The node that lost it is told with a request on its own subject
//! `<prefix>.owners.<node>`; it asks its connection to close (0x8E on v5)
//! and answers. A node that is gone has no subscriber there: NATS answers
//! "no responders" at once, so a dead gateway's ids are taken over without
//! waiting; a node that does not answer within [`KICK_TIMEOUT`] is not
//! waited for longer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aerie_core::Broker;
use aerie_core::seams::{BoxFuture, Claim, SessionOwners};
use aerie_proto::ReasonCode;
use async_nats::jetstream::{self, kv};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::kv_cas::{CasError, open_bucket, write_if_unchanged};
use crate::kv_key::token;

/// Claims written (this node became or stayed the owner).
pub const CLAIMS_TOTAL: &str = "aerie_cluster_session_claims_total";
/// Owners told to let a client id go.
pub const TAKEOVERS_SENT_TOTAL: &str = "aerie_cluster_takeovers_sent_total";
/// Times this node was told another took a client id over.
pub const TAKEOVERS_RECEIVED_TOTAL: &str = "aerie_cluster_takeovers_received_total";
/// Takeover requests that did not decode (dropped; nothing is closed).
pub const MALFORMED_TAKEOVERS_TOTAL: &str = "aerie_cluster_takeover_requests_malformed_total";
/// Claims whose compare-and-set lost to another write (read again).
pub const CAS_CONFLICTS_TOTAL: &str = "aerie_cluster_claim_conflicts_total";

/// How long a claim waits for the old owner to say its connection closes.
pub const KICK_TIMEOUT: Duration = Duration::from_secs(2);
/// Compare-and-set rounds before a claim gives up (0x89 Server busy).
const MAX_ROUNDS: usize = 8;
/// After a takeover, this node looks again at these delays for a
/// connection of the id that an attach under way let in meanwhile.
const RECHECKS: [Duration; 4] = [
    Duration::from_millis(50),
    Duration::from_millis(300),
    Duration::from_secs(1),
    Duration::from_secs(6),
];

/// A claim this node holds: whose, and the revision its write made.
#[derive(Clone)]
struct Held {
    tenant: Arc<str>,
    client_id: Arc<str>,
    revision: u64,
}

/// How often the NATS connection's reconnect count is looked at.
const RECONNECT_POLL: Duration = Duration::from_millis(250);

/// Session owners over NATS KV (the scale-out shape's `SessionOwners`).
#[derive(Clone)]
pub struct NatsOwners {
    inner: Arc<Inner>,
}

struct Inner {
    kv: kv::Store,
    client: async_nats::Client,
    prefix: String,
    node: Arc<str>,
    /// The revision of this node's last claim of each key it holds.
    held: Mutex<HashMap<String, Held>>,
}

impl NatsOwners {
    /// Opens (or makes) the bucket; waits for NATS as long as it takes.
    /// `node` is this node's incarnation (`nodes::incarnation`).
    pub async fn open(
        client: async_nats::Client,
        prefix: &str,
        node: Arc<str>,
        replicas: usize,
    ) -> NatsOwners {
        let kv = open_bucket(
            &jetstream::new(client.clone()),
            kv::Config {
                bucket: bucket(prefix),
                description: "Aerie: which gateway holds each client id's session".into(),
                history: 1,
                ..Default::default()
            },
            replicas,
        )
        .await;
        NatsOwners {
            inner: Arc::new(Inner {
                kv,
                client,
                prefix: prefix.to_owned(),
                node,
                held: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Answers takeovers of this node's client ids by closing the local
    /// connection (0x8E), until `stop`. Subscribed before it returns, so
    /// no takeover sent after is missed.
    ///
    /// `connects` counts the NATS client's (re)connections: after each
    /// reconnect the ids this node holds are read again, and a connection
    /// whose id another node claimed meanwhile (its takeover request found
    /// no one here) is closed with 0x8E.
    pub async fn serve(
        &self,
        broker: Broker,
        stop: CancellationToken,
        connects: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> anyhow::Result<()> {
        let owners = self.inner.clone();
        let (recheck, recheck_broker, recheck_stop) =
            (self.inner.clone(), broker.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = connects();
            let mut tick = tokio::time::interval(RECONNECT_POLL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = recheck_stop.cancelled() => break,
                }
                let now = connects();
                if now != seen {
                    seen = now;
                    recheck.recheck_held(&recheck_broker).await;
                }
            }
        });
        let mut requests = owners
            .client
            .subscribe(owners.subject(&owners.node))
            .await?;
        owners.client.flush().await?;
        tokio::spawn(async move {
            loop {
                let request = tokio::select! {
                    r = requests.next() => match r { Some(r) => r, None => break },
                    () = stop.cancelled() => break,
                };
                let Some(kick) = Kick::decode(&request.payload) else {
                    metrics::counter!(MALFORMED_TAKEOVERS_TOTAL).increment(1);
                    tracing::warn!(
                        bytes = request.payload.len(),
                        "a malformed takeover request; ignored"
                    );
                    continue;
                };
                metrics::counter!(TAKEOVERS_RECEIVED_TOTAL).increment(1);
                owners.taken_over(&broker, &kick);
                if let Some(reply) = request.reply {
                    let _ = owners.client.publish(reply, Bytes::new()).await;
                }
            }
        });
        Ok(())
    }
}

impl NatsOwners {
    /// The bucket of owners.
    pub(crate) fn kv(&self) -> &kv::Store {
        &self.inner.kv
    }
}

impl Inner {
    fn subject(&self, node: &str) -> String {
        format!("{}.owners.{node}", self.prefix)
    }

    /// Reads every id this node holds again; those another node claimed
    /// since are taken over here, and those whose key is gone (swept while
    /// this node was away: `stale_owners.rs`) are claimed again, so a
    /// connect elsewhere still takes them over from here.
    async fn recheck_held(self: &Arc<Self>, broker: &Broker) {
        let held: Vec<(String, Held)> = self
            .held
            .lock()
            .iter()
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        tracing::info!(
            ids = held.len(),
            "NATS reconnected: checking the client ids held here"
        );
        for (key, h) in held {
            match self.kv.entry(key.as_str()).await {
                Ok(Some(entry))
                    if entry.operation == kv::Operation::Put && entry.revision > h.revision =>
                {
                    self.taken_over(
                        broker,
                        &Kick {
                            tenant: h.tenant,
                            client_id: h.client_id,
                            revision: entry.revision,
                        },
                    );
                }
                Ok(entry)
                    if entry
                        .as_ref()
                        .is_none_or(|e| e.operation != kv::Operation::Put) =>
                {
                    self.claim_again(broker, key, h, entry.as_ref()).await;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read a session owner again"),
            }
        }
    }

    /// Writes this node's claim of `held` again where its key is gone
    /// (`read`); if another node claimed it first, that one has it.
    async fn claim_again(
        self: &Arc<Self>,
        broker: &Broker,
        key: String,
        held: Held,
        read: Option<&kv::Entry>,
    ) {
        let value = Owner {
            node: self.node.clone(),
            generation: 1,
        }
        .encode();
        match write_if_unchanged(&self.kv, &key, read, value).await {
            Ok(revision) => {
                if let Some(h) = self.held.lock().get_mut(&key) {
                    h.revision = revision;
                }
                tracing::info!(tenant = %held.tenant, client_id = %held.client_id, "session owner claimed again after a sweep");
            }
            Err(CasError::Conflict) => {
                // The other claim came after what was read, so after ours.
                let kick = Kick {
                    tenant: held.tenant,
                    client_id: held.client_id,
                    revision: read.map_or(held.revision, |e| e.revision) + 1,
                };
                self.taken_over(broker, &kick);
            }
            Err(CasError::Failed(e)) => {
                tracing::warn!(error = %e, "cannot claim a session owner again");
            }
        }
    }

    /// Another node claimed `kick`'s client id at `kick.revision`: forget
    /// our claim if older, and close the local connection (now, and again
    /// later if an attach that was under way here lets one in).
    fn taken_over(self: &Arc<Self>, broker: &Broker, kick: &Kick) {
        let key = owner_key(&kick.tenant, &kick.client_id);
        {
            let mut held = self.held.lock();
            if held.get(&key).is_some_and(|h| h.revision < kick.revision) {
                held.remove(&key);
            }
        }
        let Some(tenant) = broker.existing_tenant(&kick.tenant) else {
            return;
        };
        let closed = tenant.sessions().taken_over_elsewhere(&kick.client_id);
        tracing::info!(tenant = %kick.tenant, client_id = %kick.client_id, closed, "client id taken over by another gateway");
        let (owners, kick) = (self.clone(), kick.clone());
        tokio::spawn(async move {
            for delay in RECHECKS {
                tokio::time::sleep(delay).await;
                let ours = owners
                    .held
                    .lock()
                    .get(&key)
                    .is_some_and(|h| h.revision > kick.revision);
                if ours {
                    return;
                }
                tenant.sessions().taken_over_elsewhere(&kick.client_id);
            }
        });
    }

    async fn claim_key(
        self: Arc<Self>,
        tenant: Arc<str>,
        client_id: Arc<str>,
    ) -> Result<Claim, ReasonCode> {
        let key = owner_key(&tenant, &client_id);
        for _ in 0..MAX_ROUNDS {
            let current = self.kv.entry(key.as_str()).await.map_err(|e| {
                tracing::warn!(error = %e, "cannot read a session owner");
                ReasonCode::SERVER_UNAVAILABLE
            })?;
            let live = current
                .as_ref()
                .filter(|e| e.operation == kv::Operation::Put);
            let previous = live.and_then(|e| Owner::decode(&e.value));
            let generation = previous.as_ref().map_or(0, |o| o.generation) + 1;
            let value = Owner {
                node: self.node.clone(),
                generation,
            }
            .encode();
            let revision = match write_if_unchanged(&self.kv, &key, current.as_ref(), value).await {
                Ok(revision) => revision,
                Err(CasError::Conflict) => {
                    metrics::counter!(CAS_CONFLICTS_TOTAL).increment(1);
                    continue;
                }
                Err(CasError::Failed(e)) => {
                    tracing::warn!(error = %e, "cannot write a session owner");
                    return Err(ReasonCode::SERVER_UNAVAILABLE);
                }
            };
            self.held.lock().insert(
                key,
                Held {
                    tenant: tenant.clone(),
                    client_id: client_id.clone(),
                    revision,
                },
            );
            metrics::counter!(CLAIMS_TOTAL).increment(1);
            return Ok(match previous {
                Some(old) if old.node != self.node => {
                    self.tell(&old.node, &tenant, &client_id, revision).await;
                    Claim::TookOver
                }
                _ => Claim::Claimed,
            });
        }
        tracing::warn!(%tenant, %client_id, "session owner contended; claim refused");
        Err(ReasonCode::SERVER_BUSY)
    }

    /// Tells `node` it lost the client id, and waits (bounded) for it to
    /// have asked its connection to close. No responders: it is gone.
    async fn tell(&self, node: &str, tenant: &Arc<str>, client_id: &Arc<str>, revision: u64) {
        metrics::counter!(TAKEOVERS_SENT_TOTAL).increment(1);
        let kick = Kick {
            tenant: tenant.clone(),
            client_id: client_id.clone(),
            revision,
        };
        let request = self.client.request(self.subject(node), kick.encode());
        match tokio::time::timeout(KICK_TIMEOUT, request).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(%node, error = %e, "old owner did not answer (gone)"),
            Err(_) => tracing::warn!(%node, "old owner did not answer in time; taken over anyway"),
        }
    }
}

impl SessionOwners for NatsOwners {
    fn claim(
        &self,
        tenant: &Arc<str>,
        client_id: &Arc<str>,
        _clean_start: bool,
    ) -> BoxFuture<Result<Claim, ReasonCode>> {
        Box::pin(
            self.inner
                .clone()
                .claim_key(tenant.clone(), client_id.clone()),
        )
    }

    fn release(&self, tenant: &Arc<str>, client_id: &Arc<str>) {
        let key = owner_key(tenant, client_id);
        let Some(Held { revision, .. }) = self.inner.held.lock().remove(&key) else {
            return;
        };
        // Deleted only if still ours: a newer claim anywhere moved the revision.
        let kv = self.inner.kv.clone();
        tokio::spawn(async move {
            if let Err(e) = kv
                .delete_expect_revision(key.as_str(), Some(revision))
                .await
            {
                tracing::debug!(error = %e, "session owner not released (claimed since)");
            }
        });
    }
}

/// The name of the bucket of session owners.
pub(crate) fn bucket(prefix: &str) -> String {
    format!("{prefix}_owners")
}

/// The node that owns a client id, from the value of its key.
pub(crate) fn owning_node(value: &[u8]) -> Option<String> {
    Owner::decode(value).map(|o| o.node.to_string())
}

/// The key of a client id's owner.
pub(crate) fn owner_key(tenant: &str, client_id: &str) -> String {
    format!("{}.{}", token(tenant), token(client_id))
}

/// The value of an owner key: the node and the claim's generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) node: Arc<str>,
    generation: u64,
}

impl Owner {
    fn encode(&self) -> Bytes {
        Bytes::from(format!("{} {}", self.node, self.generation))
    }

    pub(crate) fn decode(value: &[u8]) -> Option<Owner> {
        let text = std::str::from_utf8(value).ok()?;
        let (node, generation) = text.split_once(' ')?;
        Some(Owner {
            node: Arc::from(node),
            generation: generation.parse().ok()?,
        })
    }
}

/// "Another node claimed this client id at this revision."
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kick {
    tenant: Arc<str>,
    client_id: Arc<str>,
    revision: u64,
}

impl Kick {
    /// Revision (8 bytes), the tenant's length (4 bytes), tenant, client id.
    fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(12 + self.tenant.len() + self.client_id.len());
        out.put_u64(self.revision);
        out.put_u32(self.tenant.len() as u32);
        out.put_slice(self.tenant.as_bytes());
        out.put_slice(self.client_id.as_bytes());
        out.freeze()
    }

    fn decode(mut bytes: &[u8]) -> Option<Kick> {
        use bytes::Buf;
        if bytes.len() < 12 {
            return None;
        }
        let revision = bytes.get_u64();
        let tenant_len = bytes.get_u32() as usize;
        let tenant = std::str::from_utf8(bytes.get(..tenant_len)?).ok()?;
        let client_id = std::str::from_utf8(&bytes[tenant_len..]).ok()?;
        Some(Kick {
            tenant: Arc::from(tenant),
            client_id: Arc::from(client_id),
            revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_takeover_request_reads_back_as_written_and_garbage_is_refused() {
        let kick = Kick {
            tenant: Arc::from("t1"),
            client_id: Arc::from("dev\n1 é"),
            revision: 42,
        };
        assert_eq!(Kick::decode(&kick.encode()), Some(kick));
        assert_eq!(Kick::decode(b"short"), None);
        let mut lying = BytesMut::new();
        lying.put_u64(1);
        lying.put_u32(99);
        lying.put_slice(b"t");
        assert_eq!(Kick::decode(&lying), None);
    }

    #[test]
    fn an_owner_reads_back_as_written() {
        let owner = Owner {
            node: Arc::from("gw-1-0000abcd"),
            generation: 7,
        };
        assert_eq!(Owner::decode(&owner.encode()), Some(owner));
        assert_eq!(Owner::decode(b"nogeneration"), None);
    }
}
