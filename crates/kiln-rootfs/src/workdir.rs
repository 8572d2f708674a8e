//! Private work folders of a running kiln (a build's scratch, a runtime bundle), and the sweep of those
//! whose owner died.
//!
//! What such a folder holds can be secret (secret copies, a bundle's `config.json` with `env=` secrets)
//! or mounted (step overlays, pinned bind sources). A [`WorkDir`] is made `0700` under a `0700` parent,
//! and a lock file next to it (`<name>.lock`) is held with `flock` for as long as the value lives: the
//! kernel releases it when the process dies, however it dies. [`sweep_dead`] then finds the folders
//! whose lock is free, detaches every mount below them (deepest first) and removes them, so the next
//! kiln cleans up after a killed one. The lock file is made and locked before its folder exists, so a
//! folder without a lock file never belongs to a live owner.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::UnmountFlags;

use crate::error::RootfsError;

const LOCK_SUFFIX: &str = ".lock";

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A private folder, locked as in use while the value lives; removed (mounts below it detached first)
/// when dropped.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    lock_path: PathBuf,
    _lock: OwnedFd,
}

impl WorkDir {
    /// Makes a new `0700` folder named `<prefix><unique>` under `parent` (created `0700` when missing; an
    /// existing parent is made `0700`).
    pub fn create(parent: &Path, prefix: &str) -> Result<WorkDir, RootfsError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        private_dir(parent)?;
        loop {
            let name = format!(
                "{prefix}{}-{}-{:x}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed),
                nanos()
            );
            let lock_path = parent.join(format!("{name}{LOCK_SUFFIX}"));
            let lock = match rustix::fs::open(
                &lock_path,
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => fd,
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(io_err(&lock_path)(e.into())),
            };
            rustix::fs::flock(&lock, FlockOperation::LockExclusive)
                .map_err(|e| io_err(&lock_path)(e.into()))?;
            let path = parent.join(&name);
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&path)
                .map_err(io_err(&path))?;
            return Ok(WorkDir {
                path,
                lock_path,
                _lock: lock,
            });
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = remove(&self.path) {
            // Kept: the next sweep retries once this process is gone.
            tracing::warn!("cannot remove the work folder {}: {e}", self.path.display());
            return;
        }
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

/// Creates `dir` (and its parents) when missing and makes it `0700`.
pub fn private_dir(dir: &Path) -> Result<(), RootfsError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

/// What [`sweep_dead`] removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Folders of dead owners removed.
    pub folders: usize,
    /// Mounts detached below them.
    pub mounts: usize,
}

/// Removes the work folders under `parent` whose owner is gone: those whose lock file is not held, and
/// folders without one (see the module documentation). Files other than lock files are left alone.
pub fn sweep_dead(parent: &Path) -> Result<Swept, RootfsError> {
    let mut swept = Swept::default();
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(swept),
        Err(e) => return Err(io_err(parent)(e)),
    };
    let mut dirs = Vec::new();
    let mut locks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(parent))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type().map_err(io_err(&entry.path()))?;
        if kind.is_dir() {
            dirs.push(name);
        } else if let Some(stem) = name.strip_suffix(LOCK_SUFFIX) {
            locks.push(stem.to_owned());
        }
    }
    for name in dirs {
        let lock_path = parent.join(format!("{name}{LOCK_SUFFIX}"));
        let held = if locks.contains(&name) {
            match held_elsewhere(&lock_path)? {
                Some(held) => held,
                // Gone meanwhile: its owner just removed the folder too.
                None => continue,
            }
        } else {
            false
        };
        if held {
            continue;
        }
        let path = parent.join(&name);
        swept.mounts += remove(&path)?;
        let _ = std::fs::remove_file(&lock_path);
        swept.folders += 1;
    }
    Ok(swept)
}

/// Whether another open file description holds `lock_path`'s lock; `None` when the file is gone.
fn held_elsewhere(lock_path: &Path) -> Result<Option<bool>, RootfsError> {
    let fd = match rustix::fs::open(
        lock_path,
        OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io_err(lock_path)(e.into())),
    };
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(false)),
        Err(Errno::WOULDBLOCK) => Ok(Some(true)),
        Err(e) => Err(io_err(lock_path)(e.into())),
    }
}

/// Detaches every mount at or below `dir` (this mount namespace's, deepest first); how many.
pub fn detach_below(dir: &Path) -> Result<usize, RootfsError> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Ok(0);
    };
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(io_err(Path::new("/proc/self/mountinfo")))?;
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape(point)))
        .filter(|point| point.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    let mut detached = 0;
    for point in points {
        match rustix::mount::unmount(&point, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            Ok(()) => detached += 1,
            // Already gone with its parent mount.
            Err(Errno::INVAL | Errno::NOENT) => {}
            Err(e) => return Err(io_err(&point)(e.into())),
        }
    }
    Ok(detached)
}

/// mountinfo escapes space, tab, newline and backslash as three octal digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes `path` and everything below, mounts below detached first so the removal never reaches into
/// a mounted tree; how many mounts were detached.
fn remove(path: &Path) -> Result<usize, RootfsError> {
    let detached = detach_below(path)?;
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(detached),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_live_folder_is_kept_and_a_dead_ones_removed() {
        let parent = tempfile::tempdir().unwrap();
        let live = WorkDir::create(parent.path(), "build-").unwrap();
        std::fs::write(live.path().join("secret"), "x").unwrap();
        // A dead owner's folder: its lock file is not held by anyone.
        let dead = parent.path().join("build-dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(parent.path().join("build-dead.lock"), "").unwrap();
        std::fs::write(dead.join("secret"), "y").unwrap();
        // A leftover without a lock file (an older kiln's) goes too; other files stay.
        std::fs::create_dir(parent.path().join("step-old")).unwrap();
        std::fs::write(parent.path().join("notes.txt"), "").unwrap();
        let swept = sweep_dead(parent.path()).unwrap();
        assert_eq!(
            swept,
            Swept {
                folders: 2,
                mounts: 0
            }
        );
        assert!(live.path().join("secret").is_file());
        assert!(!dead.exists() && !parent.path().join("build-dead.lock").exists());
        assert!(parent.path().join("notes.txt").exists());
        let mode = std::fs::metadata(live.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(
            std::fs::metadata(parent.path()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let path = live.path().to_owned();
        drop(live);
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(parent.path()).unwrap().count(),
            1,
            "only notes.txt is left"
        );
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }
}
