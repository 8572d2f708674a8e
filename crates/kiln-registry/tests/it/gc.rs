//! Garbage collection and fsck on a root the server wrote: what is reachable from a tag survives (index
//! children and referrers included), fresh uploads survive the grace period, expired tags go.

use std::time::Duration;

use kiln_registry::FsStorage;
use kiln_registry::storage::{GcOptions, TagExpiry};
use reqwest::{Method, StatusCode};

use crate::support::{Server, expect, push_image, sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn gc(s: &Server, grace: Duration, dry_run: bool) -> kiln_registry::storage::GcReport {
    let options = GcOptions {
        dry_run,
        grace,
        expire_tags: Vec::new(),
    };
    FsStorage::open(&s.root).unwrap().gc(&options).unwrap()
}

async fn push_tagged(s: &Server, repo: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, String, String) {
    let (manifest, _, layer_digest) = push_image(s, repo, layer).await;
    expect(
        s.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await,
        StatusCode::CREATED,
        None,
    )
    .await;
    let digest = sha256(&manifest);
    (manifest, digest, layer_digest)
}

#[tokio::test]
async fn gc_keeps_index_children_and_referrers_and_removes_the_unreachable() {
    let s = Server::start().await;
    let (a, a_digest, a_layer) = push_tagged(&s, "app", "a-only-via-index", b"layer a").await;
    let (b, b_digest, _) = push_tagged(&s, "app", "b", b"layer b").await;
    // The index is the only tag that reaches `a`.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": a_digest, "size": a.len()},
            {"mediaType": OCI_MANIFEST, "digest": b_digest, "size": b.len()},
        ],
    }))
    .unwrap();
    expect(
        s.put_manifest("app", "multi", OCI_INDEX, &index).await,
        StatusCode::CREATED,
        None,
    )
    .await;
    s.expect(
        Method::DELETE,
        "/v2/app/manifests/a-only-via-index",
        StatusCode::ACCEPTED,
        None,
    )
    .await;
    // A signature-like artifact whose subject is `a`, pushed by digest only, with a blob of its own.
    let sig_blob = s.push_blob("app", b"signature").await;
    let empty = s.push_blob("app", b"{}").await;
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig_blob, "size": 9}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": a_digest, "size": a.len()},
    }))
    .unwrap();
    let artifact_digest = sha256(&artifact);
    let r = s
        .put_manifest("app", &artifact_digest, OCI_MANIFEST, &artifact)
        .await;
    expect(r, StatusCode::CREATED, None).await;
    // An image whose only tag is deleted, and a blob nothing references.
    let (_, gone_digest, gone_layer) = push_tagged(&s, "app", "old", b"layer of a dead image").await;
    s.expect(
        Method::DELETE,
        "/v2/app/manifests/old",
        StatusCode::ACCEPTED,
        None,
    )
    .await;
    let stray = s.push_blob("other", b"stray blob").await;

    // Within the grace period nothing goes; a dry run reports and removes nothing.
    assert_eq!(gc(&s, Duration::from_secs(3600), false), Default::default());
    let dry = gc(&s, Duration::ZERO, true);
    assert_eq!(dry.manifests, vec![format!("app@{gone_digest}")]);
    assert!(
        dry.blobs.contains(&gone_layer) && dry.blobs.contains(&stray),
        "{dry:?}"
    );
    s.expect(
        Method::GET,
        &format!("/v2/app/manifests/{gone_digest}"),
        StatusCode::OK,
        None,
    )
    .await;

    let report = gc(&s, Duration::ZERO, false);
    assert_eq!(report, dry, "the dry run said exactly what the real run did");
    assert!(
        !report.blobs.contains(&a_layer) && !report.blobs.contains(&sig_blob),
        "{report:?}"
    );
    for path in [
        format!("/v2/app/manifests/{a_digest}"),
        format!("/v2/app/manifests/{artifact_digest}"),
        format!("/v2/app/blobs/{a_layer}"),
        format!("/v2/app/blobs/{sig_blob}"),
        "/v2/app/manifests/multi".to_owned(),
        "/v2/app/manifests/b".to_owned(),
    ] {
        s.expect(Method::GET, &path, StatusCode::OK, None).await;
    }
    let (_, body) = s
        .expect(
            Method::GET,
            &format!("/v2/app/referrers/{a_digest}"),
            StatusCode::OK,
            None,
        )
        .await;
    assert!(String::from_utf8(body).unwrap().contains(&artifact_digest));
    s.expect(
        Method::GET,
        &format!("/v2/app/manifests/{gone_digest}"),
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
    s.expect(
        Method::GET,
        &format!("/v2/app/blobs/{gone_layer}"),
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
    s.expect(
        Method::GET,
        &format!("/v2/other/blobs/{stray}"),
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
    assert!(!s.root.join("blobs/sha256").join(&gone_layer[7..]).exists());
    assert_eq!(FsStorage::open(&s.root).unwrap().fsck().unwrap(), vec![]);
    assert_eq!(
        gc(&s, Duration::ZERO, false),
        Default::default(),
        "a second run finds nothing"
    );
}

#[tokio::test]
async fn uploads_in_flight_survive_the_grace_period() {
    let s = Server::start().await;
    let blob = s.push_blob("app", b"uploaded, manifest not pushed yet").await;
    let location = s.start_upload("app").await;
    let r = s
        .req(Method::PATCH, &location)
        .body(b"half".to_vec())
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::ACCEPTED, None).await;

    let report = gc(&s, Duration::from_secs(3600), false);
    assert_eq!(report, Default::default());
    s.expect(
        Method::GET,
        &format!("/v2/app/blobs/{blob}"),
        StatusCode::OK,
        None,
    )
    .await;
    s.expect(Method::GET, &location, StatusCode::NO_CONTENT, None)
        .await;

    let report = gc(&s, Duration::ZERO, false);
    assert_eq!(report.blobs, vec![blob.clone()]);
    assert_eq!(report.uploads.len(), 1, "{report:?}");
    s.expect(
        Method::GET,
        &format!("/v2/app/blobs/{blob}"),
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
    s.expect(
        Method::GET,
        &location,
        StatusCode::NOT_FOUND,
        Some("BLOB_UPLOAD_UNKNOWN"),
    )
    .await;
}

#[tokio::test]
async fn expired_temporary_tags_go_and_their_images_with_them() {
    let s = Server::start().await;
    let (_, kept, _) = push_tagged(&s, "app", "v1", b"kept").await;
    let (_, temporary, _) = push_tagged(&s, "app", "change_12_v2", b"temporary").await;
    let options = GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
        expire_tags: vec![TagExpiry::new("change_*", Duration::ZERO).unwrap()],
    };
    std::thread::sleep(Duration::from_millis(20));
    let report = FsStorage::open(&s.root).unwrap().gc(&options).unwrap();
    assert_eq!(report.expired_tags, vec!["app:change_12_v2".to_owned()]);
    assert_eq!(report.manifests, vec![format!("app@{temporary}")]);
    s.expect(Method::GET, "/v2/app/manifests/v1", StatusCode::OK, None)
        .await;
    s.expect(
        Method::GET,
        &format!("/v2/app/manifests/{kept}"),
        StatusCode::OK,
        None,
    )
    .await;
    s.expect(
        Method::GET,
        "/v2/app/manifests/change_12_v2",
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
}

#[tokio::test]
async fn fsck_names_corrupt_blobs_and_dangling_links() {
    let s = Server::start().await;
    let (_, digest, layer) = push_tagged(&s, "app", "v1", b"layer").await;
    let storage = FsStorage::open(&s.root).unwrap();
    assert_eq!(storage.fsck().unwrap(), vec![]);
    let layer_path = s.root.join("blobs/sha256").join(&layer[7..]);
    std::fs::write(&layer_path, b"bit rot").unwrap();
    std::fs::remove_file(s.root.join("blobs/sha256").join(&digest[7..])).unwrap();
    let problems = storage.fsck().unwrap();
    let text = format!("{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.path == layer_path.display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(&format!("_manifests/sha256/{}", &digest[7..])),
        "{text}"
    );
    assert!(text.contains("_layers/sha256"), "{text}");
}
