//! The KV layout: one bucket, `<prefix>_facts`, one key per fact, the value
//! JSON (see the crate documentation for the keys). Both directions live
//! here: [`entries`] for the publisher, [`apply`] for the watcher.

use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::model::{Facts, IssuerKeys, TenantRecord};

const ISSUER: &str = "control.issuer";
const SIGNING_KEYS: &str = "control.jwks";
const TENANT: &str = "tenant";
const TENANT_ISSUER: &str = "issuer";
const REVOKED: &str = "revoked";

/// The bucket of the facts for bucket prefix `prefix`.
pub fn bucket(prefix: &str) -> String {
    format!("{prefix}_facts")
}

/// Whether `prefix` makes a valid bucket name (letters, digits, `_`, `-`).
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Serialize, Deserialize)]
struct Revocation {
    /// The token's expiry, unix seconds.
    exp: i64,
}

/// One key token for any string: kept as it is when it is made of
/// `[A-Za-z0-9_-]` (tenant ids are), else `=` and its base64url, since KV
/// keys allow few characters (an `iss` is a URL) and `.` splits tokens.
fn token(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        s.to_owned()
    } else {
        format!("={}", URL_SAFE_NO_PAD.encode(s))
    }
}

fn untoken(t: &str) -> anyhow::Result<String> {
    match t.strip_prefix('=') {
        Some(encoded) => String::from_utf8(URL_SAFE_NO_PAD.decode(encoded)?)
            .context("a key token that is not UTF-8"),
        None => Ok(t.to_owned()),
    }
}

/// Every fact as (key, JSON value), in key order.
pub fn entries(facts: &Facts) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    if let Some(issuer) = &facts.issuer {
        out.insert(ISSUER.to_owned(), serde_json::to_vec(issuer)?);
    }
    out.insert(
        SIGNING_KEYS.to_owned(),
        serde_json::to_vec(&facts.signing_keys)?,
    );
    for (id, record) in &facts.tenants {
        out.insert(
            format!("{TENANT}.{}", token(id)),
            serde_json::to_vec(record)?,
        );
    }
    for ((tenant, iss), keys) in &facts.issuers {
        out.insert(
            format!("{TENANT_ISSUER}.{}.{}", token(tenant), token(iss)),
            serde_json::to_vec(keys)?,
        );
    }
    for ((tenant, jti), exp) in &facts.revoked {
        out.insert(
            format!("{REVOKED}.{}.{}", token(tenant), token(jti)),
            serde_json::to_vec(&Revocation { exp: *exp })?,
        );
    }
    Ok(out)
}

/// Applies one KV entry to `facts`: `Some(value)` a put, `None` a delete.
/// A key of a kind this version does not know is ignored (a newer control
/// plane may publish more).
pub fn apply(facts: &mut Facts, key: &str, value: Option<&[u8]>) -> anyhow::Result<()> {
    let mut parts = key.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        _ if key == ISSUER => {
            facts.issuer = value.map(serde_json::from_slice).transpose()?;
        }
        _ if key == SIGNING_KEYS => {
            facts.signing_keys = match value {
                Some(v) => serde_json::from_slice(v)?,
                None => Default::default(),
            };
        }
        (Some(TENANT), Some(id), None, None) => {
            let id = untoken(id)?;
            match value {
                Some(v) => {
                    facts
                        .tenants
                        .insert(id, serde_json::from_slice::<TenantRecord>(v)?);
                }
                None => {
                    facts.tenants.remove(&id);
                }
            }
        }
        (Some(TENANT_ISSUER), Some(tenant), Some(iss), None) => {
            let id = (untoken(tenant)?, untoken(iss)?);
            match value {
                Some(v) => {
                    facts
                        .issuers
                        .insert(id, serde_json::from_slice::<IssuerKeys>(v)?);
                }
                None => {
                    facts.issuers.remove(&id);
                }
            }
        }
        (Some(REVOKED), Some(tenant), Some(jti), None) => {
            let id = (untoken(tenant)?, untoken(jti)?);
            match value {
                Some(v) => {
                    let r: Revocation = serde_json::from_slice(v)?;
                    facts.revoked.insert(id, r.exp);
                }
                None => {
                    facts.revoked.remove(&id);
                }
            }
        }
        _ => tracing::debug!(key, "ignoring a facts key of an unknown kind"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;
    use aerie_control::plan::Limits;

    fn sample() -> Facts {
        let mut f = Facts {
            issuer: Some("https://aerie.example/".into()),
            ..Facts::default()
        };
        f.signing_keys = serde_json::from_str(
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}]}"#,
        )
        .unwrap();
        f.tenants.insert(
            "abc123".into(),
            TenantRecord {
                status: Status::Suspended,
                limits: Limits::FREE,
            },
        );
        f.issuers.insert(
            ("abc123".into(), "https://idp.example/a.b?c=d".into()),
            IssuerKeys::Pem("-----BEGIN PUBLIC KEY-----".into()),
        );
        // A jti chosen by a tenant's issuer may hold anything.
        f.revoked
            .insert(("abc123".into(), "j.t/i =é".into()), 1_900_000_000);
        f.revoked.insert(("abc123".into(), "plain-jti".into()), 1);
        f
    }

    #[test]
    fn every_fact_survives_the_round_trip_through_kv_keys() {
        let facts = sample();
        let entries = entries(&facts).unwrap();
        let mut rebuilt = Facts::default();
        for (key, value) in &entries {
            // What NATS KV accepts as a key.
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=./".contains(&b)),
                "{key}"
            );
            apply(&mut rebuilt, key, Some(value)).unwrap();
        }
        assert_eq!(rebuilt, facts);
        assert!(entries.contains_key("tenant.abc123"));
        assert!(entries.contains_key("revoked.abc123.plain-jti"));
    }

    #[test]
    fn a_delete_removes_the_fact_and_unknown_kinds_are_ignored() {
        let facts = sample();
        let mut rebuilt = facts.clone();
        let entries = entries(&facts).unwrap();
        for key in entries.keys().filter(|k| k.starts_with("revoked.")) {
            apply(&mut rebuilt, key, None).unwrap();
        }
        apply(&mut rebuilt, "tenant.abc123", None).unwrap();
        apply(&mut rebuilt, "webhook.abc123", Some(b"{}")).unwrap();
        assert!(rebuilt.revoked.is_empty());
        assert!(rebuilt.tenants.is_empty());
        assert_eq!(rebuilt.issuers, facts.issuers);
    }

    #[test]
    fn an_entry_that_does_not_parse_is_an_error_and_changes_nothing() {
        let facts = sample();
        let mut after = facts.clone();
        assert!(apply(&mut after, "tenant.abc123", Some(b"{\"status\":\"gone\"}")).is_err());
        assert!(apply(&mut after, "revoked.abc123.=%%%", Some(b"{\"exp\":1}")).is_err());
        assert!(apply(&mut after, "control.jwks", Some(b"[]")).is_err());
        assert_eq!(after, facts);
    }

    #[test]
    fn a_token_that_looks_encoded_is_encoded() {
        assert_eq!(untoken(&token("=x")).unwrap(), "=x");
        assert_ne!(token("=x"), "=x");
        assert_eq!(untoken(&token("")).unwrap(), "");
    }
}
