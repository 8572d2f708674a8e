//! Cache mounts (`RUN --mount=type=cache`): folders under `kiln-build/cache-mounts/` kept between builds
//! and shared between steps that run at the same time (stages run concurrently, and so may builds) as the
//! mount's `sharing` says: `shared` lets them all in, `locked` makes each wait for the one before, and
//! `private` gives a step that finds the cache busy a folder of its own. Each folder has a lock file next
//! to it, held with `flock` for the whole step.

use std::path::{Path, PathBuf};

use kiln_dockerfile::{Mount, Sharing};
use rustix::fd::OwnedFd;
use rustix::fs::{FlockOperation, Mode, OFlags};
use sha2::{Digest as _, Sha256};

/// A cache folder held for one step; released when dropped.
#[derive(Debug)]
pub(crate) struct CacheLease {
    _lock: OwnedFd,
}

/// The folder of the cache `id` for `mount`, created (with the mount's uid, gid and mode; BuildKit's
/// defaults 0, 0, 0755) when new, held as `mount.sharing` says.
pub(crate) fn acquire(root: &Path, mount: &Mount, id: &str) -> Result<(PathBuf, CacheLease), String> {
    fs_err::create_dir_all(root).map_err(|e| e.to_string())?;
    let name = hex::encode(Sha256::digest(id.as_bytes()));
    let sharing = mount.sharing.unwrap_or(Sharing::Shared);
    for instance in 0u32.. {
        let base = if instance == 0 {
            name.clone()
        } else {
            format!("{name}-{instance}")
        };
        let lock = open_lock(&root.join(format!("{base}.lock")))?;
        let operation = match sharing {
            Sharing::Shared => FlockOperation::LockShared,
            Sharing::Locked => FlockOperation::LockExclusive,
            Sharing::Private => FlockOperation::NonBlockingLockExclusive,
        };
        match rustix::fs::flock(&lock, operation) {
            Ok(()) => {
                let dir = root.join(&base);
                create(&dir, mount)?;
                return Ok((dir, CacheLease { _lock: lock }));
            }
            Err(rustix::io::Errno::WOULDBLOCK) if sharing == Sharing::Private => {}
            Err(e) => return Err(format!("cannot lock cache mount `{id}`: {e}")),
        }
    }
    Err(format!("cache mount `{id}`: no free private instance"))
}

fn open_lock(path: &Path) -> Result<OwnedFd, String> {
    rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| format!("{}: {e}", path.display()))
}

/// Creates `dir` with the mount's owner and mode unless it exists: made under a temporary name and
/// renamed, so a folder that exists is always complete.
fn create(dir: &Path, mount: &Mount) -> Result<(), String> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    let fresh = tempfile::Builder::new()
        .prefix(".new-")
        .tempdir_in(parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    crate::run::set_owner_mode(
        fresh.path(),
        mount.uid.unwrap_or(0),
        mount.gid.unwrap_or(0),
        mount.mode.unwrap_or(0o755),
    )?;
    let fresh = fresh.keep();
    match std::fs::rename(&fresh, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir(&fresh);
            Ok(())
        }
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(sharing: &str) -> Mount {
        Mount::parse(&format!("type=cache,target=/cache,sharing={sharing}")).unwrap()
    }

    #[test]
    fn private_caches_split_when_busy_and_locked_ones_wait() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, lease_a) = acquire(tmp.path(), &mount("private"), "apt").unwrap();
        let (b, _lease_b) = acquire(tmp.path(), &mount("private"), "apt").unwrap();
        assert_ne!(a, b, "a busy private cache gives another folder");
        drop(lease_a);
        let (again, _lease) = acquire(tmp.path(), &mount("private"), "apt").unwrap();
        assert_eq!(again, a, "a free one is reused");
        let (s1, _l1) = acquire(tmp.path(), &mount("shared"), "go").unwrap();
        let (s2, _l2) = acquire(tmp.path(), &mount("shared"), "go").unwrap();
        assert_eq!(s1, s2);

        let (_, held) = acquire(tmp.path(), &mount("locked"), "lk").unwrap();
        let root = tmp.path().to_owned();
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let got = acquire(&root, &mount("locked"), "lk").map(|(dir, _)| dir);
            sender.send(got.is_ok()).unwrap();
        });
        assert!(
            receiver
                .recv_timeout(std::time::Duration::from_millis(300))
                .is_err(),
            "a locked cache must wait while held"
        );
        drop(held);
        assert!(receiver.recv_timeout(std::time::Duration::from_secs(10)).unwrap());
        waiter.join().unwrap();
    }
}
