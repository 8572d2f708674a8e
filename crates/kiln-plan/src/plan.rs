//! The plan: every selected image (parents first) with its hashes, the routes a build writes, the routes
//! a lookup searches, and its status in the index. The JSON form ([`PlanJson`]) is a contract
//! (docs/cli.md): other tools parse it.

use std::collections::BTreeSet;
use std::path::Path;

use kiln_index::{BuildReason, ImageRecord, Index, Lookup, Namespace, Status, resolve};
use kiln_tree::{ImageDef, ImageHashes, hash_images, with_ancestors};
use serde::Serialize;

use crate::time::format_time;
use crate::{PlanError, RunScope, Workspace};

/// One image of a plan.
#[derive(Debug)]
pub struct PlanEntry<'a> {
    /// Its definition.
    pub image: &'a ImageDef,
    /// Its context hash and cache digest.
    pub hashes: ImageHashes,
    /// The routes a build of it in this scope writes.
    pub routes: Vec<String>,
    /// The routes a lookup in this scope searches, most trusted first.
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

    /// The record a build of this image in `scope` writes: the repository's expiry policy unless
    /// `expires` says otherwise.
    pub fn record(
        &self,
        ws: &Workspace,
        scope: &RunScope,
        image_digest: &str,
        artifact_digest: Option<&str>,
        expires: Option<i64>,
    ) -> ImageRecord {
        let config = &ws.repo.config;
        ImageRecord {
            name: self.image.name.clone(),
            cache_type: config.hash_mode.cache_type().to_owned(),
            cache_digest: self.hashes.digest.hex.clone(),
            context_hash: self.hashes.context.hex.clone(),
            image_digest: image_digest.to_owned(),
            artifact_digest: artifact_digest.map(str::to_owned),
            scope: scope.write_scope(),
            created: scope.build_date.unix_timestamp(),
            expires: expires.unwrap_or_else(|| scope.expires(config)),
        }
    }
}

/// The images `names` and their ancestors, checked to exist.
pub fn selection(ws: &Workspace, names: &[String]) -> Result<BTreeSet<String>, PlanError> {
    for name in names {
        ws.require_image(name)?;
    }
    Ok(with_ancestors(&ws.repo, names)?)
}

/// Hashes the images of `selection` (parents first) and forms their routes in `scope`.
pub fn hash_and_route<'a>(
    ws: &'a Workspace,
    selection: &BTreeSet<String>,
    scope: &RunScope,
) -> Result<Vec<PlanEntry<'a>>, PlanError> {
    let cache = ws.stat_cache();
    let hashed = hash_images(&ws.repo, selection, &cache)?;
    if let Err(e) = cache.save() {
        tracing::warn!("cannot save the stat cache in {}: {e}", ws.state_dir.display());
    }
    let config = &ws.repo.config;
    let cache_type = config.hash_mode.cache_type();
    let mut entries = Vec::with_capacity(hashed.len());
    for hashes in hashed {
        let image = ws.require_image(&hashes.name)?;
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

/// Hashed entries with their status in an index.
#[derive(Debug)]
pub struct Plan<'a> {
    /// The images, parents first.
    pub entries: Vec<PlanEntry<'a>>,
    /// Each entry's status, in the same order.
    pub statuses: Vec<Status>,
}

impl<'a> Plan<'a> {
    /// Looks `entries` up in `index`: a record usable until `deadline` (Unix time) makes an image
    /// cached; a child of a rebuilt image is rebuilt.
    pub fn resolve(entries: Vec<PlanEntry<'a>>, index: &dyn Index, deadline: i64) -> Result<Self, PlanError> {
        let lookups: Vec<Lookup<'_>> = entries.iter().map(PlanEntry::lookup).collect();
        let statuses = resolve(index, &lookups, deadline)?;
        Ok(Plan { entries, statuses })
    }

    /// The entry of the image `name`.
    pub fn entry(&self, name: &str) -> Option<&PlanEntry<'a>> {
        self.entries.iter().find(|e| e.image.name == name)
    }

    /// How many images the plan builds.
    pub fn to_build(&self) -> usize {
        self.statuses
            .iter()
            .filter(|s| matches!(s, Status::Build(_)))
            .count()
    }

    /// The images a `kiln build` of `wanted` builds: those the plan marks `build` (or every wanted one
    /// with `force`) unless an unwanted one is already in the store, and every image a child being built
    /// needs as its base that the store lacks. `in_store` tells whether an entry's image is in the store.
    pub fn build_set<E>(
        &self,
        wanted: &BTreeSet<&str>,
        force: bool,
        in_store: impl Fn(&PlanEntry<'_>) -> Result<bool, E>,
    ) -> Result<BTreeSet<String>, E> {
        let mut build: BTreeSet<String> = BTreeSet::new();
        for (entry, status) in self.entries.iter().zip(&self.statuses).rev() {
            let name = entry.image.name.as_str();
            let in_store = in_store(entry)?;
            let needed_by_child = build.iter().any(|b| {
                self.entries
                    .iter()
                    .any(|e| e.image.name == *b && e.image.parent.as_deref() == Some(name))
            });
            let planned = matches!(status, Status::Build(_)) || (force && wanted.contains(name));
            if (planned && (wanted.contains(name) || !in_store || needed_by_child))
                || (needed_by_child && !in_store)
            {
                build.insert(name.to_owned());
            }
        }
        Ok(build)
    }

    /// The plan in its JSON form (docs/cli.md).
    pub fn json(&self, ws: &Workspace) -> Vec<PlanJson<'_>> {
        self.entries
            .iter()
            .zip(&self.statuses)
            .map(|(e, status)| PlanJson::new(ws, e, status))
            .collect()
    }
}

/// One image in `kiln plan --json`; field order and names are the documented contract (docs/cli.md).
#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
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

#[derive(Debug, Serialize)]
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
