//! Wills and session expiry without their gateway: a will is kept in the
//! KV bucket `<prefix>_wills` while it stands, and when its gateway is
//! killed a surviving gateway publishes it once its delay has passed (once,
//! however many survivors race), unless the client came back first; a
//! dead gateway's persistent sessions expire from `<prefix>_sessions`.
//! Real nats-servers (the shared one, or a 3-node JetStream cluster), a
//! real `aerie control --nats`, real `aerie gateway`s, raw MQTT 5 clients;
//! the buckets are read with async-nats as any NATS client would.

use std::time::{Duration, Instant};

use aerie_e2e::RawClient;
use aerie_e2e::nats::{NatsCluster, NatsServer, unique_prefix};
use aerie_e2e::scaleout::{Cluster, Control, Gateway, set_limits_enforced};
use aerie_e2e::tenants::{mint, tenant, with_password};
use aerie_proto::{Connect, Packet, ProtocolVersion, QoS, ReasonCode, Will, WillProperties};
use async_nats::jetstream::kv;
use futures_util::TryStreamExt;
use serde_json::json;

/// A v5 CONNECT of `client_id` with `token`, session expiry `expiry` and,
/// with `will`, a will on `will/<client id>` delayed `delay` seconds.
fn connect_packet(
    client_id: &str,
    token: &str,
    expiry: u32,
    will: bool,
    delay: Option<u32>,
) -> Connect {
    let mut c = with_password(ProtocolVersion::V5, client_id, Some(token));
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(expiry);
    c.will = will.then(|| Will {
        topic: format!("will/{client_id}").into(),
        payload: bytes::Bytes::from(format!("{client_id} is gone")),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: delay,
            ..Default::default()
        },
    });
    c
}

async fn connect(gateway: &Gateway, connect: Connect) -> RawClient {
    let id = connect.client_id.clone();
    let (c, ack) = RawClient::connect_with(gateway.mqtt, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{id}");
    c
}

/// A subscriber to every will on `gateway`.
async fn watcher(gateway: &Gateway, client_id: &str, token: &str) -> RawClient {
    let (mut w, reason) = gateway.connect_v5(client_id, token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let ack = w.subscribe(1, "will/#", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_1]);
    w
}

/// The wills `w` receives until `until`, with when each came (since
/// `since`), acknowledging each.
async fn wills_until(w: &mut RawClient, since: Instant, until: Instant) -> Vec<(String, Duration)> {
    let mut got = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        match w.recv_within(left).await {
            Ok(Some(Packet::Publish(p))) => {
                w.ack(&p).await;
                got.push((p.topic.to_string(), since.elapsed()));
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("the watcher's connection closed"),
            Err(()) => return got,
        }
    }
}

/// When `topic` came in `got`; panics unless exactly once.
fn once(got: &[(String, Duration)], topic: &str) -> Duration {
    let at: Vec<Duration> = got
        .iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, at)| *at)
        .collect();
    assert_eq!(at.len(), 1, "{topic} received {} times: {got:?}", at.len());
    at[0]
}

/// The bucket `<prefix>_<name>` on the NATS at `url`.
async fn bucket(url: &str, prefix: &str, name: &str) -> kv::Store {
    let client = async_nats::connect(url).await.expect("nats");
    async_nats::jetstream::new(client)
        .get_key_value(format!("{prefix}_{name}"))
        .await
        .expect("the bucket")
}

async fn keys(kv: &kv::Store) -> Vec<String> {
    let mut keys: Vec<String> = kv
        .keys()
        .await
        .expect("keys")
        .try_collect()
        .await
        .expect("keys");
    keys.sort();
    keys
}

/// Waits (`within` at most) until `key` is gone from `kv`; how long that took.
async fn gone_within(kv: &kv::Store, key: &str, within: Duration) -> Duration {
    let since = Instant::now();
    while kv.get(key).await.expect("get").is_some() {
        assert!(
            since.elapsed() < within,
            "{key} still in the bucket after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    since.elapsed()
}

/// Waits (10 s at most) until `key` is in `kv`.
async fn present(kv: &kv::Store, key: &str) {
    let since = Instant::now();
    while kv.get(key).await.expect("get").is_none() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{key} never came into the bucket"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tenant of `c` and a token both gateways accept.
async fn tenant_and_token(c: &Cluster) -> (String, String) {
    let t = tenant(&c.control, "wills@example.com");
    let (token, _) = mint(&c.control, &t, json!({}));
    c.wait_accepted(&token).await;
    (t.id, token)
}

#[tokio::test]
async fn a_killed_gateways_wills_are_published_once_by_a_survivor_after_their_delay() {
    let nats = NatsCluster::start();
    let prefix = unique_prefix();
    let control = Control::start(&nats.urls(), &prefix, &[]);
    let mut gateways: Vec<Gateway> = (0..3)
        .map(|_| Gateway::start(&nats.urls(), &prefix))
        .collect();
    for g in &mut gateways {
        g.wait_ready();
    }
    let t = tenant(&control, "chaos-wills@example.com");
    // The free plan's 10 CONNECTs/s, shared by three gateways, is less than
    // this test's burst on A (its token probes, then two clients).
    let gs: Vec<&Gateway> = gateways.iter().collect();
    let lifted = json!({"connect_rate": 100_000});
    set_limits_enforced(&nats.servers[0], &control, &prefix, &t, lifted, &gs).await;
    let (token, _) = mint(&control, &t, json!({}));
    for g in &gateways {
        g.wait_accepts(&token).await;
    }
    let mut on_b = watcher(&gateways[1], "watcher-b", &token).await;
    let mut on_c = watcher(&gateways[2], "watcher-c", &token).await;
    let wills = bucket(&nats.servers[0].url(), &prefix, "wills").await;

    // A clean session's will (no delay), and one delayed 3 s.
    let _now = connect(&gateways[0], connect_packet("now", &token, 0, true, None)).await;
    let _later = connect(
        &gateways[0],
        connect_packet("later", &token, 60, true, Some(3)),
    )
    .await;
    // The CONNACK waited for each will to be kept.
    assert_eq!(
        keys(&wills).await,
        vec![format!("{}.later", t.id), format!("{}.now", t.id)]
    );

    let killed = Instant::now();
    gateways[0].kill9();
    // Two survivors race for each will; each watcher gets each will once.
    let until = killed + Duration::from_secs(20);
    let (got_b, got_c) = tokio::join!(
        wills_until(&mut on_b, killed, until),
        wills_until(&mut on_c, killed, until)
    );
    for got in [&got_b, &got_c] {
        assert_eq!(got.len(), 2, "{got:?}");
        let now = once(got, "will/now");
        let later = once(got, "will/later");
        eprintln!("after the kill: will/now came in {now:?}, will/later (delay 3 s) in {later:?}");
        assert!(now <= Duration::from_secs(10), "will/now after {now:?}");
        assert!(
            later >= Duration::from_secs(3) && later <= Duration::from_secs(13),
            "will/later after {later:?}"
        );
    }
    let published: f64 = gateways[1..]
        .iter()
        .map(|g| g.metric("aerie_cluster_wills_published_by_survivors_total", ""))
        .sum();
    assert_eq!(published, 2.0, "each will published by one survivor");
    assert!(
        keys(&wills).await.is_empty(),
        "the published wills are gone"
    );
}

#[tokio::test]
async fn a_client_back_on_a_survivor_before_its_will_delay_cancels_its_will() {
    let mut c = Cluster::start();
    let (tenant, token) = tenant_and_token(&c).await;
    let mut w = watcher(&c.b, "watcher", &token).await;
    let wills = bucket(&NatsServer::shared().url(), &c.prefix, "wills").await;
    let _back = connect(&c.a, connect_packet("back", &token, 60, true, Some(4))).await;
    let _away = connect(&c.a, connect_packet("away", &token, 60, true, Some(4))).await;
    present(&wills, &format!("{tenant}.back")).await;

    let killed = Instant::now();
    c.a.kill9();
    // "back" connects again at once, on B, without a will.
    let _again = connect(&c.b, connect_packet("back", &token, 60, false, None)).await;

    let got = wills_until(&mut w, killed, killed + Duration::from_secs(17)).await;
    let away = once(&got, "will/away");
    eprintln!("the will of the client that stayed away came {away:?} after the kill");
    assert!(away >= Duration::from_secs(4), "{away:?}");
    assert_eq!(
        got.len(),
        1,
        "no will of the client that came back: {got:?}"
    );
    assert!(keys(&wills).await.is_empty());
}

#[tokio::test]
async fn a_will_is_kept_while_it_stands_and_a_normal_disconnect_discards_it() {
    let c = Cluster::start();
    let (tenant, token) = tenant_and_token(&c).await;
    let mut w = watcher(&c.b, "watcher", &token).await;
    let wills = bucket(&NatsServer::shared().url(), &c.prefix, "wills").await;

    // A session that ends at disconnect, and one that stays.
    let polite = connect(&c.a, connect_packet("polite", &token, 0, true, None)).await;
    let staying = connect(&c.a, connect_packet("staying", &token, 60, true, Some(5))).await;
    let dropped = connect(&c.a, connect_packet("dropped", &token, 0, true, None)).await;
    let quiet = connect(&c.a, connect_packet("quiet", &token, 0, false, None)).await;
    // Kept before the CONNACK: no wait here.
    assert_eq!(
        keys(&wills).await,
        vec![
            format!("{tenant}.dropped"),
            format!("{tenant}.polite"),
            format!("{tenant}.staying")
        ],
        "the wills that stand, and only those"
    );

    polite.disconnect().await;
    staying.disconnect().await;
    for id in ["polite", "staying"] {
        let took = gone_within(&wills, &format!("{tenant}.{id}"), Duration::from_secs(5)).await;
        eprintln!("a normal DISCONNECT of {id} removed its will's key in {took:?}");
    }
    // A connection that drops: its own gateway publishes the will, and
    // the key goes.
    drop(dropped);
    gone_within(&wills, &format!("{tenant}.dropped"), Duration::from_secs(5)).await;
    quiet.disconnect().await;
    let got = wills_until(
        &mut w,
        Instant::now(),
        Instant::now() + Duration::from_secs(2),
    )
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    once(&got, "will/dropped");
    assert!(keys(&wills).await.is_empty());
    assert_eq!(c.a.metric("aerie_cluster_wills_kept_total", ""), 3.0);
}

#[tokio::test]
async fn a_killed_gateways_persistent_session_leaves_the_buckets_once_it_expires() {
    let mut c = Cluster::start();
    let (tenant, token) = tenant_and_token(&c).await;
    let url = NatsServer::shared().url();
    let (sessions, owners) = (
        bucket(&url, &c.prefix, "sessions").await,
        bucket(&url, &c.prefix, "owners").await,
    );
    // Expires 2 s after its gateway's death; lasts; is resumed meanwhile.
    let mut brief = connect(&c.a, connect_packet("brief", &token, 2, false, None)).await;
    let mut lasting = connect(&c.a, connect_packet("lasting", &token, 300, false, None)).await;
    let mut resumed = connect(&c.a, connect_packet("resumed", &token, 3, false, None)).await;
    for client in [&mut brief, &mut lasting, &mut resumed] {
        client.subscribe(1, "s/#", QoS::AtLeastOnce).await;
    }
    // A clean session: its owner key only.
    let _fleeting = connect(&c.a, connect_packet("fleeting", &token, 0, false, None)).await;
    present(&owners, &format!("{tenant}.fleeting")).await;
    for id in ["brief", "lasting", "resumed"] {
        present(&sessions, &format!("{tenant}.{id}")).await;
        present(&owners, &format!("{tenant}.{id}")).await;
    }

    let killed = Instant::now();
    c.a.kill9();
    let _back = connect(&c.b, connect_packet("resumed", &token, 3, false, None)).await;
    // The clean session ended with its gateway: its owner key goes once the
    // death is seen (not at the owner sweep, 30 to 60 s later).
    let fleeting = gone_within(
        &owners,
        &format!("{tenant}.fleeting"),
        Duration::from_secs(10),
    )
    .await;
    eprintln!("a clean session's owner key left {fleeting:?} after the kill");
    let brief_key = format!("{tenant}.brief");
    gone_within(&sessions, &brief_key, Duration::from_secs(15)).await;
    gone_within(&owners, &brief_key, Duration::from_secs(1)).await;
    let took = killed.elapsed();
    eprintln!(
        "a session expiring 2 s after its gateway's death left the buckets {took:?} after the kill"
    );
    assert!(took >= Duration::from_secs(2), "{took:?}");
    // Another few seconds: "resumed" would have expired by now, had it not been.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let left = keys(&sessions).await;
    assert_eq!(
        left,
        vec![format!("{tenant}.lasting"), format!("{tenant}.resumed")],
        "the session that lasts and the one resumed on B stay"
    );
    assert_eq!(
        c.b.metric("aerie_cluster_sessions_expired_by_survivors_total", ""),
        1.0
    );
}

#[tokio::test]
async fn a_gateway_stopped_cleanly_leaves_no_will_for_the_survivors_to_publish() {
    let mut c = Cluster::start();
    let (tenant, token) = tenant_and_token(&c).await;
    let mut w = watcher(&c.b, "watcher", &token).await;
    let wills = bucket(&NatsServer::shared().url(), &c.prefix, "wills").await;
    let _now = connect(&c.a, connect_packet("now", &token, 0, true, None)).await;
    let _soon = connect(&c.a, connect_packet("soon", &token, 60, true, Some(2))).await;
    present(&wills, &format!("{tenant}.soon")).await;

    // A shutdown publishes no will (the clients did nothing wrong): nor
    // do the survivors, once the stopped gateway is gone from the live ones.
    let stopped = Instant::now();
    assert!(c.a.stop().success());
    assert!(
        keys(&wills).await.is_empty(),
        "removed before the gateway exited"
    );
    let got = wills_until(&mut w, stopped, stopped + Duration::from_secs(8)).await;
    assert!(got.is_empty(), "{got:?}");
    assert!(
        c.b.metric("aerie_cluster_dead_nodes_total", "") >= 1.0,
        "B saw A go"
    );
}

#[tokio::test]
async fn a_will_waiting_when_its_gateway_is_killed_counts_its_delay_from_the_disconnect() {
    let mut c = Cluster::start();
    let (tenant, token) = tenant_and_token(&c).await;
    let mut w = watcher(&c.b, "watcher", &token).await;
    let wills = bucket(&NatsServer::shared().url(), &c.prefix, "wills").await;
    let early = connect(&c.a, connect_packet("early", &token, 60, true, Some(8))).await;
    present(&wills, &format!("{tenant}.early")).await;

    // The connection drops (no DISCONNECT): its will waits 8 s, and its
    // gateway is killed 3 s into them.
    drop(early);
    let dropped = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.a.kill9();
    let got = wills_until(&mut w, dropped, dropped + Duration::from_secs(20)).await;
    let at = once(&got, "will/early");
    eprintln!("the will delayed 8 s came {at:?} after its connection dropped");
    assert!(
        at >= Duration::from_secs(8) && at <= Duration::from_secs(12),
        "{at:?}: not 8 s after the drop (counting from the death would be about 16 s)"
    );
}

#[tokio::test]
async fn a_gateway_started_after_another_died_publishes_the_dead_ones_wills() {
    let nats = NatsServer::shared();
    let prefix = unique_prefix();
    let control = Control::start(&nats.url(), &prefix, &[]);
    let mut a = Gateway::start(&nats.url(), &prefix);
    a.wait_ready();
    let t = tenant(&control, "unwatched@example.com");
    let (token, _) = mint(&control, &t, json!({}));
    a.wait_accepts(&token).await;
    let wills = bucket(&nats.url(), &prefix, "wills").await;
    // A retained will: whoever subscribes later sees that it was published.
    let mut packet = connect_packet("orphan", &token, 0, true, None);
    packet.will.as_mut().expect("a will").retain = true;
    let _orphan = connect(&a, packet).await;
    present(&wills, &format!("{}.orphan", t.id)).await;

    // A dies with no other gateway to see it; B starts once A is gone
    // from the live nodes.
    a.kill9();
    let nodes = bucket(&nats.url(), &prefix, "nodes").await;
    let since = Instant::now();
    while !keys(&nodes).await.is_empty() {
        assert!(
            since.elapsed() < Duration::from_secs(15),
            "A never left the live nodes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut b = Gateway::start(&nats.url(), &prefix);
    b.wait_ready();
    let took = gone_within(&wills, &format!("{}.orphan", t.id), Duration::from_secs(10)).await;
    eprintln!("a gateway started after the death published the will {took:?} after it was ready");
    assert_eq!(
        b.metric("aerie_cluster_wills_published_by_survivors_total", ""),
        1.0
    );
    b.wait_accepts(&token).await;
    let (mut w, _) = b.connect_v5("watcher", &token).await;
    w.subscribe(1, "will/#", QoS::AtLeastOnce).await;
    let p = w.recv_publish().await;
    assert_eq!((&p.topic[..], p.retain), ("will/orphan", true));
    assert_eq!(&p.payload[..], b"orphan is gone");
}

#[tokio::test]
async fn watching_for_dead_gateways_holds_one_consumer_per_gateway_not_one_per_look() {
    let c = Cluster::start();
    let nats = NatsServer::shared();
    let stream = format!("KV_{}_nodes", c.prefix);
    // A dozen looks each, at rest.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let held = nats.consumers_on(&stream);
    eprintln!("consumers on the live nodes' bucket after 12 s with 2 gateways: {held}");
    assert!(held <= 6, "{held} consumers on {stream}");
}
