//! Errors and warnings of this crate. Every error names the image and the file (and the line where there
//! is one) so the user can go straight to the fault.

use std::fmt;
use std::path::PathBuf;

use crate::preprocess::PreprocessError;

/// An error reading the repository's image definitions or building a context.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A configuration file is malformed.
    #[error("{file}: {message}")]
    Config {
        /// The configuration file.
        file: PathBuf,
        /// What is wrong (with line and column where the parser gives them).
        message: String,
    },
    /// No image definitions were found.
    #[error("{root}: no images found: expected kiln.toml, taskcluster/config.yml or an `images/` folder")]
    NoImages {
        /// The repository root searched.
        root: PathBuf,
    },
    /// An image names a parent that is not defined.
    #[error("image `{image}`: parent `{parent}` is not an image of this repository ({file})")]
    UnknownParent {
        /// The child image.
        image: String,
        /// The unknown parent name.
        parent: String,
        /// Where the parent was declared.
        file: PathBuf,
    },
    /// An image was asked for by name but the repository has none of that name.
    #[error("no image `{name}` in {root}")]
    UnknownImage {
        /// The name asked for.
        name: String,
        /// The repository root.
        root: PathBuf,
    },
    /// Images whose parents form a cycle.
    #[error("parent cycle: {}", cycle.join(" -> "))]
    ParentCycle {
        /// The images of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// An image's folder is missing.
    #[error("image `{image}`: image folder {path} does not exist")]
    MissingFolder {
        /// The image.
        image: String,
        /// The folder expected.
        path: PathBuf,
    },
    /// An image's folder has no Dockerfile.
    #[error("image `{image}`: no Dockerfile in {path}")]
    MissingDockerfile {
        /// The image.
        image: String,
        /// The folder searched.
        path: PathBuf,
    },
    /// A Dockerfile over [`kiln_dockerfile::MAX_DOCKERFILE_BYTES`].
    #[error("{path}: a Dockerfile of more than {limit} bytes is refused")]
    DockerfileTooLarge {
        /// The Dockerfile.
        path: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// The Dockerfile cannot be preprocessed.
    #[error("image `{image}`: {file}: {source}")]
    Dockerfile {
        /// The image.
        image: String,
        /// The Dockerfile.
        file: PathBuf,
        /// What is wrong, with its line.
        source: PreprocessError,
    },
    /// An `# %include` line cannot be honoured.
    #[error("image `{image}`: {file}:{line}: {message}")]
    Include {
        /// The image.
        image: String,
        /// The Dockerfile.
        file: PathBuf,
        /// 1-based line of the directive.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file that would go into a context is unacceptable (setuid, fifo, broken symlink, non-UTF-8 name…).
    #[error("image `{image}`: {path}: {message}")]
    ContextFile {
        /// The image.
        image: String,
        /// The offending file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl TreeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// A finding that does not stop the work but that the user should see: taskgraph's hazards, mostly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The image concerned, if any.
    pub image: Option<String>,
    /// The file concerned, if any.
    pub file: Option<PathBuf>,
    /// 1-based line in `file`, if any.
    pub line: Option<usize>,
    /// What to look at.
    pub message: String,
}

impl Warning {
    /// A warning about a line of the file being processed; the caller fills in image and file.
    pub fn at_line(line: usize, message: impl Into<String>) -> Self {
        Self {
            image: None,
            file: None,
            line: Some(line),
            message: message.into(),
        }
    }

    /// A warning about a file.
    pub fn for_file(image: &str, file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            image: Some(image.to_owned()),
            file: Some(file.into()),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(image) = &self.image {
            write!(f, "image `{image}`: ")?;
        }
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}
