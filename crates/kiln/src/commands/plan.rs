//! `kiln plan`: hashes, digests, routes and status of every image. The JSON form is a contract
//! (docs/cli.md): other tools parse it.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use kiln_index::{BuildReason, Lookup, Namespace, Status, resolve};
use kiln_tree::{ImageDef, ImageHashes, hash_images, with_ancestors};
use serde::Serialize;

use crate::cli::PlanArgs;
use crate::output::stdout;
use crate::settings::{RunScope, Workspace};
use crate::timeparse::{format_time, parse_time};

/// One image of a plan.
pub struct PlanEntry<'a> {
    pub image: &'a ImageDef,
    pub hashes: ImageHashes,
    pub routes: Vec<String>,
    pub lookup: Vec<String>,
}

impl PlanEntry<'_> {
    /// What the index lookup needs of this entry.
    pub fn lookup(&self) -> Lookup<'_> {
        Lookup {
            name: &self.image.name,
            parent: self.image.parent.as_deref(),
            routes: &self.lookup,
        }
    }
}

/// Hashes the selected images (and their parents) and forms their routes.
pub fn hash_and_route<'a>(
    ws: &'a Workspace,
    names: &[String],
    scope: &RunScope,
) -> Result<Vec<PlanEntry<'a>>> {
    for name in names {
        ws.require_image(name)?;
    }
    let selection = with_ancestors(&ws.repo, names)?;
    let cache = ws.stat_cache();
    let started = Instant::now();
    let show_progress = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() && !ws.quiet;
    if show_progress {
        eprint!("hashing {} image contexts…", selection.len());
    }
    let hashed = hash_images(&ws.repo, &selection, &cache);
    if show_progress {
        eprint!("\r\x1b[K");
    }
    let hashed = hashed?;
    if let Err(e) = cache.save() {
        tracing::warn!("cannot save the stat cache in {}: {e}", ws.state_dir.display());
    }
    tracing::debug!("hashed {} images in {:?}", hashed.len(), started.elapsed());

    let config = &ws.repo.config;
    let cache_type = config.hash_mode.cache_type();
    let mut entries = Vec::with_capacity(hashed.len());
    for hashes in hashed {
        let image = ws.require_image(&hashes.name)?;
        ws.warn(&hashes.warnings);
        let ns = Namespace {
            prefix: &config.index.prefix,
            cache_type,
            name: &image.name,
            digest: &hashes.digest.hex,
        };
        let routes = ns.write_routes(
            scope.write_scope(),
            scope.build_date,
            config.index.cache_pull_requests,
        );
        let lookup = ns.lookup_routes(
            scope.level,
            config.index.max_level,
            scope.pull_request,
            config.index.cache_pull_requests,
        );
        entries.push(PlanEntry {
            image,
            hashes,
            routes,
            lookup,
        });
    }
    Ok(entries)
}

/// One image in `kiln plan --json`; field order and names are the documented contract (docs/cli.md).
#[derive(Serialize)]
struct PlanJson<'a> {
    name: &'a str,
    definition: &'a str,
    folder: &'a Path,
    parent: Option<&'a str>,
    kind: &'static str,
    hash_mode: &'static str,
    context_hash: &'a str,
    context_files: usize,
    context_size: u64,
    context_from_cache: bool,
    cache_type: &'static str,
    cache_digest: &'a str,
    routes: &'a [String],
    lookup: &'a [String],
    status: &'static str,
    reason: Option<&'a BuildReason>,
    found: Option<FoundJson<'a>>,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct FoundJson<'a> {
    route: &'a str,
    image_digest: &'a str,
    artifact_digest: Option<&'a str>,
    scope: String,
    created: String,
    expires: String,
}

impl<'a> PlanJson<'a> {
    fn new(ws: &Workspace, e: &'a PlanEntry<'a>, status: &'a Status) -> Self {
        let mode = ws.repo.config.hash_mode;
        let (reason, found) = match status {
            Status::Build(reason) => (Some(reason), None),
            Status::Cached(hit) => (
                None,
                Some(FoundJson {
                    route: &hit.route,
                    image_digest: &hit.record.image_digest,
                    artifact_digest: hit.record.artifact_digest.as_deref(),
                    scope: hit.record.scope.to_string(),
                    created: format_time(hit.record.created),
                    expires: format_time(hit.record.expires),
                }),
            ),
        };
        PlanJson {
            name: &e.image.name,
            definition: &e.image.definition,
            folder: &e.image.dir,
            parent: e.image.parent.as_deref(),
            kind: e.image.kind.label(),
            hash_mode: mode.as_str(),
            context_hash: &e.hashes.context.hex,
            context_files: e.hashes.files,
            context_size: e.hashes.context.size,
            context_from_cache: e.hashes.context.cached,
            cache_type: mode.cache_type(),
            cache_digest: &e.hashes.digest.hex,
            routes: &e.routes,
            lookup: &e.lookup,
            status: status.label(),
            reason,
            found,
            warnings: e.hashes.warnings.iter().map(ToString::to_string).collect(),
        }
    }
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

pub fn run(ws: &Workspace, args: &PlanArgs) -> Result<()> {
    let config = &ws.repo.config;
    let scope = RunScope::from_args(&args.scope, config.index.max_level)?;
    let deadline = parse_time(&args.deadline)?.unix_timestamp();
    let entries = hash_and_route(ws, &args.names, &scope)?;
    let index = ws.index_for_reading()?;
    let lookups: Vec<Lookup<'_>> = entries.iter().map(PlanEntry::lookup).collect();
    let statuses = resolve(index.as_ref(), &lookups, deadline)?;

    stdout(|out| {
        if args.json {
            let list: Vec<PlanJson<'_>> = entries
                .iter()
                .zip(&statuses)
                .map(|(e, status)| PlanJson::new(ws, e, status))
                .collect();
            serde_json::to_writer_pretty(&mut *out, &list)?;
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
        for (e, status) in entries.iter().zip(&statuses) {
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
        let to_build = statuses.iter().filter(|s| matches!(s, Status::Build(_))).count();
        writeln!(
            out,
            "{} images: {} cached, {to_build} to build",
            statuses.len(),
            statuses.len() - to_build
        )
    })
}
