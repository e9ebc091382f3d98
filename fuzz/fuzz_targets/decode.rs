//! Arbitrary bytes into `decode` for both versions: it must never panic, and
//! every packet it accepts must survive encode → decode unchanged.

#![no_main]

use aerie_proto::{ProtocolVersion, decode, encode, encoded_len};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decode(&mut buf, version, 64 * 1024) {
            let mut out = BytesMut::new();
            encode(&packet, version, &mut out).expect("a decoded packet encodes");
            assert_eq!(out.len(), encoded_len(&packet, version));
            let again = decode(&mut out, version, u32::MAX).expect("re-encoded packet decodes");
            assert_eq!(again.as_ref(), Some(&packet));
            assert!(out.is_empty());
        }
    }
});
