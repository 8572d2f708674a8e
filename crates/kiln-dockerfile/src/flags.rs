//! Instruction flags (`--name=value`), validated per instruction like BuildKit's `BFlags`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::ErrorKind;
use crate::words::RawFlag;

/// The kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    Str,
    Bool,
    List,
}

/// A parsed flag value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum FlagValue {
    /// A boolean flag (`--link`, `--link=false`).
    Bool(bool),
    /// A single-valued flag.
    Str(String),
    /// A flag that may repeat (`--mount`, `--exclude`).
    List(Vec<String>),
}

/// The flags of one instruction, by name (without dashes), as written (not yet expanded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Flags(pub BTreeMap<String, FlagValue>);

impl Flags {
    /// A single-valued flag.
    pub fn str(&self, name: &str) -> Option<&str> {
        match self.0.get(name) {
            Some(FlagValue::Str(s)) => Some(s),
            _ => None,
        }
    }
    /// A boolean flag (false when absent).
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.0.get(name), Some(FlagValue::Bool(true)))
    }
    /// A repeatable flag (empty when absent).
    pub fn list(&self, name: &str) -> &[String] {
        match self.0.get(name) {
            Some(FlagValue::List(v)) => v,
            _ => &[],
        }
    }
}

/// The flags each instruction accepts.
pub(crate) fn spec(keyword: &str) -> &'static [(&'static str, FlagKind)] {
    use FlagKind::*;
    match keyword {
        "FROM" => &[("platform", Str)],
        "RUN" => &[("mount", List), ("network", Str), ("security", Str)],
        "COPY" => &[
            ("from", Str),
            ("chown", Str),
            ("chmod", Str),
            ("link", Bool),
            ("parents", Bool),
            ("exclude", List),
        ],
        "ADD" => &[
            ("chown", Str),
            ("chmod", Str),
            ("link", Bool),
            ("keep-git-dir", Bool),
            ("checksum", Str),
            ("exclude", List),
            ("unpack", Bool),
        ],
        "HEALTHCHECK" => &[
            ("interval", Str),
            ("timeout", Str),
            ("start-period", Str),
            ("start-interval", Str),
            ("retries", Str),
        ],
        _ => &[],
    }
}

/// Parse `raw` flags for `keyword`; on error, the offending flag is returned with the kind.
pub(crate) fn parse(keyword: &str, raw: &[RawFlag]) -> Result<Flags, (ErrorKind, RawFlag)> {
    let allowed = spec(keyword);
    let mut out = BTreeMap::new();
    for flag in raw {
        let fail = |k: ErrorKind| Err((k, flag.clone()));
        let body = flag.text.strip_prefix("--").unwrap_or(&flag.text);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some((_, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
            return fail(ErrorKind::UnknownFlag {
                instruction: keyword.to_string(),
                flag: name.to_string(),
            });
        };
        match kind {
            FlagKind::Bool => {
                if out.contains_key(name) {
                    return fail(ErrorKind::DuplicateFlag(name.to_string()));
                }
                let b = match value.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(_) => {
                        return fail(ErrorKind::FlagNotBool {
                            flag: name.to_string(),
                            value: value.unwrap_or_default().to_string(),
                        });
                    }
                };
                out.insert(name.to_string(), FlagValue::Bool(b));
            }
            FlagKind::Str => {
                let Some(v) = value else {
                    return fail(ErrorKind::FlagMissingValue(name.to_string()));
                };
                if out.contains_key(name) {
                    return fail(ErrorKind::DuplicateFlag(name.to_string()));
                }
                out.insert(name.to_string(), FlagValue::Str(v.to_string()));
            }
            FlagKind::List => {
                let Some(v) = value else {
                    return fail(ErrorKind::FlagMissingValue(name.to_string()));
                };
                match out
                    .entry(name.to_string())
                    .or_insert_with(|| FlagValue::List(Vec::new()))
                {
                    FlagValue::List(list) => list.push(v.to_string()),
                    _ => return fail(ErrorKind::DuplicateFlag(name.to_string())),
                }
            }
        }
    }
    Ok(Flags(out))
}
