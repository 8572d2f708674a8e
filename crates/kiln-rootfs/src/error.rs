//! The one error type of the crate. Every variant names the path, layer entry or value at fault.

use std::io;
use std::path::PathBuf;

/// What went wrong in a filesystem operation of kiln-rootfs.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A system call on `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The path operated on (host path, or path inside a root).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A layer tar entry is refused (hostile or unsupported).
    #[error("layer entry {entry:?}: {reason}")]
    Entry {
        /// The entry's name as written in the tar.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// Applying a layer tar entry to the filesystem failed.
    #[error("layer entry {entry:?}: {source}")]
    EntryIo {
        /// The entry's name as written in the tar.
        entry: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The layer tar itself cannot be read (truncated, bad checksum, …).
    #[error("reading layer tar after entry {after:?}: {source}")]
    Tar {
        /// The last entry read successfully (empty at the start).
        after: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An [`crate::unpack::UnpackLimits`] limit was exceeded.
    #[error("layer entry {entry:?}: {what} exceeds the limit of {limit}")]
    Limit {
        /// The entry at which the limit was reached.
        entry: String,
        /// Which quantity (entries, bytes, name length, …).
        what: &'static str,
        /// The limit in force.
        limit: u64,
    },
    /// The unpack destination exists already.
    #[error("unpack destination {0} already exists")]
    DestinationExists(PathBuf),
    /// A file of a directory being captured cannot be represented in an OCI layer.
    #[error("cannot capture {path}: {reason}")]
    Capture {
        /// The path inside the captured directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing the layer tar to the output failed.
    #[error("writing layer tar at {path}: {source}")]
    Write {
        /// The entry being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A path given to [`crate::root::Root`] is not usable for the operation.
    #[error("path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// Something other than a directory is in the way of a directory.
    #[error("{path} is in the way: it exists and is not a directory")]
    NotADirectory {
        /// The path (inside the root) of the offending file.
        path: PathBuf,
    },
    /// A directory is where a non-directory must be written.
    #[error("{path} is a directory")]
    IsADirectory {
        /// The path (inside the root) of the directory.
        path: PathBuf,
    },
    /// Mounting or unmounting an overlay failed.
    #[error("overlay on {merged}: {step}: {source}")]
    Mount {
        /// The mount point.
        merged: PathBuf,
        /// Which step failed (`lowerdir+ /x`, `fsmount`, `unmount`, …).
        step: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A user name is not in the image's passwd file (or the file is missing).
    #[error("user {user:?} not found in {file} of the image")]
    UnknownUser {
        /// The user as given.
        user: String,
        /// The file looked in (`/etc/passwd`).
        file: PathBuf,
    },
    /// A group name is not in the image's group file (or the file is missing).
    #[error("group {group:?} not found in {file} of the image")]
    UnknownGroup {
        /// The group as given.
        group: String,
        /// The file looked in (`/etc/group`).
        file: PathBuf,
    },
    /// A numeric user or group id is out of range.
    #[error("invalid user or group id {0:?}")]
    InvalidId(String),
}

/// Shorthand for the crate's results.
pub type Result<T, E = RootfsError> = std::result::Result<T, E>;

/// Reading and checking layer tars happens in kiln-oci: its errors keep their entry here.
impl From<kiln_oci::tar_reader::TarError> for RootfsError {
    fn from(e: kiln_oci::tar_reader::TarError) -> Self {
        use kiln_oci::tar_reader::TarError;
        match e {
            TarError::Entry { entry, reason } => RootfsError::Entry { entry, reason },
            TarError::Limit { entry, what, limit } => RootfsError::Limit { entry, what, limit },
            TarError::Read { after, source } => RootfsError::Tar { after, source },
        }
    }
}

/// Attaches `path` to an I/O error.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.into();
    move |source| RootfsError::Io { path, source }
}
