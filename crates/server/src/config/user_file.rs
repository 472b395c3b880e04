//! `[api] auth_file`: RPort's JSON file of API users, read at start and read again on
//! request (SIGUSR1, as RPort does), when an edit that does not parse keeps the users before it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Deserialize;

use crate::domain::names::{ADMIN_GROUP, check_group_name, check_project_key, check_username};
use crate::domain::permissions::Role;
use crate::domain::secrets::{Secret, StoredSecret};

/// One user of `[api] auth_file`.
#[derive(Debug, Clone)]
pub struct FileUser {
    pub username: String,
    /// bcrypt or argon2; never a plain password.
    pub password_hash: Secret,
    /// In group `Administrators`.
    pub is_admin: bool,
    pub roles: BTreeMap<String, Role>,
    /// RPort's other user groups the user is in, sorted; they grant what the stored
    /// group of that name grants (`auth::user_groups`).
    pub groups: Vec<String>,
}

/// The file and the users it held when last read well. Clones of the configuration share it,
/// so a reload is seen by every part of the server at once.
pub struct UserFile {
    path: PathBuf,
    users: RwLock<Arc<Vec<FileUser>>>,
}

impl fmt::Debug for UserFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserFile")
            .field("path", &self.path)
            .field("users", &self.users().len())
            .finish()
    }
}

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Users still there whose password, group or roles changed.
    pub changed: Vec<String>,
    pub users: usize,
}

impl UserFile {
    /// Reads and checks the file; the error says what is wrong, naming the file and the user.
    pub fn read(path: &Path) -> Result<Self, String> {
        Ok(Self {
            path: path.to_owned(),
            users: RwLock::new(Arc::new(parse(path)?)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The users as last read.
    pub fn users(&self) -> Arc<Vec<FileUser>> {
        match self.users.read() {
            Ok(users) => Arc::clone(&users),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reads the file again. On an error nothing changes: a half-saved or mistyped file must
    /// not lock every file user out.
    pub fn reload(&self) -> Result<Reloaded, String> {
        let fresh = parse(&self.path)?;
        let old = self.users();
        let named = |users: &[FileUser], name: &str| users.iter().any(|u| u.username == name);
        let reloaded = Reloaded {
            added: fresh
                .iter()
                .filter(|u| !named(&old, &u.username))
                .map(|u| u.username.clone())
                .collect(),
            removed: old
                .iter()
                .filter(|u| !named(&fresh, &u.username))
                .map(|u| u.username.clone())
                .collect(),
            changed: fresh
                .iter()
                .filter(|new| {
                    old.iter().any(|was| {
                        was.username == new.username
                            && (was.password_hash.expose() != new.password_hash.expose()
                                || was.is_admin != new.is_admin
                                || was.roles != new.roles
                                || was.groups != new.groups)
                    })
                })
                .map(|u| u.username.clone())
                .collect(),
            users: fresh.len(),
        };
        let fresh = Arc::new(fresh);
        match self.users.write() {
            Ok(mut users) => *users = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(reloaded)
    }
}

/// RPort's JSON array of `{"username", "password", "groups"}` with bcrypt (or argon2) hashes,
/// plus our `"roles": {"project": "role"}`.
pub fn parse(path: &Path) -> Result<Vec<FileUser>, String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|err| format!("cannot read {shown}: {err}"))?;
    #[derive(Deserialize)]
    struct Entry {
        username: String,
        password: String,
        #[serde(default)]
        groups: Vec<String>,
        #[serde(default)]
        roles: BTreeMap<String, String>,
    }
    let entries: Vec<Entry> = serde_json::from_str(&text).map_err(|err| {
        format!(
            "{shown} is not a JSON array of {{\"username\", \"password\", \"groups\", \"roles\"}}: {err}"
        )
    })?;
    let mut users: Vec<FileUser> = Vec::new();
    for entry in entries {
        let name = &entry.username;
        let fail = |reason: String| format!("{shown}: user {name:?}: {reason}");
        check_username(name).map_err(|reason| format!("{shown}: {reason}"))?;
        if users.iter().any(|u| &u.username == name) {
            return Err(fail("listed twice".into()));
        }
        match StoredSecret::from_config(&entry.password) {
            Ok(StoredSecret::Hash(_)) => {}
            Ok(StoredSecret::Plain(_)) | Err(_) => {
                return Err(fail(
                    "password must be a bcrypt hash (htpasswd -nbB USER PASSWORD) or an argon2 one, never the password itself".into(),
                ));
            }
        }
        let mut is_admin = false;
        let mut groups = std::collections::BTreeSet::new();
        for group in &entry.groups {
            if group == ADMIN_GROUP {
                is_admin = true;
            } else {
                check_group_name(group).map_err(&fail)?;
                groups.insert(group.clone());
            }
        }
        let mut roles = BTreeMap::new();
        for (project, role) in &entry.roles {
            check_project_key(project).map_err(&fail)?;
            let role = Role::parse(role).ok_or_else(|| {
                fail(format!(
                    "role {role:?} in project {project:?} is not one of viewer, tunnels, admin"
                ))
            })?;
            roles.insert(project.clone(), role);
        }
        users.push(FileUser {
            username: entry.username,
            password_hash: Secret::new(entry.password),
            is_admin,
            roles,
            groups: groups.into_iter().collect(),
        });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_says_what_changed_and_a_bad_file_keeps_the_users() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.json");
        let hash = bcrypt::hash("a-long-password", 4).expect("bcrypt");
        let other = bcrypt::hash("another-long-password", 4).expect("bcrypt");
        let write =
            |users: serde_json::Value| std::fs::write(&path, users.to_string()).expect("write");
        write(serde_json::json!([
            {"username": "stays", "password": hash},
            {"username": "goes", "password": hash},
            {"username": "promoted", "password": hash},
        ]));
        let file = UserFile::read(&path).expect("read");
        write(serde_json::json!([
            {"username": "stays", "password": hash},
            {"username": "promoted", "password": hash, "groups": ["Administrators"]},
            {"username": "new", "password": other},
        ]));
        let reloaded = file.reload().expect("reload");
        assert_eq!(
            reloaded,
            Reloaded {
                added: vec!["new".into()],
                removed: vec!["goes".into()],
                changed: vec!["promoted".into()],
                users: 3,
            }
        );
        std::fs::write(&path, "[{").expect("write");
        let err = file.reload().expect_err("broken");
        assert!(err.contains("users.json"), "{err}");
        let names: Vec<String> = file.users().iter().map(|u| u.username.clone()).collect();
        assert_eq!(names, ["stays", "promoted", "new"]);
        assert!(!format!("{file:?}").contains("$2"), "no hash in Debug");
    }
}
