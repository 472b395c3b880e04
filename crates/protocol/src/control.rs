//! Control messages: JSON documents carried in CONTROL frames on stream 0, and the
//! OPEN request that starts a tunnel stream.
//!
//! JSON keeps the control plane readable in captures and easy to extend: unknown fields
//! are ignored and unknown message types decode to [`ControlMessage::Unknown`], so a newer
//! peer can add messages without breaking an older one.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself; call only where it is checked or sent, never where it is shown.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// What an agent reports about the device it runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemInfo {
    pub name: String,
    /// A `uname -a`-like line.
    pub os: String,
    /// Go-style architecture name (`amd64`, `arm64`, ...), as RPort reports it.
    pub os_arch: String,
    pub os_family: String,
    pub os_kernel: String,
    pub os_full_name: String,
    pub os_version: String,
    pub cpu_model_name: String,
    pub num_cpus: u32,
    pub mem_total: u64,
    pub timezone: String,
    pub hostname: String,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
    pub tags: Vec<String>,
    /// The agent's version.
    pub version: String,
    /// `cpu family` of `/proc/cpuinfo` (`6`), or the architecture on ARM.
    pub cpu_family: String,
    /// `model` of `/proc/cpuinfo` (`85`), or the part number on ARM.
    pub cpu_model: String,
    /// `vendor_id` of `/proc/cpuinfo` (`GenuineIntel`), or the implementer on ARM.
    pub cpu_vendor: String,
    /// The hypervisor or container the device runs in (`KVM`, `DOCKER`, ...), upper case as
    /// RPort reports it; empty when none was detected.
    pub os_virtualization_system: String,
    /// `guest` inside a virtual machine or container, else empty.
    pub os_virtualization_role: String,
    /// Key/value metadata from the agent's `[client] labels` or its attributes file.
    pub labels: BTreeMap<String, String>,
    /// The agent's settings that are no secret, shown as RPort's `client_configuration`;
    /// `None` from agents that do not send them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings: Option<AgentSettings>,
}

/// What an agent tells the server about its own configuration: never a credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentSettings {
    pub server: String,
    pub fallback_servers: Vec<String>,
    pub server_switchback_interval_secs: u64,
    /// The `[client] id` as configured; empty when the agent uses the one in its data dir.
    pub id: String,
    /// The `[client] name` as configured; empty when the agent reports its hostname.
    pub name: String,
    pub data_dir: String,
    pub tunnel_allowed: Vec<String>,
    pub remotes: Vec<String>,
    pub keep_alive_secs: u64,
    pub max_retry_interval_secs: u64,
    pub log_level: String,
    pub log_file: String,
    /// The credential id it authenticates with (the id only, never the password).
    pub auth_id: String,
}

/// How many labels an agent may report; more are dropped by the receiver.
pub const MAX_LABELS: usize = 64;
/// The longest label key or value, and the longest of the other short facts added after
/// version 1 (CPU and virtualization names, settings' strings), in bytes.
pub const MAX_FACT_LEN: usize = 256;
/// How many entries a list of an agent's settings may have.
pub const MAX_SETTINGS_ENTRIES: usize = 64;

impl SystemInfo {
    /// The facts with each field added after protocol version 1.0 within its bound:
    /// longer strings are cut, extra labels and list entries dropped. The whole hello is
    /// bounded already (64 KiB); these keep a single fact from filling a table cell.
    pub fn bounded(mut self) -> Self {
        for text in [
            &mut self.cpu_family,
            &mut self.cpu_model,
            &mut self.cpu_vendor,
            &mut self.os_virtualization_system,
            &mut self.os_virtualization_role,
        ] {
            truncate(text, MAX_FACT_LEN);
        }
        if self.labels.len() > MAX_LABELS
            || self
                .labels
                .iter()
                .any(|(k, v)| k.len() > MAX_FACT_LEN || v.len() > MAX_FACT_LEN)
        {
            self.labels = std::mem::take(&mut self.labels)
                .into_iter()
                .take(MAX_LABELS)
                .map(|(mut key, mut value)| {
                    truncate(&mut key, MAX_FACT_LEN);
                    truncate(&mut value, MAX_FACT_LEN);
                    (key, value)
                })
                .collect();
        }
        if let Some(settings) = &mut self.settings {
            for text in [
                &mut settings.server,
                &mut settings.id,
                &mut settings.name,
                &mut settings.data_dir,
                &mut settings.log_level,
                &mut settings.log_file,
                &mut settings.auth_id,
            ] {
                truncate(text, MAX_FACT_LEN);
            }
            for list in [
                &mut settings.fallback_servers,
                &mut settings.tunnel_allowed,
                &mut settings.remotes,
            ] {
                list.truncate(MAX_SETTINGS_ENTRIES);
                list.iter_mut()
                    .for_each(|entry| truncate(entry, MAX_FACT_LEN));
            }
        }
        self
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// Why a server refused a session; the agent decides from it how to log and retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseCode {
    /// Unknown credential id or wrong password.
    AuthFailed,
    /// Another live session already uses this client id (a cloned device, most likely).
    DuplicateId,
    /// The server is overloaded; retry after the hinted delay.
    Busy,
    /// The agent speaks a protocol version the server does not.
    UnsupportedVersion,
    /// The hello was malformed.
    BadRequest,
}

/// Messages on stream 0. `type` names the variant in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlMessage {
    /// Agent -> server, first message of a session.
    Hello {
        client_id: String,
        auth_id: String,
        password: Password,
        info: SystemInfo,
        /// The agent's keepalive interval; both sides use it to detect a dead peer.
        keep_alive_secs: u64,
        /// Tunnels the agent's own configuration asks for (`[client] remotes`), in the
        /// `[LHOST:]LPORT:[RHOST:]RPORT[/PROTOCOL]` form; the server opens them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remotes: Vec<String>,
    },
    /// Server -> agent: the session is accepted.
    Welcome {
        server_version: String,
        keep_alive_secs: u64,
    },
    /// Server -> agent: the session is refused; the connection closes after this.
    Refused {
        code: RefuseCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
    },
    /// Agent -> server: the device's facts changed (an address came or went).
    InfoUpdate { info: SystemInfo },
    /// Server -> agent: the server is shutting down; reconnect after the hinted delay.
    GoingAway { retry_after_secs: u64 },
    /// Server -> agent: one of the agent's `remotes` could not be opened.
    RemoteRefused { remote: String, reason: String },
    /// A message type this peer does not know; ignored.
    #[serde(other)]
    Unknown,
}

impl ControlMessage {
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising these plain structs cannot fail: no maps with non-string keys.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Transport protocol of a tunnel stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StreamProtocol {
    /// The stream carries one TCP connection's bytes.
    #[default]
    Tcp,
    /// The stream carries the datagrams of one remote source, each framed by
    /// [`crate::datagram`], to and from one UDP socket of the agent.
    Udp,
}

/// Payload of an OPEN frame: which target the agent should connect the new stream to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRequest {
    /// The tunnel this stream belongs to, for the agent's logs.
    pub tunnel_id: String,
    /// Host (name or IP literal) on the agent's side.
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub protocol: StreamProtocol,
    /// Set when the server only asks whether the target is allowed (and, with `dial`,
    /// reachable) before it creates a tunnel: the agent then answers with one
    /// [`CheckAnswer`] on the stream and finishes it, carrying nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckRequest>,
}

/// What a check stream asks the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// Also try a TCP connection to the target, within this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial_timeout_ms: Option<u64>,
}

/// The agent's answer on a check stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckAnswer {
    pub outcome: CheckOutcome,
    /// Human-readable detail (the resolved address, the connect error).
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Ok,
    /// The agent's `tunnel_allowed` list does not include the target.
    NotAllowed,
    /// The name did not resolve or the TCP connection failed.
    NotReachable,
}

impl CheckAnswer {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl OpenRequest {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_masked_in_debug() {
        let hello = ControlMessage::Hello {
            client_id: "c1".into(),
            auth_id: "user1".into(),
            password: Password::new("hunter2"),
            info: SystemInfo::default(),
            keep_alive_secs: 30,
            remotes: vec!["2222:22".into()],
        };
        let shown = format!("{hello:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let back = ControlMessage::from_json(&hello.to_json()).expect("round trip");
        assert_eq!(back, hello);
    }

    #[test]
    fn facts_of_a_version_1_0_agent_still_decode() {
        let old = br#"{"type":"info_update","info":{"name":"n","num_cpus":2,"tags":["a"]}}"#;
        let Ok(ControlMessage::InfoUpdate { info }) = ControlMessage::from_json(old) else {
            panic!("an old agent's facts decode");
        };
        assert_eq!(info.num_cpus, 2);
        assert!(info.labels.is_empty());
        assert_eq!(info.settings, None);
        assert_eq!(info.cpu_vendor, "");
    }

    #[test]
    fn new_facts_are_bounded() {
        let mut info = SystemInfo {
            cpu_vendor: "é".repeat(MAX_FACT_LEN),
            ..Default::default()
        };
        for n in 0..MAX_LABELS + 10 {
            info.labels.insert(format!("key{n:03}"), "v".repeat(1000));
        }
        info.settings = Some(AgentSettings {
            remotes: vec!["x".repeat(1000); MAX_SETTINGS_ENTRIES + 1],
            ..Default::default()
        });
        let info = info.bounded();
        assert!(info.cpu_vendor.len() <= MAX_FACT_LEN);
        assert!(info.cpu_vendor.chars().all(|c| c == 'é'));
        assert_eq!(info.labels.len(), MAX_LABELS);
        assert!(info.labels.values().all(|v| v.len() == MAX_FACT_LEN));
        let settings = info.settings.expect("settings kept");
        assert_eq!(settings.remotes.len(), MAX_SETTINGS_ENTRIES);
        assert!(settings.remotes.iter().all(|r| r.len() == MAX_FACT_LEN));
    }

    #[test]
    fn unknown_message_types_are_tolerated() {
        let msg = ControlMessage::from_json(br#"{"type":"from_the_future","x":1}"#)
            .expect("unknown type decodes");
        assert_eq!(msg, ControlMessage::Unknown);
    }
}
