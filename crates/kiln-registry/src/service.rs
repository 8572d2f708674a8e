//! Registry logic between the HTTP routes and the storage: manifest validation, pagination, referrers.
//! Storage calls run on tokio's blocking pool.

use std::sync::Arc;

use axum::http::StatusCode;
use kiln_oci::manifest::{Descriptor, ManifestKind, parse_manifest};
use kiln_oci::{Algorithm, Digest, media_types};

use crate::error::{ErrorCode, RegistryError};
use crate::names::{RepoName, Tag};
use crate::storage::{References, Storage, StorageError, StoredManifest};

/// Runs a storage call on the blocking pool.
pub(crate) async fn blocking<T, F>(storage: &Arc<dyn Storage>, f: F) -> Result<T, RegistryError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Storage) -> Result<T, StorageError> + Send + 'static,
{
    let storage = Arc::clone(storage);
    tokio::task::spawn_blocking(move || f(storage.as_ref()))
        .await
        .map_err(|e| RegistryError::internal(format!("storage task failed: {e}")))?
        .map_err(storage_error)
}

/// Ends an upload session that failed, discarding its data; a failure to do so is logged (GC removes the
/// session later).
pub(crate) async fn discard_upload(storage: &Arc<dyn Storage>, repo: &RepoName, id: &str) {
    let (r, i) = (repo.clone(), id.to_owned());
    if let Err(e) = blocking(storage, move |s| s.cancel_upload(&r, &i)).await {
        tracing::warn!(repository = %repo, upload = id, error = %e.message, "cannot discard a failed upload");
    }
}

/// Maps a storage failure to its answer.
pub(crate) fn storage_error(e: StorageError) -> RegistryError {
    match e {
        StorageError::DigestMismatch { .. } => {
            RegistryError::new(StatusCode::BAD_REQUEST, ErrorCode::DigestInvalid, e.to_string())
        }
        StorageError::UploadUnknown { .. } => {
            RegistryError::new(StatusCode::NOT_FOUND, ErrorCode::BlobUploadUnknown, e.to_string())
        }
        StorageError::UploadBusy { .. } => {
            RegistryError::new(StatusCode::CONFLICT, ErrorCode::BlobUploadInvalid, e.to_string())
        }
        StorageError::TooManyUploads { .. } => RegistryError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            e.to_string(),
        ),
        StorageError::ReferenceUnknown { ref digest, .. } => {
            let detail = serde_json::json!({ "digest": digest.to_string() });
            RegistryError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::ManifestBlobUnknown,
                e.to_string(),
            )
            .with_detail(detail)
        }
        other => RegistryError::internal(other.to_string()),
    }
}

/// The content type to store for a manifest: the pushed Content-Type if it names a manifest type, else
/// the type read from the body.
fn stored_media_type(content_type: Option<&str>, parsed: &str) -> String {
    match content_type {
        Some(ct) if ct.split(';').next().map(str::trim) == Some(parsed) => ct.to_owned(),
        _ => parsed.to_owned(),
    }
}

/// Validates and stores a pushed manifest; returns its digest and subject.
pub(crate) async fn put_manifest(
    storage: &Arc<dyn Storage>,
    repo: &RepoName,
    reference_digest: Option<&Digest>,
    tags: Vec<Tag>,
    content_type: Option<&str>,
    bytes: Vec<u8>,
) -> Result<(Digest, Option<Digest>), RegistryError> {
    let refs = parse_manifest(&bytes, content_type).map_err(|e| {
        RegistryError::new(StatusCode::BAD_REQUEST, ErrorCode::ManifestInvalid, e.to_string())
    })?;
    let algorithm = reference_digest.map_or(Algorithm::Sha256, Digest::algorithm);
    let digest = algorithm.digest(&bytes);
    if let Some(expected) = reference_digest
        && *expected != digest
    {
        return Err(RegistryError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::DigestInvalid,
            format!("manifest has digest {digest}, the reference says {expected}"),
        ));
    }
    let wanted: Vec<(Descriptor, bool)> = match refs.kind {
        ManifestKind::Image => refs.blobs.iter().map(|d| (d.clone(), false)).collect(),
        ManifestKind::Index => refs.manifests.iter().map(|d| (d.clone(), true)).collect(),
    };
    let check_repo = repo.clone();
    let found = blocking(storage, move |s| {
        wanted
            .into_iter()
            .map(|(d, is_manifest)| {
                let size = if is_manifest {
                    s.manifest_size(&check_repo, &d.digest)?
                } else {
                    s.blob_size(&check_repo, &d.digest)?
                };
                Ok((d, size))
            })
            .collect::<Result<Vec<_>, StorageError>>()
    })
    .await?;
    for (descriptor, size) in found {
        match size {
            None => {
                return Err(RegistryError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::ManifestBlobUnknown,
                    format!("{} is not in repository {repo}", descriptor.digest),
                )
                .with_detail(serde_json::json!({ "digest": descriptor.digest.to_string() })));
            }
            Some(size) if size != descriptor.size => {
                return Err(RegistryError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::SizeInvalid,
                    format!(
                        "{} is declared with size {} but has {size} bytes",
                        descriptor.digest, descriptor.size
                    ),
                )
                .with_detail(serde_json::json!({ "digest": descriptor.digest.to_string() })));
            }
            Some(_) => {}
        }
    }
    let manifest = StoredManifest {
        digest: digest.clone(),
        media_type: stored_media_type(content_type, &refs.media_type),
        bytes,
    };
    let subject = refs.subject.map(|s| s.digest);
    let (repo, subject_for_store) = (repo.clone(), subject.clone());
    blocking(storage, move |s| {
        s.put_manifest(
            &repo,
            &manifest,
            &tags,
            subject_for_store.as_ref(),
            References::Linked,
        )
    })
    .await?;
    Ok((digest, subject))
}

/// A page of a sorted list: the items after `last`, at most `n`, and whether more follow.
pub(crate) fn paginate(items: Vec<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    let mut rest: Vec<String> = match last {
        Some(last) => items.into_iter().filter(|i| i.as_str() > last).collect(),
        None => items,
    };
    match n {
        Some(n) if rest.len() > n => {
            rest.truncate(n);
            (rest, true)
        }
        _ => (rest, false),
    }
}

/// The referrers index of `subject` in `repo`, filtered by artifact type; returns the index bytes and
/// whether a filter was applied.
pub(crate) async fn referrers(
    storage: &Arc<dyn Storage>,
    repo: &RepoName,
    subject: &Digest,
    artifact_type: Option<String>,
) -> Result<(Vec<u8>, bool), RegistryError> {
    let (repo, subject) = (repo.clone(), subject.clone());
    let manifests = blocking(storage, move |s| s.referrers(&repo, &subject)).await?;
    let mut entries = Vec::new();
    for m in manifests {
        let Ok(refs) = parse_manifest(&m.bytes, Some(&m.media_type)) else {
            continue;
        };
        if let Some(filter) = &artifact_type
            && refs.artifact_type.as_deref() != Some(filter.as_str())
        {
            continue;
        }
        entries.push(Descriptor {
            media_type: Some(refs.media_type),
            digest: m.digest,
            size: m.bytes.len() as u64,
            urls: None,
            artifact_type: refs.artifact_type,
            annotations: refs.annotations,
        });
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_INDEX,
        "manifests": entries,
    });
    let bytes = serde_json::to_vec(&index).map_err(|e| RegistryError::internal(e.to_string()))?;
    Ok((bytes, artifact_type.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn pagination() {
        let all = v(&["a", "b", "c", "d"]);
        assert_eq!(paginate(all.clone(), Some(2), None), (v(&["a", "b"]), true));
        assert_eq!(paginate(all.clone(), Some(2), Some("b")), (v(&["c", "d"]), false));
        assert_eq!(paginate(all.clone(), None, Some("bb")), (v(&["c", "d"]), false));
        assert_eq!(paginate(all.clone(), Some(0), None), (v(&[]), true));
        assert_eq!(paginate(all, Some(10), Some("z")), (v(&[]), false));
    }

    #[test]
    fn stored_media_type_keeps_the_pushed_header() {
        let oci = media_types::OCI_MANIFEST;
        assert_eq!(stored_media_type(Some(oci), oci), oci);
        assert_eq!(stored_media_type(Some("application/json"), oci), oci);
        assert_eq!(stored_media_type(None, oci), oci);
    }
}
