//! One contract for `ControlStore`, run against SQLite and a real Postgres.
//! Each scenario is a function taking a fresh store; `contract!` runs it twice.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use std::sync::Arc;

use aerie_control::plan::Limits;
use aerie_control::scopes::{Scope, Scopes};
use aerie_control::store::{
    self, Account, AccountApiKey, ApiKey, ControlStore, SessionRow, StoreError, Tenant, UsageRow,
};
use uuid::Uuid;

type Store = Arc<dyn ControlStore>;

macro_rules! contract {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let (_dir, url) = super::support::sqlite_url();
                    let store = aerie_control::store::open(&url).await.expect("open sqlite");
                    super::$scenario(store, &url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let url = super::support::postgres_url().await;
                    let store = aerie_control::store::open(&url).await.expect("open postgres");
                    super::$scenario(store, &url).await;
                }
            )*
        }
    };
}

contract!(
    ping_answers,
    reopening_applies_no_migration_twice,
    secret_is_stored_once_and_first_writer_wins,
    account_round_trips_and_email_is_unique,
    tenant_round_trips_with_limits_and_lists_by_owner_oldest_first,
    tenant_id_is_unique,
    rename_changes_only_the_name_and_unknown_tenant_is_false,
    names_with_sql_metacharacters_are_stored_verbatim,
    api_key_is_found_by_hash_until_revoked,
    revoking_needs_the_right_tenant_and_happens_once,
    deleting_a_tenant_deletes_its_api_keys,
    signing_keys_rotate_and_stay_published_until_the_window_ends,
    first_start_creates_one_sealed_signing_key,
    token_minted_before_rotation_verifies_after_it_and_new_ones_use_the_new_kid,
    issued_token_is_revoked_once_and_only_in_its_tenant,
    deleting_a_tenant_deletes_its_issued_tokens,
    revoked_tokens_are_listed_until_they_expire,
    tokens_of_lists_newest_first_with_revocations_and_only_the_tenants_own,
    a_token_is_found_by_jti_only_in_its_tenant_with_its_revocation,
    ten_tokens_revoked_at_once_are_all_revoked,
    api_keys_list_oldest_first_even_when_fractions_differ_in_length,
    limits_and_status_change_only_their_tenant,
    all_tenants_lists_every_account_oldest_first,
    reopening_reports_no_migration_applied,
    usage_adds_up_per_tenant_and_hour_and_lists_the_range_oldest_first,
    usage_hours_are_taken_to_the_start_of_their_utc_hour,
    a_usage_report_is_folded_once_per_stream_sequence,
    usage_reports_folded_at_once_through_two_stores_all_add_up,
    issuers_round_trip_list_oldest_first_and_are_unique_per_tenant,
    an_issuer_is_deleted_only_through_its_tenant,
    deleting_a_tenant_deletes_its_issuers,
    the_database_refuses_an_issuer_whose_kind_and_keys_disagree,
    api_key_scopes_and_creator_round_trip,
    revoking_a_key_revokes_the_keys_it_created_transitively,
    revoking_a_key_revokes_the_tokens_its_lineage_minted_and_removes_its_issuers,
    a_foreign_jti_is_revoked_only_in_its_tenant_until_the_given_time,
    account_api_key_is_found_by_hash_until_deleted_through_its_account,
    account_api_keys_list_per_account_oldest_first_and_hashes_are_unique,
    an_account_is_found_by_id,
    a_session_lives_until_deleted_and_a_new_one_purges_the_expired,
);

fn account(email: &str) -> Account {
    Account {
        id: Uuid::new_v4(),
        email: email.to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        created_at: store::now(),
    }
}

fn tenant(id: &str, owner: &Account, name: &str) -> Tenant {
    Tenant {
        id: id.to_owned(),
        account_id: owner.id,
        name: name.to_owned(),
        plan: "free".to_owned(),
        limits: Limits::FREE,
        status: "active".to_owned(),
        created_at: store::now(),
    }
}

fn api_key(tenant: &Tenant, name: &str) -> ApiKey {
    ApiKey {
        id: Uuid::new_v4(),
        tenant_id: tenant.id.clone(),
        name: name.to_owned(),
        created_at: store::now(),
        scopes: Scopes::all(),
        created_by: None,
    }
}

/// An account with one tenant, the common start of the later scenarios.
async fn owner_with_tenant(store: &Store, tid: &str) -> (Account, Tenant) {
    let a = account(&format!("{tid}@example.com"));
    store.insert_account(&a).await.unwrap();
    let t = tenant(tid, &a, "plant one");
    store.insert_tenant(&t).await.unwrap();
    (a, t)
}

async fn ping_answers(store: Store, _url: &str) {
    store.ping().await.unwrap();
}

async fn reopening_applies_no_migration_twice(store: Store, url: &str) {
    let (a, t) = owner_with_tenant(&store, "reopen0001").await;
    let again = store::open(url).await.expect("second open");
    assert_eq!(again.account_by_email(&a.email).await.unwrap(), Some(a));
    assert_eq!(again.tenant(&t.id).await.unwrap(), Some(t));
}

async fn secret_is_stored_once_and_first_writer_wins(store: Store, _url: &str) {
    let first = store.secret_or_insert("session", b"first").await.unwrap();
    assert_eq!(first, b"first");
    let second = store.secret_or_insert("session", b"second").await.unwrap();
    assert_eq!(second, b"first");
    let other = store.secret_or_insert("other", b"x").await.unwrap();
    assert_eq!(other, b"x");
}

async fn account_round_trips_and_email_is_unique(store: Store, _url: &str) {
    let a = account("ada@example.com");
    store.insert_account(&a).await.unwrap();
    assert_eq!(
        store.account_by_email("ada@example.com").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store.account_by_email("bob@example.com").await.unwrap(),
        None
    );
    let again = account("ada@example.com");
    assert!(matches!(
        store.insert_account(&again).await,
        Err(StoreError::Conflict)
    ));
}

async fn tenant_round_trips_with_limits_and_lists_by_owner_oldest_first(store: Store, _url: &str) {
    let (ada, first) = owner_with_tenant(&store, "aaaaaaaaa1").await;
    let mut custom = tenant("aaaaaaaaa2", &ada, "second");
    custom.limits.connections = 7;
    custom.limits.publish_rate_bytes = u64::from(u32::MAX) + 1;
    store.insert_tenant(&custom).await.unwrap();
    let (bob, bobs) = owner_with_tenant(&store, "bbbbbbbbb1").await;

    assert_eq!(
        store.tenant("aaaaaaaaa2").await.unwrap(),
        Some(custom.clone())
    );
    assert_eq!(store.tenant("nosuchthing").await.unwrap(), None);
    assert_eq!(store.tenants_of(ada.id).await.unwrap(), vec![first, custom]);
    assert_eq!(store.tenants_of(bob.id).await.unwrap(), vec![bobs]);
    assert_eq!(store.tenants_of(Uuid::new_v4()).await.unwrap(), vec![]);
}

async fn tenant_id_is_unique(store: Store, _url: &str) {
    let (a, _) = owner_with_tenant(&store, "sameid0001").await;
    let clash = tenant("sameid0001", &a, "clash");
    assert!(matches!(
        store.insert_tenant(&clash).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.tenants_of(a.id).await.unwrap().len(), 1);
}

async fn rename_changes_only_the_name_and_unknown_tenant_is_false(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "rename0001").await;
    assert!(store.rename_tenant(&t.id, "plant two").await.unwrap());
    let renamed = store.tenant(&t.id).await.unwrap().unwrap();
    assert_eq!(renamed.name, "plant two");
    assert_eq!(
        Tenant {
            name: t.name.clone(),
            ..renamed
        },
        t
    );
    assert!(!store.rename_tenant("nosuchthing", "x").await.unwrap());
}

async fn names_with_sql_metacharacters_are_stored_verbatim(store: Store, _url: &str) {
    let a = account("o'brien+test@example.com");
    store.insert_account(&a).await.unwrap();
    let name = r#"x'); DROP TABLE tenants; -- "quoted" \ % _ $1 ? ünï"#;
    let t = tenant("meta000001", &a, name);
    store.insert_tenant(&t).await.unwrap();
    assert_eq!(
        store.tenant("meta000001").await.unwrap().unwrap().name,
        name
    );
    assert_eq!(
        store
            .account_by_email("o'brien+test@example.com")
            .await
            .unwrap(),
        Some(a)
    );
    // A LIKE pattern or an injection in a lookup key matches nothing.
    assert_eq!(store.tenant("%").await.unwrap(), None);
    assert_eq!(store.tenant("' OR '1'='1").await.unwrap(), None);
}

async fn api_key_is_found_by_hash_until_revoked(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "keys000001").await;
    let k1 = api_key(&t, "ci");
    let k2 = api_key(&t, "backend");
    store.insert_api_key(&k1, &[1; 32]).await.unwrap();
    store.insert_api_key(&k2, &[2; 32]).await.unwrap();
    assert!(matches!(
        store.insert_api_key(&api_key(&t, "dup"), &[1; 32]).await,
        Err(StoreError::Conflict)
    ));

    assert_eq!(
        store.api_key_by_hash(&[1; 32]).await.unwrap(),
        Some(k1.clone())
    );
    assert_eq!(store.api_key_by_hash(&[3; 32]).await.unwrap(), None);
    assert_eq!(
        store.api_keys_of(&t.id).await.unwrap(),
        vec![k1.clone(), k2.clone()]
    );

    assert!(store.revoke_api_key(&t.id, k1.id).await.unwrap());
    assert_eq!(store.api_key_by_hash(&[1; 32]).await.unwrap(), None);
    assert_eq!(store.api_keys_of(&t.id).await.unwrap(), vec![k2]);
}

async fn revoking_needs_the_right_tenant_and_happens_once(store: Store, _url: &str) {
    let (_, mine) = owner_with_tenant(&store, "mine000001").await;
    let (_, theirs) = owner_with_tenant(&store, "them000001").await;
    let k = api_key(&mine, "ci");
    store.insert_api_key(&k, &[9; 32]).await.unwrap();
    assert!(!store.revoke_api_key(&theirs.id, k.id).await.unwrap());
    assert!(store.api_key_by_hash(&[9; 32]).await.unwrap().is_some());
    assert!(
        !store
            .revoke_api_key(&mine.id, Uuid::new_v4())
            .await
            .unwrap()
    );
    assert!(store.revoke_api_key(&mine.id, k.id).await.unwrap());
    assert!(!store.revoke_api_key(&mine.id, k.id).await.unwrap());
}

async fn deleting_a_tenant_deletes_its_api_keys(store: Store, _url: &str) {
    let (a, t) = owner_with_tenant(&store, "gone000001").await;
    store
        .insert_api_key(&api_key(&t, "ci"), &[5; 32])
        .await
        .unwrap();
    assert!(store.delete_tenant(&t.id).await.unwrap());
    assert_eq!(store.tenant(&t.id).await.unwrap(), None);
    assert_eq!(store.api_key_by_hash(&[5; 32]).await.unwrap(), None);
    assert_eq!(store.api_keys_of(&t.id).await.unwrap(), vec![]);
    assert_eq!(store.tenants_of(a.id).await.unwrap(), vec![]);
    assert!(!store.delete_tenant(&t.id).await.unwrap());
}

// ---- signing keys and tokens ----

use aerie_control::keys::{self, Kek};
use aerie_control::store::{IssuedToken, SigningKeyRow};

fn key_row(id: &str, at: time::OffsetDateTime) -> SigningKeyRow {
    SigningKeyRow {
        id: id.to_owned(),
        algorithm: "EdDSA".to_owned(),
        public_key: vec![1; 32],
        private_key: vec![2; 60],
        created_at: at,
        retired_at: None,
    }
}

async fn signing_keys_rotate_and_stay_published_until_the_window_ends(store: Store, _url: &str) {
    let t0 = store::now() - time::Duration::days(40);
    assert_eq!(store.active_signing_key().await.unwrap(), None);
    let k1 = key_row("k1", t0);
    store.insert_signing_key(&k1).await.unwrap();
    assert!(matches!(
        store.insert_signing_key(&k1).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.active_signing_key().await.unwrap(), Some(k1.clone()));

    let t1 = t0 + time::Duration::days(5);
    let k2 = key_row("k2", t1);
    store.rotate_signing_key(&k2).await.unwrap();
    assert_eq!(store.active_signing_key().await.unwrap(), Some(k2.clone()));
    let t2 = t1 + time::Duration::days(5);
    let k3 = key_row("k3", t2);
    store.rotate_signing_key(&k3).await.unwrap();

    let retired = |k: &SigningKeyRow, at| SigningKeyRow {
        retired_at: Some(at),
        ..k.clone()
    };
    // Everything retired after t0: all three, oldest first.
    assert_eq!(
        store.signing_keys_since(t0).await.unwrap(),
        vec![retired(&k1, t1), retired(&k2, t2), k3.clone()]
    );
    // k1 retired at t1: out of a window that starts at t1.
    assert_eq!(
        store.signing_keys_since(t1).await.unwrap(),
        vec![retired(&k2, t2), k3.clone()]
    );
    // The JWKS window is 30 days: k2 (retired 30 days ago) is out, k3 in.
    let published = keys::jwks(&*store, store::now()).await.unwrap();
    let kids: Vec<_> = published.keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["k3"]);
}

async fn first_start_creates_one_sealed_signing_key(store: Store, _url: &str) {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let kek = Kek::generate();
    let key = keys::active_signing_key(&*store, &kek).await.unwrap();
    let again = keys::active_signing_key(&*store, &kek).await.unwrap();
    assert_eq!(key.kid, again.kid, "an active key is reused");
    let row = store.active_signing_key().await.unwrap().unwrap();
    assert_eq!(row.id, key.kid);
    assert_eq!(row.public_key, key.public_key());
    assert_eq!(row.public_key.len(), 32);
    // The stored private key is not the PKCS#8 document: an Ed25519 PKCS#8
    // (v2) carries the public key and parses; the sealed bytes do neither.
    assert!(
        !row.private_key
            .windows(row.public_key.len())
            .any(|w| w == row.public_key.as_slice())
    );
    assert!(Ed25519KeyPair::from_pkcs8(&row.private_key).is_err());
    assert!(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&row.private_key).is_err());
    // Another secret key cannot open it.
    assert!(
        keys::active_signing_key(&*store, &Kek::generate())
            .await
            .is_err()
    );
    assert!(
        keys::rotate_signing_key(&*store, &Kek::generate())
            .await
            .is_err()
    );
}

async fn token_minted_before_rotation_verifies_after_it_and_new_ones_use_the_new_kid(
    store: Store,
    _url: &str,
) {
    let kek = Kek::generate();
    let iss = "http://control.test";
    let claims = |jti: &str| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        keys::Claims {
            iss: iss.to_owned(),
            aud: "mqtt".to_owned(),
            sub: "dev-1".to_owned(),
            tnt: "tnt0000001".to_owned(),
            iat: now,
            exp: now + 600,
            jti: jti.to_owned(),
            client_id: Some("dev-1".to_owned()),
            acl: None,
        }
    };
    let old_key = keys::active_signing_key(&*store, &kek).await.unwrap();
    let old_token = old_key.sign_jwt(&claims("j1"));

    let new_kid = keys::rotate_signing_key(&*store, &kek).await.unwrap();
    assert_ne!(new_kid, old_key.kid);
    let new_key = keys::active_signing_key(&*store, &kek).await.unwrap();
    assert_eq!(new_key.kid, new_kid);
    let new_token = new_key.sign_jwt(&claims("j2"));

    let jwks = serde_json::to_value(keys::jwks(&*store, store::now()).await.unwrap()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let old = support::verify_jwt(&old_token, &jwks, iss).expect("old token verifies");
    assert_eq!(old["jti"], "j1");
    let new = support::verify_jwt(&new_token, &jwks, iss).expect("new token verifies");
    assert_eq!(new["jti"], "j2");
    let header = jsonwebtoken::decode_header(&new_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    let header = jsonwebtoken::decode_header(&old_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(old_key.kid.as_str()));

    // A JWKS without the old key refuses the old token.
    let only_new = serde_json::json!({"keys": jwks["keys"].as_array().unwrap().iter()
        .filter(|k| k["kid"] == new_kid.as_str()).collect::<Vec<_>>()});
    assert!(support::verify_jwt(&old_token, &only_new, iss).is_err());
}

async fn issued_token_is_revoked_once_and_only_in_its_tenant(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "revoke0001").await;
    let (_, other) = owner_with_tenant(&store, "revoke0002").await;
    let now = store::now();
    let issued = IssuedToken {
        jti: "jti-1".to_owned(),
        tenant_id: t.id.clone(),
        subject: "dev-1".to_owned(),
        issued_at: now,
        expires_at: now + time::Duration::hours(1),
        minted_by: None,
    };
    store.insert_issued_token(&issued).await.unwrap();
    assert!(matches!(
        store.insert_issued_token(&issued).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.revoked_token(&t.id, "jti-1").await.unwrap(), None);
    assert!(
        !store
            .revoke_token(&other.id, "jti-1", now, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_token(&t.id, "unknown", now, None)
            .await
            .unwrap()
    );
    assert!(store.revoke_token(&t.id, "jti-1", now, None).await.unwrap());
    assert!(!store.revoke_token(&t.id, "jti-1", now, None).await.unwrap());
    let revoked = store.revoked_token(&t.id, "jti-1").await.unwrap().unwrap();
    assert_eq!(revoked.tenant_id, t.id);
    assert_eq!(revoked.expires_at, issued.expires_at);
    assert_eq!(revoked.revoked_at, now);
}

async fn revoked_tokens_are_listed_until_they_expire(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "revlist001").await;
    let now = store::now();
    for (jti, ttl) in [("jti-short", 10), ("jti-long", 3600), ("jti-kept", 3600)] {
        store
            .insert_issued_token(&IssuedToken {
                jti: jti.to_owned(),
                tenant_id: t.id.clone(),
                subject: "dev".to_owned(),
                issued_at: now,
                expires_at: now + time::Duration::seconds(ttl),
                minted_by: None,
            })
            .await
            .unwrap();
    }
    assert!(
        store
            .revoked_tokens_unexpired(now)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .revoke_token(&t.id, "jti-short", now, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke_token(&t.id, "jti-long", now, None)
            .await
            .unwrap()
    );
    let jtis = |rows: Vec<store::RevokedToken>| {
        let mut v: Vec<String> = rows.into_iter().map(|r| r.jti).collect();
        v.sort();
        v
    };
    assert_eq!(
        jtis(store.revoked_tokens_unexpired(now).await.unwrap()),
        ["jti-long", "jti-short"]
    );
    // Past its expiry a revoked token no longer needs refusing.
    let later = now + time::Duration::seconds(10);
    assert_eq!(
        jtis(store.revoked_tokens_unexpired(later).await.unwrap()),
        ["jti-long"]
    );
}

async fn tokens_of_lists_newest_first_with_revocations_and_only_the_tenants_own(
    store: Store,
    _url: &str,
) {
    let (_, t) = owner_with_tenant(&store, "toklist001").await;
    let (_, other) = owner_with_tenant(&store, "toklist002").await;
    let base = store::now().replace_nanosecond(0).unwrap();
    let ms = time::Duration::microseconds;
    // Fractions of different lengths within one second: as text, `…05Z`
    // sorts after `…05.53449Z` and `…05.5Z`; as times it is the oldest.
    for (tenant, jti, issued_at) in [
        (&t, "jti-old", base - time::Duration::hours(1)),
        (&t, "jti-whole", base),
        (&t, "jti-frac-long", base + ms(534_490)),
        (&t, "jti-frac-short", base + ms(500_000)),
        (&other, "jti-theirs", base + time::Duration::seconds(5)),
    ] {
        store
            .insert_issued_token(&IssuedToken {
                jti: jti.to_owned(),
                tenant_id: tenant.id.clone(),
                subject: format!("sub-{jti}"),
                issued_at,
                expires_at: issued_at + time::Duration::hours(2),
                minted_by: None,
            })
            .await
            .unwrap();
    }
    assert!(
        store
            .revoke_token(&t.id, "jti-whole", base, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke_token(&other.id, "jti-theirs", base, None)
            .await
            .unwrap()
    );
    let listed = store.tokens_of(&t.id, 200).await.unwrap();
    let summary: Vec<(&str, bool)> = listed.iter().map(|e| (e.jti.as_str(), e.revoked)).collect();
    assert_eq!(
        summary,
        [
            ("jti-frac-long", false),
            ("jti-frac-short", false),
            ("jti-whole", true),
            ("jti-old", false),
        ]
    );
    let whole = &listed[2];
    assert_eq!(whole.subject, "sub-jti-whole");
    assert_eq!(whole.issued_at, base);
    assert_eq!(whole.expires_at, base + time::Duration::hours(2));
    // The limit keeps the newest.
    let two: Vec<String> = store
        .tokens_of(&t.id, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.jti)
        .collect();
    assert_eq!(two, ["jti-frac-long", "jti-frac-short"]);
    assert!(store.tokens_of("nosuchten", 200).await.unwrap().is_empty());
}

async fn a_token_is_found_by_jti_only_in_its_tenant_with_its_revocation(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "tokbyjti01").await;
    let (_, other) = owner_with_tenant(&store, "tokbyjti02").await;
    let now = store::now().replace_nanosecond(0).unwrap();
    let issued = IssuedToken {
        jti: "jti-one".to_owned(),
        tenant_id: t.id.clone(),
        subject: "dev-1".to_owned(),
        issued_at: now,
        expires_at: now + time::Duration::hours(1),
        minted_by: None,
    };
    store.insert_issued_token(&issued).await.unwrap();
    let found = store.token(&t.id, "jti-one").await.unwrap().unwrap();
    assert_eq!(
        found,
        store::TokenEntry {
            jti: "jti-one".to_owned(),
            subject: "dev-1".to_owned(),
            issued_at: now,
            expires_at: now + time::Duration::hours(1),
            revoked: false,
        }
    );
    assert_eq!(store.token(&other.id, "jti-one").await.unwrap(), None);
    assert_eq!(store.token(&t.id, "jti-none").await.unwrap(), None);
    assert!(
        store
            .revoke_token(&t.id, "jti-one", now, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .token(&t.id, "jti-one")
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
}

/// Terraform destroys ten tokens at once: every revocation must take, none
/// may fail because another one is writing (SQLite answered "database is
/// locked" when a revocation read, then wrote, in one transaction).
async fn ten_tokens_revoked_at_once_are_all_revoked(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "revoketen1").await;
    let now = store::now();
    let jtis: Vec<String> = (0..10).map(|i| format!("jti-{i}")).collect();
    for jti in &jtis {
        let issued = IssuedToken {
            jti: jti.clone(),
            tenant_id: t.id.clone(),
            subject: "dev".to_owned(),
            issued_at: now,
            expires_at: now + time::Duration::hours(1),
            minted_by: None,
        };
        store.insert_issued_token(&issued).await.unwrap();
    }
    // All spawned before any is awaited: they run at once.
    let revocations: Vec<_> = jtis
        .iter()
        .map(|jti| {
            let (store, tid, jti) = (store.clone(), t.id.clone(), jti.clone());
            tokio::spawn(async move { store.revoke_token(&tid, &jti, now, None).await })
        })
        .collect();
    for (jti, revocation) in jtis.iter().zip(revocations) {
        let revoked = revocation.await.unwrap();
        assert!(revoked.as_ref().is_ok_and(|r| *r), "{jti}: {revoked:?}");
    }
    let listed = store.tokens_of(&t.id, 200).await.unwrap();
    assert!(listed.iter().all(|e| e.revoked), "{listed:?}");
}

async fn deleting_a_tenant_deletes_its_issued_tokens(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "deltok0001").await;
    let now = store::now();
    store
        .insert_issued_token(&IssuedToken {
            jti: "jti-d".to_owned(),
            tenant_id: t.id.clone(),
            subject: "dev".to_owned(),
            issued_at: now,
            expires_at: now + time::Duration::hours(1),
            minted_by: None,
        })
        .await
        .unwrap();
    assert!(store.delete_tenant(&t.id).await.unwrap());
    assert!(!store.revoke_token(&t.id, "jti-d", now, None).await.unwrap());
}

/// SQLite keeps times as text with as few fraction digits as needed
/// (`…14.53449Z` for .534490): a text sort puts .534492 first. Found by a
/// flaky run of `api_key_is_found_by_hash_until_revoked`.
async fn api_keys_list_oldest_first_even_when_fractions_differ_in_length(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "frac000001").await;
    let base = store::now().replace_microsecond(534_490).unwrap();
    let older = ApiKey {
        created_at: base,
        ..api_key(&t, "older")
    };
    let newer = ApiKey {
        created_at: base.replace_microsecond(534_492).unwrap(),
        ..api_key(&t, "newer")
    };
    store.insert_api_key(&newer, &[8; 32]).await.unwrap();
    store.insert_api_key(&older, &[9; 32]).await.unwrap();
    let names: Vec<String> = store
        .api_keys_of(&t.id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["older", "newer"]);
}

fn at(rfc3339: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap()
}

fn usage_row(tenant_id: &str, hour: time::OffsetDateTime, n: i64) -> UsageRow {
    UsageRow {
        tenant_id: tenant_id.to_owned(),
        hour,
        connection_seconds: 60 * n,
        messages_in: n,
        messages_out: 2 * n,
        bytes_in: 100 * n,
        bytes_out: 200 * n,
    }
}

async fn usage_adds_up_per_tenant_and_hour_and_lists_the_range_oldest_first(
    store: Store,
    _url: &str,
) {
    let h0 = at("2026-11-01T10:00:00Z");
    let h = |i: i64| h0 + time::Duration::hours(i);
    // Out of order, the same hour twice in one batch, another tenant's row.
    store
        .add_usage(&[
            usage_row("usagetena", h(2), 5),
            usage_row("usagetena", h(0), 1),
            usage_row("usagetena", h(0), 2),
            usage_row("usagetenb", h(0), 50),
        ])
        .await
        .unwrap();
    store
        .add_usage(&[
            usage_row("usagetena", h(2), 10),
            usage_row("usagetena", h(5), 7),
        ])
        .await
        .unwrap();
    store.add_usage(&[]).await.unwrap();
    let rows = store.usage("usagetena", h(0), h(6)).await.unwrap();
    assert_eq!(
        rows,
        [
            usage_row("usagetena", h(0), 3),
            usage_row("usagetena", h(2), 15),
            usage_row("usagetena", h(5), 7)
        ]
    );
    // `from` inclusive, `to` exclusive.
    let rows = store.usage("usagetena", h(2), h(5)).await.unwrap();
    assert_eq!(rows, [usage_row("usagetena", h(2), 15)]);
    assert_eq!(
        store.usage("usagetenb", h(0), h(6)).await.unwrap(),
        [usage_row("usagetenb", h(0), 50)]
    );
    assert_eq!(store.usage("nobody", h(0), h(6)).await.unwrap(), []);
}

async fn usage_hours_are_taken_to_the_start_of_their_utc_hour(store: Store, _url: &str) {
    let hour = at("2026-11-01T10:00:00Z");
    let within = at("2026-11-01T12:59:59.123456+02:00");
    store
        .add_usage(&[
            usage_row("usagetenc", hour, 1),
            usage_row("usagetenc", within, 2),
        ])
        .await
        .unwrap();
    let rows = store
        .usage("usagetenc", hour, hour + time::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(rows, [usage_row("usagetenc", hour, 3)]);
    assert_eq!(rows[0].hour.offset(), time::UtcOffset::UTC);
}

async fn a_usage_report_is_folded_once_per_stream_sequence(store: Store, _url: &str) {
    let hour = at("2026-11-01T10:00:00Z");
    let report = [usage_row("usagetend", hour, 4)];
    assert!(store.add_usage_report("gw", 7, &report).await.unwrap());
    // Delivered again (the folder died before acknowledging it), or an older one.
    assert!(!store.add_usage_report("gw", 7, &report).await.unwrap());
    assert!(!store.add_usage_report("gw", 3, &report).await.unwrap());
    // Later reports, and another stream's own numbering, add up.
    assert!(store.add_usage_report("gw", 8, &report).await.unwrap());
    assert!(store.add_usage_report("other", 1, &report).await.unwrap());
    let rows = store
        .usage("usagetend", hour, hour + time::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(rows, [usage_row("usagetend", hour, 12)]);
}

/// Two processes on one database (the server and a CLI on its data dir),
/// each with concurrent writers: every read-then-write transaction gets
/// through (SQLite: no "database is locked" from a deferred transaction
/// that meets another's write).
async fn usage_reports_folded_at_once_through_two_stores_all_add_up(store: Store, url: &str) {
    let other = aerie_control::store::open(url).await.unwrap();
    let hour = at("2026-11-01T11:00:00Z");
    let mut writers = tokio::task::JoinSet::new();
    for (i, s) in [store.clone(), other].into_iter().enumerate() {
        for k in 0..4 {
            let s = s.clone();
            writers.spawn(async move {
                let stream = format!("s{i}-{k}");
                for sequence in 1..=10 {
                    let rows = [usage_row("usagetene", hour, 1)];
                    s.add_usage_report(&stream, sequence, &rows).await.unwrap();
                }
            });
        }
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let rows = store
        .usage("usagetene", hour, hour + time::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(rows, [usage_row("usagetene", hour, 80)]);
}

// ---- tenant JWT issuers ----

use aerie_control::store::Issuer;

fn issuer(tenant: &Tenant, iss: &str, at: time::OffsetDateTime) -> Issuer {
    Issuer {
        id: Uuid::new_v4(),
        tenant_id: tenant.id.clone(),
        issuer: iss.to_owned(),
        kind: "jwks_url".to_owned(),
        jwks_url: Some("https://auth.example.com/jwks".to_owned()),
        jwks: None,
        public_key_pem: None,
        created_at: at,
        created_by: None,
    }
}

async fn issuers_round_trip_list_oldest_first_and_are_unique_per_tenant(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "iss0000001").await;
    let (_, other) = owner_with_tenant(&store, "iss0000002").await;
    let base = store::now().replace_microsecond(534_490).unwrap();
    let newer = Issuer {
        kind: "jwks".to_owned(),
        jwks_url: None,
        jwks: Some(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"abc"}]}"#.to_owned()),
        ..issuer(
            &t,
            "https://b.example/'; DROP TABLE issuers; --",
            base.replace_microsecond(534_492).unwrap(),
        )
    };
    let older = Issuer {
        kind: "public_key".to_owned(),
        jwks_url: None,
        public_key_pem: Some(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_owned(),
        ),
        ..issuer(&t, "https://a.example", base)
    };
    store.insert_issuer(&newer).await.unwrap();
    store.insert_issuer(&older).await.unwrap();
    assert_eq!(
        store.issuers_of(&t.id).await.unwrap(),
        vec![older.clone(), newer.clone()]
    );

    let taken = issuer(&t, "https://a.example", store::now());
    assert!(matches!(
        store.insert_issuer(&taken).await,
        Err(StoreError::Conflict)
    ));
    let elsewhere = issuer(&other, "https://a.example", store::now());
    store.insert_issuer(&elsewhere).await.unwrap();
    assert_eq!(
        store.issuers_of(&other.id).await.unwrap(),
        vec![elsewhere.clone()]
    );

    let mut all = vec![older, newer, elsewhere];
    all.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    assert_eq!(store.all_issuers().await.unwrap(), all);
}

async fn an_issuer_is_deleted_only_through_its_tenant(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "issdel0001").await;
    let (_, other) = owner_with_tenant(&store, "issdel0002").await;
    let i = issuer(&t, "https://a.example", store::now());
    store.insert_issuer(&i).await.unwrap();
    assert!(!store.delete_issuer(&other.id, i.id).await.unwrap());
    assert!(!store.delete_issuer(&t.id, Uuid::new_v4()).await.unwrap());
    assert_eq!(store.issuers_of(&t.id).await.unwrap(), vec![i.clone()]);
    assert!(store.delete_issuer(&t.id, i.id).await.unwrap());
    assert!(!store.delete_issuer(&t.id, i.id).await.unwrap());
    assert_eq!(store.all_issuers().await.unwrap(), vec![]);
}

async fn deleting_a_tenant_deletes_its_issuers(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "isscas0001").await;
    let (_, kept) = owner_with_tenant(&store, "isscas0002").await;
    store
        .insert_issuer(&issuer(&t, "https://a.example", store::now()))
        .await
        .unwrap();
    let survivor = issuer(&kept, "https://a.example", store::now());
    store.insert_issuer(&survivor).await.unwrap();
    assert!(store.delete_tenant(&t.id).await.unwrap());
    assert_eq!(store.issuers_of(&t.id).await.unwrap(), vec![]);
    assert_eq!(store.all_issuers().await.unwrap(), vec![survivor]);
}

async fn the_database_refuses_an_issuer_whose_kind_and_keys_disagree(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "isschk0001").await;
    let two_sources = Issuer {
        jwks: Some("{}".to_owned()),
        ..issuer(&t, "two", store::now())
    };
    let wrong_kind = Issuer {
        kind: "jwks".to_owned(),
        ..issuer(&t, "wrong", store::now())
    };
    let unknown_kind = Issuer {
        kind: "hmac".to_owned(),
        ..issuer(&t, "hmac", store::now())
    };
    for bad in [two_sources, wrong_kind, unknown_kind] {
        assert!(
            matches!(
                store.insert_issuer(&bad).await,
                Err(StoreError::Database(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(store.issuers_of(&t.id).await.unwrap(), vec![]);
}

async fn limits_and_status_change_only_their_tenant(store: Store, _url: &str) {
    let (owner, t) = owner_with_tenant(&store, "limits0001").await;
    let other = tenant("limits0002", &owner, "other");
    store.insert_tenant(&other).await.unwrap();
    let limits = Limits {
        connections: 7,
        retained_bytes: 1 << 40,
        inflight: u16::MAX,
        ..Limits::FREE
    };
    assert!(store.set_tenant_limits(&t.id, &limits).await.unwrap());
    assert!(store.set_tenant_status(&t.id, "suspended").await.unwrap());
    let got = store.tenant(&t.id).await.unwrap().unwrap();
    assert_eq!((got.limits, got.status.as_str()), (limits, "suspended"));
    let untouched = store.tenant(&other.id).await.unwrap().unwrap();
    assert_eq!(untouched, other);
    assert!(!store.set_tenant_limits("nosuchtnt", &limits).await.unwrap());
    assert!(
        !store
            .set_tenant_status("nosuchtnt", "active")
            .await
            .unwrap()
    );
}

async fn all_tenants_lists_every_account_oldest_first(store: Store, _url: &str) {
    assert!(store.all_tenants().await.unwrap().is_empty());
    let (a, first) = owner_with_tenant(&store, "all0000002").await;
    let b = account("b@example.com");
    store.insert_account(&b).await.unwrap();
    let second = Tenant {
        created_at: first.created_at + time::Duration::microseconds(1),
        ..tenant("all0000001", &b, "second")
    };
    store.insert_tenant(&second).await.unwrap();
    let ids: Vec<String> = store
        .all_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, [first.id, second.id]);
    assert_eq!(store.tenants_of(a.id).await.unwrap().len(), 1);
}

async fn reopening_reports_no_migration_applied(_store: Store, url: &str) {
    let (_, applied) = store::open_migrated(url).await.unwrap();
    assert_eq!(applied, []);
}

async fn api_key_scopes_and_creator_round_trip(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "scopes").await;
    let parent = api_key(&t, "parent");
    let child = ApiKey {
        scopes: [Scope::Tokens, Scope::Keys].into_iter().collect(),
        created_by: Some(parent.id),
        ..api_key(&t, "child")
    };
    let bare = ApiKey {
        scopes: Scopes::NONE,
        ..api_key(&t, "bare")
    };
    store.insert_api_key(&parent, &[1; 32]).await.unwrap();
    store.insert_api_key(&child, &[2; 32]).await.unwrap();
    store.insert_api_key(&bare, &[3; 32]).await.unwrap();
    assert_eq!(
        store.api_key_by_hash(&[2; 32]).await.unwrap(),
        Some(child.clone())
    );
    assert_eq!(
        store.api_key_by_hash(&[3; 32]).await.unwrap(),
        Some(bare.clone())
    );
    assert_eq!(
        store.api_keys_of(&t.id).await.unwrap(),
        vec![parent, child, bare]
    );
}

async fn revoking_a_key_revokes_the_keys_it_created_transitively(store: Store, _url: &str) {
    let (_, t) = owner_with_tenant(&store, "lineage").await;
    let root = api_key(&t, "root");
    let child = ApiKey {
        created_by: Some(root.id),
        ..api_key(&t, "child")
    };
    let grandchild = ApiKey {
        created_by: Some(child.id),
        ..api_key(&t, "grandchild")
    };
    let other = api_key(&t, "other");
    let others_child = ApiKey {
        created_by: Some(other.id),
        ..api_key(&t, "other's child")
    };
    for (n, k) in [&root, &child, &grandchild, &other, &others_child]
        .into_iter()
        .enumerate()
    {
        store.insert_api_key(k, &[n as u8; 32]).await.unwrap();
    }
    // Revoking the middle of the chain spares its creator.
    assert!(store.revoke_api_key(&t.id, child.id).await.unwrap());
    assert!(store.api_key_by_hash(&[0; 32]).await.unwrap().is_some());
    assert_eq!(store.api_key_by_hash(&[1; 32]).await.unwrap(), None);
    assert_eq!(store.api_key_by_hash(&[2; 32]).await.unwrap(), None);
    assert!(store.revoke_api_key(&t.id, root.id).await.unwrap());
    assert!(!store.revoke_api_key(&t.id, root.id).await.unwrap());
    assert_eq!(
        store.api_keys_of(&t.id).await.unwrap(),
        vec![other, others_child],
        "keys of another lineage live on"
    );
}

async fn revoking_a_key_revokes_the_tokens_its_lineage_minted_and_removes_its_issuers(
    store: Store,
    _url: &str,
) {
    let (_, t) = owner_with_tenant(&store, "lineage-tokens").await;
    let root = api_key(&t, "root");
    let child = ApiKey {
        created_by: Some(root.id),
        ..api_key(&t, "child")
    };
    let other = api_key(&t, "other");
    for (n, k) in [&root, &child, &other].into_iter().enumerate() {
        store.insert_api_key(k, &[n as u8; 32]).await.unwrap();
    }
    let now = store::now();
    let minted = |jti: &str, by: Option<Uuid>| IssuedToken {
        jti: jti.to_owned(),
        tenant_id: t.id.clone(),
        subject: "dev".to_owned(),
        issued_at: now,
        expires_at: now + time::Duration::hours(1),
        minted_by: by,
    };
    for token in [
        minted("by-root", Some(root.id)),
        minted("by-child", Some(child.id)),
        minted("by-other", Some(other.id)),
        minted("by-a-person", None),
    ] {
        store.insert_issued_token(&token).await.unwrap();
    }
    let registered = |iss: &str, by: Option<Uuid>| Issuer {
        created_by: by,
        ..issuer(&t, iss, now)
    };
    for i in [
        registered("https://root.example.com", Some(root.id)),
        registered("https://child.example.com", Some(child.id)),
        registered("https://other.example.com", Some(other.id)),
        registered("https://person.example.com", None),
    ] {
        store.insert_issuer(&i).await.unwrap();
    }

    assert!(store.revoke_api_key(&t.id, root.id).await.unwrap());
    for (jti, revoked) in [
        ("by-root", true),
        ("by-child", true),
        ("by-other", false),
        ("by-a-person", false),
    ] {
        let found = store.revoked_token(&t.id, jti).await.unwrap();
        assert_eq!(found.is_some(), revoked, "{jti}");
        if let Some(r) = found {
            assert_eq!(
                r.expires_at,
                now + time::Duration::hours(1),
                "until it expires"
            );
        }
    }
    let mut left: Vec<String> = store
        .issuers_of(&t.id)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.issuer)
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["https://other.example.com", "https://person.example.com"]
    );
    assert_eq!(
        store
            .tokens_of(&t.id, 10)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.revoked)
            .count(),
        2
    );
}

async fn a_foreign_jti_is_revoked_only_in_its_tenant_until_the_given_time(
    store: Store,
    _url: &str,
) {
    let (_, a) = owner_with_tenant(&store, "tenant-a").await;
    let (_, b) = owner_with_tenant(&store, "tenant-b").await;
    let now = store::now();
    let until = now + time::Duration::days(30);
    assert!(!store.revoke_token(&a.id, "idp-1", now, None).await.unwrap());
    assert!(
        store
            .revoke_token(&a.id, "idp-1", now, Some(until))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_token(&a.id, "idp-1", now, Some(until))
            .await
            .unwrap()
    );
    // The same jti in another tenant is another token.
    assert_eq!(store.revoked_token(&b.id, "idp-1").await.unwrap(), None);
    assert!(
        store
            .revoke_token(&b.id, "idp-1", now, Some(now + time::Duration::days(1)))
            .await
            .unwrap()
    );
    let revoked = store.revoked_token(&a.id, "idp-1").await.unwrap().unwrap();
    assert_eq!(
        (revoked.tenant_id.as_str(), revoked.expires_at),
        ("tenant-a", until)
    );
    let listed = store
        .revoked_tokens_unexpired(now + time::Duration::days(2))
        .await
        .unwrap();
    assert_eq!(listed, vec![revoked], "tenant-b's ended after a day");
}

// ---- migration 0005 on keys that existed before it ----

/// The migrations before API key scopes, then one key in that schema, then
/// 0005: the key must hold every scope and have no creator.
macro_rules! old_key_gets_every_scope {
    ($pool:ty, $dialect:literal, $url:expr) => {{
        let url = $url;
        let pool = <$pool>::connect(&url).await.unwrap();
        let before = [
            include_str!(concat!(
                "../../../migrations/",
                $dialect,
                "/0001_control.sql"
            )),
            include_str!(concat!(
                "../../../migrations/",
                $dialect,
                "/0002_tokens.sql"
            )),
            include_str!(concat!(
                "../../../migrations/",
                $dialect,
                "/0003_issuers.sql"
            )),
            include_str!(concat!("../../../migrations/", $dialect, "/0004_usage.sql")),
        ];
        for sql in before {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
        let a = account("old@example.com");
        let t = tenant("oldtenant1", &a, "old");
        sqlx::query(
            "INSERT INTO accounts (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(a.id)
        .bind(&a.email)
        .bind(&a.password_hash)
        .bind(a.created_at)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO tenants (id, account_id, name, plan, limits, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.id)
        .bind(a.id)
        .bind(&t.name)
        .bind(&t.plan)
        .bind(sqlx::types::Json(&t.limits))
        .bind(&t.status)
        .bind(t.created_at)
        .execute(&pool)
        .await
        .unwrap();
        let key_id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, name, key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key_id)
        .bind(&t.id)
        .bind("legacy")
        .bind(vec![4u8; 32])
        .bind(store::now())
        .execute(&pool)
        .await
        .unwrap();
        sqlx::raw_sql(include_str!(concat!(
            "../../../migrations/",
            $dialect,
            "/0005_api_key_scopes.sql"
        )))
        .execute(&pool)
        .await
        .unwrap();
        let (scopes, created_by): (String, Option<Uuid>) =
            sqlx::query_as("SELECT scopes, created_by FROM api_keys WHERE id = $1")
                .bind(key_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(Scopes::from(scopes), Scopes::all());
        assert_eq!(created_by, None);
    }};
}

#[tokio::test]
async fn sqlite_keys_made_before_scopes_keep_every_scope() {
    let (_dir, url) = support::sqlite_url();
    old_key_gets_every_scope!(sqlx::SqlitePool, "sqlite", url);
}

#[tokio::test]
async fn postgres_keys_made_before_scopes_keep_every_scope() {
    old_key_gets_every_scope!(sqlx::PgPool, "postgres", support::postgres_url().await);
}

async fn two_accounts(store: &Store) -> (Account, Account) {
    let ada = account("ada@example.com");
    let bob = account("bob@example.com");
    store.insert_account(&ada).await.unwrap();
    store.insert_account(&bob).await.unwrap();
    (ada, bob)
}

fn account_key(owner: &Account, name: &str, at: time::OffsetDateTime) -> AccountApiKey {
    AccountApiKey {
        id: Uuid::new_v4(),
        account_id: owner.id,
        name: name.to_owned(),
        created_at: at,
    }
}

async fn account_api_key_is_found_by_hash_until_deleted_through_its_account(
    store: Store,
    _url: &str,
) {
    let (ada, bob) = two_accounts(&store).await;
    let key = account_key(&ada, "terraform", store::now());
    store.insert_account_api_key(&key, &[7; 32]).await.unwrap();
    assert_eq!(
        store.account_api_key_by_hash(&[7; 32]).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(store.account_api_key_by_hash(&[8; 32]).await.unwrap(), None);
    // A tenant key's lookup never finds an account key, nor the reverse.
    assert_eq!(store.api_key_by_hash(&[7; 32]).await.unwrap(), None);

    // Only through its own account.
    assert!(!store.delete_account_api_key(bob.id, key.id).await.unwrap());
    assert!(
        store
            .account_api_key_by_hash(&[7; 32])
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.delete_account_api_key(ada.id, key.id).await.unwrap());
    assert_eq!(store.account_api_key_by_hash(&[7; 32]).await.unwrap(), None);
    assert!(!store.delete_account_api_key(ada.id, key.id).await.unwrap());
    assert_eq!(store.account_api_keys_of(ada.id).await.unwrap(), vec![]);
}

async fn account_api_keys_list_per_account_oldest_first_and_hashes_are_unique(
    store: Store,
    _url: &str,
) {
    let (ada, bob) = two_accounts(&store).await;
    // A whole second and one with a fraction: as SQLite's text, the later
    // sorts first ('.' < 'Z').
    let older = account_key(&ada, "older", at("2026-01-01T00:00:00Z"));
    let newer = account_key(&ada, "newer", at("2026-01-01T00:00:00.5Z"));
    let bobs = account_key(&bob, "bob's", store::now());
    store
        .insert_account_api_key(&newer, &[1; 32])
        .await
        .unwrap();
    store
        .insert_account_api_key(&older, &[2; 32])
        .await
        .unwrap();
    store.insert_account_api_key(&bobs, &[3; 32]).await.unwrap();
    assert_eq!(
        store.account_api_keys_of(ada.id).await.unwrap(),
        vec![older.clone(), newer.clone()]
    );
    assert_eq!(store.account_api_keys_of(bob.id).await.unwrap(), vec![bobs]);

    let same_hash = account_key(&bob, "copy", store::now());
    assert!(matches!(
        store.insert_account_api_key(&same_hash, &[1; 32]).await,
        Err(StoreError::Conflict)
    ));
    let same_id = AccountApiKey {
        name: "again".to_owned(),
        ..older.clone()
    };
    assert!(matches!(
        store.insert_account_api_key(&same_id, &[4; 32]).await,
        Err(StoreError::Conflict)
    ));
    // An account key of an account that does not exist is refused.
    let orphan = account_key(&account("nobody@example.com"), "orphan", store::now());
    assert!(
        store
            .insert_account_api_key(&orphan, &[5; 32])
            .await
            .is_err()
    );
}

async fn an_account_is_found_by_id(store: Store, _url: &str) {
    let a = account("ada@example.com");
    store.insert_account(&a).await.unwrap();
    assert_eq!(store.account_by_id(a.id).await.unwrap(), Some(a));
    assert_eq!(store.account_by_id(Uuid::new_v4()).await.unwrap(), None);
}

fn session_row(owner: &Account, expires_at: i64) -> SessionRow {
    SessionRow {
        id: Uuid::new_v4(),
        account_id: owner.id,
        created_at: store::now(),
        expires_at,
    }
}

async fn a_session_lives_until_deleted_and_a_new_one_purges_the_expired(store: Store, _url: &str) {
    let (ada, bob) = (account("ada@example.com"), account("bob@example.com"));
    store.insert_account(&ada).await.unwrap();
    store.insert_account(&bob).await.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let live = session_row(&ada, now + 3600);
    let other = session_row(&ada, now + 3600);
    let expired = session_row(&bob, now - 1);
    for s in [&live, &other, &expired] {
        store.insert_session(s, now - 10).await.unwrap();
    }
    assert_eq!(store.session(live.id).await.unwrap(), Some(live.clone()));
    assert_eq!(
        store.session(expired.id).await.unwrap(),
        Some(expired.clone())
    );
    // Ending one session leaves the account's others.
    assert!(store.delete_session(live.id).await.unwrap());
    assert!(!store.delete_session(live.id).await.unwrap());
    assert_eq!(store.session(live.id).await.unwrap(), None);
    assert_eq!(store.session(other.id).await.unwrap(), Some(other.clone()));
    // A new session purges those expired by its `now`, of any account.
    let next = session_row(&bob, now + 3600);
    store.insert_session(&next, now).await.unwrap();
    assert_eq!(store.session(expired.id).await.unwrap(), None);
    assert_eq!(store.session(other.id).await.unwrap(), Some(other));
    assert_eq!(store.session(next.id).await.unwrap(), Some(next));
}
