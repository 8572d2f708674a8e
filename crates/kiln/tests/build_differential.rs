//! Differential test of `kiln build` against `buildah bud --layers` (buildah 1.28): every case of the corpus in
//! `tests/build-corpus/` (see its README.md) is built by both from the same busybox base and the same
//! context, both images go through `skopeo copy` and `umoci unpack`, and the two root filesystems (every
//! path: type, mode with setuid/setgid/sticky, uid/gid, size and content digest, symlink target, hard link
//! group; not timestamps) and config fields (Env, Cmd, Entrypoint, WorkingDir, User, Labels, ExposedPorts,
//! Volumes, StopSignal, Healthcheck, OnBuild, Shell) must be the same.
//!
//! Known, deliberate differences are allowed explicitly below with their reason: [`ALWAYS_ALLOWED`] for
//! buildah's own artefacts, and a case's `allow` list where buildah departs from BuildKit (the reference).
//! An allow-list entry that matches nothing fails the test, so it cannot go stale.
//!
//! Needs root, runc, buildah, skopeo and umoci: skips with a message, or fails when `KILN_REQUIRE_PEERS=1`.
//! `KILN_DIFF_CASES=a,b` runs only the named cases.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use assert_cmd::cargo::CommandCargoExt;
use kiln_test_support::{busybox_root, podman_env, require_root, require_tool};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// One corpus case: `build-corpus/<name>/` is the context and holds the Dockerfile.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    /// `--target`.
    target: Option<&'static str>,
    /// `--build-arg`s.
    build_args: &'static [&'static str],
    /// Build `Dockerfile.base` first, as `localhost/diff-<name>-base:1`, with each builder.
    base: bool,
    /// The Dockerfile buildah builds instead of `Dockerfile` (a feature buildah 1.28 lacks, spelled out).
    buildah_file: Option<&'static str>,
    /// Prepares the copied context (modes git cannot keep, archives).
    setup: fn(&Path),
    /// Differences allowed in this case: a path (`/x`, or `/x/**` for everything below) or
    /// `config.Field`, with the reason.
    allow: &'static [(&'static str, &'static str)],
}

const fn case(name: &'static str) -> Case {
    Case {
        name,
        target: None,
        build_args: &[],
        base: false,
        buildah_file: None,
        setup: |_| {},
        allow: &[],
    }
}

/// Differences allowed in every case.
const ALWAYS_ALLOWED: &[(&str, &str)] = &[
    (
        "/etc/hostname",
        "buildah leaves the mount point of its bind-mounted /etc/hostname in RUN layers; BuildKit and kiln do not",
    ),
    ("/etc/hosts", "buildah's RUN mount point stub, as /etc/hostname"),
    (
        "/etc/resolv.conf",
        "buildah's RUN mount point stub, as /etc/hostname",
    ),
    (
        "/run",
        "buildah's RUN leaves /run (its runtime's mount point) in the layer",
    ),
];

const BUILDAH_STRIPS_BITS: &str = "buildah 1.28 clears setuid/setgid when it copies from the context; BuildKit keeps the mode the context has (kiln too)";

fn chmod(path: &Path, mode: u32) {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const CASES: &[Case] = &[
    Case {
        setup: |ctx| {
            chmod(&ctx.join("run.sh"), 0o755);
            chmod(&ctx.join("secret"), 0o600);
        },
        ..case("copy-files")
    },
    Case {
        setup: |ctx| {
            chmod(&ctx.join("dir/sub"), 0o700);
            fs_err::create_dir(ctx.join("dir/empty-dir")).unwrap();
            chmod(&ctx.join("dir/empty-dir"), 0o750);
        },
        ..case("copy-dirs")
    },
    case("copy-wildcards"),
    case("copy-chown"),
    case("copy-chmod"),
    case("copy-from"),
    case("copy-existing"),
    case("dockerignore"),
    Case {
        setup: make_archives,
        ..case("add-archive")
    },
    Case {
        buildah_file: Some("Dockerfile.buildah"),
        ..case("heredoc")
    },
    Case {
        build_args: &["NAME=cli"],
        allow: &[(
            "config.Env order",
            "ENV of a variable the base already has: BuildKit replaces it in place (kiln too), buildah 1.28 moves it to the end",
        )],
        ..case("env-arg-paths")
    },
    case("workdir-user"),
    case("user-names"),
    case("whiteouts"),
    case("opaque"),
    Case {
        setup: |ctx| fs_err::hard_link(ctx.join("hardlinked/one"), ctx.join("hardlinked/two")).unwrap(),
        ..case("links")
    },
    Case {
        setup: |ctx| {
            for dir in [ctx.to_owned(), ctx.join("bits-src")] {
                chmod(&dir.join("suid-file"), 0o4755);
                chmod(&dir.join("sgid-dir"), 0o2775);
                chmod(&dir.join("sticky-dir"), 0o1777);
            }
            chmod(&ctx.join("bits-src/sgid-file"), 0o2755);
        },
        allow: &[
            ("/bits/suid-file", BUILDAH_STRIPS_BITS),
            ("/bits-tree/suid-file", BUILDAH_STRIPS_BITS),
            ("/bits-tree/sgid-file", BUILDAH_STRIPS_BITS),
            ("/bits-tree/sgid-dir", BUILDAH_STRIPS_BITS),
        ],
        ..case("special-bits")
    },
    case("names"),
    Case {
        target: Some("middle"),
        ..case("multistage-target")
    },
    Case {
        base: true,
        ..case("onbuild")
    },
    case("metadata"),
    Case {
        allow: &[(
            "config.Cmd",
            "a shell-form CMD uses SHELL in BuildKit (kiln too); buildah 1.28 always writes /bin/sh -c",
        )],
        ..case("shell-forms")
    },
    Case {
        base: true,
        ..case("entrypoint-reset")
    },
    Case {
        build_args: &["LATE=from-cli"],
        ..case("arg-before-from")
    },
];

/// `archive.tar` and `archive.tar.gz` for add-archive: folders, owners, modes (setuid), a symlink and a
/// hard link, as a release tarball has them.
fn make_archives(ctx: &Path) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add =
        |path: &str, kind: tar::EntryType, mode: u32, owner: u64, data: &[u8], link: Option<&str>| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_uid(owner);
            header.set_gid(owner);
            header.set_mtime(1_600_000_000);
            header.set_size(data.len() as u64);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            header.set_path(path).unwrap();
            header.set_cksum();
            builder.append(&header, data).unwrap();
        };
    add("pkg/", tar::EntryType::Directory, 0o755, 0, b"", None);
    add("pkg/bin/", tar::EntryType::Directory, 0o750, 1000, b"", None);
    add(
        "pkg/bin/tool",
        tar::EntryType::Regular,
        0o4755,
        1000,
        b"#!/bin/sh\n",
        None,
    );
    add(
        "pkg/conf",
        tar::EntryType::Regular,
        0o600,
        0,
        b"key=value\n",
        None,
    );
    add(
        "pkg/link",
        tar::EntryType::Symlink,
        0o777,
        0,
        b"",
        Some("bin/tool"),
    );
    add(
        "pkg/hard",
        tar::EntryType::Link,
        0o4755,
        1000,
        b"",
        Some("pkg/bin/tool"),
    );
    add(
        "top-level-file",
        tar::EntryType::Regular,
        0o644,
        0,
        b"top\n",
        None,
    );
    let bytes = builder.into_inner().unwrap();
    fs_err::write(ctx.join("archive.tar"), &bytes).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &bytes).unwrap();
    fs_err::write(ctx.join("archive.tar.gz"), gz.finish().unwrap()).unwrap();
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/build-corpus")
}

/// Runs `cmd`; its stdout, or an error with its command line and output.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The temp folder with kiln's store and buildah's storage; unmounts what buildah leaves mounted below it
/// before the folder is removed.
struct Env {
    tmp: tempfile::TempDir,
    store: PathBuf,
    containers: Vec<(std::ffi::OsString, std::ffi::OsString)>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = run(self.buildah().args(["rm", "--all"]));
        kiln_test_support::unmount_below(self.tmp.path());
    }
}

impl Env {
    fn new() -> Option<Env> {
        if !require_root()
            || !["runc", "buildah", "skopeo", "umoci"]
                .into_iter()
                .all(require_tool)
        {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = busybox_root(tmp.path())?;
        // buildah reads podman's storage and containers configuration: written once here.
        let mut probe = Command::new("buildah");
        podman_env(tmp.path(), &mut probe);
        let containers = probe
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
            .collect();
        let env = Env {
            store: tmp.path().join("store"),
            containers,
            tmp,
        };
        let archive = env.path("busybox.tar");
        run(env
            .kiln()
            .args(["image", "import"])
            .arg(&root)
            .args(["-t", "busybox:test"]))
        .unwrap();
        run(env
            .kiln()
            .args(["image", "export", "busybox:test", "-o"])
            .arg(&archive))
        .unwrap();
        // The same layer and config in buildah's storage, named as the corpus' FROM lines name it.
        run(env
            .buildah()
            .arg("pull")
            .arg(format!("docker-archive:{}", archive.display())))
        .unwrap();
        let images = run(env.buildah().args(["images", "--format", "{{.Name}}:{{.Tag}}"])).unwrap();
        assert!(images.contains("busybox:test"), "buildah images: {images}");
        Some(env)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn kiln(&self) -> Command {
        let mut cmd = Command::cargo_bin("kiln").unwrap();
        cmd.arg("--store")
            .arg(&self.store)
            .current_dir(self.tmp.path())
            .env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    fn buildah(&self) -> Command {
        let mut cmd = Command::new("buildah");
        cmd.envs(self.containers.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// A build of one Dockerfile by one builder.
struct BuildArgs<'a> {
    file: &'a Path,
    context: &'a Path,
    tag: &'a str,
    target: Option<&'a str>,
    build_args: &'a [&'a str],
}

fn kiln_build(env: &Env, b: &BuildArgs<'_>) -> Result<(), String> {
    let mut cmd = env.kiln();
    cmd.arg("build")
        .arg("-f")
        .arg(b.file)
        .arg("--context")
        .arg(b.context);
    cmd.args(["-t", b.tag]);
    if let Some(target) = b.target {
        cmd.args(["--target", target]);
    }
    for arg in b.build_args {
        cmd.args(["--build-arg", arg]);
    }
    run(&mut cmd).map(drop)
}

fn buildah_build(env: &Env, b: &BuildArgs<'_>) -> Result<(), String> {
    let mut cmd = env.buildah();
    // docker format: the OCI config has no Healthcheck, OnBuild or Shell.
    cmd.args(["bud", "--layers", "--format", "docker", "-f"])
        .arg(b.file);
    cmd.args(["-t", b.tag]);
    if let Some(target) = b.target {
        cmd.args(["--target", target]);
    }
    for arg in b.build_args {
        cmd.args(["--build-arg", arg]);
    }
    run(cmd.arg(b.context)).map(drop)
}

/// What is compared of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Size and content digest of a file, target of a symlink.
    content: String,
    /// The other paths of a hard link group.
    links: Vec<String>,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:04o} {}:{}", self.kind, self.mode, self.uid, self.gid)?;
        if !self.content.is_empty() {
            write!(f, " {}", self.content)?;
        }
        if !self.links.is_empty() {
            write!(f, " hard links: {}", self.links.join(", "))?;
        }
        Ok(())
    }
}

/// Every path below `root` (`/` itself included) with what is compared of it.
fn walk(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let meta = fs_err::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let (kind, content) = if ft.is_dir() {
            let mut names: Vec<String> = fs_err::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            stack.extend(
                names
                    .into_iter()
                    .map(|n| if rel.is_empty() { n } else { format!("{rel}/{n}") }),
            );
            ('d', String::new())
        } else if ft.is_symlink() {
            ('l', format!("-> {}", fs_err::read_link(&path).unwrap().display()))
        } else if ft.is_file() {
            let digest = Sha256::digest(fs_err::read(&path).unwrap());
            if meta.nlink() > 1 {
                inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_default()
                    .push(format!("/{rel}"));
            }
            (
                'f',
                format!("{}B sha256:{}", meta.len(), &hex::encode(digest)[..12]),
            )
        } else {
            ('?', format!("rdev {}", meta.rdev()))
        };
        out.insert(
            format!("/{rel}"),
            Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                content,
                links: Vec::new(),
            },
        );
    }
    for group in inodes.values().filter(|g| g.len() > 1) {
        for member in group {
            let mut others: Vec<String> = group.iter().filter(|o| *o != member).cloned().collect();
            others.sort();
            out.get_mut(member).unwrap().links = others;
        }
    }
    out
}

/// The root filesystem (unpacked by umoci) and config of the image in the docker-archive `archive`.
fn unpack(archive: &Path, work: &Path) -> Result<(BTreeMap<String, Entry>, Value), String> {
    fs_err::create_dir_all(work).unwrap();
    let source = format!("docker-archive:{}", archive.display());
    let config = run(Command::new("skopeo").args(["inspect", "--raw", "--config", &source]))?;
    let config: Value = serde_json::from_str(&config).map_err(|e| format!("config of {source}: {e}"))?;
    let layout = work.join("layout");
    run(Command::new("skopeo")
        .arg("copy")
        .arg(&source)
        .arg(format!("oci:{}:x", layout.display())))?;
    let bundle = work.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:x", layout.display()))
        .arg(&bundle))?;
    Ok((walk(&bundle.join("rootfs")), config))
}

const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// A config field as compared: absent, `null` and empty (`""`, `[]`, `{}`, which buildah writes for unset
/// fields) are the same; buildah's own `io.buildah.version` label is left out.
fn field(config: &Value, name: &str) -> Value {
    let mut value = config["config"].get(name).cloned().unwrap_or(Value::Null);
    if name == "Labels"
        && let Some(labels) = value.as_object_mut()
    {
        labels.remove("io.buildah.version");
    }
    let empty = match &value {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if empty { Value::Null } else { value }
}

/// Differences between kiln's image and buildah's, one readable line each, keyed by path or
/// `config.Field`.
fn differences(
    kiln: &(BTreeMap<String, Entry>, Value),
    buildah: &(BTreeMap<String, Entry>, Value),
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let paths: std::collections::BTreeSet<&String> = kiln.0.keys().chain(buildah.0.keys()).collect();
    for path in paths {
        let line = match (kiln.0.get(path), buildah.0.get(path)) {
            (Some(k), Some(b)) if k == b => continue,
            (Some(k), Some(b)) => format!("~ {path}\n      kiln:    {k}\n      buildah: {b}"),
            (Some(k), None) => format!("+ {path} only in kiln: {k}"),
            (None, Some(b)) => format!("- {path} only in buildah: {b}"),
            (None, None) => continue,
        };
        out.push((path.clone(), line));
    }
    for name in CONFIG_FIELDS {
        let (k, b) = (field(&kiln.1, name), field(&buildah.1, name));
        if k != b {
            // Reordered but otherwise equal lists get their own key, so allowing a reordering
            // does not allow other differences.
            let sorted = |v: &Value| {
                let mut items: Vec<String> = v.as_array()?.iter().map(Value::to_string).collect();
                items.sort();
                Some(items)
            };
            let key = match (sorted(&k), sorted(&b)) {
                (Some(x), Some(y)) if x == y => format!("config.{name} order"),
                _ => format!("config.{name}"),
            };
            out.push((
                key.clone(),
                format!("~ {key}\n      kiln:    {k}\n      buildah: {b}"),
            ));
        }
    }
    out
}

fn allowed(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix("/**") {
        Some(dir) => key == dir || key.starts_with(&format!("{dir}/")),
        None => key == pattern,
    }
}

/// The verdict on one case.
struct Outcome {
    /// Problems that fail the test.
    failures: Vec<String>,
    /// What is printed in every case (allowed differences, expected ones).
    notes: Vec<String>,
    seconds: f64,
}

fn check_case(env: &Env, case: &Case) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        failures: Vec::new(),
        notes: Vec::new(),
        seconds: 0.0,
    };
    if let Err(e) = compare_case(env, case, &mut outcome) {
        outcome.failures.push(e);
    }
    outcome.seconds = started.elapsed().as_secs_f64();
    outcome
}

fn compare_case(env: &Env, case: &Case, outcome: &mut Outcome) -> Result<(), String> {
    let work = env.path(&format!("cases/{}", case.name));
    let context = work.join("context");
    copy_context(&corpus().join(case.name), &context);
    (case.setup)(&context);
    if case.base {
        let tag = format!("localhost/diff-{}-base:1", case.name);
        let b = BuildArgs {
            file: &context.join("Dockerfile.base"),
            context: &context,
            tag: &tag,
            target: None,
            build_args: &[],
        };
        buildah_build(env, &b)?;
        kiln_build(env, &b).map_err(|e| format!("kiln could not build Dockerfile.base: {e}"))?;
    }
    let tag = format!("localhost/diff-{}:1", case.name);
    let b = BuildArgs {
        file: &context.join(case.buildah_file.unwrap_or("Dockerfile")),
        context: &context,
        tag: &tag,
        target: case.target,
        build_args: case.build_args,
    };
    buildah_build(env, &b)?;
    let buildah_tar = work.join("buildah.tar");
    run(env
        .buildah()
        .arg("push")
        .arg(&tag)
        .arg(format!("docker-archive:{}:{tag}", buildah_tar.display())))?;
    let buildah = unpack(&buildah_tar, &work.join("buildah"))?;
    let kiln = match kiln_build(
        env,
        &BuildArgs {
            file: &context.join("Dockerfile"),
            ..b
        },
    ) {
        Ok(()) => {
            let kiln_tar = work.join("kiln.tar");
            run(env.kiln().args(["image", "export", &tag, "-o"]).arg(&kiln_tar))?;
            unpack(&kiln_tar, &work.join("kiln"))?
        }
        Err(e) => {
            outcome.failures.push(format!("kiln build failed: {e}"));
            return Ok(());
        }
    };
    let mut unexplained = Vec::new();
    let mut used = vec![false; case.allow.len()];
    for (key, line) in differences(&kiln, &buildah) {
        if let Some((_, why)) = ALWAYS_ALLOWED.iter().find(|(p, _)| allowed(p, &key)) {
            outcome.notes.push(format!("allowed ({why}):\n    {line}"));
        } else if let Some(i) = case.allow.iter().position(|(p, _)| allowed(p, &key)) {
            used[i] = true;
            outcome
                .notes
                .push(format!("allowed ({}):\n    {line}", case.allow[i].1));
        } else {
            unexplained.push(line);
        }
    }
    for (i, (pattern, _)) in case.allow.iter().enumerate() {
        if !used[i] {
            outcome.failures.push(format!(
                "allow-list entry `{pattern}` matched no difference: remove it"
            ));
        }
    }
    outcome.failures.extend(unexplained);
    Ok(())
}

/// Copies the corpus folder `from` to `to` with modes normalized (folders 0755, files 0644 or 0755 when
/// executable), whatever umask the checkout had.
fn copy_context(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    chmod(to, 0o755);
    for item in fs_err::read_dir(from).unwrap() {
        let item = item.unwrap();
        let (source, target) = (item.path(), to.join(item.file_name()));
        let meta = fs_err::symlink_metadata(&source).unwrap();
        if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(&source).unwrap(), &target).unwrap();
        } else if meta.is_dir() {
            copy_context(&source, &target);
        } else {
            fs_err::copy(&source, &target).unwrap();
            chmod(&target, if meta.mode() & 0o100 != 0 { 0o755 } else { 0o644 });
        }
    }
}

#[test]
fn kiln_build_matches_buildah_over_the_corpus() {
    let Some(env) = Env::new() else { return };
    let only: Option<Vec<String>> = std::env::var("KILN_DIFF_CASES")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|c| only.as_ref().is_none_or(|o| o.iter().any(|n| n == c.name)))
        .collect();
    // Every corpus folder is a case and every case has a folder.
    let mut folders: Vec<String> = fs_err::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut names: Vec<String> = CASES.iter().map(|c| c.name.to_owned()).collect();
    names.sort();
    assert_eq!(folders, names, "build-corpus folders and CASES differ");

    let next = AtomicUsize::new(0);
    let results = Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(case) = cases.get(i) else { break };
                    let outcome = check_case(&env, case);
                    results.lock().unwrap().insert(i, outcome);
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    let mut failed = Vec::new();
    for (i, outcome) in &results {
        let case = cases[*i];
        let verdict = if outcome.failures.is_empty() {
            "ok"
        } else {
            "DIFFERS"
        };
        eprintln!("== {} ({:.1}s): {verdict}", case.name, outcome.seconds);
        for note in &outcome.notes {
            eprintln!("  {note}");
        }
        for failure in &outcome.failures {
            eprintln!("  {failure}");
        }
        if !outcome.failures.is_empty() {
            failed.push(case.name);
        }
    }
    assert!(
        failed.is_empty(),
        "kiln differs from buildah in: {failed:?} (details above)"
    );
}
