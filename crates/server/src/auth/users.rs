//! Managing API users: the rules for names, passwords and roles, shared by `/api/v1/users`
//! and `rportd user`, over the three places users come from (`[api] auth`, `[api]
//! auth_file`, the store), of which only the store can be changed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rport_store::{AdminGuard, Store, StoreError, UserRecord, UserWrite};

use crate::config::ApiSection;
use crate::domain::names::check_username;
use crate::domain::permissions::{Role, parse_roles};
use crate::domain::secrets::hash_password;

/// RPort's `password_min_length` default.
pub const MIN_PASSWORD_LEN: usize = 14;

/// Where a user is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `[api] auth`.
    Config,
    /// `[api] auth_file`.
    File,
    Store,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::File => "auth_file",
            Self::Store => "db",
        }
    }
}

/// A user as the API and the command line show it: never its password or hash.
#[derive(Debug, Clone, PartialEq)]
pub struct UserView {
    pub username: String,
    pub is_admin: bool,
    pub roles: BTreeMap<String, Role>,
    pub source: Source,
    pub created_at: Option<DateTime<Utc>>,
    /// RPort's `password_expired` (always false for users of the configuration).
    pub password_expired: bool,
    /// RPort's `two_fa_send_to`, kept but not used: rportd sends no second factor.
    pub two_fa_send_to: String,
}

/// RPort's fields of a user that rportd keeps beside its own.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RportUserFields {
    /// The user must set a new password (`POST /api/v1/login` with `new_password`)
    /// before anything else.
    pub password_expired: bool,
    pub two_fa_send_to: String,
}

/// What to change on a user; `None` keeps it.
#[derive(Default)]
pub struct UserChange {
    pub password: Option<String>,
    pub is_admin: Option<bool>,
    /// Replaces all of the user's roles.
    pub roles: Option<BTreeMap<String, String>>,
    /// Renames the user (its roles and API tokens go with it; its sessions end).
    pub username: Option<String>,
    pub password_expired: Option<bool>,
    pub two_fa_send_to: Option<String>,
}

impl UserChange {
    /// Whether it changes nothing about `username`.
    pub fn is_empty(&self, username: &str) -> bool {
        self.password.is_none()
            && self.is_admin.is_none()
            && self.roles.is_none()
            && self.username.as_deref().is_none_or(|name| name == username)
            && self.password_expired.is_none()
            && self.two_fa_send_to.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("user {0:?} exists already")]
    Exists(String),
    #[error("no user {0:?}")]
    NotFound(String),
    #[error("user {name:?} is defined by {where_} in the server's configuration; change it there")]
    ReadOnly { name: String, where_: &'static str },
    #[error(
        "user {0:?} is the last server-wide administrator; make another one first, or set [api] auth"
    )]
    LastAdmin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Users<'a> {
    store: &'a dyn Store,
    api: &'a ApiSection,
}

impl<'a> Users<'a> {
    pub fn new(store: &'a dyn Store, api: &'a ApiSection) -> Self {
        Self { store, api }
    }

    /// Users of the configuration first, then the store's, by name.
    pub async fn list(&self) -> Result<Vec<UserView>, StoreError> {
        let mut users = self.configured();
        for record in self.store.list_users().await? {
            if !users.iter().any(|u| u.username == record.username) {
                users.push(stored_view(&record));
            }
        }
        Ok(users)
    }

    pub async fn get(&self, username: &str) -> Result<Option<UserView>, StoreError> {
        if let Some(user) = self
            .configured()
            .into_iter()
            .find(|u| u.username == username)
        {
            return Ok(Some(user));
        }
        Ok(self
            .store
            .get_user(username)
            .await?
            .as_ref()
            .map(stored_view))
    }

    fn configured(&self) -> Vec<UserView> {
        let mut users = Vec::new();
        if let Some((name, _)) = &self.api.auth {
            users.push(UserView {
                username: name.clone(),
                is_admin: true,
                roles: BTreeMap::new(),
                source: Source::Config,
                created_at: None,
                password_expired: false,
                two_fa_send_to: String::new(),
            });
        }
        let file_users = self.api.auth_file.as_ref().map(|file| file.users());
        for user in file_users.iter().flat_map(|users| users.iter()) {
            if users.iter().all(|u: &UserView| u.username != user.username) {
                users.push(UserView {
                    username: user.username.clone(),
                    is_admin: user.is_admin,
                    roles: user.roles.clone(),
                    source: Source::File,
                    created_at: None,
                    password_expired: false,
                    two_fa_send_to: String::new(),
                });
            }
        }
        users
    }

    /// Refuses changes to users the configuration defines.
    fn changeable(&self, username: &str) -> Result<(), UserError> {
        match self.configured().iter().find(|u| u.username == username) {
            Some(user) => Err(UserError::ReadOnly {
                name: username.to_owned(),
                where_: if user.source == Source::Config {
                    "[api] auth"
                } else {
                    "[api] auth_file"
                },
            }),
            None => Ok(()),
        }
    }

    pub async fn create(
        &self,
        username: &str,
        password: &str,
        is_admin: bool,
        roles: BTreeMap<String, String>,
    ) -> Result<UserView, UserError> {
        self.create_with(
            username,
            password,
            is_admin,
            roles,
            RportUserFields::default(),
        )
        .await
    }

    /// [`Users::create`] with RPort's fields.
    pub async fn create_with(
        &self,
        username: &str,
        password: &str,
        is_admin: bool,
        roles: BTreeMap<String, String>,
        fields: RportUserFields,
    ) -> Result<UserView, UserError> {
        check_username(username).map_err(UserError::Invalid)?;
        if self.configured().iter().any(|u| u.username == username) {
            return Err(UserError::Exists(username.to_owned()));
        }
        check_password(password)?;
        let record = UserRecord {
            username: username.to_owned(),
            password_hash: hash_off_runtime(password).await?,
            is_admin,
            created_at: Utc::now(),
            roles: self.checked_roles(roles).await?,
            password_expired: fields.password_expired,
            two_fa_send_to: fields.two_fa_send_to,
        };
        if !self.store.insert_user(&record).await? {
            return Err(UserError::Exists(username.to_owned()));
        }
        Ok(stored_view(&record))
    }

    /// Changes a store user; a rename (`change.username`) comes last, after the other
    /// changes were written under the old name.
    pub async fn update(&self, username: &str, change: UserChange) -> Result<UserView, UserError> {
        self.changeable(username)?;
        let rename_to = change
            .username
            .clone()
            .filter(|new_name| new_name != username);
        if let Some(new_name) = &rename_to {
            check_username(new_name).map_err(UserError::Invalid)?;
            if self.configured().iter().any(|u| &u.username == new_name)
                || self.store.get_user(new_name).await?.is_some()
            {
                return Err(UserError::Exists(new_name.clone()));
            }
        }
        if let Some(password) = &change.password {
            check_password(password)?;
        }
        let mut record = self
            .store
            .get_user(username)
            .await?
            .ok_or_else(|| UserError::NotFound(username.to_owned()))?;
        if let Some(password) = &change.password {
            record.password_hash = hash_off_runtime(password).await?;
        }
        if let Some(expired) = change.password_expired {
            record.password_expired = expired;
        }
        if let Some(send_to) = change.two_fa_send_to {
            record.two_fa_send_to = send_to;
        }
        if let Some(roles) = change.roles {
            record.roles = self.checked_roles(roles).await?;
        }
        if let Some(is_admin) = change.is_admin {
            record.is_admin = is_admin;
        }
        let written = self.store.update_user(&record, self.admin_guard()).await?;
        written_or_error(username, written)?;
        if let Some(new_name) = rename_to {
            let renamed = self.store.rename_user(username, &new_name).await?;
            written_or_error(&new_name, renamed)?;
            record.username = new_name;
        }
        Ok(stored_view(&record))
    }

    /// Deletes a store user with its roles and API tokens; its login tokens stop working
    /// at once because they name a user that no longer exists.
    pub async fn delete(&self, username: &str) -> Result<(), UserError> {
        self.changeable(username)?;
        let written = self.store.delete_user(username, self.admin_guard()).await?;
        written_or_error(username, written)
    }

    /// The store must keep an administrator unless the configuration defines one.
    fn admin_guard(&self) -> AdminGuard {
        match self.configured().iter().any(|u| u.is_admin) {
            true => AdminGuard::None,
            false => AdminGuard::KeepOne,
        }
    }

    /// Role names checked, projects known.
    async fn checked_roles(
        &self,
        roles: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, UserError> {
        let projects = self.store.list_projects().await?;
        for (project, role) in &roles {
            if !projects.iter().any(|p| &p.key == project) {
                return Err(UserError::Invalid(format!("no project {project:?}")));
            }
            if Role::parse(role).is_none() {
                return Err(UserError::Invalid(format!(
                    "role {role:?} in project {project:?} is not one of {}",
                    Role::NAMES.join(", ")
                )));
            }
        }
        Ok(roles)
    }
}

fn written_or_error(username: &str, written: UserWrite) -> Result<(), UserError> {
    match written {
        UserWrite::Done => Ok(()),
        UserWrite::NotFound => Err(UserError::NotFound(username.to_owned())),
        UserWrite::LastAdmin => Err(UserError::LastAdmin(username.to_owned())),
        UserWrite::Taken => Err(UserError::Exists(username.to_owned())),
    }
}

fn stored_view(record: &UserRecord) -> UserView {
    UserView {
        username: record.username.clone(),
        is_admin: record.is_admin,
        roles: parse_roles(&record.roles),
        source: Source::Store,
        created_at: Some(record.created_at),
        password_expired: record.password_expired,
        two_fa_send_to: record.two_fa_send_to.clone(),
    }
}

pub fn check_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(UserError::Invalid(format!(
            "the password needs at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// argon2 takes tens of milliseconds of CPU: not on the async runtime's threads.
async fn hash_off_runtime(password: &str) -> Result<String, StoreError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|err| StoreError::Backend(Box::new(err)))
}
