//! The writer thread: group commit, and recovery from a failing disk.
//!
//! **Invariant:** the durable ticket only ever names writes that a commit
//! put on disk. A batch whose commit failed is kept whole and retried (with
//! back-off, reopening the database when the engine refuses to go on); new
//! writes that arrive meanwhile join it, collapsed per key, so the writer
//! keeps draining its channel and memory stays bounded by the live state,
//! not by the traffic.

use flume::{Receiver, RecvTimeoutError, TryRecvError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aerie_core::metrics as m;
use aerie_core::store::{StoreOp, Ticket};
use fjall::Slice;
use tokio::sync::watch;

use crate::{Spaces, codec, keys};

/// Ops taken per batch at most while the store is healthy, so one batch's
/// latency stays bounded.
const MAX_BATCH: usize = 8192;
/// Back-off between attempts while commits fail: short enough that acks
/// resume within a second or two of the disk having room again.
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(500);
/// While failing, one warning per this long (the first failure is an error).
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Space {
    Sessions,
    Messages,
    Queues,
    Inbound,
    Retained,
}

impl Space {
    fn of(self, sp: &Spaces) -> &fjall::Keyspace {
        match self {
            Space::Sessions => &sp.sessions,
            Space::Messages => &sp.messages,
            Space::Queues => &sp.queues,
            Space::Inbound => &sp.inbound,
            Space::Retained => &sp.retained,
        }
    }

    /// Keys that are never written twice (message ids and queue sequence
    /// numbers only grow): one put and one delete in the same batch cancel
    /// out, since the key cannot be on disk from before.
    fn keys_are_fresh(self) -> bool {
        matches!(self, Space::Messages | Space::Queues)
    }
}

/// A write of one key: `Some` puts, `None` deletes.
struct Write {
    value: Option<Slice>,
    /// The key's first op in this batch was a put of a fresh key.
    created_here: bool,
}

/// One batch of writes, collapsed per key (last write wins), so a put and a
/// delete of the same key in one batch never reach fjall together.
#[derive(Default)]
pub(crate) struct Pending {
    writes: HashMap<(Space, Slice), Write>,
    /// Prefixes whose keys on disk are deleted at commit (a deleted session's
    /// queue and inbound ids), except keys this batch put afterwards.
    deleted_prefixes: Vec<(Space, Vec<u8>)>,
    /// The last ticket in the batch: durable once it commits.
    last: Ticket,
    ops: usize,
    /// [`approx_size`] of the ops taken in.
    bytes: u64,
}

impl Pending {
    fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        let value = Some(Slice::from(value));
        self.writes
            .entry((space, Slice::from(key)))
            .and_modify(|w| w.value = value.clone())
            .or_insert(Write {
                value,
                created_here: space.keys_are_fresh(),
            });
    }

    fn delete(&mut self, space: Space, key: Vec<u8>) {
        let key = (space, Slice::from(key));
        match self.writes.get_mut(&key) {
            Some(w) if w.created_here => {
                self.writes.remove(&key);
            }
            Some(w) => w.value = None,
            None => {
                self.writes.insert(
                    key,
                    Write {
                        value: None,
                        created_here: false,
                    },
                );
            }
        }
    }

    fn delete_prefix(&mut self, spaces: &[Space], prefix: Vec<u8>) {
        for ((space, key), w) in self.writes.iter_mut() {
            if spaces.contains(space) && key.starts_with(&prefix) {
                w.value = None;
            }
        }
        for space in spaces {
            self.deleted_prefixes.push((*space, prefix.clone()));
        }
    }

    pub(crate) fn apply(&mut self, ticket: Ticket, op: StoreOp) {
        self.last = ticket;
        self.ops += 1;
        self.bytes += approx_size(&op);
        match op {
            StoreOp::PutSession {
                tenant,
                client_id,
                record,
            } => self.put(
                Space::Sessions,
                keys::session(&tenant, &client_id),
                codec::encode_session(&record),
            ),
            StoreOp::DeleteSession { tenant, client_id } => {
                self.delete(Space::Sessions, keys::session(&tenant, &client_id));
                self.delete_prefix(
                    &[Space::Queues, Space::Inbound],
                    keys::session_prefix(&tenant, &client_id),
                );
            }
            StoreOp::PutMessage { id, message } => self.put(
                Space::Messages,
                keys::message(id).to_vec(),
                codec::encode_message(&message),
            ),
            StoreOp::DeleteMessage { id } => {
                self.delete(Space::Messages, keys::message(id).to_vec())
            }
            StoreOp::PutQueued {
                tenant,
                client_id,
                record,
            } => self.put(
                Space::Queues,
                keys::queued(&tenant, &client_id, record.seq),
                codec::encode_queued(&record),
            ),
            StoreOp::DeleteQueued {
                tenant,
                client_id,
                seq,
            } => self.delete(Space::Queues, keys::queued(&tenant, &client_id, seq)),
            StoreOp::PutRetained { tenant, message } => self.put(
                Space::Retained,
                keys::retained(&tenant, &message.topic),
                codec::encode_message(&message),
            ),
            StoreOp::DeleteRetained { tenant, topic } => {
                self.delete(Space::Retained, keys::retained(&tenant, &topic))
            }
            StoreOp::PutInboundQos2 {
                tenant,
                client_id,
                packet_id,
            } => self.put(
                Space::Inbound,
                keys::inbound(&tenant, &client_id, packet_id),
                Vec::new(),
            ),
            StoreOp::DeleteInboundQos2 {
                tenant,
                client_id,
                packet_id,
            } => self.delete(
                Space::Inbound,
                keys::inbound(&tenant, &client_id, packet_id),
            ),
            StoreOp::DeleteTenant { tenant } => self.delete_prefix(
                &[
                    Space::Sessions,
                    Space::Queues,
                    Space::Inbound,
                    Space::Retained,
                ],
                keys::tenant_prefix(&tenant),
            ),
        }
    }

    /// Writes the batch atomically and fsyncs it. The batch is left as it
    /// was, so a failed commit can be retried with the same writes.
    pub(crate) fn commit(&self, sp: &Spaces) -> Result<(), fjall::Error> {
        let mut batch = sp.db.batch().durability(Some(fjall::PersistMode::SyncData));
        for (space, prefix) in &self.deleted_prefixes {
            for kv in space.of(sp).prefix(prefix) {
                let key = kv.key()?;
                if !self.writes.contains_key(&(*space, key.clone())) {
                    batch.remove(space.of(sp), key);
                }
            }
        }
        for ((space, key), w) in &self.writes {
            match &w.value {
                Some(v) => batch.insert(space.of(sp), key.clone(), v.clone()),
                None => batch.remove(space.of(sp), key.clone()),
            }
        }
        batch.commit()
    }
}

/// What the writer tells the rest of the process about itself.
#[derive(Default)]
pub(crate) struct Health {
    /// The last commit attempt failed; cleared by the next success.
    pub failing: AtomicBool,
    /// The highest ticket handed to the writer (set by `submit`).
    pub submitted: AtomicU64,
    /// [`approx_size`] of everything submitted, and of what is durable.
    pub submitted_bytes: AtomicU64,
    pub durable_bytes: AtomicU64,
}

/// Roughly what a write weighs, for the store's back-pressure: the payload
/// and topic of a message, a small constant for anything else.
pub(crate) fn approx_size(op: &StoreOp) -> u64 {
    let message = match op {
        StoreOp::PutMessage { message, .. } | StoreOp::PutRetained { message, .. } => {
            message.payload.len() + message.topic.len()
        }
        _ => 0,
    };
    64 + message as u64
}

/// Opens the database and its keyspaces.
pub(crate) type Opener = Box<dyn Fn() -> Result<Spaces, fjall::Error> + Send>;

pub(crate) struct Writer {
    pub rx: Receiver<(Ticket, StoreOp)>,
    pub durable: watch::Sender<Ticket>,
    pub health: Arc<Health>,
    /// The open database; `None` after a failed reopen.
    pub spaces: Option<Spaces>,
    pub open: Opener,
    /// For log lines.
    pub dir: PathBuf,
}

impl Writer {
    /// Runs until every sender is gone (the store was dropped) and what they
    /// sent is committed.
    pub(crate) fn run(mut self) {
        let mut open = true;
        while open {
            let mut pending = Pending::default();
            match self.rx.recv() {
                Ok((ticket, op)) => pending.apply(ticket, op),
                Err(_) => return,
            }
            open = self.take_waiting(&mut pending, MAX_BATCH);
            self.commit_until_done(&mut pending, &mut open);
        }
    }

    /// Moves what is waiting in the channel into `pending`, up to `max` ops.
    /// False once the channel is closed and empty.
    fn take_waiting(&self, pending: &mut Pending, max: usize) -> bool {
        while pending.ops < max {
            match self.rx.try_recv() {
                Ok((ticket, op)) => pending.apply(ticket, op),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Commits `pending`, retrying until it is on disk. While it fails, new
    /// writes join the batch (collapsed per key), so a failing disk never
    /// leaves publishers blocked on a full channel.
    fn commit_until_done(&mut self, pending: &mut Pending, open: &mut bool) {
        let mut backoff = RETRY_FIRST;
        let mut failing_since: Option<Instant> = None;
        let mut last_logged = Instant::now();
        loop {
            let started = Instant::now();
            let result = match &self.spaces {
                Some(sp) => pending.commit(sp),
                None => Err(fjall::Error::Poisoned),
            };
            match result {
                Ok(()) => {
                    metrics::histogram!(m::STORE_COMMIT_SECONDS)
                        .record(started.elapsed().as_secs_f64());
                    metrics::histogram!(m::STORE_BATCH_OPS).record(pending.ops as f64);
                    self.health
                        .durable_bytes
                        .fetch_add(pending.bytes, Ordering::Relaxed);
                    // Healthy again before the acks it releases: whoever
                    // sees them resume must not still read "failing".
                    if failing_since.is_some() {
                        self.health.failing.store(false, Ordering::SeqCst);
                    }
                    self.durable.send_replace(pending.last);
                    if let Some(since) = failing_since {
                        metrics::gauge!(m::STORE_FAILING).set(0.0);
                        tracing::warn!(
                            failed_for_ms = since.elapsed().as_millis() as u64,
                            dir = %self.dir.display(),
                            "store commits succeed again; acknowledgements resume"
                        );
                    }
                    self.report_backlog();
                    return;
                }
                Err(e) => {
                    metrics::counter!(m::STORE_ERRORS_TOTAL).increment(1);
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        self.health.failing.store(true, Ordering::SeqCst);
                        metrics::gauge!(m::STORE_FAILING).set(1.0);
                        tracing::error!(error = %e, dir = %self.dir.display(),
                            "store commit failed; acknowledgements that need the store wait, and the writes are retried");
                    } else if last_logged.elapsed() >= FAILURE_LOG_EVERY {
                        last_logged = Instant::now();
                        tracing::warn!(error = %e, dir = %self.dir.display(), "store commits still fail");
                    }
                    // The engine refuses every commit after a failed journal
                    // write (it poisons itself): only a fresh open recovers.
                    if matches!(e, fjall::Error::Poisoned) || self.spaces.is_none() {
                        self.reopen();
                    }
                }
            }
            // Wait before the next attempt, taking in what arrives meanwhile.
            let deadline = Instant::now() + backoff;
            backoff = (backoff * 2).min(RETRY_MAX);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if !*open {
                    std::thread::sleep(left);
                    break;
                }
                match self.rx.recv_timeout(left) {
                    Ok((ticket, op)) => {
                        pending.apply(ticket, op);
                        *open = self.take_waiting(pending, usize::MAX);
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => *open = false,
                }
            }
            self.report_backlog();
        }
    }

    /// Drops the database and opens it again (journal recovery drops a torn
    /// last batch; the retried batch rewrites whatever it held).
    fn reopen(&mut self) {
        // The directory lock must be released before it can be taken again.
        self.spaces = None;
        match (self.open)() {
            Ok(sp) => {
                metrics::counter!(m::STORE_REOPENS_TOTAL).increment(1);
                tracing::info!(dir = %self.dir.display(), "store reopened after a failure");
                self.spaces = Some(sp);
            }
            Err(e) => tracing::debug!(error = %e, "store cannot be reopened yet"),
        }
    }

    fn report_backlog(&self) {
        let h = &self.health;
        let ops = h.submitted.load(Ordering::Relaxed);
        let durable = *self.durable.borrow();
        metrics::gauge!(m::STORE_BACKLOG_OPS).set(ops.saturating_sub(durable) as f64);
        let bytes = h.submitted_bytes.load(Ordering::Relaxed);
        let durable_bytes = h.durable_bytes.load(Ordering::Relaxed);
        metrics::gauge!(m::STORE_BACKLOG_BYTES).set(bytes.saturating_sub(durable_bytes) as f64);
    }
}
