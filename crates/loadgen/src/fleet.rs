//! The simulated fleet: one real [`Agent`] per id, started at a given rate, sharing the
//! device facts gathered once and one set of session counters.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rport_agent::config::{AgentConfig, Credential, ServerAddress};
use rport_agent::session::{Agent, SessionCounters};
use rport_protocol::{Fingerprint, Password, SystemInfo};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How the fleet's ids and passwords are made: `<id_prefix><n>` with `n` zero-padded to
/// `id_digits`, numbered from 1, and password `<password_prefix><id>`.
#[derive(Debug, Clone)]
pub struct Naming {
    pub id_prefix: String,
    pub id_digits: usize,
    pub password_prefix: String,
}

impl Naming {
    pub fn id(&self, n: usize) -> String {
        format!("{}{:0width$}", self.id_prefix, n, width = self.id_digits)
    }

    pub fn password(&self, id: &str) -> String {
        format!("{}{id}", self.password_prefix)
    }

    /// Ids 1..=count with their passwords, as rportd's `auth_file` wants them.
    pub fn credentials(&self, count: usize) -> BTreeMap<String, String> {
        (1..=count)
            .map(|n| {
                let id = self.id(n);
                let password = self.password(&id);
                (id, password)
            })
            .collect()
    }
}

/// Writes the fleet's credentials as a JSON object (id -> plain password), readable only
/// by the owner.
pub fn write_auth_file(path: &Path, naming: &Naming, count: usize) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let json = serde_json::to_string_pretty(&naming.credentials(count))?;
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(json.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// What every agent of the fleet shares.
pub struct FleetSpec {
    pub server: ServerAddress,
    /// Where each agent goes when `server` refuses it or is down (the other nodes of a
    /// cluster), in order.
    pub fallback_servers: Vec<ServerAddress>,
    pub fingerprint: Fingerprint,
    pub naming: Naming,
    pub count: usize,
    /// Sessions started per second; 0 starts them all at once.
    pub ramp: u32,
    pub keep_alive: Duration,
    pub max_retry_interval: Duration,
    pub tags: Vec<String>,
    /// Read once; each agent reports a copy with its own id as name.
    pub facts: SystemInfo,
}

impl FleetSpec {
    fn agent(&self, n: usize, counters: &Arc<SessionCounters>) -> Agent {
        let id = self.naming.id(n);
        let config = AgentConfig {
            server: self.server.clone(),
            fallback_servers: self.fallback_servers.clone(),
            server_switchback_interval: rport_agent::config::DEFAULT_SERVER_SWITCHBACK_INTERVAL,
            id: Some(id.clone()),
            name: id.clone(),
            tags: self.tags.clone(),
            labels: Default::default(),
            attributes_file: None,
            auth: Credential {
                id: id.clone(),
                password: Password::new(self.naming.password(&id)),
            },
            fingerprint: Some(self.fingerprint),
            ca: None,
            // Not read: the server key is pinned and the id is given.
            data_dir: PathBuf::new(),
            keep_alive: self.keep_alive,
            max_retry_interval: self.max_retry_interval,
            log_level: String::new(),
            log_file: None,
            remotes: Vec::new(),
            tunnel_allowed: Default::default(),
        };
        let facts = SystemInfo {
            name: id.clone(),
            tags: self.tags.clone(),
            ..self.facts.clone()
        };
        Agent::new(config, id)
            .with_facts(facts)
            .with_counters(Arc::clone(counters))
    }

    /// Starts the agents at the ramp rate; each then stays connected (reconnecting with
    /// backoff and jitter) until `shutdown`. Returns once all are started or on shutdown.
    pub async fn launch(
        self: Arc<Self>,
        counters: Arc<SessionCounters>,
        started: Arc<std::sync::atomic::AtomicUsize>,
        shutdown: CancellationToken,
    ) {
        let begin = Instant::now();
        for n in 1..=self.count {
            if self.ramp > 0 {
                let due = begin + Duration::from_secs_f64((n - 1) as f64 / f64::from(self.ramp));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(due) => {}
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
            let agent = self.agent(n, &counters);
            tokio::spawn(agent.run(shutdown.clone()));
            started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_passwords_follow_the_scheme() {
        let naming = Naming {
            id_prefix: "load-".into(),
            id_digits: 5,
            password_prefix: "pw-".into(),
        };
        assert_eq!(naming.id(1), "load-00001");
        assert_eq!(naming.id(123456), "load-123456");
        let credentials = naming.credentials(3);
        assert_eq!(credentials.len(), 3);
        assert_eq!(
            credentials.get("load-00003").map(String::as_str),
            Some("pw-load-00003")
        );
    }

    #[test]
    fn auth_file_is_a_json_object_of_ids_to_passwords() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.json");
        let naming = Naming {
            id_prefix: "x".into(),
            id_digits: 2,
            password_prefix: "p".into(),
        };
        write_auth_file(&path, &naming, 2).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let parsed: BTreeMap<String, String> = serde_json::from_str(&text).expect("json");
        assert_eq!(parsed.get("x02").map(String::as_str), Some("px02"));
    }
}
