//! Decode and encode errors. Every decode error names the MQTT 5 reason code a
//! server sends (in CONNACK or DISCONNECT) when a client's packet fails with it.

use crate::reason::ReasonCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: u32 },
    #[error("reserved packet type {0}")]
    ReservedPacketType(u8),
    #[error("invalid fixed header flags 0x{flags:X} for {packet}")]
    InvalidFlags { packet: &'static str, flags: u8 },
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("invalid UTF-8 string")]
    InvalidUtf8,
    #[error("string contains U+0000")]
    NullCharacter,
    #[error("invalid topic name")]
    InvalidTopicName,
    #[error("unsupported protocol version {0}")]
    UnsupportedProtocolVersion(u8),
    #[error("invalid protocol name")]
    InvalidProtocolName,
    #[error("duplicate property 0x{0:02X}")]
    DuplicateProperty(u8),
    #[error("property 0x{id:02X} is not allowed in {packet}")]
    UnexpectedProperty { id: u8, packet: &'static str },
    #[error("invalid reason code 0x{code:02X} for {packet}")]
    InvalidReasonCode { code: u8, packet: &'static str },
    #[error("packet identifier is 0")]
    ZeroPacketId,
    #[error("invalid QoS 3")]
    InvalidQoS,
    #[error("topic alias is 0")]
    TopicAliasZero,
}

impl DecodeError {
    /// The reason code a server puts in CONNACK or DISCONNECT for this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::InvalidTopicName => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::TopicAliasZero => ReasonCode::TOPIC_ALIAS_INVALID,
            DecodeError::UnsupportedProtocolVersion(_) | DecodeError::InvalidProtocolName => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            DecodeError::Protocol(_)
            | DecodeError::DuplicateProperty(_)
            | DecodeError::ZeroPacketId => ReasonCode::PROTOCOL_ERROR,
            DecodeError::MalformedRemainingLength
            | DecodeError::ReservedPacketType(_)
            | DecodeError::InvalidFlags { .. }
            | DecodeError::Malformed(_)
            | DecodeError::InvalidUtf8
            | DecodeError::NullCharacter
            | DecodeError::UnexpectedProperty { .. }
            | DecodeError::InvalidReasonCode { .. }
            | DecodeError::InvalidQoS => ReasonCode::MALFORMED_PACKET,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("string or binary field of {0} bytes exceeds 65535")]
    FieldTooLong(usize),
    #[error("packet of {0} bytes exceeds the 268435455-byte protocol maximum")]
    PacketTooLarge(usize),
    #[error("{0} cannot be sent with MQTT 3.1.1")]
    NotInV311(&'static str),
    #[error("PUBLISH with QoS > 0 needs a packet identifier")]
    MissingPacketId,
}
