//! Bounds on what parsing and evaluating a Dockerfile may take, so that a small hostile file cannot
//! grow without end (an ARG doubled on each line, `${V//?/$V}`, a base environment copied into every
//! RUN of a million-line file). Each default is far above what real Dockerfiles use; going over one
//! is an error naming the line. BuildKit refuses physical lines of 64 KiB and more and bounds nothing
//! else; kiln reads longer lines but bounds the rest.

/// The largest Dockerfile kiln reads (4 MiB), before or after `# %include`/`# %ARG` preprocessing.
pub const MAX_DOCKERFILE_BYTES: usize = 4 << 20;
/// The longest instruction, its continuation lines joined (1 MiB).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// The largest heredoc body, before and after expansion (1 MiB).
pub const MAX_HEREDOC_BYTES: usize = 1 << 20;
/// The largest word or value after ARG/ENV expansion (1 MiB).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// The most bytes a stage's variables (ARG and ENV, names and values) may hold together (4 MiB;
/// Linux passes at most 2 MiB of environment and arguments to a RUN process anyway).
pub const MAX_ENV_BYTES: usize = 4 << 20;
/// The most bytes one evaluation may produce in all: expanded words, the environment of each RUN,
/// each stage's inherited configuration, ONBUILD triggers replayed (64 MiB).
pub const MAX_EVALUATION_BYTES: usize = 64 << 20;
/// The most steps the shell-pattern matcher may take for one `${V#p}`, `${V%p}` or `${V/p/r}`
/// (about a tenth of a second).
pub const MAX_PATTERN_STEPS: u64 = 50_000_000;

/// The limits in force; [`Limits::default`] has the `MAX_*` constants of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// [`MAX_DOCKERFILE_BYTES`].
    pub file_bytes: usize,
    /// [`MAX_LINE_BYTES`].
    pub line_bytes: usize,
    /// [`MAX_HEREDOC_BYTES`].
    pub heredoc_bytes: usize,
    /// [`MAX_VALUE_BYTES`].
    pub value_bytes: usize,
    /// [`MAX_ENV_BYTES`].
    pub env_bytes: usize,
    /// [`MAX_EVALUATION_BYTES`].
    pub evaluation_bytes: usize,
    /// [`MAX_PATTERN_STEPS`].
    pub pattern_steps: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            file_bytes: MAX_DOCKERFILE_BYTES,
            line_bytes: MAX_LINE_BYTES,
            heredoc_bytes: MAX_HEREDOC_BYTES,
            value_bytes: MAX_VALUE_BYTES,
            env_bytes: MAX_ENV_BYTES,
            evaluation_bytes: MAX_EVALUATION_BYTES,
            pattern_steps: MAX_PATTERN_STEPS,
        }
    }
}
