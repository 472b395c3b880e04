//! What the targets that drive async code share: one current-thread tokio runtime per
//! fuzzing process (building one per input would cost more than the input), and the peer
//! that sends an input and hangs up.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Writes `input`, hangs up its sending side, and reads whatever comes back until the
/// other side closes too (each read within 5 s, so a stuck target ends the loop).
pub async fn send_and_hang_up(peer: &mut DuplexStream, input: &[u8]) {
    let _ = peer.write_all(input).await;
    let _ = peer.shutdown().await;
    let mut sink = vec![0u8; 64 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), peer.read(&mut sink)).await {
        if n == 0 {
            break;
        }
    }
}
