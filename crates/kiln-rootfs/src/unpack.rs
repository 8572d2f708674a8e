//! Extract an uncompressed OCI/docker layer tar into a directory in overlayfs *lowerdir* form.
//!
//! The input is hostile. Headers are read by kiln-oci's [`TarReader`] and every entry is checked by
//! its [`LayerChecker`] (the same code `kiln image import` runs over a root filesystem tar, so what
//! imports unpacks): names normalized (leading `/`, `.` and empty components dropped, `..` refused),
//! a hard link must name a non-directory written earlier by the same layer, and the limits of
//! [`UnpackLimits`] bound entries, content bytes, name lengths and the in-memory extension headers.
//! Here, every parent directory is opened one component at a time with `O_NOFOLLOW` from the unpack
//! root, so nothing is ever written through a symlink, whatever the tar put there.
//!
//! Everything is written into a temporary sibling of `dest` that is synced (`syncfs`, unless the
//! caller asks for [`Durability::UntilReboot`]) and renamed to `dest` (without replacing anything)
//! only when the whole layer went in; on error the temporary is removed.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use kiln_oci::files::parent_dir;
use kiln_oci::layer_check::{LayerChecker, LayerOp, NodeKind};
pub use kiln_oci::layer_check::{LayerLimits as UnpackLimits, LayerStats as UnpackStats};
use kiln_oci::tar_reader::{EntryType, TarEntry, TarReader};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::error::{RootfsError, io_at};
use crate::sys;

/// How durable an unpacked layer must be once [`unpack_layer_with`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Synced (`syncfs`) before it is renamed into place: a power loss never leaves truncated files
    /// under `dest`.
    #[default]
    Synced,
    /// Left to the page cache: complete for every process until the machine goes down, possibly
    /// truncated after a crash of the kernel. For callers that can throw the folder away after a
    /// reboot (an unpacked cache of a verified blob); `syncfs` syncs the whole filesystem, other
    /// processes' dirty data included, and took seconds on a busy CI disk.
    UntilReboot,
}

/// Extracts the uncompressed layer `tar` into `dest`, which must not exist (its parent must), in
/// overlayfs lowerdir form: `.wh.NAME` becomes a 0:0 character device `NAME`, `DIR/.wh..wh..opq`
/// becomes the xattr `trusted.overlay.opaque=y` on `DIR`. Modes (setuid, sticky…), owners,
/// mtimes (nanoseconds from PAX), xattrs (PAX `SCHILY.xattr.*`, except `trusted.overlay.*`, which
/// are dropped), symlinks, hard links, fifos and devices are kept. Directory mtimes are set after
/// their contents. Of duplicate entries the later wins, as in docker (a directory over a directory
/// keeps the contents and takes the new metadata). GNU sparse files are refused.
pub fn unpack_layer(tar: impl Read, dest: &Path, limits: &UnpackLimits) -> Result<UnpackStats, RootfsError> {
    unpack_layer_with(tar, dest, limits, Durability::Synced)
}

/// [`unpack_layer`] with the durability of the result chosen by the caller.
pub fn unpack_layer_with(
    tar: impl Read,
    dest: &Path,
    limits: &UnpackLimits,
    durability: Durability,
) -> Result<UnpackStats, RootfsError> {
    match std::fs::symlink_metadata(dest) {
        Ok(_) => return Err(RootfsError::DestinationExists(dest.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(dest)(e)),
    }
    let parent = parent_dir(dest);
    let file_name = dest.file_name().ok_or_else(|| RootfsError::InvalidPath {
        path: dest.to_path_buf(),
        reason: "an unpack destination needs a final name",
    })?;
    let mut prefix = OsString::from(".");
    prefix.push(file_name);
    prefix.push(".unpack-");
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(parent)
        .map_err(io_at(parent))?;
    let root = sys::open_dir(rustix::fs::CWD, temp.path()).map_err(|e| io_at(temp.path())(e.into()))?;
    let mut unpacker = Unpacker {
        root,
        checker: LayerChecker::new(limits),
        dir_times: Vec::new(),
        whiteouts: HashSet::new(),
        root_mode_set: false,
        parent_cache: None,
    };
    unpacker.run(tar, limits)?;
    unpacker.finish()?;
    if durability == Durability::Synced {
        // Durable before visible: a power loss after the rename must not leave truncated files.
        rustix::fs::syncfs(&unpacker.root).map_err(|e| io_at(temp.path())(e.into()))?;
    }
    let stats = unpacker.checker.stats();
    drop(unpacker);
    let dir_fd = sys::open_dir(rustix::fs::CWD, parent).map_err(|e| io_at(parent)(e.into()))?;
    let temp_name = temp.path().file_name().map(OsStr::to_owned).unwrap_or_default();
    rustix::fs::renameat_with(
        &dir_fd,
        &temp_name,
        &dir_fd,
        file_name,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(|e| match e {
        Errno::EXIST | Errno::NOTEMPTY => RootfsError::DestinationExists(dest.to_path_buf()),
        e => io_at(dest)(e.into()),
    })?;
    // The directory is now `dest`; nothing is left for the guard to remove.
    let _ = temp.keep();
    Ok(stats)
}

struct Unpacker {
    root: OwnedFd,
    checker: LayerChecker,
    /// Directories written by the layer and their mtimes, applied at the end.
    dir_times: Vec<(Vec<OsString>, Timespec)>,
    /// Names whited out by this layer (a later directory of the same name becomes opaque).
    whiteouts: HashSet<Vec<OsString>>,
    root_mode_set: bool,
    /// The last parent directory opened, reused by its following siblings.
    parent_cache: Option<(Vec<OsString>, OwnedFd)>,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn refuse(name: &[u8], reason: impl Into<String>) -> RootfsError {
    RootfsError::Entry {
        entry: lossy(name),
        reason: reason.into(),
    }
}

fn entry_io(name: &[u8]) -> impl FnOnce(Errno) -> RootfsError + '_ {
    move |e| RootfsError::EntryIo {
        entry: lossy(name),
        source: e.into(),
    }
}

fn mtime(entry: &TarEntry) -> Timespec {
    Timespec {
        tv_sec: entry.mtime,
        tv_nsec: entry.mtime_nsec.into(),
    }
}

impl Unpacker {
    fn run(&mut self, tar: impl Read, limits: &UnpackLimits) -> Result<(), RootfsError> {
        let mut reader = TarReader::new(tar, limits.tar());
        while let Some(entry) = reader.next_entry()? {
            let op = self.checker.check(&entry)?;
            self.apply(&entry, op, &mut reader.content())?;
        }
        Ok(())
    }

    /// Opens (creating missing directories, 0755 root-owned, as docker does) the parent
    /// directory `comps`, one component at a time, never following a symlink.
    fn parent(&mut self, name: &[u8], comps: &[OsString]) -> Result<&OwnedFd, RootfsError> {
        let cached = matches!(&self.parent_cache, Some((c, _)) if c.as_slice() == comps);
        if !cached {
            let mut fd = sys::open_dir(&self.root, ".").map_err(entry_io(name))?;
            for (i, comp) in comps.iter().enumerate() {
                let next = match sys::open_dir(&fd, comp.as_os_str()) {
                    Ok(next) => next,
                    Err(Errno::NOENT) => {
                        rustix::fs::mkdirat(&fd, comp.as_os_str(), Mode::from_raw_mode(0o755))
                            .map_err(entry_io(name))?;
                        let made = sys::open_dir(&fd, comp.as_os_str()).map_err(entry_io(name))?;
                        // Not whatever the umask left.
                        rustix::fs::fchmod(&made, Mode::from_raw_mode(0o755)).map_err(entry_io(name))?;
                        made
                    }
                    Err(Errno::LOOP | Errno::NOTDIR) => {
                        let parent = comps[..=i]
                            .iter()
                            .map(|c| c.to_string_lossy())
                            .collect::<Vec<_>>();
                        return Err(refuse(
                            name,
                            format!(
                                "its parent {:?} is a symlink or not a directory",
                                parent.join("/")
                            ),
                        ));
                    }
                    Err(e) => return Err(entry_io(name)(e)),
                };
                fd = next;
            }
            self.parent_cache = Some((comps.to_vec(), fd));
        }
        // Filled just above when it did not match.
        self.parent_cache
            .as_ref()
            .map(|(_, fd)| fd)
            .ok_or_else(|| entry_io(name)(Errno::NOENT))
    }

    /// [`Unpacker::parent`] as an fd of its own, for callers that open another parent meanwhile.
    fn parent_owned(&mut self, name: &[u8], comps: &[OsString]) -> Result<OwnedFd, RootfsError> {
        self.parent(name, comps)?
            .try_clone()
            .map_err(|source| RootfsError::EntryIo {
                entry: lossy(name),
                source,
            })
    }

    fn apply(&mut self, entry: &TarEntry, op: LayerOp, data: &mut impl Read) -> Result<(), RootfsError> {
        let name = entry.name.as_slice();
        let (comps, last, node) = match op {
            LayerOp::Skip => return Ok(()),
            LayerOp::Root => return self.apply_root(entry),
            LayerOp::Opaque { dir } => {
                let parent = self.parent(name, &dir)?;
                set_opaque(parent).map_err(entry_io(name))?;
                return Ok(());
            }
            LayerOp::Whiteout { dir, name: hidden } => return self.apply_whiteout(name, dir, &hidden),
            LayerOp::Node { dir, name, kind } => (dir, name, kind),
        };
        let mut path = comps.clone();
        path.push(last.clone());
        let parent = self.parent_owned(name, &comps)?;
        let existing = match rustix::fs::statat(&parent, &last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Some(FileType::from_raw_mode(stat.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(entry_io(name)(e)),
        };
        if node == NodeKind::Dir {
            if existing != Some(FileType::Directory) {
                if existing.is_some() {
                    sys::remove_any(parent.as_fd(), &last).map_err(entry_io(name))?;
                }
                rustix::fs::mkdirat(&parent, &last, Mode::from_raw_mode(0o700)).map_err(entry_io(name))?;
                // A later directory cannot be cached as a parent with stale contents: the cache
                // holds fds, which stay valid.
            }
            let dir = sys::open_dir(&parent, &last).map_err(entry_io(name))?;
            if self.whiteouts.contains(&path) {
                set_opaque(&dir).map_err(entry_io(name))?;
            }
            self.set_owner_mode(name, &dir, entry)?;
            self.set_xattrs(name, &parent, &last, entry)?;
            self.dir_times.push((path, mtime(entry)));
            return Ok(());
        }
        if let NodeKind::HardLink { target } = node {
            return self.apply_hardlink(entry, &parent, &last, target);
        }
        if existing.is_some() {
            sys::remove_any(parent.as_fd(), &last).map_err(entry_io(name))?;
            if existing == Some(FileType::Directory) {
                self.parent_cache = None;
            }
        }
        match node {
            NodeKind::File => {
                let fd = rustix::fs::openat(
                    &parent,
                    &last,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(entry_io(name))?;
                let mut file = std::fs::File::from(fd);
                copy_content(name, data, &mut file, entry.size)?;
                self.set_owner_mode(name, &file, entry)?;
                self.set_xattrs(name, &parent, &last, entry)?;
                rustix::fs::futimens(&file, &times(mtime(entry))).map_err(entry_io(name))?;
            }
            NodeKind::Symlink => {
                rustix::fs::symlinkat(OsStr::from_bytes(&entry.link), &parent, &last)
                    .map_err(entry_io(name))?;
                self.finish_node(entry, &parent, &last, false)?;
            }
            NodeKind::Special(kind) => {
                let (file_type, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    EntryType::Char => (
                        FileType::CharacterDevice,
                        rustix::fs::makedev(entry.dev.0, entry.dev.1),
                    ),
                    _ => (
                        FileType::BlockDevice,
                        rustix::fs::makedev(entry.dev.0, entry.dev.1),
                    ),
                };
                rustix::fs::mknodat(&parent, &last, file_type, Mode::from_raw_mode(0o600), dev)
                    .map_err(entry_io(name))?;
                self.finish_node(entry, &parent, &last, true)?;
            }
            NodeKind::Dir | NodeKind::HardLink { .. } => {}
        }
        Ok(())
    }
}

impl Unpacker {
    /// `./` (or `/`): the metadata of the layer's root directory.
    fn apply_root(&mut self, entry: &TarEntry) -> Result<(), RootfsError> {
        let name = entry.name.as_slice();
        let root = sys::open_dir(&self.root, ".").map_err(entry_io(name))?;
        self.set_owner_mode(name, &root, entry)?;
        self.set_xattrs(name, &root, OsStr::new(""), entry)?;
        self.root_mode_set = true;
        self.dir_times.push((Vec::new(), mtime(entry)));
        Ok(())
    }

    /// `.wh.NAME`: a 0:0 character device `NAME`, unless this layer wrote `NAME` already (the
    /// layer's own file wins; its own directory becomes opaque instead).
    fn apply_whiteout(
        &mut self,
        name: &[u8],
        comps: Vec<OsString>,
        hidden: &OsStr,
    ) -> Result<(), RootfsError> {
        let parent = self.parent_owned(name, &comps)?;
        let mut path = comps;
        path.push(hidden.to_owned());
        match rustix::fs::statat(&parent, hidden, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => {
                if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                    let dir = sys::open_dir(&parent, hidden).map_err(entry_io(name))?;
                    set_opaque(&dir).map_err(entry_io(name))?;
                }
            }
            Err(Errno::NOENT) => {
                rustix::fs::mknodat(&parent, hidden, FileType::CharacterDevice, Mode::empty(), 0)
                    .map_err(entry_io(name))?;
            }
            Err(e) => return Err(entry_io(name)(e)),
        }
        self.whiteouts.insert(path);
        Ok(())
    }

    /// A hard link to a non-directory written earlier by this layer.
    fn apply_hardlink(
        &mut self,
        entry: &TarEntry,
        parent: &OwnedFd,
        last: &OsStr,
        mut target: Vec<OsString>,
    ) -> Result<(), RootfsError> {
        let name = entry.name.as_slice();
        let Some(target_name) = target.pop() else {
            return Err(refuse(name, "a hard link to the layer root"));
        };
        let target_parent = self.parent_owned(name, &target)?;
        let old = rustix::fs::statat(&target_parent, &target_name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(entry_io(name))?;
        if FileType::from_raw_mode(old.st_mode) == FileType::Directory {
            return Err(refuse(name, "a hard link to a directory"));
        }
        match rustix::fs::statat(parent, last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(new) if new.st_ino == old.st_ino && new.st_dev == old.st_dev => return Ok(()),
            Ok(new) => {
                sys::remove_any(parent.as_fd(), last).map_err(entry_io(name))?;
                if FileType::from_raw_mode(new.st_mode) == FileType::Directory {
                    self.parent_cache = None;
                }
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(entry_io(name)(e)),
        }
        rustix::fs::linkat(&target_parent, &target_name, parent, last, AtFlags::empty())
            .map_err(entry_io(name))?;
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and mtime of a node that has no fd of its own.
    fn finish_node(
        &self,
        entry: &TarEntry,
        parent: &OwnedFd,
        last: &OsStr,
        chmod: bool,
    ) -> Result<(), RootfsError> {
        let name = entry.name.as_slice();
        rustix::fs::chownat(
            parent,
            last,
            Some(rustix::fs::Uid::from_raw(entry.uid)),
            Some(rustix::fs::Gid::from_raw(entry.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(entry_io(name))?;
        if chmod {
            // The node was just created by us and is not a symlink: following is moot.
            rustix::fs::chmodat(parent, last, Mode::from_raw_mode(entry.mode), AtFlags::empty())
                .map_err(entry_io(name))?;
        }
        self.set_xattrs(name, parent, last, entry)?;
        rustix::fs::utimensat(parent, last, &times(mtime(entry)), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(entry_io(name))?;
        Ok(())
    }

    /// Owner then mode (chown clears setuid bits, so it goes first).
    fn set_owner_mode(&self, name: &[u8], fd: impl AsFd, entry: &TarEntry) -> Result<(), RootfsError> {
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(entry.uid)),
            Some(rustix::fs::Gid::from_raw(entry.gid)),
        )
        .map_err(entry_io(name))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(entry.mode)).map_err(entry_io(name))
    }

    fn set_xattrs(
        &self,
        name: &[u8],
        parent: &OwnedFd,
        last: &OsStr,
        entry: &TarEntry,
    ) -> Result<(), RootfsError> {
        // overlayfs' own attributes from a tar would change what the overlay shows: dropped.
        let mut xattrs = entry
            .xattrs
            .iter()
            .filter(|(key, _)| !key.starts_with(sys::OVERLAY_XATTR_PREFIX))
            .peekable();
        if xattrs.peek().is_none() {
            return Ok(());
        }
        let path = sys::proc_path(parent.as_fd(), last);
        let symlink = rustix::fs::statat(parent, last, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink);
        for (key, value) in xattrs {
            if symlink && key.starts_with(b"user.") {
                // The kernel allows no user.* xattrs on symlinks; docker drops them too.
                continue;
            }
            sys::set_xattr(&path, key, value).map_err(|e| RootfsError::Entry {
                entry: lossy(name),
                reason: format!("setting xattr {}: {}", lossy(key), io::Error::from(e)),
            })?;
        }
        Ok(())
    }

    /// The directory `comps` if it exists, reached without following symlinks or creating anything.
    fn existing_dir(&self, comps: &[OsString]) -> Option<OwnedFd> {
        let mut fd = sys::open_dir(&self.root, ".").ok()?;
        for comp in comps {
            fd = sys::open_dir(&fd, comp.as_os_str()).ok()?;
        }
        Some(fd)
    }

    /// Directory mtimes, now that nothing more is written into them; the root's mode.
    fn finish(&mut self) -> Result<(), RootfsError> {
        self.parent_cache = None;
        if !self.root_mode_set {
            rustix::fs::fchmod(&self.root, Mode::from_raw_mode(0o755)).map_err(entry_io(b"."))?;
        }
        let dir_times = std::mem::take(&mut self.dir_times);
        for (mut path, mtime) in dir_times {
            let label: Vec<u8> = path.iter().map(|c| c.as_bytes()).collect::<Vec<_>>().join(&b'/');
            let Some(last) = path.pop() else {
                rustix::fs::futimens(&self.root, &times(mtime)).map_err(entry_io(b"."))?;
                continue;
            };
            // A directory replaced later by a non-directory (or removed with its parent) keeps
            // no time of its own: only walk to what is still a directory.
            let Some(parent) = self.existing_dir(&path) else {
                continue;
            };
            match rustix::fs::statat(&parent, &last, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                    rustix::fs::utimensat(&parent, &last, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(entry_io(&label))?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Copies exactly `size` bytes of content (the byte limit was checked with the entry).
fn copy_content(
    name: &[u8],
    data: &mut impl Read,
    file: &mut std::fs::File,
    size: u64,
) -> Result<(), RootfsError> {
    let copied = io::copy(&mut data.take(size), file).map_err(|source| RootfsError::Tar {
        after: lossy(name),
        source,
    })?;
    if copied != size {
        return Err(RootfsError::Tar {
            after: lossy(name),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the layer tar ends inside this file",
            ),
        });
    }
    file.flush().map_err(|source| RootfsError::EntryIo {
        entry: lossy(name),
        source,
    })
}

fn set_opaque(dir: impl AsFd) -> Result<(), Errno> {
    rustix::fs::fsetxattr(dir, sys::OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
}

fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}
