//! A raw MQTT client: sends exactly the packets (or bytes) a test says and
//! returns exactly what the broker sent, for protocol edge cases no
//! well-behaved client library would produce. It runs over TCP by default, or
//! over any byte stream ([`RawClient::over`]): TLS (`tls.rs`), WebSocket (`ws.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aerie_proto::*;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Any byte stream the raw client can speak MQTT over.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

pub struct RawClient {
    stream: Box<dyn ByteStream>,
    buf: BytesMut,
    pub version: ProtocolVersion,
}

/// A CONNECT with sensible defaults for tests to adjust.
pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

/// A PUBLISH with no properties, for tests to adjust before sending.
pub fn publish_packet(topic: &str, payload: &[u8], qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        payload: bytes::Bytes::copy_from_slice(payload),
        properties: PublishProperties::default(),
    }
}

/// A packet built by hand: `first` byte, the remaining length, then `body`,
/// for bytes our encoder would refuse or never produce.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Whether `e`, or the I/O error inside it (a WebSocket's), is a reset.
fn is_reset(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    if matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted) {
        return true;
    }
    let inner = e.get_ref();
    if let Some(io) = inner.and_then(|i| i.downcast_ref::<std::io::Error>()) {
        return is_reset(io);
    }
    match inner.and_then(|i| i.downcast_ref::<tokio_tungstenite::tungstenite::Error>()) {
        Some(tokio_tungstenite::tungstenite::Error::Io(io)) => is_reset(io),
        _ => false,
    }
}

impl RawClient {
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        RawClient::over(stream, version)
    }

    /// A client over an already open stream (TLS, WebSocket bridge, ...).
    pub fn over(stream: impl ByteStream + 'static, version: ProtocolVersion) -> RawClient {
        RawClient {
            stream: Box::new(stream),
            buf: BytesMut::new(),
            version,
        }
    }

    /// Opens a connection, sends `connect`, and returns the client and CONNACK.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        let c = RawClient::open(addr, connect.protocol).await;
        c.handshake(connect).await
    }

    /// Sends `connect` on an already open stream and returns the client and CONNACK.
    pub async fn connect_over(
        stream: impl ByteStream + 'static,
        connect: Connect,
    ) -> (RawClient, ConnAck) {
        RawClient::over(stream, connect.protocol)
            .handshake(connect)
            .await
    }

    async fn handshake(mut self, connect: Connect) -> (RawClient, ConnAck) {
        self.send(Packet::Connect(Box::new(connect))).await;
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => (self, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects with defaults and asserts success.
    pub async fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
        clean: bool,
    ) -> (RawClient, ConnAck) {
        let (c, ack) =
            RawClient::connect_with(addr, connect_packet(version, client_id, clean)).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK {ack:?}");
        (c, ack)
    }

    /// Opens a v5 connection whose CONNECT carries `properties`.
    pub async fn connect_v5_with_props(
        addr: SocketAddr,
        client_id: &str,
        clean: bool,
        properties: ConnectProperties,
    ) -> (RawClient, ConnAck) {
        let mut c = connect_packet(ProtocolVersion::V5, client_id, clean);
        c.properties = properties;
        let (c, ack) = RawClient::connect_with(addr, c).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK {ack:?}");
        (c, ack)
    }

    /// MQTT 5 connect with a session expiry interval; asserts success.
    pub async fn connect_v5(
        addr: SocketAddr,
        client_id: &str,
        clean_start: bool,
        session_expiry: u32,
    ) -> (RawClient, ConnAck) {
        let properties = ConnectProperties {
            session_expiry_interval: Some(session_expiry),
            ..Default::default()
        };
        RawClient::connect_v5_with_props(addr, client_id, clean_start, properties).await
    }

    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, self.version, &mut out).expect("encode");
        self.stream.write_all(&out).await.expect("write");
        // TLS and WebSocket streams buffer: push the bytes out now.
        self.stream.flush().await.expect("flush");
    }

    /// Like [`RawClient::send`], but a closed connection is an answer, not a
    /// failure: false when the write failed.
    pub async fn try_send(&mut self, packet: Packet) -> bool {
        let mut out = BytesMut::new();
        encode(&packet, self.version, &mut out).expect("encode");
        self.stream.write_all(&out).await.is_ok()
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // The broker may already have closed: a failed write is the test's business.
        let _ = self.stream.write_all(bytes).await;
        let _ = self.stream.flush().await;
    }

    /// Writes and flushes `bytes`, returning the error of a failed write
    /// (a broker that reset the connection makes it fail).
    pub async fn write_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Every packet until the broker closes. Panics if the connection ended
    /// with an error (a reset) rather than an orderly close, or if nothing
    /// comes for [`crate::WAIT`].
    pub async fn recv_until_closed_cleanly(&mut self) -> Vec<Packet> {
        let mut packets = Vec::new();
        loop {
            while let Some(p) = decode(&mut self.buf, self.version, u32::MAX)
                .expect("broker sent a malformed packet")
            {
                packets.push(p);
            }
            match tokio::time::timeout(crate::WAIT, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => panic!("the broker did not close the connection in time"),
                Ok(Ok(0)) => return packets,
                Ok(Ok(_)) => {}
                // An end of stream the TLS client reports as missing its
                // close_notify (WSS) is still an orderly close, not a reset.
                Ok(Err(e)) if !is_reset(&e) => return packets,
                Ok(Err(e)) => panic!("connection ended with {e} after {packets:?}"),
            }
        }
    }

    /// The next packet, or None when the broker closed the connection. Panics
    /// after [`crate::WAIT`] of silence.
    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(crate::WAIT)
            .await
            .expect("no packet from the broker in time")
    }

    /// Ok(None): closed; Err: nothing within `wait`.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<Option<Packet>, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = decode(&mut self.buf, self.version, u32::MAX)
                .expect("broker sent a malformed packet")
            {
                return Ok(Some(p));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Asserts nothing arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(p) = self.recv_within(wait).await {
            panic!("expected silence, got {p:?}");
        }
    }

    /// Reads until the connection closes; returns the DISCONNECT reason if one came.
    pub async fn expect_closed(&mut self) -> Option<ReasonCode> {
        let mut reason = None;
        loop {
            match self.recv().await {
                None => return reason,
                Some(Packet::Disconnect(d)) => reason = Some(d.reason),
                Some(_) => {}
            }
        }
    }

    pub async fn subscribe(&mut self, packet_id: u16, filter: &str, qos: QoS) -> SubAck {
        self.subscribe_with(
            packet_id,
            filter,
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
            None,
        )
        .await
    }

    pub async fn subscribe_with(
        &mut self,
        packet_id: u16,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) -> SubAck {
        self.send(Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(filter.into(), options)],
            properties: SubscribeProperties {
                subscription_identifier: id,
                user_properties: vec![],
            },
        }))
        .await;
        loop {
            match self.recv().await {
                Some(Packet::SubAck(ack)) => return ack,
                Some(Packet::Publish(_)) => continue,
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        packet_id: Option<u16>,
    ) {
        self.send(Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic: topic.into(),
            packet_id,
            payload: bytes::Bytes::copy_from_slice(payload),
            properties: PublishProperties::default(),
        }))
        .await;
    }

    /// The next PUBLISH, skipping nothing else (panics on other packets).
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub async fn ack(&mut self, p: &Publish) {
        let packet_id = p.packet_id.expect("qos > 0");
        let resp = PubResp {
            packet_id,
            ..Default::default()
        };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(resp)).await,
            QoS::ExactlyOnce => self.send(Packet::PubRec(resp)).await,
        }
    }

    /// Sends PUBACK/PUBREC/PUBREL/PUBCOMP (`kind`) for `packet_id`, reason 0.
    pub async fn send_ack(&mut self, kind: fn(PubResp) -> Packet, packet_id: u16) {
        self.send(kind(PubResp {
            packet_id,
            ..Default::default()
        }))
        .await;
    }

    /// Publishes and completes the flow as a well-behaved publisher: waits for
    /// PUBACK (QoS 1) or PUBREC, sends PUBREL and waits for PUBCOMP (QoS 2).
    /// Returns the PUBACK/PUBREC reason (SUCCESS for QoS 0, after a PINGREQ
    /// round trip so the broker has routed the message).
    pub async fn publish_acked(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        packet_id: u16,
    ) -> ReasonCode {
        let id = (qos != QoS::AtMostOnce).then_some(packet_id);
        self.publish(topic, payload, qos, retain, id).await;
        match qos {
            QoS::AtMostOnce => {
                self.send(Packet::PingReq).await;
                match self.recv().await {
                    Some(Packet::PingResp) => ReasonCode::SUCCESS,
                    other => panic!("expected PINGRESP, got {other:?}"),
                }
            }
            QoS::AtLeastOnce => match self.recv().await {
                Some(Packet::PubAck(a)) if a.packet_id == packet_id => a.reason,
                other => panic!("expected PUBACK {packet_id}, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                let reason = match self.recv().await {
                    Some(Packet::PubRec(r)) if r.packet_id == packet_id => r.reason,
                    other => panic!("expected PUBREC {packet_id}, got {other:?}"),
                };
                if reason.is_error() {
                    return reason;
                }
                self.send_ack(Packet::PubRel, packet_id).await;
                match self.recv().await {
                    Some(Packet::PubComp(c)) if c.packet_id == packet_id => {}
                    other => panic!("expected PUBCOMP {packet_id}, got {other:?}"),
                }
                reason
            }
        }
    }

    /// Sends DISCONNECT and waits until the broker has closed the
    /// connection, which it does after detaching the session: the next test
    /// step then sees the session offline.
    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect(Disconnect::default())).await;
        while let Ok(Some(_)) = self.recv_within(crate::WAIT).await {}
    }
}

/// Waits (at most `within`) for the server to close `c`; returns the
/// DISCONNECT it sent first, if any, and how long it took.
pub async fn closed_within(c: &mut RawClient, within: Duration) -> (Option<Disconnect>, Duration) {
    let since = Instant::now();
    let mut disconnect = None;
    loop {
        let left = within.saturating_sub(since.elapsed());
        match c.recv_within(left).await {
            Ok(None) => return (disconnect, since.elapsed()),
            Ok(Some(Packet::Disconnect(d))) => disconnect = Some(d),
            Ok(Some(_)) => {}
            Err(()) => panic!("still connected after {within:?}"),
        }
    }
}

/// Still connected: a PINGREQ is answered.
pub async fn assert_alive(c: &mut RawClient) {
    c.send(Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

/// The reason string of a DISCONNECT, if it has one.
pub fn reason_string(d: &Option<Disconnect>) -> Option<String> {
    d.as_ref()?
        .properties
        .reason_string
        .as_ref()
        .map(|s| s.to_string())
}
