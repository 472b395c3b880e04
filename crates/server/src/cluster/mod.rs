//! The nodes of a cluster sharing one database, and the channel between them.
//!
//! Stand-in until the lead's `Cluster` lands: `stand_in` has only what `peer` and the API
//! use (`node_id`, `node`, `nodes`), plus the smallest join and lease loop.

pub mod peer;
mod stand_in;

pub use stand_in::Cluster;
