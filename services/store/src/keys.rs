//! Key layout. Tenant ids and client ids never contain NUL (the codec
//! rejects U+0000 in strings), so NUL separates key parts and a prefix scan
//! over `tenant NUL client NUL` finds exactly one session's entries.

pub fn session(tenant: &str, client_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + client_id.len() + 1);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k.extend_from_slice(client_id.as_bytes());
    k
}

/// `tenant NUL`: the prefix of everything kept under a tenant.
pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + 1);
    k.extend_from_slice(tenant.as_bytes());
    k.push(0);
    k
}

/// `tenant NUL client NUL`: the prefix of a session's queue and inbound ids.
pub fn session_prefix(tenant: &str, client_id: &str) -> Vec<u8> {
    let mut k = session(tenant, client_id);
    k.push(0);
    k
}

pub fn queued(tenant: &str, client_id: &str, seq: u64) -> Vec<u8> {
    let mut k = session_prefix(tenant, client_id);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn inbound(tenant: &str, client_id: &str, packet_id: u16) -> Vec<u8> {
    let mut k = session_prefix(tenant, client_id);
    k.extend_from_slice(&packet_id.to_be_bytes());
    k
}

pub fn message(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

pub fn retained(tenant: &str, topic: &str) -> Vec<u8> {
    session(tenant, topic)
}

/// Splits `a NUL b` (session and retained keys).
pub fn split_pair(key: &[u8]) -> Option<(&str, &str)> {
    let pos = key.iter().position(|b| *b == 0)?;
    let a = std::str::from_utf8(&key[..pos]).ok()?;
    let b = std::str::from_utf8(&key[pos + 1..]).ok()?;
    Some((a, b))
}

/// The trailing big-endian number of a queue or inbound key.
pub fn suffix_u64(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

pub fn suffix_u16(key: &[u8]) -> Option<u16> {
    let tail: [u8; 2] = key.get(key.len().checked_sub(2)?..)?.try_into().ok()?;
    Some(u16::from_be_bytes(tail))
}
