//! One row per validation rule: the bytes, the exact error, and the reason code
//! a server sends for it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use aerie_proto::*;
use bytes::BytesMut;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;
const MALFORMED: u8 = 0x81;
const PROTOCOL: u8 = 0x82;

/// A packet: first byte, remaining length, body.
fn pkt(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = (n & 0x7F) as u8;
        n >>= 7;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string or binary field.
fn s(v: &[u8]) -> Vec<u8> {
    let mut out = (v.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(v);
    out
}

/// Properties with their length prefix (short lists only).
fn props(p: &[u8]) -> Vec<u8> {
    assert!(p.len() < 128);
    let mut out = vec![p.len() as u8];
    out.extend_from_slice(p);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn connect5(flags: u8, properties: &[u8], payload: &[u8]) -> Vec<u8> {
    pkt(
        0x10,
        &cat(&[&s(b"MQTT"), &[5, flags, 0, 60], &props(properties), payload]),
    )
}

fn connect3(flags: u8, payload: &[u8]) -> Vec<u8> {
    pkt(0x10, &cat(&[&s(b"MQTT"), &[4, flags, 0, 60], payload]))
}

/// A v5 PUBLISH QoS 0 to `topic` with these properties.
fn publish5(topic: &[u8], properties: &[u8]) -> Vec<u8> {
    pkt(0x30, &cat(&[&s(topic), &props(properties), b"payload"]))
}

fn subscribe5(options: u8) -> Vec<u8> {
    pkt(0x82, &cat(&[&[0, 1], &props(&[]), &s(b"a/b"), &[options]]))
}

struct Case {
    name: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    error: DecodeError,
    reason: u8,
}

fn case(
    name: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    error: DecodeError,
    reason: u8,
) -> Case {
    Case {
        name,
        version,
        bytes,
        error,
        reason,
    }
}

fn flags(packet: &'static str, flags: u8) -> DecodeError {
    DecodeError::InvalidFlags { packet, flags }
}

fn unexpected(id: u8, packet: &'static str) -> DecodeError {
    DecodeError::UnexpectedProperty { id, packet }
}

fn bad_reason(code: u8, packet: &'static str) -> DecodeError {
    DecodeError::InvalidReasonCode { code, packet }
}

fn cases() -> Vec<Case> {
    use DecodeError::*;
    let m = Malformed("");
    let p = Protocol("");
    let user_prop_with_null = cat(&[&[0x26], &s(b"k\0"), &s(b"v")]);
    vec![
        // Fixed header.
        case(
            "remaining length of 5 bytes",
            V5,
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            MalformedRemainingLength,
            MALFORMED,
        ),
        case(
            "remaining length continuation on 4th byte",
            V3,
            vec![0xC0, 0x80, 0x80, 0x80, 0x80],
            MalformedRemainingLength,
            MALFORMED,
        ),
        case(
            "reserved packet type 0",
            V5,
            vec![0x00, 0],
            ReservedPacketType(0),
            MALFORMED,
        ),
        case(
            "packet type 15 in 3.1.1",
            V3,
            vec![0xF0, 0],
            ReservedPacketType(15),
            MALFORMED,
        ),
        case(
            "CONNECT flags",
            V5,
            vec![0x11, 0],
            flags("CONNECT", 1),
            MALFORMED,
        ),
        case(
            "CONNACK flags",
            V5,
            vec![0x28, 0],
            flags("CONNACK", 8),
            MALFORMED,
        ),
        case(
            "PUBACK flags",
            V5,
            vec![0x42, 0],
            flags("PUBACK", 2),
            MALFORMED,
        ),
        case(
            "PUBREC flags",
            V5,
            vec![0x51, 0],
            flags("PUBREC", 1),
            MALFORMED,
        ),
        case(
            "PUBREL flags",
            V5,
            vec![0x60, 0],
            flags("PUBREL", 0),
            MALFORMED,
        ),
        case(
            "PUBCOMP flags",
            V3,
            vec![0x72, 0],
            flags("PUBCOMP", 2),
            MALFORMED,
        ),
        case(
            "SUBSCRIBE flags",
            V5,
            vec![0x80, 0],
            flags("SUBSCRIBE", 0),
            MALFORMED,
        ),
        case(
            "SUBACK flags",
            V5,
            vec![0x92, 0],
            flags("SUBACK", 2),
            MALFORMED,
        ),
        case(
            "UNSUBSCRIBE flags",
            V3,
            vec![0xA3, 0],
            flags("UNSUBSCRIBE", 3),
            MALFORMED,
        ),
        case(
            "UNSUBACK flags",
            V5,
            vec![0xB4, 0],
            flags("UNSUBACK", 4),
            MALFORMED,
        ),
        case(
            "PINGREQ flags",
            V5,
            vec![0xC1, 0],
            flags("PINGREQ", 1),
            MALFORMED,
        ),
        case(
            "PINGRESP flags",
            V3,
            vec![0xDF, 0],
            flags("PINGRESP", 0xF),
            MALFORMED,
        ),
        case(
            "DISCONNECT flags",
            V5,
            vec![0xE2, 0],
            flags("DISCONNECT", 2),
            MALFORMED,
        ),
        case("AUTH flags", V5, vec![0xF1, 0], flags("AUTH", 1), MALFORMED),
        case(
            "PUBLISH QoS 3",
            V5,
            pkt(0x36, &cat(&[&s(b"a"), &[0, 1, 0]])),
            InvalidQoS,
            MALFORMED,
        ),
        case(
            "PUBLISH QoS 0 with DUP",
            V3,
            pkt(0x38, &s(b"a")),
            m.clone(),
            MALFORMED,
        ),
        // Lengths.
        case(
            "trailing bytes after PINGREQ",
            V5,
            vec![0xC0, 1, 0],
            m.clone(),
            MALFORMED,
        ),
        case(
            "trailing bytes after 3.1.1 PUBACK",
            V3,
            pkt(0x40, &[0, 1, 0]),
            m.clone(),
            MALFORMED,
        ),
        case(
            "truncated string length",
            V5,
            pkt(0x30, &[0]),
            m.clone(),
            MALFORMED,
        ),
        case(
            "string longer than packet",
            V3,
            pkt(0x30, &[0, 9, b'a']),
            m.clone(),
            MALFORMED,
        ),
        case(
            "truncated packet id",
            V3,
            pkt(0x40, &[0]),
            m.clone(),
            MALFORMED,
        ),
        case(
            "property length beyond packet",
            V5,
            pkt(0x30, &cat(&[&s(b"a"), &[9, 0x01]])),
            m.clone(),
            MALFORMED,
        ),
        case(
            "property value beyond property length",
            V5,
            publish5(b"a", &[0x02, 0, 0]),
            m.clone(),
            MALFORMED,
        ),
        // Strings.
        case(
            "invalid UTF-8 topic",
            V3,
            pkt(0x30, &s(&[0xC3, 0x28])),
            InvalidUtf8,
            MALFORMED,
        ),
        case(
            "UTF-16 surrogate in client id",
            V3,
            connect3(0x02, &s(&[0xED, 0xA0, 0x80])),
            InvalidUtf8,
            MALFORMED,
        ),
        case(
            "U+0000 in topic",
            V5,
            publish5(b"a\0b", &[]),
            NullCharacter,
            MALFORMED,
        ),
        case(
            "U+0000 in client id",
            V3,
            connect3(0x02, &s(b"id\0")),
            NullCharacter,
            MALFORMED,
        ),
        case(
            "U+0000 in user property",
            V5,
            publish5(b"a", &user_prop_with_null),
            NullCharacter,
            MALFORMED,
        ),
        case(
            "U+0000 in user name",
            V3,
            connect3(0x82, &cat(&[&s(b"id"), &s(b"u\0")])),
            NullCharacter,
            MALFORMED,
        ),
        case(
            "U+0000 in content type",
            V5,
            publish5(b"a", &cat(&[&[0x03], &s(b"\0")])),
            NullCharacter,
            MALFORMED,
        ),
        case(
            "invalid UTF-8 in subscribe filter",
            V3,
            pkt(0x82, &cat(&[&[0, 1], &s(&[0xFF]), &[0]])),
            InvalidUtf8,
            MALFORMED,
        ),
        // PUBLISH.
        case(
            "+ in PUBLISH topic",
            V5,
            publish5(b"a/+", &[]),
            InvalidTopicName,
            0x90,
        ),
        case(
            "# in PUBLISH topic",
            V3,
            pkt(0x30, &s(b"a/#")),
            InvalidTopicName,
            0x90,
        ),
        case(
            "empty topic in 3.1.1",
            V3,
            pkt(0x30, &s(b"")),
            InvalidTopicName,
            0x90,
        ),
        case(
            "empty topic without alias",
            V5,
            publish5(b"", &[]),
            InvalidTopicName,
            0x90,
        ),
        case(
            "topic alias 0",
            V5,
            publish5(b"a", &[0x23, 0, 0]),
            TopicAliasZero,
            0x94,
        ),
        case(
            "PUBLISH packet id 0",
            V5,
            pkt(0x32, &cat(&[&s(b"a"), &[0, 0, 0]])),
            ZeroPacketId,
            PROTOCOL,
        ),
        case(
            "payload format indicator 2",
            V5,
            publish5(b"a", &[0x01, 2]),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "subscription identifier 0 in PUBLISH",
            V5,
            publish5(b"a", &[0x0B, 0]),
            p.clone(),
            PROTOCOL,
        ),
        // Properties.
        case(
            "duplicate property",
            V5,
            publish5(b"a", &[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
            DuplicateProperty(0x02),
            PROTOCOL,
        ),
        case(
            "duplicate topic alias",
            V5,
            publish5(b"a", &[0x23, 0, 1, 0x23, 0, 1]),
            DuplicateProperty(0x23),
            PROTOCOL,
        ),
        case(
            "property not allowed in PUBLISH",
            V5,
            publish5(b"a", &[0x11, 0, 0, 0, 1]),
            unexpected(0x11, "PUBLISH"),
            MALFORMED,
        ),
        case(
            "will delay in CONNECT properties",
            V5,
            connect5(0x02, &[0x18, 0, 0, 0, 1], &s(b"id")),
            unexpected(0x18, "CONNECT"),
            MALFORMED,
        ),
        case(
            "unknown property",
            V5,
            publish5(b"a", &[0x7F, 0]),
            unexpected(0x7F, "PUBLISH"),
            MALFORMED,
        ),
        case(
            "multi-byte property identifier",
            V5,
            publish5(b"a", &[0x81, 0x01, 0]),
            unexpected(0x81, "PUBLISH"),
            MALFORMED,
        ),
        // CONNECT.
        case(
            "MQIsdp level 3",
            V5,
            pkt(0x10, &cat(&[&s(b"MQIsdp"), &[3, 2, 0, 60], &s(b"id")])),
            UnsupportedProtocolVersion(3),
            0x84,
        ),
        case(
            "protocol level 6",
            V3,
            pkt(0x10, &cat(&[&s(b"MQTT"), &[6, 2, 0, 60], &s(b"id")])),
            UnsupportedProtocolVersion(6),
            0x84,
        ),
        case(
            "bad protocol name",
            V5,
            pkt(0x10, &cat(&[&s(b"MQTX"), &[4, 2, 0, 60], &s(b"id")])),
            InvalidProtocolName,
            0x84,
        ),
        case(
            "reserved CONNECT flag",
            V3,
            connect3(0x03, &s(b"id")),
            m.clone(),
            MALFORMED,
        ),
        case(
            "will QoS without will flag",
            V5,
            connect5(0x08, &[], &s(b"id")),
            m.clone(),
            MALFORMED,
        ),
        case(
            "will retain without will flag",
            V3,
            connect3(0x20, &s(b"id")),
            m.clone(),
            MALFORMED,
        ),
        case(
            "will QoS 3",
            V3,
            connect3(0x1C, &cat(&[&s(b"id"), &s(b"t"), &s(b"x")])),
            InvalidQoS,
            MALFORMED,
        ),
        case(
            "password without user name in 3.1.1",
            V3,
            connect3(0x42, &cat(&[&s(b"id"), &s(b"pw")])),
            m.clone(),
            MALFORMED,
        ),
        case(
            "wildcard in will topic",
            V3,
            connect3(0x06, &cat(&[&s(b"id"), &s(b"a/#"), &s(b"x")])),
            InvalidTopicName,
            0x90,
        ),
        case(
            "receive maximum 0",
            V5,
            connect5(0x02, &[0x21, 0, 0], &s(b"id")),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "maximum packet size 0",
            V5,
            connect5(0x02, &[0x27, 0, 0, 0, 0], &s(b"id")),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "request problem information 2",
            V5,
            connect5(0x02, &[0x17, 2], &s(b"id")),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "request response information 2",
            V5,
            connect5(0x02, &[0x19, 2], &s(b"id")),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "will payload format indicator 2",
            V5,
            connect5(
                0x06,
                &[],
                &cat(&[&s(b"id"), &props(&[0x01, 2]), &s(b"t"), &s(b"x")]),
            ),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "authentication data without method",
            V5,
            connect5(0x02, &cat(&[&[0x16], &s(b"data")]), &s(b"id")),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "truncated CONNECT payload",
            V5,
            connect5(0x82, &[], &s(b"id")),
            m.clone(),
            MALFORMED,
        ),
        // SUBSCRIBE / UNSUBSCRIBE.
        case(
            "SUBSCRIBE without filters",
            V5,
            pkt(0x82, &[0, 1, 0]),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "SUBSCRIBE packet id 0",
            V3,
            pkt(0x82, &cat(&[&[0, 0], &s(b"a"), &[0]])),
            ZeroPacketId,
            PROTOCOL,
        ),
        case(
            "SUBSCRIBE empty filter",
            V5,
            pkt(0x82, &cat(&[&[0, 1, 0], &s(b""), &[0]])),
            m.clone(),
            MALFORMED,
        ),
        case(
            "SUBSCRIBE filter without options",
            V3,
            pkt(0x82, &cat(&[&[0, 1], &s(b"a")])),
            m.clone(),
            MALFORMED,
        ),
        case(
            "subscription options reserved bits",
            V5,
            subscribe5(0x40),
            m.clone(),
            MALFORMED,
        ),
        case(
            "subscription options QoS 3",
            V5,
            subscribe5(0x03),
            InvalidQoS,
            MALFORMED,
        ),
        case(
            "retain handling 3",
            V5,
            subscribe5(0x30),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "3.1.1 subscription options upper bits",
            V3,
            pkt(0x82, &cat(&[&[0, 1], &s(b"a"), &[0x04]])),
            m.clone(),
            MALFORMED,
        ),
        case(
            "subscription identifier 0",
            V5,
            pkt(0x82, &cat(&[&[0, 1], &props(&[0x0B, 0]), &s(b"a"), &[0]])),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "UNSUBSCRIBE without filters",
            V3,
            pkt(0xA2, &[0, 1]),
            p.clone(),
            PROTOCOL,
        ),
        // Reason codes.
        case(
            "PUBACK reason 0x92",
            V5,
            pkt(0x40, &[0, 1, 0x92]),
            bad_reason(0x92, "PUBACK"),
            MALFORMED,
        ),
        case(
            "PUBREC reason 0x01",
            V5,
            pkt(0x50, &[0, 1, 0x01]),
            bad_reason(0x01, "PUBREC"),
            MALFORMED,
        ),
        case(
            "PUBREL reason 0x10",
            V5,
            pkt(0x62, &[0, 1, 0x10]),
            bad_reason(0x10, "PUBREL"),
            MALFORMED,
        ),
        case(
            "PUBCOMP reason 0x80",
            V5,
            pkt(0x70, &[0, 1, 0x80]),
            bad_reason(0x80, "PUBCOMP"),
            MALFORMED,
        ),
        case(
            "PUBACK packet id 0",
            V5,
            pkt(0x40, &[0, 0]),
            ZeroPacketId,
            PROTOCOL,
        ),
        case(
            "SUBACK reason 0x03",
            V5,
            pkt(0x90, &[0, 1, 0, 0x03]),
            bad_reason(0x03, "SUBACK"),
            MALFORMED,
        ),
        case(
            "3.1.1 SUBACK reason 0x87",
            V3,
            pkt(0x90, &[0, 1, 0x87]),
            bad_reason(0x87, "SUBACK"),
            MALFORMED,
        ),
        case(
            "UNSUBACK reason 0x10",
            V5,
            pkt(0xB0, &[0, 1, 0, 0x10]),
            bad_reason(0x10, "UNSUBACK"),
            MALFORMED,
        ),
        case(
            "DISCONNECT reason 0x01",
            V5,
            pkt(0xE0, &[0x01]),
            bad_reason(0x01, "DISCONNECT"),
            MALFORMED,
        ),
        case(
            "AUTH reason 0x01",
            V5,
            pkt(0xF0, &[0x01]),
            bad_reason(0x01, "AUTH"),
            MALFORMED,
        ),
        case(
            "CONNACK reason 0x8B",
            V5,
            pkt(0x20, &[0, 0x8B, 0]),
            bad_reason(0x8B, "CONNACK"),
            MALFORMED,
        ),
        case(
            "3.1.1 CONNACK return code 6",
            V3,
            pkt(0x20, &[0, 6]),
            bad_reason(6, "CONNACK"),
            MALFORMED,
        ),
        case(
            "CONNACK reserved flags",
            V3,
            pkt(0x20, &[2, 0]),
            m.clone(),
            MALFORMED,
        ),
        case(
            "CONNACK maximum QoS 2",
            V5,
            pkt(0x20, &[0, 0, 2, 0x24, 2]),
            p.clone(),
            PROTOCOL,
        ),
        case(
            "trailing bytes after 3.1.1 DISCONNECT",
            V3,
            pkt(0xE0, &[0]),
            m.clone(),
            MALFORMED,
        ),
    ]
}

/// `Malformed` and `Protocol` carry a free-text detail; compare the variant only.
fn same(a: &DecodeError, b: &DecodeError) -> bool {
    use DecodeError::*;
    match (a, b) {
        (Malformed(_), Malformed(_)) | (Protocol(_), Protocol(_)) => true,
        _ => a == b,
    }
}

#[test]
fn malformed_table() {
    let mut failures = Vec::new();
    for c in cases() {
        let mut buf = BytesMut::from(&c.bytes[..]);
        match decode(&mut buf, c.version, 1 << 20) {
            Err(e) if same(&e, &c.error) && e.reason_code().0 == c.reason => {}
            other => failures.push(format!(
                "{}: expected {:?} (0x{:02X}), got {:?}",
                c.name, c.error, c.reason, other
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn oversize_detected_from_fixed_header_alone() {
    // Remaining length 16 383: only the two header bytes are buffered.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0x7F][..]);
    let err = decode(&mut buf, V5, 1000).unwrap_err();
    assert_eq!(
        err,
        DecodeError::PacketTooLarge {
            size: 16_386,
            max: 1000
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    assert_eq!(buf.len(), 3, "nothing consumed");
    // Exactly at the limit is fine (and incomplete here).
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0x7F][..]);
    assert_eq!(decode(&mut buf, V5, 16_386), Ok(None));
}

#[test]
fn peek_len() {
    assert_eq!(peek_packet_len(&[]), Ok(None));
    assert_eq!(peek_packet_len(&[0x30]), Ok(None));
    assert_eq!(peek_packet_len(&[0x30, 0x80]), Ok(None));
    assert_eq!(peek_packet_len(&[0x30, 0x80, 0x01]), Ok(Some(131)));
    assert_eq!(peek_packet_len(&[0xC0, 0x00]), Ok(Some(2)));
    assert_eq!(
        peek_packet_len(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF]),
        Err(DecodeError::MalformedRemainingLength)
    );
}

#[test]
fn accepted_edge_cases() {
    let ok = |v, bytes: Vec<u8>| {
        let mut buf = BytesMut::from(&bytes[..]);
        let p = decode(&mut buf, v, 1 << 20).unwrap_or_else(|e| panic!("{bytes:02X?}: {e}"));
        assert!(buf.is_empty());
        p.expect("complete")
    };
    // Non-minimal remaining length.
    assert_eq!(ok(V3, vec![0xC0, 0x80, 0x00]), Packet::PingReq);
    // User properties and subscription identifiers may repeat.
    let twice = cat(&[
        &[0x26],
        &s(b"k"),
        &s(b"v"),
        &[0x26],
        &s(b"k"),
        &s(b"v"),
        &[0x0B, 1, 0x0B, 2],
    ]);
    let Packet::Publish(p) = ok(V5, publish5(b"a", &twice)) else {
        panic!()
    };
    assert_eq!(p.properties.user_properties.len(), 2);
    assert_eq!(p.properties.subscription_identifiers, vec![1, 2]);
    // Empty topic with an alias; non-ASCII and control characters other than U+0000.
    let Packet::Publish(p) = ok(V5, publish5(b"", &[0x23, 0, 5])) else {
        panic!()
    };
    assert_eq!((p.topic.len(), p.properties.topic_alias), (0, Some(5)));
    ok(V3, pkt(0x30, &s("é/\u{1}/\u{FEFF}".as_bytes())));
    // SUBSCRIBE does not judge wildcard syntax; the broker answers 0x8F per filter.
    let Packet::Subscribe(sub) = ok(V3, pkt(0x82, &cat(&[&[0, 1], &s(b"a/#/b"), &[1]]))) else {
        panic!()
    };
    assert_eq!(&sub.filters[0].0[..], "a/#/b");
    // 3.1.1 CONNECT with an empty client id and a will.
    let Packet::Connect(c) = ok(V5, connect3(0x2E, &cat(&[&s(b""), &s(b"w/t"), &s(b"bye")])))
    else {
        panic!()
    };
    assert_eq!(c.protocol, V3);
    let w = c.will.unwrap();
    assert_eq!(
        (w.qos, w.retain, &w.topic[..]),
        (QoS::AtLeastOnce, true, "w/t")
    );
    // v5 DISCONNECT forms: empty, reason only, reason + properties.
    assert_eq!(
        ok(V5, pkt(0xE0, &[])),
        Packet::Disconnect(Disconnect::default())
    );
    let Packet::Disconnect(d) = ok(V5, pkt(0xE0, &[0x04])) else {
        panic!()
    };
    assert_eq!(d.reason, ReasonCode::DISCONNECT_WITH_WILL);
    let Packet::Disconnect(d) = ok(V5, pkt(0xE0, &[0x8B, 5, 0x11, 0, 0, 0, 9])) else {
        panic!()
    };
    assert_eq!(d.properties.session_expiry_interval, Some(9));
}
