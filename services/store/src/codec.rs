//! Value encodings. A message is stored as its MQTT 5 PUBLISH encoding (our
//! own codec already round-trips every property) after a small header.

use std::sync::Arc;
use std::time::Duration;

use aerie_core::message::{Message, Persisted};
use aerie_core::session::SubscriptionSpec;
use aerie_core::store::{QueuedRecord, SessionRecord, Store, unix_ms_now};
use aerie_proto::{Packet, ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions};
use bytes::{Buf, BufMut, BytesMut};
use smallvec::SmallVec;
use tokio::time::Instant;

const FORMAT: u8 = 1;
const NONE_MS: u64 = u64::MAX;

/// A message's header (format, expiry as Unix ms, origin) and PUBLISH bytes.
pub fn encode_message(m: &Message) -> Vec<u8> {
    let expires_ms = m.expires_at.map_or(NONE_MS, |at| {
        unix_ms_now() + at.saturating_duration_since(Instant::now()).as_millis() as u64
    });
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: (m.qos != QoS::AtMostOnce).then_some(1),
        payload: m.payload.clone(),
        properties: m.properties.clone(),
    });
    let mut buf = BytesMut::with_capacity(17 + m.topic.len() + m.payload.len() + 16);
    buf.put_u8(FORMAT);
    buf.put_u64(expires_ms);
    buf.put_u64(m.origin);
    // A message that was accepted once always encodes.
    let _ = aerie_proto::encode(&packet, ProtocolVersion::V5, &mut buf);
    buf.to_vec()
}

/// Decodes a stored message; `persisted` ties it to its stored id (or not,
/// for retained messages).
pub fn decode_message(bytes: &[u8], persisted: Persisted) -> Option<Message> {
    let mut b = bytes;
    if b.remaining() < 17 || b.get_u8() != FORMAT {
        return None;
    }
    let expires_ms = b.get_u64();
    let origin = b.get_u64();
    let mut buf = BytesMut::from(b);
    let Ok(Some(Packet::Publish(p))) = aerie_proto::decode(&mut buf, ProtocolVersion::V5, u32::MAX)
    else {
        return None;
    };
    let now = Instant::now();
    let expires_at = (expires_ms != NONE_MS)
        .then(|| now + Duration::from_millis(expires_ms.saturating_sub(unix_ms_now())));
    Some(Message {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties,
        expires_at,
        origin,
        received_at: now,
        persisted,
    })
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
            expires_at: Some(Instant::now() + Duration::from_secs(30)),
            origin: 42,
            received_at: Instant::now(),
            persisted: Persisted::default(),
        };
        let back = decode_message(&encode_message(&m), Persisted::default()).unwrap();
        assert_eq!(
            (
                back.topic.clone(),
                back.payload.clone(),
                back.qos,
                back.retain,
                back.origin
            ),
            (m.topic.clone(), m.payload.clone(), m.qos, m.retain, 42)
        );
        assert_eq!(back.properties, m.properties);
        let left = back
            .expires_at
            .unwrap()
            .saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(28) && left <= Duration::from_secs(30),
            "{left:?}"
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
