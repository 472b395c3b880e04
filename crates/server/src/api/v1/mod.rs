//! RPort's `/api/v1`: the handlers, one module per resource.

mod access;
mod agent_view;
pub mod api_tokens;
pub mod audit_log;
pub mod client_attributes;
pub mod client_groups;
mod client_object;
pub mod client_tags;
pub mod clients;
pub mod clients_auth;
pub mod profile;
pub mod projects;
pub mod session;
pub mod sessions;
mod store_list;
pub mod stored_tunnels;
pub mod totp;
pub mod tunnels;
pub mod user_groups;
pub mod users;
