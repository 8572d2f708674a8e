//! A content-addressed blob store on the filesystem, in OCI image-layout style (`blobs/<alg>/<hex>`).

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest, Hasher};

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed (the message names the path).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Written or read content does not hash to the expected digest.
    #[error("content of {path} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// The digest the content should have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
        /// The file involved.
        path: PathBuf,
    },
    /// The expected digest uses another algorithm than the writer.
    #[error("expected digest {expected} does not use the writer's algorithm {algorithm}")]
    AlgorithmMismatch {
        /// The expected digest.
        expected: Digest,
        /// The writer's algorithm.
        algorithm: Algorithm,
    },
}

/// Blobs stored under `<root>/blobs/<alg>/<hex>`; temporary files under `<root>/ingest/`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<BlobStore, StoreError> {
        let root = root.into();
        for alg in Algorithm::ALL {
            fs_err::create_dir_all(root.join("blobs").join(alg.name()))?;
        }
        fs_err::create_dir_all(root.join("ingest"))?;
        Ok(BlobStore { root })
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    /// The size of a stored blob, or `None` if it is absent.
    pub fn size(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        match fs_err::metadata(self.blob_path(digest)) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a stored blob for reading without verification (for Range reads), with its size.
    pub fn open_blob(&self, digest: &Digest) -> Result<Option<(fs_err::File, u64)>, StoreError> {
        match fs_err::File::open(self.blob_path(digest)) {
            Ok(file) => {
                let size = file.metadata()?.len();
                Ok(Some((file, size)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a stored blob so that reading it to the end fails unless the content matches its digest.
    pub fn open_verified(
        &self,
        digest: &Digest,
    ) -> Result<Option<VerifyingReader<fs_err::File>>, StoreError> {
        Ok(self
            .open_blob(digest)?
            .map(|(file, _)| VerifyingReader::new(file, digest.clone(), self.blob_path(digest))))
    }

    /// Reads a whole stored blob into memory, verified (for small blobs such as manifests and configs).
    pub fn read_verified(&self, digest: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(mut reader) = self.open_verified(digest)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|e| reader.into_error(e))?;
        Ok(Some(bytes))
    }

    /// Re-hashes a stored blob. `Ok(false)` if it is absent.
    pub fn verify(&self, digest: &Digest) -> Result<bool, StoreError> {
        let Some(mut reader) = self.open_verified(digest)? else {
            return Ok(false);
        };
        io::copy(&mut reader, &mut io::sink()).map_err(|e| reader.into_error(e))?;
        Ok(true)
    }

    /// Stores `bytes`, verifying them against `expected` if given. Returns the digest in `algorithm`.
    /// Bytes already stored under their digest are not written again: no temp file, no fsync (a no-change
    /// rebuild stores the same config and manifest, and each fsync can take tens of milliseconds).
    pub fn put(
        &self,
        algorithm: Algorithm,
        bytes: &[u8],
        expected: Option<&Digest>,
    ) -> Result<Digest, StoreError> {
        let digest = algorithm.digest(bytes);
        if expected.is_none_or(|e| *e == digest) && self.holds(&digest, bytes)? {
            return Ok(digest);
        }
        let mut writer = self.writer(algorithm)?;
        writer.write_all(bytes)?;
        writer.commit(expected)
    }

    /// Whether the blob `digest` is stored with exactly `bytes` (a damaged copy is not: it gets rewritten).
    fn holds(&self, digest: &Digest, bytes: &[u8]) -> Result<bool, StoreError> {
        if self.size(digest)? != Some(bytes.len() as u64) {
            return Ok(false);
        }
        match fs_err::read(self.blob_path(digest)) {
            Ok(stored) => Ok(stored == bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A writer into a fresh temporary file under `<root>/ingest/`, discarded unless committed.
    pub fn writer(&self, algorithm: Algorithm) -> Result<BlobWriter, StoreError> {
        let temp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(self.root.join("ingest"))
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot create a file in {}: {e}", self.root.display()),
                )
            })?;
        let (file, path) = temp.keep().map_err(|e| e.error)?;
        Ok(BlobWriter::from_parts(
            self,
            fs_err::File::from_parts(file, path),
            algorithm,
            0,
            true,
        ))
    }

    /// A writer appending to the file at `path`, which must be on the store's filesystem (an upload
    /// session). The file is created if absent; existing content is hashed first so the writer resumes
    /// where it ended. The file is kept when the writer is dropped uncommitted.
    pub fn resume_writer(&self, path: &Path, algorithm: Algorithm) -> Result<BlobWriter, StoreError> {
        let mut file = fs_err::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let mut hasher = algorithm.hasher();
        let mut buf = vec![0u8; 256 * 1024];
        let mut len = 0u64;
        file.seek(SeekFrom::Start(0))?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        let mut writer = BlobWriter::from_parts(self, file, algorithm, len, false);
        writer.hasher = hasher;
        Ok(writer)
    }

    /// Reopens the file of a [`ParkedWriter`] to append to it. If the file no longer has the length the
    /// writer had when parked (changed by someone else), its content is hashed again, as
    /// [`BlobStore::resume_writer`] does.
    pub fn unpark(&self, parked: ParkedWriter) -> Result<BlobWriter, StoreError> {
        let file = fs_err::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&parked.path)?;
        if file.metadata()?.len() != parked.len {
            drop(file);
            return self.resume_writer(&parked.path, parked.hasher.algorithm());
        }
        let mut writer = BlobWriter::from_parts(self, file, parked.hasher.algorithm(), parked.len, false);
        writer.hasher = parked.hasher;
        Ok(writer)
    }

    /// Removes a blob. `Ok(false)` if it was absent.
    pub fn delete(&self, digest: &Digest) -> Result<bool, StoreError> {
        match fs_err::remove_file(self.blob_path(digest)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Every stored blob's digest, sorted; files whose names are not valid digests are skipped.
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let mut out = Vec::new();
        for alg in Algorithm::ALL {
            for entry in fs_err::read_dir(self.root.join("blobs").join(alg.name()))? {
                let entry = entry?;
                if let Some(name) = entry.file_name().to_str()
                    && let Ok(digest) = Digest::new(alg, name)
                {
                    out.push(digest);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Streams content into the store, hashing as it writes. Nothing is visible under `blobs/` until
/// [`BlobWriter::commit`] has verified, fsynced and renamed the file.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<fs_err::File>,
    path: PathBuf,
    blobs: PathBuf,
    hasher: Hasher,
    len: u64,
    discard_on_drop: bool,
    /// Nothing was written since the last [`BlobWriter::sync`]: the commit need not fsync again.
    synced: bool,
}

impl BlobWriter {
    fn from_parts(
        store: &BlobStore,
        file: fs_err::File,
        algorithm: Algorithm,
        len: u64,
        discard_on_drop: bool,
    ) -> BlobWriter {
        BlobWriter {
            path: file.path().to_owned(),
            file: Some(file),
            blobs: store.root.join("blobs"),
            hasher: algorithm.hasher(),
            len,
            discard_on_drop,
            synced: false,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The algorithm the writer hashes with.
    pub fn algorithm(&self) -> Algorithm {
        self.hasher.algorithm()
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&mut self) -> io::Result<&mut fs_err::File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other(format!("blob writer for {} is closed", self.path.display())))
    }

    /// Cuts the content back to its first `len` bytes (to undo a failed chunk) and re-hashes it.
    pub fn truncate(&mut self, len: u64) -> Result<(), StoreError> {
        let algorithm = self.algorithm();
        let path = self.path.clone();
        let file = self.file()?;
        file.set_len(len)?;
        file.seek(SeekFrom::Start(0))?;
        let mut hasher = algorithm.hasher();
        let mut reader = io::Read::by_ref(file.file_mut()).take(len);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot re-read {}: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        self.hasher = hasher;
        self.len = len;
        self.synced = false;
        Ok(())
    }

    /// Fsyncs what was written so far, so that a [`BlobWriter::commit`] right after has little left to
    /// wait for (a caller can sync outside a lock and commit inside it).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        let file = self.file()?;
        file.flush()?;
        file.sync_all()?;
        self.synced = true;
        Ok(())
    }

    /// Verifies the content against `expected` (if given), fsyncs it and renames it to `blobs/<alg>/<hex>`.
    /// On a mismatch the file is removed and nothing is stored. Returns the content's digest.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let result = self.commit_inner(expected);
        if result.is_err() {
            self.discard();
        }
        result
    }

    fn commit_inner(&mut self, expected: Option<&Digest>) -> Result<Digest, StoreError> {
        if let Some(expected) = expected
            && expected.algorithm() != self.algorithm()
        {
            return Err(StoreError::AlgorithmMismatch {
                expected: expected.clone(),
                algorithm: self.algorithm(),
            });
        }
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("blob writer is closed"))?;
        if !self.synced {
            file.flush()?;
            file.sync_all()?;
        }
        drop(file);
        let fresh = self.algorithm().hasher();
        let actual = std::mem::replace(&mut self.hasher, fresh).finish();
        if let Some(expected) = expected
            && *expected != actual
        {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                actual,
                path: self.path.clone(),
            });
        }
        let dir = self.blobs.join(actual.algorithm().name());
        let target = dir.join(actual.hex());
        // Identical content may be committed concurrently: the last rename wins harmlessly.
        fs_err::rename(&self.path, &target)?;
        self.discard_on_drop = false;
        fs_err::File::open(&dir)?.sync_all()?;
        Ok(actual)
    }

    /// Closes the file and keeps what is needed to go on later ([`BlobStore::unpark`]): the hash state and
    /// the length. An idle upload session holds no file descriptor this way. The file is kept.
    pub fn park(mut self) -> ParkedWriter {
        self.discard_on_drop = false;
        let fresh = self.algorithm().hasher();
        ParkedWriter {
            path: std::mem::take(&mut self.path),
            hasher: std::mem::replace(&mut self.hasher, fresh),
            len: self.len,
        }
    }

    /// Removes the file being written.
    pub fn discard(mut self) {
        self.discard_on_drop = true;
        // Drop does the work.
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.discard_on_drop {
            self.file = None;
            let _ignored = std::fs::remove_file(&self.path);
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file()?.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        self.synced = false;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

/// A [`BlobWriter`] whose file is closed ([`BlobWriter::park`]); [`BlobStore::unpark`] goes on writing.
#[derive(Debug, Clone)]
pub struct ParkedWriter {
    path: PathBuf,
    hasher: Hasher,
    len: u64,
}

impl ParkedWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Hashes what it reads; reading to the end fails with `InvalidData` unless the content matches.
#[derive(Debug)]
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    path: PathBuf,
    mismatch: Option<Digest>,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, whose content should hash to `expected`; `path` names it in errors.
    pub fn new(inner: R, expected: Digest, path: PathBuf) -> VerifyingReader<R> {
        VerifyingReader {
            inner,
            hasher: Some(expected.algorithm().hasher()),
            expected,
            path,
            mismatch: None,
        }
    }

    /// Turns an I/O error of this reader into a [`StoreError`], a digest mismatch if that was the cause.
    pub fn into_error(self, error: io::Error) -> StoreError {
        match self.mismatch {
            Some(actual) => StoreError::DigestMismatch {
                expected: self.expected,
                actual,
                path: self.path,
            },
            None => StoreError::Io(error),
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(actual) = &self.mismatch {
            return Err(mismatch_error(&self.path, &self.expected, actual));
        }
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
        } else if !buf.is_empty()
            && let Some(h) = self.hasher.take()
        {
            let actual = h.finish();
            if actual != self.expected {
                let err = mismatch_error(&self.path, &self.expected, &actual);
                self.mismatch = Some(actual);
                return Err(err);
            }
        }
        Ok(n)
    }
}

fn mismatch_error(path: &Path, expected: &Digest, actual: &Digest) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "content of {} has digest {actual}, expected {expected}",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingest_is_empty(store: &BlobStore) -> bool {
        fs_err::read_dir(store.root().join("ingest"))
            .unwrap()
            .next()
            .is_none()
    }

    #[test]
    fn putting_stored_bytes_again_writes_nothing_and_repairs_a_damaged_copy() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = store.put(Algorithm::Sha256, b"config", None).unwrap();
        let inode = |s: &BlobStore| fs_err::metadata(s.blob_path(&digest)).unwrap().ino();
        let first = inode(&store);
        assert_eq!(
            store.put(Algorithm::Sha256, b"config", Some(&digest)).unwrap(),
            digest
        );
        assert_eq!(inode(&store), first, "an identical blob is not rewritten");
        assert!(ingest_is_empty(&store));
        fs_err::write(store.blob_path(&digest), b"CONFIG").unwrap();
        assert_eq!(store.put(Algorithm::Sha256, b"config", None).unwrap(), digest);
        assert_eq!(store.read_verified(&digest).unwrap().unwrap(), b"config");
        let other = Algorithm::Sha256.digest(b"other");
        assert!(matches!(
            store.put(Algorithm::Sha256, b"config", Some(&other)),
            Err(StoreError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn streaming_write_lands_at_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let expected = Algorithm::Sha256.digest(b"hello world");
        let mut w = store.writer(Algorithm::Sha256).unwrap();
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        assert_eq!(w.len(), 11);
        assert_eq!(store.size(&expected).unwrap(), None, "not visible before commit");
        let digest = w.commit(Some(&expected)).unwrap();
        assert_eq!(digest, expected);
        assert_eq!(store.size(&digest).unwrap(), Some(11));
        assert_eq!(store.read_verified(&digest).unwrap().unwrap(), b"hello world");
        assert!(
            store
                .blob_path(&digest)
                .ends_with(format!("blobs/sha256/{}", digest.hex()))
        );
        assert!(ingest_is_empty(&store));
        assert_eq!(store.list().unwrap(), vec![digest]);
    }

    #[test]
    fn sha512_blobs_live_under_their_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = store.put(Algorithm::Sha512, b"x", None).unwrap();
        assert_eq!(d, Algorithm::Sha512.digest(b"x"));
        assert!(dir.path().join("blobs/sha512").join(d.hex()).is_file());
    }

    #[test]
    fn mismatched_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let wrong = Algorithm::Sha256.digest(b"something else");
        let mut w = store.writer(Algorithm::Sha256).unwrap();
        w.write_all(b"hello").unwrap();
        let err = w.commit(Some(&wrong)).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(err.to_string().contains(&wrong.to_string()));
        assert!(store.list().unwrap().is_empty());
        assert!(ingest_is_empty(&store));
        let sha512 = Algorithm::Sha512.digest(b"hello");
        let mut w = store.writer(Algorithm::Sha256).unwrap();
        w.write_all(b"hello").unwrap();
        assert!(matches!(
            w.commit(Some(&sha512)),
            Err(StoreError::AlgorithmMismatch { .. })
        ));
        assert!(ingest_is_empty(&store));
    }

    #[test]
    fn abandoned_writer_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut w = store.writer(Algorithm::Sha256).unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert!(ingest_is_empty(&store));
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn resumed_writer_continues_the_hash_and_truncate_undoes_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let session = dir.path().join("ingest/session");
        let mut w = store.resume_writer(&session, Algorithm::Sha256).unwrap();
        w.write_all(b"abc").unwrap();
        drop(w);
        assert!(session.is_file(), "a session file survives its writer");
        let mut w = store.resume_writer(&session, Algorithm::Sha256).unwrap();
        assert_eq!(w.len(), 3);
        w.write_all(b"WRONG").unwrap();
        w.truncate(3).unwrap();
        w.write_all(b"def").unwrap();
        let d = w.commit(Some(&Algorithm::Sha256.digest(b"abcdef"))).unwrap();
        assert_eq!(store.read_verified(&d).unwrap().unwrap(), b"abcdef");
        assert!(!session.exists());
    }

    #[test]
    fn a_parked_writer_holds_no_file_and_goes_on_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let session = dir.path().join("ingest/session");
        let mut w = store.resume_writer(&session, Algorithm::Sha256).unwrap();
        w.write_all(b"abc").unwrap();
        let parked = w.park();
        assert_eq!(parked.len(), 3);
        assert!(session.is_file(), "parking keeps the file");
        let mut w = store.unpark(parked.clone()).unwrap();
        w.write_all(b"def").unwrap();
        drop(w);
        // The file grew behind the parked writer's back: it is hashed again rather than trusted.
        let mut w = store.unpark(parked).unwrap();
        assert_eq!(w.len(), 6);
        w.sync().unwrap();
        w.write_all(b"g").unwrap();
        let d = w.commit(Some(&Algorithm::Sha256.digest(b"abcdefg"))).unwrap();
        assert_eq!(store.read_verified(&d).unwrap().unwrap(), b"abcdefg");
    }

    #[test]
    fn corrupted_blob_fails_verification() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = store.put(Algorithm::Sha256, b"good", None).unwrap();
        assert!(store.verify(&d).unwrap());
        fs_err::write(store.blob_path(&d), b"evil").unwrap();
        assert!(matches!(store.verify(&d), Err(StoreError::DigestMismatch { .. })));
        assert!(matches!(
            store.read_verified(&d),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!store.verify(&Algorithm::Sha256.digest(b"absent")).unwrap());
        assert!(store.delete(&d).unwrap());
        assert!(!store.delete(&d).unwrap());
    }
}
