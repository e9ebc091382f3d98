//! CONNECT authentication through the real `aerie serve` with anonymous access
//! off: the JWT minted by the control plane goes in the password field.
//! Bad tokens get 0x86 (3.1.1: 4), tokens that may not connect 0x87 (3.1.1: 5),
//! nothing more; each refusal is counted by reason.

use std::time::{Duration, Instant};

use aerie_e2e::tenants::{Tenant, mint, tenant, with_password};
use aerie_e2e::v5client::{V3, V5, v3_options, v5_options};
use aerie_e2e::{RawClient, Server, ServerOptions};
use aerie_proto::{ConnAck, ConnAckProperties, Packet, ProtocolVersion, ReasonCode, encode};
use aerie_testdb::jsonwebtoken::{self, Algorithm, EncodingKey, Header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rumqttc::v5::mqttbytes::QoS as Q5;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FAILURES: &str = "aerie_auth_failures_total";

fn closed_server() -> Server {
    ServerOptions::default().anonymous(false).start()
}

/// A raw CONNECT with `password` (and a username, which is ignored).
async fn connect_raw(
    server: &Server,
    version: ProtocolVersion,
    client_id: &str,
    password: Option<&str>,
) -> (RawClient, ConnAck) {
    RawClient::connect_with(server.mqtt, with_password(version, client_id, password)).await
}

/// Connects with `token` until the CONNACK says `want`; fails if that takes
/// more than 1.5 s (the directory reloads every second).
async fn wait_for_connack(server: &Server, token: &str, want: ReasonCode) {
    let since = Instant::now();
    loop {
        let (_c, ack) = connect_raw(server, ProtocolVersion::V5, "dev", Some(token)).await;
        if ack.reason == want {
            return;
        }
        assert!(
            since.elapsed() < Duration::from_millis(1500),
            "still {:?} after {:?}",
            ack.reason,
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts a refusal with `reason` that says nothing else, and the close.
async fn assert_refused(
    server: &Server,
    version: ProtocolVersion,
    client_id: &str,
    password: Option<&str>,
    reason: ReasonCode,
) {
    let (mut c, ack) = connect_raw(server, version, client_id, password).await;
    assert_eq!(ack.reason, reason, "{version:?} {ack:?}");
    assert_eq!(
        ack.properties,
        ConnAckProperties::default(),
        "no reason string"
    );
    assert!(!ack.session_present);
    assert_eq!(c.expect_closed().await, None, "closed after the CONNACK");
}

/// The exact 3.1.1 CONNACK bytes for a CONNECT with `password`.
async fn v311_connack_bytes(server: &Server, password: Option<&str>) -> [u8; 4] {
    let mut s = tokio::net::TcpStream::connect(server.mqtt).await.unwrap();
    let c = with_password(ProtocolVersion::V311, "raw3", password);
    let mut buf = bytes::BytesMut::new();
    encode(
        &Packet::Connect(Box::new(c)),
        ProtocolVersion::V311,
        &mut buf,
    )
    .unwrap();
    s.write_all(&buf).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(aerie_e2e::WAIT, s.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .expect("CONNACK");
    connack
}

#[tokio::test]
async fn minted_tokens_connect_v5_and_v311_and_tenants_do_not_see_each_other() {
    let server = closed_server();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    let (green_token, _) = mint(&server, &green, json!({}));
    let (blue_token, _) = mint(&server, &blue, json!({}));

    let mut options = v5_options(server.mqtt, "green-sub");
    options.set_credentials("whatever", green_token.clone());
    let (mut green_sub, ack) = V5::connect(options).await;
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    let mut options = v5_options(server.mqtt, "blue-sub");
    options.set_credentials("", blue_token.clone());
    let (mut blue_sub, _) = V5::connect(options).await;
    for sub in [&green_sub, &blue_sub] {
        sub.client
            .subscribe("sensors/#", Q5::AtLeastOnce)
            .await
            .unwrap();
    }
    let _ = green_sub.next_packet().await;
    let _ = blue_sub.next_packet().await;

    // A 3.1.1 publisher of the green tenant reaches only green.
    let mut options = v3_options(server.mqtt, "green-pub");
    options.set_credentials("device", green_token);
    let (green_pub, ack) = V3::connect(options).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    green_pub
        .client
        .publish("sensors/1", rumqttc::QoS::AtLeastOnce, false, "green")
        .await
        .unwrap();
    assert_eq!(&green_sub.next_publish().await.payload[..], b"green");
    blue_sub.expect_no_publish(Duration::from_millis(300)).await;

    // And the same topic in the blue tenant reaches only blue.
    let mut options = v3_options(server.mqtt, "blue-pub");
    options.set_credentials("device", blue_token);
    let (blue_pub, _) = V3::connect(options).await;
    blue_pub
        .client
        .publish("sensors/1", rumqttc::QoS::AtLeastOnce, false, "blue")
        .await
        .unwrap();
    assert_eq!(&blue_sub.next_publish().await.payload[..], b"blue");
    green_sub
        .expect_no_publish(Duration::from_millis(300))
        .await;
    assert_eq!(server.metric(FAILURES, ""), 0.0);
}

/// The server's current signing key id, from its JWKS, and its public key.
fn server_key(server: &Server) -> (String, Vec<u8>) {
    let jwks = server
        .api("GET", "/.well-known/jwks.json", None, None)
        .expect(200);
    let key = &jwks["keys"][0];
    (
        key["kid"].as_str().unwrap().to_owned(),
        URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap(),
    )
}

fn claims(server: &Server, tenant: &Tenant) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "iss": format!("http://{}", server.http), "aud": "mqtt", "sub": "dev",
        "tnt": tenant.id, "iat": now, "exp": now + 600, "jti": "forged-1",
    })
}

#[tokio::test]
async fn forged_tokens_are_refused_as_bad_credentials_and_counted_by_reason() {
    let server = closed_server();
    let green = tenant(&server, "green@example.com");
    let (kid, public_key) = server_key(&server);
    let claims = claims(&server, &green);

    // Signed by a key of our own, under the server's kid.
    let ours = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ours = EncodingKey::from_ed_der(&ours.serialize_der());
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    let wrong_signature = jsonwebtoken::encode(&header, &claims, &ours).unwrap();
    header.kid = Some("no-such-kid".into());
    let unknown_kid = jsonwebtoken::encode(&header, &claims, &ours).unwrap();
    // HS256 keyed with the server's public key.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hmac =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public_key)).unwrap();
    // alg none, no signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );

    for token in [&wrong_signature, &unknown_kid, &hmac, &none, "not-a-jwt"] {
        for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
            assert_refused(
                &server,
                version,
                "dev",
                Some(token),
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            )
            .await;
        }
    }
    // 3.1.1 exactly: return code 4.
    assert_eq!(
        v311_connack_bytes(&server, Some(&wrong_signature)).await,
        [0x20, 0x02, 0x00, 0x04]
    );
    for (reason, count) in [
        ("bad_signature", 3.0),
        ("unknown_kid", 2.0),
        ("alg_not_allowed", 4.0),
        ("malformed", 2.0),
    ] {
        assert_eq!(
            server.wait_metric(FAILURES, &format!("reason=\"{reason}\""), count),
            count,
            "{reason}"
        );
    }
}

#[tokio::test]
async fn no_password_is_refused_as_not_authorized_when_anonymous_is_off() {
    let server = closed_server();
    assert_refused(
        &server,
        ProtocolVersion::V5,
        "anon",
        None,
        ReasonCode::NOT_AUTHORIZED,
    )
    .await;
    assert_eq!(
        v311_connack_bytes(&server, None).await,
        [0x20, 0x02, 0x00, 0x05]
    );
    assert_eq!(
        server.wait_metric(FAILURES, "reason=\"no_credentials\"", 2.0),
        2.0
    );
}

#[tokio::test]
async fn a_token_bound_to_a_client_id_connects_only_as_that_client() {
    let server = closed_server();
    let green = tenant(&server, "green@example.com");
    let (token, _) = mint(&server, &green, json!({"client_id": "sensor-1"}));

    assert_refused(
        &server,
        ProtocolVersion::V5,
        "sensor-2",
        Some(&token),
        ReasonCode::NOT_AUTHORIZED,
    )
    .await;
    assert_refused(
        &server,
        ProtocolVersion::V311,
        "sensor-2",
        Some(&token),
        ReasonCode::NOT_AUTHORIZED,
    )
    .await;
    let (_c, ack) = connect_raw(&server, ProtocolVersion::V5, "sensor-1", Some(&token)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    // An empty client id is given the token's.
    let (_c, ack) = connect_raw(&server, ProtocolVersion::V5, "", Some(&token)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        ack.properties.assigned_client_identifier.as_deref(),
        Some("sensor-1")
    );
    assert_eq!(
        server.wait_metric(FAILURES, "reason=\"client_id_mismatch\"", 2.0),
        2.0
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_for_new_connections_within_a_second_and_a_half() {
    let server = closed_server();
    let green = tenant(&server, "green@example.com");
    let (token, jti) = mint(&server, &green, json!({}));
    let (c, ack) = connect_raw(&server, ProtocolVersion::V5, "dev", Some(&token)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c.disconnect().await;

    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{}/tokens/{jti}", green.id),
            Some(&green.api_key),
            None,
        )
        .expect(204);
    wait_for_connack(&server, &token, ReasonCode::NOT_AUTHORIZED).await;
    assert_eq!(
        v311_connack_bytes(&server, Some(&token)).await,
        [0x20, 0x02, 0x00, 0x05]
    );
    assert_eq!(server.wait_metric(FAILURES, "reason=\"revoked\"", 2.0), 2.0);
}

#[tokio::test]
async fn a_suspended_tenant_cannot_connect_and_can_again_once_resumed() {
    const ADMIN: &str = "e2e-admin-token-0123456789abcdefghij";
    let server = ServerOptions::default()
        .anonymous(false)
        .env("AERIE_ADMIN_TOKEN", ADMIN)
        .start();
    let green = tenant(&server, "green@example.com");
    let (token, _) = mint(&server, &green, json!({}));
    let admin = |action: &str| {
        server
            .api(
                "POST",
                &format!("/v1/admin/tenants/{}/{action}", green.id),
                Some(ADMIN),
                None,
            )
            .expect(200);
    };
    admin("suspend");
    wait_for_connack(&server, &token, ReasonCode::NOT_AUTHORIZED).await;
    assert_eq!(
        server.wait_metric(FAILURES, "reason=\"tenant_inactive\"", 1.0),
        1.0
    );
    admin("resume");
    wait_for_connack(&server, &token, ReasonCode::SUCCESS).await;
}

#[tokio::test]
async fn a_restricted_token_publishes_and_subscribes_only_inside_its_acl() {
    use aerie_proto::QoS;
    let server = closed_server();
    let plant = tenant(&server, "acl@example.com");
    let (watcher_token, _) = mint(&server, &plant, json!({}));
    let (device_token, _) = mint(
        &server,
        &plant,
        json!({"client_id": "dev-1", "pub": ["sensors/${client_id}/#"], "sub": ["cmd/${client_id}/#"]}),
    );
    // An unrestricted client of the same tenant sees everything that is routed.
    let (mut watcher, ack) = connect_raw(
        &server,
        ProtocolVersion::V5,
        "watcher",
        Some(&watcher_token),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    watcher.subscribe(1, "#", QoS::AtMostOnce).await;

    let (mut device, ack) =
        connect_raw(&server, ProtocolVersion::V5, "dev-1", Some(&device_token)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    // Publish: inside the ACL routed, outside refused with 0x87 and not routed.
    let ok = device
        .publish_acked("sensors/dev-1/temp", b"21", QoS::AtLeastOnce, false, 1)
        .await;
    assert_eq!(ok, ReasonCode::SUCCESS);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"21");
    for (topic, qos, id) in [
        ("sensors/dev-2/temp", QoS::AtLeastOnce, 2),
        ("cmd/dev-1/x", QoS::ExactlyOnce, 3),
    ] {
        let refused = device.publish_acked(topic, b"no", qos, false, id).await;
        assert_eq!(refused, ReasonCode::NOT_AUTHORIZED, "{topic}");
    }
    // A retained message is a publish like any other.
    let refused = device
        .publish_acked("status/dev-1", b"up", QoS::AtLeastOnce, true, 4)
        .await;
    assert_eq!(refused, ReasonCode::NOT_AUTHORIZED);
    watcher.expect_silence(Duration::from_millis(300)).await;

    // Subscribe: each filter on its own, 0x87 outside the ACL.
    let ack = device.subscribe(5, "cmd/dev-1/#", QoS::AtLeastOnce).await;
    assert_eq!(ack.reasons, [ReasonCode::GRANTED_QOS_1]);
    for filter in ["#", "cmd/+/reboot", "$share/g/cmd/#"] {
        let ack = device.subscribe(6, filter, QoS::AtLeastOnce).await;
        assert_eq!(ack.reasons, [ReasonCode::NOT_AUTHORIZED], "{filter}");
    }
    assert_eq!(server.metric("aerie_acl_denied_total", "publish"), 3.0);
    assert_eq!(server.metric("aerie_acl_denied_total", "subscribe"), 3.0);

    // 3.1.1 cannot say "not authorized" in a PUBACK: acknowledged, dropped,
    // the connection stays up; SUBACK says 0x80.
    let (mut old, ack) =
        connect_raw(&server, ProtocolVersion::V311, "dev-1", Some(&device_token)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let acked = old
        .publish_acked("elsewhere", b"no", QoS::AtLeastOnce, false, 7)
        .await;
    assert_eq!(acked, ReasonCode::SUCCESS);
    let acked = old
        .publish_acked("elsewhere", b"no", QoS::ExactlyOnce, false, 8)
        .await;
    assert_eq!(acked, ReasonCode::SUCCESS);
    watcher.expect_silence(Duration::from_millis(300)).await;
    let ack = old.subscribe(9, "#", QoS::AtMostOnce).await;
    assert_eq!(ack.reasons, [ReasonCode::UNSPECIFIED_ERROR]);
    let ok = old
        .publish_acked("sensors/dev-1/hum", b"40", QoS::AtLeastOnce, false, 10)
        .await;
    assert_eq!(ok, ReasonCode::SUCCESS);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"40");
}

#[tokio::test]
async fn a_will_outside_the_acl_is_refused_at_connect() {
    let server = closed_server();
    let plant = tenant(&server, "will@example.com");
    let (token, _) = mint(
        &server,
        &plant,
        json!({"client_id": "dev-1", "pub": ["sensors/${client_id}/#"]}),
    );
    for (topic, want) in [
        ("alarms/dev-1", ReasonCode::NOT_AUTHORIZED),
        ("sensors/dev-1/gone", ReasonCode::SUCCESS),
    ] {
        let mut connect = with_password(ProtocolVersion::V5, "dev-1", Some(&token));
        connect.will = Some(aerie_proto::Will {
            topic: topic.into(),
            payload: bytes::Bytes::from_static(b"bye"),
            qos: aerie_proto::QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        let (_c, ack) = RawClient::connect_with(server.mqtt, connect).await;
        assert_eq!(ack.reason, want, "{topic}");
    }
    assert_eq!(server.metric("aerie_acl_denied_total", "will"), 1.0);
}
