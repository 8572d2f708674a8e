//! A blob whose bytes were changed on the way is refused, the error names its digest, and the store keeps
//! nothing of the pull.

use kiln_client::{ClientError, Platform, PlatformChoice, Reference};
use kiln_oci::ImageStore;

use crate::support::{Distribution, ProxyMode, Registry, busybox_store, client, kiln_serve, proxy};

async fn tampered_pull(registry: &dyn Registry) {
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let client = client(None);
    let target: Reference = format!("{}/t/bb:1", registry.host()).parse().unwrap();
    client
        .push_image(&store, &descriptor, &target, None)
        .await
        .unwrap();

    let evil = proxy(
        registry.addr(),
        ProxyMode {
            flip_blobs: true,
            ..ProxyMode::default()
        },
    )
    .await;
    let through: Reference = format!("{}/t/bb:1", evil.addr).parse().unwrap();
    let other_dir = dir.path().join("other");
    let other = ImageStore::open(&other_dir).unwrap();
    let err = client
        .pull_image(&through, &other, "x", &PlatformChoice::One(Platform::host()))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::CorruptBlob { .. }), "{err}");
    let image = store.resolve(&descriptor).unwrap();
    let message = err.to_string();
    let named = std::iter::once(&image.manifest.config)
        .chain(&image.manifest.layers)
        .any(|d| message.contains(&d.digest.to_string()));
    assert!(named, "{message}");
    assert!(other.refs().unwrap().is_empty());
    assert!(other.blobs().list().unwrap().is_empty(), "no blob kept");
    assert_eq!(
        fs_err::read_dir(other_dir.join("ingest")).unwrap().count(),
        0,
        "no partial file"
    );
}

#[tokio::test]
async fn tampered_blob_is_refused_kiln_serve() {
    let registry = kiln_serve().await;
    tampered_pull(&registry).await;
}

#[tokio::test]
async fn tampered_blob_is_refused_distribution() {
    let Some(registry) = Distribution::start(None).await else {
        return;
    };
    tampered_pull(&registry).await;
}
