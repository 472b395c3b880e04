//! The session's driver: the one task that reads frames from the connection and writes
//! the queued ones to it, keeps the peer alive with pings and paces reading by what the
//! peer takes.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rport_protocol::frame::FrameKind;
use rport_protocol::{Decoder, Frame};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use super::stream::{StreamShared, new_stream};
use super::{
    CONTROL_QUEUE, Command, DataItem, IncomingStream, MuxConfig, MuxError, MuxEvents,
    PAUSE_READING_AT, Role, SessionShared, StreamError,
};
use crate::write_queue::WriteQueue;

/// `read_size` of a session that has been quiet: it reads through [`QUIET_READ`] bytes
/// on the stack until traffic picks up.
const QUIET: usize = 0;
const QUIET_READ: usize = 1024;
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 256 * 1024;
/// Stop gathering outgoing frames past this much buffered output.
pub(super) const WRITE_HIGH_WATER: usize = 256 * 1024;

/// The driver's view of a stream.
pub(super) struct StreamEntry {
    pub(super) shared: Arc<StreamShared>,
    pub(super) to_reader: Option<mpsc::UnboundedSender<Bytes>>,
    /// Bytes the peer may still send before it needs more credit from us.
    pub(super) recv_allowance: i64,
    pub(super) local_finished: bool,
    pub(super) remote_finished: bool,
}

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
    /// The driver of a session [`start`](super::start) set up, and the events it delivers.
    pub(super) fn new(
        io: IO,
        already_read: BytesMut,
        config: MuxConfig,
        session: Arc<SessionShared>,
        priority_rx: mpsc::UnboundedReceiver<Command>,
        data_rx: mpsc::Receiver<DataItem>,
    ) -> (Self, MuxEvents) {
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
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
            session,
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
        let events = MuxEvents {
            incoming: incoming_rx,
            control: control_rx,
        };
        (driver, events)
    }

    /// Runs the session until the peer goes away, a fault, or
    /// [`MuxHandle::close`](super::MuxHandle::close).
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
            Frame::Ping { opaque } => {
                self.session.note_heartbeat();
                self.out
                    .encode_small(|buf| Frame::Pong { opaque }.encode(buf))
            }
            Frame::Pong { .. } => {
                self.session.note_heartbeat();
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
