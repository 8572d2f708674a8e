//! What a pushed manifest references, read leniently from its JSON.
//!
//! A registry stores manifests byte-exact and only needs to know their kind, the blobs and child manifests
//! they reference (with declared sizes), their subject and their artifact type. Unknown fields are ignored.

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::media_types as mt;

/// A content descriptor as found in manifests and indexes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Where non-distributable content can be fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// The artifact type of a referenced artifact manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// The kind of a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An image (or artifact) manifest: a config and layers.
    Image,
    /// An index or manifest list: child manifests.
    Index,
}

/// What a manifest refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRefs {
    /// Image or index.
    pub kind: ManifestKind,
    /// The media type: the Content-Type it was pushed with, or its `mediaType` field.
    pub media_type: String,
    /// `artifactType`, or for an image manifest without it the config's media type (as the referrers API
    /// reports it).
    pub artifact_type: Option<String>,
    /// Blobs that must exist (config and distributable layers).
    pub blobs: Vec<Descriptor>,
    /// Non-distributable layers, not expected in the registry.
    pub foreign_layers: Vec<Descriptor>,
    /// Child manifests of an index.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    pub subject: Option<Descriptor>,
    /// Top-level annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// Why a manifest is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or a field of the wrong type.
    #[error("manifest is not valid JSON: {reason}")]
    Json {
        /// The parser's words.
        reason: String,
    },
    /// A media type kiln does not accept as a manifest.
    #[error("unsupported manifest media type `{media_type}`")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
    },
    /// The Content-Type and the `mediaType` field disagree.
    #[error("manifest content type `{content_type}` differs from its mediaType field `{field}`")]
    MediaTypeMismatch {
        /// The Content-Type header.
        content_type: String,
        /// The body's `mediaType`.
        field: String,
    },
    /// A required field is missing or has the wrong value.
    #[error("manifest of type `{media_type}` is invalid: {reason}")]
    Invalid {
        /// The media type.
        media_type: String,
        /// What is wrong.
        reason: String,
    },
}

fn kind_of(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        mt::OCI_MANIFEST | mt::DOCKER_MANIFEST => Some(ManifestKind::Image),
        mt::OCI_INDEX | mt::DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// Reads what `bytes` references. `content_type` is the Content-Type the manifest was pushed with (`None`
/// or a generic JSON type: decided by the body's `mediaType`, or its shape).
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<ManifestRefs, ManifestError> {
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Json {
        reason: e.to_string(),
    })?;
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim())
        .filter(|c| !c.is_empty() && *c != "application/json");
    let media_type = match (header, raw.media_type.as_deref()) {
        (Some(h), Some(f)) if h != f => {
            return Err(ManifestError::MediaTypeMismatch {
                content_type: h.to_owned(),
                field: f.to_owned(),
            });
        }
        (Some(h), _) => h.to_owned(),
        (None, Some(f)) => f.to_owned(),
        // OCI allows an absent mediaType: decide by shape.
        (None, None) if raw.manifests.is_some() => mt::OCI_INDEX.to_owned(),
        (None, None) => mt::OCI_MANIFEST.to_owned(),
    };
    let Some(kind) = kind_of(&media_type) else {
        return Err(ManifestError::UnsupportedMediaType { media_type });
    };
    let invalid = |reason: &str| ManifestError::Invalid {
        media_type: media_type.clone(),
        reason: reason.to_owned(),
    };
    if raw.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    let mut refs = ManifestRefs {
        kind,
        media_type: media_type.clone(),
        artifact_type: raw.artifact_type,
        blobs: Vec::new(),
        foreign_layers: Vec::new(),
        manifests: Vec::new(),
        subject: raw.subject,
        annotations: raw.annotations,
    };
    match kind {
        ManifestKind::Image => {
            let Some(config) = raw.config else {
                return Err(invalid("an image manifest needs a config"));
            };
            let Some(layers) = raw.layers else {
                return Err(invalid("an image manifest needs a layers array"));
            };
            if raw.manifests.is_some() {
                return Err(invalid("an image manifest has no manifests array"));
            }
            if refs.artifact_type.is_none() {
                refs.artifact_type = config.media_type.clone();
            }
            refs.blobs.push(config);
            for layer in layers {
                let foreign = layer.media_type.as_deref().is_some_and(mt::is_foreign_layer)
                    || layer.urls.as_ref().is_some_and(|u| !u.is_empty());
                if foreign {
                    refs.foreign_layers.push(layer);
                } else {
                    refs.blobs.push(layer);
                }
            }
        }
        ManifestKind::Index => {
            let Some(manifests) = raw.manifests else {
                return Err(invalid("an index needs a manifests array"));
            };
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(invalid("an index has no config or layers"));
            }
            refs.manifests = manifests;
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Algorithm;

    fn d(s: &[u8]) -> String {
        Algorithm::Sha256.digest(s).to_string()
    }

    #[test]
    fn image_manifest_lists_config_and_layers_and_skips_foreign_layers() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},
            "layers":[{{"mediaType":"{}","digest":"{}","size":3}},
                      {{"mediaType":"{}","digest":"{}","size":9,"urls":["https://x.invalid/l"]}}],
            "subject":{{"mediaType":"{}","digest":"{}","size":7}}}}"#,
            mt::OCI_MANIFEST,
            mt::OCI_CONFIG,
            d(b"{}"),
            mt::OCI_LAYER_GZIP,
            d(b"abc"),
            mt::DOCKER_FOREIGN_LAYER,
            d(b"foreign"),
            mt::OCI_MANIFEST,
            d(b"subject")
        );
        let refs = parse_manifest(body.as_bytes(), Some(mt::OCI_MANIFEST)).unwrap();
        assert_eq!(refs.kind, ManifestKind::Image);
        assert_eq!(refs.blobs.len(), 2);
        assert_eq!(refs.foreign_layers.len(), 1);
        assert_eq!(refs.artifact_type.as_deref(), Some(mt::OCI_CONFIG));
        assert_eq!(refs.subject.unwrap().size, 7);
    }

    #[test]
    fn index_without_media_type_is_recognised_by_shape() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":5}}]}}"#,
            d(b"m")
        );
        let refs = parse_manifest(body.as_bytes(), None).unwrap();
        assert_eq!(refs.kind, ManifestKind::Index);
        assert_eq!(refs.media_type, mt::OCI_INDEX);
        assert_eq!(refs.manifests.len(), 1);
    }

    #[test]
    fn rejects_bad_manifests() {
        let cases: &[(&str, Option<&str>)] = &[
            ("not json", None),
            (r#"{"schemaVersion":1}"#, Some(mt::DOCKER_SCHEMA1)),
            (r#"{"schemaVersion":2,"layers":[]}"#, Some(mt::OCI_MANIFEST)),
            (
                r#"{"schemaVersion":2,"mediaType":"a/b","manifests":[]}"#,
                Some(mt::OCI_INDEX),
            ),
            (
                r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:zz","size":1}]}"#,
                None,
            ),
            (
                r#"{"schemaVersion":2,"manifests":[{"digest":"sha256:zz","size":-1}]}"#,
                None,
            ),
            (r#"{"schemaVersion":3,"manifests":[]}"#, None),
            (r#"[]"#, None),
        ];
        for (body, ct) in cases {
            assert!(
                parse_manifest(body.as_bytes(), *ct).is_err(),
                "{body} should be rejected"
            );
        }
    }
}
