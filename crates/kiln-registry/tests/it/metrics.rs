//! `GET /metrics`: request, byte, blob and storage figures after a push, a mount and a pull.

use reqwest::{Method, StatusCode};

use crate::support::{Server, push_image};

/// The value of the sample whose line starts with `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

#[tokio::test]
async fn metrics_count_requests_bytes_blobs_and_storage() {
    let server = Server::start().await;
    let layer = vec![7u8; 10_000];
    let (manifest, _, layer_digest) = push_image(&server, "a", &layer).await;
    let r = server
        .put_manifest("a", "1", "application/vnd.oci.image.manifest.v1+json", &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let mount = format!("/v2/b/blobs/uploads/?mount={layer_digest}&from=a");
    server
        .expect(Method::POST, &mount, StatusCode::CREATED, None)
        .await;
    let path = format!("/v2/b/blobs/{layer_digest}");
    let (_, body) = server.expect(Method::GET, &path, StatusCode::OK, None).await;
    assert_eq!(body.len(), layer.len());
    server
        .expect(
            Method::GET,
            "/v2/b/manifests/nope",
            StatusCode::NOT_FOUND,
            Some("MANIFEST_UNKNOWN"),
        )
        .await;

    let r = server.req(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers()
    );
    let text = r.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let uploads =
        r#"kiln_registry_requests_total{method="POST",route="/v2/{name}/blobs/uploads/",status="201"}"#;
    assert_eq!(sample(&text, uploads), 3.0, "config, layer, mount");
    let missing =
        r#"kiln_registry_requests_total{method="GET",route="/v2/{name}/manifests/{reference}",status="404"}"#;
    assert_eq!(sample(&text, missing), 1.0);
    let config_len = 78.0; // support::push_image's config
    assert_eq!(
        sample(&text, "kiln_registry_blob_written_bytes_total"),
        layer.len() as f64 + config_len
    );
    assert_eq!(
        sample(&text, "kiln_registry_blob_served_bytes_total"),
        layer.len() as f64
    );
    assert_eq!(sample(&text, "kiln_registry_blob_uploads_total"), 2.0);
    assert_eq!(sample(&text, "kiln_registry_blob_mounts_total"), 1.0);
    let manifest_put =
        r#"kiln_registry_request_bytes_total{method="PUT",route="/v2/{name}/manifests/{reference}"}"#;
    assert_eq!(sample(&text, manifest_put), manifest.len() as f64);
    let blob_get = r#"kiln_registry_response_bytes_total{method="GET",route="/v2/{name}/blobs/{digest}"}"#;
    assert_eq!(sample(&text, blob_get), layer.len() as f64);
    let latency =
        r#"kiln_registry_request_duration_seconds_count{method="GET",route="/v2/{name}/blobs/{digest}"}"#;
    assert_eq!(sample(&text, latency), 1.0);
    assert!(
        text.contains("kiln_registry_request_duration_seconds_bucket{"),
        "{text}"
    );
    // Three blobs (config, layer, manifest), each once although two repositories link the layer.
    assert_eq!(sample(&text, "kiln_registry_storage_blobs"), 3.0);
    assert_eq!(
        sample(&text, "kiln_registry_storage_bytes"),
        layer.len() as f64 + config_len + manifest.len() as f64
    );
    // The health endpoint is still there.
    server.expect(Method::GET, "/healthz", StatusCode::OK, None).await;
}
