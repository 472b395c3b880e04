//! rport, the device agent, as a library: connects out to rportd, reports what the device
//! is, and carries the tunnel streams the server opens to targets on the device's side.

pub mod attributes;
pub mod cli;
pub mod config;
pub mod servers;
pub mod session;
pub mod sysinfo;
pub mod targets;
pub mod virtualization;
