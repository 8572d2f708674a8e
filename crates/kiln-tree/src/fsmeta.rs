//! File identity and metadata as the stat cache keys it, and the file-type checks every context file
//! must pass.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// What the stat cache keys on: if all of these are unchanged the content is taken as unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileMeta {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch (catches a file replaced with the same mtime).
    pub ctime_ns: i64,
    /// `st_mode & 0o7777`.
    pub mode: u32,
}

impl FileMeta {
    /// Extracts the fields from `metadata` (of the file itself, symlinks followed).
    pub fn from_metadata(metadata: &Metadata) -> Self {
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime_ns: metadata
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(metadata.mtime_nsec()),
            ctime_ns: metadata
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(metadata.ctime_nsec()),
            mode: metadata.mode() & 0o7777,
        }
    }
}

/// Why a path cannot be a context file, if it cannot.
pub fn reject_reason(metadata: &Metadata) -> Option<&'static str> {
    let ft = metadata.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        return Some(if ft.is_fifo() {
            "is a fifo; only regular files can go into a context"
        } else if ft.is_socket() {
            "is a socket; only regular files can go into a context"
        } else if ft.is_block_device() || ft.is_char_device() {
            "is a device; only regular files can go into a context"
        } else {
            "is not a regular file"
        });
    }
    if metadata.mode() & 0o6000 != 0 {
        return Some("has the setuid or setgid bit; clear it (chmod ug-s) before it goes into a context");
    }
    None
}
