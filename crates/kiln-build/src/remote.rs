//! ADD of http(s) URLs: each URL is downloaded once per build into the build's scratch folder, hashed
//! while it streams (SHA-256 for the step's cache key, and the `--checksum` algorithm when given), and
//! checked against `--checksum` before any step can use it. As in BuildKit, the file lands with mode
//! 0600 and the `Last-Modified` time (0 without one; clamped to `SOURCE_DATE_EPOCH` like every mtime)
//! and is never extracted.
//!
//! Like a RUN's network, a download does not reach the host's loopback services unless the build
//! allows the host's network (`--allow network.host`): a URL naming a loopback address, a redirect to
//! one, and a name resolving to one are refused (the names are resolved by kiln's own resolver, so
//! what was checked is what is connected to).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// Redirects followed, as reqwest's default policy.
const MAX_REDIRECTS: usize = 10;

/// A downloaded URL.
#[derive(Debug)]
pub(crate) struct Download {
    /// Where the bytes are (in the build's scratch folder).
    pub(crate) path: PathBuf,
    /// SHA-256 of the bytes, hex.
    pub(crate) sha256: String,
    /// `Last-Modified`, seconds since the epoch (0 when absent or unreadable).
    pub(crate) mtime: i64,
    /// The file name the URL's path ends in (`None` for `http://host/`).
    pub(crate) name: Option<String>,
}

/// The URLs of one build, each fetched at most once.
#[derive(Debug)]
pub(crate) struct Downloads {
    dir: PathBuf,
    /// Whether the host's loopback may be reached (`--allow network.host`).
    allow_loopback: bool,
    done: Mutex<HashMap<String, Arc<Download>>>,
}

/// Why ADD refuses a loopback address, for the error.
const LOOPBACK_REFUSED: &str =
    "is the host's loopback: ADD reaches the host's loopback services only with --allow network.host";

/// Whether `ip` reaches this host's loopback (127/8, `::1`, the unspecified and "this network"
/// addresses, which Linux connects locally, and their IPv4-mapped forms).
fn is_loopback(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.octets()[0] == 0,
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.to_ipv4_mapped().is_some_and(|v4| is_loopback(v4.into()))
        }
    }
}

/// The URL's host when it is a loopback address literal.
fn loopback_literal(url: &reqwest::Url) -> Option<String> {
    // The URL parser writes IPv4 hosts in dotted form (`2130706433` is `127.0.0.1`), IPv6 in brackets.
    let host = url.host_str()?;
    let ip: std::net::IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    is_loopback(ip).then(|| ip.to_string())
}

/// Resolves names with the system's resolver and drops loopback addresses.
struct NoLoopback;

impl reqwest::dns::Resolve for NoLoopback {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Blocking is fine here: each download has a client (and a runtime) of its own.
            let all: Vec<std::net::SocketAddr> =
                std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 0))?.collect();
            let kept: Vec<std::net::SocketAddr> =
                all.iter().copied().filter(|a| !is_loopback(a.ip())).collect();
            if kept.is_empty() && !all.is_empty() {
                return Err(format!("`{host}` {LOOPBACK_REFUSED}").into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether an ADD source is a URL this builder downloads: http(s), but not a git repository (a path
/// ending in `.git`, as BuildKit reads it), which ADD would clone.
pub(crate) fn is_url(source: &str) -> bool {
    (source.starts_with("http://") || source.starts_with("https://")) && !is_git(source)
}

/// Whether an ADD source names a git repository.
pub(crate) fn is_git(source: &str) -> bool {
    let path = source.split(['#', '?']).next().unwrap_or(source);
    source.starts_with("git@") || source.starts_with("git://") || path.ends_with(".git")
}

impl Downloads {
    /// Downloads into `dir` (created on first use); the host's loopback only when `allow_loopback`.
    pub(crate) fn new(dir: PathBuf, allow_loopback: bool) -> Downloads {
        Downloads {
            dir,
            allow_loopback,
            done: Mutex::new(HashMap::new()),
        }
    }

    /// The download of `url`, fetched now unless this build already has it; `checksum` (`sha256:HEX`,
    /// `sha384:…`, `sha512:…`) must match or nothing is kept.
    pub(crate) fn get(&self, url: &str, checksum: Option<&str>) -> Result<Arc<Download>, String> {
        let key = format!("{url}\n{}", checksum.unwrap_or(""));
        if let Some(done) = self.done.lock().map_err(|_| "download state poisoned")?.get(&key) {
            return Ok(Arc::clone(done));
        }
        let download = Arc::new(self.fetch(url, checksum)?);
        self.done
            .lock()
            .map_err(|_| "download state poisoned")?
            .insert(key, Arc::clone(&download));
        Ok(download)
    }

    /// Fetches on a thread of its own: reqwest's blocking client panics when used on a thread that runs
    /// a tokio runtime, and a build may be started from one (`kiln upload`, `kiln publish`).
    fn fetch(&self, url: &str, checksum: Option<&str>) -> Result<Download, String> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| self.fetch_here(url, checksum))
                .join()
                .unwrap_or_else(|_| Err(format!("{url}: the download thread panicked")))
        })
    }

    fn fetch_here(&self, url: &str, checksum: Option<&str>) -> Result<Download, String> {
        let expected = checksum.map(parse_checksum).transpose()?;
        fs_err::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        // The workspace builds reqwest's rustls without a default crypto provider (kiln-client picks it).
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
        // The blocking client's timeout bounds the wait for the response and for each read of the body,
        // not the whole transfer: a large download on a slow link still finishes, a stalled one fails.
        let mut client = reqwest::blocking::Client::builder()
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .timeout(std::time::Duration::from_secs(120));
        if !self.allow_loopback {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
            if let Some(ip) = loopback_literal(&parsed) {
                return Err(format!("{url}: {ip} {LOOPBACK_REFUSED}"));
            }
            client = client
                .dns_resolver(Arc::new(NoLoopback))
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    if let Some(ip) = loopback_literal(attempt.url()) {
                        let message = format!("a redirect to {ip}, which {LOOPBACK_REFUSED}");
                        attempt.error(message)
                    } else if attempt.previous().len() >= MAX_REDIRECTS {
                        attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
                    } else {
                        attempt.follow()
                    }
                }));
        }
        let client = client.build().map_err(|e| format!("{url}: {e}"))?;
        let mut response = client
            .get(url)
            .send()
            .map_err(|e| format!("{url}: {}", chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("{url}: the server answered {}", response.status()));
        }
        let mtime = response
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .unwrap_or(0);
        let mut file = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| e.to_string())?;
        let mut sha256 = Sha256::new();
        let mut other = expected.as_ref().map(|(alg, _)| Hasher::new(alg));
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = response
                .read(&mut buffer)
                .map_err(|e| format!("{url}: the download broke off: {e}"))?;
            if n == 0 {
                break;
            }
            sha256.update(&buffer[..n]);
            if let Some(h) = other.as_mut() {
                h.update(&buffer[..n]);
            }
            file.write_all(&buffer[..n])
                .map_err(|e| format!("{}: {e}", file.path().display()))?;
        }
        let sha256 = hex::encode(sha256.finalize());
        if let (Some((alg, want)), Some(h)) = (&expected, other) {
            let got = h.finish();
            if &got != want {
                return Err(format!(
                    "{url}: the download has {alg}:{got}, but --checksum says {alg}:{want}"
                ));
            }
        }
        let (_, path) = file.keep().map_err(|e| e.to_string())?;
        Ok(Download {
            path,
            sha256,
            mtime,
            name: file_name(url),
        })
    }
}

/// `ALG:HEX` with a supported algorithm and a hex digest of its length.
fn parse_checksum(text: &str) -> Result<(String, String), String> {
    let (alg, hex) = text
        .split_once(':')
        .ok_or_else(|| format!("--checksum `{text}` is not ALGORITHM:HEX (e.g. sha256:…)"))?;
    let len = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "--checksum `{text}`: algorithm `{alg}` is not sha256, sha384 or sha512"
            ));
        }
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "--checksum `{text}`: `{hex}` is not a {alg} digest ({len} hex digits)"
        ));
    }
    Ok((alg.to_owned(), hex.to_ascii_lowercase()))
}

enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl Hasher {
    fn new(alg: &str) -> Hasher {
        match alg {
            "sha384" => Hasher::Sha384(Sha384::new()),
            "sha512" => Hasher::Sha512(Sha512::new()),
            _ => Hasher::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha384(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha384(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// The last segment of the URL's path, without query or fragment.
fn file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split_once('/').map(|(_, p)| p)?;
    let path = path.split(['?', '#']).next().unwrap_or("");
    let name = path.rsplit('/').next().unwrap_or("");
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_owned())
}

/// An error with its causes (reqwest's top-level message alone says little).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_checksums() {
        assert_eq!(
            file_name("https://h/a/b/tool.tar.gz?x=1").as_deref(),
            Some("tool.tar.gz")
        );
        assert_eq!(file_name("http://h/"), None);
        assert_eq!(file_name("http://h"), None);
        assert!(is_url("https://h/a.tar.gz") && !is_url("https://h/repo.git#main") && !is_url("ftp://h/a"));
        assert!(is_git("git@github.com:o/r") && is_git("https://h/o/r.git"));
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum("md5:abc").is_err());
        assert_eq!(
            parse_checksum(&format!("sha256:{}", "A".repeat(64))).unwrap().1,
            "a".repeat(64)
        );
    }

    #[test]
    fn loopback_addresses_in_every_spelling() {
        let loopback = [
            "http://127.0.0.1:5000/v2/",
            "http://127.1.2.3/",
            "http://0.0.0.0:5000/",
            "http://[::1]:5000/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
        ];
        // Names are the resolver's business.
        let others = [
            "http://192.0.2.1/",
            "http://[2001:db8::1]/",
            "http://localhost/",
            "https://deb.debian.org/",
        ];
        for (url, expected) in loopback
            .iter()
            .map(|u| (u, true))
            .chain(others.iter().map(|u| (u, false)))
        {
            let found = loopback_literal(&reqwest::Url::parse(url).unwrap()).is_some();
            assert_eq!(found, expected, "{url}");
        }
    }
}
