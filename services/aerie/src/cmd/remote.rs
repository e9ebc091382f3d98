//! The HTTP client of `aerie token` and `aerie tenant --url`: one bearer
//! credential, JSON in and out, a problem+json answer becomes an error
//! carrying its `detail`.

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
        let base = Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            anyhow::bail!("--url {url:?} must be http://… or https://…");
        }
        let bearer = bearer
            .filter(|b| !b.is_empty())
            .with_context(|| format!("--url needs {flag}"))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("aerie-cli/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Remote {
            client,
            base,
            bearer: bearer.to_owned(),
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
        let mut request = self
            .client
            .request(method.clone(), url.clone())
            .bearer_auth(&self.bearer);
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
