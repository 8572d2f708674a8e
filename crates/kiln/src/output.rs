//! Running a command and reporting its outcome: results on stdout, errors on stderr, exit codes
//! (0 success, 1 failure, 2 usage error from clap). A closed stdout (`kiln plan | head`) is a clean exit.

use std::io::{self, Write};
use std::process::ExitCode;

use crate::cli::Cli;
use crate::commands;

/// Writes to stdout through a lock; a broken pipe becomes [`Closed`].
pub fn stdout(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> anyhow::Result<()> {
    let stdout = io::stdout();
    let mut lock = io::BufWriter::new(stdout.lock());
    match f(&mut lock).and_then(|()| lock.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Closed.into()),
        other => Ok(other?),
    }
}

/// stdout was closed by the reader.
#[derive(Debug)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for Closed {}

pub fn run(cli: Cli) -> ExitCode {
    init_logging();
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Closed>() => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = format!("error: {e}");
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                // Library errors often repeat their source in their own message.
                if !message.contains(&cause) {
                    message.push_str(&format!("\n  caused by: {cause}"));
                }
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .without_time()
        .try_init();
}
