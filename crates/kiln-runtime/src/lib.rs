#![doc = include_str!("../README.md")]

pub mod config;
mod error;
mod network;
#[cfg(any(test, feature = "test-support"))]
mod recording;
mod rootfs;
mod runc;

use std::path::PathBuf;

pub use error::RuntimeError;
#[cfg(any(test, feature = "test-support"))]
pub use recording::RecordingRuntime;
pub use runc::RuncRuntime;

/// Runs one process to completion inside a root filesystem: the effect behind every `RUN`.
pub trait Runtime: Send + Sync {
    /// Run `spec.argv` in `spec.rootfs` (an already mounted, writable root directory), streaming its
    /// output to `output` as it arrives. The process's own non-zero exit is a [`RunOutcome`], not an
    /// error; an error means the process could not be run (or was cancelled).
    fn run(&self, spec: &RunSpec, output: &mut dyn OutputSink) -> Result<RunOutcome, RuntimeError>;
}

/// Which output stream of the process a chunk of bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

/// Receives a process's output as it arrives; chunks of one stream come in order.
pub trait OutputSink: Send {
    /// One chunk (never empty) of `stream`.
    fn write(&mut self, stream: Stream, bytes: &[u8]);
}

impl<F: FnMut(Stream, &[u8]) + Send> OutputSink for F {
    fn write(&mut self, stream: Stream, bytes: &[u8]) {
        self(stream, bytes)
    }
}

/// An [`OutputSink`] that keeps everything in memory (tests, short commands).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectedOutput {
    /// Everything written to standard output.
    pub stdout: Vec<u8>,
    /// Everything written to standard error.
    pub stderr: Vec<u8>,
}

impl CollectedOutput {
    /// Standard output as text (lossy UTF-8).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (lossy UTF-8).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl OutputSink for CollectedOutput {
    fn write(&mut self, stream: Stream, bytes: &[u8]) {
        match stream {
            Stream::Stdout => self.stdout.extend_from_slice(bytes),
            Stream::Stderr => self.stderr.extend_from_slice(bytes),
        }
    }
}

/// Which network the process sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A network namespace of its own with outbound access through slirp4netns (the default, as
    /// BuildKit's and rootless podman's): the process is 10.0.2.100 behind a gateway 10.0.2.2 and a DNS
    /// forwarder 10.0.2.3; the host's loopback services are out of reach (10.0.2.2 does not lead to
    /// the host's 127.0.0.1). A generated `/etc/resolv.conf` (nameserver 10.0.2.3, the host's `search`
    /// and `options`) and `/etc/hosts` (localhost and the hostname) are bound read-only.
    #[default]
    Private,
    /// The host's network namespace (`--network=host`: the host's loopback services are reachable);
    /// the host's `/etc/resolv.conf` and `/etc/hosts` are bound read-only into the container.
    Host,
    /// An own network namespace with only the loopback interface (`RUN --network=none`).
    None,
}

/// A mount added to the default ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// A bind mount of a host path (file or directory).
    Bind {
        /// The host path.
        source: PathBuf,
        /// Absolute path inside the container.
        destination: String,
        /// Mounted read-only.
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Absolute path inside the container.
        destination: String,
        /// Size limit in bytes (the kernel's default, half the RAM, when `None`).
        size: Option<u64>,
    },
}

impl MountSpec {
    /// The absolute path inside the container.
    pub fn destination(&self) -> &str {
        match self {
            MountSpec::Bind { destination, .. } | MountSpec::Tmpfs { destination, .. } => destination,
        }
    }
}

/// Everything needed to run one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// Unique container id (the caller makes it unique): letters, digits, `_`, `+`, `-`, `.`.
    pub id: String,
    /// The root directory, already mounted and writable.
    pub rootfs: PathBuf,
    /// The command and its arguments (not run through a shell).
    pub argv: Vec<String>,
    /// `KEY=value` entries, as given (the caller adds the default `PATH`).
    pub env: Vec<String>,
    /// Absolute working directory inside the container; created (and kept) if missing, as docker does.
    pub cwd: String,
    /// User id of the process.
    pub uid: u32,
    /// Group id of the process.
    pub gid: u32,
    /// Supplementary groups of the process.
    pub additional_gids: Vec<u32>,
    /// A private network (default), the host's, or none.
    pub network: Network,
    /// Mounts on top of the defaults, in order.
    pub mounts: Vec<MountSpec>,
    /// Hostname inside the container (left as the host's when empty).
    pub hostname: String,
    /// `RUN --security=insecure`: all capabilities, no masked or read-only paths, writable `/sys`.
    pub insecure: bool,
}

impl RunSpec {
    /// A spec with the defaults of a build step: root user, cwd `/`, a private network, no environment,
    /// no extra mounts, hostname `kiln`.
    pub fn new(id: impl Into<String>, rootfs: impl Into<PathBuf>, argv: Vec<String>) -> Self {
        RunSpec {
            id: id.into(),
            rootfs: rootfs.into(),
            argv,
            env: Vec::new(),
            cwd: "/".to_owned(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            network: Network::Private,
            mounts: Vec::new(),
            hostname: "kiln".to_owned(),
            insecure: false,
        }
    }
}

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    /// The exit code as docker reports it: the process's own code, or 128 + the signal number
    /// when a signal ended it.
    pub exit_code: i32,
    /// The signal that ended the process, when one did. Derived from runc's `128 + n` exit
    /// status, so a process that itself calls `exit(130)` reads as signal 2 (runc does not tell
    /// the two apart; docker reports both as 130).
    pub signal: Option<i32>,
}

impl RunOutcome {
    /// An outcome from an exit code following the shell's `128 + n` convention for signals.
    pub fn from_exit_code(exit_code: i32) -> Self {
        let signal = (129..=128 + 64).contains(&exit_code).then(|| exit_code - 128);
        RunOutcome { exit_code, signal }
    }

    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}
