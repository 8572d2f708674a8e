//! The HTTP side: one connection pool per registry, scheme and TLS choice, authentication (anonymous,
//! basic, Docker token flow with a token cache per scope) and retries with exponential backoff.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};

use crate::auth::{Challenge, CredentialSource, Credentials, parse_challenge};
use crate::error::{ClientError, causes};
use crate::progress::{NoProgress, Progress};
use crate::reference::{endpoint_of, is_loopback};
use crate::stall::{Activity, ReadTimeout, Sending};
use crate::tls::CertDir;

/// How the client connects and transfers.
#[derive(Clone)]
pub struct ClientConfig {
    /// Where credentials come from.
    pub credentials: CredentialSource,
    /// Verify TLS certificates and refuse plain HTTP to non-loopback registries (`--tls-verify`).
    /// `false` (`--insecure`) accepts any certificate and falls back to plain HTTP for every registry.
    pub tls_verify: bool,
    /// A folder of `*.crt` CA certificates and `*.cert`/`*.key` client certificate pairs (`--cert-dir`),
    /// used for every registry. Without it, `/etc/containers/certs.d/<host>/` and
    /// `/etc/docker/certs.d/<host>/` are read when they exist.
    pub cert_dir: Option<PathBuf>,
    /// Retries of a request after a connection error, 429 or 5xx.
    pub retries: u32,
    /// The first backoff delay; it doubles with each retry (capped at 10 s; `Retry-After` wins).
    pub backoff: Duration,
    /// Blobs larger than this are uploaded in PATCH chunks of this size; smaller ones in one PUT.
    pub chunk_size: u64,
    /// Blobs of one image transferred at once.
    pub concurrency: usize,
    /// A request attempt fails (and is retried) when no byte moves for this long: while its body is
    /// sent, while its answer is awaited, or while the answer's body is read (`--read-timeout`).
    pub read_timeout: Duration,
    /// Progress reports.
    pub progress: Arc<dyn Progress>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("tls_verify", &self.tls_verify)
            .field("cert_dir", &self.cert_dir)
            .field("retries", &self.retries)
            .field("chunk_size", &self.chunk_size)
            .field("concurrency", &self.concurrency)
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

/// [`ClientConfig::read_timeout`] by default.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            credentials: CredentialSource::from_env(None),
            tls_verify: true,
            cert_dir: None,
            retries: 5,
            backoff: Duration::from_millis(200),
            chunk_size: 64 * 1024 * 1024,
            concurrency: 4,
            read_timeout: DEFAULT_READ_TIMEOUT,
            progress: Arc::new(NoProgress),
        }
    }
}

/// A connection to one registry: its base URL, HTTP client and authentication challenge.
#[derive(Debug)]
pub(crate) struct Conn {
    pub registry: String,
    pub base: Url,
    pub http: reqwest::Client,
    /// Learned from `/v2/`, or from the first 401 of a registry that answers `/v2/` anonymously.
    challenge: Mutex<Option<Challenge>>,
    credentials: Option<Credentials>,
}

/// A registry client. Cheap to share (`Arc`); connections and tokens are cached per registry and scope.
pub struct Client {
    pub(crate) config: ClientConfig,
    conns: tokio::sync::Mutex<HashMap<String, Arc<Conn>>>,
    /// Held while a token is fetched, so that concurrent requests of one scope share one token.
    tokens: tokio::sync::Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The access a request needs: `repository:<name>:pull` or `…:pull,push`.
pub(crate) fn scope(repository: &str, push: bool) -> String {
    format!(
        "repository:{repository}:{}",
        if push { "pull,push" } else { "pull" }
    )
}

fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Whether an error is worth another try (connection trouble, 429, 5xx).
pub(crate) fn is_transient(e: &ClientError) -> bool {
    match e {
        ClientError::Http { .. } | ClientError::Stalled { .. } => true,
        ClientError::Status { status, .. } => {
            is_retryable_status(StatusCode::from_u16(*status).unwrap_or(StatusCode::OK))
        }
        _ => false,
    }
}

/// Reads an error answer into [`ClientError::Status`].
pub(crate) async fn status_error(method: &Method, url: &str, response: Response) -> ClientError {
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let body = &body[..body.len().min(4096)];
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let first = parsed.as_ref().and_then(|v| v.get("errors")?.get(0).cloned());
    let code = first
        .as_ref()
        .and_then(|f| f.get("code")?.as_str().map(str::to_owned));
    let message = first
        .as_ref()
        .and_then(|f| f.get("message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().chars().take(200).collect());
    ClientError::Status {
        method: method.to_string(),
        url: url.to_owned(),
        status,
        code,
        message,
    }
}

impl Client {
    /// A client with this configuration.
    pub fn new(config: ClientConfig) -> Client {
        // reqwest is built without a default crypto provider: kiln uses ring (quick to build).
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        Client {
            config,
            conns: tokio::sync::Mutex::new(HashMap::new()),
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn http_client(&self, registry: &str) -> Result<reqwest::Client, ClientError> {
        let host = registry.replace(':', "_");
        let dirs: Vec<PathBuf> = match &self.config.cert_dir {
            Some(dir) => vec![dir.clone()],
            None => ["/etc/containers/certs.d", "/etc/docker/certs.d"]
                .iter()
                .flat_map(|root| [Path::new(root).join(registry), Path::new(root).join(&host)])
                .collect(),
        };
        let mut certs = CertDir::default();
        for dir in dirs {
            certs.add(&dir)?;
        }
        reqwest::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(16)
            .tls_backend_preconfigured(certs.client_config(self.config.tls_verify)?)
            .build()
            .map_err(|e| ClientError::Config {
                path: PathBuf::from(registry),
                reason: format!("cannot set up an HTTP client: {e}"),
            })
    }

    /// The connection to `registry`, pinging `/v2/` on first use to choose the scheme and learn the
    /// authentication challenge.
    pub(crate) async fn conn(&self, registry: &str) -> Result<Arc<Conn>, ClientError> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(registry) {
            return Ok(c.clone());
        }
        let http = self.http_client(registry)?;
        let host = endpoint_of(registry);
        let plain_allowed = is_loopback(registry) || !self.config.tls_verify;
        let mut first_err = None;
        let mut found = None;
        for scheme in ["https", "http"] {
            if scheme == "http" && !plain_allowed {
                break;
            }
            let base =
                Url::parse(&format!("{scheme}://{host}/")).map_err(|e| ClientError::InvalidReference {
                    input: registry.to_owned(),
                    reason: e.to_string(),
                })?;
            let url = base.join("v2/").map_err(|e| ClientError::InvalidReference {
                input: registry.to_owned(),
                reason: e.to_string(),
            })?;
            match self.ping(&http, &url, plain_allowed).await {
                Ok(response) => {
                    found = Some((base, response));
                    break;
                }
                // Keep the HTTPS error: it says why TLS failed (an unknown CA, say), which matters more
                // than the plain-HTTP attempt failing against a TLS port.
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let Some((base, response)) = found else {
            return Err(first_err.unwrap_or_else(|| ClientError::Config {
                path: PathBuf::from(registry),
                reason: "cannot reach the registry".to_owned(),
            }));
        };
        let challenge = if response.status() == StatusCode::UNAUTHORIZED {
            response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge)
        } else {
            None
        };
        let credentials = self.config.credentials.lookup(registry).await?;
        let conn = Arc::new(Conn {
            registry: registry.to_owned(),
            base,
            http,
            challenge: Mutex::new(challenge),
            credentials,
        });
        conns.insert(registry.to_owned(), conn.clone());
        Ok(conn)
    }

    /// `GET /v2/`, retried on connection errors and timeouts; an HTTPS attempt that cannot connect, or
    /// (with `fallback`: plain HTTP comes next) gets no answer, is not.
    async fn ping(&self, http: &reqwest::Client, url: &Url, fallback: bool) -> Result<Response, ClientError> {
        let mut attempt = 0;
        loop {
            let request = http
                .get(url.clone())
                .build()
                .map_err(|e| ClientError::http("GET", url.as_str(), e))?;
            let e = match self.execute(http, request).await {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            let (connect, timeout) = match &e {
                ClientError::Http { source, .. } => (source.is_connect(), source.is_timeout()),
                ClientError::Stalled { .. } => (false, true),
                _ => (false, false),
            };
            // A TLS handshake against a plain-HTTP server fails at once, or gets no answer (a server
            // waiting for a request) when plain HTTP comes next: try the next scheme.
            let https = url.scheme() == "https";
            let next_scheme = https && (connect || (fallback && matches!(e, ClientError::Stalled { .. })));
            if next_scheme || attempt >= self.config.retries || !(connect || timeout) {
                return Err(e);
            }
            attempt += 1;
            self.config
                .progress
                .retry(&format!("GET {url}"), &e.transport_cause());
            tokio::time::sleep(self.delay(attempt, None)).await;
        }
    }

    /// Sends one attempt of `request` on `http`. It fails with [`ClientError::Stalled`] when no byte
    /// moves for the read timeout while its body is sent or its answer awaited; reading the answer's body
    /// fails the same way (an error of the body stream).
    async fn execute(
        &self,
        http: &reqwest::Client,
        mut request: reqwest::Request,
    ) -> Result<Response, ClientError> {
        let (method, url) = (request.method().to_string(), request.url().to_string());
        let timeout = self.config.read_timeout;
        let activity = Activity::new();
        // A body in memory goes out at once; a streamed one (a blob) tells how its sending progresses.
        if let Some(body) = request.body_mut().take_if(|b| b.as_bytes().is_none()) {
            *request.body_mut() = Some(reqwest::Body::wrap(Sending {
                inner: body,
                activity: Arc::clone(&activity),
            }));
        }
        let mut answer = std::pin::pin!(http.execute(request));
        let response = loop {
            tokio::select! {
                r = &mut answer => break r.map_err(|e| ClientError::http(&method, &url, e))?,
                () = tokio::time::sleep_until(activity.last() + timeout) => {
                    if activity.last() + timeout <= tokio::time::Instant::now() {
                        return Err(ClientError::Stalled { method, url, timeout });
                    }
                }
            }
        };
        let response: http::Response<reqwest::Body> = response.into();
        Ok(Response::from(response.map(|body| {
            reqwest::Body::wrap(ReadTimeout::new(body, timeout, "the registry"))
        })))
    }

    fn delay(&self, attempt: u32, retry_after: Option<&HeaderMap>) -> Duration {
        if let Some(secs) = retry_after
            .and_then(|h| h.get(reqwest::header::RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Duration::from_secs(secs.min(30));
        }
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        (self.config.backoff * factor).min(Duration::from_secs(10))
    }

    /// The `Authorization` value for `scopes` on `conn`, fetching a token when the registry asks for the
    /// token flow.
    async fn authorization(&self, conn: &Conn, scopes: &[String]) -> Result<Option<String>, ClientError> {
        let challenge = conn.challenge.lock().ok().and_then(|c| c.clone());
        match &challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(conn.credentials.as_ref().map(Credentials::basic_header)),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = (conn.registry.clone(), scopes.join(" "));
                let mut tokens = self.tokens.lock().await;
                if let Some((token, until)) = tokens.get(&key)
                    && Instant::now() < *until
                {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let (token, lifetime) = self.fetch_token(conn, realm, service.as_deref(), scopes).await?;
                let until = Instant::now() + lifetime.saturating_sub(Duration::from_secs(10));
                tokens.insert(key, (token.clone(), until));
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    async fn fetch_token(
        &self,
        conn: &Conn,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration), ClientError> {
        let auth_err = |reason: String| ClientError::Auth {
            registry: conn.registry.clone(),
            reason,
        };
        let mut url =
            Url::parse(realm).map_err(|e| auth_err(format!("token realm `{realm}` is not a URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut request = conn.http.get(url.clone());
        if let Some(c) = &conn.credentials {
            request = request.header(AUTHORIZATION, c.basic_header());
        }
        let request = request
            .build()
            .map_err(|e| ClientError::http("GET", url.as_str(), e))?;
        let response = self.execute(&conn.http, request).await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(auth_err(format!(
                "token endpoint {realm} answered {status}: {}",
                body.trim().chars().take(200).collect::<String>()
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = response.json().await.map_err(|e| {
            auth_err(format!(
                "token endpoint {realm} sent an unreadable answer: {}",
                causes(&e)
            ))
        })?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_err(format!("token endpoint {realm} sent no token")))?;
        // The distribution token spec: 60 s when unspecified.
        Ok((
            token,
            Duration::from_secs(answer.expires_in.unwrap_or(60).max(10)),
        ))
    }

    /// Sends a request built by `build` (called again for every attempt, so bodies are re-created),
    /// authenticating for `scopes`. With `retry`, connection errors, 429 and 5xx are retried with backoff.
    /// Answers other than those are returned as they are.
    pub(crate) async fn send(
        &self,
        registry: &str,
        scopes: &[String],
        method: Method,
        target: &str,
        retry: bool,
        build: impl Fn(RequestBuilder) -> Result<RequestBuilder, ClientError>,
    ) -> Result<(Response, Url), ClientError> {
        let conn = self.conn(registry).await?;
        let url = if target.starts_with("http://") || target.starts_with("https://") {
            Url::parse(target)
        } else {
            conn.base.join(target.trim_start_matches('/'))
        }
        .map_err(|e| ClientError::InvalidReference {
            input: target.to_owned(),
            reason: e.to_string(),
        })?;
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            let auth = self.authorization(&conn, scopes).await?;
            let mut request = build(conn.http.request(method.clone(), url.clone()))?;
            if let Some(auth) = auth {
                request = request.header(AUTHORIZATION, auth);
            }
            let request = request
                .build()
                .map_err(|e| ClientError::http(method.as_str(), url.as_str(), e))?;
            match self.execute(&conn.http, request).await {
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED && !refreshed => {
                    refreshed = true;
                    self.tokens
                        .lock()
                        .await
                        .remove(&(conn.registry.clone(), scopes.join(" ")));
                    // A registry that answers /v2/ anonymously may still ask for auth here: learn how.
                    let challenge = r
                        .headers()
                        .get_all(WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .find_map(parse_challenge);
                    if let (Some(challenge), Ok(mut known)) = (challenge, conn.challenge.lock())
                        && known.is_none()
                    {
                        *known = Some(challenge);
                    }
                }
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED => {
                    let err = status_error(&method, url.as_str(), r).await;
                    return Err(ClientError::Auth {
                        registry: conn.registry.clone(),
                        reason: format!(
                            "{err}{}",
                            if conn.credentials.is_none() {
                                " (no credentials: use --creds, or log in with `podman login` or `docker login`)"
                            } else {
                                " (credentials refused)"
                            }
                        ),
                    });
                }
                Ok(r) if retry && is_retryable_status(r.status()) && attempt < self.config.retries => {
                    attempt += 1;
                    let delay = self.delay(attempt, Some(r.headers()));
                    self.config
                        .progress
                        .retry(&format!("{method} {url}"), &format!("answered {}", r.status()));
                    tokio::time::sleep(delay).await;
                }
                Ok(r) => return Ok((r, url)),
                Err(e) if retry && attempt < self.config.retries => {
                    attempt += 1;
                    self.config
                        .progress
                        .retry(&format!("{method} {url}"), &e.transport_cause());
                    tokio::time::sleep(self.delay(attempt, None)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Client::send`] that fails unless the status is one of `ok`.
    pub(crate) async fn send_expect(
        &self,
        registry: &str,
        scopes: &[String],
        method: Method,
        target: &str,
        ok: &[StatusCode],
        build: impl Fn(RequestBuilder) -> Result<RequestBuilder, ClientError>,
    ) -> Result<(Response, Url), ClientError> {
        let (response, url) = self
            .send(registry, scopes, method.clone(), target, true, build)
            .await?;
        if ok.contains(&response.status()) {
            Ok((response, url))
        } else {
            Err(status_error(&method, url.as_str(), response).await)
        }
    }

    /// Sleeps before retry `attempt` (1-based), reporting `what` failed with `error`.
    pub(crate) async fn backoff(&self, attempt: u32, what: &str, error: &ClientError) {
        self.config.progress.retry(what, &error.to_string());
        tokio::time::sleep(self.delay(attempt, None)).await;
    }
}
