//! The writer thread: group commit.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use aerie_core::store::{StoreOp, Ticket};
use tokio::sync::watch;

use crate::{Spaces, codec, keys};

/// Ops applied per batch at most, so one batch's latency stays bounded.
const MAX_BATCH: usize = 8192;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Space {
    Sessions,
    Messages,
    Queues,
    Inbound,
    Retained,
}

/// One batch of writes, collapsed per key (last write wins), so a put and a
/// delete of the same key in one batch never reach fjall together.
#[derive(Default)]
struct Pending {
    writes: HashMap<(Space, Vec<u8>), Option<Vec<u8>>>,
}

impl Pending {
    fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert((space, key), Some(value));
    }

    fn delete(&mut self, space: Space, key: Vec<u8>) {
        self.writes.insert((space, key), None);
    }

    fn apply(&mut self, sp: &Spaces, op: StoreOp) {
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
                let prefix = keys::session_prefix(&tenant, &client_id);
                for (space, ks) in [(Space::Queues, &sp.queues), (Space::Inbound, &sp.inbound)] {
                    for kv in ks.prefix(&prefix) {
                        if let Ok(k) = kv.key() {
                            self.delete(space, k.to_vec());
                        }
                    }
                }
                for ((space, key), value) in self.writes.iter_mut() {
                    if matches!(space, Space::Queues | Space::Inbound) && key.starts_with(&prefix) {
                        *value = None;
                    }
                }
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
        }
    }

    /// Writes the batch atomically and fsyncs it.
    fn commit(self, sp: &Spaces) -> Result<(), fjall::Error> {
        let mut batch = sp.db.batch().durability(Some(fjall::PersistMode::SyncData));
        for ((space, key), value) in self.writes {
            let ks = match space {
                Space::Sessions => &sp.sessions,
                Space::Messages => &sp.messages,
                Space::Queues => &sp.queues,
                Space::Inbound => &sp.inbound,
                Space::Retained => &sp.retained,
            };
            match value {
                Some(v) => batch.insert(ks, key, v),
                None => batch.remove(ks, key),
            }
        }
        batch.commit()
    }
}

pub fn run(sp: Spaces, rx: Receiver<(Ticket, StoreOp)>, durable: watch::Sender<Ticket>) {
    // Ends when every sender is gone (the store was dropped).
    while let Ok((first_ticket, first_op)) = rx.recv() {
        let mut pending = Pending::default();
        let mut last = first_ticket;
        let mut ops = 1usize;
        pending.apply(&sp, first_op);
        while ops < MAX_BATCH {
            let Ok((ticket, op)) = rx.try_recv() else {
                break;
            };
            pending.apply(&sp, op);
            last = ticket;
            ops += 1;
        }
        let started = Instant::now();
        match pending.commit(&sp) {
            Ok(()) => {
                metrics::histogram!("aerie_store_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("aerie_store_batch_ops").record(ops as f64);
                durable.send_replace(last);
            }
            Err(e) => {
                // Nothing after this is acknowledged: publishers wait rather
                // than be told a lost message is safe.
                metrics::counter!("aerie_store_errors_total").increment(1);
                tracing::error!(error = %e, "store commit failed; acknowledgements stop until it recovers");
            }
        }
    }
}
