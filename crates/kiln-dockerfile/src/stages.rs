//! The multi-stage graph: splitting into stages, stage references, cycles and target pruning.

use crate::error::{Error, ErrorKind};
use crate::instruction::{Instruction, InstructionKind};

/// A stage before evaluation.
#[derive(Debug, Clone)]
pub(crate) struct RawStage {
    pub index: usize,
    pub from: Instruction,
    pub image: String,
    pub name: Option<String>,
    pub commands: Vec<Instruction>,
}

impl RawStage {
    /// BuildKit's display name: the `AS` name or `stage-N`.
    pub(crate) fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// Split into global ARGs (before the first FROM) and stages.
pub(crate) fn split(instructions: Vec<Instruction>) -> Result<(Vec<Instruction>, Vec<RawStage>), Error> {
    let mut globals = Vec::new();
    let mut stages: Vec<RawStage> = Vec::new();
    let mut last_line = 1;
    for ins in instructions {
        last_line = ins.location.end_line;
        if let InstructionKind::From { image, name } = &ins.kind {
            stages.push(RawStage {
                index: stages.len(),
                image: image.clone(),
                name: name.clone(),
                from: ins.clone(),
                commands: Vec::new(),
            });
            continue;
        }
        match stages.last_mut() {
            Some(stage) => stage.commands.push(ins),
            None if matches!(ins.kind, InstructionKind::Arg { .. }) => globals.push(ins),
            None => {
                let loc = ins.location;
                return Err(Error::new(
                    ErrorKind::NoBuildStage(ins.keyword.clone()),
                    loc.start_line,
                    loc.column,
                    ins.source,
                ));
            }
        }
    }
    if stages.is_empty() {
        return Err(Error::new(ErrorKind::NoStages, last_line, 1, ""));
    }
    Ok((globals, stages))
}

/// Find a stage by name, case-insensitively; the last stage with the name wins (BuildKit's map).
pub(crate) fn find_by_name(stages: &[RawStage], name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    stages
        .iter()
        .rev()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
        .map(|s| s.index)
}

/// Go `strconv.Atoi` acceptance: optional sign and decimal digits.
pub(crate) fn parse_index(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok().or(Some(i64::MAX))
}

/// The first stage found on a dependency cycle, if any.
pub(crate) fn find_cycle(deps: &[Vec<usize>]) -> Option<usize> {
    // 0 = unvisited, 1 = on stack, 2 = done. Iterative DFS so deep graphs cannot overflow the stack.
    let mut state = vec![0u8; deps.len()];
    for start in 0..deps.len() {
        if state.get(start) != Some(&0) {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        if let Some(s) = state.get_mut(start) {
            *s = 1;
        }
        while let Some((node, child)) = stack.pop() {
            match deps.get(node).and_then(|d| d.get(child)).copied() {
                Some(next) => {
                    stack.push((node, child + 1));
                    match state.get(next) {
                        Some(1) => return Some(next),
                        Some(0) => {
                            if let Some(s) = state.get_mut(next) {
                                *s = 1;
                            }
                            stack.push((next, 0));
                        }
                        _ => {}
                    }
                }
                None => {
                    if let Some(s) = state.get_mut(node) {
                        *s = 2;
                    }
                }
            }
        }
    }
    None
}

/// Stages reachable from `target` through `deps`.
pub(crate) fn reachable(target: usize, deps: &[Vec<usize>]) -> Vec<bool> {
    let mut seen = vec![false; deps.len()];
    let mut todo = vec![target];
    while let Some(n) = todo.pop() {
        match seen.get_mut(n) {
            Some(s) if !*s => *s = true,
            _ => continue,
        }
        todo.extend(deps.get(n).into_iter().flatten().copied());
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles() {
        assert_eq!(find_cycle(&[vec![1], vec![0]]), Some(0));
        assert_eq!(find_cycle(&[vec![], vec![0], vec![0, 1]]), None);
        assert_eq!(find_cycle(&[vec![], vec![2], vec![1]]), Some(1));
    }

    #[test]
    fn pruning() {
        let deps = vec![vec![], vec![0], vec![], vec![1]];
        assert_eq!(reachable(3, &deps), vec![true, true, false, true]);
    }

    #[test]
    fn atoi() {
        assert_eq!(parse_index("0"), Some(0));
        assert_eq!(parse_index("-1"), Some(-1));
        assert_eq!(parse_index("1a"), None);
        assert_eq!(parse_index(""), None);
    }
}
