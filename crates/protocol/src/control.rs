//! Control messages: JSON documents carried in CONTROL frames on stream 0, and the
//! OPEN request that starts a tunnel stream.
//!
//! JSON keeps the control plane readable in captures and easy to extend: unknown fields
//! are ignored and unknown message types decode to [`ControlMessage::Unknown`], so a newer
//! peer can add messages without breaking an older one.

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
    fn unknown_message_types_are_tolerated() {
        let msg = ControlMessage::from_json(br#"{"type":"from_the_future","x":1}"#)
            .expect("unknown type decodes");
        assert_eq!(msg, ControlMessage::Unknown);
    }
}
