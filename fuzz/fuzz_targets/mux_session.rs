//! A whole multiplexer session fed whatever a peer sends: frames in any order, for any
//! stream, with any payload. It never panics, and it ends by itself once the peer hangs up.
#![no_main]

mod harness;

use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rport_transport::mux::{self, MuxConfig, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    // The first byte picks the side: the server (refuses agents' streams) or the agent.
    let role = if first & 1 == 1 {
        Role::Agent
    } else {
        Role::Server
    };
    harness::runtime().block_on(async move {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let config = MuxConfig::new(role, Duration::from_secs(30));
        let (handle, mut events, driver) = mux::start(near, BytesMut::new(), config);
        let driver = tokio::spawn(driver.run());
        // Streams the peer opens are read to their end, as the agent's targets would.
        tokio::spawn(async move {
            while let Some(incoming) = events.incoming.recv().await {
                let (mut reader, _writer) = incoming.stream.split();
                tokio::spawn(async move { while let Ok(Some(_)) = reader.recv().await {} });
            }
        });
        harness::send_and_hang_up(&mut far, input).await;
        let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
        assert!(
            ended.is_ok(),
            "the session did not end after the peer hung up"
        );
        drop(handle);
    });
});
