//! rportd as a library: accepts agent sessions, opens tunnels on demand, serves the REST API.
//!
//! [`server::Server`] wires the parts together; the binary only parses flags, loads the
//! configuration and calls it.

pub mod agent_auth;
pub mod agent_listener;
pub mod api;
pub mod api_auth;
pub mod audit;
pub mod bans;
pub mod bounded;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod http_serve;
pub mod listen;
pub mod permissions;
pub mod port_pool;
pub mod port_ranges;
pub mod registry;
pub mod secrets;
pub mod server;
pub mod tunnels;
pub mod user_command;
pub mod user_file;
pub mod users;
pub mod web_tls;
