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
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if name.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// A valid topic filter: at least one character; `#` only as the whole last
/// level; `+` only as a whole level; no U+0000. Does not treat `$share`.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
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
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return if filter == "$share" {
            Err(TopicError::MalformedShare)
        } else {
            Ok(None)
        };
    };
    let (group, inner) = rest.split_once('/').ok_or(TopicError::MalformedShare)?;
    if group.is_empty() || group.contains(['+', '#']) || inner.is_empty() {
        return Err(TopicError::MalformedShare);
    }
    validate_topic_filter(inner).map_err(|_| TopicError::MalformedShare)?;
    Ok(Some(SharedFilter {
        group,
        filter: inner,
    }))
}

/// Does `filter` (already valid, not `$share`) match `topic` (a valid name)?
/// Naive and obviously right: the reference for property tests. A leading `+`
/// or `#` does not match a topic starting with `$`; `a/#` matches `a`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_topic_name("a/b").is_ok());
        assert!(validate_topic_name("/").is_ok());
        assert!(validate_topic_name("$SYS/x").is_ok());
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a\0"), Err(TopicError::NullCharacter));
    }

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/#", "+/+", "/+", "a//b", "+/#", "$SYS/#"] {
            assert!(validate_topic_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "#a", "a+", "+a/b", "a/b#"] {
            assert!(validate_topic_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared() {
        assert_eq!(parse_shared("a/b"), Ok(None));
        assert_eq!(
            parse_shared("$share/g/a/#"),
            Ok(Some(SharedFilter {
                group: "g",
                filter: "a/#"
            }))
        );
        for bad in [
            "$share",
            "$share/",
            "$share/g",
            "$share/g/",
            "$share//a",
            "$share/+/a",
            "$share/g/a#",
        ] {
            assert_eq!(parse_shared(bad), Err(TopicError::MalformedShare), "{bad}");
        }
    }

    #[test]
    fn matching() {
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/a"));
        assert!(!matches("+/a", "$SYS/a"));
        assert!(matches("$SYS/#", "$SYS/a"));
        assert!(matches("+", ""));
        assert!(matches("+/+", "/"));
        assert!(!matches("+", "/"));
        assert!(matches("a/+/c", "a//c"));
        assert!(!matches("a/b", "a"));
        assert!(!matches("a", "a/b"));
    }
}
