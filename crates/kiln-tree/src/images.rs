//! Hashes a whole repository: contexts of independent images are collected and hashed in parallel, then
//! cache digests are folded in dependency order (a child's digest needs its parent's).

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;

use crate::context::collect;
use crate::digest::{CacheDigest, ParentDigest, cache_digest};
use crate::error::{TreeError, Warning};
use crate::hash::{ContextHash, context_hash};
use crate::repo::Repo;
use crate::stat_cache::StatCache;

/// One image's hashes.
#[derive(Debug, Clone)]
pub struct ImageHashes {
    /// The image name.
    pub name: String,
    /// The context hash.
    pub context: ContextHash,
    /// The cache digest.
    pub digest: CacheDigest,
    /// Number of files in the context.
    pub files: usize,
    /// Hazards found while collecting the context.
    pub warnings: Vec<Warning>,
    /// Where the run-task files of `# %include-run-task` came from, when the image has them.
    pub run_task: Option<crate::run_task::RunTask>,
}

/// The names in `wanted` and all their ancestors; every image when `wanted` is empty.
pub fn with_ancestors(repo: &Repo, wanted: &[String]) -> Result<BTreeSet<String>, TreeError> {
    if wanted.is_empty() {
        return Ok(repo.images.iter().map(|i| i.name.clone()).collect());
    }
    let mut out = BTreeSet::new();
    for name in wanted {
        let mut current = Some(name.clone());
        while let Some(n) = current {
            let image = repo.image(&n).ok_or_else(|| TreeError::UnknownImage {
                name: n.clone(),
                root: repo.config.root.clone(),
            })?;
            out.insert(n);
            current = image.parent.clone();
        }
    }
    Ok(out)
}

/// Hashes the images named in `selection` (with their ancestors), in dependency order.
pub fn hash_images(
    repo: &Repo,
    selection: &BTreeSet<String>,
    cache: &StatCache,
) -> Result<Vec<ImageHashes>, TreeError> {
    let images: Vec<_> = repo
        .images
        .iter()
        .filter(|i| selection.contains(&i.name))
        .collect();
    let contexts: Vec<_> = images
        .par_iter()
        .map(|image| {
            let ctx = collect(&repo.config, image)?;
            let hash = context_hash(&ctx, cache)?;
            Ok((ctx.entries.len(), ctx.warnings, ctx.run_task, hash))
        })
        .collect::<Vec<Result<_, TreeError>>>();

    let mut digests: BTreeMap<&str, String> = BTreeMap::new();
    let mut out = Vec::with_capacity(images.len());
    for (image, result) in images.iter().zip(contexts) {
        let (files, warnings, run_task, context) = result?;
        let parent = image
            .parent
            .as_deref()
            .and_then(|p| digests.get(p).map(|d| ParentDigest { name: p, digest: d }));
        let digest = cache_digest(&repo.config, &context.hex, &image.args, parent);
        digests.insert(&image.name, digest.hex.clone());
        out.push(ImageHashes {
            name: image.name.clone(),
            context,
            digest,
            files,
            warnings,
            run_task,
        });
    }
    Ok(out)
}
