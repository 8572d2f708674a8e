//! unpack_layer: lowerdir form, duplicates, and hostile archives.

use std::path::Path;

use kiln_rootfs::{RootfsError, UnpackLimits, unpack_layer};

use crate::support::{Raw, RawTar, list_tree};

fn unpack(tar: &[u8], dest: &Path) -> Result<kiln_rootfs::UnpackStats, RootfsError> {
    unpack_layer(tar, dest, &UnpackLimits::default())
}

/// Nothing but `outside` (and whatever `keep` lists) may exist in `dir` after a refused unpack:
/// no `dest`, no temporary.
fn assert_untouched(dir: &Path, keep: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected, "leftovers in {}", dir.display());
}

/// A refused archive: the error names `entry`, `dest` is not created, nothing is left behind.
fn assert_refused(tar: &[u8], entry: &str, limits: &UnpackLimits) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("outside")).unwrap();
    let dest = dir.path().join("dest");
    let err = unpack_layer(tar, &dest, limits).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(entry),
        "error {message:?} does not name {entry:?}"
    );
    assert_untouched(dir.path(), &["outside"]);
    assert!(
        std::fs::read_dir(dir.path().join("outside"))
            .unwrap()
            .next()
            .is_none()
    );
    message
}

#[test]
fn whiteouts_become_devices_and_opaque_markers_xattrs() {
    if !kiln_test_support::require_root() {
        return;
    }
    let tar = RawTar::new()
        .push(Raw::dir("a/"))
        .push(Raw::file("a/.wh.gone", b""))
        .push(Raw::dir("b/"))
        .push(Raw::file("b/.wh..wh..opq", b""))
        .push(Raw::file("b/kept", b"k"))
        .push(Raw::file(".wh.top", b""))
        .finish();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("layer");
    let stats = unpack(&tar, &dest).unwrap();
    assert_eq!(stats.entries, 6);
    assert_eq!(stats.bytes, 1);
    let (tree, _) = list_tree(&dest);
    let keys: Vec<_> = tree.keys().map(String::as_str).collect();
    assert_eq!(keys, ["a", "a/gone", "b", "b/kept", "top"]);
    assert_eq!(tree["a/gone"].kind, "char");
    assert_eq!(tree["a/gone"].payload, "0:0");
    assert_eq!(tree["top"].payload, "0:0");
    assert_eq!(
        tree["b"].xattrs,
        [("trusted.overlay.opaque".to_string(), "[121]".to_string())]
    );
    assert!(tree["a"].xattrs.is_empty());
    // The dir mtimes were set after the whiteouts went in.
    assert_eq!(tree["a"].mtime, 1_600_000_000);
    assert_eq!(tree["b"].mtime, 1_600_000_000);
}

#[test]
fn metadata_pax_and_duplicates() {
    if !kiln_test_support::require_root() {
        return;
    }
    let long = format!("{}/{}", "d".repeat(150), "f".repeat(200));
    let tar = RawTar::new()
        .push(Raw {
            mode: 0o4755,
            uid: 1000,
            gid: 1001,
            ..Raw::file("bin/suid", b"#!")
        })
        .push(Raw {
            mode: 0o1777,
            ..Raw::dir("tmp/")
        })
        .pax(&[
            ("path", long.as_bytes()),
            ("mtime", b"1700000000.123456789"),
            ("uid", b"3000000"),
            ("SCHILY.xattr.user.k", b"v\x00w"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ])
        .push(Raw::file("ignored", b"long"))
        .push(Raw::file("dup", b"first"))
        .push(Raw::file("dup", b"second"))
        .push(Raw::file("was-dir/inner", b"x"))
        .push(Raw::file("was-dir", b"now a file"))
        .push(Raw::symlink("abs", "/etc/passwd"))
        .push(Raw::symlink("dangling", "../../nowhere"))
        .push(Raw::hardlink("bin/hard", "bin/suid"))
        .push(Raw::device("null", b'3', 1, 3))
        .push(Raw::device("fifo", b'6', 0, 0))
        .push(Raw::dir("/abs-dir/"))
        .finish();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("layer");
    unpack(&tar, &dest).unwrap();
    let (tree, links) = list_tree(&dest);
    assert_eq!(tree["bin/suid"].mode, 0o4755);
    assert_eq!((tree["bin/suid"].uid, tree["bin/suid"].gid), (1000, 1001));
    assert_eq!(tree["tmp"].mode, 0o1777);
    let long_node = &tree[&long];
    assert_eq!(long_node.uid, 3_000_000);
    assert_eq!(long_node.mtime, 1_700_000_000);
    assert_eq!(
        long_node.xattrs,
        [("user.k".to_string(), "[118, 0, 119]".to_string())]
    );
    let nsec = std::os::unix::fs::MetadataExt::mtime_nsec(&std::fs::metadata(dest.join(&long)).unwrap());
    assert_eq!(nsec, 123_456_789);
    assert_eq!(std::fs::read(dest.join("dup")).unwrap(), b"second");
    assert_eq!(std::fs::read(dest.join("was-dir")).unwrap(), b"now a file");
    assert_eq!(tree["abs"].payload, "/etc/passwd");
    assert_eq!(tree["dangling"].payload, "../../nowhere");
    assert_eq!(links, [vec!["bin/hard".to_string(), "bin/suid".to_string()]]);
    assert_eq!(tree["null"].payload, "1:3");
    assert_eq!(tree["fifo"].kind, "fifo");
    assert_eq!(tree["abs-dir"].kind, "dir");
    // Implicit parents are 0755 root-owned, the unpack root too.
    assert_eq!(tree["bin"].mode, 0o755);
    assert_eq!(
        std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    use std::os::unix::fs::PermissionsExt;
}

#[test]
fn an_existing_destination_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tar = RawTar::new().push(Raw::file("f", b"x")).finish();
    let err = unpack(&tar, dir.path()).unwrap_err();
    assert!(matches!(err, RootfsError::DestinationExists(_)), "{err}");
}

#[test]
fn dot_dot_escape_is_refused() {
    let tar = RawTar::new()
        .push(Raw::file("ok", b"x"))
        .push(Raw::file("a/../../outside/pwned", b"x"))
        .finish();
    let message = assert_refused(&tar, "a/../../outside/pwned", &UnpackLimits::default());
    assert!(message.contains(".."), "{message}");
}

#[test]
fn absolute_names_land_inside() {
    if !kiln_test_support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let name = format!("{}/pwned", outside.display());
    let tar = RawTar::new().push(Raw::file(&name, b"x")).finish();
    let dest = dir.path().join("dest");
    unpack(&tar, &dest).unwrap();
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    assert_eq!(
        std::fs::read(dest.join(name.trim_start_matches('/'))).unwrap(),
        b"x"
    );
}

#[test]
fn writing_through_a_symlink_is_refused() {
    for target in ["/tmp", "..", "../outside", "."] {
        let tar = RawTar::new()
            .push(Raw::symlink("link", target))
            .push(Raw::file("link/pwned", b"x"))
            .finish();
        let message = assert_refused(&tar, "link/pwned", &UnpackLimits::default());
        assert!(message.contains("symlink"), "{message}");
    }
    // A symlink to a directory, then a directory entry through it.
    let tar = RawTar::new()
        .push(Raw::symlink("etc", "/etc"))
        .push(Raw::dir("etc/cron.d/"))
        .finish();
    assert_refused(&tar, "etc/cron.d/", &UnpackLimits::default());
    assert!(!Path::new("/tmp/pwned").exists());
}

#[test]
fn hardlinks_must_name_an_earlier_file_of_the_layer() {
    for (target, why) in [
        ("/etc/passwd", "not a file written earlier"),
        ("../outside/x", ".."),
        ("later", "not a file written earlier"),
        ("dir", "not a file written earlier"),
    ] {
        let tar = RawTar::new()
            .push(Raw::dir("dir/"))
            .push(Raw::hardlink("h", target))
            .push(Raw::file("later", b"x"))
            .finish();
        let message = assert_refused(&tar, "\"h\"", &UnpackLimits::default());
        assert!(message.contains(why), "{target}: {message}");
    }
    // A hard link to a symlink written earlier that points outside links the symlink itself.
    if kiln_test_support::require_root() {
        let tar = RawTar::new()
            .push(Raw::symlink("s", "/etc/passwd"))
            .push(Raw::hardlink("h", "s"))
            .finish();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        unpack(&tar, &dest).unwrap();
        assert_eq!(
            std::fs::read_link(dest.join("h")).unwrap(),
            Path::new("/etc/passwd")
        );
    }
}

#[test]
fn whiteouts_of_escaping_names_are_refused() {
    for name in ["../.wh.x", "a/../../.wh.x", ".wh...", ".wh..", "a/.wh.b/c"] {
        let tar = RawTar::new().push(Raw::file(name, b"")).finish();
        assert_refused(&tar, name, &UnpackLimits::default());
    }
}

#[test]
fn limits_are_enforced() {
    let devices = UnpackLimits {
        allow_devices: false,
        ..UnpackLimits::default()
    };
    let tar = RawTar::new().push(Raw::device("dev/sda", b'4', 8, 0)).finish();
    let message = assert_refused(&tar, "dev/sda", &devices);
    assert!(message.contains("device"), "{message}");

    let small = UnpackLimits {
        max_bytes: 10,
        ..UnpackLimits::default()
    };
    let tar = RawTar::new()
        .push(Raw::file("a", b"12345"))
        .push(Raw::file("b", b"123456"))
        .finish();
    let message = assert_refused(&tar, "\"b\"", &small);
    assert!(message.contains("limit of 10"), "{message}");

    let few = UnpackLimits {
        max_entries: 2,
        ..UnpackLimits::default()
    };
    let tar = RawTar::new()
        .push(Raw::file("a", b""))
        .push(Raw::file("b", b""))
        .push(Raw::file("c", b""))
        .finish();
    assert_refused(&tar, "\"c\"", &few);

    let long_name = "n".repeat(5000);
    let tar = RawTar::new()
        .pax(&[("path", long_name.as_bytes())])
        .push(Raw::file("x", b""))
        .finish();
    assert_refused(&tar, "nnnn", &UnpackLimits::default());

    let header = UnpackLimits {
        max_header_bytes: 100,
        ..UnpackLimits::default()
    };
    let tar = RawTar::new()
        .push(Raw::file("first", b""))
        .pax(&[("comment", &[b'c'; 200])])
        .push(Raw::file("x", b""))
        .finish();
    let message = assert_refused(&tar, "first", &header);
    assert!(message.contains("extension header"), "{message}");
}

#[test]
fn truncated_and_corrupt_archives_leave_nothing() {
    let full = RawTar::new().push(Raw::file("big", &[7u8; 5000])).finish();
    let message = assert_refused(&full[..3000], "big", &UnpackLimits::default());
    assert!(message.contains("ends inside"), "{message}");
    let mut corrupt = full.clone();
    corrupt[10] ^= 0xff;
    assert_refused(&corrupt, "reading layer tar", &UnpackLimits::default());
    // A symlink that claims content would be read differently by Go and by the tar crate.
    let tar = RawTar::new()
        .push(Raw {
            data: b"hidden",
            ..Raw::symlink("s", "t")
        })
        .finish();
    assert_refused(&tar, "\"s\"", &UnpackLimits::default());
}

#[test]
fn replaced_directories_and_symlink_xattrs() {
    if !kiln_test_support::require_root() {
        return;
    }
    let tar = RawTar::new()
        .push(Raw::dir("a/"))
        .push(Raw {
            mtime: 5,
            ..Raw::dir("a/b/")
        })
        .push(Raw {
            mtime: 7,
            ..Raw::file("a", b"file now")
        })
        .push(Raw::dir("c/"))
        .push(Raw {
            mtime: 9,
            ..Raw::dir("c/")
        })
        .pax(&[("SCHILY.xattr.user.x", b"1"), ("SCHILY.xattr.trusted.y", b"2")])
        .push(Raw::symlink("s", "target"))
        .finish();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dest");
    unpack(&tar, &dest).unwrap();
    let (tree, _) = list_tree(&dest);
    assert_eq!((tree["a"].kind, tree["a"].mtime), ("file", 7));
    assert_eq!(tree["c"].mtime, 9);
    assert_eq!(tree["s"].xattrs, [("trusted.y".to_string(), "[50]".to_string())]);
}
