//! A socket wrapper that turns the TLS layer's small reads into large ones while data
//! streams in, and holds no buffer while the connection is quiet.
//!
//! rustls asks its transport for at most 4 KiB at a time. At several Gbit/s that is a
//! system call per 4 KiB, which costs more CPU than the decryption. Under a bulk transfer
//! this wrapper reads up to [`BUFFER`] bytes per call and serves rustls from memory; an
//! idle or trickling connection (10,000 agents at rest) reads straight through, without a
//! buffer of its own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at once while buffering.
pub const BUFFER: usize = 256 * 1024;

/// A fill smaller than this means the peer is not outpacing us: go back to reading
/// straight through.
const TRICKLE: usize = 16 * 1024;

pub struct ReadCoalescing<S> {
    inner: S,
    buffer: BytesMut,
    /// Whether the next socket read goes into `buffer` rather than the caller's buffer.
    buffering: bool,
}

impl<S> ReadCoalescing<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buffer: BytesMut::new(),
            buffering: false,
        }
    }

    /// Bytes held for the reader; zero when quiet.
    pub fn buffered_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    fn serve_buffered(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.buffer.len().min(out.remaining());
        out.put_slice(&self.buffer[..n]);
        self.buffer.advance(n);
        if self.buffer.is_empty() && !self.buffering {
            self.buffer = BytesMut::new();
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadCoalescing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.buffer.is_empty() {
            this.serve_buffered(out);
            return Poll::Ready(Ok(()));
        }
        if !this.buffering {
            let room = out.remaining();
            let before = out.filled().len();
            ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
            // The caller's buffer filled up: more is probably waiting, so read big next time.
            this.buffering = room < BUFFER && out.filled().len() - before == room;
            return Poll::Ready(Ok(()));
        }
        if this.buffer.capacity() < BUFFER {
            this.buffer = BytesMut::with_capacity(BUFFER);
        }
        this.buffer.clear();
        match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buffer) {
            Poll::Pending => {
                // Caught up with the peer: a quiet connection keeps no buffer.
                this.buffering = false;
                this.buffer = BytesMut::new();
                Poll::Pending
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Ready(Ok(filled)) => {
                if filled < TRICKLE {
                    this.buffering = false;
                }
                this.serve_buffered(out);
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadCoalescing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn passes_every_byte_in_order_whatever_the_read_sizes() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            for chunk in sent.chunks(50_000) {
                tx.write_all(chunk).await.expect("write");
            }
        });
        let mut reader = ReadCoalescing::new(rx);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        loop {
            let n = reader.read(&mut small).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        writer.await.expect("writer");
        assert_eq!(got, data);
        assert_eq!(reader.buffered_capacity(), 0, "no buffer kept at the end");
    }

    #[tokio::test]
    async fn a_quiet_connection_holds_no_buffer() {
        let (mut tx, rx) = tokio::io::duplex(1024 * 1024);
        tx.write_all(&[1u8; 300 * 1024]).await.expect("write");
        let mut reader = ReadCoalescing::new(rx);
        let mut small = [0u8; 4096];
        let mut total = 0;
        while total < 300 * 1024 {
            total += reader.read(&mut small).await.expect("read");
        }
        // Nothing more arrives: the next read waits, and waiting drops the buffer.
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            reader.read(&mut small),
        )
        .await;
        assert!(waited.is_err(), "nothing to read");
        assert_eq!(reader.buffered_capacity(), 0);
    }
}
