use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

type T = SubTrie<u32, u8>;
type Ctor = fn() -> T;

/// Runs a test body twice, with the match cache (`cached`) and without
/// (`no_cache`), like nats' TestSublistX / TestSublistXNoCache.
macro_rules! both {
    ($($name:ident => $body:expr;)*) => {$(
        mod $name {
            use super::*;
            #[test]
            fn cached() {
                let body: fn(Ctor) = $body;
                body(T::new)
            }
            #[test]
            fn no_cache() {
                let body: fn(Ctor) = $body;
                body(T::without_cache)
            }
        }
    )*};
}

/// Matches twice (the second time from the cache when there is one) and
/// checks both answers agree.
fn matched(t: &T, topic: &str) -> Arc<Matches<u32, u8>> {
    let first = t.match_topic(topic);
    let second = t.match_topic(topic);
    assert_eq!(first, second, "{topic}");
    first
}

/// Sorted keys of the ordinary subscriptions matching `topic`.
fn normal(t: &T, topic: &str) -> Vec<u32> {
    let mut keys: Vec<u32> = matched(t, topic).normal.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    keys
}

/// Sorted (group, filter, sorted member keys) of the shared subscriptions matching `topic`.
fn shared(t: &T, topic: &str) -> Vec<(String, String, Vec<u32>)> {
    let mut out: Vec<_> = matched(t, topic)
        .shared
        .iter()
        .map(|s| {
            let mut members: Vec<u32> = s.members.iter().map(|(k, _)| *k).collect();
            members.sort_unstable();
            (s.group.to_string(), s.filter.to_string(), members)
        })
        .collect();
    out.sort();
    out
}

fn sh(group: &str, filter: &str, members: &[u32]) -> (String, String, Vec<u32>) {
    (group.into(), filter.into(), members.to_vec())
}

both! {
    literal => |new| {
        let mut t = new();
        t.insert("a/b", None, 1, 0);
        assert_eq!(normal(&t, "a/b"), [1]);
        for miss in ["a", "a/b/c", "a/c", "b", "A/b", "a/b/"] {
            assert!(normal(&t, miss).is_empty(), "{miss}");
        }
    };

    plus_matches_exactly_one_level => |new| {
        let mut t = new();
        t.insert("a/+/c", None, 1, 0);
        t.insert("+", None, 2, 0);
        t.insert("+/+", None, 3, 0);
        t.insert("/+", None, 4, 0);
        assert_eq!(normal(&t, "a/b/c"), [1]);
        assert_eq!(normal(&t, "a//c"), [1]);
        assert_eq!(normal(&t, "a/c"), [3]); // `+/+` only
        assert!(normal(&t, "a/b/d/c").is_empty());
        assert!(normal(&t, "a/b/c/d").is_empty());
        assert_eq!(normal(&t, "x"), [2]);
        assert_eq!(normal(&t, "/"), [3, 4]);
        assert_eq!(normal(&t, "/a"), [3, 4]);
        assert_eq!(normal(&t, "a/b"), [3]);
    };

    hash_matches_zero_or_more_levels => |new| {
        let mut t = new();
        t.insert("a/#", None, 1, 0);
        t.insert("#", None, 2, 0);
        t.insert("a/+/#", None, 3, 0);
        assert_eq!(normal(&t, "a"), [1, 2]);
        assert_eq!(normal(&t, "a/b"), [1, 2, 3]);
        assert_eq!(normal(&t, "a/b/c/d"), [1, 2, 3]);
        assert_eq!(normal(&t, "a/"), [1, 2, 3]);
        assert_eq!(normal(&t, "b"), [2]);
        assert_eq!(normal(&t, "ab"), [2]);
        assert_eq!(normal(&t, "/"), [2]);
    };

    empty_levels_are_levels => |new| {
        let mut t = new();
        t.insert("a//b", None, 1, 0);
        t.insert("/a", None, 2, 0);
        t.insert("+/a", None, 3, 0);
        t.insert("a/", None, 4, 0);
        assert_eq!(normal(&t, "a//b"), [1]);
        assert!(normal(&t, "a/b").is_empty());
        assert_eq!(normal(&t, "/a"), [2, 3]);
        assert!(normal(&t, "a").is_empty());
        assert_eq!(normal(&t, "a/"), [4]);
        assert_eq!(normal(&t, "x/a"), [3]);
    };

    dollar_topics_skip_leading_wildcards => |new| {
        let mut t = new();
        t.insert("#", None, 1, 0);
        t.insert("+/x", None, 2, 0);
        t.insert("+/#", None, 3, 0);
        t.insert("$SYS/#", None, 4, 0);
        t.insert("$SYS/+", None, 5, 0);
        t.insert("a/+", None, 6, 0);
        t.insert("$SYS/x", None, 7, 0);
        t.insert("+", None, 8, 0);
        assert_eq!(normal(&t, "$SYS/x"), [4, 5, 7]);
        assert_eq!(normal(&t, "$SYS"), [4]);
        assert!(normal(&t, "$").is_empty());
        // `$` only matters in the first level.
        assert_eq!(normal(&t, "a/$x"), [1, 3, 6]);
        assert_eq!(normal(&t, "b/x"), [1, 2, 3]);
        assert_eq!(normal(&t, "b"), [1, 3, 8]);
    };

    overlapping_filters_repeat_the_key => |new| {
        let mut t = new();
        t.insert("a/+", None, 1, 0);
        t.insert("a/#", None, 1, 0);
        t.insert("a/b", None, 1, 0);
        assert_eq!(normal(&t, "a/b"), [1, 1, 1]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.filters(), 3);
    };

    resubscribe_replaces => |new| {
        let mut t = new();
        assert_eq!(t.insert("a/+", None, 1, 10), None);
        assert_eq!(t.match_topic("a/b").normal, [(1, 10)]);
        let g = t.generation();
        assert_eq!(t.insert("a/+", None, 1, 20), Some(10));
        assert!(t.generation() > g);
        assert_eq!(t.match_topic("a/b").normal, [(1, 20)]);
        assert_eq!(t.insert("a/+", Some("g"), 1, 30), None);
        assert_eq!(t.insert("a/+", Some("g"), 1, 40), Some(30));
        assert_eq!((t.len(), t.filters()), (2, 2));
        assert_eq!(t.match_topic("a/b").shared[0].members, [(1, 40)]);
    };

    remove_prunes => |new| {
        let mut t = new();
        let subs = [
            ("a/b/c", None, 1), ("a/b/c", None, 2), ("a/b", None, 1), ("a/+/c", None, 3),
            ("#", None, 4), ("a/#", Some("g"), 5), ("a/#", Some("g"), 6), ("a/#", Some("h"), 5),
            ("//", None, 7), ("$SYS/+", None, 8), ("a/b/c", Some("g"), 9),
        ];
        for (f, g, k) in subs {
            assert_eq!(t.insert(f, g, k, 0), None);
        }
        assert_eq!(t.len(), subs.len());
        assert_eq!(t.filters(), 9);
        assert_eq!(t.node_count(), 12);
        assert_eq!(t.remove("a/b/c", None, &99), None);
        assert_eq!(t.remove("a/b/c", Some("x"), &1), None);
        assert_eq!(t.remove("a/b/d", None, &1), None);
        assert_eq!(t.remove("a/+/c", Some("g"), &3), None);
        assert_eq!(t.len(), subs.len());
        for (f, g, k) in subs {
            assert_eq!(t.remove(f, g, &k), Some(0), "{f} {g:?} {k}");
            assert_eq!(t.remove(f, g, &k), None);
        }
        assert_eq!((t.len(), t.filters(), t.node_count()), (0, 0, 0));
        assert!(t.is_empty());
        assert!(t.match_topic("a/b/c").is_empty());
    };

    remove_keeps_what_is_still_needed => |new| {
        let mut t = new();
        t.insert("a/b/c/d", None, 1, 0);
        t.insert("a", None, 2, 0);
        t.insert("a/b/x", None, 3, 0);
        assert_eq!(t.node_count(), 5);
        t.remove("a/b/c/d", None, &1);
        assert_eq!(t.node_count(), 3); // a, a/b, a/b/x
        assert_eq!(normal(&t, "a/b/x"), [3]);
        t.remove("a/b/x", None, &3);
        assert_eq!(t.node_count(), 1);
        assert_eq!(normal(&t, "a"), [2]);
        t.insert("a/+/#", None, 4, 0);
        t.remove("a", None, &2);
        assert_eq!(t.node_count(), 3);
        assert_eq!(normal(&t, "a/b"), [4]);
        t.remove("a/+/#", None, &4);
        assert_eq!(t.node_count(), 0);
    };

    cache_sees_insert_and_remove => |new| {
        let mut t = new();
        t.insert("a/b", None, 1, 0);
        assert_eq!(normal(&t, "a/b"), [1]);
        let g0 = t.generation();
        t.insert("a/+", None, 2, 0);
        assert!(t.generation() > g0);
        assert_eq!(normal(&t, "a/b"), [1, 2]);
        t.insert("a/#", Some("g"), 3, 0);
        assert_eq!(shared(&t, "a/b"), [sh("g", "a/#", &[3])]);
        let g1 = t.generation();
        assert_eq!(t.remove("a/b", None, &1), Some(0));
        assert!(t.generation() > g1);
        assert_eq!(normal(&t, "a/b"), [2]);
        t.remove("a/#", Some("g"), &3);
        assert!(shared(&t, "a/b").is_empty());
        // A failed removal is not a change.
        let g2 = t.generation();
        assert_eq!(t.remove("a/b", None, &1), None);
        assert_eq!(t.generation(), g2);
    };

    snapshots_are_immutable => |new| {
        let mut t = new();
        t.insert("a", None, 1, 0);
        let before = t.match_topic("a");
        t.insert("a", None, 2, 0);
        assert_eq!(before.normal, [(1, 0)]);
        assert_eq!(normal(&t, "a"), [1, 2]);
    };

    cache_stays_bounded => |new| {
        let mut t = new();
        t.insert("t/+", None, 1, 0);
        t.insert("#", None, 2, 0);
        for i in 0..100_000 {
            let topic = format!("t/{i}");
            assert_eq!(t.match_topic(&topic).normal.len(), 2);
            assert!(t.cache_len() <= DEFAULT_CACHE_CAPACITY);
        }
        if t.cache.is_some() {
            assert!(t.cache_len() >= DEFAULT_CACHE_CAPACITY / 2);
        } else {
            assert_eq!(t.cache_len(), 0);
        }
        t.insert("x", None, 3, 0);
        assert_eq!(t.cache_len(), 0);
    };

    cache_skips_long_topics_and_big_results => |new| {
        let mut t = new();
        for k in 0..(MAX_CACHED_ENTRIES as u32 + 1) {
            t.insert("big/+", None, k, 0);
        }
        t.insert("#", None, 1000, 0);
        assert_eq!(normal(&t, "big/x").len(), MAX_CACHED_ENTRIES + 2);
        assert_eq!(t.cache_len(), 0);
        let long = "a".repeat(MAX_CACHED_TOPIC_LEN + 1);
        assert_eq!(normal(&t, &long), [1000]);
        assert_eq!(t.cache_len(), 0);
        assert_eq!(normal(&t, "small"), [1000]);
        assert_eq!(t.cache_len(), usize::from(t.cache.is_some()));
    };

    shared_groups => |new| {
        let mut t = new();
        t.insert("a/+", Some("g"), 1, 0);
        t.insert("a/+", Some("g"), 2, 0);
        t.insert("a/b", Some("g"), 3, 0);
        t.insert("a/+", Some("h"), 4, 0);
        t.insert("a/+", None, 5, 0);
        t.insert("#", Some("g"), 6, 0);
        assert_eq!((t.len(), t.filters()), (6, 5));
        assert_eq!(normal(&t, "a/b"), [5]);
        assert_eq!(
            shared(&t, "a/b"),
            [sh("g", "#", &[6]), sh("g", "a/+", &[1, 2]), sh("g", "a/b", &[3]), sh("h", "a/+", &[4])]
        );
        assert_eq!(shared(&t, "a/c"), [sh("g", "#", &[6]), sh("g", "a/+", &[1, 2]), sh("h", "a/+", &[4])]);
        assert!(shared(&t, "$a/b").is_empty());
        t.remove("a/+", Some("g"), &1);
        assert_eq!((t.len(), t.filters()), (5, 5));
        t.remove("a/+", Some("g"), &2);
        assert_eq!((t.len(), t.filters()), (4, 4));
        assert_eq!(shared(&t, "a/c"), [sh("g", "#", &[6]), sh("h", "a/+", &[4])]);
        // The key is also an ordinary subscriber of the same filter: both kept apart.
        t.insert("a/+", None, 4, 0);
        t.remove("a/+", Some("h"), &4);
        assert_eq!(normal(&t, "a/c"), [4, 5]);
    };

    remove_batch_bumps_once => |new| {
        let mut t = new();
        for k in 0..10 {
            t.insert("a/+", None, k, 0);
            t.insert("b", Some("g"), k, 0);
        }
        assert_eq!(normal(&t, "a/x").len(), 10);
        let g = t.generation();
        t.remove_batch((0..10).flat_map(|k| [("a/+", None, k), ("b", Some("g"), k), ("zz", None, k)]));
        assert_eq!(t.generation(), g + 1);
        assert!(normal(&t, "a/x").is_empty());
        assert!(shared(&t, "b").is_empty());
        assert_eq!((t.len(), t.filters(), t.node_count()), (0, 0, 0));
        t.remove_batch([("a/+", None, 1)]);
        assert_eq!(t.generation(), g + 1);
    };

    many_subscribers_on_one_filter => |new| {
        // Crosses the vector → map threshold of a subscriber set both ways.
        let mut t = new();
        for k in 0..100 {
            assert_eq!(t.insert("a", None, k, 1), None);
            assert_eq!(t.insert("a", Some("g"), k, 1), None);
        }
        assert_eq!(t.insert("a", None, 50, 2), Some(1));
        assert_eq!(normal(&t, "a"), (0..100).collect::<Vec<_>>());
        for k in (0..100).rev() {
            assert!(t.remove("a", None, &k).is_some());
            if k == 3 {
                assert_eq!(normal(&t, "a"), [0, 1, 2]);
            }
        }
        assert_eq!(shared(&t, "a")[0].2.len(), 100);
    };

    very_deep_filters_do_not_overflow => |new| {
        let mut t = new();
        let levels = 60_000;
        let filter = vec!["+"; levels].join("/");
        let topic = vec!["a"; levels].join("/");
        t.insert(&filter, None, 1, 0);
        t.insert(&format!("{topic}/#"), None, 2, 0);
        assert_eq!(normal(&t, &topic), [1, 2]);
        assert_eq!(t.remove(&filter, None, &1), Some(0));
        assert_eq!(t.node_count(), levels + 1);
        drop(t); // the remaining chain is dropped iteratively
    };
}

// ---- property test against the naive reference matcher ----

type Model = BTreeMap<(Option<String>, String, u8), u8>;

/// Sorted (key, value) of ordinary matches; sorted (group, filter, sorted members).
type Sorted = (Vec<(u8, u8)>, Vec<(String, String, Vec<(u8, u8)>)>);

fn naive(model: &Model, topic: &str) -> Sorted {
    let mut normal = Vec::new();
    let mut groups: BTreeMap<(String, String), Vec<(u8, u8)>> = BTreeMap::new();
    for ((group, filter, key), value) in model {
        if aerie_proto::topic::matches(filter, topic) {
            match group {
                None => normal.push((*key, *value)),
                Some(g) => groups
                    .entry((g.clone(), filter.clone()))
                    .or_default()
                    .push((*key, *value)),
            }
        }
    }
    normal.sort_unstable();
    let shared = groups
        .into_iter()
        .map(|((g, f), mut m)| {
            m.sort_unstable();
            (g, f, m)
        })
        .collect();
    (normal, shared)
}

fn sorted(m: &Matches<u8, u8>) -> Sorted {
    let mut normal = m.normal.clone();
    normal.sort_unstable();
    let mut shared: Vec<_> = m
        .shared
        .iter()
        .map(|s| {
            let mut members = s.members.clone();
            members.sort_unstable();
            (s.group.to_string(), s.filter.to_string(), members)
        })
        .collect();
    shared.sort();
    (normal, shared)
}

const NAME_LEVELS: [&str; 4] = ["a", "b", "", "$x"];

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&NAME_LEVELS[..]), 1..=4)
        .prop_map(|l| l.join("/"))
        .prop_filter("a topic name is not empty", |t| !t.is_empty())
}

fn filter_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(&["a", "b", "", "$x", "+", "#"][..]),
        1..=4,
    )
    .prop_map(|levels| {
        // `#` only as the last level: cut after the first one.
        let end = levels
            .iter()
            .position(|l| *l == "#")
            .map_or(levels.len(), |i| i + 1);
        levels[..end].join("/")
    })
    .prop_filter("a filter is not empty", |f| !f.is_empty())
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, Option<String>, u8, u8),
    Remove(String, Option<String>, u8),
    RemoveBatch(Vec<(String, Option<String>, u8)>),
}

fn sub_strategy() -> impl Strategy<Value = (String, Option<String>, u8)> {
    (
        filter_strategy(),
        prop::option::of(prop::sample::select(vec!["g".to_string(), "h".to_string()])),
        0..4u8,
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (sub_strategy(), any::<u8>()).prop_map(|((f, g, k), v)| Op::Insert(f, g, k, v)),
        3 => sub_strategy().prop_map(|(f, g, k)| Op::Remove(f, g, k)),
        1 => prop::collection::vec(sub_strategy(), 0..6).prop_map(Op::RemoveBatch),
    ]
}

fn run_model(new: Ctor8, ops: &[Op], topics: &[String]) -> Result<(), TestCaseError> {
    let mut trie = new();
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Insert(f, g, k, v) => {
                let old = trie.insert(f, g.as_deref(), *k, *v);
                prop_assert_eq!(old, model.insert((g.clone(), f.clone(), *k), *v));
            }
            Op::Remove(f, g, k) => {
                let old = trie.remove(f, g.as_deref(), k);
                prop_assert_eq!(old, model.remove(&(g.clone(), f.clone(), *k)));
            }
            Op::RemoveBatch(items) => {
                trie.remove_batch(items.iter().map(|(f, g, k)| (f.as_str(), g.as_deref(), *k)));
                for (f, g, k) in items {
                    model.remove(&(g.clone(), f.clone(), *k));
                }
            }
        }
        prop_assert_eq!(trie.len(), model.len());
        let filters: std::collections::BTreeSet<_> = model.keys().map(|(g, f, _)| (g, f)).collect();
        prop_assert_eq!(trie.filters(), filters.len());
        // Matching after every change exercises cache invalidation.
        for topic in topics {
            prop_assert_eq!(
                sorted(&trie.match_topic(topic)),
                naive(&model, topic),
                "topic {:?}",
                topic
            );
        }
    }
    let all: Vec<_> = model.keys().cloned().collect();
    trie.remove_batch(all.iter().map(|(g, f, k)| (f.as_str(), g.as_deref(), *k)));
    prop_assert_eq!((trie.len(), trie.filters(), trie.node_count()), (0, 0, 0));
    Ok(())
}

type Ctor8 = fn() -> SubTrie<u8, u8>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn matches_reference_cached(ops in prop::collection::vec(op_strategy(), 0..40),
                                topics in prop::collection::vec(topic_strategy(), 1..8)) {
        run_model(SubTrie::new, &ops, &topics)?;
    }

    #[test]
    fn matches_reference_no_cache(ops in prop::collection::vec(op_strategy(), 0..40),
                                  topics in prop::collection::vec(topic_strategy(), 1..8)) {
        run_model(SubTrie::without_cache, &ops, &topics)?;
    }

    /// A tiny cache under many distinct topics: eviction never serves stale results.
    #[test]
    fn matches_reference_tiny_cache(ops in prop::collection::vec(op_strategy(), 0..40),
                                    topics in prop::collection::vec(topic_strategy(), 1..8)) {
        run_model(|| SubTrie::with_cache_capacity(3), &ops, &topics)?;
    }
}

/// A node is in the trie once per level of every distinct filter (a
/// device's own command topic is a node of its own): 56 bytes keep it in
/// the allocator's 56-byte class, where wildcards and shared groups
/// inline took it to 80.
#[test]
fn a_node_without_wildcards_or_groups_fits_in_56_bytes() {
    assert!(size_of::<Node<u64, u64>>() <= 56);
}

#[test]
fn removing_the_last_wildcard_child_and_group_frees_the_rare_part() {
    let mut t: SubTrie<u64, u64> = SubTrie::new();
    t.insert("a/+", None, 1, 1);
    t.insert("a", Some("g"), 2, 2);
    // A plain subscriber keeps the node.
    t.insert("a", None, 3, 3);
    assert!(t.root.children.get("a").is_some_and(|a| a.rare.is_some()));
    t.remove("a/+", None, &1);
    t.remove("a", Some("g"), &2);
    assert!(t.root.children.get("a").is_some_and(|a| a.rare.is_none()));
}
