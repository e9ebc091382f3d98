//! Session ownership: which node holds the session of a client id.

use std::sync::Arc;

use aerie_proto::ReasonCode;

use super::BoxFuture;

/// The answer to [`SessionOwners::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No other node held it: this node owns it now.
    Claimed,
    /// Another node held it and was told to let go (its connection gets
    /// 0x8E); this node owns it now.
    TookOver,
}

/// One session per client id per tenant, across nodes.
pub trait SessionOwners: Send + Sync + 'static {
    /// Makes this node the owner of `client_id`'s session before a
    /// connection attaches to it (once per CONNECT). `clean_start`: the
    /// session starts over, whatever another node kept. An error is the
    /// CONNACK reason code (e.g. 0x89 when ownership cannot be decided).
    fn claim(
        &self,
        tenant: &Arc<str>,
        client_id: &Arc<str>,
        clean_start: bool,
    ) -> BoxFuture<Result<Claim, ReasonCode>>;

    /// The session ended on this node (expired, or ended at disconnect).
    fn release(&self, tenant: &Arc<str>, client_id: &Arc<str>);
}

/// The embedded shape: one node, whose session table decides takeovers by
/// itself (`SessionTable::attach`). When the scale-out shape learns that
/// another node took a client id over, it calls
/// `SessionTable::taken_over_elsewhere`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalOwners;

impl SessionOwners for LocalOwners {
    fn claim(
        &self,
        _tenant: &Arc<str>,
        _client_id: &Arc<str>,
        _clean_start: bool,
    ) -> BoxFuture<Result<Claim, ReasonCode>> {
        Box::pin(std::future::ready(Ok(Claim::Claimed)))
    }

    fn release(&self, _tenant: &Arc<str>, _client_id: &Arc<str>) {}
}
