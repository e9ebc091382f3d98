//! One contract for `ControlStore`, run against SQLite and a real Postgres.
//! Each scenario is a function taking a fresh store; `contract!` runs it twice.

mod support;

use std::sync::Arc;

use aerie_control::plan::Limits;
use aerie_control::store::{self, Account, ApiKey, ControlStore, StoreError, Tenant};
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
