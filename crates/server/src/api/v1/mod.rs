//! RPort's `/api/v1`: the handlers, one module per resource.

mod access;
pub mod api_tokens;
pub mod audit_log;
pub mod clients;
pub mod clients_auth;
pub mod projects;
mod rport_list;
pub mod session;
pub mod stored_tunnels;
pub mod tunnels;
pub mod users;
