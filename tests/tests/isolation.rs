//! Two tenants using the same topic names, client ids and share group over
//! TCP and WebSocket, with real clients (rumqttc 3.1.1 and 5.0): live
//! messages, `#`, `$share/g/#`, retained messages and wills of one tenant
//! never reach the other, and a topic naming the other tenant stays a topic
//! of one's own.

use std::collections::BTreeSet;
use std::time::Duration;

use aerie_e2e::tenants::{Tenant, mint, tenant};
use aerie_e2e::v5client::{V3, V5, v3_ws_options, v5_options, v5_ws_options};
use aerie_e2e::ws::{byte_stream, open};
use aerie_e2e::{RawClient, Server, ServerOptions};
use aerie_proto::{ProtocolVersion, QoS, ReasonCode, Will};
use serde_json::json;

type Received = BTreeSet<(String, String)>;

fn set(items: &[(&str, &str)]) -> Received {
    items
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect()
}

/// A subscriber of either protocol, with what it has received so far.
enum Sub {
    V5(V5),
    V3(V3),
}

impl Sub {
    async fn v5(options: rumqttc::v5::MqttOptions, token: &str, filter: &str) -> Sub {
        let mut options = options;
        options.set_credentials("", token);
        let (mut c, ack) = V5::connect(options).await;
        assert_eq!(
            ack.code,
            rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
        );
        c.subscribe_acked(filter).await;
        Sub::V5(c)
    }

    async fn v3(options: rumqttc::MqttOptions, token: &str, filter: &str) -> Sub {
        let mut options = options;
        options.set_credentials("device", token);
        let (mut c, ack) = V3::connect(options).await;
        assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
        c.subscribe_acked(filter).await;
        Sub::V3(c)
    }

    /// Everything published to it until now (call after a pause).
    fn received(&mut self) -> Received {
        let mut out = Received::new();
        match self {
            Sub::V5(c) => {
                while let Ok(p) = c.events.try_recv() {
                    if let rumqttc::v5::mqttbytes::v5::Packet::Publish(p) = p {
                        out.insert(utf8(&p.topic, &p.payload));
                    }
                }
            }
            Sub::V3(c) => {
                while let Ok(p) = c.events.try_recv() {
                    if let rumqttc::Packet::Publish(p) = p {
                        out.insert(utf8(p.topic.as_bytes(), &p.payload));
                    }
                }
            }
        }
        out
    }
}

fn utf8(topic: &[u8], payload: &[u8]) -> (String, String) {
    (
        String::from_utf8(topic.to_vec()).unwrap(),
        String::from_utf8(payload.to_vec()).unwrap(),
    )
}

/// A v5 client over WebSocket with `will`, connected with `token`.
async fn with_will_over_ws(server: &Server, token: &str, will_payload: &str) -> RawClient {
    let (ws, _) = open(server.ws, &["mqtt"]).await.unwrap();
    let mut connect = aerie_e2e::tenants::with_password(ProtocolVersion::V5, "dev", Some(token));
    connect.will = Some(Will {
        topic: "wills/dev".into(),
        payload: bytes::Bytes::from(will_payload.to_owned()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    let (c, ack) = RawClient::connect_over(byte_stream(ws), connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c
}

async fn publisher(server: &Server, t: &Tenant, over_ws: bool) -> RawClient {
    let (token, _) = mint(server, t, json!({}));
    let connect = aerie_e2e::tenants::with_password(ProtocolVersion::V311, "dev", Some(&token));
    let (c, ack) = if over_ws {
        let (ws, _) = open(server.ws, &["mqtt"]).await.unwrap();
        RawClient::connect_over(byte_stream(ws), connect).await
    } else {
        RawClient::connect_with(server.mqtt, connect).await
    };
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c
}

#[tokio::test]
async fn two_tenants_on_the_same_names_never_see_each_other_over_tcp_and_websocket() {
    let server = ServerOptions::default().anonymous(false).start();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    let (g, _) = mint(&server, &green, json!({}));
    let (b, _) = mint(&server, &blue, json!({}));

    // Same client ids and group in both tenants, over both transports.
    let mut green_all = Sub::v5(v5_ws_options(server.ws, "all"), &g, "#").await;
    let mut green_shared = Sub::v5(v5_options(server.mqtt, "shared"), &g, "$share/g/#").await;
    let mut blue_all = Sub::v3(v3_ws_options(server.ws, "all"), &b, "#").await;
    let mut blue_shared = Sub::v5(v5_options(server.mqtt, "shared"), &b, "$share/g/#").await;

    // Publishers named "dev" in both tenants; green's over TCP, blue's over WS.
    let mut green_pub = publisher(&server, &green, false).await;
    let mut blue_pub = publisher(&server, &blue, true).await;
    for (p, name) in [(&mut green_pub, "green"), (&mut blue_pub, "blue")] {
        p.publish_acked(
            "sensors/1",
            format!("{name}-live").as_bytes(),
            QoS::AtLeastOnce,
            false,
            1,
        )
        .await;
        p.publish_acked(
            "state/1",
            format!("{name}-retained").as_bytes(),
            QoS::AtLeastOnce,
            true,
            2,
        )
        .await;
    }
    // A topic that names the other tenant is just a topic of one's own.
    let trick = format!("{}/sensors/1", blue.id);
    green_pub
        .publish_acked(&trick, b"green-trick", QoS::AtLeastOnce, false, 3)
        .await;
    // Wills: the clients vanish without DISCONNECT.
    drop(with_will_over_ws(&server, &g, "green-will").await);
    drop(with_will_over_ws(&server, &b, "blue-will").await);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let green_sees = set(&[
        ("sensors/1", "green-live"),
        ("state/1", "green-retained"),
        (&trick, "green-trick"),
        ("wills/dev", "green-will"),
    ]);
    let blue_sees = set(&[
        ("sensors/1", "blue-live"),
        ("state/1", "blue-retained"),
        ("wills/dev", "blue-will"),
    ]);
    assert_eq!(green_all.received(), green_sees, "green #");
    assert_eq!(green_shared.received(), green_sees, "green $share/g/#");
    assert_eq!(blue_all.received(), blue_sees, "blue #");
    assert_eq!(blue_shared.received(), blue_sees, "blue $share/g/#");

    // Late subscribers get their own tenant's retained message only.
    let mut green_late = Sub::v3(v3_ws_options(server.ws, "late"), &g, "state/#").await;
    let mut blue_late = Sub::v5(v5_ws_options(server.ws, "late"), &b, "state/#").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(green_late.received(), set(&[("state/1", "green-retained")]));
    assert_eq!(blue_late.received(), set(&[("state/1", "blue-retained")]));
}

/// The latest value of each `$SYS` topic `c` got within `wait`.
async fn sys_figures(
    c: &mut RawClient,
    wait: Duration,
) -> std::collections::BTreeMap<String, String> {
    let mut seen = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(p)) = c
        .recv_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        if let aerie_proto::Packet::Publish(p) = p {
            let (topic, payload) = utf8(p.topic.as_bytes(), &p.payload);
            seen.insert(topic, payload);
        }
    }
    seen
}

#[tokio::test]
async fn sys_shows_each_tenant_its_own_figures_and_is_read_only() {
    let server = ServerOptions::default()
        .anonymous(false)
        .args(&["--sys-interval", "1", "--usage-flush-interval", "1"])
        .start();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    let (g, _) = mint(&server, &green, json!({}));
    let (b, _) = mint(&server, &blue, json!({}));
    let connect = |id: &str, token: &str| {
        aerie_e2e::tenants::with_password(ProtocolVersion::V5, id, Some(token))
    };
    let (mut green_sys, _) = RawClient::connect_with(server.mqtt, connect("sys", &g)).await;
    green_sys.subscribe(1, "$SYS/#", QoS::AtMostOnce).await;
    let (mut green_all, _) = RawClient::connect_with(server.mqtt, connect("all", &g)).await;
    green_all.subscribe(1, "#", QoS::AtMostOnce).await;
    let (mut green_retained, _) = RawClient::connect_with(server.mqtt, connect("r", &g)).await;
    green_retained
        .publish_acked("state/1", b"x", QoS::AtLeastOnce, true, 1)
        .await;
    let (mut blue_sys, _) = RawClient::connect_with(server.mqtt, connect("sys", &b)).await;
    blue_sys.subscribe(1, "$SYS/#", QoS::AtMostOnce).await;

    let green_figures = sys_figures(&mut green_sys, Duration::from_millis(2500)).await;
    let blue_figures = sys_figures(&mut blue_sys, Duration::from_millis(100)).await;
    assert_eq!(green_figures["$SYS/broker/clients/connected"], "3");
    assert_eq!(green_figures["$SYS/broker/subscriptions/count"], "2");
    assert_eq!(green_figures["$SYS/broker/retained messages/count"], "1");
    assert_eq!(blue_figures["$SYS/broker/clients/connected"], "1");
    assert_eq!(blue_figures["$SYS/broker/subscriptions/count"], "1");
    assert_eq!(blue_figures["$SYS/broker/retained messages/count"], "0");
    // `#` does not match `$SYS` topics.
    let all = sys_figures(&mut green_all, Duration::from_millis(100)).await;
    assert!(all.keys().all(|t| !t.starts_with('$')), "{all:?}");

    // Read-only: a PUBLISH there is refused (v5: 0x90) and routed nowhere,
    // and a will there refuses the CONNECT (0x87).
    assert_eq!(
        green_retained
            .publish_acked(
                "$SYS/broker/clients/connected",
                b"999",
                QoS::AtLeastOnce,
                false,
                2
            )
            .await,
        ReasonCode::TOPIC_NAME_INVALID
    );
    let mut with_will = connect("w", &g);
    with_will.will = Some(Will {
        topic: "$SYS/broker/clients/connected".into(),
        payload: bytes::Bytes::from_static(b"999"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let (_c, ack) = RawClient::connect_with(server.mqtt, with_will).await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    let later = sys_figures(&mut green_sys, Duration::from_millis(1500)).await;
    assert_eq!(later["$SYS/broker/clients/connected"], "3");

    // The broker's own figures are not the tenant's usage: in, the one
    // retained publish; out, its one delivery (to `#`).
    let usage = server
        .api(
            "GET",
            &format!("/v1/tenants/{}/usage", green.id),
            Some(&green.api_key),
            None,
        )
        .expect(200);
    assert_eq!(usage["totals"]["messages_in"], 1, "{usage}");
    assert_eq!(usage["totals"]["messages_out"], 1, "{usage}");
}
