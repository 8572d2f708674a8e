//! Multi-arch indexes: pushed whole (children by digest, then the index), pulled whole with `--all` or
//! one platform's image.

use kiln_client::{ClientError, Platform, PlatformChoice, Reference};
use kiln_oci::manifest::Descriptor;
use kiln_oci::media_types as mt;
use kiln_oci::{Algorithm, ImageStore};

use crate::support::{Distribution, Registry, busybox_store, client, kiln_serve};

fn put(store: &ImageStore, media_type: &str, bytes: &[u8]) -> Descriptor {
    let digest = store.blobs().put(Algorithm::Sha256, bytes, None).unwrap();
    Descriptor {
        media_type: Some(media_type.to_owned()),
        digest,
        size: bytes.len() as u64,
        urls: None,
        artifact_type: None,
        annotations: None,
    }
}

/// An index of the busybox image (this host's platform) and a small linux/arm64/v8 image.
fn index_store(dir: &std::path::Path) -> Option<(ImageStore, Descriptor, Descriptor, Descriptor)> {
    let (store, host) = busybox_store(dir, "bb:1")?;
    let layer = put(
        &store,
        mt::OCI_LAYER_TAR,
        b"not really a tar, registries do not look",
    );
    let config = format!(
        r#"{{"architecture":"arm64","variant":"v8","os":"linux","created":"2020-01-01T00:00:00Z","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        layer.digest
    );
    let config = put(&store, mt::OCI_CONFIG, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST, "config": config, "layers": [layer],
    });
    let arm = put(&store, mt::OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap());
    let (os, arch) = kiln_oci::host_platform();
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": mt::OCI_INDEX,
        "manifests": [
            {"mediaType": mt::OCI_MANIFEST, "digest": host.digest, "size": host.size,
             "platform": {"os": os, "architecture": arch}},
            {"mediaType": mt::OCI_MANIFEST, "digest": arm.digest, "size": arm.size,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    });
    let index = put(&store, mt::OCI_INDEX, &serde_json::to_vec_pretty(&index).unwrap());
    store.set_ref("multi:1", &index).unwrap();
    Some((store, index, host, arm))
}

async fn multi_arch(registry: &dyn Registry) {
    let dir = tempfile::tempdir().unwrap();
    let Some((store, index, host, arm)) = index_store(dir.path()) else {
        return;
    };
    let client = client(None);
    let target: Reference = format!("{}/m/multi:1", registry.host()).parse().unwrap();
    let pushed = client.push_image(&store, &index, &target, None).await.unwrap();
    assert_eq!(pushed.digest, index.digest, "{}", registry.kind());
    assert_eq!(pushed.media_type, mt::OCI_INDEX);

    let all = ImageStore::open(dir.path().join("all")).unwrap();
    let pulled = client
        .pull_image(&target, &all, "m", &PlatformChoice::All)
        .await
        .unwrap();
    assert_eq!(pulled.digest, index.digest);
    assert_eq!(
        all.reachable(&all.require("m").unwrap().descriptor)
            .unwrap()
            .len(),
        7
    );

    let one = ImageStore::open(dir.path().join("one")).unwrap();
    let arm64 = PlatformChoice::One(Platform::parse("linux/arm64").unwrap());
    let pulled = client.pull_image(&target, &one, "arm", &arm64).await.unwrap();
    assert_eq!(pulled.digest, arm.digest);
    assert_eq!(one.require("arm").unwrap().descriptor.digest, arm.digest);
    assert!(
        one.blobs().size(&host.digest).unwrap().is_none(),
        "the other platform is not fetched"
    );

    let host_pull = client
        .pull_image(&target, &one, "host", &PlatformChoice::One(Platform::host()))
        .await
        .unwrap();
    assert_eq!(host_pull.digest, host.digest);

    let s390x = PlatformChoice::One(Platform::parse("linux/s390x").unwrap());
    let err = client
        .pull_image(&target, &one, "none", &s390x)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NoPlatform { .. }), "{err}");
    assert!(err.to_string().contains("linux/arm64/v8"), "{err}");
}

#[tokio::test]
async fn multi_arch_index_kiln_serve() {
    let registry = kiln_serve().await;
    multi_arch(&registry).await;
}

#[tokio::test]
async fn multi_arch_index_distribution() {
    let Some(registry) = Distribution::start(None).await else {
        return;
    };
    multi_arch(&registry).await;
}
