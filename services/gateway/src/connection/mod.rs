//! One client connection, from its first byte to its session's detach.
//!
//! One task per connection. It waits on bytes from the client, the socket
//! taking what it has to write, a wake-up from its session (deliveries
//! queued, or a kick), and its deadlines. Whatever a loop turn produces is
//! encoded into one buffer, which the socket takes over the next turns.

mod aliases;
mod duplex;
mod handshake;
mod held;
mod inbound;
mod outbound;
mod outbox;
mod pacing;
mod publishing;
mod reauth;
mod slow_consumer;
mod wheel;
mod window;

#[doc(hidden)]
pub use duplex::Duplex;
pub use handshake::authenticate_for_fuzzing;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aerie_core::metrics as m;
use aerie_core::{Broker, FlightState, Session, Tenant, Ticket};
use aerie_proto::{ConnAck, DecodeError, Disconnect, Packet, ProtocolVersion, ReasonCode, Will};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::registry::{LiveConnection, NewConnection, Registry};
use aliases::{InboundAliases, OutboundAliases};
use outbox::Outbox;
use slow_consumer::SocketClock;

/// Which listener a connection came through (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

/// What a connection task needs from its listener.
#[derive(Clone)]
pub struct ConnContext {
    pub broker: Broker,
    pub config: Arc<GatewayConfig>,
    pub registry: Arc<Registry>,
    pub shutdown: CancellationToken,
}

/// How a loop turn ends the connection, if it does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close(Close),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Close {
    /// Sent to a v5 client as DISCONNECT before closing.
    pub disconnect: Option<ReasonCode>,
    /// Whether the will is published (everything but a normal DISCONNECT).
    pub publish_will: bool,
    /// Why, for the log and the metric, and the v5 DISCONNECT's reason string.
    pub why: &'static str,
}

impl Close {
    /// Closing because the session was kicked (a revocation, a takeover,
    /// the shutdown). The will is published, but not at a shutdown: the
    /// client did nothing wrong, and its session is what it will resume.
    pub fn for_kick(kick: aerie_core::Kick) -> Close {
        Close {
            disconnect: Some(kick.reason),
            publish_will: kick.reason != ReasonCode::SERVER_SHUTTING_DOWN,
            why: kick.why,
        }
    }

    pub fn by_server(reason: ReasonCode, why: &'static str) -> Flow {
        Flow::Close(Close {
            disconnect: Some(reason),
            publish_will: true,
            why,
        })
    }
}

/// An acknowledgement that waits for the store.
pub(crate) struct HeldAck {
    /// Durable once the store's durable ticket reaches this.
    pub ticket: Ticket,
    pub packet: Packet,
    /// When it started waiting: past `store_ack_timeout` it is answered
    /// without the store (v5) or the connection closes (3.1.1).
    pub since: Instant,
}

/// The state of an attached connection.
pub(crate) struct Conn {
    pub version: ProtocolVersion,
    pub tenant: Arc<Tenant>,
    /// What the token lets the client publish and subscribe to (`None`: all).
    pub permissions: Option<Arc<crate::auth::Permissions>>,
    /// This connection in the registry (its token's id and expiry live there).
    pub live: Arc<LiveConnection>,
    /// The client authenticated with method `JWT`: it may re-authenticate.
    pub jwt_auth_method: bool,
    /// Set when a re-authentication moved the token's expiry.
    pub token_renewed: bool,
    pub session: Arc<Session>,
    pub flight: FlightState,
    pub config: Arc<GatewayConfig>,
    /// Boxed: most clients have none, and inline it is 200 bytes.
    pub will: Option<Box<Will>>,
    pub session_expiry: u32,
    pub client_receive_maximum: u16,
    pub inbound_aliases: InboundAliases,
    pub outbound_aliases: OutboundAliases,
    pub out: Outbox,
    /// Made by the client's first PUBLISH (`publishing.rs`); `Some` also
    /// says it publishes (then the backbone's back-pressure applies to it).
    pub publishing: Option<Box<publishing::Publishing>>,
    /// An answer waiting for the cluster (`held.rs`); the client's later
    /// packets wait in the read buffer meanwhile.
    pub held: Option<Box<held::Held>>,
    /// A persistent session's outbound window, recorded off the node
    /// (`window.rs`); `None` where nothing records it.
    pub window: Option<Box<window::WindowRecord>>,
}

/// A connection's task, from the accepted socket (`rd`, `wr`: its halves)
/// to its session's detach. It holds `permit` (the listener's connection
/// slot) until the socket is closed.
///
/// A plain function returning an `async move` block, not an `async fn`: an
/// `async fn` keeps each argument twice in its future (as argument and as
/// local), and this future is the bulk of an idle connection's memory.
pub fn run<D: Duplex>(
    mut stream: D,
    transport: Transport,
    peer: Option<std::net::SocketAddr>,
    ctx: Arc<ConnContext>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl std::future::Future<Output = ()> + Send {
    // Boxed and taken by the handshake: inline, the address (32 bytes)
    // would stay in the task for the connection's life.
    let mut peer = peer.map(Box::new);
    async move {
        let (mut rd, mut wr) = stream.halves();
        metrics::counter!(m::CONNECTIONS_TOTAL, "transport" => transport.as_str()).increment(1);
        metrics::gauge!(m::CONNECTIONS).increment(1.0);
        // Allocated by the first read (`read_more`).
        let mut inbuf = BytesMut::new();
        let result = serve(&mut rd, &mut wr, &mut inbuf, transport, peer.take(), &ctx).await;
        if let Err(e) = result {
            tracing::debug!(error = %e, transport = transport.as_str(), "connection ended with an I/O error");
        }
        // Shut only our side, then read what the client still sends: closing
        // with unread bytes would make the kernel answer with a reset, and a
        // client in the middle of a burst would see that instead of the
        // DISCONNECT or CONNACK that says why. Bounded: a stuck socket (a slow
        // consumer) must not hold the task.
        let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, wr.shutdown()).await;
        // The session is detached already: this is no longer a live connection,
        // though its socket (and listener permit) is held while it drains.
        metrics::gauge!(m::CONNECTIONS).decrement(1.0);
        drain(&mut rd, &mut inbuf).await;
        drop(permit);
    }
}

/// How long, and how many bytes, a closed connection is read and discarded
/// for. Long and large enough for a client to notice our close mid-burst
/// (its in-flight window, or a large packet's body), short and small
/// enough that a client sending forever cannot hold its connection slot.
const DRAIN_FOR: Duration = Duration::from_secs(1);
const DRAIN_BYTES: usize = 256 * 1024;
const DRAIN_BUFFER: usize = 2 * 1024;

/// Reads and discards until the client closes, `DRAIN_FOR` passes or
/// `DRAIN_BYTES` have been read, whichever comes first.
async fn drain<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) {
    let read_all = async {
        let mut drained = buf.len();
        while drained < DRAIN_BYTES {
            buf.clear();
            // Small: at a shutdown every connection drains at once.
            if buf.capacity() < DRAIN_BUFFER {
                buf.reserve(DRAIN_BUFFER);
            }
            match rd.read_buf(buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_FOR, read_all).await;
}

/// Reads what the client sent into `buf`. Cancel safe (bytes are either in
/// `buf` or still in the socket).
async fn read_more<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) -> std::io::Result<usize> {
    let n = std::future::poll_fn(|cx| poll_read_more(Pin::new(&mut *rd), cx, buf)).await?;
    m::hot().bytes_received.increment(n as u64);
    Ok(n)
}

/// One read attempt. The buffer starts small (idle connections are most
/// connections) and doubles while a client keeps it full. A connection that
/// holds no buffer (`decode_and_handle` released it) gets one for the
/// attempt only: when nothing has arrived it is released again, so an idle
/// connection waits for its client without a read buffer.
fn poll_read_more<R: AsyncRead>(
    rd: Pin<&mut R>,
    cx: &mut std::task::Context<'_>,
    buf: &mut BytesMut,
) -> std::task::Poll<std::io::Result<usize>> {
    let had_none = buf.capacity() == 0;
    if buf.capacity() - buf.len() < 256 {
        buf.reserve(buf.capacity().clamp(512, 64 * 1024));
    }
    let poll = tokio_util::io::poll_read_buf(rd, cx, buf);
    if had_none && poll.is_pending() {
        *buf = BytesMut::new();
    }
    poll
}

async fn flush<W: AsyncWrite + Unpin>(wr: &mut W, out: &mut Outbox) -> std::io::Result<()> {
    out.write_all(wr).await
}

/// A drained read buffer with less room than this left is released rather
/// than kept (it was never grown: the connection is not busy).
const RELEASE_READ_BUFFER_UP_TO: usize = 1024;

/// How long the last words (DISCONNECT, TLS close) may wait for the socket:
/// a client that reads nothing must not keep its connection task alive.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection reads from its client only while less than this waits to
/// be written to it: a client that sends but does not read cannot grow its
/// outbox (acks, PINGRESPs) without bound.
const READ_WHILE_UNWRITTEN_BELOW: usize = 64 * 1024;

/// Waits for CONNECT; answers a CONNECT that fails to decode the way the
/// client's version expects.
async fn read_connect<R: AsyncRead + Unpin>(
    rd: &mut R,
    inbuf: &mut BytesMut,
    max_packet_size: u32,
) -> Result<Result<Box<aerie_proto::Connect>, (ProtocolVersion, DecodeError)>, std::io::Error> {
    loop {
        // Sniffed first: a failed decode may already have consumed the CONNECT's bytes.
        let claimed = sniff_connect_version(inbuf);
        match aerie_proto::decode(inbuf, ProtocolVersion::V5, max_packet_size) {
            Ok(Some(Packet::Connect(c))) => return Ok(Ok(c)),
            Ok(Some(other)) => {
                return Err(std::io::Error::other(format!(
                    "first packet was {} not CONNECT",
                    other.name()
                )));
            }
            Ok(None) => {
                if read_more(rd, inbuf).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            }
            Err(e) => return Ok(Err((claimed, e))),
        }
    }
}

/// The protocol level a (possibly broken) CONNECT claims, to answer in kind.
fn sniff_connect_version(buf: &[u8]) -> ProtocolVersion {
    // Fixed header (1 byte + 1..4 length bytes), then 00 04 "MQTT" level.
    let len_bytes = buf
        .iter()
        .skip(1)
        .take(4)
        .position(|b| b & 0x80 == 0)
        .map_or(1, |p| p + 1);
    match buf.get(1 + len_bytes + 6) {
        Some(5) => ProtocolVersion::V5,
        _ => ProtocolVersion::V311,
    }
}

/// A connection past CONNACK: what the rest of its life needs.
struct Established {
    conn: Conn,
    keep_alive: Option<Duration>,
    /// Counted against the tenant's connections until the connection ends.
    slot: aerie_core::quota::ConnectionSlot,
    /// In the live-connection registry until the connection ends.
    registration: crate::registry::Registration,
}

async fn serve<R, W>(
    rd: &mut R,
    wr: &mut W,
    inbuf: &mut BytesMut,
    transport: Transport,
    peer: Option<Box<std::net::SocketAddr>>,
    ctx: &ConnContext,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Boxed: the handshake's locals (CONNECT, its verification, its span)
    // are large and short-lived. Inline, they would size every connection's
    // task for its whole life; boxed, they are freed once the client is
    // connected.
    let Some(Established {
        mut conn,
        keep_alive,
        slot,
        registration,
    }) = Box::pin(establish(rd, wr, inbuf, transport, peer.map(|p| *p), ctx)).await?
    else {
        return Ok(());
    };
    // The connection's own span (DEBUG, often disabled).
    tracing::Span::current()
        .record(
            "client_id",
            tracing::field::display(&conn.session.client_id),
        )
        .record("tenant", tracing::field::display(&conn.tenant.id));
    // client_id and tenant are fields of the enclosing span now.
    tracing::debug!("connected");
    conn.resend_inflight();
    conn.pump();
    let close = conn
        .run_loop(rd, wr, inbuf, keep_alive, &ctx.shutdown)
        .await;
    let close = match close {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "connection I/O failed");
            Close {
                disconnect: None,
                publish_will: true,
                why: "io_error",
            }
        }
    };
    metrics::counter!(m::DISCONNECTS_TOTAL, "why" => close.why).increment(1);
    if let (Some(reason), true) = (close.disconnect, conn.version.is_v5()) {
        let mut disconnect = Disconnect {
            reason,
            ..Disconnect::default()
        };
        disconnect.properties.reason_string = Some(close.why.into());
        if conn
            .out
            .push(&Packet::Disconnect(disconnect.clone()))
            .is_err()
        {
            // Larger than the client's maximum packet size: without the string.
            disconnect.properties.reason_string = None;
            let _ = conn.out.push(&Packet::Disconnect(disconnect));
        }
    }
    let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, flush(wr, &mut conn.out)).await;
    let will = if close.publish_will {
        conn.will.take().map(|will| *will)
    } else {
        None
    };
    conn.session.set_expiry_interval(conn.session_expiry);
    conn.flush_window_at_close();
    conn.tenant.detach(
        &conn.session,
        conn.live.connection_id,
        std::mem::take(&mut conn.flight),
        will,
    );
    crate::usage::connection_ended(&conn.live, &conn.tenant);
    drop(registration);
    drop(slot);
    Ok(())
}

/// Reads and answers CONNECT (`accept_connect`) in an INFO span naming the
/// peer, which what the handshake logs (an authentication failure) carries
/// at any log level.
async fn establish<R, W>(
    rd: &mut R,
    wr: &mut W,
    inbuf: &mut BytesMut,
    transport: Transport,
    peer: Option<std::net::SocketAddr>,
    ctx: &ConnContext,
) -> std::io::Result<Option<Established>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "mqtt.connect",
        transport = transport.as_str(),
        peer = tracing::field::Empty
    );
    if let Some(peer) = peer {
        span.record("peer", tracing::field::display(peer));
    }
    accept_connect(rd, wr, inbuf, transport, ctx)
        .instrument(span)
        .await
}

/// Reads and answers CONNECT: `None` when the client was refused, gave up or
/// the broker is shutting down (the answer, if any, is sent).
async fn accept_connect<R, W>(
    rd: &mut R,
    wr: &mut W,
    inbuf: &mut BytesMut,
    transport: Transport,
    ctx: &ConnContext,
) -> std::io::Result<Option<Established>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let config = &ctx.config;
    let connect = tokio::select! {
        r = tokio::time::timeout(config.connect_timeout, read_connect(rd, inbuf, config.max_packet_size)) => match r {
            Ok(r) => r?,
            Err(_) => return Ok(None),
        },
        _ = ctx.shutdown.cancelled() => return Ok(None),
    };
    let connect = match connect {
        Ok(c) => c,
        Err((version, e)) => {
            metrics::counter!(m::PROTOCOL_ERRORS_TOTAL, "reason" => "connect").increment(1);
            tracing::debug!(error = %e, "bad CONNECT");
            let mut out = Outbox::new(version);
            let reason = match e {
                DecodeError::UnsupportedProtocolVersion(_) | DecodeError::InvalidProtocolName => {
                    ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
                }
                e => e.reason_code(),
            };
            let _ = out.push(&Packet::ConnAck(ConnAck {
                reason,
                ..ConnAck::default()
            }));
            return flush(wr, &mut out).await.map(|()| None);
        }
    };
    m::hot().packets_received[1].increment(1);
    let version = connect.protocol;
    let id = ctx.broker.next_connection_id();
    let accepted = match handshake::accept(&connect, &ctx.broker, config, id).await {
        Ok(a) => a,
        Err(handshake::Refused(reason)) => {
            metrics::counter!(m::CONNECT_REFUSED_TOTAL, "reason" => format!("0x{:02X}", reason.0))
                .increment(1);
            let mut out = Outbox::new(version);
            let _ = out.push(&Packet::ConnAck(ConnAck {
                reason,
                ..ConnAck::default()
            }));
            return flush(wr, &mut out).await.map(|()| None);
        }
    };
    let mut out = Outbox::new(version);
    out.max_packet_size = accepted.client_max_packet_size;
    let _ = out.push(&Packet::ConnAck(accepted.connack.clone()));
    let registration = ctx.registry.register(NewConnection {
        connection_id: id,
        protocol: version,
        transport,
        session: accepted.attachment.session.clone(),
        credential: accepted.credential,
    });
    // Only a persistent session's window is worth recording.
    let window =
        (accepted.session_expiry != 0 && accepted.tenant.keeps_windows()).then(Box::default);
    let conn = Conn {
        version,
        tenant: accepted.tenant,
        permissions: accepted.permissions,
        live: registration.live().clone(),
        jwt_auth_method: accepted.jwt_auth_method,
        token_renewed: false,
        session: accepted.attachment.session,
        flight: accepted.attachment.flight,
        config: config.clone(),
        will: connect.will.clone().map(Box::new),
        session_expiry: accepted.session_expiry,
        client_receive_maximum: accepted.client_receive_maximum,
        inbound_aliases: InboundAliases::default(),
        outbound_aliases: OutboundAliases::new(accepted.client_topic_alias_maximum),
        out,
        publishing: None,
        held: None,
        window,
    };
    drop(connect);

    let keep_alive = (accepted.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(accepted.keep_alive) * 1500));
    Ok(Some(Established {
        conn,
        keep_alive,
        slot: accepted.slot,
        registration,
    }))
}

/// A connection's deadlines, served by one entry in the shared deadline
/// wheel (`wheel.rs`) armed for the earliest: a tokio timer is 112 bytes in
/// the task, and an idle connection would hold one for its whole life.
#[derive(Debug, Default)]
struct Deadlines {
    /// No packet for 1.5 × keep alive by then (checked lazily against the
    /// last packet's time).
    keep_alive: Option<Instant>,
    /// The token's `exp`.
    token: Option<Instant>,
    /// The socket has taken nothing for the slow-consumer timeout.
    stall: Option<Instant>,
}

impl Deadlines {
    /// The earliest, with `held_ack`: when the oldest held acknowledgement
    /// has waited `store_ack_timeout` (computed each turn from the held
    /// acks, not kept: every byte here is in every connection's task).
    fn next(&self, held_ack: Option<Instant>) -> Option<Instant> {
        [self.keep_alive, self.token, held_ack, self.stall]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Conn {
    /// The connected client's loop: reads, writes, deliveries, deadlines.
    /// A plain function returning an `async move` block, as [`run`] is: it
    /// is in every connection's task, and an `async fn` keeps its arguments
    /// twice.
    #[expect(
        clippy::manual_async_fn,
        reason = "see above: an async fn doubles the arguments"
    )]
    fn run_loop<'a, R, W>(
        &'a mut self,
        rd: &'a mut R,
        wr: &'a mut W,
        inbuf: &'a mut BytesMut,
        keep_alive: Option<Duration>,
        shutdown: &'a CancellationToken,
    ) -> impl std::future::Future<Output = std::io::Result<Close>> + 'a
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        async move {
            // Futures that live across loop turns are created once: a new
            // `cancelled()` or timer per turn would take a shared lock per packet.
            // One entry in the shared deadline wheel serves every deadline (`Deadlines`); the session's
            // wake-up is polled in place (`Session::poll_woken`), no future.
            // The shutdown reaches a live connection as a kick (see
            // `Gateway::close_connections`); one registered after that kick
            // went out sees the token here.
            if shutdown.is_cancelled() {
                return Ok(Close::for_kick(aerie_core::Kick::SERVER_SHUTTING_DOWN));
            }
            let session = self.session.clone();
            // When the shared deadline wheel wakes this connection next.
            // (A tick of the wheel: 8 bytes where an `Instant` is 16.)
            let mut armed: Option<u32> = None;
            let mut deadlines = Deadlines {
                keep_alive: keep_alive.map(|ka| Instant::now() + ka),
                token: self.token_deadline(),
                ..Deadlines::default()
            };
            let mut socket = SocketClock::default();
            let mut last_seen = Instant::now();
            // Packets the client sent right behind CONNECT may already be in
            // `inbuf`: handle them now, not after the client's next bytes.
            if let Flow::Close(c) = self.decode_and_handle(inbuf) {
                return Ok(c);
            }
            self.pump();
            loop {
                // How far back the client's unacknowledged deliveries go: a
                // session record kept off the node replays from there.
                self.session
                    .set_in_flight_since(self.flight.oldest_unacknowledged());
                socket.observe(
                    self.config.slow_consumer_timeout,
                    Instant::now,
                    self.out.is_pending(),
                    &self.session,
                    &mut deadlines.stall,
                );
                self.pace_publisher().await;
                // Until no answer is held: the packets read behind a held one
                // may hold another, and nothing below would wake this loop to
                // release it while the client waits for that answer (no
                // bytes come, none are pending out, no ticket moves).
                while self.held.is_some() {
                    // Boxed: rare, and inline its future would be in every
                    // connection's task for its whole life.
                    if let Flow::Close(c) = Box::pin(self.release_held()).await {
                        return Ok(c);
                    }
                    if let Flow::Close(c) = self.decode_and_handle(inbuf) {
                        return Ok(c);
                    }
                    self.pump();
                }
                let now = Instant::now();
                let mut next = deadlines.next(self.held_ack_deadline());
                if next.is_some_and(|t| t <= now) {
                    if let Some(c) = self.deadline_passed(
                        now,
                        keep_alive,
                        last_seen,
                        &mut deadlines,
                        &mut socket,
                    ) {
                        return Ok(c);
                    }
                    // A passed deadline moved (keep alive) or went.
                    next = deadlines.next(self.held_ack_deadline());
                }
                if let Some(next) = next
                    && armed.is_none_or(|a| wheel::passed(a, now) || wheel::tick_of(next) < a)
                {
                    armed = Some(wheel::arm(next, &session));
                }
                // The store's own back-pressure: a client whose acks wait for a
                // backlogged store is not read until the backlog shrinks.
                let store_full = self.holds_acks() && self.tenant.store().is_backlogged();
                // The backbone's (scale-out): a client that publishes is not
                // read while the queue toward the other gateways is full; its
                // session is woken once there is room.
                let backbone_full =
                    self.publishing.is_some() && self.tenant.backbone_backlogged(&self.session);
                tokio::select! {
                    r = std::future::poll_fn(|cx| self.out.poll_write_step(wr, cx)), if self.out.is_pending() => {
                        r?;
                        socket.progressed(Instant::now, self.out.is_pending(), &self.session);
                        // Deliveries wait in the bounded session queue, not
                        // here, until the socket took the last batch.
                        self.pump();
                    }
                    n = read_more(rd, inbuf), if !store_full && !backbone_full && self.out.unwritten() < READ_WHILE_UNWRITTEN_BELOW => {
                        if n? == 0 {
                            return Ok(Close { disconnect: None, publish_will: true, why: "closed_by_client" });
                        }
                        last_seen = Instant::now();
                        if let Flow::Close(c) = self.decode_and_handle(inbuf) {
                            return Ok(c);
                        }
                        if std::mem::take(&mut self.token_renewed) {
                            deadlines.token = self.token_deadline();
                        }
                        self.pump();
                    }
                    () = std::future::poll_fn(|cx| session.poll_woken(cx)) => {
                        if let Some(kick) = self.session.take_kick() {
                            return Ok(Close::for_kick(kick));
                        }
                        self.pump();
                    }
                    // Boxed, and only while acks are held: inline, the watch's
                    // future (120 bytes) would be in every connection's task.
                    _ = futures_util::future::OptionFuture::from(
                        self.publishing.as_mut().filter(|p| !p.held_acks.is_empty()).map(|p| Box::pin(p.durable.changed()))
                    ), if self.holds_acks() => {
                        self.release_acks();
                    }
                }
            }
        }
    }

    /// What a passed deadline does: close for an expired token, a silent
    /// client, acks held too long or a stalled slow consumer, or move the
    /// keep-alive deadline to what the last packet allows.
    fn deadline_passed(
        &mut self,
        now: Instant,
        keep_alive: Option<Duration>,
        last_seen: Instant,
        deadlines: &mut Deadlines,
        socket: &mut SocketClock,
    ) -> Option<Close> {
        if deadlines.token.is_some_and(|t| now >= t) {
            let kick = crate::auth::TOKEN_EXPIRED;
            metrics::counter!(crate::auth::AUTH_DISCONNECTS_TOTAL, "why" => kick.why).increment(1);
            return Some(Close {
                disconnect: Some(kick.reason),
                publish_will: true,
                why: kick.why,
            });
        }
        if let (Some(ka), Some(at)) = (keep_alive, deadlines.keep_alive)
            && now >= at
        {
            // Re-armed lazily: packets only move `last_seen`.
            if now.saturating_duration_since(last_seen) >= ka {
                return Some(Close {
                    disconnect: Some(ReasonCode::KEEP_ALIVE_TIMEOUT),
                    publish_will: true,
                    why: "keep_alive_timeout",
                });
            }
            deadlines.keep_alive = Some(last_seen + ka);
        }
        if self.held_ack_deadline().is_some_and(|t| now >= t)
            && let Flow::Close(c) = self.expire_held_acks()
        {
            return Some(c);
        }
        if deadlines.stall.is_some_and(|t| now >= t)
            && let Some(stalled) = socket.check(
                self.config.slow_consumer_timeout,
                now,
                &self.session,
                &mut deadlines.stall,
            )
        {
            return Some(self.slow_consumer(stalled));
        }
        None
    }

    /// When the oldest held acknowledgement will have waited
    /// `store_ack_timeout`.
    fn held_ack_deadline(&self) -> Option<Instant> {
        self.publishing
            .as_ref()
            .and_then(|p| p.held_acks.front())
            .map(|front| front.since + self.config.store_ack_timeout)
    }

    /// When the token runs out (`exp`, a Unix second); `None` for an
    /// anonymous client.
    fn token_deadline(&self) -> Option<Instant> {
        let c = self.live.credential()?;
        let exp = std::time::UNIX_EPOCH + Duration::from_secs(c.exp.max(0) as u64);
        let left = exp
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        Some(Instant::now() + left)
    }

    /// Decodes every complete packet in `inbuf` and handles it.
    fn decode_and_handle(&mut self, inbuf: &mut BytesMut) -> Flow {
        let mut received = [0u32; 16];
        let flow = self.decode_and_handle_counted(inbuf, &mut received);
        outbox::report_counts(&mut received, &m::hot().packets_received);
        self.flush_window();
        if inbuf.is_empty() && !(RELEASE_READ_BUFFER_UP_TO..=64 * 1024).contains(&inbuf.capacity())
        {
            // Most connections are idle most of the time: one that has read
            // all it was sent holds no read buffer (the next read allocates
            // one), unless it is busy enough to have grown it. A large packet
            // grew it past what a busy connection needs: not kept either.
            *inbuf = BytesMut::new();
        }
        flow
    }

    fn decode_and_handle_counted(
        &mut self,
        inbuf: &mut BytesMut,
        received: &mut [u32; 16],
    ) -> Flow {
        // The tenant's limit is read per batch, so a change applies at once.
        let max_packet_size = self
            .config
            .max_packet_size
            .min(self.tenant.quota().max_packet_size());
        loop {
            match aerie_proto::decode(inbuf, self.version, max_packet_size) {
                Ok(Some(packet)) => {
                    received[usize::from(packet.packet_type())] += 1;
                    if let Flow::Close(c) = self.handle(packet) {
                        return Flow::Close(c);
                    }
                    if self.held.is_some() {
                        // The rest waits for the held answer (`release_held`).
                        return Flow::Continue;
                    }
                }
                Ok(None) => return Flow::Continue,
                Err(e) => {
                    if matches!(e, DecodeError::PacketTooLarge { max, .. } if max < self.config.max_packet_size)
                    {
                        self.tenant.quota().refused(aerie_core::Limit::PacketSize);
                    }
                    metrics::counter!(m::PROTOCOL_ERRORS_TOTAL, "reason" => format!("0x{:02X}", e.reason_code().0))
                        .increment(1);
                    tracing::debug!(error = %e, client_id = %self.session.client_id, "bad packet");
                    return Close::by_server(e.reason_code(), "decode_error");
                }
            }
        }
    }
}
