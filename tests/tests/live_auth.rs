//! Control-plane decisions reaching live connections through the real
//! `aerie serve`: a revoked token, a suspended or deleted tenant close the
//! connections they cover within about a second (v5: DISCONNECT with a reason
//! code and string that say why); MQTT 5 re-authentication (AUTH, method
//! `JWT`) replaces a connection's token.

use std::time::Duration;

use aerie_e2e::raw::{assert_alive, closed_within, reason_string};
use aerie_e2e::tenants::{Tenant, mint, tenant, with_password};
use aerie_e2e::{RawClient, Server, ServerOptions};
use aerie_proto::{Auth, AuthProperties, ConnAck, Packet, ProtocolVersion, QoS, ReasonCode};
use serde_json::json;

const ADMIN: &str = "e2e-admin-token-0123456789abcdefghij";
const DISCONNECTS: &str = "aerie_auth_disconnects_total";

fn server() -> Server {
    ServerOptions::default()
        .anonymous(false)
        .env("AERIE_ADMIN_TOKEN", ADMIN)
        .start()
}

async fn connect(
    server: &Server,
    version: ProtocolVersion,
    client_id: &str,
    token: &str,
) -> RawClient {
    let (c, ack) =
        RawClient::connect_with(server.mqtt, with_password(version, client_id, Some(token))).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{client_id}: {ack:?}");
    c
}

/// A v5 CONNECT with authentication method `JWT` and the token as its data.
async fn connect_jwt_method(server: &Server, client_id: &str, token: &str) -> (RawClient, ConnAck) {
    let mut c = with_password(ProtocolVersion::V5, client_id, None);
    c.properties.authentication_method = Some("JWT".into());
    c.properties.authentication_data = Some(bytes::Bytes::copy_from_slice(token.as_bytes()));
    RawClient::connect_with(server.mqtt, c).await
}

fn admin(server: &Server, tenant: &Tenant, action: &str) {
    server
        .api(
            "POST",
            &format!("/v1/admin/tenants/{}/{action}", tenant.id),
            Some(ADMIN),
            None,
        )
        .expect(200);
}

/// The directory reloads every second; a decision reaches a connection at
/// the next reload (the bound leaves room for a loaded machine).
const WITHIN: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn revoking_a_token_disconnects_its_live_clients_and_no_others() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    let (revoked, jti) = mint(&server, &green, json!({}));
    let (kept, _) = mint(&server, &green, json!({}));
    let mut v5 = connect(&server, ProtocolVersion::V5, "dev-5", &revoked).await;
    let mut v3 = connect(&server, ProtocolVersion::V311, "dev-3", &revoked).await;
    let mut other = connect(&server, ProtocolVersion::V5, "other", &kept).await;

    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{}/tokens/{jti}", green.id),
            Some(&green.api_key),
            None,
        )
        .expect(204);
    let (d, took) = closed_within(&mut v5, WITHIN).await;
    assert_eq!(
        d.as_ref().map(|d| d.reason),
        Some(ReasonCode::NOT_AUTHORIZED),
        "{took:?}"
    );
    assert_eq!(reason_string(&d).as_deref(), Some("token_revoked"));
    let (d, _) = closed_within(&mut v3, WITHIN).await;
    assert_eq!(d, None, "3.1.1 has no DISCONNECT from the server");
    assert_alive(&mut other).await;
    assert_eq!(
        server.wait_metric(DISCONNECTS, "why=\"token_revoked\"", 2.0),
        2.0
    );
}

#[tokio::test]
async fn revoking_an_api_key_disconnects_the_clients_of_tokens_its_lineage_minted_only() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    // The tenant's only key so far: the one that leaks.
    let leaked = server
        .api(
            "GET",
            &format!("/v1/tenants/{}/api-keys", green.id),
            Some(&green.session),
            None,
        )
        .expect(200)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A key the leaked key made, and a token that one minted: what a thief
    // would do to outlive the revocation.
    let made = server
        .api(
            "POST",
            &format!("/v1/tenants/{}/api-keys", green.id),
            Some(&green.api_key),
            Some(&json!({"name": "made", "scopes": ["tokens"]})),
        )
        .expect(201)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mint_with = |bearer: &str, client_id: &str| {
        server
            .api(
                "POST",
                &format!("/v1/tenants/{}/tokens", green.id),
                Some(bearer),
                Some(&json!({"client_id": client_id})),
            )
            .expect(201)["token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let by_made = mint_with(&made, "dev-made");
    let by_owner = mint_with(&green.session, "dev-owner");
    let mut doomed = connect(&server, ProtocolVersion::V5, "dev-made", &by_made).await;
    let mut kept = connect(&server, ProtocolVersion::V5, "dev-owner", &by_owner).await;

    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{}/api-keys/{leaked}", green.id),
            Some(&green.session),
            None,
        )
        .expect(204);
    let (d, took) = closed_within(&mut doomed, WITHIN).await;
    assert_eq!(
        d.as_ref().map(|d| d.reason),
        Some(ReasonCode::NOT_AUTHORIZED),
        "{took:?}"
    );
    assert_eq!(reason_string(&d).as_deref(), Some("token_revoked"));
    assert_alive(&mut kept).await;
    let (_, refused) = RawClient::connect_with(
        server.mqtt,
        with_password(ProtocolVersion::V5, "dev-made", Some(&by_made)),
    )
    .await;
    assert_eq!(refused.reason, ReasonCode::NOT_AUTHORIZED);
}

#[tokio::test]
async fn suspending_or_deleting_a_tenant_disconnects_its_clients_only() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    let (green_token, _) = mint(&server, &green, json!({}));
    let (blue_token, _) = mint(&server, &blue, json!({}));
    // The same client id in both tenants: they are different clients.
    let mut g = connect(&server, ProtocolVersion::V5, "dev", &green_token).await;
    let mut b = connect(&server, ProtocolVersion::V5, "dev", &blue_token).await;

    admin(&server, &green, "suspend");
    let (d, _) = closed_within(&mut g, WITHIN).await;
    assert_eq!(
        d.as_ref().map(|d| d.reason),
        Some(ReasonCode::ADMINISTRATIVE_ACTION)
    );
    assert_eq!(reason_string(&d).as_deref(), Some("tenant_suspended"));
    assert_alive(&mut b).await;

    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{}", blue.id),
            Some(&blue.session),
            None,
        )
        .expect(204);
    let (d, _) = closed_within(&mut b, WITHIN).await;
    assert_eq!(
        d.as_ref().map(|d| d.reason),
        Some(ReasonCode::ADMINISTRATIVE_ACTION)
    );
    assert_eq!(reason_string(&d).as_deref(), Some("tenant_deleted"));
}

fn reauth(token: &str) -> Packet {
    Packet::Auth(Auth {
        reason: ReasonCode::RE_AUTHENTICATE,
        properties: AuthProperties {
            authentication_method: Some("JWT".into()),
            authentication_data: Some(bytes::Bytes::copy_from_slice(token.as_bytes())),
            ..AuthProperties::default()
        },
    })
}

#[tokio::test]
async fn reauthentication_replaces_the_token_and_its_acl() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    let (wide, _) = mint(&server, &green, json!({}));
    let (narrow, narrow_jti) = mint(&server, &green, json!({"pub": ["a/#"], "sub": ["a/#"]}));

    let (mut c, ack) = connect_jwt_method(&server, "dev", &wide).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some("JWT"),
        "CONNACK names the method"
    );
    c.subscribe(1, "a/1", QoS::AtMostOnce).await;
    c.subscribe(2, "b/1", QoS::AtMostOnce).await;

    c.send(reauth(&narrow)).await;
    match c.recv().await {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason, ReasonCode::SUCCESS);
            assert_eq!(a.properties.authentication_method.as_deref(), Some("JWT"));
        }
        other => panic!("expected AUTH, got {other:?}"),
    }
    // The narrower acl holds now: `b/1` is gone, publishing there refused.
    c.publish("a/1", b"in", QoS::AtMostOnce, false, None).await;
    c.publish("b/1", b"out", QoS::AtMostOnce, false, None).await;
    let p = c.recv_publish().await;
    assert_eq!(&p.topic[..], "a/1");
    c.expect_silence(Duration::from_millis(300)).await;

    // Revoking the new token now closes the connection: it is the one in force.
    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{}/tokens/{narrow_jti}", green.id),
            Some(&green.api_key),
            None,
        )
        .expect(204);
    let (d, _) = closed_within(&mut c, WITHIN).await;
    assert_eq!(d.map(|d| d.reason), Some(ReasonCode::NOT_AUTHORIZED));
}

#[tokio::test]
async fn a_failed_or_unexpected_reauthentication_closes_the_connection() {
    let server = server();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    let (token, _) = mint(&server, &green, json!({}));
    let (blue_token, _) = mint(&server, &blue, json!({}));

    // A bad token, and a good token of another tenant: 0x87.
    for bad in ["not-a-jwt", blue_token.as_str()] {
        let (mut c, ack) = connect_jwt_method(&server, "dev", &token).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        c.send(reauth(bad)).await;
        let (d, _) = closed_within(&mut c, WITHIN).await;
        assert_eq!(
            d.as_ref().map(|d| d.reason),
            Some(ReasonCode::NOT_AUTHORIZED)
        );
        assert_eq!(
            reason_string(&d).as_deref(),
            Some("reauthentication_failed")
        );
    }
    // AUTH from a client that connected with the password: a protocol error (§4.12).
    let mut c = connect(&server, ProtocolVersion::V5, "dev", &token).await;
    c.send(reauth(&token)).await;
    let (d, _) = closed_within(&mut c, WITHIN).await;
    assert_eq!(d.map(|d| d.reason), Some(ReasonCode::PROTOCOL_ERROR));
    // Another method at CONNECT: 0x8C.
    let mut connect = with_password(ProtocolVersion::V5, "dev", Some(&token));
    connect.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let (_c, ack) = RawClient::connect_with(server.mqtt, connect).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
}
