//! Agents connecting in: the listener that authenticates them and the life of a session.

pub mod listener;
