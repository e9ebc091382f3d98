//! KV keys made of tenant ids and client ids. A key token may hold only
//! `[-_=A-Za-z0-9]` (`.` separates tokens, `/` is kept for nothing here): a
//! token that is not plain is written `=` and its bytes in hex, so every id
//! has one key and no two ids share one.

/// `s` as one key token.
pub(crate) fn token(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        return s.to_owned();
    }
    let mut out = String::with_capacity(1 + 2 * s.len());
    out.push('=');
    for b in s.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The id a key token was made of ([`token`] undone); None if `t` is not
/// one.
pub(crate) fn id_of(t: &str) -> Option<String> {
    let Some(hex) = t.strip_prefix('=') else {
        return Some(t.to_owned());
    };
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::{id_of, token};

    #[test]
    fn a_token_reads_back_as_its_id() {
        for id in ["device-1_a", "a.b", "", "=612e62", "ünï/côdé"] {
            assert_eq!(id_of(&token(id)).as_deref(), Some(id));
        }
        assert_eq!(id_of("=6"), None);
        assert_eq!(id_of("=zz"), None);
    }

    #[test]
    fn plain_ids_stay_readable_and_others_cannot_collide() {
        assert_eq!(token("device-1_a"), "device-1_a");
        assert_eq!(token("a.b"), "=612e62");
        assert_eq!(token(""), "=");
        // An id that looks like an escape is escaped itself.
        assert_eq!(token("=612e62"), "=3d363132653632");
        assert_ne!(token("a/b"), token("a.b"));
    }
}
