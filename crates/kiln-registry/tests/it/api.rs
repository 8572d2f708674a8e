//! Every endpoint and error code over raw HTTP.

use kiln_test_support::raw_get;
use reqwest::{Method, StatusCode};

use crate::support::{Server, expect, header, push_image, sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[tokio::test]
async fn base_endpoint_and_unknown_paths_carry_the_api_version() {
    let s = Server::start().await;
    s.expect(Method::GET, "/v2/", StatusCode::OK, None).await;
    s.expect(Method::GET, "/v2", StatusCode::OK, None).await;
    s.expect(Method::GET, "/healthz", StatusCode::OK, None).await;
    s.expect(Method::GET, "/nope", StatusCode::NOT_FOUND, Some("UNSUPPORTED"))
        .await;
    s.expect(
        Method::POST,
        "/v2/",
        StatusCode::METHOD_NOT_ALLOWED,
        Some("UNSUPPORTED"),
    )
    .await;
}

#[tokio::test]
async fn monolithic_upload_then_head_get_and_ranges() {
    let s = Server::start().await;
    let data = b"0123456789";
    let d = sha256(data);
    let r = s
        .req(Method::POST, &format!("/v2/a/b/blobs/uploads/?digest={d}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    let (h, _) = expect(r, StatusCode::CREATED, None).await;
    assert_eq!(header(&h, "location"), format!("/v2/a/b/blobs/{d}"));
    assert_eq!(header(&h, "docker-content-digest"), d);

    let (h, body) = s
        .expect(Method::HEAD, &format!("/v2/a/b/blobs/{d}"), StatusCode::OK, None)
        .await;
    assert_eq!(header(&h, "content-length"), "10");
    assert_eq!(header(&h, "docker-content-digest"), d);
    assert!(body.is_empty());
    let (_, body) = s
        .expect(Method::GET, &format!("/v2/a/b/blobs/{d}"), StatusCode::OK, None)
        .await;
    assert_eq!(body, data);
    // The same with a percent-encoded colon.
    let encoded = d.replace(':', "%3A");
    s.expect(
        Method::GET,
        &format!("/v2/a/b/blobs/{encoded}"),
        StatusCode::OK,
        None,
    )
    .await;

    let get_range = |range: &str| {
        s.req(Method::GET, &format!("/v2/a/b/blobs/{d}"))
            .header("range", range.to_owned())
            .send()
    };
    let (h, body) = expect(
        get_range("bytes=2-5").await.unwrap(),
        StatusCode::PARTIAL_CONTENT,
        None,
    )
    .await;
    assert_eq!(body, b"2345");
    assert_eq!(header(&h, "content-range"), "bytes 2-5/10");
    let (_, body) = expect(
        get_range("bytes=-3").await.unwrap(),
        StatusCode::PARTIAL_CONTENT,
        None,
    )
    .await;
    assert_eq!(body, b"789");
    let (h, _) = expect(
        get_range("bytes=10-").await.unwrap(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        Some("BLOB_UNKNOWN"),
    )
    .await;
    assert_eq!(header(&h, "content-range"), "bytes */10");

    // Linked into a/b only.
    s.expect(
        Method::GET,
        &format!("/v2/other/blobs/{d}"),
        StatusCode::NOT_FOUND,
        Some("BLOB_UNKNOWN"),
    )
    .await;
}

#[tokio::test]
async fn large_blob_streams_in_and_out() {
    let s = Server::start().await;
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 7).map(|i: u32| (i % 251) as u8).collect();
    let d = s.push_blob("big", &data).await;
    let (_, body) = s
        .expect(Method::GET, &format!("/v2/big/blobs/{d}"), StatusCode::OK, None)
        .await;
    assert_eq!(sha256(&body), d);
}

fn blob_files(s: &Server) -> usize {
    std::fs::read_dir(s.root.join("blobs/sha256")).unwrap().count()
}

#[tokio::test]
async fn wrong_digest_is_digest_invalid_and_stores_nothing() {
    let s = Server::start().await;
    let wrong = sha256(b"other");
    let r = s
        .req(Method::POST, &format!("/v2/a/blobs/uploads/?digest={wrong}"))
        .body("data")
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::BAD_REQUEST, Some("DIGEST_INVALID")).await;
    assert_eq!(blob_files(&s), 0);
    assert_eq!(std::fs::read_dir(s.root.join("uploads")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(s.root.join("ingest")).unwrap().count(), 0);
    s.expect(
        Method::GET,
        &format!("/v2/a/blobs/{wrong}"),
        StatusCode::NOT_FOUND,
        Some("BLOB_UNKNOWN"),
    )
    .await;
}

#[tokio::test]
async fn chunked_upload_checks_content_range_continuity() {
    let s = Server::start().await;
    let (h, _) = s
        .expect(Method::POST, "/v2/c/blobs/uploads/", StatusCode::ACCEPTED, None)
        .await;
    let loc = header(&h, "location").to_owned();
    assert!(loc.starts_with("/v2/c/blobs/uploads/"));
    assert_eq!(header(&h, "range"), "0-0");
    assert!(!header(&h, "docker-upload-uuid").is_empty());

    let patch = |range: &str, body: &'static [u8]| {
        s.req(Method::PATCH, &loc)
            .header("content-range", range.to_owned())
            .body(body)
            .send()
    };
    let (h, _) = expect(patch("0-4", b"hello").await.unwrap(), StatusCode::ACCEPTED, None).await;
    assert_eq!(header(&h, "range"), "0-4");
    // Out of order: 416 with the current range.
    let (h, _) = expect(
        patch("10-14", b"xxxxx").await.unwrap(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        Some("BLOB_UPLOAD_INVALID"),
    )
    .await;
    assert_eq!(header(&h, "range"), "0-4");
    // Range length disagrees with the body: 416, nothing written.
    expect(
        patch("5-9", b"abc").await.unwrap(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        Some("BLOB_UPLOAD_INVALID"),
    )
    .await;
    expect(
        patch("garbage", b"abc").await.unwrap(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        Some("BLOB_UPLOAD_INVALID"),
    )
    .await;
    let (h, _) = s.expect(Method::GET, &loc, StatusCode::NO_CONTENT, None).await;
    assert_eq!(header(&h, "range"), "0-4", "status after failed chunks");
    expect(
        patch("5-10", b" world").await.unwrap(),
        StatusCode::ACCEPTED,
        None,
    )
    .await;
    // A streamed chunk (no Content-Range) appends.
    expect(
        s.req(Method::PATCH, &loc).body("!").send().await.unwrap(),
        StatusCode::ACCEPTED,
        None,
    )
    .await;
    let d = sha256(b"hello world!?");
    // The final PUT carries the last byte.
    let (h, _) = expect(
        s.req(Method::PUT, &format!("{loc}?digest={d}"))
            .body("?")
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
        None,
    )
    .await;
    assert_eq!(header(&h, "docker-content-digest"), d);
    let (_, body) = s
        .expect(Method::GET, &format!("/v2/c/blobs/{d}"), StatusCode::OK, None)
        .await;
    assert_eq!(body, b"hello world!?");
    // The session is gone.
    s.expect(
        Method::GET,
        &loc,
        StatusCode::NOT_FOUND,
        Some("BLOB_UPLOAD_UNKNOWN"),
    )
    .await;
}

#[tokio::test]
async fn final_put_with_wrong_digest_ends_the_session_without_a_blob() {
    let s = Server::start().await;
    let loc = s.start_upload("c").await;
    expect(
        s.req(Method::PATCH, &loc).body("abc").send().await.unwrap(),
        StatusCode::ACCEPTED,
        None,
    )
    .await;
    let r = s
        .req(Method::PUT, &format!("{loc}?digest={}", sha256(b"xyz")))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::BAD_REQUEST, Some("DIGEST_INVALID")).await;
    let r = s
        .req(Method::PUT, &format!("{loc}?digest=sha256:nothex"))
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::BAD_REQUEST, Some("DIGEST_INVALID")).await;
    assert_eq!(blob_files(&s), 0);
    s.expect(
        Method::GET,
        &loc,
        StatusCode::NOT_FOUND,
        Some("BLOB_UPLOAD_UNKNOWN"),
    )
    .await;
}

#[tokio::test]
async fn sha512_uploads() {
    let s = Server::start().await;
    let data = b"sha512 content";
    let d = kiln_oci::Algorithm::Sha512.digest(data).to_string();
    let (h, _) = s
        .expect(
            Method::POST,
            "/v2/s/blobs/uploads/?digest-algorithm=sha512",
            StatusCode::ACCEPTED,
            None,
        )
        .await;
    let loc = header(&h, "location").to_owned();
    expect(
        s.req(Method::PATCH, &loc)
            .body(data.to_vec())
            .send()
            .await
            .unwrap(),
        StatusCode::ACCEPTED,
        None,
    )
    .await;
    s.expect(
        Method::PUT,
        &format!("{loc}?digest={d}"),
        StatusCode::CREATED,
        None,
    )
    .await;
    let (h, body) = s
        .expect(Method::GET, &format!("/v2/s/blobs/{d}"), StatusCode::OK, None)
        .await;
    assert_eq!(body, data);
    assert_eq!(header(&h, "docker-content-digest"), d);
    // A sha256 session finished with a sha512 digest is re-hashed once.
    let loc = s.start_upload("s").await;
    let d2 = kiln_oci::Algorithm::Sha512.digest(b"other").to_string();
    expect(
        s.req(Method::PUT, &format!("{loc}?digest={d2}"))
            .body("other")
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
        None,
    )
    .await;
    s.expect(
        Method::POST,
        "/v2/s/blobs/uploads/?digest-algorithm=md5",
        StatusCode::BAD_REQUEST,
        Some("DIGEST_INVALID"),
    )
    .await;
}

#[tokio::test]
async fn cancel_upload_and_unknown_sessions() {
    let s = Server::start().await;
    let loc = s.start_upload("c").await;
    // Another repository cannot use the session.
    let foreign = loc.replace("/v2/c/", "/v2/d/");
    s.expect(
        Method::GET,
        &foreign,
        StatusCode::NOT_FOUND,
        Some("BLOB_UPLOAD_UNKNOWN"),
    )
    .await;
    s.expect(Method::DELETE, &loc, StatusCode::NO_CONTENT, None).await;
    s.expect(
        Method::GET,
        &loc,
        StatusCode::NOT_FOUND,
        Some("BLOB_UPLOAD_UNKNOWN"),
    )
    .await;
    expect(
        s.req(Method::PATCH, &loc).body("x").send().await.unwrap(),
        StatusCode::NOT_FOUND,
        Some("BLOB_UPLOAD_UNKNOWN"),
    )
    .await;
    s.expect(
        Method::DELETE,
        &loc,
        StatusCode::NOT_FOUND,
        Some("BLOB_UPLOAD_UNKNOWN"),
    )
    .await;
    s.expect(
        Method::GET,
        "/v2/c/blobs/uploads/not-a-uuid",
        StatusCode::NOT_FOUND,
        Some("BLOB_UPLOAD_UNKNOWN"),
    )
    .await;
    assert_eq!(std::fs::read_dir(s.root.join("uploads")).unwrap().count(), 0);
}

#[tokio::test]
async fn upload_session_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let loc = {
        let s = Server::start_at(dir.path()).await;
        let loc = s.start_upload("r").await;
        expect(
            s.req(Method::PATCH, &loc).body("first ").send().await.unwrap(),
            StatusCode::ACCEPTED,
            None,
        )
        .await;
        loc
    };
    let s = Server::start_at(dir.path()).await;
    let (h, _) = s.expect(Method::GET, &loc, StatusCode::NO_CONTENT, None).await;
    assert_eq!(header(&h, "range"), "0-5");
    let d = sha256(b"first second");
    expect(
        s.req(Method::PUT, &format!("{loc}?digest={d}"))
            .header("content-range", "6-11")
            .body("second")
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
        None,
    )
    .await;
}

#[tokio::test]
async fn cross_repository_mount() {
    let s = Server::start().await;
    let d = s.push_blob("src/repo", b"shared layer").await;
    let r = s
        .req(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo"),
        )
        .send()
        .await
        .unwrap();
    let (h, _) = expect(r, StatusCode::CREATED, None).await;
    assert_eq!(header(&h, "location"), format!("/v2/dst/blobs/{d}"));
    let (_, body) = s
        .expect(Method::GET, &format!("/v2/dst/blobs/{d}"), StatusCode::OK, None)
        .await;
    assert_eq!(body, b"shared layer");
    assert_eq!(blob_files(&s), 1, "deduplicated");
    // Not in the source: a new session instead.
    let missing = sha256(b"missing");
    let r = s
        .req(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={missing}&from=src/repo"),
        )
        .send()
        .await
        .unwrap();
    let (h, _) = expect(r, StatusCode::ACCEPTED, None).await;
    assert!(header(&h, "location").starts_with("/v2/dst/blobs/uploads/"));
    let r = s
        .req(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=Bad..Name"),
        )
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::BAD_REQUEST, Some("NAME_INVALID")).await;
}

#[tokio::test]
async fn manifest_push_get_tag_and_delete() {
    let s = Server::start().await;
    let (manifest, _, _) = push_image(&s, "app", b"layer-1").await;
    let d = sha256(&manifest);
    let (h, _) = expect(
        s.put_manifest("app", "v1", OCI_MANIFEST, &manifest).await,
        StatusCode::CREATED,
        None,
    )
    .await;
    assert_eq!(header(&h, "docker-content-digest"), d);
    assert_eq!(header(&h, "location"), format!("/v2/app/manifests/{d}"));

    for reference in ["v1", d.as_str()] {
        let (h, body) = s
            .expect(
                Method::GET,
                &format!("/v2/app/manifests/{reference}"),
                StatusCode::OK,
                None,
            )
            .await;
        assert_eq!(body, manifest, "byte-exact");
        assert_eq!(header(&h, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&h, "docker-content-digest"), d);
        let (h, body) = s
            .expect(
                Method::HEAD,
                &format!("/v2/app/manifests/{reference}"),
                StatusCode::OK,
                None,
            )
            .await;
        assert_eq!(header(&h, "content-length"), manifest.len().to_string());
        assert!(body.is_empty());
    }
    // Push by digest with extra tags.
    let r = s
        .req(Method::PUT, &format!("/v2/app/manifests/{d}?tag=a&tag=b"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::CREATED, None).await;
    let (_, body) = s
        .expect(Method::GET, "/v2/app/tags/list", StatusCode::OK, None)
        .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"name":"app","tags":["a","b","v1"]})
    );

    // A tag delete removes only the tag (the promote workflow).
    s.expect(Method::DELETE, "/v2/app/manifests/a", StatusCode::ACCEPTED, None)
        .await;
    s.expect(
        Method::GET,
        "/v2/app/manifests/a",
        StatusCode::NOT_FOUND,
        Some("MANIFEST_UNKNOWN"),
    )
    .await;
    s.expect(
        Method::GET,
        &format!("/v2/app/manifests/{d}"),
        StatusCode::OK,
        None,
    )
    .await;
    s.expect(
        Method::DELETE,
        "/v2/app/manifests/a",
        StatusCode::NOT_FOUND,
        Some("MANIFEST_UNKNOWN"),
    )
    .await;
    // A manifest delete removes the manifest and every tag pointing at it.
    s.expect(
        Method::DELETE,
        &format!("/v2/app/manifests/{d}"),
        StatusCode::ACCEPTED,
        None,
    )
    .await;
    s.expect(
        Method::GET,
        "/v2/app/manifests/v1",
        StatusCode::NOT_FOUND,
        Some("MANIFEST_UNKNOWN"),
    )
    .await;
    s.expect(
        Method::GET,
        &format!("/v2/app/manifests/{d}"),
        StatusCode::NOT_FOUND,
        Some("MANIFEST_UNKNOWN"),
    )
    .await;
    let (_, body) = s
        .expect(Method::GET, "/v2/app/tags/list", StatusCode::OK, None)
        .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["tags"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn manifest_validation() {
    let s = Server::start().await;
    let (manifest, config, layer) = push_image(&s, "v", b"layer").await;
    let text = String::from_utf8(manifest.clone()).unwrap();
    // A blob that is not in the repository.
    let missing = text.replace(&layer, &sha256(b"not pushed"));
    expect(
        s.put_manifest("v", "x", OCI_MANIFEST, missing.as_bytes()).await,
        StatusCode::BAD_REQUEST,
        Some("MANIFEST_BLOB_UNKNOWN"),
    )
    .await;
    // Pushed to another repository only.
    expect(
        s.put_manifest("elsewhere", "x", OCI_MANIFEST, &manifest).await,
        StatusCode::BAD_REQUEST,
        Some("MANIFEST_BLOB_UNKNOWN"),
    )
    .await;
    // A declared size that differs from the stored blob.
    let mut v: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    v["layers"][0]["size"] = 999.into();
    expect(
        s.put_manifest("v", "x", OCI_MANIFEST, &serde_json::to_vec(&v).unwrap())
            .await,
        StatusCode::BAD_REQUEST,
        Some("SIZE_INVALID"),
    )
    .await;
    expect(
        s.put_manifest("v", "x", OCI_MANIFEST, b"{not json").await,
        StatusCode::BAD_REQUEST,
        Some("MANIFEST_INVALID"),
    )
    .await;
    expect(
        s.put_manifest("v", "x", OCI_INDEX, &manifest).await,
        StatusCode::BAD_REQUEST,
        Some("MANIFEST_INVALID"),
    )
    .await;
    // The digest in the reference must be the body's.
    let wrong = sha256(b"x");
    expect(
        s.put_manifest("v", &wrong, OCI_MANIFEST, &manifest).await,
        StatusCode::BAD_REQUEST,
        Some("DIGEST_INVALID"),
    )
    .await;
    // Too large.
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    expect(
        s.put_manifest("v", "x", OCI_MANIFEST, &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        Some("SIZE_INVALID"),
    )
    .await;
    // A foreign layer is accepted without being pushed.
    v["layers"][0] = serde_json::json!({"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": sha256(b"windows"), "size": 123, "urls": ["https://example.invalid/layer"]});
    v["config"]["digest"] = config.clone().into();
    expect(
        s.put_manifest("v", "foreign", OCI_MANIFEST, &serde_json::to_vec(&v).unwrap())
            .await,
        StatusCode::CREATED,
        None,
    )
    .await;

    // Indexes: children must be manifests of the repository.
    expect(
        s.put_manifest("v", "img", OCI_MANIFEST, &manifest).await,
        StatusCode::CREATED,
        None,
    )
    .await;
    let list_type = "application/vnd.docker.distribution.manifest.list.v2+json";
    let index = |digest: &str, size: usize| {
        serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": list_type,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": size, "platform": {"os":"linux","architecture":"amd64"}}]
    })).unwrap()
    };
    expect(
        s.put_manifest("v", "multi", list_type, &index(&sha256(b"absent"), 3))
            .await,
        StatusCode::BAD_REQUEST,
        Some("MANIFEST_BLOB_UNKNOWN"),
    )
    .await;
    expect(
        s.put_manifest(
            "v",
            "multi",
            list_type,
            &index(&sha256(&manifest), manifest.len() + 1),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("SIZE_INVALID"),
    )
    .await;
    let good = index(&sha256(&manifest), manifest.len());
    expect(
        s.put_manifest("v", "multi", list_type, &good).await,
        StatusCode::CREATED,
        None,
    )
    .await;
    let (h, body) = s
        .expect(Method::GET, "/v2/v/manifests/multi", StatusCode::OK, None)
        .await;
    assert_eq!(header(&h, "content-type"), list_type);
    assert_eq!(body, good);
}

#[tokio::test]
async fn tag_and_catalog_pagination() {
    let s = Server::start().await;
    let (manifest, _, _) = push_image(&s, "p", b"l").await;
    for tag in ["e", "a", "c", "b", "d"] {
        expect(
            s.put_manifest("p", tag, OCI_MANIFEST, &manifest).await,
            StatusCode::CREATED,
            None,
        )
        .await;
    }
    let (h, body) = s
        .expect(Method::GET, "/v2/p/tags/list?n=2", StatusCode::OK, None)
        .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["tags"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(header(&h, "link"), "</v2/p/tags/list?n=2&last=b>; rel=\"next\"");
    let (h, body) = s
        .expect(Method::GET, "/v2/p/tags/list?n=2&last=d", StatusCode::OK, None)
        .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["tags"],
        serde_json::json!(["e"])
    );
    assert!(h.get("link").is_none());
    s.expect(
        Method::GET,
        "/v2/p/tags/list?n=x",
        StatusCode::BAD_REQUEST,
        Some("PAGINATION_NUMBER_INVALID"),
    )
    .await;
    s.expect(
        Method::GET,
        "/v2/nothing/tags/list",
        StatusCode::NOT_FOUND,
        Some("NAME_UNKNOWN"),
    )
    .await;

    for repo in ["z/y", "m", "a/b/c"] {
        s.push_blob(repo, b"x").await;
    }
    let (_, body) = s.expect(Method::GET, "/v2/_catalog", StatusCode::OK, None).await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["repositories"],
        serde_json::json!(["a/b/c", "m", "p", "z/y"])
    );
    let (h, body) = s
        .expect(Method::GET, "/v2/_catalog?n=2&last=a/b/c", StatusCode::OK, None)
        .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["repositories"],
        serde_json::json!(["m", "p"])
    );
    assert_eq!(header(&h, "link"), "</v2/_catalog?n=2&last=p>; rel=\"next\"");
}

/// Pushes an image to `repo` tagged `v1` and the empty config of artifacts; returns the image's manifest
/// and a maker of artifact manifests of a type whose subject it is.
async fn push_subject(s: &Server, repo: &str) -> (Vec<u8>, impl Fn(&str) -> Vec<u8>) {
    let (manifest, _, _) = push_image(s, repo, b"l").await;
    expect(
        s.put_manifest(repo, "v1", OCI_MANIFEST, &manifest).await,
        StatusCode::CREATED,
        None,
    )
    .await;
    let empty = s.push_blob(repo, b"{}").await;
    let (subject, size) = (sha256(&manifest), manifest.len());
    let artifact = move |artifact_type: &str| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": size},
            "annotations": {"org.example": "yes"},
        }))
        .unwrap()
    };
    (manifest, artifact)
}

#[tokio::test]
async fn referrers_with_artifact_type_filter_and_oci_subject() {
    let s = Server::start().await;
    let (manifest, artifact) = push_subject(&s, "r").await;
    let subject = sha256(&manifest);
    let sig = artifact("application/vnd.example.signature");
    let sbom = artifact("application/vnd.example.sbom");
    for body in [&sig, &sbom] {
        let (h, _) = expect(
            s.put_manifest("r", &sha256(body), OCI_MANIFEST, body).await,
            StatusCode::CREATED,
            None,
        )
        .await;
        assert_eq!(header(&h, "oci-subject"), subject);
    }
    let (h, body) = s
        .expect(
            Method::GET,
            &format!("/v2/r/referrers/{subject}"),
            StatusCode::OK,
            None,
        )
        .await;
    assert_eq!(header(&h, "content-type"), OCI_INDEX);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
    let (h, body) = expect(
        s.req(
            Method::GET,
            &format!("/v2/r/referrers/{subject}?artifactType=application/vnd.example.sbom"),
        )
        .send()
        .await
        .unwrap(),
        StatusCode::OK,
        None,
    )
    .await;
    assert_eq!(header(&h, "oci-filters-applied"), "artifactType");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["manifests"],
        serde_json::json!([{"mediaType": OCI_MANIFEST, "digest": sha256(&sbom), "size": sbom.len(),
        "artifactType": "application/vnd.example.sbom", "annotations": {"org.example": "yes"}}])
    );
    // Deleting a referrer removes it from the list.
    expect(
        s.req(Method::DELETE, &format!("/v2/r/manifests/{}", sha256(&sig)))
            .send()
            .await
            .unwrap(),
        StatusCode::ACCEPTED,
        None,
    )
    .await;
    let (_, body) = s
        .expect(
            Method::GET,
            &format!("/v2/r/referrers/{subject}"),
            StatusCode::OK,
            None,
        )
        .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["manifests"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // No referrers: an empty index. A bad digest: 400.
    let (_, body) = expect(
        s.req(Method::GET, &format!("/v2/r/referrers/{}", sha256(b"none")))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
        None,
    )
    .await;
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["manifests"],
        serde_json::json!([])
    );
    s.expect(
        Method::GET,
        "/v2/r/referrers/sha256:zz",
        StatusCode::BAD_REQUEST,
        Some("DIGEST_INVALID"),
    )
    .await;
}

#[tokio::test]
async fn blob_delete() {
    let s = Server::start().await;
    let d = s.push_blob("b", b"bye").await;
    s.expect(
        Method::DELETE,
        &format!("/v2/b/blobs/{d}"),
        StatusCode::ACCEPTED,
        None,
    )
    .await;
    s.expect(
        Method::GET,
        &format!("/v2/b/blobs/{d}"),
        StatusCode::NOT_FOUND,
        Some("BLOB_UNKNOWN"),
    )
    .await;
    s.expect(
        Method::DELETE,
        &format!("/v2/b/blobs/{d}"),
        StatusCode::NOT_FOUND,
        Some("BLOB_UNKNOWN"),
    )
    .await;
}

#[tokio::test]
async fn malformed_requests_are_400_never_500() {
    let s = Server::start().await;
    let d = sha256(b"x");
    let cases: Vec<(Method, String, &str)> = vec![
        (Method::GET, format!("/v2/UPPER/blobs/{d}"), "NAME_INVALID"),
        (Method::GET, format!("/v2/_x/blobs/{d}"), "NAME_INVALID"),
        (Method::GET, format!("/v2//blobs/{d}"), "NAME_INVALID"),
        (
            Method::GET,
            "/v2/a/blobs/sha256:..%2f..%2fetc%2fpasswd".to_owned(),
            "DIGEST_INVALID",
        ),
        (Method::GET, "/v2/a/blobs/sha256:ABC".to_owned(), "DIGEST_INVALID"),
        (
            Method::GET,
            "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".to_owned(),
            "DIGEST_INVALID",
        ),
        (Method::GET, "/v2/a/blobs/%ff".to_owned(), "DIGEST_INVALID"),
        (Method::GET, format!("/v2/a%ff/blobs/{d}"), "NAME_INVALID"),
        (
            Method::GET,
            "/v2/a/manifests/sha256:1234".to_owned(),
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/a/manifests/.hidden".to_owned(),
            "MANIFEST_INVALID",
        ),
        (
            Method::PUT,
            "/v2/a/manifests/bad%20tag".to_owned(),
            "MANIFEST_INVALID",
        ),
        (
            Method::POST,
            "/v2/a/blobs/uploads/?digest=sha256:short".to_owned(),
            "DIGEST_INVALID",
        ),
        (
            Method::POST,
            "/v2/a/blobs/uploads/?mount=nope&from=b".to_owned(),
            "DIGEST_INVALID",
        ),
    ];
    for (method, path, code) in cases {
        let r = s.req(method.clone(), &path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{method} {path}");
        expect(r, StatusCode::BAD_REQUEST, Some(code)).await;
    }
    let (manifest, _, _) = push_image(&s, "a", b"l").await;
    let r = s
        .req(Method::PUT, "/v2/a/manifests/ok?tag=..")
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::BAD_REQUEST, Some("MANIFEST_INVALID")).await;
    s.expect(
        Method::PATCH,
        &format!("/v2/a/blobs/{d}"),
        StatusCode::METHOD_NOT_ALLOWED,
        Some("UNSUPPORTED"),
    )
    .await;
    // Paths that an HTTP client library would normalise, sent raw.
    for path in [
        format!("/v2/a/../b/blobs/{d}"),
        format!("/v2/a/%2e%2e/b/blobs/{d}"),
        format!("/v2/../../x/blobs/{d}"),
        "/v2/a/blobs/sha256:../../../etc/passwd".to_owned(),
    ] {
        let addr = s.addr.to_string();
        let (head, body) = tokio::task::spawn_blocking(move || raw_get(&addr, &path, &[]))
            .await
            .unwrap();
        let reply = format!("{head}{}", String::from_utf8_lossy(&body));
        // 400 for a bad name or digest; 404 where the segments no longer form an endpoint.
        let bad = reply.starts_with("HTTP/1.1 400") && reply.contains("NAME_INVALID");
        let no_endpoint = reply.starts_with("HTTP/1.1 404") && reply.contains("UNSUPPORTED");
        assert!(bad || no_endpoint, "{reply}");
    }
}

/// Overwrites the stored bytes of blob `digest` with as many other bytes (bit rot a size check misses).
fn rot(s: &Server, digest: &str) {
    let path = s.root.join("blobs/sha256").join(&digest["sha256:".len()..]);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    std::fs::write(&path, vec![b'x'; len]).unwrap();
}

/// A 5xx answer: UNKNOWN, a request id, and nothing of the server's paths.
fn assert_server_error(s: &Server, what: &str, status: StatusCode, body: &[u8]) {
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{what}");
    let text = String::from_utf8_lossy(body);
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["errors"][0]["code"], "UNKNOWN", "{what}: {text}");
    let id = v["errors"][0]["detail"]["request_id"].as_str().unwrap();
    assert!(text.contains(&format!("request {id}")), "{what}: {text}");
    let root = s.root.display().to_string();
    assert!(
        !text.contains(&root) && !text.contains("blobs/"),
        "{what}: {text}"
    );
}

#[tokio::test]
async fn regression_a_manifest_corrupted_on_disk_is_a_server_error_not_a_client_error() {
    let s = Server::start().await;
    let (manifest, artifact) = push_subject(&s, "r").await;
    let digest = sha256(&manifest);
    let artifact = artifact("application/vnd.example.sig");
    expect(
        s.put_manifest("r", &sha256(&artifact), OCI_MANIFEST, &artifact)
            .await,
        StatusCode::CREATED,
        None,
    )
    .await;
    rot(&s, &digest);
    rot(&s, &sha256(&artifact));
    for (method, path) in [
        (Method::GET, "/v2/r/manifests/v1".to_owned()),
        (Method::GET, format!("/v2/r/manifests/{digest}")),
        (Method::GET, format!("/v2/r/referrers/{digest}")),
    ] {
        let r = s.req(method.clone(), &path).send().await.unwrap();
        let status = r.status();
        let body = r.bytes().await.unwrap();
        assert_server_error(&s, &format!("{method} {path}"), status, &body);
    }
    let r = s.req(Method::HEAD, "/v2/r/manifests/v1").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // fsck names the damaged file.
    let problems = kiln_registry::FsStorage::open(&s.root).unwrap().fsck().unwrap();
    let damaged = s.root.join("blobs/sha256").join(&digest[7..]);
    assert!(
        problems.iter().any(|p| p.path == damaged.display().to_string()),
        "{problems:?}"
    );
    // A damaged manifest can be deleted (its bytes name no subject to unlink), tags and all.
    let path = format!("/v2/r/manifests/{digest}");
    s.expect(Method::DELETE, &path, StatusCode::ACCEPTED, None).await;
    s.expect(
        Method::GET,
        "/v2/r/manifests/v1",
        StatusCode::NOT_FOUND,
        Some("MANIFEST_UNKNOWN"),
    )
    .await;
    // An upload whose bytes do not match the client's digest stays the client's error.
    let wrong = sha256(b"other");
    let r = s
        .req(Method::POST, &format!("/v2/r/blobs/uploads/?digest={wrong}"))
        .body(b"bytes".to_vec())
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::BAD_REQUEST, Some("DIGEST_INVALID")).await;
}
