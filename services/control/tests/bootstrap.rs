//! `bootstrap_account` (`aerie serve --bootstrap-account`) on SQLite and on a
//! real Postgres: the chosen key acts as its account through the REST API at
//! once, a second start changes nothing, an existing account gets the key,
//! and a weak key or one another account holds is refused.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use support::on_both_databases;

use aerie_control::bootstrap::bootstrap_account;
use axum::http::{Method, StatusCode};
use serde_json::json;
use support::api::Api;

on_both_databases!(
    the_chosen_key_acts_as_a_new_account_and_a_restart_changes_nothing,
    an_existing_account_gets_the_key,
    weak_keys_bad_emails_and_another_accounts_key_are_refused,
);

const KEY: &str = "aerie_acct_0123456789abcdefABCDEF0123456789abcdef";

async fn the_chosen_key_acts_as_a_new_account_and_a_restart_changes_nothing(api: Api) {
    let store = api.state.store();
    let id = bootstrap_account(store, " Ops@Example.com ", KEY)
        .await
        .unwrap();
    let made = api
        .call(
            Method::POST,
            "/v1/tenants",
            Some(KEY),
            Some(json!({"name": "plant"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.json);
    let listed = api.call(Method::GET, "/v1/tenants", Some(KEY), None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json.as_array().unwrap().len(), 1, "{}", listed.json);

    // Started again with the same settings: the same account, one key, the tenant kept.
    assert_eq!(
        bootstrap_account(store, "ops@example.com", KEY)
            .await
            .unwrap(),
        id
    );
    let keys = store.account_api_keys_of(id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].name, "bootstrap");
    assert_eq!(api.tenant_count(id).await, 1);

    // Nobody knows the machine account's password.
    let log_in = api
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"email": "ops@example.com", "password": ""})),
        )
        .await;
    assert_eq!(log_in.status, StatusCode::UNAUTHORIZED, "{}", log_in.json);
}

async fn an_existing_account_gets_the_key(api: Api) {
    let (account, session) = api.sign_up("ada@example.com").await;
    api.create_tenant(&session, "made by hand").await;
    let id = bootstrap_account(api.state.store(), "ada@example.com", KEY)
        .await
        .unwrap();
    assert_eq!(id, account);
    let listed = api.call(Method::GET, "/v1/tenants", Some(KEY), None).await;
    assert_eq!(listed.json[0]["name"], "made by hand", "{}", listed.json);
}

async fn weak_keys_bad_emails_and_another_accounts_key_are_refused(api: Api) {
    let store = api.state.store();
    for weak in [
        "aerie_acct_short",
        "aerie_0123456789abcdefABCDEF0123456789abcdef",
        "aerie_acct_0123456789abcdef-BCDEF0123456789abcdef",
        "",
    ] {
        let err = bootstrap_account(store, "ops@example.com", weak)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("must be aerie_acct_ followed by at least 32 random letters and digits"),
            "{weak}: {err}"
        );
    }
    let err = bootstrap_account(store, "not an email", KEY)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not an email address"), "{err}");

    bootstrap_account(store, "first@example.com", KEY)
        .await
        .unwrap();
    let err = bootstrap_account(store, "second@example.com", KEY)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("belongs to another account"),
        "{err}"
    );
    // The refused attempt made no account.
    assert!(
        store
            .account_by_email("second@example.com")
            .await
            .unwrap()
            .is_none()
    );
}
