//! `kiln push|pull|copy|tag|promote|untag` against `kiln serve` (the binary) and read back by skopeo and
//! podman: what kiln pushes is what the peers pull, digests included; transport errors name their URL and
//! cause.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use kiln_test_support::{Podman, ok, require_tool, run};
use support::{busybox_store, json, kiln, kiln_serve};

/// A temp dir whose store holds the busybox base as `bb:1`, exported as the docker-archive `bb.tar`.
fn base() -> Option<tempfile::TempDir> {
    let dir = busybox_store()?;
    ok(kiln(dir.path(), &["image", "export", "bb:1", "-o", "bb.tar"]));
    Some(dir)
}

fn serve(root: &Path) -> kiln_test_support::Server {
    kiln_serve(root, &[])
}

#[test]
fn copy_archive_to_registry_to_tar_zst_and_skopeo_reads_what_kiln_pushed() {
    if !require_tool("skopeo") {
        return;
    }
    let Some(dir) = base() else { return };
    let d = dir.path();
    let registry = serve(&d.join("reg"));
    let reference = format!("{}/copy/bb:1", registry.addr);

    let pushed = json(kiln(
        d,
        &["copy", "bb.tar", &format!("docker://{reference}"), "--json"],
    ));
    let digest = pushed["digest"].as_str().unwrap().to_owned();
    assert_eq!(pushed["blobs"]["pushed"], 2, "{pushed}");

    // skopeo sees the same manifest digest, and copies it byte-exact into an OCI layout.
    let inspected: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ])))
    .unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--preserve-digests",
        &format!("docker://{reference}"),
        &format!("oci:{}:x", d.join("layout").display()),
    ]));
    let layout: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(d.join("layout/index.json")).unwrap()).unwrap();
    assert_eq!(layout["manifests"][0]["digest"], digest.as_str());

    // Back out of the registry as an image.tar.zst that kiln (and docker load) read.
    let written = json(kiln(d, &["copy", &reference, "out.tar.zst", "--json"]));
    assert_eq!(written["name"], "out.tar.zst");
    assert!(d.join("out.tar.zst").is_file());
    ok(kiln(d, &["image", "import", "out.tar.zst", "-t", "again:1"]));
    // Nothing of the temporary store is left behind.
    assert_eq!(fs_err::read_dir(d.join("store/ingest")).unwrap().count(), 0);

    // And into an OCI layout under a tag, which skopeo reads.
    ok(kiln(
        d,
        &["copy", &reference, &format!("oci:{}:v9", d.join("kl").display())],
    ));
    let from_layout: serde_json::Value = serde_json::from_str(&run(
        Command::new("skopeo").args(["inspect", &format!("oci:{}:v9", d.join("kl").display())])
    ))
    .unwrap();
    assert_eq!(from_layout["Digest"], digest.as_str());
}

#[test]
fn push_pull_promote_untag_json_contract() {
    let Some(dir) = base() else { return };
    let d = dir.path();
    let registry = serve(&d.join("reg"));
    let temporary = format!("{}/ci/bb:change_5_1", registry.addr);

    let pushed = json(kiln(d, &["push", "bb:1", &temporary, "--json"]));
    let digest = pushed["digest"].as_str().unwrap().to_owned();
    assert_eq!(pushed["reference"], temporary.as_str());
    assert_eq!(pushed["mediaType"], "application/vnd.oci.image.manifest.v1+json");

    let pulled = json(kiln(d, &["pull", &temporary, "--name", "pulled:1", "--json"]));
    assert_eq!(pulled["digest"], digest.as_str());
    assert_eq!(pulled["name"], "pulled:1");
    assert_eq!(pulled["blobs"]["exists"], 2, "the store had every blob: {pulled}");
    let listed = ok(kiln(d, &["image", "ls"]));
    assert!(listed.contains(&format!("pulled:1\t{digest}")), "{listed}");

    let promoted = json(kiln(d, &["promote", &temporary, "1.0", "latest", "--json"]));
    assert_eq!(promoted["digest"], digest.as_str());
    assert_eq!(promoted["deleted"], "change_5_1");
    assert_eq!(promoted["tags"], serde_json::json!(["1.0", "latest"]));

    let tagged = ok(kiln(
        d,
        &["tag", &format!("{}/ci/bb:1.0", registry.addr), "change_6_1"],
    ));
    assert_eq!(
        tagged.trim(),
        format!("{}/ci/bb:change_6_1\t{digest}", registry.addr)
    );
    let swept = json(kiln(
        d,
        &[
            "untag",
            &format!("{}/ci/bb", registry.addr),
            "--older-than",
            "24h",
            "--match",
            "change_*",
            "--json",
        ],
    ));
    assert_eq!(
        swept["deleted"],
        serde_json::json!([format!("{}/ci/bb:change_6_1", registry.addr)])
    );

    // A missing image names the reference; a bad reference is refused before any request.
    let out = kiln(d, &["pull", &format!("{}/ci/none:1", registry.addr)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ci/none") && err.contains("404"), "{err}");
    let out = kiln(d, &["push", "bb:1", "Not/Valid"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid image reference"));
}

#[test]
fn pull_from_a_closed_port_says_the_connection_was_refused_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let out = kiln(dir.path(), &["pull", &format!("{addr}/org/app:1")]);
    assert!(!out.status.success());
    let stderr = stderr_of(&out);
    // The report (after any `retrying …` lines): the causes are in its message, said once.
    let err: Vec<&str> = stderr.lines().skip_while(|l| !l.starts_with("error: ")).collect();
    let err = err.join("\n");
    assert!(err.contains(&format!("://{addr}/v2/")), "{stderr}");
    assert!(err.to_lowercase().contains("connection refused"), "{stderr}");
    assert_eq!(
        err.to_lowercase().matches("connection refused").count(),
        1,
        "{stderr}"
    );
}

/// A registry that answers `/v2/` and then nothing: every other request is read and left unanswered.
fn stalling_registry() -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if buf[..n].starts_with(b"GET /v2/ ") {
                        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
                        let _ = stream.write_all(ok.as_bytes());
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn regression_kiln_pull_from_a_stalled_registry_gives_up_after_kiln_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let addr = stalling_registry();
    let reference = format!("{addr}/org/app:1");
    let started = std::time::Instant::now();
    let out = support::kiln_env(dir.path(), &["pull", &reference], &[("KILN_READ_TIMEOUT", "1s")]);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    let url = format!("http://{addr}/v2/org/app/manifests/1");
    assert!(
        stderr.contains(&format!(
            "caused by: GET {url}: nothing moved for 1 s, the registry stalled"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("https://"),
        "a plain-HTTP server's silence is no TLS to retry: {stderr}"
    );
    assert!(stderr.contains(&format!("retrying GET {url}")), "{stderr}");
    // Six attempts of a second and their backoff, not six of the old five minutes.
    assert!(elapsed < std::time::Duration::from_secs(30), "{elapsed:?}");
    let out = kiln(dir.path(), &["pull", "--read-timeout", "0s", &reference]);
    assert!(stderr_of(&out).contains("--read-timeout `0s`: must be at least 1s"));
}

#[test]
fn podman_pulls_what_kiln_pushed() {
    if !require_tool("podman") {
        return;
    }
    let Some(dir) = base() else { return };
    let d = dir.path();
    let registry = serve(&d.join("reg"));
    let reference = format!("{}/pod/bb:1", registry.addr);
    let pushed = json(kiln(d, &["push", "bb:1", &reference, "--json"]));
    let podman = Podman::new(d);
    podman.run(&["pull", "--tls-verify=false", &reference]);
    let seen = podman.run(&["image", "inspect", "--format", "{{.Digest}}", &reference]);
    assert_eq!(seen.trim(), pushed["digest"].as_str().unwrap());
}

/// A repository (`images/` folder layout) beside the `bb:1` store: `app` (in-tree) and `tool` (a
/// registry image: VERSION in its folder, REGISTRY in the images folder), both `FROM bb:1` + a COPY.
/// Building needs root; `None` when skipped.
fn tree(registry: &str) -> Option<tempfile::TempDir> {
    if !kiln_test_support::require_root() {
        return None;
    }
    let dir = base()?;
    let d = dir.path();
    for (file, text) in [
        ("images/app/Dockerfile", "FROM bb:1\nCOPY hello /hello\n"),
        ("images/app/hello", "app\n"),
        ("images/tool/Dockerfile", "FROM bb:1\nCOPY hello /hello\n"),
        ("images/tool/hello", "tool 1\n"),
        ("images/tool/VERSION", "1.0\n"),
    ] {
        fs_err::create_dir_all(d.join(file).parent().unwrap()).unwrap();
        fs_err::write(d.join(file), text).unwrap();
    }
    fs_err::write(d.join("images/REGISTRY"), format!("{registry}/pub\n")).unwrap();
    Some(dir)
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn upload_builds_what_the_store_lacks_then_promote_moves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = serve(&tmp.path().join("reg"));
    let Some(dir) = tree(&registry.addr) else { return };
    let d = dir.path();
    let gate = format!("{}/gate", registry.addr);

    let first = kiln(
        d,
        &[
            "upload",
            "app",
            "--registry",
            &gate,
            "--temporary-tag",
            "change_12_1",
        ],
    );
    assert!(
        stderr_of(&first).contains("building app"),
        "{}",
        stderr_of(&first)
    );
    let pinned = ok(first).trim().to_owned();
    let (reference, digest) = pinned.split_once('@').unwrap();
    assert_eq!(reference, format!("{gate}/app:change_12_1"));
    // The same image by its store name, without a build.
    let listed = ok(kiln(d, &["image", "ls"]));
    let store_name = listed
        .lines()
        .find_map(|l| l.split('\t').next().filter(|n| n.starts_with("kiln/app:")))
        .unwrap_or_else(|| panic!("no kiln/app in {listed}"))
        .to_owned();
    let again = kiln(
        d,
        &[
            "upload",
            &store_name,
            "--registry",
            &gate,
            "--temporary-tag",
            "change_13_1",
            "--json",
        ],
    );
    assert!(!stderr_of(&again).contains("building"), "{}", stderr_of(&again));
    let again = json(again);
    assert_eq!(again["digest"], digest);
    assert_eq!(again["pinned"], format!("{gate}/app:change_13_1@{digest}"));
    assert_eq!(again["blobs"]["exists"], 3, "{again}");

    let promoted = json(kiln(d, &["promote", reference, "1.0", "--json"]));
    assert_eq!(promoted["digest"], digest);
    assert_eq!(promoted["deleted"], "change_12_1");

    // A registry is needed for an in-tree image; the temporary tag must be a tag.
    let out = kiln(d, &["upload", "app", "--temporary-tag", "change_1_1"]);
    assert!(stderr_of(&out).contains("--registry"), "{}", stderr_of(&out));
    let out = kiln(
        d,
        &["upload", "app", "--registry", &gate, "--temporary-tag", "bad/tag"],
    );
    assert!(stderr_of(&out).contains("invalid tag"), "{}", stderr_of(&out));
}

#[test]
fn publish_pushes_the_version_moves_latest_records_hash_and_refuses_an_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = serve(&tmp.path().join("reg"));
    let Some(dir) = tree(&registry.addr) else { return };
    let d = dir.path();
    let repo = format!("{}/pub/tool", registry.addr);
    let digest_of = |tag: &str| {
        json(kiln(
            d,
            &["pull", &format!("{repo}:{tag}"), "--name", "check:1", "--json"],
        ))["digest"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    let out = ok(kiln(
        d,
        &[
            "publish",
            "tool",
            "--tag",
            "main",
            "--tag",
            "2026-11-23",
            "--digest-file",
            "digest.txt",
        ],
    ));
    let (reference, digest) = out.trim().split_once('@').unwrap();
    assert_eq!(reference, format!("{repo}:1.0"));
    assert!(digest.starts_with("sha256:"), "{out}");
    assert_eq!(
        fs_err::read_to_string(d.join("images/tool/HASH")).unwrap(),
        format!("{digest}\n")
    );
    assert_eq!(
        fs_err::read_to_string(d.join("digest.txt")).unwrap(),
        format!("{digest}\n")
    );
    // As a checkout has them: HASH's mode is part of a taskgraph context hash.
    for file in ["images/tool/HASH", "digest.txt"] {
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs_err::metadata(d.join(file)).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o644, "{file}");
    }
    for tag in ["1.0", "latest", "main", "2026-11-23"] {
        assert_eq!(digest_of(tag), digest, "{tag}");
    }

    // Again with nothing changed but HASH: the same digest, accepted.
    let again = json(kiln(d, &["publish", "tool", "--json"]));
    assert_eq!(again["digest"], digest);
    assert_eq!(again["pinned"], format!("{repo}:1.0@{digest}"));

    // The image changes, VERSION does not: refused, naming both digests, nothing changed.
    fs_err::write(d.join("images/tool/hello"), "tool 2\n").unwrap();
    let out = kiln(d, &["publish", "tool", "--tag", "main"]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains(digest) && err.contains("never overwritten"), "{err}");
    let other = err
        .split("is now ")
        .nth(1)
        .and_then(|rest| rest.split(':').nth(1))
        .map(|hex| &hex[..64])
        .unwrap_or_else(|| panic!("no second digest in {err}"));
    assert_ne!(format!("sha256:{other}"), digest);
    assert_eq!(
        fs_err::read_to_string(d.join("images/tool/HASH")).unwrap(),
        format!("{digest}\n")
    );
    for tag in ["1.0", "latest", "main"] {
        assert_eq!(digest_of(tag), digest, "{tag}");
    }

    // A new VERSION publishes the new image and moves latest.
    fs_err::write(d.join("images/tool/VERSION"), "1.1\n").unwrap();
    let out = ok(kiln(d, &["publish", "tool"]));
    let (reference, new_digest) = out.trim().split_once('@').unwrap();
    assert_eq!(reference, format!("{repo}:1.1"));
    assert_ne!(new_digest, digest);
    assert_eq!(digest_of("latest"), new_digest);
    assert_eq!(digest_of("1.0"), digest);

    // An in-tree image is not a registry image.
    let out = kiln(d, &["publish", "app"]);
    assert!(
        stderr_of(&out).contains("not a registry image"),
        "{}",
        stderr_of(&out)
    );
}
