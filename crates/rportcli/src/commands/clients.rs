//! `client list` and `client get`, and finding an agent by id or name for the others.

use serde_json::Value;

use super::{CommandError, Context, data, path_segment};
use crate::api::ApiClient;
use crate::cli::{ClientCommand, Paging};
use crate::output::{self, cell};

/// At most this many agents are listed when a name is ambiguous (as rportcli).
const NAME_CANDIDATES: u32 = 25;

/// The list query: paging, `--search key=value` as filters, and `--project`.
pub fn list_query(
    context: &Context,
    paging: &Paging,
) -> Result<Vec<(String, String)>, CommandError> {
    let mut query: Vec<(String, String)> = vec![
        ("page[limit]".into(), paging.limit.to_string()),
        ("page[offset]".into(), paging.offset.to_string()),
    ];
    for search in &paging.search {
        let (key, value) = search.split_once('=').ok_or_else(|| {
            CommandError::Usage(format!("--search {search:?}: expected key=value"))
        })?;
        query.push((format!("filter[{}]", key.trim()), value.trim().to_owned()));
    }
    if let Some(project) = &context.project {
        query.push(("filter[project]".into(), project.clone()));
    }
    Ok(query)
}

/// `query` as the API client takes it.
pub fn borrowed(query: &[(String, String)]) -> Vec<(&str, String)> {
    query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

pub fn run(context: &Context, command: &ClientCommand) -> Result<(), CommandError> {
    let api = context.api()?;
    match command {
        ClientCommand::List { paging } => {
            let query = list_query(context, paging)?;
            let agents = data(api.get("/api/v1/clients", &borrowed(&query))?);
            context.print(&agents, |width| agent_table(&agents, width));
            Ok(())
        }
        ClientCommand::Get {
            id,
            client,
            name,
            all,
        } => {
            let id = id.as_ref().or(client.as_ref());
            let agent = match (id, name) {
                (Some(id), _) => fetch(&api, id)?,
                (None, Some(name)) => {
                    let (id, _) = find_by_name(&api, context, name)?;
                    fetch(&api, &id)?
                }
                (None, None) => {
                    return Err(CommandError::Usage(
                        "give the agent: `client get ID`, -c ID or -n NAME".into(),
                    ));
                }
            };
            context.print(&agent, |width| agent_details(&agent, *all, width));
            Ok(())
        }
    }
}

pub fn fetch(api: &ApiClient, id: &str) -> Result<Value, CommandError> {
    Ok(data(api.get(
        &format!("/api/v1/clients/{}", path_segment(id)),
        &[],
    )?))
}

/// The one agent called `name` (its id and name), or an error listing the candidates.
pub fn find_by_name(
    api: &ApiClient,
    context: &Context,
    name: &str,
) -> Result<(String, String), CommandError> {
    let mut query: Vec<(&str, String)> = vec![
        ("filter[name]", name.to_owned()),
        ("page[limit]", NAME_CANDIDATES.to_string()),
    ];
    if let Some(project) = &context.project {
        query.push(("filter[project]", project.clone()));
    }
    let found = data(api.get("/api/v1/clients", &query)?);
    let agents = found.as_array().cloned().unwrap_or_default();
    match agents.as_slice() {
        [one] => Ok((cell(&one["id"]), cell(&one["name"]))),
        [] => Err(CommandError::Failed(format!(
            "unknown client with name {name:?}: see `rportcli client list`"
        ))),
        many => Err(CommandError::Failed(format!(
            "client with name {name:?} is ambiguous, use a more precise name or the client id.\n\
             do you mean:\n{}",
            many.iter()
                .map(|a| format!("- {} ({})", cell(&a["name"]), cell(&a["id"])))
                .collect::<Vec<_>>()
                .join("\n")
        ))),
    }
}

/// The agent's id and name from -c or -n.
pub fn choose(
    api: &ApiClient,
    context: &Context,
    client: Option<&String>,
    name: Option<&String>,
) -> Result<(String, String), CommandError> {
    match (client, name) {
        (Some(_), Some(_)) => Err(CommandError::Usage(
            "both client id and name provided. Please provide one or the other".into(),
        )),
        (Some(id), None) => Ok((id.clone(), String::new())),
        (None, Some(name)) => find_by_name(api, context, name),
        (None, None) => Err(CommandError::Usage(
            "no client id or name provided: give -c ID or -n NAME".into(),
        )),
    }
}

/// The host part of `host:port` (rportcli's REMOTE ADDRESS column).
fn without_port(address: &str) -> String {
    match address.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        _ => address.to_owned(),
    }
}

fn agent_table(agents: &Value, width: Option<usize>) -> String {
    let rows: Vec<Vec<String>> = agents
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|agent| {
            vec![
                cell(&agent["id"]),
                cell(&agent["name"]),
                agent["tunnels"].as_array().map_or(0, Vec::len).to_string(),
                without_port(&cell(&agent["address"])),
                cell(&agent["hostname"]),
                cell(&agent["os_kernel"]),
                cell(&agent["connection_state"])
                    .chars()
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "NAME",
            "TUNNELS",
            "REMOTE ADDRESS",
            "HOSTNAME",
            "OS_KERNEL",
            "S",
        ],
        &rows,
        width,
    )
}

/// rportcli's key-value view of one agent; with `all`, its tunnels too.
fn agent_details(agent: &Value, all: bool, width: Option<usize>) -> String {
    let keys = [
        ("ID", "id"),
        ("Name", "name"),
        ("Os", "os"),
        ("OsArch", "os_arch"),
        ("OsFamily", "os_family"),
        ("OsKernel", "os_kernel"),
        ("Hostname", "hostname"),
        ("ConnectionState", "connection_state"),
        ("DisconnectedAt", "disconnected_at"),
        ("ClientAuthID", "client_auth_id"),
        ("Project", "project"),
        ("Ipv4", "ipv4"),
        ("Ipv6", "ipv6"),
        ("Tags", "tags"),
        ("Version", "version"),
        ("Address", "address"),
        ("Timezone", "timezone"),
        ("NumCPUs", "num_cpus"),
        ("MemoryTotal", "mem_total"),
    ];
    let pairs: Vec<(String, String)> = keys
        .iter()
        .map(|(label, key)| (label.to_string(), cell(&agent[*key])))
        .collect();
    let mut out = format!("Client [{}]\n", cell(&agent["id"]));
    out.push_str(&output::key_values(&pairs, width));
    if all {
        let tunnels: Vec<Value> = agent["tunnels"].as_array().cloned().unwrap_or_default();
        if !tunnels.is_empty() {
            out.push_str("\nTunnels\n");
            let with_agent: Vec<Value> = tunnels
                .into_iter()
                .map(|t| super::tunnels::with_agent(t, &cell(&agent["id"]), &cell(&agent["name"])))
                .collect();
            out.push_str(&super::tunnels::tunnel_table(
                &Value::Array(with_agent),
                width,
            ));
        }
    }
    out
}
