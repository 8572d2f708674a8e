//! users: COPY --chown and USER rules, read through a Root.

use std::os::unix::fs::symlink;
use std::path::Path;

use kiln_rootfs::RootfsError;
use kiln_rootfs::root::Root;
use kiln_rootfs::users::{Ids, lookup, lookup_chown, lookup_user};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    # a comment\n\
    alice:x:1000:1000::/home/alice:/bin/sh\n\
    bob:x:1001:100::/home/bob:/bin/sh\n\
    broken:x:notanumber:1\n";
const GROUP: &str = "root:x:0:\nusers:x:100:alice,bob\nwheel:x:10:alice\nstaff:x:50:\n";

fn image(passwd: &str, group: &str) -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
    std::fs::write(dir.path().join("etc/group"), group).unwrap();
    let root = Root::open(dir.path()).unwrap();
    (dir, root)
}

fn ids(uid: u32, gid: u32, additional_gids: &[u32]) -> Ids {
    Ids {
        uid,
        gid,
        additional_gids: additional_gids.to_vec(),
    }
}

#[test]
fn chown_rule() {
    let (_dir, root) = image(PASSWD, GROUP);
    assert_eq!(lookup_chown(&root, "alice", None).unwrap(), ids(1000, 1000, &[]));
    assert_eq!(lookup_chown(&root, "bob", None).unwrap(), ids(1001, 100, &[]));
    // A numeric user gives the same number as gid, whatever passwd says.
    assert_eq!(lookup_chown(&root, "1001", None).unwrap(), ids(1001, 1001, &[]));
    assert_eq!(lookup_chown(&root, "4242", None).unwrap(), ids(4242, 4242, &[]));
    assert_eq!(
        lookup_chown(&root, "alice", Some("staff")).unwrap(),
        ids(1000, 50, &[])
    );
    assert_eq!(lookup_chown(&root, "bob", Some("5")).unwrap(), ids(1001, 5, &[]));
    let err = lookup_chown(&root, "mallory", None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "user \"mallory\" not found in /etc/passwd of the image"
    );
    let err = lookup_chown(&root, "alice", Some("nogroup")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "group \"nogroup\" not found in /etc/group of the image"
    );
    assert!(lookup_chown(&root, "broken", None).is_err());
}

#[test]
fn user_rule() {
    let (_dir, root) = image(PASSWD, GROUP);
    assert_eq!(
        lookup_user(&root, "alice", None).unwrap(),
        ids(1000, 1000, &[100, 10])
    );
    assert_eq!(lookup(&root, "bob", None).unwrap(), ids(1001, 100, &[100]));
    // Numeric users are looked up by uid; without a line the gid is 0.
    assert_eq!(lookup_user(&root, "1001", None).unwrap(), ids(1001, 100, &[100]));
    assert_eq!(lookup_user(&root, "4242", None).unwrap(), ids(4242, 0, &[]));
    assert_eq!(lookup_user(&root, "", None).unwrap(), ids(0, 0, &[]));
    // An explicit group: no supplementary groups.
    assert_eq!(
        lookup_user(&root, "alice", Some("wheel")).unwrap(),
        ids(1000, 10, &[])
    );
    assert_eq!(
        lookup_user(&root, "alice", Some("777")).unwrap(),
        ids(1000, 777, &[])
    );
    assert_eq!(
        lookup_user(&root, "4242", Some("4343")).unwrap(),
        ids(4242, 4343, &[])
    );
    assert_eq!(
        lookup_user(&root, "4242", Some("staff")).unwrap(),
        ids(4242, 50, &[])
    );
    assert!(matches!(
        lookup_user(&root, "mallory", None).unwrap_err(),
        RootfsError::UnknownUser { .. }
    ));
    assert!(matches!(
        lookup_user(&root, "alice", Some("nogroup")).unwrap_err(),
        RootfsError::UnknownGroup { .. }
    ));
}

#[test]
fn missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::open(dir.path()).unwrap();
    assert_eq!(lookup_chown(&root, "12", None).unwrap(), ids(12, 12, &[]));
    assert_eq!(lookup_user(&root, "12", None).unwrap(), ids(12, 0, &[]));
    assert_eq!(lookup_user(&root, "12", Some("13")).unwrap(), ids(12, 13, &[]));
    let err = lookup_user(&root, "root", None).unwrap_err();
    assert!(err.to_string().contains("/etc/passwd"), "{err}");
    let err = lookup_chown(&root, "12", Some("wheel")).unwrap_err();
    assert!(err.to_string().contains("/etc/group"), "{err}");
}

#[test]
fn a_symlinked_passwd_is_read_inside_the_image() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/passwd.image"),
        "insider:x:77:78::/:/bin/sh\n",
    )
    .unwrap();
    // Resolves to /etc/passwd.image of the image, not of the host.
    symlink(
        "../../../../../../etc/passwd.image",
        dir.path().join("etc/passwd"),
    )
    .unwrap();
    symlink("/etc/group", dir.path().join("etc/group")).unwrap();
    let root = Root::open(dir.path()).unwrap();
    // /etc/group points at itself inside the image: a loop, reported with the file's name.
    let err = lookup_user(&root, "insider", None).unwrap_err();
    assert!(err.to_string().starts_with("/etc/group: "), "{err}");
    assert_eq!(lookup_chown(&root, "insider", None).unwrap(), ids(77, 78, &[]));
    // The host's root user is not visible.
    assert!(lookup_chown(&root, "root", None).is_err());

    // A symlink naming the host's /etc/passwd by an absolute path or through /proc.
    for target in ["/proc/self/root/etc/passwd", "/proc/1/root/etc/passwd"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        symlink(target, dir.path().join("etc/passwd")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let err = lookup_chown(&root, "root", None).unwrap_err();
        assert!(matches!(err, RootfsError::UnknownUser { .. }), "{target}: {err}");
    }
    assert!(Path::new("/etc/passwd").exists());
}
