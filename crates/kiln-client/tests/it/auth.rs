//! Basic auth against docker-registry with an htpasswd file; the Docker token flow against kiln's registry
//! behind an in-test token issuer (no real token server is installed on these machines).

use kiln_client::auth::CredentialSource;
use kiln_client::{ClientError, Platform, PlatformChoice, Reference};
use kiln_oci::ImageStore;

use crate::support::{Distribution, ProxyMode, busybox_store, client, client_with, kiln_serve, proxy};

#[tokio::test]
async fn basic_auth_with_htpasswd_distribution() {
    let Some(registry) = Distribution::start(Some(("ci", "s3cret"))).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let target: Reference = format!("{}/auth/bb:1", registry.addr).parse().unwrap();

    let err = client(None)
        .push_image(&store, &descriptor, &target, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("--creds"), "{err}");
    let err = client(Some("ci:wrong"))
        .push_image(&store, &descriptor, &target, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");

    client(Some("ci:s3cret"))
        .push_image(&store, &descriptor, &target, None)
        .await
        .unwrap();

    // The same credentials from a docker config file (base64 `auth`).
    let config = dir.path().join("config.json");
    fs_err::write(
        &config,
        format!(r#"{{"auths":{{"{}":{{"auth":"Y2k6czNjcmV0"}}}}}}"#, registry.addr),
    )
    .unwrap();
    let from_file = client_with(None, |c| {
        c.credentials = CredentialSource {
            explicit: None,
            files: vec![config],
            helper_path: None,
        }
    });
    let other = ImageStore::open(dir.path().join("other")).unwrap();
    let pulled = from_file
        .pull_image(&target, &other, "x", &PlatformChoice::One(Platform::host()))
        .await
        .unwrap();
    assert_eq!(pulled.digest, descriptor.digest);
}

#[tokio::test]
async fn docker_token_flow_with_a_token_per_scope() {
    let registry = kiln_serve().await;
    let guarded = proxy(
        registry.addr,
        ProxyMode {
            bearer: Some(("robot".to_owned(), "pw".to_owned())),
            ..ProxyMode::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let target: Reference = format!("{}/tok/bb:1", guarded.addr).parse().unwrap();

    let err = client(Some("robot:nope"))
        .push_image(&store, &descriptor, &target, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("token endpoint"), "{err}");

    let client = client(Some("robot:pw"));
    client
        .push_image(&store, &descriptor, &target, None)
        .await
        .unwrap();
    let other = ImageStore::open(dir.path().join("other")).unwrap();
    client
        .pull_image(&target, &other, "x", &PlatformChoice::One(Platform::host()))
        .await
        .unwrap();
    // One token for pull,push and one for pull, each reused for every request of its scope.
    let issued = guarded.tokens_issued.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(issued, 2, "{:#?}", guarded.requests());
    // The mount needs the source repository's pull scope too: a new token for the pair.
    let mounted: Reference = format!("{}/tok/other:1", guarded.addr).parse().unwrap();
    let pushed = client
        .push_image(&store, &descriptor, &mounted, Some("tok/bb"))
        .await
        .unwrap();
    assert_eq!(pushed.blobs.get("mounted"), Some(&2), "{pushed:?}");
}
