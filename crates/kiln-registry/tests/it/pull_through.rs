//! Pull-through (a buildset registry, docs/speculative-images.md) between two in-process registries:
//! concurrent requests for one blob make one upstream download, mirror names and `?ns=`, the cache
//! answering once the upstream is gone, and no fallback past an unreachable intermediate registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_registry::RegistryConfig;
use kiln_registry::pull_through::{PullThrough, PullThroughOptions, UpstreamSpec};
use reqwest::{Method, StatusCode};

use crate::support::{Server, header, push_image, sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn spec(server: &Server) -> UpstreamSpec {
    UpstreamSpec {
        url: format!("http://{}", server.addr),
        credentials: None,
    }
}

/// A buildset registry with `options` (its spool in `spool`).
async fn buildset(mut options: PullThroughOptions, spool: &std::path::Path) -> Server {
    options.spool = spool.to_owned();
    options.tls_verify = true;
    let config = RegistryConfig {
        pull_through: Some(Arc::new(PullThrough::new(options).unwrap())),
        ..RegistryConfig::default()
    };
    Server::start_config(config).await
}

/// A buildset registry mirroring registry `host` from `upstream`.
async fn mirror_of(host: &str, upstream: &Server, spool: &std::path::Path) -> Server {
    let options = PullThroughOptions {
        mirrors: BTreeMap::from([(host.to_owned(), spec(upstream))]),
        ..PullThroughOptions::default()
    };
    buildset(options, spool).await
}

/// `len` bytes that do not repeat in short periods (no two chunks of a transfer look alike).
fn noise(len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

async fn upstream_blob_gets(upstream: &Server) -> f64 {
    let text = upstream
        .req(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series =
        r#"kiln_registry_requests_total{method="GET",route="/v2/{name}/blobs/{digest}",status="200"} "#;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn concurrent_pulls_of_a_blob_share_one_download_and_the_cache_outlives_the_upstream() {
    let upstream = Server::start().await;
    let layer = noise(16 * 1024 * 1024);
    let (manifest, config_digest, layer_digest) = push_image(&upstream, "org/app", &layer).await;
    let r = upstream
        .put_manifest("org/app", "1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let spool = tempfile::tempdir().unwrap();
    let buildset = mirror_of("quay.io", &upstream, spool.path()).await;

    // containerd's form: the registry host in ?ns=.
    let (headers, body) = buildset
        .expect(
            Method::GET,
            "/v2/org/app/manifests/1?ns=quay.io",
            StatusCode::OK,
            None,
        )
        .await;
    assert_eq!(body, manifest);
    assert_eq!(header(&headers, "docker-content-digest"), sha256(&manifest));
    assert_eq!(header(&headers, "content-type"), OCI_MANIFEST);

    let path = format!("/v2/quay.io/org/app/blobs/{layer_digest}");
    let pulls = (0..8).map(|_| {
        let request = buildset.req(Method::GET, &path);
        tokio::spawn(async move { request.send().await.unwrap().bytes().await.unwrap() })
    });
    for pull in pulls.collect::<Vec<_>>() {
        let got = pull.await.unwrap();
        assert!(got == layer, "a client got {} different bytes", got.len());
    }
    assert_eq!(upstream_blob_gets(&upstream).await, 1.0, "one upstream download");
    // HEAD of a blob not cached yet (the config) caches it: a pushing client may skip it.
    let config_path = format!("/v2/quay.io/org/app/blobs/{config_digest}");
    let (headers, _) = buildset
        .expect(Method::HEAD, &config_path, StatusCode::OK, None)
        .await;
    assert_eq!(header(&headers, "content-length"), "78");
    assert_eq!(upstream_blob_gets(&upstream).await, 2.0);

    // The upstream is gone: manifest by tag and blob (with a Range) come from the cache.
    drop(upstream);
    buildset
        .expect(
            Method::GET,
            "/v2/quay.io/org/app/manifests/1",
            StatusCode::OK,
            None,
        )
        .await;
    buildset
        .expect(Method::HEAD, &config_path, StatusCode::OK, None)
        .await;
    let r = buildset
        .req(Method::GET, &path)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &layer[10..20]);
    buildset
        .expect(
            Method::GET,
            "/v2/quay.io/org/other/manifests/1",
            StatusCode::BAD_GATEWAY,
            Some("UNKNOWN"),
        )
        .await;
}

#[tokio::test]
async fn speculative_tags_win_and_an_unreachable_intermediate_is_not_skipped() {
    let intermediate = Server::start().await;
    let upstream = Server::start().await;
    let (published, _, _) = push_image(&upstream, "org/app", b"published").await;
    upstream
        .put_manifest("org/app", "1", OCI_MANIFEST, &published)
        .await;
    let (speculative, _, layer) = push_image(&intermediate, "org/app", b"speculative").await;
    intermediate
        .put_manifest("org/app", "b42_1", OCI_MANIFEST, &speculative)
        .await;

    let spool = tempfile::tempdir().unwrap();
    let options = |intermediate: UpstreamSpec| PullThroughOptions {
        intermediate: Some(intermediate),
        builds: vec!["b41".to_owned(), "b42".to_owned()],
        mirrors: BTreeMap::from([("docker.io".to_owned(), spec(&upstream))]),
        ..PullThroughOptions::default()
    };
    let buildset1 = buildset(options(spec(&intermediate)), spool.path()).await;
    let (_, body) = buildset1
        .expect(Method::GET, "/v2/org/app/manifests/1", StatusCode::OK, None)
        .await;
    assert_eq!(body, speculative, "the speculative image, not the published one");
    let (_, body) = buildset1
        .expect(
            Method::GET,
            &format!("/v2/org/app/blobs/{layer}"),
            StatusCode::OK,
            None,
        )
        .await;
    assert_eq!(body, b"speculative");

    // An intermediate registry that does not answer: 502, never the published image.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = UpstreamSpec {
        url: format!("http://{}", closed.local_addr().unwrap()),
        credentials: None,
    };
    drop(closed);
    let buildset2 = buildset(options(gone), spool.path()).await;
    buildset2
        .expect(
            Method::GET,
            "/v2/org/app/manifests/1",
            StatusCode::BAD_GATEWAY,
            Some("UNKNOWN"),
        )
        .await;
}

/// Status, Content-Range, Content-Length and body of a blob GET or HEAD with `range`.
async fn ranged(
    server: &Server,
    method: Method,
    path: &str,
    range: &str,
) -> (StatusCode, String, String, Vec<u8>) {
    let r = server
        .req(method, path)
        .header("range", range)
        .send()
        .await
        .unwrap();
    let h = |name: &str| {
        r.headers()
            .get(name)
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
    };
    let (status, content_range, length) = (r.status(), h("content-range"), h("content-length"));
    (status, content_range, length, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_range_of_a_blob_not_cached_yet_is_answered_as_for_a_stored_blob() {
    let upstream = Server::start().await;
    let layer = noise(3 * 1024 * 1024);
    let (_, _, layer_digest) = push_image(&upstream, "org/app", &layer).await;
    let upstream_path = format!("/v2/org/app/blobs/{layer_digest}");
    let path = format!("/v2/quay.io/org/app/blobs/{layer_digest}");
    let size = layer.len();
    // (Range, the status a stored blob answers with; the Content-Range is compared with the upstream's.)
    let partial = StatusCode::PARTIAL_CONTENT;
    let cases = [
        ("bytes=10-19".to_owned(), partial),
        ("bytes=-5".to_owned(), partial),
        (format!("bytes={}-", size - 100), partial),
        (format!("bytes=0-{}", size + 1000), partial),
        // Several ranges: the whole blob, as for a stored one.
        ("bytes=0-1,5-6".to_owned(), StatusCode::OK),
        // No byte of the range exists.
        (format!("bytes={size}-"), StatusCode::RANGE_NOT_SATISFIABLE),
        ("bytes=-0".to_owned(), StatusCode::RANGE_NOT_SATISFIABLE),
    ];
    for (range, status) in &cases {
        for method in [Method::GET, Method::HEAD] {
            // A fresh buildset registry each time, so the blob is not cached yet.
            let spool = tempfile::tempdir().unwrap();
            let buildset = mirror_of("quay.io", &upstream, spool.path()).await;
            let stored = ranged(&upstream, method.clone(), &upstream_path, range).await;
            let gets = upstream_blob_gets(&upstream).await;
            let pulled = ranged(&buildset, method.clone(), &path, range).await;
            assert_eq!(pulled, stored, "{method} {range}");
            assert_eq!(pulled.0, *status, "{method} {range}");
            // The whole blob was fetched once and cached: the next full GET does not go upstream.
            let (_, body) = buildset.expect(Method::GET, &path, StatusCode::OK, None).await;
            assert!(body == layer, "{method} {range}: the cached blob differs");
            assert_eq!(
                upstream_blob_gets(&upstream).await,
                gets + 1.0,
                "{method} {range}"
            );
        }
    }
}

#[tokio::test]
async fn ranges_and_whole_reads_of_one_blob_at_once_share_one_download() {
    let upstream = Server::start().await;
    let layer = noise(8 * 1024 * 1024);
    let (_, _, layer_digest) = push_image(&upstream, "org/app", &layer).await;
    let spool = tempfile::tempdir().unwrap();
    let buildset = mirror_of("docker.io", &upstream, spool.path()).await;
    let path = format!("/v2/org/app/blobs/{layer_digest}");
    let size = layer.len();
    let parts = [
        (0, 0),
        (1, 1023),
        (size / 2, size / 2 + 99_999),
        (size - 1, size - 1),
        (0, size - 1),
    ];
    let requests = parts.map(|(a, b)| {
        let request = buildset
            .req(Method::GET, &path)
            .header("range", format!("bytes={a}-{b}"));
        tokio::spawn(async move {
            let r = request.send().await.unwrap();
            let status = r.status();
            let content_range = r.headers()["content-range"].to_str().unwrap().to_owned();
            (status, content_range, r.bytes().await.unwrap())
        })
    });
    let whole = buildset.req(Method::GET, &path).send();
    let whole = whole.await.unwrap().bytes().await.unwrap();
    assert!(whole == layer, "the whole read differs");
    for ((a, b), request) in parts.into_iter().zip(requests) {
        let (status, content_range, body) = request.await.unwrap();
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(content_range, format!("bytes {a}-{b}/{size}"));
        assert!(body == layer[a..=b], "bytes {a}-{b} differ");
    }
    assert_eq!(upstream_blob_gets(&upstream).await, 1.0, "one upstream download");
}
