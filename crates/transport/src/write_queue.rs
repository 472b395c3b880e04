//! Outgoing bytes as a queue of shared slices, written with one vectored write: the
//! session's frames, so payloads reach TLS without a staging copy, and a stream's queued
//! data on its way to the tunneled socket.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rport_protocol::frame::{self, FrameKind};
use tokio::io::AsyncWrite;

/// Slices handed to one vectored write; also the kernel's usual IOV limit is far above it.
const MAX_SLICES: usize = 64;

/// Payloads smaller than this are copied next to their header: a separate slice costs more.
const COPY_BELOW: usize = 1024;

#[derive(Default)]
pub struct WriteQueue {
    /// Headers and small frames not yet sealed into `chunks`.
    small: BytesMut,
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl WriteQueue {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A buffer to encode small frames into; they go out in order with everything else.
    pub fn encode_small(&mut self, encode: impl FnOnce(&mut BytesMut)) {
        let before = self.small.len();
        encode(&mut self.small);
        self.len += self.small.len() - before;
    }

    /// Queues a frame whose payload is shared, not copied, when it is large.
    pub fn push_frame(&mut self, kind: FrameKind, stream: u32, payload: Bytes) {
        let payload_len = payload.len();
        self.small
            .put_slice(&frame::header(kind, stream, payload_len));
        self.len += frame::HEADER_LEN + payload_len;
        if payload_len < COPY_BELOW {
            self.small.put_slice(&payload);
        } else {
            self.seal_small();
            self.chunks.push_back(payload);
        }
    }

    /// Queues raw bytes (no frame header), for writing a stream's data to its socket.
    /// Empty chunks are dropped: an all-empty vectored write would look like WriteZero.
    pub fn push_bytes(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.seal_small();
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    fn seal_small(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push_back(self.small.split().freeze());
        }
    }

    /// Writes until the queue is empty or the writer would block.
    pub fn poll_write_all<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<bool>> {
        self.seal_small();
        let mut wrote = false;
        while self.len > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.chunks.len().min(MAX_SLICES);
            for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                *slot = IoSlice::new(chunk);
            }
            let written = match Pin::new(&mut *writer).poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending if wrote => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
            };
            wrote = true;
            self.consume(written);
        }
        if self.small.capacity() > 64 * 1024 {
            // A burst of small frames grew it; don't keep that for an idle session.
            self.small = BytesMut::new();
        }
        Poll::Ready(Ok(wrote))
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rport_protocol::{Decoder, Frame};

    /// A writer that takes at most a few bytes per call, to exercise partial writes.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn frames_come_out_whole_and_in_order_through_partial_writes() {
        let mut queue = WriteQueue::default();
        let big = Bytes::from(vec![7u8; 5000]);
        queue.push_frame(FrameKind::Data, 1, Bytes::from_static(b"tiny"));
        queue.encode_small(|buf| {
            Frame::Window {
                stream: 3,
                increment: 9,
            }
            .encode(buf)
        });
        queue.push_frame(FrameKind::Data, 3, big.clone());
        queue.push_frame(FrameKind::Data, 5, Bytes::new());
        let expected_len = queue.len();

        let mut sink = Trickle {
            out: Vec::new(),
            step: 333,
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while !queue.is_empty() {
            match queue.poll_write_all(&mut sink, &mut cx) {
                Poll::Ready(Ok(_)) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(sink.out.len(), expected_len);

        let mut wire = BytesMut::from(&sink.out[..]);
        let mut frames = Vec::new();
        while let Some(frame) = Decoder.decode(&mut wire).expect("valid frames") {
            frames.push(frame);
        }
        assert_eq!(
            frames,
            [
                Frame::Data {
                    stream: 1,
                    payload: Bytes::from_static(b"tiny")
                },
                Frame::Window {
                    stream: 3,
                    increment: 9
                },
                Frame::Data {
                    stream: 3,
                    payload: big
                },
                Frame::Data {
                    stream: 5,
                    payload: Bytes::new()
                },
            ]
        );
    }

    #[tokio::test]
    async fn raw_chunks_arrive_in_order_through_partial_writes() {
        // A 1 KiB pipe forces many partial writes; empty chunks must not end the write.
        let (mut tx, mut rx) = tokio::io::duplex(1024);
        let chunks: Vec<Bytes> = vec![
            Bytes::new(),
            Bytes::from(vec![1u8; 3000]),
            Bytes::new(),
            Bytes::from(vec![2u8; 10]),
            Bytes::from(vec![3u8; 5000]),
            Bytes::new(),
        ];
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut rx, &mut got)
                .await
                .map(|_| got)
        });
        let mut queue = WriteQueue::default();
        for chunk in chunks {
            queue.push_bytes(chunk);
        }
        assert_eq!(queue.len(), expected.len());
        while !queue.is_empty() {
            std::future::poll_fn(|cx| queue.poll_write_all(&mut tx, cx))
                .await
                .expect("write");
        }
        drop(tx);
        assert_eq!(reader.await.expect("join").expect("read"), expected);
    }
}
