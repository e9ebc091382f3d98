//! A subscriber that stops reading costs itself, not its tenant: publishers
//! and healthy subscribers of the same topic keep their pace, its messages
//! are dropped and counted, and after `--slow-consumer-timeout` it is
//! disconnected. The loads are bounded (paced publishers) and the checks are
//! ratios, so a busy machine slows both sides of a comparison alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aerie_e2e::raw::{connect_packet, publish_packet};
use aerie_e2e::{Server, ServerOptions};
use aerie_proto::{
    Packet, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscribeProperties, SubscriptionOptions,
    decode, encode,
};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// The QoS 0 flood: messages per second, in batches every `TICK`.
const FLOOD_RATE: u64 = 2000;
/// The QoS 1 publisher: one PUBLISH per tick while fewer than
/// `QOS1_WINDOW` wait for their PUBACK.
const QOS1_WINDOW: u64 = 32;
const TICK: Duration = Duration::from_millis(10);
const PAYLOAD: usize = 1024;
/// A small session queue, so the stuck subscriber's fills in well under a second.
const QUEUE: &str = "1000";

fn bytes_of(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).expect("encode");
    out.to_vec()
}

/// Reads from `stream` until one packet decodes (nothing else is expected
/// before it).
async fn read_packet(stream: &mut TcpStream, buf: &mut BytesMut) -> Packet {
    loop {
        if let Some(p) = decode(buf, ProtocolVersion::V5, u32::MAX).expect("decode") {
            return p;
        }
        let n = tokio::time::timeout(aerie_e2e::WAIT, stream.read_buf(buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed while waiting for an answer");
    }
}

/// A v5 client with keep alive 0 over a socket with the given kernel
/// buffer sizes, CONNACK received and, if `filter`, subscribed.
async fn client(
    addr: SocketAddr,
    id: &str,
    filter: Option<(&str, QoS)>,
    recv_buffer: Option<u32>,
    send_buffer: Option<u32>,
) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    if let Some(size) = send_buffer {
        socket.set_send_buffer_size(size).unwrap();
    }
    let mut stream = socket.connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let mut connect = connect_packet(ProtocolVersion::V5, id, true);
    connect.keep_alive = 0;
    let mut buf = BytesMut::new();
    stream
        .write_all(&bytes_of(
            &Packet::Connect(Box::new(connect)),
            ProtocolVersion::V5,
        ))
        .await
        .unwrap();
    match read_packet(&mut stream, &mut buf).await {
        Packet::ConnAck(a) => assert_eq!(a.reason, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    if let Some((filter, qos)) = filter {
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id: 1,
            filters: vec![(
                filter.into(),
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )],
            properties: SubscribeProperties::default(),
        });
        stream
            .write_all(&bytes_of(&subscribe, ProtocolVersion::V5))
            .await
            .unwrap();
        match read_packet(&mut stream, &mut buf).await {
            Packet::SubAck(a) => assert_eq!(a.reasons, [ReasonCode(qos as u8)]),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
    stream
}

/// The subscriber that stops reading: a QoS 1 subscription on `flood/#`,
/// keep alive 0, a tiny receive buffer, and never a read after SUBACK.
async fn stuck_subscriber(addr: SocketAddr) -> TcpStream {
    client(
        addr,
        "stuck",
        Some(("flood/#", QoS::AtLeastOnce)),
        Some(4096),
        None,
    )
    .await
}

/// A subscriber that reads everything: counts the PUBLISHes it gets.
async fn healthy_subscriber(addr: SocketAddr, received: Arc<AtomicU64>) -> JoinHandle<()> {
    let mut stream = client(
        addr,
        "healthy",
        Some(("flood/#", QoS::AtMostOnce)),
        None,
        None,
    )
    .await;
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(256 * 1024);
        loop {
            while let Some(p) = decode(&mut buf, ProtocolVersion::V5, u32::MAX).expect("decode") {
                if matches!(p, Packet::Publish(_)) {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
    })
}

/// Publishes QoS 0 to `flood/a` at `FLOOD_RATE`; counts the messages the
/// broker took. Its send buffer is small, so a broker that stops reading
/// shows at once.
async fn flood_publisher(addr: SocketAddr, sent: Arc<AtomicU64>) -> JoinHandle<()> {
    let mut stream = client(addr, "flood", None, None, Some(16 * 1024)).await;
    let per_tick = FLOOD_RATE * TICK.as_millis() as u64 / 1000;
    let one = bytes_of(
        &Packet::Publish(publish_packet(
            "flood/a",
            &[7; PAYLOAD],
            QoS::AtMostOnce,
            None,
        )),
        ProtocolVersion::V5,
    );
    let batch = one.repeat(per_tick as usize);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        // A publisher held back does not catch up in a burst afterwards.
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if stream.write_all(&batch).await.is_err() {
                return;
            }
            sent.fetch_add(per_tick, Ordering::Relaxed);
        }
    })
}

/// Publishes QoS 1 to `flood/q`, one per tick within a window of
/// `QOS1_WINDOW` unacknowledged; counts PUBACKs.
async fn qos1_publisher(addr: SocketAddr, acked: Arc<AtomicU64>) -> JoinHandle<()> {
    let stream = client(addr, "qos1", None, None, None).await;
    let (mut rd, mut wr) = stream.into_split();
    let sent = Arc::new(AtomicU64::new(0));
    let reader = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            loop {
                while let Some(p) = decode(&mut buf, ProtocolVersion::V5, u32::MAX).expect("decode")
                {
                    match p {
                        Packet::PubAck(a) => {
                            assert!(!a.reason.is_error(), "PUBACK {a:?}");
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                if rd.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        })
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut id: u16 = 0;
        loop {
            tick.tick().await;
            if sent.load(Ordering::Relaxed) - acked.load(Ordering::Relaxed) >= QOS1_WINDOW {
                continue;
            }
            id = id % 60_000 + 1;
            let p = Packet::Publish(publish_packet(
                "flood/q",
                &[1; PAYLOAD],
                QoS::AtLeastOnce,
                Some(id),
            ));
            if wr
                .write_all(&bytes_of(&p, ProtocolVersion::V5))
                .await
                .is_err()
            {
                reader.abort();
                return;
            }
            sent.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// The three counters, read together.
#[derive(Clone)]
struct Counters {
    flood_sent: Arc<AtomicU64>,
    healthy_received: Arc<AtomicU64>,
    qos1_acked: Arc<AtomicU64>,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            flood_sent: Arc::default(),
            healthy_received: Arc::default(),
            qos1_acked: Arc::default(),
        }
    }

    fn read(&self) -> [u64; 3] {
        [
            self.flood_sent.load(Ordering::Relaxed),
            self.healthy_received.load(Ordering::Relaxed),
            self.qos1_acked.load(Ordering::Relaxed),
        ]
    }

    /// What each counter gained over `window`, per second.
    async fn rates_over(&self, window: Duration) -> [f64; 3] {
        let before = self.read();
        let start = Instant::now();
        tokio::time::sleep(window).await;
        let after = self.read();
        let secs = start.elapsed().as_secs_f64();
        std::array::from_fn(|i| (after[i] - before[i]) as f64 / secs)
    }
}

/// The healthy subscriber, the flood and the QoS 1 publisher, running.
async fn start_load(server: &Server, counters: &Counters) -> Vec<JoinHandle<()>> {
    vec![
        healthy_subscriber(server.mqtt, counters.healthy_received.clone()).await,
        flood_publisher(server.mqtt, counters.flood_sent.clone()).await,
        qos1_publisher(server.mqtt, counters.qos1_acked.clone()).await,
    ]
}

const WINDOW: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_slows_neither_publishers_nor_healthy_subscribers() {
    // The stuck subscriber stays for the whole test (0: never disconnected;
    // an older broker without the variable ignores it).
    let server = ServerOptions::default()
        .args(&["--max-queued-messages", QUEUE])
        .env("AERIE_SLOW_CONSUMER_TIMEOUT", "0")
        .start();
    let counters = Counters::new();
    let load = start_load(&server, &counters).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let without = counters.rates_over(WINDOW).await;

    let stuck = stuck_subscriber(server.mqtt).await;
    // Time for its socket buffers and then its queue to fill.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with = counters.rates_over(WINDOW).await;
    let dropped = server.metric("aerie_messages_dropped_total", "reason=\"queue_full\"");
    let connections = server.metric("aerie_connections", "");
    for task in load {
        task.abort();
    }
    drop(stuck);

    eprintln!(
        "per second without / with the stuck subscriber: flood {:.0} / {:.0}, \
         healthy {:.0} / {:.0}, QoS 1 acks {:.0} / {:.0}; dropped {dropped}",
        without[0], with[0], without[1], with[1], without[2], with[2]
    );
    assert!(
        without[1] > 100.0 && without[2] > 10.0,
        "the load did not run: {without:?}"
    );
    for (i, what) in ["flood publisher", "healthy subscriber", "QoS 1 PUBACKs"]
        .iter()
        .enumerate()
    {
        assert!(
            with[i] >= 0.5 * without[i],
            "{what}: {:.0}/s with the stuck subscriber, {:.0}/s without",
            with[i],
            without[i]
        );
    }
    assert!(
        dropped > 0.0,
        "the stuck subscriber's overflow is dropped and counted"
    );
    assert_eq!(connections, 4.0, "the stuck subscriber was still connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_is_disconnected_after_the_slow_consumer_timeout() {
    let server = ServerOptions::default()
        .args(&[
            "--max-queued-messages",
            QUEUE,
            "--slow-consumer-timeout",
            "2",
        ])
        .start();
    let counters = Counters::new();
    let load = start_load(&server, &counters).await;
    let mut stuck = stuck_subscriber(server.mqtt).await;
    let stuck_at = Instant::now();

    let deadline = stuck_at + Duration::from_secs(20);
    while server.metric("aerie_slow_consumers_disconnected_total", "") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the stuck subscriber was not disconnected within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = stuck_at.elapsed();
    assert!(
        after >= Duration::from_secs(2),
        "disconnected after {after:?}, before the timeout"
    );
    // What the kernel still held for it, then the end of the stream.
    let mut sink = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stuck.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stuck subscriber's socket was closed");
    assert_eq!(
        server.metric("aerie_disconnects_total", "why=\"slow_consumer\""),
        1.0
    );

    // Nobody else was: the load still flows.
    let still = counters.rates_over(Duration::from_secs(1)).await;
    assert!(
        still.iter().all(|r| *r > 0.0),
        "the others still flow: {still:?}"
    );
    assert_eq!(
        server.metric("aerie_slow_consumers_disconnected_total", ""),
        1.0
    );
    for task in load {
        task.abort();
    }
}
