//! Mount stubs and the working directory, handled inside the root filesystem only.
//!
//! A runtime creates every missing mount destination in the rootfs before mounting on it (an empty
//! directory, or an empty file for a bind mount of a file), and those stubs would end up in the
//! image layer. So before a run kiln creates them itself and records them, and after the run it
//! removes each one that is still an empty directory or empty file, deepest first, as BuildKit
//! does. Destinations below an earlier mount (`/dev/pts` under the `/dev` tmpfs) live in that
//! mount, not in the rootfs, and are left to the runtime. The working directory is the exception:
//! it is created when missing and kept, as docker does. When a stub's parent directory was not
//! modified by the process and all its stubs are gone again, its modification time is restored, so
//! a run that writes nothing leaves the rootfs as it found it.
//!
//! Every path is resolved the way the runtime resolves it (runc's `securejoin`): symlinks are
//! followed but confined to the root, so an absolute link `/etc -> /host/etc` means
//! `<rootfs>/host/etc`. Each step opens with `openat2(RESOLVE_IN_ROOT)`, and removal opens the
//! recorded (symlink-free) parents with `RESOLVE_NO_SYMLINKS`: nothing outside the rootfs is
//! created, removed or touched, even if the process swapped a directory for a symlink.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps, UTIME_OMIT};
use rustix::io::Errno;

use crate::RuntimeError;
use crate::config::Mount;

/// How many symlinks one path may go through (as the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// An open root directory; every path below is relative to it.
struct RootDir {
    path: PathBuf,
    fd: OwnedFd,
}

/// A container path resolved inside the root: the existing, symlink-free part and the components
/// that do not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resolved {
    existing: PathBuf,
    missing: Vec<OsString>,
}

impl Resolved {
    fn full(&self) -> PathBuf {
        let mut p = self.existing.clone();
        p.extend(&self.missing);
        p
    }
}

fn components(path: &OsStr) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_owned())
}

fn mtime(st: &Stat) -> Timespec {
    Timespec {
        tv_sec: st.st_mtime,
        tv_nsec: st.st_mtime_nsec as _,
    }
}

impl RootDir {
    fn open(path: &Path) -> Result<Self, RuntimeError> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| RuntimeError::io(path, e))?;
        Ok(RootDir {
            path: path.to_owned(),
            fd,
        })
    }

    /// The host path of `rel`, for error messages.
    fn host(&self, rel: &Path) -> PathBuf {
        self.path.join(rel)
    }

    /// Open a directory given by a symlink-free relative path, never leaving the root.
    fn open_dir(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        Ok(rustix::fs::openat2(
            &self.fd,
            rel,
            flags | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// Resolve an absolute container path as the runtime will (symlinks followed, confined to
    /// the root), without creating anything.
    fn resolve(&self, path: &str) -> io::Result<Resolved> {
        let mut existing = PathBuf::new();
        let mut missing: Vec<OsString> = Vec::new();
        let mut queue: VecDeque<OsString> = components(OsStr::new(path)).collect();
        let mut links = 0;
        while let Some(name) = queue.pop_front() {
            if name == ".." {
                if !missing.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "`..` after a component that does not exist",
                    ));
                }
                existing.pop();
                continue;
            }
            if !missing.is_empty() {
                missing.push(name);
                continue;
            }
            let candidate = existing.join(&name);
            let fd = match rustix::fs::openat2(
                &self.fd,
                &candidate,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    missing.push(name);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) {
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP.into());
                    }
                    let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
                    let target = OsStr::from_bytes(target.as_bytes());
                    if target.as_bytes().starts_with(b"/") {
                        existing = PathBuf::new();
                    }
                    for c in components(target).rev() {
                        queue.push_front(c);
                    }
                }
                FileType::Directory => existing = candidate,
                _ if queue.is_empty() => existing = candidate,
                _ => return Err(Errno::NOTDIR.into()),
            }
        }
        Ok(Resolved { existing, missing })
    }

    fn mtime_of(&self, rel: &Path) -> io::Result<Timespec> {
        Ok(mtime(&rustix::fs::fstat(self.open_dir(rel, OFlags::PATH)?)?))
    }

    /// Create the missing components of `r` (directories, the last one a file unless
    /// `last_is_dir`), calling `created` for each new path in creation order.
    fn create_missing(
        &self,
        r: &Resolved,
        last_is_dir: bool,
        mut created: impl FnMut(&Path, bool),
    ) -> io::Result<()> {
        let mut parent = r.existing.clone();
        for (i, name) in r.missing.iter().enumerate() {
            let dir = i + 1 < r.missing.len() || last_is_dir;
            let pfd = self.open_dir(&parent, OFlags::PATH)?;
            if dir {
                rustix::fs::mkdirat(&pfd, name, Mode::from_raw_mode(0o755))?;
            } else {
                rustix::fs::openat(
                    &pfd,
                    name,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )?;
            }
            parent.push(name);
            created(&parent, dir);
        }
        Ok(())
    }
}

/// A stub kiln created: removed after the run if still empty.
#[derive(Debug)]
struct Stub {
    path: PathBuf,
    dir: bool,
    anchor: usize,
}

/// An existing directory in which stubs were created, with its modification times.
#[derive(Debug)]
struct Anchor {
    path: PathBuf,
    before: Timespec,
    after_create: Option<Timespec>,
}

/// The stubs created for one run; [`Stubs::remove`] (or drop) takes them away again.
pub(crate) struct Stubs {
    root: RootDir,
    stubs: Vec<Stub>,
    anchors: Vec<Anchor>,
    finished: bool,
}

/// An error at container path `path` of `root`, named by its host path.
fn at(root: &RootDir, path: &str) -> impl FnOnce(io::Error) -> RuntimeError + use<> {
    let host = root.host(&components(OsStr::new(path)).collect::<PathBuf>());
    move |e| RuntimeError::io(host, e)
}

/// Create the working directory (kept) and the missing destinations of `mounts` (recorded) in
/// `rootfs`. See the module documentation for the rule.
pub(crate) fn prepare(rootfs: &Path, mounts: &[Mount], cwd: &str) -> Result<Stubs, RuntimeError> {
    let root = RootDir::open(rootfs)?;

    // Which destinations lie in the rootfs itself, not below an earlier mount.
    let mut covered: Vec<PathBuf> = Vec::new();
    let mut planned: Vec<(&str, bool)> = Vec::new();
    for mount in mounts {
        let full = root
            .resolve(&mount.destination)
            .map_err(at(&root, &mount.destination))?
            .full();
        if !covered.iter().any(|c| full.starts_with(c)) {
            let dir = !mount.is_bind() || Path::new(&mount.source).is_dir();
            planned.push((&mount.destination, dir));
        }
        covered.push(full);
    }

    let cwd_resolved = root.resolve(cwd).map_err(at(&root, cwd))?;
    let cwd_full = cwd_resolved.full();
    if !covered.iter().any(|c| cwd_full.starts_with(c) && cwd_full != *c) {
        root.create_missing(&cwd_resolved, true, |_, _| {})
            .map_err(at(&root, cwd))?;
    }

    let mut stubs = Stubs {
        root,
        stubs: Vec::new(),
        anchors: Vec::new(),
        finished: false,
    };
    for (destination, dir) in planned {
        stubs
            .create(destination, dir)
            .map_err(at(&stubs.root, destination))?;
    }
    for anchor in &mut stubs.anchors {
        anchor.after_create = stubs.root.mtime_of(&anchor.path).ok();
    }
    Ok(stubs)
}

impl Stubs {
    fn create(&mut self, destination: &str, dir: bool) -> io::Result<()> {
        let resolved = self.root.resolve(destination)?;
        if resolved.missing.is_empty() {
            return Ok(());
        }
        let anchor = match self.stubs.iter().find(|s| s.path == resolved.existing) {
            Some(stub) => stub.anchor,
            None => match self.anchors.iter().position(|a| a.path == resolved.existing) {
                Some(i) => i,
                None => {
                    let before = self.root.mtime_of(&resolved.existing)?;
                    self.anchors.push(Anchor {
                        path: resolved.existing.clone(),
                        before,
                        after_create: None,
                    });
                    self.anchors.len() - 1
                }
            },
        };
        let stubs = &mut self.stubs;
        self.root.create_missing(&resolved, dir, |path, dir| {
            stubs.push(Stub {
                path: path.to_owned(),
                dir,
                anchor,
            })
        })
    }

    /// The stubs created, as paths relative to the rootfs (for tests and logs).
    #[cfg(test)]
    fn created(&self) -> Vec<(PathBuf, bool)> {
        self.stubs.iter().map(|s| (s.path.clone(), s.dir)).collect()
    }

    /// Remove every stub that is still empty, deepest first, and restore the modification time of
    /// directories the process did not touch.
    pub(crate) fn remove(mut self) -> Result<(), RuntimeError> {
        self.finished = true;
        self.remove_all()
    }

    fn remove_all(&mut self) -> Result<(), RuntimeError> {
        let touched: Vec<bool> = self
            .anchors
            .iter()
            .map(|a| a.after_create.is_none() || self.root.mtime_of(&a.path).ok() != a.after_create)
            .collect();
        let mut kept = vec![false; self.anchors.len()];
        let mut first_error = None;
        for stub in self.stubs.iter().rev() {
            match self.remove_stub(stub) {
                Ok(true) => {}
                Ok(false) => kept[stub.anchor] = true,
                Err(e) => {
                    kept[stub.anchor] = true;
                    first_error.get_or_insert(RuntimeError::io(self.root.host(&stub.path), e));
                }
            }
        }
        for (i, anchor) in self.anchors.iter().enumerate() {
            if touched[i] || kept[i] {
                continue;
            }
            let restored = self.root.open_dir(&anchor.path, OFlags::RDONLY).and_then(|fd| {
                let times = Timestamps {
                    last_access: Timespec {
                        tv_sec: 0,
                        tv_nsec: UTIME_OMIT,
                    },
                    last_modification: anchor.before,
                };
                Ok(rustix::fs::futimens(&fd, &times)?)
            });
            if let Err(e) = restored {
                first_error.get_or_insert(RuntimeError::io(self.root.host(&anchor.path), e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Remove one stub if it is still what kiln created (an empty directory or empty file).
    /// `Ok(true)` when it is gone.
    fn remove_stub(&self, stub: &Stub) -> io::Result<bool> {
        let (Some(parent), Some(name)) = (stub.path.parent(), stub.path.file_name()) else {
            return Ok(false);
        };
        let pfd = match self.root.open_dir(parent, OFlags::PATH) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => return Ok(true),
            // A parent became a symlink or a file: not ours any more.
            Err(e)
                if [Errno::LOOP, Errno::NOTDIR, Errno::XDEV]
                    .iter()
                    .any(|n| e.raw_os_error() == Some(n.raw_os_error())) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let st = match rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        let flags = match (stub.dir, kind) {
            (true, FileType::Directory) => AtFlags::REMOVEDIR,
            (false, FileType::RegularFile) if st.st_size == 0 => AtFlags::empty(),
            _ => return Ok(false),
        };
        match rustix::fs::unlinkat(&pfd, name, flags) {
            Ok(()) => Ok(true),
            Err(Errno::NOTEMPTY | Errno::EXIST | Errno::BUSY) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Stubs {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            if let Err(e) = self.remove_all() {
                tracing::warn!("removing mount stubs: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    fn mount(destination: &str, kind: &str, source: &str) -> Mount {
        Mount {
            destination: destination.into(),
            kind: kind.into(),
            source: source.into(),
            options: Vec::new(),
        }
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for d in ["bin", "etc", "proc", "dev", "sys", "tmp"] {
            fs_err::create_dir(dir.path().join(d)).unwrap();
        }
        dir
    }

    fn resolve(root: &Path, path: &str) -> Resolved {
        RootDir::open(root).unwrap().resolve(path).unwrap()
    }

    fn res(existing: &str, missing: &[&str]) -> Resolved {
        Resolved {
            existing: existing.into(),
            missing: missing.iter().map(OsString::from).collect(),
        }
    }

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let dir = tree();
        symlink("/tmp/elsewhere", dir.path().join("etc2")).unwrap();
        symlink("../bin", dir.path().join("tmp/up")).unwrap();
        symlink("../../../../../../bin", dir.path().join("tmp/far")).unwrap();
        assert_eq!(
            resolve(dir.path(), "/etc/resolv.conf"),
            res("etc", &["resolv.conf"])
        );
        assert_eq!(
            resolve(dir.path(), "/etc2/hosts"),
            res("tmp", &["elsewhere", "hosts"])
        );
        assert_eq!(resolve(dir.path(), "/tmp/up/sh"), res("bin", &["sh"]));
        assert_eq!(resolve(dir.path(), "/tmp/far/sh"), res("bin", &["sh"]));
        assert_eq!(resolve(dir.path(), "//./tmp/../bin/"), res("bin", &[]));
        assert_eq!(resolve(dir.path(), "/"), res("", &[]));
    }

    #[test]
    fn symlink_loops_and_files_as_directories_fail() {
        let dir = tree();
        symlink("/loop", dir.path().join("loop")).unwrap();
        fs_err::write(dir.path().join("etc/file"), "").unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        assert_eq!(
            root.resolve("/loop/x").unwrap_err().raw_os_error(),
            Some(Errno::LOOP.raw_os_error())
        );
        assert_eq!(
            root.resolve("/etc/file/x").unwrap_err().raw_os_error(),
            Some(Errno::NOTDIR.raw_os_error())
        );
    }

    #[test]
    fn stubs_below_earlier_mounts_are_left_to_the_runtime() {
        let dir = tree();
        let host_file = dir.path().join("host-file");
        fs_err::write(&host_file, "x").unwrap();
        let mounts = [
            mount("/dev", "tmpfs", "tmpfs"),
            mount("/dev/pts", "devpts", "devpts"),
            mount("/etc/resolv.conf", "bind", host_file.to_str().unwrap()),
            mount("/cache/a/b", "bind", dir.path().join("bin").to_str().unwrap()),
            mount("/scratch", "tmpfs", "tmpfs"),
            mount("/scratch/inner", "tmpfs", "tmpfs"),
        ];
        let stubs = prepare(dir.path(), &mounts, "/work/src").unwrap();
        assert_eq!(
            stubs.created(),
            [
                ("etc/resolv.conf".into(), false),
                ("cache".into(), true),
                ("cache/a".into(), true),
                ("cache/a/b".into(), true),
                ("scratch".into(), true),
            ]
        );
        assert!(dir.path().join("work/src").is_dir(), "cwd is created");
        stubs.remove().unwrap();
        for gone in ["etc/resolv.conf", "cache", "scratch"] {
            assert!(!dir.path().join(gone).exists(), "{gone} removed");
        }
        assert!(dir.path().join("work/src").is_dir(), "cwd is kept");
    }

    #[test]
    fn stubs_that_were_written_to_are_kept_and_mtimes_restored_otherwise() {
        let dir = tree();
        let old = Timestamps {
            last_access: Timespec {
                tv_sec: 1000,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: 1000,
                tv_nsec: 0,
            },
        };
        for d in ["etc", "tmp"] {
            let fd = rustix::fs::open(dir.path().join(d), OFlags::RDONLY, Mode::empty()).unwrap();
            rustix::fs::futimens(&fd, &old).unwrap();
        }
        let mounts = [
            mount("/etc/a", "tmpfs", "tmpfs"),
            mount("/tmp/x/y", "tmpfs", "tmpfs"),
        ];
        let stubs = prepare(dir.path(), &mounts, "/").unwrap();
        fs_err::write(dir.path().join("tmp/x/written"), "data").unwrap();
        stubs.remove().unwrap();
        let mtime = |p: &str| fs_err::metadata(dir.path().join(p)).unwrap().modified().unwrap();
        assert!(!dir.path().join("etc/a").exists());
        assert_eq!(
            mtime("etc"),
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000)
        );
        assert!(dir.path().join("tmp/x/written").exists());
        assert!(!dir.path().join("tmp/x/y").exists());
        assert_ne!(
            mtime("tmp"),
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000)
        );
    }

    #[test]
    fn absolute_symlinks_never_reach_the_host() {
        let host = tempfile::tempdir().unwrap();
        let dir = tree();
        fs_err::remove_dir(dir.path().join("etc")).unwrap();
        symlink(host.path(), dir.path().join("etc")).unwrap();
        let mounts = [mount("/etc/hosts", "bind", "/etc/hosts")];
        let stubs = prepare(dir.path(), &mounts, "/etc/work").unwrap();
        let inside = dir.path().join(host.path().strip_prefix("/").unwrap());
        assert!(inside.join("hosts").is_file());
        assert!(inside.join("work").is_dir());
        assert_eq!(fs_err::read_dir(host.path()).unwrap().count(), 0);
        stubs.remove().unwrap();
        assert!(!inside.join("hosts").exists());
        assert_eq!(fs_err::read_dir(host.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_parent_swapped_for_a_symlink_is_not_followed_on_removal() {
        let outside = tempfile::tempdir().unwrap();
        fs_err::create_dir(outside.path().join("b")).unwrap();
        let dir = tree();
        let stubs = prepare(dir.path(), &[mount("/a/b", "tmpfs", "tmpfs")], "/").unwrap();
        fs_err::remove_dir_all(dir.path().join("a")).unwrap();
        symlink(outside.path(), dir.path().join("a")).unwrap();
        stubs.remove().unwrap();
        assert!(outside.path().join("b").is_dir());
    }
}
