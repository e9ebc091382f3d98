//! Tokens a tenant signs itself, with an issuer it registered (inline JWKS
//! or a JWKS URL), through the real `aerie serve`: they connect to that
//! tenant only; expired, not-yet-valid and wrong-audience tokens are refused;
//! a live connection closes at `exp` (v5: DISCONNECT 0xA0) unless an MQTT 5
//! client re-authenticated with a fresh token.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aerie_e2e::idp::{IdpKey, jwks_server};
use aerie_e2e::tenants::{Tenant, tenant, with_password};
use aerie_e2e::{RawClient, Server, ServerOptions};
use aerie_proto::{Auth, AuthProperties, Packet, ProtocolVersion, ReasonCode};
use serde_json::{Value, json};

const IDP: &str = "https://idp.example.com/";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims of a token for `tenant` valid from now for `ttl` seconds.
fn claims(tenant: &Tenant, ttl: u64) -> Value {
    json!({
        "iss": IDP, "aud": "mqtt", "sub": "device-7", "tnt": tenant.id,
        "iat": now(), "exp": now() + ttl, "jti": format!("idp-{}", rand_suffix()),
    })
}

fn rand_suffix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Registers `IDP` for `tenant` with `source`; returns the issuer's id.
fn register(server: &Server, tenant: &Tenant, source: Value) -> String {
    let mut body = json!({"issuer": IDP});
    body.as_object_mut()
        .unwrap()
        .extend(source.as_object().unwrap().clone());
    server
        .api(
            "POST",
            &format!("/v1/tenants/{}/issuers", tenant.id),
            Some(&tenant.api_key),
            Some(&body),
        )
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// CONNECTs with `token` until the CONNACK is `want` (the directory
/// reloads every second, so a new issuer takes up to about that).
async fn connack_becomes(
    server: &Server,
    version: ProtocolVersion,
    token: &str,
    want: ReasonCode,
) -> RawClient {
    let since = Instant::now();
    loop {
        let (c, ack) =
            RawClient::connect_with(server.mqtt, with_password(version, "dev", Some(token))).await;
        if ack.reason == want {
            return c;
        }
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "still {:?}",
            ack.reason
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn closed_server() -> Server {
    ServerOptions::default().anonymous(false).start()
}

#[tokio::test]
async fn a_registered_jwks_issuer_connects_its_tenant_only_and_its_bad_tokens_are_refused() {
    let server = closed_server();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    let idp = IdpKey::new("idp-1");
    register(&server, &green, json!({"jwks": {"keys": [idp.jwk()]}}));
    let good = idp.sign(&claims(&green, 600));
    for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
        connack_becomes(&server, version, &good, ReasonCode::SUCCESS).await;
    }
    // The same issuer's token naming another tenant (which did not register it).
    let as_blue = idp.sign(&claims(&blue, 600));
    connack_becomes(
        &server,
        ProtocolVersion::V5,
        &as_blue,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
    )
    .await;

    let mut expired = claims(&green, 600);
    expired["exp"] = json!(now() - 120);
    let mut not_yet = claims(&green, 600);
    not_yet["nbf"] = json!(now() + 300);
    let mut wrong_audience = claims(&green, 600);
    wrong_audience["aud"] = json!("https");
    for c in [&expired, &not_yet, &wrong_audience] {
        for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
            // (3.1.1's return code 4 reads as 0x86 here; auth.rs checks its bytes.)
            let want = ReasonCode::BAD_USER_NAME_OR_PASSWORD;
            let (_c, ack) = RawClient::connect_with(
                server.mqtt,
                with_password(version, "dev", Some(&idp.sign(c))),
            )
            .await;
            assert_eq!(ack.reason, want, "{c}");
        }
    }
    for reason in [
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "unknown_issuer",
    ] {
        assert!(
            server.metric("aerie_auth_failures_total", &format!("reason=\"{reason}\"")) >= 1.0,
            "{reason}"
        );
    }
}

#[tokio::test]
async fn a_live_connection_closes_at_exp_and_lives_on_after_reauthentication() {
    let server = closed_server();
    let green = tenant(&server, "green@example.com");
    let idp = IdpKey::new("idp-1");
    register(&server, &green, json!({"jwks": {"keys": [idp.jwk()]}}));
    let first = idp.sign(&claims(&green, 600));
    connack_becomes(&server, ProtocolVersion::V5, &first, ReasonCode::SUCCESS).await;

    // Both expire in 3 s; the second client re-authenticates after 1 s.
    let short = idp.sign(&claims(&green, 3));
    let (mut plain, ack) = RawClient::connect_with(
        server.mqtt,
        with_password(ProtocolVersion::V5, "plain", Some(&short)),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let mut connect = with_password(ProtocolVersion::V5, "renewing", None);
    connect.properties.authentication_method = Some("JWT".into());
    connect.properties.authentication_data = Some(bytes::Bytes::from(short.clone().into_bytes()));
    let (mut renewing, ack) = RawClient::connect_with(server.mqtt, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let (mut v3, ack) = RawClient::connect_with(
        server.mqtt,
        with_password(ProtocolVersion::V311, "v3", Some(&short)),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode(0));

    tokio::time::sleep(Duration::from_secs(1)).await;
    renewing
        .send(Packet::Auth(Auth {
            reason: ReasonCode::RE_AUTHENTICATE,
            properties: AuthProperties {
                authentication_method: Some("JWT".into()),
                authentication_data: Some(bytes::Bytes::from(
                    idp.sign(&claims(&green, 600)).into_bytes(),
                )),
                ..AuthProperties::default()
            },
        }))
        .await;
    assert!(
        matches!(renewing.recv().await, Some(Packet::Auth(a)) if a.reason == ReasonCode::SUCCESS)
    );

    // At exp (3 s after minting, give or take the second it was minted in).
    match plain.recv_within(Duration::from_secs(5)).await {
        Ok(Some(Packet::Disconnect(d))) => {
            assert_eq!(d.reason, ReasonCode::MAXIMUM_CONNECT_TIME);
            assert_eq!(d.properties.reason_string.as_deref(), Some("token_expired"));
        }
        other => panic!("expected DISCONNECT 0xA0, got {other:?}"),
    }
    assert_eq!(
        v3.recv_within(Duration::from_secs(2)).await,
        Ok(None),
        "3.1.1: closed"
    );
    // The re-authenticated client outlives the first token.
    renewing.send(Packet::PingReq).await;
    assert_eq!(renewing.recv().await, Some(Packet::PingResp));
    assert_eq!(
        server.wait_metric("aerie_auth_disconnects_total", "why=\"token_expired\"", 2.0),
        2.0
    );
}

#[tokio::test]
async fn a_jwks_url_issuer_is_fetched_refetched_for_a_new_kid_and_its_removal_disconnects() {
    // The JWKS server is on loopback.
    let server = ServerOptions::default()
        .anonymous(false)
        .allow_private_destinations()
        .start();
    let green = tenant(&server, "green@example.com");
    let old = IdpKey::new("idp-old");
    let jwks = jwks_server(json!({"keys": [old.jwk()]})).await;
    let id = register(&server, &green, json!({"jwks_url": jwks.url}));
    connack_becomes(
        &server,
        ProtocolVersion::V5,
        &old.sign(&claims(&green, 600)),
        ReasonCode::SUCCESS,
    )
    .await;
    // The issuer rotates: a token with the new kid makes the gateway fetch again.
    let new = IdpKey::new("idp-new");
    *jwks.keys.lock() = json!({"keys": [old.jwk(), new.jwk()]});
    let (mut c, ack) = RawClient::connect_with(
        server.mqtt,
        with_password(
            ProtocolVersion::V5,
            "dev",
            Some(&new.sign(&claims(&green, 600))),
        ),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);

    // The tenant removes the issuer: its tokens' connections close.
    server
        .api(
            "DELETE",
            &format!("/v1/tenants/{}/issuers/{id}", green.id),
            Some(&green.api_key),
            None,
        )
        .expect(204);
    match c.recv_within(Duration::from_secs(3)).await {
        Ok(Some(Packet::Disconnect(d))) => {
            assert_eq!(d.reason, ReasonCode::NOT_AUTHORIZED);
            assert_eq!(
                d.properties.reason_string.as_deref(),
                Some("issuer_removed")
            );
        }
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tenant_issuer_token_revoked_by_jti_is_disconnected_and_refused_in_its_tenant_only() {
    let server = closed_server();
    let green = tenant(&server, "green@example.com");
    let blue = tenant(&server, "blue@example.com");
    // One identity provider serving both tenants, so their jtis can collide.
    let idp = IdpKey::new("idp-1");
    for t in [&green, &blue] {
        register(&server, t, json!({"jwks": {"keys": [idp.jwk()]}}));
    }
    let with_jti = |t: &Tenant| {
        let mut c = claims(t, 600);
        c["jti"] = json!("shared-jti-1");
        idp.sign(&c)
    };
    let (green_token, blue_token) = (with_jti(&green), with_jti(&blue));
    let mut green_client = connack_becomes(
        &server,
        ProtocolVersion::V5,
        &green_token,
        ReasonCode::SUCCESS,
    )
    .await;
    let mut blue_client = connack_becomes(
        &server,
        ProtocolVersion::V5,
        &blue_token,
        ReasonCode::SUCCESS,
    )
    .await;

    let path = format!("/v1/tenants/{}/tokens/shared-jti-1", green.id);
    server
        .api("DELETE", &path, Some(&green.api_key), None)
        .expect(204);
    match green_client.recv_within(Duration::from_millis(1500)).await {
        Ok(Some(Packet::Disconnect(d))) => {
            assert_eq!(d.reason, ReasonCode::NOT_AUTHORIZED);
            assert_eq!(d.properties.reason_string.as_deref(), Some("token_revoked"));
        }
        other => panic!("expected DISCONNECT 0x87 within 1.5 s, got {other:?}"),
    }
    let (_c, ack) = RawClient::connect_with(
        server.mqtt,
        with_password(ProtocolVersion::V5, "dev", Some(&green_token)),
    )
    .await;
    assert_eq!(
        ack.reason,
        ReasonCode::NOT_AUTHORIZED,
        "refused on reconnect"
    );
    // Blue's token with the same jti is another token: connected, and connects.
    assert_eq!(
        blue_client.recv_within(Duration::from_millis(500)).await,
        Err(()),
        "blue's connection stays open"
    );
    let (_c, ack) = RawClient::connect_with(
        server.mqtt,
        with_password(ProtocolVersion::V5, "dev2", Some(&blue_token)),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    server
        .api("DELETE", &path, Some(&green.api_key), None)
        .expect(404);
}
