//! The MQTT 3.1.1 and 5.0 wire format, and nothing else.
//!
//! **Architecture invariant:** this crate does no I/O and knows nothing of tokio,
//! sockets, tenants or sessions. It turns bytes into [`Packet`]s and back, and it
//! checks everything the specification says a receiver must check, mapping each
//! failure to the MQTT 5 [`ReasonCode`] a server sends for it.
//!
//! Payloads, topics and strings are [`bytes::Bytes`] slices of the read buffer:
//! decoding a PUBLISH copies nothing.

#![forbid(unsafe_code)]

mod decode;
mod encode;
mod error;
mod packet;
mod properties;
mod property_codec;
mod reader;
mod reason;
mod sink;
pub mod topic;
mod varint;

pub use bytestring::ByteString;
pub use decode::{decode, peek_packet_len};
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use properties::*;
pub use reason::ReasonCode;
