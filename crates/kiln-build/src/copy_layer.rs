//! COPY straight to a layer: the common COPY from the context (or `--from` a stage or image) into new
//! paths is described as a [`kiln_rootfs::tree::Tree`] and written as a tar from its sources, instead of creating every file
//! in the step's overlay and reading it back to capture it (for a 200 MB context that round trip,
//! with ext4's inode allocation, was half of the build's CPU time).
//!
//! The tree is exactly the overlay upper folder the copy would leave, so the layer is byte for byte
//! the one capture writes (a test holds both paths to that): folders made on the way and by the copy
//! are there with the copy's modes and owners, existing folders on the way are there as overlayfs
//! copies them up (their own mode, owner and mtime; a folder that gets a new entry gets the time of
//! the copy; an existing folder the copy writes takes its owner and mode, and is dropped again when
//! that changed nothing, as the overlay path prunes it), files keep the copy's mtimes. Anything less
//! plain returns `None` and the step takes the overlay path: a file, symlink or other non-folder of
//! the image at a target or on the way (the overlay path replaces it, or resolves it inside the
//! image), a folder on the way with xattrs, a source file with xattrs, hard-linked sources, the same
//! target twice, or a `SOURCE_DATE_EPOCH` in the future.

use std::path::Path;

use kiln_rootfs::RootfsError;
use kiln_rootfs::root::{FileKind, Root};
use kiln_rootfs::tree::{Tree, TreeEntry, TreeKind};

use crate::copy::{FileFrom, Item, ItemKind};

/// The layer `items` would make on the image at `root` (mounted at `merged`), or `None` when the copy
/// must go through the overlay. `parent_owner` owns the folders made on the way.
pub(crate) fn describe(
    root: &Root,
    merged: &Path,
    items: &[Item],
    parent_owner: (u32, u32),
    source_date_epoch: i64,
) -> Option<Tree> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())?;
    // With the epoch in the future the clamped times would be the real ones, which this path does not
    // know exactly.
    if source_date_epoch > now {
        return None;
    }
    let mut tree = Tree::new();
    // Existing folders of the image in the tree, with their own mode and owner.
    let mut shadowed = std::collections::HashMap::new();
    for item in items {
        if item.target.is_empty() {
            continue; // the image root keeps its metadata, as in the overlay path
        }
        if item.inode.is_some() {
            return None;
        }
        // Described entries carry no xattrs: a file with some takes the overlay path, which copies them.
        if let ItemKind::File(FileFrom::Path(path)) = &item.kind
            && crate::copy::has_xattrs(path)
        {
            return None;
        }
        let components: Vec<Vec<u8>> = item.target.split('/').map(|c| c.as_bytes().to_vec()).collect();
        if components.iter().any(|c| c.is_empty() || c == b"." || c == b"..") {
            return None;
        }
        if let Some(entry) = tree.get_mut(&components) {
            // A folder this copy already has: written over as the overlay path writes an existing one.
            if !matches!((&entry.kind, &item.kind), (TreeKind::Dir, ItemKind::Dir)) {
                return None;
            }
            if item.overwrite {
                (entry.mode, entry.uid, entry.gid) = (item.mode, item.uid, item.gid);
            }
            continue;
        }
        for depth in 1..components.len() {
            let ancestor = &components[..depth];
            if let Some(entry) = tree.get(ancestor) {
                if !matches!(entry.kind, TreeKind::Dir) {
                    return None;
                }
                continue;
            }
            let entry = match lstat(root, ancestor)? {
                Some(meta) if meta.kind == FileKind::Dir && !has_xattrs(merged, ancestor)? => {
                    shadowed.insert(ancestor.to_vec(), (meta.mode, meta.uid, meta.gid));
                    TreeEntry {
                        kind: TreeKind::Dir,
                        mode: meta.mode,
                        uid: meta.uid,
                        gid: meta.gid,
                        mtime: meta.mtime,
                    }
                }
                Some(_) => return None,
                None => {
                    touch_parent(&mut tree, ancestor, now);
                    dir(0o755, parent_owner, now)
                }
            };
            tree.insert(ancestor.to_vec(), entry);
        }
        let existing = lstat(root, &components)?;
        if let Some(meta) = existing {
            // An existing folder is copied up, and takes the copied folder's owner and mode unless it is
            // the destination itself; anything else in the way is the overlay path's to replace.
            if meta.kind != FileKind::Dir
                || !matches!(item.kind, ItemKind::Dir)
                || has_xattrs(merged, &components)?
            {
                return None;
            }
            let (mode, uid, gid) = if item.overwrite {
                (item.mode, item.uid, item.gid)
            } else {
                (meta.mode, meta.uid, meta.gid)
            };
            shadowed.insert(components.clone(), (meta.mode, meta.uid, meta.gid));
            tree.insert(
                components,
                TreeEntry {
                    kind: TreeKind::Dir,
                    mode,
                    uid,
                    gid,
                    mtime: meta.mtime,
                },
            );
            continue;
        }
        touch_parent(&mut tree, &components, now);
        let entry = match &item.kind {
            ItemKind::Dir => dir(item.mode, (item.uid, item.gid), now),
            ItemKind::File(from) => TreeEntry {
                kind: match from {
                    FileFrom::Path(path) => TreeKind::File(path.clone()),
                    FileFrom::Bytes(bytes) => TreeKind::Bytes(bytes.clone()),
                },
                mode: item.mode,
                uid: item.uid,
                gid: item.gid,
                mtime: item.mtime,
            },
            ItemKind::Symlink(target) => TreeEntry {
                kind: TreeKind::Symlink(target.as_bytes().to_vec()),
                mode: 0o777,
                uid: item.uid,
                gid: item.gid,
                mtime: now,
            },
        };
        tree.insert(components, entry);
    }
    // As the overlay path prunes them: an existing folder that got nothing below it and kept its mode
    // and owner is no change.
    for (components, own) in shadowed {
        let unchanged = tree
            .get(&components)
            .is_some_and(|e| (e.mode, e.uid, e.gid) == own);
        let below = tree
            .range(components.clone()..)
            .nth(1)
            .is_some_and(|(next, _)| next.starts_with(&components));
        if unchanged && !below {
            tree.remove(&components);
        }
    }
    Some(tree)
}

/// A new entry in a folder moves the folder's mtime.
fn touch_parent(tree: &mut Tree, components: &[Vec<u8>], now: i64) {
    if components.len() > 1
        && let Some(entry) = tree.get_mut(&components[..components.len() - 1])
    {
        entry.mtime = now;
    }
}

fn dir(mode: u32, (uid, gid): (u32, u32), mtime: i64) -> TreeEntry {
    TreeEntry {
        kind: TreeKind::Dir,
        mode,
        uid,
        gid,
        mtime,
    }
}

fn rel_path(components: &[Vec<u8>]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(&components.join(&b'/'))).to_path_buf()
}

/// The metadata of a path of the image (`Some(None)`: it does not exist; `None`: it cannot be told).
fn lstat(root: &Root, components: &[Vec<u8>]) -> Option<Option<kiln_rootfs::root::Metadata>> {
    match root.lstat(&rel_path(components)) {
        Ok(meta) => Some(Some(meta)),
        Err(RootfsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Some(None),
        Err(_) => None,
    }
}

/// Whether an existing folder on the way has xattrs, which overlayfs would copy up with it (the
/// folders checked are real folders, not symlinks, so the host path stays inside the mount).
fn has_xattrs(merged: &Path, components: &[Vec<u8>]) -> Option<bool> {
    let mut names = [0u8; 256];
    match rustix::fs::llistxattr(merged.join(rel_path(components)), &mut names) {
        Ok(len) => Some(len > 0),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::PathBuf;

    use kiln_rootfs::OverlayMount;
    use kiln_rootfs::capture::{CaptureOptions, capture_layer};

    use super::*;
    use crate::context::BuildContext;
    use crate::copy::{CopyParams, Sources};

    const EPOCH: i64 = 2000;

    fn set(path: &Path, mode: u32, owner: (u32, u32), mtime: i64) {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::lchown(path, Some(owner.0), Some(owner.1)).unwrap();
        let t = filetime(mtime);
        rustix::fs::utimensat(
            rustix::fs::CWD,
            path,
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }

    fn filetime(secs: i64) -> rustix::fs::Timespec {
        rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        }
    }

    /// An image with existing folders of unusual metadata, a file and a symlinked folder.
    fn image(dir: &Path) -> PathBuf {
        let image = dir.join("image");
        for d in ["usr/local/bin", "etc", "opt", "srv"] {
            fs_err::create_dir_all(image.join(d)).unwrap();
        }
        fs_err::write(image.join("etc/existing"), "old").unwrap();
        symlink("/opt", image.join("optlink")).unwrap();
        for (d, mode, owner, mtime) in [
            ("usr", 0o755, (0, 0), 1000),
            ("usr/local", 0o755, (0, 0), 1000),
            ("usr/local/bin", 0o755, (0, 0), 1500),
            ("etc", 0o755, (0, 0), 1000),
            ("opt", 0o1770, (5, 6), 12345),
            ("srv", 0o700, (0, 0), 100),
        ] {
            set(&image.join(d), mode, owner, mtime);
        }
        image
    }

    fn context(dir: &Path) -> BuildContext {
        let ctx = dir.join("ctx");
        fs_err::create_dir_all(ctx.join("sub/deep")).unwrap();
        fs_err::create_dir_all(ctx.join("empty")).unwrap();
        fs_err::write(ctx.join("a.txt"), "a".repeat(700)).unwrap();
        fs_err::write(ctx.join("sub/b.sh"), "#!/bin/sh\n").unwrap();
        fs_err::write(ctx.join("sub/deep/c"), vec![7u8; 5000]).unwrap();
        let long = format!("sub/{}", "n".repeat(120));
        fs_err::write(ctx.join(&long), "long name").unwrap();
        symlink("a.txt", ctx.join("link")).unwrap();
        // A folder the image has too (with other metadata): `COPY . /` writes over it.
        fs_err::create_dir_all(ctx.join("srv")).unwrap();
        fs_err::write(ctx.join("srv/readme"), "r").unwrap();
        set(&ctx.join("a.txt"), 0o644, (0, 0), 5000);
        set(&ctx.join("sub/b.sh"), 0o4755, (0, 0), 100);
        set(&ctx.join("sub/deep/c"), 0o600, (0, 0), 1999);
        set(&ctx.join("empty"), 0o750, (0, 0), 10);
        BuildContext::from_dir(&ctx, None).unwrap()
    }

    /// A step's overlay on `image`: its folder (removed on drop), upper folder, mount point and mount.
    fn step_overlay(dir: &Path, image: &Path) -> (tempfile::TempDir, PathBuf, PathBuf, OverlayMount) {
        let step = tempfile::tempdir_in(dir).unwrap();
        let (upper, work, merged) = (
            step.path().join("u"),
            step.path().join("w"),
            step.path().join("m"),
        );
        for d in [&upper, &work, &merged] {
            fs_err::create_dir(d).unwrap();
        }
        let mount = OverlayMount::mount(&[image.to_path_buf()], &upper, &work, &merged).unwrap();
        (step, upper, merged, mount)
    }

    /// The layer of the copy through an overlay, as a step makes it (copy, unmount, prune, capture).
    fn through_overlay(
        dir: &Path,
        image: &Path,
        sources: &Sources<'_>,
        names: &[&str],
        params: &CopyParams,
    ) -> Vec<u8> {
        let (_step, upper, merged, mount) = step_overlay(dir, image);
        let root = Root::open(&merged).unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        crate::copy::copy(&root, sources, &names, params).unwrap();
        drop(root);
        mount.unmount().unwrap();
        crate::prune::prune_unchanged_dirs(&upper, &[image.to_path_buf()]).unwrap();
        let mut out = Vec::new();
        capture_layer(&upper, &mut out, &capture_options()).unwrap();
        out
    }

    /// The described layer, or `None` when the copy must take the overlay.
    fn described(
        dir: &Path,
        image: &Path,
        sources: &Sources<'_>,
        names: &[&str],
        params: &CopyParams,
    ) -> Option<Vec<u8>> {
        let (_step, _upper, merged, _mount) = step_overlay(dir, image);
        let root = Root::open(&merged).unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let items = crate::copy::plan(&root, sources, &names, params).unwrap();
        let tree = describe(&root, &merged, &items, params.owner.unwrap_or((0, 0)), EPOCH)?;
        let mut out = Vec::new();
        kiln_rootfs::tree::write_tree(&tree, &mut out, &capture_options()).unwrap();
        Some(out)
    }

    /// How both paths write the layer in these tests.
    fn capture_options() -> CaptureOptions {
        CaptureOptions {
            source_date_epoch: Some(EPOCH),
            ..Default::default()
        }
    }

    fn params(dest: &str) -> CopyParams {
        CopyParams {
            dest: dest.to_owned(),
            workdir: "/".to_owned(),
            ..CopyParams::default()
        }
    }

    #[test]
    fn described_layers_are_the_bytes_the_overlay_gives() {
        if !kiln_test_support::require_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = image(dir.path());
        let ctx = context(dir.path());
        let cases: Vec<(Vec<&str>, CopyParams)> = vec![
            (vec!["."], params("/data/")),
            (vec!["a.txt"], params("/usr/local/bin/")),
            (vec!["a.txt"], params("/usr/local/share/doc/a")),
            (
                vec!["sub"],
                CopyParams {
                    owner: Some((7, 8)),
                    ..params("/opt/new/x")
                },
            ),
            (
                vec!["a.txt", "sub/b.sh"],
                CopyParams {
                    chmod: Some(0o640),
                    ..params("/etc/")
                },
            ),
            (vec!["."], params("/")),
            (vec!["link", "empty"], params("/srv/")),
            (
                vec!["sub/*"],
                CopyParams {
                    workdir: "/work/dir".into(),
                    ..params("rel/")
                },
            ),
            (
                vec!["."],
                CopyParams {
                    exclude: vec!["sub/deep".into()],
                    ..params("/x")
                },
            ),
            (vec!["sub"], params("/usr/local")),
            (vec!["empty"], params("/srv")),
            (vec!["srv"], params("/srv")),
        ];
        // From the context, and from a stage's tree (`COPY --from`): the same folder read both ways.
        let stage = dir.path().join("ctx");
        for sources in [Sources::Context(&ctx), Sources::Tree(&stage)] {
            for (names, p) in &cases {
                let direct = described(dir.path(), &image, &sources, names, p)
                    .unwrap_or_else(|| panic!("COPY {names:?} {} took the overlay path", p.dest));
                let overlay = through_overlay(dir.path(), &image, &sources, names, p);
                assert!(
                    direct == overlay,
                    "COPY {names:?} {} ({}): the described layer differs",
                    p.dest,
                    if matches!(sources, Sources::Tree(_)) {
                        "--from"
                    } else {
                        "context"
                    }
                );
            }
        }
    }

    #[test]
    fn what_the_image_already_has_takes_the_overlay_path() {
        if !kiln_test_support::require_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = image(dir.path());
        let ctx = context(dir.path());
        for (names, dest) in [
            (vec!["a.txt"], "/etc/existing"),          // a file replaced
            (vec!["a.txt"], "/optlink/"),              // through a symlink of the image
            (vec!["a.txt", "link"], "/etc/existing/"), // a file on the way
        ] {
            assert!(
                described(dir.path(), &image, &Sources::Context(&ctx), &names, &params(dest)).is_none(),
                "COPY {names:?} {dest} was described"
            );
        }
    }
}
