//! Push then pull keeps every digest, against both registries; a second push moves no blob.

use kiln_client::{Platform, PlatformChoice, Reference};
use kiln_oci::ImageStore;

use crate::support::{Distribution, Registry, busybox_store, client, kiln_serve};

async fn round_trip(registry: &dyn Registry) {
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let client = client(None);
    let target: Reference = format!("{}/kiln/busybox:1", registry.host()).parse().unwrap();
    let pushed = client
        .push_image(&store, &descriptor, &target, None)
        .await
        .unwrap();
    assert_eq!(pushed.digest, descriptor.digest, "{}", registry.kind());
    assert_eq!(pushed.blobs.get("pushed"), Some(&2));

    // Again: every blob exists, nothing is uploaded.
    let again = client
        .push_image(&store, &descriptor, &target, None)
        .await
        .unwrap();
    assert_eq!(again.blobs.get("exists"), Some(&2));
    assert_eq!(again.bytes, 0);

    let other = ImageStore::open(dir.path().join("other")).unwrap();
    let host = PlatformChoice::One(Platform::host());
    let pulled = client.pull_image(&target, &other, "copy:1", &host).await.unwrap();
    assert_eq!(pulled.digest, descriptor.digest);
    let original = store.resolve(&descriptor).unwrap();
    let copy = other
        .resolve(&other.require("copy:1").unwrap().descriptor)
        .unwrap();
    assert_eq!(
        copy.manifest, original.manifest,
        "config and layer digests are kept"
    );
    assert_eq!(copy.config, original.config);
    for layer in &copy.manifest.layers {
        assert!(other.blobs().verify(&layer.digest).unwrap());
    }

    // By digest, into a third store; a manifest digest that does not match is refused.
    let by_digest = target.with_digest(descriptor.digest.clone());
    let third = ImageStore::open(dir.path().join("third")).unwrap();
    client.pull_image(&by_digest, &third, "d", &host).await.unwrap();
    let wrong = target.with_digest(kiln_oci::Algorithm::Sha256.digest(b"not it"));
    let err = client.get_manifest(&wrong).await.unwrap_err().to_string();
    assert!(err.contains("404") || err.contains("MANIFEST_UNKNOWN"), "{err}");
}

#[tokio::test]
async fn push_pull_round_trip_kiln_serve() {
    let registry = kiln_serve().await;
    round_trip(&registry).await;
}

#[tokio::test]
async fn push_pull_round_trip_distribution() {
    let Some(registry) = Distribution::start(None).await else {
        return;
    };
    round_trip(&registry).await;
}

#[tokio::test]
async fn cross_repository_mount_moves_no_bytes() {
    let registry = kiln_serve().await;
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let client = client(None);
    let first: Reference = format!("{}/a/one:1", registry.addr).parse().unwrap();
    client
        .push_image(&store, &descriptor, &first, None)
        .await
        .unwrap();
    let second: Reference = format!("{}/b/two:1", registry.addr).parse().unwrap();
    let pushed = client
        .push_image(&store, &descriptor, &second, Some("a/one"))
        .await
        .unwrap();
    assert_eq!(pushed.blobs.get("mounted"), Some(&2), "{pushed:?}");
    assert_eq!(pushed.bytes, 0);
}
