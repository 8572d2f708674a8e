//! An OCI image layout of random-content layers (uncompressed tars), for `skopeo copy`.

use std::path::Path;

use anyhow::{Context as _, Result};
use kiln_oci::{Algorithm, Digest};
use serde_json::json;

use crate::random::Rng;

fn put_blob(dir: &Path, bytes: &[u8]) -> Result<Digest> {
    let digest = Algorithm::Sha256.digest(bytes);
    fs_err::write(dir.join("blobs/sha256").join(digest.hex()), bytes)?;
    Ok(digest)
}

/// Writes an image of `layers` layers holding `total` random bytes in all to the OCI layout `dir`, under
/// the name `tag`. Returns the manifest digest.
pub fn write(dir: &Path, total: u64, layers: usize, tag: &str, seed: u64) -> Result<Digest> {
    fs_err::create_dir_all(dir.join("blobs/sha256"))?;
    fs_err::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let layers = layers.max(1);
    let mut rng = Rng::new(seed);
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..layers {
        let len = total / layers as u64 + u64::from(i == 0) * (total % layers as u64);
        let content = rng.bytes(usize::try_from(len).context("layer too large")?);
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(len);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, format!("data/layer{i}.bin"), content.as_slice())?;
        let tar = builder.into_inner()?;
        let digest = put_blob(dir, &tar)?;
        diff_ids.push(digest.to_string());
        descriptors.push(json!({
            "mediaType": kiln_oci::media_types::OCI_LAYER_TAR,
            "digest": digest.to_string(),
            "size": tar.len(),
        }));
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let config_digest = put_blob(dir, &config)?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": kiln_oci::media_types::OCI_MANIFEST,
        "config": {
            "mediaType": kiln_oci::media_types::OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": descriptors,
    }))?;
    let manifest_digest = put_blob(dir, &manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": kiln_oci::media_types::OCI_MANIFEST,
            "digest": manifest_digest.to_string(),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs_err::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(manifest_digest)
}
