//! Subscription trie with 1,000,000 subscriptions: build time, and
//! `match_topic` latency for hits, with and without the match cache.
//!
//! `cargo bench -p aerie-core --bench trie`

use std::hint::black_box;
use std::time::{Duration, Instant};

use aerie_core::trie::SubTrie;
use criterion::{Criterion, criterion_group, criterion_main};

const SUBS: u64 = 1_000_000;
const TENANTS: u64 = 100;
/// Distinct topics published in the match benchmarks (fits the default cache).
const TOPICS: u64 = 1024;

/// The filter, share group and key of subscription `i` (keys are distinct).
/// Devices subscribe to their own subtree; the first subscriptions of each
/// tenant are wildcard observers, some of them shared.
fn subscription(i: u64) -> (String, Option<String>, u64) {
    let t = i % TENANTS;
    let filter = match i {
        _ if i < TENANTS => format!("t{t}/#"),
        _ if i < 2 * TENANTS => format!("t{t}/dev/+/alarm"),
        _ => match i % 4 {
            0 => format!("t{t}/dev/{i}/+"),
            1 => format!("t{t}/dev/{i}/cmd/#"),
            2 => format!("t{t}/dev/{i}/state"),
            _ => format!("t{t}/+/{i}/alarm"),
        },
    };
    let group = (i % 1000 == 7).then(|| format!("workers{}", i % 3));
    (filter, group, i)
}

fn build(mut trie: SubTrie<u64, u8>) -> (SubTrie<u64, u8>, Duration) {
    let subs: Vec<_> = (0..SUBS).map(subscription).collect();
    let start = Instant::now();
    for (filter, group, key) in &subs {
        trie.insert(filter, group.as_deref(), *key, 1);
    }
    let took = start.elapsed();
    assert_eq!(trie.len() as u64, SUBS);
    (trie, took)
}

/// Topics that hit: an alarm of device `i` matches `t/#`, `t/dev/+/alarm`,
/// and the device's own `+` or `+/{i}/alarm` filter when it has one.
fn topics() -> Vec<String> {
    (0..TOPICS)
        .map(|n| 1000 + n * 977)
        .map(|i| format!("t{}/dev/{i}/alarm", i % TENANTS))
        .collect()
}

fn bench(c: &mut Criterion) {
    let topics = topics();
    for (name, ctor) in [
        (
            "uncached",
            SubTrie::without_cache as fn() -> SubTrie<u64, u8>,
        ),
        ("cached", SubTrie::new),
    ] {
        let (trie, took) = build(ctor());
        println!(
            "insert {SUBS} subscriptions ({name} trie): {:.3} s total, {:.0} ns/insert, {} filters",
            took.as_secs_f64(),
            took.as_nanos() as f64 / SUBS as f64,
            trie.filters()
        );
        let hits: usize = topics
            .iter()
            .map(|t| trie.match_topic(t).normal.len())
            .sum();
        assert!(hits >= 2 * topics.len());
        let mut n = 0;
        c.bench_function(&format!("match_topic hit, 1M subs, {name}"), |b| {
            b.iter(|| {
                n = (n + 1) % topics.len();
                black_box(trie.match_topic(black_box(&topics[n])))
            })
        });
        let start = Instant::now();
        drop(trie);
        println!("drop ({name} trie): {:.3} s", start.elapsed().as_secs_f64());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
