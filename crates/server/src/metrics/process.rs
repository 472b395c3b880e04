//! The process metrics every Prometheus client exports (`process_*`), read from
//! `/proc/self` on Linux; elsewhere they are left out.

use super::render::{Exposition, Kind};

/// Clock ticks per second of `/proc`'s times: the kernel reports them in USER_HZ, which
/// is 100 on every architecture rportd is built for (Prometheus' own procfs reader assumes
/// the same).
const USER_HZ: f64 = 100.0;

/// Writes what `/proc` tells; a file that cannot be read leaves its metrics out.
pub fn write(out: &mut Exposition) {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let stat = stat.as_deref().and_then(parse_stat);
    if let Some(stat) = &stat {
        out.single(
            "process_cpu_seconds_total",
            Kind::Counter,
            "User and system CPU time spent, in seconds.",
            (stat.utime_ticks + stat.stime_ticks) as f64 / USER_HZ,
        );
    }
    let resident = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(resident_bytes);
    if let Some(bytes) = resident {
        out.single(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            bytes,
        );
    }
    if let Some(open) = rport_transport::fd_limit::open_files() {
        out.single(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            open,
        );
    }
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(max_open_files);
    if let Some(max) = max {
        out.single(
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            max,
        );
    }
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .as_deref()
        .and_then(boot_time);
    if let (Some(stat), Some(boot)) = (&stat, boot) {
        out.single(
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process since unix epoch in seconds.",
            boot as f64 + stat.start_ticks as f64 / USER_HZ,
        );
    }
}

#[derive(Debug, PartialEq)]
struct Stat {
    utime_ticks: u64,
    stime_ticks: u64,
    start_ticks: u64,
}

/// `/proc/self/stat`: fields 14, 15 and 22, counted after the command name, which sits in
/// parentheses and may itself hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after_name) = text.rsplit_once(')')?;
    // After the name come field 3 (state) onwards.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        start_ticks: field(22)?,
    })
}

/// `VmRSS:` of `/proc/self/status`, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// `btime` of `/proc/stat`: when the machine booted, in seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_formats() {
        let stat = "1234 (rportd (x) y) S 1 1234 1234 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 \
                    9 0 7000 1000 10 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                utime_ticks: 250,
                stime_ticks: 50,
                start_ticks: 7000
            })
        );
        assert_eq!(
            resident_bytes("Name:\trportd\nVmRSS:\t   2048 kB\n"),
            Some(2048 * 1024)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn writes_this_process() {
        let mut out = Exposition::default();
        write(&mut out);
        let text = out.finish();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "{name} in {text}");
        }
    }
}
