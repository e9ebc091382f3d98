//! A map for the places that mostly hold one or a few entries (a filter's
//! subscribers, a trie level's children, a session's subscriptions): a
//! vector searched in order while small, a hash map beyond.
//!
//! It is 24 bytes inline where a `HashMap` is 48 (its hasher included), and
//! one entry costs one small allocation where a hash table's smallest is
//! about 140 bytes: with one subscribed client per topic, these maps are a
//! large part of what an idle connection holds.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Up to this many entries the map is a vector.
const FEW: usize = 16;

#[derive(Debug, Clone)]
pub enum SmallMap<K, V> {
    Few(Vec<(K, V)>),
    /// Boxed: it keeps the enum at a vector's size.
    #[expect(clippy::box_collection, reason = "see above")]
    Many(Box<HashMap<K, V>>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap::Few(Vec::new())
    }
}

impl<K: Eq + Hash, V> SmallMap<K, V> {
    pub fn len(&self) -> usize {
        match self {
            SmallMap::Few(v) => v.len(),
            SmallMap::Many(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Few(v) => v.iter().find(|(k, _)| k.borrow() == key).map(|(_, v)| v),
            SmallMap::Many(m) => m.get(key),
        }
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Few(v) => v
                .iter_mut()
                .find(|(k, _)| k.borrow() == key)
                .map(|(_, v)| v),
            SmallMap::Many(m) => m.get_mut(key),
        }
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self {
            SmallMap::Few(v) => {
                if let Some(slot) = v.iter_mut().find(|(k, _)| *k == key) {
                    return Some(std::mem::replace(&mut slot.1, value));
                }
                if v.len() < FEW {
                    // Doubling from one: `push` would start at four, and
                    // most of these maps hold one entry for their lifetime.
                    if v.len() == v.capacity() {
                        v.reserve_exact(v.capacity().max(1));
                    }
                    v.push((key, value));
                } else {
                    let mut m: HashMap<K, V> = std::mem::take(v).into_iter().collect();
                    m.insert(key, value);
                    *self = SmallMap::Many(Box::new(m));
                }
                None
            }
            SmallMap::Many(m) => m.insert(key, value),
        }
    }

    /// Removes `key`. A map that shrank well below [`FEW`] becomes a vector
    /// again, and an empty one gives its allocation back.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        match self {
            SmallMap::Few(v) => {
                let i = v.iter().position(|(k, _)| k.borrow() == key)?;
                let (_, old) = v.swap_remove(i);
                if v.is_empty() {
                    *v = Vec::new();
                }
                Some(old)
            }
            SmallMap::Many(m) => {
                let old = m.remove(key)?;
                if m.len() <= FEW / 4 {
                    *self = SmallMap::Few(m.drain().collect());
                }
                Some(old)
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let (few, many) = match self {
            SmallMap::Few(v) => (Some(v.iter().map(|(k, v)| (k, v))), None),
            SmallMap::Many(m) => (None, Some(m.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    /// Empties the map, returning what it held.
    pub fn take_all(&mut self) -> impl Iterator<Item = (K, V)> + use<K, V> {
        let (few, many) = match std::mem::take(self) {
            SmallMap::Few(v) => (Some(v.into_iter()), None),
            SmallMap::Many(m) => (None, Some(m.into_iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

impl<K: Eq + Hash, V> Extend<(K, V)> for SmallMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_while_small_a_map_beyond_and_a_vector_again_after_removals() {
        let mut m = SmallMap::default();
        for i in 0..FEW {
            assert_eq!(m.insert(i, i), None);
        }
        assert!(matches!(m, SmallMap::Few(_)));
        assert_eq!(
            m.insert(3, 30),
            Some(3),
            "a replacement, not a second entry"
        );
        m.insert(FEW, FEW);
        assert!(matches!(m, SmallMap::Many(_)));
        assert_eq!(m.len(), FEW + 1);
        assert_eq!(m.get(&3), Some(&30));
        for i in 0..FEW - 2 {
            assert!(m.remove(&i).is_some());
        }
        assert!(matches!(m, SmallMap::Few(_)));
        let mut left: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
        left.sort_unstable();
        assert_eq!(left, [(FEW - 2, FEW - 2), (FEW - 1, FEW - 1), (FEW, FEW)]);
        assert_eq!(m.take_all().count(), 3);
        assert!(m.is_empty());
    }

    #[test]
    fn one_entry_takes_room_for_one_and_growth_doubles() {
        let mut m = SmallMap::default();
        let capacity = |m: &SmallMap<u64, u64>| match m {
            SmallMap::Few(v) => v.capacity(),
            SmallMap::Many(_) => usize::MAX,
        };
        m.insert(0, 0);
        assert_eq!(capacity(&m), 1);
        m.insert(1, 1);
        assert_eq!(capacity(&m), 2);
        m.insert(2, 2);
        assert_eq!(capacity(&m), 4);
        for i in 3..FEW as u64 {
            m.insert(i, i);
        }
        assert_eq!(capacity(&m), FEW);
    }

    #[test]
    fn keys_are_found_by_their_borrowed_form_and_emptied_maps_hold_nothing() {
        let mut m: SmallMap<Box<str>, u8> = SmallMap::default();
        m.insert("a".into(), 1);
        *m.get_mut("a").unwrap() += 1;
        assert!(m.contains_key("a"));
        assert_eq!(m.remove("a"), Some(2));
        assert!(matches!(&m, SmallMap::Few(v) if v.capacity() == 0));
    }

    #[test]
    fn it_is_the_size_of_a_vector() {
        assert_eq!(
            std::mem::size_of::<SmallMap<u64, u64>>(),
            std::mem::size_of::<Vec<(u64, u64)>>()
        );
    }
}
