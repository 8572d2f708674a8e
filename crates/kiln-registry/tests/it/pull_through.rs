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
    let layer: Vec<u8> = (0..16 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (manifest, config_digest, layer_digest) = push_image(&upstream, "org/app", &layer).await;
    let r = upstream
        .put_manifest("org/app", "1", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let spool = tempfile::tempdir().unwrap();
    let options = PullThroughOptions {
        mirrors: BTreeMap::from([("quay.io".to_owned(), spec(&upstream))]),
        ..PullThroughOptions::default()
    };
    let buildset = buildset(options, spool.path()).await;

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
