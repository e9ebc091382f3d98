//! Differential tests against rumqttc's independent codec: what we encode it
//! parses to the same fields, and what it encodes we decode to the same fields.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use aerie_proto as ours;
use bytes::{Bytes, BytesMut};
use ours::{ByteString, ProtocolVersion, ReasonCode};
use rumqttc::mqttbytes::v4 as t4;
use rumqttc::v5::mqttbytes::v5 as t5;

const MAX: u32 = 1 << 20;

fn encode_ours(p: &ours::Packet, v: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    ours::encode(p, v, &mut buf).unwrap();
    buf
}

fn decode_ours(mut buf: BytesMut, v: ProtocolVersion) -> ours::Packet {
    let p = ours::decode(&mut buf, v, MAX)
        .unwrap()
        .expect("complete packet");
    assert!(buf.is_empty(), "all bytes consumed");
    p
}

/// Both directions for 3.1.1.
fn check_v4(ours_p: ours::Packet, theirs: t4::Packet) {
    let mut buf = encode_ours(&ours_p, ProtocolVersion::V311);
    let parsed = t4::Packet::read(&mut buf, MAX as usize).unwrap();
    assert_eq!(parsed, theirs, "rumqttc reads our bytes");
    let mut theirs_bytes = BytesMut::new();
    theirs.write(&mut theirs_bytes, MAX as usize).unwrap();
    assert_eq!(
        decode_ours(theirs_bytes, ProtocolVersion::V311),
        ours_p,
        "we read rumqttc's bytes"
    );
}

/// Both directions for 5.0.
fn check_v5(ours_p: ours::Packet, theirs: t5::Packet) {
    let mut buf = encode_ours(&ours_p, ProtocolVersion::V5);
    let parsed = t5::Packet::read(&mut buf, Some(MAX)).unwrap();
    assert_eq!(parsed, theirs, "rumqttc reads our bytes");
    let mut theirs_bytes = BytesMut::new();
    theirs.write(&mut theirs_bytes, Some(MAX)).unwrap();
    assert_eq!(
        decode_ours(theirs_bytes, ProtocolVersion::V5),
        ours_p,
        "we read rumqttc's bytes"
    );
}

fn bs(s: &str) -> ByteString {
    ByteString::from(s)
}

fn user(pairs: &[(&str, &str)]) -> Vec<(ByteString, ByteString)> {
    pairs.iter().map(|(k, v)| (bs(k), bs(v))).collect()
}

fn user_t(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn v4_connect_with_will_and_login() {
    let ours_p = ours::Packet::Connect(Box::new(ours::Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive: 30,
        client_id: bs("client-1"),
        will: Some(ours::Will {
            topic: bs("status/client-1"),
            payload: Bytes::from_static(b"offline"),
            qos: ours::QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some(bs("alice")),
        password: Some(Bytes::from_static(b"secret")),
        properties: Default::default(),
    }));
    let mut connect = t4::Connect::new("client-1");
    connect.keep_alive = 30;
    connect.last_will = Some(t4::LastWill::new(
        "status/client-1",
        "offline",
        rumqttc::QoS::AtLeastOnce,
        true,
    ));
    connect.set_login("alice", "secret");
    let theirs = t4::Packet::Connect(connect);
    check_v4(ours_p, theirs);
}

#[test]
fn v4_publish_each_qos() {
    for (qos, tq, id) in [
        (ours::QoS::AtMostOnce, rumqttc::QoS::AtMostOnce, None),
        (ours::QoS::AtLeastOnce, rumqttc::QoS::AtLeastOnce, Some(10)),
        (
            ours::QoS::ExactlyOnce,
            rumqttc::QoS::ExactlyOnce,
            Some(65535),
        ),
    ] {
        let ours_p = ours::Packet::Publish(ours::Publish {
            dup: id.is_some(),
            qos,
            retain: true,
            topic: bs("sensors/é/temp"),
            packet_id: id,
            payload: Bytes::from_static(b"\x00\x01binary"),
            properties: Default::default(),
        });
        let mut theirs = t4::Publish::new("sensors/é/temp", tq, &b"\x00\x01binary"[..]);
        theirs.dup = id.is_some();
        theirs.retain = true;
        theirs.pkid = id.unwrap_or(0);
        check_v4(ours_p, t4::Packet::Publish(theirs));
    }
}

#[test]
fn v4_subscribe_suback_unsubscribe_acks() {
    let ours_p = ours::Packet::Subscribe(ours::Subscribe {
        packet_id: 3,
        filters: vec![
            (
                bs("a/+/c"),
                ours::SubscriptionOptions {
                    qos: ours::QoS::ExactlyOnce,
                    ..Default::default()
                },
            ),
            (bs("#"), ours::SubscriptionOptions::default()),
        ],
        properties: Default::default(),
    });
    let theirs = t4::Packet::Subscribe(t4::Subscribe {
        pkid: 3,
        filters: vec![
            t4::SubscribeFilter::new("a/+/c".into(), rumqttc::QoS::ExactlyOnce),
            t4::SubscribeFilter::new("#".into(), rumqttc::QoS::AtMostOnce),
        ],
    });
    check_v4(ours_p, theirs);

    let ours_p = ours::Packet::SubAck(ours::SubAck {
        packet_id: 3,
        reasons: vec![ReasonCode::GRANTED_QOS_2, ReasonCode::UNSPECIFIED_ERROR],
        properties: Default::default(),
    });
    let theirs = t4::Packet::SubAck(t4::SubAck {
        pkid: 3,
        return_codes: vec![
            t4::SubscribeReasonCode::Success(rumqttc::QoS::ExactlyOnce),
            t4::SubscribeReasonCode::Failure,
        ],
    });
    check_v4(ours_p, theirs);

    let ours_p = ours::Packet::Unsubscribe(ours::Unsubscribe {
        packet_id: 4,
        filters: vec![bs("a/+/c"), bs("x")],
        properties: Default::default(),
    });
    let theirs = t4::Packet::Unsubscribe(t4::Unsubscribe {
        pkid: 4,
        topics: vec!["a/+/c".into(), "x".into()],
    });
    check_v4(ours_p, theirs);

    let resp = |id| ours::PubResp {
        packet_id: id,
        ..Default::default()
    };
    check_v4(
        ours::Packet::PubAck(resp(5)),
        t4::Packet::PubAck(t4::PubAck::new(5)),
    );
    check_v4(
        ours::Packet::PubRec(resp(6)),
        t4::Packet::PubRec(t4::PubRec::new(6)),
    );
    check_v4(
        ours::Packet::PubRel(resp(7)),
        t4::Packet::PubRel(t4::PubRel::new(7)),
    );
    check_v4(
        ours::Packet::PubComp(resp(8)),
        t4::Packet::PubComp(t4::PubComp::new(8)),
    );
    check_v4(
        ours::Packet::UnsubAck(ours::UnsubAck {
            packet_id: 9,
            ..Default::default()
        }),
        t4::Packet::UnsubAck(t4::UnsubAck::new(9)),
    );
    check_v4(ours::Packet::PingReq, t4::Packet::PingReq);
    check_v4(
        ours::Packet::Disconnect(Default::default()),
        t4::Packet::Disconnect,
    );
}

#[test]
fn v5_connect_with_will_and_properties() {
    let ours_p = ours::Packet::Connect(Box::new(ours::Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 60,
        client_id: bs("c5"),
        will: Some(ours::Will {
            topic: bs("last/words"),
            payload: Bytes::from_static(b"bye"),
            qos: ours::QoS::ExactlyOnce,
            retain: false,
            properties: ours::WillProperties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(100),
                content_type: Some(bs("text/plain")),
                response_topic: Some(bs("reply/here")),
                correlation_data: Some(Bytes::from_static(b"corr")),
                user_properties: user(&[("k", "v")]),
            },
        }),
        username: Some(bs("bob")),
        password: Some(Bytes::from_static(b"pw")),
        properties: ours::ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(20),
            maximum_packet_size: Some(65536),
            topic_alias_maximum: Some(10),
            request_response_information: Some(1),
            request_problem_information: Some(0),
            user_properties: user(&[("a", "1"), ("a", "2")]),
            authentication_method: Some(bs("SCRAM")),
            authentication_data: Some(Bytes::from_static(b"data")),
        },
    }));
    let connect = t5::Connect {
        keep_alive: 60,
        client_id: "c5".into(),
        clean_start: false,
        properties: Some(t5::ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(20),
            max_packet_size: Some(65536),
            topic_alias_max: Some(10),
            request_response_info: Some(1),
            request_problem_info: Some(0),
            user_properties: user_t(&[("a", "1"), ("a", "2")]),
            authentication_method: Some("SCRAM".into()),
            authentication_data: Some(Bytes::from_static(b"data")),
        }),
    };
    let will = t5::LastWill {
        topic: Bytes::from_static(b"last/words"),
        message: Bytes::from_static(b"bye"),
        qos: rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
        retain: false,
        properties: Some(t5::LastWillProperties {
            delay_interval: Some(5),
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(100),
            content_type: Some("text/plain".into()),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: user_t(&[("k", "v")]),
        }),
    };
    let login = t5::Login {
        username: "bob".into(),
        password: "pw".into(),
    };
    check_v5(
        ours_p,
        t5::Packet::Connect(connect, Some(will), Some(login)),
    );
}

#[test]
fn v5_publish_each_qos_with_properties() {
    use rumqttc::v5::mqttbytes::QoS as TQ;
    for (qos, tq, id) in [
        (ours::QoS::AtMostOnce, TQ::AtMostOnce, None),
        (ours::QoS::AtLeastOnce, TQ::AtLeastOnce, Some(1)),
        (ours::QoS::ExactlyOnce, TQ::ExactlyOnce, Some(300)),
    ] {
        let ours_p = ours::Packet::Publish(ours::Publish {
            dup: false,
            qos,
            retain: false,
            topic: bs("t/1"),
            packet_id: id,
            payload: Bytes::from_static(b"{\"v\":1}"),
            properties: ours::PublishProperties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                topic_alias: Some(2),
                response_topic: Some(bs("r/1")),
                correlation_data: Some(Bytes::from_static(b"x")),
                user_properties: user(&[("trace", "abc")]),
                subscription_identifiers: vec![7, 300_000],
                content_type: Some(bs("application/json")),
            },
        });
        let theirs = t5::Publish {
            dup: false,
            qos: tq,
            retain: false,
            topic: Bytes::from_static(b"t/1"),
            pkid: id.unwrap_or(0),
            payload: Bytes::from_static(b"{\"v\":1}"),
            properties: Some(t5::PublishProperties {
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                topic_alias: Some(2),
                response_topic: Some("r/1".into()),
                correlation_data: Some(Bytes::from_static(b"x")),
                user_properties: user_t(&[("trace", "abc")]),
                subscription_identifiers: vec![7, 300_000],
                content_type: Some("application/json".into()),
            }),
        };
        check_v5(ours_p, t5::Packet::Publish(theirs));
    }
}

#[test]
fn v5_subscribe_suback_unsubscribe_puback() {
    use rumqttc::v5::mqttbytes::QoS as TQ;
    let ours_p = ours::Packet::Subscribe(ours::Subscribe {
        packet_id: 11,
        filters: vec![
            (
                bs("a/#"),
                ours::SubscriptionOptions {
                    qos: ours::QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: ours::RetainHandling::DoNotSend,
                },
            ),
            (
                bs("$share/g/b"),
                ours::SubscriptionOptions {
                    retain_handling: ours::RetainHandling::SendIfNew,
                    ..Default::default()
                },
            ),
        ],
        properties: ours::SubscribeProperties {
            subscription_identifier: Some(42),
            user_properties: user(&[("u", "p")]),
        },
    });
    let theirs = t5::Subscribe {
        pkid: 11,
        filters: vec![
            t5::Filter {
                path: "a/#".into(),
                qos: TQ::AtLeastOnce,
                nolocal: true,
                preserve_retain: true,
                retain_forward_rule: t5::RetainForwardRule::Never,
            },
            t5::Filter {
                path: "$share/g/b".into(),
                qos: TQ::AtMostOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: t5::RetainForwardRule::OnNewSubscribe,
            },
        ],
        properties: Some(t5::SubscribeProperties {
            id: Some(42),
            user_properties: user_t(&[("u", "p")]),
        }),
    };
    check_v5(ours_p, t5::Packet::Subscribe(theirs));

    let ours_p = ours::Packet::SubAck(ours::SubAck {
        packet_id: 11,
        reasons: vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::NOT_AUTHORIZED,
        ],
        properties: ours::AckProperties {
            reason_string: Some(bs("partly")),
            user_properties: vec![],
        },
    });
    let theirs = t5::SubAck {
        pkid: 11,
        return_codes: vec![
            t5::SubscribeReasonCode::Success(TQ::AtLeastOnce),
            t5::SubscribeReasonCode::TopicFilterInvalid,
            t5::SubscribeReasonCode::NotAuthorized,
        ],
        properties: Some(t5::SubAckProperties {
            reason_string: Some("partly".into()),
            user_properties: vec![],
        }),
    };
    check_v5(ours_p, t5::Packet::SubAck(theirs));

    let ours_p = ours::Packet::Unsubscribe(ours::Unsubscribe {
        packet_id: 12,
        filters: vec![bs("a/#")],
        properties: ours::UnsubscribeProperties {
            user_properties: user(&[("x", "y")]),
        },
    });
    let theirs = t5::Unsubscribe {
        pkid: 12,
        filters: vec!["a/#".into()],
        properties: Some(t5::UnsubscribeProperties {
            user_properties: user_t(&[("x", "y")]),
        }),
    };
    check_v5(ours_p, t5::Packet::Unsubscribe(theirs));

    let ours_p = ours::Packet::UnsubAck(ours::UnsubAck {
        packet_id: 12,
        reasons: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
        properties: Default::default(),
    });
    let theirs = t5::UnsubAck {
        pkid: 12,
        reasons: vec![t5::UnsubAckReason::NoSubscriptionExisted],
        properties: None,
    };
    check_v5(ours_p, t5::Packet::UnsubAck(theirs));

    // PUBACK: the two-byte Success form, and a reason with properties.
    let ours_p = ours::Packet::PubAck(ours::PubResp {
        packet_id: 13,
        ..Default::default()
    });
    let theirs = t5::PubAck {
        pkid: 13,
        reason: t5::PubAckReason::Success,
        properties: None,
    };
    check_v5(ours_p, t5::Packet::PubAck(theirs));
    let ours_p = ours::Packet::PubAck(ours::PubResp {
        packet_id: 14,
        reason: ReasonCode::NOT_AUTHORIZED,
        properties: ours::AckProperties {
            reason_string: Some(bs("acl")),
            user_properties: user(&[("k", "v")]),
        },
    });
    let theirs = t5::PubAck {
        pkid: 14,
        reason: t5::PubAckReason::NotAuthorized,
        properties: Some(t5::PubAckProperties {
            reason_string: Some("acl".into()),
            user_properties: user_t(&[("k", "v")]),
        }),
    };
    check_v5(ours_p, t5::Packet::PubAck(theirs));
}
