//! The subscription trie of one tenant.
use std::sync::Arc;

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

pub struct SubTrie<K, V> {
    _p: std::marker::PhantomData<(K, V)>,
}
