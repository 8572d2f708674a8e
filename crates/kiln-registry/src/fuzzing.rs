//! Drivers behind the fuzz targets `upload_machine` and `manifest_put` and their property tests. Each runs
//! the in-process registry (the public [`crate::router`] over an [`FsStorage`] in a temporary folder) and
//! panics when an invariant breaks. Compiled for `cargo test` and with the `fuzzing` feature only; not
//! part of the registry's API.
//!
//! - [`upload_sequence`] reads a sequence of requests from fuzzer bytes: POST (session, monolithic with a
//!   right, wrong, other-algorithm or malformed digest, mount), PATCH and PUT with right, shifted,
//!   mis-sized, malformed or overflowing `Content-Range`, bodies that arrive whole, in frames or fail
//!   half-way, a request on a session another request is writing, GET/DELETE of sessions (also through
//!   the wrong repository), Range GETs and deletes of finished blobs. It keeps a model of every session
//!   and blob and checks each answer against it: never a 5xx or a panic, every rejected step leaves its
//!   session where it was or cleanly gone (no `uploads/<id>` left), a finished blob reads back as the
//!   bytes sent and matches its digest, and at the end `uploads/` holds exactly the live sessions,
//!   `ingest/` nothing, and every stored blob verifies.
//! - [`manifest_put`] pushes one manifest body with a chosen Content-Type and reference next to known
//!   blobs and a child manifest, and checks the answer against `parse_manifest` and the fixtures: 201
//!   exactly when the manifest is valid and complete, then byte-exact reads by digest and tag with the
//!   stored content type, the referrers entry of its subject, and a clean delete.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, Method, Request, StatusCode, header};
use kiln_oci::manifest::{ManifestKind, parse_manifest};
use kiln_oci::{Algorithm, Digest};
use tower::ServiceExt as _;

use crate::{FsStorage, RegistryConfig};

/// Reads choices from fuzzer bytes; zeros once they run out.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.u8()) % n.max(1)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Content of a length the input picks: mostly small, sometimes larger than one body frame.
    fn content(&mut self) -> Vec<u8> {
        let len = match self.below(8) {
            0 => 0,
            7 => 70_000 + usize::from(self.u16()),
            _ => usize::from(self.u8()),
        };
        let seed = self.u8();
        (0..len)
            .map(|i| ((i % 251) as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A temporary registry root, on tmpfs when there is one (the registry fsyncs; tmpfs makes that free).
fn temp_root() -> tempfile::TempDir {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("kiln-fuzz-");
        b
    };
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = builder.tempdir_in(shm)
    {
        return dir;
    }
    builder.tempdir().expect("temporary folder")
}

const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("errors")?.get(0)?.get("code")?.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Asserts the value of a response header (`None`: absent).
    fn expect_header(&self, name: HeaderName, expected: Option<&str>, what: &str) {
        assert_eq!(self.header(name.clone()), expected, "{what}: {name}");
    }

    /// Asserts the status (and the error code of an error answer).
    fn expect(&self, what: &str, status: StatusCode, code: Option<&str>) {
        assert_eq!(
            self.status,
            status,
            "{what}: answer {} {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        if let Some(code) = code {
            assert_eq!(self.code(), code, "{what}: error code");
        }
    }
}

struct Registry {
    root: tempfile::TempDir,
    storage: FsStorage,
    router: axum::Router,
}

impl Registry {
    fn new() -> Registry {
        let root = temp_root();
        let storage = FsStorage::open(root.path()).expect("open the registry root");
        let router = crate::router(Arc::new(storage.clone()), RegistryConfig::default());
        Registry {
            root,
            storage,
            router,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    async fn send(&self, method: Method, uri: &str, headers: &[(HeaderName, String)], body: Body) -> Answer {
        let what = format!("{method} {uri}");
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder.body(body).expect("request");
        let Ok(response) = self.router.clone().oneshot(request).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("response body");
        assert!(
            !status.is_server_error(),
            "{what}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            headers
                .get("docker-distribution-api-version")
                .and_then(|v| v.to_str().ok()),
            Some("registry/2.0"),
            "{what}: API version header"
        );
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Method::GET, uri, &[], Body::empty()).await
    }

    /// Names in a folder of the root, sorted (temp files starting with `.` skipped).
    fn names(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(rel))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_owned))
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// How a request body arrives.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// One buffer.
    Whole,
    /// Frames of this many bytes.
    Frames(usize),
    /// The first bytes, then an error (the client went away).
    Fails(usize),
}

fn pick_shape(inp: &mut Input<'_>, len: usize) -> Shape {
    match inp.below(6) {
        0..=2 => Shape::Whole,
        // At most ~64 frames: tiny frames of a 100 KB body would only slow the fuzzer down.
        3 | 4 => Shape::Frames((1 + usize::from(inp.u16()) % 4096).max(len / 64)),
        _ => Shape::Fails(usize::from(inp.u16()) % (len + 1)),
    }
}

fn body_of(content: &[u8], shape: Shape) -> Body {
    let frames = |bytes: &[u8], size: usize| -> Vec<Result<Bytes, std::io::Error>> {
        bytes
            .chunks(size.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect()
    };
    match shape {
        Shape::Whole => Body::from(content.to_vec()),
        Shape::Frames(size) => Body::from_stream(futures_util::stream::iter(frames(content, size))),
        Shape::Fails(at) => {
            let mut parts = frames(&content[..at.min(content.len())], 4096);
            parts.push(Err(std::io::Error::other("the client went away")));
            Body::from_stream(futures_util::stream::iter(parts))
        }
    }
}

/// Which digest a completing request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestChoice {
    Right,
    /// Right, in the other algorithm than the session's.
    OtherAlgorithm,
    Wrong,
    Malformed,
    Missing,
}

fn pick_digest(inp: &mut Input<'_>, allow_missing: bool) -> DigestChoice {
    match inp.below(if allow_missing { 8 } else { 7 }) {
        0..=2 => DigestChoice::Right,
        3 => DigestChoice::OtherAlgorithm,
        4 | 5 => DigestChoice::Wrong,
        6 => DigestChoice::Malformed,
        _ => DigestChoice::Missing,
    }
}

fn other(a: Algorithm) -> Algorithm {
    match a {
        Algorithm::Sha256 => Algorithm::Sha512,
        _ => Algorithm::Sha256,
    }
}

const MALFORMED_DIGESTS: [&str; 5] = [
    "sha256:abc",
    "nope",
    "",
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "sha256:+",
];

/// The `digest` query value for `content`, and the digest a success stores it under.
fn digest_for(
    inp: &mut Input<'_>,
    choice: DigestChoice,
    content: &[u8],
    algorithm: Algorithm,
) -> (Option<String>, Option<Digest>) {
    match choice {
        DigestChoice::Right => {
            let d = algorithm.digest(content);
            (Some(d.to_string()), Some(d))
        }
        DigestChoice::OtherAlgorithm => {
            let d = other(algorithm).digest(content);
            (Some(d.to_string()), Some(d))
        }
        DigestChoice::Wrong => {
            let mut c = content.to_vec();
            c.push(1);
            (Some(algorithm.digest(&c).to_string()), None)
        }
        DigestChoice::Malformed => (
            Some(MALFORMED_DIGESTS[inp.below(MALFORMED_DIGESTS.len())].to_owned()),
            None,
        ),
        DigestChoice::Missing => (None, None),
    }
}

/// What a chunk's `Content-Range` says.
enum RangeChoice {
    None,
    Right,
    Shifted,
    Missized,
    Malformed,
    Overflowing,
}

const MALFORMED_RANGES: [&str; 7] = ["", "abc", "5", "-5", "bytes=", "3-1", "1-2-3"];

/// The header value, and `Ok(declared length)` when kiln must accept the range at `offset` (`Err` when it
/// must answer 416 before reading the body).
fn content_range(
    inp: &mut Input<'_>,
    choice: &RangeChoice,
    offset: u64,
    len: u64,
) -> (Option<String>, Result<Option<u64>, ()>) {
    let prefix = ["", "bytes ", "bytes="][inp.below(3)];
    match choice {
        RangeChoice::None => (None, Ok(None)),
        RangeChoice::Right if len > 0 => (
            Some(format!("{prefix}{offset}-{}", offset + len - 1)),
            Ok(Some(len)),
        ),
        RangeChoice::Right | RangeChoice::Shifted => {
            let k = 1 + u64::from(inp.u8());
            let start = if inp.below(2) == 0 || offset < k {
                offset + k
            } else {
                offset - k
            };
            let end = start + len.saturating_sub(1);
            (Some(format!("{prefix}{start}-{end}")), Err(()))
        }
        RangeChoice::Missized => {
            let declared = if len > 1 && inp.below(2) == 0 {
                len - 1
            } else {
                len + 1 + u64::from(inp.u8())
            };
            (
                Some(format!("{prefix}{offset}-{}", offset + declared - 1)),
                Ok(Some(declared)),
            )
        }
        RangeChoice::Malformed => (
            Some(MALFORMED_RANGES[inp.below(MALFORMED_RANGES.len())].to_owned()),
            Err(()),
        ),
        // Announces far more than the body holds: 416, before reading the body when the length does not
        // even fit in 64 bits, else after it.
        RangeChoice::Overflowing => (
            Some(format!("{prefix}{offset}-{}", u64::MAX)),
            (u64::MAX - offset).checked_add(1).map(Some).ok_or(()),
        ),
    }
}

fn pick_range(inp: &mut Input<'_>) -> RangeChoice {
    match inp.below(10) {
        0..=2 => RangeChoice::None,
        3..=5 => RangeChoice::Right,
        6 => RangeChoice::Shifted,
        7 => RangeChoice::Missized,
        8 => RangeChoice::Malformed,
        _ => RangeChoice::Overflowing,
    }
}

fn range_of(offset: usize) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

const REPOS: [&str; 3] = ["a", "b/c", "d"];

struct Session {
    repo: usize,
    id: String,
    algorithm: Algorithm,
    data: Vec<u8>,
    alive: bool,
}

impl Session {
    fn url(&self) -> String {
        format!("/v2/{}/blobs/uploads/{}", REPOS[self.repo], self.id)
    }
}

struct FinishedBlob {
    repo: usize,
    digest: Digest,
    data: Vec<u8>,
}

struct Machine {
    reg: Registry,
    sessions: Vec<Session>,
    blobs: Vec<FinishedBlob>,
}

/// Runs the upload state machine over `data` (see the module documentation). Panics on a broken invariant.
pub fn upload_sequence(data: &[u8]) {
    runtime().block_on(async {
        let mut machine = Machine {
            reg: Registry::new(),
            sessions: Vec::new(),
            blobs: Vec::new(),
        };
        let mut inp = Input { data };
        let mut steps = 0;
        while !inp.data.is_empty() && steps < 64 {
            steps += 1;
            match inp.below(12) {
                0 | 1 => machine.start(&mut inp).await,
                2 => machine.monolithic(&mut inp).await,
                3..=5 => machine.patch(&mut inp).await,
                6 => machine.put(&mut inp).await,
                7 => machine.status_or_cancel(&mut inp).await,
                8 => machine.wrong_repository(&mut inp).await,
                9 => machine.read_blob(&mut inp).await,
                10 => machine.mount_or_delete(&mut inp).await,
                _ => machine.concurrent(&mut inp).await,
            }
            machine.check_upload_folders();
        }
        machine.check_all().await;
    });
}

impl Machine {
    /// A session index (any state), or `None` for a session id nobody opened.
    fn pick_session(&self, inp: &mut Input<'_>) -> Option<usize> {
        let k = inp.below(self.sessions.len() + 1);
        (k < self.sessions.len()).then_some(k)
    }

    fn pick_alive(&self, inp: &mut Input<'_>) -> Option<usize> {
        let alive: Vec<usize> = (0..self.sessions.len())
            .filter(|&i| self.sessions[i].alive)
            .collect();
        (!alive.is_empty()).then(|| alive[inp.below(alive.len())])
    }

    /// The URL of a session nobody opened, and whether its id is a well-formed UUID (otherwise the route
    /// answers 404 before looking at anything else).
    fn unknown_url(inp: &mut Input<'_>) -> (String, bool) {
        let repo = REPOS[inp.below(REPOS.len())];
        let k = inp.below(4);
        let id = [
            "00000000-0000-4000-8000-000000000000",
            "not-a-uuid",
            "..",
            "%2e%2e",
        ][k];
        (format!("/v2/{repo}/blobs/uploads/{id}"), k == 0)
    }

    async fn start(&mut self, inp: &mut Input<'_>) {
        let repo = inp.below(REPOS.len());
        let algorithm = if inp.below(4) == 0 {
            Algorithm::Sha512
        } else {
            Algorithm::Sha256
        };
        let query = match algorithm {
            Algorithm::Sha256 => "",
            _ => "?digest-algorithm=sha512",
        };
        let uri = format!("/v2/{}/blobs/uploads/{query}", REPOS[repo]);
        let a = self.reg.send(Method::POST, &uri, &[], Body::empty()).await;
        a.expect(&uri, StatusCode::ACCEPTED, None);
        let location = a.header(header::LOCATION).expect("Location").to_owned();
        let prefix = format!("/v2/{}/blobs/uploads/", REPOS[repo]);
        let id = location
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{uri}: Location {location} is not under {prefix}"))
            .to_owned();
        a.expect_header(
            header::RANGE,
            Some("0-0"),
            &format!("{uri}: Range of a new session"),
        );
        a.expect_header(
            HeaderName::from_static("docker-upload-uuid"),
            Some(id.as_str()),
            &uri,
        );
        self.sessions.push(Session {
            repo,
            id,
            algorithm,
            data: Vec::new(),
            alive: true,
        });
    }

    async fn monolithic(&mut self, inp: &mut Input<'_>) {
        let repo = inp.below(REPOS.len());
        let content = inp.content();
        let choice = pick_digest(inp, false);
        let (query, stored) = digest_for(inp, choice, &content, Algorithm::Sha256);
        let shape = pick_shape(inp, content.len());
        let uri = format!(
            "/v2/{}/blobs/uploads/?digest={}",
            REPOS[repo],
            query.unwrap_or_default()
        );
        let a = self
            .reg
            .send(Method::POST, &uri, &[], body_of(&content, shape))
            .await;
        if choice == DigestChoice::Malformed {
            a.expect(&uri, StatusCode::BAD_REQUEST, Some("DIGEST_INVALID"));
        } else if matches!(shape, Shape::Fails(_)) {
            a.expect(&uri, StatusCode::BAD_REQUEST, Some("BLOB_UPLOAD_INVALID"));
        } else if let Some(digest) = stored {
            a.expect(&uri, StatusCode::CREATED, None);
            self.finished(&a, &uri, repo, digest, content).await;
        } else {
            a.expect(&uri, StatusCode::BAD_REQUEST, Some("DIGEST_INVALID"));
        }
    }

    /// Checks a 201 for a blob and records it.
    async fn finished(&mut self, a: &Answer, what: &str, repo: usize, digest: Digest, data: Vec<u8>) {
        let location = format!("/v2/{}/blobs/{digest}", REPOS[repo]);
        a.expect_header(header::LOCATION, Some(location.as_str()), what);
        a.expect_header(CONTENT_DIGEST, Some(digest.to_string().as_str()), what);
        let got = self.reg.get(&location).await;
        got.expect(&location, StatusCode::OK, None);
        assert!(
            got.body == data,
            "{location}: content differs from what was uploaded"
        );
        self.blobs.push(FinishedBlob { repo, digest, data });
    }

    /// After a rejected request on a live session: it must be unchanged or cleanly gone.
    async fn settle(&mut self, k: usize, what: &str) {
        let url = self.sessions[k].url();
        let a = self.reg.get(&url).await;
        if a.status == StatusCode::NOT_FOUND {
            self.sessions[k].alive = false;
            assert!(
                !self.reg.path("uploads").join(&self.sessions[k].id).exists(),
                "{what}: session is gone but uploads/{} is left",
                self.sessions[k].id
            );
        } else {
            a.expect(&format!("{what}, then GET {url}"), StatusCode::NO_CONTENT, None);
            a.expect_header(
                header::RANGE,
                Some(range_of(self.sessions[k].data.len()).as_str()),
                &format!("{what}: a rejected request changed the session"),
            );
        }
    }

    /// A chunk (PATCH) or the completing PUT, on a session or an unknown id.
    async fn patch(&mut self, inp: &mut Input<'_>) {
        self.chunk(inp, false).await;
    }

    async fn put(&mut self, inp: &mut Input<'_>) {
        self.chunk(inp, true).await;
    }

    async fn chunk(&mut self, inp: &mut Input<'_>, completing: bool) {
        let target = self.pick_session(inp);
        let content = if completing && inp.below(3) != 0 {
            Vec::new()
        } else {
            inp.content()
        };
        let shape = pick_shape(inp, content.len());
        let range = pick_range(inp);
        let with_length = inp.below(2) == 0 && !matches!(shape, Shape::Fails(_));
        let (url, offset, algorithm, alive, routable) = match target {
            Some(k) => {
                let s = &self.sessions[k];
                (s.url(), s.data.len(), s.algorithm, s.alive, true)
            }
            None => {
                let (url, routable) = Self::unknown_url(inp);
                (url, 0, Algorithm::Sha256, false, routable)
            }
        };
        let (range_header, range_ok) = content_range(inp, &range, offset as u64, content.len() as u64);
        let mut full = target.map(|k| self.sessions[k].data.clone()).unwrap_or_default();
        full.extend_from_slice(&content);
        let (choice, query, stored) = if completing {
            let choice = pick_digest(inp, true);
            let (q, d) = digest_for(inp, choice, &full, algorithm);
            (choice, q, d)
        } else {
            (DigestChoice::Missing, None, None)
        };
        let uri = match &query {
            Some(q) => format!("{url}?digest={q}"),
            None => url.clone(),
        };
        let mut headers = Vec::new();
        if let Some(r) = &range_header {
            headers.push((header::CONTENT_RANGE, r.clone()));
        }
        if with_length {
            headers.push((header::CONTENT_LENGTH, content.len().to_string()));
        }
        let method = if completing { Method::PUT } else { Method::PATCH };
        let what = format!(
            "{method} {uri} ({} bytes, {shape:?}, range {range_header:?})",
            content.len()
        );
        let a = self
            .reg
            .send(method, &uri, &headers, body_of(&content, shape))
            .await;
        // kiln's order: the upload id, the digest query, the session, the range, the body, the digest.
        if !routable {
            a.expect(&what, StatusCode::NOT_FOUND, Some("BLOB_UPLOAD_UNKNOWN"));
            return;
        }
        if completing && matches!(choice, DigestChoice::Malformed | DigestChoice::Missing) {
            a.expect(&what, StatusCode::BAD_REQUEST, Some("DIGEST_INVALID"));
            return;
        }
        let Some(k) = target.filter(|_| alive) else {
            a.expect(&what, StatusCode::NOT_FOUND, Some("BLOB_UPLOAD_UNKNOWN"));
            return;
        };
        let declared = match range_ok {
            Ok(declared) if declared.is_none_or(|d| !with_length || d == content.len() as u64) => declared,
            _ => {
                a.expect(
                    &what,
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    Some("BLOB_UPLOAD_INVALID"),
                );
                a.expect_header(
                    header::RANGE,
                    Some(range_of(offset).as_str()),
                    &format!("{what}: Range of a 416"),
                );
                self.settle(k, &what).await;
                assert!(
                    self.sessions[k].alive,
                    "{what}: a refused range ended the session"
                );
                return;
            }
        };
        if matches!(shape, Shape::Fails(_)) {
            a.expect(&what, StatusCode::BAD_REQUEST, Some("BLOB_UPLOAD_INVALID"));
            self.settle(k, &what).await;
            assert!(self.sessions[k].alive, "{what}: a failed body ended the session");
            return;
        }
        if declared.is_some_and(|d| d != content.len() as u64) {
            a.expect(
                &what,
                StatusCode::RANGE_NOT_SATISFIABLE,
                Some("BLOB_UPLOAD_INVALID"),
            );
            self.settle(k, &what).await;
            assert!(self.sessions[k].alive, "{what}: a short chunk ended the session");
            return;
        }
        if !completing {
            a.expect(&what, StatusCode::ACCEPTED, None);
            self.sessions[k].data = full;
            let s = &self.sessions[k];
            a.expect_header(header::RANGE, Some(range_of(s.data.len()).as_str()), &what);
            a.expect_header(header::LOCATION, Some(s.url().as_str()), &what);
            return;
        }
        match stored {
            Some(digest) => {
                a.expect(&what, StatusCode::CREATED, None);
                self.sessions[k].alive = false;
                let repo = self.sessions[k].repo;
                self.finished(&a, &what, repo, digest, full).await;
            }
            None => {
                a.expect(&what, StatusCode::BAD_REQUEST, Some("DIGEST_INVALID"));
                // The body may have been appended before the digest was checked; the session either
                // holds exactly what it held before, or is gone.
                self.settle(k, &what).await;
            }
        }
        let gone = self.reg.get(&url).await;
        if !self.sessions[k].alive {
            gone.expect(
                &format!("{what}, then GET"),
                StatusCode::NOT_FOUND,
                Some("BLOB_UPLOAD_UNKNOWN"),
            );
        }
    }

    async fn status_or_cancel(&mut self, inp: &mut Input<'_>) {
        let cancel = inp.below(3) == 0;
        let method = if cancel { Method::DELETE } else { Method::GET };
        let Some(k) = self.pick_session(inp) else {
            let (url, _) = Self::unknown_url(inp);
            let a = self.reg.send(method, &url, &[], Body::empty()).await;
            a.expect(&url, StatusCode::NOT_FOUND, Some("BLOB_UPLOAD_UNKNOWN"));
            return;
        };
        let url = self.sessions[k].url();
        let a = self.reg.send(method.clone(), &url, &[], Body::empty()).await;
        let what = format!("{method} {url}");
        if !self.sessions[k].alive {
            a.expect(&what, StatusCode::NOT_FOUND, Some("BLOB_UPLOAD_UNKNOWN"));
        } else if cancel {
            a.expect(&what, StatusCode::NO_CONTENT, None);
            self.sessions[k].alive = false;
            assert!(
                !self.reg.path("uploads").join(&self.sessions[k].id).exists(),
                "{what}: files left"
            );
        } else {
            a.expect(&what, StatusCode::NO_CONTENT, None);
            a.expect_header(
                header::RANGE,
                Some(range_of(self.sessions[k].data.len()).as_str()),
                &what,
            );
        }
    }

    /// A live session addressed through another repository is unknown there, and stays as it was.
    async fn wrong_repository(&mut self, inp: &mut Input<'_>) {
        let Some(k) = self.pick_alive(inp) else { return };
        let (repo, id) = (self.sessions[k].repo, self.sessions[k].id.clone());
        let other_repo = (repo + 1 + inp.below(REPOS.len() - 1)) % REPOS.len();
        let digest = self.sessions[k].algorithm.digest(&self.sessions[k].data);
        let (method, query) = match inp.below(4) {
            0 => (Method::GET, String::new()),
            1 => (Method::PATCH, String::new()),
            2 => (Method::DELETE, String::new()),
            _ => (Method::PUT, format!("?digest={digest}")),
        };
        let uri = format!("/v2/{}/blobs/uploads/{id}{query}", REPOS[other_repo]);
        let a = self.reg.send(method, &uri, &[], Body::from(vec![7u8; 3])).await;
        a.expect(&uri, StatusCode::NOT_FOUND, Some("BLOB_UPLOAD_UNKNOWN"));
        self.settle(k, &uri).await;
        assert!(
            self.sessions[k].alive,
            "{uri}: ended a session of another repository"
        );
    }

    async fn read_blob(&mut self, inp: &mut Input<'_>) {
        if self.blobs.is_empty() {
            return;
        }
        let b = &self.blobs[inp.below(self.blobs.len())];
        let uri = format!("/v2/{}/blobs/{}", REPOS[b.repo], b.digest);
        let len = b.data.len() as u64;
        let n = |inp: &mut Input<'_>| u64::from(inp.u8()) % (len + 3);
        let range = match inp.below(5) {
            0 => None,
            1 => {
                let a = n(inp);
                Some(format!("bytes={a}-{}", a + n(inp)))
            }
            2 => Some(format!("bytes=-{}", n(inp))),
            3 => Some(format!("bytes={}-", n(inp))),
            _ => Some(["bytes=", "bytes=5-2", "items=0-1", "bytes=0-1,3-4"][inp.below(4)].to_owned()),
        };
        let head = inp.below(4) == 0;
        let headers: Vec<(HeaderName, String)> = range.iter().map(|r| (header::RANGE, r.clone())).collect();
        let method = if head { Method::HEAD } else { Method::GET };
        let a = self.reg.send(method, &uri, &headers, Body::empty()).await;
        let what = format!("GET {uri} {range:?}");
        let length: Option<u64> = a.header(header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
        match a.status {
            StatusCode::OK => {
                assert_eq!(length, Some(len), "{what}: Content-Length");
                assert!(head || a.body == b.data, "{what}: content");
            }
            StatusCode::PARTIAL_CONTENT => {
                assert!(range.is_some(), "{what}: 206 without a Range");
                let cr = a.header(header::CONTENT_RANGE).expect("Content-Range").to_owned();
                let (span, total) = cr
                    .strip_prefix("bytes ")
                    .and_then(|s| s.split_once('/'))
                    .unwrap_or_else(|| panic!("{what}: Content-Range {cr}"));
                let (s, e) = span.split_once('-').expect("span");
                let (s, e): (u64, u64) = (s.parse().expect("start"), e.parse().expect("end"));
                assert_eq!(total, len.to_string(), "{what}: size in {cr}");
                assert!(s <= e && e < len, "{what}: {cr}");
                assert_eq!(length, Some(e - s + 1), "{what}: Content-Length");
                assert!(
                    head || a.body[..] == b.data[s as usize..=e as usize],
                    "{what}: content of {cr}"
                );
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                assert!(range.is_some(), "{what}: 416 without a Range");
                a.expect_header(
                    header::CONTENT_RANGE,
                    Some(format!("bytes */{len}").as_str()),
                    &what,
                );
            }
            other => panic!("{what}: answer {other}"),
        }
    }

    async fn mount_or_delete(&mut self, inp: &mut Input<'_>) {
        if self.blobs.is_empty() {
            return;
        }
        let i = inp.below(self.blobs.len());
        let (from, digest, data) = {
            let b = &self.blobs[i];
            (b.repo, b.digest.clone(), b.data.clone())
        };
        if inp.below(4) == 0 {
            let uri = format!("/v2/{}/blobs/{digest}", REPOS[from]);
            let a = self.reg.send(Method::DELETE, &uri, &[], Body::empty()).await;
            if self.blobs.iter().any(|b| b.repo == from && b.digest == digest) {
                a.expect(&uri, StatusCode::ACCEPTED, None);
            }
            self.blobs.retain(|b| !(b.repo == from && b.digest == digest));
            self.reg
                .get(&uri)
                .await
                .expect(&uri, StatusCode::NOT_FOUND, Some("BLOB_UNKNOWN"));
            return;
        }
        let to = inp.below(REPOS.len());
        let uri = format!(
            "/v2/{}/blobs/uploads/?mount={digest}&from={}",
            REPOS[to], REPOS[from]
        );
        let a = self.reg.send(Method::POST, &uri, &[], Body::empty()).await;
        a.expect(&uri, StatusCode::CREATED, None);
        self.finished(&a, &uri, to, digest, data).await;
    }

    /// A second request on a session while a PATCH is still receiving its body.
    async fn concurrent(&mut self, inp: &mut Input<'_>) {
        let Some(k) = self.pick_alive(inp) else { return };
        let url = self.sessions[k].url();
        let first = vec![0x5a; 1 + usize::from(inp.u8())];
        let rest = vec![0xa5; usize::from(inp.u8())];
        let second = inp.below(4);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let router = self.reg.router.clone();
        let patch_uri = url.clone();
        let writer = tokio::spawn(async move {
            let request = Request::builder()
                .method(Method::PATCH)
                .uri(&patch_uri)
                .body(body)
                .expect("request");
            let Ok(response) = router.oneshot(request).await;
            response.status()
        });
        tx.send(Ok(Bytes::from(first.clone()))).await.expect("send");
        // Wait until the PATCH holds the session and has written its first bytes.
        let data_file = self.reg.path("uploads").join(&self.sessions[k].id).join("data");
        let want = (self.sessions[k].data.len() + first.len()) as u64;
        let mut waited = 0;
        while std::fs::metadata(&data_file).map_or(0, |m| m.len()) < want {
            assert!(waited < 10_000, "PATCH {url}: the first bytes never arrived");
            tokio::time::sleep(Duration::from_millis(1)).await;
            waited += 1;
        }
        let what = format!("request {second} on {url} during a PATCH");
        let cancelled = match second {
            0 => {
                let a = self
                    .reg
                    .send(Method::PATCH, &url, &[], Body::from(vec![1u8; 5]))
                    .await;
                a.expect(&what, StatusCode::CONFLICT, Some("BLOB_UPLOAD_INVALID"));
                false
            }
            1 => {
                let d = self.sessions[k].algorithm.digest(&self.sessions[k].data);
                let uri = format!("{url}?digest={d}");
                let a = self.reg.send(Method::PUT, &uri, &[], Body::empty()).await;
                a.expect(&what, StatusCode::CONFLICT, Some("BLOB_UPLOAD_INVALID"));
                false
            }
            2 => {
                let a = self.reg.get(&url).await;
                a.expect(&what, StatusCode::NO_CONTENT, None);
                false
            }
            _ => {
                let a = self.reg.send(Method::DELETE, &url, &[], Body::empty()).await;
                a.expect(&what, StatusCode::NO_CONTENT, None);
                true
            }
        };
        if !rest.is_empty() {
            tx.send(Ok(Bytes::from(rest.clone()))).await.expect("send");
        }
        drop(tx);
        let status = writer.await.expect("PATCH task");
        assert!(!status.is_server_error(), "PATCH {url} after {what}: {status}");
        if cancelled {
            self.sessions[k].alive = false;
            self.reg
                .get(&url)
                .await
                .expect(&what, StatusCode::NOT_FOUND, None);
            assert!(!data_file.exists(), "{what}: files left after the cancel");
        } else {
            assert_eq!(status, StatusCode::ACCEPTED, "PATCH {url} after {what}");
            self.sessions[k].data.extend_from_slice(&first);
            self.sessions[k].data.extend_from_slice(&rest);
        }
    }

    /// `uploads/` holds exactly the live sessions.
    fn check_upload_folders(&self) {
        let mut alive: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| s.alive)
            .map(|s| s.id.clone())
            .collect();
        alive.sort();
        assert_eq!(
            self.reg.names("uploads"),
            alive,
            "uploads/ differs from the live sessions"
        );
    }

    async fn check_all(&mut self) {
        for k in 0..self.sessions.len() {
            let url = self.sessions[k].url();
            let a = self.reg.get(&url).await;
            if self.sessions[k].alive {
                a.expect(&url, StatusCode::NO_CONTENT, None);
                a.expect_header(
                    header::RANGE,
                    Some(range_of(self.sessions[k].data.len()).as_str()),
                    &format!("{url}: Range at the end"),
                );
            } else {
                a.expect(&url, StatusCode::NOT_FOUND, Some("BLOB_UPLOAD_UNKNOWN"));
            }
        }
        self.check_upload_folders();
        assert_eq!(
            self.reg.names("ingest"),
            Vec::<String>::new(),
            "ingest/ is not empty"
        );
        for b in &self.blobs {
            let uri = format!("/v2/{}/blobs/{}", REPOS[b.repo], b.digest);
            let a = self.reg.get(&uri).await;
            a.expect(&uri, StatusCode::OK, None);
            assert!(a.body == b.data, "{uri}: content at the end");
        }
        let store = self.reg.storage.blob_store();
        for digest in store.list().expect("list blobs") {
            assert!(
                store.verify(&digest).unwrap_or(false),
                "stored blob {digest} does not match its digest"
            );
        }
    }
}

/// The blobs and child manifest the manifest fixtures reference (repository `m`).
pub const MANIFEST_CONFIG: &[u8] = b"{\"architecture\":\"amd64\",\"os\":\"linux\"}";
/// A layer of the fixtures.
pub const MANIFEST_LAYER: &[u8] = b"kiln fuzz layer";

fn child_manifest() -> Vec<u8> {
    let config = Algorithm::Sha256.digest(MANIFEST_CONFIG);
    format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
         \"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config}\",\"size\":{}}},\
         \"layers\":[]}}",
        MANIFEST_CONFIG.len()
    )
    .into_bytes()
}

/// Whether the referrers index of `subject` in repository `m` lists `digest` (and the URL asked).
async fn referrer_listed(reg: &Registry, subject: &Digest, digest: &Digest) -> (String, bool) {
    let get = format!("/v2/m/referrers/{subject}");
    let g = reg.get(&get).await;
    g.expect(&get, StatusCode::OK, None);
    let index: serde_json::Value = serde_json::from_slice(&g.body).expect("referrers JSON");
    let listed = index["manifests"]
        .as_array()
        .is_some_and(|m| m.iter().any(|d| d["digest"] == digest.to_string()));
    (get, listed)
}

const CONTENT_TYPES: [Option<&str>; 9] = [
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/json"),
    Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
    Some("text/plain"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
];

/// Pushes the manifest described by `data` (content-type selector, reference selector, body) and checks
/// the registry's answer against `parse_manifest` and the fixtures. Panics on a broken invariant.
pub fn manifest_put(data: &[u8]) {
    runtime().block_on(async {
        let reg = Registry::new();
        let mut sizes: Vec<(Digest, u64, bool)> = Vec::new();
        for blob in [MANIFEST_CONFIG, MANIFEST_LAYER] {
            let d = Algorithm::Sha256.digest(blob);
            let uri = format!("/v2/m/blobs/uploads/?digest={d}");
            reg.send(Method::POST, &uri, &[], Body::from(blob.to_vec()))
                .await
                .expect(&uri, StatusCode::CREATED, None);
            sizes.push((d, blob.len() as u64, false));
        }
        let child = child_manifest();
        let child_digest = Algorithm::Sha256.digest(&child);
        let uri = "/v2/m/manifests/child";
        let headers = [(
            header::CONTENT_TYPE,
            "application/vnd.oci.image.manifest.v1+json".to_owned(),
        )];
        reg.send(Method::PUT, uri, &headers, Body::from(child.clone()))
            .await
            .expect(uri, StatusCode::CREATED, None);
        sizes.push((child_digest.clone(), child.len() as u64, true));

        let mut inp = Input { data };
        let content_type = CONTENT_TYPES[inp.below(CONTENT_TYPES.len())];
        let reference_kind = inp.below(5);
        let body = inp.data.to_vec();
        let sha256 = Algorithm::Sha256.digest(&body);
        let (reference, expected_digest, tags): (String, Digest, Vec<&str>) = match reference_kind {
            0 | 1 => ("v1".to_owned(), sha256.clone(), vec!["v1"]),
            2 => (
                format!("{sha256}?tag=t1&tag=t2"),
                sha256.clone(),
                vec!["t1", "t2"],
            ),
            3 => {
                let d = Algorithm::Sha512.digest(&body);
                (d.to_string(), d, vec![])
            }
            _ => {
                let mut wrong = body.clone();
                wrong.push(b'\n');
                let d = Algorithm::Sha256.digest(&wrong);
                (d.to_string(), d, vec![])
            }
        };
        let digest_matches = reference_kind != 4;
        let uri = format!("/v2/m/manifests/{reference}");
        let headers: Vec<(HeaderName, String)> = content_type
            .iter()
            .map(|c| (header::CONTENT_TYPE, (*c).to_owned()))
            .collect();
        let a = reg
            .send(Method::PUT, &uri, &headers, Body::from(body.clone()))
            .await;
        let what = format!("PUT {uri} ({content_type:?}, {} bytes)", body.len());

        let parsed = parse_manifest(&body, content_type);
        let complete = parsed.as_ref().is_ok_and(|refs| {
            let (wanted, as_manifest) = match refs.kind {
                ManifestKind::Image => (&refs.blobs, false),
                ManifestKind::Index => (&refs.manifests, true),
            };
            wanted.iter().all(|d| {
                sizes
                    .iter()
                    .any(|(digest, size, m)| *digest == d.digest && *size == d.size && *m == as_manifest)
            })
        });
        let refs = match parsed {
            Ok(refs) if complete && digest_matches => refs,
            _ => {
                a.expect(&what, StatusCode::BAD_REQUEST, None);
                let code = a.code();
                assert!(
                    [
                        "MANIFEST_INVALID",
                        "DIGEST_INVALID",
                        "MANIFEST_BLOB_UNKNOWN",
                        "SIZE_INVALID"
                    ]
                    .contains(&code.as_str()),
                    "{what}: error code {code}"
                );
                if expected_digest != child_digest {
                    let get = format!("/v2/m/manifests/{expected_digest}");
                    reg.get(&get)
                        .await
                        .expect(&get, StatusCode::NOT_FOUND, Some("MANIFEST_UNKNOWN"));
                }
                return;
            }
        };
        a.expect(&what, StatusCode::CREATED, None);
        a.expect_header(CONTENT_DIGEST, Some(expected_digest.to_string().as_str()), &what);
        a.expect_header(
            HeaderName::from_static("oci-subject"),
            refs.subject.as_ref().map(|s| s.digest.to_string()).as_deref(),
            &what,
        );
        let stored_type = match content_type {
            Some(ct) if ct.split(';').next().map(str::trim) == Some(refs.media_type.as_str()) => {
                ct.to_owned()
            }
            _ => refs.media_type.clone(),
        };
        let mut names = vec![expected_digest.to_string()];
        names.extend(tags.iter().map(|t| (*t).to_owned()));
        for name in &names {
            let get = format!("/v2/m/manifests/{name}");
            let g = reg.get(&get).await;
            g.expect(&get, StatusCode::OK, None);
            assert!(g.body == body, "{get}: bytes differ from the pushed ones");
            g.expect_header(header::CONTENT_TYPE, Some(stored_type.as_str()), &get);
            g.expect_header(CONTENT_DIGEST, Some(expected_digest.to_string().as_str()), &get);
        }
        if let Some(subject) = &refs.subject {
            let (get, listed) = referrer_listed(&reg, &subject.digest, &expected_digest).await;
            assert!(listed, "{get}: {expected_digest} is not listed");
        }
        let del = format!("/v2/m/manifests/{expected_digest}");
        reg.send(Method::DELETE, &del, &[], Body::empty())
            .await
            .expect(&del, StatusCode::ACCEPTED, None);
        for name in &names {
            let get = format!("/v2/m/manifests/{name}");
            reg.get(&get)
                .await
                .expect(&get, StatusCode::NOT_FOUND, Some("MANIFEST_UNKNOWN"));
        }
        if let Some(subject) = &refs.subject {
            let (get, listed) = referrer_listed(&reg, &subject.digest, &expected_digest).await;
            assert!(!listed, "{get}: deleted {expected_digest} is still listed");
        }
    });
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The committed fuzz seeds of a target (`fuzz/corpus/<target>/seed-*`).
    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        files.retain(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seed-"))
        });
        files.sort();
        assert!(!files.is_empty(), "no seeds in {}", dir.display());
        files.iter().map(|p| std::fs::read(p).expect("seed")).collect()
    }

    #[test]
    fn upload_seeds_pass() {
        for seed in seeds("upload_machine") {
            upload_sequence(&seed);
        }
    }

    #[test]
    fn manifest_seeds_pass() {
        for seed in seeds("manifest_put") {
            manifest_put(&seed);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn upload_state_machine(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            upload_sequence(&data);
        }

        #[test]
        fn manifest_mutations(pick in any::<usize>(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4)) {
            let all = seeds("manifest_put");
            let mut data = all[pick % all.len()].clone();
            for (at, byte) in flips {
                if !data.is_empty() {
                    let i = at % data.len();
                    data[i] = byte;
                }
            }
            manifest_put(&data);
        }
    }
}
