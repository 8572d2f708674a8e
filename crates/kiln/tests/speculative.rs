//! Speculative images end to end (docs/speculative-images.md): `kiln speculative push|pull` to and from an
//! intermediate registry (kiln's own and Debian's `docker-registry`), a buildset registry
//! (`kiln serve --upstream … --mirror …`) serving images that exist only upstream to skopeo and podman,
//! the client configuration it prints, a tampered upstream blob refused and not cached (also to a Range
//! request), and cached images served with the upstream stopped.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use kiln_test_support::{Podman, Server, ok, raw_get, require_tool, run, start_docker_registry};
use support::{busybox_store as base, json, kiln, kiln_serve};

/// Pushes `bb:1` to `reference`; returns the manifest digest.
fn push(d: &Path, reference: &str) -> String {
    let out = json(kiln(d, &["push", "bb:1", reference, "--json"]));
    out["digest"].as_str().unwrap().to_owned()
}

/// The manifest digest skopeo sees at `reference` (`docker://` added).
fn skopeo_digest(reference: &str) -> String {
    let out =
        run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &format!("docker://{reference}")]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["Digest"].as_str().unwrap().to_owned()
}

/// skopeo copies `reference` whole (every blob) into an OCI layout under `dir`.
fn skopeo_pull(reference: &str, dir: &Path) -> Output {
    Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--preserve-digests"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:x", dir.display()))
        .output()
        .unwrap()
}

/// The whole speculative round: a build pushes `org/app:1.0` to its buildset registry and moves it to
/// the intermediate registry as `org/app:b42_1.0`; the next pipeline's buildset registry serves it as
/// `org/app:1.0` to skopeo and podman, and again from its cache once the intermediate registry is gone.
fn speculative_round(d: &Path, intermediate: Server) {
    let first = kiln_serve(&d.join("buildset-1"), &[]);
    let digest = push(d, &format!("{}/org/app:1.0", first.addr));
    let moved = ok(kiln(
        d,
        &[
            "speculative",
            "push",
            "--build",
            "b42",
            "--buildset",
            &first.addr,
            "--intermediate",
            &intermediate.addr,
            "org/app:1.0",
            "--json",
        ],
    ));
    let moved: serde_json::Value = serde_json::from_str(&moved).unwrap();
    assert_eq!(moved[0]["digest"], digest.as_str(), "{moved}");
    assert_eq!(
        skopeo_digest(&format!("{}/org/app:b42_1.0", intermediate.addr)),
        digest
    );

    // `kiln speculative pull` into a fresh buildset registry keeps the digest.
    let second = kiln_serve(&d.join("buildset-2"), &[]);
    ok(kiln(
        d,
        &[
            "speculative",
            "pull",
            "--build",
            "b42",
            "--buildset",
            &second.addr,
            "--intermediate",
            &intermediate.addr,
            "org/app:1.0",
        ],
    ));
    assert_eq!(skopeo_digest(&format!("{}/org/app:1.0", second.addr)), digest);

    // A buildset registry pulling through: b41 has no such image, b42 has.
    let upstream = format!("http://{}", intermediate.addr);
    let buildset = kiln_serve(
        &d.join("buildset-3"),
        &[
            "--upstream",
            &upstream,
            "--speculative-build",
            "b41",
            "--speculative-build",
            "b42",
        ],
    );
    let reference = format!("{}/org/app:1.0", buildset.addr);
    assert_eq!(skopeo_digest(&reference), digest);
    ok(skopeo_pull(&reference, &d.join("layout-1")));
    if require_tool("podman") {
        let podman = Podman::new(d);
        podman.run(&["pull", "--tls-verify=false", &reference]);
        let seen = podman.run(&["image", "inspect", "--format", "{{.Digest}}", &reference]);
        assert_eq!(seen.trim(), digest);
    }
    // Unknown anywhere: 404 (skopeo fails), not a hang or a 5xx loop.
    let missing = skopeo_pull(&format!("{}/org/none:1.0", buildset.addr), &d.join("none"));
    assert!(!missing.status.success());

    // The intermediate registry is gone: the cache answers (manifest by tag and every blob).
    intermediate.stop();
    ok(skopeo_pull(&reference, &d.join("layout-2")));
    assert_eq!(skopeo_digest(&reference), digest);
}

#[test]
fn buildset_registry_serves_speculative_images_from_a_kiln_intermediate_registry() {
    if !require_tool("skopeo") {
        return;
    }
    let Some(dir) = base() else { return };
    let intermediate = kiln_serve(&dir.path().join("intermediate"), &[]);
    speculative_round(dir.path(), intermediate);
}

#[test]
fn buildset_registry_serves_speculative_images_from_docker_registry() {
    if !require_tool("skopeo") {
        return;
    }
    let Some(dir) = base() else { return };
    let Some(intermediate) = start_docker_registry(&dir.path().join("distribution")) else {
        return;
    };
    speculative_round(dir.path(), intermediate);
}

#[test]
fn buildset_registry_mirrors_registry_hosts_for_podman_with_the_printed_config() {
    if !require_tool("skopeo") || !require_tool("podman") {
        return;
    }
    let Some(dir) = base() else { return };
    let d = dir.path();
    // The "real" registries of quay.io and docker.io, played by kiln serve.
    let quay = kiln_serve(&d.join("quay"), &[]);
    let hub = kiln_serve(&d.join("hub"), &[]);
    let tool = push(d, &format!("{}/org/tool:2", quay.addr));
    let bb = push(d, &format!("{}/library/bb:1", hub.addr));
    let buildset = kiln_serve(
        &d.join("buildset"),
        &[
            "--mirror",
            &format!("quay.io=http://{}", quay.addr),
            "--mirror",
            &format!("docker.io=http://{}", hub.addr),
        ],
    );

    // skopeo straight at the buildset registry, with the names it keeps mirrored images under.
    assert_eq!(
        skopeo_digest(&format!("{}/quay.io/org/tool:2", buildset.addr)),
        tool
    );
    assert_eq!(skopeo_digest(&format!("{}/library/bb:1", buildset.addr)), bb);

    // podman pulls quay.io/… and docker.io/… through the registries.conf kiln prints.
    let conf = ok(kiln(
        d,
        &[
            "serve",
            "--print-client-config",
            "podman",
            "--listen",
            &buildset.addr,
            "--mirror",
            "quay.io",
        ],
    ));
    let conf_path = d.join("registries.conf");
    fs_err::write(&conf_path, conf).unwrap();
    let podman = Podman::new(d);
    let mirrored = |args: &[&str]| run(podman.command(args).env("CONTAINERS_REGISTRIES_CONF", &conf_path));
    mirrored(&["pull", "quay.io/org/tool:2"]);
    mirrored(&["pull", "docker.io/library/bb:1"]);
    let seen = mirrored(&[
        "image",
        "inspect",
        "--format",
        "{{.Digest}}",
        "quay.io/org/tool:2",
    ]);
    assert_eq!(seen.trim(), tool);
    drop(podman);

    // Upstreams gone: served from the cache.
    quay.stop();
    hub.stop();
    ok(skopeo_pull(
        &format!("{}/quay.io/org/tool:2", buildset.addr),
        &d.join("cached"),
    ));
}

#[test]
fn a_tampered_upstream_blob_is_refused_and_not_cached() {
    if !require_tool("skopeo") {
        return;
    }
    let Some(dir) = base() else { return };
    let d = dir.path();
    let Some(upstream) = start_docker_registry(&d.join("distribution")) else {
        return;
    };
    push(d, &format!("{}/org/app:1", upstream.addr));
    // Flip one byte of the largest blob (the layer) in distribution's storage: same size, wrong digest.
    let blobs = d.join("distribution/data/docker/registry/v2/blobs/sha256");
    let mut layer: Option<(u64, std::path::PathBuf)> = None;
    for prefix in fs_err::read_dir(&blobs).unwrap() {
        for blob in fs_err::read_dir(prefix.unwrap().path()).unwrap() {
            let data = blob.unwrap().path().join("data");
            let size = fs_err::metadata(&data).unwrap().len();
            if layer.as_ref().is_none_or(|(s, _)| size > *s) {
                layer = Some((size, data));
            }
        }
    }
    let (_, data) = layer.unwrap();
    let hex = data
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut bytes = fs_err::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs_err::write(&data, bytes).unwrap();

    let root = d.join("buildset");
    let buildset = kiln_serve(&root, &["--mirror", &format!("quay.io=http://{}", upstream.addr)]);
    let reference = format!("{}/quay.io/org/app:1", buildset.addr);
    for attempt in ["first", "second"] {
        let out = skopeo_pull(&reference, &d.join(format!("layout-{attempt}")));
        assert!(
            !out.status.success(),
            "{attempt} pull of a tampered blob succeeded"
        );
        assert!(
            !root.join("blobs/sha256").join(&hex).exists(),
            "the tampered blob was kept"
        );
        assert!(
            !root
                .join("repositories/quay.io/org/app/_layers/sha256")
                .join(&hex)
                .exists()
        );
    }
    // A Range of the tampered blob (bytes far from the flipped one) is cut short too: its last byte
    // waits for the digest check.
    let (head, body) = raw_get(
        &buildset.addr,
        &format!("/v2/quay.io/org/app/blobs/sha256:{hex}"),
        &["Range: bytes=0-9"],
    );
    assert!(
        head.is_empty() || head.starts_with("HTTP/1.1 206") && body.len() < 10,
        "a Range of a tampered blob was answered whole: {head}"
    );
    assert!(!root.join("blobs/sha256").join(&hex).exists());
}

#[test]
fn print_client_config_for_every_client() {
    let dir = tempfile::tempdir().unwrap();
    let print = |client: &str| {
        ok(kiln(
            dir.path(),
            &[
                "serve",
                "--print-client-config",
                client,
                "--listen",
                "127.0.0.1:5000",
                "--mirror",
                "quay.io",
            ],
        ))
    };
    let docker: serde_json::Value = serde_json::from_str(&print("docker")).unwrap();
    assert_eq!(docker["registry-mirrors"][0], "http://127.0.0.1:5000");
    assert!(print("podman").contains("location = \"127.0.0.1:5000/quay.io\""));
    assert!(print("containerd").contains("[host.\"http://127.0.0.1:5000/v2/quay.io\"]"));
    assert!(print("buildkit").contains("mirrors = [\"127.0.0.1:5000/quay.io\"]"));
    let help = ok(kiln(dir.path(), &["serve", "--help"]));
    for option in [
        "--upstream",
        "--speculative-build",
        "--mirror",
        "--print-client-config",
        "registries.conf",
        "hosts.toml",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}
