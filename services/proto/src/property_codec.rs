//! Decoding and encoding of MQTT 5 properties (§2.2.2).
//!
//! One table per packet kind ([`property_set!`] below) says which property
//! identifiers that packet allows and which field each fills; the table drives
//! both directions. The wire type of each identifier is fixed by the
//! specification and lives in the `Kind` types.

use bytes::Bytes;
use bytestring::ByteString;

use crate::properties::id;
use crate::properties::*;
use crate::reader::Reader;
use crate::sink::{Counter, Sink};
use crate::{DecodeError, EncodeError};

/// A packet kind's property struct.
pub(crate) trait PropertySet: Default {
    /// Decodes the value of property `id` into its field.
    fn read_one(&mut self, id: u8, r: &mut Reader) -> Result<(), DecodeError>;
    /// Writes every present property, without the length prefix.
    fn write_all<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError>;
}

/// Reads a property length and the properties it covers.
pub(crate) fn read<P: PropertySet>(r: &mut Reader) -> Result<P, DecodeError> {
    let len = r.varint()? as usize;
    if len > r.remaining() {
        return Err(DecodeError::Malformed("property length exceeds the packet"));
    }
    let mut inner = Reader::new(r.take(len)?);
    let mut props = P::default();
    while !inner.is_empty() {
        // Identifiers are variable byte integers, but every defined one is
        // below 0x80: a first byte with the top bit set is unknown already.
        let id = inner.u8()?;
        props.read_one(id, &mut inner)?;
    }
    Ok(props)
}

/// Writes the property length and the properties.
pub(crate) fn write<P: PropertySet, S: Sink>(props: &P, s: &mut S) -> Result<(), EncodeError> {
    let len = len(props)?;
    s.varint(u32::try_from(len).map_err(|_| EncodeError::PacketTooLarge(len))?)?;
    props.write_all(s)
}

/// Bytes of the properties, without the length prefix.
pub(crate) fn len<P: PropertySet>(props: &P) -> Result<usize, EncodeError> {
    let mut c = Counter::default();
    props.write_all(&mut c)?;
    Ok(c.0)
}

/// Range rules that hold for an identifier wherever it appears.
fn check_int(id: u8, v: u32) -> Result<(), DecodeError> {
    match id {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::REQUEST_PROBLEM_INFORMATION
        | id::REQUEST_RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE
            if v > 1 =>
        {
            Err(DecodeError::Protocol("property value must be 0 or 1"))
        }
        // Its own reason code, 0x94 (MQTT 5 §3.3.2.3.4), not a generic protocol error.
        id::TOPIC_ALIAS if v == 0 => Err(DecodeError::TopicAliasZero),
        id::RECEIVE_MAXIMUM | id::MAXIMUM_PACKET_SIZE | id::SUBSCRIPTION_IDENTIFIER if v == 0 => {
            Err(DecodeError::Protocol("property value must not be 0"))
        }
        _ => Ok(()),
    }
}

fn once<T>(slot: &mut Option<T>, id: u8, v: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(v);
    Ok(())
}

/// The wire type of a property: how to read it into, and write it from, its field.
trait Kind {
    type Field;
    fn read(field: &mut Self::Field, id: u8, r: &mut Reader) -> Result<(), DecodeError>;
    fn write<S: Sink>(field: &Self::Field, id: u8, s: &mut S) -> Result<(), EncodeError>;
}

struct Byte;
struct TwoByte;
struct FourByte;
struct VarInt;
/// A variable byte integer that may repeat (subscription identifiers in PUBLISH).
struct VarInts;
struct Utf8;
struct Binary;
struct Pairs;

impl Kind for Byte {
    type Field = Option<u8>;
    fn read(f: &mut Option<u8>, id: u8, r: &mut Reader) -> Result<(), DecodeError> {
        let v = r.u8()?;
        check_int(id, v.into())?;
        once(f, id, v)
    }
    fn write<S: Sink>(f: &Option<u8>, id: u8, s: &mut S) -> Result<(), EncodeError> {
        if let Some(v) = *f {
            s.u8(id);
            s.u8(v);
        }
        Ok(())
    }
}

impl Kind for TwoByte {
    type Field = Option<u16>;
    fn read(f: &mut Option<u16>, id: u8, r: &mut Reader) -> Result<(), DecodeError> {
        let v = r.u16()?;
        check_int(id, v.into())?;
        once(f, id, v)
    }
    fn write<S: Sink>(f: &Option<u16>, id: u8, s: &mut S) -> Result<(), EncodeError> {
        if let Some(v) = *f {
            s.u8(id);
            s.u16(v);
        }
        Ok(())
    }
}

impl Kind for FourByte {
    type Field = Option<u32>;
    fn read(f: &mut Option<u32>, id: u8, r: &mut Reader) -> Result<(), DecodeError> {
        let v = r.u32()?;
        check_int(id, v)?;
        once(f, id, v)
    }
    fn write<S: Sink>(f: &Option<u32>, id: u8, s: &mut S) -> Result<(), EncodeError> {
        if let Some(v) = *f {
            s.u8(id);
            s.u32(v);
        }
        Ok(())
    }
}

impl Kind for VarInt {
    type Field = Option<u32>;
    fn read(f: &mut Option<u32>, id: u8, r: &mut Reader) -> Result<(), DecodeError> {
        let v = r.varint()?;
        check_int(id, v)?;
        once(f, id, v)
    }
    fn write<S: Sink>(f: &Option<u32>, id: u8, s: &mut S) -> Result<(), EncodeError> {
        if let Some(v) = *f {
            s.u8(id);
            s.varint(v)?;
        }
        Ok(())
    }
}

impl Kind for VarInts {
    type Field = Vec<u32>;
    fn read(f: &mut Vec<u32>, id: u8, r: &mut Reader) -> Result<(), DecodeError> {
        let v = r.varint()?;
        check_int(id, v)?;
        f.push(v);
        Ok(())
    }
    fn write<S: Sink>(f: &Vec<u32>, id: u8, s: &mut S) -> Result<(), EncodeError> {
        for &v in f {
            s.u8(id);
            s.varint(v)?;
        }
        Ok(())
    }
}

impl Kind for Utf8 {
    type Field = Option<ByteString>;
    fn read(f: &mut Option<ByteString>, id: u8, r: &mut Reader) -> Result<(), DecodeError> {
        let v = r.string()?;
        once(f, id, v)
    }
    fn write<S: Sink>(f: &Option<ByteString>, id: u8, s: &mut S) -> Result<(), EncodeError> {
        if let Some(v) = f {
            s.u8(id);
            s.binary(v.as_bytes())?;
        }
        Ok(())
    }
}

impl Kind for Binary {
    type Field = Option<Bytes>;
    fn read(f: &mut Option<Bytes>, id: u8, r: &mut Reader) -> Result<(), DecodeError> {
        let v = r.binary()?;
        once(f, id, v)
    }
    fn write<S: Sink>(f: &Option<Bytes>, id: u8, s: &mut S) -> Result<(), EncodeError> {
        if let Some(v) = f {
            s.u8(id);
            s.binary(v)?;
        }
        Ok(())
    }
}

impl Kind for Pairs {
    type Field = Vec<UserProperty>;
    fn read(f: &mut Vec<UserProperty>, _id: u8, r: &mut Reader) -> Result<(), DecodeError> {
        let k = r.string()?;
        let v = r.string()?;
        f.push((k, v));
        Ok(())
    }
    fn write<S: Sink>(f: &Vec<UserProperty>, id: u8, s: &mut S) -> Result<(), EncodeError> {
        for (k, v) in f {
            s.u8(id);
            s.binary(k.as_bytes())?;
            s.binary(v.as_bytes())?;
        }
        Ok(())
    }
}

/// The table: for a property struct, each allowed identifier, its field and
/// its wire type. Anything not listed is [`DecodeError::UnexpectedProperty`].
macro_rules! property_set {
    ($ty:ty, $packet:literal, { $($id:ident => $field:ident : $kind:ident),* $(,)? }) => {
        impl PropertySet for $ty {
            fn read_one(&mut self, pid: u8, r: &mut Reader) -> Result<(), DecodeError> {
                match pid {
                    $(id::$id => $kind::read(&mut self.$field, pid, r),)*
                    _ => Err(DecodeError::UnexpectedProperty { id: pid, packet: $packet }),
                }
            }
            fn write_all<S: Sink>(&self, s: &mut S) -> Result<(), EncodeError> {
                $($kind::write(&self.$field, id::$id, s)?;)*
                Ok(())
            }
        }
    };
}

property_set!(ConnectProperties, "CONNECT", {
    SESSION_EXPIRY_INTERVAL => session_expiry_interval: FourByte,
    RECEIVE_MAXIMUM => receive_maximum: TwoByte,
    MAXIMUM_PACKET_SIZE => maximum_packet_size: FourByte,
    TOPIC_ALIAS_MAXIMUM => topic_alias_maximum: TwoByte,
    REQUEST_RESPONSE_INFORMATION => request_response_information: Byte,
    REQUEST_PROBLEM_INFORMATION => request_problem_information: Byte,
    USER_PROPERTY => user_properties: Pairs,
    AUTHENTICATION_METHOD => authentication_method: Utf8,
    AUTHENTICATION_DATA => authentication_data: Binary,
});

property_set!(WillProperties, "CONNECT will", {
    WILL_DELAY_INTERVAL => will_delay_interval: FourByte,
    PAYLOAD_FORMAT_INDICATOR => payload_format_indicator: Byte,
    MESSAGE_EXPIRY_INTERVAL => message_expiry_interval: FourByte,
    CONTENT_TYPE => content_type: Utf8,
    RESPONSE_TOPIC => response_topic: Utf8,
    CORRELATION_DATA => correlation_data: Binary,
    USER_PROPERTY => user_properties: Pairs,
});

property_set!(ConnAckProperties, "CONNACK", {
    SESSION_EXPIRY_INTERVAL => session_expiry_interval: FourByte,
    RECEIVE_MAXIMUM => receive_maximum: TwoByte,
    MAXIMUM_QOS => maximum_qos: Byte,
    RETAIN_AVAILABLE => retain_available: Byte,
    MAXIMUM_PACKET_SIZE => maximum_packet_size: FourByte,
    ASSIGNED_CLIENT_IDENTIFIER => assigned_client_identifier: Utf8,
    TOPIC_ALIAS_MAXIMUM => topic_alias_maximum: TwoByte,
    REASON_STRING => reason_string: Utf8,
    USER_PROPERTY => user_properties: Pairs,
    WILDCARD_SUBSCRIPTION_AVAILABLE => wildcard_subscription_available: Byte,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE => subscription_identifiers_available: Byte,
    SHARED_SUBSCRIPTION_AVAILABLE => shared_subscription_available: Byte,
    SERVER_KEEP_ALIVE => server_keep_alive: TwoByte,
    RESPONSE_INFORMATION => response_information: Utf8,
    SERVER_REFERENCE => server_reference: Utf8,
    AUTHENTICATION_METHOD => authentication_method: Utf8,
    AUTHENTICATION_DATA => authentication_data: Binary,
});

property_set!(PublishProperties, "PUBLISH", {
    PAYLOAD_FORMAT_INDICATOR => payload_format_indicator: Byte,
    MESSAGE_EXPIRY_INTERVAL => message_expiry_interval: FourByte,
    TOPIC_ALIAS => topic_alias: TwoByte,
    RESPONSE_TOPIC => response_topic: Utf8,
    CORRELATION_DATA => correlation_data: Binary,
    USER_PROPERTY => user_properties: Pairs,
    SUBSCRIPTION_IDENTIFIER => subscription_identifiers: VarInts,
    CONTENT_TYPE => content_type: Utf8,
});

property_set!(AckProperties, "acknowledgement", {
    REASON_STRING => reason_string: Utf8,
    USER_PROPERTY => user_properties: Pairs,
});

property_set!(SubscribeProperties, "SUBSCRIBE", {
    SUBSCRIPTION_IDENTIFIER => subscription_identifier: VarInt,
    USER_PROPERTY => user_properties: Pairs,
});

property_set!(UnsubscribeProperties, "UNSUBSCRIBE", {
    USER_PROPERTY => user_properties: Pairs,
});

property_set!(DisconnectProperties, "DISCONNECT", {
    SESSION_EXPIRY_INTERVAL => session_expiry_interval: FourByte,
    REASON_STRING => reason_string: Utf8,
    USER_PROPERTY => user_properties: Pairs,
    SERVER_REFERENCE => server_reference: Utf8,
});

property_set!(AuthProperties, "AUTH", {
    AUTHENTICATION_METHOD => authentication_method: Utf8,
    AUTHENTICATION_DATA => authentication_data: Binary,
    REASON_STRING => reason_string: Utf8,
    USER_PROPERTY => user_properties: Pairs,
});
