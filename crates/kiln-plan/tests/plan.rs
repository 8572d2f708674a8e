//! The plan without root, a builder or a CLI: a folder-layout repository, an in-memory index.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;

use kiln_index::{BuildReason, Index, MemoryIndex, Status};
use kiln_plan::{Plan, PlanError, RunScope, Workspace, WorkspaceOptions, hash_and_route, naming, selection};

fn repo() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    for (name, dockerfile) in [
        ("base", "FROM busybox:1\nRUN true\n"),
        ("app", "FROM base\nCOPY . /app\n"),
        ("other", "FROM busybox:1\n"),
    ] {
        let folder = dir.path().join("images").join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("Dockerfile"), dockerfile).unwrap();
    }
    let ws = Workspace::load(&WorkspaceOptions {
        repo: Some(dir.path().to_owned()),
        ..Default::default()
    })
    .unwrap();
    (dir, ws)
}

fn scope(level: u8, pull_request: bool) -> RunScope {
    RunScope::new(level, pull_request, time::OffsetDateTime::now_utc(), 3).unwrap()
}

#[test]
fn a_plan_marks_unindexed_images_and_their_children_for_building() {
    let (_dir, ws) = repo();
    let scope = scope(3, false);
    let selected = selection(&ws, &["app".to_owned()]).unwrap();
    assert_eq!(selected, BTreeSet::from(["app".to_owned(), "base".to_owned()]));
    let index = MemoryIndex::default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    let plan = Plan::resolve(hash_and_route(&ws, &selected, &scope).unwrap(), &index, now).unwrap();
    let names: Vec<&str> = plan.entries.iter().map(|e| e.image.name.as_str()).collect();
    assert_eq!(names, ["base", "app"], "parents first");
    assert_eq!(plan.to_build(), 2);
    let base = plan.entry("base").unwrap();
    assert!(
        base.routes
            .iter()
            .any(|r| r.contains(".level-3.") && r.ends_with(&base.hashes.digest.hex))
    );

    // base recorded: it is cached, app still to build.
    let record = base.record(
        &ws,
        &scope,
        &format!("sha256:{}", "a".repeat(64)),
        Some(&format!("sha256:{}", "b".repeat(64))),
        None,
    );
    assert_eq!(record.expires, scope.expires(&ws.repo.config));
    assert!(record.expires > now);
    index.insert(&base.routes, &record).unwrap();
    let plan = Plan::resolve(hash_and_route(&ws, &selected, &scope).unwrap(), &index, now).unwrap();
    assert!(matches!(plan.statuses[0], Status::Cached(_)));
    assert!(matches!(plan.statuses[1], Status::Build(BuildReason::NotIndexed)));

    // What a build of `app` builds: app; and base too when the store lacks it.
    let wanted = BTreeSet::from(["app"]);
    let in_store = |have: bool| move |_: &kiln_plan::PlanEntry<'_>| Ok::<_, ()>(have);
    assert_eq!(
        plan.build_set(&wanted, false, in_store(true)).unwrap(),
        BTreeSet::from(["app".to_owned()])
    );
    assert_eq!(
        plan.build_set(&wanted, false, in_store(false)).unwrap(),
        BTreeSet::from(["app".to_owned(), "base".to_owned()])
    );

    let json = serde_json::to_value(plan.json(&ws)).unwrap();
    assert_eq!(json[0]["status"], "cached");
    assert_eq!(
        json[0]["found"]["image_digest"],
        format!("sha256:{}", "a".repeat(64))
    );
    assert_eq!(json[1]["reason"]["reason"], "not-indexed");
}

#[test]
fn level_one_and_pull_request_records_expire_sooner() {
    let (_dir, ws) = repo();
    let config = &ws.repo.config;
    let build_date = scope(3, false).build_date.unix_timestamp();
    let long = scope(3, false).expires(config) - build_date;
    let short = scope(1, false).expires(config) - build_date;
    assert_eq!(scope(1, true).expires(config) - build_date, short);
    assert!(short < long, "{short} < {long}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let (_dir, ws) = repo();
    let err = selection(&ws, &["nope".to_owned()]).unwrap_err();
    assert!(matches!(err, PlanError::UnknownImage { .. }));
    assert!(
        err.to_string().contains("no image `nope`") && err.to_string().contains("images: base, other, app"),
        "{err}"
    );
    let err = RunScope::new(4, false, time::OffsetDateTime::now_utc(), 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--level 4 is out of range: this repository's levels are 1 to 3"
    );
    assert_eq!(naming::store_name("app", "abc"), "kiln/app:abc");
    assert!(naming::artifact_path(std::path::Path::new("/a"), "app").ends_with("app/image.tar.zst"));
}
