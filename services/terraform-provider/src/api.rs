//! The control plane's REST API v1 as the provider calls it: one bearer (an
//! account API key), JSON in and out, a problem+json answer as a [`Problem`].

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tf_provider::{AttributePath, Diagnostics};

use crate::diagnostics::error;

/// What the API answered instead of success (or why it could not be asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `None`: no answer at all (unreachable, timed out, not JSON).
    pub status: Option<StatusCode>,
    /// The problem's `detail`, or what went wrong on the way.
    pub detail: String,
}

impl Problem {
    pub fn is_not_found(&self) -> bool {
        self.status == Some(StatusCode::NOT_FOUND)
    }

    fn transport(detail: String) -> Problem {
        Problem {
            status: None,
            detail,
        }
    }
}

/// A configured client of one control plane. The token is never printed:
/// this type has no `Debug`.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: String,
}

impl Client {
    /// `endpoint`: the control plane's base URL (`http(s)://host:port`,
    /// without `/v1`). The error says what is wrong with it.
    pub fn new(endpoint: &str, token: &str) -> Result<Client, String> {
        let base = Url::parse(endpoint).map_err(|e| format!("not a URL ({e})"))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err("must be http://… or https://…".into());
        }
        if base.path().trim_end_matches('/').ends_with("/v1") {
            return Err("the control plane's base URL, without /v1".into());
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "terraform-provider-aerie/",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Client {
            http,
            base,
            token: token.to_owned(),
        })
    }

    /// `method` on the path made of `segments` (each percent-encoded), with
    /// an optional JSON body; the answer's JSON (`None` when empty, as a 204).
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Option<T>, Problem> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| Problem::transport("the endpoint cannot take a path".into()))?
            .pop_if_empty()
            .extend(segments);
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let path = format!("/{}", segments.join("/"));
        let response = request.send().await.map_err(|e| {
            Problem::transport(format!(
                "{method} {path}: cannot reach the control plane: {e}"
            ))
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Problem::transport(format!("{method} {path}: {e}")))?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|p| p["detail"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{method} {path} answered {status}"));
            return Err(Problem {
                status: Some(status),
                detail,
            });
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Problem::transport(format!("{method} {path} answered unexpected JSON: {e}"))
        })
    }
}

/// The client the provider block configures, shared with the resources
/// (Terraform configures the provider after it asked for their schemas).
#[derive(Clone, Default)]
pub struct Shared(Arc<OnceLock<Client>>);

impl Shared {
    pub fn set(&self, client: Client) {
        // Terraform configures a provider instance once.
        let _ = self.0.set(client);
    }

    pub fn get(&self) -> Option<&Client> {
        self.0.get()
    }

    /// The configured client, or an error saying the provider is not configured.
    pub fn configured(&self, diags: &mut Diagnostics) -> Option<&Client> {
        let client = self.get();
        if client.is_none() {
            error(
                diags,
                "the aerie provider is not configured",
                "Its `endpoint` or `token` was not known when Terraform configured it (they come \
                 from a resource not applied yet): what needs the API must wait for that resource.",
                AttributePath::root(),
            );
        }
        client
    }
}
