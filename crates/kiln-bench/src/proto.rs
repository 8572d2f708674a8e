//! The distribution-API requests the benchmarks time: uploads (monolithic and chunked) and blob GETs.

use anyhow::{Context as _, Result, bail};
use kiln_oci::Digest;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};

use crate::random::Blob;

/// A registry under test.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Its name in the reports (`kiln`, `distribution`).
    pub name: String,
    /// `http://host:port`.
    pub base: String,
    /// The server's process id, for its memory figures.
    pub pid: Option<u32>,
}

/// One HTTP client for every registry and task (connections are pooled per host).
pub fn http_client(pool: usize) -> Result<reqwest::Client> {
    // Built in one go with kiln, reqwest has kiln-client's `rustls-no-provider`: give it one (plain HTTP
    // needs none, but the builder insists).
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(pool)
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .context("cannot build the HTTP client")
}

async fn expect(response: reqwest::Response, ok: &[StatusCode], what: &str) -> Result<reqwest::Response> {
    if ok.contains(&response.status()) {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    bail!(
        "{what}: HTTP {status}: {}",
        body.chars().take(300).collect::<String>()
    )
}

fn location(base: &str, response: &reqwest::Response, what: &str) -> Result<String> {
    let value = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .with_context(|| format!("{what}: no Location header"))?;
    Ok(if value.starts_with("http://") || value.starts_with("https://") {
        value.to_owned()
    } else {
        format!("{base}{value}")
    })
}

fn with_digest(url: &str, digest: &Digest) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}digest={digest}")
}

/// POST that opens an upload session; returns its URL.
async fn start_upload(http: &reqwest::Client, reg: &Registry, repo: &str) -> Result<String> {
    let what = format!("POST {}/v2/{repo}/blobs/uploads/", reg.name);
    let response = http
        .post(format!("{}/v2/{repo}/blobs/uploads/", reg.base))
        .header(CONTENT_LENGTH, 0)
        .send()
        .await
        .with_context(|| what.clone())?;
    let response = expect(response, &[StatusCode::ACCEPTED], &what).await?;
    location(&reg.base, &response, &what)
}

/// The closing PUT of a session, with `body` (possibly empty).
async fn finish_upload(
    http: &reqwest::Client,
    reg: &Registry,
    session: &str,
    digest: &Digest,
    body: bytes::Bytes,
) -> Result<()> {
    let what = format!("PUT {} upload of {digest}", reg.name);
    let response = http
        .put(with_digest(session, digest))
        .header(CONTENT_TYPE, "application/octet-stream")
        .header(CONTENT_LENGTH, body.len())
        .body(body)
        .send()
        .await
        .with_context(|| what.clone())?;
    expect(response, &[StatusCode::CREATED], &what).await?;
    Ok(())
}

/// A monolithic upload as docker, skopeo and kiln push small blobs: POST, then one PUT with the body.
pub async fn push_monolithic(http: &reqwest::Client, reg: &Registry, repo: &str, blob: &Blob) -> Result<()> {
    let session = start_upload(http, reg, repo).await?;
    finish_upload(http, reg, &session, &blob.digest, blob.bytes.clone()).await
}

/// A chunked upload: POST, PATCHes of `chunk` bytes with `Content-Range`, an empty closing PUT.
pub async fn push_chunked(
    http: &reqwest::Client,
    reg: &Registry,
    repo: &str,
    blob: &Blob,
    chunk: usize,
) -> Result<()> {
    let mut session = start_upload(http, reg, repo).await?;
    let mut start = 0;
    while start < blob.bytes.len() {
        let end = (start + chunk.max(1)).min(blob.bytes.len());
        let what = format!("PATCH {} bytes {start}-{end} of {}", reg.name, blob.digest);
        let response = http
            .patch(&session)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("content-range", format!("{start}-{}", end - 1))
            .header(CONTENT_LENGTH, end - start)
            .body(blob.bytes.slice(start..end))
            .send()
            .await
            .with_context(|| what.clone())?;
        let response = expect(response, &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT], &what).await?;
        session = location(&reg.base, &response, &what)?;
        start = end;
    }
    finish_upload(http, reg, &session, &blob.digest, bytes::Bytes::new()).await
}

/// GETs a blob (or the `range` of it) and reads the body to the end; returns the bytes read. With
/// `verify`, a whole blob is hashed and compared with `digest`.
pub async fn pull(
    http: &reqwest::Client,
    reg: &Registry,
    repo: &str,
    digest: &Digest,
    range: Option<(u64, u64)>,
    verify: bool,
) -> Result<u64> {
    let what = format!("GET {}/v2/{repo}/blobs/{digest}", reg.name);
    let mut request = http.get(format!("{}/v2/{repo}/blobs/{digest}", reg.base));
    if let Some((a, b)) = range {
        request = request.header(RANGE, format!("bytes={a}-{b}"));
    }
    let response = request.send().await.with_context(|| what.clone())?;
    let ok = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = expect(response, &[ok], &what).await?;
    let mut hasher = (verify && range.is_none()).then(|| digest.algorithm().hasher());
    let mut n = 0u64;
    while let Some(chunk) = response.chunk().await.with_context(|| what.clone())? {
        n += chunk.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
    }
    if let Some((a, b)) = range
        && n != b - a + 1
    {
        bail!("{what}: range {a}-{b} gave {n} bytes");
    }
    if let Some(h) = hasher {
        let actual = h.finish();
        if actual != *digest {
            bail!("{what}: content has digest {actual}");
        }
    }
    Ok(n)
}

/// GETs a blob in `chunk`-sized Range requests, one after the other.
pub async fn pull_ranged(
    http: &reqwest::Client,
    reg: &Registry,
    repo: &str,
    digest: &Digest,
    size: u64,
    chunk: u64,
) -> Result<u64> {
    let mut start = 0;
    while start < size {
        let end = (start + chunk.max(1)).min(size);
        pull(http, reg, repo, digest, Some((start, end - 1)), false).await?;
        start = end;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_query() {
        let d = kiln_oci::Algorithm::Sha256.digest(b"");
        assert_eq!(with_digest("http://a/u", &d), format!("http://a/u?digest={d}"));
        assert_eq!(
            with_digest("http://a/u?_state=x", &d),
            format!("http://a/u?_state=x&digest={d}")
        );
    }
}
