//! The parts of RPort's client object that are more than a copied fact: the agent's
//! settings in RPort's `client_configuration` shape, and the fields of features rportd
//! does not have, in the form RPort gives them when they are unset.

use rport_protocol::AgentSettings;
use rport_store::AgentRecord;
use serde_json::{Value, json};

/// Go encodes a `time.Duration` as a number of nanoseconds.
fn go_duration(secs: u64) -> Value {
    json!(secs.saturating_mul(1_000_000_000))
}

/// RPort's log levels are numbers: 0 error, 1 info, 2 debug.
fn rport_log_level(level: &str) -> u8 {
    match level {
        "error" | "warn" => 0,
        "debug" | "trace" => 2,
        _ => 1,
    }
}

/// RPort's `client_configuration`, filled with what the agent reported of its settings;
/// `null` for agents that do not report them. What rportd's agent has no setting for
/// holds the value that means "off" in RPort (no remote commands, scripts, monitoring or
/// file reception), and credentials are never in it.
pub fn client_configuration(record: &AgentRecord) -> Value {
    let Some(settings) = &record.info.settings else {
        return Value::Null;
    };
    let AgentSettings {
        server,
        fallback_servers,
        server_switchback_interval_secs,
        id,
        name,
        data_dir,
        tunnel_allowed,
        remotes,
        keep_alive_secs,
        max_retry_interval_secs,
        log_level,
        log_file,
        auth_id: _,
    } = settings;
    json!({
        "client": {
            "server": server,
            "fallback_servers": fallback_servers,
            "server_switchback_interval": go_duration(*server_switchback_interval_secs),
            "fingerprint": "",
            "auth": "",
            "proxy": "",
            "id": id,
            "use_system_id": false,
            "name": name,
            "use_hostname": name.is_empty(),
            "tags": record.info.tags,
            "labels": record.info.labels,
            "remotes": remotes,
            "tunnel_allowed": tunnel_allowed,
            "allow_root": true,
            "updates_interval": 0,
            "data_dir": data_dir,
            "bind_interface": "",
            "ip_api_url": "",
            "ip_refresh_min": 0,
            "proxy_url": null,
            "tunnels": null,
            "auth_user": record.auth_id,
            "auth_pass": "",
        },
        "connection": {
            "keep_alive": go_duration(*keep_alive_secs),
            "keep_alive_timeout": 0,
            "max_retry_count": -1,
            "max_retry_interval": go_duration(*max_retry_interval_secs),
            "headers": [],
            "hostname": "",
            "watchdog_integration": false,
            "http_headers": null,
        },
        "logging": {
            "log_file": log_file,
            "log_level": rport_log_level(log_level),
        },
        "remote_commands": {
            "enabled": false,
            "send_back_limit": 0,
            "allow": [],
            "deny": [],
            "order": ["", ""],
            "allow_regexp": null,
            "deny_regexp": null,
        },
        "remote_scripts": {"enabled": false},
        "monitoring": {
            "enabled": false,
            "interval": 0,
            "fs_type_include": [],
            "fs_path_exclude": [],
            "fs_path_exclude_recurse": false,
            "fs_identify_mountpoints_by_device": false,
            "pm_enabled": false,
            "pm_kerneltasks_enabled": false,
            "pm_max_number_processes": 0,
            "net_lan": [],
            "net_wan": [],
            "lan_card": null,
            "wan_card": null,
        },
        "file_reception": {"protected": [], "enabled": false},
        "interpreter_aliases": {},
        "interpreter_aliases_encodings": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_levels_as_go_writes_them() {
        assert_eq!(go_duration(60), json!(60_000_000_000u64));
        assert_eq!(rport_log_level("debug"), 2);
        assert_eq!(rport_log_level("info"), 1);
        assert_eq!(rport_log_level("error"), 0);
    }
}
