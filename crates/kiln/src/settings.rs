//! Flags to library settings: the workspace (kiln_plan::Workspace) and the trust scope of a run.

use anyhow::Result;
use kiln_plan::{RunScope, Workspace, WorkspaceOptions};
use kiln_tree::{HashMode, Warning};

use crate::cli::{GlobalArgs, HashModeArg, ScopeArgs};
use crate::timeparse::parse_time;

/// The workspace the global flags name.
pub fn workspace(global: &GlobalArgs) -> Result<Workspace> {
    Ok(Workspace::load(&WorkspaceOptions {
        repo: global.repo.clone(),
        images_dir: global.images.clone(),
        hash_mode: global.hash_mode.map(|m| match m {
            HashModeArg::Taskgraph => HashMode::Taskgraph,
            HashModeArg::Native => HashMode::Native,
        }),
        run_task_dir: global.run_task_dir.clone(),
        state_dir: global.state_dir.clone(),
        index: global.index.clone(),
    })?)
}

/// The scope `--level`, `--pull-request` and `--build-date` name, checked against the repository.
pub fn run_scope(args: &ScopeArgs, max_level: u8) -> Result<RunScope> {
    Ok(RunScope::new(
        args.level,
        args.pull_request,
        parse_time(&args.build_date)?,
        max_level,
    )?)
}

/// Prints the warnings not printed before (unless `--quiet`).
pub fn warn(global_quiet: bool, ws: &Workspace, warnings: &[Warning]) {
    if global_quiet {
        return;
    }
    for warning in ws.fresh_warnings(warnings) {
        eprintln!("warning: {warning}");
    }
}
