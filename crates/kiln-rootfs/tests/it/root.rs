//! Root: every path stays inside the root, whatever symlinks and `..` the image holds.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use kiln_rootfs::RootfsError;
use kiln_rootfs::root::{FileKind, Root};

/// A root with hostile symlinks, and a host directory beside it that must never change.
fn hostile_root() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let host = dir.path().join("host");
    std::fs::create_dir_all(root.join("real")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("secret"), b"host").unwrap();
    std::fs::write(root.join("secret"), b"inside").unwrap();
    // `/etc -> /`, as a hostile image would have it; and symlinks that name the host directly.
    symlink("/", root.join("etc")).unwrap();
    symlink(&host, root.join("hostdir")).unwrap();
    symlink("../../../../../../../../..", root.join("up")).unwrap();
    symlink("/real", root.join("link-to-real")).unwrap();
    symlink(host.join("secret"), root.join("points-out")).unwrap();
    (dir, root, host)
}

fn read(root: &Root, rel: &str) -> String {
    let mut text = String::new();
    root.open_file(Path::new(rel))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn host_unchanged(host: &Path) {
    let names: Vec<_> = std::fs::read_dir(host)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret"]);
    assert_eq!(std::fs::read(host.join("secret")).unwrap(), b"host");
}

#[test]
fn absolute_symlinks_and_dot_dot_chains_resolve_inside() {
    let (_dir, path, host) = hostile_root();
    let root = Root::open(&path).unwrap();
    assert_eq!(read(&root, "/etc/secret"), "inside");
    assert_eq!(read(&root, "etc/etc/etc/secret"), "inside");
    assert_eq!(read(&root, "up/secret"), "inside");
    assert_eq!(read(&root, "../../../../secret"), "inside");
    assert_eq!(read(&root, "/tmp/../../../secret"), "inside");
    // The absolute host path, resolved inside, does not exist there.
    let err = root.open_file(Path::new("hostdir/secret")).unwrap_err();
    assert!(err.to_string().contains("/hostdir/secret"), "{err}");
    assert!(root.open_file(Path::new("points-out")).is_err());
    let canonical = path.canonicalize().unwrap();
    assert_eq!(root.path(), canonical);
    assert_eq!(
        root.resolve_in_root(Path::new("up/etc/real/new/file")).unwrap(),
        Path::new("/real/new/file")
    );
    assert_eq!(
        root.resolve_in_root(Path::new("link-to-real/x/../y")).unwrap(),
        Path::new("/real/y")
    );
    assert_eq!(
        root.resolve_in_root(Path::new("/nope/../../..")).unwrap(),
        Path::new("/")
    );
    assert_eq!(
        root.resolve_in_root(Path::new("etc/link-to-real")).unwrap(),
        Path::new("/real")
    );
    // Writes through the same paths land inside too.
    root.create_file(Path::new("up/tmp/../../tmp/made"), 0o644, 0, 0)
        .unwrap();
    assert!(path.join("tmp/made").is_file());
    root.mkdir_all(Path::new("/etc/etc/../made-dir/a"), 0o755, 0, 0)
        .unwrap();
    assert!(path.join("made-dir/a").is_dir());
    host_unchanged(&host);
}

#[test]
fn set_dir_owner_mode_changes_the_directory_itself_never_a_symlink() {
    if !kiln_test_support::require_root() {
        return;
    }
    let (_dir, path, host) = hostile_root();
    let root = Root::open(&path).unwrap();
    root.set_dir_owner_mode(Path::new("/real"), 0o2750, 1000, 1001)
        .unwrap();
    let real = std::fs::metadata(path.join("real")).unwrap();
    assert_eq!(
        (real.mode() & 0o7777, real.uid(), real.gid()),
        (0o2750, 1000, 1001)
    );
    for link in ["link-to-real", "hostdir"] {
        let err = root.set_dir_owner_mode(Path::new(link), 0o777, 1, 1).unwrap_err();
        assert!(matches!(err, RootfsError::NotADirectory { .. }), "{link}: {err}");
    }
    assert!(root.set_dir_owner_mode(Path::new("secret"), 0o777, 1, 1).is_err());
    host_unchanged(&host);
}

#[test]
fn mkdir_all_creates_only_what_is_missing() {
    if !kiln_test_support::require_root() {
        return;
    }
    let (_dir, path, host) = hostile_root();
    let root = Root::open(&path).unwrap();
    std::fs::set_permissions(
        path.join("real"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    root.mkdir_all(Path::new("link-to-real/a/b"), 0o2750, 1000, 1001)
        .unwrap();
    let made = std::fs::metadata(path.join("real/a/b")).unwrap();
    assert_eq!(
        (made.mode() & 0o7777, made.uid(), made.gid()),
        (0o2750, 1000, 1001)
    );
    // The existing directory reached through the symlink was not touched.
    let real = std::fs::metadata(path.join("real")).unwrap();
    assert_eq!((real.mode() & 0o7777, real.uid()), (0o700, 0));
    assert!(
        std::fs::symlink_metadata(path.join("link-to-real"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Through a symlink named by an absolute host path: resolved inside, so missing there.
    let err = root
        .mkdir_all(Path::new("hostdir/evil"), 0o755, 0, 0)
        .unwrap_err();
    assert!(matches!(err, RootfsError::NotADirectory { .. }), "{err}");
    let err = root.mkdir_all(Path::new("secret/sub"), 0o755, 0, 0).unwrap_err();
    assert!(
        matches!(&err, RootfsError::NotADirectory { path } if path == Path::new("/secret")),
        "{err}"
    );
    host_unchanged(&host);
}

#[test]
fn create_file_replaces_a_symlink_instead_of_following_it() {
    if !kiln_test_support::require_root() {
        return;
    }
    let (_dir, path, host) = hostile_root();
    let root = Root::open(&path).unwrap();
    let mut file = root
        .create_file(Path::new("points-out"), 0o4755, 1000, 1000)
        .unwrap();
    file.write_all(b"replaced").unwrap();
    drop(file);
    let meta = std::fs::symlink_metadata(path.join("points-out")).unwrap();
    assert!(meta.is_file());
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o4755, 1000));
    assert_eq!(std::fs::read(path.join("points-out")).unwrap(), b"replaced");
    let err = root.create_file(Path::new("/real"), 0o644, 0, 0).unwrap_err();
    assert!(matches!(err, RootfsError::IsADirectory { .. }), "{err}");
    let err = root.create_file(Path::new("/"), 0o644, 0, 0).unwrap_err();
    assert!(matches!(err, RootfsError::InvalidPath { .. }), "{err}");
    host_unchanged(&host);
}

#[test]
fn links_times_listing_and_removal() {
    if !kiln_test_support::require_root() {
        return;
    }
    let (_dir, path, host) = hostile_root();
    let root = Root::open(&path).unwrap();
    root.symlink(Path::new("/real/sym"), Path::new("/etc/shadow"), 7, 8)
        .unwrap();
    assert_eq!(
        root.read_link(Path::new("link-to-real/sym")).unwrap(),
        Path::new("/etc/shadow")
    );
    let meta = root.lstat(Path::new("real/sym")).unwrap();
    assert_eq!((meta.kind, meta.uid, meta.gid), (FileKind::Symlink, 7, 8));
    root.hardlink(Path::new("secret"), Path::new("real/hard"))
        .unwrap();
    assert_eq!(root.lstat(Path::new("real/hard")).unwrap().nlink, 2);
    // A hard link to a symlink that points outside links the symlink, not the host file.
    root.hardlink(Path::new("points-out"), Path::new("real/hard-sym"))
        .unwrap();
    assert_eq!(
        root.lstat(Path::new("real/hard-sym")).unwrap().kind,
        FileKind::Symlink
    );
    root.set_mtime(Path::new("real/sym"), 1_234_567_890, 5).unwrap();
    let meta = root.lstat(Path::new("real/sym")).unwrap();
    assert_eq!((meta.mtime, meta.mtime_nsec), (1_234_567_890, 5));
    root.set_mtime(Path::new("/"), 42, 0).unwrap();
    assert_eq!(root.lstat(Path::new("/")).unwrap().mtime, 42);
    let names: Vec<_> = root
        .read_dir(Path::new("etc/link-to-real"))
        .unwrap()
        .into_iter()
        .map(|e| (e.name.into_string().unwrap(), e.kind))
        .collect();
    assert_eq!(
        names,
        [
            ("hard".to_string(), FileKind::File),
            ("hard-sym".to_string(), FileKind::Symlink),
            ("sym".to_string(), FileKind::Symlink)
        ]
    );
    // remove_all of a tree holding symlinks to the host removes the links only.
    std::fs::create_dir(path.join("real/sub")).unwrap();
    symlink(&host, path.join("real/sub/to-host")).unwrap();
    root.remove_all(Path::new("/link-to-real")).unwrap();
    assert!(!path.join("link-to-real").exists());
    root.remove_all(Path::new("real")).unwrap();
    assert!(!path.join("real").exists());
    root.remove_all(Path::new("real/never-there")).unwrap();
    root.remove_all(Path::new("not-there")).unwrap();
    host_unchanged(&host);
}

#[test]
fn owner_and_mode_of_existing_files() {
    if !kiln_test_support::require_root() {
        return;
    }
    let (_dir, path, host) = hostile_root();
    let root = Root::open(&path).unwrap();
    root.set_owner(Path::new("points-out"), 11, 12).unwrap();
    let link = std::fs::symlink_metadata(path.join("points-out")).unwrap();
    assert_eq!((link.uid(), link.gid()), (11, 12));
    root.set_mode(Path::new("/etc/secret"), 0o4711).unwrap();
    assert_eq!(
        std::fs::metadata(path.join("secret")).unwrap().mode() & 0o7777,
        0o4711
    );
    let err = root.set_mode(Path::new("points-out"), 0o777).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    root.set_mode(Path::new("/"), 0o700).unwrap();
    root.set_owner(Path::new("/"), 5, 5).unwrap();
    let top = std::fs::metadata(&path).unwrap();
    assert_eq!((top.mode() & 0o7777, top.uid()), (0o700, 5));
    let host_meta = std::fs::metadata(host.join("secret")).unwrap();
    assert_eq!(host_meta.uid(), 0);
    host_unchanged(&host);
}
