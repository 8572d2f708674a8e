//! `kiln image import|ls|inspect|export|rm` and `kiln gc`, proven with real tools: a busybox-static base
//! image goes through kiln and is read back by podman, skopeo and umoci; round trips keep digests;
//! hostile archives are refused with clear errors and leave no ref behind.
//!
//! Tests that need a tool that is not installed print a skip message, or fail when
//! `KILN_REQUIRE_PEERS=1`.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use kiln_test_support::{Podman, ok, require_tool, run};

fn kiln(store: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("kiln")
        .unwrap()
        .arg("--store")
        .arg(store)
        .args(args)
        .current_dir(store.parent().unwrap())
        .output()
        .unwrap()
}

fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// The busybox root filesystem of docs/peers.md.
fn busybox_root(dir: &Path) -> Option<PathBuf> {
    if !Path::new("/bin/busybox").is_file() {
        require_tool("busybox-static's /bin/busybox");
        return None;
    }
    let root = dir.join("root");
    for d in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        fs_err::create_dir_all(root.join(d)).unwrap();
    }
    fs_err::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = run(Command::new("/bin/busybox").arg("--list"));
    for applet in list.lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs_err::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs_err::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    fs_err::write(root.join("etc/kiln-marker"), "made by kiln's test\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    Some(root)
}

fn inspect(store: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&ok(kiln(store, &["image", "inspect", name]))).unwrap()
}

fn names(store: &Path) -> Vec<String> {
    let list: serde_json::Value = serde_json::from_str(&ok(kiln(store, &["image", "ls", "--json"]))).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A temp folder with a store inside and the busybox base imported as `localhost/bb:1`.
fn base() -> Option<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir().unwrap();
    let root = busybox_root(dir.path())?;
    let store = dir.path().join("store");
    let out = ok(kiln(
        &store,
        &["image", "import", root.to_str().unwrap(), "-t", "localhost/bb:1"],
    ));
    assert!(out.starts_with("localhost/bb:1\tsha256:"), "{out}");
    assert!(out.contains("rootfs-dir"), "{out}");
    Some((dir, store))
}

#[test]
fn rootfs_round_trips_through_every_format_keep_digests() {
    let Some((dir, store)) = base() else { return };
    let d = dir.path();
    let original = inspect(&store, "localhost/bb:1");
    let manifest_digest = original["digest"].as_str().unwrap().to_owned();
    let config_digest = original["manifest"]["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        original["config"]["rootfs"]["diff_ids"].as_array().unwrap().len(),
        1
    );

    // Importing the same folder again is reproducible.
    let again = d.join("again");
    ok(kiln(
        &again,
        &["image", "import", d.join("root").to_str().unwrap(), "-t", "x"],
    ));
    assert_eq!(inspect(&again, "x")["digest"], manifest_digest);

    for (file, keeps_manifest) in [
        ("bb.tar", false),
        ("bb.tar.zst", false),
        ("bb.oci.tar", true),
        ("bb-layout", true),
    ] {
        ok(kiln(&store, &["image", "export", "localhost/bb:1", "-o", file]));
        let other = d.join(format!("store-{file}"));
        let out = ok(kiln(&other, &["image", "import", d.join(file).to_str().unwrap()]));
        assert!(out.starts_with("localhost/bb:1\t"), "{file}: {out}");
        let back = inspect(&other, "localhost/bb:1");
        assert_eq!(
            back["manifest"]["config"]["digest"],
            config_digest.as_str(),
            "{file}"
        );
        assert_eq!(back["config"], original["config"], "{file}");
        if keeps_manifest {
            assert_eq!(back["digest"], manifest_digest.as_str(), "{file}");
        }
    }
    // The docker-archive compressed as a whole is the same archive.
    let plain = fs_err::read(d.join("bb.tar")).unwrap();
    let unzstd = zstd::decode_all(fs_err::File::open(d.join("bb.tar.zst")).unwrap()).unwrap();
    assert_eq!(plain, unzstd);

    // ls, rm, gc.
    assert_eq!(names(&store), ["localhost/bb:1"]);
    let gc = ok(kiln(&store, &["gc"]));
    assert!(gc.starts_with("removed 0 blobs"), "{gc}");
    ok(kiln(&store, &["image", "rm", "localhost/bb:1"]));
    assert!(names(&store).is_empty());
    let err = fails(kiln(&store, &["image", "rm", "localhost/bb:1"]));
    assert!(err.contains("no image named localhost/bb:1"), "{err}");
    let gc: serde_json::Value = serde_json::from_str(&ok(kiln(&store, &["gc", "--json"]))).unwrap();
    assert_eq!(gc["removed"].as_array().unwrap().len(), 3, "{gc}");
    assert_eq!(fs_err::read_dir(store.join("blobs/sha256")).unwrap().count(), 0);
}

#[test]
fn root_filesystem_tar_in_any_compression_is_a_single_layer_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "etc/hello", &b"hello\n"[..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let mut digests = Vec::new();
    // Detected by magic bytes, whatever the file is called.
    for (file, bytes) in [("a.tar", &tar), ("b.data", &zst), ("c.tar", &gz)] {
        fs_err::write(dir.path().join(file), bytes).unwrap();
        let name = format!("r:{}", &file[..1]);
        let err = fails(kiln(&store, &["image", "import", file]));
        assert!(err.contains("give it a name"), "{err}");
        ok(kiln(&store, &["image", "import", file, "-t", &name]));
        digests.push(inspect(&store, &name)["config"]["rootfs"]["diff_ids"][0].clone());
    }
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    let expected = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&tar))
    );
    assert_eq!(digests[0], expected.as_str());
}

#[test]
fn podman_loads_and_runs_the_exported_image_tar_zst() {
    if !require_tool("podman") || !require_tool("runc") {
        return;
    }
    let Some((dir, store)) = base() else { return };
    let d = dir.path();
    ok(kiln(
        &store,
        &["image", "export", "localhost/bb:1", "-o", "image.tar.zst"],
    ));
    let original = inspect(&store, "localhost/bb:1");
    let config_digest = original["manifest"]["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let podman = Podman::new(d);
    let loaded = podman.run(&["load", "-i", d.join("image.tar.zst").to_str().unwrap()]);
    assert!(loaded.contains("localhost/bb:1"), "{loaded}");
    let id = podman.run(&["image", "inspect", "--format", "{{.Id}}", "localhost/bb:1"]);
    assert_eq!(format!("sha256:{}", id.trim()), config_digest);
    let marker = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "localhost/bb:1",
        "cat",
        "/etc/kiln-marker",
    ]);
    assert_eq!(marker, "made by kiln's test\n");
    // What podman saves, kiln imports with the same image ID, in both of podman's formats.
    for (format, file) in [
        ("docker-archive", "podman.tar"),
        ("oci-archive", "podman.oci.tar"),
    ] {
        let saved = d.join(file);
        podman.run(&[
            "save",
            "--format",
            format,
            "-o",
            saved.to_str().unwrap(),
            "localhost/bb:1",
        ]);
        let other = d.join(format!("store-{format}"));
        let out = ok(kiln(
            &other,
            &["image", "import", d.join(file).to_str().unwrap(), "-t", "p:1"],
        ));
        assert!(out.contains(format), "{out}");
        let back = inspect(&other, "p:1");
        assert_eq!(back["config"]["rootfs"], original["config"]["rootfs"], "{format}");
        // podman's oci-archive rewrites the config as an OCI config: a new image ID, the same layers.
        if format == "docker-archive" {
            assert_eq!(back["manifest"]["config"]["digest"], config_digest.as_str());
        }
    }
}

#[test]
fn skopeo_reads_kiln_exports_and_kiln_reads_skopeo_outputs() {
    if !require_tool("skopeo") || !require_tool("zstd") {
        return;
    }
    let Some((dir, store)) = base() else { return };
    let d = dir.path();
    let original = inspect(&store, "localhost/bb:1");
    let config_digest = original["manifest"]["config"]["digest"].as_str().unwrap();
    let diff_id = original["config"]["rootfs"]["diff_ids"][0].as_str().unwrap();
    ok(kiln(
        &store,
        &["image", "export", "localhost/bb:1", "-o", "bb.tar.zst"],
    ));
    ok(kiln(
        &store,
        &["image", "export", "localhost/bb:1", "-o", "layout"],
    ));
    run(Command::new("zstd")
        .args(["-d", "-q"])
        .arg(d.join("bb.tar.zst"))
        .arg("-o")
        .arg(d.join("bb.tar")));

    let raw = |reference: String| -> serde_json::Value {
        serde_json::from_str(&run(
            Command::new("skopeo").args(["inspect", "--config", "--raw", &reference])
        ))
        .unwrap()
    };
    let from_archive = raw(format!("docker-archive:{}", d.join("bb.tar").display()));
    assert_eq!(from_archive["rootfs"]["diff_ids"][0], diff_id);
    let from_layout = raw(format!("oci:{}:1", d.join("layout").display()));
    assert_eq!(from_layout, original["config"]);
    let manifest: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci:{}:1", d.join("layout").display()),
    ])))
    .unwrap();
    assert_eq!(manifest, original["manifest"]);

    // The store itself is an OCI layout skopeo reads, full names included.
    let in_store: serde_json::Value = serde_json::from_str(&run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci:{}:localhost/bb:1", store.display()),
    ])))
    .unwrap();
    assert_eq!(in_store, original["manifest"]);

    // What skopeo writes, kiln reads: OCI layout → docker-archive, and the layout itself.
    let skopeo_archive = d.join("from-skopeo.tar");
    run(Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:1", d.join("layout").display()),
        &format!(
            "docker-archive:{}:localhost/from-skopeo:2",
            skopeo_archive.display()
        ),
    ]));
    let other = d.join("other");
    let out = ok(kiln(
        &other,
        &["image", "import", skopeo_archive.to_str().unwrap()],
    ));
    assert!(
        out.contains("localhost/from-skopeo:2\t") && out.contains("docker-archive"),
        "{out}"
    );
    let back = inspect(&other, "localhost/from-skopeo:2");
    assert_eq!(back["config"]["rootfs"]["diff_ids"][0], diff_id);
    assert_eq!(back["manifest"]["config"]["digest"], config_digest);
    let skopeo_layout = d.join("skopeo-layout");
    run(Command::new("skopeo").args([
        "copy",
        &format!("docker-archive:{}", skopeo_archive.display()),
        &format!("oci:{}:v3", skopeo_layout.display()),
    ]));
    let out = ok(kiln(
        &other,
        &[
            "image",
            "import",
            skopeo_layout.to_str().unwrap(),
            "-t",
            "localhost/l:3",
        ],
    ));
    assert!(out.contains("oci-layout"), "{out}");
    let via_layout = inspect(&other, "localhost/l:3");
    assert_eq!(via_layout["config"]["rootfs"]["diff_ids"][0], diff_id);
    // gzip-compressed docker-archive as a whole.
    let gz = d.join("from-skopeo.tar.gz");
    let mut enc =
        flate2::write::GzEncoder::new(fs_err::File::create(&gz).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut fs_err::File::open(&skopeo_archive).unwrap(), &mut enc).unwrap();
    enc.finish().unwrap();
    ok(kiln(
        &other,
        &["image", "import", gz.to_str().unwrap(), "-t", "localhost/gz:1"],
    ));
    assert_eq!(
        inspect(&other, "localhost/gz:1")["manifest"]["config"]["digest"],
        config_digest
    );
}

#[test]
fn umoci_unpacks_the_exported_layout() {
    if !require_tool("umoci") {
        return;
    }
    let Some((dir, store)) = base() else { return };
    let d = dir.path();
    ok(kiln(
        &store,
        &["image", "export", "localhost/bb:1", "-o", "layout"],
    ));
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", d.join("layout").display()))
        .arg(d.join("bundle")));
    let rootfs = d.join("bundle/rootfs");
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(
        fs_err::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs_err::read_to_string(rootfs.join("etc/kiln-marker")).unwrap(),
        "made by kiln's test\n"
    );
}

/// A tar from (name, kind, content); kind: 'f' file, 'l' symlink (content = target).
fn tar_of(entries: &[(&str, char, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, content) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        match kind {
            'l' => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, name, std::str::from_utf8(content).unwrap())
                    .unwrap();
            }
            _ => {
                header.set_size(content.len() as u64);
                // Names with `..` or a leading `/` must reach the archive unchanged: write the raw name.
                let raw = name.as_bytes();
                header.as_old_mut().name[..raw.len()].copy_from_slice(raw);
                header.set_cksum();
                builder.append(&header, *content).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// A valid one-layer docker-archive's parts: (config, layer).
fn docker_parts() -> (Vec<u8>, Vec<u8>) {
    let layer = tar_of(&[("hello", 'f', b"hi\n")]);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
        sha(&layer)
    );
    (config.into_bytes(), layer)
}

fn manifest_json(config: &str, layers: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!([{"Config": config, "RepoTags": ["evil:1"], "Layers": layers}]))
        .unwrap()
}

fn oci_index_naming(hex: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{hex}"), "size": 6,
        "annotations": {"org.opencontainers.image.ref.name": "evil"}}]}))
    .unwrap()
}

#[test]
fn hostile_archives_are_refused_and_leave_no_ref() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (config, layer) = docker_parts();
    let config_name = format!("{}.json", sha(&config));
    let good_manifest = manifest_json(&config_name, &["l.tar"]);
    let big = vec![b' '; 17 * 1024 * 1024];
    let wrong_config = br#"{"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
    let wrong_config_name = format!("{}.json", sha(wrong_config));
    let wrong_manifest = manifest_json(&wrong_config_name, &["l.tar"]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            tar_of(&[("../../etc/x", 'f', b"x"), ("manifest.json", 'f', &good_manifest)]),
            "has a `..` component",
        ),
        (
            "absolute",
            tar_of(&[("/manifest.json", 'f', &good_manifest)]),
            "has an absolute path",
        ),
        (
            "symlinked-manifest",
            tar_of(&[
                ("real.json", 'f', &good_manifest),
                ("manifest.json", 'l', b"real.json"),
            ]),
            "`manifest.json` is not a regular file",
        ),
        (
            "oversized-json",
            tar_of(&[("manifest.json", 'f', &big)]),
            "limit for JSON",
        ),
        (
            "config-digest-mismatch",
            tar_of(&[
                (&format!("{}.json", sha(b"other")), 'f', &config),
                ("l.tar", 'f', &layer),
                (
                    "manifest.json",
                    'f',
                    &manifest_json(&format!("{}.json", sha(b"other")), &["l.tar"]),
                ),
            ]),
            "its name says",
        ),
        (
            "diff-id-mismatch",
            tar_of(&[
                (&wrong_config_name, 'f', wrong_config),
                ("l.tar", 'f', &layer),
                ("manifest.json", 'f', &wrong_manifest),
            ]),
            "the image config says",
        ),
        (
            "layer-link-escapes",
            tar_of(&[
                (&config_name, 'f', &config),
                ("l.tar", 'l', b"../../../etc/passwd"),
                ("manifest.json", 'f', &good_manifest),
            ]),
            "links outside the archive",
        ),
        (
            "oci-missing-blob",
            tar_of(&[
                ("oci-layout", 'f', br#"{"imageLayoutVersion":"1.0.0"}"#),
                ("index.json", 'f', &oci_index_naming(&sha(b"absent"))),
            ]),
            "is missing",
        ),
        (
            "legacy-docker",
            tar_of(&[("repositories", 'f', b"{}"), ("abc/layer.tar", 'f', &layer)]),
            "without manifest.json",
        ),
        (
            "missing-layer",
            tar_of(&[
                (&config_name, 'f', &config),
                ("manifest.json", 'f', &good_manifest),
            ]),
            "is not in it",
        ),
        (
            "oci-blob-mismatch",
            tar_of(&[
                ("oci-layout", 'f', br#"{"imageLayoutVersion":"1.0.0"}"#),
                ("index.json", 'f', br#"{"schemaVersion":2,"manifests":[]}"#),
                (&format!("blobs/sha256/{}", sha(b"good")), 'f', b"evil"),
            ]),
            "its name says",
        ),
    ];
    for (name, bytes, expected) in &cases {
        let file = dir.path().join(format!("{name}.tar"));
        fs_err::write(&file, bytes).unwrap();
        let err = fails(kiln(&store, &["image", "import", file.to_str().unwrap()]));
        assert!(err.contains(expected), "{name}: expected `{expected}` in:\n{err}");
        assert!(
            err.contains(&format!("{name}.tar")),
            "{name}: error does not name the file:\n{err}"
        );
        assert!(names(&store).is_empty(), "{name} left a ref behind");
    }
    // A truncated archive (cut inside the layer) fails and names no image.
    let whole = tar_of(&[
        (&config_name, 'f', &config),
        ("l.tar", 'f', &layer),
        ("manifest.json", 'f', &good_manifest),
    ]);
    let truncated = dir.path().join("truncated.tar");
    fs_err::write(&truncated, &whole[..1536 + 1024]).unwrap();
    let err = fails(kiln(&store, &["image", "import", truncated.to_str().unwrap()]));
    assert!(err.contains("truncated.tar"), "{err}");
    assert!(names(&store).is_empty());
    // The good archive imports, keeping its config digest as the image ID.
    let good = dir.path().join("good.tar");
    fs_err::write(
        &good,
        tar_of(&[
            (&config_name, 'f', &config),
            ("l.tar", 'f', &layer),
            ("manifest.json", 'f', &good_manifest),
        ]),
    )
    .unwrap();
    ok(kiln(
        &store,
        &["image", "import", good.to_str().unwrap(), "--compression", "zstd"],
    ));
    let image = inspect(&store, "evil:1");
    assert_eq!(
        image["manifest"]["config"]["digest"],
        format!("sha256:{}", sha(&config))
    );
    assert_eq!(
        image["manifest"]["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // Nothing was ever extracted next to the archives.
    assert!(!dir.path().join("etc").exists());
}

#[test]
fn image_commands_need_no_repository_and_name_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    assert_eq!(ok(kiln(&store, &["image", "ls"])), "NAME\tDIGEST\tSIZE\n");
    let err = fails(kiln(&store, &["image", "inspect", "nope"]));
    assert!(
        err.contains("no image named `nope`") && err.contains(store.to_str().unwrap()),
        "{err}"
    );
    let err = fails(kiln(&store, &["image", "export", "nope", "-o", "x.zip"]));
    assert!(err.contains("unknown export format"), "{err}");
    // KILN_STORE selects the store too.
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["image", "ls", "--json"])
        .env("KILN_STORE", dir.path().join("env-store"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(ok(out).trim(), "[]");
    // Listing reads; it does not create a store.
    assert!(!dir.path().join("env-store").exists());
}

#[test]
fn reading_a_store_that_does_not_exist_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("never-made");
    assert_eq!(ok(kiln(&store, &["image", "ls", "--json"])).trim(), "[]");
    let err = fails(kiln(&store, &["image", "inspect", "app"]));
    assert!(
        err.contains("no image named `app`") && err.contains("never-made"),
        "{err}"
    );
    let err = fails(kiln(&store, &["image", "rm", "a", "b"]));
    assert!(err.contains("`a`, `b`"), "{err}");
    assert!(ok(kiln(&store, &["gc"])).contains("removed 0 blobs"));
    assert!(!store.exists(), "reading commands must not create the store");
}
