//! `kiln plan`: hashes, digests, routes and status of every image. The JSON form is a contract
//! (docs/cli.md): other tools parse it.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::Result;
use kiln_index::{BuildReason, Status};
use kiln_plan::{Plan, PlanEntry, RunScope, Workspace};

use crate::cli::{GlobalArgs, PlanArgs};
use crate::output::stdout;
use crate::settings::{run_scope, warn};
use crate::timeparse::{format_time, parse_time};

/// Hashes the images `names` (and their parents) and forms their routes (kiln_plan), with the progress
/// line on a terminal and the warnings on stderr.
pub fn hash_and_route<'a>(
    ws: &'a Workspace,
    global: &GlobalArgs,
    names: &[String],
    scope: &RunScope,
) -> Result<Vec<PlanEntry<'a>>> {
    let selection = kiln_plan::selection(ws, names)?;
    let started = Instant::now();
    let show_progress = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() && !global.quiet;
    if show_progress {
        eprint!("hashing {} image contexts…", selection.len());
    }
    let entries = kiln_plan::hash_and_route(ws, &selection, scope);
    if show_progress {
        eprint!("\r\x1b[K");
    }
    let entries = entries?;
    tracing::debug!("hashed {} images in {:?}", entries.len(), started.elapsed());
    for entry in &entries {
        warn(global.quiet, ws, &entry.hashes.warnings);
    }
    Ok(entries)
}

fn reason_text(status: &Status) -> String {
    match status {
        Status::Cached(hit) => format!("found at {}", hit.route),
        Status::Build(BuildReason::NotIndexed) => "not in the index".into(),
        Status::Build(BuildReason::ExpiresBeforeDeadline { expires, .. }) => {
            format!(
                "indexed copy expires {} before the deadline",
                format_time(*expires)
            )
        }
        Status::Build(BuildReason::ParentRebuilt { parent }) => format!("parent `{parent}` is built"),
    }
}

pub fn run(ws: &Workspace, global: &GlobalArgs, args: &PlanArgs) -> Result<()> {
    let config = &ws.repo.config;
    let scope = run_scope(&args.scope, config.index.max_level)?;
    let deadline = parse_time(&args.deadline)?.unix_timestamp();
    let entries = hash_and_route(ws, global, &args.names, &scope)?;
    let index = ws.index_for_reading()?;
    let plan = Plan::resolve(entries, index.as_ref(), deadline)?;
    let (entries, statuses) = (&plan.entries, &plan.statuses);

    stdout(|out| {
        if args.json {
            serde_json::to_writer_pretty(&mut *out, &plan.json(ws))?;
            return writeln!(out);
        }
        let width = entries
            .iter()
            .map(|e| e.image.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            out,
            "{:width$}  {:6}  {:16}  {:16}  WHY",
            "IMAGE", "STATUS", "CONTEXT", "DIGEST"
        )?;
        for (e, status) in entries.iter().zip(statuses) {
            writeln!(
                out,
                "{:width$}  {:6}  {:16}  {:16}  {}",
                e.image.name,
                status.label(),
                &e.hashes.context.hex[..16.min(e.hashes.context.hex.len())],
                &e.hashes.digest.hex[..16],
                reason_text(status)
            )?;
        }
        let to_build = plan.to_build();
        writeln!(
            out,
            "{} images: {} cached, {to_build} to build",
            statuses.len(),
            statuses.len() - to_build
        )
    })
}
