//! Garbage collection and fsck on a root the server wrote: what is reachable from a tag survives (index
//! children and referrers included), fresh uploads survive the grace period, expired tags go.

use std::time::Duration;

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
    s.storage.gc(&options).unwrap()
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
    assert_eq!(s.storage.fsck().unwrap(), vec![]);
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
    let report = s.storage.gc(&options).unwrap();
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
    let storage = &s.storage;
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

/// What a pusher got acknowledged: the repository, the tag, the manifest's digest and its blobs' bytes.
struct Acknowledged {
    repo: String,
    tag: String,
    digest: String,
    blobs: Vec<(String, Vec<u8>)>,
}

/// The grace period of the GC loop below: short, so that layers grow old within the test.
const GRACE: Duration = Duration::from_millis(300);

/// One push of issue 11's race: a layer that no manifest references (pushed, then left until about the
/// grace period is over, so that a GC run marks it as garbage), found again with a HEAD, mounted into
/// another repository or pushed again, then referenced by a tagged manifest. `None` when GC collected a
/// blob first and the manifest was refused (400): nothing was promised then.
async fn push_reusing_an_unreferenced_layer(s: &Server, worker: usize, round: usize) -> Option<Acknowledged> {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","worker":{worker}}}"#).into_bytes();
    let layer = format!("layer {worker}/{round}").into_bytes();
    let config_digest = s.push_blob("app", &config).await;
    let layer_digest = s.push_blob("app", &layer).await;
    // Around the end of the grace period: just young, or just old and marked by the GC running now.
    let jitter = Duration::from_millis(((worker * 31 + round * 17) % 100) as u64);
    tokio::time::sleep(GRACE - Duration::from_millis(50) + jitter).await;
    let repo = match round % 3 {
        // A client checks the layer is there and skips uploading it.
        0 => {
            let r = s
                .req(Method::HEAD, &format!("/v2/app/blobs/{layer_digest}"))
                .send()
                .await
                .unwrap();
            if r.status() != StatusCode::OK {
                s.push_blob("app", &layer).await;
            }
            "app".to_owned()
        }
        // Both blobs mounted into a repository of their own.
        1 => {
            let to = format!("mirror/w{worker}");
            for d in [&config_digest, &layer_digest] {
                let path = format!("/v2/{to}/blobs/uploads/?mount={d}&from=app");
                let r = s.req(Method::POST, &path).send().await.unwrap();
                let status = r.status();
                if status != StatusCode::CREATED {
                    // The source was collected meanwhile: the mount fell back to a session.
                    assert_eq!(status, StatusCode::ACCEPTED);
                    let bytes = if d == &config_digest { &config } else { &layer };
                    s.push_blob(&to, bytes).await;
                }
            }
            to
        }
        // The layer pushed again, as a client does that does not check first.
        _ => {
            s.push_blob("app", &layer).await;
            "app".to_owned()
        }
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let tag = format!("w{worker}-r{round}");
    let r = s.put_manifest(&repo, &tag, OCI_MANIFEST, &manifest).await;
    if r.status() == StatusCode::BAD_REQUEST {
        // GC removed a blob before the manifest came: refused, so nothing was promised.
        expect(r, StatusCode::BAD_REQUEST, Some("MANIFEST_BLOB_UNKNOWN")).await;
        return None;
    }
    expect(r, StatusCode::CREATED, None).await;
    Some(Acknowledged {
        repo,
        tag,
        digest: sha256(&manifest),
        blobs: vec![(config_digest, config), (layer_digest, layer)],
    })
}

/// Issue 11, item 2: a manifest acknowledged while GC runs, referencing a layer that nothing referenced
/// when GC marked (checked with HEAD, mounted or pushed again meanwhile), keeps that layer: GC runs in a
/// loop while four pushers do exactly that; afterwards every acknowledged manifest and its blobs read
/// back and fsck is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_online_gc_keeps_layers_reused_during_mark() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let s = Arc::new(Server::start().await);
    // Tagged images for every run to mark, so that runs last long enough for pushes to land mid-run.
    let background: Vec<_> = (0..4)
        .map(|k| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for n in 0..15 {
                    push_tagged(
                        &s,
                        "base",
                        &format!("b{k}-{n}"),
                        format!("base {k}/{n}").as_bytes(),
                    )
                    .await;
                }
            })
        })
        .collect();
    for b in background {
        b.await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (storage, stop) = (s.storage.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let options = GcOptions {
                grace: GRACE,
                ..GcOptions::default()
            };
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                storage.gc(&options).unwrap();
                runs += 1;
            }
            runs
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    let mut pushers = Vec::new();
    for worker in 0..4 {
        let s = Arc::clone(&s);
        pushers.push(tokio::spawn(async move {
            let (mut acknowledged, mut refused) = (Vec::new(), 0);
            let mut round = 0;
            while std::time::Instant::now() < deadline {
                match push_reusing_an_unreferenced_layer(&s, worker, round).await {
                    Some(a) => acknowledged.push(a),
                    None => refused += 1,
                }
                round += 1;
            }
            (acknowledged, refused)
        }));
    }
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for p in pushers {
        let (a, r) = p.await.unwrap();
        acknowledged.extend(a);
        refused += r;
    }
    stop.store(true, Ordering::Relaxed);
    let runs = collector.join().unwrap();
    eprintln!(
        "{} manifests acknowledged, {refused} refused, {runs} gc runs",
        acknowledged.len()
    );
    assert!(acknowledged.len() >= 8 && runs >= 20, "too little happened");
    let mut lost = Vec::new();
    for a in &acknowledged {
        for path in [
            format!("/v2/{}/manifests/{}", a.repo, a.tag),
            format!("/v2/{}/manifests/{}", a.repo, a.digest),
        ] {
            let r = s.req(Method::GET, &path).send().await.unwrap();
            if r.status() != StatusCode::OK {
                lost.push(format!("{path}: {}", r.status()));
            }
        }
        for (d, bytes) in &a.blobs {
            let path = format!("/v2/{}/blobs/{d}", a.repo);
            let r = s.req(Method::GET, &path).send().await.unwrap();
            let status = r.status();
            if status != StatusCode::OK || r.bytes().await.unwrap() != bytes.as_slice() {
                lost.push(format!("{path} of {}:{}: {status}", a.repo, a.tag));
            }
        }
    }
    assert_eq!(lost, Vec::<String>::new(), "acknowledged data lost");
    assert_eq!(s.storage.fsck().unwrap(), vec![]);
}
