//! COPY and ADD: which files go where, with Docker's rules.
//!
//! - A source folder copies its contents, not itself; a file goes to `DEST` or, when `DEST` is a folder
//!   (ends with `/`, already is one in the image, or there are several sources), to `DEST/<name>`.
//! - Context files are owned by root (or `--chown`); files from another stage or image keep their owner
//!   unless `--chown` is given; `--chmod` replaces the mode of files and folders.
//! - `--parents` keeps each source's path; `--exclude` patterns are matched against paths relative to the
//!   source.
//! - Every write goes through [`kiln_rootfs::root::Root`], so a symlink in the image (say `/app -> /`) can
//!   never send a file outside the image's root.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln_rootfs::root::Root;

use crate::context::{BuildContext, Content, EntryKind, clean};

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
struct Item {
    /// Path relative to the image root.
    target: String,
    kind: ItemKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

#[derive(Debug, Clone)]
enum ItemKind {
    Dir,
    File(FileFrom),
    Symlink(String),
}

#[derive(Debug, Clone)]
enum FileFrom {
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

/// Resolves the COPY's sources and copies them into `root`. Returns the number of entries written.
pub fn copy(
    root: &Root,
    sources: &Sources<'_>,
    names: &[String],
    params: &CopyParams,
) -> Result<usize, String> {
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
    let mut selected = Vec::new();
    for name in names {
        match sources {
            Sources::Context(ctx) => selected.extend(ctx.select(name)?),
            Sources::Tree(dir) => selected.extend(select_in_tree(dir, name)?),
        }
    }
    let dest_is_dir = params.dest.ends_with('/')
        || params.dest.ends_with("/.")
        || params.dest == "."
        || selected.len() > 1
        || names.iter().any(|n| n.contains(['*', '?', '[']))
        || root.resolve(Path::new(&dest)).is_ok_and(|p| p.is_dir());
    let mut items = Vec::new();
    for source in &selected {
        let source_is_dir = match sources {
            Sources::Context(ctx) => ctx.is_dir(source),
            Sources::Tree(dir) => dir.join(source).is_dir(),
        };
        let target_base = if params.parents {
            join(&dest, source)
        } else if source_is_dir {
            dest.clone()
        } else if dest_is_dir {
            join(&dest, basename(source))
        } else {
            dest.clone()
        };
        if source_is_dir {
            items.push(dir_item(target_base.clone(), params));
            collect_below(sources, source, &target_base, params, &matchers, &mut items)?;
        } else if !excluded(&matchers, basename(source)) {
            items.push(single_item(sources, source, target_base, params)?);
        }
    }
    for item in &items {
        write_item(root, item)?;
    }
    Ok(items.len())
}

fn dir_item(target: String, params: &CopyParams) -> Item {
    let (uid, gid) = params.owner.unwrap_or((0, 0));
    Item {
        target,
        kind: ItemKind::Dir,
        mode: params.chmod.unwrap_or(0o755),
        uid,
        gid,
        mtime: 0,
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
    Item {
        target,
        kind,
        mode,
        uid,
        gid,
        mtime: entry.mtime,
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
    Ok(Item {
        target,
        kind,
        mode,
        uid,
        gid,
        mtime: meta.mtime(),
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
/// absolute paths are cleaned to stay inside it and symlinks named directly are not followed out of it.
fn select_in_tree(dir: &Path, pattern: &str) -> Result<Vec<String>, String> {
    let cleaned = clean(pattern);
    let mut found = vec![String::new()];
    for part in cleaned.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for base in &found {
            if part.contains(['*', '?', '[']) {
                let matcher = globset::Glob::new(part)
                    .map_err(|e| format!("bad pattern `{pattern}`: {e}"))?
                    .compile_matcher();
                let Ok(read) = fs_err::read_dir(dir.join(base)) else {
                    continue;
                };
                let mut names: Vec<String> = read
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| matcher.is_match(n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| join(base, &n)));
            } else if fs_err::symlink_metadata(dir.join(base).join(part)).is_ok() {
                next.push(join(base, part));
            }
        }
        found = next;
    }
    if found.is_empty() {
        return Err(format!("`{pattern}` does not exist in the source image"));
    }
    Ok(found)
}

fn write_item(root: &Root, item: &Item) -> Result<(), String> {
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
            root.mkdir_all(&parent, 0o755, item.uid, item.gid).map_err(err)?;
        }
        resolved = parent.join(rel.file_name().unwrap_or_default());
    }
    let rel = resolved.as_path();
    match &item.kind {
        ItemKind::Dir => {
            root.mkdir_all(rel, item.mode, item.uid, item.gid).map_err(err)?;
        }
        ItemKind::Symlink(target) => {
            let _ = root.remove_all(rel);
            root.symlink(rel, Path::new(target), item.uid, item.gid)
                .map_err(err)?;
        }
        ItemKind::File(from) => {
            let mut out = root
                .create_file(rel, item.mode, item.uid, item.gid)
                .map_err(err)?;
            match from {
                FileFrom::Bytes(bytes) => {
                    std::io::Write::write_all(&mut out, bytes).map_err(|e| e.to_string())?
                }
                FileFrom::Path(path) => {
                    let mut input = fs_err::File::open(path).map_err(|e| e.to_string())?;
                    copy_file(&mut input, &mut out).map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            root.set_mtime(rel, item.mtime, 0).map_err(err)?;
        }
    }
    Ok(())
}

fn copy_file(input: &mut impl Read, out: &mut std::fs::File) -> std::io::Result<u64> {
    std::io::copy(input, out)
}
