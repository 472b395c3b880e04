//! The agent's heap on glibc: tunnel buffers reused without system calls while traffic flows,
//! and the memory they leave behind given back to the kernel every few seconds, so that an
//! agent that carried a burst of traffic is as small as one that never did.

use std::time::Duration;

/// Largest allocation served from the heap instead of its own mapping. glibc's default
/// threshold adapts upwards as large buffers are freed; before it has, every 128 KiB to
/// 512 KiB tunnel buffer is mapped and unmapped, a page fault per 4 KiB each time.
const MMAP_THRESHOLD: i32 = 4 << 20;

/// Free memory at the top of the heap that glibc keeps instead of returning it when a block is
/// freed: large, so that freeing during traffic never costs a system call. The periodic trim
/// below returns it once it has stayed unused.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// The agent runs one thread for its work (plus short-lived blocking helpers); more arenas
/// would only spread freed memory over more places.
const ARENA_MAX: i32 = 2;

/// How often [`return_free_memory`] should run.
const TRIM_INTERVAL: Duration = Duration::from_secs(2);

/// Sets glibc's allocator up for tunnel traffic. Call before anything allocates much.
#[allow(unsafe_code)]
pub fn configure() {
    // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Returns the heap's free pages to the kernel; run every [`TRIM_INTERVAL`]. With the live
/// heap of an idle agent under 1 MiB, this is what takes its RSS back from 20-30 MiB after a
/// transfer to where it started; a trim while traffic flows costs a few page faults later.
#[allow(unsafe_code)]
fn return_free_memory() {
    // SAFETY: malloc_trim takes the allocator's own locks; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs [`return_free_memory`] every [`TRIM_INTERVAL`] from now on.
pub fn return_free_memory_periodically() {
    crate::process::every(TRIM_INTERVAL, return_free_memory);
}
