//! Registry to registry without a staging store: blobs stream from one registry into the other (in
//! ranged chunks above the chunk size, continuing after a dropped connection), digests are kept, and on
//! one registry blobs are mounted.

use kiln_client::{Platform, PlatformChoice, Reference};

use crate::support::{
    Distribution, ProxyMode, Registry, busybox_store, client, client_with, cut_proxy, kiln_serve, proxy,
    pulls_back,
};

async fn copies(from: &dyn Registry, to: &dyn Registry) {
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let source: Reference = format!("{}/src/bb:1", from.host()).parse().unwrap();
    client(None)
        .push_image(&store, &descriptor, &source, None)
        .await
        .unwrap();

    // The source is read through a counting proxy; the target's connection is cut once mid-upload.
    let counted = proxy(from.addr(), ProxyMode::default()).await;
    let flaky = cut_proxy(to.addr(), 400_000).await;
    let through: Reference = format!("{}/src/bb:1", counted.addr).parse().unwrap();
    let target: Reference = format!("{}/dst/bb:2", flaky.addr).parse().unwrap();
    let client = client_with(None, |c| c.chunk_size = 256 * 1024);
    let host = PlatformChoice::One(Platform::host());
    let copied = client.copy_image(&through, &target, &host).await.unwrap();
    let what = format!("{} -> {}", from.kind(), to.kind());
    assert_eq!(copied.digest, descriptor.digest, "{what}");
    assert_eq!(copied.blobs.get("pushed"), Some(&2), "{what}: {copied:?}");
    assert_eq!(flaky.cuts.load(std::sync::atomic::Ordering::SeqCst), 1, "{what}");
    let ranged = counted
        .requests()
        .iter()
        .filter(|r| r.contains("[Range: bytes="))
        .count();
    assert!(
        ranged >= 3,
        "{what}: the layer goes in ranged chunks: {:#?}",
        counted.requests()
    );

    pulls_back(&client, to, "dst/bb:2", &descriptor, dir.path()).await;
    let direct: Reference = format!("{}/dst/bb:2", to.host()).parse().unwrap();

    // Within one registry, every blob is mounted.
    let same: Reference = format!("{}/third/bb:3", to.host()).parse().unwrap();
    let mounted = client.copy_image(&direct, &same, &host).await.unwrap();
    assert_eq!(mounted.blobs.get("mounted"), Some(&2), "{what}: {mounted:?}");
    assert_eq!(mounted.bytes, 0);
}

#[tokio::test]
async fn copy_kiln_serve_to_distribution_and_back() {
    let kiln = kiln_serve().await;
    let Some(distribution) = Distribution::start(None).await else {
        return;
    };
    copies(&kiln, &distribution).await;
    copies(&distribution, &kiln).await;
}
