//! Whole images: push from and pull into kiln's [`ImageStore`] (multi-arch indexes included), and the
//! tag operations of the CI workflows (tag, promote, untag) that move no blob.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use kiln_oci::manifest::{Descriptor, ManifestKind, parse_manifest};
use kiln_oci::{Digest, ImageStore};

use crate::client::Client;
use crate::error::ClientError;
use crate::progress::BlobOutcome;
use crate::reference::Reference;
use crate::transfer::Manifest;

/// An `os/arch[/variant]` platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, …
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `v7`, `v8`, …
    pub variant: Option<String>,
}

impl Platform {
    /// This host's platform.
    pub fn host() -> Platform {
        let (os, arch) = kiln_oci::host_platform();
        Platform {
            os: os.to_owned(),
            architecture: arch.to_owned(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(text: &str) -> Result<Platform, ClientError> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: parts.get(2).map(|v| (*v).to_owned()).filter(|v| !v.is_empty()),
            }),
            _ => Err(ClientError::Config {
                path: "--platform".into(),
                reason: format!("platform `{text}` is not os/arch[/variant]"),
            }),
        }
    }

    fn matches(&self, other: &Platform) -> bool {
        let variant = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v.map(str::to_owned),
        };
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || variant(self) == variant(other))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What to take from a multi-arch index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformChoice {
    /// The image for this platform (the index itself is not kept).
    One(Platform),
    /// The whole index with every image it lists.
    All,
}

/// The result of a push or pull.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transferred {
    /// The reference pushed to or pulled from.
    pub reference: String,
    /// The top manifest's digest (of the index with `--all`, else of the image manifest).
    pub digest: Digest,
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The manifest's size.
    pub size: u64,
    /// Bytes of blobs moved (not counting blobs that existed or were mounted).
    pub bytes: u64,
    /// Blobs by outcome.
    pub blobs: BTreeMap<String, usize>,
}

/// The platform of each child of an index (from the raw JSON: kiln-oci's descriptor does not keep it).
fn child_platforms(index: &[u8]) -> Vec<Option<Platform>> {
    let value: serde_json::Value = serde_json::from_slice(index).unwrap_or_default();
    let list = value["manifests"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|m| {
            let p = &m["platform"];
            Some(Platform {
                os: p["os"].as_str()?.to_owned(),
                architecture: p["architecture"].as_str()?.to_owned(),
                variant: p["variant"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

/// The child of `index` for `platform`.
fn pick(
    reference: &Reference,
    manifest: &Manifest,
    children: &[Descriptor],
    platform: &Platform,
) -> Result<Descriptor, ClientError> {
    let platforms = child_platforms(&manifest.bytes);
    children
        .iter()
        .zip(platforms.iter())
        .find(|(_, p)| p.as_ref().is_some_and(|p| platform.matches(p)))
        .map(|(d, _)| d.clone())
        .ok_or_else(|| ClientError::NoPlatform {
            reference: reference.to_string(),
            platform: platform.to_string(),
            available: platforms
                .iter()
                .map(|p| {
                    p.as_ref()
                        .map_or_else(|| "unknown".to_owned(), Platform::to_string)
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn manifest_error(reference: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Manifest {
        reference: reference.to_owned(),
        reason: e.to_string(),
    }
}

impl Client {
    /// Pushes the image `root` (a manifest or an index) of `store` to `target`: every blob it reaches (in
    /// parallel, up to the configured concurrency; mounted from `mount_from` when that repository of the
    /// same registry has them), then child manifests by digest, then the top manifest under the target's
    /// tag, all byte-exact with their media types.
    pub async fn push_image(
        &self,
        store: &ImageStore,
        root: &Descriptor,
        target: &Reference,
        mount_from: Option<&str>,
    ) -> Result<Transferred, ClientError> {
        // Manifests bottom-up (children before their index) and every blob, each once.
        let mut manifests: Vec<(Descriptor, Vec<u8>)> = Vec::new();
        let mut blobs: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        let mut stack = vec![(root.clone(), false)];
        while let Some((d, expanded)) = stack.pop() {
            let bytes = store.read_json_blob(&d)?;
            let refs = parse_manifest(&bytes, d.media_type.as_deref())
                .map_err(|e| manifest_error(&d.digest.to_string(), e))?;
            if refs.kind == ManifestKind::Index && !expanded {
                stack.push((d.clone(), true));
                for child in refs.manifests.iter().rev() {
                    stack.push((child.clone(), false));
                }
                continue;
            }
            for b in refs.blobs {
                blobs.entry(b.digest.clone()).or_insert(b);
            }
            if !manifests.iter().any(|(m, _)| m.digest == d.digest) {
                let mut d = d.clone();
                d.media_type = Some(refs.media_type);
                manifests.push((d, bytes));
            }
        }
        let outcomes = self
            .for_each_blob(blobs.values(), |b| async move {
                let path = store.blobs().blob_path(&b.digest);
                self.push_blob(target, b, &path, mount_from).await
            })
            .await?;
        let mut top = None;
        for (d, bytes) in &manifests {
            let media_type = d.media_type.clone().unwrap_or_default();
            let is_root = d.digest == root.digest;
            let reference = manifest_reference(target, &d.digest, is_root);
            let digest = self.put_manifest(&reference, bytes, &media_type).await?;
            if is_root {
                top = Some((digest, media_type, bytes.len() as u64));
            }
        }
        let (digest, media_type, size) =
            top.ok_or_else(|| manifest_error(&root.digest.to_string(), "not pushed"))?;
        Ok(summary(target, digest, media_type, size, &outcomes))
    }

    /// Pulls `source` into `store` and names it `name`: the manifest (verified), for an index the child
    /// for the chosen platform (or with [`PlatformChoice::All`] the index and every child), and every blob
    /// (in parallel, each streamed through the store's verifying writer). The name is written last, once
    /// everything is stored.
    pub async fn pull_image(
        &self,
        source: &Reference,
        store: &ImageStore,
        name: &str,
        platforms: &PlatformChoice,
    ) -> Result<Transferred, ClientError> {
        let _writing = store.lock_for_writing()?;
        let resolved = self.resolve(source, platforms).await?;
        let outcomes = self
            .for_each_blob(resolved.blobs.values(), |b| {
                self.pull_blob(source, b, store.blobs())
            })
            .await?;
        for m in &resolved.manifests {
            store
                .blobs()
                .put(m.digest.algorithm(), &m.bytes, Some(&m.digest))?;
        }
        store.set_ref(name, &resolved.root.descriptor())?;
        Ok(resolved.summary(source, &outcomes))
    }

    /// Runs `each` on every blob, as many at once as the configuration allows; returns each outcome with
    /// the blob's size.
    async fn for_each_blob<'a, F, Fut>(
        &self,
        blobs: impl Iterator<Item = &'a Descriptor>,
        each: F,
    ) -> Result<Vec<(BlobOutcome, u64)>, ClientError>
    where
        F: Fn(&'a Descriptor) -> Fut,
        Fut: std::future::Future<Output = Result<BlobOutcome, ClientError>>,
    {
        futures_util::stream::iter(blobs)
            .map(|b| {
                let transfer = each(b);
                async move { Ok::<_, ClientError>((transfer.await?, b.size)) }
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect()
            .await
    }

    /// The manifests (verified) and blobs of the image `source` names: for an index, the child for the
    /// chosen platform (which becomes the root), or with [`PlatformChoice::All`] the index and every child.
    async fn resolve(&self, source: &Reference, platforms: &PlatformChoice) -> Result<Resolved, ClientError> {
        let top = self.get_manifest(source).await?;
        let mut manifests = vec![top.clone()];
        let mut blobs: BTreeMap<Digest, Descriptor> = BTreeMap::new();
        let mut root = top.clone();
        let mut i = 0;
        while i < manifests.len() {
            let m = manifests[i].clone();
            i += 1;
            let refs = parse_manifest(&m.bytes, Some(&m.media_type))
                .map_err(|e| manifest_error(&source.to_string(), e))?;
            match refs.kind {
                ManifestKind::Image => {
                    for b in refs.blobs {
                        blobs.entry(b.digest.clone()).or_insert(b);
                    }
                }
                ManifestKind::Index => {
                    let children = match platforms {
                        PlatformChoice::All => refs.manifests.clone(),
                        PlatformChoice::One(p) => vec![pick(source, &m, &refs.manifests, p)?],
                    };
                    for child in children {
                        let child_manifest = self
                            .get_manifest(&source.with_digest(child.digest.clone()))
                            .await?;
                        if matches!(platforms, PlatformChoice::One(_)) && m.digest == root.digest {
                            root = child_manifest.clone();
                        }
                        manifests.push(child_manifest);
                    }
                }
            }
        }
        if matches!(platforms, PlatformChoice::One(_)) {
            // The index itself is not kept.
            manifests.retain(|m| {
                m.digest == root.digest
                    || parse_manifest(&m.bytes, Some(&m.media_type))
                        .is_ok_and(|r| r.kind == ManifestKind::Image)
            });
        }
        Ok(Resolved {
            manifests,
            blobs,
            root,
        })
    }

    /// Copies the image `source` names to `target`, registry to registry, staging nothing on disk: each
    /// blob streams from one to the other ([`Client::copy_blob`]: skipped when the target has it, mounted
    /// on the same registry), then the manifests go byte-exact, children before their index, the root
    /// under the target's tag. For an index, [`PlatformChoice::One`] copies the chosen image only.
    pub async fn copy_image(
        &self,
        source: &Reference,
        target: &Reference,
        platforms: &PlatformChoice,
    ) -> Result<Transferred, ClientError> {
        let resolved = self.resolve(source, platforms).await?;
        let outcomes = self
            .for_each_blob(resolved.blobs.values(), |b| async move {
                self.copy_blob(&source.with_digest(b.digest.clone()), target, b)
                    .await
            })
            .await?;
        // `resolve` lists parents before children: put them the other way round.
        for m in resolved.manifests.iter().rev() {
            let reference = manifest_reference(target, &m.digest, m.digest == resolved.root.digest);
            self.put_manifest(&reference, &m.bytes, &m.media_type).await?;
        }
        Ok(resolved.summary(target, &outcomes))
    }

    /// Puts the manifest `source` points to under each of `tags` in the same repository: its exact bytes
    /// with its media type, so no blob moves. Returns the manifest.
    pub async fn tag(&self, source: &Reference, tags: &[String]) -> Result<Manifest, ClientError> {
        let manifest = self.get_manifest(source).await?;
        for tag in tags {
            let target = source.with_tag(tag);
            self.put_manifest(&target, &manifest.bytes, &manifest.media_type)
                .await?;
        }
        Ok(manifest)
    }

    /// [`Client::tag`], then deletes the temporary tag of `source` (the tag only; never the manifest).
    pub async fn promote(&self, source: &Reference, tags: &[String]) -> Result<Manifest, ClientError> {
        let manifest = self.tag(source, tags).await?;
        let temporary = source.tag_or_latest();
        if !tags.iter().any(|t| t == temporary) {
            self.delete_tag(source).await?;
        }
        Ok(manifest)
    }

    /// When the image a tag points to was created: the `created` field of its config (for an index: of its
    /// first child with a known platform, else its first child). `None` if it has none.
    pub async fn created(&self, reference: &Reference) -> Result<Option<time::OffsetDateTime>, ClientError> {
        let mut manifest = self.get_manifest(reference).await?;
        for _ in 0..4 {
            let refs = parse_manifest(&manifest.bytes, Some(&manifest.media_type))
                .map_err(|e| manifest_error(&reference.to_string(), e))?;
            match refs.kind {
                ManifestKind::Image => {
                    let Some(config) = refs.blobs.first() else {
                        return Ok(None);
                    };
                    let bytes = self.get_small_blob(reference, config, 4 * 1024 * 1024).await?;
                    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                    return Ok(value["created"].as_str().and_then(|c| {
                        time::OffsetDateTime::parse(c, &time::format_description::well_known::Rfc3339).ok()
                    }));
                }
                ManifestKind::Index => {
                    let platforms = child_platforms(&manifest.bytes);
                    let chosen = refs
                        .manifests
                        .iter()
                        .zip(platforms.iter())
                        .find(|(_, p)| p.as_ref().is_some_and(|p| p.os != "unknown"))
                        .map(|(d, _)| d)
                        .or(refs.manifests.first());
                    let Some(child) = chosen else {
                        return Ok(None);
                    };
                    manifest = self
                        .get_manifest(&reference.with_digest(child.digest.clone()))
                        .await?;
                }
            }
        }
        Ok(None)
    }

    /// The tags of `repository` matching `pattern` (a glob) whose image was created more than `older_than`
    /// ago. Tags whose image has no `created` date are never selected.
    pub async fn tags_older_than(
        &self,
        repository: &Reference,
        pattern: &str,
        older_than: Duration,
    ) -> Result<Vec<String>, ClientError> {
        let glob = globset::Glob::new(pattern)
            .map_err(|e| ClientError::Config {
                path: "--match".into(),
                reason: format!("`{pattern}` is not a glob: {e}"),
            })?
            .compile_matcher();
        let now = time::OffsetDateTime::now_utc();
        let mut out = Vec::new();
        for tag in self
            .list_tags(&repository.registry, &repository.repository)
            .await?
        {
            if !glob.is_match(&tag) {
                continue;
            }
            if let Some(created) = self.created(&repository.with_tag(&tag)).await?
                && now - created > older_than
            {
                out.push(tag);
            }
        }
        Ok(out)
    }
}

/// What an image reference resolves to.
struct Resolved {
    manifests: Vec<Manifest>,
    blobs: BTreeMap<Digest, Descriptor>,
    root: Manifest,
}

impl Resolved {
    /// What was transferred to or from `reference`, the root manifest naming the image.
    fn summary(&self, reference: &Reference, outcomes: &[(BlobOutcome, u64)]) -> Transferred {
        let root = &self.root;
        let size = root.bytes.len() as u64;
        summary(
            reference,
            root.digest.clone(),
            root.media_type.clone(),
            size,
            outcomes,
        )
    }
}

/// Where a manifest of an image goes at `target`: the root under the target's tag (when it names one
/// rather than a digest), every other manifest by its digest.
fn manifest_reference(target: &Reference, digest: &Digest, is_root: bool) -> Reference {
    if is_root && target.digest.is_none() {
        target.clone()
    } else {
        target.with_digest(digest.clone())
    }
}

fn summary(
    reference: &Reference,
    digest: Digest,
    media_type: String,
    size: u64,
    outcomes: &[(BlobOutcome, u64)],
) -> Transferred {
    let mut blobs = BTreeMap::new();
    let mut bytes = 0;
    for (outcome, size) in outcomes {
        *blobs.entry(outcome.as_str().to_owned()).or_insert(0) += 1;
        if matches!(outcome, BlobOutcome::Pushed | BlobOutcome::Pulled) {
            bytes += size;
        }
    }
    Transferred {
        reference: reference.to_string(),
        digest,
        media_type,
        size,
        bytes,
        blobs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert!(p.matches(&Platform::parse("linux/arm64/v8").unwrap()));
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(!v7.matches(&Platform::parse("linux/arm/v6").unwrap()));
        assert_eq!(v7.to_string(), "linux/arm/v7");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
    }
}
