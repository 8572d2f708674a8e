//! The real skopeo (Debian's 1.9) pushes to, pulls from, inspects, lists and deletes on kiln's registry.

use std::path::Path;
use std::process::Command;

use kiln_test_support::require_tool;

use crate::support::{Server, sha256};

fn write_blob(layout: &Path, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::write(layout.join("blobs/sha256").join(hex), bytes).unwrap();
    digest
}

/// Writes an OCI image layout with one image tagged `v1`: a real tar layer made by `tar`, a config naming
/// its diff_id, a manifest. Returns the manifest digest.
pub fn make_layout(work: &Path) -> String {
    let layout = work.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/hello"), "hello from kiln\n").unwrap();
    let tar = work.join("layer.tar");
    let status = Command::new("tar")
        .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&rootfs)
        .arg("etc")
        .status()
        .unwrap();
    assert!(status.success());
    let layer = std::fs::read(&tar).unwrap();
    let layer_digest = write_blob(&layout, &layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = write_blob(&layout, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    let manifest_digest = write_blob(&layout, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                       "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    manifest_digest
}

pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn skopeo_fails(args: &[&str]) -> bool {
    !Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_in_and_out_inspects_lists_and_deletes() {
    if !require_tool("skopeo") {
        return;
    }
    let server = Server::start().await;
    let host = server.addr.to_string();
    let root = server.root.clone();
    tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        let digest = make_layout(work.path());
        let src = format!("oci:{}:v1", work.path().join("layout").display());
        let dest = format!("docker://{host}/kiln/test:v1");

        skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &src,
            &dest,
        ]);

        let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &dest]);
        assert_eq!(sha256(raw.as_bytes()), digest, "manifest stored byte-exact");
        let info: serde_json::Value =
            serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &dest])).unwrap();
        assert_eq!(info["Digest"], digest);
        assert_eq!(info["Os"], "linux");

        // Copy back out and compare digests.
        let out = work.path().join("out");
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            &dest,
            &format!("oci:{}:v1", out.display()),
        ]);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], digest);
        for entry in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
            let path = entry.unwrap().path();
            let hex = path.file_name().unwrap().to_str().unwrap().to_owned();
            assert_eq!(sha256(&std::fs::read(&path).unwrap()), format!("sha256:{hex}"));
            assert!(
                work.path().join("layout/blobs/sha256").join(&hex).is_file(),
                "{hex} came from the source"
            );
        }

        // Registry to registry (another repository: blobs mount or re-upload, stored once).
        let other = format!("docker://{host}/kiln/other:v2");
        skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &dest,
            &other,
        ]);
        assert_eq!(
            skopeo(&["inspect", "--tls-verify=false", "--format", "{{.Digest}}", &other]).trim(),
            digest
        );
        assert_eq!(
            std::fs::read_dir(root.join("blobs/sha256")).unwrap().count(),
            3,
            "deduplicated blobs"
        );

        let tags: serde_json::Value = serde_json::from_str(&skopeo(&[
            "list-tags",
            "--tls-verify=false",
            &format!("docker://{host}/kiln/test"),
        ]))
        .unwrap();
        assert_eq!(tags["Tags"], serde_json::json!(["v1"]));

        skopeo(&["delete", "--tls-verify=false", &dest]);
        assert!(skopeo_fails(&["inspect", "--tls-verify=false", "--raw", &dest]));
        // The other repository is untouched.
        skopeo(&["inspect", "--tls-verify=false", "--raw", &other]);
    })
    .await
    .unwrap();
}
