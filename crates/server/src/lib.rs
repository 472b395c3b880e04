//! rportd as a library: accepts agent sessions, opens tunnels on demand, serves the REST API.
//!
//! The modules are layers, each using only those below it (ARCHITECTURE.md draws the map):
//! `domain` (names, secrets, roles, audit, the agent registry), `metrics` (counters and
//! the Prometheus text), `config`, `net`, `auth`, `cluster` (the nodes sharing a database
//! and the channel between them), `tunnels`, `agents`, `api`, and `app`, which wires them
//! into a [`Server`]. What other crates use is the list below, each under one path.

mod agents;
mod api;
mod app;
mod auth;
mod cluster;
mod config;
mod domain;
mod metrics;
mod net;
mod tunnels;

pub use api::console::served_files as console_files;
pub use api::events::MAX_STREAMS_PER_USER as MAX_EVENT_STREAMS_PER_USER;
pub use app::cli::{Command, ServerArgs, UserCommand};
pub use app::{Listeners, Server, StartError};
pub use app::{migrate, user_command};
pub use auth::credentials::{Credentials, credentials};
pub use config::{ConfigError, ServerConfig};
/// The pure core of the HTTP proxy's request rewriting, for fuzzing.
pub use tunnels::http_proxy::request as proxy_request;
