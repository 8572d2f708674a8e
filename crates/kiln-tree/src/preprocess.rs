//! Dockerfile preprocessing: `# %ARG NAME` substitutions and `# %include PATH` lines, with taskgraph's
//! exact line semantics (taskgraph-compat §1.3). Pure text in, text and include requests out; resolving
//! includes against the filesystem is `context`'s job.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use kiln_dockerfile::MAX_DOCKERFILE_BYTES;

use crate::error::{TreeError, Warning};

/// Reads the Dockerfile at `path`: one of more than [`MAX_DOCKERFILE_BYTES`] is refused without
/// reading more than that.
pub fn read_dockerfile(path: &Path) -> Result<Vec<u8>, TreeError> {
    let file = std::fs::File::open(path).map_err(|e| TreeError::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCKERFILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TreeError::io(path, e))?;
    if bytes.len() > MAX_DOCKERFILE_BYTES {
        return Err(TreeError::DockerfileTooLarge {
            path: path.to_owned(),
            limit: MAX_DOCKERFILE_BYTES,
        });
    }
    Ok(bytes)
}

/// One `# %include` request found in a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncludeRequest {
    /// `# %include <path>`: `path` is the text after the directive, stripped, after `%ARG` substitution.
    Path {
        /// 1-based line in the Dockerfile.
        line: usize,
        /// The path exactly as taskgraph reads it.
        path: String,
    },
    /// `# %include-run-task`.
    RunTask {
        /// 1-based line in the Dockerfile.
        line: usize,
    },
}

/// The result of preprocessing.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// The Dockerfile text that goes into the context (`%ARG` lines dropped, substitutions applied).
    pub text: String,
    /// Include requests in the order they appear.
    pub includes: Vec<IncludeRequest>,
    /// Lint findings (never errors).
    pub warnings: Vec<Warning>,
}

/// Why a Dockerfile cannot be preprocessed; the caller adds the image and file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreprocessError {
    /// The file is not UTF-8.
    #[error("line {line}: not valid UTF-8 (byte offset {offset})")]
    NotUtf8 {
        /// 1-based line.
        line: usize,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// `# %ARG NAME` with no value in the image's args.
    #[error("line {line}: `# %ARG {name}` has no value; add `{name}` to the image's args")]
    MissingArg {
        /// 1-based line.
        line: usize,
        /// The argument name.
        name: String,
    },
    /// `# %ARG` with a name that is not an identifier.
    #[error(
        "line {line}: `# %ARG {name}`: the name must be letters, digits and `_`, not starting with a digit"
    )]
    BadArgName {
        /// 1-based line.
        line: usize,
        /// The name as written.
        name: String,
    },
    /// An arg value with a backslash, which taskgraph would run through `re.sub` escape processing.
    #[error("line {line}: the value of arg `{name}` contains `\\`, which taskgraph would rewrite; remove it")]
    BackslashInArg {
        /// 1-based line.
        line: usize,
        /// The argument name.
        name: String,
    },
    /// The Dockerfile, or what `# %ARG` substitutions make of it, is over [`MAX_DOCKERFILE_BYTES`].
    #[error("line {line}: the preprocessed Dockerfile exceeds the limit of {limit} bytes")]
    TooLarge {
        /// 1-based line at which the limit was passed.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// `# %include` with nothing after it.
    #[error("line {line}: `# %include` needs a path")]
    EmptyInclude {
        /// 1-based line.
        line: usize,
    },
}

/// Python's `str.isspace`, which `str.strip()` uses: Unicode White_Space plus the four information
/// separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn python_strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

/// `s[n:]` with Python's code-point indexing.
fn skip_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[i..],
        None => "",
    }
}

/// Python's Unicode `\w`.
fn is_word_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// `re.sub(r"\$NAME\b", value, line)` for an identifier `NAME` and a value without backslashes;
/// `None` when the result would pass `max` bytes.
fn substitute(line: &str, name: &str, value: &str, max: usize) -> Option<String> {
    let needle = format!("${name}");
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(pos) = rest.find(&needle) {
        let after = &rest[pos + needle.len()..];
        let at_boundary = after.chars().next().is_none_or(|c| !is_word_char(c));
        out.push_str(&rest[..pos]);
        if at_boundary {
            out.push_str(value);
        } else {
            out.push_str(&needle);
        }
        if out.len() > max {
            return None;
        }
        rest = after;
    }
    out.push_str(rest);
    (out.len() <= max).then_some(out)
}

/// Decodes the file as UTF-8 and applies universal newlines (`\r\n` and lone `\r` become `\n`).
pub fn decode_universal(bytes: &[u8]) -> Result<String, PreprocessError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let line = bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        PreprocessError::NotUtf8 { line, offset }
    })?;
    if !text.contains('\r') {
        return Ok(text.to_owned());
    }
    Ok(text.replace("\r\n", "\n").replace('\r', "\n"))
}

/// Preprocesses a Dockerfile's bytes with the image's `args`.
pub fn preprocess(bytes: &[u8], args: &BTreeMap<String, String>) -> Result<Preprocessed, PreprocessError> {
    let too_large = |line| PreprocessError::TooLarge {
        line,
        limit: MAX_DOCKERFILE_BYTES,
    };
    if bytes.len() > MAX_DOCKERFILE_BYTES {
        return Err(too_large(1));
    }
    let text = decode_universal(bytes)?;
    let mut out = String::with_capacity(text.len());
    let mut substitutions: Vec<(&str, &str)> = Vec::new();
    let mut includes = Vec::new();
    let mut warnings = Vec::new();

    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        if raw.starts_with("# %ARG") {
            let name = python_strip(skip_chars(raw, 7));
            let Some((key, value)) = args.get_key_value(name) else {
                return Err(if is_identifier(name) || name.is_empty() {
                    PreprocessError::MissingArg {
                        line: line_no,
                        name: name.to_owned(),
                    }
                } else {
                    PreprocessError::BadArgName {
                        line: line_no,
                        name: name.to_owned(),
                    }
                });
            };
            if !is_identifier(name) {
                return Err(PreprocessError::BadArgName {
                    line: line_no,
                    name: name.to_owned(),
                });
            }
            if value.contains('\\') {
                return Err(PreprocessError::BackslashInArg {
                    line: line_no,
                    name: name.to_owned(),
                });
            }
            substitutions.push((key.as_str(), value.as_str()));
            continue;
        }

        let mut line = raw.to_owned();
        let room = MAX_DOCKERFILE_BYTES - out.len().min(MAX_DOCKERFILE_BYTES);
        for (name, value) in &substitutions {
            line = substitute(&line, name, value, room).ok_or_else(|| too_large(line_no))?;
        }
        for (name, _) in &substitutions {
            if line.contains(&format!("${{{name}}}")) {
                warnings.push(Warning::at_line(
                    line_no,
                    format!("`${{{name}}}` is not substituted by `# %ARG {name}`; only `${name}` is"),
                ));
            }
        }

        if line.starts_with("# %include") {
            if python_strip(&line) == "# %include-run-task" {
                includes.push(IncludeRequest::RunTask { line: line_no });
                out.push_str(&line);
                out.push_str(RUN_TASK_SNIPPET);
                continue;
            }
            let path = python_strip(skip_chars(&line, 11));
            if path.is_empty() {
                return Err(PreprocessError::EmptyInclude { line: line_no });
            }
            includes.push(IncludeRequest::Path {
                line: line_no,
                path: path.to_owned(),
            });
        }
        out.push_str(&line);
        if out.len() > MAX_DOCKERFILE_BYTES {
            return Err(too_large(line_no));
        }
    }

    Ok(Preprocessed {
        text: out,
        includes,
        warnings,
    })
}

/// What taskgraph appends after `# %include-run-task`.
pub const RUN_TASK_SNIPPET: &str = "COPY run-task/run-task /usr/local/bin/run-task\n\
COPY run-task/fetch-content /usr/local/bin/fetch-content\n\
COPY run-task/robustcheckout.py /usr/local/mercurial/robustcheckout.py\n\
COPY run-task/hgrc /etc/mercurial/hgrc.d/mozilla.rc\n";

/// The files `# %include-run-task` adds, relative to the run-task folder.
pub const RUN_TASK_FILES: [&str; 4] = ["run-task", "fetch-content", "hgrc", "robustcheckout.py"];

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
    fn arg_substitution_respects_word_boundary() {
        let df = b"FROM x\n# %ARG ARCH\nRUN echo $ARCH ${ARCH} $ARCHITECTURE $ARCH-suffix\n";
        let p = preprocess(df, &args(&[("ARCH", "amd64")])).unwrap();
        assert_eq!(
            p.text,
            "FROM x\nRUN echo amd64 ${ARCH} $ARCHITECTURE amd64-suffix\n"
        );
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.warnings[0].line, Some(3));
    }

    #[test]
    fn substitution_happens_before_include_check() {
        let df = b"# %ARG ARCH\n# %include shared/arch/$ARCH.txt\n";
        let p = preprocess(df, &args(&[("ARCH", "arm64")])).unwrap();
        assert_eq!(
            p.includes,
            vec![IncludeRequest::Path {
                line: 2,
                path: "shared/arch/arm64.txt".into()
            }]
        );
    }

    #[test]
    fn missing_arg_names_line() {
        let err = preprocess(b"FROM x\n# %ARG NOPE\n", &args(&[])).unwrap_err();
        assert_eq!(
            err,
            PreprocessError::MissingArg {
                line: 2,
                name: "NOPE".into()
            }
        );
        assert!(err.to_string().contains("line 2"));
    }

    #[test]
    fn crlf_and_lone_cr_become_lf() {
        let p = preprocess(b"FROM x\r\n# %include a\rRUN true", &args(&[])).unwrap();
        assert_eq!(p.text, "FROM x\n# %include a\nRUN true");
        assert_eq!(
            p.includes,
            vec![IncludeRequest::Path {
                line: 2,
                path: "a".into()
            }]
        );
    }

    #[test]
    fn regression_arg_substitution_cannot_grow_past_the_dockerfile_limit() {
        let value = "v".repeat(1024);
        let line = "$A ".repeat(5000);
        let df = format!("FROM x\n# %ARG A\nRUN {line}\n");
        let err = preprocess(df.as_bytes(), &args(&[("A", &value)])).unwrap_err();
        assert_eq!(
            err,
            PreprocessError::TooLarge {
                line: 3,
                limit: MAX_DOCKERFILE_BYTES
            }
        );
        let huge = vec![b'#'; MAX_DOCKERFILE_BYTES + 1];
        assert!(matches!(
            preprocess(&huge, &args(&[])),
            Err(PreprocessError::TooLarge { line: 1, .. })
        ));
    }

    #[test]
    fn eleventh_char_is_skipped_whatever_it_is() {
        let p = preprocess(b"# %includeXshared\n", &args(&[])).unwrap();
        assert_eq!(
            p.includes,
            vec![IncludeRequest::Path {
                line: 1,
                path: "shared".into()
            }]
        );
    }

    #[test]
    fn indented_or_double_spaced_directives_are_comments() {
        let p = preprocess(b" # %include a\n#  %include b\n", &args(&[])).unwrap();
        assert!(p.includes.is_empty());
    }

    #[test]
    fn run_task_snippet_follows_directive() {
        let p = preprocess(b"# %include-run-task  \nRUN x\n", &args(&[])).unwrap();
        assert_eq!(p.includes, vec![IncludeRequest::RunTask { line: 1 }]);
        assert!(
            p.text
                .starts_with("# %include-run-task  \nCOPY run-task/run-task")
        );
        assert!(p.text.ends_with("mozilla.rc\nRUN x\n"));
    }

    #[test]
    fn invalid_utf8_reports_line() {
        let err = preprocess(b"FROM x\nRUN \xff\n", &args(&[])).unwrap_err();
        assert_eq!(err, PreprocessError::NotUtf8 { line: 2, offset: 11 });
    }

    #[test]
    fn backslash_in_used_arg_is_rejected() {
        let err = preprocess(b"# %ARG A\n", &args(&[("A", "a\\1")])).unwrap_err();
        assert!(matches!(err, PreprocessError::BackslashInArg { line: 1, .. }));
    }
}
