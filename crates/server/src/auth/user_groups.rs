//! RPort's user groups over rportd's roles: a group is a stored bundle of RPort's
//! permissions and the projects it reaches; its members get the roles it grants
//! (`domain::permissions::group_roles`) beside their own. `Administrators` is no stored
//! group: it is the server-wide administrator flag of each user.

use std::collections::{BTreeMap, BTreeSet};

use rport_store::{DEFAULT_PROJECT, Store, StoreError, UserGroupRecord};

use crate::config::ApiSection;
use crate::domain::names::{ADMIN_GROUP, check_group_name};
use crate::domain::permissions::{GROUP_PERMISSIONS, Role, add_roles, group_roles};

/// A user group as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub name: String,
    /// RPort's permission names the group has.
    pub permissions: BTreeSet<String>,
    pub tunnels_restricted: Option<String>,
    pub commands_restricted: Option<String>,
    /// `None` for `Administrators`, which reaches every project.
    pub projects: Option<Vec<String>>,
}

impl GroupView {
    fn administrators() -> Self {
        Self {
            name: ADMIN_GROUP.to_owned(),
            permissions: GROUP_PERMISSIONS.iter().map(|p| (*p).to_owned()).collect(),
            tunnels_restricted: None,
            commands_restricted: None,
            projects: None,
        }
    }

    /// A group only named by memberships: it grants nothing until it is set.
    fn unset(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            permissions: BTreeSet::new(),
            tunnels_restricted: None,
            commands_restricted: None,
            projects: Some(Vec::new()),
        }
    }

    fn stored(record: UserGroupRecord) -> Self {
        Self {
            name: record.name,
            permissions: record.permissions.into_iter().collect(),
            tunnels_restricted: record.tunnels_restricted,
            commands_restricted: record.commands_restricted,
            projects: Some(record.projects),
        }
    }
}

/// What a `PUT` sets; `projects: None` keeps the group's projects (the default project
/// for a new group).
pub struct GroupChange {
    /// RPort's permission name -> whether the group has it.
    pub permissions: BTreeMap<String, bool>,
    /// JSON text, kept as given.
    pub tunnels_restricted: Option<String>,
    pub commands_restricted: Option<String>,
    pub projects: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("{0}")]
    Invalid(String),
    #[error(
        "\"{ADMIN_GROUP}\" is the server-wide administrators: every permission in every project; it cannot be changed or deleted, only its members (\"groups\" of each user)"
    )]
    Administrators,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct UserGroups<'a> {
    store: &'a dyn Store,
}

impl<'a> UserGroups<'a> {
    pub fn new(store: &'a dyn Store) -> Self {
        Self { store }
    }

    /// `Administrators`, the set groups and those only named by a membership (in the
    /// store or `[api] auth_file`), by name.
    pub async fn list(&self, api: &ApiSection) -> Result<Vec<GroupView>, StoreError> {
        let mut groups: BTreeMap<String, GroupView> = BTreeMap::new();
        groups.insert(ADMIN_GROUP.to_owned(), GroupView::administrators());
        for record in self.store.list_user_groups().await? {
            groups.insert(record.name.clone(), GroupView::stored(record));
        }
        let stored_members = self.store.list_user_group_members().await?;
        let file_users = api.auth_file.as_ref().map(|file| file.users());
        let file_members = file_users.iter().flat_map(|users| users.iter());
        let named = stored_members
            .into_iter()
            .map(|(_, group)| group)
            .chain(file_members.flat_map(|user| user.groups.clone()));
        for name in named {
            if !groups.contains_key(&name) {
                groups.insert(name.clone(), GroupView::unset(&name));
            }
        }
        Ok(groups.into_values().collect())
    }

    /// As RPort: a group never set reads as one without permissions, not as missing.
    pub async fn get(&self, name: &str) -> Result<GroupView, GroupError> {
        if name == ADMIN_GROUP {
            return Ok(GroupView::administrators());
        }
        check_group_name(name).map_err(GroupError::Invalid)?;
        Ok(match self.store.get_user_group(name).await? {
            Some(record) => GroupView::stored(record),
            None => GroupView::unset(name),
        })
    }

    /// Creates or replaces a group. `Administrators` takes only a change that keeps
    /// every permission (what a web UI sends when saving it unchanged).
    pub async fn put(&self, name: &str, change: GroupChange) -> Result<GroupView, GroupError> {
        for permission in change.permissions.keys() {
            if !GROUP_PERMISSIONS.contains(&permission.as_str()) {
                return Err(GroupError::Invalid(format!(
                    "invalid permission {permission:?}: not one of {}",
                    GROUP_PERMISSIONS.join(", ")
                )));
            }
        }
        if name == ADMIN_GROUP {
            let narrows = change.permissions.values().any(|granted| !granted)
                || change.tunnels_restricted.is_some()
                || change.commands_restricted.is_some()
                || change.projects.is_some();
            return match narrows {
                true => Err(GroupError::Administrators),
                false => Ok(GroupView::administrators()),
            };
        }
        check_group_name(name).map_err(GroupError::Invalid)?;
        let projects = match change.projects {
            Some(projects) => self.known_projects(projects).await?,
            None => match self.store.get_user_group(name).await? {
                Some(existing) => existing.projects,
                None => vec![DEFAULT_PROJECT.to_owned()],
            },
        };
        let record = UserGroupRecord {
            name: name.to_owned(),
            permissions: change
                .permissions
                .into_iter()
                .filter_map(|(permission, granted)| granted.then_some(permission))
                .collect(),
            tunnels_restricted: change.tunnels_restricted,
            commands_restricted: change.commands_restricted,
            projects,
        };
        self.store.put_user_group(&record).await?;
        Ok(GroupView::stored(record))
    }

    /// Deletes a group and every membership in it; one that never existed is no error
    /// (as RPort).
    pub async fn delete(&self, name: &str) -> Result<(), GroupError> {
        if name == ADMIN_GROUP {
            return Err(GroupError::Administrators);
        }
        check_group_name(name).map_err(GroupError::Invalid)?;
        self.store.delete_user_group(name).await?;
        Ok(())
    }

    /// Every user's groups (without `Administrators`), by user name: those of
    /// `[api] auth_file`'s users from the file (they come first, as at login), the
    /// others' from the store.
    pub async fn memberships(
        &self,
        api: &ApiSection,
    ) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (username, group) in self.store.list_user_group_members().await? {
            members.entry(username).or_default().push(group);
        }
        if let Some(file) = &api.auth_file {
            for user in file.users().iter() {
                members.insert(user.username.clone(), user.groups.clone());
            }
        }
        Ok(members)
    }

    /// Replaces the groups a user belongs to; `Administrators` is not among them (it is
    /// the user's administrator flag).
    pub async fn set_members(&self, username: &str, groups: &[String]) -> Result<(), StoreError> {
        let groups: Vec<String> = groups
            .iter()
            .filter(|g| *g != ADMIN_GROUP)
            .cloned()
            .collect();
        self.store.set_user_groups(username, &groups).await
    }

    async fn known_projects(&self, projects: Vec<String>) -> Result<Vec<String>, GroupError> {
        let known = self.store.list_projects().await?;
        for project in &projects {
            if !known.iter().any(|p| &p.key == project) {
                return Err(GroupError::Invalid(format!("no project {project:?}")));
            }
        }
        let unique: BTreeSet<String> = projects.into_iter().collect();
        Ok(unique.into_iter().collect())
    }
}

/// Splits RPort's `groups` of a user into the administrator flag and the other groups,
/// checking each name.
pub fn split_groups(groups: Vec<String>) -> Result<(bool, Vec<String>), String> {
    let mut is_admin = false;
    let mut others = BTreeSet::new();
    for group in groups {
        if group == ADMIN_GROUP {
            is_admin = true;
        } else {
            check_group_name(&group)?;
            others.insert(group);
        }
    }
    Ok((is_admin, others.into_iter().collect()))
}

/// The roles the groups named (a user of `[api] auth_file`'s) grant, read from the store
/// on every request as [`roles_from_groups`].
pub async fn roles_from_named_groups(
    store: &dyn Store,
    names: &[String],
) -> Result<BTreeMap<String, Role>, StoreError> {
    let mut roles = BTreeMap::new();
    for name in names {
        if let Some(group) = store.get_user_group(name).await? {
            add_roles(&mut roles, group_roles(&group.permissions, &group.projects));
        }
    }
    Ok(roles)
}

/// The roles `username`'s groups grant, read from the store on every request, so that
/// a change made on any node of a cluster counts at once everywhere.
pub async fn roles_from_groups(
    store: &dyn Store,
    username: &str,
) -> Result<BTreeMap<String, Role>, StoreError> {
    let mut roles = BTreeMap::new();
    for group in store.user_groups_of(username).await? {
        add_roles(&mut roles, group_roles(&group.permissions, &group.projects));
    }
    Ok(roles)
}
