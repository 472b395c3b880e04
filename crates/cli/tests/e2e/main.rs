//! End to end: real `rportd` and `rport` processes on loopback, one module per area, in
//! one test binary so the harness in `support` is compiled once.

mod api_v2;
mod audit_log;
mod basics;
mod brute_force;
mod client_attributes;
mod client_object;
mod cluster;
mod console;
mod console_admin;
mod events;
mod fallback;
mod faults;
mod hostile_agent;
mod hostile_input;
mod http_proxy;
mod metrics;
mod rport_clients;
/// RPort's schemas quoted, and the check, shared with the in-process API tests.
#[path = "../../../server/tests/api/rport_schema.rs"]
mod rport_schema;
mod sessions;
mod support;
mod tunnel_controls;
mod users_roles;
mod web_ui;
