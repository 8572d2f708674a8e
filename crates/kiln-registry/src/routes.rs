//! HTTP: turns requests into service and storage calls. One fallback handler parses the path itself,
//! because repository names contain `/`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt as _, StreamExt as _};
use kiln_oci::{Algorithm, Digest, media_types};

use crate::RegistryConfig;
use crate::auth::{self, Action, Caller, Need};
use crate::error::{ErrorCode, RegistryError};
use crate::names::{
    RangeAnswer, Reference, RepoName, Tag, parse_content_range, parse_range, parse_upload_id,
};
use crate::observe::{BlobEvent, Described, User};
use crate::pull_through::{self, PulledBlob};
use crate::service::{self, blocking, storage_error};
use crate::storage::{Storage, StorageError, UploadSink};

/// Shared state of the handlers.
pub(crate) struct App {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) config: RegistryConfig,
}

type Result<T> = std::result::Result<T, RegistryError>;

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// The one handler: routes, answers, adds the API version header; the user goes to the access log
/// (crate::observe) through the response's extensions.
pub(crate) async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let mut user = String::new();
    let mut response = match route(&app, request, &mut user).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    if !user.is_empty() {
        response.extensions_mut().insert(User(user));
    }
    response
}

enum Route {
    Base,
    Health,
    Token,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
    UploadStart(String),
    Upload(String, String),
    Referrers(String, String),
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_route(path: &str) -> Option<Route> {
    match path {
        "/v2" | "/v2/" => return Some(Route::Base),
        "/healthz" => return Some(Route::Health),
        "/token" => return Some(Route::Token),
        "/v2/_catalog" => return Some(Route::Catalog),
        _ => {}
    }
    let rest = path.strip_prefix("/v2/")?;
    // Split first, then decode each segment: an encoded `/` stays inside its segment (and fails validation);
    // undecodable segments become a NUL that no name, tag or digest accepts.
    let decoded: Vec<String> = rest
        .split('/')
        .map(|s| percent_decode(s).unwrap_or_else(|| "\0".to_owned()))
        .collect();
    let seg: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let n = seg.len();
    let name = |k: usize| seg[..n - k].join("/");
    if n >= 3 && seg[n - 2] == "tags" && seg[n - 1] == "list" {
        return Some(Route::Tags(name(2)));
    }
    if n >= 4 && seg[n - 1].is_empty() && seg[n - 2] == "uploads" && seg[n - 3] == "blobs" {
        return Some(Route::UploadStart(name(3)));
    }
    if n >= 3 && seg[n - 1] == "uploads" && seg[n - 2] == "blobs" {
        return Some(Route::UploadStart(name(2)));
    }
    if n >= 4 && seg[n - 2] == "uploads" && seg[n - 3] == "blobs" {
        return Some(Route::Upload(name(3), seg[n - 1].to_owned()));
    }
    if n >= 3 {
        let last = seg[n - 1].to_owned();
        match seg[n - 2] {
            "blobs" => return Some(Route::Blob(name(2), last)),
            "manifests" => return Some(Route::Manifest(name(2), last)),
            "referrers" => return Some(Route::Referrers(name(2), last)),
            _ => {}
        }
    }
    None
}

/// The route template and repository of a path, for logs and metrics.
pub(crate) fn describe(path: &str) -> Described {
    let route = parse_route(path);
    let (template, name) = match &route {
        None => ("unknown", None),
        Some(Route::Base) => ("/v2/", None),
        Some(Route::Health) => ("/healthz", None),
        Some(Route::Token) => ("/token", None),
        Some(Route::Catalog) => ("/v2/_catalog", None),
        Some(Route::Tags(n)) => ("/v2/{name}/tags/list", Some(n)),
        Some(Route::Manifest(n, _)) => ("/v2/{name}/manifests/{reference}", Some(n)),
        Some(Route::Blob(n, _)) => ("/v2/{name}/blobs/{digest}", Some(n)),
        Some(Route::UploadStart(n)) => ("/v2/{name}/blobs/uploads/", Some(n)),
        Some(Route::Upload(n, _)) => ("/v2/{name}/blobs/uploads/{id}", Some(n)),
        Some(Route::Referrers(n, _)) => ("/v2/{name}/referrers/{digest}", Some(n)),
    };
    Described {
        route: template,
        repo: name.and_then(|n| n.parse().ok()),
        blob_upload: matches!(route, Some(Route::UploadStart(_) | Route::Upload(..))),
        blob_read: matches!(route, Some(Route::Blob(..))),
    }
}

fn bad_request(code: ErrorCode, message: impl Into<String>) -> RegistryError {
    RegistryError::new(StatusCode::BAD_REQUEST, code, message)
}

fn repo_name(s: &str) -> Result<RepoName> {
    s.parse()
        .map_err(|e: crate::names::NameError| bad_request(ErrorCode::NameInvalid, e.to_string()))
}

fn digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e: kiln_oci::DigestError| bad_request(ErrorCode::DigestInvalid, e.to_string()))
}

fn unsupported_method(method: &Method) -> RegistryError {
    RegistryError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Unsupported,
        format!("method {method} is not supported here"),
    )
}

fn header_value(s: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(s).map_err(|e| RegistryError::internal(format!("bad header value {s:?}: {e}")))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The query as a list of pairs (repeated keys kept); a malformed query is a 400.
fn query_pairs(request: &Request) -> Result<Vec<(String, String)>> {
    Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .map(|q| q.0)
        .map_err(|e| bad_request(ErrorCode::Unsupported, format!("malformed query: {e}")))
}

fn query_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// With pull-through, GETs and HEADs of manifests and blobs read the repository an image is kept under
/// (`?ns=HOST` of containerd's mirror requests applied, a leading `docker.io/` dropped: see
/// [`pull_through::local_name`]). The route is rewritten to that name before anything is authorized, so
/// that access rules and tokens are checked on the repository actually read, never on the name in the URL.
fn served_route(app: &App, route: Route, method: &Method, request: &Request) -> Result<Route> {
    let reads = *method == Method::GET || *method == Method::HEAD;
    if app.config.pull_through.is_none() || !reads {
        return Ok(route);
    }
    let pairs = query_pairs(request)?;
    let local = |name: String| {
        let local = pull_through::local_name(&name, query_get(&pairs, "ns"));
        // A name that the mapping makes invalid (an `ns` with capitals) is served as it was asked for.
        if local.parse::<RepoName>().is_ok() {
            local
        } else {
            name
        }
    };
    Ok(match route {
        Route::Manifest(n, r) => Route::Manifest(local(n), r),
        Route::Blob(n, d) => Route::Blob(local(n), d),
        other => other,
    })
}

/// What a request needs from the auth layer. Names are validated first (400 before 401).
fn need(route: &Route, method: &Method) -> Result<Need> {
    let action = |read: bool| {
        if *method == Method::DELETE {
            Action::Delete
        } else if read {
            Action::Pull
        } else {
            Action::Push
        }
    };
    let reads = *method == Method::GET || *method == Method::HEAD;
    let repo = |name: &str, action: Action| Ok(Need::Repository(repo_name(name)?.to_string(), action));
    match route {
        Route::Health | Route::Token => Ok(Need::Nothing),
        Route::Base => Ok(Need::Login),
        Route::Catalog => Ok(Need::Catalog),
        Route::Tags(n) | Route::Referrers(n, _) => repo(n, Action::Pull),
        Route::Manifest(n, _) | Route::Blob(n, _) => repo(n, action(reads)),
        // Cancelling an upload is part of pushing, not a delete.
        Route::UploadStart(n) | Route::Upload(n, _) => repo(n, Action::Push),
    }
}

async fn route(app: &Arc<App>, request: Request, user: &mut String) -> Result<Response> {
    let path = request.uri().path().to_owned();
    let Some(route) = parse_route(&path) else {
        return Err(RegistryError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            format!("no endpoint at {path}"),
        ));
    };
    let method = request.method().clone();
    let route = served_route(app, route, &method, &request)?;
    let caller = auth::authorize(&app.config.auth, request.headers(), &need(&route, &method)?).await?;
    user.push_str(caller.user().unwrap_or_default());
    match route {
        Route::Token => match method {
            Method::GET => {
                let pairs = query_pairs(&request)?;
                let body = auth::issue_token(&app.config.auth, request.headers(), &pairs).await?;
                Ok((
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response())
            }
            _ => Err(RegistryError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::Unsupported,
                "the token endpoint answers GET only".to_owned(),
            )),
        },
        Route::Base | Route::Health => match method {
            Method::GET | Method::HEAD => {
                Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response())
            }
            _ => Err(unsupported_method(&method)),
        },
        Route::Catalog => match method {
            Method::GET => catalog(app, &caller, pagination(&request)?).await,
            _ => Err(unsupported_method(&method)),
        },
        Route::Tags(name) => {
            let repo = repo_name(&name)?;
            match method {
                Method::GET => tags(app, &repo, pagination(&request)?).await,
                _ => Err(unsupported_method(&method)),
            }
        }
        Route::Blob(name, d) => {
            let repo = repo_name(&name)?;
            let d = digest(&d)?;
            match method {
                Method::GET | Method::HEAD => {
                    let range = header_str(request.headers(), &header::RANGE).map(str::to_owned);
                    get_blob(app, &repo, &d, method == Method::HEAD, range).await
                }
                Method::DELETE => delete_blob(app, &repo, &d).await,
                _ => Err(unsupported_method(&method)),
            }
        }
        Route::UploadStart(name) => {
            let repo = repo_name(&name)?;
            match method {
                Method::POST => start_upload(app, repo, request, &caller).await,
                _ => Err(unsupported_method(&method)),
            }
        }
        Route::Upload(name, id) => {
            let repo = repo_name(&name)?;
            let Some(id) = parse_upload_id(&id) else {
                return Err(RegistryError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::BlobUploadUnknown,
                    format!("upload {id} is unknown in repository {repo}"),
                ));
            };
            match method {
                Method::GET => upload_status(app, &repo, &id).await,
                Method::PATCH => patch_upload(app, repo, id, request).await,
                Method::PUT => put_upload(app, repo, id, request).await,
                Method::DELETE => {
                    let (r, i) = (repo.clone(), id.clone());
                    blocking(&app.storage, move |s| s.cancel_upload(&r, &i)).await?;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                _ => Err(unsupported_method(&method)),
            }
        }
        Route::Manifest(name, reference) => {
            let repo = repo_name(&name)?;
            let reference: Reference =
                reference
                    .parse()
                    .map_err(|e: crate::names::ReferenceError| match e {
                        crate::names::ReferenceError::Digest(e) => {
                            bad_request(ErrorCode::DigestInvalid, e.to_string())
                        }
                        crate::names::ReferenceError::Tag(e) => {
                            bad_request(ErrorCode::ManifestInvalid, e.to_string())
                        }
                    })?;
            match method {
                Method::GET | Method::HEAD => {
                    get_manifest(app, repo, reference, method == Method::HEAD).await
                }
                Method::PUT => put_manifest(app, repo, reference, request).await,
                Method::DELETE => delete_manifest(app, repo, reference).await,
                _ => Err(unsupported_method(&method)),
            }
        }
        Route::Referrers(name, d) => {
            let repo = repo_name(&name)?;
            let d = digest(&d)?;
            match method {
                Method::GET => {
                    let pairs = query_pairs(&request)?;
                    let filter = query_get(&pairs, "artifactType").map(str::to_owned);
                    let (bytes, filtered) = service::referrers(&app.storage, &repo, &d, filter).await?;
                    let mut response = (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, media_types::OCI_INDEX)],
                        bytes,
                    )
                        .into_response();
                    if filtered {
                        response
                            .headers_mut()
                            .insert(FILTERS_APPLIED, HeaderValue::from_static("artifactType"));
                    }
                    Ok(response)
                }
                _ => Err(unsupported_method(&method)),
            }
        }
    }
}

fn pagination(request: &Request) -> Result<(Option<usize>, Option<String>)> {
    let pairs = query_pairs(request)?;
    let n = match query_get(&pairs, "n") {
        None | Some("") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            bad_request(
                ErrorCode::PaginationNumberInvalid,
                format!("n={n} is not a non-negative integer"),
            )
        })?),
    };
    Ok((n, query_get(&pairs, "last").map(str::to_owned)))
}

fn paged_response(
    key: &str,
    extra: Option<(&str, &str)>,
    items: Vec<String>,
    more: bool,
    base: &str,
    n: Option<usize>,
) -> Result<Response> {
    let mut body = serde_json::Map::new();
    if let Some((k, v)) = extra {
        body.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
    }
    let last = items.last().cloned();
    body.insert(key.to_owned(), serde_json::Value::from(items));
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::Value::Object(body).to_string(),
    )
        .into_response();
    if more && let (Some(n), Some(last)) = (n, last) {
        let link = format!("<{base}?n={n}&last={last}>; rel=\"next\"");
        response.headers_mut().insert(header::LINK, header_value(&link)?);
    }
    Ok(response)
}

/// The catalog lists the repositories the caller may pull (all of them unless the registry is restricted
/// or rules limit its user); pagination applies to that list.
async fn catalog(
    app: &Arc<App>,
    caller: &Caller,
    (n, last): (Option<usize>, Option<String>),
) -> Result<Response> {
    let mut all = blocking(&app.storage, |s| s.repositories()).await?;
    all.retain(|repo| caller.may_list(&app.config.auth, repo));
    let (items, more) = service::paginate(all, n, last.as_deref());
    paged_response("repositories", None, items, more, "/v2/_catalog", n)
}

async fn tags(
    app: &Arc<App>,
    repo: &RepoName,
    (n, last): (Option<usize>, Option<String>),
) -> Result<Response> {
    let r = repo.clone();
    let Some(all) = blocking(&app.storage, move |s| s.tags(&r)).await? else {
        return Err(RegistryError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NameUnknown,
            format!("repository {repo} is unknown"),
        ));
    };
    let (items, more) = service::paginate(all, n, last.as_deref());
    let base = format!("/v2/{repo}/tags/list");
    paged_response("tags", Some(("name", repo.as_str())), items, more, &base, n)
}

fn blob_unknown(repo: &RepoName, d: &Digest) -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::BlobUnknown,
        format!("blob {d} is unknown in repository {repo}"),
    )
    .with_detail(serde_json::json!({ "digest": d.to_string() }))
}

/// A blob reader and what its last read gave.
type BlobReadResult = (Box<dyn crate::storage::BlobRead>, std::io::Result<Vec<u8>>);

/// Reads the next `want` bytes of a blob (after seeking to `seek`) on the blocking pool.
fn read_ahead(
    mut reader: Box<dyn crate::storage::BlobRead>,
    seek: Option<u64>,
    want: usize,
) -> tokio::task::JoinHandle<BlobReadResult> {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let mut read = || {
            if let Some(at) = seek {
                reader.seek(SeekFrom::Start(at))?;
            }
            let mut buf = vec![0u8; want];
            let n = reader.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>(buf)
        };
        let result = read();
        (reader, result)
    })
}

/// Streams `len` bytes from `start` of a blob, reading 256 KiB at a time on the blocking pool, one read
/// ahead of what the client has taken. No read waits on the client: one that reads slowly, or not at all,
/// holds no thread.
fn stream_blob(reader: Box<dyn crate::storage::BlobRead>, start: u64, len: u64) -> Body {
    const CHUNK: u64 = 256 * 1024;
    /// The read in flight (none once the stream ended or failed) and the bytes not read yet.
    struct Reading {
        next: Option<tokio::task::JoinHandle<BlobReadResult>>,
        remaining: u64,
    }
    let reading = Reading {
        next: (len > 0).then(|| read_ahead(reader, Some(start), len.min(CHUNK) as usize)),
        remaining: len,
    };
    Body::from_stream(futures_util::stream::unfold(reading, |mut r| async move {
        let item = match r.next.take()?.await {
            Ok((reader, Ok(buf))) if !buf.is_empty() => {
                r.remaining -= buf.len() as u64;
                if r.remaining > 0 {
                    r.next = Some(read_ahead(reader, None, r.remaining.min(CHUNK) as usize));
                }
                Ok(Bytes::from(buf))
            }
            Ok((_, Ok(_))) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob is shorter than its size",
            )),
            Ok((_, Err(e))) => Err(e),
            Err(e) => Err(std::io::Error::other(format!("blob read task failed: {e}"))),
        };
        Some((item, r))
    }))
}

async fn get_blob(
    app: &Arc<App>,
    repo: &RepoName,
    d: &Digest,
    head: bool,
    range: Option<String>,
) -> Result<Response> {
    // A HEAD opens nothing: it asks for the size, and refreshes the blob's age (the client may skip
    // uploading it and rely on it in the manifest it pushes next).
    let open = || {
        let (r, dd) = (repo.clone(), d.clone());
        blocking(&app.storage, move |s| {
            if head {
                Ok(s.touch_blob(&r, &dd)?.map(|size| (None, size)))
            } else {
                Ok(s.open_blob(&r, &dd)?.map(|(reader, size)| (Some(reader), size)))
            }
        })
    };
    let (reader, size) = match open().await? {
        Some(opened) => opened,
        None => {
            let Some(pt) = &app.config.pull_through else {
                return Err(blob_unknown(repo, d));
            };
            let Some(pulled) = pt.blob(&app.storage, repo, d).await? else {
                return Err(blob_unknown(repo, d));
            };
            if !head {
                return pulled_blob(pulled, d, range.as_deref()).await;
            }
            // A HEAD waits until the blob is cached (a client that skips uploading a blob after a HEAD
            // must find it linked when its manifest is checked), then answers as for any stored blob.
            pulled.cached().await?;
            open().await?.ok_or_else(|| blob_unknown(repo, d))?
        }
    };
    let (status, start, len) = blob_range(d, size, range.as_deref())?;
    let body = match reader {
        Some(reader) => stream_blob(reader, start, len),
        None => Body::empty(),
    };
    blob_response(body, d, status, Some((start, len, size)))
}

/// What part of a blob of `size` bytes a `Range` header asks for: the status, first byte and length; a
/// range outside the blob is a 416.
fn blob_range(d: &Digest, size: u64, range: Option<&str>) -> Result<(StatusCode, u64, u64)> {
    match range.map_or(RangeAnswer::Full, |h| parse_range(h, size)) {
        RangeAnswer::Full => Ok((StatusCode::OK, 0, size)),
        RangeAnswer::Partial(a, b) => Ok((StatusCode::PARTIAL_CONTENT, a, b - a + 1)),
        RangeAnswer::Unsatisfiable => Err(RegistryError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUnknown,
            format!("range is outside blob {d} of {size} bytes"),
        )
        .with_header(header::CONTENT_RANGE, header_value(&format!("bytes */{size}"))?)),
    }
}

/// A blob response; `part` is (first byte, length, blob size) when known (a Content-Range goes with 206).
fn blob_response(
    body: Body,
    d: &Digest,
    status: StatusCode,
    part: Option<(u64, u64, u64)>,
) -> Result<Response> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(CONTENT_DIGEST, header_value(&d.to_string())?);
    if let Some((start, len, size)) = part {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if status == StatusCode::PARTIAL_CONTENT {
            h.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{}/{size}", start + len - 1))?,
            );
        }
    }
    Ok(response)
}

/// A GET of a blob the storage lacks, answered from the pull-through's download as it arrives. A Range is
/// answered from that download too (not forwarded upstream: the whole blob is fetched, verified and
/// cached); it waits for the blob's size when the upstream announced none.
async fn pulled_blob(mut pulled: PulledBlob, d: &Digest, range: Option<&str>) -> Result<Response> {
    let size = match (range, pulled.announced_size()) {
        (None, size) => size,
        (Some(_), Some(size)) => Some(size),
        (Some(_), None) => Some(pulled.size().await?),
    };
    let Some(size) = size else {
        return blob_response(pulled.body(0, None), d, StatusCode::OK, None);
    };
    let (status, start, len) = blob_range(d, size, range)?;
    let body = pulled.body(start, Some(start + len));
    blob_response(body, d, status, Some((start, len, size)))
}

async fn delete_blob(app: &Arc<App>, repo: &RepoName, d: &Digest) -> Result<Response> {
    let (r, dd) = (repo.clone(), d.clone());
    if blocking(&app.storage, move |s| s.delete_blob(&r, &dd)).await? {
        Ok(StatusCode::ACCEPTED.into_response())
    } else {
        Err(blob_unknown(repo, d))
    }
}

fn upload_location(repo: &RepoName, id: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// `Range: 0-<last byte>` as registries answer it (`0-0` for an empty session).
fn range_header(offset: u64) -> HeaderValue {
    let value = format!("0-{}", offset.saturating_sub(1));
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("0-0"))
}

fn upload_accepted(status: StatusCode, repo: &RepoName, id: &str, offset: u64) -> Result<Response> {
    let mut response = status.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, header_value(&upload_location(repo, id))?);
    h.insert(header::RANGE, range_header(offset));
    h.insert(UPLOAD_UUID, header_value(id)?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(response)
}

fn blob_created(repo: &RepoName, d: &Digest) -> Result<Response> {
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, header_value(&format!("/v2/{repo}/blobs/{d}"))?);
    h.insert(CONTENT_DIGEST, header_value(&d.to_string())?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(response)
}

/// Bytes of a request body gathered before they are written to its upload session in one blocking call.
const WRITE_BATCH: usize = 1024 * 1024;

/// An upload session being written: idle, or busy with one blocking write of a batch of frames.
enum Writer {
    Idle(Box<dyn UploadSink>),
    Busy(tokio::task::JoinHandle<(Box<dyn UploadSink>, std::result::Result<(), StorageError>)>),
}

impl Writer {
    /// The session once its write (if any) is done, with that write's result; `Err` when the write's
    /// task panicked (the session is lost with it; its slot was freed by its drop).
    async fn idle(self) -> Result<(Box<dyn UploadSink>, std::result::Result<(), StorageError>)> {
        match self {
            Writer::Idle(sink) => Ok((sink, Ok(()))),
            Writer::Busy(task) => task
                .await
                .map_err(|e| RegistryError::internal(format!("upload task failed: {e}"))),
        }
    }
}

/// Streams a request body into an upload session: the frames that have arrived (up to [`WRITE_BATCH`]
/// bytes) are written on the blocking pool together while the next ones arrive, one write at a time, so
/// receiving and writing overlap and a client that sends slowly holds no thread while it waits. The chunk
/// lands whole or not at all: on any failure the session is cut back to where it was. `declared` is the
/// chunk length the client announced (Content-Range); a different length is a 416.
async fn write_chunk(
    sink: Box<dyn UploadSink>,
    body: Body,
    declared: Option<u64>,
) -> (Box<dyn UploadSink>, Result<()>) {
    let start = sink.offset();
    let mut writer = Writer::Idle(sink);
    let mut stream = body.into_data_stream();
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0;
    let mut result = Ok(());
    let mut client_error = None;
    // A frame (or the end) that was there already when the previous one was taken.
    let mut ready = None;
    loop {
        let item = match ready.take() {
            Some(item) => item,
            None => stream.next().await,
        };
        let end = match item {
            Some(Ok(bytes)) => {
                batched += bytes.len();
                batch.push(bytes);
                false
            }
            Some(Err(e)) => {
                client_error = Some(e);
                break;
            }
            None => true,
        };
        // Frames that are there already join the batch; what arrived is written once none is.
        if !end {
            ready = stream.next().now_or_never();
        }
        if batched >= WRITE_BATCH || ((end || ready.is_none()) && batched > 0) {
            let (mut sink, written) = match writer.idle().await {
                Ok(idle) => idle,
                Err(e) => return (Box::new(LostSink), Err(e)),
            };
            if let Err(e) = written {
                result = Err(e);
                writer = Writer::Idle(sink);
                break;
            }
            let frames = std::mem::take(&mut batch);
            batched = 0;
            writer = Writer::Busy(tokio::task::spawn_blocking(move || {
                let r = frames.iter().try_for_each(|bytes| sink.write(bytes));
                (sink, r)
            }));
        }
        if end {
            break;
        }
    }
    let mut sink = match writer.idle().await {
        Ok((sink, written)) => {
            if result.is_ok() {
                result = written;
            }
            sink
        }
        Err(e) => return (Box::new(LostSink), Err(e)),
    };
    let written = sink.offset() - start;
    let error = match (result, client_error) {
        (Err(e), _) => Some(storage_error(e)),
        (Ok(()), Some(e)) => Some(RegistryError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BlobUploadInvalid,
            format!(
                "request body failed after {} bytes: {e}",
                written + batched as u64
            ),
        )),
        (Ok(()), None) => declared.filter(|d| *d != written).map(|declared| {
            RegistryError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
                format!("Content-Range announced {declared} bytes, the body had {written}"),
            )
        }),
    };
    match error {
        None => (sink, Ok(())),
        Some(e) => {
            let (sink, undo) = tokio::task::spawn_blocking(move || {
                let r = sink.truncate(start);
                (sink, r)
            })
            .await
            .unwrap_or_else(|_| (Box::new(LostSink) as Box<dyn UploadSink>, Ok(())));
            if let Err(u) = undo {
                tracing::error!(error = %u, "cannot undo a failed chunk");
            }
            (sink, Err(e))
        }
    }
}

/// Stands in for a sink lost with a panicked task.
struct LostSink;

impl UploadSink for LostSink {
    fn id(&self) -> &str {
        ""
    }
    fn offset(&self) -> u64 {
        0
    }
    fn write(&mut self, _: &[u8]) -> std::result::Result<(), crate::storage::StorageError> {
        Err(std::io::Error::other("upload lost").into())
    }
    fn truncate(&mut self, _: u64) -> std::result::Result<(), crate::storage::StorageError> {
        Err(std::io::Error::other("upload lost").into())
    }
    fn finish(self: Box<Self>, _: &Digest) -> std::result::Result<u64, crate::storage::StorageError> {
        Err(std::io::Error::other("upload lost").into())
    }
}

/// Checks a chunk's Content-Range against the session offset; returns the announced length.
fn check_content_range(headers: &HeaderMap, repo: &RepoName, id: &str, offset: u64) -> Result<Option<u64>> {
    let Some(value) = header_str(headers, &header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let out_of_order = |message: String| -> Result<RegistryError> {
        Ok(RegistryError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
            message,
        )
        .with_header(header::LOCATION, header_value(&upload_location(repo, id))?)
        .with_header(header::RANGE, range_header(offset))
        .with_header(UPLOAD_UUID, header_value(id)?))
    };
    let (start, end) = match parse_content_range(value) {
        Ok(r) => r,
        Err(e) => return Err(out_of_order(e.to_string())?),
    };
    if start != offset {
        return Err(out_of_order(format!(
            "chunk starts at {start}, upload {id} has {offset} bytes"
        ))?);
    }
    // `0-18446744073709551615` announces 2^64 bytes: no body can have that many (found by fuzzing: the
    // length overflowed, and wrapped to 0 in release builds, accepting an empty chunk).
    let Some(len) = (end - start).checked_add(1) else {
        return Err(out_of_order(format!(
            "Content-Range {value} announces more than 2^64 - 1 bytes"
        ))?);
    };
    if let Some(cl) = header_str(headers, &header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok())
        && cl != len
    {
        return Err(out_of_order(format!(
            "Content-Range {value} disagrees with Content-Length {cl}"
        ))?);
    }
    Ok(Some(len))
}

async fn resume(app: &Arc<App>, repo: &RepoName, id: &str) -> Result<Box<dyn UploadSink>> {
    let (r, i) = (repo.clone(), id.to_owned());
    blocking(&app.storage, move |s| s.resume_upload(&r, &i)).await
}

async fn upload_status(app: &Arc<App>, repo: &RepoName, id: &str) -> Result<Response> {
    let (r, i) = (repo.clone(), id.to_owned());
    let offset = blocking(&app.storage, move |s| s.upload_offset(&r, &i)).await?;
    upload_accepted(StatusCode::NO_CONTENT, repo, id, offset)
}

async fn patch_upload(app: &Arc<App>, repo: RepoName, id: String, request: Request) -> Result<Response> {
    let sink = resume(app, &repo, &id).await?;
    let declared = check_content_range(request.headers(), &repo, &id, sink.offset())?;
    let (sink, result) = write_chunk(sink, request.into_body(), declared).await;
    let offset = sink.offset();
    drop(sink);
    result?;
    upload_accepted(StatusCode::ACCEPTED, &repo, &id, offset)
}

async fn finish_upload(sink: Box<dyn UploadSink>, repo: &RepoName, d: &Digest) -> Result<Response> {
    let dd = d.clone();
    let size = tokio::task::spawn_blocking(move || sink.finish(&dd))
        .await
        .map_err(|e| RegistryError::internal(format!("upload task failed: {e}")))?
        .map_err(storage_error)?;
    let mut response = blob_created(repo, d)?;
    response.extensions_mut().insert(BlobEvent::Uploaded {
        digest: d.clone(),
        size,
    });
    Ok(response)
}

async fn put_upload(app: &Arc<App>, repo: RepoName, id: String, request: Request) -> Result<Response> {
    let pairs = query_pairs(&request)?;
    let d = digest(query_get(&pairs, "digest").ok_or_else(|| {
        bad_request(
            ErrorCode::DigestInvalid,
            "a PUT that completes an upload needs ?digest=",
        )
    })?)?;
    let sink = resume(app, &repo, &id).await?;
    let declared = check_content_range(request.headers(), &repo, &id, sink.offset())?;
    let (sink, result) = write_chunk(sink, request.into_body(), declared).await;
    result?;
    finish_upload(sink, &repo, &d).await
}

/// Who opens an upload session, for the per-client cap: the user when one authenticated, else the
/// client's IP address (`None` when the connection has none, e.g. in-process requests).
fn upload_client(request: &Request, caller: &Caller) -> Option<String> {
    if let Some(user) = caller.user() {
        return Some(format!("user {user}"));
    }
    let addr = request
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::ClientAddr>>()?;
    Some(format!("address {}", addr.0.0.ip()))
}

async fn start_upload(app: &Arc<App>, repo: RepoName, request: Request, caller: &Caller) -> Result<Response> {
    let pairs = query_pairs(&request)?;
    if let Some(mount) = query_get(&pairs, "mount") {
        let d = digest(mount)?;
        if let Some(from) = query_get(&pairs, "from") {
            let from = repo_name(from)?;
            // Mounting reads `from`: without pull there, the client uploads instead.
            let readable = caller.may(&app.config.auth, from.as_str(), Action::Pull);
            let (f, t, dd) = (from.clone(), repo.clone(), d.clone());
            if readable && blocking(&app.storage, move |s| s.mount_blob(&f, &t, &dd)).await? {
                let mut response = blob_created(&repo, &d)?;
                response
                    .extensions_mut()
                    .insert(BlobEvent::Mounted { from, digest: d });
                return Ok(response);
            }
        }
        // Not mountable: fall back to a new session (202), as the spec allows.
    }
    let algorithm = match query_get(&pairs, "digest-algorithm") {
        None => Algorithm::Sha256,
        Some(a) => Algorithm::from_name(a).ok_or_else(|| {
            bad_request(
                ErrorCode::DigestInvalid,
                format!("unsupported digest-algorithm `{a}`"),
            )
        })?,
    };
    let monolithic = match query_get(&pairs, "digest") {
        Some(d) if query_get(&pairs, "mount").is_none() => Some(digest(d)?),
        _ => None,
    };
    let algorithm = monolithic.as_ref().map_or(algorithm, Digest::algorithm);
    let (r, client) = (repo.clone(), upload_client(&request, caller));
    let sink = blocking(&app.storage, move |s| {
        s.start_upload(&r, algorithm, client.as_deref())
    })
    .await?;
    let id = sink.id().to_owned();
    let Some(d) = monolithic else {
        drop(sink);
        return upload_accepted(StatusCode::ACCEPTED, &repo, &id, 0);
    };
    let (sink, result) = write_chunk(sink, request.into_body(), None).await;
    if let Err(e) = result {
        drop(sink);
        service::discard_upload(&app.storage, &repo, &id).await;
        return Err(e);
    }
    finish_upload(sink, &repo, &d).await
}

fn manifest_unknown(repo: &RepoName, reference: &Reference) -> RegistryError {
    RegistryError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::ManifestUnknown,
        format!("manifest {reference} is unknown in repository {repo}"),
    )
}

async fn get_manifest(app: &Arc<App>, repo: RepoName, reference: Reference, head: bool) -> Result<Response> {
    let (r, rf) = (repo.clone(), reference.clone());
    let mut found = blocking(&app.storage, move |s| {
        let found = s.get_manifest(&r, &rf)?;
        if head && let Some(m) = &found {
            // The client may reference it from an index instead of pushing it again.
            s.touch_manifest(&r, &m.digest)?;
        }
        Ok(found)
    })
    .await?;
    if let (None, Some(pt)) = (&found, &app.config.pull_through) {
        found = pt.manifest(&app.storage, &repo, &reference).await?;
    }
    let Some(m) = found else {
        return Err(manifest_unknown(&repo, &reference));
    };
    let len = m.bytes.len();
    let mut response = Response::new(if head { Body::empty() } else { Body::from(m.bytes) });
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&m.media_type)?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(CONTENT_DIGEST, header_value(&m.digest.to_string())?);
    Ok(response)
}

/// Reads a manifest body, at most `limit` bytes (413 beyond).
async fn read_limited(body: Body, headers: &HeaderMap, limit: usize) -> Result<Vec<u8>> {
    let too_large = || {
        RegistryError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::SizeInvalid,
            format!("manifest is larger than {limit} bytes"),
        )
    };
    if let Some(cl) = header_str(headers, &header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok())
        && cl > limit as u64
    {
        return Err(too_large());
    }
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let bytes = frame
            .map_err(|e| bad_request(ErrorCode::ManifestInvalid, format!("request body failed: {e}")))?;
        if out.len() + bytes.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

async fn put_manifest(
    app: &Arc<App>,
    repo: RepoName,
    reference: Reference,
    request: Request,
) -> Result<Response> {
    let pairs = query_pairs(&request)?;
    let mut tags = Vec::new();
    let reference_digest = match &reference {
        Reference::Tag(t) => {
            tags.push(t.clone());
            None
        }
        Reference::Digest(d) => Some(d.clone()),
    };
    for (k, v) in &pairs {
        if k == "tag" {
            tags.push(
                v.parse::<Tag>()
                    .map_err(|e| bad_request(ErrorCode::ManifestInvalid, e.to_string()))?,
            );
        }
    }
    let content_type = header_str(request.headers(), &header::CONTENT_TYPE).map(str::to_owned);
    let headers = request.headers().clone();
    let bytes = read_limited(request.into_body(), &headers, app.config.max_manifest_bytes).await?;
    let (d, subject) = service::put_manifest(
        &app.storage,
        &repo,
        reference_digest.as_ref(),
        tags,
        content_type.as_deref(),
        bytes,
    )
    .await?;
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        header_value(&format!("/v2/{repo}/manifests/{d}"))?,
    );
    h.insert(CONTENT_DIGEST, header_value(&d.to_string())?);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    if let Some(subject) = subject {
        h.insert(OCI_SUBJECT, header_value(&subject.to_string())?);
    }
    Ok(response)
}

async fn delete_manifest(app: &Arc<App>, repo: RepoName, reference: Reference) -> Result<Response> {
    let (r, rf) = (repo.clone(), reference.clone());
    let deleted = blocking(&app.storage, move |s| match &rf {
        Reference::Tag(t) => s.delete_tag(&r, t),
        Reference::Digest(d) => s.delete_manifest(&r, d),
    })
    .await?;
    if deleted {
        Ok(StatusCode::ACCEPTED.into_response())
    } else {
        Err(manifest_unknown(&repo, &reference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(path: &str) -> Option<String> {
        parse_route(path).map(|route| match route {
            Route::Base => "base".to_owned(),
            Route::Health => "health".to_owned(),
            Route::Token => "token".to_owned(),
            Route::Catalog => "catalog".to_owned(),
            Route::Tags(n) => format!("tags {n}"),
            Route::Manifest(n, x) => format!("manifest {n} {x}"),
            Route::Blob(n, x) => format!("blob {n} {x}"),
            Route::UploadStart(n) => format!("start {n}"),
            Route::Upload(n, x) => format!("upload {n} {x}"),
            Route::Referrers(n, x) => format!("referrers {n} {x}"),
        })
    }

    #[test]
    fn routes_split_names_with_slashes_from_the_right() {
        assert_eq!(r("/v2/").as_deref(), Some("base"));
        assert_eq!(r("/v2/a/b/tags/list").as_deref(), Some("tags a/b"));
        assert_eq!(r("/v2/a/blobs/uploads/").as_deref(), Some("start a"));
        assert_eq!(r("/v2/a/blobs/uploads/x").as_deref(), Some("upload a x"));
        assert_eq!(
            r("/v2/a/blobs/b/blobs/sha256:1").as_deref(),
            Some("blob a/blobs/b sha256:1")
        );
        assert_eq!(
            r("/v2/manifests/manifests/latest").as_deref(),
            Some("manifest manifests latest")
        );
        assert_eq!(
            r("/v2/a/referrers/sha256:1").as_deref(),
            Some("referrers a sha256:1")
        );
        assert_eq!(r("/v2/blobs/x"), None);
        assert_eq!(r("/v3/a/tags/list"), None);
        assert_eq!(r("/v2/a/unknown/x"), None);
        assert_eq!(r("/v2/a/blobs/sha256%3A1").as_deref(), Some("blob a sha256:1"));
        assert_eq!(r("/v2/a/blobs/x%2fy").as_deref(), Some("blob a x/y"));
        assert_eq!(r("/v2/a%ff/blobs/x").as_deref(), Some("blob \0 x"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("sha256%3Aab").as_deref(), Some("sha256:ab"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn range_header_of_a_session() {
        assert_eq!(range_header(0), "0-0");
        assert_eq!(range_header(1), "0-0");
        assert_eq!(range_header(10), "0-9");
    }
}
