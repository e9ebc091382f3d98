//! `aerie bench --scenario soak --duration N`: N minutes of mixed, bounded
//! load (see `soak_load`) against an Aerie with JWT authentication that the
//! bench starts, watching whether the broker's memory, descriptors and
//! threads stay flat. A leak shows as growth between the first reading
//! under load (after a warm-up, so allocator caches filling don't count) and
//! the last; the idle readings before and after say what the load left.

use std::fmt::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::broker_stats::{self, Sample};
use crate::brokers::{self, Kind};
use crate::clients::Counter;
use crate::soak_load::{self, Credentials, Tally};
use crate::{Options, progress};

/// Tenants of the soak's broker: the load uses the first, the second keeps a
/// bystander subscribed to the same names.
const TENANTS: usize = 2;
/// Settle time after the load stops: tokio's idle blocking threads exit
/// after 10 s, and closed connections must be reaped.
const SETTLE: Duration = Duration::from_secs(12);

pub async fn run(opts: &Options) -> anyhow::Result<()> {
    if opts.broker_only.is_some() {
        bail!("the soak starts its own Aerie: it reads the broker's /proc entries");
    }
    let duration = opts.soak_duration;
    let mut broker = brokers::start(&Kind::AerieTenants(TENANTS), false).await?;
    // The expiring token was minted during start-up, at most now.
    let creds = Credentials {
        token: broker.password(0).context("no token")?,
        expiring: broker.expiring_token.clone().context("no expiring token")?,
        expires_at: Instant::now() + Duration::from_secs(60),
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_before = broker_stats::sample(&broker, Duration::ZERO).await?;
    report_progress("idle, before the load", &idle_before, None);

    let tally = Tally::default();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = soak_load::spawn(broker.pub_addr, creds, tally.clone(), stop.clone());
    let mut loaded = Vec::new();
    for at in reading_times(duration) {
        tokio::time::sleep_until(started + at).await;
        broker
            .check_alive()
            .context("broker crashed during the soak")?;
        let s = broker_stats::sample(&broker, started.elapsed()).await?;
        report_progress("under load", &s, Some(&tally));
        loaded.push(s);
    }
    stop.cancel();
    if timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        progress(format_args!("soak: workers did not stop in 15 s; aborted"));
        tasks.abort_all();
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    broker
        .check_alive()
        .context("broker crashed after the soak")?;
    let idle_after = broker_stats::sample(&broker, started.elapsed()).await?;
    report_progress("idle, after the load", &idle_after, None);

    print!(
        "{}",
        render(opts, elapsed, &tally, &idle_before, &loaded, &idle_after)
    );
    Ok(())
}

/// When to read the broker, counted from the start of the load: after the
/// warm-up (a fifth of the run, at most a minute), every minute (every
/// quarter of a run under two minutes), and at the end.
pub fn reading_times(duration: Duration) -> Vec<Duration> {
    let warm = (duration / 5).min(Duration::from_secs(60));
    let step = if duration >= Duration::from_secs(120) {
        Duration::from_secs(60)
    } else {
        (duration / 4).max(Duration::from_secs(1))
    };
    let mut times = vec![warm];
    let mut at = step;
    while at < duration {
        if at > warm {
            times.push(at);
        }
        at += step;
    }
    if duration > warm {
        times.push(duration);
    }
    times
}

fn report_progress(what: &str, s: &Sample, tally: Option<&Tally>) {
    let load = tally.map_or(String::new(), |t| {
        format!(
            "; so far {} connects, {} published, {} delivered, {} errors",
            t.connects.get(),
            sum(&t.published),
            t.delivered.get(),
            t.errors.get()
        )
    });
    progress(format_args!(
        "soak: {:.0} s {what}: {}{load}",
        s.at.as_secs_f64(),
        broker_stats::summary(s)
    ));
}

fn sum(counters: &[Counter]) -> u64 {
    counters.iter().map(Counter::get).sum()
}

fn render(
    opts: &Options,
    elapsed: Duration,
    t: &Tally,
    before: &Sample,
    loaded: &[Sample],
    after: &Sample,
) -> String {
    let header = crate::report::Header::now(opts, Vec::new());
    let secs = elapsed.as_secs_f64().max(1.0);
    let rate = |c: &Counter| format!("{} ({:.0}/s)", c.get(), c.get() as f64 / secs);
    let mut out = header.top_lines();
    let _ = writeln!(
        out,
        "soak: {:.0} s of mixed load against Aerie with JWT authentication ({TENANTS} tenants); MQTT 3.1.1\n",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(out, "{}", broker_stats::header());
    let _ = writeln!(
        out,
        "{}",
        broker_stats::row("idle, before the load", before)
    );
    for (i, s) in loaded.iter().enumerate() {
        let label = match i {
            0 => "load start (after warm-up)".to_owned(),
            _ if i + 1 == loaded.len() => "load end".to_owned(),
            _ => "under load".to_owned(),
        };
        let _ = writeln!(out, "{}", broker_stats::row(&label, s));
    }
    let settle = SETTLE.as_secs();
    let _ = writeln!(
        out,
        "{}",
        broker_stats::row(&format!("idle, {settle} s after the load"), after)
    );
    let [q0, q1, q2] = &t.published;
    let _ = writeln!(
        out,
        "\nload: {} connects; published QoS 0 {}, QoS 1 {}, QoS 2 {}; {} deliveries; \
         {} subscribes, {} unsubscribes; retained set {}, cleared {}; \
         {} clients dropped without DISCONNECT, {} wills delivered; \
         bad tokens and malformed packets: {} refused or closed, {} NOT refused; \
         {} worker errors",
        rate(&t.connects),
        rate(q0),
        rate(q1),
        rate(q2),
        rate(&t.delivered),
        t.subscribes.get(),
        t.unsubscribes.get(),
        t.retained_set.get(),
        t.retained_cleared.get(),
        t.dropped_without_disconnect.get(),
        t.wills.get(),
        t.hostile_answered.get(),
        t.hostile_accepted.get(),
        t.errors.get(),
    );
    if let (Some(first), Some(last)) = (loaded.first(), loaded.last()) {
        let _ = writeln!(
            out,
            "\nverdict, load start → load end: {}",
            verdicts(first, last, 10.0)
        );
    }
    let _ = writeln!(
        out,
        "verdict, idle before → idle after: {}",
        verdicts(before, after, 2.0)
    );
    let _ = writeln!(
        out,
        "tasks: Aerie exports no tokio task count; threads are the OS threads \
         (/proc/<pid>/status), and aerie_connections / aerie_sessions stand in \
         for the tasks (one per connection)."
    );
    out
}

/// RSS (4 MiB or 10 % slack), descriptors and threads (`fd_slack`, 2).
fn verdicts(a: &Sample, b: &Sample, fd_slack: f64) -> String {
    let mib = |s: &Sample| s.rss_kib as f64 / 1024.0;
    format!(
        "RSS {}; open fds {}; threads {}",
        broker_stats::verdict(mib(a), mib(b), 4.0, 10.0, " MiB"),
        broker_stats::verdict(a.fds as f64, b.fds as f64, fd_slack, 0.0, ""),
        broker_stats::verdict(a.threads as f64, b.threads as f64, 2.0, 0.0, ""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_come_after_the_warm_up_every_minute_and_at_the_end() {
        let s = Duration::from_secs;
        assert_eq!(
            reading_times(s(600)),
            [60, 120, 180, 240, 300, 360, 420, 480, 540, 600].map(s)
        );
        assert_eq!(reading_times(s(150)), [30, 60, 120, 150].map(s));
        // A quick check: warm-up a fifth, readings every quarter.
        assert_eq!(reading_times(s(40)), [8, 10, 20, 30, 40].map(s));
    }
}
