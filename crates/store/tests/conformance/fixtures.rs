//! Records to store, valid unless a check changes them.

use chrono::{DateTime, Utc};
use rport_protocol::SystemInfo;
use rport_store::{
    AgentCredentialRecord, AgentRecord, NodeRecord, ProjectRecord, TunnelCounters, TunnelOptions,
    TunnelRecord, TunnelStatus, UserRecord,
};

/// Now, to the millisecond that stores keep.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("a time")
}

pub fn client(id: &str, project: &str) -> AgentRecord {
    AgentRecord {
        id: id.into(),
        auth_id: "rport".into(),
        info: SystemInfo {
            hostname: format!("{id}.example"),
            tags: vec!["Linux".into(), "Office Berlin".into()],
            ..Default::default()
        },
        address: "127.0.0.1:4242".into(),
        connected: true,
        connected_at: Some(now()),
        disconnected_at: None,
        last_heartbeat_at: Some(now()),
        project: project.into(),
        owner_node: Some("node-1".into()),
    }
}

pub fn tunnel(id: &str, agent_id: &str) -> TunnelRecord {
    TunnelRecord {
        id: id.into(),
        agent_id: agent_id.into(),
        name: "ssh".into(),
        protocol: "tcp".into(),
        lhost: "0.0.0.0".into(),
        lport: 20001,
        lport_random: true,
        rhost: "127.0.0.1".into(),
        rport: 22,
        scheme: Some("ssh".into()),
        status: TunnelStatus::Opened,
        created_by: "admin".into(),
        created_at: now(),
        closed_at: None,
        close_reason: None,
        options: TunnelOptions {
            acl: Some("127.0.0.1".into()),
            idle_timeout_minutes: 5,
            check_port: true,
            ..Default::default()
        },
        counters: TunnelCounters {
            connections: 3,
            refused: 1,
            bytes_in: u64::MAX - 1,
            bytes_out: 42,
        },
        last_active_at: None,
        project: "berlin-office".into(),
        owner_node: Some("node-1".into()),
        damage: None,
    }
}

/// A node of a cluster, alive from its first renewal.
pub fn node(id: &str) -> NodeRecord {
    NodeRecord {
        id: id.into(),
        peer_address: format!("{id}.example:8443"),
        public_host: format!("{id}.example"),
        api_address: format!("{id}.example:3000"),
        started_at: now(),
        lease_until: now(),
        alive: true,
    }
}

pub fn project(key: &str) -> ProjectRecord {
    ProjectRecord {
        key: key.into(),
        name: format!("Project {key}"),
        created_at: now(),
    }
}

pub fn user(name: &str, is_admin: bool) -> UserRecord {
    UserRecord {
        username: name.into(),
        password_hash: "$argon2id$v=19$secret-hash".into(),
        is_admin,
        created_at: now(),
        roles: Default::default(),
        password_expired: false,
        two_fa_send_to: String::new(),
    }
}

pub fn credential(id: &str, project: &str) -> AgentCredentialRecord {
    AgentCredentialRecord {
        id: id.into(),
        hash: format!("sha256$salt-of-{id}$digest"),
        project: project.into(),
    }
}
