//! What the control plane and a gateway say to each other about live state:
//! the subjects (`<prefix>.live.<node>.<op>.<tenant>`), the requests'
//! payloads, and the answers (JSON, sent in one or more frames).

use crate::subjects::{escape, unescape};
use aerie_control::broker::{BrokerError, HttpPublish};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The request header that carries the control plane's W3C trace context.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// What the control plane asks a gateway. The payload of each:
/// `Clients` none, `Kick` the client id, `Publish` [`encode_publish`],
/// `Matching` the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// The tenant's connections on that gateway.
    Clients,
    /// Close a connection with 0x98, as the embedded route does.
    Kick,
    /// Publish through that gateway's core, as a client's PUBLISH there.
    Publish,
    /// How many of that gateway's subscriptions match a topic.
    Matching,
}

impl Op {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Op::Clients => "clients",
            Op::Kick => "kick",
            Op::Publish => "publish",
            Op::Matching => "matching",
        }
    }

    fn parse(token: &str) -> Option<Op> {
        [Op::Clients, Op::Kick, Op::Publish, Op::Matching]
            .into_iter()
            .find(|op| op.label() == token)
    }
}

/// `<prefix>.live.<node>`: everything a node answers is under it.
pub(crate) fn node_root(prefix: &str, node: &str) -> String {
    format!("{prefix}.live.{node}")
}

/// The subject of `op` about `tenant` (escaped as subjects.rs escapes a
/// level, so any tenant id is one token) on `node`.
pub(crate) fn subject(prefix: &str, node: &str, op: Op, tenant: &str) -> String {
    let mut s = node_root(prefix, node);
    s.push('.');
    s.push_str(op.label());
    s.push('.');
    escape(tenant, &mut s);
    s
}

/// The operation and tenant of a subject under `root` ([`node_root`]).
pub(crate) fn parse_subject(root: &str, subject: &str) -> Option<(Op, String)> {
    let rest = subject.strip_prefix(root)?.strip_prefix('.')?;
    let (op, tenant) = rest.split_once('.')?;
    if tenant.contains('.') {
        return None;
    }
    Some((Op::parse(op)?, unescape(tenant)?))
}

/// A gateway's answer: what the `BrokerPort` call returned there.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Answer<T> {
    Ok(T),
    Refused(String),
    Unavailable(String),
}

impl<T: Serialize> Answer<T> {
    pub(crate) fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("answers serialize"))
    }
}

impl<T> From<Result<T, BrokerError>> for Answer<T> {
    fn from(result: Result<T, BrokerError>) -> Self {
        match result {
            Ok(value) => Answer::Ok(value),
            Err(BrokerError::Refused(why)) => Answer::Refused(why),
            Err(BrokerError::Unavailable(why)) => Answer::Unavailable(why),
        }
    }
}

/// The answer in `bytes` as the call's result; one that does not decode
/// is the gateway's fault: 503.
pub(crate) fn decode_answer<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BrokerError> {
    match serde_json::from_slice::<Answer<T>>(bytes) {
        Ok(Answer::Ok(value)) => Ok(value),
        Ok(Answer::Refused(why)) => Err(BrokerError::Refused(why)),
        Ok(Answer::Unavailable(why)) => Err(BrokerError::Unavailable(why)),
        Err(e) => Err(BrokerError::Unavailable(format!(
            "a gateway's answer does not decode: {e}"
        ))),
    }
}

/// First byte of a frame that more frames of the same answer follow.
const MORE: u8 = b'+';
/// First byte of an answer's last frame.
const LAST: u8 = b'.';

/// An answer as the messages that carry it: each at most `frame_bytes` of
/// it after a one-byte flag, so a long listing (a tenant with many clients
/// or long filters) stays under NATS's `max_payload` (1 MiB by default).
pub(crate) fn frames(answer: &[u8], frame_bytes: usize) -> Vec<Bytes> {
    let chunks: Vec<&[u8]> = if answer.is_empty() {
        vec![&[]]
    } else {
        answer.chunks(frame_bytes.max(1)).collect()
    };
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut frame = BytesMut::with_capacity(1 + chunk.len());
            frame.put_u8(if i == last { LAST } else { MORE });
            frame.put_slice(chunk);
            frame.freeze()
        })
        .collect()
}

/// An answer put back together from its [`frames`], in order.
#[derive(Default)]
pub(crate) struct Reassembly {
    whole: BytesMut,
}

impl Reassembly {
    /// Takes the next frame: the whole answer once it was the last, or an
    /// error if it is not a frame.
    pub(crate) fn push(&mut self, frame: &[u8]) -> Result<Option<Bytes>, ()> {
        match frame.split_first() {
            Some((&MORE, rest)) => {
                self.whole.extend_from_slice(rest);
                Ok(None)
            }
            Some((&LAST, rest)) => {
                self.whole.extend_from_slice(rest);
                Ok(Some(std::mem::take(&mut self.whole).freeze()))
            }
            _ => Err(()),
        }
    }
}

/// QoS (1 byte), retain (1 byte), the topic's length (4 bytes), the topic,
/// the payload.
pub(crate) fn encode_publish(message: &HttpPublish) -> Bytes {
    let mut out = BytesMut::with_capacity(6 + message.topic.len() + message.payload.len());
    out.put_u8(message.qos);
    out.put_u8(u8::from(message.retain));
    out.put_u32(message.topic.len() as u32);
    out.put_slice(message.topic.as_bytes());
    out.put_slice(&message.payload);
    out.freeze()
}

/// A publish request; `None` if it is not one [`encode_publish`] makes
/// (checked again by the gateway as the REST route checks it: a topic
/// name, QoS 0 or 1).
pub(crate) fn decode_publish(mut bytes: &[u8]) -> Option<HttpPublish> {
    if bytes.len() < 6 {
        return None;
    }
    let qos = bytes.get_u8();
    let retain = match bytes.get_u8() {
        0 => false,
        1 => true,
        _ => return None,
    };
    let topic_len = bytes.get_u32() as usize;
    let topic = std::str::from_utf8(bytes.get(..topic_len)?).ok()?;
    if qos > 1 || topic.starts_with('$') || aerie_proto::topic::validate_topic_name(topic).is_err()
    {
        return None;
    }
    Some(HttpPublish {
        topic: topic.to_owned(),
        payload: bytes[topic_len..].to_vec(),
        qos,
        retain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_names_its_operation_and_tenant_and_any_tenant_id_is_one_token() {
        let root = node_root("aerie", "gw-1-0000abcd");
        for tenant in ["t1", "a.b", "*", ">", "with space", ""] {
            let s = subject("aerie", "gw-1-0000abcd", Op::Kick, tenant);
            assert_eq!(s.matches('.').count(), 4, "{s}");
            assert_eq!(
                parse_subject(&root, &s),
                Some((Op::Kick, tenant.to_owned()))
            );
        }
        assert_eq!(
            parse_subject(&root, "aerie.live.gw-1-0000abcd.nope.t1"),
            None
        );
        assert_eq!(
            parse_subject(&root, "aerie.live.gw-1-0000abcd.kick.t1.x"),
            None
        );
        assert_eq!(parse_subject(&root, "aerie.live.other.kick.t1"), None);
    }

    #[test]
    fn a_publish_request_reads_back_as_written_and_anything_else_is_refused() {
        let message = HttpPublish {
            topic: "a/b c".into(),
            payload: b"\x00hello".to_vec(),
            qos: 1,
            retain: true,
        };
        assert_eq!(decode_publish(&encode_publish(&message)), Some(message));
        assert_eq!(decode_publish(b"short"), None);
        for bad in [
            HttpPublish {
                topic: "a/+".into(),
                payload: vec![],
                qos: 0,
                retain: false,
            },
            HttpPublish {
                topic: "$SYS/x".into(),
                payload: vec![],
                qos: 0,
                retain: false,
            },
            HttpPublish {
                topic: "a".into(),
                payload: vec![],
                qos: 2,
                retain: false,
            },
        ] {
            assert_eq!(decode_publish(&encode_publish(&bad)), None, "{bad:?}");
        }
        let mut lying = BytesMut::new();
        lying.put_u8(0);
        lying.put_u8(0);
        lying.put_u32(99);
        lying.put_slice(b"a");
        assert_eq!(decode_publish(&lying), None);
    }

    #[test]
    fn an_answer_split_into_frames_is_put_back_together_and_garbage_is_refused() {
        let long: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        for (answer, frame_bytes, count) in [
            (&long[..], 128 * 1024, 3),
            (&long[..], long.len(), 1),
            (&b""[..], 16, 1),
        ] {
            let framed = frames(answer, frame_bytes);
            assert_eq!(framed.len(), count);
            assert!(framed.iter().all(|f| f.len() <= frame_bytes + 1));
            let mut reassembly = Reassembly::default();
            let (last, before) = framed.split_last().unwrap();
            for frame in before {
                assert_eq!(reassembly.push(frame), Ok(None));
            }
            assert_eq!(
                reassembly.push(last),
                Ok(Some(Bytes::copy_from_slice(answer)))
            );
        }
        assert_eq!(Reassembly::default().push(b"{\"ok\":1}"), Err(()));
        assert_eq!(Reassembly::default().push(b""), Err(()));
    }

    #[test]
    fn answers_carry_the_gateways_result_and_garbage_is_unavailable() {
        let refused: Answer<u64> = Err(BrokerError::Refused("over".into())).into();
        assert_eq!(
            decode_answer::<u64>(&refused.encode()),
            Err(BrokerError::Refused("over".into()))
        );
        assert_eq!(decode_answer::<u64>(&Answer::Ok(3u64).encode()), Ok(3));
        assert!(matches!(
            decode_answer::<u64>(b"{]"),
            Err(BrokerError::Unavailable(_))
        ));
    }
}
