//! The publisher's half of the scale-out shape's durability promise: a
//! QoS 1/2 PUBLISH to `aerie gateway` is acknowledged only once JetStream
//! kept it in its tenant's message log (`<prefix>_log_<tenant>`). Checked
//! as any NATS client would read the log (the JetStream API), with real
//! nats-servers (one, a throwaway one to kill, or three with R3 and one
//! SIGKILLed mid-stream) and raw MQTT clients.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aerie_e2e::RawClient;
use aerie_e2e::nats::{NatsCluster, NatsServer, StoredMessage, unique_prefix};
use aerie_e2e::scaleout::{Control, Gateway, set_limits_enforced};
use aerie_e2e::tenants::{Tenant, mint, tenant, with_password};
use aerie_proto::{Packet, ProtocolVersion, QoS, ReasonCode};
use serde_json::json;

/// A control plane and one ready gateway on `nats_url`, a tenant whose
/// rates do not get in the way, and a token the gateway accepts.
struct Shape {
    prefix: String,
    _control: Control,
    gateway: Gateway,
    tenant: Tenant,
    token: String,
}

/// The shape on `nats_url`, whose JetStream API `nats` answers.
async fn shape(nats: &NatsServer, nats_url: &str, gateway_flags: &[&str]) -> Shape {
    let prefix = unique_prefix();
    let control = Control::start(nats_url, &prefix, &[]);
    let mut gateway = Gateway::start_with_flags(nats_url, &prefix, gateway_flags);
    gateway.wait_ready();
    let tenant = tenant(&control, "durable@example.com");
    set_limits_enforced(
        nats,
        &control,
        &prefix,
        &tenant,
        json!({"publish_rate_msgs": 100000, "client_publish_rate_msgs": 100000, "inflight": 64}),
        &[&gateway],
    )
    .await;
    let (token, _) = mint(&control, &tenant, json!({}));
    gateway.wait_accepts(&token).await;
    Shape {
        prefix,
        _control: control,
        gateway,
        tenant,
        token,
    }
}

impl Shape {
    /// The tenant's log stream (its id is plain: `[a-z0-9]`).
    fn log_stream(&self) -> String {
        format!("{}_log_{}", self.prefix, self.tenant.id)
    }

    /// The log's subject of a topic whose levels are plain.
    fn subject(&self, topic: &str) -> String {
        format!(
            "{}.l.{}.{}",
            self.prefix,
            self.tenant.id,
            topic.replace('/', ".")
        )
    }

    async fn client(&self, version: ProtocolVersion, client_id: &str) -> RawClient {
        let (c, ack) = RawClient::connect_with(
            self.gateway.mqtt,
            with_password(version, client_id, Some(&self.token)),
        )
        .await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "{client_id}");
        c
    }
}

/// The last message the log holds on `subject` (read from the stream's
/// leader through `nats`), if any. An answer that is an error other than
/// "no message" (a JetStream API busy on a loaded box) is asked again:
/// only the server's word that the subject holds nothing is a `None`.
fn last_on(nats: &NatsServer, stream: &str, subject: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let mut reply = serde_json::Value::Null;
    for _ in 0..20 {
        reply = serde_json::from_slice(&nats.request(
            &format!("$JS.API.STREAM.MSG.GET.{stream}"),
            json!({ "last_by_subj": subject }).to_string().as_bytes(),
        ))
        .expect("JSON");
        if let Some(data) = reply["message"]["data"].as_str() {
            return Some(
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .expect("base64"),
            );
        }
        if reply["error"]["code"] == 404 {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the stream {stream} did not answer for {subject}: {reply}");
}

/// What a stored message carries: the core's codec ends with the MQTT
/// PUBLISH, whose payload comes last.
fn holds(stored: &StoredMessage, subject: &str, payload: &[u8]) -> bool {
    stored.subject == subject && stored.data.ends_with(payload)
}

#[tokio::test]
async fn a_qos_1_or_2_publisher_is_acknowledged_only_once_its_message_is_in_the_tenants_log() {
    let nats = NatsServer::shared();
    let s = shape(nats, &nats.url(), &[]).await;
    let mut publisher = s.client(ProtocolVersion::V5, "publisher").await;
    let stream = s.log_stream();
    for i in 0..40u16 {
        let (topic, payload) = (format!("log/m{i}"), format!("payload-{i}"));
        let qos = if i % 4 == 3 {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
        let reason = publisher
            .publish_acked(&topic, payload.as_bytes(), qos, false, i + 1)
            .await;
        assert_eq!(reason, ReasonCode::SUCCESS, "{topic}");
        // Read right after the PUBACK/PUBREC: it is there already.
        let stored = last_on(nats, &stream, &s.subject(&topic))
            .unwrap_or_else(|| panic!("{topic} acknowledged but not in {stream}"));
        assert!(stored.ends_with(payload.as_bytes()), "{topic}");
    }
    let gateway = &s.gateway;
    assert_eq!(gateway.metric("aerie_message_log_appends_total", ""), 40.0);
    assert_eq!(
        gateway.metric("aerie_message_log_ack_wait_seconds_count", ""),
        40.0
    );
}

#[tokio::test]
async fn qos_0_is_never_appended_to_the_log() {
    let nats = NatsServer::shared();
    let s = shape(nats, &nats.url(), &[]).await;
    let mut subscriber = s.client(ProtocolVersion::V5, "subscriber").await;
    subscriber.subscribe(1, "mixed/#", QoS::AtLeastOnce).await;
    let mut publisher = s.client(ProtocolVersion::V5, "publisher").await;
    let mut appended = Vec::new();
    for i in 0..30u16 {
        let qos = if i % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let (topic, payload) = (format!("mixed/{i}"), format!("p{i}"));
        publisher
            .publish_acked(&topic, payload.as_bytes(), qos, false, i + 1)
            .await;
        if qos == QoS::AtLeastOnce {
            appended.push((s.subject(&topic), payload));
        }
    }
    // Every one was routed, QoS 0 included.
    for _ in 0..30 {
        let p = subscriber.recv_publish().await;
        if p.qos != QoS::AtMostOnce {
            subscriber.ack(&p).await;
        }
    }
    let stored = nats.stream_messages(&s.log_stream());
    assert_eq!(stored.len(), appended.len(), "{stored:?}");
    for (stored, (subject, payload)) in stored.iter().zip(&appended) {
        assert!(
            holds(stored, subject, payload.as_bytes()),
            "{stored:?} is not {subject} {payload}"
        );
    }
}

#[tokio::test]
async fn a_qos_1_message_the_log_cannot_keep_is_refused_with_0x97_not_acknowledged() {
    let nats = NatsServer::shared();
    let s = shape(nats, &nats.url(), &[]).await;
    let mut subscriber = s.client(ProtocolVersion::V5, "subscriber").await;
    subscriber.subscribe(1, "long/#", QoS::AtMostOnce).await;
    let mut publisher = s.client(ProtocolVersion::V5, "publisher").await;
    // Its subject would pass the 3 KiB NATS takes in a control line.
    let topic = format!("long/{}", "x".repeat(4000));
    let reason = publisher
        .publish_acked(&topic, b"big", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED);
    assert_eq!(
        s.gateway.metric(
            "aerie_message_log_append_failures_total",
            "reason=\"subject_too_long\""
        ),
        1.0
    );
    // Neither routed nor kept; the next one is.
    publisher
        .publish_acked("long/short", b"ok", QoS::AtLeastOnce, false, 2)
        .await;
    assert_eq!(&subscriber.recv_publish().await.payload[..], b"ok");
    assert_eq!(nats.stream_messages(&s.log_stream()).len(), 1);
}

#[tokio::test]
async fn with_nats_gone_a_v5_publisher_gets_0x80_a_3_1_1_one_is_disconnected_and_qos_0_still_flows()
{
    let mut nats = NatsServer::start();
    // The connections' bound on a held ack: 2 s here.
    let s = shape(&nats, &nats.url(), &["--store-ack-timeout", "2"]).await;
    let mut subscriber = s.client(ProtocolVersion::V5, "subscriber").await;
    subscriber.subscribe(1, "gone/#", QoS::AtMostOnce).await;
    let mut v5 = s.client(ProtocolVersion::V5, "v5").await;
    let mut v3 = s.client(ProtocolVersion::V311, "v3").await;
    // While NATS works, the log takes them.
    assert_eq!(
        v5.publish_acked("gone/before", b"kept", QoS::AtLeastOnce, false, 1)
            .await,
        ReasonCode::SUCCESS
    );
    assert_eq!(subscriber.recv_publish().await.payload, &b"kept"[..]);

    nats.kill9();
    // QoS 0 is never held: it still reaches a subscriber of this gateway.
    v5.publish("gone/zero", b"zero", QoS::AtMostOnce, false, None)
        .await;
    let p = subscriber.recv_publish().await;
    assert_eq!((&*p.topic, &p.payload[..]), ("gone/zero", &b"zero"[..]));

    // The 3.1.1 publisher cannot be told: closed without its PUBACK.
    let since = Instant::now();
    v3.publish("gone/v3", b"v3", QoS::AtLeastOnce, false, Some(7))
        .await;
    let mut before_close = Vec::new();
    loop {
        match v3.recv_within(Duration::from_secs(6)).await {
            Ok(None) => break,
            Ok(Some(packet)) => before_close.push(packet),
            Err(()) => panic!("the 3.1.1 publisher is still connected after 6 s"),
        }
    }
    let closed_after = since.elapsed();
    assert!(
        !before_close.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "{before_close:?}"
    );

    // The v5 publisher is told, within the bound: 0x80, never success.
    let since = Instant::now();
    v5.publish("gone/v5", b"v5", QoS::AtLeastOnce, false, Some(8))
        .await;
    let ack = loop {
        match v5.recv_within(Duration::from_secs(6)).await {
            Ok(Some(Packet::PubAck(ack))) => break ack,
            Ok(Some(Packet::Publish(_))) => continue,
            other => panic!("expected PUBACK 8, got {other:?}"),
        }
    };
    let answered_after = since.elapsed();
    assert_eq!(
        (ack.packet_id, ack.reason),
        (8, ReasonCode::UNSPECIFIED_ERROR)
    );
    let gateway = &s.gateway;
    assert_eq!(
        gateway.metric("aerie_store_ack_timeouts_total", ""),
        2.0,
        "one per version"
    );
    assert!(gateway.metric("aerie_message_log_append_failures_total", "") > 0.0);
    for waited in [closed_after, answered_after] {
        assert!(
            waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4),
            "held {waited:?}, not about the 2 s bound"
        );
    }
}

/// Which server of `nats` leads `stream` (by its index) and how many
/// copies it has, as a monitoring port says.
fn leader_of(nats: &NatsCluster, stream: &str) -> Option<(usize, u64)> {
    let body = aerie_e2e::http::send(
        nats.servers[0].monitor,
        "GET",
        "/jsz?accounts=true&streams=true",
        &[],
        "",
    )
    .body;
    let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
    let leader = jsz["account_details"]
        .as_array()?
        .iter()
        .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
        .find(|d| d["name"] == stream)?;
    let replicas = 1 + leader["cluster"]["replicas"].as_array().map_or(0, Vec::len) as u64;
    let index = leader["cluster"]["leader"]
        .as_str()?
        .strip_prefix("nats-")?
        .parse()
        .ok()?;
    Some((index, replicas))
}

#[tokio::test]
async fn a_nats_server_killed_mid_stream_loses_no_acknowledged_message() {
    const MESSAGES: u16 = 2000;
    const WINDOW: u16 = 16;
    let mut nats = NatsCluster::start();
    let s = shape(&nats.servers[0], &nats.urls(), &[]).await;
    let stream = s.log_stream();
    let mut publisher = s.client(ProtocolVersion::V5, "publisher").await;
    // Packet id i+1 carries payload i; `acked` gets each PUBACK's reason.
    let mut acked: HashMap<u16, ReasonCode> = HashMap::new();
    let (mut sent, mut killed) = (0u16, None);
    let mut longest_wait = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < usize::from(MESSAGES) {
        assert!(Instant::now() < deadline, "{} acked in 60 s", acked.len());
        while sent < MESSAGES && sent - acked.len() as u16 <= WINDOW {
            let topic = format!("chaos/{}", sent % 50);
            publisher
                .publish(
                    &topic,
                    format!("m{sent:05}").as_bytes(),
                    QoS::AtLeastOnce,
                    false,
                    Some(sent + 1),
                )
                .await;
            sent += 1;
        }
        if killed.is_none() && acked.len() >= 500 {
            // The server that leads the log: the stream elects another.
            let (leader, copies) =
                leader_of(&nats, &stream).expect("the tenant's log stream has a leader");
            assert_eq!(copies, 3, "the log is on every server");
            nats.servers[leader].kill9();
            killed = Some(leader);
        }
        let waiting = Instant::now();
        match publisher.recv_within(Duration::from_secs(20)).await {
            Ok(Some(Packet::PubAck(ack))) => {
                longest_wait = longest_wait.max(waiting.elapsed());
                assert!(
                    acked.insert(ack.packet_id, ack.reason).is_none(),
                    "{ack:?} twice"
                );
            }
            other => panic!("expected a PUBACK, got {other:?}"),
        }
    }
    let killed = killed.expect("a server was killed");
    let survivor = &nats.servers[(killed + 1) % 3];
    let stored = survivor.stream_messages(&stream);
    let kept: std::collections::HashSet<&[u8]> = stored
        .iter()
        .map(|m| {
            let at = m.data.len() - 6;
            &m.data[at..]
        })
        .collect();
    let mut succeeded = 0;
    for (packet_id, reason) in &acked {
        if reason.is_error() {
            // Refused (held past the bound): allowed, never a lost one.
            assert_eq!(*reason, ReasonCode::UNSPECIFIED_ERROR);
            continue;
        }
        succeeded += 1;
        let payload = format!("m{:05}", packet_id - 1);
        assert!(
            kept.contains(payload.as_bytes()),
            "{payload} acknowledged but not in the log ({} stored)",
            stored.len()
        );
    }
    eprintln!(
        "{succeeded} of {MESSAGES} acknowledged, {} stored, longest wait for a PUBACK {longest_wait:?}",
        stored.len()
    );
    assert!(succeeded > 1500, "{succeeded} of {MESSAGES} acknowledged");
}
