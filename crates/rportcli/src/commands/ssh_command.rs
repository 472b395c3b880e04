//! `rportcli ssh [USER@]NAME_OR_ID [ssh args]`: a tunnel to the device's ssh port open to
//! the caller's address alone, ssh through it, and the tunnel deleted however ssh ends.

use super::clients::{fetch, find_by_name};
use super::tunnels::{TunnelWish, delete, open, server_host};
use super::{CommandError, Context};
use crate::api::ApiError;
use crate::cli::SshArgs;
use crate::output::cell;
use crate::{ssh, terminal};

pub fn run(context: &Context, args: &SshArgs) -> Result<i32, CommandError> {
    let api = context.api()?;
    let (user, target) = match args.target.split_once('@') {
        Some((user, target)) if !user.is_empty() => (Some(user), target),
        _ => (None, args.target.as_str()),
    };
    let (agent_id, agent_name) = match fetch(&api, target) {
        Ok(agent) => (cell(&agent["id"]), cell(&agent["name"])),
        Err(CommandError::Api(err @ ApiError::Refused { .. })) if err.status() == Some(404) => {
            find_by_name(&api, context, target)?
        }
        Err(other) => return Err(other),
    };
    terminal::catch_signals();
    let tunnel = open(
        &api,
        TunnelWish {
            agent_id: &agent_id,
            remote: args.remote.clone(),
            scheme: Some("ssh".into()),
            acl: args.acl.clone(),
            query: Vec::new(),
        },
        &agent_name,
    )?;
    let tunnel_id = cell(&tunnel["id"]);
    if context.verbose {
        eprintln!(
            "rportcli: tunnel {tunnel_id} on {}:{} to {agent_id}",
            server_host(&api),
            cell(&tunnel["lport"])
        );
    }
    let ran = ssh::run_through_tunnel(
        &server_host(&api),
        &cell(&tunnel["lport"]),
        user,
        &args.ssh_args,
    );
    let deleted = delete(&api, &agent_id, &tunnel_id, true);
    let code = ran.map_err(CommandError::Failed)?;
    deleted?;
    Ok(code)
}
