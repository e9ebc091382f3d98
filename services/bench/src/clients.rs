//! Load-generating MQTT 3.1.1 clients: raw TCP, pipelined, batched writes.
//!
//! Handshakes go through `aerie_proto::{encode, decode}`. The hot paths don't
//! decode into `Packet`s: publishers repeat (or patch) one encoded PUBLISH, and
//! receivers frame with `peek_packet_len` and read the few header bytes they
//! need, so the generator spends far less per message than a broker does and
//! measures the broker, not itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aerie_proto::*;
use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
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
    stream: TcpStream,
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
    client
        .send(&Packet::Connect(Box::new(Connect {
            protocol: V,
            clean_start: true,
            // No PINGREQs: idle connections must stay idle.
            keep_alive: 0,
            client_id: client_id.into(),
            will: None,
            username: password.map(|_| "bench".into()),
            password: password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes())),
            properties: ConnectProperties::default(),
        })))
        .await?;
    match client.recv().await? {
        Packet::ConnAck(ack) if ack.reason == ReasonCode::SUCCESS => Ok(client),
        other => bail!("CONNECT refused: {other:?}"),
    }
}

impl Client {
    async fn send(&mut self, packet: &Packet) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        encode(packet, V, &mut out)?;
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// The next packet, fully decoded (handshakes only: not on hot paths).
    async fn recv(&mut self) -> anyhow::Result<Packet> {
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

/// Publishes QoS 1 with at most `window` PUBLISHes awaiting PUBACK, until `stop`.
pub async fn flood_qos1(
    client: Client,
    topic: String,
    payload: Vec<u8>,
    window: u64,
    sent: Counter,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let t = template(&topic, &payload, QoS::AtLeastOnce)?;
    let (mut rd, mut wr) = client.stream.into_split();
    let acked = Counter::default();
    let wake = Arc::new(Notify::new());
    let acks = {
        let (acked, wake, stop) = (acked.clone(), wake.clone(), stop.clone());
        let mut buf = client.buf;
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
                for_each_packet(&mut buf, |first, _| count += u64::from(first == 0x40))?;
                acked.add(count);
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
            for _ in 0..room {
                packet_id = packet_id.checked_add(1).unwrap_or(1);
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
