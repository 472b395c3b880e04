//! The session handshake after TLS: the agent's preface and HELLO, the server's answer.
//!
//! It runs before the multiplexer starts, on the bare connection; whatever the peer sent
//! after the handshake message is handed on to the multiplexer untouched.

use bytes::BytesMut;
use rport_protocol::frame::{FrameKind, HEADER_LEN};
use rport_protocol::{ControlMessage, Decoder, Frame, PREFACE};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest handshake message accepted; unauthenticated peers get no more buffer than this.
pub const MAX_HANDSHAKE_LEN: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer is not an rport agent or speaks another protocol version")]
    BadPreface,
    #[error("malformed handshake: {0}")]
    Malformed(String),
    #[error("connection closed during handshake")]
    Closed,
}

/// Agent side: sends the preface and `hello`, then waits for the server's answer.
pub async fn agent_hello<IO>(
    io: &mut IO,
    hello: &ControlMessage,
) -> Result<(ControlMessage, BytesMut), HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut out = BytesMut::with_capacity(512);
    out.extend_from_slice(&PREFACE);
    Frame::Control {
        payload: hello.to_json().into(),
    }
    .encode(&mut out);
    io.write_all(&out).await?;
    io.flush().await?;
    read_control(io, BytesMut::new()).await
}

/// Server side: checks the preface and reads the agent's first message.
pub async fn read_hello<IO>(io: &mut IO) -> Result<(ControlMessage, BytesMut), HandshakeError>
where
    IO: AsyncRead + Unpin,
{
    let mut preface = [0u8; PREFACE.len()];
    io.read_exact(&mut preface).await.map_err(eof_as_closed)?;
    if preface != PREFACE {
        return Err(HandshakeError::BadPreface);
    }
    read_control(io, BytesMut::new()).await
}

/// Writes one control message and flushes.
pub async fn send_control<IO>(io: &mut IO, message: &ControlMessage) -> Result<(), HandshakeError>
where
    IO: AsyncWrite + Unpin,
{
    let mut out = BytesMut::new();
    Frame::Control {
        payload: message.to_json().into(),
    }
    .encode(&mut out);
    io.write_all(&out).await?;
    io.flush().await?;
    Ok(())
}

async fn read_control<IO>(
    io: &mut IO,
    mut buf: BytesMut,
) -> Result<(ControlMessage, BytesMut), HandshakeError>
where
    IO: AsyncRead + Unpin,
{
    loop {
        if buf.len() >= HEADER_LEN {
            let len = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) as usize;
            if buf[0] != FrameKind::Control as u8 || len > MAX_HANDSHAKE_LEN {
                return Err(HandshakeError::Malformed(
                    "expected a control message within the size limit".into(),
                ));
            }
        }
        match Decoder.decode(&mut buf) {
            Ok(Some(Frame::Control { payload })) => {
                let message = ControlMessage::from_json(&payload)
                    .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
                return Ok((message, buf));
            }
            Ok(Some(_)) => {
                return Err(HandshakeError::Malformed(
                    "expected a control message".into(),
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(HandshakeError::Malformed(e.to_string())),
        }
        buf.reserve(4096);
        if io.read_buf(&mut buf).await? == 0 {
            return Err(HandshakeError::Closed);
        }
    }
}

fn eof_as_closed(err: std::io::Error) -> HandshakeError {
    if err.kind() == std::io::ErrorKind::UnexpectedEof {
        HandshakeError::Closed
    } else {
        HandshakeError::Io(err)
    }
}
