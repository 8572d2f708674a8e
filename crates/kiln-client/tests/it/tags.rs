//! tag and promote move no blob (counted at a proxy in front of kiln's registry and in its /metrics, and in
//! docker-registry's access log); promote deletes the temporary tag only; untag sweeps old tags by the config's `created`.

use kiln_client::{ClientError, Reference};

use crate::support::{Distribution, ProxyMode, busybox_store, client, kiln_serve, proxy};

fn blob_requests(requests: &[String]) -> Vec<&String> {
    requests.iter().filter(|r| r.contains("/blobs/")).collect()
}

/// What kiln serve's `/metrics` says about blob traffic: bytes written by uploads, bytes served by blob
/// GETs, and requests to blob and upload routes.
async fn blob_traffic(registry: std::net::SocketAddr) -> [u64; 3] {
    let text = reqwest::get(format!("http://{registry}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sum = |wanted: &dyn Fn(&str) -> bool| -> u64 {
        text.lines()
            .filter(|l| !l.starts_with('#') && wanted(l))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    [
        sum(&|l| l.starts_with("kiln_registry_blob_written_bytes_total")),
        sum(&|l| l.starts_with("kiln_registry_blob_served_bytes_total")),
        sum(&|l| l.starts_with("kiln_registry_requests_total{") && l.contains("/blobs/")),
    ]
}

#[tokio::test]
async fn promote_moves_no_blob_and_deletes_only_the_temporary_tag_kiln_serve() {
    let registry = kiln_serve().await;
    let counted = proxy(registry.addr, ProxyMode::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let client = client(None);
    let temporary: Reference = format!("{}/p/bb:change_42_1", counted.addr).parse().unwrap();
    client
        .push_image(&store, &descriptor, &temporary, None)
        .await
        .unwrap();
    assert!(
        !blob_requests(&counted.requests()).is_empty(),
        "the proxy sees blob traffic"
    );
    counted.clear();
    let before_promote = blob_traffic(registry.addr).await;
    assert!(
        before_promote[0] > 0,
        "the push shows in /metrics: {before_promote:?}"
    );

    // The repository's manifest link is the same file afterwards: promote writes only the new tags.
    let link = registry
        .root()
        .join("repositories/p/bb/_manifests/sha256")
        .join(descriptor.digest.hex());
    let inode =
        |path: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&fs_err::metadata(path).unwrap());
    let before = inode(&link);

    let tags = vec!["1.0".to_owned(), "latest".to_owned()];
    let manifest = client.promote(&temporary, &tags).await.unwrap();
    assert_eq!(inode(&link), before, "the manifest link was rewritten");
    // Zero blob bytes, as the registry itself counts them.
    assert_eq!(blob_traffic(registry.addr).await, before_promote);
    assert_eq!(manifest.digest, descriptor.digest);
    let requests = counted.requests();
    assert!(blob_requests(&requests).is_empty(), "{requests:#?}");
    assert!(
        requests
            .iter()
            .any(|r| r == "DELETE /v2/p/bb/manifests/change_42_1"),
        "{requests:#?}"
    );

    let mut listed = client.list_tags(&temporary.registry, "p/bb").await.unwrap();
    listed.sort();
    assert_eq!(listed, ["1.0", "latest"]);
    // The manifest is still there under its digest and the final tags.
    assert_eq!(
        client.head_manifest(&temporary.with_tag("1.0")).await.unwrap(),
        Some(descriptor.digest.clone())
    );
    assert!(client.head_manifest(&temporary).await.unwrap().is_none());
}

#[tokio::test]
async fn promote_on_distribution_keeps_the_manifest_and_says_why() {
    let Some(registry) = Distribution::start(None).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let client = client(None);
    let temporary: Reference = format!("{}/p/bb:change_7_1", registry.addr).parse().unwrap();
    client
        .push_image(&store, &descriptor, &temporary, None)
        .await
        .unwrap();
    let before = registry.requests().len();

    let err = client.promote(&temporary, &["1.0".to_owned()]).await.unwrap_err();
    assert!(matches!(err, ClientError::TagDeleteUnsupported { .. }), "{err}");
    assert!(err.to_string().contains("change_7_1"), "{err}");
    // Give the registry a moment to flush its access log.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let requests = registry.requests();
    let during: Vec<String> = requests[before..].to_vec();
    assert!(blob_requests(&during).is_empty(), "{during:#?}");
    assert!(
        during.iter().any(|r| r.starts_with("PUT /v2/p/bb/manifests/1.0")),
        "{during:#?}"
    );
    for tag in ["change_7_1", "1.0"] {
        assert_eq!(
            client.head_manifest(&temporary.with_tag(tag)).await.unwrap(),
            Some(descriptor.digest.clone()),
            "{tag} still resolves"
        );
    }
}

#[tokio::test]
async fn untag_sweeps_old_matching_tags() {
    let registry = kiln_serve().await;
    let dir = tempfile::tempdir().unwrap();
    // The busybox import's config says it was created in 1970.
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let client = client(None);
    let repo: Reference = format!("{}/sweep/bb:keep", registry.addr).parse().unwrap();
    client.push_image(&store, &descriptor, &repo, None).await.unwrap();
    client
        .tag(&repo, &["change_1_a".to_owned(), "change_2_b".to_owned()])
        .await
        .unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let mut old = client.tags_older_than(&repo, "change_*", day).await.unwrap();
    old.sort();
    assert_eq!(old, ["change_1_a", "change_2_b"]);
    let far = std::time::Duration::from_secs(400 * 365 * 86_400);
    assert!(
        client
            .tags_older_than(&repo, "change_*", far)
            .await
            .unwrap()
            .is_empty()
    );
    for tag in old {
        client.delete_tag(&repo.with_tag(&tag)).await.unwrap();
    }
    assert_eq!(
        client.list_tags(&repo.registry, "sweep/bb").await.unwrap(),
        ["keep"]
    );
}
