//! Deleted tenants leave nothing behind: a tenant the directory no longer
//! has is removed from the broker (sessions, queues, retained messages, and
//! their records in the store) once its last connection is gone. The
//! enforcer closes those connections on the same snapshot; the reaper looks
//! again every second until they are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aerie_core::Broker;
use tokio_util::sync::CancellationToken;

use crate::auth::{Directory, DirectoryCache};
use crate::registry::Registry;

/// Tenants removed from the broker because the control plane deleted them.
pub const TENANTS_REMOVED_TOTAL: &str = "aerie_tenants_removed_total";

/// How often the reaper looks again while a deleted tenant still has connections.
const RECHECK: Duration = Duration::from_secs(1);

/// Removes from `broker` every tenant `directory` does not know, except the
/// anonymous one (never in the directory), once `registry` has no
/// connection of it. A tenant whose core was made after the directory's
/// load started (`as_of`: an HTTP publish to a tenant created a moment
/// ago) is left for a later snapshot to decide. Returns the ids removed.
pub fn reap(
    directory: &Directory,
    as_of: Instant,
    broker: &Broker,
    registry: &Registry,
    anonymous_tenant: &str,
) -> Vec<Arc<str>> {
    let mut removed = Vec::new();
    for tenant in broker.tenants() {
        let id = &tenant.id;
        if &**id == anonymous_tenant
            || directory.tenants.contains_key(&**id)
            || tenant.created_at() >= as_of
            || registry.count(id) > 0
        {
            continue;
        }
        if broker.remove_tenant(id) {
            metrics::counter!(TENANTS_REMOVED_TOTAL).increment(1);
            tracing::info!(tenant = %id, "deleted tenant removed: sessions, queues and retained messages forgotten");
            removed.push(id.clone());
        }
    }
    removed
}

pub fn spawn_reaper(
    cache: Arc<DirectoryCache>,
    broker: Broker,
    registry: Arc<Registry>,
    anonymous_tenant: String,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut snapshots = cache.subscribe();
    tokio::spawn(async move {
        loop {
            let directory = snapshots.borrow_and_update().clone();
            reap(
                &directory,
                cache.as_of(),
                &broker,
                &registry,
                &anonymous_tenant,
            );
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(RECHECK) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    })
}
