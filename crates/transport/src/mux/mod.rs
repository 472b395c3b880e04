//! Stream multiplexer: many tunnel streams and the control channel over one connection,
//! with per-stream credit-based flow control and keepalive.
//!
//! One driver task owns the connection and does all reading and writing, so no lock sits
//! on the data path. Streams talk to it through two queues: a priority queue (control,
//! window updates, resets, pongs) that is always drained first, and a bounded data queue
//! (DATA, FIN) whose order per stream is the order on the wire. A stream's receive buffer
//! is bounded by the window it grants, so a slow reader stalls only its own stream.
//!
//! What the peer can make the session queue for it (PONGs, RESETs, WINDOWs, replies) is
//! bounded too: the driver stops reading from a peer that does not take what is queued for
//! it (see [`PAUSE_READING_AT`]).
//!
//! This module holds the session's API, its limits and the state its parts share; the
//! streams are in `stream`, the driver task in `driver`.

mod driver;
mod stream;

pub use driver::MuxDriver;
pub use stream::{CounterHandle, MuxStream, StreamCounters, StreamReader, StreamWriter, pipe};

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use driver::{StreamEntry, WRITE_HIGH_WATER};
use rport_protocol::DecodeError;
use rport_protocol::frame::{HEADER_LEN, INITIAL_WINDOW, MAX_DATA_LEN};
use stream::new_stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Which end of the session this is; decides stream id parity and who may open streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens streams (odd ids); refuses streams opened by the peer.
    Server,
    /// Accepts streams opened by the server.
    Agent,
}

#[derive(Debug, Clone)]
pub struct MuxConfig {
    pub role: Role,
    /// The peer is declared dead when nothing arrives for this long; pings go out at a
    /// third of it so a live but idle peer always has something to answer.
    pub keep_alive: Duration,
    /// Largest receive window per stream: the most a stream buffers for a reader that is
    /// slow. Windows start small and grow only while the reader keeps up and the link's
    /// round trip, not the reader, is what limits the stream.
    pub stream_window: u32,
    /// Total of all of a session's stream windows beyond the protocol's first window
    /// (their start beyond it and their growth): what bounds the memory a session can be
    /// made to buffer, beyond that first window per stream, when its readers all stall.
    pub session_window_growth: u64,
    /// Streams open at once; more are refused (by [`MuxHandle::open_stream`] with
    /// [`MuxError::TooManyStreams`] when this side opens them).
    pub max_streams: usize,
    /// Larger control messages from the peer are dropped unread. With the bounded control
    /// queue this bounds what a peer can make the session hold: [`CONTROL_QUEUE`] times
    /// this.
    pub max_control_len: usize,
}

/// Streams one session carries at once by default ([`MuxConfig::max_streams`]).
pub const MAX_STREAMS: usize = 16 * 1024;

/// Control messages received and not yet handled; a peer that sends more than this
/// ahead of the handler breaks the protocol and its session is closed.
pub const CONTROL_QUEUE: usize = 256;

/// Room in the outgoing queue for everything but stream data: the answers the session
/// makes itself (PONG, RESET of a refused OPEN), its streams' WINDOW and RESET frames,
/// OPENs and control messages.
pub const REPLY_BUDGET: usize = 512 * 1024;

/// The driver stops reading from the peer while this many bytes wait to be written to it,
/// and reads on once the peer has taken enough of them. A peer that sends PINGs or OPENs
/// (or anything else that is answered) and never reads can thus make the session queue no
/// more than this, plus the answer to one frame and the answers the session's owner still
/// gives to frames already read (such as a RESET for each stream accepted, at most
/// `max_streams`). Stream data alone never gets here (it is gathered only up to
/// `WRITE_HIGH_WATER`, plus one frame), so it takes more than [`REPLY_BUDGET`] of other
/// frames to pause a session: traffic of a peer that reads is not slowed. A peer that
/// takes nothing at all while reading is paused is declared dead after the keepalive.
pub const PAUSE_READING_AT: usize = WRITE_HIGH_WATER + HEADER_LEN + MAX_DATA_LEN + REPLY_BUDGET;

impl MuxConfig {
    pub fn new(role: Role, keep_alive: Duration) -> Self {
        Self {
            role,
            keep_alive,
            stream_window: 64 * 1024 * 1024,
            session_window_growth: 128 * 1024 * 1024,
            max_streams: MAX_STREAMS,
            max_control_len: rport_protocol::frame::MAX_FRAME_LEN,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    #[error("malformed frame from peer: {0}")]
    Malformed(#[from] DecodeError),
    #[error("protocol violation by peer: {0}")]
    Protocol(String),
    #[error("peer sent nothing for {0:?}; connection considered dead")]
    KeepaliveTimeout(Duration),
    #[error("session closed")]
    Closed,
    #[error("{0} streams are open, the most this session carries")]
    TooManyStreams(usize),
}

/// Why a stream stopped before a clean end.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StreamError {
    #[error("stream reset: {0}")]
    Reset(String),
    #[error("session closed")]
    SessionClosed,
}

impl From<StreamError> for io::Error {
    fn from(err: StreamError) -> Self {
        io::Error::new(io::ErrorKind::ConnectionReset, err)
    }
}

enum Command {
    /// Its payload and entry wait in `SessionShared::unopened`.
    Open {
        id: u32,
    },
    Window {
        id: u32,
        increment: u32,
    },
    Reset {
        id: u32,
        reason: String,
    },
    Control(Bytes),
    Ping,
    Close,
}

enum DataItem {
    Data { id: u32, payload: Bytes },
    Fin { id: u32 },
}

impl DataItem {
    fn id(&self) -> u32 {
        match self {
            Self::Data { id, .. } | Self::Fin { id } => *id,
        }
    }
}

struct Outbound {
    priority: mpsc::UnboundedSender<Command>,
    data: mpsc::Sender<DataItem>,
}

struct SessionShared {
    outbound: Outbound,
    next_id: AtomicU32,
    stream_window: u32,
    /// What is left of `MuxConfig::session_window_growth`.
    window_growth_left: AtomicU64,
    closed: CancellationToken,
    rtt_micros: AtomicU64,
    open_streams: AtomicU32,
    /// `MuxConfig::max_streams`.
    max_streams: usize,
    /// Frames received so far; a probe watches it move.
    frames_received: AtomicU64,
    /// When the peer's last PING or PONG arrived, in milliseconds since the Unix epoch; 0
    /// before the first. Keepalives come a few times per keepalive interval, so keeping
    /// the wall-clock time costs nothing on the data path.
    last_heartbeat_ms: AtomicU64,
    /// Bytes waiting to be written to the peer, as of the driver's last turn.
    queued: AtomicUsize,
    /// Streams opened locally whose OPEN the driver has not sent yet: id -> OPEN payload and
    /// the driver's side of the stream. The driver takes an entry when it meets the stream's
    /// OPEN command or, if that command is not visible yet, its first data. A channel can
    /// hide a message that is fully sent behind another sender's send still in progress, so
    /// the command queue alone cannot tell whether a stream it has not seen exists.
    unopened: Mutex<HashMap<u32, (Bytes, Box<StreamEntry>)>>,
}

impl SessionShared {
    fn note_heartbeat(&self) {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        self.last_heartbeat_ms.store(millis, Ordering::Relaxed);
    }

    fn unopened(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (Bytes, Box<StreamEntry>)>> {
        self.unopened
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Cloneable handle to a running session: opens streams, sends control messages, closes.
#[derive(Clone)]
pub struct MuxHandle {
    shared: Arc<SessionShared>,
}

/// A stream the peer opened, with the payload of its OPEN frame.
pub struct IncomingStream {
    pub stream: MuxStream,
    pub open: Bytes,
}

/// What a session delivers to its owner.
pub struct MuxEvents {
    /// Streams opened by the peer (agents only; servers refuse them).
    pub incoming: mpsc::UnboundedReceiver<Box<IncomingStream>>,
    /// Payloads of CONTROL frames.
    pub control: mpsc::Receiver<Bytes>,
}

/// Starts a session over `io`. `already_read` holds bytes read past the handshake.
/// The returned driver must be polled (spawned) for anything to happen.
pub fn start<IO>(
    io: IO,
    already_read: BytesMut,
    config: MuxConfig,
) -> (MuxHandle, MuxEvents, MuxDriver<IO>)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let (priority_tx, priority_rx) = mpsc::unbounded_channel();
    // Bounded so that producers feel the connection's pace; per-stream credit already
    // bounds memory, this keeps queueing latency for control traffic small.
    let (data_tx, data_rx) = mpsc::channel(256);
    let shared = Arc::new(SessionShared {
        outbound: Outbound {
            priority: priority_tx,
            data: data_tx,
        },
        next_id: AtomicU32::new(match config.role {
            Role::Server => 1,
            Role::Agent => 2,
        }),
        stream_window: config.stream_window.max(INITIAL_WINDOW),
        window_growth_left: AtomicU64::new(config.session_window_growth),
        closed: CancellationToken::new(),
        rtt_micros: AtomicU64::new(0),
        open_streams: AtomicU32::new(0),
        max_streams: config.max_streams,
        frames_received: AtomicU64::new(0),
        last_heartbeat_ms: AtomicU64::new(0),
        queued: AtomicUsize::new(0),
        unopened: Mutex::new(HashMap::new()),
    });
    let (driver, events) = MuxDriver::new(
        io,
        already_read,
        config,
        Arc::clone(&shared),
        priority_rx,
        data_rx,
    );
    (MuxHandle { shared }, events, driver)
}

impl MuxHandle {
    /// Opens a stream; data may be sent at once, before the peer has answered.
    pub fn open_stream(&self, payload: Bytes) -> Result<MuxStream, MuxError> {
        if self.is_closed() {
            return Err(MuxError::Closed);
        }
        // Said here, where the caller can tell its user; the driver's own check (a reset)
        // is what holds when opens race.
        if self.open_streams() as usize >= self.shared.max_streams {
            return Err(MuxError::TooManyStreams(self.shared.max_streams));
        }
        let id = self.shared.next_id.fetch_add(2, Ordering::Relaxed);
        if id > u32::MAX - 2 {
            return Err(MuxError::Protocol("stream ids exhausted".into()));
        }
        let (stream, entry) = new_stream(&self.shared, id);
        self.shared
            .unopened()
            .insert(id, (payload, Box::new(entry)));
        let sent = self
            .shared
            .outbound
            .priority
            .send(Command::Open { id })
            .is_ok();
        // A driver that stopped before it could see this entry never will; it marks the
        // session closed before it resets what is waiting, so this check cannot miss it.
        if (!sent || self.is_closed()) && self.shared.unopened().remove(&id).is_some() {
            return Err(MuxError::Closed);
        }
        Ok(stream)
    }

    pub fn send_control(&self, payload: Bytes) -> Result<(), MuxError> {
        self.shared
            .outbound
            .priority
            .send(Command::Control(payload))
            .map_err(|_| MuxError::Closed)
    }

    /// Flushes what is queued and ends the session.
    pub fn close(&self) {
        let _ = self.shared.outbound.priority.send(Command::Close);
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Resolves when the session has ended, for whatever reason.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }

    /// Pings the peer now and reports whether it answers (anything counts) within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> bool {
        let before = self.shared.frames_received.load(Ordering::Acquire);
        if self.shared.outbound.priority.send(Command::Ping).is_err() {
            return false;
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !self.is_closed() {
            if self.shared.frames_received.load(Ordering::Acquire) != before {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// When the peer's last keepalive (a PING, or the PONG to ours) arrived.
    pub fn last_heartbeat(&self) -> Option<std::time::SystemTime> {
        match self.shared.last_heartbeat_ms.load(Ordering::Relaxed) {
            0 => None,
            millis => Some(std::time::UNIX_EPOCH + Duration::from_millis(millis)),
        }
    }

    /// Round-trip time of the last answered ping.
    pub fn rtt(&self) -> Option<Duration> {
        match self.shared.rtt_micros.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    pub fn open_streams(&self) -> u32 {
        self.shared.open_streams.load(Ordering::Relaxed)
    }

    /// Bytes waiting to be written to the peer, as of the driver's last turn; reading from
    /// the peer pauses while this is at [`PAUSE_READING_AT`] or more.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }
}
