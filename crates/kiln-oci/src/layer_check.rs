//! The rules of a layer tar, apart from writing it anywhere: what each entry means (a node, a
//! whiteout, an opaque marker, the root) and what is refused. `kiln-rootfs`' unpack applies the
//! operations [`LayerChecker::check`] returns; `kiln image import` runs [`check_layer`] over a root
//! filesystem tar, so a tar that imports is a tar that unpacks.
//!
//! Names are normalized (leading `/`, `.` and empty components dropped); refused, naming the entry:
//! `..` components and NUL bytes, a root entry that is not a directory, `.wh.` names used as folders,
//! whiteouts of invalid names, hard links to anything but a non-directory written earlier by the same
//! layer, empty symlink targets, devices when [`LayerLimits::allow_devices`] is off, entry types
//! other than files, folders, links, devices and fifos, and anything over [`LayerLimits`]. aufs
//! metadata (`.wh..wh.*` other than the opaque marker) is skipped, as docker does.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

use crate::tar_reader::{
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_NAME_LEN, EntryType, TarEntry, TarError, TarLimits, TarReader,
};

/// The prefix of a whiteout's name.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name of an opaque marker.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";

/// Bounds on what one layer may contain. The defaults fit any real image.
#[derive(Debug, Clone)]
pub struct LayerLimits {
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

impl Default for LayerLimits {
    fn default() -> Self {
        Self {
            max_entries: 4 << 20,
            max_bytes: 64 << 30,
            max_name_len: DEFAULT_MAX_NAME_LEN,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            allow_devices: true,
        }
    }
}

impl LayerLimits {
    /// The limits of the tar reader.
    pub fn tar(&self) -> TarLimits {
        TarLimits {
            max_header_bytes: self.max_header_bytes,
            max_name_len: self.max_name_len,
        }
    }
}

/// What a layer holds, counted as [`LayerChecker`] reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries (extension headers not counted).
    pub entries: u64,
    /// Content bytes of regular files.
    pub bytes: u64,
}

/// A path inside the layer, as components.
pub type Components = Vec<OsString>;

/// What one entry asks of the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerOp {
    /// Nothing (aufs metadata).
    Skip,
    /// The metadata of the layer's root folder (`./`).
    Root,
    /// `DIR/.wh..wh..opq`: the folder `dir` hides what lower layers hold in it.
    Opaque {
        /// The folder.
        dir: Components,
    },
    /// `DIR/.wh.NAME`: `NAME` in `dir` is removed.
    Whiteout {
        /// The folder.
        dir: Components,
        /// The name hidden.
        name: OsString,
    },
    /// A node `name` in the folder `dir`.
    Node {
        /// The folder it is in.
        dir: Components,
        /// Its name.
        name: OsString,
        /// What it is.
        kind: NodeKind,
    },
}

/// The kind of a [`LayerOp::Node`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A folder (type `5`, or an old tar's regular file whose name ends in `/`).
    Dir,
    /// A regular file; its content follows.
    File,
    /// A symlink to the entry's (non-empty) link target.
    Symlink,
    /// A hard link to a non-directory written earlier by this layer.
    HardLink {
        /// The target's path.
        target: Components,
    },
    /// A character device, block device or fifo ([`EntryType::Char`], `Block`, `Fifo`).
    Special(EntryType),
}

/// Splits a tar name into components: leading `/`, `.` and empty components dropped; `..` and NUL
/// refused.
pub fn components(name: &[u8], what: &str) -> Result<Components, String> {
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

/// Reads the entries of one layer in order and says what each means, or why it is refused.
#[derive(Debug)]
pub struct LayerChecker {
    limits: LayerLimits,
    stats: LayerStats,
    /// Non-directories written by this layer: the only valid hard-link targets.
    written: HashSet<Components>,
}

impl LayerChecker {
    /// A checker of one layer within `limits`.
    pub fn new(limits: &LayerLimits) -> Self {
        LayerChecker {
            limits: limits.clone(),
            stats: LayerStats::default(),
            written: HashSet::new(),
        }
    }

    /// What was counted so far.
    pub fn stats(&self) -> LayerStats {
        self.stats
    }

    /// The operation `entry` stands for, or why it is refused.
    pub fn check(&mut self, entry: &TarEntry) -> Result<LayerOp, TarError> {
        let name = entry.name.as_slice();
        let refuse = |reason: String| TarError::entry(name, reason);
        self.stats.entries += 1;
        if self.stats.entries > self.limits.max_entries {
            return Err(TarError::Limit {
                entry: entry.name_lossy(),
                what: "the number of entries",
                limit: self.limits.max_entries,
            });
        }
        let mut dir = components(name, "the name").map_err(refuse)?;
        let kind = entry.kind;
        let is_dir = kind == EntryType::Directory || (kind == EntryType::Regular && name.ends_with(b"/"));
        if dir.iter().any(|c| {
            let c = c.as_bytes();
            c.starts_with(WHITEOUT_META_PREFIX) && c != OPAQUE_MARKER
        }) {
            // aufs metadata (`.wh..wh.plnk`, …): docker skips it too.
            return Ok(LayerOp::Skip);
        }
        let Some(last) = dir.pop() else {
            if !is_dir {
                return Err(refuse(format!(
                    "the layer root must be a directory, not {kind:?}"
                )));
            }
            return Ok(LayerOp::Root);
        };
        if dir.iter().any(|c| c.as_bytes().starts_with(WHITEOUT_PREFIX)) {
            return Err(refuse("a whiteout name is used as a directory".into()));
        }
        let last_bytes = last.as_bytes();
        if last_bytes == OPAQUE_MARKER {
            return Ok(LayerOp::Opaque { dir });
        }
        if let Some(hidden) = last_bytes.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
                return Err(refuse("a whiteout of an invalid name".into()));
            }
            return Ok(LayerOp::Whiteout {
                dir,
                name: OsStr::from_bytes(hidden).to_owned(),
            });
        }
        let mut path = dir.clone();
        path.push(last.clone());
        let node = if is_dir {
            self.written.remove(&path);
            NodeKind::Dir
        } else {
            match kind {
                EntryType::Link => {
                    let target = components(&entry.link, "the hard link target").map_err(refuse)?;
                    if !self.written.contains(&target) {
                        return Err(refuse(format!(
                            "hard link target {:?} is not a file written earlier in this layer",
                            String::from_utf8_lossy(&entry.link)
                        )));
                    }
                    NodeKind::HardLink { target }
                }
                EntryType::Regular | EntryType::Continuous => {
                    let total = self.stats.bytes.saturating_add(entry.size);
                    if total > self.limits.max_bytes {
                        return Err(TarError::Limit {
                            entry: entry.name_lossy(),
                            what: "the total size of file contents",
                            limit: self.limits.max_bytes,
                        });
                    }
                    self.stats.bytes = total;
                    NodeKind::File
                }
                EntryType::Symlink => {
                    if entry.link.contains(&0) || entry.link.is_empty() {
                        return Err(refuse("an empty symlink target or one with a NUL byte".into()));
                    }
                    NodeKind::Symlink
                }
                EntryType::Char | EntryType::Block if !self.limits.allow_devices => {
                    return Err(refuse("device files are not allowed here".into()));
                }
                EntryType::Char | EntryType::Block | EntryType::Fifo => NodeKind::Special(kind),
                other => return Err(refuse(format!("unsupported entry type {other:?}"))),
            }
        };
        if node != NodeKind::Dir {
            self.written.insert(path);
        }
        Ok(LayerOp::Node {
            dir,
            name: last,
            kind: node,
        })
    }
}

/// Reads the whole uncompressed layer `tar` and checks every entry as an unpack would, writing
/// nothing; returns what it holds.
pub fn check_layer(tar: impl Read, limits: &LayerLimits) -> Result<LayerStats, TarError> {
    let mut reader = TarReader::new(tar, limits.tar());
    let mut checker = LayerChecker::new(limits);
    while let Some(entry) = reader.next_entry()? {
        checker.check(&entry)?;
    }
    Ok(checker.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: EntryType, link: &str) -> TarEntry {
        TarEntry {
            kind,
            name: name.as_bytes().to_vec(),
            link: link.as_bytes().to_vec(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            dev: (0, 0),
            size: 0,
            xattrs: Vec::new(),
        }
    }

    fn os(parts: &[&str]) -> Components {
        parts.iter().map(OsString::from).collect()
    }

    #[test]
    fn entries_become_operations() {
        let mut c = LayerChecker::new(&LayerLimits::default());
        assert_eq!(
            c.check(&entry("./", EntryType::Directory, "")).unwrap(),
            LayerOp::Root
        );
        assert_eq!(
            c.check(&entry("/a/.wh..wh..opq", EntryType::Regular, ""))
                .unwrap(),
            LayerOp::Opaque { dir: os(&["a"]) }
        );
        assert_eq!(
            c.check(&entry("a/.wh.b", EntryType::Regular, "")).unwrap(),
            LayerOp::Whiteout {
                dir: os(&["a"]),
                name: "b".into()
            }
        );
        assert_eq!(
            c.check(&entry(".wh..wh.plnk/x", EntryType::Regular, "")).unwrap(),
            LayerOp::Skip
        );
        c.check(&entry("a/f", EntryType::Regular, "")).unwrap();
        assert_eq!(
            c.check(&entry("a/g", EntryType::Link, "./a/f")).unwrap(),
            LayerOp::Node {
                dir: os(&["a"]),
                name: "g".into(),
                kind: NodeKind::HardLink {
                    target: os(&["a", "f"])
                }
            }
        );
        assert_eq!(c.stats().entries, 6);
    }

    #[test]
    fn hostile_entries_are_refused_naming_them() {
        let mut c = LayerChecker::new(&LayerLimits::default());
        for (e, message) in [
            (entry("a/../../x", EntryType::Regular, ""), "`..` component"),
            (
                entry(".", EntryType::Regular, ""),
                "layer root must be a directory",
            ),
            (
                entry(".wh.a/b", EntryType::Regular, ""),
                "whiteout name is used as a directory",
            ),
            (
                entry("a/.wh..", EntryType::Regular, ""),
                "whiteout of an invalid name",
            ),
            (
                entry("l", EntryType::Link, "/etc/passwd"),
                "not a file written earlier",
            ),
            (entry("s", EntryType::Symlink, ""), "empty symlink target"),
            (entry("v", EntryType::new(b'V'), ""), "unsupported entry type"),
        ] {
            let err = c.check(&e).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{:?}", e.name_lossy())) && err.contains(message),
                "{err}"
            );
        }
        let no_devices = LayerLimits {
            allow_devices: false,
            ..LayerLimits::default()
        };
        let err = LayerChecker::new(&no_devices)
            .check(&entry("dev/sda", EntryType::Block, ""))
            .unwrap_err();
        assert!(err.to_string().contains("device files are not allowed"), "{err}");
    }
}
