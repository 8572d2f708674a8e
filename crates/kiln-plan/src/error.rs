//! The one error type of the crate; every variant names the image, value or path at fault.

use std::path::PathBuf;

/// Why a plan could not be made or acted on.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Reading the repository's definitions, contexts or hashes failed.
    #[error(transparent)]
    Tree(#[from] kiln_tree::TreeError),
    /// The index refused a read or a write.
    #[error(transparent)]
    Index(#[from] kiln_index::IndexError),
    /// An image name that the repository does not define.
    #[error("no image `{name}` in {}; images: {}", root.display(), known.join(", "))]
    UnknownImage {
        /// The name asked for.
        name: String,
        /// The repository's root.
        root: PathBuf,
        /// The images it defines.
        known: Vec<String>,
    },
    /// A trust level outside the repository's levels.
    #[error("--level {level} is out of range: this repository's levels are 1 to {max}")]
    LevelOutOfRange {
        /// The level asked for.
        level: u8,
        /// The highest level of the repository.
        max: u8,
    },
    /// A time that is neither RFC 3339, `now`, nor a duration.
    #[error("`{0}` is not a time: use RFC 3339 (2026-01-31T12:00:00Z), `now`, or a duration such as `7d`")]
    BadTime(String),
    /// The current folder cannot be read (to find the repository from).
    #[error("cannot read the current directory: {0}")]
    CurrentDir(#[source] std::io::Error),
    /// A parent of an image to build is neither planned nor available.
    #[error("parent `{parent}` of `{image}` was not planned")]
    ParentNotPlanned {
        /// The child image.
        image: String,
        /// Its parent.
        parent: String,
    },
    /// The images to build depend on each other in a way that never lets one start.
    #[error("the build order of the images cannot be met: {0}")]
    Order(String),
}
