//! Rate limits on sign-up (`POST /v1/accounts`) and log-in (`POST /v1/sessions`):
//! keyed GCRA (`governor`) per client IP, and per email a back-off after failed
//! log-ins ([`crate::login_backoff`]) that a stranger cannot turn into a lock-out.
//!
//! - Both routes share one budget per client IP, so that alternating between
//!   them gains nothing; every attempt counts.
//! - Per email only failed log-ins count; the key is the SHA-256 of the
//!   normalised email, whether or not such an account exists: the answers
//!   (429 or not, and when) are the same for a known and an unknown email,
//!   and no email is kept in memory.
//! - The client IP is the TCP peer (`ConnectInfo<SocketAddr>`), never
//!   `X-Forwarded-For`, which any client can write. IPv6 peers are keyed by
//!   their /64 (one host usually has a whole /64), IPv4-mapped IPv6 as IPv4.
//!   Without `ConnectInfo` (a router driven in-process) every request shares
//!   one "unknown" key.
//! - Keys that are back to a full bucket are dropped every [`PURGE_EVERY`]
//!   checks (`retain_recent`), so memory stays bounded by the recent traffic.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::api::normalise_email;
use crate::error::ApiError;
use crate::login_backoff::{BackoffPolicy, LoginBackoff};

/// The Prometheus counter of refused requests, by `route` and `key` (`ip`, or
/// `account` for an email backed off after failed log-ins).
pub const RATE_LIMITED_TOTAL: &str = "aerie_control_rate_limited_total";

/// How many checks between two purges of idle keys.
pub const PURGE_EVERY: u64 = 256;

/// A sustained rate of `requests` per `period`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: NonZeroU32,
    pub period: Duration,
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// `requests` per minute, `burst` at once; `None` if either is 0.
    pub fn per_minute(requests: u32, burst: u32) -> Option<RateLimit> {
        Some(RateLimit {
            requests: NonZeroU32::new(requests)?,
            period: Duration::from_secs(60),
            burst: NonZeroU32::new(burst)?,
        })
    }

    /// Default per client IP: 20 a minute, 10 at once.
    pub const PER_IP: RateLimit = RateLimit {
        requests: NonZeroU32::new(20).unwrap(),
        period: Duration::from_secs(60),
        burst: NonZeroU32::new(10).unwrap(),
    };

    fn quota(self) -> Quota {
        let every = (self.period / self.requests.get()).max(Duration::from_nanos(1));
        Quota::with_period(every)
            .expect("a positive period")
            .allow_burst(self.burst)
    }
}

/// The routes that are limited, as the `route` label of [`RATE_LIMITED_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    SignUp,
    LogIn,
}

impl Route {
    fn label(self) -> &'static str {
        match self {
            Route::SignUp => "/v1/accounts",
            Route::LogIn => "/v1/sessions",
        }
    }
}

/// The TCP peer's address, if the server recorded it (`ConnectInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(ClientIp(peer.map(|ConnectInfo(addr)| addr.ip())))
    }
}

/// The key of a client IP: IPv4 as is, IPv6 by its /64, no address as `::`.
fn ip_key(ip: Option<IpAddr>) -> IpAddr {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => IpAddr::V4(v4),
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        None => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// The key of an account: SHA-256 of the normalised email (or, if it is not
/// an address, of the trimmed, lowercased text), so existence plays no part.
fn account_key(email: &str) -> [u8; 32] {
    let email = normalise_email(email).unwrap_or_else(|| email.trim().to_lowercase());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, email.as_bytes());
    digest.as_ref().try_into().expect("32 bytes")
}

/// The limiters of sign-up and log-in, shared by both routes.
pub struct AuthLimiter {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_email: LoginBackoff,
    checks: AtomicU64,
}

impl std::fmt::Debug for AuthLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLimiter")
            .field("ip_keys", &self.per_ip.len())
            .field("email_keys", &self.per_email.len())
            .finish()
    }
}

impl AuthLimiter {
    pub fn new(per_ip: RateLimit, per_email: BackoffPolicy) -> AuthLimiter {
        AuthLimiter {
            per_ip: RateLimiter::dashmap(per_ip.quota()),
            per_email: LoginBackoff::new(per_email),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one attempt on `route` from `ip` for the account `email`
    /// against the IP's budget; a log-in is then refused if `email` is backed
    /// off and `ip` failed for it. Refused: [`ApiError::RateLimited`],
    /// counted and logged (without the email).
    pub fn check(&self, route: Route, ip: Option<IpAddr>, email: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let refused = match self.per_ip.check_key(&ip_key(ip)) {
            Err(not_until) => Some(("ip", not_until.wait_time_from(self.per_ip.clock().now()))),
            Ok(()) if route == Route::LogIn => self
                .per_email
                .admit(ip_key(ip), &account_key(email), now)
                .err()
                .map(|wait| ("account", wait)),
            Ok(()) => None,
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            self.purge(now);
        }
        let Some((key, wait)) = refused else {
            return Ok(());
        };
        let retry_after_secs = whole_seconds(wait);
        metrics::counter!(RATE_LIMITED_TOTAL, "route" => route.label(), "key" => key).increment(1);
        tracing::debug!(
            route = route.label(),
            key,
            ip = ?ip,
            retry_after_secs,
            "rate limited"
        );
        Err(ApiError::RateLimited { retry_after_secs })
    }

    /// A wrong email or password: counts against the email's back-off.
    pub fn failed_log_in(&self, ip: Option<IpAddr>, email: &str) {
        self.per_email
            .failed(ip_key(ip), &account_key(email), Instant::now());
    }

    /// A correct password: this address is no longer held back for `email`.
    pub fn logged_in(&self, ip: Option<IpAddr>, email: &str) {
        self.per_email.succeeded(ip_key(ip), &account_key(email));
    }

    /// Drops the IP keys whose bucket is full again and the forgotten emails.
    fn purge(&self, now: Instant) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_email.purge(now);
    }

    /// Keys held (IP keys, email keys).
    pub fn len(&self) -> (usize, usize) {
        (self.per_ip.len(), self.per_email.len())
    }
}

/// Whole seconds until the next attempt may pass, rounded up (at least 1).
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> RateLimit {
        RateLimit {
            requests: NonZeroU32::new(1).unwrap(),
            period: Duration::from_millis(10),
            burst: NonZeroU32::new(1).unwrap(),
        }
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(Some(a)), ip_key(Some(b)));
        assert_ne!(ip_key(Some(a)), ip_key(Some(other)));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ip_key(Some(mapped)), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(ip_key(None), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }

    #[test]
    fn account_key_ignores_case_and_spaces() {
        assert_eq!(
            account_key(" Ada@Example.COM "),
            account_key("ada@example.com")
        );
        assert_ne!(
            account_key("ada@example.com"),
            account_key("bob@example.com")
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let limiter =
            AuthLimiter::new(RateLimit::per_minute(1, 1).unwrap(), BackoffPolicy::DEFAULT);
        let ip = Some("192.0.2.1".parse().unwrap());
        limiter.check(Route::LogIn, ip, "a@example.com").unwrap();
        match limiter.check(Route::LogIn, ip, "a@example.com") {
            Err(ApiError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 60),
            other => panic!("expected 429, got {other:?}"),
        }
    }

    #[test]
    fn idle_keys_are_purged_every_nth_check() {
        let limiter = AuthLimiter::new(tiny(), BackoffPolicy::DEFAULT);
        for i in 0..PURGE_EVERY - 1 {
            let ip = IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
            let _ = limiter.check(Route::SignUp, Some(ip), &format!("u{i}@example.com"));
        }
        assert_eq!(limiter.len(), (PURGE_EVERY as usize - 1, 0));
        std::thread::sleep(Duration::from_millis(30));
        let _ = limiter.check(Route::SignUp, None, "last@example.com");
        assert_eq!(limiter.len(), (1, 0), "only the newest keys are left");
    }

    #[test]
    fn only_failed_log_ins_count_for_an_email() {
        let generous = RateLimit::per_minute(1000, 1000).unwrap();
        let limiter = AuthLimiter::new(generous, BackoffPolicy::with_free_failures(2).unwrap());
        let ip = Some("192.0.2.1".parse().unwrap());
        for _ in 0..20 {
            limiter.check(Route::LogIn, ip, "a@example.com").unwrap();
            limiter.check(Route::SignUp, ip, "a@example.com").unwrap();
            limiter.logged_in(ip, "a@example.com");
        }
        limiter.failed_log_in(ip, "A@example.com ");
        limiter.check(Route::LogIn, ip, "a@example.com").unwrap();
        limiter.failed_log_in(ip, "a@example.com");
        match limiter.check(Route::LogIn, ip, "a@example.com") {
            Err(ApiError::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 30),
            other => panic!("expected 429, got {other:?}"),
        }
        // Sign-up is limited per IP only.
        limiter.check(Route::SignUp, ip, "a@example.com").unwrap();
    }
}
