//! Account sessions: a signed token naming a row of the store's `sessions`
//! table, and the CSRF token bound to it.
//!
//! The signature turns forgeries away without a lookup; the row is what makes
//! a session revocable: logging out deletes it, and the token (in a bearer
//! header or in the console's cookie) stops working at once.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::store::{SessionRow, StoreResult};

/// Name of the session signing secret in the store's `server_secrets`.
pub const SESSION_SECRET: &str = "session-hmac-sha256";
/// `s2`: the claims name a session row (`sid`); `s1` tokens had none and
/// could not be revoked, so they are no longer accepted.
const SESSION_VERSION: &str = "s2";
/// What a CSRF token signs, apart from session tokens (which start with
/// [`SESSION_VERSION`]): one can never be taken for the other.
const CSRF_DOMAIN: &str = "csrf.";

#[derive(Serialize, Deserialize)]
struct SessionClaims {
    sub: Uuid,
    sid: Uuid,
    iat: i64,
    exp: i64,
}

/// What a token whose signature holds says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    pub account: Uuid,
    pub session: Uuid,
    pub expires_at: i64,
}

/// Signs and verifies account session tokens,
/// `s2.<base64url(JSON claims)>.<base64url(HMAC-SHA256 of what precedes)>`,
/// and the CSRF tokens bound to them.
pub struct SessionKeys {
    key: hmac::Key,
    ttl: time::Duration,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    pub fn new(secret: &[u8], ttl: time::Duration) -> Self {
        SessionKeys {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ttl,
        }
    }

    /// How long a session lasts.
    pub fn ttl(&self) -> time::Duration {
        self.ttl
    }

    /// A token for `account`'s session `sid`, valid from `now` for the
    /// configured lifetime.
    pub fn issue(&self, account: Uuid, sid: Uuid, now: OffsetDateTime) -> String {
        let claims = SessionClaims {
            sub: account,
            sid,
            iat: now.unix_timestamp(),
            exp: (now + self.ttl).unix_timestamp(),
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialize");
        let signed = format!("{SESSION_VERSION}.{}", URL_SAFE_NO_PAD.encode(payload));
        let tag = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The claims of a token whose signature holds and which has not expired
    /// at `now` (the store still decides whether its session is live).
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Option<Signed> {
        let (signed, tag) = token.rsplit_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.key, signed.as_bytes(), &tag).ok()?;
        let payload = signed.strip_prefix(SESSION_VERSION)?.strip_prefix('.')?;
        let claims: SessionClaims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (now.unix_timestamp() < claims.exp).then_some(Signed {
            account: claims.sub,
            session: claims.sid,
            expires_at: claims.exp,
        })
    }

    /// The CSRF token of session `sid`: derived, not stored, so it lives and
    /// dies with the session.
    pub fn csrf_token(&self, sid: Uuid) -> String {
        let tag = hmac::sign(&self.key, csrf_message(sid).as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Whether `given` is session `sid`'s CSRF token (compared in constant time).
    pub fn csrf_matches(&self, sid: Uuid, given: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(given)
            .is_ok_and(|tag| hmac::verify(&self.key, csrf_message(sid).as_bytes(), &tag).is_ok())
    }
}

fn csrf_message(sid: Uuid) -> String {
    format!("{CSRF_DOMAIN}{sid}")
}

/// A session just started: what sign-up and log-in answer.
#[derive(Debug, Clone)]
pub struct Started {
    pub id: Uuid,
    pub token: String,
    pub csrf_token: String,
    pub expires_at: OffsetDateTime,
}

/// A session a request carries, live in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub account: Uuid,
    pub id: Uuid,
    pub expires_at: i64,
}

/// Starts a session for `account` at `now`: stores its row, signs its token.
pub async fn start(state: &AppState, account: Uuid, now: OffsetDateTime) -> StoreResult<Started> {
    let keys = state.sessions();
    let id = Uuid::new_v4();
    let token = keys.issue(account, id, now);
    // Whole seconds, as the token and the row keep it.
    let expires_at = OffsetDateTime::from_unix_timestamp((now + keys.ttl()).unix_timestamp())
        .unwrap_or(now + keys.ttl());
    let row = SessionRow {
        id,
        account_id: account,
        created_at: crate::store::now(),
        expires_at: expires_at.unix_timestamp(),
    };
    state
        .store()
        .insert_session(&row, OffsetDateTime::now_utc().unix_timestamp())
        .await?;
    Ok(Started {
        id,
        token,
        csrf_token: keys.csrf_token(id),
        expires_at,
    })
}

/// The live session `token` names at `now`: signed, unexpired, and not
/// ended (its row is still in the store, for the same account).
pub async fn live(state: &AppState, token: &str, now: OffsetDateTime) -> StoreResult<Option<Live>> {
    let Some(signed) = state.sessions().verify(token, now) else {
        return Ok(None);
    };
    let row = state.store().session(signed.session).await?;
    Ok(row
        .filter(|r| r.account_id == signed.account && now.unix_timestamp() < r.expires_at)
        .map(|r| Live {
            account: r.account_id,
            id: r.id,
            expires_at: r.expires_at,
        }))
}

/// Ends session `id` (log out): `false` if it had ended already.
pub async fn end(state: &AppState, id: Uuid) -> StoreResult<bool> {
    state.store().delete_session(id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        SessionKeys::new(
            b"0123456789abcdef0123456789abcdef",
            time::Duration::hours(1),
        )
    }

    #[test]
    fn session_token_round_trips_until_it_expires() {
        let now = OffsetDateTime::now_utc();
        let (account, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let token = keys().issue(account, sid, now);
        let signed = keys().verify(&token, now).unwrap();
        assert_eq!((signed.account, signed.session), (account, sid));
        assert!(
            keys()
                .verify(&token, now + time::Duration::minutes(59))
                .is_some()
        );
        assert_eq!(keys().verify(&token, now + time::Duration::hours(1)), None);
    }

    #[test]
    fn session_token_with_changed_claims_or_other_key_is_refused() {
        let now = OffsetDateTime::now_utc();
        let token = keys().issue(Uuid::new_v4(), Uuid::new_v4(), now);
        let other = SessionKeys::new(b"another secret", time::Duration::hours(1));
        assert_eq!(other.verify(&token, now), None);
        let (_, tag) = token.rsplit_once('.').unwrap();
        let forged_claims = format!(
            r#"{{"sub":"{}","sid":"{}","iat":0,"exp":9999999999}}"#,
            Uuid::new_v4(),
            Uuid::new_v4()
        );
        let forged = format!("s2.{}.{tag}", URL_SAFE_NO_PAD.encode(forged_claims));
        assert_eq!(keys().verify(&forged, now), None);
        assert_eq!(keys().verify("s2.e30", now), None);
        assert_eq!(keys().verify("", now), None);
    }

    #[test]
    fn csrf_token_belongs_to_its_session_only_and_is_no_session_token() {
        let (sid, other) = (Uuid::new_v4(), Uuid::new_v4());
        let csrf = keys().csrf_token(sid);
        assert!(keys().csrf_matches(sid, &csrf));
        assert!(!keys().csrf_matches(other, &csrf));
        assert!(!keys().csrf_matches(sid, ""));
        assert!(!keys().csrf_matches(sid, "not base64!"));
        let now = OffsetDateTime::now_utc();
        assert_eq!(keys().verify(&csrf, now), None);
        let token = keys().issue(Uuid::new_v4(), sid, now);
        assert!(!keys().csrf_matches(sid, &token));
    }
}
