//! The filesystem storage; its layout is documented in `docs/registry-storage.md`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use kiln_oci::{Algorithm, BlobStore, BlobWriter, Digest};

use super::{BlobRead, OpenBlob, Storage, StorageError, StoredManifest, UploadSink, Usage};
use crate::names::{Reference, RepoName, Tag};

/// The layout version written to `<root>/kiln-registry.json`.
pub const LAYOUT_VERSION: u64 = 1;

enum Slot {
    Idle(Box<BlobWriter>),
    Busy,
}

struct Inner {
    root: PathBuf,
    store: BlobStore,
    uploads: Mutex<HashMap<String, Slot>>,
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

fn not_found<T>(r: io::Result<T>) -> io::Result<Option<T>> {
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
/// file, file fsync or rename), then fsyncs its folder. An existing file is kept, and its folder still
/// fsynced: the request that created it may not have synced it yet.
fn create_empty_durable(path: &Path) -> io::Result<()> {
    let dir = parent(path)?;
    fs_err::create_dir_all(dir)?;
    fs_err::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    sync_dir(dir)
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
/// manifest link's again.
fn write_atomic_if_changed(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match not_found(fs_err::read(path))? {
        Some(existing) if existing == bytes => Ok(()),
        _ => write_atomic(path, bytes),
    }
}

fn remove_if_present(path: &Path) -> io::Result<bool> {
    Ok(not_found(fs_err::remove_file(path))?.is_some())
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
    /// Opens (creating if needed) a registry root. Fails if it was written by a newer layout.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsStorage, StorageError> {
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
        Ok(FsStorage {
            inner: Arc::new(Inner {
                root,
                store,
                uploads: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The registry root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Drops the in-memory state of an upload session (its files are being removed).
    pub(crate) fn forget_upload(&self, id: &str) {
        self.uploads().remove(id);
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

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.inner.root.join("uploads").join(id)
    }

    fn uploads(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // A poisoned map only means a request panicked while holding it; the map itself stays usable.
        self.inner.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads an upload session's metadata (`<repository>\n<algorithm>\n`) if it belongs to `repo`.
    ///
    /// `meta` is written without fsync (a session need not survive a crash), so after one it may be
    /// missing, empty or cut short: all of these read as an unknown session, and the client starts over.
    /// The session's data is re-hashed and verified against the client's digest in any case, so a lost
    /// `meta` can never store a wrong blob.
    fn upload_meta(&self, repo: &RepoName, id: &str) -> Result<Algorithm, StorageError> {
        let Some(bytes) = not_found(fs_err::read(self.upload_dir(id).join("meta")))? else {
            return Err(upload_unknown(repo, id));
        };
        let mut lines = bytes.split(|b| *b == b'\n');
        if lines.next() != Some(repo.as_str().as_bytes()) {
            return Err(upload_unknown(repo, id));
        }
        let algorithm = lines
            .next()
            .and_then(|name| std::str::from_utf8(name).ok())
            .and_then(Algorithm::from_name);
        // The final newline is written last: without it the file may have been cut short.
        match (algorithm, lines.next()) {
            (Some(algorithm), Some(b"")) => Ok(algorithm),
            _ => Err(upload_unknown(repo, id)),
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

fn upload_unknown(repo: &RepoName, id: &str) -> StorageError {
    StorageError::UploadUnknown {
        id: id.to_owned(),
        repository: repo.to_string(),
    }
}

struct FsUpload {
    storage: FsStorage,
    repo: RepoName,
    id: String,
    writer: Option<BlobWriter>,
}

impl FsUpload {
    fn writer(&mut self) -> Result<&mut BlobWriter, StorageError> {
        self.writer
            .as_mut()
            .ok_or_else(|| StorageError::Io(io::Error::other(format!("upload {} is closed", self.id))))
    }
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        let mut uploads = self.storage.uploads();
        match self.writer.take() {
            // Still a session (not finished, not cancelled meanwhile): hand it back.
            Some(writer) if self.storage.upload_dir(&self.id).is_dir() => {
                uploads.insert(self.id.clone(), Slot::Idle(Box::new(writer)));
            }
            _ => {
                uploads.remove(&self.id);
            }
        }
    }
}

impl UploadSink for FsUpload {
    fn id(&self) -> &str {
        &self.id
    }

    fn offset(&self) -> u64 {
        self.writer.as_ref().map_or(0, BlobWriter::len)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.writer()?.write_all(bytes)?;
        Ok(())
    }

    fn truncate(&mut self, offset: u64) -> Result<(), StorageError> {
        self.writer()?.truncate(offset)?;
        Ok(())
    }

    fn finish(mut self: Box<Self>, expected: &Digest) -> Result<u64, StorageError> {
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| StorageError::Io(io::Error::other(format!("upload {} is closed", self.id))))?;
        let dir = self.storage.upload_dir(&self.id);
        if writer.algorithm() != expected.algorithm() {
            // The session hashed with another algorithm than the final digest: re-hash the data once.
            let path = writer.path().to_owned();
            drop(writer);
            writer = self
                .storage
                .inner
                .store
                .resume_writer(&path, expected.algorithm())?;
        }
        let size = writer.len();
        let result = writer.commit(Some(expected));
        let _ignored = fs_err::remove_dir_all(&dir);
        let digest = result.map_err(StorageError::uploaded)?;
        create_empty_durable(&self.storage.layer_link(&self.repo, &digest))?;
        Ok(size)
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
        if self.blob_size(from, digest)?.is_none() {
            return Ok(false);
        }
        create_empty_durable(&self.layer_link(to, digest))?;
        tracing::debug!(%from, %to, %digest, "mounted blob across repositories");
        Ok(true)
    }

    fn start_upload(&self, repo: &RepoName, algorithm: Algorithm) -> Result<String, StorageError> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let dir = self.upload_dir(&id);
        fs_err::create_dir_all(&dir)?;
        // No fsync: a session need not survive a crash (see `upload_meta`).
        fs_err::write(dir.join("meta"), format!("{repo}\n{algorithm}\n"))?;
        let writer = self.inner.store.resume_writer(&dir.join("data"), algorithm)?;
        self.uploads().insert(id.clone(), Slot::Idle(Box::new(writer)));
        Ok(id)
    }

    fn resume_upload(&self, repo: &RepoName, id: &str) -> Result<Box<dyn UploadSink>, StorageError> {
        let algorithm = self.upload_meta(repo, id)?;
        let writer = {
            let mut uploads = self.uploads();
            match uploads.insert(id.to_owned(), Slot::Busy) {
                Some(Slot::Idle(writer)) => Some(*writer),
                Some(Slot::Busy) => return Err(StorageError::UploadBusy { id: id.to_owned() }),
                None => None,
            }
        };
        let mut upload = FsUpload {
            storage: self.clone(),
            repo: repo.clone(),
            id: id.to_owned(),
            writer,
        };
        if upload.writer.is_none() {
            // Not in memory (e.g. after a restart): re-hash what the session file holds.
            let writer = self
                .inner
                .store
                .resume_writer(&self.upload_dir(id).join("data"), algorithm);
            match writer {
                Ok(w) => upload.writer = Some(w),
                // Dropping the writer-less upload frees its slot.
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Box::new(upload))
    }

    fn upload_offset(&self, repo: &RepoName, id: &str) -> Result<u64, StorageError> {
        self.upload_meta(repo, id)?;
        if let Some(Slot::Idle(writer)) = self.uploads().get(id) {
            return Ok(writer.len());
        }
        let data = self.upload_dir(id).join("data");
        Ok(not_found(fs_err::metadata(&data))?.map_or(0, |m| m.len()))
    }

    fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<(), StorageError> {
        self.upload_meta(repo, id)?;
        self.uploads().remove(id);
        fs_err::remove_dir_all(self.upload_dir(id))?;
        Ok(())
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

    fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: &StoredManifest,
        tags: &[Tag],
        subject: Option<&Digest>,
    ) -> Result<(), StorageError> {
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
            let Some((alg, hex)) = name.split_once('-') else {
                continue;
            };
            let Some(alg) = Algorithm::from_name(alg) else {
                continue;
            };
            let Ok(digest) = Digest::new(alg, hex) else {
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
            let id = storage.start_upload(&repo(), Algorithm::Sha256).unwrap();
            let mut sink = storage.resume_upload(&repo(), &id).unwrap();
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
        let id = storage.start_upload(&repo(), Algorithm::Sha256).unwrap();
        let mut sink = storage.resume_upload(&repo(), &id).unwrap();
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
