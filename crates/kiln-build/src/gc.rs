//! Garbage collection of a store together with the builder's state next to it (`kiln gc`).
//!
//! The instruction cache's records are roots like the store's names: the layer blobs they reference stay,
//! so a rebuild after a collection is still fully cached. With [`GcOptions::drop_build_cache`] the
//! records go first and their blobs are then collected like any other: a record never outlives its blob.
//! A record whose blob is already gone (a store collected by an older kiln) is removed either way.
//!
//! Everything happens under the store's exclusive `gc.lock` ([`kiln_oci::GcLock`]), which every build
//! holds shared from its start to the naming of its image: no build runs meanwhile, so no unpacked layer
//! folder, cache mount or scratch folder is in use by one. Folders that a live mount still uses (the
//! leftovers of a killed build) are kept all the same.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln_oci::{GcLock, ImageStore};

use crate::cache::StepCache;
use crate::error::BuildError;
use crate::layers::{SYNCED, boot_id, diff_id_of};

/// How to collect.
#[derive(Debug, Clone, Copy, Default)]
pub struct GcOptions {
    /// Also remove the build cache: every instruction-cache record (then the blobs only they kept),
    /// every unpacked layer folder and every `RUN --mount=type=cache` folder.
    pub drop_build_cache: bool,
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
}

/// What was (or, in a dry run, would be) removed from one kind of thing, and what stays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// How many were removed.
    pub removed: usize,
    /// Bytes of the files removed (hard links counted once).
    pub freed: u64,
    /// How many stay.
    pub kept: usize,
}

/// What [`collect`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The store's blobs (and stale `ingest/` files).
    pub blobs: kiln_oci::GcReport,
    /// Instruction-cache records (`kiln-build/cache/`).
    pub cache_records: Tally,
    /// Unpacked layer folders (`kiln-build/layers/`), those of earlier boots included.
    pub layer_folders: Tally,
    /// `RUN --mount=type=cache` folders (`kiln-build/cache-mounts/`).
    pub cache_mounts: Tally,
    /// Scratch folders that interrupted builds left in `kiln-build/tmp/`.
    pub scratch: Tally,
}

impl GcReport {
    /// Bytes freed in all.
    pub fn freed(&self) -> u64 {
        self.blobs.freed
            + self.cache_records.freed
            + self.layer_folders.freed
            + self.cache_mounts.freed
            + self.scratch.freed
    }
}

/// The builder's state folder of `store`.
pub fn state_dir(store: &ImageStore) -> PathBuf {
    store.root().join(crate::STATE_DIR)
}

/// Collects `store` and its builder state under `lock`, which must be `store`'s.
pub fn collect(store: &ImageStore, lock: &GcLock, options: GcOptions) -> Result<GcReport, BuildError> {
    let state = state_dir(store);
    let dry_run = options.dry_run;
    let mut report = GcReport::default();

    // Records first: a collection cut short may leave blobs that no record names, never a record whose
    // blob is gone.
    let mut roots = BTreeSet::new();
    let mut keep_diff_ids = BTreeSet::new();
    for (path, step) in StepCache::new(state.join("cache")).records()? {
        match step.filter(|s| !options.drop_build_cache && s.is_usable(store.blobs())) {
            Some(step) => {
                report.cache_records.kept += 1;
                if let Some(layer) = step.layer {
                    roots.insert(layer.blob.digest);
                    keep_diff_ids.insert(layer.diff_id);
                }
            }
            None => report.cache_records.remove(&path, dry_run)?,
        }
    }

    let blob_options = kiln_oci::GcOptions { roots, dry_run };
    report.blobs = store.gc_locked(lock, &blob_options)?;

    let mounts = Mounts::read();
    if !options.drop_build_cache {
        keep_diff_ids.extend(store.named_diff_ids()?);
    }
    let layers = state.join("layers");
    let current = [boot_id().unwrap_or_default(), SYNCED.to_owned()];
    for (path, name) in entries(&layers)? {
        if current.contains(&name) && path.is_dir() {
            // The current boot's layers: kept while an image or a kept record has them.
            for (layer, name) in entries(&path)? {
                let keep = diff_id_of(&name).is_some_and(|d| keep_diff_ids.contains(&d));
                report
                    .layer_folders
                    .remove_unless(keep, &layer, dry_run, &mounts)?;
            }
        } else {
            // Earlier boots' folders (possibly cut short by the reboot) and leftovers of removals.
            report
                .layer_folders
                .remove_unless(false, &path, dry_run, &mounts)?;
        }
    }
    for (path, _) in entries(&state.join("cache-mounts"))? {
        let keep = !options.drop_build_cache;
        if path.is_dir() {
            report.cache_mounts.remove_unless(keep, &path, dry_run, &mounts)?;
        } else if !keep && !dry_run {
            // A folder's lock file (no build holds it while gc runs): not counted, it is the folder's.
            remove_tree(&path).map_err(|e| BuildError::io(&path, e))?;
        }
    }
    for (path, _) in entries(&state.join("tmp"))? {
        report.scratch.remove_unless(false, &path, dry_run, &mounts)?;
    }
    Ok(report)
}

impl Tally {
    /// Keeps `path` if `keep` or a live mount uses it; else removes it (unless `dry_run`), counting it.
    fn remove_unless(
        &mut self,
        keep: bool,
        path: &Path,
        dry_run: bool,
        mounts: &Mounts,
    ) -> Result<(), BuildError> {
        if keep || mounts.uses(path) {
            self.kept += 1;
            Ok(())
        } else {
            self.remove(path, dry_run)
        }
    }

    /// Removes the file or folder `path` (unless `dry_run`), counting it and its bytes. A folder is first
    /// renamed to a `.stale-` name next to it, so a removal cut short never leaves a half folder under a
    /// name that is looked up (the next collection finishes it).
    fn remove(&mut self, path: &Path, dry_run: bool) -> Result<(), BuildError> {
        let bytes = tree_size(path).map_err(|e| BuildError::io(path, e))?;
        if !dry_run {
            remove_tree(path).map_err(|e| BuildError::io(path, format!("cannot remove it: {e}")))?;
        }
        self.removed += 1;
        self.freed += bytes;
        Ok(())
    }
}

/// The entries of `dir` with their names, sorted; none when it is absent.
fn entries(dir: &Path) -> Result<Vec<(PathBuf, String)>, BuildError> {
    let read = match fs_err::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BuildError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| BuildError::io(dir, e))?;
        out.push((entry.path(), entry.file_name().to_string_lossy().into_owned()));
    }
    out.sort();
    Ok(out)
}

fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = fs_err::symlink_metadata(path)?;
    if !meta.is_dir() {
        return fs_err::remove_file(path);
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let doomed = if name.starts_with(".stale-") {
        path.to_owned()
    } else {
        let doomed = path.with_file_name(format!(".stale-{name}"));
        fs_err::rename(path, &doomed)?;
        doomed
    };
    fs_err::remove_dir_all(&doomed)
}

/// Bytes of the files under `path` (not following symlinks, not crossing into other filesystems; a file
/// with several links counted once).
fn tree_size(path: &Path) -> io::Result<u64> {
    let top = fs_err::symlink_metadata(path)?;
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let mut pending = vec![(path.to_owned(), top.clone())];
    while let Some((path, meta)) = pending.pop() {
        if meta.is_dir() {
            if meta.dev() != top.dev() {
                continue;
            }
            for entry in fs_err::read_dir(&path)? {
                let entry = entry?;
                let child = entry.path();
                let meta = fs_err::symlink_metadata(&child)?;
                pending.push((child, meta));
            }
        } else if meta.nlink() < 2 || seen.insert((meta.dev(), meta.ino())) {
            total += meta.len();
        }
    }
    Ok(total)
}

/// The mounts of this mount namespace, as `/proc/self/mountinfo` lists them: a folder that one of them
/// is mounted on, or uses as a lower, upper or work folder, must not be removed.
struct Mounts(String);

impl Mounts {
    fn read() -> Mounts {
        Mounts(fs_err::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// Whether a mount names `path` or something below it (as its mount point or in its options).
    fn uses(&self, path: &Path) -> bool {
        let Ok(path) = fs_err::canonicalize(path) else {
            return false;
        };
        let Some(path) = path.to_str() else {
            return false;
        };
        // mountinfo escapes space, tab, newline and backslash as octal.
        let escaped = path
            .replace('\\', "\\134")
            .replace(' ', "\\040")
            .replace('\t', "\\011")
            .replace('\n', "\\012");
        self.0.match_indices(&escaped).any(|(at, found)| {
            // A whole path component: `/x/step-ab` does not name `/x/step-abc`.
            matches!(
                self.0[at + found.len()..].chars().next(),
                None | Some('/' | ' ' | ',' | ':' | '\n')
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_uses_what_it_names_as_a_whole_component() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = fs_err::canonicalize(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        for d in ["step-ab", "step-abc", "with space", "lower", "free"] {
            fs_err::create_dir(root.join(d)).unwrap_or_else(|e| panic!("{e}"));
        }
        let r = root.display();
        let mounts = Mounts(format!(
            "36 35 0:32 / {r}/step-abc/merged rw - overlay overlay rw,lowerdir={r}/lower:/x,upperdir={r}/with\\040space/u\n"
        ));
        assert!(mounts.uses(&root.join("step-abc")));
        assert!(!mounts.uses(&root.join("step-ab")));
        assert!(mounts.uses(&root.join("lower")));
        assert!(mounts.uses(&root.join("with space")));
        assert!(!mounts.uses(&root.join("free")));
        assert!(!mounts.uses(&root.join("absent")));
    }

    #[test]
    fn sizes_count_hard_links_once_and_removal_leaves_no_half_folder() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let layer = dir.path().join("sha256-00");
        fs_err::create_dir_all(layer.join("sub")).unwrap_or_else(|e| panic!("{e}"));
        fs_err::write(layer.join("a"), b"12345").unwrap_or_else(|e| panic!("{e}"));
        fs_err::hard_link(layer.join("a"), layer.join("sub/b")).unwrap_or_else(|e| panic!("{e}"));
        fs_err::write(layer.join("sub/c"), b"xy").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("a", layer.join("link")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tree_size(&layer).unwrap_or_else(|e| panic!("{e}")), 5 + 2 + 1);
        let mut tally = Tally::default();
        tally.remove(&layer, true).unwrap_or_else(|e| panic!("{e}"));
        assert!(layer.is_dir(), "a dry run removes nothing");
        tally.remove(&layer, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            tally,
            Tally {
                removed: 2,
                freed: 16,
                kept: 0
            }
        );
        assert_eq!(
            fs_err::read_dir(dir.path())
                .unwrap_or_else(|e| panic!("{e}"))
                .count(),
            0
        );
    }

    /// A store with a named image, cache records (usable, dangling, layerless, junk), layer folders of
    /// this boot and another, a scratch leftover and a cache mount; what each collection does to them.
    #[test]
    fn collect_keeps_what_names_and_records_need_and_drops_the_cache_when_asked() {
        use crate::cache::{CachedStep, LayerRecord, StepKey};
        use kiln_oci::Algorithm::Sha256;
        let ok = |r: Result<(), BuildError>| r.unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = ImageStore::open(dir.path().join("store")).unwrap_or_else(|e| panic!("{e}"));
        let state = state_dir(&store);
        let put = |bytes: &[u8]| {
            let digest = store
                .blobs()
                .put(Sha256, bytes, None)
                .unwrap_or_else(|e| panic!("{e}"));
            let blob = kiln_oci::manifest::Descriptor {
                media_type: Some(kiln_oci::media_types::OCI_LAYER_ZSTD.to_owned()),
                digest,
                size: bytes.len() as u64,
                urls: None,
                artifact_type: None,
                annotations: None,
            };
            LayerRecord {
                blob,
                diff_id: Sha256.digest(&[bytes, b" tar"].concat()),
            }
        };
        let named = put(b"named layer");
        let cached = put(b"cached layer");
        let gone = put(b"gone layer");
        store
            .blobs()
            .delete(&gone.blob.digest)
            .unwrap_or_else(|e| panic!("{e}"));
        put(b"stray");
        let config = format!(
            "{{\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{}\"]}}}}",
            named.diff_id
        );
        let stored = kiln_oci::compress::StoredLayer {
            descriptor: named.blob.clone(),
            diff_id: named.diff_id.clone(),
            uncompressed_size: 0,
        };
        let manifest = kiln_oci::import::store_image(&store, config.as_bytes(), &[stored])
            .unwrap_or_else(|e| panic!("{e}"));
        store.set_ref("x", &manifest).unwrap_or_else(|e| panic!("{e}"));

        let cache = StepCache::new(state.join("cache"));
        let key = |n: &str| StepKey::base(n);
        ok(cache.put(
            &key("cached"),
            &CachedStep {
                layer: Some(cached.clone()),
            },
        ));
        ok(cache.put(
            &key("gone"),
            &CachedStep {
                layer: Some(gone.clone()),
            },
        ));
        ok(cache.put(&key("empty"), &CachedStep { layer: None }));
        let write = |rel: &str| {
            let path = state.join(rel);
            fs_err::create_dir_all(path.parent().unwrap_or(&state)).unwrap_or_else(|e| panic!("{e}"));
            fs_err::write(&path, b"data").unwrap_or_else(|e| panic!("{e}"));
        };
        write("cache/.tmpAbC");
        let boot = boot_id().unwrap_or_else(|| SYNCED.to_owned());
        let folder =
            |l: &LayerRecord| format!("layers/{boot}/{}-{}/f", l.diff_id.algorithm(), l.diff_id.hex());
        for layer in [&named, &cached, &gone] {
            write(&folder(layer));
        }
        write(&format!("layers/{boot}/.unpack-x/layer/f"));
        write("layers/0ther-b00t/sha256-00/f");
        write("tmp/step-zz/upper/f");
        write("cache-mounts/abc/f");
        write("cache-mounts/abc.lock");

        let run = |drop_build_cache, dry_run| {
            let lock = store.lock_for_gc().unwrap_or_else(|e| panic!("{e}"));
            collect(
                &store,
                &lock,
                GcOptions {
                    drop_build_cache,
                    dry_run,
                },
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let tally = |removed, freed, kept| Tally { removed, freed, kept };
        let dry = run(false, true);
        let real = run(false, false);
        assert_eq!(dry, real, "a dry run reports what the real one does");
        assert_eq!(real.blobs.removed.len(), 1, "the stray blob: {real:?}");
        assert_eq!(real.blobs.kept, 4, "the image's three blobs and the cached layer");
        let record_bytes =
            |k: &str| fs_err::metadata(state.join("cache").join(format!("{}.json", key(k).hex())));
        assert_eq!(real.cache_records.removed, 2, "the dangling record and the junk");
        assert_eq!(real.cache_records.kept, 2);
        assert!(record_bytes("gone").is_err() && record_bytes("cached").is_ok());
        assert_eq!(
            real.layer_folders,
            tally(3, 12, 2),
            "gone's folder, .unpack-x, the other boot's"
        );
        assert!(state.join(folder(&named)).exists() && state.join(folder(&cached)).exists());
        assert!(!state.join(folder(&gone)).exists());
        assert_eq!(real.scratch, tally(1, 4, 0));
        assert_eq!(real.cache_mounts, tally(0, 0, 1));
        assert!(cache.get(&key("cached"), store.blobs()).is_some());

        let dropped = run(true, false);
        assert_eq!(dropped.cache_records, tally(2, dropped.cache_records.freed, 0));
        assert_eq!(dropped.blobs.removed, vec![cached.blob.digest.clone()]);
        assert_eq!(dropped.layer_folders, tally(2, 8, 0));
        assert_eq!(dropped.cache_mounts, tally(1, 4, 0));
        assert_eq!(
            fs_err::read_dir(state.join("cache-mounts"))
                .map(Iterator::count)
                .ok(),
            Some(0)
        );
        assert!(cache.get(&key("cached"), store.blobs()).is_none());
        assert_eq!(run(true, false).freed(), 0, "nothing is left to collect");
    }
}
