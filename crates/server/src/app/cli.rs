//! Command-line flags and subcommands of rportd.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "rportd",
    version,
    about = "Remote access server: agents connect out to it, operators open tunnels through its API"
)]
pub struct ServerArgs {
    /// TOML configuration file; without it rportd runs on its embedded default.
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Overrides `[server] data_dir`.
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Overrides `[logging] log_level` (error, warn, info, debug, trace).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Without a command, rportd runs the server.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage API users in the data dir's database, for when the API is out of reach.
    #[command(subcommand)]
    User(UserCommand),
    /// Copy a single server's SQLite database (its data dir or rportd.db) into the empty
    /// database `[database]` names, to move to PostgreSQL and a cluster.
    Migrate {
        #[arg(long, value_name = "PATH")]
        from_sqlite: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints a generated password unless --password-stdin is given.
    Add {
        username: String,
        /// A server-wide administrator (users, projects, every project).
        #[arg(long)]
        admin: bool,
        /// A role in a project: viewer, tunnels or admin. Repeatable.
        #[arg(long = "role", value_name = "PROJECT=ROLE")]
        roles: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users, their roles and where they are defined.
    List,
    /// Set a user's password; prints a generated one unless --password-stdin is given.
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user with its API tokens.
    Delete { username: String },
}
