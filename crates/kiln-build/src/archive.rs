//! ADD of a local tar archive: recognised by content (plain, gzip or zstd — what `kiln-oci` decompresses),
//! extracted into the destination folder inside the image. Every entry is written through
//! [`Root`], so neither `../` names nor symlinks in the archive or the image can place a file outside the
//! image root; entry names are cleaned relative to the destination as Docker does.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use kiln_rootfs::root::Root;

use crate::context::clean;

/// Whether `path` holds a tar archive (after decompression): its first header's checksum is valid.
pub fn is_archive(path: &Path) -> bool {
    let Ok(file) = fs_err::File::open(path) else {
        return false;
    };
    let Ok((_, mut reader)) = kiln_oci::compress::decompress(BufReader::new(file)) else {
        return false;
    };
    let mut header = [0u8; 512];
    if reader.read_exact(&mut header).is_err() {
        return false;
    }
    header_checksum_ok(&header)
}

fn header_checksum_ok(header: &[u8; 512]) -> bool {
    let stored = std::str::from_utf8(&header[148..156])
        .ok()
        .map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '))
        .and_then(|s| u32::from_str_radix(s, 8).ok());
    let computed: u32 = header
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    header.iter().any(|b| *b != 0) && stored == Some(computed)
}

/// Extracts the archive at `path` into the folder `dest` (relative to the image root). Returns the
/// number of entries written.
pub fn extract(root: &Root, path: &Path, dest: &Path) -> Result<usize, String> {
    let describe = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = fs_err::File::open(path).map_err(|e| describe(&e))?;
    let (_, reader) =
        kiln_oci::compress::decompress(BufReader::with_capacity(1 << 20, file)).map_err(|e| describe(&e))?;
    let mut archive = tar::Archive::new(reader);
    let dest_in_root = root.resolve_in_root(dest).map_err(|e| describe(&e))?;
    let dest = dest_in_root.strip_prefix("/").unwrap_or(&dest_in_root).to_owned();
    root.mkdir_all(&dest, 0o755, 0, 0).map_err(|e| describe(&e))?;
    let mut count = 0;
    for entry in archive.entries().map_err(|e| describe(&e))? {
        let mut entry = entry.map_err(|e| describe(&e))?;
        let raw = entry
            .path()
            .map_err(|e| describe(&e))?
            .to_string_lossy()
            .into_owned();
        let name = clean(&raw);
        if name.is_empty() {
            continue;
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = u32::try_from(header.uid().unwrap_or(0)).unwrap_or(0);
        let gid = u32::try_from(header.gid().unwrap_or(0)).unwrap_or(0);
        let mtime = i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(0);
        let kind = header.entry_type();
        let target: PathBuf = dest.join(&name);
        let at = |e: kiln_rootfs::RootfsError| format!("{}: entry `{raw}`: {e}", path.display());
        if let Some(parent) = target.parent() {
            root.mkdir_all(parent, 0o755, 0, 0).map_err(at)?;
        }
        match kind {
            tar::EntryType::Directory => root.mkdir_all(&target, mode, uid, gid).map_err(at)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut out = root.create_file(&target, mode, uid, gid).map_err(at)?;
                std::io::copy(&mut entry, &mut out).map_err(|e| describe(&e))?;
                drop(out);
                root.set_mtime(&target, mtime, 0).map_err(at)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| describe(&e))?
                    .unwrap_or_default()
                    .into_owned();
                let _ = root.remove_all(&target);
                root.symlink(&target, &link, uid, gid).map_err(at)?;
            }
            tar::EntryType::Link => {
                let link = entry.link_name().map_err(|e| describe(&e))?.unwrap_or_default();
                let existing = dest.join(clean(&link.to_string_lossy()));
                let _ = root.remove_all(&target);
                root.hardlink(&existing, &target).map_err(at)?;
            }
            // Devices and fifos need privileges an image build should not use; Docker skips them too
            // when it cannot create them. PAX and GNU long-name headers are handled by the tar reader.
            _ => continue,
        }
        count += 1;
    }
    Ok(count)
}
