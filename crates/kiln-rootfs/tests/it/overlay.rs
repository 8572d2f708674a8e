//! OverlayMount on the real kernel: scratch, 200 long lowers, and unpacked layers end to end
//! (merged view, capture of the upper, and umoci applying the same layers to the same tree).

use std::path::{Path, PathBuf};

use kiln_rootfs::{CaptureOptions, OverlayMount, UnpackLimits, capture_layer, unpack_layer};

use crate::support::{Raw, RawTar, tar_names};

/// upper, work and merged directories under `dir`.
fn scaffold(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let [upper, work, merged] = ["upper", "work", "merged"].map(|n| dir.join(n));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    (upper, work, merged)
}

fn is_mounted(path: &Path) -> bool {
    let canonical = path.canonicalize().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(canonical.to_str().unwrap()))
}

#[test]
fn scratch_mount_has_an_empty_root_and_writes_go_to_upper() {
    if !kiln_test_support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (upper, work, merged) = scaffold(dir.path());
    let mount = OverlayMount::mount(&[], &upper, &work, &merged).unwrap();
    assert_eq!(mount.merged(), merged);
    assert!(is_mounted(&merged));
    assert_eq!(std::fs::read_dir(&merged).unwrap().count(), 0);
    std::fs::write(merged.join("hello"), b"world").unwrap();
    mount.unmount().unwrap();
    assert!(!is_mounted(&merged));
    assert_eq!(std::fs::read(upper.join("hello")).unwrap(), b"world");
}

#[test]
fn drop_unmounts() {
    if !kiln_test_support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (upper, work, merged) = scaffold(dir.path());
    let mount = OverlayMount::mount(&[], &upper, &work, &merged).unwrap();
    // Busy: a file held open makes the plain unmount fail; drop detaches.
    let held = std::fs::File::create(merged.join("held")).unwrap();
    drop(mount);
    assert!(!is_mounted(&merged));
    drop(held);
}

#[test]
fn two_hundred_lowers_with_long_paths() {
    if !kiln_test_support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("l".repeat(120)).join("m".repeat(120));
    let mut lowers = Vec::new();
    for i in 0..200 {
        let lower = base.join(format!("layer-{i:03}-{}", "x".repeat(60)));
        std::fs::create_dir_all(&lower).unwrap();
        std::fs::write(lower.join(format!("f{i:03}")), i.to_string()).unwrap();
        std::fs::write(lower.join("common"), i.to_string()).unwrap();
        lowers.push(lower);
    }
    let total: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(
        total > 4 * 4096,
        "the lower paths ({total} bytes) must exceed a page"
    );
    // Top-most first: layer 199 is the top.
    lowers.reverse();
    let (upper, work, merged) = scaffold(dir.path());
    let mount = OverlayMount::mount(&lowers, &upper, &work, &merged).unwrap();
    assert_eq!(std::fs::read_dir(&merged).unwrap().count(), 201);
    assert_eq!(std::fs::read_to_string(merged.join("common")).unwrap(), "199");
    assert_eq!(std::fs::read_to_string(merged.join("f000")).unwrap(), "0");
    mount.unmount().unwrap();
}

#[test]
fn a_refused_mount_names_the_step() {
    if !kiln_test_support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (upper, work, merged) = scaffold(dir.path());
    let missing = dir.path().join("no-such-lower");
    let err = OverlayMount::mount(std::slice::from_ref(&missing), &upper, &work, &merged).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("lowerdir+") && message.contains("no-such-lower"),
        "{message}"
    );
}

/// Writes an OCI image layout at `dir` (tag `test`) whose layers are the uncompressed `layers`.
fn oci_layout(dir: &Path, layers: &[Vec<u8>]) {
    use sha2::Digest;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let descriptors: Vec<_> = layers.iter().map(|l| put(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": descriptors.iter().map(|d| d.0.clone()).collect::<Vec<_>>()},
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": descriptors.iter().map(|(digest, size)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size,
        })).collect::<Vec<_>>(),
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "test"},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// The tree's entries without directory mtimes (appliers touch a directory while filling it).
fn comparable(root: &Path) -> Vec<(String, crate::support::Node)> {
    let (nodes, _) = crate::support::list_tree(root);
    nodes
        .into_iter()
        .map(|(path, mut node)| {
            if node.kind == "dir" {
                node.mtime = 0;
            }
            (path, node)
        })
        .collect()
}

#[test]
fn unpacked_layers_mounted_changed_and_captured_match_umoci() {
    if !kiln_test_support::require_root() || !kiln_test_support::require_tool("umoci") {
        return;
    }
    let layers = [
        RawTar::new()
            .push(Raw::dir("a/"))
            .push(Raw::file("a/keep", b"keep"))
            .push(Raw::file("a/gone", b"gone"))
            .push(Raw::dir("b/"))
            .push(Raw::file("b/x", b"x"))
            .push(Raw::file("b/y", b"y"))
            .push(Raw::dir("c/"))
            .push(Raw::file("c/z", b"z"))
            .push(Raw::file("c/sub/deep", b"deep"))
            .finish(),
        RawTar::new()
            .push(Raw::dir("a/"))
            .push(Raw::file("a/.wh.gone", b""))
            .push(Raw::dir("b/"))
            .push(Raw::file("b/new", b"new"))
            .finish(),
        RawTar::new()
            .push(Raw::dir("b/"))
            .push(Raw::file("b/.wh..wh..opq", b""))
            .push(Raw::file("b/only", b"only"))
            .finish(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut lowers = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let dest = dir.path().join(format!("layer{i}"));
        unpack_layer(&layer[..], &dest, &UnpackLimits::default()).unwrap();
        lowers.insert(0, dest);
    }
    let (upper, work, merged) = scaffold(dir.path());
    let mount = OverlayMount::mount(&lowers, &upper, &work, &merged).unwrap();
    let names = |rel: &str| {
        let mut v: Vec<String> = std::fs::read_dir(merged.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("a"), ["keep"]);
    assert_eq!(names("b"), ["only"]);
    assert_eq!(names("c"), ["sub", "z"]);

    // A RUN step's changes.
    std::fs::write(merged.join("c/new"), b"new").unwrap();
    std::fs::remove_file(merged.join("a/keep")).unwrap();
    std::fs::rename(merged.join("c/z"), merged.join("c/z2")).unwrap();
    std::fs::remove_dir_all(merged.join("c/sub")).unwrap();
    std::fs::remove_dir_all(merged.join("b")).unwrap();
    std::fs::create_dir(merged.join("b")).unwrap();
    std::fs::write(merged.join("b/fresh"), b"fresh").unwrap();
    // COPY-style writes through a Root on the merged directory.
    let root = kiln_rootfs::Root::open(&merged).unwrap();
    root.mkdir_all(Path::new("/d"), 0o755, 0, 0).unwrap();
    let mut file = root.create_file(Path::new("/../d/e"), 0o644, 0, 0).unwrap();
    std::io::Write::write_all(&mut file, b"e").unwrap();
    drop(file);
    drop(root);
    // With redirect_dir=off a lower directory cannot be renamed in place (tools copy instead).
    let err = std::fs::rename(merged.join("c"), merged.join("c-renamed")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(18), "EXDEV expected, got {err}");
    let expected = comparable(&merged);
    mount.unmount().unwrap();

    let mut captured = Vec::new();
    capture_layer(&upper, &mut captured, &CaptureOptions::default()).unwrap();
    let entries: Vec<String> = tar_names(&captured).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        entries,
        [
            // Whiteouts sort by the name they hide (`new` < `sub` < `z`), as docker's overlay2 writes them.
            "a/",
            "a/.wh.keep",
            "b/",
            "b/.wh..wh..opq",
            "b/fresh",
            "c/",
            "c/new",
            "c/.wh.sub",
            "c/.wh.z",
            "c/z2",
            "d/",
            "d/e"
        ]
    );

    // The captured layer, unpacked as a new top lower, shows the same tree again.
    let top = dir.path().join("layer3");
    unpack_layer(&captured[..], &top, &UnpackLimits::default()).unwrap();
    lowers.insert(0, top);
    let again = dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let (upper2, work2, merged2) = scaffold(&again);
    let mount = OverlayMount::mount(&lowers, &upper2, &work2, &merged2).unwrap();
    assert_eq!(comparable(&merged2), expected);
    mount.unmount().unwrap();

    // umoci applies the same four layers to the same tree.
    let layout = dir.path().join("oci");
    let mut all: Vec<Vec<u8>> = layers.to_vec();
    all.push(captured);
    oci_layout(&layout, &all);
    let bundle = dir.path().join("bundle");
    let output = std::process::Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:test", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(comparable(&bundle.join("rootfs")), expected);
}
