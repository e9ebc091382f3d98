//! Topic aliases (MQTT 5 §3.3.2.3.4) in both directions. Each map is boxed
//! and made on first use: most clients use no aliases, and an empty map
//! inline is 48 bytes of every connection.

use std::collections::HashMap;

use aerie_proto::{ByteString, ReasonCode};

/// Aliases the client set for topics it publishes to us.
#[derive(Default)]
pub(crate) struct InboundAliases {
    #[expect(
        clippy::box_collection,
        reason = "boxed: None is 8 bytes, an empty map 48"
    )]
    map: Option<Box<HashMap<u16, ByteString>>>,
}

impl InboundAliases {
    /// Resolves a PUBLISH's topic against its alias: sets the alias when both
    /// are given, looks it up when the topic is empty.
    pub fn resolve(
        &mut self,
        topic: &ByteString,
        alias: Option<u16>,
        maximum: u16,
    ) -> Result<ByteString, ReasonCode> {
        match alias {
            None if topic.is_empty() => Err(ReasonCode::PROTOCOL_ERROR),
            None => Ok(topic.clone()),
            Some(a) if a == 0 || a > maximum => Err(ReasonCode::TOPIC_ALIAS_INVALID),
            Some(a) if topic.is_empty() => self
                .map
                .as_ref()
                .and_then(|m| m.get(&a).cloned())
                .ok_or(ReasonCode::PROTOCOL_ERROR),
            Some(a) => {
                self.map.get_or_insert_default().insert(a, topic.clone());
                Ok(topic.clone())
            }
        }
    }
}

/// Aliases we assign for topics we send, up to the client's maximum. Once
/// all are in use, further topics go out in full.
#[derive(Default)]
pub(crate) struct OutboundAliases {
    #[expect(
        clippy::box_collection,
        reason = "boxed: None is 8 bytes, an empty map 48"
    )]
    map: Option<Box<HashMap<ByteString, u16>>>,
    pub maximum: u16,
}

/// How to send a topic.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AliasUse {
    None,
    /// Send the topic and this new alias.
    Assign(u16),
    /// Send an empty topic with this alias.
    Reuse(u16),
}

impl OutboundAliases {
    pub fn new(maximum: u16) -> OutboundAliases {
        OutboundAliases { map: None, maximum }
    }

    pub fn lookup(&mut self, topic: &ByteString) -> AliasUse {
        if self.maximum == 0 {
            return AliasUse::None;
        }
        let map = self.map.get_or_insert_default();
        if let Some(&a) = map.get(topic) {
            return AliasUse::Reuse(a);
        }
        if map.len() < usize::from(self.maximum) {
            let a = map.len() as u16 + 1;
            map.insert(topic.clone(), a);
            return AliasUse::Assign(a);
        }
        AliasUse::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_alias_set_then_used() {
        let mut a = InboundAliases::default();
        assert_eq!(a.resolve(&"t/1".into(), Some(3), 10), Ok("t/1".into()));
        assert_eq!(a.resolve(&"".into(), Some(3), 10), Ok("t/1".into()));
        assert_eq!(
            a.resolve(&"".into(), Some(4), 10),
            Err(ReasonCode::PROTOCOL_ERROR)
        );
        assert_eq!(
            a.resolve(&"x".into(), Some(11), 10),
            Err(ReasonCode::TOPIC_ALIAS_INVALID)
        );
        assert_eq!(
            a.resolve(&"x".into(), Some(0), 10),
            Err(ReasonCode::TOPIC_ALIAS_INVALID)
        );
    }

    #[test]
    fn outbound_aliases_fill_up_then_send_full_topics() {
        let mut a = OutboundAliases::new(1);
        assert_eq!(a.lookup(&"a".into()), AliasUse::Assign(1));
        assert_eq!(a.lookup(&"a".into()), AliasUse::Reuse(1));
        assert_eq!(a.lookup(&"b".into()), AliasUse::None);
    }
}
