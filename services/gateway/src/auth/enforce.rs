//! Control-plane decisions reaching live connections: every new directory
//! snapshot is checked against the registry, and a connection whose token
//! was revoked, whose tenant was suspended or deleted, or whose tenant
//! removed the issuer that signed it, is asked to close.
//! (Expiry is each connection's own deadline, served by the deadline wheel; see `connection::run_loop`.)

use std::sync::Arc;

use aerie_core::Kick;
use aerie_proto::ReasonCode;
use tokio_util::sync::CancellationToken;

use super::directory::{Directory, DirectoryCache, TenantStatus};
use crate::registry::Registry;

/// Connections closed because of a control-plane decision, by `why`.
pub const AUTH_DISCONNECTS_TOTAL: &str = "aerie_auth_disconnects_total";

pub const TOKEN_REVOKED: Kick = Kick {
    reason: ReasonCode::NOT_AUTHORIZED,
    why: "token_revoked",
};
pub const TENANT_SUSPENDED: Kick = Kick {
    reason: ReasonCode::ADMINISTRATIVE_ACTION,
    why: "tenant_suspended",
};
pub const TENANT_DELETED: Kick = Kick {
    reason: ReasonCode::ADMINISTRATIVE_ACTION,
    why: "tenant_deleted",
};
/// The tenant removed the issuer that signed the token.
pub const ISSUER_REMOVED: Kick = Kick {
    reason: ReasonCode::NOT_AUTHORIZED,
    why: "issuer_removed",
};
/// The token's `exp` passed without a v5 re-authentication.
pub const TOKEN_EXPIRED: Kick = Kick {
    reason: ReasonCode::MAXIMUM_CONNECT_TIME,
    why: "token_expired",
};

/// Applies `directory` to every authenticated connection in `registry`;
/// returns how many were asked to close. Anonymous connections have no
/// token and no tenant in the directory, and are left alone.
pub fn enforce(directory: &Directory, registry: &Registry) -> usize {
    let mut kicked = 0;
    for tenant in registry.tenants() {
        let tenant_kick = match directory.tenants.get(&*tenant).map(|f| f.status) {
            Some(TenantStatus::Active) => None,
            Some(TenantStatus::Suspended) => Some(TENANT_SUSPENDED),
            None => Some(TENANT_DELETED),
        };
        for live in registry.connections(&tenant) {
            let Some(credential) = live.credential() else {
                continue;
            };
            let issuer_gone = credential.tenant_issuer.as_ref().is_some_and(|iss| {
                !directory
                    .issuers
                    .get(&*tenant)
                    .is_some_and(|list| list.iter().any(|i| &i.issuer == iss))
            });
            let kick = tenant_kick
                .or_else(|| issuer_gone.then_some(ISSUER_REMOVED))
                .or_else(|| {
                    directory
                        .is_revoked(&tenant, &credential.jti)
                        .then_some(TOKEN_REVOKED)
                });
            if let Some(kick) = kick
                && live.kick(kick)
            {
                metrics::counter!(AUTH_DISCONNECTS_TOTAL, "why" => kick.why).increment(1);
                let traces = &directory.traces;
                let cause = match kick.why {
                    w if w == TOKEN_REVOKED.why => traces
                        .revoked
                        .get(&(tenant.to_string(), credential.jti.clone())),
                    w if w == TENANT_SUSPENDED.why => traces.tenants.get(&*tenant),
                    _ => None,
                };
                // One span per kick (rare), in the trace of the request
                // that caused it when the control plane sent one.
                let span = tracing::info_span!("gateway.kick", tenant = %live.tenant(), client_id = %live.client_id(), why = kick.why);
                if let Some(cause) = cause {
                    cause.adopt(&span);
                }
                span.in_scope(|| tracing::info!("disconnecting"));
                kicked += 1;
            }
        }
    }
    kicked
}

/// Runs [`enforce`] on every new snapshot of `cache` until `shutdown`.
pub fn spawn_enforcer(
    cache: &DirectoryCache,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut snapshots = cache.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
            let directory = snapshots.borrow_and_update().clone();
            enforce(&directory, &registry);
        }
    })
}
