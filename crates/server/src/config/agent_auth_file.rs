//! `[server] auth_file`: a JSON file of agent credentials, read and checked at start.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::validate::Validator;
use super::{AgentAuth, ConfigError, FileCredential};
use crate::domain::names::check_project_key;
use crate::domain::secrets::StoredSecret;

impl Validator<'_> {
    pub(super) fn auth_file(&self, path: PathBuf) -> Result<AgentAuth, ConfigError> {
        let key = "server.auth_file";
        let shown = path.display();
        let text = std::fs::read_to_string(&path)
            .map_err(|err| self.error(key, format!("cannot read {shown}: {err}")))?;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Entry {
            Password(String),
            Bound {
                password: String,
                #[serde(default)]
                project: Option<String>,
            },
        }
        let map: BTreeMap<String, Entry> = serde_json::from_str(&text).map_err(|err| {
            self.error(
                key,
                format!(
                    "{shown} is not a JSON object of id -> password or hash, or id -> {{\"password\", \"project\"}}: {err}"
                ),
            )
        })?;
        let mut entries = BTreeMap::new();
        for (id, value) in map {
            if id.is_empty() || id.contains(':') {
                return Err(self.error(
                    key,
                    format!("{shown}: credential id {id:?} must be non-empty and without ':'"),
                ));
            }
            self.check_credential_id(key, &id)?;
            let (password, project) = match value {
                Entry::Password(password) => (password, None),
                Entry::Bound { password, project } => (password, project),
            };
            let secret = StoredSecret::from_config(&password).map_err(|reason| {
                self.error(key, format!("{shown}: credential {id:?}: {reason}"))
            })?;
            let project = project.unwrap_or_else(|| rport_store::DEFAULT_PROJECT.to_owned());
            check_project_key(&project).map_err(|reason| {
                self.error(key, format!("{shown}: credential {id:?}: {reason}"))
            })?;
            entries.insert(id, FileCredential { secret, project });
        }
        if entries.is_empty() {
            return Err(self.error(key, format!("{shown} holds no credentials")));
        }
        Ok(AgentAuth::File { path, entries })
    }
}
