//! `aerie tenant list | get | set-limits | suspend | resume`: the operator's
//! view of tenants. Locally on the database with the same code as the admin
//! routes (`aerie_control::api::admin`); with --url through `/v1/admin`
//! (admin token) or `/v1/tenants` (API key: `list` and `get`).

use aerie_control::api::admin::{self, LimitsPatch, STATUS_ACTIVE, STATUS_SUSPENDED};
use aerie_control::store::Tenant;
use anyhow::Context;
use reqwest::Method;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::remote::Remote;
use super::text;
use crate::cli::{TenantAdminArgs, TenantCommand, TenantIdArgs};

pub async fn run(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::List(args) => {
            let tenants = list(&args).await?;
            print(&args, &tenants, table)
        }
        TenantCommand::Get(args) => {
            let tenant = get(&args).await?;
            print(&args.admin, &tenant, details)
        }
        TenantCommand::SetLimits(args) => {
            let patch: LimitsPatch = serde_json::from_value(serde_json::to_value(&args.limits)?)?;
            if patch.is_empty() {
                anyhow::bail!("give at least one limit to change, e.g. --connections 500");
            }
            let tenant = change(&args.id, Change::Limits(Box::new(patch))).await?;
            print(&args.id.admin, &tenant, details)
        }
        TenantCommand::Suspend(args) => {
            let tenant = change(&args, Change::Status(STATUS_SUSPENDED)).await?;
            print(&args.admin, &tenant, details)
        }
        TenantCommand::Resume(args) => {
            let tenant = change(&args, Change::Status(STATUS_ACTIVE)).await?;
            print(&args.admin, &tenant, details)
        }
    }
}

/// The remote client: the admin token if given, else the API key.
fn remote(args: &TenantAdminArgs, url: &str) -> anyhow::Result<(Remote, bool)> {
    match &args.admin_token {
        Some(token) => Ok((Remote::new(url, Some(token), "--admin-token")?, true)),
        None => Ok((
            Remote::new(
                url,
                args.target.api_key.as_deref(),
                "--api-key or --admin-token",
            )?,
            false,
        )),
    }
}

async fn list(args: &TenantAdminArgs) -> anyhow::Result<Value> {
    match &args.target.url {
        Some(url) => {
            let (remote, admin) = remote(args, url)?;
            let path: &[&str] = match admin {
                true => &["v1", "admin", "tenants"],
                false => &["v1", "tenants"],
            };
            remote.call(Method::GET, path, None::<&()>).await
        }
        None => {
            let store = super::open_store(&args.target.db).await?;
            let tenants = store.all_tenants().await?;
            Ok(Value::Array(tenants.iter().map(tenant_json).collect()))
        }
    }
}

async fn get(args: &TenantIdArgs) -> anyhow::Result<Value> {
    let tid = &args.tenant;
    match &args.admin.target.url {
        Some(url) => {
            let (remote, admin) = remote(&args.admin, url)?;
            if !admin {
                return remote
                    .call(Method::GET, &["v1", "tenants", tid], None::<&()>)
                    .await;
            }
            let all = remote
                .call(Method::GET, &["v1", "admin", "tenants"], None::<&()>)
                .await?;
            all.as_array()
                .and_then(|a| a.iter().find(|t| t["id"] == **tid))
                .cloned()
                .with_context(|| format!("tenant {tid} not found"))
        }
        None => {
            let store = super::open_store(&args.admin.target.db).await?;
            let tenant = store
                .tenant(tid)
                .await?
                .with_context(|| format!("tenant {tid} not found"))?;
            Ok(tenant_json(&tenant))
        }
    }
}

/// What an operator changes about a tenant.
enum Change {
    /// Boxed: a patch is 15 optional limits.
    Limits(Box<LimitsPatch>),
    Status(&'static str),
}

/// Applies `change` to tenant `args.tenant`: on the database, or through
/// `PATCH …/limits` / `POST …/suspend|resume` of `/v1/admin/tenants/{tid}`.
async fn change(args: &TenantIdArgs, change: Change) -> anyhow::Result<Value> {
    let tid = args.tenant.as_str();
    match &args.admin.target.url {
        Some(url) => {
            let token = args.admin.admin_token.as_deref();
            let remote = Remote::new(url, token, "--admin-token (or AERIE_ADMIN_TOKEN)")?;
            match change {
                Change::Limits(patch) => {
                    let path = ["v1", "admin", "tenants", tid, "limits"];
                    remote.call(Method::PATCH, &path, Some(&patch)).await
                }
                Change::Status(status) => {
                    let action = if status == STATUS_SUSPENDED {
                        "suspend"
                    } else {
                        "resume"
                    };
                    let path = ["v1", "admin", "tenants", tid, action];
                    remote.call(Method::POST, &path, None::<&()>).await
                }
            }
        }
        None => {
            let store = super::open_store(&args.admin.target.db).await?;
            let tenant = match change {
                Change::Limits(patch) => admin::set_limits(&*store, tid, &patch).await?,
                Change::Status(status) => admin::set_status(&*store, tid, status).await?,
            };
            Ok(tenant_json(&tenant))
        }
    }
}

/// The tenant as the admin routes show it, less the endpoints (which only
/// the running server knows).
fn tenant_json(t: &Tenant) -> Value {
    json!({
        "id": t.id,
        "account_id": t.account_id,
        "name": t.name,
        "plan": t.plan,
        "limits": t.limits,
        "status": t.status,
        "created_at": t.created_at.format(&Rfc3339).unwrap_or_default(),
    })
}

fn print(
    args: &TenantAdminArgs,
    value: &Value,
    readable: fn(&Value) -> String,
) -> anyhow::Result<()> {
    if args.target.json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", readable(value));
    }
    Ok(())
}

/// One line per tenant under a header, columns aligned.
fn table(tenants: &Value) -> String {
    const COLUMNS: [&str; 6] = ["id", "name", "plan", "status", "connections", "created_at"];
    super::table(tenants, &COLUMNS, |t, c| match c {
        "connections" => text(&t["limits"][c]),
        _ => text(&t[c]),
    })
}

/// `key: value` lines, the limits indented under `limits:`.
fn details(tenant: &Value) -> String {
    let mut out = String::new();
    for key in ["id", "name", "plan", "status", "account_id", "created_at"] {
        if !tenant[key].is_null() {
            out += &format!("{key}: {}\n", text(&tenant[key]));
        }
    }
    if let Some(limits) = tenant["limits"].as_object() {
        out += "limits:\n";
        for (key, value) in limits {
            out += &format!("  {key}: {}\n", text(value));
        }
    }
    if let Some(endpoints) = tenant["endpoints"].as_object() {
        out += "endpoints:\n";
        for (key, value) in endpoints {
            out += &format!("  {key}: {}\n", text(value));
        }
    }
    out
}
