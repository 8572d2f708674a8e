//! `RUN --mount=type=…,…` parsing (BuildKit `instructions/commands_runmount.go` rules).

use serde::Serialize;

/// Mount types accepted by `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// Bind a directory from the context, a stage or an image (default).
    Bind,
    /// A persistent cache directory.
    Cache,
    /// A tmpfs.
    Tmpfs,
    /// A build secret.
    Secret,
    /// An SSH agent socket.
    Ssh,
}

impl MountType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Cache => "cache",
            Self::Tmpfs => "tmpfs",
            Self::Secret => "secret",
            Self::Ssh => "ssh",
        }
    }
}

/// Cache sharing modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sharing {
    /// Concurrent writers share the cache.
    Shared,
    /// Each writer gets its own cache if it is busy.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// One `--mount`, with BuildKit's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// The mount type.
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Where it is mounted in the container.
    pub target: Option<String>,
    /// Path inside `from` (or the context, or the secret id's source).
    pub source: Option<String>,
    /// Stage name or index, or image, to take the files from.
    pub from: Option<String>,
    /// Cache, secret or ssh id.
    pub id: Option<String>,
    /// Cache sharing mode (cache mounts only).
    pub sharing: Option<Sharing>,
    /// Whether the mount is read-only.
    pub readonly: bool,
    /// Secret/ssh mounts: fail when missing.
    pub required: bool,
    /// File mode (octal in the Dockerfile).
    pub mode: Option<u32>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// Secret mounts: expose the secret as this environment variable.
    pub env: Option<String>,
}

/// Expands one mount option value.
pub(crate) type Expander<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// Split a CSV record the way Go's `encoding/csv` does (one line, comma separated, `"` quoting).
fn csv_fields(val: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let chars: Vec<char> = val.chars().collect();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("extraneous or missing \" in quoted-field: {val}")),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        field.push(*c);
                        i += 1;
                    }
                }
            }
            match chars.get(i) {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => i += 1,
                Some(_) => return Err(format!("extraneous or missing \" in quoted-field: {val}")),
            }
            fields.push(field);
            continue;
        }
        loop {
            match chars.get(i) {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {
                    i += 1;
                    break;
                }
                Some('"') => return Err(format!("bare \" in non-quoted-field: {val}")),
                Some(c) => {
                    field.push(*c);
                    i += 1;
                }
            }
        }
        fields.push(field);
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {value}")),
    }
}

/// Go's `units.RAMInBytes`: `512`, `64k`, `1.5g`, `10MiB` (binary multiples).
fn ram_in_bytes(value: &str) -> Result<u64, String> {
    let bad = || format!("invalid size: '{value}'");
    let v = value.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

impl Mount {
    /// Parses one literal `--mount` value (`type=cache,target=/c,sharing=locked`) with BuildKit's defaults.
    pub fn parse(value: &str) -> Result<Mount, String> {
        parse_mount(value, None)
    }
}

/// Parse one `--mount` value. `expand` is applied to each value (BuildKit expands mount options at
/// dispatch; at parse time pass `None` to validate the literal text).
pub(crate) fn parse_mount(val: &str, expand: Option<Expander<'_>>) -> Result<Mount, String> {
    let mut m = Mount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        id: None,
        sharing: None,
        readonly: false,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        env: None,
    };
    let mut ro_auto = true;
    let mut sharing: Option<String> = None;
    for field in csv_fields(val)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
            None => {
                let key = field.to_ascii_lowercase();
                match key.as_str() {
                    "readonly" | "ro" => {
                        m.readonly = true;
                        ro_auto = false;
                    }
                    "readwrite" | "rw" => {
                        m.readonly = false;
                        ro_auto = false;
                    }
                    "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = true,
                    "required" => {
                        return Err(format!(
                            "unexpected key '{key}' for mount type '{}'",
                            m.kind.as_str()
                        ));
                    }
                    _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
                }
                continue;
            }
        };
        let value = match expand {
            Some(f) => f(&value)?,
            None => value,
        };
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => return Err(format!("unsupported mount type {value:?}")),
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                m.required = parse_bool(&key, &value)?;
            }
            "size" if m.kind == MountType::Tmpfs => m.size = Some(ram_in_bytes(&value)?),
            "required" | "size" => {
                return Err(format!(
                    "unexpected key '{key}' for mount type '{}'",
                    m.kind.as_str()
                ));
            }
            "id" => m.id = Some(value),
            "sharing" => {
                if !value.is_empty() && m.kind != MountType::Cache {
                    return Err(format!("invalid cache sharing set for {} mount", m.kind.as_str()));
                }
                sharing = Some(value);
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8).map_err(|_| format!("invalid value {value} for mode"))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid value {value} for uid"))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid value {value} for gid"))?,
                )
            }
            "env" => m.env = Some(value),
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    let file_info_allowed = matches!(
        m.kind,
        MountType::Bind | MountType::Cache | MountType::Secret | MountType::Ssh
    );
    if !file_info_allowed {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{name} not allowed for {:?} type mounts",
                    m.kind.as_str()
                ));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Cache {
        m.sharing = Some(match sharing.as_deref().unwrap_or("") {
            "" | "shared" => Sharing::Shared,
            "private" => Sharing::Private,
            "locked" => Sharing::Locked,
            other => return Err(format!("unsupported sharing value {other:?}")),
        });
    }
    match m.kind {
        MountType::Secret => {
            if m.from.is_some() {
                return Err("secret mount should not have a from".to_string());
            }
            if m.id.is_none() {
                if let Some(t) = m.target.as_deref().or(m.source.as_deref()) {
                    m.id = Some(t.rsplit('/').next().unwrap_or(t).to_string());
                } else if m.env.is_none() {
                    return Err("one of source, target or id is required for a secret mount".to_string());
                }
            }
            if m.target.is_none() && m.env.is_none() {
                m.target = m.id.as_ref().map(|id| format!("/run/secrets/{id}"));
            }
        }
        MountType::Ssh => {
            if m.from.is_some() {
                return Err("ssh mount should not have a from".to_string());
            }
            if m.id.is_none() {
                m.id = Some("default".to_string());
            }
        }
        MountType::Bind | MountType::Cache | MountType::Tmpfs => {
            if m.target.as_deref().unwrap_or("").is_empty() {
                return Err(format!("mount type {} requires a target", m.kind.as_str()));
            }
            if m.kind == MountType::Cache && m.id.is_none() {
                m.id = m.target.clone();
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_defaults() {
        let m = parse_mount("type=cache,target=/root/.cache", None).unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.id.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Some(Sharing::Shared));
        assert!(!m.readonly);
    }

    #[test]
    fn bind_is_readonly_by_default() {
        let m = parse_mount("target=/src,from=build,source=/out", None).unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.readonly);
        let m = parse_mount("target=/src,rw", None).unwrap();
        assert!(!m.readonly);
    }

    #[test]
    fn secret_target_defaults_from_id() {
        let m = parse_mount("type=secret,id=npmrc", None).unwrap();
        assert_eq!(m.target.as_deref(), Some("/run/secrets/npmrc"));
        let m = parse_mount("type=secret,id=tok,env=TOKEN,required", None).unwrap();
        assert_eq!(m.target, None);
        assert!(m.required);
    }

    #[test]
    fn errors() {
        assert!(
            parse_mount("type=nfs,target=/x", None)
                .unwrap_err()
                .contains("unsupported mount type")
        );
        assert!(
            parse_mount("type=cache", None)
                .unwrap_err()
                .contains("requires a target")
        );
        assert!(parse_mount("type=bind,target=/x,sharing=locked", None).is_err());
        assert!(parse_mount("type=tmpfs,target=/x,mode=0700", None).is_err());
        assert!(parse_mount("type=cache,target=/x,bogus=1", None).is_err());
        assert!(parse_mount("type=cache,target=/x,flag", None).is_err());
        assert_eq!(
            parse_mount("type=tmpfs,target=/x,size=64m", None).unwrap().size,
            Some(64 << 20)
        );
    }
}
