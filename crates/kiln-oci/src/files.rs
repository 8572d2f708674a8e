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

/// Makes the complete `temp` (from [`temp_beside`]) `path`, replacing what is there: its permission bits
/// set to `mode` (a temporary file starts as 0600, which is rarely what the file is meant to be: a
/// `HASH` file's mode is even part of a taskgraph context hash), fsync, rename, fsync of the folder.
/// The one way kiln makes a file appear whole or not at all.
pub fn persist(temp: NamedTempFile, path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let named =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot write {}: {e}", temp.path().display()));
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
        .and_then(|()| temp.as_file().sync_all())
        .map_err(named)?;
    temp.persist(path).map_err(|e| {
        io::Error::new(
            e.error.kind(),
            format!("cannot rename to {}: {}", path.display(), e.error),
        )
    })?;
    fs_err::File::open(parent_dir(path))?.sync_all()
}

/// Writes `bytes` to `path` atomically with permission bits `mode` ([`persist`]). Errors name the path
/// at fault.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut temp = temp_beside(path, ".tmp-")?;
    temp.write_all(bytes)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", temp.path().display())))?;
    persist(temp, path, mode)
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

    #[test]
    fn an_atomic_write_has_the_mode_asked_for() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("HASH");
        for mode in [0o644, 0o600] {
            write_atomic(&path, b"sha256:x\n", mode).unwrap_or_else(|e| panic!("{e}"));
            let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(meta.permissions().mode() & 0o777, mode);
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).map(Iterator::count).ok(),
            Some(1),
            "no temp file left"
        );
    }
}
