//! The embedded store: persistent sessions, their queued messages, inbound
//! QoS 2 packet ids and retained messages, in fjall under `--data-dir`.
//!
//! Writes arrive as [`StoreOp`]s with increasing tickets. One writer thread
//! takes whatever has queued up, applies it as one atomic batch with one
//! fsync (group commit), then publishes the last ticket as durable. A
//! publisher's PUBACK waits for that ticket, so the cost of an fsync is shared
//! by every message that arrived while the previous one ran.

#![forbid(unsafe_code)]

mod codec;
mod keys;
mod load;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aerie_core::store::{LoadedState, Store, StoreOp, Ticket};
use parking_lot::Mutex;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open { path: String, source: fjall::Error },
    #[error("store: {0}")]
    Fjall(#[from] fjall::Error),
    #[error("store: already loaded")]
    Loaded,
}

/// Largest memtable of each keyspace before fjall flushes it to disk.
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// The fjall keyspaces.
#[derive(Clone)]
pub(crate) struct Spaces {
    pub db: fjall::Database,
    pub sessions: fjall::Keyspace,
    pub messages: fjall::Keyspace,
    pub queues: fjall::Keyspace,
    pub inbound: fjall::Keyspace,
    pub retained: fjall::Keyspace,
}

/// How many writes may wait in the writer's channel. The writer drains it
/// even while commits fail (writes then join the failed batch), so a full
/// channel only means the disk is slower than the traffic: `submit` then
/// waits, like a publisher behind any slow consumer. Connections stop reading
/// long before, at [`BACKLOG_PAUSE_OPS`].
const CHANNEL_CAPACITY: usize = 256 * 1024;
/// Writes not yet durable past which a connection whose acknowledgements
/// wait for the store stops reading until the store catches up...
const BACKLOG_PAUSE_OPS: u64 = 64 * 1024;
/// ... or bytes of them (payloads mostly), unless set otherwise.
pub const DEFAULT_BACKLOG_PAUSE_BYTES: u64 = 64 * 1024 * 1024;

pub struct FjallStore {
    /// Ticket assignment and sending happen under one lock, so the writer
    /// sees ops in ticket order.
    submit: Mutex<(Ticket, flume::Sender<(Ticket, StoreOp)>)>,
    durable: watch::Receiver<Ticket>,
    health: Arc<writer::Health>,
    /// The database as opened, for [`FjallStore::load`]; taken by it, so the
    /// writer alone holds the database afterwards and can reopen it.
    spaces: Mutex<Option<Spaces>>,
    /// Set by [`FjallStore::close`]: later writes are ignored.
    closed: std::sync::atomic::AtomicBool,
    /// See [`FjallStore::set_backlog_pause_bytes`].
    backlog_pause_bytes: AtomicU64,
}

/// Opens (or creates) the database and its keyspaces in `dir`.
fn open_spaces(dir: &Path) -> Result<Spaces, fjall::Error> {
    let db = fjall::Database::builder(dir)
        .manual_journal_persist(true)
        .open()?;
    // fjall's default memtable is 64 MiB per keyspace: under steady
    // persistent traffic the process grows towards 5 × 64 MiB before the
    // first flush (the soak's slope). 8 MiB each bounds that at 40 MiB; the
    // cost is more, smaller flushes, which this store's write rate (group
    // commits of small records) does not feel.
    let ks = |name: &str| {
        db.keyspace(name, || {
            fjall::KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
        })
    };
    Ok(Spaces {
        sessions: ks("sessions")?,
        messages: ks("messages")?,
        queues: ks("queues")?,
        inbound: ks("inbound")?,
        retained: ks("retained")?,
        db,
    })
}

impl FjallStore {
    /// Opens (or creates) the store in `dir` and starts its writer thread.
    pub fn open(dir: &Path) -> Result<Arc<FjallStore>, StoreError> {
        let open_err = |source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        };
        let spaces = open_spaces(dir).map_err(open_err)?;
        // flume, not std's `sync_channel`: that one allocates all its slots
        // up front (27 MB at this capacity) and touches them in turn, so the
        // process grows by the whole channel over hours even when nothing
        // waits in it. flume holds what waits.
        let (tx, rx) = flume::bounded(CHANNEL_CAPACITY);
        let (durable_tx, durable) = watch::channel(0);
        let health = Arc::new(writer::Health::default());
        let reopen_dir = dir.to_path_buf();
        let writer = writer::Writer {
            rx,
            durable: durable_tx,
            health: health.clone(),
            spaces: Some(spaces.clone()),
            open: Box::new(move || open_spaces(&reopen_dir)),
            dir: dir.to_path_buf(),
        };
        std::thread::Builder::new()
            .name("aerie-store".into())
            .spawn(move || writer.run())
            .map_err(|e| open_err(fjall::Error::Io(e)))?;
        Ok(Arc::new(FjallStore {
            submit: Mutex::new((0, tx)),
            durable,
            health,
            spaces: Mutex::new(Some(spaces)),
            closed: std::sync::atomic::AtomicBool::new(false),
            backlog_pause_bytes: AtomicU64::new(DEFAULT_BACKLOG_PAUSE_BYTES),
        }))
    }

    /// Bytes of writes not yet durable past which connections whose
    /// acknowledgements wait for the store stop being read.
    pub fn set_backlog_pause_bytes(&self, bytes: u64) {
        self.backlog_pause_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Reads everything back (at start-up, before clients connect). Once.
    pub fn load(self: &Arc<Self>) -> Result<LoadedState, StoreError> {
        let spaces = self.spaces.lock().take().ok_or(StoreError::Loaded)?;
        let store: Arc<dyn Store> = self.clone();
        load::load(&spaces, store)
    }

    /// Stops taking writes. Called at shutdown, after [`FjallStore::sync`]:
    /// tearing down the broker drops every queued message, and those drops
    /// must not reach the disk as deletions.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits until everything submitted so far is durable.
    pub async fn sync(&self) {
        let target = self.submit.lock().0;
        let mut durable = self.durable.clone();
        let _ = durable.wait_for(|t| *t >= target).await;
    }
}

impl Store for FjallStore {
    fn submit(&self, op: StoreOp) -> Ticket {
        let mut guard = self.submit.lock();
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return 0;
        }
        guard.0 += 1;
        let ticket = guard.0;
        self.health.submitted.store(ticket, Ordering::Relaxed);
        self.health
            .submitted_bytes
            .fetch_add(writer::approx_size(&op), Ordering::Relaxed);
        // The writer only stops when the process does; a failed send then
        // just means nothing will be acknowledged.
        let _ = guard.1.send((ticket, op));
        ticket
    }

    fn durable(&self) -> watch::Receiver<Ticket> {
        self.durable.clone()
    }

    fn is_backlogged(&self) -> bool {
        let h = &self.health;
        let ops = h.submitted.load(Ordering::Relaxed);
        let bytes = h.submitted_bytes.load(Ordering::Relaxed);
        ops.saturating_sub(*self.durable.borrow()) > BACKLOG_PAUSE_OPS
            || bytes.saturating_sub(h.durable_bytes.load(Ordering::Relaxed))
                > self.backlog_pause_bytes.load(Ordering::Relaxed)
    }

    fn is_failing(&self) -> bool {
        self.health.failing.load(Ordering::Relaxed)
    }
}
