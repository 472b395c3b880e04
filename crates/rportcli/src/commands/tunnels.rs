//! `tunnel list`, `tunnel create` (with `-b`: ssh through it, then delete it) and
//! `tunnel delete`.

use serde_json::{Value, json};

use super::clients::{borrowed, choose, list_query};
use super::{CommandError, Context, data, path_segment};
use crate::api::ApiClient;
use crate::cli::{CreateArgs, TunnelCommand};
use crate::output::{self, cell};
use crate::ssh;

/// Well-known schemes and their ports, as rportcli fills in `-r` from `-s`.
const SCHEME_PORTS: &[(&str, u16)] = &[
    ("ssh", 22),
    ("rdp", 3389),
    ("vnc", 5900),
    ("realvnc", 5900),
    ("http", 80),
    ("https", 443),
    ("mysql", 3306),
    ("postgres", 5432),
    ("smb", 445),
    ("ftp", 21),
    ("telnet", 23),
];

pub fn port_of_scheme(scheme: &str) -> Option<u16> {
    SCHEME_PORTS
        .iter()
        .find(|(name, _)| *name == scheme)
        .map(|(_, port)| *port)
}

pub fn run(context: &Context, command: &TunnelCommand) -> Result<i32, CommandError> {
    let api = context.api()?;
    match command {
        TunnelCommand::List { choice, paging } => {
            let mut query = list_query(context, paging)?;
            if let Some(id) = &choice.client {
                query.push(("filter[id]".into(), id.clone()));
            }
            if let Some(name) = &choice.name {
                query.push(("filter[name]".into(), name.clone()));
            }
            let agents = data(api.get("/api/v1/clients", &borrowed(&query))?);
            let tunnels: Vec<Value> = agents
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .flat_map(|agent| {
                    let id = cell(&agent["id"]);
                    let name = cell(&agent["name"]);
                    agent["tunnels"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |t| with_agent(t, &id, &name))
                })
                .collect();
            let tunnels = Value::Array(tunnels);
            context.print(&tunnels, |width| {
                if tunnels.as_array().is_none_or(Vec::is_empty) {
                    String::new()
                } else {
                    format!("Tunnels\n{}", tunnel_table(&tunnels, width))
                }
            });
            Ok(0)
        }
        TunnelCommand::Create(args) => create(context, &api, args),
        TunnelCommand::Delete {
            choice,
            tunnel,
            force,
        } => {
            let (agent_id, _) =
                choose(&api, context, choice.client.as_ref(), choice.name.as_ref())?;
            delete(&api, &agent_id, tunnel, *force)?;
            print_deleted(context);
            Ok(0)
        }
    }
}

/// A tunnel object with its agent's id and name, as rportcli's tunnel list has them.
pub fn with_agent(mut tunnel: Value, agent_id: &str, agent_name: &str) -> Value {
    if let Some(map) = tunnel.as_object_mut() {
        map.insert("client_id".into(), json!(agent_id));
        map.insert("client_name".into(), json!(agent_name));
    }
    tunnel
}

pub fn tunnel_table(tunnels: &Value, width: Option<usize>) -> String {
    let rows: Vec<Vec<String>> = tunnels
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            [
                "id",
                "client_id",
                "client_name",
                "lhost",
                "lport",
                "rhost",
                "rport",
                "lport_random",
                "scheme",
                "acl",
                "idle_timeout_minutes",
            ]
            .iter()
            .map(|key| cell(&t[*key]))
            .collect()
        })
        .collect();
    output::table(
        &[
            "ID",
            "CLIENT_ID",
            "CLIENT_NAME",
            "LOCAL_HOST",
            "LOCAL_PORT",
            "REMOTE_HOST",
            "REMOTE_PORT",
            "LOCAL_PORT_RAND",
            "SCHEME",
            "ACL",
            "TIMEOUT",
        ],
        &rows,
        width,
    )
}

/// The caller's address as rportd sees it, for a default ACL.
pub fn my_address(api: &ApiClient) -> Result<String, CommandError> {
    let answer = data(api.get("/api/v1/me/ip", &[])?);
    answer["ip"]
        .as_str()
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| CommandError::Failed("rportd did not tell our address (/me/ip)".into()))
}

/// The host part of the API URL: where tunnels' public ports are reached (as rportcli).
pub fn server_host(api: &ApiClient) -> String {
    let url = api.base_url();
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(bracketed) = authority.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or(bracketed).to_owned();
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
        .to_owned()
}

fn usage(scheme: &str, host: &str, port: &str) -> String {
    match scheme {
        "ssh" => format!("ssh -p {port} {host} <...more ssh options>"),
        "rdp" => format!("Connect remote desktop to remote pc '{host}:{port}'"),
        "vnc" | "realvnc" => format!("Connect a vnc viewer to server address '{host}:{port}'"),
        "http" | "https" => {
            format!("Open the following address with a browser '{scheme}://{host}:{port}'")
        }
        _ => format!("Connect to '{host}' on port '{port}'"),
    }
}

/// What tunnel creation asks rportd for.
pub struct TunnelWish<'a> {
    pub agent_id: &'a str,
    pub remote: String,
    pub scheme: Option<String>,
    pub acl: Option<String>,
    pub query: Vec<(&'static str, String)>,
}

/// `PUT /api/v1/clients/{id}/tunnels`; the created tunnel as rportcli shows it.
pub fn open(
    api: &ApiClient,
    wish: TunnelWish<'_>,
    agent_name: &str,
) -> Result<Value, CommandError> {
    let acl = match wish.acl {
        Some(acl) => acl,
        None => my_address(api)?,
    };
    let mut query = vec![("remote", wish.remote), ("acl", acl)];
    if let Some(scheme) = &wish.scheme {
        query.push(("scheme", scheme.clone()));
    }
    query.extend(wish.query);
    let created = data(api.put(
        &format!("/api/v1/clients/{}/tunnels", path_segment(wish.agent_id)),
        &query,
    )?);
    let host = server_host(api);
    let mut shown = with_agent(created, wish.agent_id, agent_name);
    let scheme = cell(&shown["scheme"]);
    let port = cell(&shown["lport"]);
    if let Some(map) = shown.as_object_mut() {
        if agent_name.is_empty() {
            map.remove("client_name");
        }
        map.insert("usage".into(), json!(usage(&scheme, &host, &port)));
        map.insert("rport_server".into(), json!(host));
    }
    Ok(shown)
}

fn created_pairs(tunnel: &Value) -> Vec<(String, String)> {
    [
        ("ID", "id"),
        ("CLIENT_ID", "client_id"),
        ("LOCAL_HOST", "lhost"),
        ("LOCAL_PORT", "lport"),
        ("REMOTE_HOST", "rhost"),
        ("REMOTE_PORT", "rport"),
        ("LOCAL_PORT RANDOM", "lport_random"),
        ("SCHEME", "scheme"),
        ("IDLE TIMEOUT MINS", "idle_timeout_minutes"),
        ("ACL", "acl"),
        ("USAGE", "usage"),
    ]
    .iter()
    .map(|(label, key)| (label.to_string(), cell(&tunnel[*key])))
    .collect()
}

pub fn print_created(context: &Context, tunnel: &Value) {
    context.print(tunnel, |width| {
        format!(
            "Tunnel\n{}",
            output::key_values(&created_pairs(tunnel), width)
        )
    });
}

fn create(context: &Context, api: &ApiClient, args: &CreateArgs) -> Result<i32, CommandError> {
    if args.launch_rdp {
        return Err(CommandError::Usage(
            "-d (launch an RDP client) is not supported by this rportcli: create the tunnel \
             and connect your RDP client to the address it prints"
                .into(),
        ));
    }
    let mut scheme = args.scheme.clone().filter(|s| !s.is_empty());
    if let Some(ssh_args) = &args.launch_ssh {
        match scheme.as_deref() {
            None => scheme = Some("ssh".into()),
            Some("ssh") => {}
            Some(other) => {
                return Err(CommandError::Usage(format!(
                    "launching the ssh client on scheme '{other}' is not supported"
                )));
            }
        }
        if ssh_args.trim_start().starts_with("-p") || ssh_args.contains(" -p") {
            return Err(CommandError::Usage(
                "do not pass a port with '-p' in -b: the tunnel's port is set dynamically".into(),
            ));
        }
    }
    let remote = match (&args.remote, scheme.as_deref().and_then(port_of_scheme)) {
        (Some(remote), _) => remote.clone(),
        (None, Some(port)) => port.to_string(),
        (None, None) => {
            return Err(CommandError::Usage(
                "-r REMOTE is required (PORT or HOST:PORT) unless -s names a well-known scheme"
                    .into(),
            ));
        }
    };
    let (agent_id, agent_name) = choose(
        api,
        context,
        args.choice.client.as_ref(),
        args.choice.name.as_ref(),
    )?;
    let mut query: Vec<(&'static str, String)> = Vec::new();
    let mut add = |key: &'static str, value: Option<String>| {
        if let Some(value) = value {
            query.push((key, value));
        }
    };
    add("local", args.local.clone());
    add("check_port", args.check_port.then(|| "1".into()));
    if args.skip_idle_timeout {
        add("skip-idle-timeout", Some("1".into()));
    } else {
        add(
            "idle-timeout-minutes",
            args.idle_timeout_minutes.map(|m| m.to_string()),
        );
    }
    add("http_proxy", args.http_proxy.then(|| "true".into()));
    add("protocol", args.protocol.clone());
    add("auto-close", args.auto_close.clone());
    add("name", args.tunnel_name.clone());
    // Ctrl-C from here on must not leave a tunnel behind that -b would have deleted.
    if args.launch_ssh.is_some() {
        crate::terminal::catch_signals();
    }
    let tunnel = open(
        api,
        TunnelWish {
            agent_id: &agent_id,
            remote,
            scheme,
            acl: args.acl.clone().filter(|a| !a.is_empty()),
            query,
        },
        &agent_name,
    )?;
    print_created(context, &tunnel);
    let Some(ssh_args) = &args.launch_ssh else {
        if args.launch_uri {
            eprintln!("rportcli: open {} yourself", cell(&tunnel["usage"]));
        }
        return Ok(0);
    };
    let words: Vec<String> = ssh_args.split_whitespace().map(str::to_owned).collect();
    let ran = ssh::run_through_tunnel(&server_host(api), &cell(&tunnel["lport"]), None, &words);
    delete(api, &agent_id, &cell(&tunnel["id"]), true)?;
    print_deleted(context);
    ran.map_err(CommandError::Failed)
}

pub fn delete(
    api: &ApiClient,
    agent_id: &str,
    tunnel_id: &str,
    force: bool,
) -> Result<(), CommandError> {
    let query: Vec<(&str, String)> = if force {
        vec![("force", "1".into())]
    } else {
        Vec::new()
    };
    api.delete(
        &format!(
            "/api/v1/clients/{}/tunnels/{}",
            path_segment(agent_id),
            path_segment(tunnel_id)
        ),
        &query,
    )?;
    Ok(())
}

pub fn print_deleted(context: &Context) {
    let status = json!({"status": "Tunnel successfully deleted"});
    context.print(&status, |width| {
        output::key_values(&[("Status".into(), cell(&status["status"]))], width)
    });
}
