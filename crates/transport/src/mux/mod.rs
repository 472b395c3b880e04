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

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use crate::write_queue::WriteQueue;
use bytes::{BufMut, Bytes, BytesMut};
use rport_protocol::frame::{FrameKind, HEADER_LEN, INITIAL_WINDOW, MAX_DATA_LEN};
use rport_protocol::{DecodeError, Decoder, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, Sleep};
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

/// State of one stream shared between its handles and the driver.
struct StreamShared {
    id: u32,
    credit: AtomicU64,
    reset: Mutex<Option<StreamError>>,
    reset_flag: AtomicBool,
    /// Woken when credit arrives or the stream is reset.
    wake: Notify,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

impl StreamShared {
    fn new(id: u32) -> Arc<Self> {
        Arc::new(Self {
            id,
            credit: AtomicU64::new(u64::from(INITIAL_WINDOW)),
            reset: Mutex::new(None),
            reset_flag: AtomicBool::new(false),
            wake: Notify::new(),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
        })
    }

    fn add_credit(&self, n: u32) {
        self.credit.fetch_add(u64::from(n), Ordering::AcqRel);
        self.wake.notify_one();
    }

    fn set_reset(&self, err: StreamError) {
        if let Ok(mut slot) = self.reset.lock() {
            slot.get_or_insert(err);
        }
        self.reset_flag.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn reset_error(&self) -> Option<StreamError> {
        if !self.reset_flag.load(Ordering::Acquire) {
            return None;
        }
        self.reset.lock().ok().and_then(|slot| slot.clone())
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

/// The driver's view of a stream.
struct StreamEntry {
    shared: Arc<StreamShared>,
    to_reader: Option<mpsc::UnboundedSender<Bytes>>,
    /// Bytes the peer may still send before it needs more credit from us.
    recv_allowance: i64,
    local_finished: bool,
    remote_finished: bool,
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
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
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
        queued: AtomicUsize::new(0),
        unopened: Mutex::new(HashMap::new()),
    });
    let ping_every = (config.keep_alive / 3).max(Duration::from_millis(100));
    let mut driver = MuxDriver {
        io,
        config,
        // The handshake's read buffer has kilobytes of spare room; 10,000 idle sessions
        // should not keep that.
        read_buf: if already_read.is_empty() {
            BytesMut::new()
        } else {
            already_read
        },
        read_size: QUIET,
        out: WriteQueue::default(),
        needs_flush: false,
        decoder: Decoder,
        streams: HashMap::new(),
        priority_rx,
        data_rx,
        incoming_tx,
        control_tx,
        session: Arc::clone(&shared),
        tick: Box::pin(tokio::time::sleep(ping_every)),
        ping_every,
        last_received: Instant::now(),
        last_ping_sent: None,
        closing: false,
    };
    // A first ping right away: stream windows size themselves by the round-trip time.
    driver.last_ping_sent = Some(Instant::now());
    driver
        .out
        .encode_small(|buf| Frame::Ping { opaque: 0 }.encode(buf));
    (
        MuxHandle { shared },
        MuxEvents {
            incoming: incoming_rx,
            control: control_rx,
        },
        driver,
    )
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

fn new_stream(session: &Arc<SessionShared>, id: u32) -> (MuxStream, StreamEntry) {
    let shared = StreamShared::new(id);
    let (to_reader, from_driver) = mpsc::unbounded_channel();
    // The start beyond the protocol's first window comes out of the session's growth
    // budget like any later growth, so readers that stall from the start (and so never
    // grow) hold at most that budget beyond INITIAL_WINDOW each, all together.
    let extra =
        u64::from(STARTING_WINDOW.clamp(INITIAL_WINDOW, session.stream_window) - INITIAL_WINDOW);
    let extra = match session.window_growth_left.fetch_update(
        Ordering::Relaxed,
        Ordering::Relaxed,
        |left| left.checked_sub(extra),
    ) {
        Ok(_) => extra,
        Err(_) => 0,
    };
    let window = INITIAL_WINDOW + extra as u32;
    let guard = Arc::new(StreamGuard {
        shared: Arc::clone(&shared),
        session: Arc::clone(session),
        writer_finished: AtomicBool::new(false),
        reader_done: AtomicBool::new(false),
        window_growth: AtomicU64::new(extra),
    });
    session.open_streams.fetch_add(1, Ordering::Relaxed);
    let stream = MuxStream {
        reader: StreamReader {
            guard: Arc::clone(&guard),
            from_driver,
            unacknowledged: 0,
            // The peer starts with INITIAL_WINDOW; the rest is granted once the reader runs.
            pending_grant: window - INITIAL_WINDOW,
            window,
            max_window: session.stream_window,
            last_grant: Instant::now(),
        },
        writer: StreamWriter {
            guard,
            data: session.outbound.data.clone(),
        },
    };
    let entry = StreamEntry {
        shared,
        to_reader: Some(to_reader),
        recv_allowance: i64::from(INITIAL_WINDOW),
        local_finished: false,
        remote_finished: false,
    };
    (stream, entry)
}

/// Resets the stream when its handles go away before a clean end in both directions.
struct StreamGuard {
    shared: Arc<StreamShared>,
    session: Arc<SessionShared>,
    writer_finished: AtomicBool,
    reader_done: AtomicBool,
    /// Taken from the session's `window_growth_left`; given back when the stream ends.
    window_growth: AtomicU64,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.session.open_streams.fetch_sub(1, Ordering::Relaxed);
        self.session
            .window_growth_left
            .fetch_add(*self.window_growth.get_mut(), Ordering::Relaxed);
        let clean = self.writer_finished.load(Ordering::Acquire)
            && self.reader_done.load(Ordering::Acquire);
        if !clean && self.shared.reset_error().is_none() {
            let _ = self.session.outbound.priority.send(Command::Reset {
                id: self.shared.id,
                reason: "stream abandoned".into(),
            });
        }
    }
}

/// A bidirectional stream; split it to read and write from different tasks.
pub struct MuxStream {
    reader: StreamReader,
    writer: StreamWriter,
}

impl MuxStream {
    pub fn id(&self) -> u32 {
        self.writer.guard.shared.id
    }

    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }

    /// Aborts the stream in both directions, telling the peer why.
    pub fn reset(self, reason: &str) {
        self.writer.reset(reason);
    }

    /// Bytes sent and received so far.
    pub fn counters(&self) -> StreamCounters {
        StreamCounters::of(&self.writer.guard.shared)
    }

    pub fn counter_handle(&self) -> CounterHandle {
        CounterHandle(Arc::clone(&self.writer.guard.shared))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounters {
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl StreamCounters {
    fn of(shared: &StreamShared) -> Self {
        Self {
            bytes_sent: shared.bytes_sent.load(Ordering::Relaxed),
            bytes_received: shared.bytes_received.load(Ordering::Relaxed),
        }
    }
}

/// Reads a stream's byte counters while the stream is used elsewhere.
#[derive(Clone)]
pub struct CounterHandle(Arc<StreamShared>);

impl CounterHandle {
    pub fn get(&self) -> StreamCounters {
        StreamCounters::of(&self.0)
    }
}

/// The receiving half of a stream.
pub struct StreamReader {
    guard: Arc<StreamGuard>,
    from_driver: mpsc::UnboundedReceiver<Bytes>,
    /// Bytes handed to the caller and consumed but not yet granted back to the peer.
    unacknowledged: u32,
    /// Window growth beyond INITIAL_WINDOW not yet announced.
    pending_grant: u32,
    window: u32,
    max_window: u32,
    last_grant: Instant,
}

impl StreamReader {
    /// The receive window this stream currently grants its peer.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// The next chunk, or `None` once the peer has finished sending.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, StreamError> {
        self.grant_credit();
        match self.from_driver.recv().await {
            Some(chunk) => {
                self.count_consumed(chunk.len());
                Ok(Some(chunk))
            }
            None => match self.guard.shared.reset_error() {
                Some(err) => Err(err),
                None => {
                    self.guard.reader_done.store(true, Ordering::Release);
                    Ok(None)
                }
            },
        }
    }

    fn count_consumed(&mut self, len: usize) {
        self.unacknowledged = self.unacknowledged.saturating_add(len as u32);
        self.guard
            .shared
            .bytes_received
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Like [`StreamReader::recv`], then also takes the chunks already queued behind the
    /// first (up to [`BATCH_BYTES`] and [`MAX_BATCH`] chunks), so they go out in one write.
    /// False once the peer has finished.
    async fn recv_into(&mut self, queue: &mut WriteQueue) -> Result<bool, StreamError> {
        let Some(first) = self.recv().await? else {
            return Ok(false);
        };
        let mut taken = 1;
        queue.push_bytes(first);
        while queue.len() < BATCH_BYTES && taken < MAX_BATCH {
            match self.from_driver.try_recv() {
                Ok(chunk) => {
                    self.count_consumed(chunk.len());
                    queue.push_bytes(chunk);
                    taken += 1;
                }
                // Empty, or closed: the next recv() reports the end or the reset.
                Err(_) => break,
            }
        }
        Ok(true)
    }

    /// Gives the peer back credit for consumed bytes, in batches so that a fast stream
    /// costs one WINDOW frame per quarter window rather than one per chunk.
    fn grant_credit(&mut self) {
        let batch = self.window / 4;
        if self.pending_grant == 0 && self.unacknowledged < batch {
            return;
        }
        self.grow_window_if_link_bound();
        let increment = self.unacknowledged + std::mem::take(&mut self.pending_grant);
        self.unacknowledged = 0;
        let _ = self.guard.session.outbound.priority.send(Command::Window {
            id: self.guard.shared.id,
            increment,
        });
    }

    /// A quarter window consumed in under half a round trip means the sender spends
    /// most of each round trip waiting for credit: the window, not the reader, limits
    /// the stream (a long fat link). Doubling it then keeps a 20 ms link full, while a
    /// slow reader, which never consumes that fast, keeps a small buffer.
    fn grow_window_if_link_bound(&mut self) {
        let now = Instant::now();
        let since_last = now.duration_since(self.last_grant);
        self.last_grant = now;
        let rtt_micros = self.guard.session.rtt_micros.load(Ordering::Relaxed);
        if rtt_micros == 0
            || self.window >= self.max_window
            || self.unacknowledged < self.window / 4
        {
            return;
        }
        if since_last < Duration::from_micros(rtt_micros / 2) {
            let grown = self.window.saturating_mul(2).min(self.max_window);
            let growth = u64::from(grown - self.window);
            let session = &self.guard.session;
            let reserved = session.window_growth_left.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |left| left.checked_sub(growth),
            );
            if reserved.is_err() {
                return;
            }
            self.guard
                .window_growth
                .fetch_add(growth, Ordering::Relaxed);
            self.pending_grant += grown - self.window;
            self.window = grown;
            tracing::trace!(
                stream = self.guard.shared.id,
                window = grown,
                "stream window grown"
            );
        }
    }

    /// Writes everything the peer sends into `out` until the peer finishes, then shuts
    /// down `out`'s write side (half-close).
    ///
    /// What is queued for the socket is written with one vectored write rather than a
    /// write per chunk: fewer, larger writes cost the receiving end less CPU.
    pub async fn copy_to<W: AsyncWrite + Unpin>(&mut self, out: &mut W) -> io::Result<u64> {
        let mut total = 0u64;
        let mut queue = WriteQueue::default();
        while self.recv_into(&mut queue).await? {
            total += queue.len() as u64;
            while !queue.is_empty() {
                poll_fn(|cx| queue.poll_write_all(out, cx)).await?;
            }
        }
        out.shutdown().await?;
        Ok(total)
    }
}

/// The sending half of a stream.
pub struct StreamWriter {
    guard: Arc<StreamGuard>,
    data: mpsc::Sender<DataItem>,
}

/// Most bytes and chunks [`StreamReader::copy_to`] takes for one write to its socket.
const BATCH_BYTES: usize = 512 * 1024;
const MAX_BATCH: usize = 64;

/// How much a writer reads from its source at once.
const CHUNK: usize = 128 * 1024;
/// The first read of a stream's source, and the smallest.
const MIN_CHUNK: usize = 8 * 1024;

impl StreamWriter {
    /// Waits for send credit and takes up to `want` bytes of it.
    async fn acquire_credit(&self, want: usize) -> Result<usize, StreamError> {
        let shared = &self.guard.shared;
        loop {
            let notified = shared.wake.notified();
            if let Some(err) = shared.reset_error() {
                return Err(err);
            }
            if self.guard.session.closed.is_cancelled() {
                return Err(StreamError::SessionClosed);
            }
            let available = shared.credit.load(Ordering::Acquire);
            if available > 0 {
                // Only this writer subtracts, so what it saw is still there.
                let take = available.min(want as u64);
                shared.credit.fetch_sub(take, Ordering::AcqRel);
                return Ok(take as usize);
            }
            tokio::select! {
                _ = notified => {}
                _ = self.guard.session.closed.cancelled() => {}
            }
        }
    }

    fn return_credit(&self, n: usize) {
        if n > 0 {
            self.guard
                .shared
                .credit
                .fetch_add(n as u64, Ordering::AcqRel);
        }
    }

    /// Sends `data`, waiting for credit as needed.
    pub async fn send(&mut self, mut data: Bytes) -> Result<(), StreamError> {
        while !data.is_empty() {
            let n = self.acquire_credit(data.len().min(MAX_DATA_LEN)).await?;
            let payload = data.split_to(n);
            self.push(DataItem::Data {
                id: self.guard.shared.id,
                payload,
            })
            .await?;
        }
        Ok(())
    }

    async fn push(&self, item: DataItem) -> Result<(), StreamError> {
        if let DataItem::Data { payload, .. } = &item {
            self.guard
                .shared
                .bytes_sent
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
        }
        self.data
            .send(item)
            .await
            .map_err(|_| StreamError::SessionClosed)
    }

    /// Tells the peer no more data follows (TCP half-close).
    pub async fn finish(&mut self) -> Result<(), StreamError> {
        if self.guard.writer_finished.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.push(DataItem::Fin {
            id: self.guard.shared.id,
        })
        .await
    }

    /// Aborts the stream in both directions.
    pub fn reset(&self, reason: &str) {
        self.guard
            .shared
            .set_reset(StreamError::Reset(reason.to_owned()));
        let _ = self.guard.session.outbound.priority.send(Command::Reset {
            id: self.guard.shared.id,
            reason: reason.to_owned(),
        });
    }

    /// Sends everything read from `source` until its end, then finishes the stream.
    /// Stops early, with an error, when the peer resets the stream.
    pub async fn copy_from<R: AsyncRead + Unpin>(&mut self, source: &mut R) -> io::Result<u64> {
        let mut buf = BytesMut::new();
        let mut total = 0u64;
        // Reads start small and grow while the source fills them, so a thousand quiet
        // connections don't each hold a full-size buffer.
        let mut read_size = MIN_CHUNK;
        loop {
            let credit = self.acquire_credit(read_size).await?;
            buf.reserve(credit);
            let read = {
                let shared = &self.guard.shared;
                let notified = shared.wake.notified();
                if let Some(err) = shared.reset_error() {
                    return Err(err.into());
                }
                let mut limited = (&mut buf).limit(credit);
                tokio::select! {
                    read = source.read_buf(&mut limited) => read?,
                    _ = notified => {
                        // Woken by a reset (or by credit, which we already hold): re-check.
                        self.return_credit(credit);
                        continue;
                    }
                }
            };
            self.return_credit(credit - read);
            if read == 0 {
                break;
            }
            if read == read_size {
                read_size = (read_size * 2).min(CHUNK);
            } else if read < read_size / 4 {
                read_size = (read_size / 2).max(MIN_CHUNK);
            }
            total += read as u64;
            let payload = buf.split().freeze();
            self.push(DataItem::Data {
                id: self.guard.shared.id,
                payload,
            })
            .await?;
        }
        self.finish().await?;
        Ok(total)
    }
}

/// Carries bytes both ways between a stream and a socket until both directions are done,
/// propagating half-closes. Returns (bytes socket->stream, bytes stream->socket).
pub async fn pipe<S>(stream: MuxStream, socket: S) -> io::Result<(u64, u64)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = stream.split();
    let (mut socket_read, mut socket_write) = tokio::io::split(socket);
    let upstream = async {
        let result = writer.copy_from(&mut socket_read).await;
        if result.is_err() {
            writer.reset("source failed");
        }
        result
    };
    let downstream = async {
        let result = reader.copy_to(&mut socket_write).await;
        if let Err(err) = &result {
            // The socket is gone or the stream was reset: nothing more can be delivered.
            writer_reset_on(&reader, err);
        }
        result
    };
    let (up, down) = tokio::try_join!(upstream, downstream)?;
    Ok((up, down))
}

fn writer_reset_on(reader: &StreamReader, err: &io::Error) {
    if reader.guard.shared.reset_error().is_none() {
        reader
            .guard
            .shared
            .set_reset(StreamError::Reset(err.to_string()));
        let _ = reader.guard.session.outbound.priority.send(Command::Reset {
            id: reader.guard.shared.id,
            reason: err.to_string(),
        });
    }
}

/// Receive window a stream grants right after it opens, while the session's growth budget
/// lasts (then the protocol's INITIAL_WINDOW); it grows from there when the link needs
/// more (see `grow_window_if_link_bound`). Starting at 1 MiB keeps a new stream as fast
/// as it was; taking the start from the budget keeps readers that never read from each
/// holding it (2,000 of them held 2 GiB).
const STARTING_WINDOW: u32 = 1024 * 1024;

/// `read_size` of a session that has been quiet: it reads through [`QUIET_READ`] bytes
/// on the stack until traffic picks up.
const QUIET: usize = 0;
const QUIET_READ: usize = 1024;
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;
/// Stop gathering outgoing frames past this much buffered output.
const WRITE_HIGH_WATER: usize = 256 * 1024;

/// Owns the connection; poll it (spawn [`MuxDriver::run`]) for the session to make progress.
pub struct MuxDriver<IO> {
    io: IO,
    config: MuxConfig,
    read_buf: BytesMut,
    read_size: usize,
    out: WriteQueue,
    needs_flush: bool,
    decoder: Decoder,
    streams: HashMap<u32, StreamEntry>,
    priority_rx: mpsc::UnboundedReceiver<Command>,
    data_rx: mpsc::Receiver<DataItem>,
    incoming_tx: mpsc::UnboundedSender<Box<IncomingStream>>,
    control_tx: mpsc::Sender<Bytes>,
    session: Arc<SessionShared>,
    tick: Pin<Box<Sleep>>,
    ping_every: Duration,
    /// The peer's last sign of life: bytes from it, or, while we do not read from it, bytes
    /// it took from us.
    last_received: Instant,
    last_ping_sent: Option<Instant>,
    closing: bool,
}

impl<IO> MuxDriver<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// Runs the session until the peer goes away, a fault, or [`MuxHandle::close`].
    pub async fn run(mut self) -> Result<(), MuxError> {
        let result = poll_fn(|cx| self.poll_session(cx)).await;
        if result.is_ok() {
            let _ = self.io.shutdown().await;
        }
        self.teardown();
        result
    }

    fn teardown(&mut self) {
        self.session.closed.cancel();
        for (_, entry) in self.streams.drain() {
            entry.shared.set_reset(StreamError::SessionClosed);
        }
        for (_, (_, entry)) in self.session.unopened().drain() {
            entry.shared.set_reset(StreamError::SessionClosed);
        }
        self.priority_rx.close();
        self.data_rx.close();
    }

    fn poll_session(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MuxError>> {
        let polled = self.poll_rounds(cx);
        self.session.queued.store(self.out.len(), Ordering::Relaxed);
        polled
    }

    fn poll_rounds(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MuxError>> {
        // Bounded rounds so a busy session yields to other tasks now and then.
        for _ in 0..32 {
            let mut progressed = false;

            if self.tick.as_mut().poll(cx).is_ready() {
                self.on_tick()?;
                progressed = true;
            }

            if !self.closing {
                match self.poll_read_frames(cx)? {
                    Poll::Ready(true) => progressed = true,
                    Poll::Ready(false) => return Poll::Ready(Ok(())), // peer closed
                    Poll::Pending => {}
                }
            }

            if self.gather_outgoing(cx) {
                progressed = true;
            }

            let queued = self.out.len();
            match self.poll_write(cx)? {
                Poll::Ready(()) if self.closing => return Poll::Ready(Ok(())),
                Poll::Ready(()) | Poll::Pending => {}
            }
            if self.out.len() < queued {
                // Room in the queue again: gather once more. Writers blocked on the full
                // data queue wake nobody, so skipping this would stall the session.
                progressed = true;
                if queued >= PAUSE_READING_AT {
                    // Nothing it sends is read now, but a peer that takes our bytes is alive.
                    self.last_received = Instant::now();
                }
            }

            if !progressed {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn on_tick(&mut self) -> Result<(), MuxError> {
        let now = Instant::now();
        if now.duration_since(self.last_received) > self.config.keep_alive {
            return Err(MuxError::KeepaliveTimeout(self.config.keep_alive));
        }
        let idle = now.duration_since(self.last_received) >= self.ping_every / 2;
        if idle && self.read_buf.is_empty() {
            // An idle session holds no read buffer at all (think 10,000 agents).
            self.read_buf = BytesMut::new();
            self.read_size = QUIET;
        }
        if self.last_ping_sent.is_none() {
            self.last_ping_sent = Some(now);
            self.out
                .encode_small(|buf| Frame::Ping { opaque: 0 }.encode(buf));
        } else if let Some(sent) = self.last_ping_sent {
            // Unanswered for a whole interval: send another, in case the first was queued
            // behind a burst of data.
            if now.duration_since(sent) >= self.ping_every {
                self.last_ping_sent = Some(now);
                self.out
                    .encode_small(|buf| Frame::Ping { opaque: 0 }.encode(buf));
            }
        }
        self.tick.as_mut().reset(now + self.ping_every);
        Ok(())
    }

    /// Reads and dispatches frames. Ready(true): made progress; Ready(false): clean EOF.
    fn poll_read_frames(&mut self, cx: &mut Context<'_>) -> Result<Poll<bool>, MuxError> {
        let mut progressed = false;
        loop {
            progressed |= self.handle_buffered_frames()?;
            if self.reading_paused() {
                // The peer does not take what we owe it: what it sent stays unread (here and
                // in the socket) until it does. The queue is not empty, so the write that
                // follows registers the waker.
                return Ok(if progressed {
                    Poll::Ready(true)
                } else {
                    Poll::Pending
                });
            }
            let polled = if self.read_size == QUIET && self.read_buf.is_empty() {
                self.poll_read_quiet(cx)
            } else {
                let (limit, full_read) = self.next_read_limit();
                let mut into = (&mut self.read_buf).limit(limit);
                let polled = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut into);
                if full_read
                    && let Poll::Ready(Ok(n)) = polled
                    && n == limit
                {
                    self.read_size = (self.read_size * 2).min(MAX_READ);
                }
                polled
            };
            match polled {
                Poll::Ready(Ok(0)) => {
                    return if self.read_buf.is_empty() {
                        Ok(Poll::Ready(false))
                    } else {
                        Err(MuxError::Io(io::ErrorKind::UnexpectedEof.into()))
                    };
                }
                Poll::Ready(Ok(_)) => {
                    self.last_received = Instant::now();
                    progressed = true;
                    // Don't let reading starve writing (window updates, pongs).
                    if self.out.len() >= WRITE_HIGH_WATER {
                        self.handle_buffered_frames()?;
                        return Ok(Poll::Ready(true));
                    }
                }
                Poll::Ready(Err(err)) => return Err(err.into()),
                Poll::Pending => {
                    return Ok(if progressed {
                        Poll::Ready(true)
                    } else {
                        Poll::Pending
                    });
                }
            }
        }
    }

    /// Handles the whole frames in `read_buf`, stopping early once reading is paused.
    /// Returns whether it handled any.
    fn handle_buffered_frames(&mut self) -> Result<bool, MuxError> {
        let mut handled = false;
        while !self.reading_paused()
            && let Some(frame) = self.decoder.decode(&mut self.read_buf)?
        {
            self.on_frame(frame)?;
            handled = true;
        }
        Ok(handled)
    }

    /// Whether the peer has left so much unread that we stop reading what it sends.
    fn reading_paused(&self) -> bool {
        self.out.len() >= PAUSE_READING_AT
    }

    /// How much the next read into `read_buf` may take, and whether that is a full-sized
    /// read (one that grows `read_size` when filled).
    ///
    /// Room for `read_size` more bytes is kept past what ordinary reads fill, so that a
    /// frame the last read cut short can be completed in the same allocation. Moving it to
    /// a new one would copy it (the old allocation is still shared with payloads handed
    /// out), and on a busy stream that was most bytes once more.
    fn next_read_limit(&mut self) -> (usize, bool) {
        // Only once traffic has grown the reads: a session that reads little (10,000
        // agents sending pings and facts) keeps its small buffer and may copy a frame.
        let room = if self.read_size > MIN_READ {
            self.read_size
        } else {
            0
        };
        let spare = self.read_buf.capacity() - self.read_buf.len();
        if spare >= room + MIN_READ {
            return (spare - room, true);
        }
        let missing = self.decoder.missing(&self.read_buf);
        if let Some(missing) = missing.filter(|&missing| missing <= spare) {
            return (missing, false);
        }
        // Empty, a few bytes of a header, or a frame larger than the room kept (a big
        // control message): a new allocation, copying what little is buffered.
        self.read_buf
            .reserve(room + self.read_size.max(MIN_READ) + missing.unwrap_or(0));
        let spare = self.read_buf.capacity() - self.read_buf.len();
        (spare - room, true)
    }

    /// Reads a quiet session's pings and control messages through a small stack buffer,
    /// so that waiting costs no heap. A full read means traffic: switch to real buffers.
    fn poll_read_quiet(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut scratch = [0u8; QUIET_READ];
        let mut buf = ReadBuf::new(&mut scratch);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        self.read_buf.extend_from_slice(buf.filled());
        if n == QUIET_READ {
            self.read_size = MIN_READ;
        }
        Poll::Ready(Ok(n))
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), MuxError> {
        self.session.frames_received.fetch_add(1, Ordering::Release);
        match frame {
            Frame::Data { stream, payload } => {
                let Some(entry) = self.streams.get_mut(&stream) else {
                    // Data for a stream we already reset; it was in flight.
                    return Ok(());
                };
                entry.recv_allowance -= payload.len() as i64;
                if entry.recv_allowance < 0 {
                    return Err(MuxError::Protocol(format!(
                        "stream {stream} sent beyond its flow-control window"
                    )));
                }
                if entry.remote_finished {
                    return Err(MuxError::Protocol(format!(
                        "data after FIN on stream {stream}"
                    )));
                }
                if let Some(tx) = &entry.to_reader {
                    // A closed receiver means the handle is gone; its reset is queued.
                    let _ = tx.send(payload);
                }
            }
            Frame::Window { stream, increment } => {
                if let Some(entry) = self.streams.get(&stream) {
                    entry.shared.add_credit(increment);
                }
            }
            Frame::Fin { stream } => {
                if let Some(entry) = self.streams.get_mut(&stream) {
                    entry.remote_finished = true;
                    entry.to_reader = None;
                    self.remove_if_done(stream);
                }
            }
            Frame::Reset { stream, reason } => {
                if let Some(entry) = self.streams.remove(&stream) {
                    let reason = String::from_utf8_lossy(&reason).into_owned();
                    entry.shared.set_reset(StreamError::Reset(reason));
                }
            }
            Frame::Open { stream, payload } => self.on_open(stream, payload)?,
            Frame::Ping { opaque } => self
                .out
                .encode_small(|buf| Frame::Pong { opaque }.encode(buf)),
            Frame::Pong { .. } => {
                if let Some(sent) = self.last_ping_sent.take() {
                    let rtt = sent.elapsed().as_micros().max(1) as u64;
                    self.session.rtt_micros.store(rtt, Ordering::Relaxed);
                }
            }
            Frame::Control { payload } => {
                if payload.len() > self.config.max_control_len {
                    tracing::debug!("dropping a control message of {} bytes", payload.len());
                } else if let Err(mpsc::error::TrySendError::Full(_)) =
                    self.control_tx.try_send(payload)
                {
                    return Err(MuxError::Protocol(format!(
                        "more than {CONTROL_QUEUE} control messages waiting to be handled"
                    )));
                }
            }
        }
        Ok(())
    }

    fn on_open(&mut self, stream: u32, payload: Bytes) -> Result<(), MuxError> {
        let peer_parity = match self.config.role {
            Role::Server => 0,
            Role::Agent => 1,
        };
        if stream % 2 != peer_parity || self.streams.contains_key(&stream) {
            return Err(MuxError::Protocol(format!(
                "invalid stream id {stream} in OPEN"
            )));
        }
        if self.config.role == Role::Server {
            self.write_reset(stream, "agents may not open streams");
            return Ok(());
        }
        if self.streams.len() >= self.config.max_streams {
            self.write_reset(stream, "too many open streams");
            return Ok(());
        }
        let (mux_stream, entry) = new_stream(&self.session, stream);
        self.streams.insert(stream, entry);
        if self
            .incoming_tx
            .send(Box::new(IncomingStream {
                stream: mux_stream,
                open: payload,
            }))
            .is_err()
        {
            // Nobody accepts streams; dropping the handle resets it.
            self.streams.remove(&stream);
            self.write_reset(stream, "not accepting streams");
        }
        Ok(())
    }

    fn write_reset(&mut self, stream: u32, reason: &str) {
        self.out.encode_small(|buf| {
            Frame::Reset {
                stream,
                reason: Bytes::copy_from_slice(reason.as_bytes()),
            }
            .encode(buf)
        });
    }

    fn remove_if_done(&mut self, stream: u32) {
        if let Some(entry) = self.streams.get(&stream)
            && entry.local_finished
            && entry.remote_finished
        {
            self.streams.remove(&stream);
        }
    }

    /// Moves queued commands and data into the write buffer. Returns whether it took any.
    fn gather_outgoing(&mut self, cx: &mut Context<'_>) -> bool {
        let mut took = self.gather_commands(cx);
        while self.out.len() < WRITE_HIGH_WATER && !self.closing {
            match self.data_rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    took = true;
                    if !self.streams.contains_key(&item.id()) {
                        // Data of a stream whose OPEN command is not in sight yet (see
                        // `SessionShared::unopened`): send its OPEN first. Without this the
                        // data would be taken for a stream already gone, and dropped.
                        self.open_local(item.id());
                    }
                    self.on_data_item(item);
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        took
    }

    fn gather_commands(&mut self, cx: &mut Context<'_>) -> bool {
        let mut took = false;
        while let Poll::Ready(Some(command)) = self.priority_rx.poll_recv(cx) {
            took = true;
            self.on_command(command);
        }
        took
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Open { id } => self.open_local(id),
            Command::Window { id, increment } => {
                if let Some(entry) = self.streams.get_mut(&id)
                    && !entry.remote_finished
                {
                    entry.recv_allowance += i64::from(increment);
                    self.out.encode_small(|buf| {
                        Frame::Window {
                            stream: id,
                            increment,
                        }
                        .encode(buf)
                    });
                }
            }
            Command::Reset { id, reason } => {
                if let Some(entry) = self.streams.remove(&id) {
                    entry.shared.set_reset(StreamError::Reset(reason.clone()));
                    self.write_reset(id, &reason);
                }
            }
            Command::Control(payload) => self.out.push_frame(FrameKind::Control, 0, payload),
            Command::Ping => {
                self.last_ping_sent = Some(Instant::now());
                self.out
                    .encode_small(|buf| Frame::Ping { opaque: 0 }.encode(buf));
            }
            Command::Close => self.closing = true,
        }
    }

    /// Sends the OPEN of a locally opened stream, unless it was sent already.
    fn open_local(&mut self, id: u32) {
        let Some((payload, entry)) = self.session.unopened().remove(&id) else {
            return;
        };
        if self.streams.len() >= self.config.max_streams {
            entry
                .shared
                .set_reset(StreamError::Reset("too many open streams".into()));
            return;
        }
        self.streams.insert(id, *entry);
        self.out.push_frame(FrameKind::Open, id, payload);
    }

    fn on_data_item(&mut self, item: DataItem) {
        match item {
            DataItem::Data { id, payload } => {
                // Data queued before a reset is dropped, not sent.
                if let Some(entry) = self.streams.get(&id)
                    && !entry.local_finished
                {
                    self.out.push_frame(FrameKind::Data, id, payload);
                }
            }
            DataItem::Fin { id } => {
                if let Some(entry) = self.streams.get_mut(&id)
                    && !entry.local_finished
                {
                    entry.local_finished = true;
                    self.out
                        .encode_small(|buf| Frame::Fin { stream: id }.encode(buf));
                    self.remove_if_done(id);
                }
            }
        }
    }

    /// Writes the queue out. Ready once everything is written and flushed.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<Poll<()>, MuxError> {
        match self.out.poll_write_all(&mut self.io, cx) {
            Poll::Ready(Ok(wrote)) => self.needs_flush |= wrote,
            Poll::Ready(Err(err)) => return Err(err.into()),
            Poll::Pending => return Ok(Poll::Pending),
        }
        if !self.out.is_empty() {
            // Partly written, then the socket filled up: its waker is registered.
            return Ok(Poll::Pending);
        }
        if self.needs_flush {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(result) => result?,
                Poll::Pending => return Ok(Poll::Pending),
            }
            self.needs_flush = false;
        }
        Ok(Poll::Ready(()))
    }
}
