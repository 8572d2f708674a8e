//! The host side of [`Network::Private`]: for each run a network namespace of its own, attached to
//! slirp4netns for outbound access, and the `/etc/resolv.conf` and `/etc/hosts` the container sees.
//!
//! The namespace is made before the runtime starts (a thread unshares its network namespace and
//! bind-mounts it on a file in the bundle) so that slirp4netns can be attached and configured
//! before the process runs: the container joins it through `linux.namespaces[].path`. slirp4netns
//! runs with `--disable-host-loopback` (10.0.2.2 does not lead to the host's 127.0.0.1), in a sandbox
//! of its own (`--enable-sandbox`: its own mount namespace, capabilities dropped) and under seccomp
//! (`--enable-seccomp`). It ends when the run ends, and by itself when kiln dies (`--exit-fd`: a pipe
//! whose only writer is kiln).

use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use command_fds::CommandFdExt;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::config::NetworkFiles;
use crate::{Network, RunSpec, RuntimeError};

/// The slirp4netns binary used unless the runtime is given another.
pub(crate) const SLIRP4NETNS: &str = "slirp4netns";
/// The Debian package that has it, for the error when it is missing.
const PACKAGE: &str = "slirp4netns";
/// The DNS forwarder slirp4netns offers inside the namespace (to the host's resolvers).
pub(crate) const NAMESERVER: &str = "10.0.2.3";
/// slirp4netns's maximum: fewer, larger packets through the user-mode stack (podman's default too).
const MTU: &str = "65520";
/// How often a wait for slirp4netns checks whether the run was cancelled.
const POLL_MS: u16 = 5;

/// A private network for one run; dropping it stops slirp4netns and removes the namespace.
#[derive(Debug)]
pub(crate) struct PrivateNetwork {
    files: NetworkFiles,
    /// The namespace file is a mount point (unmounted on drop).
    mounted: bool,
    slirp: Option<Child>,
    /// The write end of slirp4netns's exit pipe: closing it ends slirp4netns.
    exit: Option<OwnedFd>,
}

impl PrivateNetwork {
    /// The private network of `spec` when it asks for one (see [`PrivateNetwork::start`]).
    pub(crate) fn for_spec(
        spec: &RunSpec,
        slirp4netns: &Path,
        dir: &Path,
        cancelled: &AtomicBool,
    ) -> Result<Option<PrivateNetwork>, RuntimeError> {
        match spec.network {
            Network::Private => Self::start(slirp4netns, dir, &spec.id, &spec.hostname, cancelled).map(Some),
            Network::Host | Network::None => Ok(None),
        }
    }

    /// Makes the namespace and the two files in `dir` (the run's bundle), starts `slirp4netns` on the
    /// namespace and waits until it has configured the interface. `cancelled` stops the wait.
    fn start(
        slirp4netns: &Path,
        dir: &Path,
        id: &str,
        hostname: &str,
        cancelled: &AtomicBool,
    ) -> Result<PrivateNetwork, RuntimeError> {
        let files = NetworkFiles {
            netns: dir.join("netns"),
            resolv_conf: dir.join("resolv.conf"),
            hosts: dir.join("hosts"),
        };
        let host_resolv = fs_err::read_to_string("/etc/resolv.conf").unwrap_or_default();
        write_readable(&files.resolv_conf, &resolv_conf(&host_resolv))?;
        write_readable(&files.hosts, &hosts(hostname))?;
        fs_err::write(&files.netns, "").map_err(|e| RuntimeError::io(&files.netns, e))?;
        let mut network = PrivateNetwork {
            files,
            mounted: false,
            slirp: None,
            exit: None,
        };
        network.make_namespace(id)?;
        network.start_slirp(slirp4netns, dir, id, cancelled)?;
        Ok(network)
    }

    /// What the container's configuration needs.
    pub(crate) fn files(&self) -> &NetworkFiles {
        &self.files
    }

    /// A new network namespace, kept by a bind mount on `files.netns`. A thread of its own unshares
    /// (network namespaces are per thread) and ends right after, so nothing else ever runs in it.
    fn make_namespace(&mut self, id: &str) -> Result<(), RuntimeError> {
        let target = self.files.netns.clone();
        let made = std::thread::spawn(move || -> Result<(), String> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("cannot create a network namespace: {e}"))?;
            rustix::mount::mount_bind("/proc/thread-self/ns/net", &target)
                .map_err(|e| format!("cannot keep the network namespace at {}: {e}", target.display()))
        })
        .join()
        .unwrap_or_else(|_| Err("the thread making the network namespace panicked".to_owned()));
        made.map_err(|message| network_error(id, message))?;
        self.mounted = true;
        Ok(())
    }

    fn start_slirp(
        &mut self,
        binary: &Path,
        dir: &Path,
        id: &str,
        cancelled: &AtomicBool,
    ) -> Result<(), RuntimeError> {
        let (mut ready, ready_child) = std::io::pipe().map_err(|e| RuntimeError::io(dir, e))?;
        let (exit_child, exit) = std::io::pipe().map_err(|e| RuntimeError::io(dir, e))?;
        let (ready_child, exit_child) = (OwnedFd::from(ready_child), OwnedFd::from(exit_child));
        let log_path = dir.join("slirp4netns.log");
        let log = fs_err::File::create(&log_path).map_err(|e| RuntimeError::io(&log_path, e))?;
        let log_err = log
            .file()
            .try_clone()
            .map_err(|e| RuntimeError::io(&log_path, e))?;
        let mut command = Command::new(binary);
        command
            .arg("--configure")
            .arg(format!("--mtu={MTU}"))
            .arg("--disable-host-loopback")
            .arg("--enable-sandbox")
            .arg("--enable-seccomp")
            .arg(format!("--ready-fd={}", raw(&ready_child)))
            .arg(format!("--exit-fd={}", raw(&exit_child)))
            .arg("--netns-type=path")
            .arg(&self.files.netns)
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.into_file()))
            .stderr(Stdio::from(log_err))
            .preserved_fds(vec![ready_child, exit_child]);
        let spawned = command.spawn();
        // The command holds kiln's copies of the child's pipe ends: without them a dead slirp4netns
        // reads as the end of the ready pipe.
        drop(command);
        let child = spawned.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                RuntimeError::NetworkHelperNotFound {
                    binary: binary.to_owned(),
                    package: PACKAGE,
                }
            } else {
                RuntimeError::Spawn {
                    binary: binary.to_owned(),
                    source: e,
                }
            }
        })?;
        self.slirp = Some(child);
        self.exit = Some(exit.into());

        let fail = |what: String| {
            let log = fs_err::read_to_string(&log_path).unwrap_or_default();
            let log = log.split_whitespace().collect::<Vec<_>>().join(" ");
            network_error(id, format!("slirp4netns {what}: {log}"))
        };
        loop {
            if cancelled.load(Ordering::SeqCst) {
                return Err(RuntimeError::Cancelled { id: id.to_owned() });
            }
            let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(POLL_MS)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(fail(format!("cannot be waited for ({e})"))),
            }
            let mut byte = [0u8; 1];
            return match ready.read(&mut byte) {
                Ok(1) if byte[0] == b'1' => Ok(()),
                Ok(_) => {
                    let status = self.slirp.as_mut().and_then(|c| c.wait().ok());
                    let status = status.map_or_else(String::new, |s| format!(" ({s})"));
                    Err(fail(format!("exited before the network was ready{status}")))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(fail(format!("cannot be waited for ({e})"))),
            };
        }
    }
}

impl Drop for PrivateNetwork {
    fn drop(&mut self) {
        // Closing the exit pipe ends slirp4netns; the kill makes sure, and a thread reaps it.
        self.exit = None;
        if let Some(mut child) = self.slirp.take() {
            let _ = child.kill();
            // Its exit closes the tap device, which takes the kernel milliseconds: reaped aside.
            let reaper = std::thread::Builder::new().name("slirp4netns-reaper".into());
            if let Err(e) = reaper.spawn(move || child.wait()) {
                tracing::debug!("slirp4netns is left unreaped: {e}");
            }
        }
        if self.mounted
            && let Err(e) = rustix::mount::unmount(&self.files.netns, rustix::mount::UnmountFlags::DETACH)
        {
            tracing::warn!("cannot unmount {}: {e}", self.files.netns.display());
        }
    }
}

fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

fn network_error(id: &str, message: String) -> RuntimeError {
    RuntimeError::Network {
        id: id.to_owned(),
        message,
    }
}

/// Writes `text` to `path` readable by any user of the container (mode 0644).
fn write_readable(path: &Path, text: &str) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::write(path, text).map_err(|e| RuntimeError::io(path, e))?;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| RuntimeError::io(path, e))
}

/// The container's `/etc/resolv.conf`: slirp4netns's DNS forwarder, with the host's `search`,
/// `domain` and `options` lines (the host's nameservers may be loopback addresses, unreachable from
/// the namespace; the forwarder asks them on the container's behalf).
fn resolv_conf(host: &str) -> String {
    let mut out = format!("nameserver {NAMESERVER}\n");
    for line in host.lines().map(str::trim) {
        let keyword = line.split_whitespace().next().unwrap_or_default();
        if matches!(keyword, "search" | "domain" | "options") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The container's `/etc/hosts`: localhost and the container's hostname on loopback, as BuildKit
/// writes it. The host's own entries are not copied: names it maps to its loopback would lead to
/// the container's.
fn hosts(hostname: &str) -> String {
    let name = if hostname.is_empty() {
        String::new()
    } else {
        format!(" {hostname}")
    };
    format!("127.0.0.1\tlocalhost{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_points_at_slirp_and_keeps_the_host_s_search_and_options() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch corp.example\n\
                    options edns0 trust-ad\n";
        assert_eq!(
            resolv_conf(host),
            "nameserver 10.0.2.3\nsearch corp.example\noptions edns0 trust-ad\n"
        );
        assert_eq!(resolv_conf(""), "nameserver 10.0.2.3\n");
    }

    #[test]
    fn hosts_has_localhost_and_the_hostname() {
        assert_eq!(
            hosts("kiln"),
            "127.0.0.1\tlocalhost kiln\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        );
        assert!(hosts("").starts_with("127.0.0.1\tlocalhost\n"));
    }
}
