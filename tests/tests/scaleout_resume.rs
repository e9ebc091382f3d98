//! A persistent session resumes on any gateway with its subscriptions and
//! what it missed: its record in the KV bucket `<prefix>_sessions` (read
//! here with async-nats), replayed from the tenant's message log. Real
//! nats-server (JetStream), a real `aerie control --nats`, two real
//! `aerie gateway`s, raw MQTT 5 clients.

use std::time::{Duration, Instant};

use aerie_e2e::RawClient;
use aerie_e2e::nats::NatsServer;
use aerie_e2e::scaleout::{Cluster, Gateway};
use aerie_e2e::tenants::with_password;
use aerie_proto::{Disconnect, DisconnectProperties, Packet, ProtocolVersion, QoS, ReasonCode};
use futures_util::TryStreamExt;
use serde_json::json;

const PERSISTENT: u32 = 300;

/// A v5 CONNECT with clean start 0 and `expiry`; the client and whether
/// the CONNACK said session present.
async fn resume(gateway: &Gateway, client_id: &str, token: &str, expiry: u32) -> (RawClient, bool) {
    let mut connect = with_password(ProtocolVersion::V5, client_id, Some(token));
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(expiry);
    let (c, ack) = RawClient::connect_with(gateway.mqtt, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{client_id}");
    (c, ack.session_present)
}

/// A clean v5 publisher on `gateway` that sends `n` QoS 1 messages on
/// `topic`, payloads `0..n`, each PUBACKed.
async fn publish(gateway: &Gateway, token: &str, topic: &str, n: usize) {
    let (mut p, reason) = gateway
        .connect_v5(&format!("publisher-{topic}"), token)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    for i in 0..n {
        let id = u16::try_from(i + 1).expect("small");
        let acked = p
            .publish_acked(topic, i.to_string().as_bytes(), QoS::AtLeastOnce, false, id)
            .await;
        assert_eq!(acked, ReasonCode::SUCCESS, "message {i}");
    }
    p.disconnect().await;
}

/// The payloads `c` receives within a short wait, acknowledging each.
async fn received(c: &mut RawClient) -> Vec<String> {
    let mut got = Vec::new();
    while let Ok(Some(packet)) = c.recv_within(Duration::from_secs(2)).await {
        if let Packet::Publish(p) = packet {
            c.ack(&p).await;
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    got
}

fn numbers(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// The session records bucket as a NATS client reads it.
async fn bucket(c: &Cluster) -> async_nats::jetstream::kv::Store {
    let client = async_nats::connect(NatsServer::shared().url())
        .await
        .expect("nats");
    async_nats::jetstream::new(client)
        .get_key_value(format!("{}_sessions", c.prefix))
        .await
        .expect("the sessions bucket")
}

async fn keys(kv: &async_nats::jetstream::kv::Store) -> Vec<String> {
    kv.keys()
        .await
        .expect("keys")
        .try_collect()
        .await
        .expect("keys")
}

/// Waits (10 s at most) until the bucket's keys are `want`.
async fn wait_keys(kv: &async_nats::jetstream::kv::Store, want: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut now = keys(kv).await;
        now.sort();
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "keys {now:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A persistent session of `client_id` subscribed to `filter` at QoS 1 on
/// `gateway`, still connected; its record is in the bucket.
async fn subscribed(
    gateway: &Gateway,
    kv: &async_nats::jetstream::kv::Store,
    tenant: &str,
    client_id: &str,
    token: &str,
    filter: &str,
) -> RawClient {
    let (mut c, _) = resume(gateway, client_id, token, PERSISTENT).await;
    let ack = c.subscribe(1, filter, QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_1]);
    let key = format!("{tenant}.{client_id}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv.get(&key).await.expect("get").is_none() {
        assert!(Instant::now() < deadline, "no record of {client_id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c
}

#[tokio::test]
async fn a_session_gone_offline_on_one_gateway_resumes_on_the_other_with_every_message_in_order() {
    let c = Cluster::start();
    let (t, token) = c.lifted_tenant("resume@example.com", json!({})).await;
    let kv = bucket(&c).await;
    let s = subscribed(&c.a, &kv, &t.id, "reader", &token, "r/#").await;
    s.disconnect().await;

    publish(&c.b, &token, "r/1", 20).await;
    let (mut s, present) = resume(&c.b, "reader", &token, PERSISTENT).await;
    assert!(present, "CONNACK session present");
    assert_eq!(received(&mut s).await, numbers(0..20));
    // Live again on B, through its subscription restored there.
    publish(&c.b, &token, "r/2", 3).await;
    assert_eq!(received(&mut s).await, numbers(0..3));
}

#[tokio::test]
async fn a_session_whose_gateway_was_killed_resumes_on_the_other_with_what_was_published_after() {
    let mut c = Cluster::start();
    let (t, token) = c.lifted_tenant("killed@example.com", json!({})).await;
    let kv = bucket(&c).await;
    let _s = subscribed(&c.a, &kv, &t.id, "survivor", &token, "k/+").await;
    c.a.kill9();

    publish(&c.b, &token, "k/x", 10).await;
    let (mut s, present) = resume(&c.b, "survivor", &token, PERSISTENT).await;
    assert!(present, "CONNACK session present");
    assert_eq!(received(&mut s).await, numbers(0..10));
}

#[tokio::test]
async fn a_session_that_ends_leaves_no_key_in_the_bucket() {
    let c = Cluster::start();
    let (t, token) = c.lifted_tenant("ends@example.com", json!({})).await;
    let kv = bucket(&c).await;
    let key = |id: &str| format!("{}.{id}", t.id);

    // Ended by a clean start on the other gateway.
    let s = subscribed(&c.a, &kv, &t.id, "clean", &token, "e/1").await;
    s.disconnect().await;
    let (s, present) = c.b.connect_v5("clean", &token).await;
    assert_eq!(present, ReasonCode::SUCCESS);
    s.disconnect().await;

    // Ended by a v5 DISCONNECT with session expiry 0.
    let mut s = subscribed(&c.a, &kv, &t.id, "zero", &token, "e/2").await;
    s.send(Packet::Disconnect(Disconnect {
        reason: ReasonCode::SUCCESS,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    }))
    .await;
    while let Ok(Some(_)) = s.recv_within(Duration::from_secs(2)).await {}

    // Expired: 2 s after it went offline.
    let (mut s, _) = resume(&c.b, "brief", &token, 2).await;
    s.subscribe(1, "e/3", QoS::AtLeastOnce).await;
    s.disconnect().await;
    wait_keys(&kv, &[key("brief")]).await;
    wait_keys(&kv, &[]).await;
}

#[tokio::test]
async fn a_replay_keeps_only_the_newest_messages_of_the_offline_queue_bound() {
    let c = Cluster::start();
    let (t, token) = c
        .lifted_tenant("bound@example.com", json!({"queued_messages": 5}))
        .await;
    let kv = bucket(&c).await;
    let s = subscribed(&c.a, &kv, &t.id, "small", &token, "q/#").await;
    s.disconnect().await;

    publish(&c.b, &token, "q/1", 8).await;
    let dropped = |g: &Gateway| g.metric("aerie_messages_dropped_total", "reason=\"queue_full\"");
    let before = dropped(&c.b);
    let (mut s, present) = resume(&c.b, "small", &token, PERSISTENT).await;
    assert!(present);
    assert_eq!(received(&mut s).await, numbers(3..8));
    assert_eq!(
        dropped(&c.b) - before,
        3.0,
        "the oldest three dropped, counted"
    );
}

#[tokio::test]
async fn no_consumer_is_left_on_the_log_after_sessions_resumed() {
    let c = Cluster::start();
    let (t, token) = c.lifted_tenant("many@example.com", json!({})).await;
    let kv = bucket(&c).await;
    let ids: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
    for id in &ids {
        subscribed(&c.a, &kv, &t.id, id, &token, "m/#")
            .await
            .disconnect()
            .await;
    }
    publish(&c.b, &token, "m/1", 1).await;
    let resumes = ids.iter().map(|id| {
        let (gateway, token) = (&c.b, &token);
        async move {
            let (mut s, present) = resume(gateway, id, token, PERSISTENT).await;
            assert!(present, "{id}");
            assert_eq!(received(&mut s).await, numbers(0..1), "{id}");
        }
    });
    futures_util::future::join_all(resumes).await;

    let client = async_nats::connect(NatsServer::shared().url())
        .await
        .expect("nats");
    let mut log = async_nats::jetstream::new(client)
        .get_stream(format!("{}_log_{}", c.prefix, t.id))
        .await
        .expect("the tenant's log");
    let info = log.info().await.expect("stream info");
    assert_eq!(info.state.consumer_count, 0, "consumers left on the log");
}

#[tokio::test]
async fn a_cursor_older_than_the_log_replays_what_is_left_and_counts_the_loss() {
    // A log that keeps a few hundred bytes: 60 messages overflow it.
    let c = Cluster::start_with_flags(&["--message-log-max-bytes", "1500"]);
    let (t, token) = c.lifted_tenant("lossy@example.com", json!({})).await;
    let kv = bucket(&c).await;
    let s = subscribed(&c.a, &kv, &t.id, "late", &token, "l/#").await;
    s.disconnect().await;

    publish(&c.b, &token, "l/1", 60).await;
    let lost = |g: &Gateway| g.metric("aerie_cluster_session_cursor_lost_total", "");
    assert_eq!(lost(&c.b), 0.0);
    let (mut s, present) = resume(&c.b, "late", &token, PERSISTENT).await;
    assert!(present);
    let got = received(&mut s).await;
    assert!(
        !got.is_empty() && got.len() < 60,
        "what the log kept: {got:?}"
    );
    let first: usize = got[0].parse().expect("a number");
    assert_eq!(got, numbers(first..60), "the newest, in order");
    assert_eq!(lost(&c.b), 1.0, "the loss is counted");
}

/// A subscriber that always has a backlog (it acknowledges slower than
/// its publisher publishes, one delivery in flight at a time) never
/// catches up; its record's replay cursor still moves on, up to its
/// oldest delivery not sent yet, so a resume after its gateway dies does
/// not replay from where the backlog began.
#[tokio::test]
async fn a_subscriber_that_keeps_a_backlog_still_moves_its_replay_cursor_on() {
    let c = Cluster::start();
    let (t, token) = c.lifted_tenant("backlog@example.com", json!({})).await;
    let kv = bucket(&c).await;
    let mut connect = with_password(ProtocolVersion::V5, "slow", Some(&token));
    connect.properties.session_expiry_interval = Some(PERSISTENT);
    connect.properties.receive_maximum = Some(1);
    let (mut slow, _) = RawClient::connect_with(c.a.mqtt, connect).await;
    slow.subscribe(1, "backlog/#", QoS::AtLeastOnce).await;
    let key = format!("{}.slow", t.id);
    let cursor = async || -> u64 {
        let entry = kv.get(&key).await.expect("get").expect("a record");
        let record: serde_json::Value = serde_json::from_slice(&entry).expect("JSON");
        record["cursor_ms"].as_u64().expect("cursor_ms")
    };

    // One message every 10 ms on B; the subscriber takes one every 20 ms.
    let (mut publisher, _) = c.b.connect_v5("fast", &token).await;
    let publishing = tokio::spawn(async move {
        for i in 1..=600u16 {
            let payload = i.to_string();
            publisher
                .publish_acked("backlog/x", payload.as_bytes(), QoS::AtLeastOnce, false, i)
                .await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut seen = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        if started.elapsed() > Duration::from_secs(2) && seen.is_empty() {
            seen.push(cursor().await);
        }
        let p = slow.recv_publish().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        slow.ack(&p).await;
    }
    seen.push(cursor().await);
    publishing.abort();
    assert!(
        seen[1] >= seen[0] + 1000,
        "the cursor moved {} ms in 4 s of backlog",
        seen[1].saturating_sub(seen[0])
    );
}

/// The tenant's log stream as JetStream keeps it: (max age, max bytes).
async fn log_retention(c: &Cluster, tenant: &str) -> (Duration, i64) {
    let client = async_nats::connect(NatsServer::shared().url())
        .await
        .expect("nats");
    let mut log = async_nats::jetstream::new(client)
        .get_stream(format!("{}_log_{}", c.prefix, tenant))
        .await
        .expect("the tenant's log");
    let config = &log.info().await.expect("stream info").config;
    (config.max_age, config.max_bytes)
}

#[tokio::test]
async fn the_tenants_plan_bounds_its_log_and_a_plan_change_reaches_the_stream() {
    // The gateways' ceiling is the default (64 MiB); the plan keeps a few
    // hundred bytes: 60 messages overflow it.
    let c = Cluster::start();
    let plan = json!({"message_log_max_bytes": 1500, "message_log_max_age": 600});
    let (t, token) = c.lifted_tenant("plan-lossy@example.com", plan).await;
    let kv = bucket(&c).await;
    let s = subscribed(&c.a, &kv, &t.id, "late", &token, "l/#").await;
    s.disconnect().await;

    publish(&c.b, &token, "l/1", 60).await;
    assert_eq!(
        log_retention(&c, &t.id).await,
        (Duration::from_secs(600), 1500)
    );
    let (mut s, present) = resume(&c.b, "late", &token, PERSISTENT).await;
    assert!(present);
    let got = received(&mut s).await;
    assert!(
        !got.is_empty() && got.len() < 60,
        "what the plan's log kept: {got:?}"
    );
    let lost = c.b.metric("aerie_cluster_session_cursor_lost_total", "");
    assert_eq!(lost, 1.0, "the loss is counted");

    // A bigger plan: the stream follows (both gateways hold it open).
    c.set_limits(&t, json!({"message_log_max_bytes": 1_000_000}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while log_retention(&c, &t.id).await != (Duration::from_secs(600), 1_000_000) {
        assert!(
            Instant::now() < deadline,
            "the stream keeps {:?}",
            log_retention(&c, &t.id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_session_taken_over_while_connected_keeps_what_it_does_on_the_new_gateway() {
    let c = Cluster::start();
    let (t, token) = c.lifted_tenant("moves@example.com", json!({})).await;
    let kv = bucket(&c).await;
    let _on_a = subscribed(&c.a, &kv, &t.id, "mover", &token, "old/#").await;
    // Taken over on B while connected on A: B's record wins over A's
    // detach, whichever NATS took first.
    let (mut s, present) = resume(&c.b, "mover", &token, PERSISTENT).await;
    assert!(present);
    s.subscribe(2, "new/#", QoS::AtLeastOnce).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.disconnect().await;

    publish(&c.b, &token, "new/1", 3).await;
    let (mut s, present) = resume(&c.a, "mover", &token, PERSISTENT).await;
    assert!(present);
    assert_eq!(received(&mut s).await, numbers(0..3));
}

#[tokio::test]
async fn a_subscribe_of_many_filters_is_one_or_two_record_writes_not_one_per_filter() {
    let c = Cluster::start();
    let (t, token) = c.lifted_tenant("wide@example.com", json!({})).await;
    let kv = bucket(&c).await;
    let puts = || {
        c.a.metric("aerie_cluster_session_record_writes_total", "op=\"put\"")
    };
    let (mut s, _) = resume(&c.a, "wide", &token, PERSISTENT).await;
    // The CONNECT's own write first, so it is not counted below.
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv
        .get(format!("{}.wide", t.id))
        .await
        .expect("get")
        .is_none()
    {
        assert!(Instant::now() < deadline, "no record of the CONNECT");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = puts();
    let options = aerie_proto::SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    s.send(Packet::Subscribe(aerie_proto::Subscribe {
        packet_id: 1,
        filters: (0..20)
            .map(|i| (format!("w/{i}").into(), options))
            .collect(),
        properties: Default::default(),
    }))
    .await;
    match s.recv().await {
        Some(Packet::SubAck(ack)) => assert_eq!(ack.reasons.len(), 20),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let writes = puts() - before;
    assert!(
        (1.0..=4.0).contains(&writes),
        "{writes} record writes for one SUBSCRIBE"
    );
}

/// An attached persistent session to which nothing is delivered has
/// nothing new for its record: no KV write every second for each idle
/// session (10,000 idle devices would be 10,000 writes a second).
#[tokio::test]
async fn an_idle_persistent_session_does_not_write_its_record_every_second() {
    let c = Cluster::start();
    let (_t, token) = c.lifted_tenant("idle@example.com", json!({})).await;
    let puts = || {
        c.a.metric("aerie_cluster_session_record_writes_total", "op=\"put\"")
    };
    let (mut s, _) = resume(&c.a, "idle", &token, PERSISTENT).await;
    let options = aerie_proto::SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    s.send(Packet::Subscribe(aerie_proto::Subscribe {
        packet_id: 1,
        filters: vec![("idle/cmd".into(), options)],
        properties: Default::default(),
    }))
    .await;
    assert!(matches!(s.recv().await, Some(Packet::SubAck(_))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = puts();
    // Three of the writer's ticks.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(puts() - before, 0.0, "record writes while idle");
}

/// A clean-start client has no record to delete: connecting costs no
/// write to the bucket (a delete of a key leaves a marker in the bucket's
/// stream for good, one per client id ever seen), while a record a clean
/// start does replace is deleted.
#[tokio::test]
async fn clean_start_clients_write_nothing_to_the_sessions_bucket() {
    let c = Cluster::start();
    let (t, token) = c.lifted_tenant("fleeting@example.com", json!({})).await;
    let kv = bucket(&c).await;
    for i in 0..20 {
        let gateway = if i % 2 == 0 { &c.a } else { &c.b };
        let (mut s, reason) = gateway.connect_v5(&format!("fleeting-{i}"), &token).await;
        assert_eq!(reason, ReasonCode::SUCCESS);
        s.subscribe(1, "f/#", QoS::AtLeastOnce).await;
        s.disconnect().await;
    }
    // A persistent session on each gateway: once their records are there,
    // each gateway's record writer (one task, in order) has done whatever
    // it would for the clean-start clients before.
    let a = subscribed(&c.a, &kv, &t.id, "kept-a", &token, "f/1").await;
    let b = subscribed(&c.b, &kv, &t.id, "kept-b", &token, "f/2").await;
    let subjects: Vec<String> = NatsServer::shared()
        .stream_messages(&format!("KV_{}_sessions", c.prefix))
        .into_iter()
        .map(|m| m.subject)
        .collect();
    let key = |id: &str| format!("{}.{id}", t.id);
    let bucket_subject = |id: &str| format!("$KV.{}_sessions.{}", c.prefix, key(id));
    assert_eq!(
        subjects,
        [bucket_subject("kept-a"), bucket_subject("kept-b")],
        "the bucket's stream holds only the two records"
    );

    // A clean start of a persistent session's id deletes its record.
    a.disconnect().await;
    b.disconnect().await;
    let (s, reason) = c.b.connect_v5("kept-a", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    s.disconnect().await;
    wait_keys(&kv, &[key("kept-b")]).await;
}

#[tokio::test]
async fn a_thousand_sessions_resuming_hold_no_more_consumers_than_resume_at_once_and_none_after() {
    const SESSIONS: usize = 1000;
    const FILTERS: usize = 10;
    const AT_ONCE: usize = 25;
    use futures_util::StreamExt;
    let c = Cluster::start();
    let (t, token) = c
        .lifted_tenant("thousand@example.com", json!({"connections": 5000}))
        .await;
    let kv = bucket(&c).await;
    // 1,000 persistent sessions of 10 subscriptions each, gone offline on A.
    futures_util::stream::iter(0..SESSIONS)
        .map(|i| {
            let (gateway, token) = (&c.a, &token);
            async move {
                let (mut s, _) = resume(gateway, &format!("t{i}"), token, PERSISTENT).await;
                let options = aerie_proto::SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                };
                s.send(Packet::Subscribe(aerie_proto::Subscribe {
                    packet_id: 1,
                    filters: (0..FILTERS)
                        .map(|k| (format!("th/{i}/{k}").into(), options))
                        .collect(),
                    properties: Default::default(),
                }))
                .await;
                match s.recv().await {
                    Some(Packet::SubAck(ack)) => assert_eq!(ack.reasons.len(), FILTERS),
                    other => panic!("t{i}: {other:?}"),
                }
                s.disconnect().await;
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect::<Vec<()>>()
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while keys(&kv).await.len() < SESSIONS {
        assert!(
            Instant::now() < deadline,
            "{} records",
            keys(&kv).await.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each was sent a message while offline: every resume replays.
    let (mut p, _) = c.b.connect_v5("thousand-publisher", &token).await;
    for i in 0..SESSIONS {
        let id = u16::try_from(i + 1).expect("small");
        let topic = format!("th/{i}/{}", i % FILTERS);
        let acked = p
            .publish_acked(
                &topic,
                format!("to t{i}").as_bytes(),
                QoS::AtLeastOnce,
                false,
                id,
            )
            .await;
        assert_eq!(acked, ReasonCode::SUCCESS);
    }
    p.disconnect().await;
    let stream = format!("{}_log_{}", c.prefix, t.id);

    // All resume on B, AT_ONCE at a time, while /jsz is read.
    let done = std::sync::atomic::AtomicBool::new(false);
    let sampler = async {
        let mut most = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let stream = stream.clone();
            let n = tokio::task::spawn_blocking(move || NatsServer::shared().consumers_on(&stream))
                .await
                .expect("sampled");
            most = most.max(n);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        most
    };
    let resumes = async {
        futures_util::stream::iter(0..SESSIONS)
            .map(|i| {
                let (gateway, token) = (&c.b, &token);
                async move {
                    let (mut s, present) =
                        resume(gateway, &format!("t{i}"), token, PERSISTENT).await;
                    assert!(present, "t{i}");
                    match s.recv_within(Duration::from_secs(10)).await {
                        Ok(Some(Packet::Publish(p))) => {
                            assert_eq!(p.payload, format!("to t{i}").as_bytes());
                            s.ack(&p).await;
                        }
                        other => panic!("t{i} replayed {other:?}"),
                    }
                    s.disconnect().await;
                }
            })
            .buffer_unordered(AT_ONCE)
            .collect::<Vec<()>>()
            .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (most, ()) = futures_util::join!(sampler, resumes);
    eprintln!("at most {most} consumers on the log while {AT_ONCE} sessions resumed at once");
    assert!(
        (1..=AT_ONCE).contains(&most),
        "at most {most} consumers on the log while {AT_ONCE} sessions resumed at once"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = NatsServer::shared().consumers_on(&stream);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} consumers left on the log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
