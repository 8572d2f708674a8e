//! Cache digests: what index routes are keyed on. taskgraph's wraps the context hash, the args JSON, the
//! builder image pin, the parent's digest and the chain-of-trust flag (taskgraph-compat §1.8); kiln's
//! native digest is the same idea with canonical, self-describing parts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::model::{ArgsJson, HashMode, RepoConfig};

/// A cache digest and the parts it was computed from (for `--explain`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheDigest {
    /// Lowercase hex SHA-256.
    pub hex: String,
    /// The parts joined with `\n` before hashing.
    pub parts: Vec<String>,
}

/// The parent as it enters a child's digest.
#[derive(Debug, Clone)]
pub struct ParentDigest<'a> {
    /// The parent's name.
    pub name: &'a str,
    /// The parent's cache digest.
    pub digest: &'a str,
}

/// JSON string escaping as Python's `json.dumps` (`ensure_ascii`) or orjson do it.
fn push_json_string(out: &mut String, s: &str, style: ArgsJson) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if style == ArgsJson::Ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `json.dumps(args, sort_keys=True)` with compact separators, as taskgraph's json shim produces it.
pub fn args_json(args: &BTreeMap<String, String>, style: ArgsJson) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in args.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, key, style);
        out.push(':');
        push_json_string(&mut out, value, style);
    }
    out.push('}');
    out
}

fn digest_of(parts: Vec<String>) -> CacheDigest {
    let hex = hex::encode(Sha256::digest(parts.join("\n").as_bytes()));
    CacheDigest { hex, parts }
}

/// The cache digest of an image in the repository's hash mode.
pub fn cache_digest(
    config: &RepoConfig,
    context_hash: &str,
    args: &BTreeMap<String, String>,
    parent: Option<ParentDigest<'_>>,
) -> CacheDigest {
    let cache_type = config.hash_mode.cache_type();
    match config.hash_mode {
        HashMode::Taskgraph => {
            let compat = &config.taskgraph;
            let mut parts = vec![
                context_hash.to_owned(),
                args_json(args, compat.args_json),
                format!("image-builder-image:{}", compat.image_builder_image),
            ];
            if let Some(p) = parent {
                parts.push(format!("{cache_type}/{}/{}", p.name, p.digest));
            }
            if compat.chain_of_trust {
                parts.push("True".to_owned());
            }
            digest_of(parts)
        }
        HashMode::Native => {
            let mut parts = vec![
                "kiln-cache-v1".to_owned(),
                format!("context:{context_hash}"),
                format!("args:{}", args_json(args, ArgsJson::Ascii)),
                format!("builder:{}", config.native_builder),
            ];
            if let Some(p) = parent {
                parts.push(format!("parent:{cache_type}/{}/{}", p.name, p.digest));
            }
            digest_of(parts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ascii_json_matches_python() {
        assert_eq!(args_json(&args(&[]), ArgsJson::Ascii), "{}");
        assert_eq!(
            args_json(&args(&[("B", "x"), ("A", "é")]), ArgsJson::Ascii),
            r#"{"A":"\u00e9","B":"x"}"#
        );
        assert_eq!(
            args_json(&args(&[("A", "😀\u{7f}\u{1f}\"")]), ArgsJson::Ascii),
            r#"{"A":"\ud83d\ude00\u007f\u001f\""}"#
        );
    }

    #[test]
    fn orjson_keeps_utf8() {
        assert_eq!(
            args_json(&args(&[("A", "é\u{7f}")]), ArgsJson::Orjson),
            "{\"A\":\"é\u{7f}\"}"
        );
    }
}
