//! `kiln push|pull|copy|tag|promote|untag` against `kiln serve` (the binary) and read back by skopeo and
//! podman: what kiln pushes is what the peers pull, digests included.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use kiln_test_support::{busybox_root, ok, podman_env, require_tool, run};

/// `kiln serve` on a free loopback port until dropped.
struct Serve {
    addr: String,
    child: Child,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(root: &Path) -> Serve {
    let mut child = Command::cargo_bin("kiln")
        .unwrap()
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Serve { addr, child }
}

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("kiln")
        .unwrap()
        .arg("--store")
        .arg(dir.join("store"))
        .args(args)
        .current_dir(dir)
        .env("CI", "1")
        .env("HOME", dir)
        .output()
        .unwrap()
}

fn json(out: Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// A temp dir whose store holds the busybox base as `bb:1`, exported as the docker-archive `bb.tar`.
fn base() -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    let root = busybox_root(dir.path())?;
    ok(kiln(
        dir.path(),
        &["image", "import", root.to_str().unwrap(), "-t", "bb:1"],
    ));
    ok(kiln(dir.path(), &["image", "export", "bb:1", "-o", "bb.tar"]));
    Some(dir)
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
fn podman_pulls_what_kiln_pushed() {
    if !require_tool("podman") {
        return;
    }
    let Some(dir) = base() else { return };
    let d = dir.path();
    let registry = serve(&d.join("reg"));
    let reference = format!("{}/pod/bb:1", registry.addr);
    let pushed = json(kiln(d, &["push", "bb:1", &reference, "--json"]));
    let mut pull = Command::new("podman");
    pull.args(["pull", "--tls-verify=false", &reference]);
    podman_env(d, &mut pull);
    run(&mut pull);
    let mut inspect = Command::new("podman");
    inspect.args(["image", "inspect", "--format", "{{.Digest}}", &reference]);
    podman_env(d, &mut inspect);
    assert_eq!(run(&mut inspect).trim(), pushed["digest"].as_str().unwrap());
    let mut cleanup = Command::new("podman");
    cleanup.args(["system", "reset", "--force"]);
    podman_env(d, &mut cleanup);
    let _ = cleanup.output();
}
