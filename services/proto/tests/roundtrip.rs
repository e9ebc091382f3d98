//! Property tests: every valid packet survives encode → decode for both
//! versions, `encoded_len` matches, and byte-by-byte feeding waits correctly.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use aerie_proto::*;
use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;
const MAX_SUB_ID: u32 = 268_435_455;

fn text() -> impl Strategy<Value = ByteString> {
    "[a-zA-Z0-9/ _.é€$+#-]{0,12}".prop_map(ByteString::from)
}
fn topic_name() -> impl Strategy<Value = ByteString> {
    "[a-z0-9/ $é-]{1,12}".prop_map(ByteString::from)
}
fn topic_filter() -> impl Strategy<Value = ByteString> {
    "[a-z0-9/+#$]{1,12}".prop_map(ByteString::from)
}
fn bin() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}
fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((text(), text()), 0..3)
}
fn bit() -> impl Strategy<Value = Option<u8>> {
    of(0u8..=1)
}
fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}
fn reason_in(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(codes).prop_map(ReasonCode)
}
/// Authentication data only comes with a method.
fn auth_pair() -> impl Strategy<Value = (Option<ByteString>, Option<Bytes>)> {
    of((text(), of(bin()))).prop_map(|o| match o {
        Some((m, d)) => (Some(m), d),
        None => (None, None),
    })
}
fn ack_props(v: ProtocolVersion) -> BoxedStrategy<AckProperties> {
    if v.is_v5() {
        (of(text()), users())
            .prop_map(|(reason_string, user_properties)| AckProperties {
                reason_string,
                user_properties,
            })
            .boxed()
    } else {
        Just(AckProperties::default()).boxed()
    }
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will_props = (
        of(any::<u32>()),
        bit(),
        of(any::<u32>()),
        of(text()),
        of(topic_name()),
        of(bin()),
        users(),
    )
        .prop_map(|(d, pfi, exp, ct, rt, cd, up)| WillProperties {
            will_delay_interval: d,
            payload_format_indicator: pfi,
            message_expiry_interval: exp,
            content_type: ct,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
        });
    let will = of((topic_name(), bin(), qos(), any::<bool>(), will_props));
    let props = (
        of(any::<u32>()),
        of(1u16..),
        of(1u32..),
        of(any::<u16>()),
        bit(),
        bit(),
        users(),
        auth_pair(),
    )
        .prop_map(
            |(se, rm, mps, tam, rri, rpi, up, (am, ad))| ConnectProperties {
                session_expiry_interval: se,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: up,
                authentication_method: am,
                authentication_data: ad,
            },
        );
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        will,
        of(text()),
        of(bin()),
        props,
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                let v5 = v.is_v5();
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will: will.map(|(topic, payload, qos, retain, properties)| Will {
                        topic,
                        payload,
                        qos,
                        retain,
                        properties: if v5 {
                            properties
                        } else {
                            WillProperties::default()
                        },
                    }),
                    // 3.1.1 forbids a password without a user name.
                    password: if v5 || username.is_some() {
                        password
                    } else {
                        None
                    },
                    username,
                    properties: if v5 {
                        properties
                    } else {
                        ConnectProperties::default()
                    },
                }))
            },
        )
}

const CONNACK_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const CONNACK_V3: &[u8] = &[0x00, 0x84, 0x85, 0x86, 0x87, 0x88];

fn connack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = (
        (
            of(any::<u32>()),
            of(1u16..),
            bit(),
            bit(),
            of(1u32..),
            of(text()),
            of(any::<u16>()),
            of(text()),
        ),
        (
            users(),
            bit(),
            bit(),
            bit(),
            of(any::<u16>()),
            of(text()),
            of(text()),
            auth_pair(),
        ),
    )
        .prop_map(
            |((se, rm, mq, ra, mps, aci, tam, rs), (up, wsa, sia, ssa, ska, ri, sr, (am, ad)))| {
                ConnAckProperties {
                    session_expiry_interval: se,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: up,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    authentication_data: ad,
                }
            },
        );
    let codes = if v.is_v5() { CONNACK_V5 } else { CONNACK_V3 };
    (any::<bool>(), reason_in(codes), props).prop_map(
        move |(session_present, reason, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                reason,
                properties: if v.is_v5() {
                    properties
                } else {
                    Default::default()
                },
            })
        },
    )
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let props = (
        bit(),
        of(any::<u32>()),
        of(1u16..),
        of(topic_name()),
        of(bin()),
        users(),
        vec(1..=MAX_SUB_ID, 0..3),
        of(text()),
    )
        .prop_map(|(pfi, exp, ta, rt, cd, up, si, ct)| PublishProperties {
            payload_format_indicator: pfi,
            message_expiry_interval: exp,
            topic_alias: ta,
            response_topic: rt,
            correlation_data: cd,
            user_properties: up,
            subscription_identifiers: si,
            content_type: ct,
        });
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        1u16..,
        bin(),
        props,
    )
        .prop_map(
            move |(dup, qos, retain, topic, empty_topic, id, payload, properties)| {
                let v5 = v.is_v5();
                let properties = if v5 {
                    properties
                } else {
                    PublishProperties::default()
                };
                // An empty topic is valid only with a topic alias.
                let topic = if v5 && empty_topic && properties.topic_alias.is_some() {
                    ByteString::new()
                } else {
                    topic
                };
                let q0 = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !q0,
                    qos,
                    retain,
                    topic,
                    packet_id: if q0 { None } else { Some(id) },
                    payload,
                    properties,
                })
            },
        )
}

fn pub_resp(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    const ACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
    const REL: &[u8] = &[0x00, 0x92];
    (0..4u8, 1u16.., reason_in(ACK), reason_in(REL), ack_props(v)).prop_map(
        move |(kind, packet_id, ack, rel, p)| {
            let v5 = v.is_v5();
            let reason = if !v5 {
                ReasonCode::SUCCESS
            } else if kind < 2 {
                ack
            } else {
                rel
            };
            let r = PubResp {
                packet_id,
                reason,
                properties: p,
            };
            match kind {
                0 => Packet::PubAck(r),
                1 => Packet::PubRec(r),
                2 => Packet::PubRel(r),
                _ => Packet::PubComp(r),
            }
        },
    )
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let rh = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendIfNew),
        Just(RetainHandling::DoNotSend)
    ];
    let opts = (qos(), any::<bool>(), any::<bool>(), rh).prop_map(move |(qos, nl, rap, rh)| {
        if v.is_v5() {
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: rh,
            }
        } else {
            SubscriptionOptions {
                qos,
                ..Default::default()
            }
        }
    });
    (
        1u16..,
        vec((topic_filter(), opts), 1..4),
        of(1..=MAX_SUB_ID),
        users(),
    )
        .prop_map(move |(packet_id, filters, si, up)| {
            let properties = if v.is_v5() {
                SubscribeProperties {
                    subscription_identifier: si,
                    user_properties: up,
                }
            } else {
                Default::default()
            };
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        })
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    const V5C: &[u8] = &[
        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
    ];
    const V3C: &[u8] = &[0x00, 0x01, 0x02, 0x80];
    let codes = if v.is_v5() { V5C } else { V3C };
    (1u16.., vec(reason_in(codes), 1..4), ack_props(v)).prop_map(
        |(packet_id, reasons, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reasons,
                properties,
            })
        },
    )
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (1u16.., vec(topic_filter(), 1..4), users()).prop_map(move |(packet_id, filters, up)| {
        let properties = UnsubscribeProperties {
            user_properties: if v.is_v5() { up } else { vec![] },
        };
        Packet::Unsubscribe(Unsubscribe {
            packet_id,
            filters,
            properties,
        })
    })
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    const CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    (1u16.., vec(reason_in(CODES), 1..4), ack_props(v)).prop_map(
        move |(packet_id, reasons, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reasons: if v.is_v5() { reasons } else { vec![] },
                properties,
            })
        },
    )
}

fn disconnect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    const CODES: &[u8] = &[
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
        0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    if !v.is_v5() {
        return Just(Packet::Disconnect(Disconnect::default())).boxed();
    }
    (
        reason_in(CODES),
        of(any::<u32>()),
        of(text()),
        users(),
        of(text()),
    )
        .prop_map(|(reason, se, rs, up, sr)| {
            Packet::Disconnect(Disconnect {
                reason,
                properties: DisconnectProperties {
                    session_expiry_interval: se,
                    reason_string: rs,
                    user_properties: up,
                    server_reference: sr,
                },
            })
        })
        .boxed()
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        reason_in(&[0x00, 0x18, 0x19]),
        auth_pair(),
        of(text()),
        users(),
    )
        .prop_map(|(reason, (am, ad), rs, up)| {
            Packet::Auth(Auth {
                reason,
                properties: AuthProperties {
                    authentication_method: am,
                    authentication_data: ad,
                    reason_string: rs,
                    user_properties: up,
                },
            })
        })
}

fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        pub_resp(v),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn any_version() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    prop_oneof![
        packet(V3).prop_map(|p| (V3, p)),
        packet(V5).prop_map(|p| (V5, p))
    ]
}

fn encode_vec(p: &Packet, v: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(p, v, &mut buf).expect("valid packet encodes");
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip((v, p) in any_version()) {
        let mut buf = BytesMut::from(&b"prefix"[..]);
        let before = buf.len();
        encode(&p, v, &mut buf).unwrap();
        prop_assert_eq!(buf.len() - before, encoded_len(&p, v));
        let mut wire = buf.split_off(before);
        prop_assert_eq!(peek_packet_len(&wire).unwrap(), Some(wire.len()));
        let decoded = decode(&mut wire, v, u32::MAX).unwrap();
        prop_assert_eq!(decoded, Some(p));
        prop_assert!(wire.is_empty());
    }

    #[test]
    fn byte_at_a_time((v, p) in any_version()) {
        let wire = encode_vec(&p, v);
        let mut buf = BytesMut::new();
        for (i, &b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            let got = decode(&mut buf, v, u32::MAX).unwrap();
            if i + 1 < wire.len() {
                prop_assert_eq!(got, None);
                prop_assert_eq!(buf.len(), i + 1, "nothing consumed while incomplete");
            } else {
                prop_assert_eq!(got, Some(p.clone()));
            }
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn back_to_back((v, a) in any_version(), b in packet(V5)) {
        // Two packets in one buffer decode one after the other.
        let b = if v.is_v5() { b } else { Packet::PingReq };
        let mut buf = encode_vec(&a, v);
        buf.extend_from_slice(&encode_vec(&b, v));
        prop_assert_eq!(decode(&mut buf, v, u32::MAX).unwrap(), Some(a));
        prop_assert_eq!(decode(&mut buf, v, u32::MAX).unwrap(), Some(b));
        prop_assert_eq!(decode(&mut buf, v, u32::MAX).unwrap(), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..64), v5 in any::<bool>()) {
        let v = if v5 { V5 } else { V3 };
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, v, 1 << 20) {}
    }
}

#[test]
fn publish_payload_is_zero_copy() {
    let p = Packet::Publish(Publish {
        topic: "a/b".into(),
        payload: Bytes::from_static(b"hello"),
        ..Default::default()
    });
    let mut buf = encode_vec(&p, V5);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let Some(Packet::Publish(d)) = decode(&mut buf, V5, 1024).unwrap() else {
        panic!()
    };
    let at = d.payload.as_ptr() as usize;
    assert!(
        (start..end).contains(&at),
        "payload points into the read buffer"
    );
    let t = d.topic.as_bytes().as_ptr() as usize;
    assert!(
        (start..end).contains(&t),
        "topic points into the read buffer"
    );
}

#[test]
fn v5_short_forms() {
    // PUBACK Success without properties is two bytes; with a reason only, three.
    let ack = |reason| {
        Packet::PubAck(PubResp {
            packet_id: 7,
            reason,
            properties: Default::default(),
        })
    };
    assert_eq!(
        &encode_vec(&ack(ReasonCode::SUCCESS), V5)[..],
        &[0x40, 2, 0, 7]
    );
    assert_eq!(
        &encode_vec(&ack(ReasonCode(0x10)), V5)[..],
        &[0x40, 3, 0, 7, 0x10]
    );
    assert_eq!(
        &encode_vec(&Packet::Disconnect(Disconnect::default()), V5)[..],
        &[0xE0, 0]
    );
    assert_eq!(
        &encode_vec(&Packet::Auth(Auth::default()), V5)[..],
        &[0xF0, 0]
    );
    // And the long form with an empty property length decodes the same.
    let mut long = BytesMut::from(&[0x40, 4, 0, 7, 0, 0][..]);
    assert_eq!(
        decode(&mut long, V5, 100).unwrap(),
        Some(ack(ReasonCode::SUCCESS))
    );
}

#[test]
fn v311_mappings() {
    let suback = Packet::SubAck(SubAck {
        packet_id: 1,
        reasons: vec![
            ReasonCode(1),
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::TOPIC_FILTER_INVALID,
        ],
        properties: Default::default(),
    });
    assert_eq!(
        &encode_vec(&suback, V3)[..],
        &[0x90, 5, 0, 1, 1, 0x80, 0x80]
    );
    let connack = Packet::ConnAck(ConnAck {
        reason: ReasonCode::BANNED,
        ..Default::default()
    });
    assert_eq!(&encode_vec(&connack, V3)[..], &[0x20, 2, 0, 5]);
    let unsuback = Packet::UnsubAck(UnsubAck {
        packet_id: 9,
        reasons: vec![ReasonCode(0x11)],
        ..Default::default()
    });
    assert_eq!(&encode_vec(&unsuback, V3)[..], &[0xB0, 2, 0, 9]);
    let disconnect = Packet::Disconnect(Disconnect {
        reason: ReasonCode(0x8B),
        ..Default::default()
    });
    assert_eq!(&encode_vec(&disconnect, V3)[..], &[0xE0, 0]);
}

#[test]
fn encode_errors() {
    let mut buf = BytesMut::new();
    let auth = Packet::Auth(Auth::default());
    assert_eq!(
        encode(&auth, V3, &mut buf),
        Err(EncodeError::NotInV311("AUTH"))
    );
    let p = Packet::Publish(Publish {
        topic: "t".into(),
        qos: QoS::AtLeastOnce,
        ..Default::default()
    });
    assert_eq!(encode(&p, V5, &mut buf), Err(EncodeError::MissingPacketId));
    let long = ByteString::from("x".repeat(65_536));
    let p = Packet::Publish(Publish {
        topic: long,
        ..Default::default()
    });
    assert_eq!(
        encode(&p, V5, &mut buf),
        Err(EncodeError::FieldTooLong(65_536))
    );
    assert!(buf.is_empty(), "a failed encode appends nothing");
    assert_eq!(encoded_len(&p, V5), 0);
}
