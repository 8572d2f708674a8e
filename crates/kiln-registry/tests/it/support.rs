use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_oci::Algorithm;
use kiln_registry::storage::UploadLimits;
use kiln_registry::{FsStorage, RegistryConfig, ServeOptions};
use reqwest::{Method, StatusCode};

/// A registry serving a temporary root on 127.0.0.1 until dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub root: PathBuf,
    /// The storage the server runs on (run GC or fsck through it while the server runs).
    pub storage: FsStorage,
    pub client: reqwest::Client,
    authorization: Option<String>,
    _dir: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_at(dir.path()).await;
        server._dir = Some(dir);
        server
    }

    pub async fn start_at(root: &Path) -> Server {
        Server::start_with(root, RegistryConfig::default()).await
    }

    /// A registry with this configuration on a temporary root.
    pub async fn start_config(config: RegistryConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_with(dir.path(), config).await;
        server._dir = Some(dir);
        server
    }

    pub async fn start_with(root: &Path, config: RegistryConfig) -> Server {
        Server::start_on(FsStorage::open(root).unwrap(), config).await
    }

    /// A registry on a temporary root opened with these upload session limits.
    pub async fn start_limits(limits: UploadLimits) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open_with(dir.path(), limits).unwrap();
        let mut server = Server::start_on(storage, RegistryConfig::default()).await;
        server._dir = Some(dir);
        server
    }

    /// A registry on a temporary root, served with these options (connection limits, TLS).
    pub async fn start_options(config: RegistryConfig, options: ServeOptions) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(dir.path()).unwrap();
        let mut server = Server::start_serving(storage, config, options).await;
        server._dir = Some(dir);
        server
    }

    /// A registry serving `storage`.
    pub async fn start_on(storage: FsStorage, config: RegistryConfig) -> Server {
        Server::start_serving(storage, config, ServeOptions::default()).await
    }

    async fn start_serving(storage: FsStorage, config: RegistryConfig, options: ServeOptions) -> Server {
        let root = storage.root().to_owned();
        let app = kiln_registry::router(Arc::new(storage.clone()), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            kiln_registry::serve(listener, app, options, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Server {
            addr,
            root,
            storage,
            client: http_client(),
            authorization: None,
            _dir: None,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, self.url(path));
        match &self.authorization {
            Some(a) => r.header("authorization", a),
            None => r,
        }
    }

    /// A handle on the same server that sends `authorization` with every request.
    pub fn with_authorization(&self, authorization: &str) -> Server {
        Server {
            addr: self.addr,
            root: self.root.clone(),
            storage: self.storage.clone(),
            client: self.client.clone(),
            authorization: Some(authorization.to_owned()),
            _dir: None,
            stop: None,
        }
    }

    /// [`Server::expect`] with an Authorization header.
    pub async fn expect_with(
        &self,
        method: Method,
        path: &str,
        authorization: &str,
        status: StatusCode,
        code: Option<&str>,
    ) -> (reqwest::header::HeaderMap, Vec<u8>) {
        let r = self.req(method, path).header("authorization", authorization);
        expect(r.send().await.unwrap(), status, code).await
    }

    /// Sends a bodiless request and checks its status and error code (see [`expect`]).
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        status: StatusCode,
        code: Option<&str>,
    ) -> (reqwest::header::HeaderMap, Vec<u8>) {
        expect(self.req(method, path).send().await.unwrap(), status, code).await
    }

    /// Starts an upload session in `repo` (202); returns its Location.
    pub async fn start_upload(&self, repo: &str) -> String {
        let path = format!("/v2/{repo}/blobs/uploads/");
        let (h, _) = self.expect(Method::POST, &path, StatusCode::ACCEPTED, None).await;
        header(&h, "location").to_owned()
    }

    /// Pushes a blob monolithically; returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = Algorithm::Sha256.digest(bytes).to_string();
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
        digest
    }

    /// Pushes a manifest; returns the response.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts the status, the API version header, and (for errors) the JSON error code; returns the response.
pub async fn expect(
    r: reqwest::Response,
    status: StatusCode,
    code: Option<&str>,
) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let got = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap().to_vec();
    assert_eq!(got, status, "body: {}", String::from_utf8_lossy(&body));
    assert_eq!(
        headers
            .get("docker-distribution-api-version")
            .map(|v| v.to_str().unwrap()),
        Some("registry/2.0")
    );
    if let Some(code) = code {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errors"][0]["code"], code, "{v}");
        assert!(v["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    (headers, body)
}

pub fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
}

/// A tiny OCI image: config + one layer; returns (manifest bytes, config digest, layer digest).
pub async fn push_image(server: &Server, repo: &str, layer: &[u8]) -> (Vec<u8>, String, String) {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = server.push_blob(repo, config).await;
    let layer_digest = server.push_blob(repo, layer).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    });
    (
        serde_json::to_vec_pretty(&manifest).unwrap(),
        config_digest,
        layer_digest,
    )
}

pub fn sha256(bytes: &[u8]) -> String {
    Algorithm::Sha256.digest(bytes).to_string()
}

/// A reqwest client. In a workspace test run, reqwest's features are unified with kiln-client's
/// (`rustls-no-provider`), so a TLS provider must be installed first or building the client panics.
pub fn http_client() -> reqwest::Client {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
