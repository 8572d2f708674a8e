//! Parsing of everything a client puts in a request line or header: repository names, tags, references,
//! upload ids, `Content-Range` and `Range`. Nothing here panics on any input.

use std::fmt;
use std::str::FromStr;

use kiln_oci::Digest;

/// The longest repository name accepted (distribution's limit).
pub const MAX_NAME_LEN: usize = 255;

/// A repository name that matches the distribution-spec grammar
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
///
/// Every component starts with `[a-z0-9]`, so a name never contains `.`/`..` components or names
/// beginning with `_`: it is safe to use as a relative path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

/// A name, tag or range that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A repository name outside the grammar.
    #[error("invalid repository name `{0}`")]
    Repository(String),
    /// A tag outside `[a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}`.
    #[error("invalid tag `{0}`")]
    Tag(String),
    /// A malformed `Content-Range`.
    #[error("invalid Content-Range `{0}`")]
    ContentRange(String),
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    // Alternating runs: alnum+ (separator alnum+)*
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        let sep_start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        match &c[sep_start..i] {
            "." | "_" | "__" => {}
            s if s.bytes().all(|x| x == b'-') => {}
            _ => return false,
        }
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<RepoName, NameError> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(valid_component) {
            return Err(NameError::Repository(s.to_owned()));
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl RepoName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name's components (split at `/`).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`; safe as a file name (never `.` or `..`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Tag, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter()
                .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::Tag(s.to_owned()))
        }
    }
}

impl Tag {
    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// By tag.
    Tag(Tag),
    /// By digest.
    Digest(Digest),
}

/// A malformed reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Looks like a digest (has a `:`) but is not a valid one.
    #[error(transparent)]
    Digest(#[from] kiln_oci::DigestError),
    /// Neither a tag nor a digest.
    #[error(transparent)]
    Tag(#[from] NameError),
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// Parses an upload session id (a UUID) into its canonical lowercase hyphenated form; `None` if it is not one.
pub fn parse_upload_id(s: &str) -> Option<String> {
    let id = uuid::Uuid::try_parse(s).ok()?;
    Some(id.hyphenated().to_string())
}

/// Parses a chunk's `Content-Range: <start>-<end>` (inclusive; `bytes ` or `bytes=` prefixes tolerated).
pub fn parse_content_range(s: &str) -> Result<(u64, u64), NameError> {
    let err = || NameError::ContentRange(s.to_owned());
    let t = s.trim();
    let t = t
        .strip_prefix("bytes=")
        .or_else(|| t.strip_prefix("bytes "))
        .unwrap_or(t);
    let t = t.split('/').next().unwrap_or(t);
    let (a, b) = t.split_once('-').ok_or_else(err)?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return Err(err());
    }
    let start: u64 = a.parse().map_err(|_| err())?;
    let end: u64 = b.parse().map_err(|_| err())?;
    if end < start {
        return Err(err());
    }
    Ok((start, end))
}

/// The answer to a `Range` request header on a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range: send the whole blob (also for syntactically invalid or multi-range headers).
    Full,
    /// Send bytes `start..=end`.
    Partial(u64, u64),
    /// No byte of the range exists: 416.
    Unsatisfiable,
}

/// Interprets a `Range` header (`bytes=a-b`, `bytes=a-`, `bytes=-n`) for a blob of `size` bytes.
pub fn parse_range(header: &str, size: u64) -> RangeAnswer {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |x: &str| -> Option<u64> {
        if x.is_empty() || !x.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            x.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeAnswer::Full,
        (true, false) => match num(b) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial(size.saturating_sub(n), size - 1),
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return RangeAnswer::Full;
            };
            let end = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(e) if e >= start => e,
                    _ => return RangeAnswer::Full,
                }
            };
            if start >= size {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial(start, end.min(size - 1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_grammar() {
        for good in ["a", "library/busybox", "a.b_c__d-e---f/g0", "x/y/z", "0"] {
            assert!(good.parse::<RepoName>().is_ok(), "{good}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            ".a",
            "a.",
            "_a",
            "a___b",
            "a-",
            "a/_tags",
            "a b",
            "a%2fb",
            "a..b",
            "a._b",
            long.as_str(),
            "é",
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn tags_follow_the_grammar() {
        for good in ["latest", "v1.0", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(good.parse::<Tag>().is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".a", "-a", "a/b", "a:b", &"a".repeat(129), "a b"] {
            assert!(bad.parse::<Tag>().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        assert!(matches!("latest".parse::<Reference>(), Ok(Reference::Tag(_))));
        let d = kiln_oci::Algorithm::Sha256.digest(b"").to_string();
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
        assert!(matches!(
            "sha256:abc".parse::<Reference>(),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!("../x".parse::<Reference>(), Err(ReferenceError::Tag(_))));
    }

    #[test]
    fn upload_ids_are_uuids() {
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(parse_upload_id(&id).as_deref(), Some(id.as_str()));
        assert_eq!(parse_upload_id("../../etc"), None);
        assert_eq!(parse_upload_id(""), None);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Ok((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/*"), Ok((100, 199)));
        for bad in [
            "",
            "-",
            "5-4",
            "a-b",
            "1",
            "-1-2",
            "1-",
            "99999999999999999999999-1",
        ] {
            assert!(parse_content_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Partial(90, 99));
        assert_eq!(parse_range("bytes=90-1000", 100), Partial(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Partial(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Partial(0, 99));
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-4", 100), Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
        assert_eq!(parse_range("bytes=x-1", 100), Full);
    }
}
