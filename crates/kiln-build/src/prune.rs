//! Dropping folders that a step only copied up.
//!
//! overlayfs copies a folder up into the upper folder as soon as anything below it is touched, even if
//! the change is undone (runc's mount stubs, a file created and deleted). Such a folder, once empty and
//! with the same mode, owner and mtime as the folder it shadows, is not a change: keeping it would put a
//! folder entry in the layer (and make a step that changed nothing produce a layer at all). containerd's
//! overlay differ drops the same folders.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Whether `dir` carries overlayfs's opaque marker (it hides everything below it in the lowers).
fn is_opaque(dir: &Path) -> bool {
    let mut value = [0u8; 4];
    matches!(rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut value), Ok(1) if value[0] == b'y')
}

/// Metadata of `rel` in `lower`, looked up without following any symlink on the way: a lower layer's
/// symlinked folder must not lead the comparison outside the layer.
fn lower_metadata(lower: &Path, rel: &Path) -> Option<std::fs::Metadata> {
    let mut path = lower.to_path_buf();
    let mut meta = None;
    for component in rel.components() {
        if let Some(m) = &meta {
            let m: &std::fs::Metadata = m;
            if !m.is_dir() {
                return None;
            }
        }
        path.push(component);
        meta = Some(std::fs::symlink_metadata(&path).ok()?);
    }
    meta
}

fn same(upper: &std::fs::Metadata, lower: &std::fs::Metadata) -> bool {
    lower.is_dir()
        && upper.mode() == lower.mode()
        && upper.uid() == lower.uid()
        && upper.gid() == lower.gid()
        && upper.mtime() == lower.mtime()
        && upper.mtime_nsec() == lower.mtime_nsec()
}

/// Removes the copied-up, unchanged, empty folders of `upper` (depth first); `lowers` top-most first.
/// Returns how many were removed.
pub fn prune_unchanged_dirs(upper: &Path, lowers: &[PathBuf]) -> io::Result<usize> {
    let mut removed = 0;
    prune(upper, Path::new(""), lowers, &mut removed)?;
    Ok(removed)
}

fn prune(upper: &Path, rel: &Path, lowers: &[PathBuf], removed: &mut usize) -> io::Result<bool> {
    let dir = upper.join(rel);
    // Read before the children go: removing them moves this folder's mtime.
    let meta = fs_err::symlink_metadata(&dir)?;
    let mut empty = true;
    for entry in fs_err::read_dir(&dir)? {
        let entry = entry?;
        let child = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() && prune(upper, &child, lowers, removed)? {
            continue;
        }
        empty = false;
    }
    if rel.as_os_str().is_empty() || !empty || is_opaque(&dir) {
        return Ok(false);
    }
    // The folder a step saw is the top-most lower that has the path.
    let shadowed = lowers.iter().find_map(|lower| lower_metadata(lower, rel));
    if shadowed.is_some_and(|lower| same(&meta, &lower)) {
        fs_err::remove_dir(&dir)?;
        *removed += 1;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unchanged_empty_folders_go() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let lower = tmp.path().join("lower");
        let upper = tmp.path().join("upper");
        for d in ["etc", "srv", "var/lib"] {
            fs_err::create_dir_all(lower.join(d)).ok();
        }
        for d in ["etc", "srv", "var/lib", "new"] {
            fs_err::create_dir_all(upper.join(d)).ok();
        }
        fs_err::write(upper.join("srv/file"), "x").ok();
        let copy_times = |rel: &str| {
            let m = fs_err::metadata(lower.join(rel)).unwrap_or_else(|e| panic!("{e}"));
            let t = filetime_of(&m);
            set_mtime(&upper.join(rel), t);
        };
        for d in ["var/lib", "var", "etc"] {
            copy_times(d);
        }
        let removed =
            prune_unchanged_dirs(&upper, std::slice::from_ref(&lower)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(removed, 3, "etc, var/lib and then var");
        assert!(upper.join("srv/file").exists());
        assert!(
            upper.join("new").is_dir(),
            "a folder the lowers do not have is a change"
        );
        assert!(!upper.join("etc").exists());
    }

    fn filetime_of(m: &std::fs::Metadata) -> (i64, i64) {
        (m.mtime(), m.mtime_nsec())
    }

    fn set_mtime(path: &Path, (secs, nsec): (i64, i64)) {
        let t = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: secs,
                tv_nsec: nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: secs,
                tv_nsec: nsec as _,
            },
        };
        rustix::fs::utimensat(rustix::fs::CWD, path, &t, rustix::fs::AtFlags::empty())
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
