//! `aerie account api-key create | list | delete`: an account's API keys.
//! Locally on the database with the same code as the REST routes
//! (`aerie_control::api::account_keys`), the account named by --email; with
//! --url through `/v1/account/api-keys`, logged in as that account (or with
//! its session token): an API key cannot manage account keys.

use std::io::BufRead;
use std::sync::Arc;

use aerie_control::api::account_keys::{self, AccountApiKeyView};
use aerie_control::store::{Account, ControlStore};
use anyhow::Context;
use reqwest::Method;
use serde_json::json;

use super::remote::Remote;
use super::text;
use crate::cli::{AccountApiKeyCommand, AccountArgs};

const KEYS: [&str; 3] = ["v1", "account", "api-keys"];

pub async fn run(command: AccountApiKeyCommand) -> anyhow::Result<()> {
    match command {
        AccountApiKeyCommand::Create(args) => {
            let created = match Where::of(&args.account).await? {
                Where::Remote(remote) => {
                    let body = json!({"name": args.name});
                    remote.call(Method::POST, &KEYS, Some(&body)).await?
                }
                Where::Local(store, account) => {
                    let view = account_keys::create(&*store, account.id, &args.name).await?;
                    serde_json::to_value(view)?
                }
            };
            match args.account.json {
                true => println!("{}", serde_json::to_string_pretty(&created)?),
                false => println!("{}", text(&created["key"])),
            }
        }
        AccountApiKeyCommand::List(args) => {
            let keys = match Where::of(&args).await? {
                Where::Remote(remote) => remote.call(Method::GET, &KEYS, None::<&()>).await?,
                Where::Local(store, account) => {
                    let keys = store.account_api_keys_of(account.id).await?;
                    let views: Vec<AccountApiKeyView> = keys.into_iter().map(Into::into).collect();
                    serde_json::to_value(views)?
                }
            };
            match args.json {
                true => println!("{}", serde_json::to_string_pretty(&keys)?),
                false => print!(
                    "{}",
                    super::table(&keys, &["id", "name", "created_at"], |k, c| text(&k[c]))
                ),
            }
        }
        AccountApiKeyCommand::Delete(args) => {
            match Where::of(&args.account).await? {
                Where::Remote(remote) => {
                    let path = [KEYS.as_slice(), &[args.id.as_str()]].concat();
                    remote.call(Method::DELETE, &path, None::<&()>).await?;
                }
                Where::Local(store, account) => {
                    account_keys::delete(&*store, account.id, &args.id).await?;
                }
            }
            if args.account.json {
                println!("{}", json!({"deleted": args.id}));
            }
        }
    }
    Ok(())
}

/// Where the command acts: a control plane as the account, or the database
/// with the account.
enum Where {
    Remote(Remote),
    Local(Arc<dyn ControlStore>, Account),
}

impl Where {
    async fn of(args: &AccountArgs) -> anyhow::Result<Where> {
        match (&args.url, &args.session_token) {
            (Some(url), Some(token)) => Ok(Where::Remote(Remote::new(
                url,
                Some(token),
                "--session-token",
            )?)),
            (Some(url), None) => {
                let email = args.email.as_deref().context("--url needs --email")?;
                let password = password()?;
                Ok(Where::Remote(Remote::log_in(url, email, &password).await?))
            }
            (None, _) => {
                let email = args
                    .email
                    .as_deref()
                    .context("give the account's --email")?;
                let store = super::open_store(&args.db).await?;
                let normalised = aerie_control::api::normalise_email(email)
                    .with_context(|| format!("{email:?} is not an email address"))?;
                let account = store
                    .account_by_email(&normalised)
                    .await?
                    .with_context(|| format!("no account with the email {normalised}"))?;
                Ok(Where::Local(store, account))
            }
        }
    }
}

/// The account's password: AERIE_PASSWORD, else the first line of stdin
/// (never a flag, which other users could read in the process list).
fn password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("AERIE_PASSWORD") {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        anyhow::bail!("--url with --email needs the password in AERIE_PASSWORD or on stdin");
    }
    Ok(password)
}
