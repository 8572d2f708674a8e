//! The evaluated build description: the serde shape documented in `docs/dockerfile-json.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::flags::Flags;
use crate::instruction::Location;
use crate::lexer::{Directives, Warning};
use crate::mount::Mount;

/// The evaluated Dockerfile: what the builder executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildDescription {
    /// Parser directives found at the top.
    pub directives: Directives,
    /// The escape character in force (`\` or `` ` ``).
    pub escape: String,
    /// The stage that is built.
    pub target: StageRef,
    /// Global ARGs (declared before the first FROM) after build-arg overrides; `None` = unset.
    pub global_args: Vec<ArgValue>,
    /// Proxy variables from the build args (`HTTP_PROXY`…): set for RUN without ARG declarations.
    pub proxy_env: BTreeMap<String, String>,
    /// The stages the target needs, in file order.
    pub stages: Vec<Stage>,
    /// Stages the target does not need (not evaluated).
    pub pruned: Vec<StageRef>,
    /// Non-fatal findings.
    pub warnings: Vec<Warning>,
}

/// A stage by index and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageRef {
    /// 0-based position among the FROM instructions.
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
}

/// An ARG and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgValue {
    /// The argument name.
    pub name: String,
    /// The resolved value; `None` when declared without default and not given.
    pub value: Option<String>,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// A registry image.
    Image {
        /// The reference after ARG expansion.
        reference: String,
    },
    /// The in-tree parent image supplied by the plan (`FROM $DOCKER_IMAGE_PARENT`).
    Parent {
        /// The reference supplied by the plan.
        reference: String,
    },
    /// An earlier stage.
    Stage {
        /// Its index.
        index: usize,
        /// Its name.
        name: Option<String>,
    },
}

/// Where COPY --from / RUN --mount from= takes files from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// A stage of this Dockerfile.
    Stage {
        /// Its index.
        index: usize,
        /// Its name.
        name: Option<String>,
    },
    /// An image (any name that is not a stage).
    Image {
        /// The reference as written.
        reference: String,
    },
}

/// The OCI image configuration a stage produces (also the input config of base images).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// `KEY=value` entries in order.
    pub env: Vec<String>,
    /// `USER`.
    pub user: Option<String>,
    /// `WORKDIR`, absolute.
    pub workdir: Option<String>,
    /// `SHELL`; empty means the default `/bin/sh -c`.
    pub shell: Vec<String>,
    /// `CMD`, with the shell prepended for shell form.
    pub cmd: Option<Vec<String>>,
    /// `ENTRYPOINT`, with the shell prepended for shell form.
    pub entrypoint: Option<Vec<String>>,
    /// `LABEL`s.
    pub labels: BTreeMap<String, String>,
    /// `EXPOSE`d ports as `port/proto`, sorted.
    pub exposed_ports: Vec<String>,
    /// `VOLUME`s, sorted.
    pub volumes: Vec<String>,
    /// `STOPSIGNAL`.
    pub stop_signal: Option<String>,
    /// `HEALTHCHECK`.
    pub healthcheck: Option<HealthcheckConfig>,
    /// `ONBUILD` triggers for children of this image.
    pub onbuild: Vec<String>,
    /// `MAINTAINER`.
    pub author: Option<String>,
}

/// The OCI healthcheck configuration (durations in nanoseconds, 0 = default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthcheckConfig {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub test: Vec<String>,
    /// Interval.
    pub interval: i64,
    /// Timeout.
    pub timeout: i64,
    /// Start period.
    pub start_period: i64,
    /// Start interval.
    pub start_interval: i64,
    /// Retries.
    pub retries: i64,
}

/// One evaluated stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// Position among FROMs.
    pub index: usize,
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// The FROM line.
    pub location: Location,
    /// The base.
    pub base: Base,
    /// `--platform` after expansion.
    pub platform: Option<String>,
    /// Stages this one needs (base, COPY --from, RUN --mount from=), sorted.
    pub depends_on: Vec<usize>,
    /// The instructions, ONBUILD triggers of the base first.
    pub instructions: Vec<Step>,
    /// The image configuration after the last instruction.
    pub config: ImageConfig,
}

/// Exec, shell or heredoc form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// JSON array.
    Exec,
    /// Shell string.
    Shell,
    /// Shell form carrying heredocs.
    Heredoc,
}

/// An evaluated heredoc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeredocFile {
    /// The delimiter (for COPY/ADD, the file name).
    pub name: String,
    /// The body after tab stripping (`<<-`) and, for COPY/ADD with an unquoted delimiter, expansion.
    pub content: String,
    /// Whether the delimiter was unquoted.
    pub expand: bool,
    /// File descriptor before `<<` (0 when none).
    pub fd: u32,
}

/// One key/value pair after expansion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// One evaluated instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Lines and column of the instruction (for ONBUILD triggers: the FROM that ran them).
    pub location: Location,
    /// Upper-case keyword.
    pub keyword: String,
    /// The instruction text, continuations joined.
    pub source: String,
    /// Whether it came from an ONBUILD trigger of the base.
    pub onbuild: bool,
    /// exec/shell/heredoc for RUN, CMD, ENTRYPOINT, HEALTHCHECK CMD, COPY, ADD, VOLUME.
    pub form: Option<Form>,
    /// Flags as written (before expansion).
    pub flags: Flags,
    /// The evaluated operands.
    pub args: StepArgs,
}

/// Evaluated operands per keyword.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StepArgs {
    /// RUN.
    Run {
        /// The argv to execute (SHELL prepended for shell/heredoc form).
        argv: Vec<String>,
        /// Environment for the process: image ENV plus ARG values in scope, `KEY=value`.
        env: Vec<String>,
        /// Mounts after expansion.
        mounts: Vec<Mount>,
        /// Sources of `from=` mounts, same order as the mounts that have one.
        mount_sources: Vec<Source>,
        /// `--network`.
        network: Option<String>,
        /// `--security`.
        security: Option<String>,
        /// Heredocs (RUN bodies are not expanded by the frontend: the shell does it).
        heredocs: Vec<HeredocFile>,
        /// When set, the first heredoc is a script with a shebang: write it to this path and run it.
        script_path: Option<String>,
    },
    /// CMD / ENTRYPOINT / SHELL.
    Command {
        /// The resulting argv.
        argv: Vec<String>,
    },
    /// COPY / ADD.
    Copy {
        /// Source paths/URLs after expansion.
        sources: Vec<String>,
        /// Inline files from heredocs.
        heredocs: Vec<HeredocFile>,
        /// Destination after expansion.
        dest: String,
        /// `--from`.
        from: Option<Source>,
        /// `--chown` after expansion.
        chown: Option<String>,
        /// `--chmod` after expansion.
        chmod: Option<String>,
        /// `--link`.
        link: bool,
        /// `--parents` (COPY).
        parents: bool,
        /// `--exclude` patterns after expansion.
        exclude: Vec<String>,
        /// `--keep-git-dir` (ADD).
        keep_git_dir: bool,
        /// `--checksum` (ADD) after expansion.
        checksum: Option<String>,
        /// `--unpack` (ADD); `None` = automatic.
        unpack: Option<bool>,
    },
    /// ENV / LABEL.
    Pairs {
        /// Pairs after expansion.
        pairs: Vec<Pair>,
    },
    /// ARG.
    Args {
        /// Resolved values.
        args: Vec<ArgValue>,
    },
    /// EXPOSE.
    Ports {
        /// `port/proto`.
        ports: Vec<String>,
    },
    /// VOLUME.
    Paths {
        /// Paths after expansion.
        paths: Vec<String>,
    },
    /// USER, WORKDIR (normalized), STOPSIGNAL, MAINTAINER, ONBUILD (the trigger expression).
    Value {
        /// The value.
        value: String,
    },
    /// HEALTHCHECK.
    Healthcheck {
        /// The healthcheck configuration.
        healthcheck: HealthcheckConfig,
    },
}
