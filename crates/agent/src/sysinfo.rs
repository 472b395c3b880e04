//! What the device is: OS, kernel, CPU, memory, virtualization, hostname, addresses,
//! timezone, tags and labels, read from the system the way RPort reports them.

use std::collections::BTreeMap;
use std::path::Path;

use rport_protocol::{AgentSettings, SystemInfo};

use crate::config::AgentConfig;
use crate::{attributes, virtualization};

/// Reads the device's facts now, with the tags, labels and settings of `config`.
pub fn collect(config: &AgentConfig) -> SystemInfo {
    let (tags, labels) = tags_and_labels(config);
    let mut info = system(&config.name, &tags);
    info.labels = labels;
    info.settings = Some(settings(config));
    info
}

/// The configured tags and labels, or the attributes file's when it is set and reads (as
/// RPort does: the file replaces both).
fn tags_and_labels(config: &AgentConfig) -> (Vec<String>, BTreeMap<String, String>) {
    let configured = (config.tags.clone(), config.labels.clone());
    let Some(path) = &config.attributes_file else {
        return configured;
    };
    match attributes::read(path) {
        Ok(file) => (file.tags, file.labels),
        Err(reason) => {
            tracing::warn!(
                "attributes file {}: {reason}; reporting the configured tags and labels",
                path.display()
            );
            configured
        }
    }
}

/// What the server is told of the agent's own settings: no credential, no key.
fn settings(config: &AgentConfig) -> AgentSettings {
    AgentSettings {
        server: config.server.to_string(),
        fallback_servers: config
            .fallback_servers
            .iter()
            .map(ToString::to_string)
            .collect(),
        server_switchback_interval_secs: config.server_switchback_interval.as_secs(),
        id: config.id.clone().unwrap_or_default(),
        name: config.name.clone(),
        data_dir: config.data_dir.display().to_string(),
        tunnel_allowed: config
            .tunnel_allowed
            .rules()
            .iter()
            .map(ToString::to_string)
            .collect(),
        remotes: config.remotes.clone(),
        keep_alive_secs: config.keep_alive.as_secs(),
        max_retry_interval_secs: config.max_retry_interval.as_secs(),
        log_level: config.log_level.clone(),
        log_file: config
            .log_file
            .as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default(),
        auth_id: config.auth.id.clone(),
    }
}

/// The system's own facts, without an agent's labels and settings. `name` empty means
/// "use the hostname".
pub fn system(name: &str, tags: &[String]) -> SystemInfo {
    let hostname = hostname();
    let release = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default();
    let os_release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let os_release_value = |key: &str| os_release_field(&os_release, key).unwrap_or_default();
    let (ipv4, ipv6) = addresses();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = parse_cpuinfo(&cpuinfo);
    let (os_virtualization_system, os_virtualization_role) = if cfg!(target_os = "linux") {
        virtualization::detect(&virtualization::observe(&cpuinfo))
    } else {
        (String::new(), String::new())
    };
    SystemInfo {
        name: if name.is_empty() {
            hostname.clone()
        } else {
            name.to_owned()
        },
        os: uname_line(&hostname, &release),
        os_arch: go_arch(std::env::consts::ARCH).to_owned(),
        os_family: os_release_value("ID"),
        os_kernel: std::env::consts::OS.to_owned(),
        os_full_name: os_release_value("NAME")
            .trim_end_matches(" GNU/Linux")
            .to_owned(),
        os_version: kernel_version(&release),
        cpu_model_name: cpu.model_name,
        cpu_family: cpu.family,
        cpu_model: cpu.model,
        cpu_vendor: cpu.vendor,
        os_virtualization_system,
        os_virtualization_role,
        num_cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        mem_total: mem_total().unwrap_or(0),
        timezone: timezone(),
        hostname,
        ipv4,
        ipv6,
        tags: tags.to_vec(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        labels: BTreeMap::new(),
        settings: None,
    }
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| read_trimmed("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

/// `uname -a` as it would print: kernel, host, release, version, machine.
fn uname_line(hostname: &str, release: &str) -> String {
    let kernel = read_trimmed("/proc/sys/kernel/ostype")
        .unwrap_or_else(|| capitalized(std::env::consts::OS));
    let version = read_trimmed("/proc/sys/kernel/version").unwrap_or_default();
    let machine = std::env::consts::ARCH;
    [
        kernel.as_str(),
        hostname,
        release,
        version.as_str(),
        machine,
    ]
    .iter()
    .filter(|part| !part.is_empty())
    .copied()
    .collect::<Vec<_>>()
    .join(" ")
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// RPort reports architectures with Go's names.
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `5.4.0-37-generic` -> `5.4.0-37`: the release without the flavour, as RPort reports it.
fn kernel_version(release: &str) -> String {
    release.split('-').take(2).collect::<Vec<_>>().join("-")
}

fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_owned())
    })
}

/// The first processor's identity, as RPort reports it (from gopsutil's reading of the
/// same file).
#[derive(Debug, Default, PartialEq, Eq)]
struct CpuFacts {
    family: String,
    model: String,
    vendor: String,
    model_name: String,
}

/// Reads `/proc/cpuinfo`'s text: x86 names its vendor, family and model; ARM its
/// implementer (named here), architecture and part.
fn parse_cpuinfo(text: &str) -> CpuFacts {
    let value_of = |keys: &[&str]| -> String {
        text.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(key, _)| keys.contains(&key.trim()))
            .map(|(_, value)| value.trim().to_owned())
            .unwrap_or_default()
    };
    let mut vendor = value_of(&["vendor_id"]);
    if vendor.is_empty() {
        vendor = arm_implementer(&value_of(&["CPU implementer"]));
    }
    let mut family = value_of(&["cpu family"]);
    if family.is_empty() {
        family = value_of(&["CPU architecture"]);
    }
    let mut model = value_of(&["model"]);
    if model.is_empty() {
        model = value_of(&["CPU part"]);
    }
    CpuFacts {
        family,
        model,
        vendor,
        model_name: value_of(&["model name", "Model", "cpu model"]),
    }
}

/// ARM's implementer codes (`CPU implementer : 0x41`) by name; an unknown code as it is.
fn arm_implementer(code: &str) -> String {
    let name = match code.to_ascii_lowercase().as_str() {
        "0x41" => "ARM",
        "0x42" => "Broadcom",
        "0x43" => "Cavium",
        "0x46" => "Fujitsu",
        "0x48" => "HiSilicon",
        "0x4e" => "NVIDIA",
        "0x50" => "APM",
        "0x51" => "Qualcomm",
        "0x53" => "Samsung",
        "0x56" => "Marvell",
        "0x61" => "Apple",
        "0x69" => "Intel",
        "0xc0" => "Ampere",
        _ => return code.to_owned(),
    };
    name.to_owned()
}

fn mem_total() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Non-loopback addresses, IPv4 and IPv6, sorted.
fn addresses() -> (Vec<String>, Vec<String>) {
    let (mut ipv4, mut ipv6) = (Vec::new(), Vec::new());
    for interface in if_addrs::get_if_addrs().unwrap_or_default() {
        if interface.is_loopback() {
            continue;
        }
        match interface.ip() {
            std::net::IpAddr::V4(ip) => ipv4.push(ip.to_string()),
            std::net::IpAddr::V6(ip) => ipv6.push(ip.to_string()),
        }
    }
    ipv4.sort();
    ipv4.dedup();
    ipv6.sort();
    ipv6.dedup();
    (ipv4, ipv6)
}

/// `CEST (UTC+02:00)`: the zone's abbreviation in effect now and its offset.
fn timezone() -> String {
    let offset_secs = chrono::Local::now().offset().local_minus_utc();
    let posix = std::env::var("TZ")
        .ok()
        .filter(|tz| !tz.is_empty() && !tz.starts_with(':') && !tz.contains('/'))
        .or_else(|| {
            std::fs::read("/etc/localtime")
                .ok()
                .and_then(|tzif| tzif_footer(&tzif))
        });
    let abbreviation = posix
        .and_then(|rule| abbreviation_for(&rule, offset_secs))
        .or_else(|| (offset_secs == 0).then(|| "UTC".to_owned()));
    let offset = format_offset(offset_secs);
    match abbreviation {
        Some(abbreviation) => format!("{abbreviation} ({offset})"),
        None => offset,
    }
}

fn format_offset(offset_secs: i32) -> String {
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let minutes = offset_secs.unsigned_abs() / 60;
    format!("UTC{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The POSIX TZ rule at the end of a TZif v2+ file, such as `CET-1CEST,M3.5.0,M10.5.0/3`.
fn tzif_footer(tzif: &[u8]) -> Option<String> {
    if !tzif.starts_with(b"TZif") {
        return None;
    }
    let trimmed = tzif.strip_suffix(b"\n")?;
    let start = trimmed.iter().rposition(|&b| b == b'\n')? + 1;
    let footer = std::str::from_utf8(&trimmed[start..]).ok()?;
    (!footer.is_empty()).then(|| footer.to_owned())
}

/// Picks the standard or daylight-saving name of a POSIX TZ rule for the current offset.
fn abbreviation_for(rule: &str, offset_secs: i32) -> Option<String> {
    let (standard, rest) = take_name(rule)?;
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ':'))
        .collect();
    let daylight = take_name(&rest[digits.len()..]).map(|(name, _)| name);
    // POSIX offsets are west-positive: "CET-1" is UTC+1.
    let standard_offset = parse_posix_offset(&digits).map(|west| -west);
    match (daylight, standard_offset) {
        (Some(daylight), Some(standard_offset)) if standard_offset != offset_secs => Some(daylight),
        _ => Some(standard),
    }
}

fn take_name(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('<') {
        let end = quoted.find('>')?;
        return Some((quoted[..end].to_owned(), &quoted[end + 1..]));
    }
    let end = text
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    (end >= 3).then(|| (text[..end].to_owned(), &text[end..]))
}

fn parse_posix_offset(text: &str) -> Option<i32> {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let mut parts = digits.split(':').map(|p| p.parse::<i32>());
    let hours = parts.next()?.ok()?;
    let minutes = parts.next().transpose().ok()?.unwrap_or(0);
    Some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_facts_of_this_machine() {
        let tags = vec!["Linux".to_owned(), "Office Berlin".to_owned()];
        let info = system("My Test VM", &tags);
        assert_eq!(info.name, "My Test VM");
        assert_eq!(info.tags, tags);
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert!(info.num_cpus >= 1);
        assert!(info.timezone.contains("UTC"), "{}", info.timezone);
        if cfg!(target_os = "linux") {
            assert_eq!(info.os_kernel, "linux");
            assert!(info.os.starts_with("Linux "), "{}", info.os);
            assert!(!info.hostname.is_empty());
            assert!(info.mem_total > 0);
        }
        assert_eq!(system("", &[]).name, info.hostname);
    }

    #[test]
    fn cpuinfo_of_x86_and_arm() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n\
                   model name\t: Intel(R) Xeon(R) Silver 4110 CPU @ 2.10GHz\nstepping\t: 4\n\n\
                   processor\t: 1\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n";
        assert_eq!(
            parse_cpuinfo(x86),
            CpuFacts {
                family: "6".into(),
                model: "85".into(),
                vendor: "GenuineIntel".into(),
                model_name: "Intel(R) Xeon(R) Silver 4110 CPU @ 2.10GHz".into(),
            }
        );
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n\
                   CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n";
        assert_eq!(
            parse_cpuinfo(arm),
            CpuFacts {
                family: "8".into(),
                model: "0xd0c".into(),
                vendor: "ARM".into(),
                model_name: String::new(),
            }
        );
        assert_eq!(arm_implementer("0xAB"), "0xAB");
        assert_eq!(parse_cpuinfo(""), CpuFacts::default());
    }

    #[test]
    fn the_attributes_file_replaces_configured_tags_and_labels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = crate::config::load(
            &<crate::cli::AgentArgs as clap::Parser>::parse_from([
                "rport",
                "--auth",
                "user1:secret-pw",
                "--tag",
                "configured",
                "h:1",
            ]),
            &|_: &str| None::<String>,
        )
        .expect("valid config");
        config.labels.insert("city".into(), "Berlin".into());
        let info = collect(&config);
        assert_eq!(info.tags, vec!["configured"]);
        assert_eq!(info.labels.get("city").map(String::as_str), Some("Berlin"));
        let settings = info.settings.expect("settings reported");
        assert_eq!(settings.server, "h:1");
        assert_eq!(settings.auth_id, "user1");
        assert!(!format!("{settings:?}").contains("secret-pw"));

        let path = dir.path().join("attributes.json");
        std::fs::write(&path, r#"{"tags":["from-file"],"labels":{"rack":"R7"}}"#).expect("write");
        config.attributes_file = Some(path.clone());
        let (tags, labels) = tags_and_labels(&config);
        assert_eq!(tags, vec!["from-file"]);
        assert_eq!(labels.get("rack").map(String::as_str), Some("R7"));
        assert!(!labels.contains_key("city"));

        std::fs::write(&path, "not json").expect("write");
        let (tags, _) = tags_and_labels(&config);
        assert_eq!(
            tags,
            vec!["configured"],
            "a broken file falls back to the config"
        );
    }

    #[test]
    fn kernel_version_drops_the_flavour() {
        assert_eq!(kernel_version("5.4.0-37-generic"), "5.4.0-37");
        assert_eq!(kernel_version("4.19.80-0-virt"), "4.19.80-0");
        assert_eq!(kernel_version("6.1.0"), "6.1.0");
    }

    #[test]
    fn timezone_names_follow_the_offset() {
        assert_eq!(
            abbreviation_for("CET-1CEST,M3.5.0,M10.5.0/3", 3600).as_deref(),
            Some("CET")
        );
        assert_eq!(
            abbreviation_for("CET-1CEST,M3.5.0,M10.5.0/3", 7200).as_deref(),
            Some("CEST")
        );
        assert_eq!(abbreviation_for("UTC0", 0).as_deref(), Some("UTC"));
        assert_eq!(
            abbreviation_for("<+0530>-5:30", 19800).as_deref(),
            Some("+0530")
        );
        assert_eq!(
            abbreviation_for("EST5EDT,M3.2.0,M11.1.0", -18000).as_deref(),
            Some("EST")
        );
        assert_eq!(format_offset(7200), "UTC+02:00");
        assert_eq!(format_offset(-16200), "UTC-04:30");
    }

    #[test]
    fn os_release_parsing() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n";
        assert_eq!(os_release_field(text, "ID").as_deref(), Some("debian"));
        assert_eq!(
            os_release_field(text, "NAME").as_deref(),
            Some("Debian GNU/Linux")
        );
        assert_eq!(go_arch("x86_64"), "amd64");
    }
}
