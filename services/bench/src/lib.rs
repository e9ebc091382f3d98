//! `aerie bench`: the project's own MQTT load generator.
//!
//! It starts each broker itself (Aerie from the running executable, then
//! Mosquitto if installed), runs the same scenarios against each with raw,
//! pipelined MQTT 3.1.1 clients written on our codec, and prints one table with
//! both columns and their ratio. Progress goes to stderr, the table to stdout.
//! With `--cluster`, a column runs the message-flow scenarios across the
//! scale-out shape (NATS, control plane, two gateways; see `cluster`).
//! The soak (`--scenario soak`) is apart: minutes of mixed load against one
//! Aerie, reporting whether its memory, descriptors and threads stay flat.

#![forbid(unsafe_code)]

mod broker_stats;
mod brokers;
mod clients;
mod cluster;
mod report;
mod scenarios;
mod soak;
mod soak_load;
mod tenancy;

use std::net::SocketAddr;
use std::time::Duration;

pub use report::Value;
pub use scenarios::Scenario;

/// What `aerie bench` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Also run every scenario against Mosquitto (when it is installed).
    pub compare_mosquitto: bool,
    /// Measurement time of each throughput/latency scenario.
    pub duration: Duration,
    /// Load before measuring, so connection setup and cold caches don't count.
    pub warmup: Duration,
    /// Scenarios to run; empty means all.
    pub scenarios: Vec<Scenario>,
    /// Run against an already running broker at this address instead of
    /// starting any (memory scenarios are skipped: its pid is unknown).
    pub broker_only: Option<SocketAddr>,
    /// The command line, printed above the table.
    pub command_line: String,
    /// Also run every scenario against Aerie with JWT authentication and
    /// 100 tenants (the tenancy column).
    pub tenancy: bool,
    /// Also run the message-flow scenarios across two `aerie gateway`s over
    /// NATS, publishers on one and subscribers on the other (the cluster
    /// column).
    pub cluster: bool,
    /// How long the soak scenario runs.
    pub soak_duration: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            compare_mosquitto: false,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            scenarios: Vec::new(),
            broker_only: None,
            command_line: String::new(),
            tenancy: false,
            cluster: false,
            soak_duration: Duration::from_secs(600),
        }
    }
}

/// Runs the bench and prints the table on stdout.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    // Idle-connection scenarios hold one descriptor per client.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        progress(format_args!("cannot raise RLIMIT_NOFILE: {e}"));
    }
    if opts.scenarios.contains(&Scenario::Soak) {
        if opts.scenarios.len() > 1 {
            anyhow::bail!("the soak runs alone: --scenario soak without other scenarios");
        }
        return soak::run(&opts).await;
    }
    let scenarios = if opts.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        opts.scenarios.clone()
    };
    let mut targets = Vec::new();
    let mut notes = Vec::new();
    match opts.broker_only {
        Some(addr) => targets.push(brokers::Kind::External(addr)),
        None => {
            targets.push(brokers::Kind::Aerie);
            if opts.tenancy {
                targets.push(brokers::Kind::AerieTenants(tenancy::TENANTS));
            }
            if opts.cluster {
                targets.push(brokers::Kind::AerieCluster);
                notes.push(match cluster::nats_server_path() {
                    Some(_) => {
                        "aerie cluster: nats-server (JetStream), `aerie control --nats` and two \
                                `aerie gateway`s; publishers on gateway A, subscribers on gateway B"
                            .to_owned()
                    }
                    None => "nats-server is not installed (`make test-deps` installs it; or set \
                             AERIE_NATS_SERVER): the cluster column is skipped"
                        .to_owned(),
                });
            }
            if opts.compare_mosquitto {
                match brokers::mosquitto_path() {
                    Some(_) => targets.push(brokers::Kind::Mosquitto),
                    None => notes.push(
                        "mosquitto is not installed (`make deps` installs it): Aerie only"
                            .to_owned(),
                    ),
                }
            }
        }
    }
    for note in &notes {
        progress(format_args!("note: {note}"));
    }

    let mut columns = Vec::new();
    for target in &targets {
        let mut values = Vec::new();
        for scenario in &scenarios {
            progress(format_args!("{}: {}", target.name(), scenario.name()));
            values.extend(scenarios::run(*scenario, target, &opts).await);
        }
        columns.push(report::Column {
            name: target.name(),
            values,
        });
    }
    print!(
        "{}",
        report::render(&report::Header::now(&opts, notes), &columns)
    );
    Ok(())
}

/// One progress line on stderr.
pub(crate) fn progress(args: std::fmt::Arguments<'_>) {
    eprintln!("bench: {args}");
}
