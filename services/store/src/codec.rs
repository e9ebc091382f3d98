//! Value encodings. A message is stored in the core's own encoding
//! (`aerie_core::message::codec`: id, wall-clock expiry, origin, then its
//! MQTT 5 PUBLISH); format 1, written before messages had ids and node
//! origins, still loads.

use std::sync::Arc;

use aerie_core::message::{Message, MessageId, Origin, Persisted, codec as message_codec};
use aerie_core::node::NodeId;
use aerie_core::session::SubscriptionSpec;
use aerie_core::store::{QueuedRecord, SessionRecord, Store};
use aerie_proto::{QoS, RetainHandling, SubscriptionOptions};
use bytes::{Buf, BufMut};
use smallvec::SmallVec;

const FORMAT: u8 = 1;
const NONE_MS: u64 = u64::MAX;

pub fn encode_message(m: &Message) -> Vec<u8> {
    message_codec::encode_to_vec(m)
}

/// Decodes a stored message; `persisted` ties it to its stored id (or not,
/// for retained messages).
pub fn decode_message(bytes: &[u8], persisted: Persisted) -> Option<Message> {
    match bytes.first() {
        Some(&FORMAT) => decode_message_v1(bytes, persisted),
        _ => message_codec::decode(bytes, persisted).ok(),
    }
}

/// Format 1: expiry (Unix ms), the origin's session id, the PUBLISH. Its
/// origin gets node 0, which no running node has, and no id.
fn decode_message_v1(bytes: &[u8], persisted: Persisted) -> Option<Message> {
    let mut b = bytes;
    if b.remaining() < 17 || b.get_u8() != FORMAT {
        return None;
    }
    let expires_ms = b.get_u64();
    let session = b.get_u64();
    let publish = message_codec::decode_publish(b).ok()?;
    Some(message_codec::from_publish(
        publish,
        MessageId::default(),
        (expires_ms != NONE_MS).then_some(expires_ms),
        Origin {
            node: NodeId(0),
            session,
        },
        persisted,
    ))
}

pub fn loaded_message(id: u64, bytes: &[u8], store: &Arc<dyn Store>) -> Option<Arc<Message>> {
    decode_message(bytes, Persisted::loaded(id, store.clone())).map(Arc::new)
}

fn options_byte(o: &SubscriptionOptions) -> u8 {
    (o.qos as u8)
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

fn options_from(b: u8) -> Option<SubscriptionOptions> {
    Some(SubscriptionOptions {
        qos: QoS::from_u8(b & 0b11)?,
        no_local: b & 0b100 != 0,
        retain_as_published: b & 0b1000 != 0,
        retain_handling: match (b >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return None,
        },
    })
}

pub fn encode_session(r: &SessionRecord) -> Vec<u8> {
    let mut buf = Vec::with_capacity(16 + r.subscriptions.len() * 32);
    buf.put_u8(FORMAT);
    buf.put_u32(r.expiry_interval);
    buf.put_u64(r.expires_at_ms.unwrap_or(NONE_MS));
    buf.put_u32(r.subscriptions.len() as u32);
    for (filter, spec) in &r.subscriptions {
        buf.put_u16(filter.len() as u16);
        buf.put_slice(filter.as_bytes());
        buf.put_u8(options_byte(&spec.options));
        buf.put_u32(spec.id.unwrap_or(0));
    }
    buf
}

pub fn decode_session(bytes: &[u8]) -> Option<SessionRecord> {
    let mut b = bytes;
    if b.remaining() < 17 || b.get_u8() != FORMAT {
        return None;
    }
    let expiry_interval = b.get_u32();
    let expires = b.get_u64();
    let n = b.get_u32();
    let mut subscriptions = Vec::new();
    for _ in 0..n {
        if b.remaining() < 2 {
            return None;
        }
        let len = usize::from(b.get_u16());
        if b.remaining() < len + 5 {
            return None;
        }
        let filter: Arc<str> = Arc::from(std::str::from_utf8(&b[..len]).ok()?);
        b.advance(len);
        let options = options_from(b.get_u8())?;
        let id = b.get_u32();
        subscriptions.push((
            filter,
            SubscriptionSpec {
                options,
                id: (id != 0).then_some(id),
            },
        ));
    }
    Some(SessionRecord {
        expiry_interval,
        expires_at_ms: (expires != NONE_MS).then_some(expires),
        subscriptions,
    })
}

pub fn encode_queued(r: &QueuedRecord) -> Vec<u8> {
    let mut buf = Vec::with_capacity(12 + 4 * r.subscription_ids.len());
    buf.put_u64(r.message_id);
    buf.put_u8(r.qos as u8);
    buf.put_u8(u8::from(r.retain));
    buf.put_u8(r.subscription_ids.len().min(255) as u8);
    for id in r.subscription_ids.iter().take(255) {
        buf.put_u32(*id);
    }
    buf
}

pub fn decode_queued(seq: u64, bytes: &[u8]) -> Option<QueuedRecord> {
    let mut b = bytes;
    if b.remaining() < 11 {
        return None;
    }
    let message_id = b.get_u64();
    let qos = QoS::from_u8(b.get_u8())?;
    let retain = b.get_u8() != 0;
    let n = usize::from(b.get_u8());
    if b.remaining() < n * 4 {
        return None;
    }
    let subscription_ids: SmallVec<[u32; 2]> = (0..n).map(|_| b.get_u32()).collect();
    Some(QueuedRecord {
        seq,
        message_id,
        qos,
        retain,
        subscription_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aerie_proto::PublishProperties;

    #[test]
    fn message_round_trips_with_properties_and_expiry() {
        let m = Message {
            id: MessageId {
                node: NodeId(5),
                seq: 6,
            },
            topic: "a/b".into(),
            payload: bytes::Bytes::from_static(b"hello"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: PublishProperties {
                content_type: Some("text/plain".into()),
                user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
                correlation_data: Some(bytes::Bytes::from_static(b"\x00\x01")),
                ..Default::default()
            },
            expires_at_ms: Some(1_234_567),
            origin: Origin {
                node: NodeId(9),
                session: 42,
            },
            received_at: tokio::time::Instant::now(),
            persisted: Persisted::default(),
        };
        let back = decode_message(&encode_message(&m), Persisted::default()).unwrap();
        let fields = |m: &Message| {
            let publish = (m.topic.clone(), m.payload.clone(), m.qos, m.retain);
            (
                publish,
                m.origin,
                m.id,
                m.expires_at_ms,
                m.properties.clone(),
            )
        };
        assert_eq!(fields(&back), fields(&m));
    }

    /// What format 1 wrote: expiry, origin session, the PUBLISH.
    #[test]
    fn a_message_stored_in_format_1_still_loads() {
        let mut bytes = vec![1u8];
        bytes.extend(777u64.to_be_bytes());
        bytes.extend(42u64.to_be_bytes());
        let packet = aerie_proto::Packet::Publish(aerie_proto::Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "old/t".into(),
            packet_id: Some(1),
            payload: bytes::Bytes::from_static(b"kept"),
            properties: PublishProperties::default(),
        });
        let mut publish = bytes::BytesMut::new();
        aerie_proto::encode(&packet, aerie_proto::ProtocolVersion::V5, &mut publish).unwrap();
        bytes.extend_from_slice(&publish);
        let back = decode_message(&bytes, Persisted::default()).unwrap();
        assert_eq!(
            (&*back.topic, &back.payload[..], back.expires_at_ms),
            ("old/t", &b"kept"[..], Some(777))
        );
        assert_eq!(
            back.origin,
            Origin {
                node: NodeId(0),
                session: 42
            }
        );
    }

    #[test]
    fn session_record_round_trips() {
        let r = SessionRecord {
            expiry_interval: 3600,
            expires_at_ms: Some(123),
            subscriptions: vec![
                (
                    Arc::from("a/#"),
                    SubscriptionSpec {
                        options: SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            no_local: true,
                            retain_as_published: true,
                            retain_handling: RetainHandling::DoNotSend,
                        },
                        id: Some(7),
                    },
                ),
                (
                    Arc::from("$share/g/x"),
                    SubscriptionSpec {
                        options: SubscriptionOptions::default(),
                        id: None,
                    },
                ),
            ],
        };
        let back = decode_session(&encode_session(&r)).unwrap();
        assert_eq!(back.expiry_interval, 3600);
        assert_eq!(back.expires_at_ms, Some(123));
        assert_eq!(back.subscriptions, r.subscriptions);
    }

    #[test]
    fn queued_record_round_trips() {
        let r = QueuedRecord {
            seq: 9,
            message_id: 77,
            qos: QoS::AtLeastOnce,
            retain: true,
            subscription_ids: [1, 2].into_iter().collect(),
        };
        let back = decode_queued(9, &encode_queued(&r)).unwrap();
        assert_eq!(
            (
                back.message_id,
                back.qos,
                back.retain,
                back.subscription_ids.to_vec()
            ),
            (77, QoS::AtLeastOnce, true, vec![1, 2])
        );
    }
}
