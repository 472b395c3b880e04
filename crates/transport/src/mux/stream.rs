//! A multiplexed stream: its reading and writing halves with their flow control, its byte
//! counters, and [`pipe`] that joins a stream to a socket.

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rport_protocol::frame::{INITIAL_WINDOW, MAX_DATA_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::driver::StreamEntry;
use super::{Command, DataItem, SessionShared, StreamError};
use crate::write_queue::WriteQueue;

/// State of one stream shared between its handles and the driver.
pub(super) struct StreamShared {
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

    pub(super) fn add_credit(&self, n: u32) {
        self.credit.fetch_add(u64::from(n), Ordering::AcqRel);
        self.wake.notify_one();
    }

    pub(super) fn set_reset(&self, err: StreamError) {
        if let Ok(mut slot) = self.reset.lock() {
            slot.get_or_insert(err);
        }
        self.reset_flag.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub(super) fn reset_error(&self) -> Option<StreamError> {
        if !self.reset_flag.load(Ordering::Acquire) {
            return None;
        }
        self.reset.lock().ok().and_then(|slot| slot.clone())
    }
}

/// Receive window a stream grants right after it opens, while the session's growth budget
/// lasts (then the protocol's INITIAL_WINDOW); it grows from there when the link needs
/// more (see `grow_window_if_link_bound`). Starting at 1 MiB keeps a new stream as fast
/// as it was; taking the start from the budget keeps readers that never read from each
/// holding it (2,000 of them held 2 GiB).
const STARTING_WINDOW: u32 = 1024 * 1024;

/// A new stream for its owner and the driver's entry for it.
pub(super) fn new_stream(session: &Arc<SessionShared>, id: u32) -> (MuxStream, StreamEntry) {
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
