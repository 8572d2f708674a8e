//! COPY and ADD: which files go where, with Docker's rules.
//!
//! - A source folder copies its contents, not itself; a file goes to `DEST` or, when `DEST` is a folder
//!   (ends with `/`, already is one in the image, or there are several sources), to `DEST/<name>`.
//! - Sources are followed through symlinks (inside the context or the source tree), wildcard matches
//!   included; the copy keeps the name as written or matched (BuildKit's `FollowSymlinks`).
//! - Context files are owned by root (or `--chown`); files from another stage or image keep their owner
//!   unless `--chown` is given; `--chmod` replaces the mode of files and folders.
//! - Folders the COPY creates on the way to its destination, and the destination folder of a copied
//!   folder, are 0755 and owned by root (or `--chown`); an existing destination folder is left as it
//!   is, while existing folders below it take the copied folders' owner and mode (BuildKit's copier).
//! - Files hard-linked together in the source stay hard-linked in the image.
//! - `--parents` keeps each source's path; `--exclude` patterns are matched against paths relative to the
//!   source.
//! - Every write goes through [`kiln_rootfs::root::Root`], so a symlink in the image (say `/app -> /`) can
//!   never send a file outside the image's root.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln_rootfs::root::{FileKind, Root};

use crate::context::{BuildContext, Content, EntryKind, Match, clean};

/// Where COPY takes files from.
#[derive(Debug)]
pub enum Sources<'a> {
    /// The build context.
    Context(&'a BuildContext),
    /// The root folder of another stage or an image (mounted read-only).
    Tree(&'a Path),
}

/// Owner and mode overrides of one COPY.
#[derive(Debug, Clone, Default)]
pub struct CopyParams {
    /// Destination as written (after expansion).
    pub dest: String,
    /// The stage's working directory (absolute), for a relative destination.
    pub workdir: String,
    /// `--chown` resolved to numbers.
    pub owner: Option<(u32, u32)>,
    /// `--chmod` bits.
    pub chmod: Option<u32>,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
}

/// One thing to write into the image.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// Path relative to the image root.
    pub(crate) target: String,
    pub(crate) kind: ItemKind,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: i64,
    /// An existing folder at `target` takes this item's owner and mode (folders below the
    /// destination); the destination folder itself keeps its own.
    pub(crate) overwrite: bool,
    /// Device and inode of a source file with several links, to keep hard links together.
    pub(crate) inode: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
pub(crate) enum ItemKind {
    Dir,
    File(FileFrom),
    Symlink(String),
}

#[derive(Debug, Clone)]
pub(crate) enum FileFrom {
    Path(PathBuf),
    Bytes(std::sync::Arc<Vec<u8>>),
}

fn join(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (_, true) => base.to_owned(),
        (true, false) => rel.to_owned(),
        _ => format!("{base}/{rel}"),
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn excluded(matchers: &[globset::GlobMatcher], rel: &str) -> bool {
    let mut path = rel;
    loop {
        if matchers.iter().any(|m| m.is_match(path)) {
            return true;
        }
        match path.rsplit_once('/') {
            Some((parent, _)) => path = parent,
            None => return false,
        }
    }
}

/// The owner `--chown=user[:group]` gives (BuildKit's rule: a user name takes its uid and primary
/// group from the image's `/etc/passwd`, a number is uid and gid), also the owner of the folders
/// `WORKDIR` makes while `USER` is set.
pub fn owner(root: &Root, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let ids = kiln_rootfs::users::lookup_chown(root, user, group).map_err(|e| e.to_string())?;
    Ok((ids.uid, ids.gid))
}

/// Resolves the COPY's sources and copies them into `root`. Returns the number of entries written.
pub fn copy(
    root: &Root,
    sources: &Sources<'_>,
    names: &[String],
    params: &CopyParams,
) -> Result<usize, String> {
    let items = plan(root, sources, names, params)?;
    write(root, &items, params)?;
    Ok(items.len())
}

/// Writes a file ADD downloaded from `url`: to `DEST/<name>` when the destination is a folder (ends with
/// `/`, exists as one, or there are several sources), else to `DEST`; mode 0600 unless `--chmod`, owned
/// by root or `--chown`, with the download's mtime.
pub(crate) fn write_download(
    root: &Root,
    download: &crate::remote::Download,
    url: &str,
    several_sources: bool,
    params: &CopyParams,
) -> Result<(), String> {
    let dest_abs = if params.dest.starts_with('/') {
        params.dest.clone()
    } else {
        format!("{}/{}", params.workdir.trim_end_matches('/'), params.dest)
    };
    let dest = clean(&dest_abs);
    let into_dir = params.dest.ends_with('/')
        || several_sources
        || root
            .stat(Path::new(&dest))
            .is_ok_and(|m| m.kind == kiln_rootfs::root::FileKind::Dir);
    let target = if into_dir {
        let name = download
            .name
            .as_deref()
            .ok_or_else(|| format!("{url}: the URL names no file; give ADD a destination file name"))?;
        join(&dest, name)
    } else {
        dest
    };
    let (uid, gid) = params.owner.unwrap_or((0, 0));
    let item = Item {
        target,
        kind: ItemKind::File(FileFrom::Path(download.path.clone())),
        mode: params.chmod.unwrap_or(0o600),
        uid,
        gid,
        mtime: download.mtime,
        overwrite: true,
        inode: None,
    };
    write(root, &[item], params)
}

/// Writes planned items into `root`.
pub(crate) fn write(root: &Root, items: &[Item], params: &CopyParams) -> Result<(), String> {
    let parent_owner = params.owner.unwrap_or((0, 0));
    let mut links = HashMap::new();
    for item in items {
        write_item(root, item, parent_owner, &mut links)?;
    }
    Ok(())
}

/// What a COPY writes, in order (a later item over an earlier one wins), with Docker's rules applied;
/// `root` is only read (to tell whether the destination is an existing folder).
pub(crate) fn plan(
    root: &Root,
    sources: &Sources<'_>,
    names: &[String],
    params: &CopyParams,
) -> Result<Vec<Item>, String> {
    let matchers = params
        .exclude
        .iter()
        .map(|p| {
            globset::GlobBuilder::new(&clean(p))
                .literal_separator(true)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("bad --exclude pattern `{p}`: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dest_abs = if params.dest.starts_with('/') {
        params.dest.clone()
    } else {
        format!("{}/{}", params.workdir.trim_end_matches('/'), params.dest)
    };
    let dest = clean(&dest_abs);
    let mut selected: Vec<Match> = Vec::new();
    for name in names {
        match sources {
            Sources::Context(ctx) => selected.extend(ctx.matches(name)?),
            Sources::Tree(dir) => selected.extend(select_in_tree(dir, name)?),
        }
    }
    let dest_is_dir = params.dest.ends_with('/')
        || params.dest.ends_with("/.")
        || params.dest == "."
        || selected.len() > 1
        || names.iter().any(|n| n.contains(['*', '?', '[']))
        || root
            .stat(Path::new(&dest))
            .is_ok_and(|m| m.kind == kiln_rootfs::root::FileKind::Dir);
    let mut items = Vec::new();
    for source in &selected {
        let source_is_dir = match sources {
            Sources::Context(ctx) => ctx.is_dir(&source.real),
            Sources::Tree(dir) => fs_err::symlink_metadata(dir.join(&source.real)).is_ok_and(|m| m.is_dir()),
        };
        let target_base = if params.parents {
            join(&dest, &source.name)
        } else if source_is_dir {
            dest.clone()
        } else if dest_is_dir {
            join(&dest, basename(&source.name))
        } else {
            dest.clone()
        };
        if source_is_dir {
            items.push(dir_item(target_base.clone(), params));
            collect_below(sources, &source.real, &target_base, params, &matchers, &mut items)?;
        } else if !excluded(&matchers, basename(&source.name)) {
            items.push(single_item(sources, &source.real, target_base, params)?);
        }
    }
    Ok(items)
}

/// The destination folder of a copied folder: made like the folders on the way (0755, `--chmod`
/// notwithstanding), and left alone when it exists.
fn dir_item(target: String, params: &CopyParams) -> Item {
    let (uid, gid) = params.owner.unwrap_or((0, 0));
    Item {
        target,
        kind: ItemKind::Dir,
        mode: 0o755,
        uid,
        gid,
        mtime: 0,
        overwrite: false,
        inode: None,
    }
}

fn single_item(
    sources: &Sources<'_>,
    source: &str,
    target: String,
    params: &CopyParams,
) -> Result<Item, String> {
    match sources {
        Sources::Context(ctx) => {
            let entry = ctx
                .get(source)
                .ok_or_else(|| format!("`{source}` is not in the build context"))?;
            Ok(context_item(entry, target, params))
        }
        Sources::Tree(dir) => tree_item(&dir.join(source), target, params),
    }
}

fn context_item(entry: &crate::context::ContextEntry, target: String, params: &CopyParams) -> Item {
    let (uid, gid) = params.owner.unwrap_or((0, 0));
    let kind = match (&entry.kind, &entry.content) {
        (EntryKind::Dir, _) => ItemKind::Dir,
        (EntryKind::Symlink(t), _) => ItemKind::Symlink(t.clone()),
        (EntryKind::File, Content::Bytes(b)) => ItemKind::File(FileFrom::Bytes(b.clone())),
        (EntryKind::File, Content::Path(p, _)) => ItemKind::File(FileFrom::Path(p.clone())),
        (EntryKind::File, Content::None) => ItemKind::File(FileFrom::Bytes(Default::default())),
    };
    let mode = match kind {
        ItemKind::Symlink(_) => 0o777,
        _ => params.chmod.unwrap_or(entry.mode),
    };
    let inode = match &entry.content {
        Content::Path(path, _) => fs_err::metadata(path)
            .ok()
            .filter(|m| m.nlink() > 1)
            .map(|m| (m.dev(), m.ino())),
        _ => None,
    };
    Item {
        target,
        kind,
        mode,
        uid,
        gid,
        mtime: entry.mtime,
        overwrite: true,
        inode,
    }
}

fn tree_item(path: &Path, target: String, params: &CopyParams) -> Result<Item, String> {
    let meta = fs_err::symlink_metadata(path).map_err(|e| e.to_string())?;
    let kind = if meta.is_dir() {
        ItemKind::Dir
    } else if meta.file_type().is_symlink() {
        let t = fs_err::read_link(path).map_err(|e| e.to_string())?;
        ItemKind::Symlink(t.to_string_lossy().into_owned())
    } else if meta.is_file() {
        ItemKind::File(FileFrom::Path(path.to_owned()))
    } else {
        return Err(format!(
            "{}: only files, folders and symlinks can be copied",
            path.display()
        ));
    };
    let (uid, gid) = params.owner.unwrap_or((meta.uid(), meta.gid()));
    let mode = match kind {
        ItemKind::Symlink(_) => 0o777,
        _ => params.chmod.unwrap_or(meta.mode() & 0o7777),
    };
    let inode = (meta.is_file() && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
    Ok(Item {
        target,
        kind,
        mode,
        uid,
        gid,
        mtime: meta.mtime(),
        overwrite: true,
        inode,
    })
}

fn collect_below(
    sources: &Sources<'_>,
    source: &str,
    target_base: &str,
    params: &CopyParams,
    matchers: &[globset::GlobMatcher],
    items: &mut Vec<Item>,
) -> Result<(), String> {
    let strip = |name: &str| -> String {
        if source.is_empty() {
            name.to_owned()
        } else {
            name[source.len() + 1..].to_owned()
        }
    };
    match sources {
        Sources::Context(ctx) => {
            for entry in ctx.below(source) {
                let rel = strip(&entry.name);
                if excluded(matchers, &rel) {
                    continue;
                }
                items.push(context_item(entry, join(target_base, &rel), params));
            }
        }
        Sources::Tree(dir) => {
            let mut stack = vec![String::new()];
            while let Some(rel_dir) = stack.pop() {
                let path = dir.join(source).join(&rel_dir);
                let mut names: Vec<String> = fs_err::read_dir(&path)
                    .map_err(|e| e.to_string())?
                    .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
                    .collect();
                names.sort();
                for name in names {
                    let rel = join(&rel_dir, &name);
                    if excluded(matchers, &rel) {
                        continue;
                    }
                    let item = tree_item(&path.join(&name), join(target_base, &rel), params)?;
                    if matches!(item.kind, ItemKind::Dir) {
                        stack.push(rel.clone());
                    }
                    items.push(item);
                }
            }
        }
    }
    Ok(())
}

/// Wildcards in a stage/image source, matched folder by folder inside the mounted tree; `..` and
/// absolute paths are cleaned to stay inside it, and every lookup (folders listed for a wildcard, each
/// match followed through its symlinks) is resolved inside the tree, never out of it.
fn select_in_tree(dir: &Path, pattern: &str) -> Result<Vec<Match>, String> {
    let tree = Root::open(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cleaned = clean(pattern);
    let mut found = vec![String::new()];
    for part in cleaned.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if part.contains(['*', '?', '[']) {
                let matcher = globset::Glob::new(part)
                    .map_err(|e| format!("bad pattern `{pattern}`: {e}"))?
                    .compile_matcher();
                let Ok(entries) = tree.read_dir(Path::new(base)) else {
                    continue;
                };
                next.extend(
                    entries
                        .into_iter()
                        .filter_map(|e| e.name.into_string().ok())
                        .filter(|n| matcher.is_match(n))
                        .map(|n| join(base, &n)),
                );
            } else {
                next.push(join(base, part));
            }
        }
        found = next;
    }
    let mut matches = Vec::new();
    for name in found {
        let real = tree
            .resolve_in_root(Path::new(&name))
            .map_err(|e| format!("`{pattern}`: {e}"))?;
        let real = real.to_string_lossy().trim_start_matches('/').to_owned();
        if !real.is_empty() && tree.lstat(Path::new(&real)).is_err() {
            return Err(format!("`{pattern}`: /{name} does not exist in the source image"));
        }
        matches.push(Match { name, real });
    }
    if matches.is_empty() {
        return Err(format!("`{pattern}` does not exist in the source image"));
    }
    Ok(matches)
}

fn write_item(
    root: &Root,
    item: &Item,
    parent_owner: (u32, u32),
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), String> {
    let rel = Path::new(&item.target);
    let err = |e: kiln_rootfs::RootfsError| format!("/{}: {e}", item.target);
    if item.target.is_empty() {
        return Ok(()); // the image root itself keeps its metadata
    }
    // The parent is resolved inside the image first: an image symlink on the way (`/app -> /opt/app`)
    // is followed as Docker follows it, but only ever to a place inside the root.
    let mut resolved = PathBuf::from(item.target.as_str());
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        let parent = root.resolve_in_root(parent).map_err(err)?;
        let parent = parent.strip_prefix("/").unwrap_or(&parent).to_owned();
        if !parent.as_os_str().is_empty() {
            root.mkdir_all(&parent, 0o755, parent_owner.0, parent_owner.1)
                .map_err(err)?;
        }
        resolved = parent.join(rel.file_name().unwrap_or_default());
    }
    let rel = resolved.as_path();
    match &item.kind {
        ItemKind::Dir => {
            let existing = root.lstat(rel).is_ok_and(|m| m.kind == FileKind::Dir);
            if existing && item.overwrite {
                root.set_dir_owner_mode(rel, item.mode, item.uid, item.gid)
                    .map_err(err)?;
            } else {
                root.mkdir_all(rel, item.mode, item.uid, item.gid).map_err(err)?;
            }
        }
        ItemKind::Symlink(target) => {
            let _ = root.remove_all(rel);
            root.symlink(rel, Path::new(target), item.uid, item.gid)
                .map_err(err)?;
        }
        ItemKind::File(from) => {
            if let Some(first) = item.inode.and_then(|key| links.get(&key))
                && first != rel
            {
                return root.hardlink(first, rel).map_err(err);
            }
            let mut out = root
                .create_file(rel, item.mode, item.uid, item.gid)
                .map_err(err)?;
            match from {
                FileFrom::Bytes(bytes) => {
                    std::io::Write::write_all(&mut out, bytes).map_err(|e| e.to_string())?
                }
                FileFrom::Path(path) => {
                    let input = fs_err::File::open(path).map_err(|e| e.to_string())?;
                    copy_file(input.file(), &mut out).map_err(|e| format!("{}: {e}", path.display()))?;
                    // After the content: a write drops `security.capability`.
                    copy_xattrs(path, &out).map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            root.set_mtime(rel, item.mtime, 0).map_err(err)?;
            if let Some(key) = item.inode {
                links.entry(key).or_insert_with(|| rel.to_owned());
            }
        }
    }
    Ok(())
}

/// Gives `out` the extended attributes of the source file `path` (file capabilities, `user.*`), as
/// BuildKit's and buildah's COPY keep them.
fn copy_xattrs(path: &Path, out: &std::fs::File) -> std::io::Result<()> {
    for (key, value) in kiln_rootfs::layer_xattrs(path)? {
        rustix::fs::fsetxattr(out, key.as_slice(), &value, rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}

/// Whether the source file `path` has extended attributes to copy.
pub(crate) fn has_xattrs(path: &Path) -> bool {
    kiln_rootfs::layer_xattrs(path).map_or(true, |x| !x.is_empty())
}

/// File to file: std's copy specializes on plain `File`s (copy_file_range, else sendfile), so the bytes
/// move inside the kernel instead of through an 8 KiB user-space buffer.
fn copy_file(mut input: &std::fs::File, out: &mut std::fs::File) -> std::io::Result<u64> {
    std::io::copy(&mut input, out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn stat(path: &Path) -> (u32, u32, u32) {
        let m = fs_err::symlink_metadata(path).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    }

    fn params(dest: &str) -> CopyParams {
        CopyParams {
            dest: dest.to_owned(),
            workdir: "/".to_owned(),
            ..CopyParams::default()
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A source stage tree: owned files, a symlink, a hard link pair, a 0700 folder.
    fn stage_tree(dir: &Path) -> PathBuf {
        let tree = dir.join("tree");
        fs_err::create_dir_all(tree.join("out/sub")).unwrap();
        fs_err::write(tree.join("out/a"), "a").unwrap();
        fs_err::write(tree.join("out/sub/b"), "b").unwrap();
        fs_err::hard_link(tree.join("out/sub/b"), tree.join("out/b-hard")).unwrap();
        symlink("a", tree.join("out/link")).unwrap();
        symlink("/out", tree.join("abs-link")).unwrap();
        for path in ["out", "out/a", "out/sub", "out/sub/b"] {
            std::os::unix::fs::chown(tree.join(path), Some(1000), Some(1000)).unwrap();
        }
        chmod(&tree.join("out/sub"), 0o700);
        chmod(&tree.join("out/a"), 0o4755);
        tree
    }

    #[test]
    fn stage_sources_are_followed_and_keep_owners_and_hard_links() {
        if !kiln_test_support::require_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tree = stage_tree(dir.path());
        let image = dir.path().join("image");
        fs_err::create_dir(&image).unwrap();
        let root = Root::open(&image).unwrap();
        let from = Sources::Tree(&tree);
        // A named symlink (and one on the way) is followed and copied under its own name; the
        // folder the copy makes on the way is root's, not the copied file's owner's.
        copy(
            &root,
            &from,
            &names(&["out/link", "abs-link/a"]),
            &params("/new/"),
        )
        .unwrap();
        assert_eq!(fs_err::read_to_string(image.join("new/link")).unwrap(), "a");
        assert_eq!(stat(&image.join("new/link")), (0o4755, 1000, 1000));
        assert_eq!(stat(&image.join("new")), (0o755, 0, 0));
        // Wildcard matches are followed too.
        copy(&root, &from, &names(&["out/l*"]), &params("/globbed/")).unwrap();
        assert!(image.join("globbed/link").is_file());
        // A folder: its destination folder is 0755 root (--chmod notwithstanding), what is below keeps
        // owners and modes (or takes --chmod), and hard links stay hard links.
        let chmod_params = CopyParams {
            chmod: Some(0o750),
            ..params("/copied")
        };
        copy(&root, &from, &names(&["out"]), &chmod_params).unwrap();
        assert_eq!(stat(&image.join("copied")), (0o755, 0, 0));
        assert_eq!(stat(&image.join("copied/sub")), (0o750, 1000, 1000));
        let (one, two) = (
            fs_err::metadata(image.join("copied/sub/b")).unwrap(),
            fs_err::metadata(image.join("copied/b-hard")).unwrap(),
        );
        assert_eq!(one.ino(), two.ino(), "the hard link pair was split");
        assert!(
            fs_err::symlink_metadata(image.join("copied/link"))
                .unwrap()
                .file_type()
                .is_symlink(),
            "a symlink inside a copied folder is kept"
        );
    }

    #[test]
    fn existing_folders_below_the_destination_take_the_copied_metadata() {
        if !kiln_test_support::require_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tree = stage_tree(dir.path());
        let image = dir.path().join("image");
        fs_err::create_dir_all(image.join("dest/sub")).unwrap();
        chmod(&image.join("dest"), 0o1777);
        chmod(&image.join("dest/sub"), 0o755);
        let root = Root::open(&image).unwrap();
        copy(&root, &Sources::Tree(&tree), &names(&["out"]), &params("/dest")).unwrap();
        assert_eq!(
            stat(&image.join("dest")),
            (0o1777, 0, 0),
            "the destination keeps its own"
        );
        assert_eq!(stat(&image.join("dest/sub")), (0o700, 1000, 1000));
        // `--chown` also owns the folders made on the way.
        let owned = CopyParams {
            owner: Some((7, 8)),
            ..params("/x/y/z")
        };
        copy(&root, &Sources::Tree(&tree), &names(&["out/a"]), &owned).unwrap();
        assert_eq!(stat(&image.join("x/y")), (0o755, 7, 8));
        assert_eq!(stat(&image.join("x/y/z")), (0o4755, 7, 8));
    }
}
