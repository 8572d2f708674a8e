//! Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`) and bodies.

use serde::Serialize;

use crate::expand::{Lexer, Vars};

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (also the file name for COPY/ADD).
    pub name: String,
    /// The body, one `\n`-terminated line per source line, as written (tabs not yet stripped).
    pub content: String,
    /// False when any part of the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from every body line.
    pub chomp: bool,
    /// The file descriptor before `<<`, e.g. `3<<EOF`; 0 when absent.
    pub fd: u32,
}

impl Heredoc {
    /// The body with leading tabs removed when the heredoc is `<<-` (BuildKit `ChompHeredocContent`).
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// Parse a single word as a heredoc marker (BuildKit `ParseHeredoc`, regex `^(\d*)<<(-?)([^<]*)$`).
pub(crate) fn parse_marker(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (fd_text, after) = word.split_at(digits);
    let Some(after) = after.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = fd_text.parse::<u32>().unwrap_or(0);
    let mut lex = Lexer::new('\\');
    lex.skip_unset = true;
    let empty = Vars::new();
    let words = lex.process_words(rest, &empty)?;
    let [name] = words.as_slice() else { return Ok(None) };
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &empty)?;
    let [raw_name] = raw.as_slice() else {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    };
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand: quotes(name) == quotes(raw_name),
        chomp,
        fd,
    }))
}

/// All heredoc markers on an instruction line (BuildKit `heredocsFromLine`).
pub(crate) fn markers_in_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    let Ok(words) = lex.process_words(line, &Vars::new()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for w in words {
        if let Some(h) = parse_marker(&w)? {
            out.push(h);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        let h = parse_marker("<<EOF").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.expand, h.chomp, h.fd),
            ("EOF", true, false, 0)
        );
        let h = parse_marker("<<-'EOT'").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("EOT", false, true));
        let h = parse_marker("3<<\"E\"OF").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.fd), ("EOF", false, 3));
        assert!(parse_marker("<<").unwrap().is_none());
        assert!(parse_marker("a<<EOF").unwrap().is_none());
        assert!(parse_marker("<<<EOF").unwrap().is_none());
    }

    #[test]
    fn line_markers() {
        let m = markers_in_line("RUN cat <<A > /a && cat <<-\"B\" > /b").unwrap();
        let names: Vec<_> = m.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, vec!["A", "B"]);
    }

    #[test]
    fn chomp_body() {
        let h = Heredoc {
            name: "E".into(),
            content: "\t\ta\n\tb\n".into(),
            expand: true,
            chomp: true,
            fd: 0,
        };
        assert_eq!(h.body(), "a\nb\n");
    }
}
