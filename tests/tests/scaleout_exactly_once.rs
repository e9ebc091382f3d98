//! The scale-out shape's promise under a gateway's death: no acknowledged
//! message lost, and QoS 2 delivered once. A real 3-node nats-server
//! cluster (JetStream R3), a real `aerie control --nats`, three real
//! `aerie gateway`s, raw MQTT 5 clients that resend as MQTT says.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use aerie_e2e::RawClient;
use aerie_e2e::nats::{NatsCluster, unique_prefix};
use aerie_e2e::scaleout::{Control, Gateway, set_limits_enforced};
use aerie_e2e::tenants::{mint, tenant, with_password};
use aerie_proto::{Packet, ProtocolVersion, PubResp, Publish, QoS, ReasonCode};
use serde_json::json;

const PERSISTENT: u32 = 300;

/// A v5 CONNECT of `client_id` on `gateway` with session expiry
/// [`PERSISTENT`]; the client and CONNACK's session present.
async fn connect(
    gateway: &Gateway,
    client_id: &str,
    token: &str,
    clean: bool,
) -> (RawClient, bool) {
    let mut connect = with_password(ProtocolVersion::V5, client_id, Some(token));
    connect.clean_start = clean;
    connect.properties.session_expiry_interval = Some(PERSISTENT);
    let (c, ack) = RawClient::connect_with(gateway.mqtt, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{client_id}");
    (c, ack.session_present)
}

/// Where one message of the publisher stands, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Sent, not acknowledged (resent with DUP after a reconnect).
    Sent,
    /// PUBREC came (QoS 2): PUBREL sent, PUBCOMP not yet.
    Received,
    /// PUBACK or PUBCOMP came: done.
    Done,
}

/// A publisher that keeps MQTT's client side of QoS 1 and 2: message `i`
/// has packet id `i + 1`, payload `m<i>`, QoS 1 when `i % 3 == 0`, else 2.
struct Publisher {
    stage: BTreeMap<u16, Stage>,
    /// Messages the broker acknowledged with success (PUBACK, PUBREC):
    /// each must reach the subscriber.
    acknowledged: Vec<u16>,
    next: u16,
}

fn qos_of(i: u16) -> QoS {
    if i.is_multiple_of(3) {
        QoS::AtLeastOnce
    } else {
        QoS::ExactlyOnce
    }
}

fn publish_of(i: u16, dup: bool) -> Packet {
    let mut p: Publish = aerie_e2e::raw::publish_packet(
        &format!("eo/{}", i % 10),
        format!("m{i}").as_bytes(),
        qos_of(i),
        Some(i + 1),
    );
    p.dup = dup;
    Packet::Publish(p)
}

impl Publisher {
    fn in_flight(&self) -> usize {
        self.stage.values().filter(|s| **s != Stage::Done).count()
    }

    /// Sends new messages up to `total` while fewer than `window` are open.
    async fn fill(&mut self, c: &mut RawClient, total: u16, window: usize) -> bool {
        while self.next < total && self.in_flight() < window {
            if !c.try_send(publish_of(self.next, false)).await {
                return false;
            }
            self.stage.insert(self.next, Stage::Sent);
            self.next += 1;
        }
        true
    }

    /// Takes one answer of the broker; false when the connection is gone.
    async fn answer(&mut self, c: &mut RawClient) -> bool {
        let packet = match c.recv_within(Duration::from_secs(20)).await {
            Ok(Some(p)) => p,
            Ok(None) | Err(()) => return false,
        };
        match packet {
            Packet::PubAck(ack) => {
                let i = ack.packet_id - 1;
                assert_eq!(self.stage.get(&i), Some(&Stage::Sent), "PUBACK of {i}");
                if !ack.reason.is_error() {
                    self.acknowledged.push(i);
                }
                self.stage.insert(i, Stage::Done);
            }
            Packet::PubRec(rec) => {
                let i = rec.packet_id - 1;
                if rec.reason.is_error() {
                    // The exchange ends there: not acknowledged.
                    self.stage.insert(i, Stage::Done);
                    return true;
                }
                if self.stage.get(&i) == Some(&Stage::Sent) {
                    self.acknowledged.push(i);
                }
                self.stage.insert(i, Stage::Received);
                return c.try_send(pubrel(rec.packet_id)).await;
            }
            Packet::PubComp(comp) => {
                let i = comp.packet_id - 1;
                assert_eq!(self.stage.get(&i), Some(&Stage::Received), "PUBCOMP of {i}");
                self.stage.insert(i, Stage::Done);
            }
            other => panic!("publisher got {other:?}"),
        }
        true
    }

    /// After a reconnect with session present: what MQTT 5 §4.4 says a
    /// client resends (PUBLISH with DUP, PUBREL), in order.
    async fn resend(&mut self, c: &mut RawClient) {
        let open: Vec<(u16, Stage)> = self
            .stage
            .iter()
            .filter(|(_, s)| **s != Stage::Done)
            .map(|(i, s)| (*i, *s))
            .collect();
        for (i, stage) in open {
            let packet = match stage {
                Stage::Sent => publish_of(i, true),
                _ => pubrel(i + 1),
            };
            assert!(c.try_send(packet).await, "resend {i}");
        }
    }
}

fn pubrel(packet_id: u16) -> Packet {
    Packet::PubRel(PubResp {
        packet_id,
        ..Default::default()
    })
}

/// A number in `range` that differs from run to run.
fn random_in(range: std::ops::Range<usize>) -> usize {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    range.start + (h.finish() as usize) % (range.end - range.start)
}

/// Every PUBLISH `c` receives until it has been quiet for a while, each
/// acknowledged as a client does (PUBACK; PUBREC then PUBCOMP); payloads
/// with how often they came, and which came at QoS 2.
async fn drain(c: &mut RawClient) -> (HashMap<String, usize>, HashMap<String, QoS>) {
    let (mut got, mut qos) = (HashMap::new(), HashMap::new());
    while let Ok(Some(packet)) = c.recv_within(Duration::from_secs(4)).await {
        match packet {
            Packet::Publish(p) => {
                c.ack(&p).await;
                let payload = String::from_utf8_lossy(&p.payload).into_owned();
                *got.entry(payload.clone()).or_insert(0) += 1;
                qos.insert(payload, p.qos);
            }
            Packet::PubRel(rel) => {
                c.send(Packet::PubComp(PubResp {
                    packet_id: rel.packet_id,
                    ..Default::default()
                }))
                .await;
            }
            other => panic!("subscriber got {other:?}"),
        }
    }
    (got, qos)
}

/// Waits until the sessions bucket holds `key` (A's record of a session
/// must exist before A dies, or nothing could resume it).
async fn wait_for_record(nats: &NatsCluster, prefix: &str, key: &str) {
    let client = async_nats::connect(nats.servers[0].url())
        .await
        .expect("nats");
    let kv = async_nats::jetstream::new(client)
        .get_key_value(format!("{prefix}_sessions"))
        .await
        .expect("the sessions bucket");
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv.get(key).await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "no record {key}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A 3-node NATS cluster, a control plane and three ready gateways, a
/// tenant whose limits do not get in the way, and a token all accept.
struct Shape {
    nats: NatsCluster,
    prefix: String,
    _control: Control,
    gateways: Vec<Gateway>,
    tenant: String,
    token: String,
}

async fn shape() -> Shape {
    let nats = NatsCluster::start();
    let prefix = unique_prefix();
    let control = Control::start(&nats.urls(), &prefix, &[]);
    let mut gateways: Vec<Gateway> = (0..3)
        .map(|_| Gateway::start_with_flags(&nats.urls(), &prefix, &[]))
        .collect();
    for g in &mut gateways {
        g.wait_ready();
    }
    let t = tenant(&control, "exactly-once@example.com");
    let limits = json!({
        "publish_rate_msgs": 100000, "client_publish_rate_msgs": 100000,
        "inflight": 64, "queued_messages": 10000,
    });
    let all: Vec<&Gateway> = gateways.iter().collect();
    set_limits_enforced(&nats.servers[0], &control, &prefix, &t, limits, &all).await;
    let (token, _) = mint(&control, &t, json!({}));
    for g in &gateways {
        g.wait_accepts(&token).await;
    }
    Shape {
        nats,
        prefix,
        _control: control,
        gateways,
        tenant: t.id,
        token,
    }
}

#[tokio::test]
async fn a_publisher_whose_gateway_is_killed_resends_elsewhere_and_the_session_gets_every_acknowledged_message_qos_2_once()
 {
    const TOTAL: u16 = 600;
    const WINDOW: usize = 16;
    let Shape {
        nats,
        prefix,
        _control,
        mut gateways,
        tenant: tenant_id,
        token,
    } = shape().await;

    // The subscriber's persistent session lives on A, offline.
    let (mut sink, _) = connect(&gateways[0], "sink", &token, true).await;
    let ack = sink.subscribe(1, "eo/#", QoS::ExactlyOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_2]);
    sink.disconnect().await;
    wait_for_record(&nats, &prefix, &format!("{tenant_id}.sink")).await;

    // The publisher on A, until A is killed at a random point.
    let (mut c, _) = connect(&gateways[0], "publisher", &token, true).await;
    let mut p = Publisher {
        stage: BTreeMap::new(),
        acknowledged: Vec::new(),
        next: 0,
    };
    let kill_after = random_in(40..400);
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.acknowledged.len() < kill_after {
        assert!(
            Instant::now() < deadline,
            "{} acknowledged on A",
            p.acknowledged.len()
        );
        assert!(p.fill(&mut c, TOTAL, WINDOW).await);
        assert!(p.answer(&mut c).await, "A closed the publisher");
    }
    // Some sent, some PUBRECed, some complete: A dies in the middle.
    assert!(p.fill(&mut c, TOTAL, WINDOW).await);
    gateways[0].kill9();
    while p.answer(&mut c).await {}
    let on_a = p.acknowledged.len();

    // It resumes on B, resends what MQTT says, and publishes the rest.
    let (mut c, present) = connect(&gateways[1], "publisher", &token, false).await;
    assert!(present, "the publisher's session resumed on B");
    p.resend(&mut c).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.next < TOTAL || p.in_flight() > 0 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            p.stage.iter().find(|(_, s)| **s != Stage::Done)
        );
        assert!(p.fill(&mut c, TOTAL, WINDOW).await);
        assert!(p.answer(&mut c).await, "B closed the publisher");
    }
    c.disconnect().await;

    // The subscriber's session resumes on C, a third gateway.
    let (mut sink, present) = connect(&gateways[2], "sink", &token, false).await;
    assert!(present, "the subscriber's session resumed on C");
    let (got, qos) = drain(&mut sink).await;
    let mut missing = Vec::new();
    for i in &p.acknowledged {
        let payload = format!("m{i}");
        match got.get(&payload) {
            None => missing.push(*i),
            Some(&n) if qos_of(*i) == QoS::ExactlyOnce => {
                assert_eq!(n, 1, "QoS 2 message {i} delivered {n} times");
                assert_eq!(qos[&payload], QoS::ExactlyOnce);
            }
            Some(_) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages missing (killed after {on_a}): {missing:?}",
        missing.len(),
        p.acknowledged.len()
    );
    let twice: Vec<&String> = got
        .iter()
        .filter(|(payload, n)| **n > 1 && qos[*payload] == QoS::ExactlyOnce)
        .map(|(payload, _)| payload)
        .collect();
    assert!(twice.is_empty(), "QoS 2 delivered twice: {twice:?}");
}

/// Publishes `m0..m<n>` on `topic` at `qos` (packet ids from 1), each
/// acknowledged with success.
async fn publish_acked_all(publisher: &mut RawClient, topic: &str, n: u16, qos: QoS) {
    for i in 0..n {
        let payload = format!("m{i}");
        let acked = publisher
            .publish_acked(topic, payload.as_bytes(), qos, false, i + 1)
            .await;
        assert_eq!(acked, ReasonCode::SUCCESS, "{payload}");
    }
}

/// The next `n` deliveries, left unacknowledged: payload → packet id.
async fn unacknowledged(reader: &mut RawClient, n: usize) -> HashMap<String, Option<u16>> {
    let mut got = HashMap::new();
    while got.len() < n {
        let p = reader.recv_publish().await;
        let payload = String::from_utf8_lossy(&p.payload).into_owned();
        got.insert(payload, p.packet_id);
    }
    got
}

/// What a resumed subscriber is sent (payload → DUP flag, packet id),
/// acknowledging each: the first once the replay is read (slow on a loaded
/// box), then the rest.
async fn redelivered(reader: &mut RawClient) -> HashMap<String, (bool, Option<u16>)> {
    let mut again = HashMap::new();
    let mut wait = Duration::from_secs(15);
    while let Ok(Some(Packet::Publish(p))) = reader.recv_within(wait).await {
        wait = Duration::from_secs(3);
        reader.ack(&p).await;
        let payload = String::from_utf8_lossy(&p.payload).into_owned();
        again.insert(payload, (p.dup, p.packet_id));
    }
    again
}

/// The shape, a persistent subscriber to `filter` at `qos` on A (its
/// record written) and a publisher on B.
async fn reader_on_a_writer_on_b(filter: &str, qos: QoS) -> (Shape, RawClient, RawClient) {
    let shape = shape().await;
    let (mut reader, _) = connect(&shape.gateways[0], "reader", &shape.token, true).await;
    let ack = reader.subscribe(1, filter, qos).await;
    assert_eq!(ack.reasons, vec![ReasonCode(qos as u8)]);
    let key = format!("{}.reader", shape.tenant);
    wait_for_record(&shape.nats, &shape.prefix, &key).await;
    let (publisher, _) = connect(&shape.gateways[1], "writer", &shape.token, true).await;
    (shape, reader, publisher)
}

#[tokio::test]
async fn a_subscriber_whose_gateway_is_killed_gets_its_unacknowledged_deliveries_again_elsewhere() {
    let (mut shape, mut reader, mut publisher) =
        reader_on_a_writer_on_b("unacked/#", QoS::AtLeastOnce).await;
    let (gateways, token) = (&mut shape.gateways, shape.token.clone());
    let mut send = async |topic: &str, payload: &str, id: u16| {
        let acked = publisher
            .publish_acked(topic, payload.as_bytes(), QoS::AtLeastOnce, false, id)
            .await;
        assert_eq!(acked, ReasonCode::SUCCESS);
    };
    // Five the reader gets and never acknowledges...
    for i in 0..5u16 {
        send("unacked/old", &format!("old{i}"), i + 1).await;
    }
    let got = unacknowledged(&mut reader, 5).await;
    // ...then, well after them, five it acknowledges: the session's record
    // on A moves its replay cursor on (written every second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 0..5u16 {
        send("unacked/new", &format!("new{i}"), i + 6).await;
    }
    for _ in 0..5 {
        let p = reader.recv_publish().await;
        reader.ack(&p).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    gateways[0].kill9();

    let (mut reader, present) = connect(&gateways[2], "reader", &token, false).await;
    assert!(present, "the session resumed on C");
    let again = redelivered(&mut reader).await;
    // In flight when A died: resent as MQTT says, with DUP under the
    // packet id they had.
    for i in 0..5 {
        let old = format!("old{i}");
        assert_eq!(
            again.get(&old),
            Some(&(true, got[&old])),
            "{old} not resent with DUP under its packet id: {again:?}"
        );
    }
}

/// Deliveries a resume replayed and the client had not acknowledged when
/// that gateway died too come again on a third: the cursor the second
/// gateway wrote stays before where the log holds them (not at when it
/// read them).
#[tokio::test]
async fn replayed_deliveries_unacknowledged_when_a_second_gateway_dies_come_again_on_a_third() {
    let (mut shape, reader, mut publisher) =
        reader_on_a_writer_on_b("again/#", QoS::AtLeastOnce).await;
    let (gateways, token) = (&mut shape.gateways, shape.token.clone());
    reader.disconnect().await;
    publish_acked_all(&mut publisher, "again/x", 5, QoS::AtLeastOnce).await;
    // Older than the cursor's margin by the time the session resumes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut reader, present) = connect(&gateways[2], "reader", &token, false).await;
    assert!(present, "the session resumed on C");
    let got = unacknowledged(&mut reader, 5).await;
    // Unacknowledged on C while its record is written (every second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    gateways[2].kill9();

    let (mut reader, present) = connect(&gateways[0], "reader", &token, false).await;
    assert!(present, "the session resumed on A");
    let again = redelivered(&mut reader).await;
    for (payload, packet_id) in &got {
        assert_eq!(
            again.get(payload),
            Some(&(true, *packet_id)),
            "{payload} not resent with DUP under its packet id: {again:?}"
        );
    }
}

/// What a subscriber's session resumed elsewhere gets of QoS 2 deliveries
/// at each stage of their exchange when its gateway died: the ones it
/// completed never again, the ones it had PUBREC'd a PUBREL (never the
/// message), the ones it had not answered the PUBLISH with DUP under
/// the same packet id; so each message reaches it once.
#[tokio::test]
async fn a_subscribers_qos_2_exchanges_finish_elsewhere_after_its_gateway_dies_and_none_comes_twice()
 {
    let (mut shape, mut reader, mut publisher) =
        reader_on_a_writer_on_b("twice/#", QoS::ExactlyOnce).await;
    let (gateways, token) = (&mut shape.gateways, shape.token.clone());
    publish_acked_all(&mut publisher, "twice/x", 12, QoS::ExactlyOnce).await;
    let mut packet_id = HashMap::new();
    let mut ids = Vec::new();
    while ids.len() < 12 {
        let p = reader.recv_publish().await;
        assert!(!p.dup);
        let id = p.packet_id.expect("QoS 2");
        packet_id.insert(String::from_utf8_lossy(&p.payload).into_owned(), id);
        ids.push(id);
    }
    // m0..m3 completed, m4..m7 received (PUBREC; PUBREL came, no PUBCOMP
    // yet), m8..m11 not answered.
    for (i, &id) in ids.iter().enumerate().take(8) {
        reader.send_ack(Packet::PubRec, id).await;
        match reader.recv_within(Duration::from_secs(5)).await {
            Ok(Some(Packet::PubRel(r))) => assert_eq!(r.packet_id, id),
            other => panic!("no PUBREL for m{i}: {other:?}"),
        }
        if i < 4 {
            reader.send_ack(Packet::PubComp, id).await;
        }
    }
    // The record's next write (every second) has the PUBCOMPs too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    gateways[0].kill9();

    let (mut reader, present) = connect(&gateways[2], "reader", &token, false).await;
    assert!(present, "the session resumed on C");
    let mut published = Vec::new();
    let mut released = Vec::new();
    let mut wait = Duration::from_secs(15);
    while let Ok(Some(packet)) = reader.recv_within(wait).await {
        wait = Duration::from_secs(3);
        match packet {
            Packet::Publish(p) => {
                let payload = String::from_utf8_lossy(&p.payload).into_owned();
                published.push((payload, p.dup, p.packet_id));
                reader.ack(&p).await;
            }
            Packet::PubRel(r) => {
                // Not the answer to a PUBREC sent here: resent on resume.
                if !published.iter().any(|(_, _, id)| *id == Some(r.packet_id)) {
                    released.push(r.packet_id);
                }
                reader.send_ack(Packet::PubComp, r.packet_id).await;
            }
            _ => {}
        }
    }
    let expected: Vec<_> = (8..12)
        .map(|i| {
            let payload = format!("m{i}");
            let id = packet_id[&payload];
            (payload, true, Some(id))
        })
        .collect();
    assert_eq!(published, expected, "PUBLISHes after the resume");
    released.sort_unstable();
    let mut pubrec_d: Vec<u16> = ids[4..8].to_vec();
    pubrec_d.sort_unstable();
    assert_eq!(released, pubrec_d, "PUBRELs after the resume");
}
