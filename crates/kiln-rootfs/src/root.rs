//! A directory handle under which every path resolves inside the directory: `openat2` with
//! `RESOLVE_IN_ROOT` makes `..` stop at the root and absolute symlinks start from it, exactly as
//! they would inside a container whose root is this directory. Used to COPY into an image's
//! merged overlay and to read the image's `/etc/passwd`.
//!
//! Paths given to [`Root`] may be absolute (`/etc/passwd`) or relative (`etc/passwd`); both mean
//! the same file inside the root. Every component but the last is resolved by the kernel,
//! confined; operations that write the last component (create, symlink, link, remove, set times,
//! lstat, read_link) never follow it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::error::RootfsError;
use crate::sys;

/// A directory that confines every path operation made through it.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// The kind of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device (0:0 is an overlayfs whiteout).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A socket.
    Socket,
    /// Something else.
    Unknown,
}

impl From<FileType> for FileKind {
    fn from(t: FileType) -> Self {
        match t {
            FileType::RegularFile => Self::File,
            FileType::Directory => Self::Dir,
            FileType::Symlink => Self::Symlink,
            FileType::Fifo => Self::Fifo,
            FileType::CharacterDevice => Self::CharDevice,
            FileType::BlockDevice => Self::BlockDevice,
            FileType::Socket => Self::Socket,
            _ => Self::Unknown,
        }
    }
}

/// What `lstat` tells about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The file's kind.
    pub kind: FileKind,
    /// Permission bits with setuid, setgid and sticky (`0o7777` at most).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsec: u32,
    /// Number of hard links.
    pub nlink: u64,
    /// Device of the filesystem.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Device number (devices only).
    pub rdev: u64,
}

impl From<&rustix::fs::Stat> for Metadata {
    fn from(s: &rustix::fs::Stat) -> Self {
        Self {
            kind: FileType::from_raw_mode(s.st_mode).into(),
            mode: s.st_mode & 0o7777,
            uid: s.st_uid,
            gid: s.st_gid,
            size: s.st_size as u64,
            mtime: s.st_mtime,
            mtime_nsec: s.st_mtime_nsec as u32,
            nlink: s.st_nlink,
            dev: s.st_dev,
            ino: s.st_ino,
            rdev: s.st_rdev,
        }
    }
}

/// One entry of [`Root::read_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name.
    pub name: OsString,
    /// Its kind (not following a symlink).
    pub kind: FileKind,
}

/// The path as it is inside the root, for messages: always absolute.
fn inside(rel: &Path) -> PathBuf {
    Path::new("/").join(rel.strip_prefix("/").unwrap_or(rel))
}

impl Root {
    /// Opens the directory `path` as a root.
    pub fn open(path: &Path) -> Result<Self, RootfsError> {
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RootfsError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let real = real_path(&fd).unwrap_or_else(|_| path.to_path_buf());
        Ok(Self { fd, path: real })
    }

    /// The root's host path (canonical, as it was when opened).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, rel: &Path) -> impl FnOnce(Errno) -> RootfsError {
        let path = inside(rel);
        move |e| RootfsError::Io {
            path,
            source: e.into(),
        }
    }

    /// `openat2(RESOLVE_IN_ROOT)` of `rel`, following symlinks inside the root.
    fn open_in(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        loop {
            match rustix::fs::openat2(
                &self.fd,
                rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                // The kernel asks for a retry when a rename raced with `..` resolution.
                Err(Errno::AGAIN) => continue,
                other => return other,
            }
        }
    }

    /// Splits `rel` into its parent (opened, confined) and its final name, which must be a
    /// normal component.
    fn parent<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr), RootfsError> {
        let Some(Component::Normal(name)) = rel.components().next_back() else {
            return Err(RootfsError::InvalidPath {
                path: rel.to_path_buf(),
                reason: "the path must end in a file name (not `/`, `.` or `..`)",
            });
        };
        let parent = rel.parent().unwrap_or(Path::new("."));
        let fd = self
            .open_in(parent, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| match e {
                Errno::NOTDIR => RootfsError::NotADirectory { path: inside(parent) },
                e => self.err(parent)(e),
            })?;
        Ok((fd, name))
    }

    /// Removes a non-directory at `name` so it can be replaced; a directory is an error.
    fn clear(&self, parent: &OwnedFd, name: &OsStr, rel: &Path) -> Result<(), RootfsError> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                Err(RootfsError::IsADirectory { path: inside(rel) })
            }
            Ok(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(self.err(rel)),
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err(rel)(e)),
        }
    }

    /// Creates the directories of `rel` that are missing (with `mode`, owned by `uid:gid`);
    /// existing ones, reached through symlinks inside the root or not, are left untouched. A
    /// non-directory in the way is [`RootfsError::NotADirectory`] naming it.
    pub fn mkdir_all(&self, rel: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), RootfsError> {
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            let name = match component {
                Component::Normal(name) => name,
                Component::ParentDir => {
                    prefix.push("..");
                    continue;
                }
                _ => continue,
            };
            let parent_path = prefix.clone();
            prefix.push(name);
            match self.open_in(&prefix, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(_) => continue,
                Err(Errno::NOTDIR) => {
                    return Err(RootfsError::NotADirectory {
                        path: inside(&prefix),
                    });
                }
                Err(Errno::NOENT) => {}
                Err(e) => return Err(self.err(&prefix)(e)),
            }
            let parent = self
                .open_in(&parent_path, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(self.err(&parent_path))?;
            match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(mode & 0o7777)) {
                Ok(()) => {}
                // Something is there that does not resolve to a directory: a dangling symlink.
                Err(Errno::EXIST) => {
                    return Err(RootfsError::NotADirectory {
                        path: inside(&prefix),
                    });
                }
                Err(e) => return Err(self.err(&prefix)(e)),
            }
            let dir = sys::open_dir(&parent, name).map_err(self.err(&prefix))?;
            set_owner_mode(&dir, mode, uid, gid).map_err(self.err(&prefix))?;
        }
        Ok(())
    }

    /// Sets the owner and mode of the existing directory `rel` (a symlink at `rel` is not followed:
    /// [`RootfsError::NotADirectory`]).
    pub fn set_dir_owner_mode(&self, rel: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), RootfsError> {
        let (parent, name) = self.parent(rel)?;
        let dir = sys::open_dir(&parent, name).map_err(|e| match e {
            Errno::NOTDIR | Errno::LOOP => RootfsError::NotADirectory { path: inside(rel) },
            e => self.err(rel)(e),
        })?;
        set_owner_mode(&dir, mode, uid, gid).map_err(self.err(rel))
    }

    /// Creates the regular file `rel` (mode, owner) and returns it open for writing. An existing
    /// non-directory at `rel` (a symlink included) is replaced, never followed; a directory is
    /// [`RootfsError::IsADirectory`].
    pub fn create_file(&self, rel: &Path, mode: u32, uid: u32, gid: u32) -> Result<File, RootfsError> {
        let (parent, name) = self.parent(rel)?;
        self.clear(&parent, name, rel)?;
        let fd = rustix::fs::openat(
            &parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(self.err(rel))?;
        set_owner_mode(&fd, mode, uid, gid).map_err(self.err(rel))?;
        Ok(File::from(fd))
    }

    /// Creates the symlink `rel` → `target` (any text; it is not resolved) owned by `uid:gid`,
    /// replacing a non-directory at `rel`.
    pub fn symlink(&self, rel: &Path, target: &Path, uid: u32, gid: u32) -> Result<(), RootfsError> {
        let (parent, name) = self.parent(rel)?;
        self.clear(&parent, name, rel)?;
        rustix::fs::symlinkat(target, &parent, name).map_err(self.err(rel))?;
        rustix::fs::chownat(
            &parent,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(self.err(rel))
    }

    /// Makes `new_rel` a hard link to `existing_rel` (itself, not what it points to if it is a
    /// symlink), replacing a non-directory at `new_rel`.
    pub fn hardlink(&self, existing_rel: &Path, new_rel: &Path) -> Result<(), RootfsError> {
        let (old_parent, old_name) = self.parent(existing_rel)?;
        let (new_parent, new_name) = self.parent(new_rel)?;
        self.clear(&new_parent, new_name, new_rel)?;
        rustix::fs::linkat(&old_parent, old_name, &new_parent, new_name, AtFlags::empty())
            .map_err(self.err(new_rel))
    }

    /// Sets the modification (and access) time of `rel` itself, not following a symlink.
    pub fn set_mtime(&self, rel: &Path, secs: i64, nsec: u32) -> Result<(), RootfsError> {
        let time = Timespec {
            tv_sec: secs,
            tv_nsec: nsec.into(),
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        if is_root(rel) {
            let fd = self
                .open_in(rel, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(self.err(rel))?;
            return rustix::fs::futimens(&fd, &times).map_err(self.err(rel));
        }
        let (parent, name) = self.parent(rel)?;
        rustix::fs::utimensat(&parent, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(self.err(rel))
    }

    /// Sets the owner of `rel` itself (a symlink is not followed).
    pub fn set_owner(&self, rel: &Path, uid: u32, gid: u32) -> Result<(), RootfsError> {
        let (parent, name) = self.parent_or_root(rel)?;
        rustix::fs::chownat(
            &parent,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW | AtFlags::EMPTY_PATH,
        )
        .map_err(self.err(rel))
    }

    /// Sets the mode (permission bits, setuid, setgid, sticky) of `rel`, which must not be a
    /// symlink (symlinks have no mode of their own; this never follows one).
    pub fn set_mode(&self, rel: &Path, mode: u32) -> Result<(), RootfsError> {
        let (parent, name) = self.parent_or_root(rel)?;
        let fd = rustix::fs::openat(
            &parent,
            if name.is_empty() { OsStr::new(".") } else { name },
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.err(rel))?;
        let stat = rustix::fs::fstat(&fd).map_err(self.err(rel))?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            return Err(RootfsError::InvalidPath {
                path: inside(rel),
                reason: "a symlink has no mode to set",
            });
        }
        // Through the O_PATH fd's /proc link: the very file checked above, never a symlink.
        rustix::fs::chmodat(
            rustix::fs::CWD,
            sys::proc_path(fd.as_fd(), OsStr::new("")),
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(self.err(rel))
    }

    /// [`Root::parent`], or the root itself with an empty name for `/`.
    fn parent_or_root<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr), RootfsError> {
        if is_root(rel) {
            let fd = self
                .open_in(rel, OFlags::PATH | OFlags::DIRECTORY)
                .map_err(self.err(rel))?;
            return Ok((fd, OsStr::new("")));
        }
        self.parent(rel)
    }

    /// Removes `rel` and, if it is a directory, everything under it (symlinks inside are removed,
    /// not followed). A missing `rel` is not an error.
    pub fn remove_all(&self, rel: &Path) -> Result<(), RootfsError> {
        let (parent, name) = match self.parent(rel) {
            Ok(found) => found,
            Err(RootfsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        sys::remove_any(parent.as_fd(), name).map_err(self.err(rel))
    }

    /// Opens the file `rel` for reading, following symlinks inside the root.
    pub fn open_file(&self, rel: &Path) -> Result<File, RootfsError> {
        self.open_in(rel, OFlags::RDONLY)
            .map(File::from)
            .map_err(self.err(rel))
    }

    /// The entries of the directory `rel` (symlinks inside the root followed), sorted by name.
    pub fn read_dir(&self, rel: &Path) -> Result<Vec<DirEntry>, RootfsError> {
        let fd = self
            .open_in(rel, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(self.err(rel))?;
        let names = sys::read_names(&fd).map_err(self.err(rel))?;
        names
            .into_iter()
            .map(|(name, file_type)| {
                let kind = match file_type {
                    FileType::Unknown => {
                        let stat = rustix::fs::statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(self.err(&rel.join(&name)))?;
                        FileType::from_raw_mode(stat.st_mode)
                    }
                    known => known,
                };
                Ok(DirEntry {
                    name,
                    kind: kind.into(),
                })
            })
            .collect()
    }

    /// The metadata of `rel` itself (a symlink is not followed).
    pub fn lstat(&self, rel: &Path) -> Result<Metadata, RootfsError> {
        if is_root(rel) {
            let stat = rustix::fs::fstat(&self.fd).map_err(self.err(rel))?;
            return Ok((&stat).into());
        }
        let (parent, name) = self.parent(rel)?;
        let stat = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW).map_err(self.err(rel))?;
        Ok((&stat).into())
    }

    /// The metadata of what `rel` designates, symlinks followed inside the root.
    pub fn stat(&self, rel: &Path) -> Result<Metadata, RootfsError> {
        self.open_path(rel).map(|(_, meta)| meta)
    }

    /// Opens what `rel` designates as an `O_PATH` descriptor (symlinks followed inside the root; it
    /// must exist), with its metadata: the object itself, for operations that must not go through a
    /// path again (see [`crate::pin`]).
    pub fn open_path(&self, rel: &Path) -> Result<(OwnedFd, Metadata), RootfsError> {
        let fd = self.open_in(rel, OFlags::PATH).map_err(self.err(rel))?;
        let stat = rustix::fs::fstat(&fd).map_err(self.err(rel))?;
        Ok((fd, (&stat).into()))
    }

    /// The target text of the symlink `rel`.
    pub fn read_link(&self, rel: &Path) -> Result<PathBuf, RootfsError> {
        let (parent, name) = self.parent(rel)?;
        let target = rustix::fs::readlinkat(&parent, name, Vec::new()).map_err(self.err(rel))?;
        Ok(cstring_path(target))
    }

    /// The host path that `rel` designates, symlinks resolved inside the root: the longest
    /// existing prefix of `rel` is resolved by the kernel (confined) and the rest is appended
    /// (`..` in the rest going up, never above the root). Always under [`Root::path`].
    ///
    /// Private on purpose: the appended rest may name a symlink that the host would follow, so such a
    /// path must never leave this type (hand a runtime a [`crate::pin::PinnedMount`] instead, and
    /// operate through [`Root`]'s own methods).
    fn resolve(&self, rel: &Path) -> Result<PathBuf, RootfsError> {
        let components: Vec<Component<'_>> = rel
            .components()
            .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
            .collect();
        for split in (0..=components.len()).rev() {
            let prefix: PathBuf = components[..split].iter().collect();
            let fd = match self.open_in(&prefix, OFlags::PATH) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR) if split > 0 => continue,
                Err(e) => return Err(self.err(&prefix)(e)),
            };
            let mut path = real_path(&fd).map_err(self.err(&prefix))?;
            for component in &components[split..] {
                match component {
                    Component::ParentDir => {
                        if path != self.path {
                            path.pop();
                        }
                    }
                    other => path.push(other),
                }
            }
            return Ok(path);
        }
        Ok(self.path.clone())
    }

    /// [`Root::resolve`] as a path inside the root (`/usr/bin/sh`).
    pub fn resolve_in_root(&self, rel: &Path) -> Result<PathBuf, RootfsError> {
        let host = self.resolve(rel)?;
        Ok(inside(host.strip_prefix(&self.path).unwrap_or(&host)))
    }
}

fn is_root(rel: &Path) -> bool {
    rel.components()
        .all(|c| matches!(c, Component::RootDir | Component::CurDir))
}

/// The host path of an open fd, as the kernel names it.
fn real_path(fd: &OwnedFd) -> Result<PathBuf, Errno> {
    let link = rustix::fs::readlinkat(
        rustix::fs::CWD,
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        Vec::new(),
    )?;
    Ok(cstring_path(link))
}

fn cstring_path(text: std::ffi::CString) -> PathBuf {
    PathBuf::from(<OsString as std::os::unix::ffi::OsStringExt>::from_vec(
        text.into_bytes(),
    ))
}

/// chown, then chmod (chown clears setuid/setgid).
fn set_owner_mode(fd: &OwnedFd, mode: u32, uid: u32, gid: u32) -> Result<(), Errno> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777))
}
