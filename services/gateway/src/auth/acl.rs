//! What a token lets its client publish and subscribe to: the `acl` claim's
//! topic filters with `${client_id}` and `${sub}` filled in.

use aerie_proto::topic;

use super::Acl;

/// A connection's publish and subscribe permissions (from a token with an
/// `acl` claim; a token without one, or an anonymous client, has none and
/// may use every topic of its tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    publish: Vec<String>,
    subscribe: Vec<String>,
}

impl Permissions {
    /// `acl` for the client `client_id` whose token's subject is `sub`. A
    /// filter whose placeholder value would change its shape (a value with
    /// `/`, `+` or `#`, or an empty one) is left out: it allows nothing.
    pub fn new(acl: &Acl, client_id: &str, sub: &str) -> Permissions {
        let fill = |filters: &[String]| {
            filters
                .iter()
                .filter_map(|f| substitute(f, client_id, sub))
                .collect()
        };
        Permissions {
            publish: fill(&acl.publish),
            subscribe: fill(&acl.subscribe),
        }
    }

    /// May the client publish to `topic_name`?
    pub fn may_publish(&self, topic_name: &str) -> bool {
        self.publish.iter().any(|f| topic::matches(f, topic_name))
    }

    /// May the client subscribe to `filter` (`$share/{group}/` aside)? Only
    /// if one allowed filter matches every topic that `filter` matches.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        let filter = match topic::parse_shared(filter) {
            Ok(Some(shared)) => shared.filter,
            _ => filter,
        };
        self.subscribe.iter().any(|allowed| covers(allowed, filter))
    }
}

fn substitute(filter: &str, client_id: &str, sub: &str) -> Option<String> {
    let mut out = filter.to_owned();
    for (placeholder, value) in [("${client_id}", client_id), ("${sub}", sub)] {
        if out.contains(placeholder) {
            let shaped = value.is_empty() || value.contains(['/', '+', '#']);
            if shaped {
                return None;
            }
            out = out.replace(placeholder, value);
        }
    }
    topic::validate_topic_filter(&out).ok().map(|_| out)
}

/// Whether every topic `requested` matches is matched by `allowed`.
fn covers(allowed: &str, requested: &str) -> bool {
    if requested.starts_with('$') != allowed.starts_with('$')
        && (allowed.starts_with('+') || allowed.starts_with('#'))
    {
        return false;
    }
    let mut a = allowed.split('/');
    let mut r = requested.split('/');
    loop {
        match (a.next(), r.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(x), Some(y)) if x == y && x != "+" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(publish: &[&str], subscribe: &[&str]) -> Permissions {
        let acl = Acl {
            publish: publish.iter().map(|s| s.to_string()).collect(),
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        };
        Permissions::new(&acl, "dev-1", "user-7")
    }

    #[test]
    fn publish_needs_a_matching_filter_with_placeholders_filled_in() {
        let p = perms(&["sensors/${client_id}/#", "users/${sub}/out"], &[]);
        assert!(p.may_publish("sensors/dev-1/temp"));
        assert!(p.may_publish("sensors/dev-1"));
        assert!(p.may_publish("users/user-7/out"));
        assert!(!p.may_publish("sensors/dev-2/temp"));
        assert!(!p.may_publish("users/user-8/out"));
        assert!(!p.may_publish("other"));
    }

    #[test]
    fn subscribe_needs_an_allowed_filter_that_covers_the_requested_one() {
        let p = perms(&[], &["cmd/${client_id}/#", "fleet/+/status"]);
        for ok in [
            "cmd/dev-1/#",
            "cmd/dev-1/reboot",
            "cmd/dev-1/+",
            "cmd/dev-1",
            "fleet/+/status",
            "fleet/a/status",
            "$share/g/fleet/a/status",
        ] {
            assert!(p.may_subscribe(ok), "{ok}");
        }
        for denied in [
            "#",
            "cmd/#",
            "cmd/+/reboot",
            "fleet/#",
            "fleet/+/+",
            "fleet/a/status/x",
            "$share/g/#",
            "$SYS/#",
        ] {
            assert!(!p.may_subscribe(denied), "{denied}");
        }
    }

    #[test]
    fn a_placeholder_value_with_wildcards_or_levels_allows_nothing() {
        let acl = Acl {
            publish: vec!["d/${client_id}/#".into()],
            subscribe: vec!["d/${client_id}/#".into()],
        };
        for client_id in ["#", "+", "a/b", ""] {
            let p = Permissions::new(&acl, client_id, "s");
            assert!(!p.may_publish("d/x/y"), "{client_id:?}");
            assert!(!p.may_subscribe("d/#"), "{client_id:?}");
        }
    }

    #[test]
    fn empty_lists_allow_nothing() {
        let p = perms(&[], &[]);
        assert!(!p.may_publish("a"));
        assert!(!p.may_subscribe("a"));
    }
}
