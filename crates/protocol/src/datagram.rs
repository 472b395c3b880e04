//! UDP datagrams carried on a byte stream: each datagram is a 2-byte big-endian length
//! followed by its bytes, so datagram boundaries survive the stream.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The largest datagram the framing can carry; larger than any UDP payload over IPv4
/// or IPv6 without jumbograms.
pub const MAX_DATAGRAM: usize = u16::MAX as usize;

/// Length prefix of each framed datagram.
pub const HEADER_LEN: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("datagram of {0} bytes is larger than {MAX_DATAGRAM}")]
pub struct TooLarge(pub usize);

/// Appends one framed datagram to `out`.
pub fn encode(datagram: &[u8], out: &mut BytesMut) -> Result<(), TooLarge> {
    let len = u16::try_from(datagram.len()).map_err(|_| TooLarge(datagram.len()))?;
    out.reserve(HEADER_LEN + datagram.len());
    out.put_u16(len);
    out.put_slice(datagram);
    Ok(())
}

/// Reassembles datagrams from stream chunks that may split or join them anywhere.
#[derive(Debug, Default)]
pub struct DatagramDecoder {
    buf: BytesMut,
}

impl DatagramDecoder {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete datagram, if one has fully arrived.
    pub fn next_datagram(&mut self) -> Option<Bytes> {
        let len = usize::from(u16::from_be_bytes([*self.buf.first()?, *self.buf.get(1)?]));
        if self.buf.len() < HEADER_LEN + len {
            return None;
        }
        self.buf.advance(HEADER_LEN);
        Some(self.buf.split_to(len).freeze())
    }

    /// Bytes of an incomplete datagram still waiting for the rest.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn too_large_is_refused() {
        let mut out = BytesMut::new();
        assert_eq!(
            encode(&vec![0; MAX_DATAGRAM + 1], &mut out),
            Err(TooLarge(MAX_DATAGRAM + 1))
        );
        assert!(out.is_empty());
        assert!(encode(&vec![0; MAX_DATAGRAM], &mut out).is_ok());
    }

    #[test]
    fn empty_datagrams_survive() {
        let mut out = BytesMut::new();
        encode(b"", &mut out).expect("encode");
        encode(b"x", &mut out).expect("encode");
        let mut decoder = DatagramDecoder::default();
        decoder.push(&out);
        assert_eq!(decoder.next_datagram().as_deref(), Some(&b""[..]));
        assert_eq!(decoder.next_datagram().as_deref(), Some(&b"x"[..]));
        assert_eq!(decoder.next_datagram(), None);
    }

    proptest! {
        /// However the stream splits the bytes, the same datagrams come out.
        #[test]
        fn boundaries_survive_any_split(
            datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..20),
            cuts in proptest::collection::vec(1usize..5000, 0..40),
        ) {
            let mut stream = BytesMut::new();
            for datagram in &datagrams {
                encode(datagram, &mut stream).expect("encode");
            }
            let mut decoder = DatagramDecoder::default();
            let mut out = Vec::new();
            let mut rest = &stream[..];
            for cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
                let (chunk, tail) = rest.split_at((*cut).min(rest.len()));
                decoder.push(chunk);
                rest = tail;
                while let Some(datagram) = decoder.next_datagram() {
                    out.push(datagram.to_vec());
                }
            }
            prop_assert_eq!(out, datagrams);
            prop_assert_eq!(decoder.pending(), 0);
        }
    }
}
