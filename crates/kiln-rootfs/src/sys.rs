//! Small fd-relative helpers over rustix shared by the modules: no helper here follows a symlink in
//! the final component, and none takes a multi-component path except where it says so.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// The xattr overlayfs reads to make a directory opaque.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Extended attributes as (name, value) pairs.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Prefix of every xattr overlayfs owns.
pub(crate) const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

/// Opens the directory `name` (one component) in `dir` for reading, never following a symlink.
pub(crate) fn open_dir(dir: impl AsFd, name: impl rustix::path::Arg) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `/proc/self/fd/N/name`: a path that reaches `name` in the directory open as `dir` without
/// resolving anything else, for the calls that have no fd-relative form (`l*xattr`).
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() {
        path.push(name);
    }
    path
}

/// The names in the directory open as `dir` (without `.` and `..`), sorted by bytes, with their
/// types as the directory reports them (`Unknown` on filesystems that do not).
pub(crate) fn read_names(dir: impl AsFd) -> Result<Vec<(OsString, FileType)>, Errno> {
    let mut reader = Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push((OsString::from_vec(name.to_vec()), entry.file_type()));
    }
    names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(names)
}

/// Removes `name` in `dir` whatever it is; a directory with everything under it (walked through
/// fds, so a symlink inside is removed, never followed). A missing `name` is not an error.
pub(crate) fn remove_any(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        let sub = open_dir(dir, name)?;
        for (child, _) in read_names(&sub)? {
            remove_any(sub.as_fd(), &child)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())
    }
}

/// The xattrs of the file at `path` (not followed), sorted by name.
pub(crate) fn list_xattrs(path: &std::path::Path) -> Result<Xattrs, Errno> {
    let mut names = Vec::new();
    loop {
        let len = rustix::fs::llistxattr_query(path)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        names.resize(len, 0);
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => {
                names.truncate(n);
                break;
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name_os = OsStr::from_bytes(name);
        let value = loop {
            let len = match rustix::fs::lgetxattr_query(path, name_os) {
                Ok(len) => len,
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e),
            };
            let mut value = vec![0u8; len];
            match rustix::fs::lgetxattr(path, name_os, &mut value[..]) {
                Ok(n) => {
                    value.truncate(n);
                    break Some(value);
                }
                Err(Errno::RANGE) => continue,
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e),
            }
        };
        if let Some(value) = value {
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Sets the xattr `name` of the file at `path` (not followed).
pub(crate) fn set_xattr(path: &std::path::Path, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    rustix::fs::lsetxattr(
        path,
        OsStr::from_bytes(name),
        value,
        rustix::fs::XattrFlags::empty(),
    )
}

/// Whether a stat describes an overlayfs whiteout: a character device 0:0.
pub(crate) fn is_whiteout(stat: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::CharacterDevice && stat.st_rdev == 0
}
