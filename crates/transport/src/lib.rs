//! Transport for rport sessions: TLS with a pinned server key, the session handshake, and
//! the multiplexer that carries control messages and tunnel streams over one connection.

pub mod fd_limit;
pub mod handshake;
pub mod mux;
pub mod read_coalescing;
pub mod tls;
mod write_queue;
