//! Unpacked layers: each layer of a stage is unpacked once, by diff ID, into `kiln-build/layers/` in
//! overlayfs lower-directory form, and stacked read-only under every step that needs a root filesystem.
//! A layer the builder made itself is not unpacked again: the overlay upper directory it was captured from
//! already has that form and is moved into place.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use kiln_oci::compress::{HashingReader, decompress};
use kiln_oci::{BlobStore, Digest};

use crate::cache::LayerRecord;
use crate::error::BuildError;

/// The folder of unpacked layers.
#[derive(Debug, Clone)]
pub struct LayerDirs {
    dir: PathBuf,
}

impl LayerDirs {
    /// Layers under `dir` (created when needed).
    pub fn new(dir: PathBuf) -> LayerDirs {
        LayerDirs { dir }
    }

    fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}", diff_id.algorithm(), diff_id.hex()))
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
        kiln_rootfs::unpack::unpack_layer(
            &mut hashing,
            &target,
            &kiln_rootfs::unpack::UnpackLimits::default(),
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
