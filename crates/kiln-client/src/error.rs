//! The client's error type: every message names the reference, URL, digest or file at fault.

use std::path::PathBuf;

use kiln_oci::{Digest, ImageError, StoreError};

/// Errors of the registry client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A reference that does not parse.
    #[error("invalid image reference `{input}`: {reason}")]
    InvalidReference {
        /// The input.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// The request could not be sent or its answer not read (after retries). The message carries the
    /// transport's causes (connection refused, a TLS error, a timeout), not only reqwest's summary.
    #[error("{method} {url}: {}", causes(.source))]
    Http {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// The transport error (without its URL: the message names it); see [`ClientError::http`].
        #[source]
        source: reqwest::Error,
    },
    /// Nothing moved for the read timeout while the request was sent or its answer awaited (after
    /// retries): the registry took no byte of the body, or sent no answer.
    #[error("{method} {url}: nothing moved for {} s, the registry stalled (read timeout)", .timeout.as_secs_f64())]
    Stalled {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// The read timeout.
        timeout: std::time::Duration,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: registry answered {status}{}", detail(.code, .message))]
    Status {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The first error code of the body (`MANIFEST_UNKNOWN`, …), if any.
        code: Option<String>,
        /// The first error message of the body, or the start of the body.
        message: String,
    },
    /// Credentials were refused or no token could be obtained.
    #[error("authentication to {registry} failed: {reason}")]
    Auth {
        /// The registry.
        registry: String,
        /// Why.
        reason: String,
    },
    /// A configuration or credentials file, certificate folder or credential helper could not be used.
    #[error("{path}: {reason}")]
    Config {
        /// The file, folder or helper.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A downloaded blob does not match its digest or size; nothing of it was kept.
    #[error("blob {digest} from {url} is corrupt, nothing of it was kept: {reason}")]
    CorruptBlob {
        /// The expected digest.
        digest: Digest,
        /// Where it came from.
        url: String,
        /// The mismatch.
        reason: String,
    },
    /// A manifest's bytes do not hash to the digest asked for or announced.
    #[error("manifest {reference} has digest {actual}, expected {expected}")]
    ManifestDigest {
        /// What was fetched.
        reference: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A manifest that kiln cannot read.
    #[error("manifest {reference}: {reason}")]
    Manifest {
        /// What was fetched.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// An index has no manifest for the requested platform.
    #[error("{reference} has no image for platform {platform} (it has: {available})")]
    NoPlatform {
        /// The index.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },
    /// The registry cannot delete a tag without deleting the manifest (distribution 2.x).
    #[error(
        "{registry} cannot delete tag `{tag}` of {repository} without deleting the manifest it points to \
         (answered {status}); the tag was kept and the manifest not touched"
    )]
    TagDeleteUnsupported {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag.
        tag: String,
        /// What it answered.
        status: u16,
    },
    /// An upload could not be completed after resuming.
    #[error("upload of blob {digest} to {url} failed: {reason}")]
    Upload {
        /// The blob.
        digest: Digest,
        /// The upload session.
        url: String,
        /// Why.
        reason: String,
    },
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local file operation failed (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn detail(code: &Option<String>, message: &str) -> String {
    match (code, message.is_empty()) {
        (Some(c), false) => format!(" {c}: {message}"),
        (Some(c), true) => format!(" {c}"),
        (None, false) => format!(": {message}"),
        (None, true) => String::new(),
    }
}

/// An error and its causes, `: `-separated, each said once: reqwest, hyper and the OS each wrap the one
/// below, and a summary such as `error sending request` alone hides whether the connection was refused,
/// the certificate rejected or the time up.
pub(crate) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

impl ClientError {
    /// A transport error of `method url`.
    pub fn http(method: &str, url: &str, source: reqwest::Error) -> ClientError {
        ClientError::Http {
            method: method.to_owned(),
            url: url.to_owned(),
            source: source.without_url(),
        }
    }

    /// What went wrong in the transport, without the method and URL: the causes of a
    /// [`ClientError::Http`], the stall of a [`ClientError::Stalled`] (for retry lines).
    pub(crate) fn transport_cause(&self) -> String {
        match self {
            ClientError::Http { source, .. } => causes(source),
            ClientError::Stalled { timeout, .. } => {
                format!("nothing moved for {} s", timeout.as_secs_f64())
            }
            other => other.to_string(),
        }
    }

    /// The HTTP status of a [`ClientError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}
