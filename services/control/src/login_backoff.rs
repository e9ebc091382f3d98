//! Per-email back-off after failed log-ins, which a stranger cannot turn
//! into a lock-out of the owner.
//!
//! - Only failed log-ins count. After [`BackoffPolicy::free_failures`] of them
//!   the email is backed off for `first_backoff`, doubling with each further
//!   failure up to `max_backoff`; failures are forgotten `forget_after` the
//!   last one.
//! - While backed off, only the addresses that failed for this email are
//!   refused (429). Any other address is checked as usual, so the owner's
//!   correct password from their own address still passes however many wrong
//!   ones strangers sent; a wrong one counts and backs off further. A success
//!   clears the failures of the address it came from, not the others'.
//! - Keys are the SHA-256 of the normalised email and the IP key (IPv6 /64)
//!   of [`crate::ratelimit`]: no email is kept, and an unknown email behaves
//!   exactly like a known one.
//! - Time is passed in (`now`), so tests move it by hand.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How many failures are free and how long the back-off lasts after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub free_failures: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub forget_after: Duration,
}

impl BackoffPolicy {
    /// 10 free failures, then 30 s doubling up to 15 min; forgotten an hour
    /// after the last failure.
    pub const DEFAULT: BackoffPolicy = BackoffPolicy {
        free_failures: 10,
        first_backoff: Duration::from_secs(30),
        max_backoff: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(60 * 60),
    };

    /// The default with `free_failures` changed; `None` if it is 0.
    pub fn with_free_failures(free_failures: u32) -> Option<BackoffPolicy> {
        (free_failures > 0).then_some(BackoffPolicy {
            free_failures,
            ..BackoffPolicy::DEFAULT
        })
    }

    /// The back-off after the `failures`-th failure (zero while free).
    fn backoff(&self, failures: u32) -> Duration {
        let Some(over) = failures.checked_sub(self.free_failures) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(over).unwrap_or(u32::MAX);
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// The addresses a record remembers; the oldest goes first beyond this, so a
/// record stays small whatever an attacker spreads its attempts over.
const MAX_FAILED_IPS: usize = 64;

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
    until: Instant,
    ips: VecDeque<IpAddr>,
}

/// The failed log-ins of recent emails.
#[derive(Debug)]
pub struct LoginBackoff {
    policy: BackoffPolicy,
    emails: Mutex<HashMap<[u8; 32], Failures>>,
}

impl LoginBackoff {
    pub fn new(policy: BackoffPolicy) -> LoginBackoff {
        LoginBackoff {
            policy,
            emails: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` if `email` is backed off and `ip` failed for it.
    pub fn admit(&self, ip: IpAddr, email: &[u8; 32], now: Instant) -> Result<(), Duration> {
        let emails = self.emails.lock();
        match emails.get(email) {
            Some(f) if f.until > now && self.is_recent(f, now) && f.ips.contains(&ip) => {
                Err(f.until - now)
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed log-in for `email` from `ip`.
    pub fn failed(&self, ip: IpAddr, email: &[u8; 32], now: Instant) {
        let mut emails = self.emails.lock();
        let f = emails.entry(*email).or_insert_with(|| Failures {
            count: 0,
            last: now,
            until: now,
            ips: VecDeque::new(),
        });
        if !self.is_recent(f, now) {
            f.count = 0;
            f.ips.clear();
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        f.until = now + self.policy.backoff(f.count);
        f.ips.retain(|seen| *seen != ip);
        if f.ips.len() == MAX_FAILED_IPS {
            f.ips.pop_front();
        }
        f.ips.push_back(ip);
    }

    /// A correct password from `ip`: that address is no longer held back
    /// (the others' failures still count).
    pub fn succeeded(&self, ip: IpAddr, email: &[u8; 32]) {
        let mut emails = self.emails.lock();
        if let Some(f) = emails.get_mut(email) {
            f.ips.retain(|seen| *seen != ip);
        }
    }

    /// Drops the emails whose failures are forgotten.
    pub fn purge(&self, now: Instant) {
        let mut emails = self.emails.lock();
        emails.retain(|_, f| self.is_recent(f, now));
        emails.shrink_to_fit();
    }

    /// Emails held.
    pub fn len(&self) -> usize {
        self.emails.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn is_recent(&self, f: &Failures, now: Instant) -> bool {
        now.saturating_duration_since(f.last) < self.policy.forget_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: [u8; 32] = [7; 32];
    const OTHER_EMAIL: [u8; 32] = [8; 32];

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn policy(free_failures: u32) -> BackoffPolicy {
        BackoffPolicy::with_free_failures(free_failures).unwrap()
    }

    #[test]
    fn free_failures_do_not_hold_anyone_back() {
        let b = LoginBackoff::new(policy(3));
        let t0 = Instant::now();
        for _ in 0..2 {
            b.failed(ip(1), &EMAIL, t0);
        }
        assert_eq!(b.admit(ip(1), &EMAIL, t0), Ok(()));
        b.failed(ip(1), &EMAIL, t0);
        assert_eq!(b.admit(ip(1), &EMAIL, t0), Err(Duration::from_secs(30)));
        assert_eq!(b.admit(ip(1), &OTHER_EMAIL, t0), Ok(()), "other emails");
    }

    #[test]
    fn a_backed_off_email_refuses_only_the_addresses_that_failed() {
        let b = LoginBackoff::new(policy(4));
        let t0 = Instant::now();
        for _ in 0..4 {
            b.failed(ip(66), &EMAIL, t0);
        }
        assert!(b.admit(ip(66), &EMAIL, t0).is_err());
        assert_eq!(b.admit(ip(1), &EMAIL, t0), Ok(()), "the owner's address");
        // A wrong password from a fresh address counts and holds it back too.
        b.failed(ip(2), &EMAIL, t0);
        assert_eq!(b.admit(ip(2), &EMAIL, t0), Err(Duration::from_secs(60)));
    }

    #[test]
    fn the_back_off_doubles_per_failure_up_to_its_cap_and_ends() {
        let b = LoginBackoff::new(policy(1));
        let mut now = Instant::now();
        let mut waits = vec![];
        for _ in 0..7 {
            b.failed(ip(9), &EMAIL, now);
            let wait = b.admit(ip(9), &EMAIL, now).unwrap_err();
            waits.push(wait.as_secs());
            now += wait;
            assert_eq!(b.admit(ip(9), &EMAIL, now), Ok(()), "passes once over");
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 900, 900]);
    }

    #[test]
    fn failures_are_forgotten_an_hour_after_the_last() {
        let b = LoginBackoff::new(policy(2));
        let t0 = Instant::now();
        b.failed(ip(9), &EMAIL, t0);
        let later = t0 + Duration::from_secs(3600);
        b.failed(ip(9), &EMAIL, later);
        assert_eq!(
            b.admit(ip(9), &EMAIL, later),
            Ok(()),
            "counted from 1 again"
        );
        b.purge(later + Duration::from_secs(3599));
        assert_eq!(b.len(), 1);
        b.purge(later + Duration::from_secs(3600));
        assert!(b.is_empty());
    }

    #[test]
    fn a_success_clears_only_its_own_address() {
        let b = LoginBackoff::new(policy(2));
        let t0 = Instant::now();
        b.failed(ip(1), &EMAIL, t0);
        b.failed(ip(66), &EMAIL, t0);
        assert!(b.admit(ip(1), &EMAIL, t0).is_err());
        b.succeeded(ip(1), &EMAIL);
        assert_eq!(b.admit(ip(1), &EMAIL, t0), Ok(()));
        assert!(
            b.admit(ip(66), &EMAIL, t0).is_err(),
            "the stranger stays held"
        );
    }

    #[test]
    fn a_record_remembers_a_bounded_number_of_addresses() {
        let b = LoginBackoff::new(policy(1));
        let t0 = Instant::now();
        for n in 0..=MAX_FAILED_IPS as u8 {
            b.failed(ip(n), &EMAIL, t0);
        }
        assert_eq!(b.admit(ip(0), &EMAIL, t0), Ok(()), "the oldest is dropped");
        assert!(b.admit(ip(MAX_FAILED_IPS as u8), &EMAIL, t0).is_err());
    }
}
