//! A layer described entry by entry instead of read from a folder: the same tar bytes
//! [`crate::capture::capture_layer`] would write for a folder holding exactly these entries, so a
//! builder can write the layer of a COPY straight from its sources without first creating every
//! file on disk and reading it back.
//!
//! Entries are keyed by their path's components, so a [`BTreeMap`] walks them in capture's order
//! (depth first, each folder's names sorted by bytes, a folder before its contents). Every folder
//! on the way to an entry must be an entry itself, as it would be in an overlay upper folder.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::capture::{BLOCK, CaptureOptions, CaptureStats, Header, file_content, header_blocks, join};
use crate::error::{RootfsError, io_at};

/// What an entry is.
#[derive(Debug, Clone)]
pub enum TreeKind {
    /// A folder.
    Dir,
    /// A regular file whose content is read from a host file when the layer is written.
    File(PathBuf),
    /// A regular file with the given content.
    Bytes(Arc<Vec<u8>>),
    /// A symlink to the given target.
    Symlink(Vec<u8>),
}

/// One entry of a described layer.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    /// What it is.
    pub kind: TreeKind,
    /// Permission bits with setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time in seconds (clamped when written, as capture clamps).
    pub mtime: i64,
}

/// Path components (bytes, no `/`) → entry.
pub type Tree = BTreeMap<Vec<Vec<u8>>, TreeEntry>;

/// Writes `tree` as an uncompressed layer tar to `out`. A host file that is not a regular file, or
/// whose size changes while it is read, is an error naming it.
pub fn write_tree(
    tree: &Tree,
    mut out: impl Write,
    options: &CaptureOptions,
) -> Result<CaptureStats, RootfsError> {
    let mut stats = CaptureStats::default();
    let mut buffer = vec![0u8; 1 << 20];
    let clamp = |mtime: i64| match options.source_date_epoch {
        Some(epoch) => mtime.min(epoch),
        None => mtime,
    };
    for (components, entry) in tree {
        let mut name = components.join(&b'/');
        let write_err = |name: &[u8]| {
            let path = PathBuf::from(String::from_utf8_lossy(name).into_owned());
            move |source| RootfsError::Write { path, source }
        };
        let mut h = Header {
            name: &[],
            kind: b'0',
            mode: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            size: 0,
            mtime: clamp(entry.mtime),
            link: b"",
            dev: (0, 0),
            xattrs: &[],
        };
        let mut file = None;
        match &entry.kind {
            TreeKind::Dir => {
                name = join(&name, b"/");
                h.kind = b'5';
            }
            TreeKind::File(path) => {
                let opened = std::fs::File::open(path).map_err(io_at(path))?;
                let meta = opened.metadata().map_err(io_at(path))?;
                if !meta.is_file() {
                    return Err(RootfsError::Capture {
                        path: path.clone(),
                        reason: "not a regular file".into(),
                    });
                }
                h.size = meta.len();
                file = Some((path, opened));
            }
            TreeKind::Bytes(bytes) => h.size = bytes.len() as u64,
            TreeKind::Symlink(target) => {
                h.kind = b'2';
                h.link = target;
            }
        }
        h.name = &name;
        let blocks = header_blocks(&h);
        out.write_all(&blocks).map_err(write_err(&name))?;
        stats.tar_bytes += blocks.len() as u64;
        stats.entries += 1;
        match (&entry.kind, file) {
            (_, Some((path, mut opened))) => {
                stats.tar_bytes += file_content(&mut opened, h.size, &mut out, &mut buffer, path, &name)?;
            }
            (TreeKind::Bytes(bytes), None) => {
                out.write_all(bytes).map_err(write_err(&name))?;
                let pad = (BLOCK - (h.size % BLOCK as u64) as usize) % BLOCK;
                out.write_all(&[0u8; BLOCK][..pad]).map_err(write_err(&name))?;
                stats.tar_bytes += h.size + pad as u64;
            }
            _ => continue,
        }
        stats.bytes += h.size;
    }
    out.write_all(&[0u8; 2 * BLOCK])
        .map_err(|source| RootfsError::Write {
            path: PathBuf::new(),
            source,
        })?;
    stats.tar_bytes += 2 * BLOCK as u64;
    Ok(stats)
}
