//! Frame codec cost per frame, for the sizes tunnels produce: tiny control frames and
//! DATA frames from a partly filled to a full read chunk. `cargo bench -p rport-protocol`.

use bytes::{Bytes, BytesMut};
use divan::counter::BytesCount;
use rport_protocol::{Decoder, Frame};

fn main() {
    divan::main();
}

const SIZES: [usize; 4] = [64, 4 * 1024, 64 * 1024, 128 * 1024];

#[divan::bench(args = SIZES)]
fn encode_data(bencher: divan::Bencher, size: usize) {
    let frame = Frame::Data {
        stream: 7,
        payload: Bytes::from(vec![0xa5; size]),
    };
    let mut buf = BytesMut::with_capacity(size + 64);
    bencher.counter(BytesCount::new(size)).bench_local(|| {
        buf.clear();
        frame.encode(&mut buf);
        divan::black_box(buf.len())
    });
}

/// Decodes a buffer of 64 frames, as read from a busy session.
#[divan::bench(args = SIZES)]
fn decode_data(bencher: divan::Bencher, size: usize) {
    let mut wire = BytesMut::new();
    for stream in 0..64u32 {
        Frame::Data {
            stream: stream * 2 + 1,
            payload: Bytes::from(vec![0x5a; size]),
        }
        .encode(&mut wire);
    }
    let wire = wire.freeze();
    bencher
        .counter(BytesCount::new(size * 64))
        .with_inputs(|| BytesMut::from(&wire[..]))
        .bench_local_values(|mut buf| {
            let mut frames = 0;
            while let Ok(Some(frame)) = Decoder.decode(&mut buf) {
                divan::black_box(&frame);
                frames += 1;
            }
            frames
        });
}

#[divan::bench]
fn encode_decode_window(bencher: divan::Bencher) {
    let mut buf = BytesMut::with_capacity(64);
    bencher.bench_local(|| {
        Frame::Window {
            stream: 3,
            increment: 65536,
        }
        .encode(&mut buf);
        Decoder.decode(&mut buf)
    });
}
