//! TLS: kiln serve with a self-signed certificate is trusted through `--cert-dir` (its CA), refused
//! without it (the system's roots do not know it), and accepted with verification off (`--insecure`);
//! transport errors say their cause (an unknown issuer, a refused connection) and the URL.

use std::sync::Arc;

use kiln_client::{ClientError, Reference};

use crate::support::{busybox_store, client_with};

#[tokio::test]
async fn cert_dir_ca_is_trusted_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let Some((store, descriptor)) = busybox_store(dir.path(), "bb:1") else {
        return;
    };
    let _already = rustls::crypto::ring::default_provider().install_default();
    let certs = dir.path().join("tls");
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = kiln_registry::tls::self_signed(&certs, &names).unwrap();
    let config = kiln_registry::tls::server_config(&made.cert, &made.key).unwrap();
    let storage = kiln_registry::FsStorage::open(dir.path().join("reg")).unwrap();
    let app = kiln_registry::router(Arc::new(storage), kiln_registry::RegistryConfig::default());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let options = kiln_registry::ServeOptions {
        tls: Some(config),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(kiln_registry::serve(tcp, app, options, async {
        let _ = stopped.await;
    }));

    // The CA alone goes in the cert dir (the server's key stays out of it).
    let ca_dir = dir.path().join("ca");
    fs_err::create_dir_all(&ca_dir).unwrap();
    fs_err::copy(&made.ca, ca_dir.join("ca.crt")).unwrap();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let target: Reference = format!("{host}/tls/bb:1").parse().unwrap();
        let trusting = client_with(None, |c| c.cert_dir = Some(ca_dir.clone()));
        let pushed = trusting
            .push_image(&store, &descriptor, &target, None)
            .await
            .unwrap();
        assert_eq!(pushed.digest, descriptor.digest);

        let empty = dir.path().join("empty");
        fs_err::create_dir_all(&empty).unwrap();
        let strict = client_with(None, |c| {
            c.cert_dir = Some(empty.clone());
            c.retries = 0;
        });
        let err = strict.head_manifest(&target).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Http { url, .. } if url.starts_with("https://")),
            "{host}: {err:?}"
        );
        // The message itself says why, not only reqwest's "error sending request".
        assert!(err.to_string().contains("UnknownIssuer"), "{host}: {err}");

        let insecure = client_with(None, |c| {
            c.cert_dir = Some(empty.clone());
            c.tls_verify = false;
        });
        assert_eq!(
            insecure.head_manifest(&target).await.unwrap(),
            Some(descriptor.digest.clone())
        );
    }
    let _ = stop.send(());
}

#[tokio::test]
async fn a_refused_connection_is_named_with_its_url() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let target: Reference = format!("{addr}/org/app:1").parse().unwrap();
    let client = client_with(None, |c| c.retries = 0);
    let err = client.head_manifest(&target).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ClientError::Http { .. }), "{err:?}");
    assert!(message.contains(&format!("://{addr}/v2/")), "{message}");
    assert!(message.to_lowercase().contains("connection refused"), "{message}");
}
