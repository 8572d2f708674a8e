//! Table-driven corpus: every directory under `tests/corpus/` is one case.
//!
//! A case holds `Dockerfile` and `case.json`:
//! `{"pins": "...", "options": {...}, "expect": {...}}` or `{..., "error": {"line":…, "column":…, "contains": "…"}}`.
//! `expect` is matched as a subset of the evaluated JSON: every key given must be present with the same
//! value; arrays must have the same length and match element by element. `options` takes `build_args`,
//! `target`, `target_platform`, `build_platform`, `parent_image` and `base_images` (name → ImageConfig).

use std::collections::BTreeMap;
use std::path::Path;

use kiln_dockerfile::{EvalOptions, ImageConfig, evaluate};
use serde_json::Value;

fn options(v: &Value) -> EvalOptions {
    let mut o = EvalOptions::default();
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(args) = v.get("build_args").and_then(Value::as_object) {
        o.build_args = args
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
    }
    o.target = s("target");
    o.target_platform = s("target_platform");
    o.build_platform = s("build_platform");
    o.parent_image = s("parent_image");
    if let Some(b) = v.get("base_images") {
        let m: BTreeMap<String, ImageConfig> = serde_json::from_value(b.clone()).expect("base_images");
        o.base_images = m;
    }
    o.file_name = Some("Dockerfile".to_string());
    o
}

fn subset(expected: &Value, actual: &Value, path: &str, errors: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                match a.get(k) {
                    Some(av) => subset(ev, av, &format!("{path}.{k}"), errors),
                    None => errors.push(format!("{path}.{k}: missing in actual")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                errors.push(format!(
                    "{path}: expected {} elements, got {}: {}",
                    e.len(),
                    a.len(),
                    actual
                ));
                return;
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                subset(ev, av, &format!("{path}[{i}]"), errors);
            }
        }
        (e, a) if e == a => {}
        (e, a) => errors.push(format!("{path}: expected {e}, got {a}")),
    }
}

fn run_case(dir: &Path) -> Result<(), String> {
    let source = std::fs::read_to_string(dir.join("Dockerfile")).map_err(|e| format!("Dockerfile: {e}"))?;
    let case: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("case.json")).map_err(|e| format!("case.json: {e}"))?,
    )
    .map_err(|e| format!("case.json: {e}"))?;
    let opts = options(case.get("options").unwrap_or(&Value::Null));
    let result = evaluate(&source, &opts);
    match (case.get("error"), result) {
        (Some(e), Err(err)) => {
            let mut errors = Vec::new();
            let msg = err.to_string();
            if let Some(c) = e.get("contains").and_then(Value::as_str)
                && !msg.contains(c)
            {
                errors.push(format!("error {msg:?} does not contain {c:?}"));
            }
            for (k, v) in [("line", err.line), ("column", err.column)] {
                if let Some(want) = e.get(k).and_then(Value::as_u64)
                    && want != v as u64
                {
                    errors.push(format!("error {k}: expected {want}, got {v} ({msg})"));
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("\n"))
            }
        }
        (Some(_), Ok(_)) => Err("expected an error, evaluation succeeded".to_string()),
        (None, Err(err)) => Err(format!("unexpected error: {err}")),
        (None, Ok(desc)) => {
            let actual = serde_json::to_value(&desc).map_err(|e| e.to_string())?;
            let mut errors = Vec::new();
            subset(
                case.get("expect").unwrap_or(&Value::Null),
                &actual,
                "",
                &mut errors,
            );
            if errors.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{}\nactual: {}",
                    errors.join("\n"),
                    serde_json::to_string_pretty(&actual).unwrap_or_default()
                ))
            }
        }
    }
}

#[test]
fn corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("corpus dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    let mut failures = Vec::new();
    let mut count = 0;
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        count += 1;
        if let Err(e) = run_case(dir) {
            failures.push(format!(
                "--- {}\n{e}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ));
        }
    }
    assert!(count > 0, "no corpus cases found");
    assert!(
        failures.is_empty(),
        "{} of {count} corpus cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
