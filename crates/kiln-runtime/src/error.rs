use std::path::PathBuf;

/// Why a process could not be run. The process's own non-zero exit is not an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The spec cannot be run as given (bad id, relative path, empty argv…).
    #[error("invalid run spec for container `{id}`: {reason}")]
    InvalidSpec {
        /// The container id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A folder of kiln's own (a bundle's private folder) could not be made or removed.
    #[error(transparent)]
    WorkDir(#[from] kiln_rootfs::RootfsError),
    /// The runtime binary does not exist.
    #[error("runtime binary `{}` not found (install runc or give the runtime's path)", binary.display())]
    RuntimeNotFound {
        /// The binary as configured.
        binary: PathBuf,
    },
    /// The helper that gives a [`Network::Private`](crate::Network::Private) run its network
    /// (slirp4netns) does not exist. kiln never falls back to the host's network.
    #[error(
        "`{}` not found: RUN steps get a network of their own through it (apt-get install {package}); \
         RUN --network=none needs none",
        binary.display()
    )]
    NetworkHelperNotFound {
        /// The binary as configured.
        binary: PathBuf,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// The private network of a run could not be set up.
    #[error("cannot set up the network of container `{id}`: {message}")]
    Network {
        /// The container id.
        id: String,
        /// What failed, with slirp4netns's own messages.
        message: String,
    },
    /// The runtime binary could not be started.
    #[error("cannot start runtime binary `{}`: {source}", binary.display())]
    Spawn {
        /// The binary as configured.
        binary: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The runtime could not create or start the container (bad config, missing executable…).
    #[error("runtime could not start container `{id}`: {message}")]
    Start {
        /// The container id.
        id: String,
        /// The runtime's own error text.
        message: String,
    },
    /// The runtime process itself was killed by a signal (not the container's process).
    #[error("runtime process for container `{id}` was killed by signal {signal}")]
    RuntimeKilled {
        /// The container id.
        id: String,
        /// The signal number.
        signal: i32,
    },
    /// The run was cancelled by `kill_all` (for example on Ctrl-C).
    #[error("container `{id}` was cancelled")]
    Cancelled {
        /// The container id.
        id: String,
    },
    /// A filesystem operation on the bundle, state root or root filesystem failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl RuntimeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: impl Into<std::io::Error>) -> Self {
        RuntimeError::Io {
            path: path.into(),
            source: source.into(),
        }
    }

    pub(crate) fn invalid(id: &str, reason: impl Into<String>) -> Self {
        RuntimeError::InvalidSpec {
            id: id.to_owned(),
            reason: reason.into(),
        }
    }
}
