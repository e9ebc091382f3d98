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
    use tokio::time::Instant;

    fn message(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"p"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
            origin: 1,
            received_at: Instant::now(),
            persisted: Persisted::default(),
        })
    }

    #[tokio::test]
    async fn sessions_queues_and_retained_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FjallStore::open(dir.path()).unwrap();
            let (t, c): (Arc<str>, Arc<str>) = ("t".into(), "c".into());
            store.submit(StoreOp::PutSession {
                tenant: t.clone(),
                client_id: c.clone(),
                record: SessionRecord {
                    expiry_interval: 60,
                    expires_at_ms: None,
                    subscriptions: vec![],
                },
            });
            for (seq, id) in [(1, 10), (2, 11)] {
                store.submit(StoreOp::PutMessage {
                    id,
                    message: message(&format!("m/{id}")),
                });
                let record = QueuedRecord {
                    seq,
                    message_id: id,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    subscription_ids: Default::default(),
                };
                store.submit(StoreOp::PutQueued {
                    tenant: t.clone(),
                    client_id: c.clone(),
                    record,
                });
            }
            store.submit(StoreOp::DeleteQueued {
                tenant: t.clone(),
                client_id: c.clone(),
                seq: 1,
            });
            store.submit(StoreOp::PutInboundQos2 {
                tenant: t.clone(),
                client_id: c.clone(),
                packet_id: 5,
            });
            let mut r = message("r");
            Arc::get_mut(&mut r).unwrap().retain = true;
            store.submit(StoreOp::PutRetained {
                tenant: t.clone(),
                message: r,
            });
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
            let (t, c): (Arc<str>, Arc<str>) = ("t".into(), "c".into());
            store.submit(StoreOp::PutSession {
                tenant: t.clone(),
                client_id: c.clone(),
                record: SessionRecord {
                    expiry_interval: 60,
                    expires_at_ms: None,
                    subscriptions: vec![],
                },
            });
            let record = QueuedRecord {
                seq: 1,
                message_id: 1,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Default::default(),
            };
            store.submit(StoreOp::PutQueued {
                tenant: t.clone(),
                client_id: c.clone(),
                record,
            });
            store.sync().await;
            let record = QueuedRecord {
                seq: 2,
                message_id: 1,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Default::default(),
            };
            store.submit(StoreOp::PutQueued {
                tenant: t.clone(),
                client_id: c.clone(),
                record,
            });
            store.submit(StoreOp::DeleteSession {
                tenant: t,
                client_id: c,
            });
            store.sync().await;
        }
        let store = FjallStore::open(dir.path()).unwrap();
        let state = store.load().unwrap();
        assert!(state.sessions.is_empty());
        assert_eq!(store.spaces.queues.iter().count(), 0);
    }
}
