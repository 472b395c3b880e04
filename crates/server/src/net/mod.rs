//! Sockets and HTTP serving shared by the API, the agent listener and the tunnels:
//! listeners sized for bursts, bounded HTTP/1.1 serving, and TLS for the web side.

pub mod http_serve;
pub mod listen;
pub mod web_tls;
