//! Where a plan's images and artifacts are named: `kiln/<image>:<cache-digest>` in the store,
//! `<artifacts>/<image>/image.tar.zst` on disk (taskgraph's artifact name).

use std::path::{Path, PathBuf};

/// The file name of an image artifact (taskgraph's `public/image.tar.zst`).
pub const ARTIFACT_FILE: &str = "image.tar.zst";

/// The store name of the in-tree image `image` with cache digest `digest`.
pub fn store_name(image: &str, digest: &str) -> String {
    format!("kiln/{image}:{digest}")
}

/// The artifact of `image` under the artifacts folder `dir`.
pub fn artifact_path(dir: &Path, image: &str) -> PathBuf {
    dir.join(image).join(ARTIFACT_FILE)
}
