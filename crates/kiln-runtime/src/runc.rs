//! [`RuncRuntime`]: runs a [`RunSpec`] with `runc run` (or any runtime with runc's command line).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use crate::config::{self, host_bounding_capabilities, restrict_capabilities};
use crate::network::PrivateNetwork;
use crate::{OutputSink, RunOutcome, RunSpec, Runtime, RuntimeError, Stream, rootfs};

/// How often a waiting run checks whether it was cancelled.
const POLL: Duration = Duration::from_millis(5);
/// Size of one output chunk.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight between the reader threads and the sink (bounds memory for fast writers).
const CHANNEL_DEPTH: usize = 16;

/// Runs processes with `runc` (or crun/youki, which share its command line; crun fails on
/// cgroup-v1 hybrid hosts such as kiln's CI machines).
///
/// Each run writes a temporary bundle (`config.json` from [`config::oci_spec`], removed afterwards) in a
/// private folder (`0700`, the file `0600`: the process environment can hold secrets) under
/// `<state_root>-bundles` on the same filesystem as the state (`/run`, memory only, by default), locked
/// while it is used; the first run of a runtime removes the bundles and the containers (`kiln-<pid>-…`)
/// that a killed kiln left behind.
/// runs `<binary> --root <state_root> run --bundle <bundle> <id>` with stdin from `/dev/null`,
/// streams stdout and stderr to the sink as they arrive, and always runs
/// `<binary> --root <state_root> delete --force <id>` afterwards (also on error or panic).
///
/// Cancellation: [`RuncRuntime::kill_all`] kills every running container; those runs return
/// [`RuntimeError::Cancelled`] within milliseconds and leave no state in the state root. A run
/// whose runtime process is killed by someone else returns [`RuntimeError::RuntimeKilled`], after
/// the same cleanup. If kiln itself dies without calling `kill_all`, the container may outlive it.
#[derive(Debug)]
pub struct RuncRuntime {
    binary: PathBuf,
    state_root: PathBuf,
    bundle_parent: Option<PathBuf>,
    slirp4netns: PathBuf,
    cancelled: AtomicBool,
    running: Mutex<Vec<String>>,
    swept: std::sync::Once,
}

impl RuncRuntime {
    /// A runtime using `binary` (a path, or a name looked up on `PATH`: `"runc"` by default) with
    /// its container state under `state_root` (created when missing).
    pub fn new(binary: impl Into<PathBuf>, state_root: impl Into<PathBuf>) -> Self {
        RuncRuntime {
            binary: binary.into(),
            state_root: state_root.into(),
            bundle_parent: None,
            slirp4netns: PathBuf::from(crate::network::SLIRP4NETNS),
            cancelled: AtomicBool::new(false),
            running: Mutex::new(Vec::new()),
            swept: std::sync::Once::new(),
        }
    }

    /// `runc` from `PATH`, with its state under `state_root`.
    pub fn runc(state_root: impl Into<PathBuf>) -> Self {
        Self::new("runc", state_root)
    }

    /// Put the temporary bundle directories under `dir` instead of `<state_root>-bundles`.
    pub fn with_bundle_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bundle_parent = Some(dir.into());
        self
    }

    /// Use `binary` (a path, or a name looked up on `PATH`: `"slirp4netns"` by default) for the
    /// network of [`Network::Private`](crate::Network::Private) runs.
    pub fn with_slirp4netns(mut self, binary: impl Into<PathBuf>) -> Self {
        self.slirp4netns = binary.into();
        self
    }

    /// The runtime binary as configured.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The runtime's state directory (`--root`).
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    /// Kill every running container (for Ctrl-C): their runs return [`RuntimeError::Cancelled`]
    /// promptly, after the usual cleanup, and later runs fail with it at once.
    pub fn kill_all(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// The ids of the containers running now.
    pub fn running(&self) -> Vec<String> {
        self.running.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn bundle_parent(&self) -> PathBuf {
        self.bundle_parent.clone().unwrap_or_else(|| {
            let mut name = self.state_root.file_name().unwrap_or_default().to_os_string();
            name.push("-bundles");
            self.state_root.with_file_name(name)
        })
    }

    /// Once per runtime: removes the bundles and containers of kiln processes that died without
    /// cleaning up (killed with SIGKILL or by the OOM killer, or crashed).
    fn sweep_leftovers(&self) {
        self.swept.call_once(|| {
            match kiln_rootfs::workdir::sweep_dead(&self.bundle_parent()) {
                Ok(swept) if swept.folders > 0 => {
                    tracing::info!("removed {} bundle(s) left by a killed kiln", swept.folders)
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot sweep old bundles: {e}"),
            }
            let Ok(entries) = std::fs::read_dir(&self.state_root) else {
                return;
            };
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = id.strip_prefix("kiln-").and_then(|rest| rest.split('-').next()) else {
                    continue;
                };
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let guard = ContainerGuard {
                        runtime: self,
                        id: &id,
                        deleted: AtomicBool::new(false),
                    };
                    guard.delete();
                }
            }
        });
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.state_root);
        cmd
    }

    fn spawn_error(&self, source: std::io::Error) -> RuntimeError {
        if source.kind() == std::io::ErrorKind::NotFound {
            RuntimeError::RuntimeNotFound {
                binary: self.binary.clone(),
            }
        } else {
            RuntimeError::Spawn {
                binary: self.binary.clone(),
                source,
            }
        }
    }

    /// Wait for `child`, killing it when the run is cancelled or `abort` is set.
    fn wait(&self, child: &mut Child, abort: &AtomicBool) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if self.cancelled.load(Ordering::SeqCst) || abort.load(Ordering::SeqCst) {
                // Killing runc leaves the container running; the delete that follows kills it.
                let _ = child.kill();
                return child.wait();
            }
            std::thread::sleep(POLL);
        }
    }
}

/// `delete --force` for one container, on every path out of [`RuncRuntime::run`].
struct ContainerGuard<'a> {
    runtime: &'a RuncRuntime,
    id: &'a str,
    deleted: AtomicBool,
}

impl ContainerGuard<'_> {
    fn register(runtime: &RuncRuntime, id: &str) {
        if let Ok(mut running) = runtime.running.lock() {
            running.push(id.to_owned());
        }
    }

    fn delete(&self) {
        if self.deleted.swap(true, Ordering::SeqCst) {
            self.unregister();
            return;
        }
        let out = self
            .runtime
            .command()
            .args(["delete", "--force", self.id])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) if !out.status.success() => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if !stderr.contains("does not exist") && !stderr.contains("not found") {
                    tracing::warn!(id = self.id, "delete --force failed: {}", stderr.trim());
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(id = self.id, "delete --force failed: {e}"),
        }
        self.unregister();
    }

    fn unregister(&self) {
        if let Ok(mut running) = self.runtime.running.lock() {
            running.retain(|r| r != self.id);
        }
    }
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Writes `bytes` to the new file `path`, readable by its owner only from the start.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    use std::io::Write as _;
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Copy one pipe to the channel in chunks until it closes.
fn pump(mut pipe: impl Read, stream: Stream, tx: mpsc::SyncSender<(Stream, Vec<u8>)>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tx.send((stream, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("reading container {stream:?}: {e}");
                return;
            }
        }
    }
}

/// The error messages of a runc/crun JSON log (`{"level":"error","msg":…}` per line); plain text
/// lines are taken as they are.
fn log_errors(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|line| match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => (matches!(v["level"].as_str(), Some("error" | "fatal" | "panic")))
                .then(|| v["msg"].as_str().unwrap_or(line).to_owned()),
            Err(_) => Some(line.to_owned()),
        })
        .collect()
}

/// Check what runc would refuse or misread before anything touches the disk.
fn validate(spec: &RunSpec) -> Result<(), RuntimeError> {
    let id = &spec.id;
    let id_ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if !id_ok {
        return Err(RuntimeError::invalid(
            id,
            "the id must be letters, digits, `_`, `+`, `-` or `.`",
        ));
    }
    if spec.argv.is_empty() {
        return Err(RuntimeError::invalid(id, "empty argv"));
    }
    if !spec.cwd.starts_with('/') {
        return Err(RuntimeError::invalid(
            id,
            format!("working directory `{}` is not absolute", spec.cwd),
        ));
    }
    if let Some(m) = spec.mounts.iter().find(|m| !m.destination().starts_with('/')) {
        return Err(RuntimeError::invalid(
            id,
            format!("mount destination `{}` is not absolute", m.destination()),
        ));
    }
    if !spec.rootfs.is_absolute() || !spec.rootfs.is_dir() {
        return Err(RuntimeError::invalid(
            id,
            format!(
                "rootfs `{}` is not an absolute path to a directory",
                spec.rootfs.display()
            ),
        ));
    }
    Ok(())
}

impl Runtime for RuncRuntime {
    fn run(&self, spec: &RunSpec, output: &mut dyn OutputSink) -> Result<RunOutcome, RuntimeError> {
        validate(spec)?;
        let cancelled = || RuntimeError::Cancelled { id: spec.id.clone() };
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(cancelled());
        }

        self.sweep_leftovers();
        let bundle_parent = self.bundle_parent();
        let bundle = kiln_rootfs::WorkDir::create(&bundle_parent, "bundle-")?;
        // Declared after the bundle, so dropped before it: the namespace is unmounted first.
        let network = PrivateNetwork::for_spec(spec, &self.slirp4netns, bundle.path(), &self.cancelled)?;
        let mut oci = config::oci_spec_with_network(spec, network.as_ref().map(PrivateNetwork::files));
        restrict_capabilities(&mut oci, host_bounding_capabilities());
        let config_path = bundle.path().join("config.json");
        let config_json = serde_json::to_vec_pretty(&oci).map_err(|e| RuntimeError::io(&config_path, e))?;
        write_private(&config_path, &config_json).map_err(|e| RuntimeError::io(&config_path, e))?;
        let log_path = bundle.path().join("log.json");
        fs_err::create_dir_all(&self.state_root).map_err(|e| RuntimeError::io(&self.state_root, e))?;

        let stubs = rootfs::prepare(&spec.rootfs, &oci.mounts, &spec.cwd)?;

        ContainerGuard::register(self, &spec.id);
        let guard = ContainerGuard {
            runtime: self,
            id: &spec.id,
            deleted: AtomicBool::new(false),
        };
        let mut child = self
            .command()
            .arg("--log")
            .arg(&log_path)
            .args(["--log-format", "json", "run", "--bundle"])
            .arg(bundle.path())
            .arg(&spec.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                // No runtime process, no container: nothing to delete.
                guard.deleted.store(true, Ordering::SeqCst);
                self.spawn_error(e)
            })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        let abort = AtomicBool::new(false);
        let (status, sink_panic) = std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel(CHANNEL_DEPTH);
            if let Some(out) = stdout {
                let tx = tx.clone();
                scope.spawn(move || pump(out, Stream::Stdout, tx));
            }
            if let Some(err) = stderr {
                let tx = tx.clone();
                scope.spawn(move || pump(err, Stream::Stderr, tx));
            }
            drop(tx);
            let (guard, abort) = (&guard, &abort);
            let waiter = scope.spawn(move || {
                let status = self.wait(&mut child, abort);
                // After runc exits (or is killed) nothing of the container may keep the pipes open.
                guard.delete();
                status
            });
            // A panicking sink stops reading: kill the container rather than let it block on a
            // full pipe forever, then let the panic go on.
            let sink_panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for (stream, bytes) in rx {
                    output.write(stream, &bytes);
                }
            }))
            .err();
            if sink_panic.is_some() {
                abort.store(true, Ordering::SeqCst);
            }
            (waiter.join(), sink_panic)
        });
        guard.delete();
        let removed = stubs.remove();
        if let Some(panic) = sink_panic {
            std::panic::resume_unwind(panic);
        }

        let status = match status {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(RuntimeError::io(&self.binary, e)),
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(cancelled());
        }
        removed?;
        if status.success() {
            return Ok(RunOutcome::from_exit_code(0));
        }
        let errors = log_errors(&fs_err::read_to_string(&log_path).unwrap_or_default());
        if !errors.is_empty() {
            return Err(RuntimeError::Start {
                id: spec.id.clone(),
                message: errors.join("; "),
            });
        }
        match status.code() {
            Some(code) => Ok(RunOutcome::from_exit_code(code)),
            None => {
                use std::os::unix::process::ExitStatusExt;
                Err(RuntimeError::RuntimeKilled {
                    id: spec.id.clone(),
                    signal: status.signal().unwrap_or(0),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn log_errors_take_error_levels_only() {
        let log = r#"{"level":"warning","msg":"unknown capability","time":"x"}
{"level":"error","msg":"runc run failed: exec: \"/bin/nope\": no such file","time":"x"}

not json
"#;
        assert_eq!(
            log_errors(log),
            ["runc run failed: exec: \"/bin/nope\": no such file", "not json"]
        );
        assert!(log_errors("").is_empty());
    }

    #[test]
    fn invalid_specs_are_refused_before_runc() {
        let root = tempfile::tempdir().unwrap();
        let ok = RunSpec::new("a-1_b.c+d", root.path(), vec!["true".into()]);
        validate(&ok).unwrap();
        for (id, cwd, argv) in [
            ("../x", "/", vec!["true".to_owned()]),
            ("", "/", vec!["true".to_owned()]),
            ("a b", "/", vec!["true".to_owned()]),
            ("ok", "relative", vec!["true".to_owned()]),
            ("ok", "/", vec![]),
        ] {
            let mut s = ok.clone();
            (s.id, s.cwd, s.argv) = (id.into(), cwd.into(), argv);
            assert!(
                matches!(validate(&s), Err(RuntimeError::InvalidSpec { .. })),
                "{id} {cwd}"
            );
        }
        let mut s = ok.clone();
        s.rootfs = root.path().join("missing");
        assert!(validate(&s).unwrap_err().to_string().contains("missing"));
    }

    #[test]
    fn outcome_reads_signals_from_the_128_convention() {
        assert_eq!(
            RunOutcome::from_exit_code(3),
            RunOutcome {
                exit_code: 3,
                signal: None
            }
        );
        assert_eq!(
            RunOutcome::from_exit_code(137),
            RunOutcome {
                exit_code: 137,
                signal: Some(9)
            }
        );
        assert_eq!(
            RunOutcome::from_exit_code(128),
            RunOutcome {
                exit_code: 128,
                signal: None
            }
        );
        assert_eq!(
            RunOutcome::from_exit_code(255),
            RunOutcome {
                exit_code: 255,
                signal: None
            }
        );
    }
}
