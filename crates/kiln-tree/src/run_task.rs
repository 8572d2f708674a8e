//! Finding taskgraph's `run-task/` folder for `# %include-run-task` the way a taskgraph user has it,
//! with no configuration: a setting wins (`--run-task-dir`, `KILN_RUN_TASK_DIR`, `[taskgraph] run-task-dir`
//! in kiln.toml), then the `taskgraph` package importable by the repository's own virtualenv
//! (`.venv/`, `venv/`), by `$VIRTUAL_ENV`, or by `python3` on `PATH`, then a vendored copy in the repository
//! (`src/taskgraph/run-task`, as the taskgraph repository itself has it). Its content goes into the
//! context hash, so which one was used (and the package's version) is reported with the digest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde::Serialize;

/// A `run-task/` folder and where it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunTask {
    /// The folder holding `run-task`, `fetch-content`, `hgrc` and `robustcheckout.py`.
    pub dir: PathBuf,
    /// Where it came from, for people: `setting`, `taskgraph 24.5.1 (python: .venv/bin/python)`, `vendored`.
    pub source: String,
}

/// The run-task folder for the repository at `root` (`setting` from the configuration, if any). Looked up
/// once per repository and process. The error says what was tried and how to fix it.
pub fn discover(root: &Path, setting: Option<&Path>) -> Result<RunTask, String> {
    if let Some(dir) = setting {
        return Ok(RunTask {
            dir: dir.to_owned(),
            source: format!("setting ({})", dir.display()),
        });
    }
    static FOUND: Mutex<Option<HashMap<PathBuf, Result<RunTask, String>>>> = Mutex::new(None);
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    found
        .get_or_insert_with(HashMap::new)
        .entry(root.to_owned())
        .or_insert_with(|| look_up(root))
        .clone()
}

fn look_up(root: &Path) -> Result<RunTask, String> {
    let mut pythons: Vec<PathBuf> = [".venv", "venv"]
        .iter()
        .map(|venv| root.join(venv).join("bin/python"))
        .filter(|p| p.exists())
        .collect();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        pythons.push(PathBuf::from(venv).join("bin/python"));
    }
    pythons.push(PathBuf::from("python3"));
    let mut tried = Vec::new();
    for python in &pythons {
        match package(python) {
            Some((dir, version)) if dir.join("run-task").is_file() => {
                let shown = python.strip_prefix(root).unwrap_or(python);
                return Ok(RunTask {
                    dir,
                    source: format!("taskgraph {version} (python: {})", shown.display()),
                });
            }
            _ => tried.push(format!("the taskgraph package of {}", python.display())),
        }
    }
    let vendored = root.join("src/taskgraph/run-task");
    if vendored.join("run-task").is_file() {
        return Ok(RunTask {
            dir: vendored,
            source: "vendored (src/taskgraph/run-task)".to_owned(),
        });
    }
    tried.push(vendored.display().to_string());
    Err(format!(
        "`# %include-run-task` needs taskgraph's run-task folder and none was found (tried {}): install \
         taskgraph where the repository's python finds it (`pip install taskcluster-taskgraph`), or give the \
         folder with --run-task-dir, KILN_RUN_TASK_DIR or `run-task-dir` under [taskgraph] in kiln.toml",
        tried.join(", ")
    ))
}

/// The `run-task` folder and version of the taskgraph package `python` imports, if it does.
fn package(python: &Path) -> Option<(PathBuf, String)> {
    let out = Command::new(python)
        .args([
            "-c",
            "import os, taskgraph; print(os.path.join(os.path.dirname(taskgraph.__file__), 'run-task')); \
             print(getattr(taskgraph, '__version__', 'unknown'))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines();
    let dir = PathBuf::from(lines.next()?.trim());
    let version = lines.next().unwrap_or("unknown").trim().to_owned();
    Some((dir, version))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_setting_wins_and_a_vendored_copy_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let setting = dir.path().join("mine");
        assert_eq!(discover(dir.path(), Some(&setting)).unwrap().dir, setting);
        let vendored = dir.path().join("src/taskgraph/run-task");
        std::fs::create_dir_all(&vendored).unwrap();
        std::fs::write(vendored.join("run-task"), "#!/bin/sh\n").unwrap();
        // Unless python3 on PATH has taskgraph, the vendored copy is what this repository uses.
        let found = look_up(dir.path()).unwrap();
        assert!(
            found.dir == vendored || found.source.starts_with("taskgraph "),
            "{found:?}"
        );
    }

    #[test]
    fn none_found_says_what_was_tried_and_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        // A python that has no taskgraph: the repository's own (empty) virtualenv.
        let bin = dir.path().join(".venv/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink("/bin/false", bin.join("python")).unwrap();
        if let Err(message) = look_up(dir.path()) {
            assert!(message.contains(".venv/bin/python"), "{message}");
            assert!(message.contains("--run-task-dir"), "{message}");
        }
    }
}
