//! `.dockerignore` as Docker reads it: one pattern per line, `#` comments, `!` exceptions, `**`, the last
//! matching pattern wins, and a pattern that matches a folder excludes everything below it.

use globset::{Glob, GlobBuilder, GlobMatcher};

struct Pattern {
    matcher: GlobMatcher,
    exclude: bool,
}

/// Parsed `.dockerignore` patterns.
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// Docker cleans patterns and COPY source paths like Go's `filepath.Clean`, relative to the context root:
/// `..` cannot climb above it.
pub fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

impl DockerIgnore {
    /// Parses the file; an error is `(line, message)`.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut patterns = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclude, body) = match line.strip_prefix('!') {
                Some(rest) => (false, rest.trim()),
                None => (true, line),
            };
            let cleaned = clean(body);
            if cleaned.is_empty() {
                continue;
            }
            let glob: Glob = GlobBuilder::new(&cleaned)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| (index + 1, format!("bad pattern `{body}`: {e}")))?;
            patterns.push(Pattern {
                matcher: glob.compile_matcher(),
                exclude,
            });
        }
        Ok(Self { patterns })
    }

    /// Whether `name` (a context path with `/` separators) is left out.
    pub fn is_excluded(&self, name: &str) -> bool {
        let mut excluded = false;
        for pattern in &self.patterns {
            if matches_self_or_parent(&pattern.matcher, name) {
                excluded = pattern.exclude;
            }
        }
        excluded
    }
}

fn matches_self_or_parent(matcher: &GlobMatcher, name: &str) -> bool {
    if matcher.is_match(name) {
        return true;
    }
    name.match_indices('/').any(|(i, _)| matcher.is_match(&name[..i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_match_wins_and_folders_exclude_children() {
        let ignore =
            DockerIgnore::parse("# comment\n*.log\n!keep.log\nbuild/\n/topsrcdir/**/secret*\n").unwrap();
        assert!(ignore.is_excluded("a.log"));
        assert!(!ignore.is_excluded("keep.log"));
        assert!(!ignore.is_excluded("sub/a.log"), "`*` does not cross folders");
        assert!(ignore.is_excluded("build/out/x"));
        assert!(ignore.is_excluded("topsrcdir/shared/x/secret.txt"));
        assert!(!ignore.is_excluded("src/main.rs"));
    }

    #[test]
    fn bad_pattern_names_line() {
        assert_eq!(DockerIgnore::parse("ok\n[z-a\n").err().map(|e| e.0), Some(2));
    }
}
