//! A deployment's first account API key, chosen by whoever starts the
//! server (`aerie serve --bootstrap-account`): a tool that starts the
//! control plane and then provisions through its API (Terraform's
//! infra/terraform/modules/aerie-host) has no person to sign up and make a
//! key in between. Idempotent: a restart with the same email and key
//! changes nothing.

use uuid::Uuid;

use crate::api::account_keys::MAX_ACCOUNT_API_KEYS;
use crate::api::normalise_email;
use crate::auth::{self, ACCOUNT_API_KEY_PREFIX};
use crate::store::{self, ControlStore, StoreError};

/// The key's name in the account's list.
pub const BOOTSTRAP_KEY_NAME: &str = "bootstrap";
/// As many random characters as a key the control plane makes itself.
const MIN_RANDOM_CHARS: usize = 32;

/// Makes sure `email` has an account (made without a usable password: it is
/// a machine's) holding the account API key `key`. Returns the account id.
/// A key that is not `aerie_acct_` and 32 or more letters and digits, or
/// that another account holds, is refused.
pub async fn bootstrap_account(
    store: &dyn ControlStore,
    email: &str,
    key: &str,
) -> anyhow::Result<Uuid> {
    let key = key.trim();
    let random = key.strip_prefix(ACCOUNT_API_KEY_PREFIX).unwrap_or_default();
    if random.len() < MIN_RANDOM_CHARS || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
        anyhow::bail!(
            "the bootstrap account key must be {ACCOUNT_API_KEY_PREFIX} followed by at least \
             {MIN_RANDOM_CHARS} random letters and digits"
        );
    }
    let email = normalise_email(email)
        .ok_or_else(|| anyhow::anyhow!("{email:?} is not an email address"))?;
    let existing = store.account_by_email(&email).await?;
    let hash = auth::api_key_hash(key);
    if let Some(held) = store.account_api_key_by_hash(&hash).await? {
        return match existing {
            Some(account) if held.account_id == account.id => Ok(account.id),
            _ => anyhow::bail!("the bootstrap account key belongs to another account"),
        };
    }
    let account = match existing {
        Some(account) => account,
        None => create_machine_account(store, email).await?,
    };
    if store.account_api_keys_of(account.id).await?.len() >= MAX_ACCOUNT_API_KEYS {
        anyhow::bail!("the bootstrap account holds {MAX_ACCOUNT_API_KEYS} API keys already");
    }
    let record = store::AccountApiKey {
        id: Uuid::new_v4(),
        account_id: account.id,
        name: BOOTSTRAP_KEY_NAME.to_owned(),
        created_at: store::now(),
    };
    store.insert_account_api_key(&record, &hash).await?;
    tracing::info!(account_id = %account.id, key_id = %record.id, "bootstrap account API key registered");
    Ok(account.id)
}

/// An account whose password nobody knows: 190 random bits, hashed as any
/// password, never shown.
async fn create_machine_account(
    store: &dyn ControlStore,
    email: String,
) -> anyhow::Result<store::Account> {
    let password = auth::new_account_api_key();
    let account = store::Account {
        id: Uuid::new_v4(),
        email,
        password_hash: auth::hash_password(password).await?,
        created_at: store::now(),
    };
    match store.insert_account(&account).await {
        // Made by a sign-up at the same moment: take that one.
        Err(StoreError::Conflict) => store
            .account_by_email(&account.email)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the bootstrap account vanished")),
        other => {
            other?;
            tracing::info!(account_id = %account.id, "bootstrap account created");
            Ok(account)
        }
    }
}
