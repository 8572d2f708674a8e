//! Single transfers: manifests (byte-exact, verified) and blobs (streamed from and into the store,
//! verified, uploads resumable).

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt as _;
use kiln_oci::manifest::Descriptor;
use kiln_oci::{BlobStore, Digest, StoreError};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode, Url};

use crate::client::{Client, is_transient, scope, status_error};
use crate::error::ClientError;
use crate::progress::{BlobOutcome, Progress};
use crate::reference::Reference;

/// Every manifest type kiln reads, for `Accept`.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest kiln reads.
pub const MAX_MANIFEST_SIZE: u64 = kiln_oci::image::MAX_JSON_SIZE;

/// A manifest as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// Its media type (the Content-Type it was served with, else its `mediaType` field).
    pub media_type: String,
    /// The digest of the bytes.
    pub digest: Digest,
}

/// A blob download in progress ([`Client::get_blob`]).
pub struct BlobDownload {
    /// The size the registry announced, if it did.
    pub size: Option<u64>,
    /// The bytes as they arrive, not yet verified against the digest.
    pub stream: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, ClientError>>,
}

impl std::fmt::Debug for BlobDownload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobDownload")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Manifest {
    /// A descriptor of this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: Some(self.media_type.clone()),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            urls: None,
            artifact_type: None,
            annotations: None,
        }
    }
}

fn header_str(r: &reqwest::Response, name: reqwest::header::HeaderName) -> Option<&str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `Range: 0-N` (or `bytes=0-N`) → the next offset, N+1. `0-0` is what registries (distribution,
/// kiln serve) answer for a session that holds nothing yet, so it means offset 0: a session holding
/// exactly one byte is never left behind by kiln (chunks are far larger).
fn range_end(r: &reqwest::Response) -> Option<u64> {
    let v = header_str(r, RANGE)?;
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (start, end) = v.split_once('-')?;
    let end = end.trim().parse::<u64>().ok()?;
    if start.trim() == "0" && end == 0 {
        return Some(0);
    }
    Some(end + 1)
}

/// Maps a transport error of `method url` to [`ClientError::Http`].
fn http_error<'a>(method: &'a str, url: &'a Url) -> impl FnOnce(reqwest::Error) -> ClientError + 'a {
    move |source| ClientError::http(method, url.as_str(), source)
}

fn with_query(url: &Url, key: &str, value: &str) -> Url {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair(key, value);
    url
}

/// A request body streaming `len` bytes of `path` from `offset`, reporting absolute positions.
fn file_body(
    path: &Path,
    offset: u64,
    len: u64,
    digest: &Digest,
    progress: &Arc<dyn Progress>,
) -> Result<reqwest::Body, ClientError> {
    let mut file = fs_err::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let file = tokio::fs::File::from_std(file.into_parts().0);
    let reader = tokio::io::AsyncReadExt::take(file, len);
    let mut position = offset;
    let progress = progress.clone();
    let digest = digest.clone();
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            position += bytes.len() as u64;
            progress.position(&digest, position);
        }
        chunk
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// Where the bytes of a blob being uploaded come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BlobSource<'a> {
    /// A file (of the store).
    File(&'a Path),
    /// The same blob in a repository of a registry, fetched (by ranges when chunked) as it is sent.
    Remote(&'a Reference),
}

/// A request body that can be handed to one attempt of a request only (a remote blob's stream).
struct OneShot(std::sync::Mutex<Option<reqwest::Body>>);

impl OneShot {
    fn take(&self, url: &str) -> Result<reqwest::Body, ClientError> {
        self.0
            .lock()
            .ok()
            .and_then(|mut b| b.take())
            .ok_or_else(|| ClientError::Status {
                method: "PUT".to_owned(),
                url: url.to_owned(),
                status: 503,
                code: None,
                message: "the source's stream is spent; asking where the upload stands".to_owned(),
            })
    }
}

impl Client {
    /// A GET of `target` in the reference's repository that must answer 200.
    async fn get_ok(
        &self,
        reference: &Reference,
        target: &str,
        build: impl Fn(reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, ClientError>,
    ) -> Result<(reqwest::Response, Url), ClientError> {
        let scopes = [scope(&reference.repository, false)];
        self.send_expect(
            &reference.registry,
            &scopes,
            Method::GET,
            target,
            &[StatusCode::OK],
            build,
        )
        .await
    }

    /// Fetches a manifest by tag or digest with an `Accept` list of every manifest type, verifying its
    /// digest (against the reference's digest, else the `Docker-Content-Digest` header).
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Manifest, ClientError> {
        let target = format!("v2/{}/manifests/{}", reference.repository, reference.target());
        let (response, url) = self
            .get_ok(reference, &target, |r| Ok(r.header(ACCEPT, MANIFEST_ACCEPT)))
            .await?;
        let content_type =
            header_str(&response, CONTENT_TYPE).map(|c| c.split(';').next().unwrap_or(c).trim().to_owned());
        let announced = header_str(
            &response,
            reqwest::header::HeaderName::from_static("docker-content-digest"),
        )
        .and_then(|d| d.parse::<Digest>().ok());
        let too_big = || ClientError::Manifest {
            reference: reference.to_string(),
            reason: format!("larger than {MAX_MANIFEST_SIZE} bytes"),
        };
        if response.content_length().is_some_and(|l| l > MAX_MANIFEST_SIZE) {
            return Err(too_big());
        }
        let mut bytes = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(http_error("GET", &url))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_MANIFEST_SIZE {
                return Err(too_big());
            }
        }
        let expected = reference.digest.clone().or(announced);
        let algorithm = expected
            .as_ref()
            .map_or(kiln_oci::Algorithm::Sha256, Digest::algorithm);
        let actual = algorithm.digest(&bytes);
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(ClientError::ManifestDigest {
                reference: reference.to_string(),
                expected,
                actual,
            });
        }
        let content_type =
            content_type.filter(|c| !c.is_empty() && c != "application/json" && c != "text/plain");
        let refs = kiln_oci::manifest::parse_manifest(&bytes, content_type.as_deref()).map_err(|e| {
            ClientError::Manifest {
                reference: reference.to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(Manifest {
            bytes,
            media_type: refs.media_type,
            digest: actual,
        })
    }

    /// The digest of a manifest, from a HEAD; `None` if it does not exist.
    pub async fn head_manifest(&self, reference: &Reference) -> Result<Option<Digest>, ClientError> {
        let target = format!("v2/{}/manifests/{}", reference.repository, reference.target());
        let scopes = [scope(&reference.repository, false)];
        let (response, url) = self
            .send(&reference.registry, &scopes, Method::HEAD, &target, true, |r| {
                Ok(r.header(ACCEPT, MANIFEST_ACCEPT))
            })
            .await?;
        match response.status() {
            StatusCode::OK => {
                let digest = header_str(
                    &response,
                    reqwest::header::HeaderName::from_static("docker-content-digest"),
                )
                .and_then(|d| d.parse().ok());
                match digest {
                    Some(d) => Ok(Some(d)),
                    // No digest header: ask for the bytes.
                    None => Ok(Some(self.get_manifest(reference).await?.digest)),
                }
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(&Method::HEAD, url.as_str(), response).await),
        }
    }

    /// PUTs manifest bytes as they are, with their media type, under the reference's tag or digest.
    /// Returns the digest of the bytes.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, ClientError> {
        let target = format!("v2/{}/manifests/{}", reference.repository, reference.target());
        let scopes = [scope(&reference.repository, true)];
        let body = bytes::Bytes::copy_from_slice(bytes);
        self.send_expect(
            &reference.registry,
            &scopes,
            Method::PUT,
            &target,
            &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
            |r| Ok(r.header(CONTENT_TYPE, media_type).body(body.clone())),
        )
        .await?;
        let algorithm = reference
            .digest
            .as_ref()
            .map_or(kiln_oci::Algorithm::Sha256, Digest::algorithm);
        Ok(algorithm.digest(bytes))
    }

    /// Deletes a tag (never the manifest it points to). A registry that cannot delete a tag alone
    /// (distribution 2.x answers 400 or 405) gives [`ClientError::TagDeleteUnsupported`].
    pub async fn delete_tag(&self, reference: &Reference) -> Result<(), ClientError> {
        let tag = reference.tag_or_latest();
        let target = format!("v2/{}/manifests/{tag}", reference.repository);
        let scopes = [scope(&reference.repository, true)];
        let (response, url) = self
            .send(&reference.registry, &scopes, Method::DELETE, &target, true, Ok)
            .await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            status @ (StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED) => {
                Err(ClientError::TagDeleteUnsupported {
                    registry: reference.registry.clone(),
                    repository: reference.repository.clone(),
                    tag: tag.to_owned(),
                    status: status.as_u16(),
                })
            }
            _ => Err(status_error(&Method::DELETE, url.as_str(), response).await),
        }
    }

    /// Every tag of a repository, following `Link` pagination.
    pub async fn list_tags(&self, registry: &str, repository: &str) -> Result<Vec<String>, ClientError> {
        let scopes = [scope(repository, false)];
        let mut target = format!("v2/{repository}/tags/list");
        let mut tags = Vec::new();
        for _ in 0..10_000 {
            let (response, url) = self
                .send_expect(registry, &scopes, Method::GET, &target, &[StatusCode::OK], Ok)
                .await?;
            let next = header_str(&response, reqwest::header::LINK)
                .and_then(|l| l.split(';').next())
                .map(|l| l.trim().trim_start_matches('<').trim_end_matches('>').to_owned());
            #[derive(serde::Deserialize)]
            struct TagList {
                tags: Option<Vec<String>>,
            }
            let page: TagList = response.json().await.map_err(http_error("GET", &url))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) if !n.is_empty() => {
                    target =
                        url.join(&n)
                            .map(|u| u.to_string())
                            .map_err(|e| ClientError::InvalidReference {
                                input: n.clone(),
                                reason: e.to_string(),
                            })?;
                }
                _ => break,
            }
        }
        Ok(tags)
    }

    /// Fetches a small blob (a config) into memory, verified, at most `limit` bytes.
    pub async fn get_small_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let target = format!("v2/{}/blobs/{}", reference.repository, descriptor.digest);
        let (response, url) = self.get_ok(reference, &target, Ok).await?;
        let corrupt = |reason: String| ClientError::CorruptBlob {
            digest: descriptor.digest.clone(),
            url: url.to_string(),
            reason,
        };
        if descriptor.size > limit {
            return Err(corrupt(format!(
                "{} bytes exceed the {limit}-byte limit",
                descriptor.size
            )));
        }
        let bytes = response.bytes().await.map_err(http_error("GET", &url))?;
        let actual = descriptor.digest.algorithm().digest(&bytes);
        if actual != descriptor.digest {
            return Err(corrupt(format!("content has digest {actual}")));
        }
        Ok(bytes.to_vec())
    }

    /// Downloads a blob into `store` through the verifying writer, resuming with a `Range` request after a
    /// dropped connection. A blob whose content does not match its digest or size is refused and nothing
    /// of it is kept. A blob the store already has is not fetched.
    pub async fn pull_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        store: &BlobStore,
    ) -> Result<BlobOutcome, ClientError> {
        let digest = &descriptor.digest;
        if store.size(digest)? == Some(descriptor.size) {
            return Ok(BlobOutcome::Exists);
        }
        let progress = self.config.progress.clone();
        progress.start(digest, descriptor.size, "pull");
        let target = format!("v2/{}/blobs/{digest}", reference.repository);
        let scopes = [scope(&reference.repository, false)];
        let mut writer = store.writer(digest.algorithm())?;
        let mut attempt = 0;
        let mut last_url = target.clone();
        loop {
            let resume_at = writer.len();
            let result: Result<(), ClientError> = async {
                let (response, url) = self
                    .send(&reference.registry, &scopes, Method::GET, &target, true, |r| {
                        Ok(if resume_at > 0 {
                            r.header(RANGE, format!("bytes={resume_at}-"))
                        } else {
                            r
                        })
                    })
                    .await?;
                last_url = url.to_string();
                match response.status() {
                    StatusCode::PARTIAL_CONTENT if resume_at > 0 => {}
                    StatusCode::OK => {
                        if resume_at > 0 {
                            writer.truncate(0)?;
                        }
                    }
                    _ => return Err(status_error(&Method::GET, url.as_str(), response).await),
                }
                let mut stream = response.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(http_error("GET", &url))?;
                    if writer.len() + chunk.len() as u64 > descriptor.size {
                        return Err(ClientError::CorruptBlob {
                            digest: digest.clone(),
                            url: url.to_string(),
                            reason: format!("more than the {} bytes its descriptor says", descriptor.size),
                        });
                    }
                    writer.write_all(&chunk)?;
                    progress.position(digest, writer.len());
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => break,
                Err(e) if is_transient(&e) && attempt < self.config.retries => {
                    attempt += 1;
                    self.backoff(attempt, &format!("GET {last_url}"), &e).await;
                }
                Err(e) => return Err(e),
            }
        }
        if writer.len() != descriptor.size {
            return Err(ClientError::CorruptBlob {
                digest: digest.clone(),
                url: last_url,
                reason: format!("{} bytes, its descriptor says {}", writer.len(), descriptor.size),
            });
        }
        match writer.commit(Some(digest)) {
            Ok(_) => {}
            Err(StoreError::DigestMismatch { actual, .. }) => {
                return Err(ClientError::CorruptBlob {
                    digest: digest.clone(),
                    url: last_url,
                    reason: format!("content has digest {actual}"),
                });
            }
            Err(e) => return Err(e.into()),
        }
        progress.finish(digest, BlobOutcome::Pulled);
        Ok(BlobOutcome::Pulled)
    }

    /// Starts a download of a blob: its size (the answer's `Content-Length`, when given) and its bytes as
    /// they arrive, unverified (the caller hashes them); `None` when the repository lacks it (404). The
    /// request is retried on connection errors, 429 and 5xx; the stream is not resumed.
    pub async fn get_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<Option<BlobDownload>, ClientError> {
        let target = format!("v2/{}/blobs/{digest}", reference.repository);
        let scopes = [scope(&reference.repository, false)];
        let (response, url) = self
            .send(&reference.registry, &scopes, Method::GET, &target, true, Ok)
            .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(status_error(&Method::GET, url.as_str(), response).await),
        }
        let size = response.content_length();
        let stream = response
            .bytes_stream()
            .map(move |chunk| chunk.map_err(http_error("GET", &url)))
            .boxed();
        Ok(Some(BlobDownload { size, stream }))
    }

    /// Whether the repository has the blob (HEAD).
    pub async fn has_blob(&self, reference: &Reference, digest: &Digest) -> Result<bool, ClientError> {
        let target = format!("v2/{}/blobs/{digest}", reference.repository);
        let scopes = [scope(&reference.repository, true)];
        let (response, url) = self
            .send(&reference.registry, &scopes, Method::HEAD, &target, true, Ok)
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(&Method::HEAD, url.as_str(), response).await),
        }
    }

    /// Uploads the blob stored at `path` unless the repository has it: a cross-repository mount from
    /// `mount_from` (a repository of the same registry) when given, else one PUT for blobs up to the
    /// chunk size and PATCH chunks streamed from the file for larger ones. After a dropped connection or
    /// a 5xx the upload asks the registry how much it has (GET on the session) and continues from there.
    pub async fn push_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        path: &Path,
        mount_from: Option<&str>,
    ) -> Result<BlobOutcome, ClientError> {
        self.upload_blob(reference, descriptor, BlobSource::File(path), mount_from)
            .await
    }

    /// Copies a blob from `source`'s repository to `target`'s (any two registries) without staging it:
    /// the download streams into the upload, chunk by chunk (`Range` requests) above the chunk size, and
    /// a dropped connection continues from the offset the target reports. The target verifies the digest
    /// when the upload closes. Blobs the target has are skipped; on the same registry they are mounted.
    pub async fn copy_blob(
        &self,
        source: &Reference,
        target: &Reference,
        descriptor: &Descriptor,
    ) -> Result<BlobOutcome, ClientError> {
        let mount_from = (source.registry == target.registry).then_some(source.repository.as_str());
        self.upload_blob(target, descriptor, BlobSource::Remote(source), mount_from)
            .await
    }

    pub(crate) async fn upload_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        source: BlobSource<'_>,
        mount_from: Option<&str>,
    ) -> Result<BlobOutcome, ClientError> {
        let digest = &descriptor.digest;
        if self.has_blob(reference, digest).await? {
            self.config.progress.finish(digest, BlobOutcome::Exists);
            return Ok(BlobOutcome::Exists);
        }
        let registry = &reference.registry;
        let repo = &reference.repository;
        let mut scopes = vec![scope(repo, true)];
        let mut session: Option<Url> = None;
        if let Some(from) = mount_from.filter(|f| *f != repo) {
            scopes.push(scope(from, false));
            let target = format!("v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
            let (response, url) = self
                .send_expect(
                    registry,
                    &scopes,
                    Method::POST,
                    &target,
                    &[StatusCode::CREATED, StatusCode::ACCEPTED],
                    |r| Ok(r.header(CONTENT_LENGTH, "0")),
                )
                .await?;
            if response.status() == StatusCode::CREATED {
                self.config.progress.finish(digest, BlobOutcome::Mounted);
                return Ok(BlobOutcome::Mounted);
            }
            session = Some(location(&response, &url)?);
        }
        self.config.progress.start(digest, descriptor.size, "push");
        let mut offset = 0u64;
        let mut attempt = 0;
        loop {
            match self
                .upload_attempt(reference, &scopes, descriptor, source, &mut session, &mut offset)
                .await
            {
                Ok(()) => break,
                Err(e) if is_transient(&e) && attempt < self.config.retries => {
                    attempt += 1;
                    let what = session
                        .as_ref()
                        .map_or_else(|| format!("upload to {repo}"), Url::to_string);
                    self.backoff(attempt, &what, &e).await;
                    // Ask where the session stands; start over when it is gone.
                    match &session {
                        Some(url) => match self.upload_status(reference, &scopes, url).await {
                            Ok(Some((next, at))) => {
                                session = Some(next);
                                offset = at;
                            }
                            Ok(None) | Err(_) => {
                                session = None;
                                offset = 0;
                            }
                        },
                        None => offset = 0,
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.config.progress.finish(digest, BlobOutcome::Pushed);
        Ok(BlobOutcome::Pushed)
    }

    async fn upload_status(
        &self,
        reference: &Reference,
        scopes: &[String],
        session: &Url,
    ) -> Result<Option<(Url, u64)>, ClientError> {
        let (response, url) = self
            .send(
                &reference.registry,
                scopes,
                Method::GET,
                session.as_str(),
                true,
                Ok,
            )
            .await?;
        if response.status() != StatusCode::NO_CONTENT && response.status() != StatusCode::ACCEPTED {
            return Ok(None);
        }
        let next = location(&response, &url).unwrap_or(url);
        Ok(Some((next, range_end(&response).unwrap_or(0))))
    }

    async fn upload_attempt(
        &self,
        reference: &Reference,
        scopes: &[String],
        descriptor: &Descriptor,
        source: BlobSource<'_>,
        session: &mut Option<Url>,
        offset: &mut u64,
    ) -> Result<(), ClientError> {
        let registry = &reference.registry;
        let size = descriptor.size;
        let current = match session {
            Some(url) => url.clone(),
            None => {
                let target = format!("v2/{}/blobs/uploads/", reference.repository);
                let (response, url) = self
                    .send_expect(
                        registry,
                        scopes,
                        Method::POST,
                        &target,
                        &[StatusCode::ACCEPTED],
                        |r| Ok(r.header(CONTENT_LENGTH, "0")),
                    )
                    .await?;
                let url = location(&response, &url)?;
                *session = Some(url.clone());
                *offset = 0;
                url
            }
        };
        if size <= self.config.chunk_size && *offset == 0 {
            return self
                .finish_upload(reference, scopes, &current, descriptor, Some(source))
                .await;
        }
        let mut current = current;
        while *offset < size {
            let start = *offset;
            let len = (size - start).min(self.config.chunk_size);
            let body = OneShot(std::sync::Mutex::new(Some(
                self.body(source, descriptor, start, len).await?,
            )));
            let (response, url) = self
                .send(registry, scopes, Method::PATCH, current.as_str(), false, |r| {
                    Ok(r.header(CONTENT_TYPE, "application/octet-stream")
                        .header("content-range", format!("{start}-{}", start + len - 1))
                        .header(CONTENT_LENGTH, len)
                        .body(body.take(current.as_str())?))
                })
                .await?;
            if response.status() != StatusCode::ACCEPTED && response.status() != StatusCode::NO_CONTENT {
                let err = status_error(&Method::PATCH, url.as_str(), response).await;
                // A range the registry refuses: ask it where the session stands and continue from there.
                return Err(match err {
                    ClientError::Status {
                        status: 416,
                        method,
                        url,
                        code,
                        message,
                    } => ClientError::Status {
                        status: 503,
                        method,
                        url,
                        code,
                        message: format!("range refused, resuming: {message}"),
                    },
                    other => other,
                });
            }
            let next = location(&response, &url).unwrap_or(url);
            *offset = range_end(&response).unwrap_or(start + len);
            current = next.clone();
            *session = Some(next);
        }
        self.finish_upload(reference, scopes, &current, descriptor, None)
            .await
    }

    /// `len` bytes of the blob from `start`, from where `source` says.
    async fn body(
        &self,
        source: BlobSource<'_>,
        descriptor: &Descriptor,
        start: u64,
        len: u64,
    ) -> Result<reqwest::Body, ClientError> {
        let digest = &descriptor.digest;
        let progress = self.config.progress.clone();
        let from = match source {
            BlobSource::File(path) => return file_body(path, start, len, digest, &progress),
            BlobSource::Remote(from) => from,
        };
        let whole = start == 0 && len == descriptor.size;
        let target = format!("v2/{}/blobs/{digest}", from.repository);
        let scopes = [scope(&from.repository, false)];
        let (response, url) = self
            .send(&from.registry, &scopes, Method::GET, &target, true, |r| {
                Ok(if whole {
                    r
                } else {
                    r.header(RANGE, format!("bytes={start}-{}", start + len - 1))
                })
            })
            .await?;
        let expected = if whole {
            StatusCode::OK
        } else {
            StatusCode::PARTIAL_CONTENT
        };
        if response.status() != expected {
            return Err(status_error(&Method::GET, url.as_str(), response).await);
        }
        if response.content_length().is_some_and(|l| l != len) {
            return Err(ClientError::CorruptBlob {
                digest: digest.clone(),
                url: url.to_string(),
                reason: format!(
                    "{} bytes announced for bytes {start}-{}",
                    response.content_length().unwrap_or_default(),
                    start + len - 1
                ),
            });
        }
        let mut position = start;
        let digest = digest.clone();
        let stream = response.bytes_stream().map(move |chunk| {
            if let Ok(bytes) = &chunk {
                position += bytes.len() as u64;
                progress.position(&digest, position);
            }
            chunk
        });
        Ok(reqwest::Body::wrap_stream(stream))
    }

    /// The closing PUT of an upload session, with the whole blob from `path` (monolithic) or empty.
    async fn finish_upload(
        &self,
        reference: &Reference,
        scopes: &[String],
        session: &Url,
        descriptor: &Descriptor,
        source: Option<BlobSource<'_>>,
    ) -> Result<(), ClientError> {
        let digest = &descriptor.digest;
        let size = descriptor.size;
        let progress = &self.config.progress;
        let put = with_query(session, "digest", &digest.to_string());
        // A file can be read again for each attempt; a remote stream only once (the caller's loop then
        // asks the registry where the upload stands).
        let remote = match source {
            Some(source @ BlobSource::Remote(_)) => Some(OneShot(std::sync::Mutex::new(Some(
                self.body(source, descriptor, 0, size).await?,
            )))),
            _ => None,
        };
        let (response, url) = self
            .send(
                &reference.registry,
                scopes,
                Method::PUT,
                put.as_str(),
                remote.is_none(),
                |r| {
                    Ok(match (source, &remote) {
                        (Some(BlobSource::File(path)), _) => r
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, size)
                            .body(file_body(path, 0, size, digest, progress)?),
                        (Some(BlobSource::Remote(_)), Some(body)) => r
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_LENGTH, size)
                            .body(body.take(put.as_str())?),
                        _ => r.header(CONTENT_LENGTH, "0"),
                    })
                },
            )
            .await?;
        let checked = if response.status() == StatusCode::CREATED {
            Ok(())
        } else {
            Err(status_error(&Method::PUT, url.as_str(), response).await)
        };
        checked.map_err(|e| match e {
            ClientError::Status {
                status: 400, message, ..
            } => ClientError::Upload {
                digest: digest.clone(),
                url: session.to_string(),
                reason: message,
            },
            other => other,
        })?;
        Ok(())
    }
}

/// The `Location` of an answer, resolved against the request URL.
fn location(response: &reqwest::Response, url: &Url) -> Result<Url, ClientError> {
    let value = header_str(response, LOCATION).ok_or_else(|| ClientError::Status {
        method: "POST".to_owned(),
        url: url.to_string(),
        status: response.status().as_u16(),
        code: None,
        message: "no Location header in the answer".to_owned(),
    })?;
    url.join(value).map_err(|e| ClientError::InvalidReference {
        input: value.to_owned(),
        reason: e.to_string(),
    })
}
