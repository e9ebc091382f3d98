//! [`Packet`]s to bytes. The body is written through a [`Sink`] twice: once
//! into a [`Counter`] for the remaining length (which also runs every check, so
//! a failing encode appends nothing), then into the buffer.

use bytes::BytesMut;

use crate::property_codec as props;
use crate::sink::{Counter, Sink};
use crate::varint;
use crate::*;

/// Appends the encoding of `packet` for `version` to `buf`.
///
/// CONNECT is encoded for its own `protocol` field, mirroring [`decode`](crate::decode).
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let first = first_byte(packet, version)?;
    let remaining = remaining_len(packet, version)?;
    buf.reserve(1 + varint::len(remaining) + remaining as usize);
    buf.u8(first);
    buf.varint(remaining)?;
    body(packet, version, buf)
}

/// The number of bytes [`encode`] would append (0 when it would fail).
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    match (first_byte(packet, version), remaining_len(packet, version)) {
        (Ok(_), Ok(n)) => 1 + varint::len(n) + n as usize,
        _ => 0,
    }
}

fn remaining_len(packet: &Packet, version: ProtocolVersion) -> Result<u32, EncodeError> {
    let mut c = Counter::default();
    body(packet, version, &mut c)?;
    match u32::try_from(c.0) {
        Ok(n) if n <= varint::MAX => Ok(n),
        _ => Err(EncodeError::PacketTooLarge(c.0)),
    }
}

fn first_byte(packet: &Packet, version: ProtocolVersion) -> Result<u8, EncodeError> {
    Ok(match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            if p.qos != QoS::AtMostOnce && p.packet_id.is_none() {
                return Err(EncodeError::MissingPacketId);
            }
            // DUP must be 0 on QoS 0 (§3.3.1.1).
            let dup = p.dup && p.qos != QoS::AtMostOnce;
            0x30 | u8::from(dup) << 3 | (p.qos as u8) << 1 | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) if !version.is_v5() => return Err(EncodeError::NotInV311("AUTH")),
        Packet::Auth(_) => 0xF0,
    })
}

fn body<S: Sink>(packet: &Packet, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => connect(c, s),
        Packet::ConnAck(c) => connack(c, v, s),
        Packet::Publish(p) => publish(p, v, s),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            pub_resp(r, v, s)
        }
        Packet::Subscribe(p) => subscribe(p, v, s),
        Packet::SubAck(p) => suback(p, v, s),
        Packet::Unsubscribe(p) => unsubscribe(p, v, s),
        Packet::UnsubAck(p) => unsuback(p, v, s),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => {
            if v.is_v5() {
                reason_and_properties(
                    d.reason,
                    &d.properties,
                    d.properties == Default::default(),
                    s,
                )?;
            }
            Ok(())
        }
        Packet::Auth(a) => reason_and_properties(
            a.reason,
            &a.properties,
            a.properties == Default::default(),
            s,
        ),
    }
}

fn string<S: Sink>(v: &ByteString, s: &mut S) -> Result<(), EncodeError> {
    s.binary(v.as_bytes())
}

fn connect<S: Sink>(c: &Connect, s: &mut S) -> Result<(), EncodeError> {
    let v5 = c.protocol.is_v5();
    s.binary(b"MQTT")?;
    s.u8(c.protocol.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
    }
    flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
    s.u8(flags);
    s.u16(c.keep_alive);
    if v5 {
        props::write(&c.properties, s)?;
    }
    string(&c.client_id, s)?;
    if let Some(w) = &c.will {
        if v5 {
            props::write(&w.properties, s)?;
        }
        string(&w.topic, s)?;
        s.binary(&w.payload)?;
    }
    if let Some(u) = &c.username {
        string(u, s)?;
    }
    if let Some(p) = &c.password {
        s.binary(p)?;
    }
    Ok(())
}

fn connack<S: Sink>(c: &ConnAck, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    s.u8(u8::from(c.session_present));
    if v.is_v5() {
        s.u8(c.reason.0);
        props::write(&c.properties, s)
    } else {
        s.u8(c.reason.to_v3_connack());
        Ok(())
    }
}

fn publish<S: Sink>(p: &Publish, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    string(&p.topic, s)?;
    if p.qos != QoS::AtMostOnce {
        s.u16(p.packet_id.ok_or(EncodeError::MissingPacketId)?);
    }
    if v.is_v5() {
        props::write(&p.properties, s)?;
    }
    s.put(&p.payload);
    Ok(())
}

fn pub_resp<S: Sink>(r: &PubResp, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    s.u16(r.packet_id);
    if v.is_v5() {
        // Success without properties is the bare two-byte form (§3.4.2.1).
        if r.reason != ReasonCode::SUCCESS || !r.properties.is_empty() {
            reason_and_properties(r.reason, &r.properties, r.properties.is_empty(), s)?;
        }
    }
    Ok(())
}

/// A reason code, then properties unless there are none; both omitted for
/// Success without properties (DISCONNECT, AUTH, and the tail of PUBACK etc.).
fn reason_and_properties<P: props::PropertySet, S: Sink>(
    reason: ReasonCode,
    properties: &P,
    no_properties: bool,
    s: &mut S,
) -> Result<(), EncodeError> {
    if reason == ReasonCode::SUCCESS && no_properties {
        return Ok(());
    }
    s.u8(reason.0);
    if !no_properties {
        props::write(properties, s)?;
    }
    Ok(())
}

fn subscribe<S: Sink>(p: &Subscribe, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    s.u16(p.packet_id);
    if v.is_v5() {
        props::write(&p.properties, s)?;
    }
    for (filter, o) in &p.filters {
        string(filter, s)?;
        let mut b = o.qos as u8;
        if v.is_v5() {
            b |= u8::from(o.no_local) << 2
                | u8::from(o.retain_as_published) << 3
                | (o.retain_handling as u8) << 4;
        }
        s.u8(b);
    }
    Ok(())
}

fn suback<S: Sink>(p: &SubAck, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    s.u16(p.packet_id);
    if v.is_v5() {
        props::write(&p.properties, s)?;
    }
    for r in &p.reasons {
        // 3.1.1 knows only the granted QoS values and 0x80 Failure.
        let code = if v.is_v5() || r.0 <= 2 { r.0 } else { 0x80 };
        s.u8(code);
    }
    Ok(())
}

fn unsubscribe<S: Sink>(p: &Unsubscribe, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    s.u16(p.packet_id);
    if v.is_v5() {
        props::write(&p.properties, s)?;
    }
    for f in &p.filters {
        string(f, s)?;
    }
    Ok(())
}

fn unsuback<S: Sink>(p: &UnsubAck, v: ProtocolVersion, s: &mut S) -> Result<(), EncodeError> {
    s.u16(p.packet_id);
    if v.is_v5() {
        props::write(&p.properties, s)?;
        for r in &p.reasons {
            s.u8(r.0);
        }
    }
    Ok(())
}
