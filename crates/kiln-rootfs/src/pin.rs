//! Handing a runtime a file or folder of an untrusted tree without handing it a path into that tree.
//!
//! A runtime given a bind source path resolves it on the host, following every symlink in it: a stage
//! that made `/ld -> /etc` would bind the host's `/etc` if kiln passed `<stage>/ld`. So the source is
//! resolved by [`Root::open_path`] (symlinks followed but confined to the root, the object must exist),
//! cloned as a detached bind mount of exactly that object (`open_tree(OPEN_TREE_CLONE)` on the open fd)
//! and moved onto a mount point kiln creates in a folder of its own. The runtime is given that mount
//! point: a path kiln made, whose last component is a mount of the object itself, so nothing in the
//! untrusted tree (a symlink swapped in later included) can redirect it.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MoveMountFlags, OpenTreeFlags, UnmountFlags};

use crate::error::RootfsError;
use crate::root::{FileKind, Root};

/// A file or folder of a [`Root`] bind-mounted onto a mount point kiln made; unmounted (and the mount
/// point removed) by [`PinnedMount::unmount`] or on drop.
#[derive(Debug)]
pub struct PinnedMount {
    path: PathBuf,
    kind: FileKind,
    mounted: bool,
}

impl PinnedMount {
    /// Pins `rel` of `root` (see the module documentation) on the new mount point `mount_point`, which
    /// must not exist and whose parent must be a folder kiln owns. Only folders and regular files can be
    /// pinned; anything else (a device, a socket, a fifo) is [`RootfsError::InvalidPath`].
    pub fn pin(root: &Root, rel: &Path, mount_point: &Path) -> Result<Self, RootfsError> {
        let (fd, meta) = root.open_path(rel)?;
        let io = |e: rustix::io::Errno| RootfsError::Io {
            path: mount_point.to_path_buf(),
            source: e.into(),
        };
        match meta.kind {
            FileKind::Dir => rustix::fs::mkdir(mount_point, Mode::from_raw_mode(0o700)).map_err(io)?,
            FileKind::File => {
                rustix::fs::open(
                    mount_point,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io)?;
            }
            _ => {
                return Err(RootfsError::InvalidPath {
                    path: Path::new("/").join(rel.strip_prefix("/").unwrap_or(rel)),
                    reason: "only a folder or a regular file can be mounted",
                });
            }
        }
        let mut pinned = PinnedMount {
            path: mount_point.to_path_buf(),
            kind: meta.kind,
            mounted: false,
        };
        let tree = rustix::mount::open_tree(
            fd.as_fd(),
            "",
            OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_EMPTY_PATH,
        )
        .map_err(io)?;
        rustix::mount::move_mount(
            tree.as_fd(),
            "",
            rustix::fs::CWD,
            mount_point,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(io)?;
        pinned.mounted = true;
        Ok(pinned)
    }

    /// The mount point: the path to hand the runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the pinned object is a folder (else a regular file).
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }

    /// Unmounts and removes the mount point.
    pub fn unmount(mut self) -> Result<(), RootfsError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), RootfsError> {
        let io = |e: std::io::Error| RootfsError::Io {
            path: self.path.clone(),
            source: e,
        };
        if self.mounted {
            // Detached: a process of the step that still holds a file open below must not keep the
            // mount point busy; the mount goes when the last user does.
            rustix::mount::unmount(&self.path, UnmountFlags::DETACH).map_err(|e| io(e.into()))?;
            self.mounted = false;
        }
        // Never recursive: should the unmount not have happened, this fails instead of reaching into
        // the pinned tree.
        let removed = match self.kind {
            FileKind::Dir => std::fs::remove_dir(&self.path),
            _ => std::fs::remove_file(&self.path),
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }
}

impl Drop for PinnedMount {
    fn drop(&mut self) {
        let _ = self.release();
    }
}
