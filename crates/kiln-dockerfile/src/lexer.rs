//! Physical lines to logical instruction lines: parser directives, comments, continuations and
//! heredoc bodies (BuildKit `parser/parser.go` and `parser/directives.go`).

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::heredoc::{self, Heredoc};
use crate::limits::Limits;
use crate::words::{extract_flags, is_space};

/// The parser directives found at the top of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// `# syntax=` (the frontend image; kiln records it but always uses its own semantics).
    pub syntax: Option<String>,
    /// `# escape=` as written.
    pub escape: Option<String>,
    /// `# check=` (lint configuration), as written.
    pub check: Option<String>,
}

/// A non-fatal finding, like BuildKit's lint warnings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// 1-based line.
    pub line: usize,
    /// BuildKit's rule name, e.g. `NoEmptyContinuation`.
    pub rule: String,
    /// Human readable message.
    pub message: String,
}

/// Where a piece of a logical line came from.
#[derive(Debug, Clone)]
struct Segment {
    offset: usize,
    line: usize,
    col_base: usize,
}

/// One instruction's text, joined across continuation lines, with its heredoc bodies.
#[derive(Debug, Clone)]
pub(crate) struct LogicalLine {
    pub text: String,
    pub start_line: usize,
    pub end_line: usize,
    pub heredocs: Vec<Heredoc>,
    segments: Vec<Segment>,
}

impl LogicalLine {
    /// 1-based (line, column) of byte offset `off` in `text`.
    pub(crate) fn position(&self, off: usize) -> (usize, usize) {
        let seg = self
            .segments
            .iter()
            .rev()
            .find(|s| s.offset <= off)
            .or(self.segments.first());
        match seg {
            Some(s) => {
                let piece = self
                    .text
                    .get(s.offset..off.min(self.text.len()))
                    .unwrap_or_default();
                (s.line, s.col_base + piece.chars().count() + 1)
            }
            None => (self.start_line, 1),
        }
    }
}

/// The output of the line scanner.
#[derive(Debug, Clone)]
pub(crate) struct Scanned {
    pub directives: Directives,
    pub escape: char,
    pub lines: Vec<LogicalLine>,
    pub warnings: Vec<Warning>,
}

fn strip_newline(raw: &str) -> &str {
    let t = raw.strip_suffix('\n').unwrap_or(raw);
    t.strip_suffix('\r').unwrap_or(t)
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_space).starts_with('#')
}

/// Remove a trailing escape + optional blanks (`\\[ \t]*$`); returns (text, is_end_of_line).
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(rest) => (rest, false),
        None => (line, true),
    }
}

/// `# name = value` at the top of the file; `None` ends directive processing.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line
        .trim_start_matches(is_space)
        .strip_prefix('#')?
        .trim_start_matches(is_space);
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let (name, after) = rest.split_at(name_len);
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = after
        .trim_start_matches(is_space)
        .strip_prefix('=')?
        .trim_matches(is_space);
    if value.is_empty() {
        return None;
    }
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "syntax" | "escape" | "check").then(|| (name, value.to_string()))
}

/// Whether the instruction on `text` may carry heredocs: RUN/COPY/ADD (also after ONBUILD) in
/// shell form.
fn can_contain_heredoc(text: &str) -> bool {
    let t = text.trim_matches(is_space);
    let (mut cmd, mut rest) = t.split_once(crate::words::is_re_space).unwrap_or((t, ""));
    if cmd.eq_ignore_ascii_case("onbuild") {
        let r = rest.trim_matches(is_space);
        (cmd, rest) = r.split_once(crate::words::is_re_space).unwrap_or((r, ""));
    }
    if !["run", "copy", "add"].iter().any(|k| cmd.eq_ignore_ascii_case(k)) {
        return false;
    }
    let (_, args) = extract_flags(rest);
    !crate::instruction::is_json_array(args.trim_matches(is_space))
}

/// Physical lines, read as they are needed (never all held at once), counted.
struct PhysLines<'a> {
    lines: std::str::SplitInclusive<'a, char>,
    /// 1-based number of the last line returned.
    line: usize,
}

impl<'a> PhysLines<'a> {
    fn next_line(&mut self) -> Option<&'a str> {
        let raw = self.lines.next()?;
        self.line += 1;
        Some(raw)
    }
}

fn too_large(what: &'static str, limit: usize, line: usize) -> Error {
    Error::new(ErrorKind::TooLarge { what, limit }, line, 1, "")
}

pub(crate) fn scan(source: &str, limits: &Limits) -> Result<Scanned, Error> {
    if source.is_empty() {
        return Err(Error::new(ErrorKind::Empty, 1, 1, ""));
    }
    if source.len() > limits.file_bytes {
        return Err(too_large("the Dockerfile", limits.file_bytes, 1));
    }
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);

    let mut directives = Directives::default();
    let mut escape_line = 1;
    for (i, raw) in source.split_inclusive('\n').enumerate() {
        let Some((name, value)) = directive(strip_newline(raw)) else {
            break;
        };
        let slot = match name.as_str() {
            "syntax" => &mut directives.syntax,
            "escape" => {
                escape_line = i + 1;
                &mut directives.escape
            }
            _ => &mut directives.check,
        };
        if slot.is_some() {
            return Err(Error::new(
                ErrorKind::DuplicateDirective(name),
                i + 1,
                1,
                strip_newline(raw),
            ));
        }
        *slot = Some(value);
    }
    let escape = match directives.escape.as_deref() {
        None | Some("\\") => '\\',
        Some("`") => '`',
        Some(other) => {
            return Err(Error::new(
                ErrorKind::InvalidEscape(other.to_string()),
                escape_line,
                1,
                other,
            ));
        }
    };

    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut phys = PhysLines {
        lines: source.split_inclusive('\n'),
        line: 0,
    };
    while let Some(raw) = phys.next_line() {
        let line_no = phys.line;
        let text = strip_newline(raw);
        if is_comment(text) {
            continue;
        }
        let stripped = text.trim_start_matches(is_space);
        let (content, mut eol) = trim_continuation(stripped, escape);
        if eol && content.is_empty() {
            continue;
        }
        if content.len() > limits.line_bytes {
            return Err(too_large("the instruction", limits.line_bytes, line_no));
        }
        let lead = text.chars().count() - stripped.chars().count();
        let mut logical = LogicalLine {
            text: content.to_string(),
            start_line: line_no,
            end_line: line_no,
            heredocs: Vec::new(),
            segments: vec![Segment {
                offset: 0,
                line: line_no,
                col_base: lead,
            }],
        };
        let mut empty_continuation = false;
        while !eol {
            let Some(raw) = phys.next_line() else { break };
            logical.end_line = phys.line;
            let text = strip_newline(raw);
            if is_comment(text) {
                continue;
            }
            if text.trim_start_matches(is_space).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (c, e) = trim_continuation(text, escape);
            eol = e;
            if logical.text.len() + c.len() > limits.line_bytes {
                return Err(too_large(
                    "the instruction (its continuation lines joined)",
                    limits.line_bytes,
                    line_no,
                ));
            }
            logical.segments.push(Segment {
                offset: logical.text.len(),
                line: phys.line,
                col_base: 0,
            });
            logical.text.push_str(c);
        }
        if empty_continuation {
            warnings.push(Warning {
                line: line_no,
                rule: "NoEmptyContinuation".to_string(),
                message: "empty continuation line".to_string(),
            });
        }
        if logical.text.contains("<<") && can_contain_heredoc(&logical.text) {
            let markers = heredoc::markers_in_line(&logical.text).map_err(|e| {
                let (l, c) = logical.position(0);
                Error::new(ErrorKind::InvalidHeredoc(e), l, c, logical.text.clone())
            })?;
            for mut h in markers {
                let mut terminated = false;
                while let Some(raw) = phys.next_line() {
                    let t = strip_newline(raw);
                    let candidate = if h.chomp { t.trim_start_matches('\t') } else { t };
                    if candidate == h.name {
                        terminated = true;
                        break;
                    }
                    if h.content.len() + raw.len() + 1 > limits.heredoc_bytes {
                        return Err(too_large("the heredoc body", limits.heredoc_bytes, line_no));
                    }
                    h.content.push_str(raw);
                    if !raw.ends_with('\n') {
                        h.content.push('\n');
                    }
                }
                logical.end_line = phys.line;
                if !terminated {
                    let (l, c) = logical.position(0);
                    return Err(Error::new(
                        ErrorKind::UnterminatedHeredoc(h.name),
                        l,
                        c,
                        logical.text,
                    ));
                }
                logical.heredocs.push(h);
            }
        }
        lines.push(logical);
    }
    if lines.is_empty() {
        return Err(Error::new(ErrorKind::NoInstructions, phys.line.max(1), 1, ""));
    }
    Ok(Scanned {
        directives,
        escape,
        lines,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_comments_and_blank_lines() {
        let s = scan(
            "FROM a\nRUN echo \\\n# comment\n\n  hi \\\n  there\n",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(s.lines.len(), 2);
        assert_eq!(s.lines[1].text, "RUN echo   hi   there");
        assert_eq!((s.lines[1].start_line, s.lines[1].end_line), (2, 6));
        assert_eq!(s.warnings.len(), 1);
        assert_eq!(s.lines[1].position(11), (5, 3));
    }

    #[test]
    fn directives_only_at_top() {
        let s = scan(
            "# syntax=docker/dockerfile:1\n# ESCAPE = `\nFROM a\nRUN a `\n b\n",
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(s.escape, '`');
        assert_eq!(s.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(s.lines[1].text, "RUN a  b");
        let s = scan("FROM a\n# escape=`\nRUN a \\\n b\n", &Limits::default()).unwrap();
        assert_eq!(s.escape, '\\');
        let s = scan("# foo=bar\n# escape=`\nFROM a\n", &Limits::default()).unwrap();
        assert_eq!(s.escape, '\\');
    }

    #[test]
    fn directive_errors() {
        assert_eq!(
            scan("# escape=x\nFROM a", &Limits::default()).unwrap_err().kind,
            ErrorKind::InvalidEscape("x".into())
        );
        let e = scan("# syntax=a\n# syntax=b\nFROM a", &Limits::default()).unwrap_err();
        assert_eq!(
            (e.line, e.kind),
            (2, ErrorKind::DuplicateDirective("syntax".into()))
        );
        assert_eq!(scan("", &Limits::default()).unwrap_err().kind, ErrorKind::Empty);
        assert_eq!(
            scan("# only\n\n", &Limits::default()).unwrap_err().kind,
            ErrorKind::NoInstructions
        );
    }

    #[test]
    fn heredocs_read_after_line() {
        let s = scan("RUN <<A cat - <<-B\nx\nA\n\ty\n\tB\nFROM z\n", &Limits::default()).unwrap();
        let h = &s.lines[0].heredocs;
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].content, "x\n");
        assert_eq!(h[1].body(), "y\n");
        assert_eq!(s.lines[0].end_line, 5);
        assert_eq!(s.lines[1].text, "FROM z");
        let e = scan("RUN <<EOF\nnever closed\n", &Limits::default()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::UnterminatedHeredoc("EOF".into()));
        let s = scan("RUN [\"<<EOF\"]\nFROM a\n", &Limits::default()).unwrap();
        assert_eq!(s.lines.len(), 2);
    }
}
