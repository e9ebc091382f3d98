//! The scenarios. Each starts its own broker instance (fresh, so queues and
//! allocator caches left by one scenario don't skew the next, notably RSS),
//! runs for a bounded time, and returns its rows.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aerie_proto::QoS;
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::brokers::{self, Kind, Running};
use crate::clients::{self, Counter};
use crate::report::{self, Better, Row, Value};
use crate::{Options, progress};

const PAYLOAD: usize = 64;
const PUBLISHERS: usize = 4;
/// Publishers of the persistent fan-in: a managed service's many devices.
const PERSISTENT_PUBLISHERS: usize = 8;
const QOS1_WINDOW: u64 = 64;
const FAN_OUT_SUBSCRIBERS: usize = 100;
const LATENCY_RATE: u64 = 10_000;
/// Client sockets per loopback source address (ephemeral ports are ~28k).
const CONNS_PER_SOURCE: usize = 20_000;
/// Idle connections opened at once: more overflows Mosquitto's listen
/// backlog, and each dropped SYN costs a 1 s retransmit.
const CONNECT_BATCH: usize = 64;
/// Upper bound on opening all idle connections.
const IDLE_CONNECT_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    FanInQos0,
    FanInQos1,
    FanInQos1Persistent,
    FanOut,
    Latency,
    Idle10k,
    Idle50k,
    /// Not a table row and not in `ALL`: minutes of mixed load (`soak`).
    Soak,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::FanInQos0,
        Scenario::FanInQos1,
        Scenario::FanInQos1Persistent,
        Scenario::FanOut,
        Scenario::Latency,
        Scenario::Idle10k,
        Scenario::Idle50k,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::FanInQos0 => "fan-in-qos0",
            Scenario::FanInQos1 => "fan-in-qos1",
            Scenario::FanInQos1Persistent => "fan-in-qos1-persistent",
            Scenario::FanOut => "fan-out",
            Scenario::Latency => "latency",
            Scenario::Idle10k => "idle-10k",
            Scenario::Idle50k => "idle-50k",
            Scenario::Soak => "soak",
        }
    }

    /// The rows this scenario reports, whatever happens.
    fn shape(self) -> Vec<(String, &'static str, Better)> {
        let one = |label: &str, unit, better| vec![(label.to_owned(), unit, better)];
        match self {
            Scenario::Soak => Vec::new(),
            Scenario::FanInQos0 => one("fan-in QoS 0 (4 pub → 1 sub)", "msg/s", Better::Higher),
            Scenario::FanInQos1 => one(
                "fan-in QoS 1 (4 pub, 64 in flight → 1 sub)",
                "msg/s",
                Better::Higher,
            ),
            Scenario::FanInQos1Persistent => {
                let label = "fan-in QoS 1 → persistent session (8 pub, 64 in flight → 1 sub)";
                let mut rows = one(label, "msg/s", Better::Higher);
                for q in ["p50", "p99"] {
                    rows.push((format!("  its PUBACK latency {q}"), "µs", Better::Lower));
                }
                rows
            }
            Scenario::FanOut => one(
                "fan-out QoS 0 (1 pub → 100 subs)",
                "deliveries/s",
                Better::Higher,
            ),
            Scenario::Latency => report::latency_rows(&Histogram::new(1).expect("histogram"))
                .into_iter()
                .map(|r| (r.label, r.unit, r.better))
                .collect(),
            Scenario::Idle10k | Scenario::Idle50k => one(
                &format!(
                    "idle memory, {} conns",
                    report::number(self.idle_count() as f64)
                ),
                "KiB/conn",
                Better::Lower,
            ),
        }
    }

    fn idle_count(self) -> usize {
        match self {
            Scenario::Idle50k => 50_000,
            _ => 10_000,
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .chain([Scenario::Soak])
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let mut names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                names.push(Scenario::Soak.name());
                format!("unknown scenario {s:?}; one of {}", names.join(", "))
            })
    }
}

/// Runs one scenario against a fresh instance of `target`. Failures become
/// FAILED cells (with details on stderr) so the other rows still print.
pub async fn run(scenario: Scenario, target: &Kind, opts: &Options) -> Vec<Row> {
    let values = match run_inner(scenario, target, opts).await {
        Ok(values) => values,
        Err(e) => {
            progress(format_args!(
                "{} {}: FAILED: {e:#}",
                target.name(),
                scenario.name()
            ));
            let short = format!("{e}");
            vec![Value::Failed(short); scenario.shape().len()]
        }
    };
    scenario
        .shape()
        .into_iter()
        .zip(values)
        .map(|((label, unit, better), value)| Row::new(label, unit, better, value))
        .collect()
}

async fn run_inner(
    scenario: Scenario,
    target: &Kind,
    opts: &Options,
) -> anyhow::Result<Vec<Value>> {
    if let Kind::AerieCluster = target
        && let Some(why) = crate::cluster::skipped(scenario)
    {
        progress(format_args!("  skipped: {why}"));
        return Ok(vec![Value::Skipped(why); scenario.shape().len()]);
    }
    let persistence = scenario == Scenario::FanInQos1Persistent;
    let mut broker = brokers::start(target, persistence).await?;
    let bound = opts.warmup + opts.duration + IDLE_CONNECT_LIMIT + Duration::from_secs(30);
    let result = tokio::time::timeout(bound, async {
        match scenario {
            Scenario::FanInQos0 => fan_in(&broker, opts, QoS::AtMostOnce).await,
            Scenario::FanInQos1 => fan_in(&broker, opts, QoS::AtLeastOnce).await,
            Scenario::FanInQos1Persistent => persistent_fan_in(&broker, opts).await,
            Scenario::FanOut => fan_out(&broker, opts).await,
            Scenario::Latency => latency(&broker, opts).await,
            Scenario::Idle10k | Scenario::Idle50k => idle(&broker, scenario.idle_count()).await,
            Scenario::Soak => bail!("the soak is not a table row"),
        }
    })
    .await;
    // A crash must read as a crash, not as a slow or failed client.
    broker.check_alive().context("broker crashed")?;
    let values = result.map_err(|_| anyhow::anyhow!("timed out after {} s", bound.as_secs()))??;
    if let Some(gateways) = broker.gateways {
        progress(format_args!(
            "  {}",
            crate::cluster::crossed(gateways).await?
        ));
    }
    Ok(values)
}

/// Clients' tasks and the token that stops them.
struct Load {
    tasks: JoinSet<anyhow::Result<()>>,
    stop: CancellationToken,
}

impl Load {
    fn new() -> Load {
        Load {
            tasks: JoinSet::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Subscribes `sub` to the fan-in's topics and counts (and acks) what it
    /// receives until the load stops.
    async fn subscriber(&mut self, mut sub: clients::Client, qos: QoS) -> anyhow::Result<Counter> {
        sub.subscribe("bench/in/+", qos).await?;
        let received = Counter::default();
        self.tasks.spawn(clients::receive(
            sub,
            received.clone(),
            self.stop.clone(),
            |_| {},
        ));
        Ok(received)
    }

    /// Stops every client; the first error any of them hit fails the scenario.
    async fn finish(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let mut first = Ok(());
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r.map_err(anyhow::Error::from).and_then(|r| r)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

/// Rates of `counters` over the measured window (after the warm-up), and
/// the CPU the bench and the broker used in it, in % of one core.
async fn measure<const N: usize>(
    broker: &Running,
    counters: [&Counter; N],
    opts: &Options,
) -> ([f64; N], String) {
    tokio::time::sleep(opts.warmup).await;
    let c0 = counters.map(Counter::get);
    let (t0, me0, it0) = (Instant::now(), brokers::cpu_of("self"), broker.cpu());
    tokio::time::sleep(opts.duration).await;
    let secs = t0.elapsed().as_secs_f64();
    let (me1, it1) = (brokers::cpu_of("self"), broker.cpu());
    let mut rates = [0.0; N];
    for i in 0..N {
        rates[i] = (counters[i].get() - c0[i]) as f64 / secs;
    }
    let pct = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.0}%", (b - a).as_secs_f64() * 100.0 / secs),
        _ => "?".to_owned(),
    };
    let cpu = format!("CPU: bench {}, broker {}", pct(me0, me1), pct(it0, it1));
    (rates, cpu)
}

async fn fan_in(broker: &Running, opts: &Options, qos: QoS) -> anyhow::Result<Vec<Value>> {
    let mut load = Load::new();
    let sub = broker.subscriber("bench-sub").await?;
    let received = load.subscriber(sub, qos).await?;
    let sent = Counter::default();
    for i in 0..PUBLISHERS {
        let client = broker.publisher(&format!("bench-pub-{i}")).await?;
        let (topic, payload, stop) = (
            format!("bench/in/{i}"),
            vec![0x5a; PAYLOAD],
            load.stop.clone(),
        );
        match qos {
            QoS::AtMostOnce => load.tasks.spawn(clients::flood_qos0(
                client,
                topic,
                payload,
                sent.clone(),
                stop,
            )),
            _ => load.tasks.spawn(clients::flood_qos1(
                client,
                topic,
                payload,
                QOS1_WINDOW,
                sent.clone(),
                stop,
                None,
            )),
        };
    }
    let ([rate, sent_rate], cpu) = measure(broker, [&received, &sent], opts).await;
    load.finish().await?;
    progress(format_args!(
        "  received {rate:.0} msg/s (published {sent_rate:.0} msg/s); {cpu}"
    ));
    Ok(vec![Value::Number(rate)])
}

/// Fan-in QoS 1 to a subscriber whose session outlives its connection
/// (3.1.1 clean session 0): Aerie stores every delivery and holds the
/// publisher's PUBACK until it is fsynced. Rate delivered, PUBACK latency,
/// and (Aerie) the store's commits as evidence that it did write.
async fn persistent_fan_in(broker: &Running, opts: &Options) -> anyhow::Result<Vec<Value>> {
    let mut load = Load::new();
    let sub_id = "bench-sub-persistent";
    let login = clients::login(sub_id, broker.password(0).as_deref(), false);
    let (sub, ack) = clients::handshake(broker.sub_addr, None, login).await?;
    if ack.reason != aerie_proto::ReasonCode::SUCCESS {
        bail!("persistent subscriber refused: {ack:?}");
    }
    let received = load.subscriber(sub, QoS::AtLeastOnce).await?;
    let clock = clients::AckClock::new()?;
    let sent = Counter::default();
    for i in 0..PERSISTENT_PUBLISHERS {
        let client = broker.publisher(&format!("bench-pub-{i}")).await?;
        load.tasks.spawn(clients::flood_qos1(
            client,
            format!("bench/in/{i}"),
            vec![0x5a; PAYLOAD],
            QOS1_WINDOW,
            sent.clone(),
            load.stop.clone(),
            Some(clock.clone()),
        ));
    }
    let store0 = store_commits(broker).await;
    clock.recording.store(true, Ordering::Relaxed);
    let ([rate, sent_rate], cpu) = measure(broker, [&received, &sent], opts).await;
    clock.recording.store(false, Ordering::Relaxed);
    let store1 = store_commits(broker).await;
    load.finish().await?;
    let h = clock.histogram.lock().clone();
    let store = match (store0, store1) {
        // A gateway keeps nothing itself: what it appended to JetStream.
        (Some((_, _, a0)), Some((_, _, a1))) if a1 > a0 => format!(
            "; message log: {:.0} appends acknowledged by JetStream over warm-up and measurement",
            a1 - a0
        ),
        (Some((c0, o0, _)), Some((c1, o1, _))) => format!(
            "; store: {:.0} commits, {:.0} ops over warm-up and measurement",
            c1 - c0,
            o1 - o0
        ),
        _ => String::new(),
    };
    progress(format_args!(
        "  received {rate:.0} msg/s (published {sent_rate:.0} msg/s); PUBACK p50 {} µs p99 {} µs max {} µs; {cpu}{store}",
        h.value_at_quantile(0.5) / 1000,
        h.value_at_quantile(0.99) / 1000,
        h.max() / 1000
    ));
    if h.is_empty() {
        bail!("no PUBACK in the measured window");
    }
    if let Some(bytes) = broker.saved_bytes() {
        progress(format_args!("  mosquitto saved {bytes} bytes of db"));
        if bytes == 0 {
            bail!("mosquitto saved nothing: its persistence is not working");
        }
    }
    let us = |q: f64| Value::Number(h.value_at_quantile(q) as f64 / 1000.0);
    Ok(vec![Value::Number(rate), us(0.5), us(0.99)])
}

/// (commits, ops) the store has made so far, and (a gateway) the appends
/// its message log had acknowledged, from /metrics (Aerie only; before the
/// first the metric is not exported yet: 0).
async fn store_commits(broker: &Running) -> Option<(f64, f64, f64)> {
    let text = broker.metrics().await.ok()??;
    let read = |name| report::metric(&text, name).unwrap_or(0.0);
    Some((
        read("aerie_store_batch_ops_count"),
        read("aerie_store_batch_ops_sum"),
        read("aerie_message_log_appends_total"),
    ))
}

async fn fan_out(broker: &Running, opts: &Options) -> anyhow::Result<Vec<Value>> {
    let mut load = Load::new();
    let received = Counter::default();
    for i in 0..FAN_OUT_SUBSCRIBERS {
        let mut sub = broker.subscriber(&format!("bench-sub-{i}")).await?;
        sub.subscribe("bench/out", QoS::AtMostOnce).await?;
        load.tasks.spawn(clients::receive(
            sub,
            received.clone(),
            load.stop.clone(),
            |_| {},
        ));
    }
    let publisher = broker.publisher("bench-pub").await?;
    let sent = Counter::default();
    load.tasks.spawn(clients::flood_qos0(
        publisher,
        "bench/out".to_owned(),
        vec![0x5a; PAYLOAD],
        sent.clone(),
        load.stop.clone(),
    ));
    let ([rate, sent_rate], cpu) = measure(broker, [&received, &sent], opts).await;
    load.finish().await?;
    progress(format_args!(
        "  delivered {rate:.0} msg/s (published {sent_rate:.0} msg/s); {cpu}"
    ));
    Ok(vec![Value::Number(rate)])
}

async fn latency(broker: &Running, opts: &Options) -> anyhow::Result<Vec<Value>> {
    let mut load = Load::new();
    let epoch = Instant::now();
    let recording = Arc::new(AtomicBool::new(false));
    let mut sub = broker.subscriber("bench-sub").await?;
    sub.subscribe("bench/lat", QoS::AtMostOnce).await?;
    let received = Counter::default();
    let histogram = {
        let (received, stop, recording) = (received.clone(), load.stop.clone(), recording.clone());
        tokio::spawn(async move {
            // 1 ns .. 60 s, three significant digits.
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
            clients::receive(sub, received, stop, |p| {
                if !recording.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(stamp) = p.payload.get(..8) {
                    let sent = u64::from_be_bytes(stamp.try_into().expect("8 bytes"));
                    let now = epoch.elapsed().as_nanos() as u64;
                    h.saturating_record(now.saturating_sub(sent).max(1));
                }
            })
            .await?;
            anyhow::Ok(h)
        })
    };
    let publisher = broker.publisher("bench-pub").await?;
    let sent = Counter::default();
    load.tasks.spawn(clients::paced(
        publisher,
        "bench/lat".to_owned(),
        LATENCY_RATE,
        PAYLOAD,
        epoch,
        sent.clone(),
        load.stop.clone(),
    ));
    tokio::time::sleep(opts.warmup).await;
    let (s0, r0) = (sent.get(), received.get());
    recording.store(true, Ordering::Relaxed);
    tokio::time::sleep(opts.duration).await;
    recording.store(false, Ordering::Relaxed);
    let (s1, r1) = (sent.get(), received.get());
    load.finish().await?;
    let h = histogram.await??;
    progress(format_args!(
        "  sent {} received {} in the window; p50 {} µs p99 {} µs p99.9 {} µs max {} µs",
        s1 - s0,
        r1 - r0,
        h.value_at_quantile(0.5) / 1000,
        h.value_at_quantile(0.99) / 1000,
        h.value_at_quantile(0.999) / 1000,
        h.max() / 1000
    ));
    Ok(report::latency_rows(&h)
        .into_iter()
        .map(|r| r.value)
        .collect())
}

async fn idle(broker: &Running, n: usize) -> anyhow::Result<Vec<Value>> {
    let Some(before) = broker.settled_rss_kib().await else {
        return Ok(vec![Value::Skipped("broker pid unknown".into())]);
    };
    // One descriptor per connection on each side, plus the broker's own.
    let need = n as u64 + 256;
    let ours = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft);
    let theirs = broker.nofile_limit().unwrap_or(u64::MAX);
    let limit = ours.min(theirs);
    // Where the descriptor limit is below what the row asks for (and the
    // hard limit cannot be raised), measure as many as it allows and say so.
    let asked = n;
    let n = if need > limit {
        let fits = (limit.saturating_sub(256) / 1000 * 1000) as usize;
        progress(format_args!(
            "  {asked} connections need {need} descriptors, RLIMIT_NOFILE is {limit}: measuring {fits}"
        ));
        if fits == 0 {
            return Ok(vec![Value::Skipped(format!("RLIMIT_NOFILE {limit}"))]);
        }
        fits
    } else {
        n
    };
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        if started.elapsed() > IDLE_CONNECT_LIMIT {
            bail!(
                "only {} of {n} connected in {} s",
                conns.len(),
                IDLE_CONNECT_LIMIT.as_secs()
            );
        }
        let mut batch = JoinSet::new();
        for i in conns.len()..(conns.len() + CONNECT_BATCH).min(n) {
            let addr = broker.sub_addr;
            // The first block connects unbound: bind(port 0) reserves a port by
            // a search that is linear in the ports in use (about 1 ms of system
            // time per socket at 10k), while connect() picks one by 4-tuple.
            let source = (i >= CONNS_PER_SOURCE)
                .then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i / CONNS_PER_SOURCE) as u8)));
            // With tenants, the idle connections are spread over all of them.
            let password = broker.password(i);
            batch.spawn(async move {
                let mut c = clients::connect(
                    addr,
                    &format!("bench-idle-{i}"),
                    source,
                    password.as_deref(),
                )
                .await?;
                c.subscribe(&format!("bench/idle/{i}"), QoS::AtLeastOnce)
                    .await?;
                anyhow::Ok(c)
            });
        }
        while let Some(r) = batch.join_next().await {
            conns.push(r??);
        }
    }
    let connect_time = started.elapsed();
    // Let the broker finish whatever it does after SUBACK before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = broker.rss_kib().context("broker RSS")?;
    let per_conn = after.saturating_sub(before) as f64 / n as f64;
    progress(format_args!(
        "  {n} connected+subscribed in {:.1} s; RSS {before} KiB → {after} KiB: {per_conn:.1} KiB/conn",
        connect_time.as_secs_f64()
    ));
    drop(conns);
    if n < asked {
        return Ok(vec![Value::Partial(
            per_conn,
            format!("{n} conns: RLIMIT_NOFILE {limit}"),
        )]);
    }
    Ok(vec![Value::Number(per_conn)])
}
