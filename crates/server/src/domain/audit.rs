//! The audit log: every tunnel opened and closed, every login, every change to projects,
//! recorded with who did it, from where, and how it ended. Kept in the store, read by
//! admins through `GET /api/v1/auditlog`, pruned after `[api] audit_log_retention`.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::Utc;
use rport_store::{AuditRecord, Store};

use crate::domain::bounded::{bounded, bounded_to};

/// An entry's detail is cut past this many bytes; the longest one rportd writes is a
/// tunnel's ACL (at most 8 KiB) with a few words.
const MAX_DETAIL_LEN: usize = 16 * 1024;

/// Who acted.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub kind: ActorKind,
    pub ip: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    Agent,
    System,
}

impl ActorKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Agent => "agent",
            Self::System => "system",
        }
    }
}

impl Actor {
    pub fn user(name: &str, ip: IpAddr) -> Self {
        Self {
            name: name.to_owned(),
            kind: ActorKind::User,
            ip: Some(ip),
        }
    }

    pub fn agent(credential: &str, ip: IpAddr) -> Self {
        Self {
            name: credential.to_owned(),
            kind: ActorKind::Agent,
            ip: Some(ip),
        }
    }

    /// `rportd user ...` run by whoever has the server's data dir.
    pub fn command_line() -> Self {
        Self {
            name: "command-line".to_owned(),
            kind: ActorKind::System,
            ip: None,
        }
    }

    pub fn system() -> Self {
        Self {
            name: "system".to_owned(),
            kind: ActorKind::System,
            ip: None,
        }
    }
}

/// What happened, for [`AuditLog::record`].
pub struct Event<'a> {
    pub action: &'static str,
    pub resource: &'a str,
    pub project: Option<&'a str>,
    pub success: bool,
    pub detail: String,
}

impl<'a> Event<'a> {
    /// An action that succeeded, with nothing more to say.
    pub fn success(action: &'static str, resource: &'a str, project: Option<&'a str>) -> Self {
        Self {
            action,
            resource,
            project,
            success: true,
            detail: String::new(),
        }
    }
}

pub struct AuditLog {
    store: Arc<dyn Store>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Writes one entry; a store failure is logged, never passed to the caller: the
    /// action itself already happened. Names and ids may come from the network (a failed
    /// login's user name): each field is bounded ([`crate::domain::bounded`]), so an entry costs
    /// at most about 17 KiB whatever was sent.
    pub async fn record(&self, actor: &Actor, event: Event<'_>) {
        self.write(actor, event, None).await;
    }

    /// [`Self::record`] for an action on one agent: the entry keeps the agent's id and
    /// its host name as they are now (RPort's `client_id` and `client_hostname`), so the
    /// log still names the device after it is deleted.
    pub async fn record_for_client(&self, actor: &Actor, event: Event<'_>, agent_id: &str) {
        let hostname = match self.store.get_agent(agent_id).await {
            Ok(agent) => agent.map(|a| a.info.hostname),
            Err(err) => {
                tracing::warn!(client = %bounded(agent_id), "reading the agent for the audit log: {err}");
                None
            }
        };
        let client = AgentNames {
            id: bounded(agent_id).into_owned(),
            hostname: hostname.map(|h| bounded(&h).into_owned()),
        };
        self.write(actor, event, Some(client)).await;
    }

    async fn write(&self, actor: &Actor, event: Event<'_>, client: Option<AgentNames>) {
        let (client_id, client_hostname) = match client {
            Some(c) => (Some(c.id), c.hostname),
            None => (None, None),
        };
        let entry = AuditRecord {
            id: 0,
            at: Utc::now(),
            actor: bounded(&actor.name).into_owned(),
            actor_type: actor.kind.as_str().to_owned(),
            actor_ip: actor.ip.map(|ip| ip.to_string()),
            action: event.action.to_owned(),
            resource: bounded(event.resource).into_owned(),
            project: event.project.map(|p| bounded(p).into_owned()),
            result: if event.success { "success" } else { "failure" }.to_owned(),
            detail: match bounded_to(&event.detail, MAX_DETAIL_LEN) {
                std::borrow::Cow::Borrowed(_) => event.detail,
                std::borrow::Cow::Owned(cut) => cut,
            },
            client_id,
            client_hostname,
        };
        if let Err(err) = self.store.insert_audit(&entry).await {
            tracing::error!(action = %entry.action, "writing the audit log: {err}");
        }
    }
}

struct AgentNames {
    id: String,
    hostname: Option<String>,
}
