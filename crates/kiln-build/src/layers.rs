//! Unpacked layers: each layer of a stage is unpacked once, by diff ID, into `kiln-build/layers/` in
//! overlayfs lower-directory form, and stacked read-only under every step that needs a root filesystem.
//! A layer the builder captured from an overlay is not unpacked again: the upper directory it was captured
//! from already has that form and is moved into place. A COPY layer written straight from the context
//! (`copy_layer`) has no folder until a later step needs one, and is then unpacked like any other.
//!
//! Unpacked folders are caches of verified blobs, so they are not synced to disk (a `syncfs` or the sync
//! of a plain overlay unmount flushes the whole filesystem, seconds on a busy CI disk). Unsynced data can
//! only be lost with the kernel, so the folders live under the current boot's ID
//! (`layers/<boot-id>/`): after a reboot they are never trusted, but removed and unpacked again from
//! their blobs.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use kiln_oci::compress::{HashingReader, decompress};
use kiln_oci::{BlobStore, Digest};
use kiln_rootfs::unpack::Durability;

use crate::cache::LayerRecord;
use crate::error::BuildError;

/// The folder of unpacked layers.
#[derive(Debug, Clone)]
pub struct LayerDirs {
    dir: PathBuf,
    durability: Durability,
}

/// Where the kernel publishes the ID of the current boot.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The folder of layers kept (synced) when the boot ID cannot be read.
pub(crate) const SYNCED: &str = "synced";

/// The current boot's ID, if the kernel tells it (and it looks like one).
pub(crate) fn boot_id() -> Option<String> {
    fs_err::read_to_string(BOOT_ID)
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
}

/// The name of the unpacked folder of the layer with this diff ID: `<alg>-<hex>`.
fn folder_name(diff_id: &Digest) -> String {
    format!("{}-{}", diff_id.algorithm(), diff_id.hex())
}

/// The diff ID an unpacked folder's name stands for (`None` for any other name).
pub(crate) fn diff_id_of(name: &str) -> Option<Digest> {
    let (alg, hex) = name.split_once('-')?;
    Digest::new(kiln_oci::Algorithm::from_name(alg)?, hex).ok()
}

impl LayerDirs {
    /// Layers under `root` (created when needed): in `root/<boot-id>/`, unsynced, where the boot ID is
    /// known; else in `root/synced/`, each layer synced before use. Folders of earlier boots (and of
    /// kiln versions before boot IDs) are removed.
    pub fn new(root: PathBuf) -> LayerDirs {
        let boot_id = boot_id();
        let (dir, durability) = match &boot_id {
            Some(id) => (root.join(id), Durability::UntilReboot),
            None => (root.join(SYNCED), Durability::Synced),
        };
        remove_stale(&root, boot_id.as_deref());
        LayerDirs { dir, durability }
    }

    fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(folder_name(diff_id))
    }

    /// The unpacked folder of `layer`, unpacking its blob first if needed; the uncompressed stream must
    /// hash to the layer's diff ID or nothing is kept.
    pub fn ensure(&self, blobs: &BlobStore, layer: &LayerRecord) -> Result<PathBuf, BuildError> {
        let dest = self.path(&layer.diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        fs_err::create_dir_all(&self.dir).map_err(|e| BuildError::io(&self.dir, e))?;
        let digest = &layer.blob.digest;
        let file = blobs.open_verified(digest)?.ok_or_else(|| {
            BuildError::io(
                &blobs.blob_path(digest),
                "the layer blob is missing from the store",
            )
        })?;
        let path = blobs.blob_path(digest);
        let (_, tar) =
            decompress(BufReader::with_capacity(1 << 20, file)).map_err(|e| BuildError::io(&path, e))?;
        let mut hashing = HashingReader::new(tar);
        // Unpack next to the destination under a unique name, check the diff ID, then rename: a crash or a
        // bad layer never leaves a folder under the final name.
        let staging = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&self.dir)
            .map_err(|e| BuildError::io(&self.dir, e))?;
        let target = staging.path().join("layer");
        kiln_rootfs::unpack::unpack_layer_with(
            &mut hashing,
            &target,
            &kiln_rootfs::unpack::UnpackLimits::default(),
            self.durability,
        )
        .map_err(|e| BuildError::io(&path, format!("layer {digest}: {e}")))?;
        // Drain what the tar reader left (padding after the end marker) so the diff ID covers every byte.
        std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| BuildError::io(&path, e))?;
        let (diff_id, _) = hashing.finish();
        if diff_id != layer.diff_id {
            return Err(BuildError::io(
                &path,
                format!(
                    "layer {digest} uncompresses to {diff_id}, but its image says {}",
                    layer.diff_id
                ),
            ));
        }
        self.place(&target, &dest)?;
        Ok(dest)
    }

    /// Moves a captured overlay upper folder into place as the unpacked form of `diff_id`.
    pub fn adopt(&self, upper: &Path, diff_id: &Digest) -> Result<PathBuf, BuildError> {
        fs_err::create_dir_all(&self.dir).map_err(|e| BuildError::io(&self.dir, e))?;
        if self.durability == Durability::Synced {
            let dir = fs_err::File::open(upper).map_err(|e| BuildError::io(upper, e))?;
            rustix::fs::syncfs(&dir).map_err(|e| BuildError::io(upper, std::io::Error::from(e)))?;
        }
        let dest = self.path(diff_id);
        self.place(upper, &dest)?;
        Ok(dest)
    }

    fn place(&self, from: &Path, dest: &Path) -> Result<(), BuildError> {
        match std::fs::rename(from, dest) {
            Ok(()) => Ok(()),
            // Another build unpacked the same layer meanwhile: same diff ID, same content.
            Err(_) if dest.is_dir() => Ok(()),
            Err(e) => Err(BuildError::io(dest, e)),
        }
    }
}

/// Removes what `root` holds besides the current boot's folder (and `synced/`): folders of earlier boots,
/// whose unsynced files may have been cut short, and layers kiln kept directly in `root` before. Each is
/// first renamed to a `.stale-` name, so a removal cut short never leaves a half folder under a name that
/// is looked up; a folder still in use by a build of the same boot is never touched.
fn remove_stale(root: &Path, boot_id: Option<&str>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if Some(name.as_ref()) == boot_id || name == SYNCED || name.starts_with(".unpack-") {
            continue;
        }
        let path = entry.path();
        let doomed = if name.starts_with(".stale-") {
            path
        } else {
            let doomed = root.join(format!(".stale-{name}"));
            if std::fs::rename(&path, &doomed).is_err() {
                continue;
            }
            doomed
        };
        // Best effort: what is left is tried again by the next build.
        let _ = std::fs::remove_dir_all(&doomed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_give_back_their_diff_id() {
        let d = kiln_oci::Algorithm::Sha256.digest(b"layer");
        assert_eq!(diff_id_of(&folder_name(&d)), Some(d));
        for other in [".unpack-x1", ".stale-sha256-00", "sha256-xyz", "md5-00", "synced"] {
            assert_eq!(diff_id_of(other), None, "{other}");
        }
    }
}
