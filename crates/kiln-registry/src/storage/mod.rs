//! Storage behind the registry: a synchronous trait (the service calls it on tokio's blocking pool) and its
//! filesystem implementation. An object-store backend implements the same trait.

mod fs;
mod gc;
mod uploads;

use std::io::{self, Read, Seek};
use std::time::Duration;

use kiln_oci::{Algorithm, Digest};

use crate::names::{Reference, RepoName, Tag};

pub use fs::FsStorage;
pub use fs::RootLock;
pub use gc::{GcOptions, GcReport, Problem, TagExpiry};

/// A blob being read: seekable for Range requests.
pub trait BlobRead: Read + Seek + Send {}
impl<T: Read + Seek + Send> BlobRead for T {}

/// An opened blob and its size.
pub type OpenBlob = (Box<dyn BlobRead>, u64);

/// A manifest as stored: its digest, the content type it was pushed with, its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// Digest of `bytes`.
    pub digest: Digest,
    /// The content type it was pushed with.
    pub media_type: String,
    /// The bytes as pushed.
    pub bytes: Vec<u8>,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A filesystem or backend failure.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A blob store failure.
    #[error(transparent)]
    Store(kiln_oci::StoreError),
    /// The uploaded content does not match the digest the client gave.
    #[error("uploaded content has digest {actual}, client said {expected}")]
    DigestMismatch {
        /// What the client said.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// No such upload session in this repository.
    #[error("upload {id} is unknown in repository {repository}")]
    UploadUnknown {
        /// The session id.
        id: String,
        /// The repository.
        repository: String,
    },
    /// Another request is writing to this upload session.
    #[error("upload {id} is in use by another request")]
    UploadBusy {
        /// The session id.
        id: String,
    },
    /// One more upload session would pass a cap of [`UploadLimits`].
    #[error(
        "{scope} has {limit} upload sessions open, the most allowed: finish or cancel one first \
         (a session unused for {idle_timeout:?} expires)"
    )]
    TooManyUploads {
        /// `repository NAME` or `client WHO`.
        scope: String,
        /// The cap.
        limit: usize,
        /// When idle sessions expire.
        idle_timeout: Duration,
    },
    /// A manifest names a blob (or an index a manifest) that the repository does not have, or no longer
    /// has: garbage collection removed it after the manifest was checked.
    #[error("{digest} is not in repository {repository}")]
    ReferenceUnknown {
        /// The repository.
        repository: String,
        /// The missing blob or manifest.
        digest: Digest,
    },
    /// Another process uses the registry root ([`FsStorage::lock_root`]).
    #[error(
        "registry root is in use by {} (lock {path})",
        holder.map_or_else(|| "another process".to_owned(), |pid| format!("process {pid}"))
    )]
    RootLocked {
        /// The lock file.
        path: String,
        /// The process id written in it, if readable.
        holder: Option<u32>,
    },
    /// Stored data that should be valid is not (e.g. a tag file without a digest).
    #[error("corrupt storage at {path}: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// A blob store failure of the storage itself: content that does not hash to its digest when read is
/// damaged storage (a server error that `fsck` names), never the client's fault. Only finishing an upload
/// compares with a digest a client gave: see [`StorageError::uploaded`].
impl From<kiln_oci::StoreError> for StorageError {
    fn from(e: kiln_oci::StoreError) -> StorageError {
        match e {
            kiln_oci::StoreError::DigestMismatch {
                expected,
                actual,
                path,
            } => StorageError::Corrupt {
                path: path.display().to_string(),
                reason: format!("content has digest {actual}, expected {expected}"),
            },
            kiln_oci::StoreError::Io(e) => StorageError::Io(e),
            other => StorageError::Store(other),
        }
    }
}

impl StorageError {
    /// A blob store failure while committing an upload session against the client's digest: a mismatch
    /// is the uploaded content's ([`StorageError::DigestMismatch`], a 400).
    pub fn uploaded(e: kiln_oci::StoreError) -> StorageError {
        match e {
            kiln_oci::StoreError::DigestMismatch { expected, actual, .. } => {
                StorageError::DigestMismatch { expected, actual }
            }
            other => other.into(),
        }
    }

    pub(crate) fn upload_unknown(repo: &RepoName, id: &str) -> StorageError {
        StorageError::UploadUnknown {
            id: id.to_owned(),
            repository: repo.to_string(),
        }
    }
}

/// Caps and expiry of upload sessions (`[uploads]` in docs/registry-config.md). A session is open from
/// its `POST` until its final `PUT`, its `DELETE`, or its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Open sessions per repository; 0: no cap.
    pub per_repository: usize,
    /// Open sessions per client (its user when it authenticated, else its IP address); 0: no cap.
    pub per_client: usize,
    /// A session that no request used for this long is removed (404 `BLOB_UPLOAD_UNKNOWN` afterwards).
    pub idle_timeout: Duration,
}

impl Default for UploadLimits {
    fn default() -> UploadLimits {
        UploadLimits {
            per_repository: 256,
            per_client: 64,
            idle_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// An upload session checked out by one request. Dropping it returns it to the storage unchanged.
pub trait UploadSink: Send {
    /// The session id.
    fn id(&self) -> &str;
    /// Bytes received so far.
    fn offset(&self) -> u64;
    /// Appends bytes.
    fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Cuts the session back to `offset` bytes (undoes a failed chunk).
    fn truncate(&mut self, offset: u64) -> Result<(), StorageError>;
    /// Verifies the content against `expected`, stores it as a blob and links it into the repository;
    /// the session ends either way. Returns the blob's size.
    fn finish(self: Box<Self>, expected: &Digest) -> Result<u64, StorageError>;
}

/// What [`Storage::put_manifest`] requires of the blobs (or child manifests) a manifest names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum References {
    /// Linked into the repository: a push, which the service validated. Checked again where writes are
    /// ordered against garbage collection, which may have removed one since.
    Linked,
    /// Nothing: a pulled-through manifest, whose blobs are fetched when a client asks for them.
    Unchecked,
}

/// Everything the registry stores. Names, tags and digests are validated before they reach it.
pub trait Storage: Send + Sync + 'static {
    /// The size of a blob linked into `repo`, or `None`.
    fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, StorageError>;
    /// Opens a blob linked into `repo`, with its size.
    fn open_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<OpenBlob>, StorageError>;
    /// Unlinks a blob from `repo`. `false` if it was not linked.
    fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StorageError>;
    /// Links a blob of `from` into `to`. `false` if `from` does not have it.
    fn mount_blob(&self, from: &RepoName, to: &RepoName, digest: &Digest) -> Result<bool, StorageError>;
    /// The size of a blob linked into `repo`, or `None`, for a client deciding whether to upload it (a
    /// `HEAD`): the link's age is refreshed so that garbage collection's grace period covers the
    /// manifest push that relies on the answer.
    fn touch_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, StorageError> {
        self.blob_size(repo, digest)
    }
    /// Starts an upload session for `client` (`None`: the registry itself, which no client cap counts) and
    /// checks it out to the caller; [`StorageError::TooManyUploads`] past a cap of [`UploadLimits`].
    fn start_upload(
        &self,
        repo: &RepoName,
        algorithm: Algorithm,
        client: Option<&str>,
    ) -> Result<Box<dyn UploadSink>, StorageError>;
    /// Checks out an upload session for writing or finishing.
    fn resume_upload(&self, repo: &RepoName, id: &str) -> Result<Box<dyn UploadSink>, StorageError>;
    /// Bytes received by an upload session.
    fn upload_offset(&self, repo: &RepoName, id: &str) -> Result<u64, StorageError>;
    /// Ends an upload session, discarding its data.
    fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<(), StorageError>;
    /// A manifest by tag or digest.
    fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, StorageError>;
    /// The size of a manifest linked into `repo`, or `None`.
    fn manifest_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>, StorageError>;
    /// Refreshes the age of a manifest linked into `repo` that a client found with a `HEAD` and may now
    /// reference (from an index) instead of pushing it again; `false` if absent.
    fn touch_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StorageError> {
        Ok(self.manifest_size(repo, digest)?.is_some())
    }
    /// Stores a manifest (already validated), points `tags` at it and records it as a referrer of `subject`.
    /// With [`References::Linked`], [`StorageError::ReferenceUnknown`] if a blob or child manifest it
    /// names is no longer linked into `repo`.
    fn put_manifest(
        &self,
        repo: &RepoName,
        manifest: &StoredManifest,
        tags: &[Tag],
        subject: Option<&Digest>,
        references: References,
    ) -> Result<(), StorageError>;
    /// Removes a manifest from `repo` with every tag pointing at it. `false` if absent.
    fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool, StorageError>;
    /// Removes a tag only. `false` if absent.
    fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool, StorageError>;
    /// The tags of `repo`, sorted; `None` if the repository is unknown.
    fn tags(&self, repo: &RepoName) -> Result<Option<Vec<String>>, StorageError>;
    /// Every repository, sorted.
    fn repositories(&self) -> Result<Vec<String>, StorageError>;
    /// The manifests in `repo` whose subject is `subject`.
    fn referrers(&self, repo: &RepoName, subject: &Digest) -> Result<Vec<StoredManifest>, StorageError>;
    /// How much is stored (the storage-size metric); `None` when the backend cannot tell cheaply.
    fn usage(&self) -> Result<Option<Usage>, StorageError> {
        Ok(None)
    }
}

/// How much a storage holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Stored blobs, manifests included, each counted once however many repositories link it.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
}
