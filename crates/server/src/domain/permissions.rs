//! Who may do what: server-wide administrators, and roles per project (`viewer` reads,
//! `tunnels` also opens and closes tunnels, `admin` may do everything in the project), cut
//! down by the limits of the API token a request came with. RPort's user groups grant
//! roles too: a user has its own roles and its groups' together.

use std::collections::BTreeMap;
use std::fmt;

/// A user's role in one project; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Sees the project's agents and tunnels.
    Viewer,
    /// Also opens and closes tunnels (JFrog's "Remote Terminal & Port Tunnel").
    Tunnels,
    /// Everything in the project.
    Admin,
}

impl Role {
    pub const NAMES: [&'static str; 3] = ["viewer", "tunnels", "admin"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "viewer" => Some(Self::Viewer),
            "tunnels" => Some(Self::Tunnels),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Tunnels => "tunnels",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses stored role names; a name this version does not know grants nothing.
pub fn parse_roles(names: &BTreeMap<String, String>) -> BTreeMap<String, Role> {
    names
        .iter()
        .filter_map(|(project, name)| Some((project.clone(), Role::parse(name)?)))
        .collect()
}

/// RPort's permission names a user group may have, in RPort's order. Of these only
/// `tunnels` means something to rportd (see [`group_roles`]).
pub const GROUP_PERMISSIONS: [&str; 8] = [
    "tunnels",
    "scripts",
    "commands",
    "vault",
    "scheduler",
    "monitoring",
    "uploads",
    "auditlog",
];

/// What membership of one user group grants: in each of its projects, role `tunnels`
/// when the group has RPort's `tunnels` permission, `viewer` otherwise. RPort's other
/// permissions name features rportd does not have and grant nothing.
pub fn group_roles(permissions: &[String], projects: &[String]) -> BTreeMap<String, Role> {
    let role = if permissions.iter().any(|p| p == "tunnels") {
        Role::Tunnels
    } else {
        Role::Viewer
    };
    projects.iter().map(|p| (p.clone(), role)).collect()
}

/// Adds `more` to `roles`, keeping the higher role where both name a project: a user's
/// rights are its own roles and its groups' together, never less than either.
pub fn add_roles(roles: &mut BTreeMap<String, Role>, more: BTreeMap<String, Role>) {
    for (project, role) in more {
        let kept = roles.entry(project).or_insert(role);
        *kept = (*kept).max(role);
    }
}

/// An authenticated caller: who it is, what it was granted, and how its credential limits
/// that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub username: String,
    /// A server-wide administrator: every project, plus users and projects themselves.
    pub is_admin: bool,
    pub roles: BTreeMap<String, Role>,
    /// Authenticated by an API token of `read` scope: reads only.
    pub read_only: bool,
    /// Authenticated by an API token limited to this project.
    pub project: Option<String>,
    /// Authenticated by an API token (not a password or a login's token).
    pub api_token: bool,
    /// Authenticated by an API token of RPort's `clients-auth` scope: only requests
    /// about agent credentials.
    pub clients_auth_only: bool,
    /// RPort's `password_expired`: the password works only to set a new one at login.
    pub password_expired: bool,
    /// The token id (`jti`) of the login session the request came with; `None` for a
    /// password or an API token. Lets a user tell its current session from the others.
    pub login_session: Option<String>,
}

impl AuthUser {
    /// A user authenticated by password or login token: nothing cut down.
    pub fn new(username: String, is_admin: bool, roles: BTreeMap<String, Role>) -> Self {
        Self {
            username,
            is_admin,
            roles,
            read_only: false,
            project: None,
            api_token: false,
            clients_auth_only: false,
            password_expired: false,
            login_session: None,
        }
    }

    /// What the user was granted in `project`, before any token limit.
    fn granted(&self, project: &str) -> Option<Role> {
        if self.is_admin {
            Some(Role::Admin)
        } else {
            self.roles.get(project).copied()
        }
    }

    /// What this request may do in `project`.
    pub fn role_in(&self, project: &str) -> Option<Role> {
        if self.project.as_deref().is_some_and(|p| p != project) {
            return None;
        }
        let role = self.granted(project)?;
        Some(if self.read_only {
            role.min(Role::Viewer)
        } else {
            role
        })
    }

    /// Whether the user may know that things of `project` exist; a caller who may not
    /// gets "not found", never a hint.
    pub fn sees(&self, project: &str) -> bool {
        self.granted(project).is_some()
    }

    /// Whether this request may see things of `project` (its token may be limited).
    pub fn reads(&self, project: &str) -> bool {
        self.role_in(project).is_some()
    }

    /// Ok when this request has at least `needed` in `project`; otherwise the reason,
    /// naming what was tried (`doing`, e.g. "opening tunnels").
    pub fn require(&self, project: &str, needed: Role, doing: &str) -> Result<(), String> {
        match self.role_in(project) {
            Some(role) if role >= needed => Ok(()),
            Some(_) if self.read_only => Err(format!(
                "this API token has read scope; {doing} needs a read+write one"
            )),
            Some(role) => Err(format!(
                "{doing} in project {project:?} needs role {}; user {:?} has role {role} there",
                roles_from(needed),
                self.username
            )),
            None if self.sees(project) => Err(format!(
                "this API token is limited to project {:?}, not {project:?}",
                self.project.as_deref().unwrap_or_default()
            )),
            None => Err(format!(
                "user {:?} has no role in project {project:?}",
                self.username
            )),
        }
    }

    /// Ok for a server-wide administrator; otherwise the reason.
    pub fn require_server_admin(&self, doing: &str) -> Result<(), String> {
        if !self.is_admin {
            return Err(format!(
                "{doing} needs a server-wide administrator; user {:?} is not one",
                self.username
            ));
        }
        // A read-scope token of an admin may read; the method check refuses the rest.
        match &self.project {
            Some(project) => Err(format!(
                "{doing} needs a token not limited to one project; this one is limited to {project:?}"
            )),
            None => Ok(()),
        }
    }
}

/// "tunnels or admin" for a needed role.
fn roles_from(needed: Role) -> String {
    let names: Vec<&str> = [Role::Viewer, Role::Tunnels, Role::Admin]
        .into_iter()
        .filter(|r| *r >= needed)
        .map(Role::as_str)
        .collect();
    names.join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(roles: &[(&str, Role)]) -> AuthUser {
        AuthUser::new(
            "alice".into(),
            false,
            roles.iter().map(|(p, r)| ((*p).to_owned(), *r)).collect(),
        )
    }

    #[test]
    fn roles_include_the_ones_below() {
        let alice = user(&[("a", Role::Tunnels), ("b", Role::Viewer)]);
        assert!(alice.require("a", Role::Viewer, "reading").is_ok());
        assert!(alice.require("a", Role::Tunnels, "opening tunnels").is_ok());
        let err = alice
            .require("a", Role::Admin, "deleting clients")
            .expect_err("tunnels is not admin");
        assert_eq!(
            err,
            "deleting clients in project \"a\" needs role admin; user \"alice\" has role tunnels there"
        );
        let err = alice
            .require("b", Role::Tunnels, "opening tunnels")
            .expect_err("viewer");
        assert!(err.contains("needs role tunnels or admin"), "{err}");
        let err = alice
            .require("c", Role::Viewer, "reading")
            .expect_err("no role");
        assert_eq!(err, "user \"alice\" has no role in project \"c\"");
        assert!(alice.sees("a") && !alice.sees("c"));
    }

    #[test]
    fn admins_have_every_project_and_tokens_cut_down() {
        let mut admin = AuthUser::new("root".into(), true, BTreeMap::new());
        assert_eq!(admin.role_in("anything"), Some(Role::Admin));
        assert!(admin.require_server_admin("managing users").is_ok());

        admin.project = Some("a".into());
        assert_eq!(admin.role_in("b"), None);
        assert!(
            admin.sees("b"),
            "the user may see it, only the token is limited"
        );
        let err = admin
            .require("b", Role::Viewer, "reading")
            .expect_err("limited");
        assert!(err.contains("limited to project \"a\""), "{err}");
        assert!(admin.require_server_admin("managing users").is_err());

        admin.project = None;
        admin.read_only = true;
        assert_eq!(admin.role_in("a"), Some(Role::Viewer));
        let err = admin
            .require("a", Role::Tunnels, "opening tunnels")
            .expect_err("read scope");
        assert!(err.contains("read scope"), "{err}");

        let alice = user(&[("a", Role::Admin)]);
        let err = alice
            .require_server_admin("managing users")
            .expect_err("project admin is not server admin");
        assert!(err.contains("not one"), "{err}");
    }

    #[test]
    fn groups_add_to_a_users_roles_and_never_take_away() {
        let names = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let tunnels = group_roles(&names(&["tunnels", "vault"]), &names(&["a", "b"]));
        assert_eq!(tunnels.get("a"), Some(&Role::Tunnels));
        let viewers = group_roles(&names(&["auditlog", "commands"]), &names(&["c"]));
        assert_eq!(
            viewers.get("c"),
            Some(&Role::Viewer),
            "other permissions grant nothing more"
        );
        assert!(
            group_roles(&names(&["tunnels"]), &[]).is_empty(),
            "no project, nothing"
        );

        let mut roles: BTreeMap<String, Role> = [
            ("a".to_owned(), Role::Admin),
            ("c".to_owned(), Role::Viewer),
        ]
        .into();
        add_roles(&mut roles, tunnels);
        add_roles(&mut roles, viewers);
        assert_eq!(roles.get("a"), Some(&Role::Admin), "kept the higher one");
        assert_eq!(roles.get("b"), Some(&Role::Tunnels), "added");
        assert_eq!(roles.get("c"), Some(&Role::Viewer));
        assert_eq!(roles.get("d"), None);
    }

    #[test]
    fn unknown_stored_role_names_grant_nothing() {
        let names = [
            ("a".to_owned(), "tunnels".to_owned()),
            ("b".to_owned(), "superuser".to_owned()),
        ]
        .into_iter()
        .collect();
        let roles = parse_roles(&names);
        assert_eq!(roles.get("a"), Some(&Role::Tunnels));
        assert_eq!(roles.get("b"), None);
    }
}
