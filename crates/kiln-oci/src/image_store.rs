//! The image store: an OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) whose
//! `index.json` names images with the `org.opencontainers.image.ref.name` annotation.
//!
//! `index.json` is replaced atomically (temp file, fsync, rename, fsync of the folder) under an exclusive
//! lock on `index.lock`. A ref is only written once every blob its image reaches is present with the size
//! its descriptor says, so no ref ever points to an incomplete image. Imports hold a shared lock on
//! `gc.lock` while they write blobs and refs; garbage collection takes it exclusively, so it never removes
//! the blobs of an import in progress.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::image::{
    ImageError, ImageIndex, ImageManifest, MAX_JSON_SIZE, OCI_LAYOUT_FILE, REF_NAME_ANNOTATION, from_json,
    to_json,
};
use crate::manifest::{Descriptor, ManifestKind, ManifestRefs, parse_manifest};
use crate::media_types as mt;
use crate::store::BlobStore;

/// A named image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The name (`repo:tag`).
    pub name: String,
    /// Its manifest or index.
    pub descriptor: Descriptor,
}

/// What garbage collection did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub removed: Vec<Digest>,
    /// Bytes freed: removed blobs and `ingest/` files.
    pub freed: u64,
    /// Blobs kept (reachable from a ref or one of the extra roots).
    pub kept: usize,
    /// Stale `ingest/` files removed (their bytes are in `freed`).
    pub ingest_files: usize,
}

/// How to collect garbage.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Blobs to keep besides those the refs reach (the builder's cache records name layers this way).
    pub roots: BTreeSet<Digest>,
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
}

/// The exclusive hold on the store's `gc.lock`: while it is held no import or build writes to the store,
/// and no build uses the builder's state next to it.
#[derive(Debug)]
pub struct GcLock {
    _lock: StoreLock,
    root: PathBuf,
}

/// A resolved image: its manifest and config.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The image manifest's descriptor (for a ref to an index: the chosen child).
    pub manifest_descriptor: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config's bytes, verified.
    pub config: Vec<u8>,
}

/// A held file lock, released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: std::fs::File,
}

/// An OCI image layout used as kiln's image store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    blobs: BlobStore,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore, ImageError> {
        let root = root.into();
        fs_err::create_dir_all(&root)?;
        let blobs = BlobStore::open(&root)?;
        let store = ImageStore { root, blobs };
        let layout = store.root.join("oci-layout");
        if fs_err::symlink_metadata(&layout).is_err() {
            store.write_atomic(&layout, OCI_LAYOUT_FILE.as_bytes())?;
        }
        if fs_err::symlink_metadata(store.index_path()).is_err() {
            let _lock = store.lock_index()?;
            if fs_err::symlink_metadata(store.index_path()).is_err() {
                store.write_index(&[])?;
            }
        }
        Ok(store)
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blobs.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn lock(&self, name: &str, exclusive: bool) -> Result<StoreLock, ImageError> {
        let path = self.root.join(name);
        let file = open_lock_file(&path)?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| std::io::Error::new(e.kind(), format!("cannot lock {}: {e}", path.display())))?;
        Ok(StoreLock { _file: file })
    }

    fn lock_index(&self) -> Result<StoreLock, ImageError> {
        self.lock("index.lock", true)
    }

    /// Held while writing blobs that a ref will name: garbage collection waits for it.
    pub fn lock_for_writing(&self) -> Result<StoreLock, ImageError> {
        self.lock("gc.lock", false)
    }

    /// Takes `gc.lock` exclusively, waiting for every import and build that holds it to finish.
    pub fn lock_for_gc(&self) -> Result<GcLock, ImageError> {
        Ok(GcLock {
            _lock: self.lock("gc.lock", true)?,
            root: self.root.clone(),
        })
    }

    /// Like [`ImageStore::lock_for_gc`], but `Ok(None)` instead of waiting when an import or a build
    /// holds the lock.
    pub fn try_lock_for_gc(&self) -> Result<Option<GcLock>, ImageError> {
        let path = self.root.join("gc.lock");
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(GcLock {
                _lock: StoreLock { _file: file },
                root: self.root.clone(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(std::io::Error::new(e.kind(), format!("cannot lock {}: {e}", path.display())).into())
            }
        }
    }

    /// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, rename, fsync folder.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        write_atomic(path, bytes)
    }

    fn read_index(&self) -> Result<ImageIndex, ImageError> {
        let path = self.index_path();
        let bytes = read_capped(&path)?;
        from_json(&bytes, || path.display().to_string())
    }

    fn write_index(&self, manifests: &[Descriptor]) -> Result<(), ImageError> {
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(mt::OCI_INDEX.to_owned()),
            manifests: manifests.to_vec(),
            annotations: None,
        };
        self.write_atomic(&self.index_path(), &to_json(&index))
    }

    /// Every named image, sorted by name.
    pub fn refs(&self) -> Result<Vec<ImageRef>, ImageError> {
        let mut refs: Vec<ImageRef> = self
            .read_index()?
            .manifests
            .into_iter()
            .filter_map(|d| {
                let name = d.annotations.as_ref()?.get(REF_NAME_ANNOTATION)?.clone();
                Some(ImageRef { name, descriptor: d })
            })
            .collect();
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(refs)
    }

    /// The image named `name` (normalized: `busybox` means `busybox:latest`).
    pub fn get(&self, name: &str) -> Result<Option<ImageRef>, ImageError> {
        let name = crate::image::normalize_name(name)?;
        Ok(self.refs()?.into_iter().find(|r| r.name == name))
    }

    /// Like [`ImageStore::get`], failing when absent.
    pub fn require(&self, name: &str) -> Result<ImageRef, ImageError> {
        self.get(name)?.ok_or_else(|| ImageError::NotFound {
            name: name.to_owned(),
            store: self.root.clone(),
        })
    }

    /// Names `descriptor` `name`, after checking that everything it reaches is stored. Returns the
    /// descriptor the name had before.
    pub fn set_ref(&self, name: &str, descriptor: &Descriptor) -> Result<Option<Descriptor>, ImageError> {
        let name = crate::image::normalize_name(name)?;
        self.reachable(descriptor)?;
        let mut named = descriptor.clone();
        named.annotations = Some(BTreeMap::from([(REF_NAME_ANNOTATION.to_owned(), name.clone())]));
        let _lock = self.lock_index()?;
        let mut manifests = self.read_index()?.manifests;
        let mut previous = None;
        manifests.retain(|d| {
            let same = ref_name(d) == Some(name.as_str());
            if same {
                previous = Some(d.clone());
            }
            !same
        });
        // Naming an image again as it is named (a no-change rebuild) leaves index.json as it is.
        if previous.as_ref() != Some(&named) {
            manifests.push(named);
            manifests.sort_by(|a, b| ref_name(a).cmp(&ref_name(b)));
            self.write_index(&manifests)?;
        }
        Ok(previous.map(|mut d| {
            d.annotations = None;
            d
        }))
    }

    /// Removes the name `name`; its blobs stay until [`ImageStore::gc`]. `Ok(None)` if it was absent.
    pub fn remove_ref(&self, name: &str) -> Result<Option<Descriptor>, ImageError> {
        let name = crate::image::normalize_name(name)?;
        let _lock = self.lock_index()?;
        let mut manifests = self.read_index()?.manifests;
        let Some(pos) = manifests.iter().position(|d| ref_name(d) == Some(name.as_str())) else {
            return Ok(None);
        };
        let removed = manifests.remove(pos);
        self.write_index(&manifests)?;
        Ok(Some(removed))
    }

    /// Reads a stored manifest or config, verified and capped at [`MAX_JSON_SIZE`].
    pub fn read_json_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, ImageError> {
        if descriptor.size > MAX_JSON_SIZE {
            return Err(ImageError::archive(
                self.blobs.blob_path(&descriptor.digest),
                format!(
                    "{} bytes exceed the {MAX_JSON_SIZE}-byte limit for JSON",
                    descriptor.size
                ),
            ));
        }
        let bytes = self
            .blobs
            .read_verified(&descriptor.digest)?
            .ok_or_else(|| ImageError::MissingBlob {
                digest: descriptor.digest.clone(),
                referenced_by: "a ref".to_owned(),
            })?;
        Ok(bytes)
    }

    /// Reads a stored manifest or index (verified) and what it references.
    pub(crate) fn read_manifest(&self, d: &Descriptor) -> Result<(Vec<u8>, ManifestRefs), ImageError> {
        let bytes = self.read_json_blob(d)?;
        let refs =
            parse_manifest(&bytes, d.media_type.as_deref()).map_err(|source| ImageError::Manifest {
                digest: d.digest.clone(),
                source,
            })?;
        Ok((bytes, refs))
    }

    /// Refuses indexes nested more than 8 deep (`depth` is `d`'s).
    fn check_depth(&self, d: &Descriptor, depth: usize) -> Result<(), ImageError> {
        if depth > 8 {
            return Err(ImageError::archive(
                &self.root,
                format!("manifest {} nests indexes more than 8 deep", d.digest),
            ));
        }
        Ok(())
    }

    /// Every blob `descriptor` reaches (itself, child manifests, configs, layers), checking each is
    /// present with its declared size. Foreign layers are not expected in the store.
    pub fn reachable(&self, descriptor: &Descriptor) -> Result<BTreeSet<Digest>, ImageError> {
        let mut seen = BTreeSet::new();
        self.walk(descriptor, "index.json", &mut seen, 0)?;
        Ok(seen)
    }

    fn check_present(&self, d: &Descriptor, referenced_by: &str) -> Result<(), ImageError> {
        match self.blobs.size(&d.digest)? {
            None => Err(ImageError::MissingBlob {
                digest: d.digest.clone(),
                referenced_by: referenced_by.to_owned(),
            }),
            Some(actual) if actual != d.size => Err(ImageError::SizeMismatch {
                digest: d.digest.clone(),
                expected: d.size,
                actual,
            }),
            Some(_) => Ok(()),
        }
    }

    fn walk(
        &self,
        d: &Descriptor,
        referenced_by: &str,
        seen: &mut BTreeSet<Digest>,
        depth: usize,
    ) -> Result<(), ImageError> {
        self.check_depth(d, depth)?;
        self.check_present(d, referenced_by)?;
        if !seen.insert(d.digest.clone()) {
            return Ok(());
        }
        let (_, refs) = self.read_manifest(d)?;
        let me = format!("manifest {}", d.digest);
        match refs.kind {
            ManifestKind::Image => {
                for blob in &refs.blobs {
                    self.check_present(blob, &me)?;
                    seen.insert(blob.digest.clone());
                }
            }
            ManifestKind::Index => {
                for child in &refs.manifests {
                    self.walk(child, &me, seen, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    /// Resolves a ref to an image manifest (for an index: the child for this host's platform, else the
    /// first) and its config.
    pub fn resolve(&self, descriptor: &Descriptor) -> Result<ResolvedImage, ImageError> {
        let mut d = descriptor.clone();
        for _ in 0..8 {
            let (bytes, refs) = self.read_manifest(&d)?;
            match refs.kind {
                ManifestKind::Image => {
                    let manifest: ImageManifest = from_json(&bytes, || format!("manifest {}", d.digest))?;
                    let config = self.read_json_blob(&manifest.config)?;
                    return Ok(ResolvedImage {
                        manifest_descriptor: d,
                        manifest,
                        config,
                    });
                }
                ManifestKind::Index => {
                    d = pick_platform(&bytes, &refs.manifests).ok_or_else(|| {
                        ImageError::archive(&self.root, format!("index {} has no manifests", d.digest))
                    })?;
                }
            }
        }
        Err(ImageError::archive(
            &self.root,
            format!("manifest {} nests indexes too deep", descriptor.digest),
        ))
    }

    /// Removes every blob no ref reaches, and temporary files left in `ingest/` by interrupted writes
    /// older than an hour.
    pub fn gc(&self) -> Result<GcReport, ImageError> {
        let lock = self.lock_for_gc()?;
        self.gc_locked(&lock, &GcOptions::default())
    }

    /// [`ImageStore::gc`] under a lock the caller holds, keeping `options.roots` too.
    pub fn gc_locked(&self, lock: &GcLock, options: &GcOptions) -> Result<GcReport, ImageError> {
        if lock.root != self.root {
            return Err(ImageError::archive(
                &self.root,
                format!("the gc lock held is the one of {}", lock.root.display()),
            ));
        }
        let _index = self.lock_index()?;
        let mut keep = BTreeSet::new();
        for d in self.read_index()?.manifests {
            let name = ref_name(&d).unwrap_or("an unnamed index.json entry").to_owned();
            let mut seen = BTreeSet::new();
            self.walk(&d, &name, &mut seen, 0)?;
            keep.extend(seen);
        }
        keep.extend(options.roots.iter().cloned());
        let mut report = GcReport::default();
        for digest in self.blobs.list()? {
            if keep.contains(&digest) {
                report.kept += 1;
                continue;
            }
            let size = self.blobs.size(&digest)?.unwrap_or(0);
            if options.dry_run || self.blobs.delete(&digest)? {
                report.freed += size;
                report.removed.push(digest);
            }
        }
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for entry in fs_err::read_dir(self.root.join("ingest"))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() && meta.modified().is_ok_and(|m| m < hour_ago) {
                if !options.dry_run {
                    fs_err::remove_file(entry.path())?;
                }
                report.freed += meta.len();
                report.ingest_files += 1;
            }
        }
        Ok(report)
    }

    /// The diff IDs of every image the refs name (every child of an index), from their configs.
    pub fn named_diff_ids(&self) -> Result<BTreeSet<Digest>, ImageError> {
        let mut out = BTreeSet::new();
        for d in self.read_index()?.manifests {
            self.diff_ids_of(&d, &mut out, 0)?;
        }
        Ok(out)
    }

    fn diff_ids_of(
        &self,
        d: &Descriptor,
        out: &mut BTreeSet<Digest>,
        depth: usize,
    ) -> Result<(), ImageError> {
        self.check_depth(d, depth)?;
        let (bytes, refs) = self.read_manifest(d)?;
        match refs.kind {
            ManifestKind::Index => {
                for child in &refs.manifests {
                    self.diff_ids_of(child, out, depth + 1)?;
                }
            }
            ManifestKind::Image => {
                let manifest: ImageManifest = from_json(&bytes, || format!("manifest {}", d.digest))?;
                let config = self.read_json_blob(&manifest.config)?;
                let config: serde_json::Value =
                    from_json(&config, || format!("config {}", manifest.config.digest))?;
                if let Some(ids) = config["rootfs"]["diff_ids"].as_array() {
                    out.extend(ids.iter().filter_map(|id| id.as_str()?.parse().ok()));
                }
            }
        }
        Ok(())
    }
}

fn open_lock_file(path: &Path) -> Result<std::fs::File, ImageError> {
    Ok(fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?
        .into_parts()
        .0)
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

/// The host's platform in OCI words.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// The child of an index for this host (`platform` of its descriptor), else the first.
fn pick_platform(index: &[u8], children: &[Descriptor]) -> Option<Descriptor> {
    let (os, arch) = host_platform();
    let value: serde_json::Value = serde_json::from_slice(index).ok()?;
    let raw = value.get("manifests")?.as_array()?;
    let found = raw.iter().position(|m| {
        let p = &m["platform"];
        p["os"] == os && p["architecture"] == arch
    });
    children.get(found.unwrap_or(0)).cloned()
}

/// Reads a file that must be a regular file (not a symlink) of at most [`MAX_JSON_SIZE`] bytes.
pub(crate) fn read_capped(path: &Path) -> Result<Vec<u8>, ImageError> {
    let meta = fs_err::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(ImageError::archive(path, "is not a regular file"));
    }
    if meta.len() > MAX_JSON_SIZE {
        return Err(ImageError::archive(
            path,
            format!(
                "{} bytes exceed the {MAX_JSON_SIZE}-byte limit for JSON",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::new();
    fs_err::File::open(path)?
        .take(MAX_JSON_SIZE + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_JSON_SIZE {
        return Err(ImageError::archive(
            path,
            "grew beyond the JSON size limit while read",
        ));
    }
    Ok(bytes)
}

/// [`crate::files::write_atomic`] with the store's error type: store files are 0644, as an OCI layout
/// that other tools read.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    Ok(crate::files::write_atomic(path, bytes, 0o644)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn put_image(store: &ImageStore, layer: &[u8]) -> Descriptor {
        let b = store.blobs();
        let layer_d = b.put(Algorithm::Sha256, layer, None).unwrap();
        let config = format!(
            "{{\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{layer_d}\"]}},\"os\":\"linux\",\"architecture\":\"amd64\"}}"
        );
        let config_d = b.put(Algorithm::Sha256, config.as_bytes(), None).unwrap();
        let desc = |media: &str, digest: Digest, size: usize| Descriptor {
            media_type: Some(media.to_owned()),
            digest,
            size: size as u64,
            urls: None,
            artifact_type: None,
            annotations: None,
        };
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(mt::OCI_MANIFEST.to_owned()),
            config: desc(mt::OCI_CONFIG, config_d, config.len()),
            layers: vec![desc(mt::OCI_LAYER_TAR, layer_d, layer.len())],
            annotations: None,
        };
        let bytes = to_json(&manifest);
        let d = b.put(Algorithm::Sha256, &bytes, None).unwrap();
        desc(mt::OCI_MANIFEST, d, bytes.len())
    }

    #[test]
    fn refs_are_listed_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        assert_eq!(
            fs_err::read_to_string(dir.path().join("oci-layout")).unwrap(),
            OCI_LAYOUT_FILE
        );
        let a = put_image(&store, b"layer a");
        let b = put_image(&store, b"layer b");
        assert_eq!(store.set_ref("x", &a).unwrap(), None);
        assert_eq!(store.set_ref("localhost/y:1", &b).unwrap(), None);
        assert_eq!(store.set_ref("x:latest", &b).unwrap(), Some(a.clone()));
        let names: Vec<_> = store.refs().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["localhost/y:1", "x:latest"]);
        assert_eq!(store.require("x").unwrap().descriptor.digest, b.digest);
        let resolved = store.resolve(&b).unwrap();
        assert_eq!(resolved.manifest.layers.len(), 1);
        assert!(store.remove_ref("x").unwrap().is_some());
        assert!(store.remove_ref("x").unwrap().is_none());
        assert!(matches!(store.require("x"), Err(ImageError::NotFound { .. })));
        // Reopening keeps the refs.
        let again = ImageStore::open(dir.path()).unwrap();
        assert_eq!(again.refs().unwrap().len(), 1);
        // Naming an image again as it is named leaves index.json alone.
        use std::os::unix::fs::MetadataExt;
        let inode = || fs_err::metadata(dir.path().join("index.json")).unwrap().ino();
        let before = inode();
        assert_eq!(again.set_ref("localhost/y:1", &b).unwrap(), Some(b.clone()));
        assert_eq!(inode(), before);
    }

    #[test]
    fn a_ref_to_an_incomplete_image_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let a = put_image(&store, b"layer a");
        store
            .blobs()
            .delete(&Algorithm::Sha256.digest(b"layer a"))
            .unwrap();
        let err = store.set_ref("x", &a).unwrap_err();
        assert!(matches!(err, ImageError::MissingBlob { .. }), "{err}");
        assert!(store.refs().unwrap().is_empty());
    }

    #[test]
    fn gc_removes_only_unreachable_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let a = put_image(&store, b"layer a");
        let b = put_image(&store, b"layer b");
        store.set_ref("a", &a).unwrap();
        store.set_ref("b", &b).unwrap();
        let stray = store.blobs().put(Algorithm::Sha256, b"stray", None).unwrap();
        let report = store.gc().unwrap();
        assert_eq!(report.removed, vec![stray]);
        assert_eq!(report.kept, 6);
        store.remove_ref("b").unwrap();
        let report = store.gc().unwrap();
        assert_eq!(report.removed.len(), 3);
        assert!(store.reachable(&a).unwrap().len() == 3);
        assert_eq!(store.blobs().list().unwrap().len(), 3);
    }

    #[test]
    fn gc_keeps_extra_roots_and_a_dry_run_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let a = put_image(&store, b"layer a");
        store.set_ref("a", &a).unwrap();
        let cached = store
            .blobs()
            .put(Algorithm::Sha256, b"cached layer", None)
            .unwrap();
        let stray = store.blobs().put(Algorithm::Sha256, b"stray", None).unwrap();
        let lock = store.lock_for_gc().unwrap();
        assert!(
            store.try_lock_for_gc().unwrap().is_none(),
            "the lock is exclusive"
        );
        let options = GcOptions {
            roots: BTreeSet::from([cached.clone()]),
            dry_run: true,
        };
        let dry = store.gc_locked(&lock, &options).unwrap();
        assert_eq!(dry.removed, vec![stray.clone()]);
        assert_eq!(dry.freed, 5);
        assert_eq!(dry.kept, 4);
        assert_eq!(
            store.blobs().list().unwrap().len(),
            5,
            "a dry run removes nothing"
        );
        let real = store
            .gc_locked(
                &lock,
                &GcOptions {
                    dry_run: false,
                    ..options
                },
            )
            .unwrap();
        assert_eq!(real, dry);
        assert_eq!(store.blobs().size(&cached).unwrap(), Some(12));
        assert_eq!(store.blobs().size(&stray).unwrap(), None);
        drop(lock);
        assert_eq!(
            store.named_diff_ids().unwrap(),
            BTreeSet::from([Algorithm::Sha256.digest(b"layer a")])
        );
        let other = ImageStore::open(dir.path().join("other")).unwrap();
        let lock = other.try_lock_for_gc().unwrap().unwrap();
        assert!(store.gc_locked(&lock, &GcOptions::default()).is_err());
    }
}
