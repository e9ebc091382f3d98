//! The KV operations the cluster's buckets share: opening a bucket, and a
//! compare-and-set write of a key at the revision it was read at.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use crate::replicas::raise;

/// How long one attempt to open a bucket may take.
const OPEN_ATTEMPT: Duration = Duration::from_secs(1);

/// The bucket `config` names with `replicas` copies, made if it is not
/// there (and its replicas raised if fewer); retried until NATS answers (a
/// gateway may start before NATS does).
pub(crate) async fn open_bucket(
    js: &jetstream::Context,
    config: kv::Config,
    replicas: usize,
) -> kv::Store {
    let config = kv::Config {
        num_replicas: replicas,
        ..config
    };
    let mut wait = Duration::from_millis(100);
    loop {
        // Bounded below the client's 5 s: a JetStream cluster that is still
        // settling can leave a request unanswered, and a retry gets through.
        let attempt = async {
            match js.get_key_value(&config.bucket).await {
                Ok(kv) => {
                    raise(js, &format!("KV_{}", config.bucket), replicas).await;
                    Ok(kv)
                }
                Err(_) => js
                    .create_key_value(config.clone())
                    .await
                    .map_err(|e| e.to_string()),
            }
        };
        let opened = tokio::time::timeout(OPEN_ATTEMPT, attempt)
            .await
            .unwrap_or_else(|_| Err("no answer in time".to_owned()));
        match opened {
            Ok(kv) => return kv,
            Err(e) => {
                tracing::warn!(bucket = %config.bucket, error = %e, "cannot open the KV bucket; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Why a compare-and-set write did not happen.
pub(crate) enum CasError {
    /// Someone wrote the key since it was read: read again.
    Conflict,
    /// NATS did not take it.
    Failed(String),
}

/// Writes `value` at `key` if it is still as `read` (None: the key did not
/// exist); the new revision.
pub(crate) async fn write_if_unchanged(
    kv: &kv::Store,
    key: &str,
    read: Option<&kv::Entry>,
    value: Bytes,
) -> Result<u64, CasError> {
    write_at_revision(kv, key, read.map(|e| e.revision), value).await
}

/// Writes `value` at `key` if its last revision is still `revision` (None:
/// the key does not exist); the new revision.
pub(crate) async fn write_at_revision(
    kv: &kv::Store,
    key: &str,
    revision: Option<u64>,
    value: Bytes,
) -> Result<u64, CasError> {
    match revision {
        None => kv.create(key, value).await.map_err(|e| {
            if e.kind() == kv::CreateErrorKind::AlreadyExists {
                CasError::Conflict
            } else {
                CasError::Failed(e.to_string())
            }
        }),
        Some(revision) => kv.update(key, value, revision).await.map_err(|e| {
            if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                CasError::Conflict
            } else {
                CasError::Failed(e.to_string())
            }
        }),
    }
}

/// Deletes `key` (a purge: no history left) if its last revision is still
/// `revision`.
pub(crate) async fn purge_at_revision(
    kv: &kv::Store,
    key: &str,
    revision: u64,
) -> Result<(), CasError> {
    kv.purge_expect_revision(key, Some(revision))
        .await
        .map_err(|e| {
            if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                CasError::Conflict
            } else {
                CasError::Failed(e.to_string())
            }
        })
}
