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
use std::sync::mpsc;

use aerie_core::store::{LoadedState, Store, StoreOp, Ticket};
use parking_lot::Mutex;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open { path: String, source: fjall::Error },
    #[error("store: {0}")]
    Fjall(#[from] fjall::Error),
}

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

pub struct FjallStore {
    /// Ticket assignment and sending happen under one lock, so the writer
    /// sees ops in ticket order.
    submit: Mutex<(Ticket, mpsc::Sender<(Ticket, StoreOp)>)>,
    durable: watch::Receiver<Ticket>,
    spaces: Spaces,
    /// Set by [`FjallStore::close`]: later writes are ignored.
    closed: std::sync::atomic::AtomicBool,
}

impl FjallStore {
    /// Opens (or creates) the store in `dir` and starts its writer thread.
    pub fn open(dir: &Path) -> Result<Arc<FjallStore>, StoreError> {
        let open_err = |source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        };
        let db = fjall::Database::builder(dir)
            .manual_journal_persist(true)
            .open()
            .map_err(open_err)?;
        let ks = |name: &str| db.keyspace(name, fjall::KeyspaceCreateOptions::default);
        let spaces = Spaces {
            sessions: ks("sessions").map_err(open_err)?,
            messages: ks("messages").map_err(open_err)?,
            queues: ks("queues").map_err(open_err)?,
            inbound: ks("inbound").map_err(open_err)?,
            retained: ks("retained").map_err(open_err)?,
            db,
        };
        let (tx, rx) = mpsc::channel();
        let (durable_tx, durable) = watch::channel(0);
        let writer_spaces = spaces.clone();
        std::thread::Builder::new()
            .name("aerie-store".into())
            .spawn(move || writer::run(writer_spaces, rx, durable_tx))
            .map_err(|e| StoreError::Open {
                path: dir.display().to_string(),
                source: fjall::Error::Io(e),
            })?;
        Ok(Arc::new(FjallStore {
            submit: Mutex::new((0, tx)),
            durable,
            spaces,
            closed: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Reads everything back (at start-up, before clients connect).
    pub fn load(self: &Arc<Self>) -> Result<LoadedState, StoreError> {
        let store: Arc<dyn Store> = self.clone();
        load::load(&self.spaces, store)
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
        // The writer only stops when the process does; a failed send then
        // just means nothing will be acknowledged.
        let _ = guard.1.send((ticket, op));
        ticket
    }

    fn durable(&self) -> watch::Receiver<Ticket> {
        self.durable.clone()
    }
}
