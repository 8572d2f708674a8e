//! Flaky networks and busy registries: an upload whose connection drops in the middle of a chunk
//! continues from where the registry says it is; a download cut mid-blob continues with a `Range`
//! request; 429 and 503 answers to every kind of push request are retried.

use kiln_client::{Platform, PlatformChoice, Reference};
use kiln_oci::ImageStore;

use crate::support::{ProxyMode, Registry, busybox_store, client, client_with, cut_proxy, proxy, pulls_back};

async fn resumes(registry: &dyn Registry) {
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    // Chunks of 256 KiB; the connection is cut 600 kB into the traffic, inside the third chunk.
    let flaky = cut_proxy(registry.addr(), 600_000).await;
    let client = client_with(None, |c| c.chunk_size = 256 * 1024);
    let target: Reference = format!("{}/r/bb:1", flaky.addr).parse().unwrap();
    let pushed = client
        .push_image(&store, &descriptor, &target, None)
        .await
        .unwrap();
    assert_eq!(
        flaky.cuts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{}",
        registry.kind()
    );
    assert_eq!(pushed.digest, descriptor.digest);

    pulls_back(&client, registry, "r/bb:1", &descriptor, dir.path()).await;
}

on_both_registries!(dropped_upload_resumes, resumes);

async fn pull_resumes(registry: &dyn Registry) {
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let client = client(None);
    let direct: Reference = format!("{}/r/bb:1", registry.host()).parse().unwrap();
    client
        .push_image(&store, &descriptor, &direct, None)
        .await
        .unwrap();

    // The busybox layer is about 1 MB: its download is cut after 300 kB.
    let flaky = proxy(
        registry.addr(),
        ProxyMode {
            cut_download_after: Some(300_000),
            ..ProxyMode::default()
        },
    )
    .await;
    let through: Reference = format!("{}/r/bb:1", flaky.addr).parse().unwrap();
    let other = ImageStore::open(dir.path().join("other")).unwrap();
    let pulled = client
        .pull_image(&through, &other, "x", &PlatformChoice::One(Platform::host()))
        .await
        .unwrap();
    assert_eq!(pulled.digest, descriptor.digest, "{}", registry.kind());
    let requests = flaky.requests();
    let cut = requests
        .iter()
        .find_map(|r| r.strip_prefix("cut ").and_then(|r| r.split(' ').next()))
        .unwrap_or_else(|| panic!("{}: nothing was cut: {requests:#?}", registry.kind()));
    // The same blob again, from where the cut left it (not from byte 0).
    let resumed = requests
        .iter()
        .filter_map(|r| r.strip_prefix(&format!("GET {cut} [Range: bytes=")))
        .filter_map(|r| r.split('-').next()?.parse::<u64>().ok())
        .collect::<Vec<_>>();
    assert!(
        resumed.len() == 1 && resumed[0] > 0 && resumed[0] <= 300_000,
        "{}: {requests:#?}",
        registry.kind()
    );
    // And what the store holds verifies.
    let image = other.require("x").unwrap();
    for digest in other.reachable(&image.descriptor).unwrap() {
        let path = other.blobs().blob_path(&digest);
        let bytes = fs_err::read(&path).unwrap();
        assert_eq!(digest.algorithm().digest(&bytes), digest);
    }
}

on_both_registries!(cut_download_resumes_with_a_range, pull_resumes);

async fn push_retries(registry: &dyn Registry) {
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let busy = proxy(
        registry.addr(),
        ProxyMode {
            fail_once: vec![
                ("HEAD", 503),
                ("POST", 503),
                ("PATCH", 503),
                ("PUT", 429),
                ("GET", 503),
            ],
            ..ProxyMode::default()
        },
    )
    .await;
    // 256 KiB chunks, so that the layer goes in PATCHes.
    let client = client_with(None, |c| c.chunk_size = 256 * 1024);
    let target: Reference = format!("{}/busy/bb:1", busy.addr).parse().unwrap();
    let pushed = client
        .push_image(&store, &descriptor, &target, None)
        .await
        .unwrap();
    assert_eq!(pushed.digest, descriptor.digest, "{}", registry.kind());
    let requests = busy.requests();
    for method in ["HEAD", "POST", "PATCH", "PUT"] {
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with("answered ") && r.contains(&format!(" to {method} "))),
            "{}: no {method} was refused: {requests:#?}",
            registry.kind()
        );
    }
    // What arrived is the image, byte for byte.
    pulls_back(&client, registry, "busy/bb:1", &descriptor, dir.path()).await;
}

on_both_registries!(push_retries_429_and_503, push_retries);
