//! One module per subcommand.

mod context;
mod digest;
mod dockerfile;
mod gc;
mod image;
mod images;
mod index;
mod plan;
mod serve;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::settings::Workspace;

pub fn dispatch(cli: Cli) -> Result<()> {
    // Commands that work on a single file need no repository.
    if let Command::Dockerfile(args) = &cli.command {
        return dockerfile::run(args);
    }
    if let Command::Serve(args) = &cli.command {
        return serve::run(args);
    }
    // The content store needs no repository.
    if let Command::Image(command) = &cli.command {
        return image::run(&cli.global, command);
    }
    if let Command::Gc(args) = &cli.command {
        return gc::run(&cli.global, args);
    }
    let ws = Workspace::load(&cli.global)?;
    match cli.command {
        Command::Images(args) => images::run(&ws, &args),
        Command::Plan(args) => plan::run(&ws, &args),
        Command::Context(args) => context::run(&ws, &args),
        Command::Digest(args) => digest::run(&ws, &args),
        Command::Index(command) => index::run(&ws, command),
        Command::Dockerfile(_) => unreachable!("handled above"),
        Command::Serve(_) => unreachable!("handled above"),
        Command::Image(_) | Command::Gc(_) => unreachable!("handled above"),
    }
}
