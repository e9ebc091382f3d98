//! Every transport carries MQTT the same way: WebSocket (real clients and the
//! protocol details of MQTT over WebSocket), TLS and secure WebSocket, and
//! messages cross from one transport to another.

use aerie_e2e::raw::connect_packet;
use aerie_e2e::tls::TestCert;
use aerie_e2e::v5client::{V3, V5, v3_ws_options, v5_options, v5_ws_options};
use aerie_e2e::{RawClient, Server, WAIT, ws};
use aerie_proto::{Packet, ProtocolVersion, QoS, ReasonCode, encode};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use rumqttc::v5::mqttbytes::QoS as Q5;
use tokio_tungstenite::tungstenite::{self, Message};

const V5P: ProtocolVersion = ProtocolVersion::V5;

fn encoded(packet: Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(&packet, version, &mut out).expect("encode");
    out.to_vec()
}

fn subscribe_packet(packet_id: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(aerie_proto::Subscribe {
        packet_id,
        filters: vec![(
            filter.into(),
            aerie_proto::SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
        properties: Default::default(),
    })
}

fn publish_packet(topic: &str, payload: &[u8], qos: QoS, packet_id: Option<u16>) -> Packet {
    Packet::Publish(aerie_proto::Publish {
        qos,
        topic: topic.into(),
        packet_id,
        payload: Bytes::copy_from_slice(payload),
        ..Default::default()
    })
}

fn subprotocol(resp: &tungstenite::handshake::client::Response) -> Option<&str> {
    resp.headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
}

// ---- MQTT over WebSocket with real clients --------------------------------

#[tokio::test]
async fn v5_client_over_websocket_publishes_and_receives() {
    let server = Server::start(&[]);
    let (mut sub, ack) = V5::connect(v5_ws_options(server.ws, "ws-sub5")).await;
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    sub.client.subscribe("ws/+", Q5::AtLeastOnce).await.unwrap();
    assert!(matches!(
        sub.next_packet().await,
        rumqttc::v5::mqttbytes::v5::Packet::SubAck(_)
    ));
    let (publ, _) = V5::connect(v5_ws_options(server.ws, "ws-pub5")).await;
    publ.client
        .publish("ws/a", Q5::AtLeastOnce, false, "over websocket")
        .await
        .unwrap();
    let p = sub.next_publish().await;
    assert_eq!(&p.topic[..], b"ws/a");
    assert_eq!(&p.payload[..], b"over websocket");
    assert_eq!(p.qos, Q5::AtLeastOnce);
}

#[tokio::test]
async fn v311_client_over_websocket_publishes_and_receives() {
    let server = Server::start(&[]);
    let (mut sub, ack) = V3::connect(v3_ws_options(server.ws, "ws-sub3")).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    sub.client
        .subscribe("ws3/#", rumqttc::QoS::ExactlyOnce)
        .await
        .unwrap();
    assert!(matches!(
        sub.next_packet().await,
        rumqttc::Packet::SubAck(_)
    ));
    let (publ, _) = V3::connect(v3_ws_options(server.ws, "ws-pub3")).await;
    publ.client
        .publish("ws3/x/y", rumqttc::QoS::ExactlyOnce, false, "v3 over ws")
        .await
        .unwrap();
    let p = sub.next_publish().await;
    assert_eq!(p.topic, "ws3/x/y");
    assert_eq!(&p.payload[..], b"v3 over ws");
    assert_eq!(p.qos, rumqttc::QoS::ExactlyOnce);
}

#[tokio::test]
async fn message_published_over_tcp_reaches_websocket_subscriber() {
    let server = Server::start(&[]);
    let (mut sub, _) = V5::connect(v5_ws_options(server.ws, "ws-sub")).await;
    sub.client
        .subscribe("cross/t", Q5::AtLeastOnce)
        .await
        .unwrap();
    let _suback = sub.next_packet().await;
    let (publ, _) = V5::connect(v5_options(server.mqtt, "tcp-pub")).await;
    publ.client
        .publish("cross/t", Q5::AtLeastOnce, false, "tcp→ws")
        .await
        .unwrap();
    let p = sub.next_publish().await;
    assert_eq!(&p.topic[..], b"cross/t");
    assert_eq!(&p.payload[..], "tcp→ws".as_bytes());
}

#[tokio::test]
async fn message_published_over_websocket_reaches_tcp_subscriber() {
    let server = Server::start(&[]);
    let (mut sub, _) = V5::connect(v5_options(server.mqtt, "tcp-sub")).await;
    sub.client
        .subscribe("cross/w", Q5::AtLeastOnce)
        .await
        .unwrap();
    let _suback = sub.next_packet().await;
    let (publ, _) = V5::connect(v5_ws_options(server.ws, "ws-pub")).await;
    publ.client
        .publish("cross/w", Q5::AtLeastOnce, false, "ws→tcp")
        .await
        .unwrap();
    let p = sub.next_publish().await;
    assert_eq!(&p.topic[..], b"cross/w");
    assert_eq!(&p.payload[..], "ws→tcp".as_bytes());
}

// ---- MQTT over WebSocket: protocol details (raw WebSocket client) ---------

#[tokio::test]
async fn websocket_upgrade_echoes_the_mqtt_subprotocol() {
    let server = Server::start(&[]);
    let (socket, resp) = ws::open(server.ws, &["mqtt"]).await.expect("upgrade");
    assert_eq!(resp.status(), 101);
    assert_eq!(subprotocol(&resp), Some("mqtt"));
    let (_c, ack) =
        RawClient::connect_over(ws::byte_stream(socket), connect_packet(V5P, "sp", true)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn websocket_accepts_the_legacy_mqttv31_subprotocol() {
    let server = Server::start(&[]);
    let (socket, resp) = ws::open(server.ws, &["mqttv3.1"]).await.expect("upgrade");
    assert_eq!(subprotocol(&resp), Some("mqttv3.1"));
    let (_c, ack) = RawClient::connect_over(
        ws::byte_stream(socket),
        connect_packet(ProtocolVersion::V311, "legacy", true),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn websocket_offering_only_another_subprotocol_is_refused_with_400() {
    let server = Server::start(&[]);
    match ws::open(server.ws, &["chat"]).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        Err(e) => panic!("expected HTTP 400, got {e:?}"),
        Ok((_, resp)) => panic!("upgrade accepted: {resp:?}"),
    }
}

#[tokio::test]
async fn websocket_text_frame_closes_the_connection() {
    let server = Server::start(&[]);
    let (mut socket, _) = ws::open(server.ws, &["mqtt"]).await.expect("upgrade");
    let connect = encoded(
        Packet::Connect(Box::new(connect_packet(V5P, "texter", true))),
        V5P,
    );
    socket.send(Message::Binary(connect.into())).await.unwrap();
    // CONNACK first: the session is up before the text frame.
    let first = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("CONNACK in time");
    let Some(Ok(Message::Binary(b))) = first else {
        panic!("expected a binary CONNACK, got {first:?}");
    };
    assert_eq!(b[0], 0x20, "CONNACK");
    socket.send(Message::text("{\"hello\":1}")).await.unwrap();
    // The broker drops the connection: the stream ends (with or without a
    // close frame) instead of staying open.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => panic!("connection still open after a text frame"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => break,
            // A v5 DISCONNECT before closing is fine.
            Ok(Some(Ok(Message::Binary(b)))) => assert_eq!(b[0], 0xE0, "only DISCONNECT"),
            Ok(Some(Ok(m))) => panic!("unexpected {m:?}"),
        }
    }
}

#[tokio::test]
async fn mqtt_packet_split_across_websocket_messages_is_reassembled() {
    let server = Server::start(&[]);
    let (mut socket, _) = ws::open(server.ws, &["mqtt"]).await.expect("upgrade");
    let connect = encoded(
        Packet::Connect(Box::new(connect_packet(V5P, "split-client", true))),
        V5P,
    );
    // Fixed header alone, then a few bytes, then the rest.
    for chunk in [&connect[..2], &connect[2..7], &connect[7..]] {
        socket
            .send(Message::Binary(Bytes::copy_from_slice(chunk)))
            .await
            .unwrap();
    }
    let mut c = RawClient::over(ws::byte_stream(socket), V5P);
    match c.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let ack = c.subscribe(1, "split/t", QoS::AtMostOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_0]);
    // A PUBLISH cut inside its remaining length and inside its payload.
    let publish = encoded(
        publish_packet("split/t", &[7u8; 200], QoS::AtMostOnce, None),
        V5P,
    );
    assert!(publish[1] & 0x80 != 0, "two-byte remaining length");
    c.send_bytes(&publish[..2]).await;
    c.send_bytes(&publish[2..100]).await;
    c.send_bytes(&publish[100..]).await;
    let p = c.recv_publish().await;
    assert_eq!(&p.topic[..], "split/t");
    assert_eq!(&p.payload[..], &[7u8; 200][..]);
}

#[tokio::test]
async fn several_mqtt_packets_in_one_websocket_message_are_all_handled() {
    let server = Server::start(&[]);
    let (mut socket, _) = ws::open(server.ws, &["mqtt"]).await.expect("upgrade");
    let mut message = encoded(
        Packet::Connect(Box::new(connect_packet(V5P, "packed", true))),
        V5P,
    );
    message.extend(encoded(
        subscribe_packet(9, "packed/t", QoS::AtMostOnce),
        V5P,
    ));
    message.extend(encoded(
        publish_packet("packed/t", b"all at once", QoS::AtMostOnce, None),
        V5P,
    ));
    socket.send(Message::Binary(message.into())).await.unwrap();
    let mut c = RawClient::over(ws::byte_stream(socket), V5P);
    match c.recv().await {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    match c.recv().await {
        Some(Packet::SubAck(ack)) => {
            assert_eq!(ack.packet_id, 9);
            assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_0]);
        }
        other => panic!("expected SUBACK, got {other:?}"),
    }
    let p = c.recv_publish().await;
    assert_eq!(&p.topic[..], "packed/t");
    assert_eq!(&p.payload[..], b"all at once");
}

#[tokio::test]
async fn packets_sent_right_behind_connect_over_tcp_are_handled_at_once() {
    // Same as above in one TCP write: the broker must not wait for more bytes
    // before handling what already arrived with the CONNECT.
    let server = Server::start(&[]);
    let mut bytes = encoded(
        Packet::Connect(Box::new(connect_packet(V5P, "pipelined", true))),
        V5P,
    );
    bytes.extend(encoded(subscribe_packet(4, "pipe/t", QoS::AtMostOnce), V5P));
    bytes.extend(encoded(
        publish_packet("pipe/t", b"no wait", QoS::AtMostOnce, None),
        V5P,
    ));
    let mut c = RawClient::open(server.mqtt, V5P).await;
    c.send_bytes(&bytes).await;
    assert!(matches!(c.recv().await, Some(Packet::ConnAck(a)) if a.reason == ReasonCode::SUCCESS));
    assert!(matches!(c.recv().await, Some(Packet::SubAck(a)) if a.packet_id == 4));
    let p = c.recv_publish().await;
    assert_eq!(&p.payload[..], b"no wait");
}

// ---- TLS and secure WebSocket ---------------------------------------------

#[tokio::test]
async fn v5_publish_and_subscribe_over_tls() {
    let cert = TestCert::localhost();
    let server = cert.server_options().start();
    let (mut sub, _) = RawClient::connect_over(
        cert.connect(server.mqtts).await,
        connect_packet(V5P, "tls-sub", true),
    )
    .await;
    let ack = sub.subscribe(1, "secure/+", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_1]);
    // Checked against the IP name too: the certificate covers both.
    let (mut publ, ack) = RawClient::connect_over(
        cert.connect_as(server.mqtts, "127.0.0.1").await,
        connect_packet(V5P, "tls-pub", true),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    publ.publish("secure/1", b"encrypted", QoS::AtLeastOnce, false, Some(5))
        .await;
    match publ.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.packet_id, 5),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let p = sub.recv_publish().await;
    assert_eq!(&p.topic[..], "secure/1");
    assert_eq!(&p.payload[..], b"encrypted");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn the_certificates_expiry_is_a_metric_an_alert_can_read() {
    let (cert, not_after) = TestCert::localhost_until(2031, 5, 17);
    let server = cert.server_options().start();
    assert_eq!(
        server.metric("aerie_tls_certificate_expiry_timestamp_seconds", ""),
        not_after as f64
    );
}

#[tokio::test]
async fn message_published_over_tls_reaches_tcp_subscriber() {
    let cert = TestCert::localhost();
    let server = cert.server_options().start();
    let (mut sub, _) = V5::connect(v5_options(server.mqtt, "plain-sub")).await;
    sub.client
        .subscribe("mixed/t", Q5::AtLeastOnce)
        .await
        .unwrap();
    let _suback = sub.next_packet().await;
    let (mut publ, _) = RawClient::connect_over(
        cert.connect(server.mqtts).await,
        connect_packet(V5P, "tls-pub", true),
    )
    .await;
    publ.publish("mixed/t", b"from tls", QoS::AtLeastOnce, false, Some(1))
        .await;
    let p = sub.next_publish().await;
    assert_eq!(&p.topic[..], b"mixed/t");
    assert_eq!(&p.payload[..], b"from tls");
    assert_eq!(p.qos, Q5::AtLeastOnce);
}

/// rumqttc over TLS, trusting only the test certificate.
fn tls_transport(cert: &TestCert) -> rumqttc::Transport {
    rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(cert.client_config()))
}

#[tokio::test]
async fn rumqttc_v5_and_v311_clients_talk_over_tls() {
    let cert = TestCert::localhost();
    let server = cert.server_options().start();
    let mut o5 = rumqttc::v5::MqttOptions::new("tls-v5", "localhost", server.mqtts.port());
    o5.set_transport(tls_transport(&cert));
    let (mut sub, _) = V5::connect(o5).await;
    sub.client
        .subscribe("tls/#", Q5::ExactlyOnce)
        .await
        .unwrap();
    let _suback = sub.next_packet().await;

    let mut o3 = rumqttc::MqttOptions::new("tls-v3", "localhost", server.mqtts.port());
    o3.set_transport(tls_transport(&cert));
    let (publ, _) = V3::connect(o3).await;
    publ.client
        .publish("tls/a", rumqttc::QoS::ExactlyOnce, false, "over tls")
        .await
        .unwrap();
    let p = sub.next_publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..], p.qos),
        (&b"tls/a"[..], &b"over tls"[..], Q5::ExactlyOnce)
    );
}

#[tokio::test]
async fn v5_publish_and_subscribe_over_secure_websocket() {
    let cert = TestCert::localhost();
    let server = cert.server_options().start();
    let url = format!("wss://localhost:{}/mqtt", server.wss.port());
    let (socket, resp) = ws::handshake(cert.connect(server.wss).await, &url, &["mqtt"])
        .await
        .expect("WSS upgrade");
    assert_eq!(subprotocol(&resp), Some("mqtt"));
    let (mut sub, _) = RawClient::connect_over(
        ws::byte_stream(socket),
        connect_packet(V5P, "wss-sub", true),
    )
    .await;
    let ack = sub.subscribe(1, "wss/t", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_1]);

    let (socket, _) = ws::handshake(cert.connect(server.wss).await, &url, &["mqtt"])
        .await
        .expect("WSS upgrade");
    let (mut publ, _) = RawClient::connect_over(
        ws::byte_stream(socket),
        connect_packet(V5P, "wss-pub", true),
    )
    .await;
    publ.publish("wss/t", b"over wss", QoS::AtLeastOnce, false, Some(3))
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.topic[..], "wss/t");
    assert_eq!(&p.payload[..], b"over wss");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

/// Over TLS, WS and WSS too, a client the broker closes on in the middle of
/// a burst reads the DISCONNECT, keeps writing the rest of its burst
/// without error, and then reads an orderly end of the stream (not a reset).
#[tokio::test]
async fn a_client_closed_mid_burst_reads_the_disconnect_over_tls_ws_and_wss() {
    let cert = TestCert::localhost();
    let server = cert
        .server_options()
        .args(&["--max-packet-size", "1024"])
        .start();
    let url = format!("wss://localhost:{}/mqtt", server.wss.port());
    for transport in ["tls", "ws", "wss"] {
        let id = format!("burst-{transport}");
        let connect = connect_packet(V5P, &id, true);
        let (mut c, ack) = match transport {
            "tls" => RawClient::connect_over(cert.connect(server.mqtts).await, connect).await,
            "ws" => {
                let (socket, _) = ws::open(server.ws, &["mqtt"]).await.expect("upgrade");
                RawClient::connect_over(ws::byte_stream(socket), connect).await
            }
            _ => {
                let (socket, _) = ws::handshake(cert.connect(server.wss).await, &url, &["mqtt"])
                    .await
                    .expect("WSS upgrade");
                RawClient::connect_over(ws::byte_stream(socket), connect).await
            }
        };
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        let big = publish_packet("t", &[7; 2048], QoS::AtMostOnce, None);
        c.write_bytes(&encoded(big, V5P)).await.expect("write");
        match c.recv().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::PACKET_TOO_LARGE),
            other => panic!("{transport}: expected DISCONNECT 0x95, got {other:?}"),
        }
        let pings = encoded(Packet::PingReq, V5P).repeat(64);
        for i in 0..15 {
            if let Err(e) = c.write_bytes(&pings).await {
                panic!("{transport}: write {i} of the burst failed: {e}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let rest = c.recv_until_closed_cleanly().await;
        assert!(rest.is_empty(), "{transport}: {rest:?}");
    }
}

#[tokio::test]
async fn a_websocket_frame_larger_than_the_largest_packet_is_refused_at_its_header() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(&["--max-packet-size", "65536"]);
    let (mut socket, _) = ws::open(server.ws, &["mqtt"]).await.expect("upgrade");
    // A masked binary frame announcing 8 MiB, of which 16 bytes come: without
    // a limit the broker would wait for (and make room for) the rest.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(8u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[0u8; 16]);
    socket.get_mut().write_all(&frame).await.unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(3), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection is still open after 3 s");
    assert_eq!(server.wait_metric("aerie_ws_too_large_total", "", 1.0), 1.0);
}
