//! This process's identity among the nodes that route a tenant's messages:
//! what makes an origin or a message id unique beyond one process.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::message::{MessageId, Origin};

/// A node's id. The embedded shape has one node; the scale-out shape one per
/// gateway process. Generated at start unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl NodeId {
    /// A fresh random id (std's per-process hash keys, salted with the time):
    /// two processes, or one restarted, practically never share one.
    pub fn generate() -> NodeId {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        // 0 is the id of messages stored before nodes had ids.
        NodeId(h.finish().max(1))
    }
}

/// The node this process is: hands out message ids and origins.
#[derive(Debug)]
pub struct Node {
    id: NodeId,
    next_seq: AtomicU64,
}

impl Node {
    pub fn new(id: NodeId) -> Node {
        // Starting from the wall clock in microseconds keeps ids of a node
        // restarted under the same id above those of its previous run (short
        // of a million messages a second sustained, or a clock set back).
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        Node {
            id,
            next_seq: AtomicU64::new(start),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// A message id no other message of any node has.
    pub fn next_message_id(&self) -> MessageId {
        MessageId {
            node: self.id,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The origin of a message published by session `session` of this node
    /// (0: the broker itself: a `$SYS` figure, an HTTP publish).
    pub fn origin(&self, session: u64) -> Origin {
        Origin {
            node: self.id,
            session,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_two_nodes_differ_even_with_the_same_sequence() {
        let (a, b) = (Node::new(NodeId::generate()), Node::new(NodeId::generate()));
        assert_ne!(a.id(), b.id());
        let (x, y) = (a.next_message_id(), a.next_message_id());
        assert_ne!(x, y);
        assert_ne!(x, b.next_message_id());
    }
}
