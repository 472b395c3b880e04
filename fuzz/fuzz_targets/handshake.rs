//! The server's side of the session handshake on whatever a client sends first: a clean
//! error or a message, never a panic, never an unbounded read.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rport_transport::handshake::read_hello;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let _ = runtime().block_on(read_hello(&mut input));
});
