//! The vocabulary every other layer speaks: names and their rules, secrets, roles, the
//! audit log and the registry of agents. Nothing here reads the configuration.

pub mod audit;
pub mod bounded;
pub mod names;
pub mod permissions;
pub mod registry;
pub mod secrets;
pub mod source;
