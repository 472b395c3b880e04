//! rportcli as a library: RPort's command-line client re-made against rportd's API. The
//! binary only parses the command line and reports errors; everything else is here.

pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod output;
pub mod ssh;
pub mod terminal;
