//! Reading the store back at start-up.

use std::collections::HashMap;
use std::sync::Arc;

use aerie_core::message::{Message, Persisted};
use aerie_core::store::{LoadedSession, LoadedState, Store, StoreOp};

use crate::{Spaces, StoreError, codec, keys};

pub fn load(sp: &Spaces, store: Arc<dyn Store>) -> Result<LoadedState, StoreError> {
    let mut messages: HashMap<u64, Arc<Message>> = HashMap::new();
    for kv in sp.messages.iter() {
        let (k, v) = kv.into_inner()?;
        let Some(id) = keys::suffix_u64(&k) else {
            continue;
        };
        match codec::loaded_message(id, &v, &store) {
            Some(m) => {
                messages.insert(id, m);
            }
            None => tracing::warn!(id, "unreadable stored message skipped"),
        }
    }

    let mut state = LoadedState::default();
    for kv in sp.sessions.iter() {
        let (k, v) = kv.into_inner()?;
        let Some((tenant, client_id)) = keys::split_pair(&k) else {
            continue;
        };
        let Some(record) = codec::decode_session(&v) else {
            tracing::warn!(tenant, client_id, "unreadable stored session skipped");
            continue;
        };
        let (tenant, client_id): (Arc<str>, Arc<str>) = (Arc::from(tenant), Arc::from(client_id));
        let prefix = keys::session_prefix(&tenant, &client_id);
        let mut queue = Vec::new();
        for kv in sp.queues.prefix(&prefix) {
            let (k, v) = kv.into_inner()?;
            let Some(seq) = keys::suffix_u64(&k) else {
                continue;
            };
            let record = codec::decode_queued(seq, &v);
            match record.and_then(|r| messages.get(&r.message_id).cloned().map(|m| (r, m))) {
                Some(entry) => queue.push(entry),
                None => {
                    store.submit(StoreOp::DeleteQueued {
                        tenant: tenant.clone(),
                        client_id: client_id.clone(),
                        seq,
                    });
                }
            }
        }
        let inbound_qos2 = sp
            .inbound
            .prefix(&prefix)
            .filter_map(|kv| kv.key().ok().and_then(|k| keys::suffix_u16(&k)))
            .collect();
        state.sessions.push(LoadedSession {
            tenant,
            client_id,
            record,
            queue,
            inbound_qos2,
        });
    }

    for kv in sp.retained.iter() {
        let (k, v) = kv.into_inner()?;
        let Some((tenant, _topic)) = keys::split_pair(&k) else {
            continue;
        };
        if let Some(m) = codec::decode_message(&v, Persisted::default()) {
            state.retained.push((Arc::from(tenant), Arc::new(m)));
        }
    }
    // Messages no queue refers to any more are deleted when `messages` drops
    // the last Arc (Message's Drop submits the delete).
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FjallStore;
    use aerie_core::store::{QueuedRecord, SessionRecord};
    use aerie_proto::QoS;

    fn message(topic: &str) -> Arc<Message> {
        Message::published(
            topic.into(),
            bytes::Bytes::from_static(b"p"),
            QoS::AtLeastOnce,
            false,
            Default::default(),
            Default::default(),
            Default::default(),
        )
    }

    fn ids() -> (Arc<str>, Arc<str>) {
        ("t".into(), "c".into())
    }

    fn put_session() -> StoreOp {
        let (tenant, client_id) = ids();
        let record = SessionRecord {
            expiry_interval: 60,
            expires_at_ms: None,
            subscriptions: vec![],
        };
        StoreOp::PutSession {
            tenant,
            client_id,
            record,
        }
    }

    fn put_queued(seq: u64, message_id: u64) -> StoreOp {
        let (tenant, client_id) = ids();
        let record = QueuedRecord {
            seq,
            message_id,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Default::default(),
        };
        StoreOp::PutQueued {
            tenant,
            client_id,
            record,
        }
    }

    #[tokio::test]
    async fn sessions_queues_and_retained_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FjallStore::open(dir.path()).unwrap();
            let (tenant, client_id) = ids();
            store.submit(put_session());
            for (seq, id) in [(1, 10), (2, 11)] {
                store.submit(StoreOp::PutMessage {
                    id,
                    message: message(&format!("m/{id}")),
                });
                store.submit(put_queued(seq, id));
            }
            store.submit(StoreOp::DeleteQueued {
                tenant: tenant.clone(),
                client_id: client_id.clone(),
                seq: 1,
            });
            store.submit(StoreOp::PutInboundQos2 {
                tenant: tenant.clone(),
                client_id,
                packet_id: 5,
            });
            let mut r = message("r");
            Arc::get_mut(&mut r).unwrap().retain = true;
            store.submit(StoreOp::PutRetained { tenant, message: r });
            store.sync().await;
        }
        let store = FjallStore::open(dir.path()).unwrap();
        let state = store.load().unwrap();
        assert_eq!(state.sessions.len(), 1);
        let s = &state.sessions[0];
        assert_eq!(s.queue.len(), 1);
        assert_eq!(&*s.queue[0].1.topic, "m/11");
        assert_eq!(s.inbound_qos2, vec![5]);
        assert_eq!(state.retained.len(), 1);
    }

    #[tokio::test]
    async fn delete_session_removes_its_queue_even_within_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FjallStore::open(dir.path()).unwrap();
            store.submit(put_session());
            store.submit(put_queued(1, 1));
            store.sync().await;
            // A put and the session's deletion in what is likely one batch.
            store.submit(put_queued(2, 1));
            let (tenant, client_id) = ids();
            store.submit(StoreOp::DeleteSession { tenant, client_id });
            store.sync().await;
        }
        let store = FjallStore::open(dir.path()).unwrap();
        let queued = store
            .spaces
            .lock()
            .as_ref()
            .map(|sp| sp.queues.iter().count());
        assert_eq!(queued, Some(0));
        let state = store.load().unwrap();
        assert!(state.sessions.is_empty());
    }
}
