//! One session per client id across gateways, and a tenant's connection
//! limit across gateways, with a real nats-server (JetStream), a real
//! `aerie control --nats` and two (or three) real `aerie gateway`s: a
//! client id connecting on one gateway closes its connection on the other
//! (DISCONNECT 0x8E on v5); two simultaneous connects with one id leave
//! exactly one connected; the clients of a gateway killed with SIGKILL
//! reconnect to the other with the same ids at once; the tenant's limit
//! counts the connections of both gateways.

use std::time::{Duration, Instant};

use aerie_e2e::RawClient;
use aerie_e2e::nats::{NatsServer, unique_prefix};
use aerie_e2e::raw::{assert_alive, closed_within};
use aerie_e2e::scaleout::{Cluster, Control, Gateway};
use aerie_e2e::tenants::{Tenant, mint, tenant};
use aerie_e2e::v5client::{V3, V5, v3_options, v5_options};
use aerie_proto::{Packet, ReasonCode};
use rumqttc::v5::mqttbytes::v5 as p5;
use serde_json::json;

/// A control plane and two ready gateways (see [`Cluster::start`]).
fn cluster() -> Cluster {
    Cluster::start()
}

/// A tenant and a token of it that both gateways accept already. Its
/// connect rate is lifted past the free plan's 10 a second (shared by the
/// gateways): these tests connect many clients at once.
async fn tenant_with_token(c: &Cluster) -> (Tenant, String) {
    let t = tenant(&c.control, "green@example.com");
    c.set_limits(&t, json!({"connect_rate": 1000})).await;
    let (token, _) = mint(&c.control, &t, json!({}));
    c.wait_accepted(&token).await;
    (t, token)
}

async fn connect(gateway: &Gateway, client_id: &str, token: &str) -> (RawClient, ReasonCode) {
    gateway.connect_v5(client_id, token).await
}

/// Whether the server closed `c` within `wait` (and with which DISCONNECT
/// reason, if it sent one), or `None` if it is still open.
async fn closed_in(c: &mut RawClient, wait: Duration) -> Option<Option<ReasonCode>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut reason = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.recv_within(left).await {
            Ok(None) => return Some(reason),
            Ok(Some(Packet::Disconnect(d))) => reason = Some(d.reason),
            Ok(Some(_)) => {}
            Err(()) => return None,
        }
    }
}

#[tokio::test]
async fn a_v5_client_id_connecting_on_the_other_gateway_closes_the_first_connection_with_0x8e() {
    let c = cluster();
    let (_t, token) = tenant_with_token(&c).await;
    // The first client's event loop is driven here: rumqttc reports the
    // server's DISCONNECT as the error that ends it.
    let mut options = v5_options(c.a.mqtt, "sensor-1");
    options.set_credentials("anyone", token.clone());
    let (_first, mut first_loop) = rumqttc::v5::AsyncClient::new(options, 8);
    loop {
        match first_loop.poll().await {
            Ok(rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(ack))) => {
                assert_eq!(ack.code, p5::ConnectReturnCode::Success);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("the first client did not connect: {e}"),
        }
    }

    let mut options = v5_options(c.b.mqtt, "sensor-1");
    options.set_credentials("anyone", token.clone());
    let since = Instant::now();
    let (mut second, ack) = V5::connect(options).await;
    assert_eq!(ack.code, p5::ConnectReturnCode::Success);

    // The first gets DISCONNECT 0x8E Session taken over, and its connection ends.
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if let Err(e) = first_loop.poll().await {
                return e;
            }
        }
    })
    .await
    .expect("the first connection was not taken over");
    assert!(
        matches!(
            ended,
            rumqttc::v5::ConnectionError::MqttState(rumqttc::v5::StateError::ServerDisconnect {
                reason_code: p5::DisconnectReasonCode::SessionTakenOver,
                ..
            })
        ),
        "{ended:?}"
    );
    eprintln!("taken over across gateways in {:?}", since.elapsed());
    // The second carries on.
    second
        .client
        .subscribe("t", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let p5::Packet::SubAck(s) = second.next_packet().await {
            assert_eq!(
                s.return_codes,
                [p5::SubscribeReasonCode::Success(
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce
                )]
            );
            break;
        }
    }
}

#[tokio::test]
async fn a_3_1_1_client_id_connecting_on_the_other_gateway_closes_the_first_connection() {
    let c = cluster();
    let (_t, token) = tenant_with_token(&c).await;
    let mut options = v3_options(c.a.mqtt, "meter-7");
    options.set_credentials("anyone", token.clone());
    let (mut first, ack) = V3::connect(options).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);

    let mut options = v3_options(c.b.mqtt, "meter-7");
    options.set_credentials("anyone", token.clone());
    let (mut second, ack) = V3::connect(options).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);

    // 3.1.1 has no DISCONNECT from the server: the connection just ends.
    loop {
        match tokio::time::timeout(Duration::from_secs(3), first.events.recv()).await {
            Ok(None) => break,
            Ok(Some(_)) => {}
            Err(_) => panic!("the first connection is still open"),
        }
    }
    second
        .client
        .subscribe("t", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let rumqttc::Packet::SubAck(_) = second.next_packet().await {
            break;
        }
    }
}

#[tokio::test]
async fn after_a_takeover_on_the_same_gateway_the_other_gateway_still_takes_the_id_over_with_0x8e()
{
    let c = cluster();
    let (_t, token) = tenant_with_token(&c).await;
    let (mut first, reason) = connect(&c.a, "lamp", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    // The device reconnects to the same gateway: its old connection goes.
    let (mut second, reason) = connect(&c.a, "lamp", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let (d, _) = closed_within(&mut first, Duration::from_secs(3)).await;
    assert_eq!(d.map(|d| d.reason), Some(ReasonCode::SESSION_TAKEN_OVER));
    // The replaced session gave up nothing: A still owns the id, so a
    // connect on B closes the live connection on A. (A wrong release would
    // be an asynchronous delete: the pause lets one land before B looks.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_third, reason) = connect(&c.b, "lamp", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let (d, _) = closed_within(&mut second, Duration::from_secs(3)).await;
    assert_eq!(d.map(|d| d.reason), Some(ReasonCode::SESSION_TAKEN_OVER));
}

#[tokio::test]
async fn a_malformed_takeover_request_is_counted_and_closes_nothing() {
    let c = cluster();
    let (_t, token) = tenant_with_token(&c).await;
    let (mut device, reason) = connect(&c.a, "lamp", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    // Gateways' takeover subjects, as NATS's monitoring lists them.
    let nats = NatsServer::shared();
    let connz = aerie_e2e::http::send(nats.monitor, "GET", "/connz?subs=1", &[], "").body;
    let marker = format!("\"{}.owners.", c.prefix);
    let subjects: Vec<&str> = connz
        .split(&marker)
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert_eq!(
        subjects.len(),
        2,
        "one takeover subject per gateway: {subjects:?}"
    );
    for node in subjects {
        nats.publish(&format!("{}.owners.{node}", c.prefix), b"\x01garbage");
    }
    let malformed = |g: &Gateway| {
        let body = aerie_e2e::http::send(g.http, "GET", "/metrics", &[], "").body;
        aerie_e2e::server::sum_metric(&body, "aerie_cluster_takeover_requests_malformed_total", "")
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while malformed(&c.a) + malformed(&c.b) < 2.0 {
        assert!(
            Instant::now() < deadline,
            "the malformed requests were not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_alive(&mut device).await;
}

/// A TCP proxy to NATS that a test can cut (every connection through it
/// closed, new ones closed at once) and restore: one gateway's view of a
/// network partition.
struct Cuttable {
    url: String,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Cuttable {
    async fn to(nats: std::net::SocketAddr) -> Cuttable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if *watch.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(nats).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Cuttable { url, cut }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cut_off_from_nats_while_its_id_was_taken_over_closes_that_connection_once_back()
{
    let nats = NatsServer::shared();
    let prefix = unique_prefix();
    let control = Control::start(&nats.url(), &prefix, &[]);
    let proxy = Cuttable::to(nats.client).await;
    let mut a = Gateway::start(&proxy.url, &prefix);
    let mut b = Gateway::start(&nats.url(), &prefix);
    a.wait_ready();
    b.wait_ready();
    let c = Cluster {
        control,
        a,
        b,
        prefix,
    };
    let (_t, token) = tenant_with_token(&c).await;
    let (mut on_a, reason) = connect(&c.a, "lamp", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);

    // A loses NATS; meanwhile the id connects on B, whose request to A
    // finds no one: both connections are up for now.
    proxy.set_cut(true);
    let mut a = c.a;
    a.wait_readyz(503, Duration::from_secs(5));
    let (mut on_b, reason) = connect(&c.b, "lamp", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_alive(&mut on_a).await;

    // A is back: it reads the ids it holds again and lets this one go.
    proxy.set_cut(false);
    let (d, took) = closed_within(&mut on_a, Duration::from_secs(6)).await;
    assert_eq!(d.map(|d| d.reason), Some(ReasonCode::SESSION_TAKEN_OVER));
    eprintln!("closed {took:?} after NATS came back");
    assert_alive(&mut on_b).await;
}

#[tokio::test]
async fn two_simultaneous_connects_with_one_client_id_on_two_gateways_leave_exactly_one_connected()
{
    let c = cluster();
    let (_t, token) = tenant_with_token(&c).await;
    // Several ids at once, each raced on both gateways.
    let races = (0..8).map(|i| {
        let (a, b, token) = (&c.a, &c.b, token.clone());
        async move {
            let id = format!("racer-{i}");
            let (x, y) = tokio::join!(connect(a, &id, &token), connect(b, &id, &token));
            (id, x, y)
        }
    });
    let raced = futures_util::future::join_all(races).await;
    for (id, (mut x, rx), (mut y, ry)) in raced {
        assert_eq!((rx, ry), (ReasonCode::SUCCESS, ReasonCode::SUCCESS), "{id}");
        let (cx, cy) = tokio::join!(
            closed_in(&mut x, Duration::from_secs(3)),
            closed_in(&mut y, Duration::from_secs(3))
        );
        let survivor = match (cx, cy) {
            (Some(reason), None) => {
                assert_eq!(reason, Some(ReasonCode::SESSION_TAKEN_OVER), "{id}");
                &mut y
            }
            (None, Some(reason)) => {
                assert_eq!(reason, Some(ReasonCode::SESSION_TAKEN_OVER), "{id}");
                &mut x
            }
            other => panic!("{id}: not exactly one connected: {other:?}"),
        };
        assert_alive(survivor).await;
    }
    let metric = |name: &str| {
        [&c.a, &c.b]
            .iter()
            .map(|g| {
                let body = aerie_e2e::http::send(g.http, "GET", "/metrics", &[], "").body;
                aerie_e2e::server::sum_metric(&body, name, "")
            })
            .sum::<f64>()
    };
    let received = metric("aerie_cluster_takeovers_received_total");
    eprintln!(
        "8 races: {received} takeovers received, {} compare-and-set conflicts",
        metric("aerie_cluster_claim_conflicts_total")
    );
    assert!(received >= 8.0, "each race ends in a takeover: {received}");
}

#[tokio::test]
async fn clients_of_a_killed_gateway_reconnect_to_the_other_with_the_same_ids_at_once() {
    let mut c = cluster();
    let (_t, token) = tenant_with_token(&c).await;
    // A rumqttc v5 device, a rumqttc 3.1.1 device and a raw v5 one on A.
    let v5_on = |addr| {
        let mut o = v5_options(addr, "dev-v5");
        o.set_credentials("anyone", token.clone());
        o
    };
    let v3_on = |addr| {
        let mut o = v3_options(addr, "dev-v3");
        o.set_credentials("anyone", token.clone());
        o
    };
    let (mut v5, ack) = V5::connect(v5_on(c.a.mqtt)).await;
    assert_eq!(ack.code, p5::ConnectReturnCode::Success);
    let (mut v3, ack) = V3::connect(v3_on(c.a.mqtt)).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    let (mut raw, reason) = connect(&c.a, "dev-raw", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);

    c.a.kill9();
    closed_within(&mut raw, Duration::from_secs(5)).await;
    for ended in [
        tokio::time::timeout(Duration::from_secs(5), async {
            while v5.events.recv().await.is_some() {}
        })
        .await,
        tokio::time::timeout(Duration::from_secs(5), async {
            while v3.events.recv().await.is_some() {}
        })
        .await,
    ] {
        ended.expect("a rumqttc client still connected to the killed gateway");
    }

    // Each reconnects to B with its client id.
    let since = Instant::now();
    let (mut v5, ack) = V5::connect(v5_on(c.b.mqtt)).await;
    assert_eq!(ack.code, p5::ConnectReturnCode::Success);
    let (mut v3, ack) = V3::connect(v3_on(c.b.mqtt)).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    let (mut raw, reason) = connect(&c.b, "dev-raw", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let took = since.elapsed();
    eprintln!("3 clients of the killed gateway reconnected in {took:?}");
    // At once: nobody waited for the dead gateway to answer.
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // They carry on: the 3.1.1 device gets what the v5 device publishes.
    v3.client
        .subscribe("room/+", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    while !matches!(v3.next_packet().await, rumqttc::Packet::SubAck(_)) {}
    v5.client
        .publish(
            "room/1",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "still here",
        )
        .await
        .unwrap();
    assert_eq!(&v3.next_publish().await.payload[..], b"still here");
    v5.expect_no_publish(Duration::from_millis(10)).await;

    // The ids are the survivor's now: a third gateway takes one over from it.
    let nats = NatsServer::shared();
    let mut third = Gateway::start(&nats.url(), &c.prefix);
    third.wait_ready();
    let (_again, reason) = connect(&third, "dev-raw", &token).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let (d, _) = closed_within(&mut raw, Duration::from_secs(3)).await;
    assert_eq!(d.map(|d| d.reason), Some(ReasonCode::SESSION_TAKEN_OVER));
}

#[tokio::test]
async fn a_tenant_s_connection_limit_counts_the_connections_of_both_gateways() {
    let mut c = cluster();
    let (t, token) = tenant_with_token(&c).await;
    c.set_limits(&t, json!({"connections": 2})).await;

    // Two on gateway A; a third there is refused once A has the limit.
    let (a1, r1) = connect(&c.a, "a1", &token).await;
    let (_a2, r2) = connect(&c.a, "a2", &token).await;
    assert_eq!((r1, r2), (ReasonCode::SUCCESS, ReasonCode::SUCCESS));
    refused_within(&c.a, "a3", &token, Duration::from_secs(3)).await;
    // Gateway B holds none of them, and refuses all the same.
    refused_within(&c.b, "b1", &token, Duration::from_secs(3)).await;

    // One leaves A: its slot is free on B.
    a1.disconnect().await;
    let (_b1, since) = accepted_within(&c.b, "b1", &token, Duration::from_secs(2)).await;
    eprintln!("a slot freed on one gateway was taken on the other in {since:?}");
    // One on each now: both refuse a third.
    let (_, reason) = connect(&c.a, "a3", &token).await;
    assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED);
    let (_, reason) = connect(&c.b, "b2", &token).await;
    assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED);

    // A gateway killed with SIGKILL gives its slots back when its
    // heartbeat expires (8 s, plus 2 s of cached liveness).
    c.b.kill9();
    let (_a3, took) = accepted_within(&c.a, "a3", &token, Duration::from_secs(14)).await;
    eprintln!("the killed gateway's slot was free again after {took:?}");
}

/// Connects (and disconnects) `client_id` until refused with 0x97.
async fn refused_within(gateway: &Gateway, client_id: &str, token: &str, within: Duration) {
    let since = Instant::now();
    loop {
        let (client, reason) = connect(gateway, client_id, token).await;
        if reason == ReasonCode::QUOTA_EXCEEDED {
            return;
        }
        assert_eq!(reason, ReasonCode::SUCCESS);
        client.disconnect().await;
        assert!(
            since.elapsed() < within,
            "{client_id} is still admitted past the tenant's limit after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects `client_id` until accepted (at most `within`); the client and
/// how long that took.
async fn accepted_within(
    gateway: &Gateway,
    client_id: &str,
    token: &str,
    within: Duration,
) -> (RawClient, Duration) {
    let since = Instant::now();
    loop {
        let (client, reason) = connect(gateway, client_id, token).await;
        if reason == ReasonCode::SUCCESS {
            return (client, since.elapsed());
        }
        assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED);
        assert!(
            since.elapsed() < within,
            "{client_id} is still refused after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
