//! Image manifest, index and config types that kiln writes, and the error type of the image store,
//! import and export.
//!
//! These are small serde structs rather than `oci-spec`'s types: kiln keeps every imported manifest and
//! config byte-exact (their digests are their identity) and only serializes what it generates itself
//! (manifests of imported docker-archives, configs of root filesystems, `index.json`). For those, field
//! order and omitted fields must never change between versions of a dependency, or image digests would
//! change; `oci-spec` 0.10 also brings derive_builder, getset and strum for no gain here. Reading stays
//! lenient: unknown fields are ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::manifest::{Descriptor, ManifestError};
use crate::store::StoreError;

/// Annotation naming a manifest in an OCI layout's `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd (and kiln's exports) use for the full image name in an OCI layout.
pub const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// Largest JSON document (manifest, config, index) read from an archive or a store.
pub const MAX_JSON_SIZE: u64 = 16 * 1024 * 1024;

/// An image manifest (OCI, or Docker schema 2 which has the same shape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (also the shape of an OCI layout's `index.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Child manifests.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The part of an image config kiln needs to read: the layers' diff IDs.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConfigRootfs {
    /// `rootfs`.
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RootFs {
    /// Digests of the uncompressed layers, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// The `oci-layout` file's content.
pub const OCI_LAYOUT_FILE: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// Errors of the image store, import and export. Messages name the file, entry, image or digest involved.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A filesystem operation failed (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A manifest could not be read.
    #[error("manifest {digest}: {source}")]
    Manifest {
        /// The manifest's digest.
        digest: Digest,
        /// Why.
        source: ManifestError,
    },
    /// A JSON document is malformed.
    #[error("{what} is not valid: {reason}")]
    Json {
        /// The document (a path, an archive entry, a digest).
        what: String,
        /// The parser's words.
        reason: String,
    },
    /// No image of that name in the store.
    #[error("no image named `{name}` in the store {store}")]
    NotFound {
        /// The name.
        name: String,
        /// The store's root.
        store: PathBuf,
    },
    /// An image references a blob that is not there.
    #[error("blob {digest} referenced by {referenced_by} is missing")]
    MissingBlob {
        /// The missing blob.
        digest: Digest,
        /// Who references it.
        referenced_by: String,
    },
    /// A blob does not have the size its descriptor says.
    #[error("blob {digest} has {actual} bytes, its descriptor says {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// The stored size.
        actual: u64,
    },
    /// An image name kiln does not accept.
    #[error("invalid image name `{name}`: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An archive or layout is malformed or hostile.
    #[error("{path}: {reason}")]
    Archive {
        /// The archive or layout.
        path: PathBuf,
        /// What is wrong (naming the entry).
        reason: String,
    },
    /// A layer's uncompressed content does not match the diff ID its config records.
    #[error("{what}: layer {index} has diff id {actual}, the image config says {expected}")]
    DiffIdMismatch {
        /// The archive or image.
        what: String,
        /// The layer's position, base first.
        index: usize,
        /// The config's diff ID.
        expected: Digest,
        /// The content's.
        actual: Digest,
    },
    /// The image needs a name (`-t`).
    #[error("{path}: {reason}; give it a name")]
    NeedsName {
        /// The imported path.
        path: PathBuf,
        /// Why no name is known.
        reason: String,
    },
}

impl ImageError {
    pub(crate) fn archive(path: impl Into<PathBuf>, reason: impl Into<String>) -> ImageError {
        ImageError::Archive {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Parses JSON, naming `what` in the error.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Json {
        what: what(),
        reason: e.to_string(),
    })
}

/// Serializes kiln's own documents: compact, fields in declaration order, keys of maps sorted.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail (string keys, no non-finite floats).
    serde_json::to_vec(value).unwrap_or_default()
}

/// Validates an image name and adds `:latest` when it has neither tag nor digest.
pub fn normalize_name(name: &str) -> Result<String, ImageError> {
    let invalid = |reason| ImageError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > 255 {
        return Err(invalid("must have 1 to 255 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':' | b'@' | b'+'))
    {
        return Err(invalid("only letters, digits and . _ - / : @ + are allowed"));
    }
    if name.starts_with(['/', '.', '-', ':', '@']) || name.ends_with(['/', ':', '@']) || name.contains("//") {
        return Err(invalid("a component is empty or starts with a separator"));
    }
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        Ok(name.to_owned())
    } else {
        Ok(format!("{name}:latest"))
    }
}

/// The repository and tag of a normalized name (`None` for the tag of a digest reference).
pub fn split_name(name: &str) -> (&str, Option<&str>) {
    if let Some((repo, _digest)) = name.split_once('@') {
        return (
            repo.rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map_or(repo, |(r, _)| r),
            None,
        );
    }
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (name, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_latest_and_bad_names_are_refused() {
        assert_eq!(normalize_name("busybox").unwrap(), "busybox:latest");
        assert_eq!(
            normalize_name("localhost:5000/a/b").unwrap(),
            "localhost:5000/a/b:latest"
        );
        assert_eq!(normalize_name("localhost/x:1").unwrap(), "localhost/x:1");
        assert!(normalize_name("../x").is_err());
        assert!(normalize_name("a b").is_err());
        assert!(normalize_name("").is_err());
        assert_eq!(split_name("localhost:5000/a:1"), ("localhost:5000/a", Some("1")));
        assert_eq!(split_name("a@sha256:00"), ("a", None));
    }
}
