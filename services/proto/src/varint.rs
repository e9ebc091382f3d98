//! The variable byte integer (MQTT 5.0 §1.5.5): remaining length, property
//! length and subscription identifiers.

/// The largest value four bytes can carry.
pub(crate) const MAX: u32 = 268_435_455;

/// A continuation bit on the fourth byte: the integer would need a fifth.
#[derive(Debug)]
pub(crate) struct TooLong;

/// Parses the integer at the start of `buf`: its value and its length in
/// bytes, or `Ok(None)` while it is incomplete. Non-minimal encodings are
/// accepted, as the specification only requires senders to be minimal.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(u32, usize)>, TooLong> {
    let mut value = 0u32;
    for (i, &b) in buf.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(TooLong)
    } else {
        Ok(None)
    }
}

/// Bytes needed to encode `v` (values above [`MAX`] are the caller's error).
pub(crate) fn len(v: u32) -> usize {
    match v {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        _ => 4,
    }
}

/// The minimal encoding of `v` (which must be at most [`MAX`]) and its length.
pub(crate) fn encode(mut v: u32) -> ([u8; 4], usize) {
    let mut out = [0u8; 4];
    let n = len(v);
    for slot in out.iter_mut().take(n) {
        let mut b = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        *slot = b;
    }
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_round_trip() {
        for v in [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX] {
            let (b, n) = encode(v);
            assert_eq!(n, len(v));
            assert_eq!(parse(&b[..n]).unwrap(), Some((v, n)));
            assert_eq!(parse(&b[..n - 1]).unwrap(), None);
        }
    }

    #[test]
    fn fifth_byte_is_rejected() {
        assert!(parse(&[0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(parse(&[0xFF, 0xFF, 0xFF, 0x7F]).is_ok());
        // Non-minimal but legal.
        assert_eq!(parse(&[0x80, 0x00]).unwrap(), Some((0, 2)));
    }
}
