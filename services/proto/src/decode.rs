//! Bytes to [`Packet`]s, with every check the specification asks of a receiver.

use bytes::{Bytes, BytesMut};

use crate::property_codec::{self as props};
use crate::reader::Reader;
use crate::topic::validate_topic_name;
use crate::varint;
use crate::*;

/// Total length (fixed header + remaining length) of the packet at the start of
/// `buf`, once its fixed header is complete; `Ok(None)` while it is not.
pub fn peek_packet_len(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    Ok(fixed_header(buf)?.map(|(header_len, remaining)| header_len + remaining))
}

/// The fixed header's length and the remaining length, once complete.
fn fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let Some(rest) = buf.get(1..) else {
        return Ok(None);
    };
    match varint::parse(rest) {
        Ok(Some((remaining, n))) => Ok(Some((1 + n, remaining as usize))),
        Ok(None) => Ok(None),
        Err(varint::TooLong) => Err(DecodeError::MalformedRemainingLength),
    }
}

/// Decodes one packet from the front of `buf`, removing its bytes.
///
/// `Ok(None)`: not enough bytes yet (nothing is consumed). The size check runs
/// on the fixed header alone, so an oversized packet fails before its body is
/// buffered. `version` is the connection's negotiated version; CONNECT reads its
/// own version from its variable header. After an error the connection is
/// unusable and `buf` may have lost the failed packet's bytes.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some((header_len, remaining)) = fixed_header(buf)? else {
        return Ok(None);
    };
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = check_fixed_header(first, version)?;
    let size = header_len + remaining;
    if size as u64 > u64::from(max_packet_size) {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        return Ok(None);
    }
    let mut frame = buf.split_to(size).freeze();
    let mut r = Reader::new(frame.split_off(header_len));
    let packet = body(kind, first & 0x0F, version, &mut r)?;
    r.finish()?;
    Ok(Some(packet))
}

/// Packet type and flags (§2.1.3), checked before the size so a garbage
/// first byte is reported as such.
fn check_fixed_header(first: u8, version: ProtocolVersion) -> Result<u8, DecodeError> {
    let kind = first >> 4;
    let flags = first & 0x0F;
    let expected = match kind {
        0 => return Err(DecodeError::ReservedPacketType(0)),
        15 if !version.is_v5() => return Err(DecodeError::ReservedPacketType(15)),
        PUBLISH => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::InvalidQoS);
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
            }
            return Ok(kind);
        }
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
        _ => 0b0000,
    };
    if flags != expected {
        return Err(DecodeError::InvalidFlags {
            packet: crate::packet_type_name(kind),
            flags,
        });
    }
    Ok(kind)
}

const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;

fn body(kind: u8, flags: u8, v: ProtocolVersion, r: &mut Reader) -> Result<Packet, DecodeError> {
    Ok(match kind {
        CONNECT => Packet::Connect(Box::new(connect(r)?)),
        CONNACK => Packet::ConnAck(connack(v, r)?),
        PUBLISH => Packet::Publish(publish(flags, v, r)?),
        PUBACK => Packet::PubAck(pub_resp(kind, v, r)?),
        PUBREC => Packet::PubRec(pub_resp(kind, v, r)?),
        PUBREL => Packet::PubRel(pub_resp(kind, v, r)?),
        PUBCOMP => Packet::PubComp(pub_resp(kind, v, r)?),
        SUBSCRIBE => Packet::Subscribe(subscribe(v, r)?),
        SUBACK => Packet::SubAck(suback(v, r)?),
        UNSUBSCRIBE => Packet::Unsubscribe(unsubscribe(v, r)?),
        UNSUBACK => Packet::UnsubAck(unsuback(v, r)?),
        PINGREQ => Packet::PingReq,
        PINGRESP => Packet::PingResp,
        DISCONNECT => Packet::Disconnect(disconnect(v, r)?),
        _ => Packet::Auth(auth(r)?),
    })
}

/// Reason codes each packet may carry (MQTT 5.0 §3.x.2.1).
mod allowed {
    pub(super) const CONNACK: &[u8] = &[
        0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95,
        0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
    ];
    pub(super) const PUBACK_PUBREC: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
    pub(super) const PUBREL_PUBCOMP: &[u8] = &[0x00, 0x92];
    pub(super) const SUBACK: &[u8] = &[
        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
    ];
    pub(super) const SUBACK_V311: &[u8] = &[0x00, 0x01, 0x02, 0x80];
    pub(super) const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    pub(super) const DISCONNECT: &[u8] = &[
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
        0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    pub(super) const AUTH: &[u8] = &[0x00, 0x18, 0x19];
}

fn reason(r: &mut Reader, allowed: &[u8], packet: &'static str) -> Result<ReasonCode, DecodeError> {
    let code = r.u8()?;
    if allowed.contains(&code) {
        Ok(ReasonCode(code))
    } else {
        Err(DecodeError::InvalidReasonCode { code, packet })
    }
}

fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(id),
    }
}

fn qos(bits: u8) -> Result<QoS, DecodeError> {
    QoS::from_u8(bits).ok_or(DecodeError::InvalidQoS)
}

fn connect(r: &mut Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQTT", _) | (b"MQIsdp", _) => {
            return Err(DecodeError::UnsupportedProtocolVersion(level));
        }
        _ => return Err(DecodeError::InvalidProtocolName),
    };
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("reserved CONNECT flag set"));
    }
    let has_will = flags & 0x04 != 0;
    let will_qos = qos((flags >> 3) & 0b11)?;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::Malformed(
            "will QoS or retain without will flag",
        ));
    }
    if protocol == ProtocolVersion::V311 && has_password && !has_username {
        return Err(DecodeError::Malformed(
            "password flag without user name flag",
        ));
    }
    let keep_alive = r.u16()?;
    let properties: ConnectProperties = if protocol.is_v5() {
        props::read(r)?
    } else {
        ConnectProperties::default()
    };
    check_auth(
        &properties.authentication_method,
        &properties.authentication_data,
    )?;

    let client_id = r.string()?;
    let will = if has_will {
        let properties = if protocol.is_v5() {
            props::read(r)?
        } else {
            WillProperties::default()
        };
        let topic = r.string()?;
        validate_topic_name(&topic).map_err(|_| DecodeError::InvalidTopicName)?;
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    Ok(Connect {
        protocol,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// Authentication Data is meaningless without a method (§3.1.2.11.10).
fn check_auth(method: &Option<ByteString>, data: &Option<Bytes>) -> Result<(), DecodeError> {
    if method.is_none() && data.is_some() {
        return Err(DecodeError::Protocol(
            "authentication data without authentication method",
        ));
    }
    Ok(())
}

fn connack(v: ProtocolVersion, r: &mut Reader) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::Malformed("reserved CONNACK flags set"));
    }
    let session_present = flags & 0x01 != 0;
    if !v.is_v5() {
        let code = r.u8()?;
        let reason = ReasonCode::from_v3_connack(code).ok_or(DecodeError::InvalidReasonCode {
            code,
            packet: "CONNACK",
        })?;
        return Ok(ConnAck {
            session_present,
            reason,
            properties: ConnAckProperties::default(),
        });
    }
    let reason = reason(r, allowed::CONNACK, "CONNACK")?;
    let properties: ConnAckProperties = props::read(r)?;
    check_auth(
        &properties.authentication_method,
        &properties.authentication_data,
    )?;
    Ok(ConnAck {
        session_present,
        reason,
        properties,
    })
}

fn publish(flags: u8, v: ProtocolVersion, r: &mut Reader) -> Result<Publish, DecodeError> {
    let qos = qos((flags >> 1) & 0b11)?;
    let topic = r.string()?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(packet_id(r)?)
    };
    let properties: PublishProperties = if v.is_v5() {
        props::read(r)?
    } else {
        PublishProperties::default()
    };
    // An empty topic stands for the one bound to the topic alias (§3.3.2.3.4).
    if !(topic.is_empty() && properties.topic_alias.is_some()) {
        validate_topic_name(&topic).map_err(|_| DecodeError::InvalidTopicName)?;
    }
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        payload: r.rest(),
        properties,
    })
}

fn pub_resp(kind: u8, v: ProtocolVersion, r: &mut Reader) -> Result<PubResp, DecodeError> {
    let packet_id = packet_id(r)?;
    let mut resp = PubResp {
        packet_id,
        ..PubResp::default()
    };
    // MQTT 5 may stop after the packet id (Success) or after the reason code.
    if v.is_v5() && !r.is_empty() {
        let codes = if kind == PUBACK || kind == PUBREC {
            allowed::PUBACK_PUBREC
        } else {
            allowed::PUBREL_PUBCOMP
        };
        resp.reason = reason(r, codes, crate::packet_type_name(kind))?;
        if !r.is_empty() {
            resp.properties = props::read(r)?;
        }
    }
    Ok(resp)
}

fn subscribe(v: ProtocolVersion, r: &mut Reader) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v.is_v5() {
        props::read(r)?
    } else {
        SubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = filter(r)?;
        let options = subscription_options(r.u8()?, v)?;
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

/// A topic filter: non-empty UTF-8. Wildcard syntax is left to the broker,
/// which answers per filter with 0x8F instead of dropping the connection.
fn filter(r: &mut Reader) -> Result<ByteString, DecodeError> {
    let f = r.string()?;
    if f.is_empty() {
        return Err(DecodeError::Malformed("empty topic filter"));
    }
    Ok(f)
}

fn subscription_options(b: u8, v: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let qos = qos(b & 0b11)?;
    if !v.is_v5() {
        if b & 0xFC != 0 {
            return Err(DecodeError::Malformed(
                "reserved subscription option bits set",
            ));
        }
        return Ok(SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        });
    }
    if b & 0xC0 != 0 {
        return Err(DecodeError::Malformed(
            "reserved subscription option bits set",
        ));
    }
    let retain_handling = match (b >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::Protocol("retain handling 3")),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: b & 0x04 != 0,
        retain_as_published: b & 0x08 != 0,
        retain_handling,
    })
}

fn suback(v: ProtocolVersion, r: &mut Reader) -> Result<SubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let (properties, codes) = if v.is_v5() {
        (props::read(r)?, allowed::SUBACK)
    } else {
        (AckProperties::default(), allowed::SUBACK_V311)
    };
    let reasons = reasons(r, codes, "SUBACK")?;
    Ok(SubAck {
        packet_id,
        reasons,
        properties,
    })
}

/// A non-empty list of reason codes filling the rest of the packet.
fn reasons(
    r: &mut Reader,
    codes: &[u8],
    packet: &'static str,
) -> Result<Vec<ReasonCode>, DecodeError> {
    if r.is_empty() {
        return Err(DecodeError::Protocol(
            "acknowledgement without reason codes",
        ));
    }
    let mut out = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        out.push(reason(r, codes, packet)?);
    }
    Ok(out)
}

fn unsubscribe(v: ProtocolVersion, r: &mut Reader) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = if v.is_v5() {
        props::read(r)?
    } else {
        UnsubscribeProperties::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(filter(r)?);
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

fn unsuback(v: ProtocolVersion, r: &mut Reader) -> Result<UnsubAck, DecodeError> {
    let packet_id = packet_id(r)?;
    if !v.is_v5() {
        return Ok(UnsubAck {
            packet_id,
            ..UnsubAck::default()
        });
    }
    let properties = props::read(r)?;
    let reasons = reasons(r, allowed::UNSUBACK, "UNSUBACK")?;
    Ok(UnsubAck {
        packet_id,
        reasons,
        properties,
    })
}

fn disconnect(v: ProtocolVersion, r: &mut Reader) -> Result<Disconnect, DecodeError> {
    let mut d = Disconnect::default();
    // An empty body means Normal disconnection; properties may be cut too.
    if v.is_v5() && !r.is_empty() {
        d.reason = reason(r, allowed::DISCONNECT, "DISCONNECT")?;
        if !r.is_empty() {
            d.properties = props::read(r)?;
        }
    }
    Ok(d)
}

fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut a = Auth::default();
    if !r.is_empty() {
        a.reason = reason(r, allowed::AUTH, "AUTH")?;
        if !r.is_empty() {
            a.properties = props::read(r)?;
        }
    }
    check_auth(
        &a.properties.authentication_method,
        &a.properties.authentication_data,
    )?;
    Ok(a)
}
