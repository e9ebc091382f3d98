//! A message's bytes when it leaves the process (the store today, the
//! backbone between nodes next): a fixed header with what a PUBLISH cannot
//! carry (id, wall-clock expiry, origin), then the message as an MQTT 5
//! PUBLISH, which our codec already round-trips with every property.
//!
//! ```text
//! u8 format (2) | u64 id.node | u64 id.seq | u64 expires_at_ms (MAX: none)
//! | u64 origin.node | u64 origin.session | MQTT 5 PUBLISH
//! ```

use aerie_proto::{Packet, ProtocolVersion, Publish, QoS};
use bytes::{Buf, BufMut, BytesMut};
use tokio::time::Instant;

use super::{Message, MessageId, Origin, Persisted};
use crate::node::NodeId;

/// The format byte of this encoding.
pub const FORMAT: u8 = 2;
const HEADER_LEN: usize = 1 + 5 * 8;
const NO_EXPIRY: u64 = u64::MAX;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("message encoding: {0} bytes is shorter than its header")]
    Truncated(usize),
    #[error("message encoding: unknown format {0}")]
    UnknownFormat(u8),
    #[error("message encoding: the PUBLISH does not decode: {0}")]
    Publish(String),
    #[error("message encoding: {0} bytes after the PUBLISH")]
    Trailing(usize),
}

/// Appends `m`'s encoding to `buf`.
pub fn encode(m: &Message, buf: &mut BytesMut) {
    buf.reserve(HEADER_LEN + 16 + m.topic.len() + m.payload.len());
    buf.put_u8(FORMAT);
    buf.put_u64(m.id.node.0);
    buf.put_u64(m.id.seq);
    buf.put_u64(m.expires_at_ms.unwrap_or(NO_EXPIRY));
    buf.put_u64(m.origin.node.0);
    buf.put_u64(m.origin.session);
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: (m.qos != QoS::AtMostOnce).then_some(1),
        payload: m.payload.clone(),
        properties: m.properties.clone(),
    });
    // A message that was accepted once always encodes.
    let _ = aerie_proto::encode(&packet, ProtocolVersion::V5, buf);
}

pub fn encode_to_vec(m: &Message) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode(m, &mut buf);
    buf.to_vec()
}

/// Decodes one message; `persisted` ties it to a stored id (or not). Its
/// `received_at` is now: the latency this process measures starts here.
pub fn decode(bytes: &[u8], persisted: Persisted) -> Result<Message, CodecError> {
    if bytes.len() < HEADER_LEN {
        return Err(CodecError::Truncated(bytes.len()));
    }
    let mut b = bytes;
    let format = b.get_u8();
    if format != FORMAT {
        return Err(CodecError::UnknownFormat(format));
    }
    let id = MessageId {
        node: NodeId(b.get_u64()),
        seq: b.get_u64(),
    };
    let expires = b.get_u64();
    let origin = Origin {
        node: NodeId(b.get_u64()),
        session: b.get_u64(),
    };
    let publish = decode_publish(b)?;
    Ok(from_publish(
        publish,
        id,
        (expires != NO_EXPIRY).then_some(expires),
        origin,
        persisted,
    ))
}

/// The PUBLISH part of an encoding: exactly one packet, nothing after it.
pub fn decode_publish(bytes: &[u8]) -> Result<Publish, CodecError> {
    let mut buf = BytesMut::from(bytes);
    match aerie_proto::decode(&mut buf, ProtocolVersion::V5, u32::MAX) {
        Ok(Some(Packet::Publish(p))) if buf.is_empty() => Ok(p),
        Ok(Some(Packet::Publish(_))) => Err(CodecError::Trailing(buf.len())),
        Ok(Some(other)) => Err(CodecError::Publish(format!("not a PUBLISH: {other:?}"))),
        Ok(None) => Err(CodecError::Publish("incomplete".into())),
        Err(e) => Err(CodecError::Publish(e.to_string())),
    }
}

/// A message from a decoded PUBLISH and the header's fields.
pub fn from_publish(
    p: Publish,
    id: MessageId,
    expires_at_ms: Option<u64>,
    origin: Origin,
    persisted: Persisted,
) -> Message {
    Message {
        id,
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties,
        expires_at_ms,
        origin,
        received_at: Instant::now(),
        persisted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aerie_proto::{ByteString, PublishProperties};
    use bytes::Bytes;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = ByteString> {
        "[a-z0-9 _-]{0,12}".prop_map(|s| ByteString::from(s.as_str()))
    }

    fn topic() -> impl Strategy<Value = ByteString> {
        "[a-z0-9$]{1,6}(/[a-z0-9]{0,6}){0,4}".prop_map(|s| ByteString::from(s.as_str()))
    }

    fn properties() -> impl Strategy<Value = PublishProperties> {
        (
            proptest::option::of(0u8..=1),
            proptest::option::of(topic()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            proptest::collection::vec((text(), text()), 0..3),
            proptest::option::of(text()),
        )
            .prop_map(
                |(pfi, response, correlation, user, content)| PublishProperties {
                    payload_format_indicator: pfi,
                    response_topic: response,
                    correlation_data: correlation.map(Bytes::from),
                    user_properties: user,
                    content_type: content,
                    ..Default::default()
                },
            )
    }

    fn qos() -> impl Strategy<Value = QoS> {
        prop_oneof![
            Just(QoS::AtMostOnce),
            Just(QoS::AtLeastOnce),
            Just(QoS::ExactlyOnce)
        ]
    }

    prop_compose! {
        fn message()(
            id in any::<(u64, u64)>(),
            topic in topic(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            qos in qos(),
            retain in any::<bool>(),
            properties in properties(),
            expires in proptest::option::of(0u64..u64::MAX),
            origin in any::<(u64, u64)>(),
        ) -> Message {
            Message {
                id: MessageId { node: NodeId(id.0), seq: id.1 },
                topic,
                payload: Bytes::from(payload),
                qos,
                retain,
                properties,
                expires_at_ms: expires,
                origin: Origin { node: NodeId(origin.0), session: origin.1 },
                received_at: Instant::now(),
                persisted: Persisted::default(),
            }
        }
    }

    /// Everything but the process-local fields.
    fn crossing(m: &Message) -> impl PartialEq + std::fmt::Debug {
        (
            m.id,
            m.topic.clone(),
            m.payload.clone(),
            m.qos,
            m.retain,
            m.properties.clone(),
            m.expires_at_ms,
            m.origin,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn a_message_round_trips(m in message()) {
            let back = decode(&encode_to_vec(&m), Persisted::default()).unwrap();
            prop_assert_eq!(crossing(&back), crossing(&m));
        }

        #[test]
        fn a_cut_or_extended_encoding_is_an_error_not_a_message(
            m in message(),
            cut in any::<proptest::sample::Index>(),
            extra in 1usize..4,
        ) {
            let bytes = encode_to_vec(&m);
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert!(decode(short, Persisted::default()).is_err());
            let mut long = bytes.clone();
            long.extend(std::iter::repeat_n(0u8, extra));
            prop_assert!(decode(&long, Persisted::default()).is_err());
        }
    }

    #[test]
    fn an_unknown_format_is_named() {
        let mut bytes = vec![9u8];
        bytes.extend([0u8; HEADER_LEN]);
        assert_eq!(
            decode(&bytes, Persisted::default()).unwrap_err(),
            CodecError::UnknownFormat(9)
        );
    }
}
