//! The few things rportcli asks of the terminal and of signals: its width, reading a
//! password without echo, and noting Ctrl-C while ssh runs. The system calls are here,
//! each behind a safe function.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicI32, Ordering};

/// The width tables must fit: COLUMNS, else the terminal's width when stdout is one,
/// else None (piped output is not cut).
pub fn width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0)
    {
        return Some(columns);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    window_columns()
}

#[allow(unsafe_code)]
fn window_columns() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let result = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (result == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// Whether a person may be asked: stdin is a terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Prints `prompt` on stderr and reads one line from stdin.
pub fn prompt_line(prompt: &str) -> std::io::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Like [`prompt_line`] with the terminal's echo off, so the password is never shown.
pub fn prompt_secret(prompt: &str) -> std::io::Result<String> {
    let saved = echo_off();
    let answer = prompt_line(prompt);
    if let Some(saved) = saved {
        restore(&saved);
        eprintln!();
    }
    answer
}

#[allow(unsafe_code)]
fn echo_off() -> Option<libc::termios> {
    // SAFETY: tcgetattr fills the zeroed termios we own; tcsetattr reads it.
    unsafe {
        let mut saved: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
            return None;
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) != 0 {
            return None;
        }
        Some(saved)
    }
}

#[allow(unsafe_code)]
fn restore(saved: &libc::termios) {
    // SAFETY: tcsetattr reads the termios tcgetattr gave.
    unsafe {
        libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
    }
}

/// The last of SIGINT, SIGTERM or SIGHUP received since [`catch_signals`], or 0.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn note_signal(signal: libc::c_int) {
    CAUGHT.store(signal, Ordering::SeqCst);
}

/// From now on SIGINT, SIGTERM and SIGHUP only note themselves (see [`caught_signal`]),
/// so rportcli outlives them and cleans up. A handler, not SIG_IGN: a child started
/// afterwards (ssh) gets the default dispositions back at exec.
#[allow(unsafe_code)]
pub fn catch_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The signal caught since [`catch_signals`], taken (0 when none).
pub fn caught_signal() -> i32 {
    CAUGHT.swap(0, Ordering::SeqCst)
}

/// Sends `signal` to the process `pid` (a child rportcli started).
#[allow(unsafe_code)]
pub fn send_signal(pid: u32, signal: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory effects; pid is our own child's.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}
