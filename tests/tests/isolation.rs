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
use rumqttc::v5::mqttbytes::QoS as Q5;
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
        c.client.subscribe(filter, Q5::AtLeastOnce).await.unwrap();
        while !matches!(
            c.next_packet().await,
            rumqttc::v5::mqttbytes::v5::Packet::SubAck(_)
        ) {}
        Sub::V5(c)
    }

    async fn v3(options: rumqttc::MqttOptions, token: &str, filter: &str) -> Sub {
        let mut options = options;
        options.set_credentials("device", token);
        let (mut c, ack) = V3::connect(options).await;
        assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
        c.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        while !matches!(c.next_packet().await, rumqttc::Packet::SubAck(_)) {}
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
