//! One module per subcommand.

mod build;
mod context;
mod copy;
mod digest;
mod dockerfile;
mod gc;
mod image;
mod images;
mod index;
mod plan;
mod promote;
mod publish;
mod pull;
mod push;
mod registry;
mod registry_admin;
mod serve;
mod ship;
mod speculative;
mod tag;
mod untag;
mod upload;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub fn dispatch(cli: Cli) -> Result<()> {
    let global = &cli.global;
    // Only the commands that work on a repository's images load it; the others need none.
    let repo = || crate::settings::workspace(global);
    match cli.command {
        Command::Dockerfile(args) => dockerfile::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Registry(command) => registry_admin::run(&command),
        Command::Image(command) => image::run(global, &command),
        Command::Gc(args) => gc::run(global, &args),
        Command::Build(args) => build::run(global, &args),
        Command::Push(args) => push::run(global, &args),
        Command::Pull(args) => pull::run(global, &args),
        Command::Copy(args) => copy::run(global, &args),
        Command::Tag(args) => tag::run(global, &args),
        Command::Promote(args) => promote::run(global, &args),
        Command::Untag(args) => untag::run(global, &args),
        Command::Upload(args) => upload::run(global, &args),
        Command::Publish(args) => publish::run(&repo()?, global, &args),
        Command::Speculative(command) => speculative::run(global, &command),
        Command::Images(args) => images::run(&repo()?, &args),
        Command::Plan(args) => plan::run(&repo()?, global, &args),
        Command::Context(args) => context::run(&repo()?, global, &args),
        Command::Digest(args) => digest::run(&repo()?, global, &args),
        Command::Index(command) => index::run(&repo()?, global, command),
    }
}
