//! Typed, not-yet-expanded instructions (BuildKit `parser` dispatch table + `instructions/parse.go`).

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::flags::{self, Flags};
use crate::heredoc::{self, Heredoc};
use crate::lexer::LogicalLine;
use crate::mount;
use crate::words::{extract_flags, is_re_space, is_space, offset_in, parse_words, split_ws};

/// Where an instruction sits in the Dockerfile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Location {
    /// First line (1-based).
    pub start_line: usize,
    /// Last line, including continuation lines and heredoc bodies.
    pub end_line: usize,
    /// Column of the keyword (1-based).
    pub column: usize,
}

/// Exec form (a JSON array) or shell form (a string run by the SHELL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandLine {
    /// `["executable", "arg"]`.
    Exec(Vec<String>),
    /// `command arg` (continuations joined, comments removed).
    Shell(String),
}

/// `KEY=value` as written (ENV, LABEL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key, unexpanded.
    pub key: String,
    /// The value, unexpanded (quotes still present).
    pub value: String,
    /// Written in the legacy `KEY value` form (no `=`).
    pub legacy: bool,
}

/// One `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    /// The argument name.
    pub name: String,
    /// The default, unexpanded.
    pub default: Option<String>,
}

/// COPY/ADD operands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopySpec {
    /// Source paths/URLs, unexpanded (heredoc sources are in `heredocs`).
    pub sources: Vec<String>,
    /// Heredocs used as inline source files, in order.
    pub heredocs: Vec<Heredoc>,
    /// The destination, unexpanded.
    pub dest: String,
    /// Written as a JSON array.
    pub json: bool,
}

/// HEALTHCHECK forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the inherited check.
    None,
    /// `HEALTHCHECK [options] CMD …`.
    Cmd {
        /// The test command.
        command: CommandLine,
        /// `--interval` in nanoseconds (0 = inherit/default).
        interval: i64,
        /// `--timeout` in nanoseconds.
        timeout: i64,
        /// `--start-period` in nanoseconds.
        start_period: i64,
        /// `--start-interval` in nanoseconds.
        start_interval: i64,
        /// `--retries`.
        retries: i64,
    },
}

/// The instruction-specific operands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InstructionKind {
    /// `FROM [--platform=…] image [AS name]`.
    From {
        /// Base image or stage name, unexpanded.
        image: String,
        /// Stage name (lowercased).
        name: Option<String>,
    },
    /// `RUN`.
    Run {
        /// The command; heredoc markers stay in shell form text.
        command: CommandLine,
        /// Heredocs on the line.
        heredocs: Vec<Heredoc>,
    },
    /// `CMD`.
    Cmd {
        /// The command.
        command: CommandLine,
    },
    /// `ENTRYPOINT`.
    Entrypoint {
        /// The command.
        command: CommandLine,
    },
    /// `SHELL ["…"]`.
    Shell {
        /// The new shell.
        argv: Vec<String>,
    },
    /// `COPY`.
    Copy(CopySpec),
    /// `ADD`.
    Add(CopySpec),
    /// `ENV`.
    Env {
        /// Pairs in order.
        pairs: Vec<KeyValue>,
    },
    /// `LABEL`.
    Label {
        /// Pairs in order.
        pairs: Vec<KeyValue>,
    },
    /// `ARG`.
    Arg {
        /// Declarations in order.
        args: Vec<ArgDecl>,
    },
    /// `EXPOSE`.
    Expose {
        /// Port words, unexpanded.
        ports: Vec<String>,
    },
    /// `VOLUME`.
    Volume {
        /// Paths, unexpanded.
        paths: Vec<String>,
        /// Written as a JSON array.
        json: bool,
    },
    /// `USER`.
    User {
        /// `user[:group]`, unexpanded.
        user: String,
    },
    /// `WORKDIR`.
    Workdir {
        /// Path, unexpanded.
        path: String,
    },
    /// `STOPSIGNAL`.
    Stopsignal {
        /// Signal, unexpanded.
        signal: String,
    },
    /// `MAINTAINER` (deprecated).
    Maintainer {
        /// Author.
        name: String,
    },
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD <instruction>`.
    Onbuild {
        /// The trigger as stored in the image config (heredoc bodies appended).
        expression: String,
        /// The trigger parsed, for validation.
        trigger: Box<Instruction>,
    },
}

/// One parsed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// Source location.
    pub location: Location,
    /// Upper-case keyword, e.g. `RUN`.
    pub keyword: String,
    /// The instruction text with continuations joined (heredoc bodies excluded).
    pub source: String,
    /// Flags as written.
    pub flags: Flags,
    /// Operands.
    #[serde(flatten)]
    pub kind: InstructionKind,
}

/// Whether `s` is a JSON array of strings (or of anything: BuildKit rejects non-strings later).
pub(crate) fn is_json_array(s: &str) -> bool {
    s.starts_with('[') && serde_json::from_str::<Vec<serde_json::Value>>(s).is_ok()
}

/// BuildKit `parseJSON`: `Ok(None)` when not JSON (fall back to shell form).
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, ErrorKind> {
    let rest = rest.trim_start_matches(is_space);
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(ErrorKind::JsonNotStrings),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn maybe_json(rest: &str) -> Result<CommandLine, ErrorKind> {
    Ok(match parse_json(rest)? {
        Some(v) => CommandLine::Exec(v),
        None => CommandLine::Shell(rest.to_string()),
    })
}

/// Go's `time.ParseDuration` (subset sufficient for Dockerfiles: ns/us/µs/ms/s/m/h, fractions).
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(n);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let u = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(u);
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        total += value * mult;
        rest = after;
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(if neg { -(total as i64) } else { total as i64 })
}

/// Context for building errors inside one logical line.
struct Ctx<'a> {
    line: &'a LogicalLine,
}

impl Ctx<'_> {
    fn err_at(&self, kind: ErrorKind, off: usize, text: &str) -> Error {
        let (l, c) = self.line.position(off);
        Error::new(kind, l, c, text)
    }
}

/// Parse one logical line into an instruction.
pub(crate) fn parse_line(line: &LogicalLine, escape: char) -> Result<Instruction, Error> {
    let ctx = Ctx { line };
    parse_text(&ctx, &line.text, &line.heredocs, escape, false)
}

fn parse_text(
    ctx: &Ctx<'_>,
    text: &str,
    heredocs: &[Heredoc],
    escape: char,
    in_onbuild: bool,
) -> Result<Instruction, Error> {
    let full = ctx.line.text.as_str();
    let trimmed = text.trim_matches(is_space);
    let base = offset_in(full, trimmed);
    let (cmd, rest) = match trimmed.find(is_re_space) {
        Some(i) => (
            trimmed.get(..i).unwrap_or_default(),
            trimmed.get(i..).unwrap_or_default(),
        ),
        None => (trimmed, ""),
    };
    let (l, c) = ctx.line.position(base);
    let location = Location {
        start_line: ctx.line.start_line,
        end_line: ctx.line.end_line,
        column: c,
    };
    let _ = l;
    let keyword = cmd.to_ascii_uppercase();
    let known = [
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    ];
    if !known.contains(&keyword.as_str()) {
        return Err(ctx.err_at(ErrorKind::UnknownInstruction(cmd.to_string()), base, trimmed));
    }
    let (raw_flags, args) = extract_flags(rest);
    let args = args.trim_matches(is_space);
    let args_off = offset_in(full, args);
    let rest_off = offset_in(full, rest);
    let flags = flags::parse(&keyword, &raw_flags).map_err(|(kind, flag)| {
        let off = rest_off + flag.offset;
        ctx.err_at(kind, off, &flag.text)
    })?;
    let at_kw = |kind: ErrorKind| ctx.err_at(kind, base, trimmed);
    let at_args = |kind: ErrorKind| ctx.err_at(kind, args_off, if args.is_empty() { trimmed } else { args });
    let need = |what: &str| {
        Err(ctx.err_at(
            ErrorKind::Arguments {
                instruction: keyword.clone(),
                expected: what.to_string(),
            },
            base,
            trimmed,
        ))
    };

    let kind = match keyword.as_str() {
        "FROM" => {
            let a = split_ws(args);
            match a.as_slice() {
                [image] => InstructionKind::From {
                    image: image.clone(),
                    name: None,
                },
                [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    let lower = name.to_ascii_lowercase();
                    let valid = lower.starts_with(|c: char| c.is_ascii_lowercase())
                        && lower
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
                    if !valid {
                        return Err(at_args(ErrorKind::InvalidStageName(name.clone())));
                    }
                    InstructionKind::From {
                        image: image.clone(),
                        name: Some(lower),
                    }
                }
                _ => return need("either one or three arguments"),
            }
        }
        "RUN" | "CMD" | "ENTRYPOINT" => {
            let command = maybe_json(args).map_err(at_args)?;
            match keyword.as_str() {
                "RUN" => {
                    for m in flags.list("mount") {
                        mount::parse_mount(m, None).map_err(|e| {
                            let off = full.find(m.as_str()).unwrap_or(rest_off);
                            ctx.err_at(ErrorKind::InvalidMount(e), off, m)
                        })?;
                    }
                    if let Some(n) = flags.str("network")
                        && !matches!(n, "default" | "none" | "host")
                    {
                        return Err(at_kw(ErrorKind::InvalidFlagValue {
                            flag: "network".into(),
                            reason: format!("unsupported network mode {n:?}"),
                        }));
                    }
                    if let Some(s) = flags.str("security")
                        && !matches!(s, "sandbox" | "insecure")
                    {
                        return Err(at_kw(ErrorKind::InvalidFlagValue {
                            flag: "security".into(),
                            reason: format!("unsupported security mode {s:?}"),
                        }));
                    }
                    InstructionKind::Run {
                        command,
                        heredocs: heredocs.to_vec(),
                    }
                }
                "CMD" => InstructionKind::Cmd { command },
                _ => InstructionKind::Entrypoint { command },
            }
        }
        "SHELL" => match parse_json(args).map_err(at_args)? {
            Some(v) if v.is_empty() => return need("at least one argument"),
            Some(v) => InstructionKind::Shell { argv: v },
            None if args.is_empty() => return need("at least one argument"),
            None => return Err(at_args(ErrorKind::NotJson(keyword.clone()))),
        },
        "COPY" | "ADD" => {
            let (words, json) = match parse_json(args).map_err(at_args)? {
                Some(v) => (v, true),
                None => (split_ws(args), false),
            };
            let Some((dest, srcs)) = words.split_last() else {
                return need(
                    "at least two arguments, but only one was provided. destination could not be determined",
                );
            };
            if srcs.is_empty() {
                return need(
                    "at least two arguments, but only one was provided. destination could not be determined",
                );
            }
            let is_heredoc = |w: &str| !json && heredoc::parse_marker(w).ok().flatten().is_some();
            if is_heredoc(dest) {
                return Err(at_args(ErrorKind::HeredocDestination(keyword.clone())));
            }
            let mut sources = Vec::new();
            let mut docs = Vec::new();
            for s in srcs {
                if is_heredoc(s) {
                    match heredocs.get(docs.len()) {
                        Some(h) => docs.push(h.clone()),
                        None => return Err(at_args(ErrorKind::InvalidHeredoc(format!("no body for {s}")))),
                    }
                } else {
                    sources.push(s.clone());
                }
            }
            let spec = CopySpec {
                sources,
                heredocs: docs,
                dest: dest.clone(),
                json,
            };
            if keyword == "COPY" {
                InstructionKind::Copy(spec)
            } else {
                InstructionKind::Add(spec)
            }
        }
        "ENV" | "LABEL" => {
            let pairs = parse_name_val(args, &keyword, escape).map_err(at_args)?;
            if pairs.is_empty() {
                return need("at least one argument");
            }
            if pairs.iter().any(|p| p.key.is_empty()) {
                return need("names that are not blank");
            }
            if keyword == "ENV" {
                InstructionKind::Env { pairs }
            } else {
                InstructionKind::Label { pairs }
            }
        }
        "ARG" => {
            let words = parse_words(args, escape);
            if words.is_empty() {
                return need("at least one argument");
            }
            let mut decls = Vec::new();
            for w in words {
                let decl = match w.split_once('=') {
                    Some(("", _)) => return need("names that are not blank"),
                    Some((k, v)) => ArgDecl {
                        name: k.to_string(),
                        default: Some(v.to_string()),
                    },
                    None => ArgDecl {
                        name: w,
                        default: None,
                    },
                };
                decls.push(decl);
            }
            InstructionKind::Arg { args: decls }
        }
        "EXPOSE" => {
            let ports = split_ws(args);
            if ports.is_empty() {
                return need("at least one argument");
            }
            InstructionKind::Expose { ports }
        }
        "VOLUME" => {
            let (paths, json) = match parse_json(args).map_err(at_args)? {
                Some(v) => (v, true),
                None => (split_ws(args), false),
            };
            if paths.is_empty() {
                return need("at least one argument");
            }
            InstructionKind::Volume { paths, json }
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" | "MAINTAINER" => {
            if args.is_empty() {
                return need("exactly one argument");
            }
            let v = args.to_string();
            match keyword.as_str() {
                "USER" => InstructionKind::User { user: v },
                "WORKDIR" => InstructionKind::Workdir { path: v },
                "STOPSIGNAL" => InstructionKind::Stopsignal { signal: v },
                _ => InstructionKind::Maintainer { name: v },
            }
        }
        "HEALTHCHECK" => {
            let (typ, tail) = match args.find(is_re_space) {
                Some(i) => (
                    args.get(..i).unwrap_or_default(),
                    args.get(i..).unwrap_or_default(),
                ),
                None => (args, ""),
            };
            let tail = tail.trim_matches(is_space);
            match typ.to_ascii_uppercase().as_str() {
                "" => return need("at least one argument"),
                "NONE" => {
                    if !tail.is_empty() || !flags.0.is_empty() {
                        return Err(at_args(ErrorKind::InvalidHealthcheck(
                            "healthcheck none takes no arguments".into(),
                        )));
                    }
                    InstructionKind::Healthcheck(Healthcheck::None)
                }
                "CMD" => {
                    let command = maybe_json(tail).map_err(at_args)?;
                    if matches!(&command, CommandLine::Shell(s) if s.is_empty())
                        || matches!(&command, CommandLine::Exec(v) if v.is_empty())
                    {
                        return Err(at_args(ErrorKind::InvalidHealthcheck(
                            "missing command after cmd".into(),
                        )));
                    }
                    let dur = |name: &str| -> Result<i64, Error> {
                        let Some(v) = flags.str(name) else { return Ok(0) };
                        let d = parse_duration(v)
                            .map_err(|e| at_kw(ErrorKind::InvalidHealthcheck(format!("--{name}: {e}"))))?;
                        if d < 0 {
                            return Err(at_kw(ErrorKind::InvalidHealthcheck(format!(
                                "{name} cannot be negative"
                            ))));
                        }
                        if d != 0 && d < 1_000_000 {
                            return Err(at_kw(ErrorKind::InvalidHealthcheck(format!(
                                "{name} {v:?} cannot be less than 1ms"
                            ))));
                        }
                        Ok(d)
                    };
                    let retries = match flags.str("retries") {
                        None => 0,
                        Some(r) => {
                            let n: i64 = r.parse().map_err(|_| {
                                at_kw(ErrorKind::InvalidHealthcheck(format!(
                                    "invalid --retries value {r:?}"
                                )))
                            })?;
                            if n < 0 {
                                return Err(at_kw(ErrorKind::InvalidHealthcheck(
                                    "--retries cannot be negative".into(),
                                )));
                            }
                            n
                        }
                    };
                    InstructionKind::Healthcheck(Healthcheck::Cmd {
                        command,
                        interval: dur("interval")?,
                        timeout: dur("timeout")?,
                        start_period: dur("start-period")?,
                        start_interval: dur("start-interval")?,
                        retries,
                    })
                }
                other => {
                    return Err(at_args(ErrorKind::InvalidHealthcheck(format!(
                        "unknown type {other:?} in healthcheck (try cmd)"
                    ))));
                }
            }
        }
        "ONBUILD" => {
            if in_onbuild {
                return Err(at_kw(ErrorKind::OnbuildChain));
            }
            if args.is_empty() {
                return need("at least one argument");
            }
            let sub_kw = args
                .split(is_re_space)
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            match sub_kw.as_str() {
                "ONBUILD" => return Err(at_args(ErrorKind::OnbuildChain)),
                "FROM" | "MAINTAINER" => return Err(at_args(ErrorKind::OnbuildTrigger(sub_kw))),
                _ => {}
            }
            let trigger = parse_text(ctx, args, heredocs, escape, true)?;
            let mut expression = args.to_string();
            for h in heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            InstructionKind::Onbuild {
                expression,
                trigger: Box::new(trigger),
            }
        }
        _ => return Err(at_kw(ErrorKind::UnknownInstruction(cmd.to_string()))),
    };
    Ok(Instruction {
        location,
        keyword,
        source: trimmed.to_string(),
        flags,
        kind,
    })
}

/// BuildKit `parseNameVal`: `KEY=value …` or the legacy `KEY value with spaces`.
fn parse_name_val(rest: &str, keyword: &str, escape: char) -> Result<Vec<KeyValue>, ErrorKind> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let mut parts = rest.splitn(2, is_re_space);
        let key = parts.next().unwrap_or_default();
        let value = parts
            .next()
            .map(|v| v.trim_start_matches(is_re_space))
            .unwrap_or_default();
        if value.is_empty() {
            return Err(ErrorKind::Arguments {
                instruction: keyword.to_string(),
                expected: "two arguments".into(),
            });
        }
        return Ok(vec![KeyValue {
            key: key.to_string(),
            value: value.to_string(),
            legacy: true,
        }]);
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok(KeyValue {
                key: k.to_string(),
                value: v.to_string(),
                legacy: false,
            }),
            None => Err(ErrorKind::MissingEquals(w.clone())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::scan;

    fn one(src: &str) -> Result<Instruction, Error> {
        let s = scan(src, &crate::Limits::default())?;
        parse_line(&s.lines[0], s.escape)
    }

    #[test]
    fn json_fallback_to_shell() {
        // BuildKit rule: invalid JSON after CMD/RUN/ENTRYPOINT is shell form, not an error.
        let i = one("CMD [\"a\", 'b']").unwrap();
        assert_eq!(
            i.kind,
            InstructionKind::Cmd {
                command: CommandLine::Shell("[\"a\", 'b']".into())
            }
        );
        let i = one("CMD [\"a\", \"b\"]").unwrap();
        assert_eq!(
            i.kind,
            InstructionKind::Cmd {
                command: CommandLine::Exec(vec!["a".into(), "b".into()])
            }
        );
        assert_eq!(one("CMD [1]").unwrap_err().kind, ErrorKind::JsonNotStrings);
    }

    #[test]
    fn env_forms() {
        let i = one("ENV A=1 B=\"two words\"").unwrap();
        let InstructionKind::Env { pairs } = i.kind else {
            panic!()
        };
        assert_eq!(pairs[1].value, "\"two words\"");
        let i = one("ENV GREETING hello   big world").unwrap();
        let InstructionKind::Env { pairs } = i.kind else {
            panic!()
        };
        assert_eq!(
            (pairs[0].key.as_str(), pairs[0].value.as_str(), pairs[0].legacy),
            ("GREETING", "hello   big world", true)
        );
        assert!(matches!(
            one("ENV A=1 B").unwrap_err().kind,
            ErrorKind::MissingEquals(_)
        ));
        assert!(matches!(
            one("ENV A").unwrap_err().kind,
            ErrorKind::Arguments { .. }
        ));
    }

    #[test]
    fn flags_are_checked_per_instruction() {
        let e = one("RUN --from=x echo").unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::UnknownFlag {
                instruction: "RUN".into(),
                flag: "from".into()
            }
        );
        assert_eq!((e.line, e.column), (1, 5));
        let e = one("COPY --link=maybe a b").unwrap_err();
        assert!(matches!(e.kind, ErrorKind::FlagNotBool { .. }));
        let e = one("COPY --from a b").unwrap_err();
        assert_eq!(e.kind, ErrorKind::FlagMissingValue("from".into()));
        let e = one("RUN --mount=type=cache echo").unwrap_err();
        assert!(matches!(e.kind, ErrorKind::InvalidMount(_)));
    }

    #[test]
    fn onbuild_rules() {
        assert_eq!(
            one("ONBUILD ONBUILD RUN x").unwrap_err().kind,
            ErrorKind::OnbuildChain
        );
        assert_eq!(
            one("ONBUILD from x").unwrap_err().kind,
            ErrorKind::OnbuildTrigger("FROM".into())
        );
        let i = one("onbuild   RUN make").unwrap();
        let InstructionKind::Onbuild { expression, .. } = i.kind else {
            panic!()
        };
        assert_eq!(expression, "RUN make");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
