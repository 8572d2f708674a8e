//! What the index stores for a built image.

use serde::Serialize;

use crate::error::IndexError;
use crate::routes::Scope;

/// A built image as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRecord {
    /// The image name.
    pub name: String,
    /// The cache type (`docker-images.v2`, `kiln-images.v1`).
    pub cache_type: String,
    /// The cache digest the image was built for.
    pub cache_digest: String,
    /// The context hash it was built from.
    pub context_hash: String,
    /// The image (manifest) digest, `sha256:<hex>`.
    pub image_digest: String,
    /// The digest of the `image.tar.zst` artifact, if one was made.
    pub artifact_digest: Option<String>,
    /// The trust scope it was built in.
    pub scope: Scope,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Expiry time, seconds since the epoch.
    pub expires: i64,
}

/// Checks `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`, as `kiln_oci::Digest` parses
/// them (the one digest check of kiln).
pub fn check_digest(field: &'static str, value: &str) -> Result<(), IndexError> {
    value
        .parse::<kiln_oci::Digest>()
        .map(drop)
        .map_err(|e| IndexError::InvalidRecord(format!("{field}: {e}")))
}

impl ImageRecord {
    /// Checks the record before it is written.
    pub fn validate(&self) -> Result<(), IndexError> {
        if self.name.is_empty() || self.cache_type.is_empty() || self.cache_digest.is_empty() {
            return Err(IndexError::InvalidRecord(
                "name, cache type and cache digest are required".into(),
            ));
        }
        check_digest("image digest", &self.image_digest)?;
        if let Some(artifact) = &self.artifact_digest {
            check_digest("artifact digest", artifact)?;
        }
        if self.expires <= self.created {
            return Err(IndexError::InvalidRecord(format!(
                "expires ({}) must be after created ({})",
                self.expires, self.created
            )));
        }
        Ok(())
    }

    /// Checks the record and that every route is in the record's own trust scope: an image built at level
    /// 1 can never appear under a level-3 route.
    pub fn check_routes(&self, routes: &[String]) -> Result<(), IndexError> {
        self.validate()?;
        for route in routes {
            let route_scope = Scope::of_route(route);
            if route_scope != Some(self.scope) {
                return Err(IndexError::TrustViolation {
                    route: route.clone(),
                    route_scope,
                    record_scope: self.scope,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_checked_as_the_store_parses_them() {
        let hex = "a".repeat(64);
        assert!(check_digest("image digest", &format!("sha256:{hex}")).is_ok());
        assert!(check_digest("image digest", &format!("sha512:{}", "b".repeat(128))).is_ok());
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("md5:{hex}"),
            "sha256:short".to_owned(),
            hex.clone(),
        ] {
            let err = check_digest("artifact digest", &bad).err().map(|e| e.to_string());
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("artifact digest") && e.contains(&bad)),
                "{bad}: {err:?}"
            );
        }
    }
}
