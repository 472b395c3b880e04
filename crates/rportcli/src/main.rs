//! The `rportcli` binary: parses the command line, runs it, and turns an error into a
//! message on stderr and a non-zero exit code.

fn main() {
    let cli = rportcli::cli::parse();
    match rportcli::commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("Error: {err}");
            std::process::exit(1);
        }
    }
}
