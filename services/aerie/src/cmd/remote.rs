//! The HTTP client of `aerie token`, `aerie tenant` and `aerie account`
//! with `--url`: one bearer credential, JSON in and out, a problem+json
//! answer becomes an error carrying its `detail`.

use anyhow::Context;
use reqwest::{Method, Url};
use serde::Serialize;
use serde_json::Value;

pub struct Remote {
    client: reqwest::Client,
    base: Url,
    bearer: String,
}

impl Remote {
    /// A client of the control plane at `url` that authenticates with
    /// `bearer`; `flag` names where that credential comes from, for the
    /// error when it is missing.
    pub fn new(url: &str, bearer: Option<&str>, flag: &str) -> anyhow::Result<Remote> {
        let base = parse_base(url)?;
        let bearer = bearer
            .filter(|b| !b.is_empty())
            .with_context(|| format!("--url needs {flag}"))?;
        let mut remote = Remote::anonymous(base)?;
        remote.bearer = bearer.to_owned();
        Ok(remote)
    }

    /// A client of the control plane at `url` that logs in as `email` first
    /// (`POST /v1/sessions`) and then carries the session token.
    pub async fn log_in(url: &str, email: &str, password: &str) -> anyhow::Result<Remote> {
        let mut remote = Remote::anonymous(parse_base(url)?)?;
        let body = serde_json::json!({"email": email, "password": password});
        let session = remote
            .call(Method::POST, &["v1", "sessions"], Some(&body))
            .await?;
        remote.bearer = session["token"]
            .as_str()
            .context("the log-in answer has no token")?
            .to_owned();
        Ok(remote)
    }

    /// A client without a credential yet (`bearer` empty: no header sent).
    fn anonymous(base: Url) -> anyhow::Result<Remote> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("aerie-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Remote {
            client,
            base,
            bearer: String::new(),
        })
    }

    /// `method` on the path made of `segments` (each percent-encoded), with
    /// an optional JSON body. The answer's JSON, or `Value::Null` if empty.
    pub async fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> anyhow::Result<Value> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new")
            .pop_if_empty()
            .extend(segments);
        let mut request = self.client.request(method.clone(), url.clone());
        if !self.bearer.is_empty() {
            request = request.bearer_auth(&self.bearer);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the control plane at {}", self.base))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if !status.is_success() {
            let detail = json
                .as_ref()
                .and_then(|j| j["detail"].as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{method} {} answered {status}", url.path()));
            anyhow::bail!("{detail} (HTTP {})", status.as_u16());
        }
        match json {
            Some(v) => Ok(v),
            None if bytes.is_empty() => Ok(Value::Null),
            None => anyhow::bail!(
                "{method} {} answered something that is not JSON",
                url.path()
            ),
        }
    }
}

/// The control plane's base URL from --url: http or https only.
fn parse_base(url: &str) -> anyhow::Result<Url> {
    let base = Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
    if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
        anyhow::bail!("--url {url:?} must be http://… or https://…");
    }
    Ok(base)
}
