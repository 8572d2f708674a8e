//! Running a command and reporting its outcome: results on stdout, errors on stderr, exit codes
//! (0 success, 1 failure, 2 usage error from clap). A closed stdout (`kiln plan | head`) is a clean exit.

use std::io::{self, Write};
use std::process::ExitCode;

use crate::cli::{Cli, Command};
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
    // `kiln serve` sets up its own logging once its settings are read (access logs, --log-format).
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging();
    }
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

/// `kiln serve`'s logging: the access log and registry events (info) on stderr by default, timestamped,
/// as text or one JSON object per line; `KILN_LOG` (a tracing filter) overrides the levels.
pub fn init_serve_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kiln_registry=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        // A closed stderr must not take requests down: tracing would report the failed write with
        // eprintln!, which panics on a closed stderr.
        .log_internal_errors(false)
        .with_writer(io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
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
