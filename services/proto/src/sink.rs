//! Where encoding goes: a `BytesMut`, or a [`Counter`] that only adds up the
//! length. One body writer serves both `encode` and `encoded_len`, so the two
//! cannot disagree.

use bytes::BytesMut;

use crate::EncodeError;
use crate::varint;

pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);

    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    /// A variable byte integer. There is no dedicated error for a value over
    /// 268 435 455, so it reports as an oversized field.
    fn varint(&mut self, v: u32) -> Result<(), EncodeError> {
        if v > varint::MAX {
            return Err(EncodeError::FieldTooLong(v as usize));
        }
        let (b, n) = varint::encode(v);
        self.put(&b[..n]);
        Ok(())
    }

    /// Binary data or a UTF-8 string: a two-byte length, then the bytes.
    fn binary(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        let n = u16::try_from(b.len()).map_err(|_| EncodeError::FieldTooLong(b.len()))?;
        self.u16(n);
        self.put(b);
        Ok(())
    }
}

impl Sink for BytesMut {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}
