//! What a tenant's retained messages use (how many, how many bytes), one
//! record per tenant in the KV bucket `<prefix>_retained_usage`, shared by
//! every gateway and changed only by compare-and-set: a set reserves its
//! change (a new topic: one message and its weight; a replacement: the
//! difference of the weights) before it publishes, checked against the
//! quota on the record as it is, so gateways setting at once cannot pass
//! it together: each write is at the revision it checked, and the loser
//! reads again and checks again.
//!
//! Each node keeps the record as it last read or wrote it, so a set costs one
//! KV round trip while nobody else writes the tenant's record, and none when
//! it changes nothing (a replacement of the same weight).
//!
//! The record can drift from the stream: a gateway killed between its
//! reservation and its publish, a publish whose answer never came, a clear
//! whose give-back failed, an expired message (JetStream keeps it). So it is
//! reconciled with the stream (`reconcile`): read, wait [`Timing::grace`]
//! for the sets that reserved before the read to publish, measure the
//! stream (deleting expired messages), and write the measure at the
//! revision read, unless a set wrote it meanwhile (then later).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aerie_core::Limit;
use aerie_core::seams::RetainedQuota;
use async_nats::jetstream::kv;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, OnceCell};

use crate::kv_cas::{CasError, open_bucket, write_at_revision};
use crate::kv_key::token;
use crate::retained_stream::RetainedStream;

/// Reservations whose compare-and-set lost to another node's write.
pub const USAGE_CONFLICTS_TOTAL: &str = "aerie_retained_usage_conflicts_total";
/// Reconciles of a tenant's usage record with the stream, by `outcome`:
/// `agreed`, `corrected`, `busy` (sets wrote it meanwhile), `failed`.
pub const RECONCILES_TOTAL: &str = "aerie_retained_usage_reconciles_total";

/// Compare-and-set rounds before a reservation gives up.
const MAX_ROUNDS: usize = 64;

/// The bucket's name for a deployment prefix.
pub fn bucket_name(prefix: &str) -> String {
    format!("{prefix}_retained_usage")
}

/// When records are reconciled with the stream.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Between reading the record and measuring the stream: longer than a
    /// set takes from its reservation to its publish's answer.
    pub grace: Duration,
    /// A tenant that had sets on this node is reconciled this often.
    pub every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            // The JetStream publish's own timeout is 5 s.
            grace: Duration::from_secs(7),
            every: Duration::from_secs(60),
        }
    }
}

/// A tenant's retained messages and their bytes (`Message::weight`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub count: u64,
    pub bytes: u64,
}

/// A change of [`Usage`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delta {
    pub count: i64,
    pub bytes: i64,
}

impl Delta {
    pub const ZERO: Delta = Delta { count: 0, bytes: 0 };

    /// From a subject holding `old` (a weight, if any) to holding `new`.
    pub fn between(old: Option<u64>, new: Option<u64>) -> Delta {
        let weight = |w: Option<u64>| w.map_or(0, |w| w as i64);
        Delta {
            count: i64::from(new.is_some()) - i64::from(old.is_some()),
            bytes: weight(new) - weight(old),
        }
    }

    fn negated(self) -> Delta {
        Delta {
            count: -self.count,
            bytes: -self.bytes,
        }
    }
}

impl Usage {
    /// `self` changed by `d`; never below zero (a record that drifted low).
    fn plus(self, d: Delta) -> Usage {
        Usage {
            count: self.count.saturating_add_signed(d.count),
            bytes: self.bytes.saturating_add_signed(d.bytes),
        }
    }

    /// Whether `d` keeps the tenant within `quota`, by the embedded shape's
    /// rules (`quota::check_retained`): a new topic needs room in the
    /// count; growing needs room in the bytes; shrinking always passes.
    fn admits(self, d: Delta, quota: RetainedQuota) -> Result<(), Limit> {
        if d.count > 0 && self.count >= u64::from(quota.max_messages) {
            return Err(Limit::RetainedMessages);
        }
        if d.bytes > 0 && self.plus(d).bytes > quota.max_bytes {
            return Err(Limit::RetainedBytes);
        }
        Ok(())
    }

    fn encode(self) -> Bytes {
        Bytes::from(format!("{} {}", self.count, self.bytes))
    }

    fn decode(value: &[u8]) -> Option<Usage> {
        let (count, bytes) = std::str::from_utf8(value).ok()?.split_once(' ')?;
        Some(Usage {
            count: count.parse().ok()?,
            bytes: bytes.parse().ok()?,
        })
    }
}

/// The record as this node last read or wrote it.
#[derive(Debug, Clone, Copy)]
struct Record {
    usage: Usage,
    /// None: the key does not exist.
    revision: Option<u64>,
}

/// Why a reservation was not written.
pub(crate) enum Refused {
    Limit(Limit),
    /// NATS did not answer or take it (or too many rounds lost).
    Failed(String),
}

/// The bucket, opened when first needed (a control plane that only reads
/// retained messages never makes it).
pub(crate) struct Bucket {
    js: async_nats::jetstream::Context,
    name: String,
    replicas: usize,
    kv: OnceCell<kv::Store>,
}

impl Bucket {
    pub fn new(js: async_nats::jetstream::Context, prefix: &str, replicas: usize) -> Bucket {
        Bucket {
            js,
            name: bucket_name(prefix),
            replicas,
            kv: OnceCell::new(),
        }
    }

    async fn kv(&self) -> &kv::Store {
        self.kv
            .get_or_init(|| {
                open_bucket(
                    &self.js,
                    kv::Config {
                        bucket: self.name.clone(),
                        description: "Aerie: each tenant's retained messages and bytes".into(),
                        history: 1,
                        ..Default::default()
                    },
                    self.replicas,
                )
            })
            .await
    }
}

/// One tenant's usage record.
pub(crate) struct UsageBook {
    bucket: Arc<Bucket>,
    stream: RetainedStream,
    tenant: Arc<str>,
    key: String,
    cached: Mutex<Option<Record>>,
    /// The count as last read or written (for `$SYS`).
    known: AtomicUsize,
    /// Sets happened here since the last reconcile.
    active: AtomicBool,
    /// This node has read the record once.
    seen: AtomicBool,
    /// A reconcile is wanted now (first read, a possible drift).
    wanted: Notify,
}

impl UsageBook {
    pub fn new(bucket: Arc<Bucket>, stream: RetainedStream, tenant: Arc<str>) -> UsageBook {
        UsageBook {
            bucket,
            stream,
            key: token(&tenant),
            tenant,
            cached: Mutex::new(None),
            known: AtomicUsize::new(0),
            active: AtomicBool::new(false),
            seen: AtomicBool::new(false),
            wanted: Notify::new(),
        }
    }

    /// How many retained messages the tenant has, as last seen here.
    pub fn count(&self) -> usize {
        self.known.load(Ordering::Relaxed)
    }

    /// Asks for a reconcile soon: the record may have drifted.
    pub fn suspect_drift(&self) {
        self.wanted.notify_one();
    }

    /// Moves this node's reservation from `held` (already in the record) to
    /// `wanted`, checked against `quota` if given. Refused over the quota,
    /// the reservation is `Delta::ZERO` (`held` given back).
    pub async fn shift(
        &self,
        held: Delta,
        wanted: Delta,
        quota: Option<RetainedQuota>,
    ) -> Result<(), Refused> {
        self.active.store(true, Ordering::Relaxed);
        for _ in 0..MAX_ROUNDS {
            let (record, fresh) = self.current().await.map_err(Refused::Failed)?;
            let base = record.usage.plus(held.negated());
            let over = quota.and_then(|q| base.admits(wanted, q).err());
            if over.is_some() && !fresh {
                // Refused by the record as this node last wrote it: another
                // node may have freed room since.
                *self.cached.lock() = None;
                continue;
            }
            let target = match over {
                Some(_) => base,
                None => base.plus(wanted),
            };
            let done = || over.map_or(Ok(()), |l| Err(Refused::Limit(l)));
            if target == record.usage {
                return done();
            }
            let kv = self.bucket.kv().await;
            match write_at_revision(kv, &self.key, record.revision, target.encode()).await {
                Ok(revision) => {
                    self.remember(target, Some(revision));
                    return done();
                }
                Err(CasError::Conflict) => {
                    metrics::counter!(USAGE_CONFLICTS_TOTAL).increment(1);
                    *self.cached.lock() = None;
                }
                Err(CasError::Failed(e)) => {
                    *self.cached.lock() = None;
                    return Err(Refused::Failed(e));
                }
            }
        }
        Err(Refused::Failed("the record kept changing".into()))
    }

    fn remember(&self, usage: Usage, revision: Option<u64>) {
        *self.cached.lock() = Some(Record { usage, revision });
        self.known.store(usage.count as usize, Ordering::Relaxed);
    }

    /// The record as cached, else as read (then `true`: fresh); a tenant
    /// without one gets the stream's measure, written at the first change.
    async fn current(&self) -> Result<(Record, bool), String> {
        if let Some(record) = *self.cached.lock() {
            return Ok((record, false));
        }
        let (read, revision) = self.read().await?;
        let usage = match read {
            Some(usage) => usage,
            None => self
                .stream
                .measure(&self.tenant)
                .await
                .map_err(|e| e.to_string())?,
        };
        self.remember(usage, revision);
        if !self.seen.swap(true, Ordering::Relaxed) {
            // Others may have left it drifted (a gateway killed mid-set).
            self.suspect_drift();
        }
        Ok((Record { usage, revision }, true))
    }

    /// The record's usage (None if absent or unreadable) and revision.
    async fn read(&self) -> Result<(Option<Usage>, Option<u64>), String> {
        let kv = self.bucket.kv().await;
        match kv.entry(&self.key).await.map_err(|e| e.to_string())? {
            Some(e) if e.operation == kv::Operation::Put => {
                Ok((Usage::decode(&e.value), Some(e.revision)))
            }
            // Deleted or purged: written again at the marker's revision.
            Some(e) => Ok((None, Some(e.revision))),
            None => Ok((None, None)),
        }
    }

    /// The record set right with the stream, if no set writes it for
    /// `grace` (see the module's doc).
    pub async fn reconcile(&self, grace: Duration) -> &'static str {
        let outcome = async {
            let (read, revision) = self.read().await?;
            tokio::time::sleep(grace).await;
            let measured = self
                .stream
                .measure(&self.tenant)
                .await
                .map_err(|e| e.to_string())?;
            if read == Some(measured) {
                return Ok("agreed");
            }
            let kv = self.bucket.kv().await;
            match write_at_revision(kv, &self.key, revision, measured.encode()).await {
                Ok(new) => {
                    tracing::info!(tenant = %self.tenant, ?read, ?measured, "retained usage record corrected from the stream");
                    self.remember(measured, Some(new));
                    Ok("corrected")
                }
                Err(CasError::Conflict) => Ok("busy"),
                Err(CasError::Failed(e)) => Err(e),
            }
        };
        let outcome = outcome.await.unwrap_or_else(|error: String| {
            tracing::warn!(%error, tenant = %self.tenant, "reconciling retained usage failed");
            "failed"
        });
        metrics::counter!(RECONCILES_TOTAL, "outcome" => outcome).increment(1);
        outcome
    }

    /// Reconciles when wanted, and every `timing.every` while the tenant
    /// has sets here; a reconcile that found the record busy is tried
    /// again at the next period.
    pub async fn keep_reconciled(&self, timing: Timing) {
        loop {
            tokio::select! {
                () = self.wanted.notified() => {}
                () = tokio::time::sleep(timing.every) => {
                    if !self.active.swap(false, Ordering::Relaxed) {
                        continue;
                    }
                }
            }
            if self.reconcile(timing.grace).await != "agreed" {
                self.active.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Forgets the record (the tenant was deleted).
    pub async fn remove(&self) -> Result<(), String> {
        *self.cached.lock() = None;
        self.known.store(0, Ordering::Relaxed);
        let kv = self.bucket.kv().await;
        kv.purge(&self.key).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: RetainedQuota = RetainedQuota {
        max_messages: 2,
        max_bytes: 300,
    };

    #[test]
    fn a_record_reads_back_as_written_and_garbage_reads_as_none() {
        let u = Usage {
            count: 3,
            bytes: 12_345,
        };
        assert_eq!(Usage::decode(&u.encode()), Some(u));
        assert_eq!(Usage::decode(b"3"), None);
        assert_eq!(Usage::decode(b"x 1"), None);
    }

    #[test]
    fn the_quota_is_checked_as_the_embedded_shape_checks_it() {
        let full = Usage {
            count: 2,
            bytes: 200,
        };
        let new = Delta::between(None, Some(10));
        assert_eq!(full.admits(new, QUOTA), Err(Limit::RetainedMessages));
        // Replacing at the count is allowed while it fits the bytes.
        let grow = Delta::between(Some(100), Some(200));
        assert_eq!(full.admits(grow, QUOTA), Ok(()));
        let too_big = Delta::between(Some(100), Some(201));
        assert_eq!(full.admits(too_big, QUOTA), Err(Limit::RetainedBytes));
        // Shrinking passes even over a lowered limit; clearing always does.
        let over = Usage {
            count: 5,
            bytes: 999,
        };
        assert_eq!(
            over.admits(Delta::between(Some(100), Some(90)), QUOTA),
            Ok(())
        );
        assert_eq!(over.admits(Delta::between(Some(100), None), QUOTA), Ok(()));
        let one = Usage {
            count: 1,
            bytes: 100,
        };
        assert_eq!(
            one.admits(Delta::between(None, Some(201)), QUOTA),
            Err(Limit::RetainedBytes)
        );
        assert_eq!(one.admits(Delta::between(None, Some(200)), QUOTA), Ok(()));
    }

    #[test]
    fn a_record_that_drifted_low_never_goes_below_zero() {
        let low = Usage { count: 0, bytes: 5 };
        assert_eq!(low.plus(Delta::between(Some(80), None)), Usage::default());
    }
}
