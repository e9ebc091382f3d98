//! The KV layout: one bucket, `<prefix>_facts`, one key per fact, the value
//! JSON (see the crate documentation for the keys). Both directions live
//! here: [`entries`] for the publisher, [`apply`] for the watcher.

use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use aerie_core::trace_context::TraceParent;

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

/// A value with the `traceparent` of the request that made the change, as
/// its last field: KV entries carry no headers through a watch, and a
/// reader that does not know the field ignores it.
#[derive(Serialize)]
struct Traced<'a, T> {
    #[serde(flatten)]
    fact: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
}

#[derive(Deserialize)]
struct TraceField {
    traceparent: Option<String>,
}

const TRACE_FIELD: &[u8] = b",\"traceparent\":\"";

fn traced<T: Serialize>(fact: &T, trace: Option<&TraceParent>) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&Traced {
        fact,
        traceparent: trace.map(TraceParent::as_str),
    })?)
}

/// `value` without the `traceparent` [`entries`] may have put last: the
/// fact itself, which is what decides whether it changed.
pub fn untraced(value: &[u8]) -> Vec<u8> {
    let Some(at) = value
        .windows(TRACE_FIELD.len())
        .rposition(|w| w == TRACE_FIELD)
    else {
        return value.to_vec();
    };
    let rest = &value[at + TRACE_FIELD.len()..];
    // Only a plain string then the object's end: a `traceparent` has no
    // quote or backslash of its own.
    let plain_end = rest.ends_with(b"\"}")
        && !rest[..rest.len() - 2]
            .iter()
            .any(|b| *b == b'"' || *b == b'\\');
    if !plain_end {
        return value.to_vec();
    }
    let mut fact = value[..at].to_vec();
    fact.push(b'}');
    fact
}

/// Keeps the trace `value` carries for `id` in `traces`, or forgets the old one.
fn keep_trace<K: std::hash::Hash + Eq>(
    traces: &mut std::collections::HashMap<K, TraceParent>,
    id: K,
    value: Option<&[u8]>,
) {
    let trace = value
        .and_then(|v| serde_json::from_slice::<TraceField>(v).ok())
        .and_then(|f| f.traceparent)
        .and_then(|t| TraceParent::parse(&t));
    match trace {
        Some(trace) => traces.insert(id, trace),
        None => traces.remove(&id),
    };
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
            traced(record, facts.traces.tenants.get(id))?,
        );
    }
    for ((tenant, iss), keys) in &facts.issuers {
        out.insert(
            format!("{TENANT_ISSUER}.{}.{}", token(tenant), token(iss)),
            serde_json::to_vec(keys)?,
        );
    }
    for ((tenant, jti), exp) in &facts.revoked {
        let trace = facts.traces.revoked.get(&(tenant.clone(), jti.clone()));
        out.insert(
            format!("{REVOKED}.{}.{}", token(tenant), token(jti)),
            traced(&Revocation { exp: *exp }, trace)?,
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
                    let record = serde_json::from_slice::<TenantRecord>(v)?;
                    facts.tenants.insert(id.clone(), record);
                }
                None => {
                    facts.tenants.remove(&id);
                }
            }
            keep_trace(&mut facts.traces.tenants, id, value);
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
                    facts.revoked.insert(id.clone(), r.exp);
                }
                None => {
                    facts.revoked.remove(&id);
                }
            }
            keep_trace(&mut facts.traces.revoked, id, value);
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
    fn a_changes_trace_rides_in_its_entry_and_is_no_change_itself() {
        let untraced_facts = sample();
        let mut facts = untraced_facts.clone();
        let trace =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        facts
            .traces
            .revoked
            .insert(("abc123".into(), "plain-jti".into()), trace.clone());
        facts.traces.tenants.insert("abc123".into(), trace.clone());
        let traced = entries(&facts).unwrap();
        let plain = entries(&untraced_facts).unwrap();
        for key in ["revoked.abc123.plain-jti", "tenant.abc123"] {
            let value = std::str::from_utf8(&traced[key]).unwrap();
            assert!(value.contains(trace.as_str()), "{value}");
            assert_eq!(untraced(&traced[key]), plain[key], "{value}");
        }
        assert_eq!(untraced(&plain["tenant.abc123"]), plain["tenant.abc123"]);
        let mut rebuilt = Facts::default();
        for (key, value) in &traced {
            apply(&mut rebuilt, key, Some(value)).unwrap();
        }
        assert_eq!(rebuilt, facts);
        // A later write without a trace forgets it; a bogus one is dropped.
        apply(&mut rebuilt, "tenant.abc123", Some(&plain["tenant.abc123"])).unwrap();
        assert!(rebuilt.traces.tenants.is_empty());
        let bogus = br#"{"exp":1,"traceparent":"a secret"}"#;
        apply(&mut rebuilt, "revoked.abc123.plain-jti", Some(bogus)).unwrap();
        assert!(rebuilt.traces.revoked.is_empty());
    }

    #[test]
    fn a_token_that_looks_encoded_is_encoded() {
        assert_eq!(untoken(&token("=x")).unwrap(), "=x");
        assert_ne!(token("=x"), "=x");
        assert_eq!(untoken(&token("")).unwrap(), "");
    }
}
