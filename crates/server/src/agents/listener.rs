//! Accepts agent connections: TLS, the hello, authentication, then a session that lives
//! until the agent goes away.
//!
//! Handshakes are bounded in number and time, so a flood of connections (ten thousand
//! agents coming back after a restart, or an attacker) queues instead of exhausting the
//! server; the session itself costs one task and small buffers while idle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rport_protocol::{ControlMessage, RefuseCode};
use rport_transport::handshake::{self, HandshakeError};
use rport_transport::mux::{self, MuxConfig, Role};
use rport_transport::read_coalescing::ReadCoalescing;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::agent_credentials::AgentAuthenticator;
use crate::auth::bans::BanList;
use crate::domain::audit::{Actor, AuditLog, Event};
use crate::domain::registry::{ClaimError, Registry};
use crate::domain::source::source_key;
use crate::metrics::{Login, Metrics};
use crate::tunnels::TunnelManager;

/// Keepalive bounds: an agent may ask for anything in between.
/// How long an agent refused because another node still holds its id waits before it
/// knocks again: that node's lease runs out within `cluster::LEASE` of its death.
const HELD_ELSEWHERE_RETRY: Duration = Duration::from_secs(2);
/// How long an agent waits when its session cannot be recorded (the database is away).
const STORE_UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);
const MIN_KEEP_ALIVE: Duration = Duration::from_secs(2);
const MAX_KEEP_ALIVE: Duration = Duration::from_secs(3600);
/// How long an existing session with the same id gets to prove it is alive.
const DUPLICATE_PROBE: Duration = Duration::from_secs(2);
/// Facts updates closer together than this are ignored (agents send one a minute at most).
const MIN_INFO_UPDATE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a stopping server waits for agent sessions to write their last frames.
const SESSIONS_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub struct AgentListener {
    pub acceptor: TlsAcceptor,
    pub auth: Arc<AgentAuthenticator>,
    pub registry: Arc<Registry>,
    pub tunnels: Arc<TunnelManager>,
    pub handshakes: Arc<Semaphore>,
    pub handshake_timeout: Duration,
    /// Failed logins per address and credential id, past `[server] max_failed_login`.
    pub bans: Arc<AgentBans>,
    pub audit: Arc<AuditLog>,
    pub binding: CredentialBinding,
    /// `[server] max_connections_per_agent`: the streams rportd opens on one session.
    pub max_streams: usize,
    /// Counts the logins.
    pub metrics: Arc<Metrics>,
}

/// How strictly client ids are tied to credentials (RPort's keys).
#[derive(Debug, Clone, Copy)]
pub struct CredentialBinding {
    /// `[server] auth_multiuse_creds`: several client ids may share one credential. When
    /// false, a credential belongs to the first client id that used it and that id to it,
    /// so one device's credential cannot take over another device's id.
    pub multiuse: bool,
    /// `[server] equate_clientauthid_clientid`: the client id must be the credential id.
    pub equal_ids: bool,
}

impl CredentialBinding {
    /// Why `agent_id` may not log in with `auth_id`, given the known agents.
    fn refusal(&self, registry: &Registry, agent_id: &str, auth_id: &str) -> Option<String> {
        if self.equal_ids && agent_id != auth_id {
            return Some(format!(
                "client id {agent_id:?} must be its credential id {auth_id:?} on this server ([server] equate_clientauthid_clientid)"
            ));
        }
        if self.multiuse {
            return None;
        }
        registry.with_agents(|clients| {
            if let Some(known) = clients.get(agent_id)
                && known.record.auth_id != auth_id
            {
                return Some(format!(
                    "client id {agent_id:?} belongs to another credential ([server] auth_multiuse_creds = false)"
                ));
            }
            clients
                .values()
                .find(|e| e.record.auth_id == auth_id && e.record.id != agent_id)
                .map(|other| {
                    format!(
                        "credential {auth_id:?} is used by client {:?} ([server] auth_multiuse_creds = false)",
                        other.record.id
                    )
                })
        })
    }
}

/// Failed agent logins. Counted per address and credential, so that one misconfigured
/// device behind a NAT does not lock out the whole site's fleet; and per address alone
/// with ten times the limit, so that trying many credential ids from one address is
/// stopped too.
pub struct AgentBans {
    credential: BanList,
    address: BanList,
}

impl AgentBans {
    pub fn new(max_failed_login: u32, ban_time: Duration) -> Self {
        Self {
            credential: BanList::new(max_failed_login, ban_time),
            address: BanList::new(max_failed_login.saturating_mul(10), ban_time),
        }
    }

    /// Both lists, by the name their failures are shared under in a cluster.
    pub fn lists(&self) -> [(&'static str, &BanList); 2] {
        [
            ("agent.credential", &self.credential),
            ("agent.address", &self.address),
        ]
    }

    /// Keys banned now, in both lists (an address and a credential may both be).
    pub fn active(&self) -> usize {
        self.credential.active() + self.address.active()
    }

    fn address_banned(&self, ip: std::net::IpAddr) -> Option<Duration> {
        self.address.banned_for(&source_key(ip))
    }

    fn credential_banned(&self, ip: std::net::IpAddr, auth_id: &str) -> Option<Duration> {
        self.credential
            .banned_for(&format!("{}/{auth_id}", source_key(ip)))
    }

    fn failed(&self, ip: std::net::IpAddr, auth_id: &str) -> Option<Duration> {
        let by_address = self.address.record_failure(&source_key(ip));
        self.credential
            .record_failure(&format!("{}/{auth_id}", source_key(ip)))
            .or(by_address)
    }

    fn succeeded(&self, ip: std::net::IpAddr, auth_id: &str) {
        self.credential
            .record_success(&format!("{}/{auth_id}", source_key(ip)));
    }
}

impl AgentListener {
    /// Accepts agents until `shutdown`, then waits (a bounded moment) for their sessions to
    /// end: a session told to close still has to write what is queued for it (the going-away
    /// notice), and the process must not exit under it.
    pub async fn run(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let sessions = TaskTracker::new();
        while let Some((socket, peer)) =
            crate::net::listen::accept(&listener, &shutdown, "the agent listener").await
        {
            let this = Arc::clone(&self);
            let shutdown = shutdown.clone();
            sessions.spawn(async move { this.handle(socket, peer, &shutdown).await });
        }
        sessions.close();
        if tokio::time::timeout(SESSIONS_FLUSH_TIMEOUT, sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "{} agent sessions did not end within {:?} of shutdown",
                sessions.len(),
                SESSIONS_FLUSH_TIMEOUT
            );
        }
    }

    async fn handle(&self, socket: TcpStream, peer: SocketAddr, shutdown: &CancellationToken) {
        // Boxed: the handshake's state is large and needed for a moment, while the session
        // that follows lives for days, in 10,000 copies.
        if let Some(admitted) = Box::pin(self.admit(socket, peer)).await
            // A handshake that finished after the server began stopping would miss the
            // going-away notice and keep the shutdown waiting.
            && !shutdown.is_cancelled()
        {
            self.run_session(admitted, peer).await;
        }
    }

    /// TLS, hello, authentication and duplicate check; `None` when the agent was refused.
    async fn admit(&self, socket: TcpStream, peer: SocketAddr) -> Option<Admitted> {
        let ip = rport_protocol::ip_rules::canonical(peer.ip());
        // A banned address costs us no TLS handshake.
        if self.bans.address_banned(ip).is_some() {
            self.metrics.agent_login(Login::Banned);
            tracing::debug!(%peer, "dropping agent connection: address banned for failed logins");
            return None;
        }
        let _ = socket.set_nodelay(true);
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        let permit = match tokio::time::timeout_at(deadline, self.handshakes.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => {
                tracing::debug!(%peer, "dropping agent connection: handshake queue full");
                return None;
            }
        };
        let accepted = tokio::time::timeout_at(deadline, async {
            let mut tls = self.acceptor.accept(ReadCoalescing::new(socket)).await?;
            let (hello, leftover) = handshake::read_hello(&mut tls).await?;
            Ok::<_, HandshakeError>((tls, hello, leftover))
        })
        .await;
        let (mut tls, hello, leftover) = match accepted {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(err)) => {
                tracing::debug!(%peer, "agent handshake failed: {err}");
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "agent handshake timed out");
                return None;
            }
        };
        let ControlMessage::Hello {
            client_id: agent_id,
            auth_id,
            password,
            info,
            keep_alive_secs,
            remotes,
        } = hello
        else {
            refuse(&mut tls, RefuseCode::BadRequest, "expected hello".into()).await;
            return None;
        };
        if let Err(reason) = validate_agent_id(&agent_id) {
            refuse(&mut tls, RefuseCode::BadRequest, reason).await;
            return None;
        }
        // The credential id is anything the hello carried (up to 64 KiB) until it is
        // verified: logs, the audit log, bans and answers get its bounded form.
        let shown_auth_id = crate::domain::bounded::bounded(&auth_id);
        if let Some(remaining) = self.bans.credential_banned(ip, &shown_auth_id) {
            self.metrics.agent_login(Login::Banned);
            refuse_for(
                &mut tls,
                RefuseCode::AuthFailed,
                format!("too many failed logins for credential {shown_auth_id:?} from {ip}"),
                Some(remaining),
            )
            .await;
            return None;
        }
        let Some(project) = self.auth.verify(&auth_id, password.expose()).await else {
            let ban = self.bans.failed(ip, &shown_auth_id);
            self.metrics.agent_login(Login::Failure);
            let event = Event {
                action: "agent.login",
                resource: &agent_id,
                project: None,
                success: false,
                detail: match ban {
                    Some(ban) => format!("wrong password; address banned for {} s", ban.as_secs()),
                    None => "wrong password".to_owned(),
                },
            };
            self.audit
                .record_for_client(&Actor::agent(&shown_auth_id, ip), event, &agent_id)
                .await;
            tracing::warn!(%peer, client = %agent_id, credential = %shown_auth_id, banned_secs = ban.map(|b| b.as_secs()), "agent authentication failed");
            refuse_for(
                &mut tls,
                RefuseCode::AuthFailed,
                format!("authentication failed for credential {shown_auth_id:?}"),
                ban,
            )
            .await;
            return None;
        };
        self.bans.succeeded(ip, &auth_id);
        self.metrics.agent_login(Login::Success);
        let event = Event::success("agent.login", &agent_id, Some(&project));
        self.audit
            .record_for_client(&Actor::agent(&auth_id, ip), event, &agent_id)
            .await;
        if let Some(reason) = self.binding.refusal(&self.registry, &agent_id, &auth_id) {
            tracing::warn!(%peer, client = %agent_id, credential = %auth_id, "refusing agent: {reason}");
            refuse(&mut tls, RefuseCode::AuthFailed, reason).await;
            return None;
        }
        // A credential of one project cannot take over a device of another, nor an id whose
        // record is gone while a tunnel made for it still lives.
        if let Some(known) = self
            .registry
            .project_of(&agent_id)
            .or_else(|| self.tunnels.project_holding(&agent_id))
            && known != project
        {
            tracing::warn!(%peer, client = %agent_id, credential = %auth_id, "refusing agent: its id belongs to project {known}, its credential to {project}");
            refuse(
                &mut tls,
                RefuseCode::AuthFailed,
                format!(
                    "client id {agent_id:?} belongs to another project than credential {auth_id:?}"
                ),
            )
            .await;
            return None;
        }
        if let Some(existing) = self.registry.session(&agent_id) {
            if existing.handle.probe(DUPLICATE_PROBE).await {
                let address = self
                    .registry
                    .with_agents(|c| c.get(&agent_id).map(|e| e.record.address.clone()))
                    .unwrap_or_default();
                tracing::warn!(
                    %peer, client = %agent_id,
                    "refusing second live session for client id (first one from {address}): cloned device?"
                );
                refuse(
                    &mut tls,
                    RefuseCode::DuplicateId,
                    format!(
                        "client id {agent_id:?} is already connected from {address}; if this device is a copy of another, give it its own id (remove client-id from its data_dir)"
                    ),
                )
                .await;
                return None;
            }
            existing.handle.close();
        }
        // Recorded before the welcome: of two nodes admitting one id at once, the store
        // lets one hold it, and the other refuses it before the agent thinks it is in.
        let claimed = self
            .registry
            .claim(
                &agent_id,
                &auth_id,
                &project,
                info.bounded(),
                peer.to_string(),
            )
            .await;
        let record = match claimed {
            Ok(record) => record,
            Err(ClaimError::HeldBy(node)) => {
                tracing::info!(%peer, client = %agent_id, "refusing agent for now: node {node} of this cluster holds its session");
                let message = format!(
                    "client id {agent_id:?} is held by node {node} of this cluster; retrying shortly"
                );
                refuse_for(
                    &mut tls,
                    RefuseCode::Busy,
                    message,
                    Some(HELD_ELSEWHERE_RETRY),
                )
                .await;
                return None;
            }
            Err(ClaimError::Store(err)) => {
                tracing::error!(%peer, client = %agent_id, "refusing agent for now: recording its session: {err}");
                let message = "the server cannot record the session now (its database is unavailable); retrying shortly".to_owned();
                refuse_for(
                    &mut tls,
                    RefuseCode::Busy,
                    message,
                    Some(STORE_UNAVAILABLE_RETRY),
                )
                .await;
                return None;
            }
        };
        let keep_alive = Duration::from_secs(keep_alive_secs).clamp(MIN_KEEP_ALIVE, MAX_KEEP_ALIVE);
        let welcome = ControlMessage::Welcome {
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            keep_alive_secs: keep_alive.as_secs(),
        };
        if handshake::send_control(&mut tls, &welcome).await.is_err() {
            return None;
        }
        drop(permit);
        Some(Admitted {
            tls,
            leftover,
            agent_id,
            project,
            record,
            keep_alive,
            remotes,
        })
    }

    async fn run_session(&self, admitted: Admitted, peer: SocketAddr) {
        let Admitted {
            mut tls,
            leftover,
            agent_id,
            project,
            record,
            keep_alive,
            remotes,
        } = admitted;
        tls.get_mut()
            .1
            .set_buffer_limit(Some(rport_transport::tls::SEND_BUFFER_LIMIT));
        // Nothing an agent may say after the hello is bigger than the hello; a megabyte of
        // JSON is not even queued.
        let config = MuxConfig {
            max_control_len: handshake::MAX_HANDSHAKE_LEN,
            max_streams: self.max_streams,
            ..MuxConfig::new(Role::Server, keep_alive)
        };
        let (handle, mut events, driver) = mux::start(tls, leftover, config);
        let number = self.registry.attach(record, handle);
        tracing::info!(%peer, client = %agent_id, "agent connected");
        // Runs beside the driver: opening tunnels may talk to the agent. Boxed, so that its
        // state (kilobytes) is freed once it is done instead of living as long as the
        // session, in 10,000 copies.
        let attached = Box::pin(self.tunnels.agent_attached(&project, &agent_id, &remotes));
        let control = async {
            let mut last_info_update: Option<tokio::time::Instant> = None;
            while let Some(payload) = events.control.recv().await {
                if let Some(info) = facts_update(&agent_id, &payload, &mut last_info_update) {
                    // Boxed: the store write's state is needed once a minute at most, not
                    // for the session's whole life in 10,000 copies.
                    Box::pin(self.registry.update_info(&agent_id, number, info)).await;
                }
            }
        };
        // One task per agent: the driver and the control loop share it.
        let (outcome, (), ()) = tokio::join!(driver.run(), control, attached);
        if self.registry.detach(&agent_id, number).await {
            self.tunnels.agent_gone(&project, &agent_id).await;
        }
        match outcome {
            Ok(()) => tracing::info!(client = %agent_id, "agent disconnected"),
            Err(err) => tracing::info!(client = %agent_id, "agent disconnected: {err}"),
        }
    }
}

/// What a control message from a connected agent asks the server to store: new facts,
/// unless they come too soon after the last. Anything else is logged and ignored.
fn facts_update(
    agent_id: &str,
    payload: &[u8],
    last_update: &mut Option<tokio::time::Instant>,
) -> Option<rport_protocol::SystemInfo> {
    match ControlMessage::from_json(payload) {
        Ok(ControlMessage::InfoUpdate { info }) => {
            // Agents report changes once a minute at most; more often would only be an
            // agent making the store write for it.
            if last_update.is_some_and(|at| at.elapsed() < MIN_INFO_UPDATE_INTERVAL) {
                tracing::debug!(client = %agent_id, "ignoring facts sent too soon after the last");
                return None;
            }
            *last_update = Some(tokio::time::Instant::now());
            Some(info.bounded())
        }
        Ok(other) => {
            tracing::debug!(client = %agent_id, "ignoring control message {other:?}");
            None
        }
        Err(err) => {
            tracing::debug!(client = %agent_id, "undecodable control message: {err}");
            None
        }
    }
}

/// An agent that passed the handshake, ready for its session.
struct Admitted {
    tls: tokio_rustls::server::TlsStream<ReadCoalescing<TcpStream>>,
    leftover: bytes::BytesMut,
    agent_id: String,
    project: String,
    /// As claimed in the store.
    record: rport_store::AgentRecord,
    keep_alive: Duration,
    /// Tunnels the agent's configuration asks for.
    remotes: Vec<String>,
}

async fn refuse(
    tls: &mut tokio_rustls::server::TlsStream<ReadCoalescing<TcpStream>>,
    code: RefuseCode,
    message: String,
) {
    refuse_for(tls, code, message, None).await;
}

/// Refuses the session, telling the agent when to come back if it should wait.
async fn refuse_for(
    tls: &mut tokio_rustls::server::TlsStream<ReadCoalescing<TcpStream>>,
    code: RefuseCode,
    message: String,
    retry_after: Option<Duration>,
) {
    let refusal = ControlMessage::Refused {
        code,
        message,
        retry_after_secs: retry_after.map(|d| d.as_secs().max(1)),
    };
    let _ = handshake::send_control(tls, &refusal).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(tls).await;
}

/// Ids end up in URLs and logs: keep them printable and bounded.
fn validate_agent_id(id: &str) -> Result<(), String> {
    let max = crate::domain::bounded::MAX_AGENT_ID_LEN;
    let ok = !id.is_empty()
        && id.len() <= max
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid client id {:?}: use 1 to {max} letters, digits and - _ . : @",
            crate::domain::bounded::bounded(id)
        ))
    }
}
