//! Deleted tenants leave nothing behind: a tenant the directory no longer
//! has is removed from the broker (sessions, queues, retained messages, and
//! their records in the store) once its last connection is gone. The
//! enforcer closes those connections on the same snapshot; the reaper looks
//! again every second until they are.

use std::collections::HashSet;
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

/// Which tenants the reaper may take for deleted: those a snapshot of this
/// process showed and a later one no longer does. A tenant the directory has
/// never shown is left alone, whatever it holds: data loaded from the store
/// that the control plane does not know (a different database given with
/// the same data dir) is a mistake to report, not a deletion to carry out.
#[derive(Default)]
pub struct Reaper {
    /// Tenants some snapshot has shown, while a snapshot or the broker
    /// still has them.
    seen: HashSet<String>,
    /// Tenants already reported as unknown, so they are logged once.
    reported: HashSet<Arc<str>>,
}

impl Reaper {
    /// Removes from `broker` every tenant `directory` no longer has, except
    /// the anonymous one (never in the directory), once `registry` has no
    /// connection of it. A tenant whose core was made after the directory's
    /// load started (`as_of`: an HTTP publish to a tenant created a moment
    /// ago) is left for a later snapshot to decide. Returns the ids removed.
    pub fn reap(
        &mut self,
        directory: &Directory,
        as_of: Instant,
        broker: &Broker,
        registry: &Registry,
        anonymous_tenant: &str,
    ) -> Vec<Arc<str>> {
        for id in directory.tenants.keys() {
            if !self.seen.contains(id) {
                self.seen.insert(id.clone());
            }
        }
        let mut removed = Vec::new();
        for tenant in broker.tenants() {
            let id = &tenant.id;
            if &**id == anonymous_tenant || directory.tenants.contains_key(&**id) {
                continue;
            }
            if !self.seen.contains(&**id) {
                if tenant.created_at() < as_of && self.reported.insert(id.clone()) {
                    tracing::warn!(tenant = %id, "the broker holds data of a tenant the control plane does not know; kept (is this the right control-plane database for this data dir?)");
                }
                continue;
            }
            if tenant.created_at() >= as_of || registry.count(id) > 0 {
                continue;
            }
            if broker.remove_tenant(id) {
                metrics::counter!(TENANTS_REMOVED_TOTAL).increment(1);
                tracing::info!(tenant = %id, "deleted tenant removed: sessions, queues and retained messages forgotten");
                removed.push(id.clone());
            }
        }
        self.seen.retain(|id| {
            directory.tenants.contains_key(id) || broker.existing_tenant(id).is_some()
        });
        removed
    }
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
        let mut reaper = Reaper::default();
        loop {
            let directory = snapshots.borrow_and_update().clone();
            reaper.reap(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TenantFacts;
    use aerie_core::CoreConfig;

    fn knowing(ids: &[&str]) -> Directory {
        let mut d = Directory::default();
        for id in ids {
            d.tenants.insert((*id).to_owned(), TenantFacts::active());
        }
        d
    }

    #[test]
    fn only_a_tenant_the_directory_showed_and_then_dropped_is_removed() {
        let broker = Broker::new(CoreConfig::default());
        let registry = Registry::new();
        broker.tenant("kept");
        broker.tenant("stranger");
        broker.tenant("gone");
        let mut reaper = Reaper::default();
        let later = Instant::now() + Duration::from_secs(1);

        let removed = reaper.reap(
            &knowing(&["kept", "gone"]),
            later,
            &broker,
            &registry,
            "local",
        );
        assert!(removed.is_empty());
        // "gone" deleted; "stranger" was never known (another database?).
        let removed = reaper.reap(&knowing(&["kept"]), later, &broker, &registry, "local");
        assert_eq!(removed, vec![Arc::<str>::from("gone")]);
        assert!(broker.existing_tenant("gone").is_none());
        assert!(
            broker.existing_tenant("stranger").is_some(),
            "an unknown tenant's data is kept"
        );
        assert!(broker.existing_tenant("kept").is_some());
    }
}
