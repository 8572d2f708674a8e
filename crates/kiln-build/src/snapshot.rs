//! A writable root filesystem for one step: an overlay of the stage's unpacked layers with a fresh upper
//! folder, and the capture of that upper folder as the step's layer.

use std::path::{Path, PathBuf};

use kiln_oci::BlobStore;
use kiln_oci::compress::{Compression, LayerWriter};
use kiln_rootfs::overlay::OverlayMount;

use crate::cache::LayerRecord;
use crate::error::BuildError;
use crate::layers::LayerDirs;

/// A mounted overlay for one step.
pub struct Snapshot {
    tmp: tempfile::TempDir,
    upper: PathBuf,
    merged: PathBuf,
    lowers: Vec<PathBuf>,
    mount: Option<OverlayMount>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("merged", &self.merged).finish()
    }
}

impl Snapshot {
    /// Mounts `lowers` (top-most first) with an empty upper folder under a new folder in `tmp_root`.
    pub fn mount(tmp_root: &Path, lowers: &[PathBuf]) -> Result<Snapshot, BuildError> {
        fs_err::create_dir_all(tmp_root).map_err(|e| BuildError::io(tmp_root, e))?;
        let tmp = tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(tmp_root)
            .map_err(|e| BuildError::io(tmp_root, e))?;
        let upper = tmp.path().join("upper");
        let work = tmp.path().join("work");
        let merged = tmp.path().join("merged");
        for dir in [&upper, &work, &merged] {
            fs_err::create_dir(dir).map_err(|e| BuildError::io(dir, e))?;
        }
        // The upper folder is either captured into a fsynced blob and then kept only as an unpacked
        // cache (see `LayerDirs`), or thrown away: no reason to sync the disk on unmount.
        let mount = OverlayMount::mount_volatile(lowers, &upper, &work, &merged)
            .map_err(|e| BuildError::io(&merged, format!("cannot mount the step's overlay: {e}")))?;
        Ok(Snapshot {
            tmp,
            upper,
            merged,
            lowers: lowers.to_vec(),
            mount: Some(mount),
        })
    }

    /// The merged root filesystem.
    pub fn merged(&self) -> &Path {
        &self.merged
    }

    fn unmount(&mut self) -> Result<(), BuildError> {
        if let Some(mount) = self.mount.take() {
            mount.unmount().map_err(|e| BuildError::io(&self.merged, e))?;
        }
        Ok(())
    }

    /// Unmounts and turns the upper folder into a stored layer (`None` when the step changed nothing),
    /// then moves the upper folder into `layer_dirs` as that layer's unpacked form.
    pub fn commit(
        mut self,
        blobs: &BlobStore,
        compression: Compression,
        source_date_epoch: i64,
        layer_dirs: &LayerDirs,
    ) -> Result<Option<LayerRecord>, BuildError> {
        self.unmount()?;
        crate::prune::prune_unchanged_dirs(&self.upper, &self.lowers)
            .map_err(|e| BuildError::io(&self.upper, e))?;
        let empty = fs_err::read_dir(&self.upper)
            .map_err(|e| BuildError::io(&self.upper, e))?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        let mut writer = LayerWriter::new(blobs, compression)?;
        let options = kiln_rootfs::capture::CaptureOptions {
            source_date_epoch: Some(source_date_epoch),
            // The upper folder becomes the layer's unpacked form (`LayerDirs::adopt`).
            set_times_on_disk: true,
        };
        kiln_rootfs::capture::capture_layer(&self.upper, &mut writer, &options)
            .map_err(|e| BuildError::io(&self.upper, format!("cannot capture the step's changes: {e}")))?;
        let stored = writer.finish()?;
        layer_dirs.adopt(&self.upper, &stored.diff_id)?;
        let _ = &self.tmp;
        Ok(Some(LayerRecord {
            blob: stored.descriptor,
            diff_id: stored.diff_id,
        }))
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // The mount must go before the temp folder is removed, or removal would reach into the layers.
        let _ = self.unmount();
    }
}
