//! Checks agent credentials: the ones in the configuration, or the ones rportd manages.
//!
//! Credentials rportd generates itself are long random strings, so a salted SHA-256 is a
//! sound way to store them and costs microseconds per check; that matters when ten
//! thousand agents reconnect at once after a restart. Slow hashes (bcrypt, argon2) come
//! only from operator-written auth files; successful checks of those are cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::Rng;
use rport_store::{DEFAULT_PROJECT, Store};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AgentAuth;
use crate::secrets::{StoredSecret, random_secret};

/// Settings key under which the managed credentials live in the store.
const MANAGED_KEY: &str = "agent_credentials";

pub struct AgentAuthenticator {
    source: Source,
    /// SHA-256 of (id, password) pairs that passed a slow hash check.
    verified: Mutex<HashMap<[u8; 32], ()>>,
}

/// Credential id -> its secret and the project its agents belong to.
enum Source {
    Config(HashMap<String, (StoredSecret, String)>),
    /// Managed credentials all belong to the default project.
    Managed(HashMap<String, SaltedHash>),
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
                (Source::Config(map), None)
            }
            AgentAuth::File { entries, .. } => (
                Source::Config(
                    entries
                        .iter()
                        .map(|(id, c)| (id.clone(), (c.secret.clone(), c.project.clone())))
                        .collect(),
                ),
                None,
            ),
            AgentAuth::None => {
                let stored = store.get_setting(MANAGED_KEY).await?;
                let mut managed: HashMap<String, SaltedHash> = stored
                    .as_deref()
                    .and_then(|json| serde_json::from_str::<HashMap<String, String>>(json).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(id, hash)| SaltedHash::decode(&hash).map(|h| (id, h)))
                    .collect();
                let mut generated = None;
                if managed.is_empty() {
                    let password = random_secret(24);
                    managed.insert("rport".to_owned(), SaltedHash::new(&password));
                    let encoded: HashMap<&String, String> =
                        managed.iter().map(|(id, h)| (id, h.encode())).collect();
                    let json = serde_json::to_string(&encoded).unwrap_or_default();
                    store.set_setting(MANAGED_KEY, &json).await?;
                    generated = Some(GeneratedCredential {
                        id: "rport".to_owned(),
                        password,
                    });
                }
                (Source::Managed(managed), generated)
            }
        };
        Ok((
            Self {
                source,
                verified: Mutex::new(HashMap::new()),
            },
            generated,
        ))
    }

    /// The project of credential `id` when `password` is right for it. Slow hashes run
    /// off the runtime.
    pub async fn verify(self: &Arc<Self>, id: &str, password: &str) -> Option<String> {
        match &self.source {
            Source::Managed(map) => map
                .get(id)
                .is_some_and(|hash| hash.verify(password))
                .then(|| DEFAULT_PROJECT.to_owned()),
            Source::Config(map) => {
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
                    matches!(&this.source, Source::Config(map)
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
            Source::Managed(_) => vec![DEFAULT_PROJECT.to_owned()],
            Source::Config(map) => {
                let mut projects: Vec<String> = map.values().map(|(_, p)| p.clone()).collect();
                projects.sort();
                projects.dedup();
                projects
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salted_hash_round_trip() {
        let hash = SaltedHash::new("s3cret");
        let decoded = SaltedHash::decode(&hash.encode()).expect("decode");
        assert!(decoded.verify("s3cret"));
        assert!(!decoded.verify("s3cret "));
        assert!(SaltedHash::decode("sha256$zz$00").is_none());
    }
}
