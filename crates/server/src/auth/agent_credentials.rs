//! Checks agent credentials: the ones in the configuration, or the ones rportd manages
//! (created at first start and through `/api/v1/clients-auth`), each bound to a project.
//!
//! Credentials rportd generates itself are long random strings, so a salted SHA-256 is a
//! sound way to store them and costs microseconds per check; that matters when ten
//! thousand agents reconnect at once after a restart. Slow hashes (bcrypt, argon2) come
//! only from operator-written auth files; successful checks of those are cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use rand::Rng;
use rport_store::{AgentCredentialRecord, DEFAULT_PROJECT, Store};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AgentAuth;
use crate::domain::secrets::{StoredSecret, random_secret};

pub struct AgentAuthenticator {
    source: Source,
    /// SHA-256 of (id, password) pairs that passed a slow hash check.
    verified: Mutex<HashMap<[u8; 32], ()>>,
    store: Arc<dyn Store>,
    /// Keeps the store and the map in memory changing in the same order.
    changing: tokio::sync::Mutex<()>,
}

/// Credential id -> its secret and the project its agents belong to.
enum Source {
    /// `[server] auth` (`single`) or `[server] auth_file`.
    Config {
        single: bool,
        map: HashMap<String, (StoredSecret, String)>,
    },
    Managed(RwLock<HashMap<String, Managed>>),
}

#[derive(Clone)]
struct Managed {
    hash: SaltedHash,
    project: String,
}

/// A credential as the API shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialView {
    pub id: String,
    pub project: String,
    /// Defined in the configuration, so not changeable through the API.
    pub configured: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("agent credentials come from [server] auth in the configuration; change it there")]
    Single,
    #[error("agent credentials come from [server] auth_file; edit that file")]
    ReadOnly,
    #[error("agent credential {0:?} exists already")]
    Exists(String),
    #[error("no agent credential {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] rport_store::StoreError),
}

#[derive(Clone)]
struct SaltedHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl SaltedHash {
    fn new(password: &str) -> Self {
        let salt: [u8; 16] = rand::rng().random();
        Self {
            digest: salted_digest(&salt, password),
            salt,
        }
    }

    fn encode(&self) -> String {
        format!(
            "sha256${}${}",
            hex::encode(self.salt),
            hex::encode(self.digest)
        )
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('$');
        if parts.next()? != "sha256" {
            return None;
        }
        let mut salt = [0u8; 16];
        let mut digest = [0u8; 32];
        hex::decode_to_slice(parts.next()?, &mut salt).ok()?;
        hex::decode_to_slice(parts.next()?, &mut digest).ok()?;
        Some(Self { salt, digest })
    }

    fn verify(&self, password: &str) -> bool {
        salted_digest(&self.salt, password)
            .ct_eq(&self.digest)
            .into()
    }
}

fn salted_digest(salt: &[u8], password: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(password.as_bytes());
    hasher.finalize().into()
}

/// A credential rportd generated on first start; shown once, stored only as a hash.
pub struct GeneratedCredential {
    pub id: String,
    pub password: String,
}

impl std::fmt::Debug for GeneratedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeneratedCredential({}:***)", self.id)
    }
}

impl AgentAuthenticator {
    /// Uses the configured credentials, or the managed ones from the store; creates a
    /// first managed credential when there is none.
    pub async fn load(
        config: &AgentAuth,
        store: &Arc<dyn Store>,
    ) -> Result<(Self, Option<GeneratedCredential>), rport_store::StoreError> {
        let (source, generated) = match config {
            AgentAuth::Single { id, password } => {
                let mut map = HashMap::new();
                map.insert(
                    id.clone(),
                    (
                        StoredSecret::Plain(password.clone()),
                        DEFAULT_PROJECT.to_owned(),
                    ),
                );
                (Source::Config { single: true, map }, None)
            }
            AgentAuth::File { entries, .. } => (
                Source::Config {
                    single: false,
                    map: entries
                        .iter()
                        .map(|(id, c)| (id.clone(), (c.secret.clone(), c.project.clone())))
                        .collect(),
                },
                None,
            ),
            AgentAuth::None => {
                let mut managed = parse_managed(store.list_agent_credentials().await?)?;
                let mut generated = None;
                if managed.is_empty() {
                    let password = random_secret(24);
                    let first = Managed {
                        hash: SaltedHash::new(&password),
                        project: DEFAULT_PROJECT.to_owned(),
                    };
                    // Another server on the same store may have made it first: then its
                    // password is the one, shown by that server.
                    if store
                        .insert_agent_credential(&first.record("rport"))
                        .await?
                    {
                        generated = Some(GeneratedCredential {
                            id: "rport".to_owned(),
                            password,
                        });
                    }
                    managed = parse_managed(store.list_agent_credentials().await?)?;
                }
                (Source::Managed(RwLock::new(managed)), generated)
            }
        };
        Ok((
            Self {
                source,
                verified: Mutex::new(HashMap::new()),
                store: Arc::clone(store),
                changing: tokio::sync::Mutex::new(()),
            },
            generated,
        ))
    }

    /// Reads the managed credentials from the store again, after another node of the
    /// cluster changed them; returns the ids that are gone, whose agents must go too.
    pub async fn reload(&self) -> Result<Vec<String>, CredentialError> {
        let Source::Managed(map) = &self.source else {
            return Ok(Vec::new());
        };
        let _changing = self.changing.lock().await;
        let fresh = parse_managed(self.store.list_agent_credentials().await?)?;
        let mut current = write(map);
        let gone: Vec<String> = current
            .keys()
            .filter(|id| !fresh.contains_key(*id))
            .cloned()
            .collect();
        *current = fresh;
        drop(current);
        if let Ok(mut verified) = self.verified.lock() {
            verified.clear();
        }
        Ok(gone)
    }

    /// Every credential, by id.
    pub fn list(&self) -> Vec<CredentialView> {
        let mut views: Vec<CredentialView> = match &self.source {
            Source::Config { map, .. } => map
                .iter()
                .map(|(id, (_, project))| CredentialView {
                    id: id.clone(),
                    project: project.clone(),
                    configured: true,
                })
                .collect(),
            Source::Managed(map) => read(map)
                .iter()
                .map(|(id, m)| CredentialView {
                    id: id.clone(),
                    project: m.project.clone(),
                    configured: false,
                })
                .collect(),
        };
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }

    pub fn project_of(&self, id: &str) -> Option<String> {
        match &self.source {
            Source::Config { map, .. } => map.get(id).map(|(_, project)| project.clone()),
            Source::Managed(map) => read(map).get(id).map(|m| m.project.clone()),
        }
    }

    fn managed(&self) -> Result<&RwLock<HashMap<String, Managed>>, CredentialError> {
        match &self.source {
            Source::Managed(map) => Ok(map),
            Source::Config { single: true, .. } => Err(CredentialError::Single),
            Source::Config { single: false, .. } => Err(CredentialError::ReadOnly),
        }
    }

    /// Adds a managed credential bound to `project` and saves it.
    pub async fn add(
        &self,
        id: &str,
        password: &str,
        project: &str,
    ) -> Result<(), CredentialError> {
        let map = self.managed()?;
        let credential = Managed {
            hash: SaltedHash::new(password),
            project: project.to_owned(),
        };
        let _changing = self.changing.lock().await;
        if !self
            .store
            .insert_agent_credential(&credential.record(id))
            .await?
        {
            return Err(CredentialError::Exists(id.to_owned()));
        }
        write(map).insert(id.to_owned(), credential);
        Ok(())
    }

    /// Removes a managed credential and saves the rest; agents using it can no longer
    /// log in.
    pub async fn remove(&self, id: &str) -> Result<(), CredentialError> {
        let map = self.managed()?;
        let _changing = self.changing.lock().await;
        if !self.store.delete_agent_credential(id).await? {
            return Err(CredentialError::NotFound(id.to_owned()));
        }
        write(map).remove(id);
        Ok(())
    }

    /// The project of credential `id` when `password` is right for it. Slow hashes run
    /// off the runtime. An id longer than any valid one is refused unlooked-up.
    pub async fn verify(self: &Arc<Self>, id: &str, password: &str) -> Option<String> {
        if id.len() > crate::domain::bounded::MAX_CREDENTIAL_ID_LEN {
            return None;
        }
        match &self.source {
            Source::Managed(map) => read(map)
                .get(id)
                .filter(|m| m.hash.verify(password))
                .map(|m| m.project.clone()),
            Source::Config { map, .. } => {
                let (secret, project) = map.get(id)?;
                if let StoredSecret::Plain(_) = secret {
                    return secret.verify(password).then(|| project.clone());
                }
                let key = salted_digest(id.as_bytes(), password);
                if self
                    .verified
                    .lock()
                    .is_ok_and(|cache| cache.contains_key(&key))
                {
                    return Some(project.clone());
                }
                let this = Arc::clone(self);
                let (id_owned, password) = (id.to_owned(), password.to_owned());
                let ok = tokio::task::spawn_blocking(move || {
                    matches!(&this.source, Source::Config { map, .. }
                        if map.get(&id_owned).is_some_and(|(secret, _)| secret.verify(&password)))
                })
                .await
                .unwrap_or(false);
                if ok && let Ok(mut cache) = self.verified.lock() {
                    cache.insert(key, ());
                }
                ok.then(|| project.clone())
            }
        }
    }

    /// Projects named by configured credentials; each must exist in the store.
    pub fn projects(&self) -> Vec<String> {
        match &self.source {
            Source::Managed(map) => {
                let mut projects: Vec<String> =
                    read(map).values().map(|m| m.project.clone()).collect();
                projects.push(DEFAULT_PROJECT.to_owned());
                projects.sort();
                projects.dedup();
                projects
            }
            Source::Config { map, .. } => {
                let mut projects: Vec<String> = map.values().map(|(_, p)| p.clone()).collect();
                projects.sort();
                projects.dedup();
                projects
            }
        }
    }
}

impl Managed {
    fn record(&self, id: &str) -> AgentCredentialRecord {
        AgentCredentialRecord {
            id: id.to_owned(),
            hash: self.hash.encode(),
            project: self.project.clone(),
        }
    }
}

/// The stored managed credentials, or the first that does not parse. Nothing is skipped:
/// read leniently, a damaged record would vanish, and with none left a new credential
/// would be generated, locking every agent out.
fn parse_managed(
    records: Vec<AgentCredentialRecord>,
) -> Result<HashMap<String, Managed>, rport_store::StoreError> {
    records
        .into_iter()
        .map(|record| {
            let hash = SaltedHash::decode(&record.hash).ok_or_else(|| {
                rport_store::StoreError::Corrupt {
                    what: format!("agent credential {:?} (table agent_credentials)", record.id),
                    reason:
                        "its hash is not sha256$<32 hex digits of salt>$<64 hex digits of digest>"
                            .into(),
                }
            })?;
            let managed = Managed {
                hash,
                project: record.project,
            };
            Ok((record.id, managed))
        })
        .collect()
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record that does not parse is an error naming it, never a record left out.
    #[test]
    fn damaged_managed_credentials_are_named_not_dropped() {
        let good = SaltedHash::new("pw").encode();
        let record = |id: &str, hash: &str| AgentCredentialRecord {
            id: id.into(),
            hash: hash.into(),
            project: "p".into(),
        };
        let parsed = parse_managed(vec![record("a", &good), record("b", &good)]).expect("sound");
        assert_eq!(parsed.len(), 2);
        assert!(parsed["a"].hash.verify("pw"));

        let damaged = &good[..good.len() - 1];
        match parse_managed(vec![record("a", &good), record("b", damaged)]) {
            Err(rport_store::StoreError::Corrupt { what, .. }) => {
                assert_eq!(what, "agent credential \"b\" (table agent_credentials)")
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn salted_hash_round_trip() {
        let hash = SaltedHash::new("s3cret");
        let decoded = SaltedHash::decode(&hash.encode()).expect("decode");
        assert!(decoded.verify("s3cret"));
        assert!(!decoded.verify("s3cret "));
        assert!(SaltedHash::decode("sha256$zz$00").is_none());
    }
}
