//! `rportd migrate --from-sqlite PATH`: copies a single server's SQLite database into the
//! store `[database]` names (PostgreSQL, to grow into a cluster), record by record through
//! the `Store` trait, so that every backend's own rules apply to what is written.
//!
//! The target must be empty: the copy never merges two histories. Live tunnels keep
//! living and are recorded as held by the node whose data dir this is (its `node-id`),
//! so that exactly one node opens them again.

use std::path::Path;

use chrono::Utc;
use rport_store::{
    AuditFilter, DEFAULT_PROJECT, DatabaseSettings, Store, StoreError, TunnelFilter,
};

use crate::app::identity::IDENTITY_SETTING;
use crate::auth::api_callers::JWT_SECRET_KEY;
use crate::config::ServerConfig;
use crate::domain::secrets::random_secret;

/// Audit entries read at once.
const AUDIT_PAGE: usize = 1000;
/// A revoked session token is kept out this long after the copy: the most `[api]
/// max_token_lifetime` allows (RPort's 2160 hours), since the copy cannot read when
/// the token itself expires.
const REVOKED_KEPT: chrono::Duration = chrono::Duration::hours(2160);

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Start(#[from] crate::app::StartError),
    #[error("the key pair in the data dir: {0}")]
    Identity(#[from] rport_transport::tls::TlsError),
}

/// Copies the SQLite database at `from` (a data dir or the database file) into the store
/// the configuration names; returns what to print.
pub async fn run(config: &ServerConfig, from: &Path) -> Result<String, MigrateError> {
    let file = if from.is_dir() {
        rport_store::default_db_path(from)
    } else {
        from.to_owned()
    };
    if !file.is_file() {
        return Err(MigrateError::Refused(format!(
            "{}: no SQLite database there; give the old data dir or its rportd.db",
            file.display()
        )));
    }
    if let DatabaseSettings::Sqlite { .. } = &config.database
        && config.database.location(&config.server.data_dir) == file.display().to_string()
    {
        return Err(MigrateError::Refused(
            "the source and the target are the same database; set [database] url to the PostgreSQL database to copy into".into(),
        ));
    }
    let source_settings = DatabaseSettings::Sqlite {
        path: Some(file.clone()),
    };
    let data_dir = file.parent().unwrap_or(Path::new("."));
    let source = rport_store::open(&source_settings, data_dir).await?;
    let target = rport_store::open(&config.database, &config.server.data_dir).await?;
    let holder = crate::app::data_dir::node_id(data_dir)?;
    // Users of the configuration have API tokens in the store too.
    let mut configured: Vec<String> = config
        .api
        .auth
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    if let Some(file) = &config.api.auth_file {
        configured.extend(file.users().iter().map(|u| u.username.clone()));
    }
    let copied = copy(source.as_ref(), target.as_ref(), &holder, &configured).await?;
    // The key pair agents pin, so that every node of the cluster presents it.
    let identity = match rport_transport::tls::IdentityPem::read_files(data_dir)? {
        Some(pem) => {
            target
                .setting_or_insert(IDENTITY_SETTING, pem.as_text())
                .await?;
            "the key pair agents pin"
        }
        None => "no key pair (the data dir has none; the first node to start makes one)",
    };
    Ok(format!(
        "copied {} into {}: {copied}, and {identity}\nlive tunnels are held by node {holder}: start that data dir's rportd on the new database first\n",
        file.display(),
        config.database.location(&config.server.data_dir),
    ))
}

/// How many records of each kind were copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub projects: usize,
    pub users: usize,
    pub api_tokens: usize,
    pub agent_credentials: usize,
    pub agents: usize,
    pub tunnels: usize,
    pub stored_tunnels: usize,
    pub audit_entries: usize,
    pub revoked_tokens: usize,
    pub user_groups: usize,
    pub totp_secrets: usize,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} projects, {} users, {} API tokens, {} agent credentials, {} clients, {} tunnels, {} stored tunnels, {} audit entries, {} revoked sessions, {} user groups, {} TOTP secrets",
            self.projects,
            self.users,
            self.api_tokens,
            self.agent_credentials,
            self.agents,
            self.tunnels,
            self.stored_tunnels,
            self.audit_entries,
            self.revoked_tokens,
            self.user_groups,
            self.totp_secrets
        )
    }
}

/// Copies everything from `source` into the empty `target`; live tunnels become held by
/// node `holder`. `configured` names the users defined outside the store, whose API
/// tokens are in it.
pub async fn copy(
    source: &dyn Store,
    target: &dyn Store,
    holder: &str,
    configured: &[String],
) -> Result<Copied, MigrateError> {
    refuse_unless_empty(target).await?;
    let mut copied = Copied::default();
    for project in source.list_projects().await? {
        if project.key != DEFAULT_PROJECT && target.insert_project(&project).await? {
            copied.projects += 1;
        }
    }
    let mut token_owners: Vec<String> = configured.to_vec();
    for user in source.list_users().await? {
        target.insert_user(&user).await?;
        copied.users += 1;
        token_owners.push(user.username);
    }
    for group in source.list_user_groups().await? {
        target.put_user_group(&group).await?;
        copied.user_groups += 1;
    }
    let mut members: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (username, group) in source.list_user_group_members().await? {
        members.entry(username).or_default().push(group);
    }
    for (username, groups) in &members {
        target.set_user_groups(username, groups).await?;
    }
    token_owners.sort();
    token_owners.dedup();
    let now = Utc::now();
    for username in &token_owners {
        for token in source.list_api_tokens(username).await? {
            target.insert_api_token(&token).await?;
            copied.api_tokens += 1;
        }
        // Without its secret a user would be asked to set one up again at the next
        // login, by whoever knows the password. (Login sessions are not copied: their
        // users log in again.)
        if let Some(secret) = source.get_totp_secret(username).await?
            && target.insert_totp_secret(username, &secret, now).await?
        {
            copied.totp_secrets += 1;
        }
    }
    for credential in source.list_agent_credentials().await? {
        target.insert_agent_credential(&credential).await?;
        copied.agent_credentials += 1;
    }
    for mut agent in source.list_agents().await? {
        // Nobody holds a session after the copy: the agents come back to a node.
        if agent.connected {
            agent.connected = false;
            agent.disconnected_at = Some(now);
        }
        agent.owner_node = None;
        target.upsert_agent(&agent).await?;
        copied.agents += 1;
    }
    for agent in source.list_agents().await? {
        copied.stored_tunnels += copy_stored_tunnels(source, target, &agent.id).await?;
    }
    let all = TunnelFilter::default();
    for mut tunnel in source.list_tunnels(&all).await?.into_iter().rev() {
        tunnel.owner_node = tunnel.is_live().then(|| holder.to_owned());
        target.insert_tunnel(&tunnel).await?;
        copied.tunnels += 1;
    }
    copied.audit_entries = copy_audit(source, target).await?;
    for jti in source.revoked_tokens(now).await? {
        target.revoke_token(&jti, now + REVOKED_KEPT).await?;
        copied.revoked_tokens += 1;
    }
    // The source gets a secret if it had none: harmless, it would on its next start.
    let secret = source
        .setting_or_insert(JWT_SECRET_KEY, &random_secret(48))
        .await?;
    target.setting_or_insert(JWT_SECRET_KEY, &secret).await?;
    Ok(copied)
}

/// One agent's stored tunnels, a page at a time.
async fn copy_stored_tunnels(
    source: &dyn Store,
    target: &dyn Store,
    agent_id: &str,
) -> Result<usize, MigrateError> {
    let mut copied = 0;
    loop {
        let page = rport_store::StoredTunnelFilter {
            limit: AUDIT_PAGE,
            offset: copied,
            ..Default::default()
        };
        let (list, _) = source.list_stored_tunnels(agent_id, &page).await?;
        for tunnel in &list {
            target.insert_stored_tunnel(tunnel).await?;
        }
        copied += list.len();
        if list.len() < AUDIT_PAGE {
            return Ok(copied);
        }
    }
}

/// Oldest first, a page at a time, so that the copy keeps the order and bounded memory.
async fn copy_audit(source: &dyn Store, target: &dyn Store) -> Result<usize, MigrateError> {
    let count = |offset: usize| AuditFilter {
        limit: AUDIT_PAGE,
        offset,
        ..Default::default()
    };
    let (_, total) = source.list_audit(&count(0)).await?;
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let mut end = total;
    let mut copied = 0;
    while end > 0 {
        let start = end.saturating_sub(AUDIT_PAGE);
        let filter = AuditFilter {
            limit: end - start,
            offset: total - end,
            ..Default::default()
        };
        let (page, _) = source.list_audit(&filter).await?;
        for entry in page.iter().rev() {
            target.insert_audit(entry).await?;
            copied += 1;
        }
        end = start;
    }
    Ok(copied)
}

async fn refuse_unless_empty(target: &dyn Store) -> Result<(), MigrateError> {
    let (_, audit) = target
        .list_audit(&AuditFilter {
            limit: 1,
            ..Default::default()
        })
        .await?;
    let filled = [
        ("users", target.list_users().await?.len()),
        ("clients", target.list_agents().await?.len()),
        (
            "tunnels",
            target
                .list_tunnels(&TunnelFilter {
                    limit: Some(1),
                    ..Default::default()
                })
                .await?
                .len(),
        ),
        (
            "agent credentials",
            target.list_agent_credentials().await?.len(),
        ),
        (
            "audit entries",
            usize::try_from(audit).unwrap_or(usize::MAX),
        ),
        (
            "projects",
            target
                .list_projects()
                .await?
                .iter()
                .filter(|p| p.key != DEFAULT_PROJECT)
                .count(),
        ),
    ];
    let found: Vec<String> = filled
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    Err(MigrateError::Refused(format!(
        "the target database is not empty ({}); the copy never merges two histories: give it an empty database",
        found.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn everything_is_copied_once_and_a_filled_target_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |name: &str| {
            let settings = DatabaseSettings::Sqlite {
                path: Some(dir.path().join(name)),
            };
            let dir = dir.path().to_owned();
            async move { rport_store::open(&settings, &dir).await.expect("open") }
        };
        let source = open("source.db").await;
        let target: Arc<dyn Store> = open("target.db").await;
        seed(source.as_ref()).await;

        let copied = copy(source.as_ref(), target.as_ref(), "node-a", &[])
            .await
            .expect("copy");
        assert_eq!(
            copied,
            Copied {
                projects: 1,
                users: 1,
                api_tokens: 1,
                agent_credentials: 1,
                agents: 1,
                tunnels: 2,
                stored_tunnels: 1,
                audit_entries: 3,
                revoked_tokens: 1,
                user_groups: 1,
                totp_secrets: 1,
            }
        );
        assert_eq!(
            target.user_groups_of("alice").await.expect("groups")[0].projects,
            ["berlin"]
        );
        let agents = target.list_agents().await.expect("agents");
        assert!(
            !agents[0].connected,
            "nobody holds a session after the copy"
        );
        let tunnels = target
            .list_tunnels(&TunnelFilter::default())
            .await
            .expect("tunnels");
        let live: Vec<_> = tunnels.iter().filter(|t| t.is_live()).collect();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].owner_node.as_deref(), Some("node-a"));
        let (audit, _) = target
            .list_audit(&AuditFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("audit");
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(
            actions,
            ["a3", "a2", "a1"],
            "newest first, as in the source"
        );
        assert_eq!(
            target.revoked_tokens(Utc::now()).await.expect("revoked"),
            ["jti-1"]
        );
        assert_eq!(
            target.get_totp_secret("alice").await.expect("TOTP secret"),
            Some("JBSWY3DPEHPK3PXP".to_owned())
        );
        let secret = |store: Arc<dyn Store>| async move {
            store
                .setting_or_insert(JWT_SECRET_KEY, "other")
                .await
                .expect("secret")
        };
        assert_eq!(
            secret(Arc::clone(&target)).await,
            secret(Arc::clone(&source)).await
        );

        let again = copy(source.as_ref(), target.as_ref(), "node-a", &[]).await;
        let Err(MigrateError::Refused(why)) = again else {
            panic!("a filled target must be refused: {again:?}");
        };
        assert!(why.contains("1 users"), "{why}");
    }

    async fn seed(store: &dyn Store) {
        let now = Utc::now();
        store
            .insert_project(&rport_store::ProjectRecord {
                key: "berlin".into(),
                name: "Berlin".into(),
                created_at: now,
            })
            .await
            .expect("project");
        store
            .insert_user(&rport_store::UserRecord {
                username: "alice".into(),
                password_hash: crate::domain::secrets::hash_password("correct horse battery"),
                is_admin: true,
                created_at: now,
                roles: Default::default(),
                password_expired: false,
                two_fa_send_to: String::new(),
            })
            .await
            .expect("user");
        let editors = rport_store::UserGroupRecord {
            name: "Editors".into(),
            permissions: vec!["tunnels".into()],
            tunnels_restricted: None,
            commands_restricted: None,
            projects: vec!["berlin".into()],
        };
        store.put_user_group(&editors).await.expect("group");
        store
            .set_user_groups("alice", &["Editors".into()])
            .await
            .expect("member");
        store
            .insert_totp_secret("alice", "JBSWY3DPEHPK3PXP", now)
            .await
            .expect("TOTP secret");
        store
            .insert_api_token(&rport_store::ApiTokenRecord {
                id: "t1".into(),
                username: "alice".into(),
                name: "ci".into(),
                scope: "read".into(),
                project: None,
                hash: "00".repeat(32),
                created_at: now,
                expires_at: None,
                last_used_at: None,
            })
            .await
            .expect("token");
        store
            .insert_agent_credential(&rport_store::AgentCredentialRecord {
                id: "rport".into(),
                hash: "sha256$aa$bb".into(),
                project: "berlin".into(),
            })
            .await
            .expect("credential");
        let agent = rport_store::AgentRecord {
            id: "a1".into(),
            auth_id: "rport".into(),
            info: Default::default(),
            address: "192.0.2.1:5000".into(),
            connected: true,
            connected_at: Some(now),
            disconnected_at: None,
            last_heartbeat_at: Some(now),
            project: "berlin".into(),
            owner_node: None,
        };
        store.upsert_agent(&agent).await.expect("agent");
        let stored = rport_store::StoredTunnelRecord {
            id: "s1".into(),
            agent_id: "a1".into(),
            created_at: now,
            name: "ssh".into(),
            scheme: Some("ssh".into()),
            remote_ip: None,
            remote_port: Some(22),
            public_port: None,
            acl: None,
            further_options: Some("{}".into()),
        };
        assert!(
            store
                .insert_stored_tunnel(&stored)
                .await
                .expect("stored tunnel")
        );
        for (id, status) in [
            ("live", rport_store::TunnelStatus::Opened),
            ("gone", rport_store::TunnelStatus::Closed),
        ] {
            let tunnel = rport_store::TunnelRecord {
                id: id.into(),
                agent_id: "a1".into(),
                name: String::new(),
                protocol: "tcp".into(),
                lhost: "0.0.0.0".into(),
                lport: 20001,
                lport_random: true,
                rhost: "127.0.0.1".into(),
                rport: 22,
                scheme: Some("ssh".into()),
                status,
                created_by: "alice".into(),
                created_at: now,
                closed_at: None,
                close_reason: None,
                options: Default::default(),
                counters: Default::default(),
                last_active_at: None,
                project: "berlin".into(),
                owner_node: None,
                damage: None,
            };
            store.insert_tunnel(&tunnel).await.expect("tunnel");
        }
        for action in ["a1", "a2", "a3"] {
            let entry = rport_store::AuditRecord {
                id: 0,
                at: now,
                actor: "alice".into(),
                actor_type: "user".into(),
                actor_ip: None,
                action: action.into(),
                resource: "x".into(),
                project: None,
                result: "success".into(),
                detail: String::new(),
                client_id: None,
                client_hostname: None,
            };
            store.insert_audit(&entry).await.expect("audit");
        }
        store
            .revoke_token("jti-1", now + chrono::Duration::hours(1))
            .await
            .expect("revoke");
    }
}
