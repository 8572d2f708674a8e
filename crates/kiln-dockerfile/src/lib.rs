#![doc = include_str!("../README.md")]

mod error;
mod expand;
mod flags;
mod glob;
mod heredoc;
mod instruction;
mod lexer;
mod limits;
mod mount;
mod words;

pub use error::{Error, ErrorKind};
pub use expand::Vars;
pub use flags::{FlagValue, Flags};
pub use heredoc::Heredoc;
pub use instruction::{
    ArgDecl, CommandLine, CopySpec, Healthcheck, Instruction, InstructionKind, KeyValue, Location,
};
pub use lexer::{Directives, Warning};
pub use limits::{
    Limits, MAX_DOCKERFILE_BYTES, MAX_ENV_BYTES, MAX_EVALUATION_BYTES, MAX_HEREDOC_BYTES, MAX_LINE_BYTES,
    MAX_PATTERN_STEPS, MAX_VALUE_BYTES,
};
pub use mount::{Mount, MountType, Sharing};

mod eval;
mod json;
mod stages;
mod values;

pub use eval::{EvalOptions, evaluate, parse, parse_with};
pub use json::{
    ArgValue, Base, BuildDescription, Form, HealthcheckConfig, HeredocFile, ImageConfig, Pair, Source, Stage,
    StageRef, Step, StepArgs,
};

/// A parsed, not yet evaluated Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dockerfile {
    /// Parser directives.
    pub directives: Directives,
    /// The escape character in force.
    pub escape: String,
    /// Instructions in order (global ARGs, then each FROM and its instructions).
    pub instructions: Vec<Instruction>,
    /// Non-fatal findings of the parser.
    pub warnings: Vec<Warning>,
}
