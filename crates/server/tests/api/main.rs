//! The API in-process: a whole server built on a tempdir (no socket, no binary) and its
//! router called request by request, for status codes, envelopes and permissions. What
//! needs processes or sockets (signals, restarts, agents, tunnels carrying traffic) is in
//! `crates/cli/tests`.

mod harness;

mod audit_log;
mod client_groups;
mod clients;
mod clients_auth;
mod compatibility;
mod console;
mod doc_root;
mod errors;
mod metrics;
mod permissions;
mod port_tunnels;
mod projects;
mod rport_auth;
mod rport_schema;
mod session;
mod sessions;
mod stored_tunnels;
mod tokens;
mod totp;
mod tunnels;
mod user_groups;
mod users;
