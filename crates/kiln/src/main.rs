//! The `kiln` command: parses arguments and dispatches to one module per subcommand.

// The binary is where kiln talks to the user: messages and progress go to stderr (results go to stdout
// through `output::stdout`, which handles a closed pipe).
#![allow(clippy::print_stderr)]

mod cli;
mod commands;
mod output;
mod progress;
mod settings;
mod timeparse;

fn main() -> std::process::ExitCode {
    output::run(cli::parse())
}
