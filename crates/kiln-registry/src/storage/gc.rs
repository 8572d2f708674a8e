//! Garbage collection and consistency checks of a filesystem registry root (`docs/registry-storage.md`).
//!
//! GC marks from every tag (and from every manifest or layer link younger than the grace period, which
//! covers pushes in flight), walks image manifests to their config and layers, indexes to their children,
//! and live manifests to their referrers, then removes what nothing reaches: manifest and layer links
//! older than the grace period, blobs that no remaining link names, and abandoned uploads. Tags matching
//! an expiry rule are removed first when they are older than the rule says.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use globset::{GlobBuilder, GlobMatcher};
use kiln_oci::manifest::{ManifestKind, parse_manifest};
use kiln_oci::{Algorithm, Digest};

use super::fs::list_names;
use super::{FsStorage, Storage as _, StorageError};
use crate::names::{RepoName, Tag};

/// A tag retention rule: tags matching `pattern` (a glob over the tag) expire `after` their last push.
#[derive(Debug, Clone)]
pub struct TagExpiry {
    text: String,
    matcher: GlobMatcher,
    after: Duration,
}

impl TagExpiry {
    /// A rule from a glob (`change_*`) and a duration.
    pub fn new(pattern: &str, after: Duration) -> Result<TagExpiry, StorageError> {
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| StorageError::Corrupt {
                path: pattern.to_owned(),
                reason: format!("invalid tag pattern: {}", e.kind()),
            })?
            .compile_matcher();
        Ok(TagExpiry {
            text: pattern.to_owned(),
            matcher,
            after,
        })
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.text
    }
}

/// What a GC run does.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report only; remove nothing.
    pub dry_run: bool,
    /// Links, uploads and blobs younger than this are kept whatever references them.
    pub grace: Duration,
    /// Tag retention rules.
    pub expire_tags: Vec<TagExpiry>,
}

impl Default for GcOptions {
    fn default() -> GcOptions {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
            expire_tags: Vec::new(),
        }
    }
}

/// What a GC run removed (or, dry, would remove).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// `repository:tag` of expired tags.
    pub expired_tags: Vec<String>,
    /// `repository@digest` of manifests unlinked.
    pub manifests: Vec<String>,
    /// `repository@digest` of layer links removed.
    pub layer_links: Vec<String>,
    /// Blobs deleted.
    pub blobs: Vec<String>,
    /// Their total size.
    pub bytes: u64,
    /// Abandoned upload sessions and ingest files removed.
    pub uploads: Vec<String>,
}

/// One inconsistency found by [`FsStorage::fsck`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The file at fault.
    pub path: String,
    /// What is wrong.
    pub problem: String,
}

fn age(path: &Path, now: SystemTime) -> io::Result<Duration> {
    let modified = fs_err::metadata(path)?.modified()?;
    Ok(now.duration_since(modified).unwrap_or(Duration::ZERO))
}

/// `(digest, path)` of the link files under `dir/<alg>/<hex>`.
fn links(dir: &Path) -> io::Result<Vec<(Digest, PathBuf)>> {
    let mut out = Vec::new();
    for alg in Algorithm::ALL {
        let sub = dir.join(alg.name());
        for name in list_names(&sub)? {
            if let Ok(d) = Digest::new(alg, &name) {
                out.push((d, sub.join(name)));
            }
        }
    }
    Ok(out)
}

fn remove(path: &Path, dry_run: bool) -> io::Result<()> {
    if dry_run {
        return Ok(());
    }
    match fs_err::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl FsStorage {
    /// Collects garbage (see the module documentation). Safe to run while the server runs: anything
    /// younger than `options.grace` is kept.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport, StorageError> {
        let now = SystemTime::now();
        let mut report = GcReport::default();
        let repos: Vec<RepoName> = self
            .repositories()?
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect();
        let mut live_blobs: BTreeSet<Digest> = BTreeSet::new();
        for repo in &repos {
            let dir = self.repo_dir(repo);
            // Tag retention first: an expired tag is no root.
            let mut roots: VecDeque<Digest> = VecDeque::new();
            for name in list_names(&dir.join("_tags"))? {
                let Ok(tag) = name.parse::<Tag>() else { continue };
                let path = self.tag_file(repo, &tag);
                if let Some(rule) = options.expire_tags.iter().find(|r| r.matcher.is_match(&name))
                    && age(&path, now)? > rule.after
                {
                    remove(&path, options.dry_run)?;
                    report.expired_tags.push(format!("{repo}:{name}"));
                    tracing::info!(%repo, tag = %name, rule = %rule.text, "expired tag");
                    continue;
                }
                if let Some(d) = self.read_tag(repo, &tag)? {
                    roots.push_back(d);
                }
            }
            let manifests = links(&dir.join("_manifests"))?;
            for (d, path) in &manifests {
                if age(path, now)? < options.grace {
                    roots.push_back(d.clone());
                }
            }
            // Mark: images → blobs, indexes → children, every live manifest → its referrers.
            let mut live: BTreeSet<Digest> = BTreeSet::new();
            let mut repo_blobs: BTreeSet<Digest> = BTreeSet::new();
            while let Some(d) = roots.pop_front() {
                if !live.insert(d.clone()) {
                    continue;
                }
                for name in list_names(&self.referrer_dir(repo, &d))? {
                    if let Some((alg, hex)) = name.split_once('-')
                        && let Some(alg) = Algorithm::from_name(alg)
                        && let Ok(r) = Digest::new(alg, hex)
                    {
                        roots.push_back(r);
                    }
                }
                let Some(bytes) = self.blob_store().read_verified(&d).ok().flatten() else {
                    continue;
                };
                let Ok(refs) = parse_manifest(&bytes, None) else {
                    continue;
                };
                match refs.kind {
                    ManifestKind::Image => repo_blobs.extend(refs.blobs.into_iter().map(|b| b.digest)),
                    ManifestKind::Index => roots.extend(refs.manifests.into_iter().map(|m| m.digest)),
                }
            }
            // Sweep this repository's links.
            for (d, path) in manifests {
                if live.contains(&d) {
                    continue;
                }
                remove(&path, options.dry_run)?;
                report.manifests.push(format!("{repo}@{d}"));
            }
            for (d, path) in links(&dir.join("_layers"))? {
                if repo_blobs.contains(&d) || age(&path, now)? < options.grace {
                    live_blobs.insert(d);
                    continue;
                }
                remove(&path, options.dry_run)?;
                report.layer_links.push(format!("{repo}@{d}"));
            }
            // Referrer entries whose manifest is gone.
            for (_, subject_dir) in links(&dir.join("_referrers"))? {
                for name in list_names(&subject_dir)? {
                    let referrer = name
                        .split_once('-')
                        .and_then(|(a, h)| Digest::new(Algorithm::from_name(a)?, h).ok());
                    if referrer.is_none_or(|r| !live.contains(&r)) {
                        remove(&subject_dir.join(&name), options.dry_run)?;
                    }
                }
            }
            live_blobs.extend(live);
        }
        // Blobs nothing names any more.
        for d in self.blob_store().list()? {
            let path = self.blob_store().blob_path(&d);
            if live_blobs.contains(&d) || age(&path, now)? < options.grace {
                continue;
            }
            report.bytes += fs_err::metadata(&path)?.len();
            remove(&path, options.dry_run)?;
            report.blobs.push(d.to_string());
        }
        // Abandoned uploads and ingest files.
        for (dir, is_session) in [
            (self.root().join("uploads"), true),
            (self.root().join("ingest"), false),
        ] {
            for name in list_names(&dir)? {
                let path = dir.join(&name);
                let newest = if is_session {
                    age(&path.join("data"), now).or_else(|_| age(&path, now))?
                } else {
                    age(&path, now)?
                };
                if newest < options.grace {
                    continue;
                }
                if !options.dry_run {
                    if is_session {
                        self.forget_upload(&name);
                        fs_err::remove_dir_all(&path)?;
                    } else {
                        remove(&path, false)?;
                    }
                }
                report.uploads.push(path.display().to_string());
            }
        }
        Ok(report)
    }

    /// Checks every blob's digest and every tag, manifest, layer and referrer link; returns the problems.
    pub fn fsck(&self) -> Result<Vec<Problem>, StorageError> {
        let mut problems = Vec::new();
        let mut problem = |path: &Path, what: String| {
            problems.push(Problem {
                path: path.display().to_string(),
                problem: what,
            });
        };
        let store = self.blob_store();
        let mut present = BTreeSet::new();
        for alg in Algorithm::ALL {
            let dir = self.root().join("blobs").join(alg.name());
            for name in list_names(&dir)? {
                let path = dir.join(&name);
                let Ok(d) = Digest::new(alg, &name) else {
                    problem(&path, format!("not a {alg} digest name"));
                    continue;
                };
                match store.verify(&d) {
                    Ok(true) => {
                        present.insert(d);
                    }
                    Ok(false) => {}
                    Err(e) => problem(&path, format!("content does not match its name: {e}")),
                }
            }
        }
        for repo in self.repositories()? {
            let Ok(repo) = repo.parse::<RepoName>() else {
                continue;
            };
            let dir = self.repo_dir(&repo);
            let layers: BTreeMap<Digest, PathBuf> = links(&dir.join("_layers"))?.into_iter().collect();
            let manifests: BTreeMap<Digest, PathBuf> = links(&dir.join("_manifests"))?.into_iter().collect();
            for (d, path) in &layers {
                if !present.contains(d) {
                    problem(path, format!("links blob {d}, which is missing or corrupt"));
                }
            }
            for name in list_names(&dir.join("_tags"))? {
                let path = dir.join("_tags").join(&name);
                let text = fs_err::read_to_string(&path)?;
                match text.trim().parse::<Digest>() {
                    Err(e) => problem(&path, format!("not a digest: {e}")),
                    Ok(d) if !manifests.contains_key(&d) => {
                        problem(
                            &path,
                            format!("points at manifest {d}, which repository {repo} does not have"),
                        );
                    }
                    Ok(_) => {}
                }
            }
            for (d, path) in &manifests {
                if !present.contains(d) {
                    problem(path, format!("manifest {d} is missing or corrupt in blobs/"));
                    continue;
                }
                let bytes = store.read_verified(d)?.unwrap_or_default();
                let refs = match parse_manifest(&bytes, None) {
                    Ok(r) => r,
                    Err(e) => {
                        problem(path, format!("manifest {d} does not parse: {e}"));
                        continue;
                    }
                };
                for b in &refs.blobs {
                    if !layers.contains_key(&b.digest) || !present.contains(&b.digest) {
                        problem(
                            path,
                            format!(
                                "manifest {d} references blob {}, absent from repository {repo}",
                                b.digest
                            ),
                        );
                    }
                }
                for m in &refs.manifests {
                    if !manifests.contains_key(&m.digest) {
                        problem(
                            path,
                            format!(
                                "index {d} references manifest {}, absent from repository {repo}",
                                m.digest
                            ),
                        );
                    }
                }
            }
            for (subject, dir) in links(&dir.join("_referrers"))? {
                for name in list_names(&dir)? {
                    let referrer = name
                        .split_once('-')
                        .and_then(|(a, h)| Digest::new(Algorithm::from_name(a)?, h).ok());
                    if referrer.is_none_or(|r| !manifests.contains_key(&r)) {
                        problem(
                            &dir.join(&name),
                            format!("referrer of {subject} names no manifest of repository {repo}"),
                        );
                    }
                }
            }
        }
        Ok(problems)
    }
}
