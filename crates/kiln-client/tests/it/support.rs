//! Registries for the tests: kiln's own in-process, Debian's docker-registry (distribution 2.8) as a child
//! process, and proxies in front of them that count requests, flip bytes of blobs, demand Docker tokens
//! (an in-test token issuer: no real token server is installed here) or cut a connection mid-upload.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kiln_client::auth::{CredentialSource, Credentials};
use kiln_client::{Client, ClientConfig};
use kiln_oci::ImageStore;
use kiln_oci::import::{ImportOptions, import};
use kiln_oci::manifest::Descriptor;

/// A registry under test, at `addr`, with a name for messages.
pub trait Registry {
    fn addr(&self) -> SocketAddr;
    fn kind(&self) -> &'static str;
    fn host(&self) -> String {
        self.addr().to_string()
    }
}

/// kiln's registry in-process on 127.0.0.1:0.
pub struct KilnServe {
    pub addr: SocketAddr,
    _root: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

pub async fn kiln_serve() -> KilnServe {
    let root = tempfile::tempdir().unwrap();
    let storage = kiln_registry::FsStorage::open(root.path()).unwrap();
    let app = kiln_registry::router(Arc::new(storage), kiln_registry::RegistryConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        kiln_registry::serve(listener, app, kiln_registry::ServeOptions::default(), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    KilnServe {
        addr,
        _root: root,
        stop: Some(stop),
    }
}

impl KilnServe {
    /// The registry's storage root.
    pub fn root(&self) -> &Path {
        self._root.path()
    }
}

impl Drop for KilnServe {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Registry for KilnServe {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn kind(&self) -> &'static str {
        "kiln serve"
    }
}

/// Debian's `docker-registry serve` on a free loopback port; its access log goes to `log`.
pub struct Distribution {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl Distribution {
    /// `None` (skipped with a reason, or a panic under KILN_REQUIRE_PEERS=1) without docker-registry.
    /// With `user`, pushes and pulls need basic auth (an htpasswd file with a bcrypt hash).
    pub async fn start(user: Option<(&str, &str)>) -> Option<Distribution> {
        if !kiln_test_support::require_tool("docker-registry") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let addr = free_port();
        let auth = match user {
            Some((name, password)) => {
                let hash = bcrypt::hash(password, 5).unwrap();
                let file = dir.path().join("htpasswd");
                fs_err::write(&file, format!("{name}:{hash}\n")).unwrap();
                format!(
                    "auth: {{htpasswd: {{realm: kiln-test, path: {}}}}}\n",
                    file.display()
                )
            }
            None => String::new(),
        };
        let config = dir.path().join("reg.yml");
        fs_err::write(
            &config,
            format!(
                "version: 0.1\nlog: {{accesslog: {{disabled: false}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: {addr}}}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = dir.path().join("log");
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            // The access log goes to stdout, the application log to stderr.
            .stdout(fs_err::File::create(&log).unwrap().into_parts().0)
            .stderr(
                fs_err::File::create(dir.path().join("stderr"))
                    .unwrap()
                    .into_parts()
                    .0,
            )
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Some(Distribution {
            addr,
            log,
            child,
            _dir: dir,
        })
    }

    /// Access-log lines (method and path) written so far.
    pub fn requests(&self) -> Vec<String> {
        fs_err::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.split('"')
                    .find(|part| {
                        ["GET ", "HEAD ", "PUT ", "POST ", "PATCH ", "DELETE "]
                            .iter()
                            .any(|m| part.starts_with(m))
                    })
                    .map(str::to_owned)
            })
            .collect()
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry for Distribution {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn kind(&self) -> &'static str {
        "docker-registry"
    }
}

/// A client with no credentials from the environment and quick retries.
pub fn client(creds: Option<&str>) -> Client {
    client_with(creds, |_| {})
}

pub fn client_with(creds: Option<&str>, tweak: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut config = ClientConfig {
        credentials: CredentialSource {
            explicit: creds.map(|c| Credentials::parse(c).unwrap()),
            files: Vec::new(),
            helper_path: None,
        },
        backoff: std::time::Duration::from_millis(20),
        ..ClientConfig::default()
    };
    tweak(&mut config);
    Client::new(config)
}

/// A store holding the busybox base image as `name`; `None` when busybox-static is missing.
pub fn busybox_store(dir: &Path, name: &str) -> Option<(ImageStore, Descriptor)> {
    let root = kiln_test_support::busybox_root(dir)?;
    let store = ImageStore::open(dir.join("store")).unwrap();
    let imported = import(
        &store,
        &root,
        &ImportOptions {
            name: Some(name.to_owned()),
            ..ImportOptions::default()
        },
    )
    .unwrap();
    Some((store, imported[0].descriptor.clone()))
}

/// Pulls `name` (`repository:tag`) straight from `registry` into a fresh store under `dir` and checks
/// that it is the image `expected` names.
pub async fn pulls_back(
    client: &Client,
    registry: &dyn Registry,
    name: &str,
    expected: &Descriptor,
    dir: &Path,
) {
    let direct: kiln_client::Reference = format!("{}/{name}", registry.host()).parse().unwrap();
    let other = ImageStore::open(dir.join(format!("pulled-{}", name.replace([':', '/'], "-")))).unwrap();
    let host = kiln_client::PlatformChoice::One(kiln_client::Platform::host());
    let pulled = client.pull_image(&direct, &other, "x", &host).await.unwrap();
    assert_eq!(
        pulled.digest,
        expected.digest,
        "{} from {}",
        name,
        registry.kind()
    );
}

/// What a proxy does besides forwarding.
#[derive(Default, Clone)]
pub struct ProxyMode {
    /// Flip the first byte of every blob body it returns.
    pub flip_blobs: bool,
    /// Demand Docker tokens, issued by `/token` to this user.
    pub bearer: Option<(String, String)>,
    /// Once: the first blob download that goes past this many bytes is cut there (the connection
    /// drops in the middle of the body).
    pub cut_download_after: Option<u64>,
    /// Once per entry: the first request of this method to a repository is answered with this status
    /// (and `Retry-After: 0`) instead of being forwarded.
    pub fail_once: Vec<(&'static str, u16)>,
}

/// An HTTP reverse proxy in front of a registry, recording `METHOD PATH` of every request.
pub struct Proxy {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    pub tokens_issued: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Proxy {
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl Registry for Proxy {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn kind(&self) -> &'static str {
        "proxy"
    }
}

/// The repository a `/v2/<name>/(blobs|manifests|tags)/…` path names.
fn repository_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    for marker in ["/blobs/", "/manifests/", "/tags/"] {
        if let Some(pos) = rest.rfind(marker) {
            return Some(rest[..pos].to_owned());
        }
    }
    None
}

pub async fn proxy(upstream: SocketAddr, mode: ProxyMode) -> Proxy {
    use axum::body::Body;
    use axum::http::{Response, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let tokens_issued = Arc::new(AtomicUsize::new(0));
    let _already = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let cut_armed = Arc::new(AtomicBool::new(mode.cut_download_after.is_some()));
    let failures = Arc::new(Mutex::new(mode.fail_once.clone()));
    let state = (
        log.clone(),
        tokens_issued.clone(),
        mode,
        http,
        cut_armed,
        failures,
    );
    let handler = move |request: axum::extract::Request| {
        let (log, issued, mode, http, cut_armed, failures) = state.clone();
        async move {
            let method = request.method().clone();
            let path_and_query = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let path = request.uri().path().to_owned();
            let range = request
                .headers()
                .get("range")
                .and_then(|v| v.to_str().ok())
                .map(|r| format!(" [Range: {r}]"))
                .unwrap_or_default();
            log.lock().unwrap().push(format!("{method} {path}{range}"));
            if repository_of(&path).is_some() || path.contains("/blobs/uploads/") {
                let failure = {
                    let mut failures = failures.lock().unwrap();
                    let at = failures.iter().position(|(m, _)| *m == method.as_str());
                    at.map(|at| failures.remove(at).1)
                };
                if let Some(status) = failure {
                    log.lock()
                        .unwrap()
                        .push(format!("answered {status} to {method} {path}"));
                    return Response::builder()
                        .status(status)
                        .header("retry-after", "0")
                        .body(Body::from(
                            "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"try again\"}]}",
                        ))
                        .unwrap();
                }
            }
            if let Some((user, password)) = &mode.bearer {
                let challenge = |scope: Option<String>| {
                    let mut value = format!("Bearer realm=\"http://{addr}/token\",service=\"kiln-test\"");
                    if let Some(scope) = scope {
                        value.push_str(&format!(",scope=\"{scope}\""));
                    }
                    Response::builder()
                        .status(StatusCode::UNAUTHORIZED)
                        .header("www-authenticate", value)
                        .header("docker-distribution-api-version", "registry/2.0")
                        .body(Body::from(
                            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"token needed\"}]}",
                        ))
                        .unwrap()
                };
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                if path == "/token" {
                    use base64::Engine as _;
                    let expected = format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                    );
                    if header("authorization") != expected {
                        return Response::builder()
                            .status(StatusCode::UNAUTHORIZED)
                            .body(Body::from("bad credentials"))
                            .unwrap();
                    }
                    let query = request.uri().query().unwrap_or("");
                    let scopes: Vec<String> = query
                        .split('&')
                        .filter_map(|kv| kv.strip_prefix("scope="))
                        .map(|s| s.replace("%3A", ":").replace("%2F", "/").replace("%2C", ","))
                        .collect();
                    let n = issued.fetch_add(1, Ordering::SeqCst);
                    let token = format!("t{n}|{}", scopes.join("|"));
                    return Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(format!(
                            "{{\"token\":\"{token}\",\"expires_in\":300}}"
                        )))
                        .unwrap();
                }
                let token = header("authorization");
                let granted: Vec<&str> = token
                    .strip_prefix("Bearer ")
                    .map(|t| t.split('|').skip(1).collect())
                    .unwrap_or_default();
                match repository_of(&path) {
                    None if token.starts_with("Bearer t") => {}
                    None => return challenge(None),
                    Some(repo) => {
                        let action = if method == "GET" || method == "HEAD" {
                            "pull"
                        } else {
                            "push"
                        };
                        let ok = granted.iter().any(|g| {
                            g.strip_prefix(&format!("repository:{repo}:"))
                                .is_some_and(|actions| actions.split(',').any(|a| a == action))
                        });
                        if !ok {
                            return challenge(Some(format!("repository:{repo}:pull,push")));
                        }
                    }
                }
            }
            let mut forward = http.request(method.clone(), format!("http://{upstream}{path_and_query}"));
            for (name, value) in request.headers() {
                if name != "authorization" && name != "content-length" {
                    forward = forward.header(name, value);
                }
            }
            if let Some(len) = request.headers().get("content-length") {
                forward = forward.header("content-length", len);
            }
            let body = reqwest::Body::wrap_stream(request.into_body().into_data_stream());
            let answer = match forward.body(body).send().await {
                Ok(a) => a,
                Err(e) => {
                    return Response::builder()
                        .status(StatusCode::BAD_GATEWAY)
                        .body(Body::from(e.to_string()))
                        .unwrap();
                }
            };
            let mut response = Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                if name != "transfer-encoding" && name != "connection" {
                    response = response.header(name.as_str(), value.as_bytes());
                }
            }
            let blob_get = method == "GET" && path.contains("/blobs/sha");
            let mut first = mode.flip_blobs && blob_get;
            let cut_after = mode.cut_download_after.filter(|_| blob_get);
            let mut sent = 0u64;
            let stream = futures_util::StreamExt::flat_map(answer.bytes_stream(), move |chunk| {
                let mut out: Vec<Result<bytes::Bytes, std::io::Error>> = Vec::new();
                match chunk {
                    Err(e) => out.push(Err(std::io::Error::other(e))),
                    Ok(mut bytes) => {
                        if first && !bytes.is_empty() {
                            first = false;
                            let mut v = bytes.to_vec();
                            v[0] ^= 0xff;
                            bytes = bytes::Bytes::from(v);
                        }
                        let len = bytes.len() as u64;
                        match cut_after {
                            Some(limit) if sent + len > limit && cut_armed.swap(false, Ordering::SeqCst) => {
                                out.push(Ok(bytes.slice(..(limit - sent) as usize)));
                                out.push(Err(std::io::Error::other("cut by the test proxy")));
                                log.lock()
                                    .unwrap()
                                    .push(format!("cut {path} after {limit} bytes"));
                            }
                            _ => out.push(Ok(bytes)),
                        }
                        sent += len;
                    }
                }
                futures_util::stream::iter(out)
            });
            response.body(Body::from_stream(stream)).unwrap()
        }
    };
    let app = axum::Router::new().fallback(handler);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Proxy {
        addr,
        log,
        tokens_issued,
        stop: Some(stop),
    }
}

/// A TCP proxy that drops the connection carrying the byte number `cut_after` of client-to-registry
/// traffic (once), as a flaky network would in the middle of an upload.
pub struct CutProxy {
    pub addr: SocketAddr,
    pub cuts: Arc<AtomicUsize>,
}

pub async fn cut_proxy(upstream: SocketAddr, cut_after: u64) -> CutProxy {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cuts = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let armed = Arc::new(AtomicBool::new(true));
    let task_cuts = cuts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let (sent, armed, cuts) = (sent.clone(), armed.clone(), task_cuts.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = cr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        let before = sent.fetch_add(n as u64, Ordering::SeqCst);
                        if before + n as u64 > cut_after && armed.swap(false, Ordering::SeqCst) {
                            let keep = cut_after.saturating_sub(before) as usize;
                            let _ = sw.write_all(&buf[..keep.min(n)]).await;
                            cuts.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let down = async {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                tokio::select! {
                    () = up => {}
                    () = down => {}
                }
            });
        }
    });
    CutProxy { addr, cuts }
}
