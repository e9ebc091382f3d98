//! The basics over TCP with real clients: the broker starts, routes, and reports.

use aerie_e2e::Server;
use aerie_e2e::v5client::{V3, V5, v3_options, v5_options};
use rumqttc::v5::mqttbytes::QoS as Q5;

#[tokio::test]
async fn v5_publish_reaches_subscriber_at_each_qos() {
    let server = Server::start(&[]);
    let (mut sub, _) = V5::connect(v5_options(server.mqtt, "sub")).await;
    sub.client
        .subscribe("sensors/+/temp", Q5::ExactlyOnce)
        .await
        .unwrap();
    let _suback = sub.next_packet().await;
    let (publ, _) = V5::connect(v5_options(server.mqtt, "pub")).await;
    for (i, qos) in [Q5::AtMostOnce, Q5::AtLeastOnce, Q5::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publ.client
            .publish("sensors/1/temp", qos, false, format!("m{i}"))
            .await
            .unwrap();
        let p = sub.next_publish().await;
        assert_eq!(&p.topic[..], b"sensors/1/temp");
        assert_eq!(&p.payload[..], format!("m{i}").as_bytes());
        assert_eq!(p.qos, qos);
    }
}

#[tokio::test]
async fn v311_publish_reaches_subscriber_at_each_qos() {
    let server = Server::start(&[]);
    let (mut sub, _) = V3::connect(v3_options(server.mqtt, "sub3")).await;
    sub.client
        .subscribe("a/#", rumqttc::QoS::ExactlyOnce)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (publ, _) = V3::connect(v3_options(server.mqtt, "pub3")).await;
    for qos in [
        rumqttc::QoS::AtMostOnce,
        rumqttc::QoS::AtLeastOnce,
        rumqttc::QoS::ExactlyOnce,
    ] {
        publ.client.publish("a/b", qos, false, "x").await.unwrap();
        let p = sub.next_publish().await;
        assert_eq!(p.topic, "a/b");
        assert_eq!(p.qos, qos);
    }
}

#[tokio::test]
async fn metrics_and_health_are_served() {
    let server = Server::start(&[]);
    let (status, body) = server.http_get("/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (publ, _) = V5::connect(v5_options(server.mqtt, "m")).await;
    publ.client
        .publish("x", Q5::AtMostOnce, false, "y")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(server.metric("aerie_connections", "") >= 1.0);
    assert!(server.metric("aerie_messages_published_total", "") >= 1.0);
    assert!(server.metric("aerie_packets_received_total", "type=\"CONNECT\"") >= 1.0);
}

#[tokio::test]
async fn control_plane_is_served_next_to_health_and_metrics() {
    let server = Server::start(&[]);
    let (status, body) = server.http_get("/readyz");
    assert_eq!((status, body.trim()), (200, "ready"));
    let (status, body) = server.http_get("/v1/tenants");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"status\":401"), "{body}");
    assert!(server.data_dir.join("control.db").exists());
}

#[tokio::test]
async fn jwks_is_served_and_aerie_keys_rotate_keeps_the_old_key_published() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::start(&[]);
    let (status, before) = server.http_get("/.well-known/jwks.json");
    assert_eq!(status, 200, "{before}");
    assert_eq!(before.matches("\"kid\"").count(), 1, "{before}");
    assert!(before.contains("\"crv\":\"Ed25519\""), "{before}");
    let secret = server.data_dir.join("secret.key");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "secret.key is private");

    let out = std::process::Command::new(aerie_e2e::server::aerie_bin())
        .args(["keys", "rotate", "--data-dir"])
        .arg(&server.data_dir)
        .env_remove("AERIE_DATABASE_URL")
        .env_remove("AERIE_SECRET_KEY")
        .env_remove("AERIE_SECRET_KEY_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let new_kid = stdout
        .trim()
        .strip_prefix("new signing key: ")
        .expect("the new kid");

    let (_, after) = server.http_get("/.well-known/jwks.json");
    assert_eq!(after.matches("\"kid\"").count(), 2, "{after}");
    assert!(after.contains(new_kid), "{after}");
}
