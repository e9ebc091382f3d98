//! Wills kept off the node: a connection's will lives in its gateway's
//! memory, and a gateway that dies without a word would take it along. The
//! scale-out shape keeps each standing will where a surviving node finds
//! it and publishes it when the node that held it is gone.

use std::sync::Arc;

use aerie_proto::Will;

use super::{BoxFuture, Claim};
use crate::session::Session;

/// Where the wills of this node's connections are kept for other nodes.
/// Called once per CONNECT and once when a will stops standing here; never
/// per message.
pub trait Wills: Send + Sync + 'static {
    /// A connection attached to `session` with `will` (None: without one),
    /// its session expiry `expiry` (which bounds the will's delay). The
    /// will is kept until [`Wills::ended`]; without one, whatever this
    /// node kept for the client id goes, and so does another node's when
    /// `claim` took the client id over from it (a new connection cancels a
    /// will still waiting for its delay). The CONNECT waits for the
    /// returned future: a will is kept before its CONNACK is sent.
    fn connected(
        &self,
        session: &Arc<Session>,
        connection: u64,
        will: Option<&Will>,
        expiry: u32,
        claim: Claim,
    ) -> BoxFuture<()>;

    /// The will of `client_id`'s connection `connection` (None: whichever
    /// connected here last) no longer stands: this node published it, or
    /// MQTT discarded it (a normal DISCONNECT, the session ended, a
    /// shutdown). What this node kept for it goes, unless a later
    /// connection (here or on another node) wrote it since.
    fn ended(&self, tenant: &Arc<str>, client_id: &Arc<str>, connection: Option<u64>);
}

/// The embedded shape: one process, whose wills die with it and its
/// clients' connections alike; nothing is kept elsewhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalWills;

impl Wills for LocalWills {
    fn connected(
        &self,
        _session: &Arc<Session>,
        _connection: u64,
        _will: Option<&Will>,
        _expiry: u32,
        _claim: Claim,
    ) -> BoxFuture<()> {
        Box::pin(std::future::ready(()))
    }

    fn ended(&self, _tenant: &Arc<str>, _client_id: &Arc<str>, _connection: Option<u64>) {}
}
