//! The instruction cache: a key per step chained from its parent's key, and records of the layer each key
//! produced, kept in the store's folder (`kiln-build/cache/<key>.json`, written atomically).
//!
//! A key covers everything a step's result depends on: the base (its manifest digest), every earlier
//! step of the stage, the evaluated instruction (argv, environment, user, workdir, mounts, flags) and the
//! content of what it reads (context files, other stages). A record is only used if its layer blob is
//! still in the store.

use std::path::{Path, PathBuf};

use kiln_oci::manifest::Descriptor;
use kiln_oci::{BlobStore, Digest};
use sha2::{Digest as _, Sha256};

use crate::error::BuildError;

/// A step's cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepKey(pub [u8; 32]);

impl StepKey {
    /// The key a stage starts from: its base.
    pub fn base(base: &str) -> StepKey {
        StepKey(Sha256::digest(format!("kiln-step-v1\0base\0{base}")).into())
    }

    /// The key of the step described by `description` after `self`.
    pub fn then(&self, description: &[u8]) -> StepKey {
        let mut h = Sha256::new();
        h.update(b"kiln-step-v1\0step\0");
        h.update(self.0);
        h.update((description.len() as u64).to_le_bytes());
        h.update(description);
        StepKey(h.finalize().into())
    }

    /// Hex form.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// A layer a step produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerRecord {
    /// The compressed blob.
    pub blob: Descriptor,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedStep {
    /// The layer, or `None` when the step changed no file.
    pub layer: Option<LayerRecord>,
}

impl CachedStep {
    /// Whether the layer blob (if any) is in `blobs` with the size the record says.
    pub fn is_usable(&self, blobs: &BlobStore) -> bool {
        self.layer
            .as_ref()
            .is_none_or(|l| blobs.size(&l.blob.digest).ok().flatten() == Some(l.blob.size))
    }
}

/// The cache records on disk.
#[derive(Debug, Clone)]
pub struct StepCache {
    dir: PathBuf,
}

impl StepCache {
    /// The cache in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> StepCache {
        StepCache { dir }
    }

    fn path(&self, key: &StepKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The record for `key` if there is one whose layer is still stored: a record whose blob is gone
    /// (or has another size) is a miss, as is one that does not parse.
    pub fn get(&self, key: &StepKey, blobs: &BlobStore) -> Option<CachedStep> {
        let bytes = fs_err::read(self.path(key)).ok()?;
        let step: CachedStep = serde_json::from_slice(&bytes).ok()?;
        step.is_usable(blobs).then_some(step)
    }

    /// Records what `key` produced.
    pub fn put(&self, key: &StepKey, step: &CachedStep) -> Result<(), BuildError> {
        fs_err::create_dir_all(&self.dir).map_err(|e| BuildError::io(&self.dir, e))?;
        let bytes = serde_json::to_vec(step).map_err(|e| BuildError::io(&self.dir, e))?;
        write_atomic(&self.path(key), &bytes)
    }

    /// Every file of the cache folder with its record, `None` for a file that is not a readable record
    /// (a temp file left by an interrupted write, a damaged record). Empty when the folder is absent.
    pub fn records(&self) -> Result<Vec<(PathBuf, Option<CachedStep>)>, BuildError> {
        let read = match fs_err::read_dir(&self.dir) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BuildError::io(&self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in read {
            let path = entry.map_err(|e| BuildError::io(&self.dir, e))?.path();
            let step = path
                .extension()
                .is_some_and(|ext| ext == "json")
                .then(|| fs_err::read(&path).ok())
                .flatten()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            out.push((path, step));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// Writes `bytes` to `path` atomically (`kiln_oci::files::write_atomic`), owner-only as the rest of the
/// builder's state.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    kiln_oci::files::write_atomic(path, bytes, 0o600).map_err(|e| BuildError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_chain_and_differ() {
        let a = StepKey::base("scratch");
        assert_eq!(a.then(b"RUN x"), StepKey::base("scratch").then(b"RUN x"));
        assert_ne!(a.then(b"RUN x"), a.then(b"RUN y"));
        assert_ne!(a.then(b"RUN x").then(b"RUN y"), a.then(b"RUN y").then(b"RUN x"));
        assert_ne!(StepKey::base("a"), StepKey::base("b"));
    }
}
