//! A node's share of a tenant's publish rates: its part of what the
//! tenant's clients ask for across the nodes (their publish demand), or,
//! while none publishes, its part of the tenant's connections. Demand
//! first, because publishers need not be where the connections are (a
//! backend publishing to many devices); connections before anyone
//! publishes, so a first burst finds the rate where the clients are.

use aerie_core::quota::WHOLE_SHARE;

use crate::counts::{Counts, NodeCount};

/// How much the demand a node last wrote may differ from what it measures
/// now before it writes again: a quarter (and at least one a second), so
/// a steady tenant costs no writes.
pub(crate) fn demand_changed(written: u32, now: u32) -> bool {
    written.abs_diff(now) > (written.max(now) / 4).max(1)
}

/// This node's share of a tenant's publish rates, in parts of
/// [`WHOLE_SHARE`], with `mine` here and `others` on the other live nodes.
/// The shares of all nodes, reckoned from the same counts, add up to the
/// whole (rounded down); a node with no part gets the floor
/// `core::quota` keeps.
pub(crate) fn publish_share(mine: NodeCount, others: &Counts) -> u32 {
    let (mine, all) = match others.demand() {
        demand if demand > 0 || mine.demand > 0 => (mine.demand, demand),
        _ => (mine.connections, others.connections()),
    };
    if all == 0 {
        return WHOLE_SHARE;
    }
    let all = u64::from(mine) + u64::from(all);
    (u64::from(mine) * u64::from(WHOLE_SHARE) / all) as u32
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::counts::count;

    fn others(counts: &[NodeCount]) -> Counts {
        Counts(
            counts
                .iter()
                .enumerate()
                .map(|(i, c)| (Arc::from(format!("gw-{i}")), *c))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn before_anyone_publishes_the_share_is_the_part_of_the_connections() {
        assert_eq!(
            publish_share(count(0, 0), &others(&[])),
            WHOLE_SHARE,
            "alone"
        );
        assert_eq!(publish_share(count(5, 0), &others(&[])), WHOLE_SHARE);
        assert_eq!(
            publish_share(count(1, 0), &others(&[count(1, 0)])),
            WHOLE_SHARE / 2
        );
        assert_eq!(
            publish_share(count(0, 0), &others(&[count(7, 0)])),
            0,
            "the floor"
        );
    }

    #[test]
    fn once_clients_publish_the_share_is_the_part_of_the_demand() {
        // A backend publishing here, devices elsewhere: the rate is here.
        let devices = count(1000, 0);
        assert_eq!(
            publish_share(count(1, 50), &others(&[devices])),
            WHOLE_SHARE
        );
        assert_eq!(publish_share(devices, &others(&[count(1, 50)])), 0);
        // Both publishing: by what each asks for.
        assert_eq!(
            publish_share(count(1, 30), &others(&[count(9, 90)])),
            WHOLE_SHARE / 4
        );
    }

    #[test]
    fn the_shares_of_all_nodes_add_up_to_the_whole() {
        for nodes in [
            vec![
                count(3, 0),
                count(1, 0),
                count(7, 0),
                count(0, 0),
                count(12, 0),
            ],
            vec![
                count(3, 10),
                count(1, 0),
                count(7, 333),
                count(0, 0),
                count(12, 5),
            ],
        ] {
            let sum: u32 = (0..nodes.len())
                .map(|i| {
                    let mut rest = nodes.clone();
                    let mine = rest.remove(i);
                    publish_share(mine, &others(&rest))
                })
                .sum();
            assert!(sum <= WHOLE_SHARE && sum > WHOLE_SHARE - 5, "{sum}");
        }
    }

    #[test]
    fn a_steady_demand_is_not_written_again() {
        assert!(!demand_changed(0, 1));
        assert!(demand_changed(0, 2));
        assert!(!demand_changed(100, 120));
        assert!(demand_changed(100, 140));
        assert!(demand_changed(100, 70));
    }
}
