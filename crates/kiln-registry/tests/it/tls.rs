//! TLS: skopeo verifies kiln's self-signed certificate against the printed CA (`--cert-dir`) and refuses it
//! without.

use std::sync::Arc;

use kiln_registry::{FsStorage, RegistryConfig};

use crate::skopeo::{make_layout, skopeo, skopeo_fails};
use kiln_test_support::require_tool;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_trusts_the_self_signed_ca_and_nothing_else() {
    if !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("tls");
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let made = kiln_registry::tls::self_signed(&certs, &names).unwrap();
    let config = kiln_registry::tls::server_config(&made.cert, &made.key).unwrap();
    let storage = FsStorage::open(dir.path().join("reg")).unwrap();
    let app = kiln_registry::router(Arc::new(storage), RegistryConfig::default());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let options = kiln_registry::ServeOptions {
        tls: Some(config),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kiln_registry::serve(tcp, app, options, async {
        let _ = stopped.await;
    }));
    tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        make_layout(work.path());
        let src = format!("oci:{}:v1", work.path().join("layout").display());
        let cert_dir = certs.to_str().unwrap();
        for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
            let dest = format!("docker://{host}/tls/app:v1");
            // The system trust store does not know kiln's CA.
            assert!(skopeo_fails(&["copy", "--dest-tls-verify=true", &src, &dest]));
            skopeo(&[
                "copy",
                "--dest-tls-verify=true",
                "--dest-cert-dir",
                cert_dir,
                &src,
                &dest,
            ]);
            skopeo(&[
                "inspect",
                "--tls-verify=true",
                "--cert-dir",
                cert_dir,
                "--raw",
                &dest,
            ]);
        }
    })
    .await
    .unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
