//! The process's CPU time and resident memory, in the standard names
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`) that
//! Prometheus's own client libraries use, so dashboards written for any
//! process read them. Read from /proc at each scrape and written as text
//! after the recorder's: the `metrics` crate's counters are integers, and
//! CPU seconds are not.

/// /proc reports CPU times in USER_HZ ticks, which the kernel fixes at 100
/// for every architecture's user-space ABI, whatever its internal HZ.
const USER_HZ: f64 = 100.0;

/// The Prometheus text for this process, or nothing where /proc is not.
pub fn render() -> String {
    let mut out = String::new();
    if let Some(cpu) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(cpu_seconds)
    {
        out.push_str(&format!(
            "# HELP process_cpu_seconds_total CPU time (user and system) this process used, seconds.\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}\n"
        ));
    }
    if let Some(rss) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(resident_bytes)
    {
        out.push_str(&format!(
            "# HELP process_resident_memory_bytes Resident memory of this process, bytes.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n"
        ));
    }
    out
}

/// utime + stime of a /proc/<pid>/stat line, in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: count fields from
    // the last ')'. After it come field 3 (state) onwards; utime and stime
    // are fields 14 and 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// VmRSS of /proc/<pid>/status, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000 200";
        assert_eq!(cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn resident_memory_is_vmrss_in_bytes() {
        let status = "Name:\taerie\nVmPeak:\t  9000 kB\nVmRSS:\t  2048 kB\n";
        assert_eq!(resident_bytes(status), Some(2 * 1024 * 1024));
    }

    #[test]
    fn this_process_has_both() {
        let text = render();
        assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    }
}
