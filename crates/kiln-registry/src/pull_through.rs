//! Pull-through for a buildset registry (docs/speculative-images.md): what the registry's own storage
//! lacks is looked up in the intermediate registry (speculative images, tagged `<build-id>_<tag>`), then in
//! the upstream of the name's registry host (`--mirror HOST=URL`), and cached.
//!
//! Manifests are fetched whole, verified against the digest asked for (or the one the upstream announced)
//! and stored byte-exact. Blobs are streamed: one download per repository and digest, however many clients
//! ask at once; the bytes go to an unlinked spool file that every waiting client reads as it grows, and
//! into an upload session of the storage, which keeps them only if they match the digest. No client gets
//! the last byte of a blob before its digest was checked, so a tampered blob never reaches a client whole
//! and nothing of it stays in the storage. A `Range` request is answered from that same download (never
//! forwarded upstream), and the last byte of its answer waits for the digest check as well.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use futures_util::StreamExt as _;
use kiln_client::auth::{CredentialSource, Credentials};
use kiln_client::{Client, ClientConfig, ClientError};
use kiln_oci::Digest;
use tokio::sync::watch;

use crate::error::{ErrorCode, RegistryError};
use crate::names::{Reference, RepoName, Tag};
use crate::service::blocking;
use crate::storage::{References, Storage, StoredManifest};

/// Docker Hub's registry name: its images are stored without a host prefix.
const DOCKER_HUB: &str = "docker.io";

/// One registry to pull from: its URL and the credentials to use there.
#[derive(Clone)]
pub struct UpstreamSpec {
    /// `[http://|https://]HOST[:PORT]`. A plain `http://` URL allows plain HTTP to a non-loopback host.
    pub url: String,
    /// Credentials sent to this registry only (never to clients, never elsewhere).
    pub credentials: Option<Credentials>,
}

impl std::fmt::Debug for UpstreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSpec")
            .field("url", &self.url)
            .field("credentials", &self.credentials.as_ref().map(|c| &c.username))
            .finish()
    }
}

/// How a buildset registry pulls through.
#[derive(Debug, Clone, Default)]
pub struct PullThroughOptions {
    /// The intermediate registry holding speculative images as `<name>:<build-id>_<tag>`.
    pub intermediate: Option<UpstreamSpec>,
    /// The builds whose speculative images this buildset uses, the first found wins (the change nearest
    /// ahead in the queue first).
    pub builds: Vec<String>,
    /// Registry host (`docker.io`, `quay.io`, …) → where its images come from.
    pub mirrors: BTreeMap<String, UpstreamSpec>,
    /// Verify upstream TLS certificates.
    pub tls_verify: bool,
    /// CA certificates (`*.crt`) and client certificates for the upstreams (`--cert-dir` of kiln-client).
    pub cert_dir: Option<PathBuf>,
    /// Where blobs being fetched are spooled (unlinked files; the storage root's `ingest/`).
    pub spool: PathBuf,
    /// An upstream request fails when no byte moves for this long (`None`: kiln-client's default).
    pub read_timeout: Option<std::time::Duration>,
}

/// A pull-through configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum PullThroughError {
    /// An upstream URL that is not `[scheme://]host[:port]`.
    #[error("upstream `{url}` is not a registry URL ([http://|https://]HOST[:PORT]): {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A build id that cannot prefix a tag.
    #[error(
        "build id `{id}` cannot prefix a tag (use letters, digits, `_`, `.`, `-`; at most 100 characters)"
    )]
    InvalidBuild {
        /// The id.
        id: String,
    },
    /// A mirrored registry host that is not a host name.
    #[error("`{host}` is not a registry host name (such as docker.io or quay.io)")]
    InvalidHost {
        /// The host.
        host: String,
    },
}

/// Where a lookup goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Intermediate,
    Mirror,
}

struct Upstream {
    registry: String,
    client: Client,
}

/// A repository at one upstream.
struct Source<'a> {
    kind: Kind,
    upstream: &'a Upstream,
    repository: String,
}

impl Source<'_> {
    fn reference(&self, tag: Option<String>, digest: Option<Digest>) -> kiln_client::Reference {
        kiln_client::Reference {
            registry: self.upstream.registry.clone(),
            repository: self.repository.clone(),
            tag,
            digest,
        }
    }

    /// Whether an error means "not there" rather than "cannot tell". A mirror that refuses access counts
    /// as lacking the image (Docker Hub answers 401 for unknown repositories); the intermediate registry
    /// does not, because falling back past a speculative image would serve the wrong one.
    fn is_miss(&self, e: &ClientError) -> bool {
        match (e.status(), e) {
            (Some(404), _) => true,
            (Some(401 | 403), _) | (_, ClientError::Auth { .. }) => self.kind == Kind::Mirror,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
enum FetchState {
    Resolving,
    Missing,
    Running { size: Option<u64>, written: u64 },
    Done { size: u64 },
    Failed(String),
}

/// One blob download shared by every client that asks for it meanwhile.
struct Fetch {
    spool: Arc<std::fs::File>,
    state: watch::Receiver<FetchState>,
}

type FetchKey = (String, Digest);

/// The pull-through of a buildset registry; see the module docs.
pub struct PullThrough {
    intermediate: Option<Upstream>,
    builds: Vec<String>,
    mirrors: BTreeMap<String, Upstream>,
    spool: PathBuf,
    fetches: Mutex<HashMap<FetchKey, Arc<Fetch>>>,
}

impl std::fmt::Debug for PullThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullThrough")
            .field("intermediate", &self.intermediate.as_ref().map(|u| &u.registry))
            .field("builds", &self.builds)
            .field("mirrors", &self.mirrors.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// `[scheme://]host[:port][/]` → (`host[:port]`, whether the scheme is plain `http`).
pub fn parse_upstream_url(url: &str) -> Result<(String, bool), PullThroughError> {
    let invalid = |reason: &str| PullThroughError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (plain, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (false, rest)
    } else if url.contains("://") {
        return Err(invalid("the scheme must be http or https"));
    } else {
        (false, url)
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    if host.contains('/') {
        return Err(invalid("a path is not supported"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    {
        return Err(invalid("unexpected characters in the host"));
    }
    Ok((host.to_owned(), plain))
}

fn valid_build(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && !host.starts_with(['.', '-'])
}

/// Whether the first component of a repository name is a registry host (`quay.io/org/img`).
fn is_host_component(component: &str) -> bool {
    component.contains('.') || component == "localhost"
}

/// The name under which a buildset registry keeps an image: Docker Hub's images without a host
/// (`library/busybox`), every other registry's under its host (`quay.io/org/img`). `ns` is the registry a
/// containerd mirror request names (`?ns=quay.io`).
pub fn local_name(name: &str, ns: Option<&str>) -> String {
    let ns = ns.map(|h| match h {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        other => other,
    });
    match ns {
        Some(host) if host != DOCKER_HUB && valid_host(host) => {
            if name.split('/').next() == Some(host) {
                name.to_owned()
            } else {
                format!("{host}/{name}")
            }
        }
        _ => name
            .strip_prefix("docker.io/")
            .filter(|rest| !rest.is_empty())
            .unwrap_or(name)
            .to_owned(),
    }
}

/// A local name's registry host and its repository there (`library/` added for Docker Hub's official
/// images).
fn upstream_name(local: &str) -> (&str, String) {
    match local.split_once('/') {
        Some((host, path)) if is_host_component(host) => (host, path.to_owned()),
        Some(_) => (DOCKER_HUB, local.to_owned()),
        None => (DOCKER_HUB, format!("library/{local}")),
    }
}

fn bad_gateway(message: String) -> RegistryError {
    RegistryError::new(StatusCode::BAD_GATEWAY, ErrorCode::Unknown, message)
}

impl PullThrough {
    /// Checks the options and sets up one client per upstream.
    pub fn new(options: PullThroughOptions) -> Result<PullThrough, PullThroughError> {
        for id in &options.builds {
            if !valid_build(id) {
                return Err(PullThroughError::InvalidBuild { id: id.clone() });
            }
        }
        let upstream = |spec: &UpstreamSpec| -> Result<Upstream, PullThroughError> {
            let (registry, plain) = parse_upstream_url(&spec.url)?;
            let client = Client::new(ClientConfig {
                credentials: CredentialSource {
                    explicit: spec.credentials.clone(),
                    files: Vec::new(),
                    helper_path: None,
                },
                tls_verify: options.tls_verify && !plain,
                cert_dir: options.cert_dir.clone(),
                retries: 2,
                read_timeout: options.read_timeout.unwrap_or(kiln_client::DEFAULT_READ_TIMEOUT),
                ..ClientConfig::default()
            });
            Ok(Upstream { registry, client })
        };
        let mut mirrors = BTreeMap::new();
        for (host, spec) in &options.mirrors {
            if !valid_host(host) {
                return Err(PullThroughError::InvalidHost { host: host.clone() });
            }
            mirrors.insert(host.clone(), upstream(spec)?);
        }
        Ok(PullThrough {
            intermediate: options.intermediate.as_ref().map(upstream).transpose()?,
            builds: options.builds,
            mirrors,
            spool: options.spool,
            fetches: Mutex::new(HashMap::new()),
        })
    }

    /// Where a local repository is looked up, in order.
    fn sources(&self, repo: &RepoName) -> Vec<Source<'_>> {
        let mut sources = Vec::new();
        if let Some(upstream) = &self.intermediate {
            sources.push(Source {
                kind: Kind::Intermediate,
                upstream,
                repository: repo.to_string(),
            });
        }
        let (host, repository) = upstream_name(repo.as_str());
        if let Some(upstream) = self.mirrors.get(host) {
            sources.push(Source {
                kind: Kind::Mirror,
                upstream,
                repository,
            });
        }
        sources
    }

    /// Fetches a manifest the storage lacks, verifies it, stores it (under the tag asked for, when one
    /// was) and returns it; `None` when no source has it.
    pub(crate) async fn manifest(
        &self,
        storage: &Arc<dyn Storage>,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, RegistryError> {
        let mut failure = None;
        for source in self.sources(repo) {
            let targets: Vec<kiln_client::Reference> = match (reference, source.kind) {
                (Reference::Digest(d), _) => vec![source.reference(None, Some(d.clone()))],
                (Reference::Tag(t), Kind::Intermediate) => self
                    .builds
                    .iter()
                    .map(|b| source.reference(Some(format!("{b}_{t}")), None))
                    .collect(),
                (Reference::Tag(t), Kind::Mirror) => vec![source.reference(Some(t.to_string()), None)],
            };
            for target in targets {
                match source.upstream.client.get_manifest(&target).await {
                    Ok(m) => {
                        tracing::info!(repository = %repo, %reference, from = %target, "pulled through");
                        return self.store_manifest(storage, repo, reference, m).await.map(Some);
                    }
                    Err(e) if source.is_miss(&e) => {}
                    Err(e) => {
                        tracing::warn!(repository = %repo, from = %target, error = %e, "pull-through failed");
                        let message = format!("cannot fetch {target}: {e}");
                        // A tag must not fall back past a speculative image that may exist.
                        if source.kind == Kind::Intermediate && matches!(reference, Reference::Tag(_)) {
                            return Err(bad_gateway(message));
                        }
                        failure = Some(message);
                    }
                }
            }
        }
        failure.map_or(Ok(None), |m| Err(bad_gateway(m)))
    }

    async fn store_manifest(
        &self,
        storage: &Arc<dyn Storage>,
        repo: &RepoName,
        reference: &Reference,
        m: kiln_client::Manifest,
    ) -> Result<StoredManifest, RegistryError> {
        let subject = kiln_oci::manifest::parse_manifest(&m.bytes, Some(&m.media_type))
            .ok()
            .and_then(|r| r.subject.map(|s| s.digest));
        let stored = StoredManifest {
            digest: m.digest,
            media_type: m.media_type,
            bytes: m.bytes,
        };
        let tags: Vec<Tag> = match reference {
            Reference::Tag(t) => vec![t.clone()],
            Reference::Digest(_) => Vec::new(),
        };
        let (r, s) = (repo.clone(), stored.clone());
        blocking(storage, move |st| {
            st.put_manifest(&r, &s, &tags, subject.as_ref(), References::Unchecked)
        })
        .await?;
        Ok(stored)
    }

    fn lock_fetches(&self) -> std::sync::MutexGuard<'_, HashMap<FetchKey, Arc<Fetch>>> {
        self.fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A blob the storage lacks, being fetched and cached (see [`PulledBlob`]); `None` when no source has
    /// it. Concurrent calls for one blob share one download.
    pub(crate) async fn blob(
        self: &Arc<Self>,
        storage: &Arc<dyn Storage>,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<PulledBlob>, RegistryError> {
        let key = (repo.to_string(), digest.clone());
        let fetch = {
            let mut fetches = self.lock_fetches();
            match fetches.get(&key) {
                Some(f) => Arc::clone(f),
                None => {
                    let spool = tempfile::tempfile_in(&self.spool).map_err(|e| {
                        RegistryError::internal(format!("cannot spool in {}: {e}", self.spool.display()))
                    })?;
                    let (tx, rx) = watch::channel(FetchState::Resolving);
                    let fetch = Arc::new(Fetch {
                        spool: Arc::new(spool),
                        state: rx,
                    });
                    fetches.insert(key.clone(), Arc::clone(&fetch));
                    let this = Arc::clone(self);
                    let (storage, repo, digest, spool) = (
                        Arc::clone(storage),
                        repo.clone(),
                        digest.clone(),
                        Arc::clone(&fetch.spool),
                    );
                    tokio::spawn(async move {
                        let _done = Forget(&this, key);
                        this.download(&storage, &repo, &digest, spool, tx).await;
                    });
                    fetch
                }
            }
        };
        let mut pulled = PulledBlob {
            rx: fetch.state.clone(),
            fetch,
            digest: digest.clone(),
        };
        match pulled.wait(|s| !matches!(s, FetchState::Resolving)).await? {
            FetchState::Missing => Ok(None),
            _ => Ok(Some(pulled)),
        }
    }

    /// The one download of a blob: finds a source, then writes what arrives to the spool and into an
    /// upload session, publishing progress; the session keeps the blob only if its digest matches.
    async fn download(
        &self,
        storage: &Arc<dyn Storage>,
        repo: &RepoName,
        digest: &Digest,
        spool: Arc<std::fs::File>,
        tx: watch::Sender<FetchState>,
    ) {
        let mut found = None;
        let mut failure = None;
        for source in self.sources(repo) {
            let target = source.reference(None, Some(digest.clone()));
            match source.upstream.client.get_blob(&target, digest).await {
                Ok(Some(download)) => {
                    found = Some((target, download));
                    break;
                }
                Ok(None) => {}
                Err(e) if source.is_miss(&e) => {}
                Err(e) => failure = Some(format!("cannot fetch {target}: {e}")),
            }
        }
        let Some((target, download)) = found else {
            tx.send_replace(failure.map_or(FetchState::Missing, FetchState::Failed));
            return;
        };
        tx.send_replace(FetchState::Running {
            size: download.size,
            written: 0,
        });
        let tx = Arc::new(tx);
        match cache_blob(storage, repo, digest, spool, download, Arc::clone(&tx)).await {
            Ok(size) => {
                tracing::info!(repository = %repo, %digest, from = %target, size, "pulled through");
                tx.send_replace(FetchState::Done { size });
            }
            Err(reason) => {
                tracing::warn!(repository = %repo, %digest, from = %target, %reason, "blob refused");
                tx.send_replace(FetchState::Failed(format!(
                    "blob {digest} from {target} refused, nothing of it was kept: {reason}"
                )));
            }
        }
    }
}

/// Forgets a finished download (also when its task panics), so that later requests read the storage.
struct Forget<'a>(&'a PullThrough, FetchKey);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.lock_fetches().remove(&self.1);
    }
}

/// A blob that a download is fetching (or has just fetched) into the storage. Its bytes are read from the
/// download's spool as they arrive; whatever part of the blob a body answers with, its last byte waits
/// until the whole blob's digest was checked, so a tampered blob never completes an answer.
pub(crate) struct PulledBlob {
    fetch: Arc<Fetch>,
    rx: watch::Receiver<FetchState>,
    digest: Digest,
}

/// A download's blob size, once known.
fn size_of(state: &FetchState) -> Option<u64> {
    match state {
        FetchState::Running { size, .. } => *size,
        FetchState::Done { size } => Some(*size),
        _ => None,
    }
}

impl PulledBlob {
    /// Waits for a state that `ready` accepts; a failed or vanished download is a 502.
    async fn wait(&mut self, ready: impl Fn(&FetchState) -> bool) -> Result<FetchState, RegistryError> {
        loop {
            let state = self.rx.borrow_and_update().clone();
            if let FetchState::Failed(m) = state {
                return Err(bad_gateway(m));
            }
            if ready(&state) {
                return Ok(state);
            }
            if self.rx.changed().await.is_err() {
                return Err(bad_gateway(format!("the download of {} ended", self.digest)));
            }
        }
    }

    /// The size the upstream announced, if it did.
    pub(crate) fn announced_size(&self) -> Option<u64> {
        size_of(&self.rx.borrow())
    }

    /// The blob's size: the one announced, else (the upstream sent none) once the download ended.
    pub(crate) async fn size(&mut self) -> Result<u64, RegistryError> {
        let state = self.wait(|s| size_of(s).is_some()).await?;
        size_of(&state).ok_or_else(|| bad_gateway(format!("no size for {}", self.digest)))
    }

    /// Waits until the blob is verified and stored.
    pub(crate) async fn cached(mut self) -> Result<(), RegistryError> {
        self.wait(|s| matches!(s, FetchState::Done { .. }))
            .await
            .map(drop)
    }

    /// A body of bytes `start..end` of the blob (`end` `None`: to its end), read as they arrive.
    pub(crate) fn body(self, start: u64, end: Option<u64>) -> Body {
        spool_body(self.fetch, self.rx, start, end)
    }
}

/// Writes a download to the spool and into an upload session of `repo`; finishing the session verifies
/// the digest. Returns the size, or why the blob was refused (the session is then discarded).
async fn cache_blob(
    storage: &Arc<dyn Storage>,
    repo: &RepoName,
    digest: &Digest,
    spool: Arc<std::fs::File>,
    download: kiln_client::BlobDownload,
    tx: Arc<watch::Sender<FetchState>>,
) -> Result<u64, String> {
    let (r, alg) = (repo.clone(), digest.algorithm());
    let st = Arc::clone(storage);
    let (id, sink) = tokio::task::spawn_blocking(move || {
        // The registry's own session: no client cap counts it.
        let sink = st.start_upload(&r, alg, None)?;
        Ok::<_, crate::storage::StorageError>((sink.id().to_owned(), sink))
    })
    .await
    .map_err(|e| format!("storage task failed: {e}"))?
    .map_err(|e| format!("cannot start an upload: {e}"))?;
    let (bytes_tx, mut bytes_rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let writer = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        let mut written = 0u64;
        while let Some(bytes) = bytes_rx.blocking_recv() {
            (&*spool)
                .write_all(&bytes)
                .map_err(|e| format!("cannot spool: {e}"))?;
            sink.write(&bytes).map_err(|e| e.to_string())?;
            written += bytes.len() as u64;
            tx.send_modify(|s| {
                if let FetchState::Running { written: w, .. } = s {
                    *w = written;
                }
            });
        }
        Ok::<_, String>((sink, written))
    });
    let announced = download.size;
    let mut stream = download.stream;
    let mut received = 0u64;
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                received += bytes.len() as u64;
                if announced.is_some_and(|a| received > a) {
                    failure = Some(format!(
                        "more than the {} bytes announced",
                        announced.unwrap_or(0)
                    ));
                    break;
                }
                if bytes_tx.send(bytes).await.is_err() {
                    break; // the writer failed: its error says why
                }
            }
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    drop(bytes_tx);
    let written = writer.await.map_err(|e| format!("spool task failed: {e}"))?;
    let outcome = match (written, failure) {
        (Err(e), _) | (Ok(_), Some(e)) => Err(e),
        (Ok((_, n)), None) if announced.is_some_and(|a| a != n) => Err(format!(
            "{n} bytes, the upstream announced {}",
            announced.unwrap_or(0)
        )),
        (Ok((sink, n)), None) => {
            let d = digest.clone();
            return match tokio::task::spawn_blocking(move || sink.finish(&d)).await {
                Ok(Ok(_)) => Ok(n),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("upload task failed: {e}")),
            };
        }
    };
    crate::service::discard_upload(storage, repo, &id).await;
    outcome
}

/// A response body reading bytes `start..end` of a download's spool as it grows. While the download
/// runs, the last byte available is held back, and so is the last byte of the answer: a client gets the
/// whole of what it asked for only once the blob's digest was verified; a refused blob ends the body with
/// an error (the connection is cut short).
fn spool_body(fetch: Arc<Fetch>, rx: watch::Receiver<FetchState>, start: u64, end: Option<u64>) -> Body {
    struct Reader {
        fetch: Arc<Fetch>,
        rx: watch::Receiver<FetchState>,
        pos: u64,
        end: Option<u64>,
        ended: bool,
    }
    let reader = Reader {
        fetch,
        rx,
        pos: start,
        end,
        ended: false,
    };
    let fail = |mut r: Reader, message: String| {
        r.ended = true;
        Some((Err(std::io::Error::other(message)), r))
    };
    Body::from_stream(futures_util::stream::unfold(reader, move |mut r| async move {
        if r.ended {
            return None;
        }
        loop {
            let state = r.rx.borrow_and_update().clone();
            let end = r.end.unwrap_or(u64::MAX);
            let (available, done) = match &state {
                FetchState::Running { written, .. } => ((*written).min(end).saturating_sub(1), false),
                FetchState::Done { size } => ((*size).min(end), true),
                FetchState::Failed(m) => return fail(r, m.clone()),
                FetchState::Resolving | FetchState::Missing => (0, false),
            };
            if r.pos < available {
                let (file, pos) = (Arc::clone(&r.fetch.spool), r.pos);
                let len = (available - pos).min(256 * 1024) as usize;
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len];
                    let n = file.read_at(&mut buf, pos)?;
                    buf.truncate(n);
                    Ok::<_, std::io::Error>(buf)
                })
                .await;
                return match read {
                    Ok(Ok(buf)) if !buf.is_empty() => {
                        r.pos += buf.len() as u64;
                        Some((Ok(Bytes::from(buf)), r))
                    }
                    Ok(Ok(_)) => fail(r, "the spool is shorter than written".to_owned()),
                    Ok(Err(e)) => fail(r, format!("cannot read the spool: {e}")),
                    Err(e) => fail(r, format!("spool task failed: {e}")),
                };
            }
            if done {
                return None;
            }
            if r.rx.changed().await.is_err() {
                return fail(r, "the download ended early".to_owned());
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_keep_docker_hub_bare_and_prefix_other_hosts() {
        assert_eq!(local_name("library/busybox", None), "library/busybox");
        assert_eq!(
            local_name("library/busybox", Some("docker.io")),
            "library/busybox"
        );
        assert_eq!(local_name("docker.io/library/busybox", None), "library/busybox");
        assert_eq!(local_name("org/img", Some("quay.io")), "quay.io/org/img");
        assert_eq!(local_name("quay.io/org/img", Some("quay.io")), "quay.io/org/img");
        assert_eq!(local_name("quay.io/org/img", None), "quay.io/org/img");
        assert_eq!(local_name("x", Some("index.docker.io")), "x");
        assert_eq!(local_name("x", Some("bad host")), "x");
    }

    #[test]
    fn upstream_names_split_the_host_and_add_library() {
        assert_eq!(
            upstream_name("busybox"),
            ("docker.io", "library/busybox".to_owned())
        );
        assert_eq!(upstream_name("org/img"), ("docker.io", "org/img".to_owned()));
        assert_eq!(
            upstream_name("quay.io/org/img"),
            ("quay.io", "org/img".to_owned())
        );
        assert_eq!(upstream_name("localhost/img"), ("localhost", "img".to_owned()));
    }

    #[test]
    fn upstream_urls() {
        assert_eq!(
            parse_upstream_url("http://127.0.0.1:5000/").unwrap(),
            ("127.0.0.1:5000".to_owned(), true)
        );
        assert_eq!(
            parse_upstream_url("registry-1.docker.io").unwrap(),
            ("registry-1.docker.io".to_owned(), false)
        );
        assert!(parse_upstream_url("ftp://x").is_err());
        assert!(parse_upstream_url("https://x/v2/").is_err());
        assert!(parse_upstream_url("https://").is_err());
    }

    #[test]
    fn build_ids_must_prefix_a_tag() {
        assert!(valid_build("a1b2-c3.d_4"));
        assert!(!valid_build(""));
        assert!(!valid_build("-x"));
        assert!(!valid_build("a/b"));
        let options = PullThroughOptions {
            builds: vec!["a:b".to_owned()],
            ..PullThroughOptions::default()
        };
        assert!(matches!(
            PullThrough::new(options),
            Err(PullThroughError::InvalidBuild { .. })
        ));
    }
}
