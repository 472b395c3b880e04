//! The rport wire protocol: how an agent and a server talk over one encrypted connection.
//!
//! Everything here is pure data transformation (no sockets, no clocks), so it can be unit
//! tested exhaustively and fuzzed. `docs/protocol.md` describes the same format in prose.

pub mod control;
pub mod datagram;
pub mod duration;
pub mod fingerprint;
pub mod frame;
pub mod ip_rules;
pub mod tunnel_spec;

pub use control::{
    AgentSettings, CheckAnswer, CheckOutcome, CheckRequest, ControlMessage, OpenRequest, Password,
    RefuseCode, StreamProtocol, SystemInfo,
};
pub use fingerprint::Fingerprint;
pub use frame::{DecodeError, Decoder, Frame, FrameKind};

/// Sent by the agent right after the TLS handshake, before any frame: a magic and the
/// protocol version, so that a server can refuse an incompatible agent with a clear reason.
pub const PREFACE: [u8; 8] = *b"RPORT\x00\x00\x01";

/// The protocol version carried in [`PREFACE`].
pub const PROTOCOL_VERSION: u16 = 1;
