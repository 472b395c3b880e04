//! `rportd user add|list|passwd|delete`: user management straight on the data dir's
//! database, with the same rules as `/api/v1/users` and an audit entry for each change.
//! Safe while rportd runs: SQLite serialises the writers, and the server checks every
//! password and token against the database as it is now.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::Arc;

use crate::app::cli::UserCommand;
use crate::auth::users::{UserChange, UserError, UserView, Users};
use crate::config::ServerConfig;
use crate::domain::audit::{Actor, AuditLog, Event};
use crate::domain::secrets::random_secret;

/// Runs one command; returns what to print.
pub async fn run(
    config: &ServerConfig,
    command: UserCommand,
    stdin: impl BufRead,
) -> Result<String, UserError> {
    let data_dir = &config.server.data_dir;
    crate::app::data_dir::create_data_dir(data_dir)
        .map_err(|err| UserError::Invalid(err.to_string()))?;
    let store = rport_store::open(&config.database, data_dir).await?;
    let users = Users::new(store.as_ref(), &config.api);
    let audit = AuditLog::new(Arc::clone(&store));
    let record = |action: &'static str, name: String, detail: String| {
        let audit = &audit;
        async move {
            let event = Event {
                action,
                resource: &name,
                project: None,
                success: true,
                detail,
            };
            audit.record(&Actor::command_line(), event).await;
        }
    };
    match command {
        UserCommand::List => Ok(users.list().await?.iter().map(describe).collect()),
        UserCommand::Add {
            username,
            admin,
            roles,
            password_stdin,
        } => {
            let roles = parse_roles(&roles)?;
            let (password, shown) = password(password_stdin, stdin)?;
            let detail = format!("admin {admin}, {} role(s)", roles.len());
            let user = users.create(&username, &password, admin, roles).await?;
            record("user.create", username, detail).await;
            let mut out = format!("created {}", describe(&user));
            if let Some(password) = shown {
                out.push_str(&format!("password (shown only now): {password}\n"));
            }
            if !users.list().await?.iter().any(|u| u.is_admin) {
                out.push_str("note: no user is a server-wide administrator; add one with --admin or set [api] auth\n");
            }
            Ok(out)
        }
        UserCommand::Passwd {
            username,
            password_stdin,
        } => {
            let (password, shown) = password(password_stdin, stdin)?;
            let change = UserChange {
                password: Some(password),
                ..Default::default()
            };
            users.update(&username, change).await?;
            record("user.update", username.clone(), "password".into()).await;
            Ok(match shown {
                Some(password) => {
                    format!(
                        "password of {username} changed; new password (shown only now): {password}\n"
                    )
                }
                None => format!("password of {username} changed\n"),
            })
        }
        UserCommand::Delete { username } => {
            users.delete(&username).await?;
            record("user.delete", username.clone(), String::new()).await;
            Ok(format!("deleted {username}\n"))
        }
    }
}

fn describe(user: &UserView) -> String {
    let roles: Vec<String> = user
        .roles
        .iter()
        .map(|(project, role)| format!("{project}={role}"))
        .collect();
    format!(
        "{}\tadmin={}\troles={}\tsource={}\n",
        user.username,
        user.is_admin,
        if roles.is_empty() {
            "-".to_owned()
        } else {
            roles.join(",")
        },
        user.source.as_str()
    )
}

/// `PROJECT=ROLE` pairs; role names are checked with the rest by [`Users::create`].
fn parse_roles(pairs: &[String]) -> Result<BTreeMap<String, String>, UserError> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(project, role)| (project.trim().to_owned(), role.trim().to_owned()))
                .ok_or_else(|| UserError::Invalid(format!("--role {pair:?} is not PROJECT=ROLE")))
        })
        .collect()
}

/// The password from stdin's first line, or a generated one to show.
fn password(
    from_stdin: bool,
    mut stdin: impl BufRead,
) -> Result<(String, Option<String>), UserError> {
    if !from_stdin {
        let generated = random_secret(20);
        return Ok((generated.clone(), Some(generated)));
    }
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .map_err(|err| UserError::Invalid(format!("reading the password from stdin: {err}")))?;
    Ok((line.trim_end_matches(['\r', '\n']).to_owned(), None))
}
