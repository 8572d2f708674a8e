//! A registry that stalls (issue 11 item 14): a real TCP server in the test that accepts, answers `/v2/`,
//! then sends no answer to a manifest request and only the headers and a few bytes of a blob. The client
//! fails after its read timeout, retried, naming the URL; a blob that trickles in slower than the timeout
//! but never stops is pulled whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kiln_client::{ClientError, Reference};
use kiln_oci::manifest::Descriptor;
use kiln_oci::{Algorithm, BlobStore};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::client_with;

/// What the stalling server sends slowly: one byte every 300 ms.
const TRICKLE: &[u8] = b"trickled";

/// Requests seen by the stalling server, by kind.
#[derive(Default)]
struct Seen {
    manifests: AtomicUsize,
    blobs: AtomicUsize,
}

/// Starts the stalling registry; returns its address and what it saw.
async fn stalling_registry() -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Seen::default());
    let counts = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen = Arc::clone(&counts);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    head.clear();
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    if path == "/v2/" {
                        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
                        stream.write_all(ok.as_bytes()).await.unwrap();
                    } else if path.contains("/manifests/") {
                        seen.manifests.fetch_add(1, Ordering::SeqCst);
                        break; // no answer at all
                    } else if path.starts_with("/v2/slow/") {
                        let headers = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", TRICKLE.len());
                        stream.write_all(headers.as_bytes()).await.unwrap();
                        for b in TRICKLE {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            stream.write_all(&[*b]).await.unwrap();
                        }
                    } else {
                        seen.blobs.fetch_add(1, Ordering::SeqCst);
                        let partial = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789";
                        stream.write_all(partial.as_bytes()).await.unwrap();
                        break; // the rest never comes
                    }
                }
                // Hold the connection open, silent, until the client gives up on it.
                let mut sink = [0u8; 1024];
                while stream.read(&mut sink).await.unwrap_or(0) > 0 {}
            });
        }
    });
    (addr, seen)
}

fn descriptor(bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: Some("application/vnd.oci.image.layer.v1.tar".to_owned()),
        digest: Algorithm::Sha256.digest(bytes),
        size: bytes.len() as u64,
        urls: None,
        artifact_type: None,
        annotations: None,
    }
}

#[tokio::test]
async fn regression_a_pull_from_a_stalled_registry_fails_after_the_read_timeout_naming_the_url() {
    let (addr, seen) = stalling_registry().await;
    let client = client_with(None, |c| {
        c.read_timeout = Duration::from_secs(1);
        c.retries = 1;
    });
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();

    // No answer to a request: each of the two attempts gives up after a second.
    let reference: Reference = format!("{addr}/app:1").parse().unwrap();
    let started = Instant::now();
    let e = client.get_manifest(&reference).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(e, ClientError::Stalled { .. }), "{e}");
    let message = e.to_string();
    assert!(
        message.contains(&format!("http://{addr}/v2/app/manifests/1")),
        "{message}"
    );
    assert!(message.contains("stalled"), "{message}");
    assert_eq!(seen.manifests.load(Ordering::SeqCst), 2, "one retry");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );

    // Headers and 10 of 1000 bytes, then nothing: the download is retried once, then refused.
    let blob = descriptor(&[7u8; 1000]);
    let started = Instant::now();
    let e = client.pull_blob(&reference, &blob, &store).await.unwrap_err();
    let elapsed = started.elapsed();
    let message = e.to_string();
    assert!(
        message.contains(&format!("http://{addr}/v2/app/blobs/{}", blob.digest)),
        "{message}"
    );
    assert!(message.contains("the registry sent nothing for 1 s"), "{message}");
    assert_eq!(seen.blobs.load(Ordering::SeqCst), 2, "one retry");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert_eq!(store.size(&blob.digest).unwrap(), None, "nothing kept");

    // Slower in all than the timeout, but never a second without a byte: pulled whole.
    let slow: Reference = format!("{addr}/slow/app:1").parse().unwrap();
    let trickled = descriptor(TRICKLE);
    client.pull_blob(&slow, &trickled, &store).await.unwrap();
    assert_eq!(store.size(&trickled.digest).unwrap(), Some(TRICKLE.len() as u64));
}
