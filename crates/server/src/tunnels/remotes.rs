//! Remotes an agent's own configuration asks for when it connects (RPort's `remotes`),
//! opened as tunnels when `[server] allow_client_remotes` permits.

use super::lifecycle::CloseReason;
use super::{ActiveTunnel, CREATED_BY_AGENT, TunnelManager, TunnelRequest, lock};
use crate::domain::audit::{self, Actor, ActorKind};
use crate::domain::registry::LiveSession;
use rport_protocol::tunnel_spec;
use std::sync::Arc;

/// Tunnels one agent's configuration may ask for.
const MAX_AGENT_REMOTES: usize = 64;

impl TunnelManager {
    pub(super) async fn open_agent_remotes(
        self: &Arc<Self>,
        project: &str,
        agent_id: &str,
        remotes: &[String],
    ) {
        let Some(session) = self.registry.session_in(project, agent_id) else {
            return;
        };
        let mut wanted = Vec::new();
        for (index, remote) in remotes.iter().enumerate() {
            if !self.settings.allow_client_remotes {
                refuse_remote(
                    &session,
                    remote,
                    "this server opens no tunnels agents ask for themselves ([server] allow_client_remotes = false)",
                );
                continue;
            }
            if index >= MAX_AGENT_REMOTES {
                refuse_remote(
                    &session,
                    remote,
                    &format!("an agent may ask for at most {MAX_AGENT_REMOTES} tunnels"),
                );
                continue;
            }
            match tunnel_spec::parse_tunnel_spec(remote) {
                Ok(spec) => wanted.push((remote, spec)),
                Err(err) => refuse_remote(&session, remote, &err.to_string()),
            }
        }
        let existing: Vec<Arc<ActiveTunnel>> = self
            .tunnels_of(project, agent_id)
            .into_iter()
            .filter(|t| lock(&t.record).created_by == CREATED_BY_AGENT)
            .collect();
        let mut kept = Vec::new();
        for tunnel in existing {
            let record = lock(&tunnel.record).clone();
            let still_wanted = wanted.iter().position(|(_, spec)| {
                spec.remote.host == record.rhost
                    && spec.remote.port == record.rport
                    && spec.protocol.as_str() == record.protocol
                    && spec
                        .local
                        .as_ref()
                        .is_none_or(|l| l.port == record.lport && l.host == record.lhost)
            });
            match still_wanted {
                Some(index) => kept.push(wanted.remove(index)),
                None => {
                    if self.active().remove(&record.id).is_some() {
                        self.finish(&tunnel, CloseReason::AgentGone).await;
                    }
                }
            }
        }
        for (text, spec) in wanted {
            let request = TunnelRequest {
                agent_id: agent_id.to_owned(),
                local: spec.local,
                remote: spec.remote,
                protocol: spec.protocol,
                scheme: None,
                name: String::new(),
                created_by: CREATED_BY_AGENT.to_owned(),
                acl: None,
                idle_timeout_minutes: 0,
                auto_close: None,
                check_port: false,
                http_proxy: None,
            };
            let agent = Actor {
                name: agent_id.to_owned(),
                kind: ActorKind::Agent,
                ip: None,
            };
            match self.create(request).await {
                Ok(info) => {
                    let event = audit::Event {
                        action: "tunnel.create",
                        resource: &info.record.id,
                        project: Some(&info.record.project),
                        success: true,
                        detail: format!("agent's own tunnel {text}"),
                    };
                    self.audit.record_for_client(&agent, event, agent_id).await;
                }
                Err(err) => {
                    tracing::warn!(client = %agent_id, "agent's tunnel {text} not opened: {err}");
                    refuse_remote(&session, text, &err.to_string());
                }
            }
        }
    }
}

fn refuse_remote(session: &LiveSession, remote: &str, reason: &str) {
    let message = rport_protocol::ControlMessage::RemoteRefused {
        remote: remote.to_owned(),
        reason: reason.to_owned(),
    };
    let _ = session.handle.send_control(message.to_json().into());
}
