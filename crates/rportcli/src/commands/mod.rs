//! Runs a parsed command line: settings, the API client, the command, its output.

mod clients;
mod port_tunnels;
mod session;
mod ssh_command;
mod tunnels;

use std::time::Duration;

use serde_json::Value;

use crate::api::{ApiClient, ApiError};
use crate::cli::{Cli, Command};
use crate::config::{ConfigError, Settings, process_env};
use crate::output::{self, Format};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

/// What every command shares: how to print and how to reach the API.
pub struct Context {
    pub format: Format,
    pub width: Option<usize>,
    pub project: Option<String>,
    pub timeout: Option<Duration>,
    pub verbose: bool,
}

impl Context {
    /// A client with the settings from the config file and the environment.
    pub fn api(&self) -> Result<ApiClient, CommandError> {
        let settings = Settings::resolve(&process_env)?;
        Ok(ApiClient::new(
            &settings.server_url,
            Some(&settings.credentials),
            settings.source,
            self.timeout,
            self.verbose,
        )?)
    }

    /// Prints `value` as JSON or YAML, or as `human` renders it.
    pub fn print(&self, value: &Value, human: impl FnOnce(Option<usize>) -> String) {
        match output::machine_text(self.format, value) {
            Some(text) => print!("{text}"),
            None => print!("{}", human(self.width)),
        }
    }
}

/// `10`, `10s`, `1m` or `2h`.
pub fn parse_timeout(text: &str) -> Result<Duration, CommandError> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1),
        Some((at, 'm')) => (&text[..at], 60),
        Some((at, 'h')) => (&text[..at], 3600),
        _ => (text, 1),
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| Duration::from_secs(n * unit))
        .ok_or_else(|| {
            CommandError::Usage(format!(
                "--timeout {text:?}: give seconds (10s), minutes (1m) or hours (2h)"
            ))
        })
}

/// Runs the command; Ok holds the exit code (ssh's own, for the commands that run it).
pub fn run(cli: Cli) -> Result<i32, CommandError> {
    let format = Format::parse(&cli.output, cli.json_pretty).map_err(CommandError::Usage)?;
    let context = Context {
        format,
        width: crate::terminal::width(),
        project: cli.project.filter(|p| !p.is_empty()),
        timeout: cli.timeout.as_deref().map(parse_timeout).transpose()?,
        verbose: cli.verbose,
    };
    match cli.command {
        Command::Init(args) => session::init(&context, &args).map(|()| 0),
        Command::Me => session::me(&context).map(|()| 0),
        Command::Status => session::status(&context).map(|()| 0),
        Command::Version => {
            session::version(&context);
            Ok(0)
        }
        Command::Client(command) => clients::run(&context, &command).map(|()| 0),
        Command::Tunnel(command) => tunnels::run(&context, &command),
        Command::Ssh(args) => ssh_command::run(&context, &args),
        Command::PortTunnel(command) => port_tunnels::run(&context, &command).map(|()| 0),
    }
}

/// The `data` of an RPort answer.
pub fn data(answer: Value) -> Value {
    match answer {
        Value::Object(mut map) => map.remove("data").unwrap_or(Value::Null),
        other => other,
    }
}

/// `text` safe to put in a URL path.
pub fn path_segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
