//! One module per subcommand.

mod build;
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
    let global = &cli.global;
    // Only the commands that work on a repository's images load it; the others need none.
    let repo = || Workspace::load(global);
    match cli.command {
        Command::Dockerfile(args) => dockerfile::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Image(command) => image::run(global, &command),
        Command::Gc(args) => gc::run(global, &args),
        Command::Build(args) => build::run(global, &args),
        Command::Images(args) => images::run(&repo()?, &args),
        Command::Plan(args) => plan::run(&repo()?, &args),
        Command::Context(args) => context::run(&repo()?, &args),
        Command::Digest(args) => digest::run(&repo()?, &args),
        Command::Index(command) => index::run(&repo()?, command),
    }
}
