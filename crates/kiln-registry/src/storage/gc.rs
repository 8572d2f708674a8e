//! Garbage collection and consistency checks of a filesystem registry root (`docs/registry-storage.md`).
//!
//! GC marks from every tag (and from every manifest or layer link younger than the grace period), walks
//! image manifests to their config and layers, indexes to their children, and live manifests to their
//! referrers; what nothing reaches becomes a candidate: manifest and layer links older than the grace
//! period, blobs that no remaining link names, tags past their expiry rule. Idle upload sessions and
//! ingest files older than the grace period go too.
//!
//! The server keeps writing while GC marks. Every write that makes something reachable (a manifest push
//! with its tags and referrer entry, a blob upload's link, a cross-repository mount, a `HEAD` that a
//! client may skip an upload on) holds the [`Gate`] shared from its check to its last file, and, while a
//! GC runs, records what it made reachable in the GC's [`Journal`]. The sweep takes the gate exclusively:
//! no such write is half done, every one since the mark began is in the journal; it marks again from the
//! journal, drops from the candidates whatever is now reachable, and deletes the rest before it lets
//! writes go on. A manifest push also checks, under the gate, that the blobs it names are still linked
//! (GC may have swept them after the service validated the manifest): nothing acknowledged is collected.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime};

use globset::{GlobBuilder, GlobMatcher};
use kiln_oci::manifest::{ManifestKind, parse_manifest};
use kiln_oci::{Algorithm, Digest};

use super::fs::{list_names, not_found, referrer_digest};
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

/// Orders the writes that add references against GC's sweep (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// Held shared by writes that add references, exclusively by the sweep.
    sweep: RwLock<()>,
    /// What writes made reachable since the running GC began marking; `None` when no GC runs.
    journal: Mutex<Option<Journal>>,
    /// One GC at a time per storage.
    running: Mutex<()>,
}

/// What writes made reachable while a GC was marking.
#[derive(Debug, Default)]
pub(super) struct Journal {
    /// Manifests pushed (or found with a `HEAD`).
    pub(super) manifests: Vec<(RepoName, Digest)>,
    /// Blobs linked (uploaded, mounted, or found with a `HEAD`).
    pub(super) layers: Vec<(RepoName, Digest)>,
    /// Tags written.
    pub(super) tags: Vec<(RepoName, String)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a thread panicked while holding it; the data stays usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gate {
    /// Adds to the running GC's journal; nothing when no GC runs (the next one sees the files).
    pub(super) fn record(&self, f: impl FnOnce(&mut Journal)) {
        if let Some(journal) = lock(&self.journal).as_mut() {
            f(journal);
        }
    }
}

/// The journal of a GC run: opened before marking, closed by the sweep (or when the run fails).
struct Marking<'a>(&'a Gate);

impl Marking<'_> {
    fn open(gate: &Gate) -> Marking<'_> {
        *lock(&gate.journal) = Some(Journal::default());
        Marking(gate)
    }

    fn close(&self) -> Journal {
        lock(&self.0.journal).take().unwrap_or_default()
    }
}

impl Drop for Marking<'_> {
    fn drop(&mut self) {
        *lock(&self.0.journal) = None;
    }
}

/// What marking found in one repository, and what the sweep decides on.
#[derive(Default)]
struct RepoMark {
    /// Reachable manifests.
    live: BTreeSet<Digest>,
    /// Blobs kept: named by a live image manifest, or linked less than the grace period ago.
    blobs: BTreeSet<Digest>,
    /// Tags past their rule: `(tag, file, rule)`.
    expired_tags: Vec<(String, PathBuf, String)>,
    /// Every manifest link.
    manifests: Vec<(Digest, PathBuf)>,
    /// Every layer link.
    layers: Vec<(Digest, PathBuf)>,
    /// Every referrer entry, with the referrer it names (`None`: not a digest).
    referrers: Vec<(Option<Digest>, PathBuf)>,
}

impl FsStorage {
    /// Held by a write that adds a reference, from its checks to its journal record (see the module
    /// documentation).
    pub(super) fn reference_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate().sweep.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks from `roots` in `repo`: images → blobs, indexes → children, every live manifest → its
    /// referrers.
    fn mark(
        &self,
        repo: &RepoName,
        mut roots: VecDeque<Digest>,
        mark: &mut RepoMark,
    ) -> Result<(), StorageError> {
        while let Some(d) = roots.pop_front() {
            if !mark.live.insert(d.clone()) {
                continue;
            }
            for name in list_names(&self.referrer_dir(repo, &d))? {
                if let Some(r) = referrer_digest(&name) {
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
                ManifestKind::Image => mark.blobs.extend(refs.blobs.into_iter().map(|b| b.digest)),
                ManifestKind::Index => roots.extend(refs.manifests.into_iter().map(|m| m.digest)),
            }
        }
        Ok(())
    }

    /// The mark phase in one repository; writes go on meanwhile.
    fn mark_repository(
        &self,
        repo: &RepoName,
        options: &GcOptions,
        now: SystemTime,
    ) -> Result<RepoMark, StorageError> {
        let dir = self.repo_dir(repo);
        let mut mark = RepoMark::default();
        // Tag retention first: an expired tag is no root.
        let mut roots: VecDeque<Digest> = VecDeque::new();
        for name in list_names(&dir.join("_tags"))? {
            let Ok(tag) = name.parse::<Tag>() else { continue };
            let path = self.tag_file(repo, &tag);
            // Files deleted since the listing (a tag or manifest DELETE) are simply not there.
            let Some(tag_age) = not_found(age(&path, now))? else {
                continue;
            };
            if let Some(rule) = options.expire_tags.iter().find(|r| r.matcher.is_match(&name))
                && tag_age > rule.after
            {
                mark.expired_tags.push((name, path, rule.text.clone()));
                continue;
            }
            if let Some(d) = self.read_tag(repo, &tag)? {
                roots.push_back(d);
            }
        }
        mark.manifests = links(&dir.join("_manifests"))?;
        for (d, path) in &mark.manifests {
            if not_found(age(path, now))?.is_some_and(|a| a < options.grace) {
                roots.push_back(d.clone());
            }
        }
        self.mark(repo, roots, &mut mark)?;
        mark.layers = links(&dir.join("_layers"))?;
        for (d, path) in &mark.layers {
            if not_found(age(path, now))?.is_some_and(|a| a < options.grace) {
                mark.blobs.insert(d.clone());
            }
        }
        for (_, subject_dir) in links(&dir.join("_referrers"))? {
            for name in list_names(&subject_dir)? {
                mark.referrers
                    .push((referrer_digest(&name), subject_dir.join(&name)));
            }
        }
        Ok(mark)
    }

    /// Collects garbage (see the module documentation). Safe to run while this storage serves: writes
    /// wait only while the sweep deletes, and nothing they make reachable is collected.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport, StorageError> {
        let _one_at_a_time = lock(&self.gate().running);
        let marking = Marking::open(self.gate());
        let now = SystemTime::now();
        let mut marks: BTreeMap<RepoName, RepoMark> = BTreeMap::new();
        for repo in self.repositories()? {
            let Ok(repo) = repo.parse::<RepoName>() else {
                continue;
            };
            let mark = self.mark_repository(&repo, options, now)?;
            marks.insert(repo, mark);
        }
        let live_blobs = |marks: &BTreeMap<RepoName, RepoMark>| -> BTreeSet<Digest> {
            marks
                .values()
                .flat_map(|m| m.blobs.iter().chain(&m.live))
                .cloned()
                .collect()
        };
        let live = live_blobs(&marks);
        let mut blob_candidates = Vec::new();
        for d in self.blob_store().list()? {
            let path = self.blob_store().blob_path(&d);
            // A blob removed meanwhile (another GC, a crash's leftovers) is simply no candidate.
            let Some(age) = not_found(age(&path, now))? else {
                continue;
            };
            if !live.contains(&d) && age >= options.grace {
                blob_candidates.push((d, path));
            }
        }

        // The sweep: no write that adds a reference runs, every one since the mark began is journaled.
        let sweep = self.gate().sweep.write().unwrap_or_else(PoisonError::into_inner);
        let journal = marking.close();
        for (repo, d) in journal.manifests {
            let mark = marks.entry(repo.clone()).or_default();
            self.mark(&repo, VecDeque::from([d]), mark)?;
        }
        for (repo, d) in journal.layers {
            marks.entry(repo).or_default().blobs.insert(d);
        }
        let rewritten: BTreeSet<(RepoName, String)> = journal.tags.into_iter().collect();
        let mut report = GcReport::default();
        for (repo, mark) in &marks {
            for (name, path, rule) in &mark.expired_tags {
                if rewritten.contains(&(repo.clone(), name.clone())) {
                    continue;
                }
                remove(path, options.dry_run)?;
                report.expired_tags.push(format!("{repo}:{name}"));
                tracing::info!(%repo, tag = %name, %rule, "expired tag");
            }
            for (d, path) in &mark.manifests {
                if !mark.live.contains(d) {
                    remove(path, options.dry_run)?;
                    report.manifests.push(format!("{repo}@{d}"));
                }
            }
            for (d, path) in &mark.layers {
                if !mark.blobs.contains(d) {
                    remove(path, options.dry_run)?;
                    report.layer_links.push(format!("{repo}@{d}"));
                }
            }
            // Referrer entries whose manifest is gone.
            for (referrer, path) in &mark.referrers {
                if referrer.as_ref().is_none_or(|r| !mark.live.contains(r)) {
                    remove(path, options.dry_run)?;
                }
            }
        }
        // Blobs nothing names any more.
        let live = live_blobs(&marks);
        for (d, path) in blob_candidates {
            if live.contains(&d) {
                continue;
            }
            let Some(meta) = not_found(fs_err::metadata(&path))? else {
                continue;
            };
            report.bytes += meta.len();
            remove(&path, options.dry_run)?;
            report.blobs.push(d.to_string());
        }
        // Ingest files of writes that never finished (the ones running hold the gate: none now).
        let ingest = self.root().join("ingest");
        for name in list_names(&ingest)? {
            let path = ingest.join(&name);
            if not_found(age(&path, now))?.is_some_and(|a| a >= options.grace) {
                remove(&path, options.dry_run)?;
                report.uploads.push(path.display().to_string());
            }
        }
        drop(sweep);
        // Abandoned upload sessions: the ones a request uses are never taken.
        for path in self.remove_idle_uploads(options.grace, options.dry_run)? {
            report.uploads.push(path.display().to_string());
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
                    if referrer_digest(&name).is_none_or(|r| !manifests.contains_key(&r)) {
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
