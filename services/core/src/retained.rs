//! Retained messages of one tenant: at most one per topic name.

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::Message;
use aerie_proto::{ByteString, topic};

#[derive(Debug, Default)]
pub struct RetainedMap {
    by_topic: HashMap<ByteString, Arc<Message>>,
    bytes: usize,
}

/// What a retained PUBLISH did to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainChange {
    Set,
    Replaced,
    Deleted,
    Unchanged,
}

impl RetainedMap {
    /// Forgets every retained message; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.by_topic.len();
        self.by_topic.clear();
        self.bytes = 0;
        n
    }

    /// Stores `message` as the topic's retained message; an empty payload
    /// deletes it (MQTT 5 §3.3.1.3).
    pub fn apply(&mut self, message: &Arc<Message>) -> RetainChange {
        if message.payload.is_empty() {
            return match self.by_topic.remove(&message.topic) {
                Some(old) => {
                    self.bytes -= old.weight();
                    RetainChange::Deleted
                }
                None => RetainChange::Unchanged,
            };
        }
        self.bytes += message.weight();
        match self.by_topic.insert(message.topic.clone(), message.clone()) {
            Some(old) => {
                self.bytes -= old.weight();
                RetainChange::Replaced
            }
            None => RetainChange::Set,
        }
    }

    /// Unexpired retained messages whose topic matches `filter`.
    pub fn matching(&self, filter: &str, now_ms: u64) -> Vec<Arc<Message>> {
        self.by_topic
            .values()
            .filter(|m| !m.is_expired(now_ms) && topic::matches(filter, &m.topic))
            .cloned()
            .collect()
    }

    /// The retained message of `topic`, if any.
    pub fn get(&self, topic: &str) -> Option<&Arc<Message>> {
        self.by_topic.get(topic)
    }

    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops expired messages; returns how many.
    pub fn purge_expired(&mut self, now_ms: u64) -> usize {
        let before = self.by_topic.len();
        let mut freed = 0;
        self.by_topic.retain(|_, m| {
            let keep = !m.is_expired(now_ms);
            if !keep {
                freed += m.weight();
            }
            keep
        });
        self.bytes -= freed;
        before - self.by_topic.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aerie_proto::QoS;
    use bytes::Bytes;

    fn msg(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Message::published(
            topic.into(),
            Bytes::from_static(payload),
            QoS::AtMostOnce,
            true,
            Default::default(),
            Default::default(),
            Default::default(),
        )
    }

    #[test]
    fn set_replace_delete() {
        let mut r = RetainedMap::default();
        assert_eq!(r.apply(&msg("a/b", b"1")), RetainChange::Set);
        assert_eq!(r.apply(&msg("a/b", b"2")), RetainChange::Replaced);
        assert_eq!(r.matching("a/#", 0)[0].payload, Bytes::from_static(b"2"));
        assert_eq!(r.apply(&msg("a/b", b"")), RetainChange::Deleted);
        assert_eq!(r.apply(&msg("a/b", b"")), RetainChange::Unchanged);
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn wildcard_does_not_see_dollar_topics() {
        let mut r = RetainedMap::default();
        r.apply(&msg("$SYS/x", b"1"));
        r.apply(&msg("x", b"1"));
        assert_eq!(r.matching("#", 0).len(), 1);
        assert_eq!(r.matching("$SYS/#", 0).len(), 1);
    }
}
