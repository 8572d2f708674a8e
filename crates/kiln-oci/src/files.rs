//! Files written next to a path: the folder a path is in (a bare file name is in `.`), and atomic
//! writes through a temporary file in that folder.

use std::io::{self, Write};
use std::path::Path;

use tempfile::NamedTempFile;

/// The folder `path` is in: its parent, or `.` for a bare file name (whose parent is the empty path)
/// and for `/`.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary file named `PREFIX…` in the folder of `path`, to be [`persist`]ed as `path`.
pub fn temp_beside(path: &Path, prefix: &str) -> io::Result<NamedTempFile> {
    let dir = parent_dir(path);
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create a file in {}: {e}", dir.display()),
            )
        })
}

/// Renames `temp` (from [`temp_beside`]) to `path`, replacing what is there.
pub fn persist(temp: NamedTempFile, path: &Path) -> io::Result<()> {
    temp.persist(path).map_err(|e| {
        io::Error::new(
            e.error.kind(),
            format!("cannot rename to {}: {}", path.display(), e.error),
        )
    })?;
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename over
/// `path`, fsync of the folder. Errors name the path at fault.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = temp_beside(path, ".tmp-")?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", temp.path().display())))?;
    persist(temp, path)?;
    fs_err::File::open(parent_dir(path))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_file_name_is_in_the_current_folder() {
        assert_eq!(parent_dir(Path::new("Dockerfile")), Path::new("."));
        assert_eq!(parent_dir(Path::new("/")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/b")), Path::new("a"));
        assert_eq!(parent_dir(Path::new("/b")), Path::new("/"));
    }
}
