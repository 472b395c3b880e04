//! UDP datagram framing inside a tunnel stream: any bytes, split anywhere, give datagrams
//! or wait for more; never a panic, never a datagram larger than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rport_protocol::datagram::{DatagramDecoder, MAX_DATAGRAM};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split).min(rest.len());
    let mut decoder = DatagramDecoder::default();
    for chunk in [&rest[..cut], &rest[cut..]] {
        decoder.push(chunk);
        while let Some(datagram) = decoder.next_datagram() {
            assert!(datagram.len() <= MAX_DATAGRAM);
        }
    }
});
