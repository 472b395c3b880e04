//! The agent's connection to rportd: connect, verify the server's key, say hello, carry
//! streams; and when anything fails, try again (the next server, or after a backoff),
//! forever.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use rport_protocol::{ControlMessage, Fingerprint, RefuseCode, SystemInfo};
use rport_transport::handshake;
use rport_transport::mux::{self, MuxConfig, MuxHandle, Role};
use rport_transport::read_coalescing::ReadCoalescing;
use rport_transport::tls::{self, ServerPin};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::config::{AgentConfig, CaSource, ServerAddress};
use crate::servers::{self, Next, ServerList};
use crate::sysinfo;
use crate::targets;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const MIN_RETRY: Duration = Duration::from_secs(1);
/// A session that lasted this long was a success: the next failure starts backoff afresh.
const STABLE_SESSION: Duration = Duration::from_secs(30);
/// How often the device's facts are re-read to report changes (new addresses, say).
const FACTS_REFRESH: Duration = Duration::from_secs(60);
/// File in data_dir holding a server key pinned on first use.
const PINNED_FINGERPRINT_FILE: &str = "server-fingerprint";

/// How a session that was up ended, when it ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    /// The server closed it.
    Closed,
    /// The agent closed it, on a fallback server, to go back to the main server, which
    /// answers again.
    MainIsBack,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connecting to {server}: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    #[error(
        "server fingerprint mismatch: expected {expected}, server presented {presented}; refusing to send anything to it"
    )]
    FingerprintMismatch {
        expected: Fingerprint,
        presented: Fingerprint,
    },
    #[error("TLS handshake with {server}: {source}")]
    Tls {
        server: String,
        source: std::io::Error,
    },
    #[error("handshake: {0}")]
    Handshake(#[from] handshake::HandshakeError),
    #[error("server refused the session ({code:?}): {message}")]
    Refused {
        code: RefuseCode,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("session ended: {0}")]
    Ended(#[from] mux::MuxError),
    #[error("TLS setup: {0}")]
    Setup(#[from] tls::TlsError),
    #[error("system_roots: no CA certificate found in the operating system's trust store")]
    NoSystemRoots,
    #[error("server host {0:?} cannot be checked against a certificate")]
    BadServerName(String),
}

pub struct Agent {
    config: AgentConfig,
    client_id: String,
    /// Set by [`Agent::with_facts`]: reported instead of reading the system's.
    fixed_facts: Option<SystemInfo>,
    counters: Option<Arc<SessionCounters>>,
    /// Seconds the server asked to wait before reconnecting when it said it was going
    /// away; 0 when it did not.
    going_away: Arc<AtomicU64>,
}

/// Session counts that any number of agents can share; see [`Agent::with_counters`].
#[derive(Debug, Default)]
pub struct SessionCounters {
    /// Sessions up right now: welcomed by the server and not ended yet.
    pub connected: AtomicUsize,
    /// Sessions the server welcomed, in total.
    pub sessions: AtomicU64,
    /// Attempts that ended before a session was up (connect, TLS, handshake, refusal).
    pub failed_attempts: AtomicU64,
}

/// Counts a session as connected while it lives.
struct ConnectedGuard(Arc<SessionCounters>);

impl ConnectedGuard {
    fn new(counters: &Arc<SessionCounters>) -> Self {
        counters.connected.fetch_add(1, Ordering::Relaxed);
        counters.sessions.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(counters))
    }
}

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Agent {
    pub fn new(config: AgentConfig, client_id: String) -> Self {
        Self {
            config,
            client_id,
            fixed_facts: None,
            counters: None,
            going_away: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Reports `facts` instead of reading the device's at every connect, and never
    /// re-reads them (so no `info_update` is sent). For running many agents in one process,
    /// such as the load generator, where facts gathered once are shared by all of them.
    pub fn with_facts(mut self, facts: SystemInfo) -> Self {
        self.fixed_facts = Some(facts);
        self
    }

    /// Keeps `counters` up to date with this agent's sessions and failed attempts; many
    /// agents may share one, e.g. to print how many of them are connected.
    pub fn with_counters(mut self, counters: Arc<SessionCounters>) -> Self {
        self.counters = Some(counters);
        self
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn pinned_fingerprint_path(&self) -> PathBuf {
        self.config.data_dir.join(PINNED_FINGERPRINT_FILE)
    }

    /// Stays connected until `shutdown`: every failure is logged and retried, on the next
    /// server of the round (see [`ServerList`]) or after the backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut servers = ServerList::new(
            this.config.server.clone(),
            this.config.fallback_servers.clone(),
        );
        let mut backoff = Backoff::new(this.config.max_retry_interval);
        loop {
            let server = servers.current().clone();
            let described = servers.describe_current().to_string();
            let main_to_return_to = servers.main_to_return_to().cloned();
            let started = tokio::time::Instant::now();
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = Arc::clone(&this).connect_and_serve(&server, &described, main_to_return_to) => outcome,
            };
            if started.elapsed() >= STABLE_SESSION {
                backoff.reset();
            }
            if let (Some(counters), Err(err)) = (&this.counters, &outcome)
                && !matches!(err, SessionError::Ended(_))
            {
                counters.failed_attempts.fetch_add(1, Ordering::Relaxed);
            }
            let going_away = this.going_away.swap(0, Ordering::Relaxed);
            let next = match &outcome {
                _ if going_away > 0 => {
                    tracing::warn!("{described} is shutting down");
                    servers.going_away(Duration::from_secs(going_away))
                }
                Ok(SessionEnd::MainIsBack) => servers.main_is_back(),
                Ok(SessionEnd::Closed) => {
                    tracing::warn!("connection to {described} closed");
                    servers.session_ended()
                }
                Err(err @ SessionError::Ended(_)) => {
                    tracing::warn!("{described}: {err}");
                    servers.session_ended()
                }
                Err(
                    err @ SessionError::Refused {
                        retry_after: Some(hint),
                        ..
                    },
                ) => {
                    tracing::error!("{described}: {err}");
                    servers.attempt_failed(Some(*hint))
                }
                Err(
                    err @ (SessionError::FingerprintMismatch { .. } | SessionError::Refused { .. }),
                ) => {
                    tracing::error!("{described}: {err}");
                    servers.attempt_failed(None)
                }
                Err(err) => {
                    tracing::warn!("{described}: {err}");
                    servers.attempt_failed(None)
                }
            };
            let delay = match next {
                Next::Now => {
                    tracing::info!("trying {} now", servers.describe_current());
                    continue;
                }
                Next::AfterBackoff { at_least } => backoff.next_delay().max(at_least),
            };
            tracing::info!(
                "next: {}; reconnecting in {:.1}s",
                servers.describe_current(),
                delay.as_secs_f64()
            );
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn pin(&self) -> ServerPin {
        if let Some(fingerprint) = self.config.fingerprint {
            return ServerPin::Exact(fingerprint);
        }
        match read_pinned(&self.pinned_fingerprint_path()) {
            Some(fingerprint) => ServerPin::Exact(fingerprint),
            None => ServerPin::FirstUse,
        }
    }

    /// The TLS client for this attempt and the name to send in SNI: pinned key, or a
    /// certificate chain checked against CA roots (read again on every attempt, so a
    /// replaced CA file counts without a restart).
    fn tls_setup(
        &self,
        server: &ServerAddress,
        pin: ServerPin,
    ) -> Result<
        (
            Arc<rustls::ClientConfig>,
            Option<tls::SeenFingerprint>,
            ServerName<'static>,
        ),
        SessionError,
    > {
        let Some(ca) = &self.config.ca else {
            let (config, seen) = tls::client_config(pin)?;
            return Ok((config, Some(seen), tls::server_name()));
        };
        let roots = match ca {
            CaSource::File(path) => tls::roots_from_pem(path)?,
            CaSource::System => {
                let found = rustls_native_certs::load_native_certs();
                for err in &found.errors {
                    tracing::debug!("reading system CA certificates: {err}");
                }
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(SessionError::NoSystemRoots);
                }
                roots
            }
        };
        let name = ServerName::try_from(server.host.clone())
            .map_err(|_| SessionError::BadServerName(server.host.clone()))?;
        Ok((tls::client_config_with_roots(roots)?, None, name))
    }

    /// TCP and TLS to `address`, its key checked against the pin (one pin for every server:
    /// the nodes of a cluster share one identity) or its certificate against the CA roots.
    async fn open_tls(
        &self,
        address: &ServerAddress,
    ) -> Result<TlsStream<ReadCoalescing<TcpStream>>, SessionError> {
        let server = address.to_string();
        let pin = self.pin();
        let (tls_config, seen, server_name) = self.tls_setup(address, pin)?;
        let socket = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((address.host.as_str(), address.port)),
        )
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        .map_err(|source| SessionError::Connect {
            server: server.clone(),
            source,
        })?;
        let _ = socket.set_nodelay(true);
        let connector = TlsConnector::from(tls_config);
        let tls_result = tokio::time::timeout(
            CONNECT_TIMEOUT,
            connector.connect(server_name, ReadCoalescing::new(socket)),
        )
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        let presented = seen.as_ref().and_then(tls::SeenFingerprint::get);
        let tls_stream = match (tls_result, pin, presented) {
            (Ok(stream), _, _) => stream,
            (Err(_), ServerPin::Exact(expected), Some(presented)) if expected != presented => {
                return Err(SessionError::FingerprintMismatch {
                    expected,
                    presented,
                });
            }
            (Err(source), _, _) => return Err(SessionError::Tls { server, source }),
        };
        if let (ServerPin::FirstUse, Some(presented), None) = (pin, presented, &self.config.ca) {
            tracing::warn!(
                "no server fingerprint configured: trusting {server}'s key {presented} on first use and pinning it in {}",
                self.pinned_fingerprint_path().display()
            );
            if let Err(err) = write_pinned(&self.pinned_fingerprint_path(), presented) {
                tracing::error!("saving the pinned fingerprint: {err}");
            }
        }
        Ok(tls_stream)
    }

    /// Whether the main server answers again, checked by a TCP connect and a TLS handshake
    /// with the pin, not a whole session. The handshake proves that rportd with the pinned
    /// key listens there; a hello would go further and register this agent on the main
    /// server while its session on the fallback is still up (in a cluster, two nodes
    /// claiming one agent), and would send the credential to a server only being looked
    /// at. What it cannot tell is whether the main server would accept the session: if it
    /// refuses, the round goes on to the fallbacks at once, a short interruption.
    async fn main_answers(&self, main: &ServerAddress) -> bool {
        match self.open_tls(main).await {
            Ok(mut tls) => {
                // close_notify, so the server sees an orderly goodbye and not an error.
                let _ = tokio::time::timeout(CONNECT_TIMEOUT, tls.shutdown()).await;
                true
            }
            Err(err @ SessionError::FingerprintMismatch { .. }) => {
                tracing::warn!("main server {main} answers, but not as the pinned server: {err}");
                false
            }
            Err(err) => {
                tracing::debug!("main server {main} does not answer yet: {err}");
                false
            }
        }
    }

    /// One attempt at `address` and, when the server welcomes the agent, the session until
    /// it ends. On a fallback (`main_to_return_to` is set), the session is closed in order
    /// once the main server answers again.
    async fn connect_and_serve(
        self: Arc<Self>,
        address: &ServerAddress,
        described: &str,
        main_to_return_to: Option<ServerAddress>,
    ) -> Result<SessionEnd, SessionError> {
        let mut tls_stream = self.open_tls(address).await?;

        let info = self.facts();
        let hello = ControlMessage::Hello {
            client_id: self.client_id.clone(),
            auth_id: self.config.auth.id.clone(),
            password: self.config.auth.password.clone(),
            info: info.clone(),
            keep_alive_secs: self.config.keep_alive.as_secs(),
            remotes: self.config.remotes.clone(),
        };
        let (answer, leftover) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            handshake::agent_hello(&mut tls_stream, &hello),
        )
        .await
        .map_err(|_| handshake::HandshakeError::Io(std::io::ErrorKind::TimedOut.into()))??;
        let keep_alive = match answer {
            ControlMessage::Welcome {
                keep_alive_secs, ..
            } => Duration::from_secs(keep_alive_secs.max(1)),
            ControlMessage::Refused {
                code,
                message,
                retry_after_secs,
            } => {
                return Err(SessionError::Refused {
                    code,
                    message,
                    retry_after: retry_after_secs.map(Duration::from_secs),
                });
            }
            other => {
                return Err(handshake::HandshakeError::Malformed(format!(
                    "unexpected answer {other:?}"
                ))
                .into());
            }
        };
        tracing::info!(client = %self.client_id, "connected to {described}");
        let _connected = self.counters.as_ref().map(ConnectedGuard::new);

        tls_stream
            .get_mut()
            .1
            .set_buffer_limit(Some(tls::SEND_BUFFER_LIMIT));
        let (handle, mut events, driver) = mux::start(
            tls_stream,
            leftover,
            MuxConfig::new(Role::Agent, keep_alive),
        );
        let driver = tokio::spawn(driver.run());
        let facts = self
            .fixed_facts
            .is_none()
            .then(|| tokio::spawn(Arc::clone(&self).report_fact_changes(handle.clone(), info)));
        let control = tokio::spawn(log_server_notices(
            events.control,
            Arc::clone(&self.going_away),
        ));
        let allowed = Arc::new(self.config.tunnel_allowed.clone());
        let switchback = async {
            match &main_to_return_to {
                Some(main) => {
                    servers::wait_for_main(self.config.server_switchback_interval, || {
                        self.main_answers(main)
                    })
                    .await;
                    tracing::info!(
                        "main server {main} answers again: closing the session on {described} to go back to it"
                    );
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(switchback);
        let mut leaving_for_main = false;
        loop {
            tokio::select! {
                incoming = events.incoming.recv() => match incoming {
                    Some(incoming) => {
                        tokio::spawn(targets::serve_stream(*incoming, Arc::clone(&allowed)));
                    }
                    None => break,
                },
                () = &mut switchback, if !leaving_for_main => {
                    // Flushes what is queued and ends the session; the loop goes on until
                    // the driver has said goodbye and closed the stream of new streams.
                    handle.close();
                    leaving_for_main = true;
                }
            }
        }
        if let Some(facts) = facts {
            facts.abort();
        }
        let ended = driver.await;
        // The driver is gone, so the control channel is closed: the notices task reads what
        // the server said last (a going-away notice) and ends.
        let _ = control.await;
        if leaving_for_main {
            return Ok(SessionEnd::MainIsBack);
        }
        match ended {
            Ok(result) => result
                .map(|()| SessionEnd::Closed)
                .map_err(SessionError::from),
            Err(join) => Err(mux::MuxError::Io(std::io::Error::other(join.to_string())).into()),
        }
    }

    fn facts(&self) -> SystemInfo {
        match &self.fixed_facts {
            Some(facts) => facts.clone(),
            None => sysinfo::collect(&self.config),
        }
    }

    async fn report_fact_changes(self: Arc<Self>, handle: MuxHandle, mut last: SystemInfo) {
        let mut interval = tokio::time::interval(FACTS_REFRESH);
        interval.tick().await;
        loop {
            interval.tick().await;
            let this = Arc::clone(&self);
            let Ok(current) = tokio::task::spawn_blocking(move || this.facts()).await else {
                continue;
            };
            if current != last {
                let update = ControlMessage::InfoUpdate {
                    info: current.clone(),
                };
                if handle.send_control(update.to_json().into()).is_err() {
                    return;
                }
                last = current;
            }
        }
    }
}

/// What the server tells the agent outside of streams.
async fn log_server_notices(
    mut control: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    going_away: Arc<AtomicU64>,
) {
    while let Some(payload) = control.recv().await {
        match ControlMessage::from_json(&payload) {
            Ok(ControlMessage::RemoteRefused { remote, reason }) => {
                tracing::error!("the server did not open tunnel {remote}: {reason}");
            }
            Ok(ControlMessage::GoingAway { retry_after_secs }) => {
                // At least a second, so that thousands of agents do not all knock at once
                // on a server that is still starting; the backoff adds its jitter.
                going_away.store(retry_after_secs.clamp(1, 300), Ordering::Relaxed);
            }
            Ok(other) => tracing::debug!("control message {other:?}"),
            Err(err) => tracing::debug!("undecodable control message: {err}"),
        }
    }
}

fn read_pinned(path: &Path) -> Option<Fingerprint> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write_pinned(path: &Path, fingerprint: Fingerprint) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{fingerprint}\n"))?;
    std::fs::rename(tmp, path)
}

/// Exponential backoff with full jitter: the delay is random in [MIN_RETRY, ceiling], and the
/// ceiling doubles per failure up to the configured maximum, so that many agents that lost
/// the server at once come back spread out instead of all at the same instant.
struct Backoff {
    ceiling: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        let max = max.max(MIN_RETRY);
        Self {
            ceiling: MIN_RETRY,
            max,
        }
    }

    fn reset(&mut self) {
        self.ceiling = MIN_RETRY;
    }

    fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        let low = MIN_RETRY.as_millis() as u64 / 2;
        let high = (ceiling.as_millis() as u64).max(low + 1);
        Duration::from_millis(rand::rng().random_range(low..=high))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_stays_jittered() {
        let mut backoff = Backoff::new(Duration::from_secs(8));
        let delays: Vec<Duration> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(8)));
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(500)));
        assert!(delays[..1].iter().all(|d| *d <= Duration::from_secs(1)));
        let distinct: std::collections::HashSet<_> = delays[10..].iter().collect();
        assert!(distinct.len() > 1, "delays should be jittered: {delays:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }
}
