//! The filesystem storage; its layout is documented in `docs/registry-storage.md`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use kiln_oci::manifest::{ManifestKind, parse_manifest};
use kiln_oci::{Algorithm, BlobStore, Digest};

use super::gc::Gate;
use super::uploads::Sessions;
use super::{
    BlobRead, OpenBlob, References, Storage, StorageError, StoredManifest, UploadLimits, UploadSink, Usage,
};
use crate::names::{Reference, RepoName, Tag};

/// The layout version written to `<root>/kiln-registry.json`.
pub const LAYOUT_VERSION: u64 = 1;

/// The lock file of a root: held by the one process that serves or collects it.
const LOCK_FILE: &str = "kiln-registry.lock";

struct Inner {
    root: PathBuf,
    store: BlobStore,
    sessions: Sessions,
    gate: Gate,
}

/// The claim of one process on a registry root ([`FsStorage::lock_root`]), released when dropped.
#[derive(Debug)]
pub struct RootLock {
    _file: std::fs::File,
}

/// Blobs deduplicated across repositories in one [`BlobStore`]; per-repository links, tags and referrers
/// as small files, each written atomically and durably (temp file, fsync, rename; empty files in place).
#[derive(Clone)]
pub struct FsStorage {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FsStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStorage")
            .field("root", &self.inner.root)
            .finish()
    }
}

pub(super) fn not_found<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs_err::File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent folder", path.display())))
}

/// Creates the empty file `path` durably: in place (an empty file has no content to tear, so no temp
/// file, file fsync or rename), then fsyncs its folder. An existing file is kept, its modification time
/// refreshed (GC's grace period counts from it: a mount or push of a blob already linked is as fresh as
/// a new one), and its folder still fsynced: the request that created it may not have synced it yet.
fn create_empty_durable(path: &Path) -> io::Result<()> {
    let dir = parent(path)?;
    fs_err::create_dir_all(dir)?;
    fs_err::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?
        .set_modified(SystemTime::now())?;
    sync_dir(dir)
}

/// Refreshes the modification time of `path` if it exists (not fsynced: a lost refresh after a crash
/// only makes the file look older). `false` if it does not exist.
fn touch(path: &Path) -> io::Result<bool> {
    match not_found(fs_err::OpenOptions::new().write(true).open(path))? {
        Some(file) => {
            file.set_modified(SystemTime::now())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Writes `bytes` to `path` atomically: a temp file (name starting with `.`) in the same folder, fsync,
/// rename, fsync of the folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path)?;
    fs_err::create_dir_all(dir)?;
    let temp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut file = fs_err::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs_err::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ignored = std::fs::remove_file(&temp);
    }
    result
}

/// [`write_atomic`] unless `path` already holds exactly `bytes` (it was written, and synced, before):
/// retagging a manifest (`kiln tag`, `kiln promote`) then costs the new tag's fsyncs only, not the
/// manifest link's again. An unchanged file gets a fresh modification time ([`touch`]): pushing a tag
/// or manifest again restarts its age for tag expiry and GC's grace period.
fn write_atomic_if_changed(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match not_found(fs_err::read(path))? {
        Some(existing) if existing == bytes => touch(path).map(drop),
        _ => write_atomic(path, bytes),
    }
}

fn remove_if_present(path: &Path) -> io::Result<bool> {
    Ok(not_found(fs_err::remove_file(path))?.is_some())
}

/// The referrer an entry of `_referrers/<alg>/<subject>/` names (`<alg>-<hex>`), if it is one.
pub(super) fn referrer_digest(name: &str) -> Option<Digest> {
    let (alg, hex) = name.split_once('-')?;
    Digest::new(Algorithm::from_name(alg)?, hex).ok()
}

/// Sorted names of the entries of `dir` that do not start with `.` (temp files); empty if `dir` is absent.
pub(crate) fn list_names(dir: &Path) -> io::Result<Vec<String>> {
    let Some(entries) = not_found(fs_err::read_dir(dir))? else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Some(name) = entry?.file_name().to_str()
            && !name.starts_with('.')
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

impl FsStorage {
    /// Opens (creating if needed) a registry root with the default [`UploadLimits`]. Fails if it was
    /// written by a newer layout.
    ///
    /// One `FsStorage` (and its clones) per root and process: upload sessions and GC's ordering of writes
    /// (see [`FsStorage::gc`]) live in it. Between processes, [`FsStorage::lock_root`] keeps a second one
    /// off a root that `kiln serve` or `kiln registry gc` is using.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsStorage, StorageError> {
        FsStorage::open_with(root, UploadLimits::default())
    }

    /// [`FsStorage::open`] with these upload session limits.
    pub fn open_with(root: impl Into<PathBuf>, limits: UploadLimits) -> Result<FsStorage, StorageError> {
        let root = root.into();
        fs_err::create_dir_all(&root)?;
        let marker = root.join("kiln-registry.json");
        match not_found(fs_err::read(&marker))? {
            Some(bytes) => {
                let version = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v.get("layout")?.as_u64());
                if version != Some(LAYOUT_VERSION) {
                    return Err(StorageError::Corrupt {
                        path: marker.display().to_string(),
                        reason: format!("unsupported layout (this kiln reads layout {LAYOUT_VERSION})"),
                    });
                }
            }
            None => write_atomic(&marker, format!("{{\"layout\":{LAYOUT_VERSION}}}\n").as_bytes())?,
        }
        let store = BlobStore::open(&root)?;
        fs_err::create_dir_all(root.join("repositories"))?;
        fs_err::create_dir_all(root.join("uploads"))?;
        let storage = FsStorage {
            inner: Arc::new(Inner {
                root,
                store,
                sessions: Sessions::new(limits),
                gate: Gate::default(),
            }),
        };
        // Sessions from before a restart count towards the caps and expire like the others.
        storage.register_disk_sessions()?;
        Ok(storage)
    }

    /// Claims the root for this process (`ROOT/kiln-registry.lock`, with this process's id in it):
    /// `kiln serve` holds it while it serves, `kiln registry gc` while it collects, so that an offline GC
    /// never runs beside a server whose writes it cannot order against its sweep.
    /// [`StorageError::RootLocked`] if another process holds it.
    pub fn lock_root(&self) -> Result<RootLock, StorageError> {
        let path = self.inner.root.join(LOCK_FILE);
        let file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let (mut file, _) = file.into_parts();
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = fs_err::read_to_string(&path).unwrap_or_default();
                return Err(StorageError::RootLocked {
                    path: path.display().to_string(),
                    holder: holder.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io::Error::new(e.kind(), format!("cannot lock {}: {e}", path.display())).into());
            }
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(RootLock { _file: file })
    }

    /// The registry root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(super) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    pub(super) fn gate(&self) -> &Gate {
        &self.inner.gate
    }

    /// The blob store shared by every repository.
    pub fn blob_store(&self) -> &BlobStore {
        &self.inner.store
    }

    pub(crate) fn repo_dir(&self, repo: &RepoName) -> PathBuf {
        let mut dir = self.inner.root.join("repositories");
        dir.extend(repo.components());
        dir
    }

    fn layer_link(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_layers")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    fn manifest_link(&self, repo: &RepoName, digest: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub(crate) fn tag_file(&self, repo: &RepoName, tag: &Tag) -> PathBuf {
        self.repo_dir(repo).join("_tags").join(tag.as_str())
    }

    pub(crate) fn referrer_dir(&self, repo: &RepoName, subject: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_referrers")
            .join(subject.algorithm().name())
            .join(subject.hex())
    }

    pub(super) fn upload_dir(&self, id: &str) -> PathBuf {
        self.inner.root.join("uploads").join(id)
    }

    /// An upload session's metadata (`<repository>\n<algorithm>\n`): its repository and algorithm, or
    /// `None` when it is missing or torn.
    ///
    /// `meta` is written without fsync (a session need not survive a crash), so after one it may be
    /// missing, empty or cut short: all of these read as an unknown session, and the client starts over.
    /// The session's data is re-hashed and verified against the client's digest in any case, so a lost
    /// `meta` can never store a wrong blob.
    pub(super) fn read_upload_meta(&self, id: &str) -> Option<(String, Algorithm)> {
        let bytes = fs_err::read(self.upload_dir(id).join("meta")).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let mut lines = text.split('\n');
        let repo = lines.next()?;
        let algorithm = Algorithm::from_name(lines.next()?)?;
        // The final newline is written last: without it the file may have been cut short.
        (lines.next() == Some("") && lines.next().is_none()).then(|| (repo.to_owned(), algorithm))
    }

    /// The algorithm of upload session `id` if it belongs to `repo` (see [`FsStorage::read_upload_meta`]).
    pub(super) fn upload_meta(&self, repo: &RepoName, id: &str) -> Result<Algorithm, StorageError> {
        match self.read_upload_meta(id) {
            Some((r, algorithm)) if r == repo.as_str() => Ok(algorithm),
            _ => Err(StorageError::upload_unknown(repo, id)),
        }
    }

    /// Links a blob into `repo` (or refreshes its link) for a write that GC must see: the caller holds
    /// [`FsStorage::reference_gate`].
    pub(super) fn link_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), StorageError> {
        create_empty_durable(&self.layer_link(repo, digest))?;
        self.gate()
            .record(|j| j.layers.push((repo.clone(), digest.clone())));
        Ok(())
    }

    /// Every blob an image manifest names, or every manifest an index names, must be linked into `repo`:
    /// checked again under [`FsStorage::reference_gate`] because GC may have swept one since the service
    /// validated the manifest.
    fn check_references(&self, repo: &RepoName, manifest: &StoredManifest) -> Result<(), StorageError> {
        let refs = parse_manifest(&manifest.bytes, Some(&manifest.media_type)).map_err(|e| {
            StorageError::Corrupt {
                path: format!("{repo}@{}", manifest.digest),
                reason: format!("the manifest to store does not parse: {e}"),
            }
        })?;
        let missing = match refs.kind {
            ManifestKind::Image => refs
                .blobs
                .into_iter()
                .find(|b| !self.layer_link(repo, &b.digest).is_file()),
            ManifestKind::Index => refs
                .manifests
                .into_iter()
                .find(|m| !self.manifest_link(repo, &m.digest).is_file()),
        };
        match missing {
            Some(d) => Err(StorageError::ReferenceUnknown {
                repository: repo.to_string(),
                digest: d.digest,
            }),
            None => Ok(()),
        }
    }

    fn read_manifest_link(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>, StorageError> {
        Ok(not_found(fs_err::read_to_string(
            self.manifest_link(repo, digest),
        ))?)
    }

    pub(crate) fn read_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>, StorageError> {
        let path = self.tag_file(repo, tag);
        let Some(text) = not_found(fs_err::read_to_string(&path))? else {
            return Ok(None);
        };
        text.trim()
            .parse()
            .map(Some)
            .map_err(|e: kiln_oci::DigestError| StorageError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    }
}

impl Storage for FsStorage {
    fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, StorageError> {
        if !self.layer_link(repo, digest).is_file() {
            return Ok(None);
        }
        Ok(self.inner.store.size(digest)?)
    }

    fn open_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<OpenBlob>, StorageError> {
        if !self.layer_link(repo, digest).is_file() {
            return Ok(None);
        }
        Ok(self
            .inner
            .store
            .open_blob(digest)?
            .map(|(file, size)| (Box::new(file) as Box<dyn BlobRead>, size)))
    }

    fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StorageError> {
        Ok(remove_if_present(&self.layer_link(repo, digest))?)
    }

    fn mount_blob(&self, from: &RepoName, to: &RepoName, digest: &Digest) -> Result<bool, StorageError> {
        let _gate = self.reference_gate();
        if self.blob_size(from, digest)?.is_none() {
            return Ok(false);
        }
        self.link_blob(to, digest)?;
        tracing::debug!(%from, %to, %digest, "mounted blob across repositories");
        Ok(true)
    }

    fn touch_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, StorageError> {
        let _gate = self.reference_gate();
        let Some(size) = self.blob_size(repo, digest)? else {
            return Ok(None);
        };
        if touch(&self.layer_link(repo, digest))? {
            self.gate()
                .record(|j| j.layers.push((repo.clone(), digest.clone())));
        }
        Ok(Some(size))
    }

    fn start_upload(
        &self,
        repo: &RepoName,
        algorithm: Algorithm,
        client: Option<&str>,
    ) -> Result<Box<dyn UploadSink>, StorageError> {
        self.start_session(repo, algorithm, client)
    }

    fn resume_upload(&self, repo: &RepoName, id: &str) -> Result<Box<dyn UploadSink>, StorageError> {
        self.resume_session(repo, id)
    }

    fn upload_offset(&self, repo: &RepoName, id: &str) -> Result<u64, StorageError> {
        self.session_offset(repo, id)
    }

    fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<(), StorageError> {
        self.cancel_session(repo, id)
    }

    fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, StorageError> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => match self.read_tag(repo, t)? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        let Some(media_type) = self.read_manifest_link(repo, &digest)? else {
            return Ok(None);
        };
        let Some(bytes) = self.inner.store.read_verified(&digest)? else {
            return Ok(None);
        };
        Ok(Some(StoredManifest {
            digest,
            media_type,
            bytes,
        }))
    }

    fn manifest_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, StorageError> {
        if !self.manifest_link(repo, digest).is_file() {
            return Ok(None);
        }
        Ok(self.inner.store.size(digest)?)
    }

    fn touch_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StorageError> {
        let _gate = self.reference_gate();
        let touched = touch(&self.manifest_link(repo, digest))?;
        if touched {
            self.gate()
                .record(|j| j.manifests.push((repo.clone(), digest.clone())));
        }
        Ok(touched)
    }

    fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: &StoredManifest,
        tags: &[Tag],
        subject: Option<&Digest>,
        references: References,
    ) -> Result<(), StorageError> {
        // From the check of its references to the last tag, GC's sweep waits (and then sees it).
        let _gate = self.reference_gate();
        if references == References::Linked {
            self.check_references(repo, manifest)?;
        }
        // Order matters for crash safety: content, then the link, then the names pointing at it.
        self.inner.store.put(
            manifest.digest.algorithm(),
            &manifest.bytes,
            Some(&manifest.digest),
        )?;
        write_atomic_if_changed(
            &self.manifest_link(repo, &manifest.digest),
            manifest.media_type.as_bytes(),
        )?;
        if let Some(subject) = subject {
            let name = format!("{}-{}", manifest.digest.algorithm(), manifest.digest.hex());
            create_empty_durable(&self.referrer_dir(repo, subject).join(name))?;
        }
        for tag in tags {
            write_atomic_if_changed(
                &self.tag_file(repo, tag),
                format!("{}\n", manifest.digest).as_bytes(),
            )?;
        }
        self.gate().record(|j| {
            j.manifests.push((repo.clone(), manifest.digest.clone()));
            j.tags.extend(tags.iter().map(|t| (repo.clone(), t.to_string())));
        });
        Ok(())
    }

    fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StorageError> {
        let link = self.manifest_link(repo, digest);
        if !link.is_file() {
            return Ok(false);
        }
        // The subject is read before anything changes, so that a failed read leaves the manifest whole.
        // Damaged bytes name no subject: the manifest is deleted all the same (that is how one gets rid of
        // it) and its referrer entry, if any, is left to GC (a listing skips entries without a manifest).
        let subject = match self.inner.store.read_verified(digest) {
            Ok(bytes) => bytes
                .and_then(|b| kiln_oci::manifest::parse_manifest(&b, None).ok())
                .and_then(|refs| refs.subject),
            Err(kiln_oci::StoreError::DigestMismatch { path, actual, .. }) => {
                tracing::warn!(path = %path.display(), %actual, "deleting a damaged manifest");
                None
            }
            Err(e) => return Err(e.into()),
        };
        // Untag first so no tag ever points at a missing manifest.
        for name in list_names(&self.repo_dir(repo).join("_tags"))? {
            let Ok(tag) = name.parse::<Tag>() else { continue };
            if self.read_tag(repo, &tag)?.as_ref() == Some(digest) {
                remove_if_present(&self.tag_file(repo, &tag))?;
            }
        }
        if let Some(subject) = subject {
            let name = format!("{}-{}", digest.algorithm(), digest.hex());
            remove_if_present(&self.referrer_dir(repo, &subject.digest).join(name))?;
        }
        Ok(remove_if_present(&link)?)
    }

    fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, StorageError> {
        Ok(remove_if_present(&self.tag_file(repo, tag))?)
    }

    fn tags(&self, repo: &RepoName) -> Result<Option<Vec<String>>, StorageError> {
        let dir = self.repo_dir(repo);
        if !dir.join("_manifests").is_dir() && !dir.join("_layers").is_dir() {
            return Ok(None);
        }
        Ok(Some(list_names(&dir.join("_tags"))?))
    }

    fn repositories(&self) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        let mut stack = vec![(self.inner.root.join("repositories"), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let mut is_repo = false;
            for name in list_names(&dir)? {
                if name.starts_with('_') {
                    is_repo |= name == "_manifests" || name == "_layers";
                } else if dir.join(&name).is_dir() {
                    let child = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}/{name}")
                    };
                    stack.push((dir.join(&name), child));
                }
            }
            if is_repo && !prefix.is_empty() {
                out.push(prefix);
            }
        }
        out.sort();
        Ok(out)
    }

    fn usage(&self) -> Result<Option<Usage>, StorageError> {
        let store = self.blob_store();
        let mut usage = Usage::default();
        for digest in store.list()? {
            // A blob removed by GC between the listing and the stat is simply not counted.
            if let Some(size) = store.size(&digest)? {
                usage.blobs += 1;
                usage.bytes += size;
            }
        }
        Ok(Some(usage))
    }

    fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<StoredManifest>, StorageError> {
        let mut out = Vec::new();
        for name in list_names(&self.referrer_dir(repo, subject))? {
            let Some(digest) = referrer_digest(&name) else {
                continue;
            };
            if let Some(m) = self.get_manifest(repo, &Reference::Digest(digest))? {
                out.push(m);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn repo() -> RepoName {
        "lost/meta".parse().unwrap()
    }

    /// A session whose `meta` is what a crash can leave of an unsynced write: every variant reads as
    /// an unknown session (a 404 the client recovers from), never a 500, a panic or a stored blob.
    #[test]
    fn a_lost_or_torn_upload_meta_is_an_unknown_session() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"the bytes of a blob".as_slice();
        let digest = Algorithm::Sha256.digest(content);
        let damaged: [Option<&[u8]>; 6] = [
            None,
            Some(b""),
            Some(b"lost/meta"),
            Some(b"lost/meta\nsha2"),
            Some(b"lost/meta\nsha256"),
            Some(b"lost/meta\n\xff\xfe\n"),
        ];
        for meta in damaged {
            let storage = FsStorage::open(dir.path()).unwrap();
            let mut sink = storage.start_upload(&repo(), Algorithm::Sha256, None).unwrap();
            let id = sink.id().to_owned();
            sink.write(content).unwrap();
            drop(sink);
            let path = storage.upload_dir(&id).join("meta");
            match meta {
                None => fs_err::remove_file(&path).unwrap(),
                Some(bytes) => fs_err::write(&path, bytes).unwrap(),
            }
            // Once through the in-memory session (the server lived on), once after a restart.
            for storage in [storage.clone(), FsStorage::open(dir.path()).unwrap()] {
                let unknown = |r: Result<(), StorageError>| {
                    assert!(
                        matches!(r, Err(StorageError::UploadUnknown { .. })),
                        "meta {meta:?}: {r:?}"
                    );
                };
                unknown(storage.resume_upload(&repo(), &id).map(drop));
                unknown(storage.upload_offset(&repo(), &id).map(drop));
                unknown(storage.cancel_upload(&repo(), &id));
                assert_eq!(storage.blob_size(&repo(), &digest).unwrap(), None);
            }
        }
    }

    #[test]
    fn an_intact_session_resumes_after_a_restart_and_links_its_blob() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(dir.path()).unwrap();
        let mut sink = storage.start_upload(&repo(), Algorithm::Sha256, None).unwrap();
        let id = sink.id().to_owned();
        sink.write(b"first ").unwrap();
        drop(sink);
        drop(storage);
        let storage = FsStorage::open(dir.path()).unwrap();
        assert_eq!(storage.upload_offset(&repo(), &id).unwrap(), 6);
        let other: RepoName = "other/repo".parse().unwrap();
        assert!(matches!(
            storage.resume_upload(&other, &id).map(drop),
            Err(StorageError::UploadUnknown { .. })
        ));
        let mut sink = storage.resume_upload(&repo(), &id).unwrap();
        sink.write(b"second").unwrap();
        let digest = Algorithm::Sha256.digest(b"first second");
        assert_eq!(sink.finish(&digest).unwrap(), 12);
        assert_eq!(storage.blob_size(&repo(), &digest).unwrap(), Some(12));
        assert!(!storage.upload_dir(&id).exists());
        // The link is an empty file, and mounting makes another in a new repository.
        assert_eq!(fs_err::read(storage.layer_link(&repo(), &digest)).unwrap(), b"");
        assert!(storage.mount_blob(&repo(), &other, &digest).unwrap());
        assert!(storage.mount_blob(&repo(), &other, &digest).unwrap());
        assert_eq!(storage.blob_size(&other, &digest).unwrap(), Some(12));
        assert_eq!(storage.repositories().unwrap(), ["lost/meta", "other/repo"]);
    }
}
