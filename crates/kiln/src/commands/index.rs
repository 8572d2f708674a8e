//! `kiln index`: record built images, list routes, drop expired records.

use anyhow::{Result, bail};
use kiln_index::{ImageRecord, Index, Scope};
use time::OffsetDateTime;

use crate::cli::{IndexAddArgs, IndexCommand, IndexLsArgs};
use crate::commands::plan::hash_and_route;
use crate::output::stdout;
use crate::settings::{RunScope, Workspace};
use crate::timeparse::{format_time, parse_time};

pub fn run(ws: &Workspace, command: IndexCommand) -> Result<()> {
    match command {
        IndexCommand::Add(args) => add(ws, &args),
        IndexCommand::Ls(args) => ls(ws, &args),
        IndexCommand::Gc => {
            let index = ws.index_for_writing()?;
            let removed = index.remove_expired(OffsetDateTime::now_utc().unix_timestamp())?;
            stdout(|out| writeln!(out, "removed {removed} expired routes"))
        }
    }
}

fn add(ws: &Workspace, args: &IndexAddArgs) -> Result<()> {
    let config = &ws.repo.config;
    let scope = RunScope::from_args(&args.scope, config.index.max_level)?;
    let entries = hash_and_route(ws, std::slice::from_ref(&args.image), &scope)?;
    let Some(entry) = entries.into_iter().find(|e| e.image.name == args.image) else {
        bail!("image `{}` was not hashed", args.image);
    };
    if entry.routes.is_empty() {
        bail!(
            "pull requests are not cached in this repository (cache-pull-requests is off): nothing to record"
        );
    }
    let created = scope.build_date.unix_timestamp();
    let expires = match &args.expires {
        Some(text) => parse_time(text)?.unix_timestamp(),
        None => {
            let lifetime = match scope.write_scope() {
                Scope::Level(1) | Scope::PullRequest => config.index.expires_level1_secs,
                Scope::Level(_) => config.index.expires_secs,
            };
            created.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX / 2))
        }
    };
    let record = ImageRecord {
        name: entry.image.name.clone(),
        cache_type: config.hash_mode.cache_type().to_owned(),
        cache_digest: entry.hashes.digest.hex.clone(),
        context_hash: entry.hashes.context.hex.clone(),
        image_digest: args.image_digest.clone(),
        artifact_digest: args.artifact_digest.clone(),
        scope: scope.write_scope(),
        created,
        expires,
    };
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
