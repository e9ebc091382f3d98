//! Will messages: when they are published, when not, will delay, and the
//! keep-alive timeout that triggers them.

use std::time::Duration;

use aerie_e2e::raw::connect_packet;
use aerie_e2e::{RawClient, Server};
use aerie_proto::{
    Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, Will, WillProperties,
};
use tokio::time::Instant;

const QUIET: Duration = Duration::from_millis(500);

/// A CONNECT carrying a will on "will/<id>" with payload "gone".
fn with_will(version: ProtocolVersion, id: &str, delay: Option<u32>, expiry: u32) -> Connect {
    let mut c = connect_packet(version, id, true);
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c.will = Some(Will {
        topic: format!("will/{id}").into(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: delay,
            ..Default::default()
        },
    });
    c
}

/// A subscriber to every will.
async fn watcher(server: &Server) -> RawClient {
    let (mut w, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "watcher", true).await;
    w.subscribe(1, "will/#", QoS::AtLeastOnce).await;
    w
}

async fn expect_will(w: &mut RawClient, id: &str) {
    let p = w.recv_publish().await;
    assert_eq!(&p.topic[..], format!("will/{id}"));
    assert_eq!(&p.payload[..], b"gone");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    w.ack(&p).await;
}

async fn connect(server: &Server, connect: Connect) -> RawClient {
    let (c, ack) = RawClient::connect_with(server.mqtt, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c
}

async fn will_on_drop(version: ProtocolVersion) {
    let server = Server::start(&[]);
    let mut w = watcher(&server).await;
    let c = connect(&server, with_will(version, "c", None, 0)).await;
    w.expect_silence(Duration::from_millis(200)).await;
    drop(c); // the connection drops without DISCONNECT
    expect_will(&mut w, "c").await;
}

#[tokio::test]
async fn v5_will_is_published_when_the_connection_drops_without_disconnect() {
    will_on_drop(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_will_is_published_when_the_connection_drops_without_disconnect() {
    will_on_drop(ProtocolVersion::V311).await;
}

async fn no_will_after_disconnect(version: ProtocolVersion) {
    let server = Server::start(&[]);
    let mut w = watcher(&server).await;
    let c = connect(&server, with_will(version, "c", None, 0)).await;
    c.disconnect().await;
    w.expect_silence(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn v5_will_is_not_published_after_a_normal_disconnect() {
    no_will_after_disconnect(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_will_is_not_published_after_a_normal_disconnect() {
    no_will_after_disconnect(ProtocolVersion::V311).await;
}

#[tokio::test]
async fn v5_will_is_published_after_disconnect_with_reason_0x04() {
    let server = Server::start(&[]);
    let mut w = watcher(&server).await;
    let mut c = connect(&server, with_will(ProtocolVersion::V5, "c", None, 0)).await;
    c.send(Packet::Disconnect(Disconnect {
        reason: ReasonCode::DISCONNECT_WITH_WILL,
        ..Default::default()
    }))
    .await;
    assert_eq!(c.expect_closed().await, None, "the server just closes");
    expect_will(&mut w, "c").await;
}

#[tokio::test]
async fn v5_retained_will_is_stored_as_retained_message() {
    let server = Server::start(&[]);
    let mut conn = with_will(ProtocolVersion::V5, "c", None, 0);
    conn.will.as_mut().unwrap().retain = true;
    let mut w = watcher(&server).await;
    let c = connect(&server, conn).await;
    drop(c);
    expect_will(&mut w, "c").await;
    let (mut late, _) = RawClient::connect(server.mqtt, ProtocolVersion::V5, "late", true).await;
    late.subscribe(1, "will/c", QoS::AtMostOnce).await;
    let p = late.recv_publish().await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"gone");
}

#[tokio::test]
async fn v5_will_delay_publishes_the_will_after_the_delay_not_before() {
    let server = Server::start(&[]);
    let mut w = watcher(&server).await;
    let c = connect(&server, with_will(ProtocolVersion::V5, "c", Some(2), 60)).await;
    let dropped = Instant::now();
    drop(c);
    w.expect_silence(Duration::from_millis(1700)).await;
    expect_will(&mut w, "c").await;
    let after = dropped.elapsed();
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_millis(3500),
        "will after {after:?}, expected ~2 s"
    );
}

#[tokio::test]
async fn v5_will_is_not_published_when_the_client_reconnects_within_the_delay() {
    let server = Server::start(&[]);
    let mut w = watcher(&server).await;
    let c = connect(&server, with_will(ProtocolVersion::V5, "c", Some(2), 60)).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_back, ack) = RawClient::connect_v5(server.mqtt, "c", false, 60).await;
    assert!(ack.session_present);
    w.expect_silence(Duration::from_millis(2500)).await;
}

#[tokio::test]
async fn v5_will_delay_longer_than_session_expiry_fires_when_the_session_ends() {
    let server = Server::start(&[]);
    let mut w = watcher(&server).await;
    let c = connect(&server, with_will(ProtocolVersion::V5, "c", Some(30), 1)).await;
    let dropped = Instant::now();
    drop(c);
    expect_will(&mut w, "c").await;
    let after = dropped.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "will after {after:?}, expected at session end (~1 s)"
    );
}

#[tokio::test]
async fn v5_will_is_published_after_keep_alive_timeout_with_disconnect_0x8d() {
    let server = Server::start(&[]);
    let mut w = watcher(&server).await;
    let mut conn = with_will(ProtocolVersion::V5, "c", None, 0);
    conn.keep_alive = 1;
    let mut c = connect(&server, conn).await;
    let start = Instant::now();
    // The client goes silent: no PINGREQ.
    w.expect_silence(Duration::from_millis(1200)).await;
    expect_will(&mut w, "c").await;
    let after = start.elapsed();
    assert!(
        after < Duration::from_millis(2500),
        "will after {after:?}, expected ~1.5 s"
    );
    assert_eq!(
        c.expect_closed().await,
        Some(ReasonCode::KEEP_ALIVE_TIMEOUT)
    );
}

#[tokio::test]
async fn v311_will_is_published_after_keep_alive_timeout_and_connection_closed() {
    let server = Server::start(&[]);
    let mut w = watcher(&server).await;
    let mut conn = with_will(ProtocolVersion::V311, "c", None, 0);
    conn.keep_alive = 1;
    let mut c = connect(&server, conn).await;
    w.expect_silence(Duration::from_millis(1200)).await;
    expect_will(&mut w, "c").await;
    assert_eq!(c.expect_closed().await, None, "3.1.1 has no DISCONNECT");
}

#[tokio::test]
async fn v5_will_of_a_taken_over_connection_is_published() {
    let server = Server::start(&[]);
    let mut w = watcher(&server).await;
    let mut old = connect(&server, with_will(ProtocolVersion::V5, "c", None, 60)).await;
    let (_new, ack) = RawClient::connect_v5(server.mqtt, "c", false, 60).await;
    assert!(ack.session_present);
    assert_eq!(
        old.expect_closed().await,
        Some(ReasonCode::SESSION_TAKEN_OVER)
    );
    expect_will(&mut w, "c").await;
    w.expect_silence(QUIET).await;
}

#[tokio::test]
async fn v5_delayed_will_is_published_when_a_clean_start_ends_the_session() {
    // MQTT 5 §3.1.3.2.2: the will goes out when the delay passes or the
    // session ends, whichever is first; a clean start ends the old session.
    let server = Server::start(&[]);
    let mut w = watcher(&server).await;
    let c = connect(&server, with_will(ProtocolVersion::V5, "c", Some(30), 60)).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_again, ack) = RawClient::connect_v5(server.mqtt, "c", true, 60).await;
    assert!(!ack.session_present);
    expect_will(&mut w, "c").await;
}
