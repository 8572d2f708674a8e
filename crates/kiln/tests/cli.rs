//! End-to-end tests of the `kiln` binary on the sample tree and on trees the tests write.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::cargo_bin;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kiln(repo: &Path) -> Command {
    let mut cmd = Command::new(cargo_bin("kiln"));
    cmd.arg("-C")
        .arg(repo)
        .env_remove("KILN_STATE_DIR")
        .env_remove("KILN_INDEX")
        .env_remove("CI");
    cmd
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(cmd: &mut Command) -> String {
    let r = run(cmd);
    assert_eq!(r.code, 0, "command failed: {cmd:?}\nstderr: {}", r.stderr);
    r.stdout
}

fn plan_json(repo: &Path, extra: &[&str]) -> Vec<Value> {
    let out = ok(kiln(repo).args(["plan", "--json", "-q"]).args(extra));
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn by_name<'a>(plan: &'a [Value], name: &str) -> &'a Value {
    plan.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in plan"))
}

fn sample() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sample");
    let status = Command::new("python3")
        .arg(workspace().join("tests/vectors/make_sample.py"))
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    (tmp, root)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(workspace().join("tests/vectors/expected.json")).unwrap())
        .unwrap()
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn index_prefixed(routes: &Value) -> Vec<String> {
    strings(routes)
        .into_iter()
        .map(|r| format!("index.{r}"))
        .collect()
}

#[test]
fn sample_plan_gives_taskgraph_routes_and_lookup_order() {
    let (_tmp, root) = sample();
    let want = expected();
    let date = want["build_date_utc"].as_str().unwrap();
    let level3 = plan_json(&root, &["--level", "3", "--build-date", date]);
    let level1 = plan_json(&root, &["--level", "1", "--build-date", date]);
    let pr = plan_json(&root, &["--level", "1", "--pull-request", "--build-date", date]);
    for (name, w) in want["images"].as_object().unwrap() {
        assert_eq!(
            by_name(&level3, name)["context_hash"],
            w["context_hash"],
            "{name}"
        );
        assert_eq!(
            by_name(&level3, name)["cache_digest"],
            w["cache_digest"],
            "{name}"
        );
        assert_eq!(
            index_prefixed(&by_name(&level3, name)["routes"]),
            strings(&w["routes_level3_push"]),
            "{name}"
        );
        assert_eq!(
            index_prefixed(&by_name(&level1, name)["routes"]),
            strings(&w["routes_level1_push"]),
            "{name}"
        );
        assert_eq!(
            index_prefixed(&by_name(&pr, name)["routes"]),
            strings(&w["routes_level1_pull_request"]),
            "{name}"
        );
        assert_eq!(
            strings(&by_name(&pr, name)["lookup"]),
            strings(&w["index_search_level1_pull_request"]),
            "{name}"
        );
    }
    // Dependency order: every parent comes before its child.
    let names: Vec<&str> = level3.iter().map(|e| e["name"].as_str().unwrap()).collect();
    for (i, e) in level3.iter().enumerate() {
        if let Some(parent) = e["parent"].as_str() {
            assert!(names[..i].contains(&parent), "{parent} after {}", names[i]);
        }
    }
}

#[test]
fn context_files_hold_exactly_the_hashed_bytes() {
    let (tmp, root) = sample();
    let want = expected();
    let base = &want["images"]["base"];
    for ext in ["tar", "tar.gz", "tar.zst"] {
        let out = tmp.path().join(format!("base.{ext}"));
        let printed = ok(kiln(&root).args(["context", "base", "-q", "-o"]).arg(&out));
        assert_eq!(printed.trim(), base["context_hash"].as_str().unwrap());
        let file = std::fs::File::open(&out).unwrap();
        let mut tar = Vec::new();
        match ext {
            "tar" => std::io::BufReader::new(file).read_to_end(&mut tar).unwrap(),
            "tar.gz" => flate2::read::GzDecoder::new(file).read_to_end(&mut tar).unwrap(),
            _ => zstd::Decoder::new(file).unwrap().read_to_end(&mut tar).unwrap(),
        };
        assert_eq!(tar.len() as u64, base["tar_size"].as_u64().unwrap(), "{ext}");
        assert_eq!(
            hex::encode(Sha256::digest(&tar)),
            base["context_hash"].as_str().unwrap(),
            "{ext}"
        );
    }
    // taskgraph's gzip header: FNAME set, mtime 2016-01-01, XFL 2 (level 9), OS 255, name `<image>.tar`.
    let gz = std::fs::read(tmp.path().join("base.tar.gz")).unwrap();
    assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 8, 0x80, 0xc1, 0x85, 0x56, 2, 0xff]);
    assert_eq!(&gz[10..19], b"base.tar\0");
    // And GNU tar reads what kiln writes.
    let list = Command::new("tar")
        .arg("-tf")
        .arg(tmp.path().join("base.tar"))
        .output()
        .unwrap();
    let names = String::from_utf8(list.stdout).unwrap();
    assert!(names.lines().any(|l| l == "Dockerfile"));
    assert!(
        names
            .lines()
            .any(|l| l.starts_with("topsrcdir/shared/a-very-long-directory-name-"))
    );
}

/// Issue 11, item 12 (sibling of `kiln build -f Dockerfile`): `-o` with a bare file name writes (and
/// makes its temporary file) in the current folder.
#[test]
fn regression_context_output_as_a_bare_file_name() {
    let (tmp, root) = sample();
    let printed = ok(kiln(&root)
        .args(["context", "base", "-q", "-o", "bare.tar"])
        .current_dir(tmp.path()));
    assert_eq!(printed.trim(), expected()["images"]["base"]["context_hash"]);
    assert!(tmp.path().join("bare.tar").is_file());
}

#[test]
fn indexed_images_are_cached_only_for_equal_or_less_trusted_runs() {
    let (_tmp, root) = sample();
    let digest = format!("sha256:{}", "a".repeat(64));
    let add = |image: &str, level: &str| {
        ok(kiln(&root).args([
            "index",
            "add",
            image,
            "--image-digest",
            &digest,
            "--level",
            level,
            "-q",
        ]));
    };
    add("base", "2");
    add("child", "2");

    let level1 = plan_json(&root, &["--level", "1"]);
    assert_eq!(by_name(&level1, "base")["status"], "cached");
    assert_eq!(by_name(&level1, "child")["status"], "cached");
    assert!(
        by_name(&level1, "base")["found"]["route"]
            .as_str()
            .unwrap()
            .contains(".cache.level-2.")
    );
    assert_eq!(by_name(&level1, "grandchild")["status"], "build");
    assert_eq!(by_name(&level1, "grandchild")["reason"]["reason"], "not-indexed");

    // Level 3 never consumes level-2 output: base is built, and so is child (cascade) although indexed.
    let level3 = plan_json(&root, &["--level", "3"]);
    assert_eq!(by_name(&level3, "base")["status"], "build");
    assert_eq!(by_name(&level3, "child")["status"], "build");
    assert_eq!(by_name(&level3, "child")["reason"]["reason"], "parent-rebuilt");

    // Level-2 images expire after a year: a deadline beyond that means rebuilding.
    let late = plan_json(&root, &["--level", "1", "--deadline", "400d"]);
    assert_eq!(by_name(&late, "base")["status"], "build");
    assert_eq!(
        by_name(&late, "base")["reason"]["reason"],
        "expires-before-deadline"
    );

    // A pull request writes only cache.pr and reads it back.
    ok(kiln(&root).args([
        "index",
        "add",
        "registry-image",
        "--image-digest",
        &digest,
        "--pull-request",
        "-q",
    ]));
    let pr = plan_json(&root, &["--pull-request"]);
    assert_eq!(by_name(&pr, "registry-image")["status"], "cached");
    let push = plan_json(&root, &["--level", "1"]);
    assert_eq!(
        by_name(&push, "registry-image")["status"],
        "build",
        "pushes never read cache.pr"
    );
}

#[test]
fn a_failed_index_add_writes_nothing() {
    let (_tmp, root) = sample();
    let r = run(kiln(&root).args(["index", "add", "base", "--image-digest", "sha256:nothex", "-q"]));
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("sha256:nothex"), "{}", r.stderr);
    assert_eq!(ok(kiln(&root).args(["index", "ls"])), "");
    let r = run(kiln(&root).args(["index", "add", "nope", "--image-digest", "sha256:00", "-q"]));
    assert!(r.stderr.contains("no image `nope`"), "{}", r.stderr);
}

#[test]
fn closed_stdout_is_a_clean_exit() {
    let (_tmp, root) = sample();
    let mut child = kiln(&root)
        .args(["plan", "--json", "-q"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------- bad input

/// A taskgraph repository with one image `img` whose Dockerfile is `dockerfile`.
fn taskgraph_repo(dockerfile: &str, kind_extra: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    write(&root, ".taskcluster.yml", "version: 1\n");
    write(&root, "taskcluster/config.yml", "trust-domain: t\n");
    write(
        &root,
        "taskcluster/kinds/docker-image/kind.yml",
        &format!("tasks:\n  img:\n    symbol: I(img)\n{kind_extra}"),
    );
    write(&root, "taskcluster/docker/img/Dockerfile", dockerfile);
    write(&root, "shared/file.txt", "x\n");
    (tmp, root)
}

fn fails_with(root: &Path, needles: &[&str]) {
    let r = run(kiln(root).args(["plan", "--json"]));
    assert_eq!(r.code, 1, "expected failure; stdout: {}", r.stdout);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    for needle in needles {
        assert!(r.stderr.contains(needle), "`{needle}` not in: {}", r.stderr);
    }
    assert!(r.stdout.is_empty(), "no partial plan on stdout: {}", r.stdout);
}

#[test]
fn missing_image_folder() {
    let (_tmp, root) = taskgraph_repo("FROM x\n", "    definition: gone\n");
    fails_with(
        &root,
        &["image `img`", "taskcluster/docker/gone", "does not exist"],
    );
}

#[test]
fn missing_dockerfile() {
    let (_tmp, root) = taskgraph_repo("FROM x\n", "");
    std::fs::remove_file(root.join("taskcluster/docker/img/Dockerfile")).unwrap();
    fails_with(&root, &["image `img`", "no Dockerfile in taskcluster/docker/img"]);
}

#[test]
fn include_escaping_the_repository_by_component() {
    let (tmp, root) = taskgraph_repo("FROM x\n\n# %include ../repo2/secret\n", "");
    // `../repo2` starts with the string `<tmp>/repo`, which fooled taskgraph's prefix test.
    write(&tmp.path().join("repo2"), "secret", "s\n");
    fails_with(
        &root,
        &[
            "image `img`",
            "taskcluster/docker/img/Dockerfile:3",
            "escapes the repository",
        ],
    );
}

#[test]
fn include_through_a_symlink_out_of_the_repository() {
    let (tmp, root) = taskgraph_repo("FROM x\n# %include shared/out\n", "");
    write(tmp.path(), "outside/secret", "s\n");
    std::os::unix::fs::symlink(tmp.path().join("outside"), root.join("shared/out")).unwrap();
    fails_with(
        &root,
        &["taskcluster/docker/img/Dockerfile:2", "outside the repository"],
    );
}

#[test]
fn missing_include() {
    let (_tmp, root) = taskgraph_repo("FROM x\n# %include shared/nope.txt\n", "");
    fails_with(
        &root,
        &["image `img`", "Dockerfile:2", "`shared/nope.txt` does not exist"],
    );
}

#[test]
fn setuid_file() {
    let (_tmp, root) = taskgraph_repo("FROM x\n# %include shared\n", "");
    std::fs::set_permissions(
        root.join("shared/file.txt"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fails_with(&root, &["image `img`", "shared/file.txt", "setuid"]);
}

#[test]
fn broken_symlink() {
    let (_tmp, root) = taskgraph_repo("FROM x\n", "");
    std::os::unix::fs::symlink("missing-target", root.join("taskcluster/docker/img/dangling")).unwrap();
    fails_with(
        &root,
        &[
            "image `img`",
            "taskcluster/docker/img/dangling",
            "broken symlink",
            "missing-target",
        ],
    );
}

#[test]
fn fifo_in_context() {
    let (_tmp, root) = taskgraph_repo("FROM x\n", "");
    let fifo = root.join("taskcluster/docker/img/pipe");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    fails_with(&root, &["image `img`", "taskcluster/docker/img/pipe", "fifo"]);
}

#[test]
fn non_utf8_file_name() {
    use std::os::unix::ffi::OsStrExt;
    let (_tmp, root) = taskgraph_repo("FROM x\n", "");
    let name = std::ffi::OsStr::from_bytes(b"bad-\xff-name");
    std::fs::write(root.join("taskcluster/docker/img").join(name), "x").unwrap();
    fails_with(&root, &["image `img`", "not UTF-8"]);
}

#[test]
fn arg_without_value() {
    let (_tmp, root) = taskgraph_repo("FROM x\n# %ARG ARCH\n", "    args:\n      OTHER: x\n");
    fails_with(
        &root,
        &[
            "image `img`",
            "taskcluster/docker/img/Dockerfile",
            "line 2",
            "`# %ARG ARCH` has no value",
        ],
    );
}

#[test]
fn parent_cycle() {
    let (_tmp, root) = taskgraph_repo("FROM x\n", "    parent: other\n  other:\n    parent: img\n");
    write(&root, "taskcluster/docker/other/Dockerfile", "FROM x\n");
    fails_with(&root, &["parent cycle", "img -> other -> img"]);
}

#[test]
fn unknown_parent() {
    let (_tmp, root) = taskgraph_repo("FROM x\n", "    parent: ghost\n");
    fails_with(
        &root,
        &[
            "image `img`",
            "parent `ghost`",
            "taskcluster/kinds/docker-image/kind.yml",
        ],
    );
}

#[test]
fn malformed_kind_file_names_line() {
    let (_tmp, root) = taskgraph_repo("FROM x\n", "    args: [unclosed\n");
    fails_with(&root, &["taskcluster/kinds/docker-image/kind.yml", "line"]);
}

// ---------------------------------------------------------------- native mode and folder layout

fn folder_repo() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    write(
        &root,
        "images/base/Dockerfile",
        "FROM debian:bookworm-slim\n# %include lib\nCOPY topsrcdir/lib /lib\n",
    );
    write(
        &root,
        "images/app/Dockerfile",
        "FROM base:latest AS build\nRUN make\nFROM build\n",
    );
    write(&root, "images/app/.dockerignore", "*.log\n");
    write(&root, "images/app/main.c", "int main(){}\n");
    write(&root, "lib/a.txt", "a\n");
    (tmp, root)
}

#[test]
fn folder_layout_finds_parents_from_from_lines() {
    let (_tmp, root) = folder_repo();
    let images = ok(kiln(&root).args(["images", "--json"]));
    let images: Value = serde_json::from_str(&images).unwrap();
    let app = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "app")
        .unwrap();
    assert_eq!(app["parent"], "base");
    let plan = plan_json(&root, &[]);
    assert_eq!(plan[0]["name"], "base");
    assert_eq!(plan[0]["cache_type"], "kiln-images.v1");
    assert!(
        plan[0]["routes"][0]
            .as_str()
            .unwrap()
            .starts_with("kiln.cache.level-1.kiln-images.v1.base.hash.")
    );
}

#[test]
fn native_hash_ignores_modes_and_dockerignored_files_but_not_content() {
    let (_tmp, root) = folder_repo();
    let hash = |root: &Path| {
        by_name(&plan_json(root, &[]), "app")["context_hash"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let first = hash(&root);
    write(&root, "images/app/debug.log", "noise\n");
    std::fs::set_permissions(
        root.join("images/app/main.c"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    assert_eq!(
        hash(&root),
        first,
        "ignored files and non-exec mode bits do not count"
    );
    std::fs::set_permissions(
        root.join("images/app/main.c"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let exec = hash(&root);
    assert_ne!(exec, first, "the execute bit counts");
    write(&root, "images/app/main.c", "int main(){return 1;}\n");
    assert_ne!(hash(&root), exec, "content counts");
}

#[test]
fn unchanged_tree_replans_from_the_stat_cache() {
    let (_tmp, root) = folder_repo();
    // Make the files old enough to be cached (files changed within 2 s are racy and never cached).
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for rel in [
        "images/base/Dockerfile",
        "images/app/Dockerfile",
        "images/app/.dockerignore",
        "images/app/main.c",
        "lib/a.txt",
    ] {
        std::fs::File::options()
            .write(true)
            .open(root.join(rel))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let first = plan_json(&root, &[]);
    assert!(first.iter().all(|e| e["context_from_cache"] == false));
    let second = plan_json(&root, &[]);
    assert!(second.iter().all(|e| e["context_from_cache"] == true));
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a["context_hash"], b["context_hash"]);
    }
    // A content change (with a new mtime) is seen.
    write(&root, "lib/a.txt", "changed\n");
    let third = plan_json(&root, &[]);
    assert_ne!(
        by_name(&third, "base")["context_hash"],
        by_name(&first, "base")["context_hash"]
    );
}

#[test]
fn native_mode_refuses_symlinked_folders() {
    let (_tmp, root) = folder_repo();
    std::os::unix::fs::symlink("../../lib", root.join("images/app/libdir")).unwrap();
    fails_with(
        &root,
        &["image `app`", "images/app/libdir", "symlink to a folder"],
    );
}

#[test]
fn taskgraph_mode_warns_about_its_hazards() {
    let (_tmp, root) = sample();
    let r = run(kiln(&root).args(["plan"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("symlink to a folder: taskgraph leaves it out"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("image `base`: 3 files have modes other than 0644/0755 (mode 0600, 0664, 1644;"),
        "one line per image, with a count: {}",
        r.stderr
    );
    assert!(r.stderr.contains("`${ARCH}` is not substituted"), "{}", r.stderr);
}

// ---------------------------------------------------------------- kiln dockerfile

/// Issue 12 part 2: a taskgraph child Dockerfile (`FROM $DOCKER_IMAGE_PARENT` without the `ARG`, as 17 real
/// ones are) evaluates alone with `--parent-image`, as the in-tree build takes it.
#[test]
fn regression_child_dockerfile_without_the_parent_arg_evaluates_with_parent_image() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "Dockerfile", "FROM $DOCKER_IMAGE_PARENT\nRUN true\n");
    let out = ok(Command::new(cargo_bin("kiln")).current_dir(tmp.path()).args([
        "dockerfile",
        "Dockerfile",
        "--json",
        "--parent-image",
        "parent:latest",
    ]));
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["stages"][0]["base"]["reference"], "parent:latest");
}

#[test]
fn dockerfile_command_evaluates_without_a_repository() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "Dockerfile",
        "ARG V=1\nARG DOCKER_IMAGE_PARENT\nFROM alpine:$V AS b\nENV A=x\nFROM $DOCKER_IMAGE_PARENT\nCOPY --from=b /x /y\n",
    );
    let out = ok(Command::new(cargo_bin("kiln")).current_dir(tmp.path()).args([
        "dockerfile",
        "Dockerfile",
        "--json",
        "--parent-image",
        "parent:latest",
        "--build-arg",
        "V=2",
    ]));
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["stages"][0]["base"]["reference"], "alpine:2");
    assert_eq!(json["stages"][1]["base"]["reference"], "parent:latest");

    write(tmp.path(), "Bad", "FROM x\nBOGUS y\n");
    let r = run(Command::new(cargo_bin("kiln"))
        .current_dir(tmp.path())
        .args(["dockerfile", "Bad"]));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("Bad:2:1") && r.stderr.contains("BOGUS"),
        "{}",
        r.stderr
    );
}

/// Issue 11, item 9: a 40-line Dockerfile doubling a value grew `kiln dockerfile` past 7 GB; a 50 MB line
/// took 930 MB. Both fail at once, naming the line or the file, and so does the stdin form.
#[test]
fn regression_kiln_dockerfile_bounds_expansion_and_file_size() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = |file: &str, stdin: Option<&str>, message: &str| {
        let mut cmd = Command::new(cargo_bin("kiln"));
        cmd.current_dir(tmp.path()).args(["dockerfile", file]);
        if let Some(input) = stdin {
            cmd.stdin(std::fs::File::open(tmp.path().join(input)).unwrap());
        }
        let started = std::time::Instant::now();
        let r = run(&mut cmd);
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{file}");
        assert_eq!(r.code, 1, "{file}");
        assert!(r.stderr.contains(message), "{file}: {}", r.stderr);
    };
    let mut doubling = String::from("FROM scratch\nARG A=0123456789abcdef\n");
    doubling.push_str(&"ENV A=$A$A\n".repeat(40));
    write(tmp.path(), "Doubling", &doubling);
    refused(
        "Doubling",
        None,
        "Doubling:19:1: the expanded value exceeds the limit of 1048576 bytes",
    );
    write(
        tmp.path(),
        "Big",
        &format!("FROM scratch\nRUN echo {}\n", "a".repeat(50 << 20)),
    );
    let too_big = "a Dockerfile of more than 4194304 bytes is refused";
    refused("Big", None, too_big);
    refused("-", Some("Big"), too_big);
}

// ---------------------------------------------------------------- kiln.toml and the bundled example

#[test]
fn bundled_example_plans_with_kiln_toml_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let example = workspace().join("examples/shop");
    let out = ok(kiln(&example)
        .args(["plan", "--json", "-q", "--state-dir"])
        .arg(&state));
    let plan: Vec<Value> = serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    let names: Vec<&str> = plan.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["base", "runtime", "api", "worker", "worker-arm64"]);
    let worker = by_name(&plan, "worker");
    let arm = by_name(&plan, "worker-arm64");
    assert_eq!(arm["definition"], "worker");
    assert_eq!(arm["parent"], "runtime");
    assert_ne!(
        worker["context_hash"], arm["context_hash"],
        "the %ARG picks a different include"
    );
    assert!(
        arm["routes"][0]
            .as_str()
            .unwrap()
            .starts_with("example.shop.cache.level-1.kiln-images.v1.worker-arm64.hash.")
    );
    assert!(plan.iter().all(|e| e["status"] == "build"));
}

#[test]
fn kiln_toml_typos_are_errors_with_their_line() {
    let (_tmp, root) = folder_repo();
    write(&root, "kiln.toml", "[index]\nprefix = \"x\"\nlevel = 3\n");
    fails_with(&root, &["kiln.toml", "unknown field `level`", "line 3"]);
}

#[test]
fn unnormalized_include_is_kept_verbatim_in_taskgraph_mode_with_a_warning() {
    let (tmp, root) = taskgraph_repo("FROM x\n# %include shared/../shared/file.txt\n", "");
    let r = run(kiln(&root).args(["plan"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("Dockerfile:2: include path `shared/../shared/file.txt` is not normalized"),
        "{}",
        r.stderr
    );
    let out = tmp.path().join("ctx.tar");
    ok(kiln(&root).args(["context", "img", "-q", "-o"]).arg(&out));
    let list = Command::new("tar").arg("-tf").arg(&out).output().unwrap();
    let names = String::from_utf8(list.stdout).unwrap();
    assert!(
        names.lines().any(|l| l == "topsrcdir/shared/../shared/file.txt"),
        "{names}"
    );
}

/// Issue 12 part 2: in a taskgraph layout, kiln.toml tables that define images are errors, not ignored.
#[test]
fn regression_kiln_toml_image_tables_are_errors_in_a_taskgraph_layout() {
    let (_tmp, root) = taskgraph_repo("FROM x\n", "");
    write(&root, "kiln.toml", "[image.img]\nparent = \"other\"\n");
    fails_with(
        &root,
        &[
            "kiln.toml",
            "[image.img] does not apply to a taskgraph repository",
        ],
    );
    write(&root, "kiln.toml", "[images]\nroot = \"imgs\"\n");
    fails_with(&root, &["kiln.toml", "[images] root does not apply"]);
    write(&root, "kiln.toml", "[index]\nexpires = \"7d\"\n");
    let r = run(kiln(&root).args(["plan", "--json"]));
    assert_eq!(r.code, 0, "{}", r.stderr);
}
