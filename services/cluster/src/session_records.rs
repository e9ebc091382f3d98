//! [`KvSessionRecords`]: persistent sessions kept in the KV bucket
//! `<prefix>_sessions`, so a session resumes on any gateway with its
//! subscriptions and what it missed.
//!
//! - **The record** (key `<tenant>.<client id>`, tokens as `kv_key.rs`):
//!   subscriptions (filter, options, identifier), expiry interval, when a
//!   detached session expires, and a **cursor**: a wall-clock time from
//!   which a resume replays the tenant's message log (`message_log.rs`).
//! - **The cursor** is the last moment this node saw the session hold no
//!   unacknowledged delivery (nothing queued; detached: nothing in flight),
//!   minus [`MARGIN`] for backbone transit and clock skew between nodes,
//!   and never later than the oldest delivery its attached client has not
//!   acknowledged (`Session::in_flight_for`), minus the same margin. A
//!   wall-clock time, not a log sequence, because live deliveries cross the
//!   backbone without theirs. Every message the session had not had by
//!   then was published after it, so a replay from it misses none; it
//!   repeats at most what was delivered in the margin (and, online, what
//!   was delivered since the last write): QoS 1 duplicates, which MQTT
//!   allows; never a QoS 2 one (next item).
//! - **The outbound window** (the gateway's `connection/window.rs`): the
//!   deliveries in flight (packet id, message id, stage) and the QoS 2
//!   messages completed since about the cursor. A QoS 2 PUBLISH goes out,
//!   and a PUBREL, only once a write holds it; QoS 1 sends and all acks
//!   ride along with the next write. A resume resends what was in flight
//!   (DUP under its packet id, or PUBREL) and skips what was completed.
//! - **Writes**, with compare-and-set at the revision this node last wrote
//!   or read (`kv_cas.rs`), in order by one task: at SUBSCRIBE, UNSUBSCRIBE,
//!   CONNECT and detach of a persistent session, and every [`TICK`] for an
//!   attached one whose cursor moved (only once something was queued for it
//!   and then acknowledged: an idle session is not written). A write that finds another revision
//!   means another gateway took the session: this node stops writing it
//!   (attached here, it writes over it: the other write was the previous
//!   gateway's detach, landed after this node read the record).
//!   Deleted when the session ends here (at the revision this node wrote),
//!   or at any revision by a clean start.
//! - **Resume**: the record is read; the replay (once the session's
//!   subscriptions are live again) is an ephemeral pull consumer on the log
//!   from the cursor, filtered on the subjects of the session's filters,
//!   read up to the stream's last sequence when it starts, then deleted:
//!   consumers exist only while sessions resume.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use aerie_core::message::Persisted;
use aerie_core::message::codec;
use aerie_core::metrics::{DropReason, count_drop};
use aerie_core::seams::{
    BoxFuture, FlightStage, RecordedFlight, Resumed, SessionRecords, WindowChange,
};
use aerie_core::{Limit, Message, MessageId, NodeId, Session, SubscriptionSpec};
use aerie_proto::{QoS, RetainHandling, SubscriptionOptions, topic};
use async_nats::jetstream::{self, consumer, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::kv_cas::{CasError, open_bucket, purge_at_revision, write_at_revision};
use crate::kv_key::token;
use crate::subjects::Subjects;

/// Session records written (or deleted), by `op`: `put`, `delete`.
pub const WRITES_TOTAL: &str = "aerie_cluster_session_record_writes_total";
/// Writes that found another gateway's revision: it holds the session now.
pub const CONFLICTS_TOTAL: &str = "aerie_cluster_session_record_conflicts_total";
/// Writes NATS did not take (retried at the next tick).
pub const FAILURES_TOTAL: &str = "aerie_cluster_session_record_failures_total";
/// Sessions resumed from a record another gateway wrote.
pub const RESUMES_TOTAL: &str = "aerie_cluster_session_resumes_total";
/// Messages replayed to resumed sessions.
pub const REPLAYED_TOTAL: &str = "aerie_cluster_session_replayed_messages_total";
/// Resumes whose cursor was older than the log's oldest message: what the
/// log no longer held is lost to that session.
pub const CURSOR_LOST_TOTAL: &str = "aerie_cluster_session_cursor_lost_total";

/// How often an attached session's moved cursor is written: what a
/// gateway's death costs a session in replayed duplicates, at most.
pub const TICK: Duration = Duration::from_secs(1);
/// Taken off the cursor for backbone transit and clock skew between nodes.
pub const MARGIN: Duration = Duration::from_secs(2);
/// How long an inbound QoS 2 PUBLISH waits for its id to be recorded before
/// it is refused as the store being unavailable.
const KEEP_WAIT: Duration = Duration::from_secs(5);
/// How long a record adopted by a resume waits for its session to attach.
const ADOPTED_FOR: Duration = Duration::from_secs(30);
/// Messages fetched per pull of a replay.
const REPLAY_BATCH: usize = 256;
/// A replay's pull waits this long for a batch, then pulls again.
const REPLAY_WAIT: Duration = Duration::from_millis(500);
/// A replay gives up after this (logged): JetStream is too slow to serve it.
const REPLAY_WITHIN: Duration = Duration::from_secs(10);

/// The bucket of session records.
pub fn bucket(prefix: &str) -> String {
    format!("{prefix}_sessions")
}

/// The key of `client_id`'s record in `tenant`.
pub fn key(tenant: &str, client_id: &str) -> String {
    format!("{}.{}", token(tenant), token(client_id))
}

/// A record as the bucket holds it (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Record {
    expiry: u32,
    /// When a detached session expires (Unix ms); None while attached or
    /// never expiring.
    #[serde(default)]
    expires_at_ms: Option<u64>,
    /// Replay from here (Unix ms).
    cursor_ms: u64,
    /// Filter, options (the SUBSCRIBE byte), identifier.
    subs: Vec<(String, u8, Option<u32>)>,
    /// Inbound QoS 2 packet ids and the ids (node, sequence) of their
    /// messages, recorded before those were routed, not yet released by a
    /// PUBREL (as of this write).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    q2: Vec<(u16, u64, u64)>,
    /// Outbound deliveries in flight, in send order: packet id, message id
    /// (node, sequence), stage (`stage_code`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    out: Vec<(u16, u64, u64, u8)>,
    /// QoS 2 deliveries the client completed that a replay from the cursor
    /// could still read: message id (node, sequence), when (Unix ms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    done: Vec<(u64, u64, u64)>,
}

fn stage_code(stage: FlightStage) -> u8 {
    match stage {
        FlightStage::Qos1 => 1,
        FlightStage::Qos2 => 2,
        FlightStage::Released => 3,
    }
}

fn stage_of(code: u8) -> Option<FlightStage> {
    match code {
        1 => Some(FlightStage::Qos1),
        2 => Some(FlightStage::Qos2),
        3 => Some(FlightStage::Released),
        _ => None,
    }
}

fn message_id(node: u64, seq: u64) -> MessageId {
    MessageId {
        node: NodeId(node),
        seq,
    }
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    o.qos as u8
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
}

fn options_of(b: u8) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::from_u8(b & 3).unwrap_or(QoS::AtMostOnce),
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling: match (b >> 4) & 3 {
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => RetainHandling::SendAtSubscribe,
        },
    }
}

impl Record {
    fn inbound_qos2(&self) -> BTreeMap<u16, MessageId> {
        self.q2
            .iter()
            .map(|&(packet_id, node, seq)| (packet_id, message_id(node, seq)))
            .collect()
    }

    fn window(&self) -> Window {
        let mut window = Window::default();
        for &(packet_id, node, seq, stage) in &self.out {
            if let Some(state) = stage_of(stage) {
                window.sent(RecordedFlight {
                    packet_id,
                    id: message_id(node, seq),
                    state,
                });
            }
        }
        window.completed = self
            .done
            .iter()
            .map(|&(node, seq, at)| (message_id(node, seq), at))
            .collect();
        window
    }

    fn subscriptions(&self) -> Vec<(Arc<str>, SubscriptionSpec)> {
        self.subs
            .iter()
            .map(|(f, o, id)| {
                let spec = SubscriptionSpec {
                    options: options_of(*o),
                    id: *id,
                };
                (Arc::from(f.as_str()), spec)
            })
            .collect()
    }
}

fn unix_ms_now() -> u64 {
    aerie_core::store::unix_ms_now()
}

/// What the writer task is asked to do, in order.
enum Op {
    Changed(Weak<Session>),
    Ended {
        tenant: Arc<str>,
        client_id: Arc<str>,
        starts_over: bool,
    },
    /// A resume read this record at `revision`: this node writes it next.
    Adopted {
        key: String,
        revision: u64,
        cursor_ms: u64,
        inbound_qos2: BTreeMap<u16, MessageId>,
        window: Window,
    },
    /// Changes to the outbound window; `done`: written now, and told.
    Window {
        session: Weak<Session>,
        changes: Vec<WindowChange>,
        done: Option<oneshot::Sender<bool>>,
    },
    /// An inbound QoS 2 packet id recorded with its message's id (the
    /// PUBLISH is routed once the record holds it), or removed (`None`:
    /// the PUBREL's PUBCOMP waits for that).
    Qos2 {
        session: Weak<Session>,
        packet_id: u16,
        id: Option<MessageId>,
        done: oneshot::Sender<bool>,
    },
}

/// Whether the record held an inbound QoS 2 change within [`KEEP_WAIT`].
fn wait_recorded(recorded: oneshot::Receiver<bool>) -> BoxFuture<bool> {
    Box::pin(async move {
        matches!(
            tokio::time::timeout(KEEP_WAIT, recorded).await,
            Ok(Ok(true))
        )
    })
}

/// Applies an inbound QoS 2 change to the record this node keeps of
/// `session`.
fn apply_qos2(
    held: &mut HashMap<String, Held>,
    session: &Weak<Session>,
    packet_id: u16,
    id: Option<MessageId>,
) {
    let Some(s) = session.upgrade() else {
        return;
    };
    let ids = &mut held
        .entry(key(&s.tenant, &s.client_id))
        .or_insert_with(Held::new)
        .inbound_qos2;
    match id {
        Some(id) => ids.insert(packet_id, id),
        None => ids.remove(&packet_id),
    };
}

/// Applies outbound window changes to the record this node keeps of
/// `session`.
fn apply_window(
    held: &mut HashMap<String, Held>,
    session: &Weak<Session>,
    changes: Vec<WindowChange>,
) {
    let Some(s) = session.upgrade() else {
        return;
    };
    let window = &mut held
        .entry(key(&s.tenant, &s.client_id))
        .or_insert_with(Held::new)
        .window;
    let now = unix_ms_now();
    for change in changes {
        window.apply(change, now);
    }
}

/// A session's outbound window as its record keeps it.
#[derive(Debug, Default, Clone, PartialEq)]
struct Window {
    /// Send order → flight.
    flights: BTreeMap<u64, RecordedFlight>,
    /// Packet id → send order.
    order_of: HashMap<u16, u64>,
    next_order: u64,
    /// Completed QoS 2 messages and when (Unix ms).
    completed: Vec<(MessageId, u64)>,
}

impl Window {
    fn sent(&mut self, flight: RecordedFlight) {
        self.remove(flight.packet_id);
        self.next_order += 1;
        self.flights.insert(self.next_order, flight);
        self.order_of.insert(flight.packet_id, self.next_order);
    }

    fn remove(&mut self, packet_id: u16) -> Option<RecordedFlight> {
        let order = self.order_of.remove(&packet_id)?;
        self.flights.remove(&order)
    }

    fn apply(&mut self, change: WindowChange, now_ms: u64) {
        match change {
            WindowChange::Sent(flight) => self.sent(flight),
            WindowChange::Released(packet_id) => {
                if let Some(f) = self
                    .order_of
                    .get(&packet_id)
                    .and_then(|o| self.flights.get_mut(o))
                {
                    f.state = FlightStage::Released;
                }
            }
            WindowChange::Acknowledged(packet_id) => {
                if let Some(f) = self.remove(packet_id)
                    && f.state != FlightStage::Qos1
                {
                    self.completed.push((f.id, now_ms));
                }
            }
            WindowChange::Forgotten(packet_id) => {
                self.remove(packet_id);
            }
        }
    }

    /// Completed QoS 2 messages a replay from `cursor_ms` can no longer
    /// read (their completion is older than the cursor by the margin) are
    /// forgotten.
    fn prune(&mut self, cursor_ms: u64) {
        let margin = MARGIN.as_millis() as u64;
        self.completed.retain(|&(_, at)| at + margin >= cursor_ms);
    }

    fn recorded(&self) -> Vec<RecordedFlight> {
        self.flights.values().copied().collect()
    }

    fn out(&self) -> Vec<(u16, u64, u64, u8)> {
        self.flights
            .values()
            .map(|f| (f.packet_id, f.id.node.0, f.id.seq, stage_code(f.state)))
            .collect()
    }

    fn done(&self) -> Vec<(u64, u64, u64)> {
        self.completed
            .iter()
            .map(|(id, at)| (id.node.0, id.seq, *at))
            .collect()
    }
}

/// A record this node writes.
struct Held {
    session: Weak<Session>,
    revision: Option<u64>,
    cursor_ms: u64,
    /// What was last written (None: not yet, or failed).
    written: Option<Record>,
    /// When it was adopted from a resume's read (its session attaches
    /// just after).
    adopted: Option<tokio::time::Instant>,
    /// Inbound QoS 2 ids recorded and not released.
    inbound_qos2: BTreeMap<u16, MessageId>,
    /// The outbound window.
    window: Window,
}

impl Held {
    fn new() -> Held {
        Held {
            session: Weak::new(),
            revision: None,
            cursor_ms: 0,
            written: None,
            adopted: None,
            inbound_qos2: BTreeMap::new(),
            window: Window::default(),
        }
    }

    /// Whether it is still worth keeping: its session lives here, or a
    /// resume adopted it a moment ago.
    fn live(&self) -> bool {
        self.session.strong_count() > 0 || self.adopted.is_some_and(|at| at.elapsed() < ADOPTED_FOR)
    }
}

/// Persistent sessions in NATS KV (the scale-out shape's `SessionRecords`).
pub struct KvSessionRecords {
    kv: kv::Store,
    js: jetstream::Context,
    prefix: String,
    subjects: Subjects,
    ops: mpsc::UnboundedSender<Op>,
}

impl KvSessionRecords {
    /// Opens (or makes) the bucket; waits for NATS as long as it takes. Its
    /// writer ends with `shutdown`.
    pub async fn open(
        client: async_nats::Client,
        prefix: &str,
        replicas: usize,
        shutdown: CancellationToken,
    ) -> Arc<KvSessionRecords> {
        let js = jetstream::new(client);
        let kv = open_bucket(
            &js,
            kv::Config {
                bucket: bucket(prefix),
                description: "Aerie: persistent sessions (subscriptions, replay cursor)".into(),
                history: 1,
                ..Default::default()
            },
            replicas,
        )
        .await;
        let (ops, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(kv.clone(), rx, shutdown));
        Arc::new(KvSessionRecords {
            kv,
            js,
            prefix: prefix.to_owned(),
            subjects: Subjects::new(prefix, "l"),
            ops,
        })
    }
}

impl KvSessionRecords {
    /// Asks the writer to record (`Some`) or remove an inbound QoS 2 id.
    fn record_qos2(
        &self,
        session: &Arc<Session>,
        packet_id: u16,
        id: Option<MessageId>,
    ) -> Option<BoxFuture<bool>> {
        if session.expiry_interval() == 0 {
            // Ends with its connection: a resend elsewhere starts anew.
            return None;
        }
        let (done, recorded) = oneshot::channel();
        let _ = self.ops.send(Op::Qos2 {
            session: Arc::downgrade(session),
            packet_id,
            id,
            done,
        });
        Some(wait_recorded(recorded))
    }
}

impl SessionRecords for KvSessionRecords {
    fn changed(&self, session: &Arc<Session>) {
        let _ = self.ops.send(Op::Changed(Arc::downgrade(session)));
    }

    fn ended(&self, tenant: &Arc<str>, client_id: &Arc<str>, starts_over: bool) {
        let _ = self.ops.send(Op::Ended {
            tenant: tenant.clone(),
            client_id: client_id.clone(),
            starts_over,
        });
    }

    fn keep_inbound_qos2(
        &self,
        session: &Arc<Session>,
        packet_id: u16,
        id: MessageId,
    ) -> Option<BoxFuture<bool>> {
        self.record_qos2(session, packet_id, Some(id))
    }

    fn released_inbound_qos2(
        &self,
        session: &Arc<Session>,
        packet_id: u16,
    ) -> Option<BoxFuture<bool>> {
        self.record_qos2(session, packet_id, None)
    }

    fn keeps_windows(&self) -> bool {
        true
    }

    fn window_changed(
        &self,
        session: &Arc<Session>,
        changes: Vec<WindowChange>,
        wait: bool,
    ) -> Option<BoxFuture<bool>> {
        let (done, recorded) = if wait {
            let (done, recorded) = oneshot::channel();
            (Some(done), Some(recorded))
        } else {
            (None, None)
        };
        let _ = self.ops.send(Op::Window {
            session: Arc::downgrade(session),
            changes,
            done,
        });
        recorded.map(wait_recorded)
    }

    fn resume(
        &self,
        tenant: &Arc<str>,
        client_id: &Arc<str>,
        keep_at_most: usize,
    ) -> BoxFuture<Option<Resumed>> {
        let (kv, js, ops) = (self.kv.clone(), self.js.clone(), self.ops.clone());
        let stream = crate::message_log::stream_name(&self.prefix, tenant);
        let subjects = self.subjects.clone();
        let (tenant, client_id) = (tenant.clone(), client_id.clone());
        Box::pin(async move {
            let key = key(&tenant, &client_id);
            let entry = match kv.entry(&key).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => e,
                Ok(_) => return None,
                Err(error) => {
                    tracing::warn!(%tenant, %client_id, %error, "cannot read the session record; the session starts new");
                    return None;
                }
            };
            let record: Record = match serde_json::from_slice(&entry.value) {
                Ok(r) => r,
                Err(error) => {
                    tracing::warn!(%tenant, %client_id, %error, "a session record does not decode; the session starts new");
                    return None;
                }
            };
            if record.expires_at_ms.is_some_and(|at| at <= unix_ms_now()) {
                // Expired while its gateway was gone: it ends here.
                let _ = kv.purge_expect_revision(&key, Some(entry.revision)).await;
                return None;
            }
            let inbound_qos2 = record.inbound_qos2();
            let window = record.window();
            let outbound = window.recorded();
            let completed_qos2 = window.completed.iter().map(|(id, _)| *id).collect();
            let _ = ops.send(Op::Adopted {
                key,
                revision: entry.revision,
                cursor_ms: record.cursor_ms,
                inbound_qos2: inbound_qos2.clone(),
                window,
            });
            metrics::counter!(RESUMES_TOTAL).increment(1);
            let subscriptions = record.subscriptions();
            let replay = Replay {
                js,
                stream,
                subjects,
                tenant,
                client_id,
                filters: subscriptions
                    .iter()
                    .map(|(f, _)| f.clone())
                    .filter(|f| !f.starts_with("$share/"))
                    .collect(),
                cursor_ms: record.cursor_ms,
                keep_at_most,
            };
            Some(Resumed {
                subscriptions,
                replay: Box::pin(replay.read()),
                inbound_qos2: inbound_qos2.into_iter().collect(),
                outbound,
                completed_qos2,
            })
        })
    }
}

/// Writes records in the order asked, and moved cursors every [`TICK`].
async fn write(kv: kv::Store, mut ops: mpsc::UnboundedReceiver<Op>, shutdown: CancellationToken) {
    let mut held: HashMap<String, Held> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    // An op taken from the channel while coalescing, handled next.
    let mut next: Option<Op> = None;
    loop {
        let op = match next.take() {
            Some(op) => op,
            None => tokio::select! {
                op = ops.recv() => match op {
                    Some(op) => op,
                    None => return,
                },
                _ = tick.tick() => {
                    // Sessions that went away without ending here (another
                    // gateway took them over): nothing more to write.
                    held.retain(|_, h| h.live());
                    let due: Vec<Arc<Session>> = held.values().filter_map(|h| h.session.upgrade()).filter(|s| s.is_attached()).collect();
                    for session in due {
                        put(&kv, &mut held, &session).await;
                    }
                    continue;
                }
                () = shutdown.cancelled() => return,
            },
        };
        match op {
            Op::Changed(session) => {
                let mut recorded = Vec::new();
                next = coalesce(&mut ops, &session, &mut held, &mut recorded);
                if let Some(session) = session.upgrade() {
                    let ok = put(&kv, &mut held, &session).await;
                    tell(recorded, ok);
                }
            }
            Op::Qos2 {
                session,
                packet_id,
                id,
                done,
            } => {
                let mut recorded = vec![done];
                apply_qos2(&mut held, &session, packet_id, id);
                next = coalesce(&mut ops, &session, &mut held, &mut recorded);
                // A session gone meanwhile routes nothing more: false.
                let ok = match session.upgrade() {
                    Some(session) => put(&kv, &mut held, &session).await,
                    None => false,
                };
                tell(recorded, ok);
            }
            Op::Ended {
                tenant,
                client_id,
                starts_over,
            } => {
                end(&kv, &mut held, &key(&tenant, &client_id), starts_over).await;
            }
            Op::Adopted {
                key,
                revision,
                cursor_ms,
                inbound_qos2,
                window,
            } => {
                held.insert(
                    key,
                    Held {
                        revision: Some(revision),
                        cursor_ms,
                        adopted: Some(tokio::time::Instant::now()),
                        inbound_qos2,
                        window,
                        ..Held::new()
                    },
                );
            }
            Op::Window {
                session,
                changes,
                done,
            } => {
                apply_window(&mut held, &session, changes);
                // Without a waiter, the next tick (or change) writes it.
                if let Some(done) = done {
                    let mut recorded = vec![done];
                    next = coalesce(&mut ops, &session, &mut held, &mut recorded);
                    let ok = match session.upgrade() {
                        Some(session) => put(&kv, &mut held, &session).await,
                        None => false,
                    };
                    tell(recorded, ok);
                }
            }
        }
    }
}

/// Takes the changes of `session` queued right behind one of its changes:
/// one write says them all (a SUBSCRIBE of 20 filters is 20 changes; a
/// burst of QoS 2 PUBLISHes, as many ids). The first other op is returned,
/// to be handled next, so the order holds.
fn coalesce(
    ops: &mut mpsc::UnboundedReceiver<Op>,
    session: &Weak<Session>,
    held: &mut HashMap<String, Held>,
    recorded: &mut Vec<oneshot::Sender<bool>>,
) -> Option<Op> {
    while let Ok(op) = ops.try_recv() {
        match op {
            Op::Changed(same) if Weak::ptr_eq(&same, session) => {}
            Op::Qos2 {
                session: same,
                packet_id,
                id,
                done,
            } if Weak::ptr_eq(&same, session) => {
                apply_qos2(held, &same, packet_id, id);
                recorded.push(done);
            }
            Op::Window {
                session: same,
                changes,
                done,
            } if Weak::ptr_eq(&same, session) => {
                apply_window(held, &same, changes);
                recorded.extend(done);
            }
            other => return Some(other),
        }
    }
    None
}

/// Tells the QoS 2 PUBLISHes waiting for a write whether their ids are in it.
fn tell(recorded: Vec<oneshot::Sender<bool>>, ok: bool) {
    for done in recorded {
        let _ = done.send(ok);
    }
}

/// Writes `session`'s record if it changed (deletes it if the session is
/// no longer persistent). Whether the bucket holds it as it is now (true
/// too when there is nothing to hold: the session is not persistent).
async fn put(kv: &kv::Store, held: &mut HashMap<String, Held>, session: &Arc<Session>) -> bool {
    let key = key(&session.tenant, &session.client_id);
    let expiry = session.expiry_interval();
    if expiry == 0 {
        if held.contains_key(&key) {
            end(kv, held, &key, false).await;
        }
        return true;
    }
    let now = unix_ms_now();
    let h = held.entry(key.clone()).or_insert_with(Held::new);
    h.session = Arc::downgrade(session);
    // Moved only when something was queued and then acknowledged since it
    // last moved: an idle session's record is not written every tick.
    if h.cursor_ms == 0 || session.caught_up_since_asked() {
        h.cursor_ms = now.saturating_sub(MARGIN.as_millis() as u64);
    } else if let Some(age) = session.queued_for(tokio::time::Instant::now()) {
        // Never caught up (a subscriber that keeps a backlog): up to the
        // oldest delivery not sent yet, so the cursor (and the completed
        // QoS 2 ids it lets go) still moves on.
        let since = now.saturating_sub(age.as_millis() as u64);
        h.cursor_ms = h
            .cursor_ms
            .max(since.saturating_sub(MARGIN.as_millis() as u64));
    }
    // Never past a delivery its client has not acknowledged: a replay
    // from the cursor must send it again.
    if let Some(age) = session.in_flight_for(tokio::time::Instant::now()) {
        let since = now.saturating_sub(age.as_millis() as u64);
        h.cursor_ms = h
            .cursor_ms
            .min(since.saturating_sub(MARGIN.as_millis() as u64));
    }
    h.window.prune(h.cursor_ms);
    let attached = session.is_attached();
    let record = Record {
        expiry,
        expires_at_ms: (!attached && expiry != u32::MAX).then(|| now + u64::from(expiry) * 1000),
        cursor_ms: h.cursor_ms,
        subs: session
            .subscriptions()
            .iter()
            .map(|(f, s)| (f.to_string(), options_byte(&s.options), s.id))
            .collect(),
        q2: h
            .inbound_qos2
            .iter()
            .map(|(&packet_id, id)| (packet_id, id.node.0, id.seq))
            .collect(),
        out: h.window.out(),
        done: h.window.done(),
    };
    // An attached session's tick writes only a moved cursor (or a change).
    let same = h.written.as_ref().is_some_and(|w| {
        w.subs == record.subs
            && w.q2 == record.q2
            && w.out == record.out
            && w.done == record.done
            && w.expiry == record.expiry
            && w.expires_at_ms == record.expires_at_ms
            && w.cursor_ms + TICK.as_millis() as u64 > record.cursor_ms
    });
    if same {
        return true;
    }
    let value = Bytes::from(serde_json::to_vec(&record).expect("a record encodes"));
    let mut written = write_at_revision(kv, &key, h.revision, value.clone()).await;
    if matches!(written, Err(CasError::Conflict)) && attached {
        // Attached here, so this node claimed it last: what came in between
        // is the previous gateway's detach, landed after this node's read.
        written = match kv.entry(&key).await {
            Ok(entry) => {
                let revision = entry.filter(|e| e.operation == kv::Operation::Put);
                write_at_revision(kv, &key, revision.map(|e| e.revision), value).await
            }
            Err(e) => Err(CasError::Failed(e.to_string())),
        };
    }
    match written {
        Ok(revision) => {
            metrics::counter!(WRITES_TOTAL, "op" => "put").increment(1);
            h.revision = Some(revision);
            h.written = Some(record);
            true
        }
        Err(CasError::Conflict) => {
            metrics::counter!(CONFLICTS_TOTAL).increment(1);
            tracing::debug!(tenant = %session.tenant, client_id = %session.client_id, "another gateway holds the session record now");
            held.remove(&key);
            false
        }
        Err(CasError::Failed(error)) => {
            metrics::counter!(FAILURES_TOTAL).increment(1);
            tracing::warn!(tenant = %session.tenant, client_id = %session.client_id, %error, "cannot write the session record; retrying");
            h.written = None;
            false
        }
    }
}

/// Deletes a record: the one this node wrote (at its revision), or any one
/// (`starts_over`).
async fn end(kv: &kv::Store, held: &mut HashMap<String, Held>, key: &str, starts_over: bool) {
    let held = held.remove(key);
    if starts_over {
        return start_over(kv, key).await;
    }
    // Not written by this node (or never written): not this node's to delete.
    let Some(revision) = held.and_then(|h| h.revision) else {
        return;
    };
    match purge_at_revision(kv, key, revision).await {
        Ok(()) => metrics::counter!(WRITES_TOTAL, "op" => "delete").increment(1),
        // Another gateway wrote it since: the session lives on there.
        Err(CasError::Conflict) => metrics::counter!(CONFLICTS_TOTAL).increment(1),
        Err(CasError::Failed(error)) => {
            metrics::counter!(FAILURES_TOTAL).increment(1);
            tracing::warn!(%key, %error, "cannot delete a session record");
        }
    }
}

/// A clean start claimed the session: whatever record any node left goes.
/// Read first, so that a clean-start client, which has none, costs no
/// write (a purge leaves a marker in the bucket for every key it names);
/// a record written between the read and the purge is a late write of the
/// previous owner's, and is read and purged in turn.
async fn start_over(kv: &kv::Store, key: &str) {
    const ROUNDS: usize = 4;
    for _ in 0..ROUNDS {
        let revision = match kv.entry(key).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => e.revision,
            Ok(_) => return,
            Err(error) => {
                metrics::counter!(FAILURES_TOTAL).increment(1);
                tracing::warn!(%key, %error, "cannot read a session record to delete it");
                return;
            }
        };
        match purge_at_revision(kv, key, revision).await {
            Ok(()) => {
                metrics::counter!(WRITES_TOTAL, "op" => "delete").increment(1);
                return;
            }
            Err(CasError::Conflict) => metrics::counter!(CONFLICTS_TOTAL).increment(1),
            Err(CasError::Failed(error)) => {
                metrics::counter!(FAILURES_TOTAL).increment(1);
                tracing::warn!(%key, %error, "cannot delete a session record");
                return;
            }
        }
    }
    metrics::counter!(FAILURES_TOTAL).increment(1);
    tracing::warn!(%key, "a session record kept changing while a clean start deleted it");
}

/// One resumed session's read of the log.
struct Replay {
    js: jetstream::Context,
    stream: String,
    subjects: Subjects,
    tenant: Arc<str>,
    client_id: Arc<str>,
    filters: Vec<Arc<str>>,
    cursor_ms: u64,
    keep_at_most: usize,
}

impl Replay {
    /// The newest `keep_at_most` messages since the cursor that the
    /// session's filters match, oldest first; the older ones are counted
    /// as dropped (a full offline queue).
    async fn read(self) -> Vec<Arc<Message>> {
        let mut kept = VecDeque::new();
        let mut dropped = 0u64;
        if let Err(error) = self.read_into(&mut kept, &mut dropped).await {
            tracing::warn!(tenant = %self.tenant, client_id = %self.client_id, %error, "cannot replay the message log to a resumed session");
        }
        if dropped > 0 {
            count_drop(DropReason::QueueFull, dropped);
            for _ in 0..dropped {
                Limit::QueuedMessages.count();
            }
        }
        metrics::counter!(REPLAYED_TOTAL).increment(kept.len() as u64);
        kept.into()
    }

    async fn read_into(
        &self,
        kept: &mut VecDeque<Arc<Message>>,
        dropped: &mut u64,
    ) -> anyhow::Result<()> {
        if self.filters.is_empty() || self.keep_at_most == 0 {
            return Ok(());
        }
        let mut stream = match self.js.get_stream(&self.stream).await {
            Ok(stream) => stream,
            // No log yet: nothing QoS 1/2 was ever published in the tenant.
            Err(e)
                if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Ok(());
            }
            // Anything else (a timeout on a loaded box) is not "no log".
            Err(e) => anyhow::bail!("cannot read the log's stream: {e}"),
        };
        let state = stream.info().await?.state.clone();
        let last = state.last_sequence;
        if state.messages == 0 {
            return Ok(());
        }
        let cursor_ns = i128::from(self.cursor_ms) * 1_000_000;
        if state.first_sequence > 1 && state.first_timestamp.unix_timestamp_nanos() > cursor_ns {
            metrics::counter!(CURSOR_LOST_TOTAL).increment(1);
            tracing::warn!(tenant = %self.tenant, client_id = %self.client_id, "the session's cursor is older than the message log: what the log dropped is lost to it");
        }
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::ByStartTime {
                    start_time: async_nats::datetime::from_nanos(cursor_ns)
                        .map_err(|e| anyhow::anyhow!(e))?,
                },
                ack_policy: consumer::AckPolicy::None,
                filter_subjects: self.subjects_of_filters(),
                inactive_threshold: Duration::from_secs(30),
                memory_storage: true,
                num_replicas: 1,
                ..Default::default()
            })
            .await?;
        let info = consumer.cached_info();
        let name = info.name.clone();
        let read = if info.num_pending == 0 {
            Ok(())
        } else {
            self.pull(&consumer, last, kept, dropped).await
        };
        stream.delete_consumer(&name).await?;
        read
    }

    async fn pull(
        &self,
        consumer: &consumer::PullConsumer,
        last: u64,
        kept: &mut VecDeque<Arc<Message>>,
        dropped: &mut u64,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + REPLAY_WITHIN;
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(REPLAY_BATCH)
                .expires(REPLAY_WAIT)
                .messages()
                .await?;
            let mut got = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| anyhow::anyhow!(e))?;
                got += 1;
                let info = message.info().map_err(|e| anyhow::anyhow!(e))?;
                let (seq, pending) = (info.stream_sequence, info.pending);
                if seq <= last
                    && let Ok(mut m) = codec::decode(&message.payload, Persisted::default())
                    && self.filters.iter().any(|f| topic::matches(f, &m.topic))
                {
                    m.received_at = logged_at(info.published.unix_timestamp_nanos());
                    kept.push_back(Arc::new(m));
                    if kept.len() > self.keep_at_most {
                        kept.pop_front();
                        *dropped += 1;
                    }
                }
                if seq >= last || pending == 0 {
                    return Ok(());
                }
            }
            // The consumer had messages up to `last` pending when it was
            // made (else no pull): an empty batch is JetStream being slow
            // (a loaded box), not the end.
            if got == 0 && tokio::time::Instant::now() >= deadline {
                anyhow::bail!("no message from the log in {REPLAY_WITHIN:?}");
            }
        }
    }

    /// The log subjects of the session's filters; the whole tenant's when
    /// two overlap (a consumer's filter subjects may not).
    fn subjects_of_filters(&self) -> Vec<String> {
        let mut subjects: Vec<String> = self
            .filters
            .iter()
            .flat_map(|f| self.subjects.filter(&self.tenant, f))
            .collect();
        subjects.sort();
        subjects.dedup();
        let overlapping = subjects
            .iter()
            .enumerate()
            .any(|(i, a)| subjects[i + 1..].iter().any(|b| overlap(a, b)));
        if overlapping {
            vec![format!("{}.>", self.subjects.tenant_root(&self.tenant))]
        } else {
            subjects
        }
    }
}

/// The moment on this node's clock when the log took a message (its
/// timestamp), as a replayed message's `received_at`: a cursor bounded by
/// the deliveries not yet acknowledged (`Session::in_flight_for`) or not
/// yet sent (`Session::queued_for`) must stay before where the log holds
/// them, not move to when the replay read them.
fn logged_at(published_ns: i128) -> tokio::time::Instant {
    let now_ns = i128::from(unix_ms_now()) * 1_000_000;
    let age = Duration::from_nanos(u64::try_from(now_ns - published_ns).unwrap_or(0));
    let now = tokio::time::Instant::now();
    now.checked_sub(age).unwrap_or(now)
}

/// Whether some subject matches both NATS subject filters `a` and `b`.
fn overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (None, None) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_survive_the_record() {
        for b in 0..=0x2f_u8 {
            if b & 3 == 3 || (b >> 4) == 3 {
                continue;
            }
            assert_eq!(options_byte(&options_of(b)), b);
        }
    }

    fn flight(packet_id: u16, seq: u64, state: FlightStage) -> RecordedFlight {
        RecordedFlight {
            packet_id,
            id: message_id(1, seq),
            state,
        }
    }

    #[test]
    fn the_window_keeps_send_order_and_completed_qos_2_until_the_cursor_passes() {
        let mut w = Window::default();
        for change in [
            WindowChange::Sent(flight(7, 1, FlightStage::Qos2)),
            WindowChange::Sent(flight(3, 2, FlightStage::Qos1)),
            WindowChange::Sent(flight(9, 3, FlightStage::Qos2)),
            WindowChange::Released(7),
            WindowChange::Acknowledged(3),
            WindowChange::Acknowledged(7),
            WindowChange::Released(9),
        ] {
            w.apply(change, 10_000);
        }
        assert_eq!(w.out(), vec![(9, 1, 3, 3)]);
        // A QoS 1 ack completes nothing; the QoS 2 one is kept…
        assert_eq!(w.done(), vec![(1, 1, 10_000)]);
        // …while a replay from the cursor could read it.
        w.prune(10_000 + MARGIN.as_millis() as u64);
        assert_eq!(w.done().len(), 1);
        w.prune(10_001 + MARGIN.as_millis() as u64);
        assert!(w.done().is_empty());
        // Through the record and back.
        let record = Record {
            expiry: 1,
            expires_at_ms: None,
            cursor_ms: 0,
            subs: Vec::new(),
            q2: Vec::new(),
            out: w.out(),
            done: vec![(1, 5, 20)],
        };
        let back = record.window();
        assert_eq!(back.recorded(), vec![flight(9, 3, FlightStage::Released)]);
        assert_eq!(back.completed, vec![(message_id(1, 5), 20)]);
    }

    #[test]
    fn overlapping_subject_filters_are_found() {
        assert!(overlap("p.l.t.a.*", "p.l.t.a.b"));
        assert!(overlap("p.l.t.>", "p.l.t.a"));
        assert!(overlap("p.l.t.a", "p.l.t.a"));
        assert!(!overlap("p.l.t.a", "p.l.t.a.b"));
        assert!(!overlap("p.l.t.a.*", "p.l.t.b.*"));
    }
}
