//! Retained messages: set, replace, delete, the RETAIN flag on delivery,
//! retain handling and retain-as-published, and `$`-topics vs `#`.

use std::time::Duration;

use aerie_e2e::{RawClient, Server};
use aerie_proto::{ProtocolVersion, QoS, ReasonCode, RetainHandling, SubscriptionOptions};

const QUIET: Duration = Duration::from_millis(500);

async fn client(server: &Server, version: ProtocolVersion, id: &str) -> RawClient {
    RawClient::connect(server.mqtt, version, id, true).await.0
}

fn opts(qos: QoS, retain_handling: RetainHandling, rap: bool) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published: rap,
        retain_handling,
    }
}

async fn new_subscriber_gets_retained(version: ProtocolVersion) {
    let server = Server::start(&[]);
    let mut publ = client(&server, version, "pub").await;
    publ.publish_acked("r/a", b"kept", QoS::AtLeastOnce, true, 1)
        .await;
    let mut sub = client(&server, version, "sub").await;
    let ack = sub.subscribe(1, "r/#", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_1]);
    let p = sub.recv_publish().await;
    assert!(p.retain, "retained message carries RETAIN=1");
    assert_eq!(&p.topic[..], "r/a");
    assert_eq!(&p.payload[..], b"kept");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    sub.ack(&p).await;
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn v5_new_subscriber_gets_retained_message_with_retain_flag() {
    new_subscriber_gets_retained(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_new_subscriber_gets_retained_message_with_retain_flag() {
    new_subscriber_gets_retained(ProtocolVersion::V311).await;
}

#[tokio::test]
async fn retained_message_is_sent_at_the_lower_of_its_qos_and_the_subscription_qos() {
    let server = Server::start(&[]);
    let mut publ = client(&server, ProtocolVersion::V5, "pub").await;
    publ.publish_acked("r/q", b"two", QoS::ExactlyOnce, true, 1)
        .await;
    let mut sub = client(&server, ProtocolVersion::V5, "sub").await;
    sub.subscribe(1, "r/q", QoS::AtMostOnce).await;
    let p = sub.recv_publish().await;
    assert_eq!(
        (p.qos, p.retain, p.packet_id),
        (QoS::AtMostOnce, true, None)
    );
}

async fn retained_is_replaced(version: ProtocolVersion) {
    let server = Server::start(&[]);
    let mut publ = client(&server, version, "pub").await;
    publ.publish_acked("r/a", b"old", QoS::AtLeastOnce, true, 1)
        .await;
    publ.publish_acked("r/a", b"new", QoS::AtLeastOnce, true, 2)
        .await;
    let mut sub = client(&server, version, "sub").await;
    sub.subscribe(1, "r/a", QoS::AtLeastOnce).await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"new");
    assert!(p.retain);
    sub.ack(&p).await;
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn v5_newer_retained_message_replaces_the_old_one() {
    retained_is_replaced(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_newer_retained_message_replaces_the_old_one() {
    retained_is_replaced(ProtocolVersion::V311).await;
}

async fn retained_is_deleted(version: ProtocolVersion) {
    let server = Server::start(&[]);
    let mut publ = client(&server, version, "pub").await;
    publ.publish_acked("r/a", b"old", QoS::AtLeastOnce, true, 1)
        .await;
    publ.publish_acked("r/b", b"other", QoS::AtLeastOnce, true, 2)
        .await;
    publ.publish_acked("r/a", b"", QoS::AtLeastOnce, true, 3)
        .await;
    let mut sub = client(&server, version, "sub").await;
    sub.subscribe(1, "r/#", QoS::AtLeastOnce).await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.topic[..], "r/b", "only the undeleted retained message");
    sub.ack(&p).await;
    sub.expect_silence(QUIET).await;
}

#[tokio::test]
async fn v5_empty_retained_payload_deletes_the_retained_message() {
    retained_is_deleted(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn v311_empty_retained_payload_deletes_the_retained_message() {
    retained_is_deleted(ProtocolVersion::V311).await;
}

#[tokio::test]
async fn empty_retained_payload_is_still_delivered_to_live_subscribers() {
    let server = Server::start(&[]);
    let mut sub = client(&server, ProtocolVersion::V5, "sub").await;
    sub.subscribe(1, "r/a", QoS::AtMostOnce).await;
    let mut publ = client(&server, ProtocolVersion::V5, "pub").await;
    publ.publish_acked("r/a", b"", QoS::AtLeastOnce, true, 1)
        .await;
    let p = sub.recv_publish().await;
    assert!(p.payload.is_empty());
}

/// Retained "r/a" = "kept"; a v5 subscriber subscribes twice to "r/a" with
/// `rh`; returns how many retained messages each SUBSCRIBE produced.
async fn retained_per_subscribe(rh: RetainHandling) -> (usize, usize) {
    let server = Server::start(&[]);
    let mut publ = client(&server, ProtocolVersion::V5, "pub").await;
    publ.publish_acked("r/a", b"kept", QoS::AtLeastOnce, true, 1)
        .await;
    let mut sub = client(&server, ProtocolVersion::V5, "sub").await;
    let mut counts = [0; 2];
    for (i, count) in counts.iter_mut().enumerate() {
        sub.subscribe_with(i as u16 + 1, "r/a", opts(QoS::AtMostOnce, rh, false), None)
            .await;
        while let Ok(Some(p)) = sub.recv_within(QUIET).await {
            match p {
                aerie_proto::Packet::Publish(p) => {
                    assert!(p.retain);
                    assert_eq!(&p.payload[..], b"kept");
                    *count += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    (counts[0], counts[1])
}

#[tokio::test]
async fn retain_handling_0_sends_retained_on_every_subscribe() {
    assert_eq!(
        retained_per_subscribe(RetainHandling::SendAtSubscribe).await,
        (1, 1)
    );
}

#[tokio::test]
async fn retain_handling_1_sends_retained_only_when_the_subscription_is_new() {
    assert_eq!(
        retained_per_subscribe(RetainHandling::SendIfNew).await,
        (1, 0)
    );
}

#[tokio::test]
async fn retain_handling_2_never_sends_retained() {
    assert_eq!(
        retained_per_subscribe(RetainHandling::DoNotSend).await,
        (0, 0)
    );
}

#[tokio::test]
async fn retain_handling_1_sends_retained_again_after_unsubscribe() {
    let server = Server::start(&[]);
    let mut publ = client(&server, ProtocolVersion::V5, "pub").await;
    publ.publish_acked("r/a", b"kept", QoS::AtLeastOnce, true, 1)
        .await;
    let mut sub = client(&server, ProtocolVersion::V5, "sub").await;
    let o = opts(QoS::AtMostOnce, RetainHandling::SendIfNew, false);
    sub.subscribe_with(1, "r/a", o, None).await;
    assert!(sub.recv_publish().await.retain);
    sub.send(aerie_proto::Packet::Unsubscribe(aerie_proto::Unsubscribe {
        packet_id: 2,
        filters: vec!["r/a".into()],
        properties: Default::default(),
    }))
    .await;
    assert!(matches!(
        sub.recv().await,
        Some(aerie_proto::Packet::UnsubAck(_))
    ));
    sub.subscribe_with(3, "r/a", o, None).await;
    assert!(sub.recv_publish().await.retain);
}

#[tokio::test]
async fn live_delivery_keeps_retain_flag_only_with_retain_as_published() {
    let server = Server::start(&[]);
    let mut kept = client(&server, ProtocolVersion::V5, "rap").await;
    kept.subscribe_with(
        1,
        "live",
        opts(QoS::AtMostOnce, RetainHandling::SendAtSubscribe, true),
        None,
    )
    .await;
    let mut cleared = client(&server, ProtocolVersion::V5, "norap").await;
    cleared
        .subscribe_with(
            1,
            "live",
            opts(QoS::AtMostOnce, RetainHandling::SendAtSubscribe, false),
            None,
        )
        .await;
    let mut publ = client(&server, ProtocolVersion::V5, "pub").await;
    publ.publish_acked("live", b"r", QoS::AtLeastOnce, true, 1)
        .await;
    publ.publish_acked("live", b"n", QoS::AtLeastOnce, false, 2)
        .await;

    let p = kept.recv_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"r"[..], true));
    let p = kept.recv_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"n"[..], false));

    let p = cleared.recv_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"r"[..], false));
    let p = cleared.recv_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"n"[..], false));
}

#[tokio::test]
async fn v311_live_delivery_of_a_retained_publish_has_retain_flag_0() {
    let server = Server::start(&[]);
    let mut sub = client(&server, ProtocolVersion::V311, "sub").await;
    sub.subscribe(1, "live", QoS::AtMostOnce).await;
    let mut publ = client(&server, ProtocolVersion::V311, "pub").await;
    publ.publish_acked("live", b"r", QoS::AtLeastOnce, true, 1)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"r");
    assert!(!p.retain, "live delivery is not flagged retained in 3.1.1");
}

#[tokio::test]
async fn client_publish_to_dollar_topic_is_refused_and_hash_gets_only_normal_retained() {
    let server = Server::start(&[]);
    let mut publ = client(&server, ProtocolVersion::V5, "pub").await;
    let reason = publ
        .publish_acked("$app/x", b"secret", QoS::AtLeastOnce, true, 1)
        .await;
    assert_eq!(reason, ReasonCode::TOPIC_NAME_INVALID);
    publ.publish_acked("app/x", b"normal", QoS::AtLeastOnce, true, 2)
        .await;

    let mut sub = client(&server, ProtocolVersion::V5, "sub").await;
    sub.subscribe(1, "#", QoS::AtMostOnce).await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.topic[..], "app/x");
    sub.expect_silence(QUIET).await;

    let mut dollar = client(&server, ProtocolVersion::V5, "dollar").await;
    dollar.subscribe(1, "$app/#", QoS::AtMostOnce).await;
    dollar.expect_silence(QUIET).await;
}
