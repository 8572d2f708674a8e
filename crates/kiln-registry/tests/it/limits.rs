//! Connection limits (issue 11 item 5): half-sent requests beyond the connection cap, idle keep-alive
//! connections, a stalled upload body and a client that stops reading, each against short timeouts.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kiln_registry::{Limits, RegistryConfig, ServeOptions};
use reqwest::{Method, StatusCode};

use crate::support::{Server, expect, header};

const LIMITS: Limits = Limits {
    max_connections: 8,
    header_timeout: Duration::from_secs(1),
    idle_timeout: Duration::from_secs(3),
    stall_timeout: Duration::from_secs(2),
};

async fn limited() -> Server {
    let options = ServeOptions {
        tls: None,
        limits: LIMITS,
    };
    Server::start_options(RegistryConfig::default(), options).await
}

/// A connection to `server` that has sent `bytes`.
fn sent(server: &Server, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(bytes).unwrap();
    stream
}

/// Reads until the server closes the connection (or resets it); returns the bytes read and when it
/// closed. Fails when it is still open after `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Instant) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let left = within.saturating_sub(started.elapsed());
        assert!(
            !left.is_zero(),
            "still open after {within:?} ({} bytes read)",
            got.len()
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, Instant::now()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, Instant::now()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Whether the server keeps `stream` open for `quiet` without sending anything.
fn stays_open(stream: &mut TcpStream, quiet: Duration) -> bool {
    stream.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0u8; 1];
    matches!(
        stream.read(&mut buf),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_half_sent_requests_beyond_the_connection_cap_do_not_lock_out_a_normal_request() {
    let server = limited().await;
    // Three times the cap of connections that never finish their headers.
    let mut stale: Vec<TcpStream> = (0..3 * LIMITS.max_connections)
        .map(|_| sent(&server, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: "))
        .collect();
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(20), server.req(Method::GET, "/v2/").send())
        .await
        .expect("a normal request is answered while stale connections fill the cap")
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Stale connections go after the header timeout, a cap's worth at a time: three rounds at most.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    tokio::task::spawn_blocking(move || {
        for stream in &mut stale {
            let (reply, _) = closed_within(stream, Duration::from_secs(10));
            assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = limited().await;
    let mut stream = sent(&server, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        let mut reply = [0u8; 1024];
        let n = stream.read(&mut reply).unwrap();
        assert!(reply[..n].starts_with(b"HTTP/1.1 200"));
        let answered = Instant::now();
        // Idle longer than the header timeout: still open (idle and header timeouts are distinct).
        assert!(stays_open(&mut stream, LIMITS.header_timeout * 2));
        let (_, closed) = closed_within(&mut stream, LIMITS.idle_timeout * 2);
        let idle = closed - answered;
        assert!(idle >= LIMITS.idle_timeout, "closed after {idle:?}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_stalled_upload_body_fails_after_the_stall_timeout_and_is_undone() {
    let server = limited().await;
    let location = server.start_upload("app").await;
    // More than one write batch of a 3 MiB chunk, then nothing.
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        3 << 20
    );
    let mut stream = sent(&server, head.as_bytes());
    let started = Instant::now();
    let reply = tokio::task::spawn_blocking(move || {
        stream.write_all(&vec![7u8; 2 << 20]).unwrap();
        closed_within(&mut stream, LIMITS.stall_timeout * 4).0
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() >= LIMITS.stall_timeout,
        "{:?}",
        started.elapsed()
    );
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(
        reply.contains("BLOB_UPLOAD_INVALID") && reply.contains("sent nothing"),
        "{reply}"
    );
    // The chunk was undone: the session is empty, ready for the chunk again.
    let (h, _) = server
        .expect(Method::GET, &location, StatusCode::NO_CONTENT, None)
        .await;
    assert_eq!(header(&h, "range"), "0-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_client_that_stops_reading_a_blob_is_cut_after_the_stall_timeout() {
    let server = limited().await;
    // Larger than what the socket buffers of both ends hold.
    let blob: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = server.push_blob("app", &blob).await;
    let request = format!("GET /v2/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut stream = sent(&server, request.as_bytes());
    tokio::time::sleep(LIMITS.stall_timeout + Duration::from_secs(1)).await;
    let got = tokio::task::spawn_blocking(move || closed_within(&mut stream, Duration::from_secs(10)).0)
        .await
        .unwrap();
    assert!(
        got.len() < blob.len(),
        "the whole blob went out ({} bytes)",
        got.len()
    );
    // The registry still answers.
    expect(
        server.req(Method::GET, "/v2/").send().await.unwrap(),
        StatusCode::OK,
        None,
    )
    .await;
}
