//! RPort's `/api/v1`: the handlers, one module per resource.

mod access;
pub mod api_tokens;
pub mod audit_log;
pub mod clients;
pub mod clients_auth;
pub mod projects;
pub mod session;
pub mod sessions;
pub mod totp;
pub mod tunnels;
pub mod users;
