//! No acknowledged message is lost when `aerie serve` is killed with SIGKILL:
//! a publisher streams QoS 1/2 messages to an offline persistent session, the
//! broker is killed at a random moment, and after a restart the session gets
//! every message that was acknowledged (and, for QoS 2, none twice).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aerie_e2e::raw::connect_packet;
use aerie_e2e::{RawClient, Server};
use aerie_proto::*;

/// A pseudo-random delay in [lo, hi) ms, different on every run.
fn random_ms(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    lo + u64::from(nanos) % (hi - lo)
}

/// SIGKILLs `pid` after a random 150–600 ms; returns the delay and the task.
fn sigkill_soon(pid: u32) -> (u64, tokio::task::JoinHandle<()>) {
    let kill_after = random_ms(150, 600);
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(kill_after)).await;
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    });
    (kill_after, killer)
}

fn publish(topic: &str, payload: String, qos: QoS, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        qos,
        topic: topic.into(),
        packet_id: Some(packet_id),
        payload: bytes::Bytes::from(payload),
        ..Default::default()
    })
}

fn persistent(client_id: &str) -> Connect {
    let mut c = connect_packet(ProtocolVersion::V5, client_id, false);
    c.properties.session_expiry_interval = Some(3600);
    c
}

/// Subscribes a persistent session to `d/#` and leaves it offline.
async fn park_subscriber(server: &Server, qos: QoS) {
    let mut c = persistent("parked");
    c.clean_start = true;
    let (mut sub, _) = RawClient::connect_with(server.mqtt, c).await;
    let ack = sub.subscribe(1, "d/#", qos).await;
    assert_eq!(ack.reasons, vec![ReasonCode(qos as u8)]);
    sub.disconnect().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Reconnects the parked session and collects payloads until quiet.
async fn drain_subscriber(server: &Server) -> Vec<String> {
    let (mut sub, ack) = RawClient::connect_with(server.mqtt, persistent("parked")).await;
    assert!(
        ack.session_present,
        "the persistent session survived the crash"
    );
    let mut got = Vec::new();
    while let Ok(Some(p)) = sub.recv_within(Duration::from_millis(1500)).await {
        if let Packet::Publish(p) = p {
            sub.ack(&p).await;
            got.push(String::from_utf8(p.payload.to_vec()).unwrap());
        } else if let Packet::PubRel(r) = p {
            sub.send(Packet::PubComp(PubResp {
                packet_id: r.packet_id,
                ..Default::default()
            }))
            .await;
        }
    }
    got
}

#[tokio::test]
async fn qos1_messages_acked_before_sigkill_are_delivered_after_restart() {
    // A queue limit above what the test can send: dropping by policy is tested elsewhere.
    let mut server = Server::start(&["--max-queued-messages", "1000000"]);
    park_subscriber(&server, QoS::AtLeastOnce).await;

    let (mut publisher, _) =
        RawClient::connect(server.mqtt, ProtocolVersion::V5, "pub", true).await;
    let (kill_after, killer) = sigkill_soon(server.pid());

    let mut outstanding: HashMap<u16, String> = HashMap::new();
    let mut acked: Vec<String> = Vec::new();
    let mut next = 0u32;
    loop {
        while outstanding.len() < 32 {
            next += 1;
            let packet_id = (next % 60_000 + 1) as u16;
            let payload = format!("m{next}");
            outstanding.insert(packet_id, payload.clone());
            if !publisher
                .try_send(publish("d/x", payload, QoS::AtLeastOnce, packet_id))
                .await
            {
                break;
            }
        }
        match publisher.recv_within(Duration::from_secs(5)).await {
            Ok(Some(Packet::PubAck(a))) => {
                assert!(!a.reason.is_error(), "PUBACK {a:?}");
                acked.push(outstanding.remove(&a.packet_id).expect("ack for a sent id"));
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) | Err(()) => break,
        }
    }
    killer.await.unwrap();
    assert!(
        !acked.is_empty(),
        "some messages were acknowledged before the kill ({kill_after} ms)"
    );

    server.restart();
    let got: HashSet<String> = drain_subscriber(&server).await.into_iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|m| !got.contains(*m)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

#[tokio::test]
async fn qos2_messages_survive_sigkill_exactly_once_with_publisher_resume() {
    let mut server = Server::start(&["--max-queued-messages", "1000000"]);
    park_subscriber(&server, QoS::ExactlyOnce).await;

    let mut c = persistent("pub2");
    c.clean_start = true;
    let (mut publisher, _) = RawClient::connect_with(server.mqtt, c).await;
    let (kill_after, killer) = sigkill_soon(server.pid());

    // packet id -> payload, for PUBLISHes without PUBREC and PUBRELs without PUBCOMP.
    let mut unreceived: HashMap<u16, String> = HashMap::new();
    let mut released: HashMap<u16, String> = HashMap::new();
    let mut recorded: Vec<String> = Vec::new();
    let mut next = 0u16;
    'stream: loop {
        while unreceived.len() + released.len() < 32 && next < 60_000 {
            next += 1;
            let payload = format!("q{next}");
            unreceived.insert(next, payload.clone());
            if !publisher
                .try_send(publish("d/y", payload, QoS::ExactlyOnce, next))
                .await
            {
                break;
            }
        }
        match publisher.recv_within(Duration::from_secs(5)).await {
            Ok(Some(Packet::PubRec(r))) => {
                let payload = unreceived
                    .remove(&r.packet_id)
                    .expect("PUBREC for a sent id");
                recorded.push(payload.clone());
                released.insert(r.packet_id, payload);
                let rel = Packet::PubRel(PubResp {
                    packet_id: r.packet_id,
                    ..Default::default()
                });
                if !publisher.try_send(rel).await {
                    break 'stream;
                }
            }
            Ok(Some(Packet::PubComp(c))) => {
                released.remove(&c.packet_id);
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) | Err(()) => break 'stream,
        }
    }
    killer.await.unwrap();
    assert!(
        !recorded.is_empty(),
        "some messages were received before the kill ({kill_after} ms)"
    );

    server.restart();
    // The publisher resumes its session and finishes what it started (MQTT 5 §4.4):
    // PUBLISH again with DUP for those without PUBREC, PUBREL for the others.
    let (mut publisher, ack) = RawClient::connect_with(server.mqtt, persistent("pub2")).await;
    assert!(ack.session_present);
    for (id, payload) in &unreceived {
        publisher
            .send(Packet::Publish(Publish {
                dup: true,
                qos: QoS::ExactlyOnce,
                topic: "d/y".into(),
                packet_id: Some(*id),
                payload: bytes::Bytes::from(payload.clone()),
                ..Default::default()
            }))
            .await;
    }
    for id in released.keys() {
        publisher
            .send(Packet::PubRel(PubResp {
                packet_id: *id,
                ..Default::default()
            }))
            .await;
    }
    let mut pending = unreceived.len() * 2 + released.len();
    while pending > 0 {
        match publisher.recv().await {
            Some(Packet::PubRec(r)) => {
                publisher
                    .send(Packet::PubRel(PubResp {
                        packet_id: r.packet_id,
                        ..Default::default()
                    }))
                    .await;
                pending -= 1;
            }
            Some(Packet::PubComp(_)) => pending -= 1,
            other => panic!("unexpected {other:?}"),
        }
    }

    let got = drain_subscriber(&server).await;
    let mut seen = HashSet::new();
    let dups: Vec<&String> = got.iter().filter(|m| !seen.insert(*m)).collect();
    assert!(dups.is_empty(), "delivered twice: {dups:?}");
    let all: HashSet<&String> = recorded.iter().chain(unreceived.values()).collect();
    let missing: Vec<&&String> = all.iter().filter(|m| !seen.contains(**m)).collect();
    assert!(
        missing.is_empty(),
        "{} messages missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test]
async fn retained_messages_and_subscriptions_survive_restart() {
    let mut server = Server::start(&[]);
    let (mut p, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "retainer", true).await;
    p.publish("status/a", b"online", QoS::AtLeastOnce, true, Some(1))
        .await;
    assert!(matches!(p.recv().await, Some(Packet::PubAck(_))));
    park_subscriber(&server, QoS::AtLeastOnce).await;
    server.restart();

    let (mut s, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "late", true).await;
    s.subscribe(1, "status/#", QoS::AtMostOnce).await;
    let r = s.recv_publish().await;
    assert_eq!(
        (&*r.topic, &r.payload[..], r.retain),
        ("status/a", &b"online"[..], true)
    );

    // The parked session's subscription was restored: a new message reaches it.
    p = RawClient::connect(server.mqtt, ProtocolVersion::V5, "retainer", true)
        .await
        .0;
    p.publish("d/after", b"later", QoS::AtLeastOnce, false, Some(2))
        .await;
    assert!(matches!(p.recv().await, Some(Packet::PubAck(_))));
    assert_eq!(drain_subscriber(&server).await, vec!["later".to_owned()]);
}

#[tokio::test]
async fn queued_messages_survive_a_graceful_restart() {
    let mut server = Server::start(&[]);
    park_subscriber(&server, QoS::AtLeastOnce).await;
    let (mut p, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "pub", true).await;
    for i in 1..=20u16 {
        p.publish(
            "d/z",
            format!("g{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            Some(i),
        )
        .await;
        assert!(matches!(p.recv().await, Some(Packet::PubAck(_))));
    }
    server.restart_gracefully();
    let got = drain_subscriber(&server).await;
    let want: Vec<String> = (1..=20).map(|i| format!("g{i}")).collect();
    assert_eq!(
        got, want,
        "every queued message, in order, after SIGTERM and restart"
    );
}
