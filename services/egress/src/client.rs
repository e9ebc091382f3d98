//! One outbound request: checked destination, timeout, no redirects, and a
//! body read chunk by chunk under a byte cap.

use std::error::Error as _;
use std::net::IpAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{StatusCode, Url};

use crate::policy::DestinationPolicy;
use crate::resolver::{GuardedResolver, Refused};

/// Outbound requests by `purpose` (`jwks`, ...) and `outcome` (`ok`,
/// `refused`, `timeout`, `too_large`, `redirect`, `status`, `connect_error`,
/// `invalid_url`, `error`): both bounded sets, never a tenant or a URL.
pub const OUTBOUND_REQUESTS_TOTAL: &str = "aerie_outbound_requests_total";

/// The bounds of one call.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For the whole call: connecting, the answer and its body.
    pub timeout: Duration,
    /// The body is refused past this many bytes (it is never read further).
    pub max_body_bytes: usize,
}

/// Why an outbound call gave nothing usable. The messages name no URL (it
/// may carry a tenant's credentials in its query).
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("not an http(s) URL with a host")]
    InvalidUrl,
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("answered with a redirect ({0}), which is not followed")]
    Redirect(StatusCode),
    #[error("answered with status {0}")]
    Status(StatusCode),
    #[error("the body is larger than {limit} bytes (stopped after {read})")]
    TooLarge { limit: usize, read: usize },
    #[error("{0}")]
    Other(String),
}

impl EgressError {
    /// The `outcome` label of [`OUTBOUND_REQUESTS_TOTAL`].
    pub fn outcome(&self) -> &'static str {
        match self {
            EgressError::InvalidUrl => "invalid_url",
            EgressError::Refused(_) => "refused",
            EgressError::Timeout(_) => "timeout",
            EgressError::Connect(_) => "connect_error",
            EgressError::Redirect(_) => "redirect",
            EgressError::Status(_) => "status",
            EgressError::TooLarge { .. } => "too_large",
            EgressError::Other(_) => "error",
        }
    }
}

/// The outbound HTTP client; cheap to clone.
#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
    policy: DestinationPolicy,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Egress {
    pub fn new(policy: DestinationPolicy) -> Egress {
        let client = reqwest::Client::builder()
            .dns_resolver(GuardedResolver { policy })
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would connect for us, past the resolver.
            .no_proxy()
            // No idle connections: every request connects, so every request
            // resolves and is judged again.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("aerie/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        Egress { client, policy }
    }

    pub fn policy(&self) -> DestinationPolicy {
        self.policy
    }

    /// GETs `url` for `purpose` (a metric label: a constant, never a tenant
    /// or a URL); the body, if the answer is a 2xx within `limits`.
    pub async fn get(
        &self,
        purpose: &'static str,
        url: &str,
        limits: Limits,
    ) -> Result<Bytes, EgressError> {
        let result =
            match tokio::time::timeout(limits.timeout, self.get_unbounded(url, limits)).await {
                Ok(result) => result,
                Err(_) => Err(EgressError::Timeout(limits.timeout)),
            };
        let outcome = result.as_ref().map_or_else(EgressError::outcome, |_| "ok");
        metrics::counter!(OUTBOUND_REQUESTS_TOTAL, "purpose" => purpose, "outcome" => outcome)
            .increment(1);
        if let Err(e) = &result {
            tracing::debug!(purpose, outcome, error = %e, "outbound request failed");
        }
        result
    }

    async fn get_unbounded(&self, url: &str, limits: Limits) -> Result<Bytes, EgressError> {
        let url = self.checked_url(url)?;
        let mut response = self
            .client
            .get(url)
            .timeout(limits.timeout)
            .send()
            .await
            .map_err(|e| classify(e, limits.timeout))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(EgressError::Redirect(status));
        }
        if !status.is_success() {
            return Err(EgressError::Status(status));
        }
        let limit = limits.max_body_bytes;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(EgressError::TooLarge { limit, read: 0 });
        }
        // Chunk by chunk: an endless body stops here, not in memory.
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| classify(e, limits.timeout))?
        {
            if body.len() + chunk.len() > limit {
                return Err(EgressError::TooLarge {
                    limit,
                    read: body.len() + chunk.len(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// An http(s) URL whose host, if an IP literal, is allowed: a literal
    /// never reaches the resolver, so it is judged here.
    fn checked_url(&self, url: &str) -> Result<Url, EgressError> {
        let url = Url::parse(url).map_err(|_| EgressError::InvalidUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::InvalidUrl);
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(url::Host::Domain(_)) => return Ok(url),
            None => return Err(EgressError::InvalidUrl),
        };
        self.policy
            .check(ip)
            .map_err(|why| EgressError::Refused(Refused { ip, why }))?;
        Ok(url)
    }
}

/// A reqwest error as an [`EgressError`], without the URL.
fn classify(e: reqwest::Error, timeout: Duration) -> EgressError {
    // The resolver's refusal arrives wrapped in the connector's errors.
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return EgressError::Refused(*refused);
        }
        source = s.source();
    }
    if e.is_timeout() {
        return EgressError::Timeout(timeout);
    }
    let e = e.without_url();
    if e.is_connect() {
        return EgressError::Connect(error_chain(&e));
    }
    EgressError::Other(error_chain(&e))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
