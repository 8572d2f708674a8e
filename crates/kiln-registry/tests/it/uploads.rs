//! Upload sessions under load and in races (issue 11, items 4 and 10): idle sessions hold no file
//! descriptor, caps per repository and per client answer 429, idle sessions expire, and a session that
//! a request is finishing is never pulled from under it.

use std::time::Duration;

use axum::body::Bytes;
use kiln_registry::storage::{GcOptions, UploadLimits};
use reqwest::{Method, StatusCode};

use crate::support::{Server, expect, sha256};

/// File descriptors of this process open on files under `dir`.
fn fds_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

fn no_caps() -> UploadLimits {
    UploadLimits {
        per_repository: 0,
        per_client: 0,
        ..UploadLimits::default()
    }
}

/// Issue 11, item 4: each idle session used to keep its file open, so ~1,100 of them exhausted the
/// process's descriptors and every later request failed with a 500. Now 1,200 idle sessions (more than
/// the usual limit of 1,024) hold none, a chunk written to one and the final PUT of another still work,
/// and so does a push of a blob.
#[tokio::test]
async fn regression_idle_upload_sessions_hold_no_file_descriptors() {
    let s = Server::start_limits(no_caps()).await;
    let mut sessions = Vec::new();
    for _ in 0..1200 {
        sessions.push(s.start_upload("many").await);
    }
    let uploads = s.root.join("uploads");
    assert_eq!(fds_under(&uploads), 0, "idle sessions keep files open");
    let r = s
        .req(Method::PATCH, &sessions[7])
        .body("chunk")
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::ACCEPTED, None).await;
    let r = s
        .req(
            Method::PUT,
            &format!("{}?digest={}", sessions[7], sha256(b"chunk")),
        )
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::CREATED, None).await;
    assert_eq!(fds_under(&uploads), 0, "a finished request leaves no file open");
    s.push_blob("many", b"pushed after 1,200 sessions").await;
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 1199);
}

/// A POST of a session in `repo` that must be refused (429); returns the error body.
async fn too_many(s: &Server, repo: &str) -> String {
    let path = format!("/v2/{repo}/blobs/uploads/");
    let (_, body) = s
        .expect(
            Method::POST,
            &path,
            StatusCode::TOO_MANY_REQUESTS,
            Some("TOOMANYREQUESTS"),
        )
        .await;
    String::from_utf8(body).unwrap()
}

/// Issue 11, item 4: past the cap of a repository, or of a client (its address here), a new session is
/// 429 TOOMANYREQUESTS naming the cap; finishing, cancelling or expiring a session frees its place.
#[tokio::test]
async fn regression_upload_session_caps_answer_429_and_free_up() {
    let s = Server::start_limits(UploadLimits {
        per_repository: 2,
        per_client: 3,
        idle_timeout: Duration::from_secs(3600),
    })
    .await;
    let first = s.start_upload("a").await;
    s.start_upload("a").await;
    let message = too_many(&s, "a").await;
    assert!(
        message.contains("repository a has 2 upload sessions open"),
        "{message}"
    );
    s.start_upload("b").await;
    let message = too_many(&s, "c").await;
    assert!(message.contains("client address 127.0.0.1 has 3"), "{message}");
    // A monolithic push needs a session too, only while it runs.
    let r = s
        .req(
            Method::POST,
            &format!("/v2/c/blobs/uploads/?digest={}", sha256(b"x")),
        )
        .body("x")
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::TOO_MANY_REQUESTS, Some("TOOMANYREQUESTS")).await;
    s.expect(Method::DELETE, &first, StatusCode::NO_CONTENT, None)
        .await;
    s.push_blob("c", b"x").await;
    let second = s.start_upload("c").await;
    too_many(&s, "d").await;
    let r = s
        .req(Method::PUT, &format!("{second}?digest={}", sha256(b"y")))
        .body("y")
        .send()
        .await
        .unwrap();
    expect(r, StatusCode::CREATED, None).await;
    s.start_upload("d").await;
}

/// Issue 11, item 4: a session unused for the idle timeout is gone (404 BLOB_UPLOAD_UNKNOWN), whether a
/// request meets it first or the periodic sweep does, and counts towards no cap any more.
#[tokio::test]
async fn regression_idle_upload_sessions_expire() {
    let s = Server::start_limits(UploadLimits {
        per_repository: 2,
        per_client: 0,
        idle_timeout: Duration::from_millis(300),
    })
    .await;
    let met = s.start_upload("a").await;
    let swept = s.start_upload("a").await;
    let r = s.req(Method::PATCH, &met).body("kept busy").send().await.unwrap();
    expect(r, StatusCode::ACCEPTED, None).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Both expired: they no longer count, so a new session fits although the cap is 2.
    let fresh = s.start_upload("a").await;
    for session in [&met, &swept] {
        s.expect(
            Method::PATCH,
            session,
            StatusCode::NOT_FOUND,
            Some("BLOB_UPLOAD_UNKNOWN"),
        )
        .await;
        s.expect(
            Method::GET,
            session,
            StatusCode::NOT_FOUND,
            Some("BLOB_UPLOAD_UNKNOWN"),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired = s.storage.expire_uploads().unwrap();
    assert_eq!(
        expired,
        vec![s.root.join("uploads").join(fresh.rsplit('/').next().unwrap())]
    );
    assert_eq!(std::fs::read_dir(s.root.join("uploads")).unwrap().count(), 0);
    s.expect(
        Method::DELETE,
        &fresh,
        StatusCode::NOT_FOUND,
        Some("BLOB_UPLOAD_UNKNOWN"),
    )
    .await;
}

/// A PUT whose body the test sends in two parts, `gap` apart; returns its answer.
async fn slow_put(s: &Server, location: &str, content: &[u8], gap: Duration) -> reqwest::Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let url = format!("{location}?digest={}", sha256(content));
    let put = s.req(Method::PUT, &url).body(body).send();
    let (head, tail) = content.split_at(content.len() / 2);
    let (head, tail) = (Bytes::copy_from_slice(head), Bytes::copy_from_slice(tail));
    let feed = async move {
        tx.send(Ok(head)).await.unwrap();
        tokio::time::sleep(gap).await;
        tx.send(Ok(tail)).await.unwrap();
    };
    let (r, ()) = tokio::join!(put, feed);
    r.unwrap()
}

/// Issue 11, item 10: a DELETE of a session while its final PUT runs used to remove the files under it,
/// and the PUT answered 500 (`failed to rename … No such file`). Now the DELETE wins before the commit
/// (the PUT answers 404 BLOB_UPLOAD_UNKNOWN, nothing is stored, no file is left) and a DELETE during the
/// commit finds no session; never a 500.
#[tokio::test]
async fn regression_cancel_during_the_final_put_is_404_not_500() {
    let s = Server::start().await;
    let content = vec![7u8; 300_000];
    let location = s.start_upload("a").await;
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.expect(Method::DELETE, &location, StatusCode::NO_CONTENT, None)
            .await;
    };
    let (put, ()) = tokio::join!(
        slow_put(&s, &location, &content, Duration::from_millis(300)),
        cancel
    );
    expect(put, StatusCode::NOT_FOUND, Some("BLOB_UPLOAD_UNKNOWN")).await;
    s.expect(
        Method::HEAD,
        &format!("/v2/a/blobs/{}", sha256(&content)),
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
    assert_eq!(std::fs::read_dir(s.root.join("uploads")).unwrap().count(), 0);
    s.expect(
        Method::GET,
        &location,
        StatusCode::NOT_FOUND,
        Some("BLOB_UPLOAD_UNKNOWN"),
    )
    .await;
}

/// Issue 11, item 10's siblings: expiry and GC take idle sessions only. A PUT that streams for longer
/// than the idle timeout, while the sweep and a GC with no grace run, still stores its blob (GC used to
/// remove the session under it: 500), and a second PUT of the same session meanwhile is 409.
#[tokio::test]
async fn regression_a_session_being_written_outlives_expiry_and_gc() {
    let s = Server::start_limits(UploadLimits {
        idle_timeout: Duration::from_millis(200),
        ..UploadLimits::default()
    })
    .await;
    let content = vec![9u8; 300_000];
    let location = s.start_upload("a").await;
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let storage = s.storage.clone();
        tokio::task::spawn_blocking(move || {
            assert_eq!(
                storage.expire_uploads().unwrap(),
                Vec::<std::path::PathBuf>::new()
            );
            let options = GcOptions {
                grace: Duration::ZERO,
                ..GcOptions::default()
            };
            assert_eq!(storage.gc(&options).unwrap().uploads, Vec::<String>::new());
        })
        .await
        .unwrap();
        let url = format!("{location}?digest={}", sha256(&content));
        s.expect(
            Method::PUT,
            &url,
            StatusCode::CONFLICT,
            Some("BLOB_UPLOAD_INVALID"),
        )
        .await;
    };
    let (put, ()) = tokio::join!(
        slow_put(&s, &location, &content, Duration::from_millis(500)),
        meanwhile
    );
    expect(put, StatusCode::CREATED, None).await;
    let (_, body) = s
        .expect(
            Method::GET,
            &format!("/v2/a/blobs/{}", sha256(&content)),
            StatusCode::OK,
            None,
        )
        .await;
    assert_eq!(body, content);
}
