//! Runs ssh through a tunnel and waits for it, passing on the signals rportcli itself
//! receives, so the caller can always delete the tunnel afterwards.

use std::process::Command;
use std::time::Duration;

use crate::terminal;

/// The ssh program: `ssh` from PATH unless RPORTCLI_SSH names another.
fn ssh_program() -> String {
    std::env::var("RPORTCLI_SSH")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "ssh".into())
}

/// `ssh -p PORT [-l USER] HOST ARGS...`; Ok holds ssh's exit code (128 + the signal that
/// ended it). Call [`terminal::catch_signals`] before creating the tunnel.
pub fn run_through_tunnel(
    host: &str,
    port: &str,
    user: Option<&str>,
    args: &[String],
) -> Result<i32, String> {
    if terminal::caught_signal() != 0 {
        return Err("interrupted before ssh started".into());
    }
    let mut command = Command::new(ssh_program());
    command.arg("-p").arg(port);
    if let Some(user) = user {
        command.arg("-l").arg(user);
    }
    command.arg(host).args(args);
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start ssh ({}): {e}; install an ssh client",
            ssh_program()
        )
    })?;
    loop {
        let signal = terminal::caught_signal();
        if signal != 0 {
            // A terminal's Ctrl-C reached ssh too; a signal sent to rportcli alone has to be
            // passed on.
            terminal::send_signal(child.id(), signal);
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                return Ok(status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(1));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(err) => return Err(format!("waiting for ssh: {err}")),
        }
    }
}
