//! The tenancy column: Aerie with JWT authentication on and 100 tenants
//! sharing it. Before the scenarios run, the bench signs up over the REST
//! API, creates the tenants, lifts their limits (admin token) so the plan
//! does not throttle the load, and mints one token per tenant. The measured
//! clients all belong to the first tenant; every other tenant keeps one
//! client subscribed to the same topic names, which must never receive
//! anything from it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Tenants in the tenancy column.
pub const TENANTS: usize = 100;

/// Limits high enough that no scenario meets them (the admin API's maxima).
pub fn unlimited() -> Value {
    const GIB: u64 = 1024 * 1024 * 1024;
    json!({
        "connections": 10_000_000,
        "publish_rate_msgs": 10_000_000,
        "publish_rate_bytes": 10 * GIB,
        "client_publish_rate_msgs": 10_000_000,
        "client_publish_rate_bytes": 10 * GIB,
        "connect_rate": 1_000_000,
        "max_packet_size": 268_435_455,
        "subscriptions_per_client": 100_000,
        "retained_messages": 100_000_000,
        "retained_bytes": 1024 * GIB,
        "session_expiry_max": u32::MAX,
        "queued_messages": 10_000_000,
        "inflight": 65_535,
    })
}

/// What `provision` made.
pub struct Provisioned {
    /// A token of each tenant, valid for a day.
    pub tokens: Vec<String>,
    /// A token of the first tenant valid for the shortest TTL the API
    /// allows (60 s): expired from a minute on (the soak's bad tokens).
    pub expiring: String,
}

/// Creates `n` tenants on the control plane at `http`; mints their tokens.
pub async fn provision(
    http: SocketAddr,
    admin_token: &str,
    n: usize,
) -> anyhow::Result<Provisioned> {
    let api = Api {
        base: format!("http://{http}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
    };
    let account = api
        .call(
            "POST",
            "/v1/accounts",
            None,
            json!({"email": "bench@example.com", "password": "bench password 123"}),
        )
        .await?;
    let session = account["token"]
        .as_str()
        .context("no session token")?
        .to_owned();
    let mut tokens = Vec::with_capacity(n);
    let mut expiring = None;
    for i in 0..n {
        let tenant = api
            .call(
                "POST",
                "/v1/tenants",
                Some(&session),
                json!({"name": format!("bench-{i}")}),
            )
            .await?;
        let tid = tenant["id"].as_str().context("no tenant id")?;
        api.call(
            "PATCH",
            &format!("/v1/admin/tenants/{tid}/limits"),
            Some(admin_token),
            unlimited(),
        )
        .await?;
        let (api, session) = (&api, &session);
        let mint = |ttl_seconds: u32| async move {
            let path = format!("/v1/tenants/{tid}/tokens");
            let body = json!({ "ttl_seconds": ttl_seconds });
            let minted = api.call("POST", &path, Some(session), body).await?;
            anyhow::Ok(minted["token"].as_str().context("no token")?.to_owned())
        };
        tokens.push(mint(86_400).await?);
        if expiring.is_none() {
            expiring = Some(mint(60).await?);
        }
    }
    Ok(Provisioned {
        tokens,
        expiring: expiring.context("no tenants")?,
    })
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| path.to_owned())?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("{path}: {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
