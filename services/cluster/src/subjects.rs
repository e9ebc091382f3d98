//! MQTT topics and filters as NATS subjects: `<prefix>.<kind>.<tenant>.<levels>`,
//! one token per topic level.
//!
//! NATS forbids in a token what MQTT allows in a level (`.`, whitespace, an
//! empty level) and gives `*` and `>` a meaning, so a level is escaped:
//! those characters, `%` itself, and control characters become `%XX` (per
//! UTF-8 byte), and an empty level is the token `%`. Anything else stays as
//! it is, so plain levels stay readable (`aerie.t.acme.sensors.temp`). The
//! escape depends on the level alone, so a topic level and a filter level
//! are equal exactly when their tokens are: NATS matching on tokens is MQTT
//! matching on levels, except for `$`-topics, which NATS wildcards match and
//! MQTT's leading wildcards do not. That only widens a node's interest: the
//! node's own trie decides what is delivered.

/// Subjects of one kind (`t`: live messages, `r`: retained) under a prefix.
#[derive(Debug, Clone)]
pub struct Subjects {
    /// `<prefix>.<kind>`: the tokens before the tenant.
    root: String,
}

impl Subjects {
    /// `prefix` is a valid NATS token (the deployment's `--nats-prefix`).
    pub fn new(prefix: &str, kind: &str) -> Subjects {
        Subjects {
            root: format!("{prefix}.{kind}"),
        }
    }

    /// The subject a message of `tenant` on `topic` (a valid topic name) goes to.
    pub fn topic(&self, tenant: &str, topic: &str) -> String {
        let mut s = self.tenant_root(tenant);
        for level in topic.split('/') {
            s.push('.');
            escape(level, &mut s);
        }
        s
    }

    /// `<prefix>.<kind>.<tenant>`: every subject of the tenant is under it.
    pub fn tenant_root(&self, tenant: &str) -> String {
        let mut s = String::with_capacity(self.root.len() + tenant.len() + 32);
        s.push_str(&self.root);
        s.push('.');
        escape(tenant, &mut s);
        s
    }

    /// The subjects whose union is the topics `filter` (a valid, non-shared
    /// filter) matches: `a/+` → `a.*`; `a/#` → `a` and `a.>` (`#` also
    /// matches its parent level); `#` → `>` (every topic has a level).
    pub fn filter(&self, tenant: &str, filter: &str) -> Vec<String> {
        let (levels, multi) = match filter.strip_suffix('#') {
            Some("") => return vec![format!("{}.>", self.tenant_root(tenant))],
            Some(parent) => (parent.strip_suffix('/').unwrap_or(parent), true),
            None => (filter, false),
        };
        let mut s = self.tenant_root(tenant);
        for level in levels.split('/') {
            s.push('.');
            if level == "+" {
                s.push('*');
            } else {
                escape(level, &mut s);
            }
        }
        if multi {
            let all = format!("{s}.>");
            vec![s, all]
        } else {
            vec![s]
        }
    }

    /// The tenant and topic of a subject made by [`Subjects::topic`].
    pub fn parse(&self, subject: &str) -> Option<(String, String)> {
        let rest = subject.strip_prefix(&self.root)?.strip_prefix('.')?;
        let (tenant, levels) = rest.split_once('.')?;
        let mut topic = String::with_capacity(levels.len());
        for (i, token) in levels.split('.').enumerate() {
            if i > 0 {
                topic.push('/');
            }
            topic.push_str(&unescape(token)?);
        }
        Some((unescape(tenant)?, topic))
    }
}

/// Whether `c` must be escaped in a token.
fn must_escape(c: char) -> bool {
    matches!(c, '.' | '*' | '>' | '%') || c.is_whitespace() || c.is_control()
}

/// Appends `level` as one token.
pub fn escape(level: &str, out: &mut String) {
    if level.is_empty() {
        out.push('%');
        return;
    }
    for c in level.chars() {
        if must_escape(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push('%');
                out.push(hex(b >> 4));
                out.push(hex(b & 0xF));
            }
        } else {
            out.push(c);
        }
    }
}

fn hex(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble)])
}

/// The level a token made by [`escape`] stands for; `None` if no level
/// escapes to it.
pub fn unescape(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    if token.is_empty() {
        return None;
    }
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let digits = tail.get(..2)?;
            let s = std::str::from_utf8(digits).ok()?;
            bytes.push(u8::from_str_radix(s, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests;
