//! The heap where mimalloc is the allocator (rportd always, the agent off glibc): what a
//! burst of traffic freed is given back to the kernel once the burst is over.
//!
//! mimalloc gives freed pages back only after a delay (1 s), and it checks whether that delay
//! has passed only inside later allocator calls. A process that goes quiet after a burst
//! makes hardly any, so without a nudge it keeps everything the burst freed: rportd after
//! 2,000 stalled tunnel connections closed stayed at 480-600 MiB in about half the runs of
//! the fault suite, where the others fell back to 30-50 MiB.

use std::time::Duration;

/// How often [`return_free_memory`] should run. Each call walks the calling thread's pages
/// and purges what has waited out mimalloc's delay, which allocation would have done anyway
/// while traffic flows, so it costs nothing then.
const COLLECT_INTERVAL: Duration = Duration::from_secs(2);

/// Lets mimalloc give back what waited out its delay; run every [`COLLECT_INTERVAL`]. The
/// purge covers the memory of every thread; pages still held by another thread's heap wait
/// for that thread's next allocation.
#[allow(unsafe_code)]
fn return_free_memory() {
    // SAFETY: mi_collect touches only the calling thread's heap and the shared arenas, which
    // it locks itself; any thread may call it at any time.
    unsafe { libmimalloc_sys::mi_collect(false) };
}

/// Runs [`return_free_memory`] every [`COLLECT_INTERVAL`] from now on.
pub fn return_free_memory_periodically() {
    crate::process::every(COLLECT_INTERVAL, return_free_memory);
}
