//! What both binaries do around their work: set up logging, raise the open-file limit,
//! report their usage when asked (SIGUSR2), run housekeeping every few seconds, and wait
//! for a signal to stop.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// A log line is cut past this many bytes. Callers bound what they log from the network
/// (`bounded` in rport-server's domain layer); this holds for any field a caller forgot.
const MAX_LOG_LINE: usize = 16 * 1024;

/// Raises the soft open-file limit to the hard one, and says what it is: with the usual
/// soft limit of 1024 a server stops accepting agents and connections long before its
/// hardware does.
pub fn raise_open_file_limit() {
    match rport_transport::fd_limit::raise_nofile_limit() {
        Ok((soft, _)) => tracing::debug!("open-file limit {soft}"),
        Err(err) => tracing::warn!("could not raise the open-file limit: {err}"),
    }
}

/// Logs at `level` (RUST_LOG, if set, takes precedence) to stderr or, when given, to `file`.
pub fn init_logging(level: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .with_context(|| format!("log_level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log_file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(BoundedLines(Mutex::new(file)))
                .init();
        }
        None => {
            // Colours only for a person at a terminal, not for journald or a log collector.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder
                .with_ansi(ansi)
                .with_writer(BoundedLines(std::io::stderr))
                .init()
        }
    }
    Ok(())
}

/// Hands out writers that cut each log line at [`MAX_LOG_LINE`] bytes: the formatter
/// takes one writer per event and writes the event's line to it.
struct BoundedLines<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for BoundedLines<M> {
    type Writer = BoundedLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        BoundedLine {
            inner: self.0.make_writer(),
            written: 0,
            cut: 0,
        }
    }
}

/// One event's line: what fits is written, the rest counted and replaced, when the
/// writer is done, by a marker ending the line.
struct BoundedLine<W: std::io::Write> {
    inner: W,
    written: usize,
    cut: usize,
}

impl<W: std::io::Write> std::io::Write for BoundedLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = MAX_LOG_LINE - self.written;
        if self.cut == 0 && buf.len() <= room {
            let n = self.inner.write(buf)?;
            self.written += n;
            return Ok(n);
        }
        if self.cut == 0 {
            // Cut on a UTF-8 character boundary.
            let mut keep = room;
            while keep > 0 && buf.get(keep).is_some_and(|b| b & 0xC0 == 0x80) {
                keep -= 1;
            }
            self.inner.write_all(&buf[..keep])?;
            self.written += keep;
            self.cut = buf.len() - keep;
        } else {
            self.cut += buf.len();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: std::io::Write> Drop for BoundedLine<W> {
    fn drop(&mut self) {
        if self.cut > 0 {
            let _ = writeln!(self.inner, "…(log line cut: +{} bytes)", self.cut);
        }
    }
}

/// Cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        trigger.cancel();
    });
    token
}

/// On SIGUSR2, logs how many tasks and file descriptors the process holds: what an
/// operator (or a test) compares before and after a burst of traffic to see a leak.
/// Calls `task` every `interval` on the runtime, for as long as the process runs; a late
/// call does not make the next ones come sooner.
pub fn every(interval: std::time::Duration, task: fn()) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            task();
        }
    });
}

pub fn report_usage_on_signal() {
    #[cfg(unix)]
    tokio::spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
            return;
        };
        while usr2.recv().await.is_some() {
            let tasks = tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks();
            let files = rport_transport::fd_limit::open_files()
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
            tracing::info!("usage: {tasks} tasks, {files} open files");
        }
    });
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what is written, for a look afterwards.
    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<u8>>>);

    impl Write for Collected {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn long_log_lines_are_cut_and_end_with_a_marker() {
        let out = Collected::default();
        let make = {
            let out = out.clone();
            BoundedLines(move || out.clone())
        };
        let write = |line: &str| {
            let mut writer = make.make_writer();
            writer.write_all(line.as_bytes()).expect("write");
        };
        write("short line\n");
        let long = format!("{}é{}\n", "a".repeat(MAX_LOG_LINE - 1), "b".repeat(300_000));
        write(&long);
        write("next\n");
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "short line");
        assert!(lines[1].starts_with(&"a".repeat(MAX_LOG_LINE - 1)));
        assert!(
            lines[1].ends_with("…(log line cut: +300003 bytes)"),
            "{}",
            &lines[1][MAX_LOG_LINE - 10..]
        );
        assert_eq!(lines[2], "next");
        assert_eq!(lines.len(), 3);
    }
}
