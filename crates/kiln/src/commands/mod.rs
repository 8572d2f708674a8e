//! One module per subcommand.

mod context;
mod digest;
mod images;
mod index;
mod plan;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::settings::Workspace;

pub fn dispatch(cli: Cli) -> Result<()> {
    let ws = Workspace::load(&cli.global)?;
    match cli.command {
        Command::Images(args) => images::run(&ws, &args),
        Command::Plan(args) => plan::run(&ws, &args),
        Command::Context(args) => context::run(&ws, &args),
        Command::Digest(args) => digest::run(&ws, &args),
        Command::Index(command) => index::run(&ws, command),
    }
}
