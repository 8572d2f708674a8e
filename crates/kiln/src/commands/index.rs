//! `kiln index`: record built images, list routes, drop expired records.

use anyhow::{Result, bail};
use kiln_index::Index;
use kiln_plan::Workspace;
use time::OffsetDateTime;

use crate::cli::{GlobalArgs, IndexAddArgs, IndexCommand, IndexLsArgs};
use crate::commands::plan::hash_and_route;
use crate::output::stdout;
use crate::settings::run_scope;
use crate::timeparse::{format_time, parse_time};

pub fn run(ws: &Workspace, global: &GlobalArgs, command: IndexCommand) -> Result<()> {
    match command {
        IndexCommand::Add(args) => add(ws, global, &args),
        IndexCommand::Ls(args) => ls(ws, &args),
        IndexCommand::Gc => {
            let index = ws.index_for_writing()?;
            let removed = index.remove_expired(OffsetDateTime::now_utc().unix_timestamp())?;
            stdout(|out| writeln!(out, "removed {removed} expired routes"))
        }
    }
}

fn add(ws: &Workspace, global: &GlobalArgs, args: &IndexAddArgs) -> Result<()> {
    let config = &ws.repo.config;
    let scope = run_scope(&args.scope, config.index.max_level)?;
    let entries = hash_and_route(ws, global, std::slice::from_ref(&args.image), &scope)?;
    let Some(entry) = entries.into_iter().find(|e| e.image.name == args.image) else {
        bail!("image `{}` was not hashed", args.image);
    };
    if entry.routes.is_empty() {
        bail!(
            "pull requests are not cached in this repository (cache-pull-requests is off): nothing to record"
        );
    }
    let expires = args
        .expires
        .as_deref()
        .map(|text| parse_time(text).map(|t| t.unix_timestamp()))
        .transpose()?;
    let record = entry.record(
        ws,
        &scope,
        &args.image_digest,
        args.artifact_digest.as_deref(),
        expires,
    );
    let index = ws.index_for_writing()?;
    index.insert(&entry.routes, &record)?;
    stdout(|out| {
        for route in &entry.routes {
            writeln!(out, "{route}")?;
        }
        Ok(())
    })
}

fn ls(ws: &Workspace, args: &IndexLsArgs) -> Result<()> {
    let index = ws.index_for_reading()?;
    let rows = index.list(&args.prefix)?;
    stdout(|out| {
        if args.json {
            serde_json::to_writer_pretty(&mut *out, &rows)?;
            return writeln!(out);
        }
        for row in &rows {
            writeln!(
                out,
                "{}  {}  {}  expires {}",
                row.route,
                row.record.scope,
                row.record.image_digest,
                format_time(row.record.expires)
            )?;
        }
        Ok(())
    })
}
