//! An overlayfs mount of unpacked layers, made with the new mount API (`fsopen`/`fsconfig`/
//! `fsmount`/`move_mount`): each lower directory is added with its own `lowerdir+` call, as an
//! open directory fd (kernel ≥ 6.13; older kernels from 6.8 get the path as a string, at most 256
//! bytes), so the page-sized limit of a classic mount option string never applies, however many
//! and however long the lower paths are.
//!
//! Options: `redirect_dir=off,metacopy=off,index=off,xino=off`, no `userxattr` (kiln runs as real
//! root and overlay metadata lives in `trusted.overlay.*`). So a renamed directory in the upper is
//! a full copy, and a captured upper never needs redirects or metacopy files (capture refuses them).
//!
//! [`OverlayMount::mount_volatile`] adds `volatile`: overlayfs then neither passes fsyncs to the upper
//! filesystem nor syncs it on unmount. A plain unmount syncs the *whole* upper filesystem, other
//! processes' dirty pages included (seconds on a busy CI disk), for an upper folder the builder
//! captures into a fsynced blob anyway.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, UnmountFlags};

use crate::error::RootfsError;

/// A mounted overlay; unmounted by [`OverlayMount::unmount`] or, as a last resort, lazily on drop.
#[derive(Debug)]
pub struct OverlayMount {
    merged: PathBuf,
    mounted: bool,
    /// The empty lower of a mount without layers (`FROM scratch`), kept until unmount.
    _empty_lower: Option<tempfile::TempDir>,
}

/// The fixed mount options (besides the directories).
const OPTIONS: [(&str, &str); 4] = [
    ("redirect_dir", "off"),
    ("metacopy", "off"),
    ("index", "off"),
    ("xino", "off"),
];

fn mount_err(merged: &Path, step: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> RootfsError {
    let merged = merged.to_path_buf();
    let step = step.into();
    move |e| RootfsError::Mount {
        merged,
        step,
        source: e.into(),
    }
}

/// The messages the kernel left in the filesystem context's log (why a step was refused).
fn context_log(fs: &OwnedFd) -> String {
    let mut file = match fs.try_clone() {
        Ok(fd) => std::fs::File::from(fd),
        Err(_) => return String::new(),
    };
    let mut messages = Vec::new();
    let mut buffer = [0u8; 512];
    for _ in 0..8 {
        match file.read(&mut buffer) {
            Ok(n) if n > 0 => messages.push(String::from_utf8_lossy(&buffer[..n]).trim().to_owned()),
            _ => break,
        }
    }
    messages.join("; ")
}

/// Gives the directory `path` for `key`: as an open fd (kernel ≥ 6.13 takes layers as fds, with
/// no length limit), else as a string (`fsconfig` strings are limited to 256 bytes).
fn set_dir(fs: &OwnedFd, key: &str, path: &Path) -> Result<(), rustix::io::Errno> {
    let dir = rustix::fs::openat(
        rustix::fs::CWD,
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    match rustix::mount::fsconfig_set_fd(fs, key, &dir) {
        Err(rustix::io::Errno::INVAL) => rustix::mount::fsconfig_set_string(fs, key, path.as_os_str()),
        other => other,
    }
}

impl OverlayMount {
    /// Mounts an overlay of `lowers` (top-most first) under the writable `upper` with the work
    /// directory `work` (same filesystem as `upper`, empty) on the existing directory `merged`.
    /// With no lowers (`FROM scratch`) an empty temporary directory is the only lower.
    pub fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, merged: &Path) -> Result<Self, RootfsError> {
        Self::mount_with(lowers, upper, work, merged, false)
    }

    /// [`OverlayMount::mount`] with the `volatile` option, for an upper folder whose durability the
    /// caller handles itself (or does not need). The work directory cannot be used for another mount
    /// afterwards. Kernels without `volatile` (before 5.10) get a plain mount.
    pub fn mount_volatile(
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        merged: &Path,
    ) -> Result<Self, RootfsError> {
        Self::mount_with(lowers, upper, work, merged, true)
    }

    fn mount_with(
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        merged: &Path,
        volatile: bool,
    ) -> Result<Self, RootfsError> {
        let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(mount_err(merged, "fsopen overlay"))?;
        let with_log = |step: String| {
            let fs = &fs;
            move |e: rustix::io::Errno| RootfsError::Mount {
                merged: merged.to_path_buf(),
                step: match context_log(fs) {
                    log if log.is_empty() => step,
                    log => format!("{step} ({log})"),
                },
                source: e.into(),
            }
        };
        let empty_lower = if lowers.is_empty() {
            Some(
                tempfile::Builder::new()
                    .prefix("kiln-scratch-")
                    .tempdir()
                    .map_err(|source| RootfsError::Mount {
                        merged: merged.to_path_buf(),
                        step: "creating an empty lower directory".into(),
                        source,
                    })?,
            )
        } else {
            None
        };
        let scratch: Vec<PathBuf> = empty_lower.iter().map(|d| d.path().to_path_buf()).collect();
        for lower in if lowers.is_empty() { &scratch[..] } else { lowers } {
            set_dir(&fs, "lowerdir+", lower).map_err(with_log(format!("lowerdir+ {}", lower.display())))?;
        }
        set_dir(&fs, "upperdir", upper).map_err(with_log(format!("upperdir {}", upper.display())))?;
        set_dir(&fs, "workdir", work).map_err(with_log(format!("workdir {}", work.display())))?;
        for (key, value) in OPTIONS {
            rustix::mount::fsconfig_set_string(&fs, key, value)
                .map_err(with_log(format!("{key}={value}")))?;
        }
        if volatile {
            // Refused only by kernels that do not know the option: a plain mount is still correct.
            let _ = rustix::mount::fsconfig_set_flag(&fs, "volatile");
        }
        rustix::mount::fsconfig_create(&fs).map_err(with_log("creating the filesystem".into()))?;
        let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
            .map_err(with_log("fsmount".into()))?;
        rustix::mount::move_mount(
            &mnt,
            OsStr::new(""),
            rustix::fs::CWD,
            merged,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(mount_err(merged, "move_mount"))?;
        Ok(Self {
            merged: merged.to_path_buf(),
            mounted: true,
            _empty_lower: empty_lower,
        })
    }

    /// The merged directory (the mount point).
    pub fn merged(&self) -> &Path {
        &self.merged
    }

    /// Unmounts the overlay (not lazily: an error, e.g. busy, is reported and the drop then
    /// detaches it).
    pub fn unmount(mut self) -> Result<(), RootfsError> {
        rustix::mount::unmount(&self.merged, UnmountFlags::empty())
            .map_err(mount_err(&self.merged, "unmount"))?;
        self.mounted = false;
        Ok(())
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if self.mounted && rustix::mount::unmount(&self.merged, UnmountFlags::empty()).is_err() {
            let _ = rustix::mount::unmount(&self.merged, UnmountFlags::DETACH);
        }
    }
}
