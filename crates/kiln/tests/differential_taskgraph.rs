//! Differential test: `kiln plan --json` against the real taskcluster-taskgraph 24.5.1.
//!
//! For each seed, `tests/taskgraph/random_tree.py SEED DEST` writes a random taskgraph
//! repository, `tests/taskgraph/reference.py` asks taskgraph itself for every image's context
//! hash, cache digest, index routes and lookup order, and `kiln plan --json` must give the same
//! (cold, then again with the warm stat cache).
//!
//! Environment:
//! - `KILN_TASKGRAPH_PYTHON`: a Python with taskgraph 24.5.1 and without orjson (default
//!   `<workspace>/.venv-taskgraph/bin/python`, made by `scripts/setup-taskgraph-venv.sh`);
//! - `KILN_DIFF_SEEDS`: how many seeds (default 25); `KILN_DIFF_FIRST_SEED`: the first (default 0);
//! - `KILN_REQUIRE_PEERS=1`: fail instead of skipping when that Python is missing.
//!
//! On a mismatch the tree is kept and its path and seed are printed; regenerate it with
//! `python3 tests/taskgraph/random_tree.py SEED DEST`.
#![allow(
    clippy::print_stderr,
    reason = "the test reports skips and progress on stderr"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BUILD_DATE: &str = "2023-11-14T22:13:20Z";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
        Err(_) => default,
    }
}

/// The Python with taskgraph, or `None` (after a skip message) when it is missing.
fn taskgraph_python() -> Option<PathBuf> {
    let python = std::env::var_os("KILN_TASKGRAPH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv-taskgraph/bin/python"));
    if python.exists() {
        return Some(python);
    }
    let msg = format!(
        "differential_taskgraph: no taskgraph Python at {} (set KILN_TASKGRAPH_PYTHON, or run \
         scripts/setup-taskgraph-venv.sh)",
        python.display()
    );
    if std::env::var("KILN_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{msg}; KILN_REQUIRE_PEERS=1 forbids skipping");
    }
    eprintln!("SKIPPED {msg}");
    None
}

fn run(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{what} failed ({}): {cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The level and pull-request flag a seed is checked with: push at 3, 1, 2; PR at 1, 3.
fn variant(seed: u64) -> (u8, bool) {
    match seed % 5 {
        0 => (3, false),
        1 => (1, false),
        2 => (1, true),
        3 => (2, false),
        _ => (3, true),
    }
}

fn plan_args(level: u8, pull_request: bool) -> Vec<String> {
    let mut args = vec![
        "--level".to_owned(),
        level.to_string(),
        "--build-date".to_owned(),
        BUILD_DATE.to_owned(),
    ];
    if pull_request {
        args.push("--pull-request".to_owned());
    }
    args
}

fn kiln_plan(
    repo: &Path,
    state: &Path,
    level: u8,
    pull_request: bool,
) -> Result<BTreeMap<String, Value>, String> {
    kiln_plan_in(
        Command::new(assert_cmd::cargo::cargo_bin!("kiln")),
        repo,
        state,
        level,
        pull_request,
    )
}

fn kiln_plan_in(
    mut cmd: Command,
    repo: &Path,
    state: &Path,
    level: u8,
    pull_request: bool,
) -> Result<BTreeMap<String, Value>, String> {
    cmd.arg("-C")
        .arg(repo)
        .args(["plan", "--json"])
        .args(plan_args(level, pull_request))
        .arg("--state-dir")
        .arg(state)
        .arg("--index")
        .arg(state.join("index.sqlite"));
    let out = run(&mut cmd, "kiln plan")?;
    let plan: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("kiln plan --json printed no JSON: {e}"))?;
    let Value::Array(items) = plan else {
        return Err(format!("kiln plan --json is not an array: {plan}"));
    };
    let mut by_name = BTreeMap::new();
    for item in items {
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("plan entry without a name: {item}"))?
            .to_owned();
        if by_name.insert(name.clone(), item).is_some() {
            return Err(format!("image {name} listed twice by kiln plan"));
        }
    }
    Ok(by_name)
}

fn reference(
    python: &Path,
    repo: &Path,
    level: u8,
    pull_request: bool,
) -> Result<BTreeMap<String, Value>, String> {
    let script = workspace().join("tests/taskgraph/reference.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg(repo)
        .args(plan_args(level, pull_request))
        .current_dir(repo);
    let out = run(&mut cmd, "reference.py")?;
    serde_json::from_slice(&out.stdout).map_err(|e| format!("reference.py printed no JSON: {e}"))
}

/// Every difference between taskgraph's and kiln's view of the images, one per line.
fn compare(taskgraph: &BTreeMap<String, Value>, kiln: &BTreeMap<String, Value>, label: &str) -> String {
    let mut diff = String::new();
    for name in taskgraph.keys().filter(|n| !kiln.contains_key(*n)) {
        let _ = writeln!(diff, "  [{label}] {name}: missing from kiln's plan");
    }
    for name in kiln.keys().filter(|n| !taskgraph.contains_key(*n)) {
        let _ = writeln!(
            diff,
            "  [{label}] {name}: in kiln's plan but not a taskgraph image"
        );
    }
    for (name, tg) in taskgraph {
        let Some(k) = kiln.get(name) else { continue };
        for field in [
            "context_hash",
            "cache_digest",
            "definition",
            "parent",
            "routes",
            "lookup",
        ] {
            let tg_v = tg.get(field).unwrap_or(&Value::Null);
            let k_v = k.get(field).unwrap_or(&Value::Null);
            if tg_v != k_v {
                let _ = writeln!(
                    diff,
                    "  [{label}] {name}.{field}:\n      taskgraph {tg_v}\n      kiln      {k_v}"
                );
            }
        }
    }
    diff
}

/// Checks one seed; `Err` carries the report (and keeps the tree).
fn check_seed(python: &Path, seed: u64) -> Result<(), String> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("kiln-diff-seed{seed}-"))
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let repo = tmp.path().join("repo");
    let state = tmp.path().join("state");
    let generator = workspace().join("tests/taskgraph/random_tree.py");
    let result = (|| {
        run(
            Command::new(python)
                .arg(&generator)
                .arg(seed.to_string())
                .arg(&repo),
            "random_tree.py",
        )?;
        let (level, pr) = variant(seed);
        // taskgraph first: kiln must not leave anything in the tree that taskgraph would hash
        let tg = reference(python, &repo, level, pr)?;
        if tg.is_empty() {
            return Err("taskgraph found no images".to_owned());
        }
        let mut diff = String::new();
        let cold = kiln_plan(&repo, &state, level, pr)?;
        diff += &compare(&tg, &cold, "cold");
        let warm = kiln_plan(&repo, &state, level, pr)?;
        diff += &compare(&tg, &warm, "warm stat cache");
        if diff.is_empty() {
            Ok(tg.len())
        } else {
            Err(format!(
                "level {level}, pull request {pr}, {} images:\n{diff}",
                tg.len()
            ))
        }
    })();
    match result {
        Ok(n) => {
            eprintln!("seed {seed}: {n} images agree");
            Ok(())
        }
        Err(report) => {
            let kept = tmp.keep();
            Err(format!(
                "seed {seed}: MISMATCH, tree kept at {} (regenerate: python3 \
                 tests/taskgraph/random_tree.py {seed} DEST)\n{report}",
                kept.join("repo").display()
            ))
        }
    }
}

#[test]
fn kiln_matches_taskgraph_on_random_trees() {
    let Some(python) = taskgraph_python() else {
        return;
    };
    let first = env_u64("KILN_DIFF_FIRST_SEED", 0);
    let seeds = env_u64("KILN_DIFF_SEEDS", 25);
    let failures: Vec<String> = (first..first + seeds)
        .filter_map(|seed| check_seed(&python, seed).err())
        .inspect(|f| eprintln!("{f}"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds differ between kiln and taskgraph 24.5.1:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Issue 12 part 2: a taskgraph repository whose Dockerfiles use `# %include-run-task` plans with no
/// kiln.toml: kiln takes the run-task files from the taskgraph package that the repository's `python3`
/// imports (here the test venv, first on PATH), and its hashes are taskgraph's own.
#[test]
fn include_run_task_needs_no_configuration_and_matches_taskgraph() {
    let Some(python) = taskgraph_python() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let write = |rel: &str, text: &str| {
        let path = repo.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(".taskcluster.yml", "version: 1\n");
    write(
        "taskcluster/config.yml",
        "trust-domain: rt\ntask-priority: low\ntreeherder:\n  group-names:\n    I: Docker images\ntaskgraph:\n  \
         repositories:\n    rt:\n      name: rt\nworkers:\n  aliases:\n    images:\n      provisioner: p\n      \
         implementation: docker-worker\n      os: linux\n      worker-type: images\n",
    );
    write(
        "taskcluster/kinds/docker-image/kind.yml",
        "loader: taskgraph.loader.transform:loader\ntransforms:\n  - taskgraph.transforms.docker_image:transforms\n  \
         - taskgraph.transforms.cached_tasks:transforms\n  - taskgraph.transforms.task:transforms\ntasks:\n  \
         base:\n    symbol: I(base)\n  worker:\n    symbol: I(worker)\n    parent: base\n",
    );
    write(
        "taskcluster/docker/base/Dockerfile",
        "FROM debian:12\n# %include-run-task\nRUN true\n",
    );
    write(
        "taskcluster/docker/worker/Dockerfile",
        "ARG DOCKER_IMAGE_PARENT\nFROM $DOCKER_IMAGE_PARENT\n# %include-run-task\n",
    );
    let tg = reference(&python, &repo, 1, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tg.len(), 2, "{tg:?}");
    let bin = python.parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin!("kiln"));
    cmd.env("PATH", &path)
        .env_remove("KILN_RUN_TASK_DIR")
        .env_remove("VIRTUAL_ENV");
    let kiln =
        kiln_plan_in(cmd, &repo, &tmp.path().join("state"), 1, false).unwrap_or_else(|e| panic!("{e}"));
    let diff = compare(&tg, &kiln, "run-task");
    assert!(diff.is_empty(), "kiln and taskgraph differ:\n{diff}");

    // `kiln digest --explain` says where the run-task files came from.
    let out = Command::new(assert_cmd::cargo::cargo_bin!("kiln"))
        .env("PATH", &path)
        .env_remove("KILN_RUN_TASK_DIR")
        .env_remove("VIRTUAL_ENV")
        .arg("-C")
        .arg(&repo)
        .args(["digest", "worker", "--explain", "--state-dir"])
        .arg(tmp.path().join("state"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("run-task files: ") && text.contains("from taskgraph 24.5.1"),
        "{text}"
    );
}
