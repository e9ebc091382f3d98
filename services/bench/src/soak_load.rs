//! The soak's mixed load: a bounded number of MQTT 3.1.1 clients doing what
//! a managed broker sees all day. Steady subscribers on persistent sessions
//! that now and then reconnect; paced QoS 0/1/2 publishers; clients that
//! connect, subscribe, publish, unsubscribe and leave (some with a will,
//! some dropping the socket so the will fires); retained messages set and
//! cleared; bad tokens and malformed packets. A worker that hits an error
//! counts it and carries on: the soak is about the broker over time, and
//! its report says what went wrong.

use std::net::SocketAddr;
use std::time::Duration;

use aerie_proto::*;
use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::clients::{self, Client, Counter};

const SUBSCRIBERS: usize = 4;
/// One publisher per QoS, each at this rate: 180 msg/s in, ~720 out.
const PUBLISH_RATE: u64 = 60;
const CHURNERS: usize = 8;
/// Client ids each churner cycles through: persistent sessions are resumed,
/// so their number stays bounded.
const CHURN_IDS: u64 = 4;
const RETAINED_TOPICS: u64 = 50;
/// Any one exchange with the broker longer than this is an error.
const STEP: Duration = Duration::from_secs(10);

/// What the load did, for the report.
#[derive(Clone, Default)]
pub struct Tally {
    pub connects: Counter,
    pub published: [Counter; 3],
    pub delivered: Counter,
    pub wills: Counter,
    pub subscribes: Counter,
    pub unsubscribes: Counter,
    pub retained_set: Counter,
    pub retained_cleared: Counter,
    pub dropped_without_disconnect: Counter,
    /// Bad tokens and malformed packets the broker answered as it should
    /// (refused / closed), and those it did not.
    pub hostile_answered: Counter,
    pub hostile_accepted: Counter,
    pub errors: Counter,
}

/// Credentials the load connects with.
#[derive(Clone)]
pub struct Credentials {
    pub token: String,
    /// A token that expires 60 s after the broker started.
    pub expiring: String,
    pub expires_at: Instant,
}

/// Starts every worker; they run until `stop`.
pub fn spawn(
    addr: SocketAddr,
    creds: Credentials,
    tally: Tally,
    stop: CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let ctx = Ctx {
        addr,
        creds,
        tally,
        stop,
    };
    for i in 0..SUBSCRIBERS {
        tasks.spawn(
            ctx.clone()
                .forever(i as u64, move |c, rng| subscriber(c, i, rng)),
        );
    }
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        tasks.spawn(
            ctx.clone()
                .forever(10 + qos as u64, move |c, _| publisher(c, qos)),
        );
    }
    for w in 0..CHURNERS {
        tasks.spawn(
            ctx.clone()
                .forever(20 + w as u64, move |c, rng| churner(c, w, rng)),
        );
    }
    tasks.spawn(ctx.clone().forever(40, retainer));
    tasks.spawn(ctx.clone().forever(50, hostile));
    tasks
}

#[derive(Clone)]
struct Ctx {
    addr: SocketAddr,
    creds: Credentials,
    tally: Tally,
    stop: CancellationToken,
}

impl Ctx {
    /// Runs `work` again and again until `stop`, counting its errors (and
    /// printing the first few) and pausing a little after each.
    async fn forever<F, Fut>(self, seed: u64, mut work: F)
    where
        F: FnMut(Ctx, Rng) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let mut rng = Rng::new(seed);
        while !self.stop.is_cancelled() {
            let run = work(self.clone(), rng.fork());
            let result = tokio::select! {
                _ = self.stop.cancelled() => return,
                r = run => r,
            };
            if let Err(e) = result {
                self.tally.errors.add(1);
                if self.tally.errors.get() <= 10 {
                    crate::progress(format_args!("soak: worker error: {e:#}"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    async fn login(
        &self,
        client_id: &str,
        clean: bool,
        will: Option<Will>,
    ) -> anyhow::Result<Client> {
        let mut connect = clients::login(client_id, Some(&self.creds.token), clean);
        connect.will = will;
        let (client, ack) = timeout(STEP, clients::handshake(self.addr, None, connect))
            .await
            .context("CONNECT timed out")??;
        if ack.reason != ReasonCode::SUCCESS {
            bail!("{client_id}: CONNECT refused: {:?}", ack.reason);
        }
        self.tally.connects.add(1);
        Ok(client)
    }
}

/// A persistent session subscribed to the data (at its own QoS) and the
/// wills; it reconnects every 20–40 s and resumes the session.
async fn subscriber(ctx: Ctx, i: usize, mut rng: Rng) -> anyhow::Result<()> {
    let mut c = ctx.login(&format!("soak-sub-{i}"), false, None).await?;
    let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][i % 3];
    subscribe(&mut c, &ctx.tally, "soak/data/+", qos).await?;
    subscribe(&mut c, &ctx.tally, "soak/will/#", QoS::AtLeastOnce).await?;
    let until = Instant::now() + Duration::from_millis(20_000 + rng.below(20_000));
    while Instant::now() < until {
        match timeout(Duration::from_secs(1), c.recv()).await {
            Ok(packet) => handle_incoming(&mut c, &ctx.tally, packet?).await?,
            Err(_) => continue,
        }
    }
    c.send(&Packet::Disconnect(Disconnect::default())).await
}

/// Publishes at `PUBLISH_RATE` at one QoS, waiting for each one's acks.
async fn publisher(ctx: Ctx, qos: QoS) -> anyhow::Result<()> {
    let mut c = ctx
        .login(&format!("soak-pub-{}", qos as u8), true, None)
        .await?;
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / PUBLISH_RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut id: u16 = 0;
    loop {
        tick.tick().await;
        id = id.checked_add(1).unwrap_or(1);
        publish(
            &mut c,
            &ctx.tally,
            "soak/data/stream",
            qos,
            false,
            b"soak payload",
            id,
        )
        .await?;
    }
}

/// Connects (clean or resuming, with or without a will), subscribes,
/// publishes a few messages, unsubscribes, then disconnects or just drops
/// the socket (so the will fires); a short pause; again.
async fn churner(ctx: Ctx, w: usize, mut rng: Rng) -> anyhow::Result<()> {
    let id = format!("soak-churn-{w}-{}", rng.below(CHURN_IDS));
    let with_will = rng.below(2) == 0;
    let will = with_will.then(|| Will {
        topic: format!("soak/will/{id}").as_str().into(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let mut c = ctx.login(&id, rng.below(2) == 0, will).await?;
    let filter = match rng.below(3) {
        0 => "soak/data/+".to_owned(),
        1 => "soak/retained/#".to_owned(),
        _ => format!("soak/churn/{id}"),
    };
    let qos = random_qos(&mut rng);
    subscribe(&mut c, &ctx.tally, &filter, qos).await?;
    for n in 1..=1 + rng.below(3) as u16 {
        let qos = random_qos(&mut rng);
        let topic = format!("soak/churn/{id}");
        publish(&mut c, &ctx.tally, &topic, qos, false, b"churn", n).await?;
    }
    // Stay a moment, taking deliveries.
    let until = Instant::now() + Duration::from_millis(100 + rng.below(400));
    while let Ok(packet) = timeout(until - Instant::now(), c.recv()).await {
        handle_incoming(&mut c, &ctx.tally, packet?).await?;
    }
    // Unsubscribe first: a resumable session left subscribed would queue
    // the data stream while offline and grow for reasons of its own.
    unsubscribe(&mut c, &ctx.tally, &filter).await?;
    if with_will && rng.below(2) == 0 {
        ctx.tally.dropped_without_disconnect.add(1);
        drop(c);
    } else {
        c.send(&Packet::Disconnect(Disconnect::default())).await?;
    }
    tokio::time::sleep(Duration::from_millis(100 + rng.below(200))).await;
    Ok(())
}

/// Sets a retained message on one of a bounded set of topics, and clears
/// one every third time; 10 per second.
async fn retainer(ctx: Ctx, mut rng: Rng) -> anyhow::Result<()> {
    let mut c = ctx.login("soak-retainer", true, None).await?;
    let mut id: u16 = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        id = id.checked_add(1).unwrap_or(1);
        let topic = format!("soak/retained/{}", rng.below(RETAINED_TOPICS));
        let clear = id.is_multiple_of(3);
        let payload: &[u8] = if clear { b"" } else { b"retained state" };
        publish(
            &mut c,
            &ctx.tally,
            &topic,
            QoS::AtLeastOnce,
            true,
            payload,
            id,
        )
        .await?;
        if clear {
            ctx.tally.retained_cleared.add(1);
        } else {
            ctx.tally.retained_set.add(1);
        }
    }
}

/// Every 100 ms one hostile client: a garbage, wrong-signature or expired
/// token (must be refused), or a packet of no 3.1.1 type or an absurd length after a
/// good CONNECT, or as the first packet (the connection must be closed).
async fn hostile(ctx: Ctx, mut rng: Rng) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answered = match rng.below(6) {
        0 => refused(&ctx, "not-a-token").await?,
        1 => refused(&ctx, &wrong_signature(&ctx.creds.token)).await?,
        2 if Instant::now() > ctx.creds.expires_at + Duration::from_secs(5) => {
            refused(&ctx, &ctx.creds.expiring).await?
        }
        2 => refused(&ctx, &wrong_signature(&ctx.creds.expiring)).await?,
        3 => {
            let mut c = ctx.login("soak-hostile", true, None).await?;
            // A whole packet of a type 3.1.1 does not have (0 is reserved,
            // 15 is MQTT 5's AUTH) with a random body: framed, so the
            // broker cannot just wait for more bytes, and never valid.
            let len = rng.below(63) as u8;
            let mut junk = vec![[0x00, 0xf0][rng.below(2) as usize], len];
            junk.extend((0..len).map(|_| rng.below(256) as u8));
            c.stream.write_all(&junk).await?;
            closed(c.stream).await
        }
        4 => {
            let mut c = ctx.login("soak-hostile", true, None).await?;
            // A PUBLISH claiming 256 MiB: more than any packet size limit.
            c.stream
                .write_all(&[0x30, 0xff, 0xff, 0xff, 0x7f, 0, 1])
                .await?;
            closed(c.stream).await
        }
        _ => {
            // A CONNECT whose remaining length has a fifth length byte.
            let mut s = TcpStream::connect(ctx.addr).await?;
            s.write_all(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]).await?;
            closed(s).await
        }
    };
    if answered {
        ctx.tally.hostile_answered.add(1);
    } else {
        ctx.tally.hostile_accepted.add(1);
    }
    Ok(())
}

/// Whether a CONNECT with `token` is refused (CONNACK with an error, or the
/// connection closed).
async fn refused(ctx: &Ctx, token: &str) -> anyhow::Result<bool> {
    let connect = clients::login("soak-bad-token", Some(token), true);
    match timeout(STEP, clients::handshake(ctx.addr, None, connect)).await {
        Err(_) => bail!(
            "no answer to a CONNECT with a bad token in {} s",
            STEP.as_secs()
        ),
        Ok(Ok((_, ack))) => Ok(ack.reason != ReasonCode::SUCCESS),
        Ok(Err(_)) => Ok(true),
    }
}

/// Whether the broker closes `stream` within `STEP` (reading whatever it
/// sends first, e.g. a DISCONNECT).
async fn closed(mut stream: TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + STEP;
    loop {
        match timeout(deadline - Instant::now(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// The token with one character of its signature changed.
fn wrong_signature(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last = if *last == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8(bytes).expect("ASCII token")
}

async fn subscribe(c: &mut Client, tally: &Tally, filter: &str, qos: QoS) -> anyhow::Result<()> {
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(
            filter.into(),
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
        properties: SubscribeProperties::default(),
    }))
    .await?;
    match await_ack(c, tally, |p| matches!(p, Packet::SubAck(_))).await? {
        Packet::SubAck(ack) if !ack.reasons.iter().any(|r| r.is_error()) => {
            tally.subscribes.add(1);
            Ok(())
        }
        other => bail!("SUBSCRIBE {filter} refused: {other:?}"),
    }
}

async fn unsubscribe(c: &mut Client, tally: &Tally, filter: &str) -> anyhow::Result<()> {
    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        filters: vec![filter.into()],
        properties: UnsubscribeProperties::default(),
    }))
    .await?;
    await_ack(c, tally, |p| matches!(p, Packet::UnsubAck(_))).await?;
    tally.unsubscribes.add(1);
    Ok(())
}

/// Publishes one message and completes its QoS flow.
async fn publish(
    c: &mut Client,
    tally: &Tally,
    topic: &str,
    qos: QoS,
    retain: bool,
    payload: &[u8],
    id: u16,
) -> anyhow::Result<()> {
    c.send(&Packet::Publish(Publish {
        qos,
        retain,
        topic: topic.into(),
        packet_id: (qos != QoS::AtMostOnce).then_some(id),
        payload: bytes::Bytes::copy_from_slice(payload),
        ..Default::default()
    }))
    .await?;
    match qos {
        QoS::AtMostOnce => {}
        QoS::AtLeastOnce => {
            await_ack(
                c,
                tally,
                |p| matches!(p, Packet::PubAck(a) if a.packet_id == id),
            )
            .await?;
        }
        QoS::ExactlyOnce => {
            await_ack(
                c,
                tally,
                |p| matches!(p, Packet::PubRec(a) if a.packet_id == id),
            )
            .await?;
            c.send(&Packet::PubRel(PubResp {
                packet_id: id,
                ..Default::default()
            }))
            .await?;
            await_ack(
                c,
                tally,
                |p| matches!(p, Packet::PubComp(a) if a.packet_id == id),
            )
            .await?;
        }
    }
    tally.published[qos as usize].add(1);
    Ok(())
}

/// The first packet `wanted` matches, serving deliveries meanwhile.
async fn await_ack(
    c: &mut Client,
    tally: &Tally,
    wanted: impl Fn(&Packet) -> bool,
) -> anyhow::Result<Packet> {
    let deadline = Instant::now() + STEP;
    loop {
        let packet = timeout(deadline - Instant::now(), c.recv())
            .await
            .context("no acknowledgement in time")??;
        if wanted(&packet) {
            return Ok(packet);
        }
        handle_incoming(c, tally, packet).await?;
    }
}

/// Counts a delivery and acknowledges it as its QoS asks; answers PUBREL.
async fn handle_incoming(c: &mut Client, tally: &Tally, packet: Packet) -> anyhow::Result<()> {
    match packet {
        Packet::Publish(p) => {
            if p.topic.starts_with("soak/will/") {
                tally.wills.add(1);
            } else {
                tally.delivered.add(1);
            }
            let Some(packet_id) = p.packet_id else {
                return Ok(());
            };
            let ack = PubResp {
                packet_id,
                ..Default::default()
            };
            match p.qos {
                QoS::AtLeastOnce => c.send(&Packet::PubAck(ack)).await,
                _ => c.send(&Packet::PubRec(ack)).await,
            }
        }
        Packet::PubRel(rel) => {
            let ack = PubResp {
                packet_id: rel.packet_id,
                ..Default::default()
            };
            c.send(&Packet::PubComp(ack)).await
        }
        Packet::Disconnect(d) => bail!("disconnected by the broker: {:?}", d.reason),
        other => bail!("unexpected packet: {other:?}"),
    }
}

fn random_qos(rng: &mut Rng) -> QoS {
    [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][rng.below(3) as usize]
}

/// A small deterministic generator (xorshift64*): the load's choices need
/// to vary, not to be unpredictable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A generator for the next round of a worker.
    fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_covers_its_range_and_differs_by_seed() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 6];
        for _ in 0..6000 {
            seen[rng.below(6) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_ne!(Rng::new(1).next(), Rng::new(2).next());
    }

    #[test]
    fn a_wrong_signature_differs_only_in_the_last_character() {
        let bad = wrong_signature("aaa.bbb.ccA");
        assert_eq!(bad, "aaa.bbb.ccB");
        assert_eq!(wrong_signature("x.y.z"), "x.y.A");
    }
}
