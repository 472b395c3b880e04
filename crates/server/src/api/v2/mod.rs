//! JFrog Connect's `/api/v2/{project_key}`: port tunnels.

pub mod port_tunnels;
