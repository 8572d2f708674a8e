//! The build context: the files COPY and ADD read, from a folder (with `.dockerignore`) or from an in-tree
//! image's context as `kiln-tree` collects it (`# %include` files under `topsrcdir/`).
//!
//! Entries are kept sorted by name; folders are explicit entries (a tree context's folders are implied by
//! its files and get mode 0755, as they do when Docker unpacks the context tar).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_tree::{DockerIgnore, FileMeta};

use crate::error::BuildError;

/// What a context entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link with its target text.
    Symlink(String),
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Content {
    /// A file on disk, with the metadata seen when the context was read.
    Path(PathBuf, FileMeta),
    /// Bytes made by kiln (a preprocessed Dockerfile).
    Bytes(Arc<Vec<u8>>),
    /// No content (folders, symlinks).
    None,
}

/// One entry of the context.
#[derive(Debug, Clone)]
pub struct ContextEntry {
    /// Path inside the context, `/`-separated, no leading `/`.
    pub name: String,
    /// File, folder or symlink.
    pub kind: EntryKind,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    /// Modification time in seconds (clamped to `SOURCE_DATE_EPOCH` on capture).
    pub mtime: i64,
    /// Content size.
    pub size: u64,
    /// Where the content is.
    pub content: Content,
}

/// A path a COPY source names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The path as named or matched (its base name names the copy).
    pub name: String,
    /// The path with symlinks followed inside the context (where the content is).
    pub real: String,
}

/// The whole context.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// A label for messages: the folder, or `image NAME`.
    pub label: String,
    entries: BTreeMap<String, ContextEntry>,
}

pub use kiln_tree::clean_context_path as clean;

fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

impl BuildContext {
    /// Reads the folder `dir`, leaving out what `ignore` excludes (the Dockerfile and `.dockerignore`
    /// themselves are never excluded from being read by the builder, as in Docker).
    pub fn from_dir(dir: &Path, ignore: Option<&DockerIgnore>) -> Result<BuildContext, BuildError> {
        let mut context = BuildContext {
            label: dir.display().to_string(),
            entries: BTreeMap::new(),
        };
        let mut stack = vec![(dir.to_owned(), String::new())];
        while let Some((path, prefix)) = stack.pop() {
            let read = fs_err::read_dir(&path).map_err(|e| BuildError::context(&path, e.to_string()))?;
            for item in read {
                let item = item.map_err(|e| BuildError::context(&path, e.to_string()))?;
                let file_name = item.file_name();
                let Some(file_name) = file_name.to_str() else {
                    return Err(BuildError::context(
                        &item.path(),
                        "the name is not UTF-8".to_owned(),
                    ));
                };
                let name = if prefix.is_empty() {
                    file_name.to_owned()
                } else {
                    format!("{prefix}/{file_name}")
                };
                if ignore.is_some_and(|i| i.is_excluded(&name)) {
                    continue;
                }
                let full = item.path();
                let meta =
                    fs_err::symlink_metadata(&full).map_err(|e| BuildError::context(&full, e.to_string()))?;
                let file_type = meta.file_type();
                let (kind, content) = if file_type.is_dir() {
                    stack.push((full.clone(), name.clone()));
                    (EntryKind::Dir, Content::None)
                } else if file_type.is_symlink() {
                    let target =
                        fs_err::read_link(&full).map_err(|e| BuildError::context(&full, e.to_string()))?;
                    let target = target
                        .to_str()
                        .ok_or_else(|| {
                            BuildError::context(&full, "the symlink target is not UTF-8".to_owned())
                        })?
                        .to_owned();
                    (EntryKind::Symlink(target), Content::None)
                } else if file_type.is_file() {
                    (
                        EntryKind::File,
                        Content::Path(full.clone(), FileMeta::from_metadata(&meta)),
                    )
                } else {
                    // Sockets, fifos and devices cannot be sent in a context either.
                    continue;
                };
                context.entries.insert(
                    name.clone(),
                    ContextEntry {
                        name,
                        size: if kind == EntryKind::File { meta.size() } else { 0 },
                        kind,
                        mode: meta.mode() & 0o7777,
                        mtime: meta.mtime(),
                        content,
                    },
                );
            }
        }
        Ok(context)
    }

    /// The context of an in-tree image, with the modes its hash mode archives (so a build sees exactly
    /// the tar the hash was computed over).
    pub fn from_tree(tree: &kiln_tree::Context) -> BuildContext {
        let mut context = BuildContext {
            label: format!("image {}", tree.image),
            entries: BTreeMap::new(),
        };
        for entry in &tree.entries {
            let (content, size) = match &entry.source {
                kiln_tree::Source::File { path, meta } => (Content::Path(path.clone(), *meta), meta.size),
                kiln_tree::Source::Bytes(bytes) => (Content::Bytes(bytes.clone()), bytes.len() as u64),
            };
            let mut parent = entry.name.as_str();
            while let Some((dir, _)) = parent.rsplit_once('/') {
                context
                    .entries
                    .entry(dir.to_owned())
                    .or_insert_with(|| ContextEntry {
                        name: dir.to_owned(),
                        kind: EntryKind::Dir,
                        mode: 0o755,
                        mtime: 0,
                        size: 0,
                        content: Content::None,
                    });
                parent = dir;
            }
            context.entries.insert(
                entry.name.clone(),
                ContextEntry {
                    name: entry.name.clone(),
                    kind: EntryKind::File,
                    mode: tree.mode_of(entry),
                    mtime: 0,
                    size,
                    content,
                },
            );
        }
        context
    }

    /// The entry called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&ContextEntry> {
        self.entries.get(name)
    }

    /// Every entry below the folder `dir` (`""` = the root), in name order.
    pub fn below<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a ContextEntry> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.entries
            .range(prefix.clone()..)
            .take_while(move |(name, _)| name.starts_with(&prefix))
            .map(|(_, e)| e)
    }

    /// Whether `name` is a folder (the root always is).
    pub fn is_dir(&self, name: &str) -> bool {
        name.is_empty() || self.entries.get(name).is_some_and(|e| e.kind == EntryKind::Dir)
    }

    /// The context paths a COPY/ADD source names, symlinks followed (where the content comes from):
    /// see [`BuildContext::matches`].
    pub fn select(&self, source: &str) -> Result<Vec<String>, String> {
        Ok(self.matches(source)?.into_iter().map(|m| m.real).collect())
    }

    /// The context paths a COPY/ADD source names: the cleaned path itself, or every entry whose path
    /// matches the wildcard pattern component by component (`*` never crosses `/`). Each is followed
    /// through the context's symlinks, as BuildKit follows source paths (wildcard matches included);
    /// the name as matched is kept for the copy's name.
    pub fn matches(&self, source: &str) -> Result<Vec<Match>, String> {
        let cleaned = clean(source);
        let named = if has_wildcard(&cleaned) {
            let matcher = globset::GlobBuilder::new(&cleaned)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("bad pattern `{source}`: {e}"))?
                .compile_matcher();
            let depth = cleaned.matches('/').count();
            let found: Vec<String> = self
                .entries
                .keys()
                .filter(|name| name.matches('/').count() == depth && matcher.is_match(name.as_str()))
                .cloned()
                .collect();
            if found.is_empty() {
                return Err(format!("no file in the build context matches `{source}`"));
            }
            found
        } else {
            vec![cleaned]
        };
        named
            .into_iter()
            .map(|name| {
                let real = self.follow(&name, source)?;
                Ok(Match { name, real })
            })
            .collect()
    }

    /// `name` with every symlink on its way followed inside the context (an absolute target starts
    /// again at the context root, `..` stops there).
    fn follow(&self, name: &str, source: &str) -> Result<String, String> {
        let mut pending: Vec<String> = name
            .rsplit('/')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => resolved.push(part),
            }
            match self.entries.get(&resolved.join("/")).map(|e| &e.kind) {
                None => return Err(format!("`{source}` is not in the build context")),
                Some(EntryKind::Symlink(target)) => {
                    hops += 1;
                    if hops > 40 {
                        return Err(format!(
                            "`{source}`: too many levels of symbolic links in the build context"
                        ));
                    }
                    resolved.pop();
                    if target.starts_with('/') {
                        resolved.clear();
                    }
                    pending.extend(target.rsplit('/').filter(|p| !p.is_empty()).map(str::to_owned));
                }
                Some(_) => {}
            }
        }
        Ok(resolved.join("/"))
    }

    /// A context of the inline files of `COPY <<NAME` heredocs (mode 0644, as BuildKit writes them).
    pub fn from_heredocs(heredocs: &[kiln_dockerfile::HeredocFile]) -> BuildContext {
        let mut context = BuildContext {
            label: "heredoc".to_owned(),
            entries: BTreeMap::new(),
        };
        for heredoc in heredocs {
            let name = clean(&heredoc.name);
            context.entries.insert(
                name.clone(),
                ContextEntry {
                    name,
                    kind: EntryKind::File,
                    mode: 0o644,
                    mtime: 0,
                    size: heredoc.content.len() as u64,
                    content: Content::Bytes(Arc::new(heredoc.content.clone().into_bytes())),
                },
            );
        }
        context
    }

    /// Writes the context out as a folder at `dir` (for bind mounts of an in-tree context).
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs_err::create_dir_all(dir)?;
        for entry in self.entries.values() {
            let path = dir.join(&entry.name);
            match (&entry.kind, &entry.content) {
                (EntryKind::Dir, _) => fs_err::create_dir_all(&path)?,
                (EntryKind::Symlink(target), _) => std::os::unix::fs::symlink(target, &path)?,
                (EntryKind::File, Content::Path(source, _)) => {
                    fs_err::copy(source, &path)?;
                }
                (EntryKind::File, Content::Bytes(bytes)) => fs_err::write(&path, bytes.as_slice())?,
                (EntryKind::File, Content::None) => fs_err::write(&path, b"")?,
            }
            if !matches!(entry.kind, EntryKind::Symlink(_)) {
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode))?;
            }
        }
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the context is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (tempfile::TempDir, BuildContext) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let root = dir.path();
        fs_err::create_dir_all(root.join("src/lib")).ok();
        fs_err::write(root.join("a.txt"), "a").ok();
        fs_err::write(root.join("b.txt"), "b").ok();
        fs_err::write(root.join("src/main.rs"), "fn main() {}").ok();
        fs_err::write(root.join("src/lib/x.rs"), "").ok();
        fs_err::write(root.join("secret.key"), "k").ok();
        std::os::unix::fs::symlink("src/main.rs", root.join("link")).ok();
        std::os::unix::fs::symlink("/src", root.join("srclink")).ok();
        std::os::unix::fs::symlink("cycle", root.join("cycle")).ok();
        std::os::unix::fs::symlink("../..", root.join("up")).ok();
        let ignore = DockerIgnore::parse("*.key\n").unwrap_or_else(|_| unreachable!());
        let context = BuildContext::from_dir(root, Some(&ignore)).unwrap_or_else(|e| panic!("{e}"));
        (dir, context)
    }

    #[test]
    fn selects_like_docker() {
        let (_dir, context) = sample();
        assert!(context.get("secret.key").is_none(), ".dockerignore applies");
        assert_eq!(
            context.select("*.txt"),
            Ok(vec!["a.txt".to_owned(), "b.txt".to_owned()])
        );
        assert_eq!(context.select("/src/../a.txt"), Ok(vec!["a.txt".to_owned()]));
        assert_eq!(
            context.select("../../a.txt"),
            Ok(vec!["a.txt".to_owned()]),
            "`..` stops at the root"
        );
        assert_eq!(context.select("src/*.rs"), Ok(vec!["src/main.rs".to_owned()]));
        assert_eq!(
            context.select("link"),
            Ok(vec!["src/main.rs".to_owned()]),
            "named symlinks are followed"
        );
        assert_eq!(context.select("."), Ok(vec![String::new()]));
        assert_eq!(
            context.select("srclink/main.rs"),
            Ok(vec!["src/main.rs".to_owned()]),
            "symlinks on the way are followed"
        );
        assert_eq!(
            context.matches("l*"),
            Ok(vec![Match {
                name: "link".to_owned(),
                real: "src/main.rs".to_owned()
            }]),
            "wildcard matches are followed and keep their own name"
        );
        assert!(context.select("cycle").unwrap_err().contains("too many levels"));
        assert_eq!(
            context.select("up/a.txt"),
            Ok(vec!["a.txt".to_owned()]),
            "`..` in a target stops at the root"
        );
        assert!(context.select("nope").is_err());
        assert!(context.select("*.none").is_err());
        let below: Vec<&str> = context.below("src").map(|e| e.name.as_str()).collect();
        assert_eq!(below, ["src/lib", "src/lib/x.rs", "src/main.rs"]);
    }
}
