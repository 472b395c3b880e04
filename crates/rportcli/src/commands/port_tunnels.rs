//! `port-tunnel list|create|get|delete`: API v2's JFrog Connect-style port tunnels of
//! the project `--project` names.

use serde_json::{Value, json};

use super::session::login;
use super::{CommandError, Context, path_segment};
use crate::api::ApiClient;
use crate::cli::PortTunnelCommand;
use crate::config::{Credentials, Settings, process_env};
use crate::output::{self, cell};

/// v2 takes bearer tokens only: a password or API token is first traded for one.
fn bearer_client(context: &Context) -> Result<ApiClient, CommandError> {
    let api = context.api()?;
    let settings = Settings::resolve(&process_env)?;
    match &settings.credentials {
        Credentials::Bearer(_) => Ok(api),
        Credentials::Basic { user, .. } => {
            // A short-lived token: this command's own.
            let token = login(&api, user, 300, false)?;
            Ok(api.with_credentials(&Credentials::Bearer(token), settings.source))
        }
    }
}

const COLUMNS: [(&str, &str); 7] = [
    ("PORT_TUNNEL_ID", "port_tunnel_id"),
    ("DEVICE_UUID", "device_uuid"),
    ("PORT", "port"),
    ("ALLOWED_IP", "allowed_ip"),
    ("SERVER", "server_port"),
    ("STATUS", "status"),
    ("CREATED_AT", "created_at"),
];

fn table(tunnels: &Value, width: Option<usize>) -> String {
    let rows: Vec<Vec<String>> = tunnels
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            COLUMNS
                .iter()
                .map(|(_, key)| match *key {
                    "server_port" => {
                        format!("{}:{}", cell(&t["server_address"]), cell(&t["server_port"]))
                    }
                    key => cell(&t[key]),
                })
                .collect()
        })
        .collect();
    let headers: Vec<&str> = COLUMNS.iter().map(|(h, _)| *h).collect();
    output::table(&headers, &rows, width)
}

pub fn run(context: &Context, command: &PortTunnelCommand) -> Result<(), CommandError> {
    let project = context.project.clone().ok_or_else(|| {
        CommandError::Usage("port-tunnel needs --project KEY (or RPORT_PROJECT)".into())
    })?;
    let api = bearer_client(context)?;
    let base = format!("/api/v2/{}/port_tunnel", path_segment(&project));
    match command {
        PortTunnelCommand::List { limit, offset } => {
            let tunnels = api.get(
                &base,
                &[("limit", limit.to_string()), ("offset", offset.to_string())],
            )?;
            context.print(&tunnels, |width| table(&tunnels, width));
        }
        PortTunnelCommand::Create {
            device,
            port,
            allowed_ip,
        } => {
            let mut body = json!({"device_uuid": device, "port": port});
            if let Some(allowed) = allowed_ip {
                body["allowed_ip"] = json!(allowed);
            }
            let created = api.post(&base, &body)?;
            context.print(&created, |width| {
                output::key_values(&output::object_pairs(&created), width)
            });
        }
        PortTunnelCommand::Get { id } => {
            let tunnel = api.get(&format!("{base}/{}", path_segment(id)), &[])?;
            context.print(&tunnel, |width| {
                output::key_values(&output::object_pairs(&tunnel), width)
            });
        }
        PortTunnelCommand::Delete { id } => {
            api.delete(&format!("{base}/{}", path_segment(id)), &[])?;
            let status = json!({"status": "Port tunnel closed"});
            context.print(&status, |width| {
                output::key_values(&[("Status".into(), cell(&status["status"]))], width)
            });
        }
    }
    Ok(())
}
