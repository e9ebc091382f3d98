//! The value of a tenant's key in `<prefix>_connections`: per live node,
//! the tenant's connections there and its publish demand there, one
//! `<node> <connections> <demand>` line per node.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

/// One node's part of a tenant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeCount {
    /// Live connections of the tenant on the node.
    pub connections: u32,
    /// PUBLISHes a second the node checked against the tenant's rates
    /// lately (passed or refused): what its clients ask for.
    pub demand: u32,
}

/// Every node's part of one tenant, by node.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Counts(pub BTreeMap<Arc<str>, NodeCount>);

impl Counts {
    /// The tenant's connections on these nodes.
    pub fn connections(&self) -> u32 {
        self.sum(|n| n.connections)
    }

    /// The tenant's publish demand on these nodes.
    pub fn demand(&self) -> u32 {
        self.sum(|n| n.demand)
    }

    fn sum(&self, of: impl Fn(&NodeCount) -> u32) -> u32 {
        self.0
            .values()
            .fold(0u32, |sum, n| sum.saturating_add(of(n)))
    }

    pub fn encode(&self) -> Bytes {
        let text: String = self
            .0
            .iter()
            .map(|(node, n)| format!("{node} {} {}\n", n.connections, n.demand))
            .collect();
        Bytes::from(text)
    }

    /// Lines that do not parse are skipped (counted as nothing); a line
    /// without a demand (an older gateway's) has none.
    pub fn decode(value: &[u8]) -> Counts {
        let text = String::from_utf8_lossy(value);
        Counts(
            text.lines()
                .filter_map(|line| {
                    let mut fields = line.split(' ');
                    let node = fields.next()?;
                    let connections = fields.next()?.parse().ok()?;
                    let demand = match fields.next() {
                        Some(d) => d.parse().ok()?,
                        None => 0,
                    };
                    Some((
                        Arc::from(node),
                        NodeCount {
                            connections,
                            demand,
                        },
                    ))
                })
                .collect(),
        )
    }
}

/// A node's part, for tests.
#[cfg(test)]
pub(crate) fn count(connections: u32, demand: u32) -> NodeCount {
    NodeCount {
        connections,
        demand,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_back_as_written_and_a_bad_line_counts_nothing() {
        let counts = Counts(BTreeMap::from([
            (Arc::from("gw-a-1"), count(3, 40)),
            (Arc::from("gw-b-2"), count(4, 0)),
        ]));
        assert_eq!(Counts::decode(&counts.encode()), counts);
        assert_eq!((counts.connections(), counts.demand()), (7, 40));
        let garbled = Counts::decode(b"gw-a-1 2\nnonsense\ngw-c x\ngw-d 1 y\n");
        assert_eq!(garbled.0.len(), 1, "an older gateway's line is read");
        assert_eq!((garbled.connections(), garbled.demand()), (2, 0));
    }
}
