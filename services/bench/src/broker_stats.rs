//! What the soak watches in the broker: memory, descriptors, threads (from
//! /proc) and the gauges of its /metrics, and whether they stayed flat.

use std::time::Duration;

use crate::brokers::{Running, proc_field};
use crate::report::metric;

/// One reading of the broker.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Time since the load started.
    pub at: Duration,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    /// Gauges of /metrics (None: not exported).
    pub connections: Option<f64>,
    pub sessions: Option<f64>,
    pub queued: Option<f64>,
    pub retained: Option<f64>,
}

/// Reads the broker now; fails if its pid or /proc entries are gone.
pub async fn sample(broker: &Running, at: Duration) -> anyhow::Result<Sample> {
    let pid = broker
        .pid()
        .ok_or_else(|| anyhow::anyhow!("broker pid unknown"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let metrics = broker.metrics().await.ok().flatten().unwrap_or_default();
    Ok(Sample {
        at,
        rss_kib: proc_field(&status, "VmRSS:").unwrap_or(0),
        fds,
        threads: proc_field(&status, "Threads:").unwrap_or(0),
        connections: metric(&metrics, "aerie_connections"),
        sessions: metric(&metrics, "aerie_sessions"),
        queued: metric(&metrics, "aerie_queued_messages"),
        retained: metric(&metrics, "aerie_retained_messages"),
    })
}

/// "flat", or "grew by X (Y %)" when `end` exceeds `start` by more than
/// `slack` (absolute) and `slack_pct` percent of `start`, whichever is larger:
/// noise of a few allocator pages or a blocking thread must not read as a leak.
pub fn verdict(start: f64, end: f64, slack: f64, slack_pct: f64, unit: &str) -> String {
    let allowed = slack.max(start * slack_pct / 100.0);
    let grew = end - start;
    if grew <= allowed {
        return "flat".to_owned();
    }
    let pct = if start > 0.0 {
        format!(" ({:+.0} %)", grew * 100.0 / start)
    } else {
        String::new()
    };
    format!("grew by {}{unit}{pct}", trim(grew))
}

fn trim(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

impl Sample {
    /// (column name, value) of each reading, for the table and progress.
    pub fn cells(&self) -> [(&'static str, String); 8] {
        let gauge = |g: Option<f64>| g.map_or("–".to_owned(), trim);
        [
            ("t", format!("{:.0} s", self.at.as_secs_f64())),
            ("RSS MiB", format!("{:.1}", self.rss_kib as f64 / 1024.0)),
            ("open fds", self.fds.to_string()),
            ("threads", self.threads.to_string()),
            ("aerie_connections", gauge(self.connections)),
            ("aerie_sessions", gauge(self.sessions)),
            ("aerie_queued_messages", gauge(self.queued)),
            ("aerie_retained_messages", gauge(self.retained)),
        ]
    }
}

/// One Markdown table row of a sample.
pub fn row(label: &str, s: &Sample) -> String {
    let cells: Vec<String> = s.cells().into_iter().map(|(_, v)| v).collect();
    format!("| {label} | {} |", cells.join(" | "))
}

/// The table's header and rule.
pub fn header() -> String {
    let names: Vec<&str> = Sample::default().cells().iter().map(|(n, _)| *n).collect();
    let rule = vec!["--:"; names.len()];
    format!(
        "| when | {} |\n| --- | {} |",
        names.join(" | "),
        rule.join(" | ")
    )
}

/// One line for stderr: `RSS MiB 77.4, open fds 42, …`.
pub fn summary(s: &Sample) -> String {
    let cells: Vec<String> = s.cells()[1..]
        .iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect();
    cells.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_within_the_slack_is_flat_and_beyond_it_is_quantified() {
        // RSS in MiB: 4 MiB or 10 % slack.
        assert_eq!(verdict(60.0, 62.0, 4.0, 10.0, " MiB"), "flat");
        assert_eq!(verdict(60.0, 65.5, 4.0, 10.0, " MiB"), "flat");
        assert_eq!(verdict(60.0, 50.0, 4.0, 10.0, " MiB"), "flat");
        assert_eq!(
            verdict(60.0, 90.0, 4.0, 10.0, " MiB"),
            "grew by 30 MiB (+50 %)"
        );
        // Descriptors: exact counts, no percentage slack.
        assert_eq!(verdict(20.0, 22.0, 2.0, 0.0, " fds"), "flat");
        assert_eq!(
            verdict(20.0, 23.0, 2.0, 0.0, " fds"),
            "grew by 3 fds (+15 %)"
        );
        assert_eq!(verdict(0.0, 1.5, 0.0, 0.0, ""), "grew by 1.5");
    }

    #[test]
    fn rows_show_mib_and_missing_gauges() {
        let s = Sample {
            at: Duration::from_secs(60),
            rss_kib: 10 * 1024 + 512,
            fds: 40,
            threads: 5,
            connections: Some(17.0),
            ..Default::default()
        };
        assert_eq!(
            row("start", &s),
            "| start | 60 s | 10.5 | 40 | 5 | 17 | – | – | – |"
        );
        assert!(header().starts_with("| when | t | RSS MiB | open fds |"));
        assert_eq!(header().lines().nth(1).unwrap().matches("--:").count(), 8);
        assert!(
            summary(&s).starts_with("RSS MiB 10.5, open fds 40, threads 5, aerie_connections 17")
        );
    }
}
