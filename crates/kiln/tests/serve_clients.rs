//! `kiln serve` (the binary) with real clients: buildah push, a podman multi-arch index read back byte-exact
//! by skopeo, the cross-repository mount seen in the access log and the metrics, concurrent pushes (skopeo
//! and kiln-client), and a crash test (kill -9 during pushes, restart, fsck, every acknowledged push there).
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use kiln_oci::{Algorithm, Digest};
use kiln_test_support::{
    Podman, Server, busybox_root, require_tool, run, start_docker_registry, start_kiln_serve_logging,
};

/// `kiln serve` on a free loopback port, its stderr in the file `log`; killed (SIGKILL) when dropped.
fn serve(root: &Path, log: &Path, extra: &[&str]) -> Server {
    let mut cmd = Command::cargo_bin("kiln").unwrap();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .args(extra);
    start_kiln_serve_logging(&mut cmd, log)
}

/// An HTTP answer: status, headers (names lowercased), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first error code of a JSON error body.
    fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// One HTTP/1.1 request on a fresh connection, with extra headers; the response is read to the end.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("truncated response"))?;
    let head = String::from_utf8_lossy(&reply[..split]).into_owned();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = reply[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let len = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if len == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + len]);
        data = &data[eol + 4 + len..];
    }
    out
}

/// [`request`] with an optional Content-Type; returns the status and body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let headers: Vec<(&str, &str)> = content_type.map(|ct| ("Content-Type", ct)).into_iter().collect();
    request(addr, method, path, &headers, body).map(|a| (a.status, a.body))
}

/// Deterministic bytes (xorshift) for test blobs.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A small OCI image: its blobs (config, layer) and manifest bytes.
struct TestImage {
    blobs: Vec<(Digest, Vec<u8>)>,
    manifest: Vec<u8>,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

impl TestImage {
    fn new(seed: u64, layer_len: usize) -> TestImage {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"seed":"{seed}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        )
        .into_bytes();
        let layer = noise(seed, layer_len);
        let (cd, ld) = (
            Algorithm::Sha256.digest(&config),
            Algorithm::Sha256.digest(&layer),
        );
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.to_string(), "size": layer.len()}],
        }))
        .unwrap();
        TestImage {
            blobs: vec![(cd, config), (ld, layer)],
            manifest,
        }
    }

    fn digest(&self) -> Digest {
        Algorithm::Sha256.digest(&self.manifest)
    }

    /// Pushes with raw HTTP (monolithic blob uploads, then the manifest); Ok(true) once the manifest PUT
    /// is acknowledged.
    fn push_raw(&self, addr: &str, repo: &str, tag: &str) -> std::io::Result<bool> {
        for (d, bytes) in &self.blobs {
            let (status, _) = http(
                addr,
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                None,
                bytes,
            )?;
            if status != 201 {
                return Ok(false);
            }
        }
        let path = format!("/v2/{repo}/manifests/{tag}");
        let (status, _) = http(addr, "PUT", &path, Some(OCI_MANIFEST), &self.manifest)?;
        Ok(status == 201)
    }

    /// Reads the image back by tag and checks every digest; describes the first difference.
    fn check(&self, addr: &str, repo: &str, tag: &str) -> Result<(), String> {
        let (status, body) = http(addr, "GET", &format!("/v2/{repo}/manifests/{tag}"), None, b"")
            .map_err(|e| e.to_string())?;
        if status != 200 || body != self.manifest {
            return Err(format!("{repo}:{tag}: manifest {status}, {} bytes", body.len()));
        }
        for (d, bytes) in &self.blobs {
            let (status, body) =
                http(addr, "GET", &format!("/v2/{repo}/blobs/{d}"), None, b"").map_err(|e| e.to_string())?;
            if status != 200 || Algorithm::Sha256.digest(&body) != *d || body.len() != bytes.len() {
                return Err(format!(
                    "{repo}:{tag}: blob {d} answered {status} with {} bytes",
                    body.len()
                ));
            }
        }
        Ok(())
    }
}

fn fsck(root: &Path) {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["registry", "fsck", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck found problems:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of a metric sample line starting with `series`.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
}

/// buildah pushes to kiln serve; podman builds a two-platform index and pushes it, skopeo reads the index
/// back byte for byte; `kiln copy` between repositories mounts, and the JSON access log and /metrics show it.
#[test]
fn buildah_push_podman_index_and_mount_seen_in_the_log() {
    if !(require_tool("buildah") && require_tool("podman") && require_tool("skopeo")) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tools = Podman::new(dir.path());
    let Some(rootfs) = busybox_root(dir.path()) else {
        return;
    };
    let server = serve(
        &dir.path().join("reg"),
        &dir.path().join("serve.log"),
        &["--log-format", "json"],
    );
    let addr = server.addr.clone();
    let d = dir.path();

    // Two single-platform images from the busybox root (podman and buildah share the storage).
    let tar = d.join("rootfs.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    let tar = tar.to_str().unwrap();
    for arch in ["amd64", "arm64"] {
        run(&mut tools.tool(
            "podman",
            &["import", "--arch", arch, tar, &format!("localhost/bb:{arch}")],
        ));
    }
    run(&mut tools.tool(
        "buildah",
        &[
            "push",
            "--tls-verify=false",
            "localhost/bb:amd64",
            &format!("docker://{addr}/buildah/bb:1"),
        ],
    ));
    let raw = run(&mut tools.tool(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{addr}/buildah/bb:1"),
        ],
    ));
    let pushed: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(pushed["layers"].as_array().unwrap().len(), 1, "{raw}");

    run(&mut tools.tool("podman", &["manifest", "create", "localhost/multi:1"]));
    for arch in ["amd64", "arm64"] {
        run(&mut tools.tool(
            "podman",
            &[
                "manifest",
                "add",
                "--arch",
                arch,
                "localhost/multi:1",
                &format!("containers-storage:localhost/bb:{arch}"),
            ],
        ));
    }
    let digest_file = d.join("index.digest");
    run(&mut tools.tool(
        "podman",
        &[
            "manifest",
            "push",
            "--all",
            "--tls-verify=false",
            "--digestfile",
            digest_file.to_str().unwrap(),
            "localhost/multi:1",
            &format!("docker://{addr}/multi/bb:1"),
        ],
    ));
    let out = tools
        .tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                "--raw",
                &format!("docker://{addr}/multi/bb:1"),
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pushed_digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(
        Algorithm::Sha256.digest(&out.stdout).to_string(),
        pushed_digest.trim(),
        "the index read back is not the bytes podman pushed"
    );
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    archs.sort_unstable();
    assert_eq!(archs, ["amd64", "arm64"]);
    for m in index["manifests"].as_array().unwrap() {
        let child = format!("docker://{addr}/multi/bb@{}", m["digest"].as_str().unwrap());
        run(&mut tools.tool("skopeo", &["inspect", "--tls-verify=false", "--raw", &child]));
    }

    // kiln copy within one registry mounts the blobs: the event and the metric show it.
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args([
            "copy",
            &format!("docker://{addr}/buildah/bb:1"),
            &format!("docker://{addr}/copied/bb:1"),
        ])
        .env("HOME", d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = server.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mounts: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"] == "blob_mount" && l["repo"] == "copied/bb")
        .collect();
    assert!(!mounts.is_empty(), "no mount event in:\n{log}");
    assert!(
        mounts
            .iter()
            .all(|m| m["from"] == "buildah/bb" && m["client"].as_str().is_some()),
        "{mounts:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "blob_upload_complete" && l["repo"] == "buildah/bb"),
        "no upload event in:\n{log}"
    );
    // Every request has its access line with the documented fields.
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "kiln_registry::access")
        .collect();
    assert!(access.len() > 10, "{log}");
    for field in [
        "method",
        "route",
        "path",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "client",
        "timestamp",
    ] {
        assert!(
            access.iter().all(|l| !l[field].is_null()),
            "{field} missing in:\n{log}"
        );
    }
    assert!(
        access.iter().any(|l| l["method"] == "PUT"
            && l["route"] == "/v2/{name}/manifests/{reference}"
            && l["repo"] == "multi/bb"
            && l["status"] == 201
            && l["bytes_in"].as_u64().unwrap() > 0),
        "{log}"
    );
    let (status, metrics) = http(&addr, "GET", "/metrics", None, b"").unwrap();
    assert_eq!(status, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        sample(&metrics, "kiln_registry_blob_mounts_total") >= 1.0,
        "{metrics}"
    );
    assert!(sample(&metrics, "kiln_registry_storage_bytes") > 1e6, "{metrics}");
}

/// Four skopeo pushes of one image at once into one tag, and fifty kiln-client pushes of different images
/// at once: all readable afterwards, fsck clean.
#[test]
fn concurrent_pushes_all_land_and_fsck_is_clean() {
    if !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    let server = serve(&root, &dir.path().join("serve.log"), &[]);
    let addr = server.addr.clone();

    // The same image four times at once (skopeo, from one OCI layout).
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let same = TestImage::new(1, 3 << 20);
    for (d, bytes) in &same.blobs {
        std::fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    }
    std::fs::write(
        layout.join("blobs/sha256").join(same.digest().hex()),
        &same.manifest,
    )
    .unwrap();
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST,
        "digest": same.digest().to_string(), "size": same.manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "1"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    let source = format!("oci:{}:1", layout.display());
    let skopeos: Vec<Child> = (0..4)
        .map(|_| {
            Command::new("skopeo")
                .args([
                    "copy",
                    "-q",
                    "--preserve-digests",
                    "--dest-tls-verify=false",
                    &source,
                ])
                .arg(format!("docker://{addr}/same/image:1"))
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();

    // Fifty different images at once with kiln-client, each blob from a file.
    let images: Vec<TestImage> = (0..50)
        .map(|i| TestImage::new(100 + i, 20_000 + i as usize * 1000))
        .collect();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    for image in &images {
        for (d, bytes) in &image.blobs {
            std::fs::write(files.join(d.hex()), bytes).unwrap();
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = std::sync::Arc::new(kiln_client::Client::new(kiln_client::ClientConfig::default()));
        let tasks: Vec<_> = images
            .iter()
            .enumerate()
            .map(|(i, image)| {
                let client = std::sync::Arc::clone(&client);
                let blobs: Vec<(Digest, u64)> = image
                    .blobs
                    .iter()
                    .map(|(d, b)| (d.clone(), b.len() as u64))
                    .collect();
                let manifest = image.manifest.clone();
                let target: kiln_client::Reference = format!("{addr}/many/image-{i}:1").parse().unwrap();
                let files = files.clone();
                tokio::spawn(async move {
                    for (digest, size) in blobs {
                        let path = files.join(digest.hex());
                        let descriptor = kiln_oci::manifest::Descriptor {
                            media_type: None,
                            digest,
                            size,
                            urls: None,
                            artifact_type: None,
                            annotations: None,
                        };
                        client.push_blob(&target, &descriptor, &path, None).await.unwrap();
                    }
                    client
                        .put_manifest(&target, &manifest, OCI_MANIFEST)
                        .await
                        .unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    for child in skopeos {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    same.check(&addr, "same/image", "1").unwrap();
    for (i, image) in images.iter().enumerate() {
        image.check(&addr, &format!("many/image-{i}"), "1").unwrap();
    }
    let (_, catalog) = http(&addr, "GET", "/v2/_catalog", None, b"").unwrap();
    let catalog: serde_json::Value = serde_json::from_slice(&catalog).unwrap();
    assert_eq!(catalog["repositories"].as_array().unwrap().len(), 51, "{catalog}");
    server.stop();
    fsck(&root);
}

/// kill -9 at random moments while two clients push (blobs of up to 2 MB, some shared), restart, repeat;
/// then fsck finds nothing wrong and every push the server acknowledged reads back with its digests.
#[test]
fn kill_9_during_pushes_loses_no_acknowledged_push() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    // KILN_CRASH_SEED replays the sizes and kill delays of a run (its timing still varies).
    let seed = std::env::var("KILN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed {seed} (KILN_CRASH_SEED)");
    let mut random = noise(seed, 4096).into_iter().cycle();
    let mut next = move || u64::from(random.next().unwrap());
    let mut acknowledged: Vec<(String, TestImage)> = Vec::new();
    let (mut rounds, mut attempts) = (0, 0);
    let started = Instant::now();
    while rounds < 15 && started.elapsed() < Duration::from_secs(25) {
        let server = serve(&root, &dir.path().join(format!("serve-{rounds}.log")), &[]);
        let pushers: Vec<_> = (0..2)
            .map(|p| {
                let addr = server.addr.clone();
                let seeds: Vec<u64> = (0..40).map(|_| next() << 8 | next()).collect();
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    let mut tried = 0;
                    for (i, s) in seeds.into_iter().enumerate() {
                        // A quarter of the images reuse one of four layers (dedupe, concurrent same blob).
                        let layer_seed = if s % 4 == 0 { s % 16 } else { s + 1000 };
                        let image = TestImage::new(layer_seed, (s as usize * 7919) % (2 << 20));
                        let tag = format!("r{rounds}-p{p}-{i}");
                        tried += 1;
                        match image.push_raw(&addr, "crash/image", &tag) {
                            Ok(true) => acked.push((tag, image)),
                            Ok(false) => panic!("push {tag} refused while the server was up"),
                            Err(_) => break, // the server is gone
                        }
                    }
                    (acked, tried)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30 + next() * 3));
        server.stop();
        for pusher in pushers {
            let (acked, tried) = pusher.join().unwrap();
            acknowledged.extend(acked);
            attempts += tried;
        }
        rounds += 1;
    }
    eprintln!(
        "{rounds} kills, {} of {attempts} pushes acknowledged",
        acknowledged.len()
    );
    assert!(rounds >= 5);
    fsck(&root);
    let server = serve(&root, &dir.path().join("serve-last.log"), &[]);
    for (tag, image) in &acknowledged {
        image.check(&server.addr, "crash/image", tag).unwrap();
    }
    // The registry still takes pushes after all that.
    let image = TestImage::new(7, 100_000);
    assert!(image.push_raw(&server.addr, "crash/image", "after").unwrap());
    image.check(&server.addr, "crash/image", "after").unwrap();
    // The default log is text, one access line per request.
    let log = server.log_text();
    assert!(
        log.lines().any(|l| l.contains("kiln_registry::access")
            && l.contains("method=PUT route=/v2/{name}/manifests/{reference} path=/v2/crash/image/manifests/after repo=crash/image status=201")),
        "{log}"
    );
}

/// The path (and query) of a Location header, absolute or not.
fn location_path(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest[rest.find('/').unwrap_or(rest.len())..].to_owned(),
        None => location.to_owned(),
    }
}

/// The client-level scenario of the differential check: each step's name and what a client observes
/// (status, error code, and the headers and body parts the spec fixes).
fn scenario(addr: &str) -> Vec<(&'static str, String)> {
    let mut seen = Vec::new();
    let mut note = |step: &'static str, a: &Answer, extra: &str| {
        seen.push((
            step,
            format!("{} {} {extra}", a.status, a.code()).trim_end().to_owned(),
        ));
    };
    let go = |method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]| {
        request(addr, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
    };
    let image = TestImage::new(42, 50_000);
    let (config, layer) = (&image.blobs[0], &image.blobs[1]);
    let a = go("GET", "/v2/", &[], b"");
    note("base", &a, "");

    // Monolithic upload of the config, chunked upload of the layer.
    // A single-POST upload; a registry without it answers 202 and the client PUTs the body (the spec
    // allows both).
    let upload = |digest: &Digest, bytes: &[u8]| {
        let single = format!("/v2/diff/app/blobs/uploads/?digest={digest}");
        // distribution answers 202 without reading the body and closes: the connection may be reset
        // under the answer. A client then starts a session without a body.
        let a = request(addr, "POST", &single, &[], bytes)
            .unwrap_or_else(|_| go("POST", "/v2/diff/app/blobs/uploads/", &[], b""));
        match a.header("location") {
            Some(l) if a.status == 202 => {
                let p = location_path(l);
                let sep = if p.contains('?') { '&' } else { '?' };
                go("PUT", &format!("{p}{sep}digest={digest}"), &[], bytes)
            }
            _ => a,
        }
    };
    let a = upload(&config.0, &config.1);
    note(
        "monolithic upload",
        &a,
        a.header("docker-content-digest").unwrap_or("-"),
    );
    let a = go("POST", "/v2/diff/app/blobs/uploads/", &[], b"");
    note(
        "start upload",
        &a,
        if a.header("location").is_some() {
            "location"
        } else {
            "-"
        },
    );
    let location = a.header("location").unwrap_or_default().to_owned();
    let path = location_path(&location);
    let status = go("GET", &path, &[], b"");
    note("upload status (empty)", &status, "");
    let (first, rest) = layer.1.split_at(20_000);
    let range = format!("0-{}", first.len() - 1);
    let a = go(
        "PATCH",
        &path,
        &[
            ("Content-Range", &range),
            ("Content-Type", "application/octet-stream"),
        ],
        first,
    );
    note("patch chunk", &a, a.header("range").unwrap_or("-"));
    let next = a.header("location").map_or(path.clone(), location_path);
    let a = go("GET", &next, &[], b"");
    note(
        "upload status (after chunk)",
        &a,
        a.header("range").unwrap_or("-"),
    );
    let sep = if next.contains('?') { '&' } else { '?' };
    let a = go(
        "PUT",
        &format!("{next}{sep}digest={}", layer.0),
        &[("Content-Type", "application/octet-stream")],
        rest,
    );
    note(
        "finish upload",
        &a,
        a.header("docker-content-digest").unwrap_or("-"),
    );
    let a = go("HEAD", &format!("/v2/diff/app/blobs/{}", layer.0), &[], b"");
    note("head blob", &a, a.header("content-length").unwrap_or("-"));
    let a = go("GET", &format!("/v2/diff/app/blobs/{}", layer.0), &[], b"");
    note("get blob", &a, &Algorithm::Sha256.digest(&a.body).to_string());
    let a = go(
        "GET",
        &format!("/v2/diff/app/blobs/{}", Algorithm::Sha256.digest(b"absent")),
        &[],
        b"",
    );
    note("unknown blob", &a, "");
    let a = go(
        "GET",
        &format!("/v2/diff/app/blobs/{}", layer.0),
        &[("Range", "bytes=10-19")],
        b"",
    );
    note(
        "range get",
        &a,
        &format!("{} {}", a.header("content-range").unwrap_or("-"), a.body.len()),
    );
    let a = upload(&Algorithm::Sha256.digest(b"other"), b"not other");
    note("wrong digest", &a, "");

    // Manifests.
    let ct = [("Content-Type", OCI_MANIFEST)];
    let a = go("PUT", "/v2/diff/app/manifests/1", &ct, &image.manifest);
    note(
        "put manifest",
        &a,
        a.header("docker-content-digest").unwrap_or("-"),
    );
    let a = go(
        "GET",
        "/v2/diff/app/manifests/1",
        &[("Accept", OCI_MANIFEST)],
        b"",
    );
    note(
        "get manifest",
        &a,
        &format!(
            "{} {}",
            a.header("content-type").unwrap_or("-"),
            a.body == image.manifest
        ),
    );
    let a = go(
        "HEAD",
        &format!("/v2/diff/app/manifests/{}", image.digest()),
        &[("Accept", OCI_MANIFEST)],
        b"",
    );
    note(
        "head manifest by digest",
        &a,
        a.header("content-length").unwrap_or("-"),
    );
    let a = go(
        "GET",
        "/v2/diff/app/manifests/absent",
        &[("Accept", OCI_MANIFEST)],
        b"",
    );
    note("unknown manifest", &a, "");
    let missing = TestImage::new(43, 10);
    let a = go("PUT", "/v2/diff/app/manifests/missing", &ct, &missing.manifest);
    note("manifest with unknown blobs", &a, "");
    let a = go("PUT", "/v2/diff/app/manifests/bad", &ct, b"{not json");
    note("invalid manifest", &a, "");
    let a = go("PUT", "/v2/diff/app/manifests/2", &ct, &image.manifest);
    note("second tag", &a, "");

    // Tags, catalog, mounts.
    let a = go("GET", "/v2/diff/app/tags/list", &[], b"");
    note("tags", &a, &String::from_utf8_lossy(&a.body));
    let a = go("GET", "/v2/diff/nothing/tags/list", &[], b"");
    note("tags of an unknown repository", &a, "");
    let a = go("GET", "/v2/diff/app/tags/list?n=1", &[], b"");
    note(
        "tags page",
        &a,
        &format!(
            "{} {}",
            String::from_utf8_lossy(&a.body),
            a.header("link").is_some()
        ),
    );
    let a = go(
        "POST",
        &format!("/v2/diff/other/blobs/uploads/?mount={}&from=diff/app", layer.0),
        &[],
        b"",
    );
    note("mount", &a, a.header("docker-content-digest").unwrap_or("-"));
    let a = go(
        "POST",
        &format!(
            "/v2/diff/third/blobs/uploads/?mount={}&from=diff/nothing",
            layer.0
        ),
        &[],
        b"",
    );
    note("mount from a repository without the blob", &a, "");
    if let Some(l) = a.header("location") {
        let p = location_path(l);
        let a = go("DELETE", &p, &[], b"");
        note("cancel upload", &a, "");
        let a = go("GET", &p, &[], b"");
        note("status of a cancelled upload", &a, "");
    }
    let a = go("GET", "/v2/_catalog", &[], b"");
    note("catalog", &a, &String::from_utf8_lossy(&a.body));

    // Malformed input.
    let a = go("GET", "/v2/diff/app/blobs/sha256:nothex", &[], b"");
    note("malformed digest", &a, "");
    let a = go("GET", "/v2/Diff/App/tags/list", &[], b"");
    note("invalid name", &a, "");
    let a = go(
        "GET",
        &format!("/v2/diff/app/referrers/{}", image.digest()),
        &[],
        b"",
    );
    note("referrers", &a, "");

    // Deletes.
    let a = go("DELETE", "/v2/diff/app/manifests/2", &[], b"");
    note("delete tag", &a, "");
    let a = go(
        "DELETE",
        &format!("/v2/diff/app/manifests/{}", image.digest()),
        &[],
        b"",
    );
    note("delete manifest", &a, "");
    let a = go(
        "GET",
        "/v2/diff/app/manifests/1",
        &[("Accept", OCI_MANIFEST)],
        b"",
    );
    note("tag of a deleted manifest", &a, "");
    let a = go("DELETE", &format!("/v2/diff/other/blobs/{}", layer.0), &[], b"");
    note("delete blob", &a, "");
    let a = go("HEAD", &format!("/v2/diff/other/blobs/{}", layer.0), &[], b"");
    note("deleted blob", &a, "");
    seen
}

/// Where kiln serve answers otherwise than distribution 2.8 on purpose (docs/registry-config.md, "Compared
/// with distribution 2.8"): the step and why.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[
    (
        "tags",
        "distribution 2.8 lists tags in storage order; the spec (and kiln) sorts them lexically",
    ),
    (
        "tags page",
        "distribution 2.8 ignores `n` on tag lists and sends no Link header",
    ),
    (
        "invalid name",
        "distribution 2.8 has no route for an invalid name (404 without a code); kiln answers 400 NAME_INVALID",
    ),
    (
        "referrers",
        "distribution 2.8 has no referrers API (404); kiln answers an OCI index",
    ),
    (
        "delete tag",
        "distribution 2.8 deletes manifests by digest only (400 DIGEST_INVALID for a tag); kiln removes the tag alone",
    ),
];

/// The same client-level scenario against kiln serve and distribution 2.8: every observation agrees
/// except the documented, allow-listed differences.
#[test]
fn differential_against_distribution() {
    let dir = tempfile::tempdir().unwrap();
    let Some(distribution) = start_docker_registry(&dir.path().join("distribution")) else {
        return;
    };
    let kiln = serve(&dir.path().join("reg"), &dir.path().join("serve.log"), &[]);
    let ours = scenario(&kiln.addr);
    let theirs = scenario(&distribution.addr);
    assert_eq!(ours.len(), theirs.len());
    let mut unexplained = Vec::new();
    for ((step, k), (_, d)) in ours.iter().zip(&theirs) {
        let allowed = KNOWN_DIFFERENCES.iter().find(|(s, _)| s == step);
        match (k == d, allowed) {
            (true, _) => {}
            (false, Some((_, why))) => {
                eprintln!("known difference in `{step}`: kiln `{k}`, distribution `{d}` ({why})")
            }
            (false, None) => unexplained.push(format!("{step}: kiln `{k}`, distribution `{d}`")),
        }
    }
    assert!(
        unexplained.is_empty(),
        "unexplained differences:\n{}",
        unexplained.join("\n")
    );
    // The allow-list stays honest: a difference that went away leaves it.
    for (step, _) in KNOWN_DIFFERENCES {
        let k = ours.iter().find(|(s, _)| s == step).map(|(_, o)| o);
        let d = theirs.iter().find(|(s, _)| s == step).map(|(_, o)| o);
        assert!(
            k.is_some() && k != d,
            "`{step}` is allow-listed but does not differ: {k:?}"
        );
    }
}

/// The JSON log lines of a server.
fn log_lines(server: &Server) -> Vec<serde_json::Value> {
    server
        .log_text()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A 5xx answer's request id, after checking that its body names none of `hidden`.
fn server_error_id(answer: &Answer, status: u16, hidden: &[&str]) -> String {
    let body = String::from_utf8_lossy(&answer.body).into_owned();
    assert_eq!(answer.status, status, "{body}");
    assert_eq!(answer.code(), "UNKNOWN", "{body}");
    for h in hidden {
        assert!(!body.contains(h), "{h} in the body: {body}");
    }
    let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let id = v["errors"][0]["detail"]["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(body.contains(&format!("request {id}")), "{body}");
    id
}

/// The `kiln_registry::error` line and the access line logged under request `id`.
fn logged(server: &Server, id: &str) -> (serde_json::Value, serde_json::Value) {
    let lines = log_lines(server);
    let find = |target: &str| {
        lines
            .iter()
            .find(|l| l["target"] == target && l["request_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {target} line for request {id} in:\n{}", server.log_text()))
    };
    (find("kiln_registry::error"), find("kiln_registry::access"))
}

#[test]
fn regression_5xx_bodies_hide_server_paths_which_the_log_keeps_under_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = closed.local_addr().unwrap().to_string();
    drop(closed);
    let mirror = format!("docker.io=http://{upstream}");
    let server = serve(
        &root,
        &dir.path().join("log"),
        &["--log-format", "json", "--mirror", &mirror],
    );
    let addr = server.addr.clone();
    let root_text = root.display().to_string();

    // A pull-through whose upstream is down: 502, the upstream's address only in the log.
    let answer = request(&addr, "GET", "/v2/org/app/manifests/1", &[], b"").unwrap();
    let id = server_error_id(&answer, 502, &[&upstream, &root_text]);
    let (error, access) = logged(&server, &id);
    assert!(error["error"].as_str().unwrap().contains(&upstream), "{error}");
    assert_eq!(access["status"], 502, "{access}");

    // A manifest damaged on disk: 500 (not a 400 about uploaded content), its path only in the log.
    let image = TestImage::new(7, 1000);
    assert!(image.push_raw(&addr, "org/app", "1").unwrap());
    let blob = root.join("blobs/sha256").join(image.digest().hex());
    std::fs::write(&blob, vec![b'x'; image.manifest.len()]).unwrap();
    let answer = request(&addr, "GET", "/v2/org/app/manifests/1", &[], b"").unwrap();
    let id = server_error_id(&answer, 500, &[&root_text, "blobs/", "uploaded content"]);
    let (error, _) = logged(&server, &id);
    let logged_error = error["error"].as_str().unwrap();
    assert!(logged_error.contains(&blob.display().to_string()), "{error}");
    assert!(logged_error.contains(&image.digest().to_string()), "{error}");
    // fsck names the file.
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["registry", "fsck", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&blob.display().to_string()), "{report}");
}
