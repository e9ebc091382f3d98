//! [`Facts`]: everything a gateway needs from the control plane, as plain
//! data. Read from the control plane's store (`control.rs`), published to
//! KV and rebuilt from it (`layout.rs`), and turned into the gateway's
//! verification [`Directory`] in one place, whichever shape runs.

use std::collections::BTreeMap;

use aerie_control::plan::Limits;
use aerie_core::trace_context::ChangeTraces;
use aerie_gateway::auth::{Directory, TenantFacts, TenantIssuer, TenantLimits, TenantStatus};
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};

/// The control plane's facts, as of one read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The `iss` of the control plane's own tokens (`None` until known).
    pub issuer: Option<String>,
    /// The control plane's JWKS: the keys that verify its tokens.
    pub signing_keys: JwkSet,
    /// By tenant id; a tenant that is not here does not exist.
    pub tenants: BTreeMap<String, TenantRecord>,
    /// Tenants' own issuers with their public keys, by (tenant id, `iss`).
    pub issuers: BTreeMap<(String, String), IssuerKeys>,
    /// Revoked, not yet expired `jti`s by (tenant id, `jti`), with the
    /// token's expiry (unix seconds): once past it the revocation goes.
    pub revoked: BTreeMap<(String, String), i64>,
    /// The traces of the requests that made recent changes, which the
    /// gateways' kicks join (none when spans are not exported).
    pub traces: ChangeTraces,
}

/// A tenant's status and its plan limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub status: Status,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Suspended,
}

/// A tenant issuer's keys: a JWK set (registered as one, or fetched from
/// its JWKS URL by the control plane) or one SPKI PEM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuerKeys {
    Jwks(JwkSet),
    Pem(String),
}

impl Facts {
    /// The gateway's verification directory. An issuer whose keys do not
    /// load is skipped with a warning: one tenant's broken issuer must not
    /// stop everyone's directory.
    pub fn to_directory(&self) -> Directory {
        let mut directory = Directory::default();
        directory.add_jwks(&self.signing_keys);
        directory.traces = self.traces.clone();
        for (tenant, jti) in self.revoked.keys() {
            directory.revoke(tenant, jti);
        }
        directory.tenants = self
            .tenants
            .iter()
            .map(|(id, record)| (id.clone(), record.facts()))
            .collect();
        for ((tenant, iss), keys) in &self.issuers {
            let loaded = match keys {
                IssuerKeys::Jwks(set) => Ok(TenantIssuer::from_jwks(iss, set)),
                IssuerKeys::Pem(pem) => TenantIssuer::from_pem(iss, pem.as_bytes()),
            };
            match loaded {
                Ok(issuer) => directory
                    .issuers
                    .entry(tenant.clone())
                    .or_default()
                    .push(issuer),
                Err(e) => {
                    tracing::warn!(%tenant, issuer = %iss, error = %e, "skipping a tenant issuer")
                }
            }
        }
        directory
    }
}

impl TenantRecord {
    /// What the gateway enforces for this tenant.
    pub fn facts(&self) -> TenantFacts {
        TenantFacts {
            status: match self.status {
                Status::Active => TenantStatus::Active,
                Status::Suspended => TenantStatus::Suspended,
            },
            limits: tenant_limits(&self.limits),
        }
    }
}

/// The control plane's plan limits as the gateway enforces them.
pub fn tenant_limits(l: &Limits) -> TenantLimits {
    TenantLimits {
        connections: l.connections,
        connect_rate: l.connect_rate,
        publish_rate_msgs: l.publish_rate_msgs,
        publish_rate_bytes: l.publish_rate_bytes,
        client_publish_rate_msgs: l.client_publish_rate_msgs,
        client_publish_rate_bytes: l.client_publish_rate_bytes,
        max_packet_size: l.max_packet_size,
        subscriptions_per_client: l.subscriptions_per_client,
        retained_messages: l.retained_messages,
        retained_bytes: l.retained_bytes,
        session_expiry_max: l.session_expiry_max,
        queued_messages: l.queued_messages,
        inflight: l.inflight,
        message_log_max_age: l.message_log_max_age,
        message_log_max_bytes: l.message_log_max_bytes,
    }
}
