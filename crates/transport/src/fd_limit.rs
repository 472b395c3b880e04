//! File descriptors: raising the open-file limit (every agent session holds one socket,
//! and every tunneled connection one more at each end, so ten thousand agents or a busy
//! agent need far more than the usual soft limit of 1024), and counting those open, so a
//! leak shows. Used by rportd, rport and the load generator.

/// The soft and hard RLIMIT_NOFILE after raising the soft limit to the hard one.
#[allow(unsafe_code)]
pub fn raise_nofile_limit() -> std::io::Result<(libc::rlim_t, libc::rlim_t)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// How many file descriptors this process has open; `None` where `/proc` is missing.
pub fn open_files() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count().saturating_sub(1)) // the directory handle itself
}
