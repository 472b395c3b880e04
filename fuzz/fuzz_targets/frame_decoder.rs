//! The frame decoder on bytes from the network: it never panics, never takes more than it
//! was given, and every frame it accepts encodes back to bytes that decode to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rport_protocol::frame::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut decoder = Decoder;
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded);
        let again = Decoder.decode(&mut encoded);
        assert_eq!(
            again,
            Ok(Some(frame)),
            "a decoded frame re-encodes to itself"
        );
        assert!(encoded.is_empty());
    }
});
