//! Errors with the location and the offending text.

use std::fmt;

/// What went wrong; messages follow BuildKit's wording, lowercased.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input has no bytes at all.
    #[error("the dockerfile cannot be empty")]
    Empty,
    /// Only comments, directives or blank lines.
    #[error("file with no instructions")]
    NoInstructions,
    /// Instructions but no FROM.
    #[error("dockerfile contains no stages to build")]
    NoStages,
    /// A parser directive given twice.
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    /// `# escape=` with something other than a backslash or backtick.
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    /// An instruction keyword that does not exist.
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    /// An instruction other than ARG before the first FROM.
    #[error("no build stage in current context: {0} must come after a FROM")]
    NoBuildStage(String),
    /// A flag the instruction does not accept.
    #[error("unknown flag: {flag} (not valid for {instruction})")]
    UnknownFlag {
        /// The instruction keyword.
        instruction: String,
        /// The flag name, without dashes.
        flag: String,
    },
    /// `--flag` without `=value` for a flag that needs one.
    #[error("missing a value on flag: {0}")]
    FlagMissingValue(String),
    /// A boolean flag with a value other than true/false.
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    FlagNotBool {
        /// The flag name.
        flag: String,
        /// The value given.
        value: String,
    },
    /// A single-valued flag given twice.
    #[error("duplicate flag specified: {0}")]
    DuplicateFlag(String),
    /// A flag value that is not acceptable.
    #[error("invalid value for flag {flag}: {reason}")]
    InvalidFlagValue {
        /// The flag name.
        flag: String,
        /// Why it was rejected.
        reason: String,
    },
    /// Wrong number of arguments.
    #[error("{instruction} requires {expected}")]
    Arguments {
        /// The instruction keyword.
        instruction: String,
        /// What was expected, e.g. "at least one argument".
        expected: String,
    },
    /// SHELL (or another JSON-only instruction) not in JSON form.
    #[error("{0} requires the arguments to be in json form")]
    NotJson(String),
    /// A JSON array holding something other than strings.
    #[error("when using json array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    /// A heredoc whose terminator never appears.
    #[error("unterminated heredoc {0}")]
    UnterminatedHeredoc(String),
    /// A heredoc used as a COPY/ADD destination.
    #[error("{0} cannot accept a heredoc as a destination")]
    HeredocDestination(String),
    /// A heredoc marker that cannot be lexed.
    #[error("invalid heredoc: {0}")]
    InvalidHeredoc(String),
    /// `ONBUILD ONBUILD`.
    #[error("chaining onbuild via `onbuild onbuild` isn't allowed")]
    OnbuildChain,
    /// `ONBUILD FROM` or `ONBUILD MAINTAINER`.
    #[error("{0} isn't allowed as an onbuild trigger")]
    OnbuildTrigger(String),
    /// Bad `AS name`.
    #[error("invalid name for build stage: {0:?}, name can't start with a number or contain symbols")]
    InvalidStageName(String),
    /// A word expansion error, e.g. bad substitution.
    #[error("{0}")]
    Expansion(String),
    /// ENV/LABEL word without `=` in the key=value form.
    #[error("syntax error - can't find = in {0:?}. must be of the form: name=value")]
    MissingEquals(String),
    /// A malformed `--mount`.
    #[error("invalid mount: {0}")]
    InvalidMount(String),
    /// HEALTHCHECK problems.
    #[error("invalid healthcheck: {0}")]
    InvalidHealthcheck(String),
    /// STOPSIGNAL value not a signal.
    #[error("invalid signal: {0}")]
    InvalidSignal(String),
    /// EXPOSE value not a port.
    #[error("invalid port: {0}")]
    InvalidPort(String),
    /// An empty VOLUME path.
    #[error("volume specified can not be an empty string")]
    EmptyVolume,
    /// FROM whose image expands to nothing.
    #[error("base name ({0}) should not be blank")]
    BlankBaseName(String),
    /// `--platform` that expands to nothing.
    #[error("empty platform value from expression {0}")]
    EmptyPlatform(String),
    /// `--target` naming no stage.
    #[error("target stage {0:?} could not be found")]
    TargetNotFound(String),
    /// `--from=<n>` out of range.
    #[error("invalid stage index {0}")]
    InvalidStageIndex(String),
    /// `--from` naming a stage that comes later.
    #[error("cannot copy from stage {from:?}, it needs to be defined before current stage {stage:?}")]
    StageNotYetDefined {
        /// The `--from` value.
        from: String,
        /// The current stage.
        stage: String,
    },
    /// Stages depending on each other.
    #[error("circular dependency detected on stage: {0}")]
    CircularDependency(String),
    /// A size limit of [`crate::Limits`] was exceeded (a hostile or runaway Dockerfile).
    #[error("{what} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What grew too large, e.g. "the instruction".
        what: &'static str,
        /// The limit in force.
        limit: usize,
    },
    /// `COPY --from=$VAR`.
    #[error(
        "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
    )]
    FromExpansion,
}

/// A parse or evaluation error, located in the Dockerfile.
///
/// Displays as `file:line:column: message: offending text`, the form compilers use, so editors can
/// jump to it. `file` is only a label supplied by the caller (the crate never reads files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The file label, e.g. `Dockerfile` (set by [`crate::EvalOptions::file_name`] or `with_file`).
    pub file: Option<String>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// The offending text (an instruction, word or flag), possibly shortened.
    pub text: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, line: usize, column: usize, text: impl Into<String>) -> Self {
        Self {
            file: None,
            line,
            column,
            text: shorten(text.into()),
            kind,
        }
    }

    /// Attach a file label used when displaying.
    #[must_use]
    pub fn with_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

fn shorten(text: String) -> String {
    let first = text.lines().next().unwrap_or_default();
    let mut out: String = first.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.as_deref().unwrap_or("Dockerfile");
        write!(f, "{file}:{}:{}: {}", self.line, self.column, self.kind)?;
        if !self.text.is_empty() {
            write!(f, ": {}", self.text)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}
