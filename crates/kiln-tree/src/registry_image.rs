//! Registry images: an image folder with `VERSION`/`HASH`, and `REGISTRY` in the folder or the images root.

use std::io::ErrorKind;
use std::path::Path;

use crate::error::TreeError;
use crate::model::ImageKind;

fn read_stripped(path: &Path) -> Result<Option<String>, TreeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TreeError::io(path, e)),
    }
}

/// Decides the kind of the image in `dir` (relative to `root`), with `images_root` holding the fallback
/// `REGISTRY`.
pub fn image_kind(root: &Path, dir: &Path, images_root: &Path) -> Result<ImageKind, TreeError> {
    let abs = root.join(dir);
    let registry = match read_stripped(&abs.join("REGISTRY"))? {
        Some(r) => Some(r),
        None => read_stripped(&root.join(images_root).join("REGISTRY"))?,
    };
    let version = read_stripped(&abs.join("VERSION"))?;
    let hash = read_stripped(&abs.join("HASH"))?;
    Ok(match registry {
        Some(registry) if version.is_some() || hash.is_some() => ImageKind::Registry {
            registry,
            version,
            hash,
        },
        _ => ImageKind::InTree,
    })
}
