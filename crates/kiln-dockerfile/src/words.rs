//! Splitting of instruction text: leading `--flags`, whitespace-delimited lists and quoted words.

/// True for the whitespace Go's `unicode.IsSpace` accepts in the ASCII range and beyond.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// Whitespace as BuildKit's `reWhitespace` (`[\t\v\f\r ]+`) sees it.
pub(crate) fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Byte offset of `inner` within `outer` when `inner` is a subslice of it.
pub(crate) fn offset_in(outer: &str, inner: &str) -> usize {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    if i >= o && i <= o + outer.len() { i - o } else { 0 }
}

/// A `--flag[=value]` word and its byte offset in the text it was taken from.
#[derive(Debug, Clone)]
pub(crate) struct RawFlag {
    pub text: String,
    pub offset: usize,
}

/// BuildKit's `extractBuilderFlags`: leading words starting with `--`, with quote handling.
/// Returns the flags and the remaining text (a subslice of `line`).
pub(crate) fn extract_flags(line: &str) -> (Vec<RawFlag>, &str) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let cur = chars.get(i).copied();
        if phase == Phase::Spaces {
            let Some((pos, ch)) = cur else { break };
            if is_space(ch) {
                i += 1;
                continue;
            }
            let next_dash = chars.get(i + 1).is_some_and(|(_, c)| *c == '-');
            if ch != '-' || !next_dash {
                return (flags, line.get(pos..).unwrap_or_default());
            }
            phase = Phase::Word;
            word_start = pos;
        }
        let Some((pos, ch)) = cur else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                flags.push(RawFlag {
                    text: word,
                    offset: word_start,
                });
            }
            break;
        };
        if phase == Phase::Word {
            if is_space(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (flags, line.get(pos..).unwrap_or_default());
                }
                if blank_ok || !word.is_empty() {
                    flags.push(RawFlag {
                        text: std::mem::take(&mut word),
                        offset: word_start,
                    });
                }
                word.clear();
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                i += 1;
                continue;
            }
            let mut c = ch;
            if ch == '\\' {
                match chars.get(i + 1) {
                    None => {
                        i += 1;
                        continue;
                    }
                    Some((_, n)) => {
                        i += 1;
                        c = *n;
                    }
                }
            }
            word.push(c);
            i += 1;
            continue;
        }
        // Quote phase.
        if ch == quote {
            phase = Phase::Word;
            i += 1;
            continue;
        }
        let mut c = ch;
        if ch == '\\' {
            match chars.get(i + 1) {
                None => {
                    phase = Phase::Word;
                    i += 1;
                    continue;
                }
                Some((_, n)) => {
                    i += 1;
                    c = *n;
                }
            }
        }
        word.push(c);
        i += 1;
    }
    (flags, "")
}

/// BuildKit's `parseWords`: split on unquoted whitespace, keeping quotes and escapes in the words.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while let Some(&ch) = chars.get(i) {
        i += 1;
        match quote {
            None if !in_word => {
                if is_space(ch) {
                    continue;
                }
                in_word = true;
                i -= 1;
            }
            None => {
                if is_space(ch) {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    let Some(&n) = chars.get(i) else { continue };
                    word.push(ch);
                    word.push(n);
                    i += 1;
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    let Some(&n) = chars.get(i) else {
                        quote = None;
                        continue;
                    };
                    word.push(ch);
                    word.push(n);
                    i += 1;
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Split on runs of `[\t\v\f\r ]` (BuildKit `parseStringsWhitespaceDelimited`).
pub(crate) fn split_ws(rest: &str) -> Vec<String> {
    rest.split(is_re_space)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_stop_at_first_non_flag() {
        let (f, rest) = extract_flags("--from=build --chown=\"a b\" src dst");
        let texts: Vec<_> = f.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, vec!["--from=build", "--chown=a b"]);
        assert_eq!(rest, "src dst");
        let (f, rest) = extract_flags("-- --not-a-flag x");
        assert!(f.is_empty());
        assert_eq!(rest, " --not-a-flag x");
        let (f, rest) = extract_flags("--link");
        assert_eq!(f.len(), 1);
        assert_eq!(rest, "");
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words("A=\"x y\" B='z' C=a\\ b", '\\'),
            vec!["A=\"x y\"", "B='z'", "C=a\\ b"]
        );
        assert_eq!(parse_words("  ", '\\'), Vec::<String>::new());
        assert_eq!(parse_words("\"\"", '\\'), vec!["\"\""]);
    }
}
