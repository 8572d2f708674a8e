//! Shell-style word expansion, following BuildKit's `shell/lex.go` rules.
//!
//! Supported: `$VAR`, `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}`, `${VAR:?w}`, `${VAR?w}`,
//! `${VAR#p}`, `${VAR##p}`, `${VAR%p}`, `${VAR%%p}`, `${VAR/p/r}`, `${VAR//p/r}`, single and double
//! quotes, and the escape character (backslash or backtick).

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::glob::{Budget, Pattern};
use crate::limits::{MAX_PATTERN_STEPS, MAX_VALUE_BYTES};

/// Variables visible to an expansion, in declaration order; later `set` replaces earlier values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars {
    entries: Vec<(String, String)>,
    /// Position of each key in `entries`: `get` and `set` stay O(1) with many variables.
    index: HashMap<String, usize>,
    /// Bytes of all keys and values.
    bytes: usize,
}

impl Vars {
    /// An empty set of variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        let i = *self.index.get(key)?;
        self.entries.get(i).map(|(_, v)| v.as_str())
    }

    /// Set `key` to `value`, keeping the position of an existing entry.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.index.get(key).and_then(|&i| self.entries.get_mut(i)) {
            Some(entry) => {
                self.bytes = self.bytes - entry.1.len() + value.len();
                entry.1 = value.to_string();
            }
            None => {
                self.bytes += key.len() + value.len();
                self.index.insert(key.to_string(), self.entries.len());
                self.entries.push((key.to_string(), value.to_string()));
            }
        }
    }

    /// Remove `key`.
    pub fn remove(&mut self, key: &str) {
        if self.index.remove(key).is_none() {
            return;
        }
        self.entries.retain(|(k, _)| k != key);
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        self.bytes = self.entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    }

    /// Bytes of all names and values.
    pub fn byte_len(&self) -> usize {
        self.bytes
    }

    /// All entries in order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

/// How a word is processed; mirrors the switches of BuildKit's `shell.Lex`.
#[derive(Debug, Clone)]
pub(crate) struct Lexer {
    pub escape: char,
    /// Keep quote characters in the result.
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters (used for heredoc bodies).
    pub skip_process_quotes: bool,
    /// The longest result of one word, in bytes.
    pub max_len: usize,
    /// Pattern-matching steps left, shared by every lexer cloned from this one (one evaluation).
    steps: Rc<Cell<u64>>,
    max_steps: u64,
}

impl Lexer {
    pub(crate) fn new(escape: char) -> Self {
        Self::with_limits(escape, MAX_VALUE_BYTES, MAX_PATTERN_STEPS)
    }

    /// A lexer whose words may expand to `max_len` bytes, all of its (and its clones') pattern
    /// matching taking at most `steps` steps.
    pub(crate) fn with_limits(escape: char, max_len: usize, steps: u64) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_process_quotes: false,
            max_len,
            steps: Rc::new(Cell::new(steps)),
            max_steps: steps,
        }
    }

    /// Expand one word to a single string (BuildKit `ProcessWord`).
    pub(crate) fn process_word(&self, word: &str, env: &Vars) -> Result<String, String> {
        self.run(word, env).map(|(s, _)| s)
    }

    /// Expand and split into fields on unquoted whitespace (BuildKit `ProcessWords`).
    pub(crate) fn process_words(&self, word: &str, env: &Vars) -> Result<Vec<String>, String> {
        self.run(word, env).map(|(_, w)| w)
    }

    fn run(&self, word: &str, env: &Vars) -> Result<(String, Vec<String>), String> {
        let chars: Vec<char> = word.chars().collect();
        let mut sw = ShellWord {
            lex: self,
            env,
            chars,
            pos: 0,
            depth: 0,
            budget: Budget {
                steps: self.steps.get(),
                max_steps: self.max_steps,
                max_len: self.max_len,
            },
        };
        let result = sw.process_stop_on(None);
        self.steps.set(sw.budget.steps);
        result
    }
}

struct ShellWord<'a> {
    lex: &'a Lexer,
    env: &'a Vars,
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    budget: Budget,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

/// Nesting limit for `${a:-${b:-...}}` so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            let quote = !self.lex.skip_process_quotes && (ch == '\'' || ch == '"');
            if ch == '$' || quote {
                let tmp = match ch {
                    '$' => self.process_dollar()?,
                    '\'' => self.process_single_quote()?,
                    _ => self.process_double_quote()?,
                };
                result.push_str(&tmp);
                self.budget.fits(result.len())?;
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
                continue;
            }
            self.next();
            if ch == self.lex.escape {
                if self.lex.raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                match self.next() {
                    None => break,
                    Some(c) => {
                        words.add_raw_char(c);
                        result.push(c);
                    }
                }
            } else {
                words.add_char(ch);
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            if stop == '}' {
                return Err("syntax error: missing '}'".to_string());
            }
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        self.next();
        let mut result = String::new();
        if self.lex.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote".to_string(),
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        self.next();
        let mut result = String::new();
        if self.lex.raw_quotes {
            result.push('"');
        }
        loop {
            let Some(ch) = self.peek() else {
                return Err(
                    "unexpected end of statement while looking for matching double-quote".to_string(),
                );
            };
            match ch {
                '"' => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                '$' => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                    self.budget.fits(result.len())?;
                }
                _ => {
                    self.next();
                    let mut out = ch;
                    if ch == self.lex.escape {
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                if self.lex.raw_escapes {
                                    result.push(ch);
                                }
                                self.next();
                                out = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(out);
                }
            }
        }
    }

    fn get_env(&self, name: &str) -> Option<String> {
        self.env.get(name).map(str::to_string)
    }

    fn nested(&mut self, stop: char) -> Result<String, String> {
        if self.depth >= MAX_DEPTH {
            return Err("syntax error: substitutions nested too deeply".to_string());
        }
        self.depth += 1;
        let r = self.process_stop_on(Some(stop));
        self.depth -= 1;
        r.map(|(s, _)| s)
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{') | Some('}') | Some(':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err("syntax error: missing '}'".to_string());
        };
        let value = self.get_env(&name);
        match ch {
            '}' => Ok(match value {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            '?' => {
                let word = self.nested('}')?;
                match value {
                    Some(v) => Ok(v),
                    None if self.lex.skip_unset => Ok(format!("${{{name}?{word}}}")),
                    None => Err(unset_message(&name, &word, "is not allowed to be unset")),
                }
            }
            ':' => {
                let Some(modifier) = self.next() else {
                    return Err("syntax error: missing '}'".to_string());
                };
                let word = self.nested('}')?;
                let Some(v) = value else {
                    if self.lex.skip_unset {
                        return Ok(format!("${{{name}:{modifier}{word}}}"));
                    }
                    return match modifier {
                        '+' => Ok(String::new()),
                        '-' => Ok(word),
                        '?' => Err(unset_message(&name, &word, "is not allowed to be unset")),
                        _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
                    };
                };
                match modifier {
                    '+' => Ok(if v.is_empty() { v } else { word }),
                    '-' => Ok(if v.is_empty() { word } else { v }),
                    '?' if v.is_empty() => Err(unset_message(&name, &word, "is not allowed to be empty")),
                    '?' => Ok(v),
                    _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
                }
            }
            '+' | '-' => {
                let word = self.nested('}')?;
                match value {
                    None if self.lex.skip_unset => Ok(format!("${{{name}{ch}{word}}}")),
                    Some(_) if ch == '+' => Ok(word),
                    Some(v) => Ok(v),
                    None if ch == '-' => Ok(word),
                    None => Ok(String::new()),
                }
            }
            '#' | '%' => {
                let greedy = self.peek() == Some(ch);
                if greedy {
                    self.next();
                }
                let word = self.nested('}')?;
                let Some(v) = value else {
                    if self.lex.skip_unset {
                        let op = if greedy {
                            format!("{ch}{ch}")
                        } else {
                            ch.to_string()
                        };
                        return Ok(format!("${{{name}{op}{word}}}"));
                    }
                    return Ok(String::new());
                };
                let pattern = Pattern::parse(&word, self.lex.escape);
                if ch == '#' {
                    pattern.trim_prefix(&v, greedy, &mut self.budget)
                } else {
                    pattern.trim_suffix(&v, greedy, &mut self.budget)
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pat = self.nested('/')?;
                let replacement = self.nested('}')?;
                let Some(v) = value else {
                    if self.lex.skip_unset {
                        let op = if all { "//" } else { "/" };
                        return Ok(format!("${{{name}{op}{pat}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                Pattern::parse(&pat, self.lex.escape).replace(&v, &replacement, all, &mut self.budget)
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                name.push(ch);
                return name;
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

fn unset_message(name: &str, word: &str, default: &str) -> String {
    if word.is_empty() {
        format!("{name}: {default}")
    } else {
        format!("{name}: {word}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vars {
        let mut v = Vars::new();
        v.set("A", "alpha");
        v.set("EMPTY", "");
        v.set("P", "/usr/local/bin/tool.tar.gz");
        v
    }

    fn w(s: &str) -> String {
        Lexer::new('\\')
            .process_word(s, &env())
            .unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn simple_and_braced() {
        assert_eq!(w("$A"), "alpha");
        assert_eq!(w("${A}x"), "alphax");
        assert_eq!(w("$Ax"), "");
        assert_eq!(w("$"), "$");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("$/x"), "$/x");
        assert_eq!(w("${NOPE}"), "");
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${EMPTY:-d}"), "d");
        assert_eq!(w("${EMPTY-d}"), "");
        assert_eq!(w("${NOPE-d}"), "d");
        assert_eq!(w("${A:+set}"), "set");
        assert_eq!(w("${EMPTY:+set}"), "");
        assert_eq!(w("${EMPTY+set}"), "set");
        assert_eq!(w("${NOPE:-${A}}"), "alpha");
        assert_eq!(w("${NOPE:?must be set}"), "ERR NOPE: must be set");
        assert_eq!(w("${EMPTY:?}"), "ERR EMPTY: is not allowed to be empty");
        assert_eq!(w("${A:x}"), "ERR unsupported modifier (x) in substitution");
        assert_eq!(w("${}"), "ERR syntax error: bad substitution");
        assert_eq!(w("${A"), "ERR syntax error: missing '}'");
        assert_eq!(w("${A:-x"), "ERR syntax error: missing '}'");
    }

    #[test]
    fn patterns() {
        assert_eq!(w("${P#*/}"), "usr/local/bin/tool.tar.gz");
        assert_eq!(w("${P##*/}"), "tool.tar.gz");
        assert_eq!(w("${P%.*}"), "/usr/local/bin/tool.tar");
        assert_eq!(w("${P%%.*}"), "/usr/local/bin/tool");
        assert_eq!(w("${P/local/opt}"), "/usr/opt/bin/tool.tar.gz");
        assert_eq!(w("${P//o/0}"), "/usr/l0cal/bin/t00l.tar.gz");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "alpha b");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("\"\\$A\\x\""), "$A\\x");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(
            w("'abc"),
            "ERR unexpected end of statement while looking for matching single-quote"
        );
        assert_eq!(
            w("\"abc"),
            "ERR unexpected end of statement while looking for matching double-quote"
        );
        assert_eq!(
            Lexer::new('`').process_word("`$A", &env()).unwrap_or_default(),
            "$A"
        );
    }

    #[test]
    fn words_split_on_unquoted_space() {
        let lex = Lexer::new('\\');
        let got = lex.process_words("a \"b c\" $A ''", &env()).unwrap_or_default();
        assert_eq!(got, vec!["a", "b c", "alpha"]);
    }

    #[test]
    fn skip_unset_keeps_references() {
        let mut lex = Lexer::new('\\');
        lex.skip_unset = true;
        assert_eq!(
            lex.process_word("$NOPE ${NOPE:-x} $A", &env())
                .unwrap_or_default(),
            "$NOPE ${NOPE:-x} alpha"
        );
    }
}
