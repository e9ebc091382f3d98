//! `aerie token mint | revoke`: locally with the same code as the REST
//! route (`aerie_control::api::mint`), or through `POST/DELETE
//! /v1/tenants/{tid}/tokens` with --url and an API key.

use aerie_control::api::{self, MintBody};
use reqwest::Method;

use super::remote::Remote;
use crate::cli::{TokenMintArgs, TokenRevokeArgs};

/// The `sub` of a token minted locally without --client-id.
const LOCAL_SUBJECT: &str = "operator";

pub async fn mint(args: TokenMintArgs) -> anyhow::Result<()> {
    let nonempty = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let body = MintBody {
        client_id: args.client_id,
        publish: nonempty(args.publish),
        subscribe: nonempty(args.subscribe),
        ttl_seconds: args.ttl,
    };
    let target = &args.target;
    let minted = match &target.url {
        Some(url) => {
            let remote = Remote::new(url, target.api_key.as_deref(), "--api-key")?;
            let answer = remote
                .call(
                    Method::POST,
                    &["v1", "tenants", &args.tenant, "tokens"],
                    Some(&body),
                )
                .await?;
            serde_json::from_value(answer)?
        }
        None => {
            let secret_key = super::existing_secret_key(&target.db, &args.secret)?;
            let store = super::open_store(&target.db).await?;
            if store.tenant(&args.tenant).await?.is_none() {
                anyhow::bail!("tenant {} not found", args.tenant);
            }
            api::mint(
                &*store,
                &args.issuer,
                &secret_key,
                &args.tenant,
                body,
                LOCAL_SUBJECT.to_owned(),
                None,
            )
            .await?
        }
    };
    if target.json {
        println!("{}", serde_json::to_string_pretty(&minted)?);
    } else {
        println!("{}", minted.token);
    }
    Ok(())
}

pub async fn revoke(args: TokenRevokeArgs) -> anyhow::Result<()> {
    let target = &args.target;
    match &target.url {
        Some(url) => {
            let remote = Remote::new(url, target.api_key.as_deref(), "--api-key")?;
            remote
                .call(
                    Method::DELETE,
                    &["v1", "tenants", &args.tenant, "tokens", &args.jti],
                    None::<&()>,
                )
                .await?;
        }
        None => {
            let store = super::open_store(&target.db).await?;
            api::revoke(&*store, &args.tenant, &args.jti).await?;
        }
    }
    if target.json {
        println!("{}", serde_json::json!({"revoked": args.jti}));
    } else {
        println!("revoked {}", args.jti);
    }
    Ok(())
}
