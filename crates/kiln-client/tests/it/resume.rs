//! An upload whose connection drops in the middle of a chunk continues from where the registry says it is.

use kiln_client::{Platform, PlatformChoice, Reference};
use kiln_oci::ImageStore;

use crate::support::{Distribution, Registry, busybox_store, client_with, cut_proxy, kiln_serve};

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

    let direct: Reference = format!("{}/r/bb:1", registry.host()).parse().unwrap();
    let other = ImageStore::open(dir.path().join("other")).unwrap();
    let pulled = client
        .pull_image(&direct, &other, "x", &PlatformChoice::One(Platform::host()))
        .await
        .unwrap();
    assert_eq!(pulled.digest, descriptor.digest);
}

#[tokio::test]
async fn dropped_upload_resumes_kiln_serve() {
    let registry = kiln_serve().await;
    resumes(&registry).await;
}

#[tokio::test]
async fn dropped_upload_resumes_distribution() {
    let Some(registry) = Distribution::start(None).await else {
        return;
    };
    resumes(&registry).await;
}
