//! [`KvWills`]: the wills of this node's connections, kept in the KV bucket
//! `<prefix>_wills` (key `<tenant>.<client id>`, tokens as `kv_key.rs`), so
//! that a surviving gateway publishes them if this one dies
//! (`survivors.rs`).
//!
//! - **Written** when a connection with a will attaches (any session, clean
//!   or persistent), before its CONNACK (bounded by [`CONNECT_WAIT`]): the
//!   will as an MQTT 5 PUBLISH, its delay, the session expiry that bounds
//!   the delay, and this node's incarnation. A plain put: the newest
//!   connection of a client id is the one whose will stands, and its write
//!   cancels a will an older connection left waiting (MQTT 5 §3.1.2.5).
//! - **Removed** when the will stops standing here: published by this node,
//!   discarded (a normal DISCONNECT, a shutdown), or its session ended; at
//!   the revision this node wrote, so a later connection's will stays. A
//!   connection without a will removes what this node kept for its client
//!   id and, when its claim took the id over from another node, that
//!   node's will too (read first: a client that never had one costs no
//!   write).
//! - One task writes in the order asked for each client id, so a
//!   connection's removal never overtakes its write; different client ids
//!   are written at once (up to 64).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aerie_core::Session;
use aerie_core::message::{codec, will_publish_properties};
use aerie_core::seams::{BoxFuture, Claim, Wills};
use aerie_proto::{Packet, ProtocolVersion, Publish, QoS, Will, WillProperties};
use async_nats::jetstream::{self, kv};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::future::join_all;
use tokio::sync::{mpsc, oneshot};

use crate::kv_cas::{CasError, open_bucket, purge_at_revision};
use crate::kv_key::token;

/// Wills written at CONNECT.
pub const KEPT_TOTAL: &str = "aerie_cluster_wills_kept_total";
/// Wills removed by the node that kept them (published or discarded there).
pub const REMOVED_TOTAL: &str = "aerie_cluster_wills_removed_total";
/// Wills of another node removed by a connection that took its client id
/// over (the new connection cancels them).
pub const CANCELLED_TOTAL: &str = "aerie_cluster_wills_cancelled_total";
/// Writes and removals NATS did not take (or not in time).
pub const FAILURES_TOTAL: &str = "aerie_cluster_will_failures_total";

/// The longest a CONNECT waits for its will to be kept; past it the
/// connection goes on (availability first) and the will is kept later.
pub const CONNECT_WAIT: Duration = Duration::from_secs(1);
/// The longest a shutdown waits for the removals queued by its closing
/// connections.
const FLUSH_WAIT: Duration = Duration::from_secs(3);

/// The bucket of wills.
pub fn bucket(prefix: &str) -> String {
    format!("{prefix}_wills")
}

/// The key of `client_id`'s will in `tenant` (the same as its owner's and
/// its session record's).
pub fn key(tenant: &str, client_id: &str) -> String {
    format!("{}.{}", token(tenant), token(client_id))
}

/// A will as the bucket keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// The incarnation of the node whose connection it is.
    pub node: Arc<str>,
    /// The session expiry interval of that connection: the will's delay is
    /// at most this (MQTT 5 §3.1.3.2.2).
    pub expiry: u32,
    /// When the connection closed and the will began to wait for its delay
    /// (Unix ms, the node's clock); None while the connection lives.
    pub waiting_since_ms: Option<u64>,
    pub will: Will,
}

/// The format byte of [`Kept::encode`].
const FORMAT: u8 = 1;

impl Kept {
    /// The seconds after its connection closed that the will is published.
    pub fn delay(&self) -> u32 {
        self.will
            .properties
            .will_delay_interval
            .unwrap_or(0)
            .min(self.expiry)
    }

    /// `u8 format | u32 expiry | u32 will delay | u64 waiting since (0:
    /// not waiting) | u16 node length | node | the will as an MQTT 5
    /// PUBLISH` (our codec round-trips every property a will can carry).
    pub fn encode(&self) -> Bytes {
        let w = &self.will;
        let p = &w.properties;
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: w.qos,
            retain: w.retain,
            topic: w.topic.clone(),
            packet_id: (w.qos != QoS::AtMostOnce).then_some(1),
            payload: w.payload.clone(),
            properties: will_publish_properties(p.clone()),
        });
        let mut out = BytesMut::with_capacity(16 + self.node.len() + w.payload.len());
        out.put_u8(FORMAT);
        out.put_u32(self.expiry);
        out.put_u32(p.will_delay_interval.unwrap_or(0));
        out.put_u64(self.waiting_since_ms.unwrap_or(0));
        out.put_u16(self.node.len() as u16);
        out.put_slice(self.node.as_bytes());
        // A will the decoder accepted in a CONNECT always encodes.
        let _ = aerie_proto::encode(&publish, ProtocolVersion::V5, &mut out);
        out.freeze()
    }

    /// [`Kept::encode`] undone; None if `value` is not one.
    pub fn decode(mut value: &[u8]) -> Option<Kept> {
        if value.len() < 19 || value.get_u8() != FORMAT {
            return None;
        }
        let expiry = value.get_u32();
        let delay = value.get_u32();
        let waiting_since_ms = Some(value.get_u64()).filter(|&t| t > 0);
        let node_len = usize::from(value.get_u16());
        let node = std::str::from_utf8(value.get(..node_len)?).ok()?;
        let p = codec::decode_publish(&value[node_len..]).ok()?;
        let props = p.properties;
        Some(Kept {
            node: Arc::from(node),
            expiry,
            waiting_since_ms,
            will: Will {
                topic: p.topic,
                payload: p.payload,
                qos: p.qos,
                retain: p.retain,
                properties: WillProperties {
                    will_delay_interval: (delay > 0).then_some(delay),
                    payload_format_indicator: props.payload_format_indicator,
                    message_expiry_interval: props.message_expiry_interval,
                    content_type: props.content_type,
                    response_topic: props.response_topic,
                    correlation_data: props.correlation_data,
                    user_properties: props.user_properties,
                },
            },
        })
    }
}

/// What the writer task is asked to do, in order.
enum Op {
    Connected {
        key: String,
        connection: u64,
        /// The encoded will, if the connection has one.
        kept: Option<Bytes>,
        took_over: bool,
        done: oneshot::Sender<()>,
    },
    /// The connection closed; its will waits for its delay.
    Waiting {
        key: String,
        connection: u64,
        kept: Bytes,
    },
    Ended {
        key: String,
        connection: Option<u64>,
    },
    Flush(oneshot::Sender<()>),
}

/// A will this node wrote: the revision of its write, and whose it is.
struct Held {
    revision: u64,
    connection: u64,
}

/// Wills kept in NATS KV (the scale-out shape's `Wills`).
pub struct KvWills {
    kv: kv::Store,
    node: Arc<str>,
    ops: mpsc::UnboundedSender<Op>,
}

impl KvWills {
    /// Opens (or makes) the bucket; waits for NATS as long as it takes.
    /// `node` is this node's incarnation (`nodes::incarnation`).
    pub async fn open(
        js: &jetstream::Context,
        prefix: &str,
        node: Arc<str>,
        replicas: usize,
    ) -> Arc<KvWills> {
        let kv = open_bucket(
            js,
            kv::Config {
                bucket: bucket(prefix),
                description: "Aerie: the standing wills of each gateway's connections".into(),
                history: 1,
                ..Default::default()
            },
            replicas,
        )
        .await;
        let (ops, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(kv.clone(), node.clone(), rx));
        Arc::new(KvWills { kv, node, ops })
    }

    /// The bucket (for the survivors' reads).
    pub(crate) fn kv(&self) -> &kv::Store {
        &self.kv
    }

    /// Waits (bounded) until what was asked so far is written: at shutdown,
    /// before this node stops saying it is alive, so that survivors do not
    /// publish the wills its closing connections discarded.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Flush(tx)).is_ok()
            && tokio::time::timeout(FLUSH_WAIT, rx).await.is_err()
        {
            tracing::warn!("the wills of closing connections were not all removed in time");
        }
    }
}

impl Wills for KvWills {
    fn connected(
        &self,
        session: &Arc<Session>,
        connection: u64,
        will: Option<&Will>,
        expiry: u32,
        claim: Claim,
    ) -> BoxFuture<()> {
        let kept = will.map(|w| {
            Kept {
                node: self.node.clone(),
                expiry,
                waiting_since_ms: None,
                will: w.clone(),
            }
            .encode()
        });
        let waits = kept.is_some();
        let (done, written) = oneshot::channel();
        let _ = self.ops.send(Op::Connected {
            key: key(&session.tenant, &session.client_id),
            connection,
            kept,
            took_over: claim == Claim::TookOver,
            done,
        });
        Box::pin(async move {
            // Only a will is waited for: a removal changes nothing the
            // client can see from its CONNACK.
            if waits && tokio::time::timeout(CONNECT_WAIT, written).await.is_err() {
                metrics::counter!(FAILURES_TOTAL).increment(1);
                tracing::warn!(
                    "a will was not kept in time; the connection goes on without waiting"
                );
            }
        })
    }

    fn waiting(&self, session: &Arc<Session>, connection: u64, will: &Will, expiry: u32) {
        let kept = Kept {
            node: self.node.clone(),
            expiry,
            waiting_since_ms: Some(aerie_core::store::unix_ms_now()),
            will: will.clone(),
        };
        let _ = self.ops.send(Op::Waiting {
            key: key(&session.tenant, &session.client_id),
            connection,
            kept: kept.encode(),
        });
    }

    fn ended(&self, tenant: &Arc<str>, client_id: &Arc<str>, connection: Option<u64>) {
        let _ = self.ops.send(Op::Ended {
            key: key(tenant, client_id),
            connection,
        });
    }
}

/// The most KV operations the writer has in flight at once (each of
/// another client id).
const IN_FLIGHT: usize = 64;

impl Op {
    /// The key it is about (None: a flush).
    fn key(&self) -> Option<&str> {
        match self {
            Op::Connected { key, .. } | Op::Waiting { key, .. } | Op::Ended { key, .. } => {
                Some(key)
            }
            Op::Flush(_) => None,
        }
    }
}

/// One KV operation of the writer, decided from what it holds.
enum Action {
    Keep {
        key: String,
        value: Bytes,
        connection: u64,
        done: oneshot::Sender<()>,
    },
    /// Write over this node's will at `revision` (unless a later
    /// connection's replaced it).
    Rewrite {
        key: String,
        value: Bytes,
        revision: u64,
        connection: u64,
    },
    Remove {
        key: String,
        revision: u64,
    },
    Cancel {
        key: String,
    },
}

/// Writes and removes wills: in the order asked for each client id, and
/// up to [`IN_FLIGHT`] client ids at once (a burst of CONNECTs does not
/// wait for one round trip per will in a row).
async fn write(kv: kv::Store, node: Arc<str>, mut ops: mpsc::UnboundedReceiver<Op>) {
    let mut held: HashMap<String, Held> = HashMap::new();
    let mut next: Option<Op> = None;
    loop {
        let first = match next.take() {
            Some(op) => op,
            None => match ops.recv().await {
                Some(op) => op,
                None => return,
            },
        };
        // What is queued, up to a second op of one client id (it waits for
        // the next round, so each id's ops keep their order) or a flush
        // (answered once what came before it is done).
        let mut keys = HashSet::new();
        let mut actions = Vec::new();
        let mut op = Some(first);
        while let Some(o) = op.take() {
            let Some(key) = o.key() else {
                match o {
                    Op::Flush(done) if actions.is_empty() => {
                        let _ = done.send(());
                    }
                    flush => next = Some(flush),
                }
                break;
            };
            if !keys.insert(key.to_owned()) {
                next = Some(o);
                break;
            }
            actions.extend(decide(&mut held, o));
            if keys.len() >= IN_FLIGHT {
                break;
            }
            op = ops.try_recv().ok();
        }
        let kept = join_all(actions.into_iter().map(|a| run(&kv, &node, a))).await;
        held.extend(kept.into_iter().flatten());
    }
}

/// The KV operation `op` takes, given what this node holds.
fn decide(held: &mut HashMap<String, Held>, op: Op) -> Option<Action> {
    match op {
        Op::Connected {
            key,
            connection,
            kept: Some(value),
            done,
            ..
        } => {
            held.remove(&key);
            Some(Action::Keep {
                key,
                value,
                connection,
                done,
            })
        }
        Op::Connected {
            key,
            kept: None,
            took_over,
            done,
            ..
        } => {
            let _ = done.send(());
            match held.remove(&key) {
                Some(h) => Some(Action::Remove {
                    key,
                    revision: h.revision,
                }),
                None => took_over.then_some(Action::Cancel { key }),
            }
        }
        Op::Waiting {
            key,
            connection,
            kept,
        } => {
            if held.get(&key).is_none_or(|h| h.connection != connection) {
                return None;
            }
            let h = held.remove(&key)?;
            Some(Action::Rewrite {
                key,
                value: kept,
                revision: h.revision,
                connection,
            })
        }
        Op::Ended { key, connection } => {
            let ours = held
                .get(&key)
                .is_some_and(|h| connection.is_none_or(|c| c == h.connection));
            if !ours {
                // A later connection's will: not this one's to remove.
                return None;
            }
            let h = held.remove(&key)?;
            Some(Action::Remove {
                key,
                revision: h.revision,
            })
        }
        Op::Flush(_) => None,
    }
}

/// Runs `action`; what this node holds after a will was kept.
async fn run(kv: &kv::Store, node: &str, action: Action) -> Option<(String, Held)> {
    match action {
        Action::Keep {
            key,
            value,
            connection,
            done,
        } => {
            let kept = match kv.put(key.as_str(), value).await {
                Ok(revision) => {
                    metrics::counter!(KEPT_TOTAL).increment(1);
                    Some((
                        key,
                        Held {
                            revision,
                            connection,
                        },
                    ))
                }
                Err(error) => {
                    metrics::counter!(FAILURES_TOTAL).increment(1);
                    tracing::warn!(%key, %error, "cannot keep a will off this node");
                    None
                }
            };
            let _ = done.send(());
            kept
        }
        Action::Rewrite {
            key,
            value,
            revision,
            connection,
        } => {
            let revision = match kv.update(key.as_str(), value, revision).await {
                Ok(revision) => revision,
                // A later connection's will: not this node's any more.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => return None,
                Err(error) => {
                    metrics::counter!(FAILURES_TOTAL).increment(1);
                    tracing::warn!(%key, %error, "cannot say when a kept will began to wait");
                    revision
                }
            };
            Some((
                key,
                Held {
                    revision,
                    connection,
                },
            ))
        }
        Action::Remove { key, revision } => {
            remove(kv, &key, revision).await;
            None
        }
        Action::Cancel { key } => {
            cancel_elsewhere(kv, node, &key).await;
            None
        }
    }
}

/// Removes this node's will at `key` if it is still at `revision`.
async fn remove(kv: &kv::Store, key: &str, revision: u64) {
    match purge_at_revision(kv, key, revision).await {
        Ok(()) => metrics::counter!(REMOVED_TOTAL).increment(1),
        // A later connection (maybe on another node) wrote it since.
        Err(CasError::Conflict) => {}
        Err(CasError::Failed(error)) => {
            metrics::counter!(FAILURES_TOTAL).increment(1);
            tracing::warn!(%key, %error, "cannot remove a will kept off this node");
        }
    }
}

/// A connection without a will took `key`'s client id over from another
/// node: a will that node kept, still waiting for its delay, is cancelled.
async fn cancel_elsewhere(kv: &kv::Store, me: &str, key: &str) {
    let entry = match kv.entry(key).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => e,
        Ok(_) => return,
        Err(error) => {
            metrics::counter!(FAILURES_TOTAL).increment(1);
            tracing::warn!(%key, %error, "cannot read a will to cancel it");
            return;
        }
    };
    if Kept::decode(&entry.value).is_some_and(|k| &*k.node == me) {
        return;
    }
    match purge_at_revision(kv, key, entry.revision).await {
        Ok(()) => metrics::counter!(CANCELLED_TOTAL).increment(1),
        Err(CasError::Conflict) => {}
        Err(CasError::Failed(error)) => {
            metrics::counter!(FAILURES_TOTAL).increment(1);
            tracing::warn!(%key, %error, "cannot cancel another gateway's will");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn will(delay: Option<u32>) -> Will {
        Will {
            topic: "status/dev-1".into(),
            payload: Bytes::from_static(b"offline \x00\xff"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: delay,
                payload_format_indicator: Some(0),
                message_expiry_interval: Some(60),
                content_type: Some("text/plain".into()),
                response_topic: Some("reply/here".into()),
                correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                user_properties: vec![("k".into(), "v".into())],
            },
        }
    }

    #[test]
    fn a_kept_will_reads_back_with_every_property() {
        for (delay, waiting_since_ms) in [(None, None), (Some(3), Some(1_765_000_000_000))] {
            let kept = Kept {
                node: Arc::from("gw-a-0000beef"),
                expiry: 300,
                waiting_since_ms,
                will: will(delay),
            };
            assert_eq!(Kept::decode(&kept.encode()), Some(kept));
        }
        assert_eq!(Kept::decode(b""), None);
        assert_eq!(Kept::decode(b"\x09garbage-garbage"), None);
    }

    fn held_by(connection: u64) -> HashMap<String, Held> {
        HashMap::from([(
            "t.c".to_owned(),
            Held {
                revision: 7,
                connection,
            },
        )])
    }

    fn connected(kept: Option<Bytes>, took_over: bool) -> Op {
        Op::Connected {
            key: "t.c".to_owned(),
            connection: 3,
            kept,
            took_over,
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn only_the_connection_whose_will_is_held_removes_it() {
        let ended = |connection| Op::Ended {
            key: "t.c".to_owned(),
            connection,
        };
        let mut held = held_by(2);
        assert!(
            decide(&mut held, ended(Some(1))).is_none(),
            "an older connection's end"
        );
        assert!(
            held.contains_key("t.c"),
            "the later connection's will stays held"
        );
        let removed = decide(&mut held, ended(Some(2)));
        assert!(matches!(removed, Some(Action::Remove { revision: 7, .. })));
        let mut held = held_by(2);
        assert!(matches!(
            decide(&mut held, ended(None)),
            Some(Action::Remove { .. })
        ));
        assert!(held.is_empty());
    }

    #[test]
    fn only_the_connection_whose_will_is_held_says_when_it_began_to_wait() {
        let waiting = |connection| Op::Waiting {
            key: "t.c".to_owned(),
            connection,
            kept: Bytes::from_static(b"w"),
        };
        let mut held = held_by(2);
        assert!(
            decide(&mut held, waiting(1)).is_none(),
            "an older connection"
        );
        assert!(held.contains_key("t.c"));
        assert!(matches!(
            decide(&mut held, waiting(2)),
            Some(Action::Rewrite {
                revision: 7,
                connection: 2,
                ..
            })
        ));
    }

    #[test]
    fn a_connection_without_a_will_removes_this_nodes_or_cancels_the_one_it_took_over() {
        let mut held = held_by(2);
        assert!(matches!(
            decide(&mut held, connected(None, false)),
            Some(Action::Remove { revision: 7, .. })
        ));
        let mut none = HashMap::new();
        assert!(
            decide(&mut none, connected(None, false)).is_none(),
            "costs nothing"
        );
        assert!(matches!(
            decide(&mut none, connected(None, true)),
            Some(Action::Cancel { .. })
        ));
        let kept = decide(
            &mut held_by(2),
            connected(Some(Bytes::from_static(b"w")), false),
        );
        assert!(matches!(kept, Some(Action::Keep { connection: 3, .. })));
    }

    #[test]
    fn the_delay_is_bounded_by_the_session_expiry() {
        let kept = |delay, expiry| Kept {
            node: Arc::from("n"),
            expiry,
            waiting_since_ms: None,
            will: will(delay),
        };
        assert_eq!(kept(Some(30), 300).delay(), 30);
        assert_eq!(kept(Some(30), 5).delay(), 5, "the session ends first");
        assert_eq!(kept(Some(30), 0).delay(), 0, "a clean session: at once");
        assert_eq!(kept(None, 300).delay(), 0);
    }
}
