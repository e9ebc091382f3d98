//! The subscription trie of one tenant.
//!
//! # Structure
//!
//! Modelled on nats-server's `sublist.go`. A filter is split on `/` and each
//! level is one [`Node`] below the previous one. A node keeps its literal
//! children in a map (`children`) and its wildcard children in two dedicated
//! slots, `plus` (`+`) and `hash` (`#`), so that matching a topic name costs one
//! map lookup plus two slot checks per level, whatever the number of filters.
//! Empty levels are ordinary literal levels (the key is `""`).
//!
//! The node reached by the last level of a filter holds its subscribers: the
//! ordinary ones in `subs` (key → value) and the shared ones
//! (`$share/<group>/<filter>`) in `shared`, group name → members. A shared
//! group is therefore identified by (group, filter). Nodes left without
//! subscribers and without children are pruned on removal, so the trie never
//! holds more nodes than the live filters need.
//!
//! Matching walks the topic name level by level with an explicit stack (no
//! recursion, no per-level allocation): at each node it follows the literal
//! child for the level and the `+` child, and collects the `#` child's
//! subscribers (which also makes `a/#` match `a`). At the root, `+` and `#` are
//! skipped when the topic starts with `$`. Insertion, removal, pruning and
//! dropping are iterative too, so a filter of 60 000 levels cannot overflow the
//! stack.
//!
//! # Cache invariant
//!
//! [`SubTrie::match_topic`] takes `&self` (the trie lives behind a read lock)
//! and memoises results in a bounded map topic → `Arc<Matches>` behind a
//! mutex. Every change (insert, replace, remove, batch remove) bumps
//! [`SubTrie::generation`] and, since it holds `&mut self`, clears the cache
//! there and then. Each cache is also tagged with the generation it was filled
//! at and discards itself if it ever sees another, so **a cached entry is only
//! ever served for the generation it was computed at**. When the cache is full,
//! half of it is evicted (in hash order, i.e. pseudo-randomly). Topics longer
//! than [`MAX_CACHED_TOPIC_LEN`] bytes and results of more than
//! [`MAX_CACHED_ENTRIES`] subscribers are never cached, so the cache's memory
//! is bounded by capacity × (topic length + entries) limits whatever the topic
//! names and however popular a filter. Results are `Arc`
//! snapshots: callers keep them without holding any lock, and a later change
//! to the trie never alters a snapshot already handed out.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::small_map::SmallMap;

/// A subscriber found by [`SubTrie::match_topic`].
pub type Entry<K, V> = (K, V);

/// One shared subscription (`$share/<group>/<filter>`) that matched: the broker
/// delivers to one of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedMatch<K, V> {
    pub group: Arc<str>,
    pub filter: Arc<str>,
    pub members: Vec<Entry<K, V>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matches<K, V> {
    /// Ordinary subscriptions, one entry per (filter, key) that matched: a key
    /// subscribed with two overlapping filters appears twice.
    pub normal: Vec<Entry<K, V>>,
    pub shared: Vec<SharedMatch<K, V>>,
}

impl<K, V> Matches<K, V> {
    /// No subscriber at all.
    pub fn is_empty(&self) -> bool {
        self.normal.is_empty() && self.shared.is_empty()
    }
}

/// Number of topics the match cache of [`SubTrie::new`] holds.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// Longer topic names are matched without the cache.
pub const MAX_CACHED_TOPIC_LEN: usize = 512;

/// Results with more subscribers (ordinary entries plus shared members) are
/// not cached: they would weigh on memory, and delivering to that many
/// subscribers costs far more than walking the trie again.
pub const MAX_CACHED_ENTRIES: usize = 64;

/// The subscribers of one (filter, group): most filters have one.
type SubSet<K, V> = SmallMap<K, V>;

fn extend_into<K: Clone + Eq + Hash, V: Clone>(set: &SubSet<K, V>, out: &mut Vec<Entry<K, V>>) {
    out.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
}

/// The shared subscriptions of one filter.
struct Shared<K, V> {
    /// The filter (without `$share/<group>/`), for [`SharedMatch::filter`].
    filter: Arc<str>,
    groups: HashMap<Arc<str>, SubSet<K, V>>,
}

/// One level of a filter.
struct Node<K, V> {
    children: SmallMap<Box<str>, Box<Node<K, V>>>,
    subs: SubSet<K, V>,
    /// Wildcard children and shared groups, boxed together: most nodes have
    /// none (a device's own topic), and inline they would take a node from
    /// the allocator's 56-byte class to its 80-byte one.
    rare: Option<Box<Rare<K, V>>>,
}

struct Rare<K, V> {
    plus: Option<Box<Node<K, V>>>,
    hash: Option<Box<Node<K, V>>>,
    shared: Option<Box<Shared<K, V>>>,
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Node {
            children: SmallMap::default(),
            subs: SmallMap::default(),
            rare: None,
        }
    }

    fn plus(&self) -> Option<&Node<K, V>> {
        self.rare.as_ref()?.plus.as_deref()
    }

    fn hash(&self) -> Option<&Node<K, V>> {
        self.rare.as_ref()?.hash.as_deref()
    }

    fn shared(&self) -> Option<&Shared<K, V>> {
        self.rare.as_ref()?.shared.as_deref()
    }

    fn rare_mut(&mut self) -> &mut Rare<K, V> {
        self.rare.get_or_insert_with(|| {
            Box::new(Rare {
                plus: None,
                hash: None,
                shared: None,
            })
        })
    }

    /// Frees the rare part once it holds nothing.
    fn tidy(&mut self) {
        if self
            .rare
            .as_ref()
            .is_some_and(|r| r.plus.is_none() && r.hash.is_none() && r.shared.is_none())
        {
            self.rare = None;
        }
    }

    fn child_count(&self) -> usize {
        self.children.len()
            + usize::from(self.plus().is_some())
            + usize::from(self.hash().is_some())
    }

    fn child(&self, level: &str) -> Option<&Node<K, V>> {
        match level {
            "+" => self.plus(),
            "#" => self.hash(),
            _ => self.children.get(level).map(|b| &**b),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        match level {
            "+" => self.rare.as_mut()?.plus.as_deref_mut(),
            "#" => self.rare.as_mut()?.hash.as_deref_mut(),
            _ => self.children.get_mut(level).map(|b| &mut **b),
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Node<K, V> {
        match level {
            "+" => self
                .rare_mut()
                .plus
                .get_or_insert_with(|| Box::new(Node::new())),
            "#" => self
                .rare_mut()
                .hash
                .get_or_insert_with(|| Box::new(Node::new())),
            _ => {
                // Look up first so that an existing level does not allocate a key.
                if !self.children.contains_key(level) {
                    self.children.insert(level.into(), Box::new(Node::new()));
                }
                self.children.get_mut(level).expect("just inserted")
            }
        }
    }

    fn remove_child(&mut self, level: &str) {
        match level {
            "+" | "#" => {
                if let Some(rare) = self.rare.as_mut() {
                    if level == "+" {
                        rare.plus = None;
                    } else {
                        rare.hash = None;
                    }
                }
                self.tidy();
            }
            _ => {
                self.children.remove(level);
            }
        }
    }

    /// Moves all children onto `stack` (for iterative drop). Boxed: they are
    /// boxed in the node already, and unboxing would copy every node.
    #[allow(clippy::vec_box)]
    fn take_children(&mut self, stack: &mut Vec<Box<Node<K, V>>>) {
        stack.extend(self.children.take_all().map(|(_, c)| c));
        if let Some(rare) = self.rare.as_mut() {
            stack.extend(rare.plus.take());
            stack.extend(rare.hash.take());
        }
    }
}

impl<K: Clone + Eq + Hash, V: Clone> Node<K, V> {
    fn has_subscribers(&self) -> bool {
        !self.subs.is_empty() || self.shared().is_some()
    }

    fn is_empty(&self) -> bool {
        !self.has_subscribers() && self.child_count() == 0
    }

    /// Adds this node's subscribers (it is the end of a matching filter).
    fn collect(&self, out: &mut Matches<K, V>) {
        extend_into(&self.subs, &mut out.normal);
        if let Some(shared) = self.shared() {
            for (group, set) in &shared.groups {
                let mut members = Vec::new();
                extend_into(set, &mut members);
                out.shared.push(SharedMatch {
                    group: Arc::clone(group),
                    filter: Arc::clone(&shared.filter),
                    members,
                });
            }
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    /// Iterative, so that dropping a very deep chain cannot overflow the stack.
    fn drop(&mut self) {
        if self.child_count() == 0 {
            return;
        }
        let mut stack = Vec::new();
        self.take_children(&mut stack);
        while let Some(mut node) = stack.pop() {
            node.take_children(&mut stack);
            // `node` drops here, childless.
        }
    }
}

struct Cache<K, V> {
    /// The trie generation the entries were computed at.
    generation: u64,
    capacity: usize,
    map: HashMap<Box<str>, Arc<Matches<K, V>>>,
}

impl<K, V> Cache<K, V> {
    fn clear(&mut self, generation: u64) {
        self.map.clear();
        self.generation = generation;
    }

    /// Makes room for one more entry: drops half the entries, in hash order.
    fn make_room(&mut self) {
        if self.map.len() < self.capacity {
            return;
        }
        let mut excess = self.map.len() - self.capacity / 2;
        self.map.retain(|_, _| {
            if excess > 0 {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// The subscriptions of one tenant: `(filter, group, key) → value`.
pub struct SubTrie<K, V> {
    root: Node<K, V>,
    generation: u64,
    len: usize,
    filters: usize,
    cache: Option<Mutex<Cache<K, V>>>,
}

impl<K: Clone + Eq + Hash, V: Clone> Default for SubTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> std::fmt::Debug for SubTrie<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubTrie")
            .field("len", &self.len)
            .field("filters", &self.filters)
            .field("generation", &self.generation)
            .field("cache", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash, V: Clone> SubTrie<K, V> {
    /// An empty trie with a match cache of [`DEFAULT_CACHE_CAPACITY`] topics.
    pub fn new() -> Self {
        Self::with_cache_capacity(DEFAULT_CACHE_CAPACITY)
    }

    /// An empty trie without match cache.
    pub fn without_cache() -> Self {
        SubTrie {
            root: Node::new(),
            generation: 0,
            len: 0,
            filters: 0,
            cache: None,
        }
    }

    /// An empty trie whose match cache holds up to `capacity` topics (0: no cache).
    pub fn with_cache_capacity(capacity: usize) -> Self {
        let mut trie = Self::without_cache();
        if capacity > 0 {
            trie.cache = Some(Mutex::new(Cache {
                generation: 0,
                capacity,
                map: HashMap::new(),
            }));
        }
        trie
    }

    /// Subscribes `key` to `filter` (a valid filter, without `$share/<group>/`),
    /// in share group `group` if any. Returns the previous value when
    /// (filter, group, key) was already subscribed; the value is replaced.
    pub fn insert(&mut self, filter: &str, group: Option<&str>, key: K, value: V) -> Option<V> {
        debug_assert!(
            aerie_proto::topic::validate_topic_filter(filter).is_ok(),
            "invalid filter {filter:?}"
        );
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_or_insert(level);
        }
        let (old, new_filter) = match group {
            None => {
                let was_empty = node.subs.is_empty();
                (node.subs.insert(key, value), was_empty)
            }
            Some(group) => {
                let shared = node.rare_mut().shared.get_or_insert_with(|| {
                    Box::new(Shared {
                        filter: filter.into(),
                        groups: HashMap::new(),
                    })
                });
                match shared.groups.get_mut(group) {
                    Some(set) => (set.insert(key, value), false),
                    None => {
                        let mut set = SubSet::default();
                        set.insert(key, value);
                        shared.groups.insert(group.into(), set);
                        (None, true)
                    }
                }
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        if new_filter {
            self.filters += 1;
        }
        self.changed();
        old
    }

    /// Unsubscribes (filter, group, key); returns its value if it was subscribed.
    pub fn remove(&mut self, filter: &str, group: Option<&str>, key: &K) -> Option<V> {
        let old = self.remove_one(filter, group, key);
        if old.is_some() {
            self.changed();
        }
        old
    }

    /// Removes many subscriptions with a single generation bump (and a single
    /// cache flush), e.g. on disconnect of a clean session. Absent ones are ignored.
    pub fn remove_batch<'a>(
        &mut self,
        items: impl IntoIterator<Item = (&'a str, Option<&'a str>, K)>,
    ) {
        let mut any = false;
        for (filter, group, key) in items {
            any |= self.remove_one(filter, group, &key).is_some();
        }
        if any {
            self.changed();
        }
    }

    /// All subscriptions matching `topic` (a valid, non-empty topic name).
    pub fn match_topic(&self, topic: &str) -> Arc<Matches<K, V>> {
        let Some(cache) = self
            .cache
            .as_ref()
            .filter(|_| topic.len() <= MAX_CACHED_TOPIC_LEN)
        else {
            return Arc::new(self.collect(topic));
        };
        {
            let mut cache = cache.lock();
            if cache.generation != self.generation {
                cache.clear(self.generation);
            } else if let Some(found) = cache.map.get(topic) {
                return Arc::clone(found);
            }
        }
        // Computed without holding the mutex: other readers keep going. The
        // trie cannot change meanwhile (we hold `&self`).
        let found = Arc::new(self.collect(topic));
        let mut cache = cache.lock();
        let entries =
            found.normal.len() + found.shared.iter().map(|s| s.members.len()).sum::<usize>();
        if cache.generation == self.generation && entries <= MAX_CACHED_ENTRIES {
            cache.make_room();
            cache.map.insert(topic.into(), Arc::clone(&found));
        }
        found
    }

    /// Bumped by every change to the subscriptions.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of (filter, group, key) subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of distinct (filter, group) with at least one subscriber
    /// (`group` being `None` for ordinary subscriptions).
    pub fn filters(&self) -> usize {
        self.filters
    }

    fn changed(&mut self) {
        self.generation += 1;
        if let Some(cache) = &mut self.cache {
            cache.get_mut().clear(self.generation);
        }
    }

    /// Removes without touching the generation; prunes empty nodes.
    fn remove_one(&mut self, filter: &str, group: Option<&str>, key: &K) -> Option<V> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.child_mut(level)?;
        }
        let (old, filter_gone) = match group {
            None => {
                let old = node.subs.remove(key)?;
                (old, node.subs.is_empty())
            }
            Some(group) => {
                let shared = node.rare.as_mut()?.shared.as_mut()?;
                let set = shared.groups.get_mut(group)?;
                let old = set.remove(key)?;
                let gone = set.is_empty();
                if gone {
                    shared.groups.remove(group);
                    if shared.groups.is_empty() {
                        node.rare_mut().shared = None;
                        node.tidy();
                    }
                }
                (old, gone)
            }
        };
        let prune = node.is_empty();
        self.len -= 1;
        if filter_gone {
            self.filters -= 1;
        }
        if prune {
            self.prune(filter);
        }
        Some(old)
    }

    /// The node at the end of `filter` is empty: cut the path below the
    /// deepest node that still has other subscribers or other children.
    fn prune(&mut self, filter: &str) {
        // Index of the first level of the trailing run of nodes that hold
        // nothing but the next node of the path.
        let mut cut = None;
        let mut node = &self.root;
        for (i, level) in filter.split('/').enumerate() {
            let Some(child) = node.child(level) else {
                return;
            };
            if !child.has_subscribers() && child.child_count() <= 1 {
                cut.get_or_insert(i);
            } else {
                cut = None;
            }
            node = child;
        }
        let Some(cut) = cut else { return };
        let mut levels = filter.split('/');
        let mut node = &mut self.root;
        for level in levels.by_ref().take(cut) {
            node = node.child_mut(level).expect("path checked above");
        }
        node.remove_child(levels.next().expect("path checked above"));
    }

    fn collect(&self, topic: &str) -> Matches<K, V> {
        let mut out = Matches {
            normal: Vec::new(),
            shared: Vec::new(),
        };
        let root = &self.root;
        // (node, rest of the topic after the node's level; None at the end)
        let mut stack: Vec<(&Node<K, V>, Option<&str>)> = Vec::new();
        let (first, rest) = split_level(topic);
        if !topic.starts_with('$') {
            if let Some(hash) = root.hash() {
                hash.collect(&mut out);
            }
            if let Some(plus) = root.plus() {
                stack.push((plus, rest));
            }
        }
        if let Some(child) = root.children.get(first) {
            stack.push((child, rest));
        }
        while let Some((node, rest)) = stack.pop() {
            // `#` below this node matches the remaining levels, zero or more.
            if let Some(hash) = node.hash() {
                hash.collect(&mut out);
            }
            match rest {
                None => node.collect(&mut out),
                Some(rest) => {
                    let (level, next) = split_level(rest);
                    if let Some(plus) = node.plus() {
                        stack.push((plus, next));
                    }
                    if let Some(child) = node.children.get(level) {
                        stack.push((child, next));
                    }
                }
            }
        }
        out
    }

    /// Number of nodes below the root.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += node.child_count();
            stack.extend(node.children.iter().map(|(_, c)| &**c));
            stack.extend(node.plus());
            stack.extend(node.hash());
        }
        count
    }

    /// Number of topics in the match cache.
    #[cfg(test)]
    fn cache_len(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.lock().map.len())
    }
}

/// `("a", Some("b/c"))` for `"a/b/c"`, `("a", None)` for `"a"`.
fn split_level(s: &str) -> (&str, Option<&str>) {
    match s.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests;
