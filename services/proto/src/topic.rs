//! Topic names and topic filters as the specification defines them (MQTT 5.0
//! §4.7, 3.1.1 §4.7), plus a naive reference matcher used to test the trie.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic name contains a wildcard")]
    WildcardInName,
    #[error("'#' must be the last level and alone in it")]
    MisplacedMultiLevelWildcard,
    #[error("'+' must be alone in its level")]
    MisplacedSingleLevelWildcard,
    #[error("shared subscription needs $share/<group>/<filter>")]
    MalformedShare,
    #[error("topic contains U+0000")]
    NullCharacter,
}

/// A valid topic name: at least one character, no `+` or `#`, no U+0000.
pub fn validate_topic_name(_name: &str) -> Result<(), TopicError> {
    todo!("codec helper")
}

/// A valid topic filter: at least one character; `#` only as the whole last
/// level; `+` only as a whole level; no U+0000. Does not treat `$share`.
pub fn validate_topic_filter(_filter: &str) -> Result<(), TopicError> {
    todo!("codec helper")
}

/// A `$share/<group>/<filter>` subscription, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

/// `Ok(None)` for an ordinary filter, `Ok(Some(..))` for a valid shared one,
/// `Err(MalformedShare)` when it starts with `$share/` but the group is empty
/// or holds `+`, `#` or `/`, or the filter part is missing or invalid.
pub fn parse_shared(_filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    todo!("codec helper")
}

/// Does `filter` (already valid, not `$share`) match `topic` (a valid name)?
/// Naive and obviously right: the reference for property tests. A leading `+`
/// or `#` does not match a topic starting with `$`; `a/#` matches `a`.
pub fn matches(_filter: &str, _topic: &str) -> bool {
    todo!("codec helper")
}
