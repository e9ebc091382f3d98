//! Load-generating MQTT 3.1.1 clients: raw TCP, pipelined, batched writes.
//!
//! Handshakes go through `aerie_proto::{encode, decode}`. The hot paths don't
//! decode into `Packet`s: publishers repeat (or patch) one encoded PUBLISH, and
//! receivers frame with `peek_packet_len` and read the few header bytes they
//! need, so the generator spends far less per message than a broker does and
//! measures the broker, not itself.

use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aerie_proto::*;
use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const V: ProtocolVersion = ProtocolVersion::V311;
/// Publishers write this much per syscall (about 800 PUBLISHes of 64 bytes).
const WRITE_BATCH: usize = 64 * 1024;
const READ_BUF: usize = 256 * 1024;

/// A shared event count, read at the start and end of a measurement.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Client {
    pub(crate) stream: TcpStream,
    buf: BytesMut,
}

/// Opens a TCP connection (from `source` when given: loopback has ~28k
/// ephemeral ports per source address) and completes CONNECT/CONNACK.
pub async fn connect(
    addr: SocketAddr,
    client_id: &str,
    source: Option<IpAddr>,
    password: Option<&str>,
) -> anyhow::Result<Client> {
    let (client, ack) = handshake(addr, source, login(client_id, password, true)).await?;
    match ack.reason {
        ReasonCode::SUCCESS => Ok(client),
        _ => bail!("CONNECT refused: {ack:?}"),
    }
}

/// A 3.1.1 CONNECT of the bench: a session that starts clean or resumes.
pub fn login(client_id: &str, password: Option<&str>, clean_start: bool) -> Connect {
    Connect {
        protocol: V,
        clean_start,
        // No PINGREQs: idle connections must stay idle.
        keep_alive: 0,
        client_id: client_id.into(),
        will: None,
        username: password.map(|_| "bench".into()),
        password: password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes())),
        properties: ConnectProperties::default(),
    }
}

/// Sends `connect` and returns the CONNACK whatever it says (the soak checks
/// refusals); an error if the broker closes or answers something else.
pub async fn handshake(
    addr: SocketAddr,
    source: Option<IpAddr>,
    connect: Connect,
) -> anyhow::Result<(Client, ConnAck)> {
    let stream = match source {
        Some(ip) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    let mut client = Client {
        stream,
        buf: BytesMut::with_capacity(4096),
    };
    client.send(&Packet::Connect(Box::new(connect))).await?;
    match client.recv().await? {
        Packet::ConnAck(ack) => Ok((client, ack)),
        other => bail!("no CONNACK: {other:?}"),
    }
}

/// A clean MQTT 5 CONNECT with `password`, closed once answered: the
/// CONNACK, whose Receive Maximum and Maximum Packet Size show the limits
/// the broker applies to the client's tenant.
pub async fn connack_v5(
    addr: SocketAddr,
    client_id: &str,
    password: &str,
) -> anyhow::Result<ConnAck> {
    const V5: ProtocolVersion = ProtocolVersion::V5;
    let mut stream = TcpStream::connect(addr).await?;
    let connect = Connect {
        protocol: V5,
        ..login(client_id, Some(password), true)
    };
    let mut out = BytesMut::new();
    encode(&Packet::Connect(Box::new(connect)), V5, &mut out)?;
    stream.write_all(&out).await?;
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match decode(&mut buf, V5, u32::MAX)? {
            Some(Packet::ConnAck(ack)) => return Ok(ack),
            Some(other) => bail!("no CONNACK: {other:?}"),
            None => {}
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("connection closed by the broker");
        }
    }
}

impl Client {
    pub async fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        encode(packet, V, &mut out)?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// The next packet, fully decoded (handshakes only: not on hot paths).
    pub async fn recv(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = decode(&mut self.buf, V, u32::MAX)? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed by the broker");
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        let options = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(filter.into(), options)],
            properties: SubscribeProperties::default(),
        }))
        .await?;
        match self.recv().await? {
            Packet::SubAck(ack) if !ack.reasons.iter().any(|r| r.is_error()) => Ok(()),
            other => bail!("SUBSCRIBE refused: {other:?}"),
        }
    }
}

/// One encoded PUBLISH; `packet_id_at` is where its packet id sits (QoS 1).
struct Template {
    bytes: Vec<u8>,
    packet_id_at: usize,
}

fn template(topic: &str, payload: &[u8], qos: QoS) -> anyhow::Result<Template> {
    let packet = Packet::Publish(Publish {
        qos,
        topic: topic.into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(1),
        payload: bytes::Bytes::copy_from_slice(payload),
        ..Default::default()
    });
    let mut out = BytesMut::new();
    encode(&packet, V, &mut out)?;
    // 3.1.1 has no properties: the packet id directly precedes the payload.
    let packet_id_at = out.len() - payload.len() - 2;
    Ok(Template {
        bytes: out.to_vec(),
        packet_id_at,
    })
}

/// Publishes QoS 0 as fast as the socket takes it until `stop`.
pub async fn flood_qos0(
    mut client: Client,
    topic: String,
    payload: Vec<u8>,
    sent: Counter,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let t = template(&topic, &payload, QoS::AtMostOnce)?;
    let per_batch = WRITE_BATCH.div_ceil(t.bytes.len());
    let batch = t.bytes.repeat(per_batch);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = client.stream.write_all(&batch) => r?,
        }
        sent.add(per_batch as u64);
    }
}

/// Times PUBLISH → PUBACK of QoS 1 publishers into one histogram (ns), while
/// `recording` (the measured window only).
#[derive(Clone)]
pub struct AckClock {
    epoch: Instant,
    pub recording: Arc<AtomicBool>,
    pub histogram: Arc<Mutex<Histogram<u64>>>,
}

impl AckClock {
    pub fn new() -> anyhow::Result<AckClock> {
        Ok(AckClock {
            epoch: Instant::now(),
            recording: Arc::new(AtomicBool::new(false)),
            // 1 ns .. 60 s, three significant digits.
            histogram: Arc::new(Mutex::new(Histogram::new_with_bounds(
                1,
                60_000_000_000,
                3,
            )?)),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// Publishes QoS 1 with at most `window` PUBLISHes awaiting PUBACK, until
/// `stop`; with `clock`, times each PUBACK.
pub async fn flood_qos1(
    client: Client,
    topic: String,
    payload: Vec<u8>,
    window: u64,
    sent: Counter,
    stop: CancellationToken,
    clock: Option<AckClock>,
) -> anyhow::Result<()> {
    let t = template(&topic, &payload, QoS::AtLeastOnce)?;
    // Send time by packet id (ids are unique within the window).
    let sent_at: Arc<[AtomicU64]> = (0..=u16::MAX).map(|_| AtomicU64::new(0)).collect();
    let (mut rd, mut wr) = client.stream.into_split();
    let acked = Counter::default();
    let wake = Arc::new(Notify::new());
    let acks = {
        let (acked, wake, stop) = (acked.clone(), wake.clone(), stop.clone());
        let (clock, sent_at) = (clock.clone(), sent_at.clone());
        let mut buf = client.buf;
        let mut latencies = Vec::new();
        async move {
            loop {
                let n = tokio::select! {
                    _ = stop.cancelled() => return anyhow::Ok(()),
                    r = rd.read_buf(&mut buf) => r?,
                };
                if n == 0 {
                    bail!("connection closed by the broker");
                }
                let mut count = 0;
                let now = clock.as_ref().map_or(0, AckClock::now);
                for_each_packet(&mut buf, |first, body| {
                    if first != 0x40 {
                        return;
                    }
                    count += 1;
                    if let (Some(_), Some(id)) = (&clock, body.get(..2)) {
                        let id = u16::from_be_bytes([id[0], id[1]]);
                        let at = sent_at[usize::from(id)].load(Ordering::Relaxed);
                        latencies.push(now.saturating_sub(at).max(1));
                    }
                })?;
                acked.add(count);
                if let Some(clock) = &clock
                    && !latencies.is_empty()
                {
                    if clock.recording.load(Ordering::Relaxed) {
                        let mut h = clock.histogram.lock();
                        for ns in &latencies {
                            h.saturating_record(*ns);
                        }
                    }
                    latencies.clear();
                }
                wake.notify_one();
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(READ_BUF);
                }
            }
        }
    };
    let publish = async {
        let mut packet_id: u16 = 0;
        let mut issued: u64 = 0;
        let mut out = Vec::with_capacity(t.bytes.len() * window as usize);
        loop {
            let room = window.saturating_sub(issued.saturating_sub(acked.get()));
            if room == 0 {
                wake.notified().await;
                continue;
            }
            out.clear();
            let now = clock.as_ref().map_or(0, AckClock::now);
            for _ in 0..room {
                packet_id = packet_id.checked_add(1).unwrap_or(1);
                sent_at[usize::from(packet_id)].store(now, Ordering::Relaxed);
                let start = out.len();
                out.extend_from_slice(&t.bytes);
                out[start + t.packet_id_at..start + t.packet_id_at + 2]
                    .copy_from_slice(&packet_id.to_be_bytes());
            }
            wr.write_all(&out).await?;
            issued += room;
            sent.add(room);
        }
    };
    tokio::select! {
        _ = stop.cancelled() => Ok(()),
        r = acks => r,
        r = publish => r,
    }
}

/// Publishes QoS 0 at `rate` per second, each payload starting with the send
/// time (nanoseconds since `epoch`), until `stop`.
pub async fn paced(
    mut client: Client,
    topic: String,
    rate: u64,
    payload_len: usize,
    epoch: Instant,
    sent: Counter,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let t = template(&topic, &vec![0; payload_len], QoS::AtMostOnce)?;
    let stamp_at = t.bytes.len() - payload_len;
    let start = Instant::now();
    let mut issued: u64 = 0;
    let mut out = Vec::new();
    // The timer ticks about every millisecond: send what is due each tick.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let due = (start.elapsed().as_nanos() * u128::from(rate) / 1_000_000_000) as u64;
        out.clear();
        let now = epoch.elapsed().as_nanos() as u64;
        for _ in issued..due {
            let at = out.len() + stamp_at;
            out.extend_from_slice(&t.bytes);
            out[at..at + 8].copy_from_slice(&now.to_be_bytes());
        }
        client.stream.write_all(&out).await?;
        sent.add(due - issued);
        issued = due;
    }
}

/// What a receiver needs of a PUBLISH.
pub struct PublishView<'a> {
    pub payload: &'a [u8],
}

/// Reads PUBLISHes until `stop`, acking QoS 1 ones (one write per read),
/// adding to `received` once per read and calling `each` per message.
pub async fn receive(
    client: Client,
    received: Counter,
    stop: CancellationToken,
    mut each: impl FnMut(PublishView<'_>),
) -> anyhow::Result<()> {
    let Client {
        mut stream,
        mut buf,
    } = client;
    buf.reserve(READ_BUF);
    let mut acks = Vec::new();
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = stream.read_buf(&mut buf) => r?,
        };
        if n == 0 {
            bail!("connection closed by the broker");
        }
        let mut count = 0;
        for_each_packet(&mut buf, |first, body| {
            if first >> 4 != 3 {
                return;
            }
            count += 1;
            if let Some((packet_id, payload)) = publish_fields(first, body) {
                if let Some(id) = packet_id {
                    acks.extend_from_slice(&[0x40, 2]);
                    acks.extend_from_slice(&id.to_be_bytes());
                }
                each(PublishView { payload });
            }
        })?;
        received.add(count);
        if !acks.is_empty() {
            stream.write_all(&acks).await?;
            acks.clear();
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(READ_BUF);
        }
    }
}

/// Calls `f(first byte, body)` for each complete packet at the front of `buf`
/// and removes them.
fn for_each_packet(buf: &mut BytesMut, mut f: impl FnMut(u8, &[u8])) -> anyhow::Result<()> {
    while let Some(len) = peek_packet_len(buf).context("malformed packet from the broker")? {
        if buf.len() < len {
            break;
        }
        // Fixed header: 1 byte, then 1-4 length bytes (the last without 0x80).
        let header = 2 + buf[1..].iter().take_while(|b| *b & 0x80 != 0).count();
        f(buf[0], &buf[header..len]);
        buf.advance(len);
    }
    Ok(())
}

/// (packet id if QoS > 0, payload) of a 3.1.1 PUBLISH body.
fn publish_fields(first: u8, body: &[u8]) -> Option<(Option<u16>, &[u8])> {
    let topic_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let mut at = 2 + topic_len;
    let packet_id = if (first >> 1) & 3 > 0 {
        let id = u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]);
        at += 2;
        Some(id)
    } else {
        None
    };
    Some((packet_id, body.get(at..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patched_templates_decode_with_the_codec() {
        let t = template("bench/in/0", &[7; 64], QoS::AtLeastOnce).unwrap();
        let mut bytes = t.bytes.clone();
        bytes[t.packet_id_at..t.packet_id_at + 2].copy_from_slice(&513u16.to_be_bytes());
        let mut buf = BytesMut::from(&bytes[..]);
        let Some(Packet::Publish(p)) = decode(&mut buf, V, u32::MAX).unwrap() else {
            panic!("not a PUBLISH");
        };
        assert_eq!(p.packet_id, Some(513));
        assert_eq!(&p.payload[..], &[7; 64]);

        let mut buf = BytesMut::from(&bytes[..]);
        let mut seen = Vec::new();
        for_each_packet(&mut buf, |first, body| {
            seen.push(publish_fields(first, body).map(|(id, pl)| (id, pl.len())))
        })
        .unwrap();
        assert_eq!(seen, vec![Some((Some(513), 64))]);
        assert!(buf.is_empty());
    }
}
