//! Account API keys through the REST API, on SQLite and on a real Postgres:
//! shown once, accepted wherever a session token is, never for managing
//! account keys, deleted at once, and another account's key is a 404.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use support::on_both_databases;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use support::api::Api;

on_both_databases!(
    a_key_is_shown_once_listed_without_its_secret_and_deleted,
    a_key_does_on_tenants_what_a_session_token_does,
    no_api_key_manages_account_keys,
    a_deleted_key_is_refused_at_once_and_what_it_made_stays,
    another_accounts_key_is_a_404_and_its_tenants_stay_hidden,
    unknown_keys_get_the_same_401_every_time_as_bad_session_tokens,
    names_are_checked_and_an_account_holds_at_most_100_keys,
);

const KEYS: &str = "/v1/account/api-keys";

async fn create_key(api: &Api, session: &str, name: &str) -> Value {
    let r = api
        .call(
            Method::POST,
            KEYS,
            Some(session),
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    r.json
}

fn secret(key: &Value) -> String {
    key["key"].as_str().unwrap().to_owned()
}

async fn a_key_is_shown_once_listed_without_its_secret_and_deleted(api: Api) {
    let (_, session) = api.sign_up("ada@example.com").await;
    let created = create_key(&api, &session, " terraform ").await;
    assert_eq!(created["name"], "terraform");
    assert!(secret(&created).starts_with("aerie_acct_"), "{created}");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let id = created["id"].as_str().unwrap().to_owned();
    let second = create_key(&api, &session, "pipeline").await;

    let listed = api.call(Method::GET, KEYS, Some(&session), None).await;
    assert_eq!(listed.status, StatusCode::OK);
    let expected = json!([
        {"id": id, "name": "terraform", "created_at": created["created_at"]},
        {"id": second["id"], "name": "pipeline", "created_at": second["created_at"]},
    ]);
    assert_eq!(listed.json, expected, "oldest first, never the key");

    let path = format!("{KEYS}/{id}");
    let r = api.call(Method::DELETE, &path, Some(&session), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    let listed = api.call(Method::GET, KEYS, Some(&session), None).await;
    assert_eq!(listed.json.as_array().unwrap().len(), 1);
    assert_eq!(listed.json[0]["id"], second["id"]);
    let again = api.call(Method::DELETE, &path, Some(&session), None).await;
    assert_eq!(
        again.problem(StatusCode::NOT_FOUND),
        "account API key not found"
    );
    let not_a_uuid = api
        .call(
            Method::DELETE,
            &format!("{KEYS}/nope"),
            Some(&session),
            None,
        )
        .await;
    not_a_uuid.problem(StatusCode::NOT_FOUND);
}

async fn a_key_does_on_tenants_what_a_session_token_does(api: Api) {
    let (_, session) = api.sign_up("ada@example.com").await;
    let by_person = api.create_tenant(&session, "greenhouse").await;
    let key = secret(&create_key(&api, &session, "terraform").await);

    // GET, POST /v1/tenants: the account's tenants, and a new one.
    let listed = api.call(Method::GET, "/v1/tenants", Some(&key), None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json, json!([by_person]));
    let by_key = api.create_tenant(&key, "barn").await;
    let tid = by_key["id"].as_str().unwrap().to_owned();
    let tenant = format!("/v1/tenants/{tid}");
    let seen = api
        .call(Method::GET, "/v1/tenants", Some(&session), None)
        .await;
    assert_eq!(seen.json.as_array().unwrap().len(), 2, "the person sees it");

    // PATCH: rename in place.
    let renamed = api
        .call(
            Method::PATCH,
            &tenant,
            Some(&key),
            Some(json!({"name": "big barn"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.json);
    assert_eq!(renamed.json["name"], "big barn");

    // Under the tenant: a tenant API key, a device token, an issuer.
    let tenant_key = api
        .call(
            Method::POST,
            &format!("{tenant}/api-keys"),
            Some(&key),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(
        tenant_key.status,
        StatusCode::CREATED,
        "{}",
        tenant_key.json
    );
    let minted = api
        .call(
            Method::POST,
            &format!("{tenant}/tokens"),
            Some(&key),
            Some(json!({"client_id": "sensor-1"})),
        )
        .await;
    assert_eq!(minted.status, StatusCode::CREATED, "{}", minted.json);
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "k1"}]});
    let issuer = api
        .call(
            Method::POST,
            &format!("{tenant}/issuers"),
            Some(&key),
            Some(json!({"issuer": "https://auth.example.com", "jwks": jwks})),
        )
        .await;
    assert_eq!(issuer.status, StatusCode::CREATED, "{}", issuer.json);
    let usage = api
        .call(Method::GET, &format!("{tenant}/usage"), Some(&key), None)
        .await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.json);

    // DELETE the tenant.
    let r = api.call(Method::DELETE, &tenant, Some(&key), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    let gone = api.call(Method::GET, &tenant, Some(&session), None).await;
    gone.problem(StatusCode::NOT_FOUND);
}

async fn no_api_key_manages_account_keys(api: Api) {
    let (_, session) = api.sign_up("ada@example.com").await;
    let created = create_key(&api, &session, "terraform").await;
    let account_key = secret(&created);
    let tid = api.create_tenant(&session, "greenhouse").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant_key = api.create_tenant_key(&session, &tid, "ci").await;
    let one = format!("{KEYS}/{}", created["id"].as_str().unwrap());
    for key in [&account_key, &tenant_key] {
        let make = api
            .call(
                Method::POST,
                KEYS,
                Some(key),
                Some(json!({"name": "successor"})),
            )
            .await;
        assert!(
            make.problem(StatusCode::FORBIDDEN)
                .contains("session token")
        );
        let list = api.call(Method::GET, KEYS, Some(key), None).await;
        assert!(
            list.problem(StatusCode::FORBIDDEN)
                .contains("session token")
        );
        let delete = api.call(Method::DELETE, &one, Some(key), None).await;
        assert!(
            delete
                .problem(StatusCode::FORBIDDEN)
                .contains("session token")
        );
    }
    // Nothing was made or deleted, and the key still works.
    let listed = api.call(Method::GET, KEYS, Some(&session), None).await;
    assert_eq!(listed.json.as_array().unwrap().len(), 1, "{}", listed.json);
    let works = api
        .call(Method::GET, "/v1/tenants", Some(&account_key), None)
        .await;
    assert_eq!(works.status, StatusCode::OK);
}

async fn a_deleted_key_is_refused_at_once_and_what_it_made_stays(api: Api) {
    let (_, session) = api.sign_up("ada@example.com").await;
    let created = create_key(&api, &session, "terraform").await;
    let key = secret(&created);
    let tenant = api.create_tenant(&key, "barn").await;
    let tid = tenant["id"].as_str().unwrap();
    let tenant_key = api.create_tenant_key(&key, tid, "ci").await;

    let path = format!("{KEYS}/{}", created["id"].as_str().unwrap());
    let r = api.call(Method::DELETE, &path, Some(&session), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // The very next request with it is refused.
    let refused = api.call(Method::GET, "/v1/tenants", Some(&key), None).await;
    assert_eq!(
        refused.problem(StatusCode::UNAUTHORIZED),
        "unknown or deleted account API key"
    );
    let refused = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&key),
            Some(json!({"name": "x"})),
        )
        .await;
    refused.problem(StatusCode::UNAUTHORIZED);
    // The tenant and its key belong to the account, not to the deleted key.
    let listed = api
        .call(Method::GET, "/v1/tenants", Some(&session), None)
        .await;
    assert_eq!(listed.json, json!([tenant]));
    let works = api
        .call(
            Method::GET,
            &format!("/v1/tenants/{tid}"),
            Some(&tenant_key),
            None,
        )
        .await;
    assert_eq!(works.status, StatusCode::OK);
}

async fn another_accounts_key_is_a_404_and_its_tenants_stay_hidden(api: Api) {
    let (_, ada) = api.sign_up("ada@example.com").await;
    let (_, bob) = api.sign_up("bob@example.com").await;
    let ada_key = create_key(&api, &ada, "terraform").await;
    let bob_key = secret(&create_key(&api, &bob, "terraform").await);
    let ada_tenant = api.create_tenant(&ada, "greenhouse").await;
    let tid = ada_tenant["id"].as_str().unwrap();

    let path = format!("{KEYS}/{}", ada_key["id"].as_str().unwrap());
    let r = api.call(Method::DELETE, &path, Some(&bob), None).await;
    assert_eq!(
        r.problem(StatusCode::NOT_FOUND),
        "account API key not found"
    );
    let bobs = api.call(Method::GET, KEYS, Some(&bob), None).await;
    assert_eq!(bobs.json.as_array().unwrap().len(), 1, "only Bob's own");
    assert_ne!(bobs.json[0]["id"], ada_key["id"]);
    // Ada's key still works; Bob's key does not see Ada's tenant.
    let works = api
        .call(Method::GET, "/v1/tenants", Some(&secret(&ada_key)), None)
        .await;
    assert_eq!(works.json, json!([ada_tenant]));
    let hidden = api
        .call(Method::GET, "/v1/tenants", Some(&bob_key), None)
        .await;
    assert_eq!(hidden.json, json!([]));
    let tenant = format!("/v1/tenants/{tid}");
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"name": "mine"}))),
        (Method::DELETE, None),
    ] {
        let r = api.call(method, &tenant, Some(&bob_key), body).await;
        assert_eq!(r.problem(StatusCode::NOT_FOUND), "tenant not found");
    }
    let still = api.call(Method::GET, &tenant, Some(&ada), None).await;
    assert_eq!(still.json, ada_tenant);
}

async fn unknown_keys_get_the_same_401_every_time_as_bad_session_tokens(api: Api) {
    let (_, session) = api.sign_up("ada@example.com").await;
    let key = secret(&create_key(&api, &session, "terraform").await);
    // A guess of the right shape, and the real key with its last character changed.
    let mut near = key.clone();
    near.pop();
    near.push(if key.ends_with('A') { 'B' } else { 'A' });
    let guesses = ["aerie_acct_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", near.as_str()];
    // As for a bad session token: 401 with `WWW-Authenticate: Bearer` each
    // time, never a 429 (the key has ~190 random bits: nothing to slow down),
    // and no lock-out of the real key.
    for _ in 0..20 {
        for guess in guesses {
            let r = api
                .call(Method::GET, "/v1/tenants", Some(guess), None)
                .await;
            assert_eq!(
                r.problem(StatusCode::UNAUTHORIZED),
                "unknown or deleted account API key"
            );
        }
        let r = api
            .call(Method::GET, "/v1/tenants", Some("s2.e30.AAAA"), None)
            .await;
        r.problem(StatusCode::UNAUTHORIZED);
    }
    let works = api.call(Method::GET, "/v1/tenants", Some(&key), None).await;
    assert_eq!(works.status, StatusCode::OK);
}

async fn names_are_checked_and_an_account_holds_at_most_100_keys(api: Api) {
    let (_, session) = api.sign_up("ada@example.com").await;
    for bad in [
        json!({"name": "  "}),
        json!({"name": "a".repeat(101)}),
        json!({"name": "a\u{7}"}),
    ] {
        let r = api
            .call(Method::POST, KEYS, Some(&session), Some(bad))
            .await;
        assert!(r.problem(StatusCode::BAD_REQUEST).starts_with("name must"));
    }
    let r = api
        .call(
            Method::POST,
            KEYS,
            Some(&session),
            Some(json!({"name": "x", "scopes": []})),
        )
        .await;
    r.problem(StatusCode::UNPROCESSABLE_ENTITY);
    for i in 0..100 {
        create_key(&api, &session, &format!("key {i}")).await;
    }
    let r = api
        .call(
            Method::POST,
            KEYS,
            Some(&session),
            Some(json!({"name": "one more"})),
        )
        .await;
    assert!(r.problem(StatusCode::CONFLICT).contains("100 API keys"));
    let listed = api.call(Method::GET, KEYS, Some(&session), None).await;
    assert_eq!(listed.json.as_array().unwrap().len(), 100);
}
