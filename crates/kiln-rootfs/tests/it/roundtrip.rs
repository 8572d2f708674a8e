//! capture_layer → unpack_layer keeps every piece of metadata; captures are byte-reproducible;
//! GNU tar reads the captured layer to the same tree.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use kiln_rootfs::{CaptureOptions, UnpackLimits, capture_layer, unpack_layer};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps};

use crate::support::{list_tree, tar_names};

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty()).unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// Sets every mtime under `root` (children before their directory) to `base + depth-first index`.
fn pin_mtimes(root: &Path, base: i64) {
    fn visit(dir: &Path, next: &mut i64) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                visit(&path, next);
            }
            *next += 1;
            let t = Timespec {
                tv_sec: *next,
                tv_nsec: 0,
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                &path,
                &Timestamps {
                    last_access: t,
                    last_modification: t,
                },
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
        }
    }
    let mut next = base;
    visit(root, &mut next);
}

/// A tree with every kind of entry a layer can hold.
pub fn build_tree(root: &Path) {
    std::fs::create_dir_all(root.join("d/sub")).unwrap();
    std::fs::write(root.join("d/file"), b"hello\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    let big: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(root.join("big"), &big).unwrap();
    std::fs::write(root.join("suid"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(root.join("suid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::write(root.join("sgid"), b"").unwrap();
    std::fs::set_permissions(root.join("sgid"), std::fs::Permissions::from_mode(0o2711)).unwrap();
    std::fs::create_dir(root.join("sticky")).unwrap();
    std::fs::set_permissions(root.join("sticky"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    symlink("/etc/passwd", root.join("abs-link")).unwrap();
    symlink("../d/file", root.join("d/sub/rel-link")).unwrap();
    let long_target = format!("/{}", "t".repeat(180));
    symlink(&long_target, root.join("long-target")).unwrap();
    std::fs::write(root.join("hard1"), b"linked").unwrap();
    std::fs::hard_link(root.join("hard1"), root.join("d/hard2")).unwrap();
    std::fs::hard_link(root.join("hard1"), root.join("hard3")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("loop0"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o660),
        rustix::fs::makedev(7, 0),
    )
    .unwrap();
    set_xattr(&root.join("d/file"), "user.comment", b"caf\xc3\xa9");
    set_xattr(&root.join("d/file"), "user.binary", b"\x00\x01\xff");
    set_xattr(
        &root.join("suid"),
        "security.capability",
        &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    set_xattr(&root.join("d"), "trusted.kiln", b"dir-xattr");
    let name150 = "n".repeat(150);
    std::fs::write(root.join(&name150), b"long name").unwrap();
    let deep = root.join("p".repeat(200)).join("q".repeat(200));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("r".repeat(200)), b"deep").unwrap();
    std::fs::write(root.join("héllo-世界.txt"), "unicode".as_bytes()).unwrap();
    std::fs::write(root.join("d/owned"), b"").unwrap();
    chown(&root.join("d/owned"), 3_000_000, 4_000_000);
    chown(&root.join("d"), 1000, 1000);
    chown(&root.join("abs-link"), 5, 6);
    pin_mtimes(root, 1_600_000_000);
}

fn capture(dir: &Path, epoch: Option<i64>) -> Vec<u8> {
    let mut out = Vec::new();
    let stats = capture_layer(
        dir,
        &mut out,
        &CaptureOptions {
            source_date_epoch: epoch,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(stats.tar_bytes, out.len() as u64);
    out
}

#[test]
fn capture_then_unpack_keeps_everything() {
    if !kiln_test_support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    build_tree(&source);
    let layer = capture(&source, None);
    assert_eq!(layer, capture(&source, None), "two captures of one tree differ");

    let dest = dir.path().join("dest");
    let stats = unpack_layer(&layer[..], &dest, &UnpackLimits::default()).unwrap();
    assert!(stats.bytes > 20_000_000);
    let (expected, expected_links) = list_tree(&source);
    let (got, got_links) = list_tree(&dest);
    for (path, node) in &expected {
        assert_eq!(got.get(path), Some(node), "{path}");
    }
    assert_eq!(got.len(), expected.len());
    assert_eq!(got_links, expected_links);
    assert_eq!(expected_links.len(), 1);

    // Order: directory before its contents, names sorted within a directory, hard links after
    // their first path.
    let names = tar_names(&layer);
    let position = |n: &str| names.iter().position(|(name, _)| name == n).unwrap();
    assert!(position("d/") < position("d/file"));
    assert!(position("d/hard2") < position("hard1"));
    assert_eq!(names[position("hard1")].1, '1');
    assert_eq!(names[position("hard3")].1, '1');
    assert_eq!(names[position("d/hard2")].1, '0');
    assert!(!names.iter().any(|(n, _)| n.starts_with("./") || n == "/"));

    // Capturing the unpacked tree gives the same bytes.
    assert_eq!(capture(&dest, None), layer);
}

#[test]
fn gnu_tar_extracts_the_captured_layer_to_the_same_tree() {
    if !kiln_test_support::require_root() || !kiln_test_support::require_tool("tar") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    std::fs::create_dir(&source).unwrap();
    build_tree(&source);
    let layer_path = dir.path().join("layer.tar");
    std::fs::write(&layer_path, capture(&source, None)).unwrap();
    let out = dir.path().join("gnu");
    std::fs::create_dir(&out).unwrap();
    let status = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--same-owner", "-xpf"])
        .arg(&layer_path)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let (expected, expected_links) = list_tree(&source);
    let (got, got_links) = list_tree(&out);
    for (path, node) in &expected {
        let got = got.get(path).unwrap_or_else(|| panic!("{path} missing"));
        // GNU tar restores directory times but may not restore xattrs on symlinks or devices the
        // same way; compare the core metadata and the xattrs of files and directories.
        assert_eq!(
            (got.kind, got.mode, got.uid, got.gid, got.mtime, &got.payload),
            (
                node.kind,
                node.mode,
                node.uid,
                node.gid,
                node.mtime,
                &node.payload
            ),
            "{path}"
        );
        if node.kind == "file" || node.kind == "dir" {
            assert_eq!(got.xattrs, node.xattrs, "{path}");
        }
    }
    assert_eq!(got.len(), expected.len());
    assert_eq!(got_links, expected_links);
}

#[test]
fn source_date_epoch_clamps_every_mtime() {
    if !kiln_test_support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    build_tree(dir.path());
    // A whiteout too.
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join("d/gone"),
        FileType::CharacterDevice,
        Mode::empty(),
        0,
    )
    .unwrap();
    let epoch = 1_600_000_010;
    let layer = capture(dir.path(), Some(epoch));
    assert_eq!(layer, capture(dir.path(), Some(epoch)));
    let mut archive = tar::Archive::new(&layer[..]);
    let mut clamped = 0;
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let mtime = entry.header().mtime().unwrap() as i64;
        assert!(mtime <= epoch, "{:?}", entry.path());
        clamped += usize::from(mtime == epoch);
        assert!(entry.header().username_bytes().unwrap_or_default().is_empty());
        assert!(entry.header().groupname_bytes().unwrap_or_default().is_empty());
        if entry.path_bytes().as_ref() == b"d/.wh.gone" {
            assert_eq!(entry.header().mode().unwrap(), 0);
            assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
            assert_eq!(mtime, epoch);
        }
    }
    assert!(clamped > 10);
    // Without the epoch the whiteout keeps its own (recent) time.
    assert_ne!(layer, capture(dir.path(), None));

    // With the times set on disk, the folder lists as the layer unpacks (whiteouts aside, which the
    // unpacked form records as markers' times of their own).
    std::fs::write(dir.path().join("d/fresh"), b"sub-second mtime").unwrap();
    let mut out = Vec::new();
    let options = CaptureOptions {
        source_date_epoch: Some(epoch),
        set_times_on_disk: true,
    };
    capture_layer(dir.path(), &mut out, &options).unwrap();
    let unpacked = tempfile::tempdir().unwrap();
    let unpacked = unpacked.path().join("rootfs");
    unpack_layer(&out[..], &unpacked, &UnpackLimits::default()).unwrap();
    let (on_disk, _) = list_tree(dir.path());
    let (from_blob, _) = list_tree(&unpacked);
    for (path, node) in &on_disk {
        if path != "d/gone" {
            assert_eq!(from_blob.get(path).map(|n| n.mtime), Some(node.mtime), "{path}");
        }
    }
    assert_eq!(
        capture(dir.path(), Some(epoch)),
        out,
        "setting the times changes no byte of the layer"
    );
}

#[test]
fn names_that_mean_whiteouts_and_overlay_redirects_are_refused() {
    if !kiln_test_support::require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".wh.literal"), b"").unwrap();
    let err = capture_layer(dir.path(), std::io::sink(), &CaptureOptions::default()).unwrap_err();
    assert!(err.to_string().contains(".wh.literal"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("moved")).unwrap();
    set_xattr(&dir.path().join("moved"), "trusted.overlay.redirect", b"/orig");
    let err = capture_layer(dir.path(), std::io::sink(), &CaptureOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("moved") && message.contains("trusted.overlay.redirect"),
        "{message}"
    );

    // Other overlay xattrs and security.selinux are dropped.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"").unwrap();
    set_xattr(&dir.path().join("f"), "trusted.overlay.origin", b"x");
    let layer = capture(dir.path(), None);
    assert!(!layer.windows(7).any(|w| w == b"overlay"));
}
