//! Progress reports: the library calls a [`Progress`]; the binary draws bars or prints lines.

use kiln_oci::Digest;

/// What happened to a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The destination already had it (HEAD answered 200, or the store had it).
    Exists,
    /// Mounted from another repository of the same registry (no bytes moved).
    Mounted,
    /// Uploaded.
    Pushed,
    /// Downloaded and verified.
    Pulled,
}

impl BlobOutcome {
    /// A word for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobOutcome::Exists => "exists",
            BlobOutcome::Mounted => "mounted",
            BlobOutcome::Pushed => "pushed",
            BlobOutcome::Pulled => "pulled",
        }
    }
}

/// Receives progress of blob transfers. Calls may come from several tasks at once.
pub trait Progress: Send + Sync {
    /// A transfer of `size` bytes starts (`verb`: `push` or `pull`).
    fn start(&self, digest: &Digest, size: u64, verb: &str);
    /// `position` bytes are through (it may go back when a transfer resumes).
    fn position(&self, digest: &Digest, position: u64);
    /// A transfer ended.
    fn finish(&self, digest: &Digest, outcome: BlobOutcome);
    /// A transient failure that will be retried.
    fn retry(&self, what: &str, error: &str);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &Digest, _: u64, _: &str) {}
    fn position(&self, _: &Digest, _: u64) {}
    fn finish(&self, _: &Digest, _: BlobOutcome) {}
    fn retry(&self, _: &str, _: &str) {}
}
