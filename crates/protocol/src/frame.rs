//! Frame codec: the 9-byte header and payload that every byte on a session travels in.
//!
//! ```text
//! +--------+----------------+----------------+---------------
//! | kind u8| stream id u32  | length u32     | payload ...
//! +--------+----------------+----------------+---------------
//! ```
//! Integers are big-endian. Stream 0 is the session itself (control, ping).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 9;

/// Largest DATA payload a sender may put in one frame.
pub const MAX_DATA_LEN: usize = 256 * 1024;

/// Send credit each side has on a new stream before any WINDOW frame: the receiver
/// buffers at most this much until it grants more.
pub const INITIAL_WINDOW: u32 = 256 * 1024;

/// Largest payload of any frame; a larger length closes the connection as malformed.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

/// The kinds of frame; the numbers are the wire values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Stream payload bytes.
    Data = 1,
    /// Opens a stream; payload is a JSON [`crate::OpenRequest`].
    Open = 2,
    /// The sender will send no more data on this stream (TCP half-close).
    Fin = 3,
    /// Abort the stream in both directions; payload is a UTF-8 reason.
    Reset = 4,
    /// Grants the peer more send credit on a stream; payload is a u32 increment.
    Window = 5,
    /// Liveness probe on stream 0; payload is 8 opaque bytes echoed in the PONG.
    Ping = 6,
    /// Answer to a PING.
    Pong = 7,
    /// A JSON [`crate::ControlMessage`] on stream 0.
    Control = 8,
}

impl FrameKind {
    fn from_wire(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Data,
            2 => Self::Open,
            3 => Self::Fin,
            4 => Self::Reset,
            5 => Self::Window,
            6 => Self::Ping,
            7 => Self::Pong,
            8 => Self::Control,
            _ => return None,
        })
    }
}

/// One decoded frame. Payloads share the decoder's buffer, so decoding does not copy data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data { stream: u32, payload: Bytes },
    Open { stream: u32, payload: Bytes },
    Fin { stream: u32 },
    Reset { stream: u32, reason: Bytes },
    Window { stream: u32, increment: u32 },
    Ping { opaque: u64 },
    Pong { opaque: u64 },
    Control { payload: Bytes },
}

/// Why a byte sequence is not a valid frame. Any of these ends the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("{kind:?} frame has a {len}-byte payload, expected {expected}")]
    BadLength {
        kind: FrameKind,
        len: usize,
        expected: usize,
    },
    #[error("{kind:?} frame on stream {stream}, which it may not use")]
    BadStream { kind: FrameKind, stream: u32 },
}

/// A frame header, for senders that keep the payload apart (vectored writes).
pub fn header(kind: FrameKind, stream: u32, len: usize) -> [u8; HEADER_LEN] {
    debug_assert!(len <= MAX_FRAME_LEN);
    let mut out = [0u8; HEADER_LEN];
    out[0] = kind as u8;
    out[1..5].copy_from_slice(&stream.to_be_bytes());
    // Callers never pass more than MAX_FRAME_LEN, which fits in u32.
    out[5..9].copy_from_slice(&(len as u32).to_be_bytes());
    out
}

/// Writes a frame header; the caller appends `len` payload bytes after it.
pub fn put_header(buf: &mut BytesMut, kind: FrameKind, stream: u32, len: usize) {
    buf.reserve(HEADER_LEN + len);
    buf.put_slice(&header(kind, stream, len));
}

impl Frame {
    /// Appends the encoded frame to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        match self {
            Frame::Data { stream, payload } => put_frame(buf, FrameKind::Data, *stream, payload),
            Frame::Open { stream, payload } => put_frame(buf, FrameKind::Open, *stream, payload),
            Frame::Fin { stream } => put_header(buf, FrameKind::Fin, *stream, 0),
            Frame::Reset { stream, reason } => put_frame(buf, FrameKind::Reset, *stream, reason),
            Frame::Window { stream, increment } => {
                put_header(buf, FrameKind::Window, *stream, 4);
                buf.put_u32(*increment);
            }
            Frame::Ping { opaque } => {
                put_header(buf, FrameKind::Ping, 0, 8);
                buf.put_u64(*opaque);
            }
            Frame::Pong { opaque } => {
                put_header(buf, FrameKind::Pong, 0, 8);
                buf.put_u64(*opaque);
            }
            Frame::Control { payload } => put_frame(buf, FrameKind::Control, 0, payload),
        }
    }

    /// The stream this frame belongs to (0 for session-level frames).
    pub fn stream(&self) -> u32 {
        match self {
            Frame::Data { stream, .. }
            | Frame::Open { stream, .. }
            | Frame::Fin { stream }
            | Frame::Reset { stream, .. }
            | Frame::Window { stream, .. } => *stream,
            Frame::Ping { .. } | Frame::Pong { .. } | Frame::Control { .. } => 0,
        }
    }
}

fn put_frame(buf: &mut BytesMut, kind: FrameKind, stream: u32, payload: &[u8]) {
    put_header(buf, kind, stream, payload.len());
    buf.put_slice(payload);
}

/// Incremental decoder: feed it a buffer that bytes are appended to, take frames out.
#[derive(Debug, Default, Clone, Copy)]
pub struct Decoder;

impl Decoder {
    /// Takes one complete frame from the front of `buf`, or returns `Ok(None)` when more
    /// bytes are needed (the caller makes room for them: see [`Decoder::missing`]).
    /// On error the buffer content is unspecified and the connection must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let raw_kind = buf[0];
        let kind = FrameKind::from_wire(raw_kind).ok_or(DecodeError::UnknownKind(raw_kind))?;
        let stream = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        let len = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) as usize;
        let limit = if kind == FrameKind::Data {
            MAX_DATA_LEN
        } else {
            MAX_FRAME_LEN
        };
        if len > limit {
            return Err(DecodeError::TooLarge { len, limit });
        }
        check_shape(kind, stream, len)?;
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let mut payload = buf.split_to(len);
        Ok(Some(match kind {
            FrameKind::Data => Frame::Data {
                stream,
                payload: payload.freeze(),
            },
            FrameKind::Open => Frame::Open {
                stream,
                payload: payload.freeze(),
            },
            FrameKind::Fin => Frame::Fin { stream },
            FrameKind::Reset => Frame::Reset {
                stream,
                reason: payload.freeze(),
            },
            FrameKind::Window => Frame::Window {
                stream,
                increment: payload.get_u32(),
            },
            FrameKind::Ping => Frame::Ping {
                opaque: payload.get_u64(),
            },
            FrameKind::Pong => Frame::Pong {
                opaque: payload.get_u64(),
            },
            FrameKind::Control => Frame::Control {
                payload: payload.freeze(),
            },
        }))
    }

    /// After [`Decoder::decode`] returned `Ok(None)`: how many bytes the frame whose header
    /// starts `buf` still lacks, or `None` while the header itself is incomplete. A reader
    /// can then read exactly that much into room it kept, instead of moving the partial
    /// frame to a larger buffer.
    pub fn missing(&self, buf: &[u8]) -> Option<usize> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let len = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) as usize;
        (HEADER_LEN + len).checked_sub(buf.len())
    }
}

/// Rejects frames whose header alone is inconsistent, before waiting for their payload.
fn check_shape(kind: FrameKind, stream: u32, len: usize) -> Result<(), DecodeError> {
    let session_level = matches!(kind, FrameKind::Ping | FrameKind::Pong | FrameKind::Control);
    if session_level != (stream == 0) {
        return Err(DecodeError::BadStream { kind, stream });
    }
    let expected = match kind {
        FrameKind::Fin => Some(0),
        FrameKind::Window => Some(4),
        FrameKind::Ping | FrameKind::Pong => Some(8),
        _ => None,
    };
    match expected {
        Some(expected) if expected != len => Err(DecodeError::BadLength {
            kind,
            len,
            expected,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let stream = 1u32..;
        let bytes = proptest::collection::vec(any::<u8>(), 0..2048).prop_map(Bytes::from);
        prop_oneof![
            (stream.clone(), bytes.clone())
                .prop_map(|(stream, payload)| Frame::Data { stream, payload }),
            (stream.clone(), bytes.clone())
                .prop_map(|(stream, payload)| Frame::Open { stream, payload }),
            stream.clone().prop_map(|stream| Frame::Fin { stream }),
            (stream.clone(), bytes.clone())
                .prop_map(|(stream, reason)| Frame::Reset { stream, reason }),
            (stream, any::<u32>())
                .prop_map(|(stream, increment)| Frame::Window { stream, increment }),
            any::<u64>().prop_map(|opaque| Frame::Ping { opaque }),
            any::<u64>().prop_map(|opaque| Frame::Pong { opaque }),
            bytes.prop_map(|payload| Frame::Control { payload }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip_whatever_the_read_boundaries(
            frames in proptest::collection::vec(arb_frame(), 1..20),
            chunk in 1usize..700,
        ) {
            let mut wire = BytesMut::new();
            for frame in &frames {
                frame.encode(&mut wire);
            }
            let mut decoder = Decoder;
            let mut buf = BytesMut::new();
            let mut decoded = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(frame) = decoder.decode(&mut buf).expect("valid frames decode") {
                    decoded.push(frame);
                }
            }
            prop_assert_eq!(decoded, frames);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut buf = BytesMut::from(&data[..]);
            let mut decoder = Decoder;
            while let Ok(Some(_)) = decoder.decode(&mut buf) {}
        }
    }

    #[test]
    fn missing_tells_how_much_of_a_cut_frame_is_still_to_come() {
        let mut whole = BytesMut::new();
        Frame::Data {
            stream: 1,
            payload: Bytes::from(vec![7u8; 1000]),
        }
        .encode(&mut whole);
        for cut in [0, 1, HEADER_LEN - 1] {
            assert_eq!(
                Decoder.missing(&whole[..cut]),
                None,
                "header incomplete at {cut}"
            );
        }
        for cut in [HEADER_LEN, HEADER_LEN + 1, HEADER_LEN + 999] {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(Decoder.decode(&mut buf).ok().flatten(), None);
            assert_eq!(Decoder.missing(&buf), Some(whole.len() - cut));
        }
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut buf = BytesMut::new();
        put_header(&mut buf, FrameKind::Control, 0, 0);
        buf[5..9].copy_from_slice(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        assert!(matches!(
            Decoder.decode(&mut buf),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn data_frame_larger_than_data_limit_is_refused() {
        let mut buf = BytesMut::new();
        put_header(&mut buf, FrameKind::Data, 1, 0);
        buf[5..9].copy_from_slice(&((MAX_DATA_LEN as u32) + 1).to_be_bytes());
        assert!(matches!(
            Decoder.decode(&mut buf),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn stream_frames_on_stream_zero_are_refused() {
        let mut buf = BytesMut::new();
        Frame::Fin { stream: 0 }.encode(&mut buf);
        assert!(matches!(
            Decoder.decode(&mut buf),
            Err(DecodeError::BadStream { .. })
        ));
    }

    #[test]
    fn unknown_kind_is_refused() {
        let mut buf = BytesMut::from(&[99u8, 0, 0, 0, 1, 0, 0, 0, 0][..]);
        assert_eq!(Decoder.decode(&mut buf), Err(DecodeError::UnknownKind(99)));
    }
}
