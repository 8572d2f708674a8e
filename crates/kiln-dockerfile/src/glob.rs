//! Shell patterns for `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/rep}`: `*`, `?`, `[...]`, escapes.

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Lit(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled shell pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    pub(crate) fn parse(src: &str, escape: char) -> Self {
        let chars: Vec<char> = src.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            match c {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '[' => match parse_class(&chars, i) {
                    Some((tok, next)) => {
                        tokens.push(tok);
                        i = next;
                    }
                    None => tokens.push(Token::Lit('[')),
                },
                c if c == escape || c == '\\' => match chars.get(i) {
                    Some(&n) => {
                        tokens.push(Token::Lit(n));
                        i += 1;
                    }
                    None => tokens.push(Token::Lit(c)),
                },
                c => tokens.push(Token::Lit(c)),
            }
        }
        Self { tokens }
    }

    /// The characters of a pattern without wildcards.
    fn literal(&self) -> Option<Vec<char>> {
        self.tokens
            .iter()
            .map(|t| match t {
                Token::Lit(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// Whether the whole of `text` matches.
    pub(crate) fn matches(&self, text: &[char], budget: &mut Budget) -> Result<bool, String> {
        // Iterative matcher with single-star backtracking: O(len(text) * len(pattern)).
        let (mut t, mut p) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            budget.step()?;
            match self.tokens.get(p) {
                Some(Token::Star) => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(tok) if text.get(t).is_some_and(|c| single(tok, *c)) => {
                    t += 1;
                    p += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return Ok(false),
            }
        }
        Ok(self
            .tokens
            .get(p..)
            .is_some_and(|rest| rest.iter().all(|t| *t == Token::Star)))
    }

    pub(crate) fn trim_prefix(
        &self,
        value: &str,
        greedy: bool,
        budget: &mut Budget,
    ) -> Result<String, String> {
        let chars: Vec<char> = value.chars().collect();
        if let Some(lit) = self.literal() {
            return Ok(match chars.strip_prefix(lit.as_slice()) {
                Some(rest) => rest.iter().collect(),
                None => value.to_string(),
            });
        }
        let mut ends: Vec<usize> = (0..=chars.len()).collect();
        if greedy {
            ends.reverse();
        }
        for end in ends {
            if self.matches(chars.get(..end).unwrap_or_default(), budget)? {
                return Ok(chars.get(end..).map(|r| r.iter().collect()).unwrap_or_default());
            }
        }
        Ok(value.to_string())
    }

    pub(crate) fn trim_suffix(
        &self,
        value: &str,
        greedy: bool,
        budget: &mut Budget,
    ) -> Result<String, String> {
        let chars: Vec<char> = value.chars().collect();
        if let Some(lit) = self.literal() {
            return Ok(match chars.strip_suffix(lit.as_slice()) {
                Some(rest) => rest.iter().collect(),
                None => value.to_string(),
            });
        }
        let mut starts: Vec<usize> = (0..=chars.len()).collect();
        if !greedy {
            starts.reverse();
        }
        for start in starts {
            if self.matches(chars.get(start..).unwrap_or_default(), budget)? {
                return Ok(chars.get(..start).map(|r| r.iter().collect()).unwrap_or_default());
            }
        }
        Ok(value.to_string())
    }

    /// `${V/p/r}` (`all`: `${V//p/r}`): the longest match at each position is replaced.
    pub(crate) fn replace(
        &self,
        value: &str,
        replacement: &str,
        all: bool,
        budget: &mut Budget,
    ) -> Result<String, String> {
        let chars: Vec<char> = value.chars().collect();
        let literal = self.literal().filter(|l| !l.is_empty());
        let mut out = String::new();
        let mut i = 0;
        let mut replaced = false;
        while i <= chars.len() {
            budget.fits(out.len())?;
            let found = if replaced && !all {
                None
            } else if let Some(lit) = &literal {
                budget.step()?;
                chars
                    .get(i..)
                    .is_some_and(|rest| rest.starts_with(lit))
                    .then_some(i + lit.len())
            } else {
                let mut found = None;
                for end in (i..=chars.len()).rev() {
                    if self.matches(chars.get(i..end).unwrap_or_default(), budget)? {
                        found = Some(end);
                        break;
                    }
                }
                found
            };
            match found {
                Some(end) if end > i || !self.tokens.is_empty() => {
                    out.push_str(replacement);
                    replaced = true;
                    if end == i {
                        if let Some(c) = chars.get(i) {
                            out.push(*c);
                        }
                        i += 1;
                    } else {
                        i = end;
                    }
                }
                _ => {
                    if let Some(c) = chars.get(i) {
                        out.push(*c);
                    }
                    i += 1;
                }
            }
        }
        budget.fits(out.len())?;
        Ok(out)
    }
}

/// What one expansion may still spend: matcher steps, and the size of what it builds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Steps left.
    pub steps: u64,
    /// Steps at the start of the evaluation, for messages.
    pub max_steps: u64,
    /// The longest result, in bytes.
    pub max_len: usize,
}

impl Budget {
    fn step(&mut self) -> Result<(), String> {
        match self.steps.checked_sub(1) {
            Some(left) => {
                self.steps = left;
                Ok(())
            }
            None => Err(format!(
                "shell pattern matching takes too long (more than {} steps)",
                self.max_steps
            )),
        }
    }

    /// An error when a result of `len` bytes is over the limit.
    pub(crate) fn fits(&self, len: usize) -> Result<(), String> {
        if len > self.max_len {
            return Err(format!(
                "the expanded value exceeds the limit of {} bytes",
                self.max_len
            ));
        }
        Ok(())
    }
}

fn single(tok: &Token, c: char) -> bool {
    match tok {
        Token::Lit(l) => *l == c,
        Token::Any => true,
        Token::Star => false,
        Token::Class { negated, ranges } => ranges.iter().any(|(a, b)| *a <= c && c <= *b) != *negated,
    }
}

fn parse_class(chars: &[char], mut i: usize) -> Option<(Token, usize)> {
    let mut negated = false;
    if matches!(chars.get(i), Some('!') | Some('^')) {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !first {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *chars.get(i)?
        } else {
            c
        };
        i += 1;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|n| *n != ']') {
            let hi = *chars.get(i + 1)?;
            ranges.push((lo, hi));
            i += 2;
        } else {
            ranges.push((lo, lo));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Budget {
        Budget {
            steps: 1_000,
            max_steps: 1_000,
            max_len: 64,
        }
    }

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p, '\\')
            .matches(&t.chars().collect::<Vec<_>>(), &mut budget())
            .unwrap()
    }

    #[test]
    fn matching() {
        assert!(m("*", ""));
        assert!(m("a*c", "abbbc"));
        assert!(!m("a*c", "abbb"));
        assert!(m("?b", "ab"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[!a-c]x", "bx"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("[", "["));
    }

    #[test]
    fn matching_is_bounded_in_steps_and_size() {
        let text = "a".repeat(200);
        let star = Pattern::parse("*b", '\\');
        let err = star.trim_prefix(&text, true, &mut budget()).unwrap_err();
        assert!(err.contains("too long"), "{err}");
        // Literal patterns take the direct way, whatever the value's length.
        let lit = Pattern::parse("a", '\\');
        assert_eq!(lit.trim_prefix(&text, true, &mut budget()).unwrap().len(), 199);
        let err = lit.replace(&text, "bb", true, &mut budget()).unwrap_err();
        assert!(err.contains("exceeds the limit of 64 bytes"), "{err}");
        assert_eq!(lit.replace("aXa", "b", true, &mut budget()).unwrap(), "bXb");
        assert_eq!(lit.replace("aXa", "b", false, &mut budget()).unwrap(), "bXa");
    }
}
