//! Extract an uncompressed OCI/docker layer tar into a directory in overlayfs *lowerdir* form.
//!
//! The input is hostile: every name is normalized (leading `/` dropped, `.` and empty components
//! dropped, `..` refused), every parent directory is opened one component at a time with
//! `O_NOFOLLOW` from the unpack root (so nothing is ever written through a symlink, whatever the
//! tar put there), a hard link must name a non-directory written earlier by the same layer, and the
//! limits of [`UnpackLimits`] bound entries, content bytes, name lengths and the in-memory extension
//! headers (PAX, GNU long names), which are parsed here rather than by the `tar` crate so their size
//! is checked before they are read.
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

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use crate::error::{RootfsError, io_at};
use crate::sys;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";

/// Bounds on what one layer may contain. The defaults fit any real image.
#[derive(Debug, Clone)]
pub struct UnpackLimits {
    /// Most entries (headers of files, directories, links…; extension headers not counted).
    pub max_entries: u64,
    /// Most content bytes of regular files, summed.
    pub max_bytes: u64,
    /// Longest entry name or link target, in bytes.
    pub max_name_len: usize,
    /// Largest PAX or GNU long-name/long-link extension header, in bytes (held in memory).
    pub max_header_bytes: u64,
    /// Whether character and block devices other than whiteouts are allowed.
    pub allow_devices: bool,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_entries: 4 << 20,
            max_bytes: 64 << 30,
            max_name_len: 4096,
            max_header_bytes: 1 << 20,
            allow_devices: true,
        }
    }
}

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

/// What an unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Entries applied (extension headers not counted).
    pub entries: u64,
    /// Content bytes of regular files written.
    pub bytes: u64,
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
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
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
        limits,
        stats: UnpackStats::default(),
        dir_times: Vec::new(),
        whiteouts: HashSet::new(),
        written: HashSet::new(),
        root_mode_set: false,
        parent_cache: None,
    };
    unpacker.run(tar)?;
    unpacker.finish()?;
    if durability == Durability::Synced {
        // Durable before visible: a power loss after the rename must not leave truncated files.
        rustix::fs::syncfs(&unpacker.root).map_err(|e| io_at(temp.path())(e.into()))?;
    }
    let stats = unpacker.stats;
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

/// The metadata of one entry, gathered from its header and the extension headers before it.
struct Meta {
    name: Vec<u8>,
    link: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    /// Device major and minor numbers (0 for other kinds).
    dev: (u32, u32),
    xattrs: sys::Xattrs,
}

struct Unpacker<'a> {
    root: OwnedFd,
    limits: &'a UnpackLimits,
    stats: UnpackStats,
    /// Directories written by the layer and their mtimes, applied at the end.
    dir_times: Vec<(Vec<OsString>, Timespec)>,
    /// Names whited out by this layer (a later directory of the same name becomes opaque).
    whiteouts: HashSet<Vec<OsString>>,
    /// Non-directories written by this layer: the only valid hard-link targets.
    written: HashSet<Vec<OsString>>,
    root_mode_set: bool,
    /// The last parent directory opened, reused by its following siblings.
    parent_cache: Option<(Vec<OsString>, OwnedFd)>,
}

/// Extension headers seen before the entry they describe.
#[derive(Default)]
struct Pending {
    pax: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
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

/// Splits a tar name into safe components: leading `/` dropped, `.` and empty components dropped,
/// `..` and NUL refused.
fn components(name: &[u8], what: &str) -> Result<Vec<OsString>, String> {
    if name.contains(&0) {
        return Err(format!("{what} contains a NUL byte"));
    }
    let mut out = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(format!("{what} has a `..` component")),
            _ => out.push(OsStr::from_bytes(part).to_owned()),
        }
    }
    Ok(out)
}

/// Parses a PAX time (`-12.5`, `1700000000.123456789`) into a timespec.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let negative = int.starts_with('-');
    let secs: i64 = int.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let mut nsec: i64 = digits.parse().ok()?;
    let mut secs = secs;
    if negative && nsec > 0 {
        secs = secs.checked_sub(1)?;
        nsec = 1_000_000_000 - nsec;
    }
    Some(Timespec {
        tv_sec: secs,
        tv_nsec: nsec as _,
    })
}

fn parse_u32(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

impl Unpacker<'_> {
    fn run(&mut self, tar: impl Read) -> Result<(), RootfsError> {
        let mut archive = tar::Archive::new(tar);
        let entries = archive.entries().map_err(|source| RootfsError::Tar {
            after: String::new(),
            source,
        })?;
        let mut last = String::new();
        let mut pending = Pending::default();
        for entry in entries.raw(true) {
            let mut entry = entry.map_err(|source| RootfsError::Tar {
                after: last.clone(),
                source,
            })?;
            let header = entry.header().clone();
            let kind = header.entry_type();
            let header_name = header.path_bytes().into_owned();
            let size = header.entry_size().map_err(|source| RootfsError::Tar {
                after: last.clone(),
                source,
            })?;
            let slot = match kind {
                EntryType::XHeader => Some(&mut pending.pax),
                EntryType::GNULongName => Some(&mut pending.long_name),
                EntryType::GNULongLink => Some(&mut pending.long_link),
                EntryType::XGlobalHeader => None,
                _ => {
                    let meta = self.meta(&header, &mut pending, size)?;
                    last = lossy(&meta.name);
                    self.count_entry(&meta.name)?;
                    self.apply(kind, &meta, size, &mut entry)?;
                    continue;
                }
            };
            if size > self.limits.max_header_bytes {
                return Err(RootfsError::Limit {
                    entry: format!(
                        "{} (extension header before the entry after {last:?})",
                        lossy(&header_name)
                    ),
                    what: "an extension header's size",
                    limit: self.limits.max_header_bytes,
                });
            }
            let mut body = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut body).map_err(|source| RootfsError::Tar {
                after: last.clone(),
                source,
            })?;
            if let Some(slot) = slot {
                if slot.is_some() {
                    return Err(RootfsError::Tar {
                        after: last.clone(),
                        source: io::Error::new(
                            io::ErrorKind::InvalidData,
                            "two extension headers of one kind describe the same entry",
                        ),
                    });
                }
                *slot = Some(body);
            }
        }
        if pending.pax.is_some() || pending.long_name.is_some() || pending.long_link.is_some() {
            return Err(RootfsError::Tar {
                after: last,
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "extension header with no entry after it",
                ),
            });
        }
        Ok(())
    }

    fn count_entry(&mut self, name: &[u8]) -> Result<(), RootfsError> {
        self.stats.entries += 1;
        if self.stats.entries > self.limits.max_entries {
            return Err(RootfsError::Limit {
                entry: lossy(name),
                what: "the number of entries",
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Gathers the entry's metadata from its header and pending extension headers.
    fn meta(&self, header: &tar::Header, pending: &mut Pending, size: u64) -> Result<Meta, RootfsError> {
        let pax = pending.pax.take();
        let mut name = header.path_bytes().into_owned();
        let mut link = header
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        if let Some(mut long) = pending.long_name.take() {
            while long.last() == Some(&0) {
                long.pop();
            }
            name = long;
        }
        if let Some(mut long) = pending.long_link.take() {
            while long.last() == Some(&0) {
                long.pop();
            }
            link = long;
        }
        let bad = |what: &'static str| {
            let name = lossy(&name);
            move |e: io::Error| RootfsError::Entry {
                entry: name,
                reason: format!("bad {what} field: {e}"),
            }
        };
        let mut uid = header.uid().map_err(bad("uid"))?;
        let mut gid = header.gid().map_err(bad("gid"))?;
        let mtime = header.mtime().map_err(bad("mtime"))?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mode = header.mode().map_err(bad("mode"))? & 0o7777;
        let dev = (
            header.device_major().map_err(bad("devmajor"))?.unwrap_or(0),
            header.device_minor().map_err(bad("devminor"))?.unwrap_or(0),
        );
        let mut xattrs = Vec::new();
        if let Some(pax) = &pax {
            for record in tar::PaxExtensions::new(pax) {
                let record = record.map_err(|e| refuse(&name, format!("bad PAX header: {e}")))?;
                let (key, value) = (record.key_bytes(), record.value_bytes());
                match key {
                    b"path" => name = value.to_vec(),
                    b"linkpath" => link = value.to_vec(),
                    b"uid" => {
                        uid = parse_u32(value)
                            .ok_or_else(|| refuse(&name, "bad PAX uid"))?
                            .into()
                    }
                    b"gid" => {
                        gid = parse_u32(value)
                            .ok_or_else(|| refuse(&name, "bad PAX gid"))?
                            .into()
                    }
                    b"mtime" => {
                        mtime = parse_pax_time(value).ok_or_else(|| refuse(&name, "bad PAX mtime"))?
                    }
                    b"size" => {
                        // The tar crate sizes raw entries by their header; a different PAX size
                        // (files over 8 GiB) would desynchronize the stream.
                        if value != size.to_string().as_bytes() {
                            return Err(refuse(
                                &name,
                                "PAX size records (files over 8 GiB) are not supported",
                            ));
                        }
                    }
                    _ => {
                        if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.")
                            && !xattr.starts_with(sys::OVERLAY_XATTR_PREFIX)
                            && !xattr.is_empty()
                        {
                            xattrs.push((xattr.to_vec(), value.to_vec()));
                        }
                    }
                }
            }
        }
        let limit = self.limits.max_name_len;
        for (what, bytes) in [("the name's length", &name), ("the link target's length", &link)] {
            if bytes.len() > limit {
                return Err(RootfsError::Limit {
                    entry: lossy(&name[..name.len().min(limit)]),
                    what,
                    limit: limit as u64,
                });
            }
        }
        let to_u32 = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| refuse(&name, format!("{what} {v} is out of range")))
        };
        Ok(Meta {
            uid: to_u32(uid, "uid")?,
            gid: to_u32(gid, "gid")?,
            mode,
            mtime,
            dev,
            xattrs,
            link,
            name,
        })
    }

    /// Opens (creating missing directories, 0755 root-owned, as docker does) the parent
    /// directory `comps`, one component at a time, never following a symlink.
    fn parent(&mut self, name: &[u8], comps: &[OsString]) -> Result<&OwnedFd, RootfsError> {
        let cached = matches!(&self.parent_cache, Some((c, _)) if c.as_slice() == comps);
        if !cached {
            let mut fd = sys::open_dir(&self.root, ".").map_err(entry_io(name))?;
            for (i, comp) in comps.iter().enumerate() {
                if comp.as_bytes().starts_with(WHITEOUT_PREFIX) {
                    return Err(refuse(name, "a whiteout name is used as a directory"));
                }
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

    fn apply(
        &mut self,
        kind: EntryType,
        meta: &Meta,
        size: u64,
        data: &mut impl Read,
    ) -> Result<(), RootfsError> {
        let name = meta.name.as_slice();
        let mut comps = components(name, "the name").map_err(|r| refuse(name, r))?;
        let is_dir = kind == EntryType::Directory || (kind == EntryType::Regular && name.ends_with(b"/"));
        let header_only = matches!(
            kind,
            EntryType::Directory
                | EntryType::Symlink
                | EntryType::Link
                | EntryType::Char
                | EntryType::Block
                | EntryType::Fifo
        );
        if header_only && size != 0 {
            return Err(refuse(
                name,
                format!("a {kind:?} entry with {size} bytes of content"),
            ));
        }
        if comps.iter().any(|c| {
            let c = c.as_bytes();
            c.starts_with(WHITEOUT_META_PREFIX) && c != OPAQUE_MARKER
        }) {
            // aufs metadata (`.wh..wh.plnk`, …): docker skips it too.
            return Ok(());
        }
        let Some(last) = comps.pop() else {
            return self.apply_root(kind, meta, is_dir);
        };
        let last_bytes = last.as_bytes();
        if last_bytes == OPAQUE_MARKER {
            let parent = self.parent(name, &comps)?;
            set_opaque(parent).map_err(entry_io(name))?;
            return Ok(());
        }
        if let Some(hidden) = last_bytes.strip_prefix(WHITEOUT_PREFIX) {
            return self.apply_whiteout(name, comps, OsStr::from_bytes(hidden));
        }
        let mut path = comps.clone();
        path.push(last.clone());
        let parent = self.parent_owned(name, &comps)?;
        let existing = match rustix::fs::statat(&parent, &last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Some(FileType::from_raw_mode(stat.st_mode)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(entry_io(name)(e)),
        };
        if is_dir {
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
            self.set_owner_mode(name, &dir, meta)?;
            self.set_xattrs(name, &parent, &last, meta)?;
            self.written.remove(&path);
            self.dir_times.push((path, meta.mtime));
            return Ok(());
        }
        if kind == EntryType::Link {
            return self.apply_hardlink(meta, &parent, &last, path);
        }
        if existing.is_some() {
            sys::remove_any(parent.as_fd(), &last).map_err(entry_io(name))?;
            if existing == Some(FileType::Directory) {
                self.parent_cache = None;
            }
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let fd = rustix::fs::openat(
                    &parent,
                    &last,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(entry_io(name))?;
                let mut file = std::fs::File::from(fd);
                self.copy_content(name, data, &mut file, size)?;
                self.set_owner_mode(name, &file, meta)?;
                self.set_xattrs(name, &parent, &last, meta)?;
                rustix::fs::futimens(&file, &times(meta.mtime)).map_err(entry_io(name))?;
            }
            EntryType::Symlink => {
                if meta.link.contains(&0) || meta.link.is_empty() {
                    return Err(refuse(name, "an empty symlink target or one with a NUL byte"));
                }
                rustix::fs::symlinkat(OsStr::from_bytes(&meta.link), &parent, &last)
                    .map_err(entry_io(name))?;
                self.finish_node(meta, &parent, &last, false)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Fifo => FileType::Fifo,
                    EntryType::Char => FileType::CharacterDevice,
                    _ => FileType::BlockDevice,
                };
                let dev = if kind == EntryType::Fifo {
                    0
                } else if !self.limits.allow_devices {
                    return Err(refuse(name, "device files are not allowed here"));
                } else {
                    rustix::fs::makedev(meta.dev.0, meta.dev.1)
                };
                rustix::fs::mknodat(&parent, &last, file_type, Mode::from_raw_mode(0o600), dev)
                    .map_err(entry_io(name))?;
                self.finish_node(meta, &parent, &last, true)?;
            }
            EntryType::GNUSparse => return Err(refuse(name, "GNU sparse files are not supported")),
            other => return Err(refuse(name, format!("unsupported entry type {other:?}"))),
        }
        self.written.insert(path);
        Ok(())
    }
}

impl Unpacker<'_> {
    /// `./` (or `/`): the metadata of the layer's root directory.
    fn apply_root(&mut self, kind: EntryType, meta: &Meta, is_dir: bool) -> Result<(), RootfsError> {
        let name = meta.name.as_slice();
        if !is_dir {
            return Err(refuse(
                name,
                format!("the layer root must be a directory, not {kind:?}"),
            ));
        }
        let root = sys::open_dir(&self.root, ".").map_err(entry_io(name))?;
        self.set_owner_mode(name, &root, meta)?;
        self.set_xattrs(name, &root, OsStr::new(""), meta)?;
        self.root_mode_set = true;
        self.dir_times.push((Vec::new(), meta.mtime));
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
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.as_bytes().contains(&b'/') {
            return Err(refuse(name, "a whiteout of an invalid name"));
        }
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
        meta: &Meta,
        parent: &OwnedFd,
        last: &OsStr,
        path: Vec<OsString>,
    ) -> Result<(), RootfsError> {
        let name = meta.name.as_slice();
        let mut target = components(&meta.link, "the hard link target").map_err(|r| refuse(name, r))?;
        if !self.written.contains(&target) {
            return Err(refuse(
                name,
                format!(
                    "hard link target {:?} is not a file written earlier in this layer",
                    lossy(&meta.link)
                ),
            ));
        }
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
        self.written.insert(path);
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and mtime of a node that has no fd of its own.
    fn finish_node(
        &self,
        meta: &Meta,
        parent: &OwnedFd,
        last: &OsStr,
        chmod: bool,
    ) -> Result<(), RootfsError> {
        let name = meta.name.as_slice();
        rustix::fs::chownat(
            parent,
            last,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(entry_io(name))?;
        if chmod {
            // The node was just created by us and is not a symlink: following is moot.
            rustix::fs::chmodat(parent, last, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(entry_io(name))?;
        }
        self.set_xattrs(name, parent, last, meta)?;
        rustix::fs::utimensat(parent, last, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(entry_io(name))?;
        Ok(())
    }

    /// Owner then mode (chown clears setuid bits, so it goes first).
    fn set_owner_mode(&self, name: &[u8], fd: impl AsFd, meta: &Meta) -> Result<(), RootfsError> {
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
        )
        .map_err(entry_io(name))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(entry_io(name))
    }

    fn set_xattrs(
        &self,
        name: &[u8],
        parent: &OwnedFd,
        last: &OsStr,
        meta: &Meta,
    ) -> Result<(), RootfsError> {
        if meta.xattrs.is_empty() {
            return Ok(());
        }
        let path = sys::proc_path(parent.as_fd(), last);
        let symlink = rustix::fs::statat(parent, last, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink);
        for (key, value) in &meta.xattrs {
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

    /// Copies exactly `size` bytes of content, within the byte limit.
    fn copy_content(
        &mut self,
        name: &[u8],
        data: &mut impl Read,
        file: &mut std::fs::File,
        size: u64,
    ) -> Result<(), RootfsError> {
        let total = self.stats.bytes.saturating_add(size);
        if total > self.limits.max_bytes {
            return Err(RootfsError::Limit {
                entry: lossy(name),
                what: "the total size of file contents",
                limit: self.limits.max_bytes,
            });
        }
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
        })?;
        self.stats.bytes = total;
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

fn set_opaque(dir: impl AsFd) -> Result<(), Errno> {
    rustix::fs::fsetxattr(dir, sys::OPAQUE_XATTR, b"y", rustix::fs::XattrFlags::empty())
}

fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}
