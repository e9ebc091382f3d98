//! What crosses nodes, behind small interfaces. The embedded shape (`aerie
//! serve`, one process) implements each in-process; the scale-out shape will
//! implement them over NATS. The core calls them at most once per PUBLISH,
//! SUBSCRIBE or CONNECT, never per delivery.
//!
//! - [`Backbone`]: a tenant's messages to and from other nodes, and this
//!   node's interest in filters. Embedded: [`LocalBackbone`] (one node: the
//!   trie is all the interest there is).
//! - [`SessionOwners`]: which node holds a client id's session. Embedded:
//!   [`LocalOwners`] (the session table is the only owner).
//! - [`RetainedStore`]: a tenant's retained messages, asynchronous. Embedded:
//!   [`LocalRetained`] (in memory, written through to the embedded store).
//! - [`MessageLog`]: where a QoS 1/2 PUBLISH is kept before its
//!   acknowledgement. Embedded: [`LocalLog`] (nothing: the embedded store
//!   keeps what persistent sessions need).
//! - [`SessionRecords`]: a persistent session's subscriptions and replay
//!   cursor, kept off the node so it resumes anywhere. Embedded:
//!   [`LocalRecords`] (nothing: the embedded store keeps sessions).
//! - [`Wills`]: the wills of this node's connections, kept where another
//!   node publishes them if this one dies. Embedded: [`LocalWills`]
//!   (nothing: one process).
//! - [`crate::usage::UsageSink`]: where per-tenant usage goes (embedded: the
//!   control plane's store, implemented by the binary).

mod backbone;
mod log;
mod owners;
mod records;
mod retained;
mod wills;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

pub use backbone::{Backbone, LocalBackbone};
pub use log::{LocalLog, MessageLog};
pub use owners::{Claim, LocalOwners, SessionOwners};
pub use records::{
    FlightStage, LocalRecords, RecordedFlight, Resumed, SessionRecords, WindowChange,
};
pub use retained::{
    LocalRetained, LocalRetainedStores, RetainedQuota, RetainedStore, RetainedStores,
};
pub use wills::{LocalWills, Wills};

/// A boxed future, as the seams return them (one allocation per call).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The implementations a broker runs with.
#[derive(Clone)]
pub struct Seams {
    pub backbone: Arc<dyn Backbone>,
    pub owners: Arc<dyn SessionOwners>,
    pub retained: Arc<dyn RetainedStores>,
    pub log: Arc<dyn MessageLog>,
    pub records: Arc<dyn SessionRecords>,
    pub wills: Arc<dyn Wills>,
}

impl Seams {
    /// One process: everything in-process.
    pub fn embedded() -> Seams {
        Seams {
            backbone: Arc::new(LocalBackbone),
            owners: Arc::new(LocalOwners),
            retained: Arc::new(LocalRetainedStores),
            log: Arc::new(LocalLog),
            records: Arc::new(LocalRecords),
            wills: Arc::new(LocalWills),
        }
    }
}

/// Polls `fut` once, without a task to wake: for seams a synchronous path
/// calls, whose embedded implementation is always ready at once.
pub(crate) fn poll_once<T>(fut: &mut BoxFuture<T>) -> Poll<T> {
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

#[cfg(test)]
mod tests;
