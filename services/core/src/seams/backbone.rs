//! The message backbone: how a tenant's messages reach the other nodes.

use std::sync::Arc;

use crate::session::Session;

use super::BoxFuture;
use crate::message::Message;

/// A node's link to the others that serve the same tenants.
///
/// A message published on this node is delivered to this node's own
/// subscribers by its router at once, then handed to [`Backbone::publish`]
/// for the other nodes; what arrives from them goes to their tenant's
/// `Router::deliver` (never back to the node that published it).
pub trait Backbone: Send + Sync + 'static {
    /// Sends `message` of `tenant` to the other nodes with interest in its
    /// topic. Called once per PUBLISH, after local delivery. True when it
    /// may reach subscribers elsewhere (then "no matching subscribers" is
    /// not this node's to say).
    fn publish(&self, tenant: &Arc<str>, message: &Arc<Message>) -> bool;

    /// A subscription of this node on `filter` (in shared group `group`) was
    /// added (`held`) or dropped. Called once per subscription of each
    /// session: the implementation counts, and holds one interest per
    /// distinct (filter, group). For an added one, `Some(future)` resolves
    /// once the interest is live on every node (SUBACK waits for it);
    /// `None`: it is already.
    fn interest(
        &self,
        tenant: &Arc<str>,
        filter: &str,
        group: Option<&str>,
        held: bool,
    ) -> Option<BoxFuture<()>>;

    /// Whether the backbone picks the member of a shared subscription among
    /// every node's (then the publishing node delivers only to its
    /// non-shared subscriptions, and the backbone brings each group its
    /// message through `Router::deliver_to_group`, even on this node).
    fn routes_shared_groups(&self) -> bool {
        false
    }

    /// Whether the queue toward the other nodes is too full to take more.
    /// If so, `waiter`'s connection is woken (`Session::wake_connection`)
    /// once there is room again. A connection that publishes is not read
    /// meanwhile: back-pressure, where the queue would otherwise drop what
    /// its publishers send faster than it drains. The embedded shape: never.
    fn backlogged(&self, waiter: &Arc<Session>) -> bool {
        let _ = waiter;
        false
    }
}

/// The embedded shape: one node, so nothing to send, and the subscription
/// trie is all the interest there is.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalBackbone;

impl Backbone for LocalBackbone {
    fn publish(&self, _tenant: &Arc<str>, _message: &Arc<Message>) -> bool {
        false
    }
    fn interest(
        &self,
        _tenant: &Arc<str>,
        _filter: &str,
        _group: Option<&str>,
        _held: bool,
    ) -> Option<BoxFuture<()>> {
        None
    }
}
