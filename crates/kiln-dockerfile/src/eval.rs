//! Evaluation: ARG/ENV scoping, word expansion where BuildKit applies it, the stage graph and the
//! resulting image configuration (BuildKit `dockerfile2llb/convert.go`).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, ErrorKind};
use crate::expand::{Lexer, Vars};
use crate::instruction::{CommandLine, Healthcheck, Instruction, InstructionKind, Location};
use crate::json::{
    ArgValue, Base, BuildDescription, Form, HealthcheckConfig, HeredocFile, ImageConfig, Pair, Source, Stage,
    StageRef, Step, StepArgs,
};
use crate::lexer::{self, Warning};
use crate::limits::Limits;
use crate::mount;
use crate::stages::{self, RawStage};
use crate::values;

/// Inputs of an evaluation that do not come from the Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalOptions {
    /// `--build-arg KEY=value` overrides.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build; the last stage when `None`.
    pub target: Option<String>,
    /// Target platform, `os/arch[/variant]`; `linux/amd64` when `None`.
    pub target_platform: Option<String>,
    /// Build platform; `linux/amd64` when `None`.
    pub build_platform: Option<String>,
    /// Configurations of base images by reference (as written after expansion): their ENV, ONBUILD,
    /// WORKDIR, USER, SHELL… are inherited. Unknown images start from an empty configuration.
    pub base_images: BTreeMap<String, ImageConfig>,
    /// Taskgraph compatibility: the in-tree parent image for `FROM $DOCKER_IMAGE_PARENT`; also supplied
    /// as the `DOCKER_IMAGE_PARENT` build arg unless that is given explicitly.
    pub parent_image: Option<String>,
    /// kaniko compatibility (taskgraph trees): `DOCKER_IMAGE_PARENT` counts as declared before the first
    /// FROM even without `ARG DOCKER_IMAGE_PARENT`, which BuildKit would require.
    pub predeclare_parent_arg: bool,
    /// A label for error messages, e.g. `images/base/Dockerfile` (never opened).
    pub file_name: Option<String>,
    /// Size limits of parsing and evaluation (the `MAX_*` constants by default).
    pub limits: Limits,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const NON_ENV_ARGS: &[&str] = &["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];
const PROXY_ARGS: &[&str] = &["http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy"];

/// Parse a Dockerfile into instructions without evaluating it, within the default [`Limits`].
pub fn parse(source: &str) -> Result<crate::Dockerfile, Error> {
    parse_with(source, &Limits::default())
}

/// [`parse`] within `limits`.
pub fn parse_with(source: &str, limits: &Limits) -> Result<crate::Dockerfile, Error> {
    let scanned = lexer::scan(source, limits)?;
    let instructions = scanned
        .lines
        .iter()
        .map(|l| crate::instruction::parse_line(l, scanned.escape))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::Dockerfile {
        directives: scanned.directives,
        escape: scanned.escape.to_string(),
        instructions,
        warnings: scanned.warnings,
    })
}

/// Parse and evaluate a Dockerfile as BuildKit would for `options`.
pub fn evaluate(source: &str, options: &EvalOptions) -> Result<BuildDescription, Error> {
    let result = Evaluator::new(options).run(source);
    match (&options.file_name, result) {
        (Some(f), Err(e)) => Err(e.with_file(f.clone())),
        (_, r) => r,
    }
}

struct Evaluator<'o> {
    opts: &'o EvalOptions,
    build_args: BTreeMap<String, String>,
    lex: Lexer,
    escape: char,
    warnings: Vec<Warning>,
    /// Bytes produced so far, against [`Limits::evaluation_bytes`].
    spent: Cell<usize>,
}

#[derive(Debug, Clone, Default)]
struct State {
    vars: Vars,
    config: ImageConfig,
    cmd_set: bool,
    /// Position of each key in `config.env`.
    env_index: HashMap<String, usize>,
}

impl State {
    /// Sets `key=value` in the image's environment, keeping an existing entry's position.
    fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self.env_index.get(key).and_then(|&i| self.config.env.get_mut(i)) {
            Some(e) => *e = entry,
            None => {
                self.env_index.insert(key.to_owned(), self.config.env.len());
                self.config.env.push(entry);
            }
        }
    }

    fn index_env(&mut self) {
        self.env_index = self
            .config
            .env
            .iter()
            .enumerate()
            .map(|(i, e)| (env_key(e).to_owned(), i))
            .collect();
    }

    /// Bytes of the stage's variables and configuration, as copied into a stage built on it.
    fn byte_len(&self) -> usize {
        let env: usize = self.config.env.iter().map(String::len).sum();
        let labels: usize = self.config.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.vars.byte_len() + env + labels
    }
}

fn err(kind: ErrorKind, loc: Location, text: &str) -> Error {
    Error::new(kind, loc.start_line, loc.column, text)
}

fn platform_parts(p: &str) -> (String, String, String) {
    let mut it = p.split('/');
    let os = it.next().unwrap_or_default().to_string();
    let arch = it.next().unwrap_or_default().to_string();
    let variant = it.next().unwrap_or_default().to_string();
    (os, arch, variant)
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

fn with_shell(config: &ImageConfig, cmd: &str) -> Vec<String> {
    let mut argv = if config.shell.is_empty() {
        vec!["/bin/sh".to_string(), "-c".to_string()]
    } else {
        config.shell.clone()
    };
    argv.push(cmd.to_string());
    argv
}

fn command_argv(config: &ImageConfig, command: &CommandLine) -> (Vec<String>, Form) {
    match command {
        CommandLine::Exec(v) => (v.clone(), Form::Exec),
        CommandLine::Shell(s) => (with_shell(config, s), Form::Shell),
    }
}

impl<'o> Evaluator<'o> {
    fn new(opts: &'o EvalOptions) -> Self {
        let mut build_args = opts.build_args.clone();
        if let Some(parent) = &opts.parent_image {
            build_args
                .entry("DOCKER_IMAGE_PARENT".to_string())
                .or_insert_with(|| parent.clone());
        }
        let limits = &opts.limits;
        Self {
            opts,
            build_args,
            lex: Lexer::with_limits('\\', limits.value_bytes, limits.pattern_steps),
            escape: '\\',
            warnings: Vec::new(),
            spent: Cell::new(0),
        }
    }

    /// Counts `bytes` produced by the evaluation of the instruction at `loc`.
    fn charge(&self, bytes: usize, loc: Location, text: &str) -> Result<(), Error> {
        let spent = self.spent.get().saturating_add(bytes);
        self.spent.set(spent);
        let limit = self.opts.limits.evaluation_bytes;
        if spent > limit {
            return Err(err(
                ErrorKind::TooLarge {
                    what: "what the evaluation produces (expanded words, RUN environments, inherited stages)",
                    limit,
                },
                loc,
                text,
            ));
        }
        Ok(())
    }

    /// An error when the variables of a stage have grown past [`Limits::env_bytes`].
    fn check_vars(&self, vars: &Vars, loc: Location, text: &str) -> Result<(), Error> {
        let limit = self.opts.limits.env_bytes;
        if vars.byte_len() > limit {
            return Err(err(
                ErrorKind::TooLarge {
                    what: "the variables (ARG and ENV) of the stage",
                    limit,
                },
                loc,
                text,
            ));
        }
        Ok(())
    }

    fn expand(&self, word: &str, vars: &Vars, loc: Location, text: &str) -> Result<String, Error> {
        let value = self
            .lex
            .process_word(word, vars)
            .map_err(|e| err(ErrorKind::Expansion(e), loc, text))?;
        self.charge(value.len(), loc, text)?;
        Ok(value)
    }

    fn run(mut self, source: &str) -> Result<BuildDescription, Error> {
        let df = parse_with(source, &self.opts.limits)?;
        self.escape = df.escape.chars().next().unwrap_or('\\');
        let limits = &self.opts.limits;
        self.lex = Lexer::with_limits(self.escape, limits.value_bytes, limits.pattern_steps);
        self.warnings = df.warnings.clone();
        let (globals, raw_stages) = stages::split(df.instructions)?;

        // Duplicate stage names are a lint warning in BuildKit; the last one wins for lookups.
        for s in &raw_stages {
            if let Some(n) = &s.name
                && raw_stages
                    .iter()
                    .any(|o| o.index < s.index && o.name.as_ref() == Some(n))
            {
                self.warnings.push(Warning {
                    line: s.from.location.start_line,
                    rule: "DuplicateStageName".into(),
                    message: format!("duplicate stage name {n:?}"),
                });
            }
        }

        let target = match &self.opts.target {
            None => raw_stages.len().saturating_sub(1),
            Some(t) => stages::find_by_name(&raw_stages, t)
                .ok_or_else(|| Error::new(ErrorKind::TargetNotFound(t.clone()), 1, 1, t.clone()))?,
        };
        let target_name = raw_stages
            .get(target)
            .and_then(|s| s.name.clone())
            .unwrap_or_default();
        let mut global_vars = self.global_args(&globals, &target_name)?;
        if let (true, Some(parent)) = (self.opts.predeclare_parent_arg, &self.opts.parent_image)
            && global_vars.get("DOCKER_IMAGE_PARENT").is_none()
        {
            let value = self
                .build_args
                .get("DOCKER_IMAGE_PARENT")
                .unwrap_or(parent)
                .clone();
            global_vars.set("DOCKER_IMAGE_PARENT", &value);
        }
        let mut global_values = Vec::new();
        for g in &globals {
            if let InstructionKind::Arg { args } = &g.kind {
                for a in args {
                    global_values.push(ArgValue {
                        name: a.name.clone(),
                        value: global_vars.get(&a.name).map(Into::into),
                    });
                }
            }
        }

        // Resolve bases (FROM expansion uses global args only).
        let mut bases = Vec::new();
        let mut platforms = Vec::new();
        for st in &raw_stages {
            let loc = st.from.location;
            let image = self.expand(&st.image, &global_vars, loc, &st.from.source)?;
            if image.is_empty() {
                return Err(err(
                    ErrorKind::BlankBaseName(st.image.clone()),
                    loc,
                    &st.from.source,
                ));
            }
            let platform = match st.from.flags.str("platform") {
                None => None,
                Some(p) => {
                    let v = self.expand(p, &global_vars, loc, &st.from.source)?;
                    if v.is_empty() {
                        return Err(err(ErrorKind::EmptyPlatform(p.to_string()), loc, &st.from.source));
                    }
                    Some(v)
                }
            };
            platforms.push(platform);
            // Only earlier stages can be a base, matched on the exact expanded name (BuildKit addState).
            let earlier = raw_stages
                .iter()
                .take(st.index)
                .rev()
                .find(|s| s.name.as_deref() == Some(image.as_str()));
            let base = if let Some(b) = earlier {
                Base::Stage {
                    index: b.index,
                    name: b.name.clone(),
                }
            } else if image == "scratch" {
                Base::Scratch
            } else if self.opts.parent_image.as_deref() == Some(image.as_str())
                && st.image.contains("DOCKER_IMAGE_PARENT")
            {
                Base::Parent { reference: image }
            } else {
                Base::Image { reference: image }
            };
            bases.push(base);
        }

        // Dependency graph: base stage, COPY --from, RUN --mount from=, and ONBUILD triggers of a stage base.
        let mut deps: Vec<Vec<usize>> = Vec::new();
        for st in &raw_stages {
            let mut d = Vec::new();
            if let Some(Base::Stage { index, .. }) = bases.get(st.index) {
                d.push(*index);
            }
            let mut cmds: Vec<&Instruction> = st.commands.iter().collect();
            if let Some(Base::Stage { index, .. }) = bases.get(st.index)
                && let Some(parent) = raw_stages.get(*index)
            {
                for c in &parent.commands {
                    if let InstructionKind::Onbuild { trigger, .. } = &c.kind {
                        cmds.push(trigger);
                    }
                }
            }
            for c in cmds {
                for src in self.sources_of(c, &raw_stages)? {
                    if let Source::Stage { index, .. } = src {
                        d.push(index);
                    }
                }
            }
            d.sort_unstable();
            d.dedup();
            deps.push(d);
        }
        if let Some(c) = stages::find_cycle(&deps) {
            let st = raw_stages.get(c);
            let name = st.map(RawStage::display_name).unwrap_or_default();
            let (loc, text) = st
                .map(|s| (s.from.location, s.from.source.clone()))
                .unwrap_or_default();
            return Err(err(ErrorKind::CircularDependency(name), loc, &text));
        }
        let needed = stages::reachable(target, &deps);

        let mut states: Vec<Option<State>> = vec![None; raw_stages.len()];
        let mut out_stages = Vec::new();
        let mut pruned = Vec::new();
        for st in &raw_stages {
            if !needed.get(st.index).copied().unwrap_or(false) {
                pruned.push(StageRef {
                    index: st.index,
                    name: st.name.clone(),
                });
                continue;
            }
            let base = bases.get(st.index).cloned().unwrap_or(Base::Scratch);
            let platform = platforms.get(st.index).cloned().flatten();
            let (state, steps) = self.dispatch_stage(st, &base, &raw_stages, &states, &global_vars)?;
            let config = state.config.clone();
            if let Some(slot) = states.get_mut(st.index) {
                *slot = Some(state);
            }
            out_stages.push(Stage {
                index: st.index,
                name: st.name.clone(),
                location: st.from.location,
                base,
                platform,
                depends_on: deps.get(st.index).cloned().unwrap_or_default(),
                instructions: steps,
                config,
            });
        }

        let proxy_env = self
            .build_args
            .iter()
            .filter(|(k, _)| PROXY_ARGS.iter().any(|p| k.eq_ignore_ascii_case(p)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(BuildDescription {
            directives: df.directives,
            escape: self.escape.to_string(),
            target: StageRef {
                index: target,
                name: raw_stages.get(target).and_then(|s| s.name.clone()),
            },
            global_args: global_values,
            proxy_env,
            stages: out_stages,
            pruned,
            warnings: self.warnings,
        })
    }

    /// Predefined platform args, overridden by build args, then the global ARGs (BuildKit `buildMetaArgs`).
    fn global_args(&self, globals: &[Instruction], target_name: &str) -> Result<Vars, Error> {
        let bp = self
            .opts
            .build_platform
            .clone()
            .unwrap_or_else(|| "linux/amd64".into());
        let tp = self
            .opts
            .target_platform
            .clone()
            .unwrap_or_else(|| "linux/amd64".into());
        let (bos, barch, bvar) = platform_parts(&bp);
        let (tos, tarch, tvar) = platform_parts(&tp);
        let mut vars = Vars::new();
        for (k, v) in [
            ("BUILDPLATFORM", bp.as_str()),
            ("BUILDOS", &bos),
            ("BUILDARCH", &barch),
            ("BUILDVARIANT", &bvar),
            ("TARGETPLATFORM", tp.as_str()),
            ("TARGETOS", &tos),
            ("TARGETARCH", &tarch),
            ("TARGETVARIANT", &tvar),
            ("TARGETSTAGE", target_name),
        ] {
            vars.set(k, self.build_args.get(k).map_or(v, String::as_str));
        }
        for g in globals {
            let InstructionKind::Arg { args } = &g.kind else {
                continue;
            };
            for a in args {
                let value = match (self.build_args.get(&a.name), &a.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(self.expand(d, &vars, g.location, &g.source)?),
                    (None, None) => None,
                };
                if let Some(v) = value {
                    vars.set(&a.name, &v);
                    self.check_vars(&vars, g.location, &g.source)?;
                }
            }
        }
        Ok(vars)
    }

    /// Stage/image sources an instruction reads from (BuildKit `toCommand` / `detectRunMount`).
    fn sources_of(&self, ins: &Instruction, stages: &[RawStage]) -> Result<Vec<Source>, Error> {
        let loc = ins.location;
        match &ins.kind {
            InstructionKind::Copy(_) => {
                let Some(from) = ins.flags.str("from") else {
                    return Ok(Vec::new());
                };
                // BuildKit expands --from with an empty environment and rejects any change.
                let probe = self.lex.process_word(from, &Vars::new()).unwrap_or_default();
                if probe != from {
                    return Err(err(ErrorKind::FromExpansion, loc, from));
                }
                if let Some(i) = stages::parse_index(from) {
                    let idx = usize::try_from(i).ok().filter(|i| *i < stages.len());
                    let Some(idx) = idx else {
                        return Err(err(
                            ErrorKind::InvalidStageIndex(from.to_string()),
                            loc,
                            &ins.source,
                        ));
                    };
                    let name = stages.get(idx).and_then(|s| s.name.clone());
                    return Ok(vec![Source::Stage { index: idx, name }]);
                }
                Ok(vec![named_source(from, stages)])
            }
            InstructionKind::Run { .. } => {
                let mut out = Vec::new();
                for m in ins.flags.list("mount") {
                    let parsed =
                        mount::parse_mount(m, None).map_err(|e| err(ErrorKind::InvalidMount(e), loc, m))?;
                    if let Some(from) = parsed.from {
                        out.push(named_source(&from, stages));
                    }
                }
                Ok(out)
            }
            _ => Ok(Vec::new()),
        }
    }

    fn dispatch_stage(
        &mut self,
        st: &RawStage,
        base: &Base,
        stages: &[RawStage],
        states: &[Option<State>],
        globals: &Vars,
    ) -> Result<(State, Vec<Step>), Error> {
        let loc = st.from.location;
        let mut triggers: Vec<String> = Vec::new();
        let mut state = match base {
            Base::Stage { index, .. } => {
                let mut s = states.get(*index).cloned().flatten().unwrap_or_default();
                s.config.onbuild.clear();
                s.cmd_set = false;
                if let Some(parent) = stages.get(*index) {
                    for c in &parent.commands {
                        if let InstructionKind::Onbuild { expression, .. } = &c.kind {
                            triggers.push(expression.clone());
                        }
                    }
                }
                s
            }
            Base::Scratch => State::default(),
            Base::Image { reference } | Base::Parent { reference } => {
                let mut config = self.opts.base_images.get(reference).cloned().unwrap_or_default();
                triggers = std::mem::take(&mut config.onbuild);
                let mut vars = Vars::new();
                for e in &config.env {
                    let (k, v) = e.split_once('=').unwrap_or((e, ""));
                    vars.set(k, v);
                }
                State {
                    vars,
                    config,
                    ..State::default()
                }
            }
        };
        state.index_env();
        if !state.env_index.contains_key("PATH") {
            state.set_env("PATH", DEFAULT_PATH);
            state.vars.set("PATH", DEFAULT_PATH);
        }
        // Every stage copies its base's state, and replays its ONBUILD triggers.
        let triggers_len: usize = triggers.iter().map(String::len).sum();
        self.charge(state.byte_len() + triggers_len, loc, &st.from.source)?;
        self.check_vars(&state.vars, loc, &st.from.source)?;

        let mut commands: Vec<(Instruction, bool)> = Vec::new();
        for t in &triggers {
            let parsed = parse(t).map_err(|e| err(e.kind, loc, t))?;
            let [ins] = parsed.instructions.as_slice() else {
                return Err(err(
                    ErrorKind::Expansion("onbuild trigger should be a single expression".into()),
                    loc,
                    t,
                ));
            };
            let mut ins = ins.clone();
            ins.location = loc;
            if matches!(
                ins.kind,
                InstructionKind::From { .. } | InstructionKind::Onbuild { .. }
            ) {
                return Err(err(ErrorKind::OnbuildTrigger(ins.keyword.clone()), loc, t));
            }
            commands.push((ins, true));
        }
        commands.extend(st.commands.iter().cloned().map(|c| (c, false)));

        let mut steps = Vec::new();
        for (ins, onbuild) in &commands {
            let step = self.dispatch(ins, *onbuild, &mut state, st, stages, states, globals)?;
            steps.push(step);
        }
        Ok((state, steps))
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        ins: &Instruction,
        onbuild: bool,
        state: &mut State,
        current: &RawStage,
        stages: &[RawStage],
        states: &[Option<State>],
        globals: &Vars,
    ) -> Result<Step, Error> {
        let loc = ins.location;
        let text = ins.source.as_str();
        let mut form = None;
        let x = |w: &str, vars: &Vars| self.expand(w, vars, loc, text);
        let args = match &ins.kind {
            InstructionKind::From { .. } => {
                return Err(err(ErrorKind::UnknownInstruction("FROM".into()), loc, text));
            }
            InstructionKind::Env { pairs } | InstructionKind::Label { pairs } => {
                // All words are expanded before any is applied: `ENV a=1 b=$a` sees the old `a`.
                let mut out = Vec::new();
                for p in pairs {
                    out.push(Pair {
                        key: x(&p.key, &state.vars)?,
                        value: x(&p.value, &state.vars)?,
                    });
                }
                for p in &out {
                    if matches!(ins.kind, InstructionKind::Env { .. }) {
                        state.vars.set(&p.key, &p.value);
                        state.set_env(&p.key, &p.value);
                    } else {
                        state.config.labels.insert(p.key.clone(), p.value.clone());
                    }
                }
                self.check_vars(&state.vars, loc, text)?;
                StepArgs::Pairs { pairs: out }
            }
            InstructionKind::Arg { args } => {
                let mut out = Vec::new();
                for a in args {
                    // BuildKit dispatchArg: a build arg wins, else the default expanded in the stage
                    // environment, else the global ARG value of the same name.
                    let value = match (self.build_args.get(&a.name), &a.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => Some(x(d, &state.vars)?),
                        (None, None) => globals.get(&a.name).map(str::to_string),
                    };
                    if let Some(v) = &value
                        && !NON_ENV_ARGS.contains(&a.name.as_str())
                    {
                        state.vars.set(&a.name, v);
                        self.check_vars(&state.vars, loc, text)?;
                    }
                    out.push(ArgValue {
                        name: a.name.clone(),
                        value,
                    });
                }
                StepArgs::Args { args: out }
            }
            InstructionKind::Run { command, heredocs } => {
                self.dispatch_run(ins, command, heredocs, state, stages, &mut form)?
            }
            InstructionKind::Cmd { command } | InstructionKind::Entrypoint { command } => {
                let (argv, f) = command_argv(&state.config, command);
                form = Some(f);
                if ins.keyword == "CMD" {
                    state.config.cmd = Some(argv.clone());
                    state.cmd_set = true;
                } else {
                    state.config.entrypoint = Some(argv.clone());
                    if !state.cmd_set {
                        state.config.cmd = None;
                    }
                }
                StepArgs::Command { argv }
            }
            InstructionKind::Shell { argv } => {
                state.config.shell = argv.clone();
                StepArgs::Command { argv: argv.clone() }
            }
            InstructionKind::Copy(spec) | InstructionKind::Add(spec) => {
                let is_add = ins.keyword == "ADD";
                form = Some(if spec.json {
                    Form::Exec
                } else if spec.heredocs.is_empty() {
                    Form::Shell
                } else {
                    Form::Heredoc
                });
                let from = match self.sources_of(ins, stages)?.into_iter().next() {
                    Some(Source::Stage { index, name }) => {
                        if states.get(index).is_none_or(Option::is_none) {
                            return Err(err(
                                ErrorKind::StageNotYetDefined {
                                    from: ins.flags.str("from").unwrap_or_default().to_string(),
                                    stage: current.display_name(),
                                },
                                loc,
                                text,
                            ));
                        }
                        Some(Source::Stage { index, name })
                    }
                    other => other,
                };
                let sources = spec
                    .sources
                    .iter()
                    .map(|s| x(s, &state.vars))
                    .collect::<Result<Vec<_>, _>>()?;
                // Heredoc bodies expand with a backslash escape, quotes kept, up to the heredoc limit.
                let mut raw = self.lex.clone();
                raw.escape = '\\';
                raw.skip_process_quotes = true;
                raw.max_len = self.opts.limits.heredoc_bytes;
                let mut docs = Vec::new();
                for h in &spec.heredocs {
                    let body = h.body();
                    let content = if h.expand {
                        raw.process_word(&body, &state.vars)
                            .map_err(|e| err(ErrorKind::Expansion(e), loc, text))?
                    } else {
                        body
                    };
                    self.charge(content.len(), loc, text)?;
                    docs.push(HeredocFile {
                        name: h.name.clone(),
                        content,
                        expand: h.expand,
                        fd: h.fd,
                    });
                }
                let opt = |name: &str| ins.flags.str(name).map(|v| x(v, &state.vars)).transpose();
                StepArgs::Copy {
                    sources,
                    heredocs: docs,
                    dest: x(&spec.dest, &state.vars)?,
                    from,
                    chown: opt("chown")?,
                    chmod: opt("chmod")?,
                    link: ins.flags.bool("link"),
                    parents: ins.flags.bool("parents"),
                    exclude: ins
                        .flags
                        .list("exclude")
                        .iter()
                        .map(|e| x(e, &state.vars))
                        .collect::<Result<_, _>>()?,
                    keep_git_dir: ins.flags.bool("keep-git-dir"),
                    checksum: if is_add { opt("checksum")? } else { None },
                    unpack: ins
                        .flags
                        .0
                        .contains_key("unpack")
                        .then(|| ins.flags.bool("unpack")),
                }
            }
            InstructionKind::Expose { ports } => {
                let mut out = Vec::new();
                for p in ports {
                    let words = self
                        .lex
                        .process_words(p, &state.vars)
                        .map_err(|e| err(ErrorKind::Expansion(e), loc, text))?;
                    self.charge(words.iter().map(String::len).sum(), loc, text)?;
                    for w in words {
                        out.extend(
                            values::parse_ports(&w).map_err(|e| err(ErrorKind::InvalidPort(e), loc, &w))?,
                        );
                    }
                }
                for p in &out {
                    if !state.config.exposed_ports.contains(p) {
                        state.config.exposed_ports.push(p.clone());
                    }
                }
                state.config.exposed_ports.sort();
                StepArgs::Ports { ports: out }
            }
            InstructionKind::Volume { paths, json } => {
                form = Some(if *json { Form::Exec } else { Form::Shell });
                let mut out = Vec::new();
                for p in paths {
                    let v = x(p, &state.vars)?;
                    if v.is_empty() {
                        return Err(err(ErrorKind::EmptyVolume, loc, text));
                    }
                    if !state.config.volumes.contains(&v) {
                        state.config.volumes.push(v.clone());
                    }
                    out.push(v);
                }
                state.config.volumes.sort();
                StepArgs::Paths { paths: out }
            }
            InstructionKind::User { user } => {
                let v = x(user, &state.vars)?;
                state.config.user = Some(v.clone());
                StepArgs::Value { value: v }
            }
            InstructionKind::Workdir { path } => {
                let v = x(path, &state.vars)?;
                let wd = values::normalize_workdir(state.config.workdir.as_deref(), &v);
                state.config.workdir = Some(wd.clone());
                StepArgs::Value { value: wd }
            }
            InstructionKind::Stopsignal { signal } => {
                let v = x(signal, &state.vars)?;
                values::check_signal(&v).map_err(|_| err(ErrorKind::InvalidSignal(v.clone()), loc, text))?;
                state.config.stop_signal = Some(v.clone());
                StepArgs::Value { value: v }
            }
            InstructionKind::Maintainer { name } => {
                state.config.author = Some(name.clone());
                StepArgs::Value { value: name.clone() }
            }
            InstructionKind::Healthcheck(h) => {
                let hc = match h {
                    Healthcheck::None => HealthcheckConfig {
                        test: vec!["NONE".into()],
                        ..Default::default()
                    },
                    Healthcheck::Cmd {
                        command,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test = match command {
                            CommandLine::Exec(v) => {
                                form = Some(Form::Exec);
                                std::iter::once("CMD".to_string())
                                    .chain(v.iter().cloned())
                                    .collect()
                            }
                            CommandLine::Shell(s) => {
                                form = Some(Form::Shell);
                                vec!["CMD-SHELL".to_string(), s.clone()]
                            }
                        };
                        HealthcheckConfig {
                            test,
                            interval: *interval,
                            timeout: *timeout,
                            start_period: *start_period,
                            start_interval: *start_interval,
                            retries: *retries,
                        }
                    }
                };
                state.config.healthcheck = Some(hc.clone());
                StepArgs::Healthcheck { healthcheck: hc }
            }
            InstructionKind::Onbuild { expression, .. } => {
                state.config.onbuild.push(expression.clone());
                StepArgs::Value {
                    value: expression.clone(),
                }
            }
        };
        Ok(Step {
            location: loc,
            keyword: ins.keyword.clone(),
            source: ins.source.clone(),
            onbuild,
            form,
            flags: ins.flags.clone(),
            args,
        })
    }

    fn dispatch_run(
        &self,
        ins: &Instruction,
        command: &CommandLine,
        heredocs: &[crate::heredoc::Heredoc],
        state: &State,
        stages: &[RawStage],
        form: &mut Option<Form>,
    ) -> Result<StepArgs, Error> {
        let loc = ins.location;
        let heredoc_bytes: usize = heredocs.iter().map(|h| h.content.len()).sum();
        let env_bytes = state.vars.byte_len() + state.vars.entries().len();
        // The step holds its own copy of the environment and of its heredocs (twice when appended
        // to the script).
        self.charge(env_bytes + 2 * heredoc_bytes, loc, &ins.source)?;
        let files: Vec<HeredocFile> = heredocs
            .iter()
            .map(|h| HeredocFile {
                name: h.name.clone(),
                content: h.body(),
                expand: h.expand,
                fd: h.fd,
            })
            .collect();
        let mut script_path = None;
        let argv = match command {
            CommandLine::Exec(v) => {
                *form = Some(Form::Exec);
                v.clone()
            }
            CommandLine::Shell(s) if files.is_empty() => {
                *form = Some(Form::Shell);
                with_shell(&state.config, s)
            }
            CommandLine::Shell(s) => {
                *form = Some(Form::Heredoc);
                // BuildKit dispatchRun: a lone heredoc is the script itself (run from a file when it
                // has a shebang); otherwise the heredocs are appended for the shell to handle.
                let lone = crate::heredoc::parse_marker(s).ok().flatten().is_some();
                match (lone, files.first()) {
                    (true, Some(f)) if f.content.starts_with("#!") => {
                        let path = format!("/dev/pipes/{}", f.name);
                        script_path = Some(path.clone());
                        with_shell(&state.config, &path)
                    }
                    (true, Some(f)) => with_shell(&state.config, &f.content),
                    _ => {
                        let mut script = s.clone();
                        for h in heredocs {
                            script.push('\n');
                            script.push_str(&h.content);
                            script.push_str(&h.name);
                        }
                        with_shell(&state.config, &script)
                    }
                }
            }
        };
        let mut mounts = Vec::new();
        let mut mount_sources = Vec::new();
        let expander = |w: &str| {
            let value = self.lex.process_word(w, &state.vars)?;
            self.charge(value.len(), loc, &ins.source)
                .map_err(|e| e.kind.to_string())?;
            Ok(value)
        };
        for m in ins.flags.list("mount") {
            let parsed = mount::parse_mount(m, Some(&expander))
                .map_err(|e| err(ErrorKind::InvalidMount(e), loc, m))?;
            if let Some(from) = &parsed.from {
                mount_sources.push(named_source(from, stages));
            }
            mounts.push(parsed);
        }
        Ok(StepArgs::Run {
            argv,
            env: state
                .vars
                .entries()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            mounts,
            mount_sources,
            network: ins.flags.str("network").map(str::to_string),
            security: ins.flags.str("security").map(str::to_string),
            heredocs: files,
            script_path,
        })
    }
}

fn named_source(from: &str, stages: &[RawStage]) -> Source {
    match stages::find_by_name(stages, from) {
        Some(i) => Source::Stage {
            index: i,
            name: stages.get(i).and_then(|s| s.name.clone()),
        },
        None => Source::Image {
            reference: from.to_string(),
        },
    }
}
