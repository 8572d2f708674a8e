//! Build errors: each names the Dockerfile line, the file or the digest at fault.

use std::path::{Path, PathBuf};

/// Where in a Dockerfile a step is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepAt {
    /// The Dockerfile's label (path or `images/NAME/Dockerfile`).
    pub file: String,
    /// First line of the instruction.
    pub line: usize,
    /// The instruction as written (continuations joined), shortened for messages.
    pub instruction: String,
}

impl std::fmt::Display for StepAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.instruction)
    }
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse or evaluate.
    #[error(transparent)]
    Dockerfile(#[from] kiln_dockerfile::Error),
    /// The build context cannot be read.
    #[error("build context {path}: {message}")]
    Context {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A step cannot be carried out.
    #[error("{at}: {message}")]
    Step {
        /// The step.
        at: StepAt,
        /// What is wrong.
        message: String,
    },
    /// A RUN command exited non-zero.
    #[error("{at}: the command exited with code {code}")]
    RunFailed {
        /// The step.
        at: StepAt,
        /// Its exit code (128 + signal for a signal death).
        code: i32,
    },
    /// A base image is not in the store.
    #[error(
        "{at}: base image `{reference}` is not in the image store; import it first \
         (`kiln image import FILE -t {reference}`) or build its in-tree image"
    )]
    MissingBase {
        /// The FROM line.
        at: StepAt,
        /// The reference.
        reference: String,
    },
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] kiln_oci::ImageError),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] kiln_oci::StoreError),
    /// A filesystem operation of the builder's own folders (work folders, mounts) failed.
    #[error(transparent)]
    Rootfs(#[from] kiln_rootfs::RootfsError),
    /// A file operation of the builder's own state failed.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        message: String,
    },
    /// The build was interrupted.
    #[error("interrupted")]
    Interrupted,
}

impl BuildError {
    /// A context error for `path`.
    pub fn context(path: &Path, message: String) -> BuildError {
        BuildError::Context {
            path: path.to_owned(),
            message,
        }
    }

    /// An I/O error of the builder's own state at `path`.
    pub fn io(path: &Path, error: impl std::fmt::Display) -> BuildError {
        BuildError::Io {
            path: path.to_owned(),
            message: error.to_string(),
        }
    }

    /// A step error.
    pub fn step(at: &StepAt, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            at: at.clone(),
            message: message.into(),
        }
    }
}
