//! The results table: one row per measurement, one column per broker, and the
//! ratio oriented so that > 1 always means Aerie did better.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::Options;

/// One measured value, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    /// Measured, but not as the row says (e.g. fewer connections than
    /// asked for because of a limit): the number and why.
    Partial(f64, String),
    Skipped(String),
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub unit: &'static str,
    pub better: Better,
    pub value: Value,
}

impl Row {
    pub fn new(label: impl Into<String>, unit: &'static str, better: Better, value: Value) -> Row {
        Row {
            label: label.into(),
            unit,
            better,
            value,
        }
    }
}

pub struct Column {
    pub name: String,
    pub values: Vec<Row>,
}

pub struct Header {
    pub command_line: String,
    pub date: String,
    pub nproc: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub notes: Vec<String>,
}

impl Header {
    pub fn now(opts: &Options, notes: Vec<String>) -> Header {
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Header {
            command_line: opts.command_line.clone(),
            date,
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            duration_s: opts.duration.as_secs_f64(),
            warmup_s: opts.warmup.as_secs_f64(),
            notes,
        }
    }
}

/// The sum of a metric's samples (all label sets) in Prometheus text; None
/// if it has none.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // `name 3` or `name{labels} 3`, not `name_suffix 3`.
        let value = match rest.chars().next() {
            Some(' ') => rest,
            Some('{') => &rest[rest.find('}')? + 1..],
            _ => continue,
        };
        if let Ok(v) = value.trim().parse::<f64>() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

impl Header {
    /// The command and the machine, first lines of every report.
    pub fn top_lines(&self) -> String {
        format!(
            "\ncommand: {}\ndate: {}   nproc: {}\n",
            self.command_line, self.date, self.nproc
        )
    }
}

/// p50, p99 and p99.9 of a latency histogram recorded in nanoseconds, in µs.
pub fn latency_rows(hist: &Histogram<u64>) -> Vec<Row> {
    [("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9)]
        .into_iter()
        .map(|(name, q)| {
            let value = if hist.is_empty() {
                Value::Failed("no messages received".into())
            } else {
                Value::Number(hist.value_at_quantile(q / 100.0) as f64 / 1000.0)
            };
            Row::new(
                format!("latency {name} @10k msg/s"),
                "µs",
                Better::Lower,
                value,
            )
        })
        .collect()
}

/// The whole report as Markdown: header lines, the table, the footnote.
pub fn render(h: &Header, columns: &[Column]) -> String {
    let mut out = h.top_lines();
    let _ = writeln!(
        out,
        "each scenario: {} s warm-up, {} s measured; 64-byte payloads; MQTT 3.1.1",
        h.warmup_s, h.duration_s
    );
    for note in &h.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let _ = writeln!(out);
    let pairs = ratio_pairs(columns);
    let mut head = vec!["scenario".to_owned(), "unit".to_owned()];
    head.extend(columns.iter().map(|c| c.name.clone()));
    for &(a, b) in &pairs {
        head.push(format!("ratio ({}/{})¹", columns[a].name, columns[b].name));
    }
    let mut lines = vec![head];
    let Some(first) = columns.first() else {
        return out;
    };
    for (i, row) in first.values.iter().enumerate() {
        let mut line = vec![row.label.clone(), row.unit.to_owned()];
        let cells: Vec<Option<&Row>> = columns.iter().map(|c| c.values.get(i)).collect();
        line.extend(
            cells
                .iter()
                .map(|r| r.map_or(String::new(), |r| cell(&r.value))),
        );
        for &(a, b) in &pairs {
            match cells[a] {
                Some(first) => {
                    line.push(ratio(row.better, &first.value, cells[b].map(|r| &r.value)))
                }
                None => line.push("–".to_owned()),
            }
        }
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (n, line) in lines.iter().enumerate() {
        let padded: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (s, w))| {
                let pad = w - s.chars().count();
                // Labels left, numbers right.
                if i < 2 {
                    format!("{s}{}", " ".repeat(pad))
                } else {
                    format!("{}{s}", " ".repeat(pad))
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", padded.join(" | "));
        if n == 0 {
            let rule: Vec<String> = widths
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let dashes = "-".repeat(*w);
                    if i < 2 {
                        dashes
                    } else {
                        format!("{}:", &dashes[1..])
                    }
                })
                .collect();
            let _ = writeln!(out, "| {} |", rule.join(" | "));
        }
    }
    if !pairs.is_empty() {
        let _ = writeln!(
            out,
            "\n¹ > 1 means Aerie is better (against mosquitto), or that JWT and \
             tenants, or crossing gateways over NATS (cluster), cost nothing \
             (against plain aerie): throughput rows are a/b; latency and memory \
             rows are b/a."
        );
    }
    out
}

/// Which columns a ratio compares, (a, b): the first column against
/// mosquitto, and every other Aerie column against the first.
fn ratio_pairs(columns: &[Column]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    if let Some(m) = columns.iter().position(|c| c.name == "mosquitto")
        && m > 0
    {
        pairs.push((0, m));
    }
    for (i, c) in columns.iter().enumerate().skip(1) {
        if c.name != "mosquitto" {
            pairs.push((i, 0));
        }
    }
    pairs
}

fn cell(v: &Value) -> String {
    match v {
        Value::Number(x) => number(*x),
        Value::Partial(x, why) => format!("{} ({why})", number(*x)),
        Value::Skipped(why) => format!("skipped ({why})"),
        Value::Failed(why) => format!("FAILED ({why})"),
    }
}

/// Thousands separators for big numbers, one decimal for small ones.
pub(crate) fn number(x: f64) -> String {
    if x >= 1000.0 {
        let digits = format!("{:.0}", x);
        let mut s = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                s.push(',');
            }
            s.push(c);
        }
        s
    } else {
        format!("{x:.1}")
    }
}

fn ratio(better: Better, aerie: &Value, other: Option<&Value>) -> String {
    match (aerie, other) {
        (
            Value::Number(a) | Value::Partial(a, _),
            Some(Value::Number(m) | Value::Partial(m, _)),
        ) if *a > 0.0 && *m > 0.0 => {
            let r = match better {
                Better::Higher => a / m,
                Better::Lower => m / a,
            };
            format!("{r:.2}")
        }
        _ => "–".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram_in_microseconds() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        // 1000 samples: 1..=1000 µs.
        for us in 1..=1000u64 {
            h.record(us * 1000).unwrap();
        }
        let rows = latency_rows(&h);
        let v: Vec<f64> = rows
            .iter()
            .map(|r| match r.value {
                Value::Number(x) => x,
                _ => panic!("no number"),
            })
            .collect();
        // Three significant digits (within 0.1 %), give or take one sample.
        for (got, want) in v.iter().zip([500.0, 990.0, 999.0]) {
            assert!((got - want).abs() <= 1.0 + want * 0.001, "{got} vs {want}");
        }
        assert!(matches!(
            latency_rows(&Histogram::new(3).unwrap())[0].value,
            Value::Failed(_)
        ));
    }

    #[test]
    fn metrics_are_summed_over_labels_and_not_confused_with_longer_names() {
        let text = "# TYPE aerie_connections gauge\n\
                    aerie_connections{tenant=\"a\"} 3\n\
                    aerie_connections{tenant=\"b\"} 4\n\
                    aerie_connections_total 99\n\
                    aerie_store_batch_ops_count 12\n";
        assert_eq!(metric(text, "aerie_connections"), Some(7.0));
        assert_eq!(metric(text, "aerie_connections_total"), Some(99.0));
        assert_eq!(metric(text, "aerie_store_batch_ops_count"), Some(12.0));
        assert_eq!(metric(text, "aerie_sessions"), None);
    }

    fn header() -> Header {
        Header {
            command_line: "aerie bench".into(),
            date: "today".into(),
            nproc: 2,
            duration_s: 5.0,
            warmup_s: 1.0,
            notes: vec![],
        }
    }

    #[test]
    fn ratio_is_oriented_so_above_one_means_aerie_is_better() {
        let header = header();
        let col = |name: &str, rate: f64, p99: f64| Column {
            name: name.into(),
            values: vec![
                Row::new("fan-in", "msg/s", Better::Higher, Value::Number(rate)),
                Row::new("p99", "µs", Better::Lower, Value::Number(p99)),
                Row::new(
                    "idle",
                    "KiB/conn",
                    Better::Lower,
                    Value::Skipped("fd".into()),
                ),
            ],
        };
        let out = render(
            &header,
            &[
                col("aerie", 300_000.0, 50.0),
                col("mosquitto", 100_000.0, 100.0),
            ],
        );
        let cells = |label: &str| -> Vec<String> {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("| {label} ")))
                .unwrap();
            line.split('|')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect()
        };
        assert_eq!(
            cells("fan-in"),
            ["fan-in", "msg/s", "300,000", "100,000", "3.00"]
        );
        assert_eq!(cells("p99"), ["p99", "µs", "50.0", "100.0", "2.00"]);
        assert_eq!(cells("idle")[2..], ["skipped (fd)", "skipped (fd)", "–"]);
        assert!(out.contains("¹ > 1 means Aerie is better"), "{out}");
    }

    #[test]
    fn the_tenancy_column_is_compared_with_plain_aerie() {
        let col = |name: &str, rate: f64| Column {
            name: name.into(),
            values: vec![Row::new(
                "fan-in",
                "msg/s",
                Better::Higher,
                Value::Number(rate),
            )],
        };
        let columns = [
            col("aerie", 300_000.0),
            col("aerie JWT, 100 tenants", 240_000.0),
            col("mosquitto", 100_000.0),
        ];
        assert_eq!(ratio_pairs(&columns), [(0, 2), (1, 0)]);
        let header = header();
        let out = render(&header, &columns);
        assert!(
            out.contains("ratio (aerie/mosquitto)¹ | ratio (aerie JWT, 100 tenants/aerie)¹"),
            "{out}"
        );
        let fan_in: Vec<&str> = out
            .lines()
            .find(|l| l.starts_with("| fan-in"))
            .unwrap()
            .split('|')
            .map(str::trim)
            .collect();
        assert_eq!(
            fan_in[fan_in.len() - 3..fan_in.len() - 1],
            ["3.00", "0.80"],
            "{out}"
        );
    }
}
