//! `kiln build`, end to end with the real runc, overlayfs, podman, skopeo and umoci: a busybox-static
//! base image goes in, images come out that those tools load and run.
//!
//! Needs root (overlay mounts, runc). Tests skip with a message when root or a tool is missing, or fail
//! when `KILN_REQUIRE_PEERS=1`.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use kiln_test_support::{busybox_root, require_root, require_tool};
use serde_json::Value;

struct Fixture {
    tmp: tempfile::TempDir,
    store: PathBuf,
}

impl Fixture {
    /// A temp folder with a store holding the busybox base as `busybox:test`; `None` when skipped.
    fn new() -> Option<Fixture> {
        // slirp4netns: RUN steps get a network of their own through it.
        if !require_root() || !require_tool("runc") || !require_tool("slirp4netns") {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = busybox_root(tmp.path())?;
        let store = tmp.path().join("store");
        let f = Fixture { tmp, store };
        f.ok(&["image", "import", root.to_str().unwrap(), "-t", "busybox:test"]);
        Some(f)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, text).unwrap();
        path
    }

    /// kiln on the fixture's store, in its temp folder.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::cargo_bin("kiln").unwrap();
        command
            .arg("--store")
            .arg(&self.store)
            .args(args)
            .current_dir(self.tmp.path())
            .env_remove("SOURCE_DATE_EPOCH");
        command
    }

    fn kiln(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Starts kiln in the background (stdout discarded, stderr piped).
    fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(!out.status.success(), "kiln {args:?} succeeded unexpectedly");
        String::from_utf8(out.stderr).unwrap()
    }

    /// Builds `dockerfile` with context folder `ctx` (relative to the temp folder) as `tag`; returns the
    /// JSON summary.
    fn build(&self, dockerfile: &str, ctx: &str, tag: &str) -> Value {
        let file = self.write(&format!("{ctx}/Dockerfile"), dockerfile);
        let out = self.ok(&[
            "build",
            "-f",
            file.to_str().unwrap(),
            "--context",
            self.path(ctx).to_str().unwrap(),
            "-t",
            tag,
            "--json",
        ]);
        serde_json::from_str::<Value>(&out).unwrap()[0].clone()
    }

    /// The image's root filesystem as umoci unpacks it (an independent reader of kiln's layers). umoci
    /// 0.4 cannot read zstd layers, so the image goes the way docs/peers.md shows: docker-archive, then
    /// `skopeo copy` to an OCI layout, then `umoci unpack`.
    fn unpack(&self, name: &str) -> Option<PathBuf> {
        if !require_tool("umoci") || !require_tool("skopeo") {
            return None;
        }
        let slug = name.replace([':', '/'], "-");
        let archive = self.path(&format!("{slug}.tar"));
        self.ok(&["image", "export", name, "-o", archive.to_str().unwrap()]);
        let layout = self.path(&format!("layout-{slug}"));
        let out = Command::new("skopeo")
            .arg("copy")
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("oci:{}:x", layout.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bundle = self.path(&format!("bundle-{slug}"));
        let out = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:x", layout.display()))
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "umoci unpack: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(bundle.join("rootfs"))
    }
}

fn digest(summary: &Value) -> String {
    summary["manifest_digest"].as_str().unwrap().to_owned()
}

#[test]
fn builds_copy_run_and_metadata_and_podman_runs_the_result() {
    let Some(f) = Fixture::new() else { return };
    f.write("app/hello.txt", "hello from the context\n");
    f.write("app/sub/data.txt", "data\n");
    let summary = f.build(
        "FROM busybox:test\n\
         ENV GREETING=hi\n\
         COPY hello.txt /srv/\n\
         COPY sub /srv/sub\n\
         RUN echo \"$GREETING $(cat /srv/hello.txt)\" > /srv/run.txt && echo app:x:1234:1234::/srv:/bin/sh >> /etc/passwd\n\
         USER app\n\
         WORKDIR /srv/work\n\
         RUN id -u > /tmp/uid && pwd > /tmp/pwd\n\
         CMD [\"cat\", \"/srv/run.txt\"]\n",
        "app",
        "localhost/app:1",
    );
    assert_eq!(summary["status"], "built");
    let rootfs = f.unpack("localhost/app:1");
    if let Some(rootfs) = &rootfs {
        assert_eq!(
            fs_err::read_to_string(rootfs.join("srv/run.txt")).unwrap(),
            "hi hello from the context\n"
        );
        assert_eq!(
            fs_err::read_to_string(rootfs.join("srv/sub/data.txt")).unwrap(),
            "data\n"
        );
        assert_eq!(fs_err::read_to_string(rootfs.join("tmp/uid")).unwrap(), "1234\n");
        assert_eq!(
            fs_err::read_to_string(rootfs.join("tmp/pwd")).unwrap(),
            "/srv/work\n"
        );
        assert!(rootfs.join("srv/work").is_dir());
        // runc's mount points for /etc/resolv.conf and friends are not left in the image.
        assert!(
            !rootfs.join("etc/resolv.conf").exists(),
            "mount stubs leaked into the layer"
        );
    }
    let inspect: Value = serde_json::from_str(&f.ok(&["image", "inspect", "localhost/app:1"])).unwrap();
    let config = &inspect["config"]["config"];
    assert_eq!(config["User"], "app");
    assert_eq!(config["WorkingDir"], "/srv/work");
    assert_eq!(config["Cmd"], serde_json::json!(["cat", "/srv/run.txt"]));
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hi")
    );

    // podman loads the image.tar.zst artifact and runs the CMD.
    let archive = f.path("app.tar.zst");
    f.ok(&[
        "image",
        "export",
        "localhost/app:1",
        "-o",
        archive.to_str().unwrap(),
    ]);
    if require_tool("podman") {
        let podman = Podman::new(f.tmp.path());
        let loaded = podman.run(&["load", "-i", archive.to_str().unwrap()]);
        assert!(loaded.contains("localhost/app:1"), "{loaded}");
        let printed = podman.run(&["run", "--rm", "--network", "none", "localhost/app:1"]);
        assert_eq!(printed, "hi hello from the context\n");
    }
    if require_tool("skopeo") {
        let plain = f.path("plain.tar");
        f.ok(&[
            "image",
            "export",
            "localhost/app:1",
            "-o",
            plain.to_str().unwrap(),
        ]);
        let out = Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--config",
                &format!("docker-archive:{}", plain.display()),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let config: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(config["config"]["User"], "app");
    }
}

/// podman with its storage in the test's temp folder (docs/peers.md settings); unmounts what podman leaves
/// mounted there when dropped.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new(dir: &Path) -> Podman {
        Podman { dir: dir.to_owned() }
    }

    fn run(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("podman");
        kiln_test_support::podman_env(&self.dir, &mut cmd);
        kiln_test_support::ok(cmd.args(args).output().unwrap())
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        kiln_test_support::unmount_below(&self.dir);
    }
}

#[test]
fn a_rebuild_runs_nothing_and_a_clean_rebuild_gives_the_same_digest() {
    let Some(f) = Fixture::new() else { return };
    f.write("ctx/a.txt", "a\n");
    let dockerfile = "FROM busybox:test\nCOPY a.txt /a.txt\nRUN date > /built-at && touch /marker\n";
    let first = f.build(dockerfile, "ctx", "localhost/r:1");
    assert_eq!(first["steps_run"], 2);
    let second = f.build(dockerfile, "ctx", "localhost/r:1");
    assert_eq!(second["steps_run"], 0, "nothing changed: {second}");
    assert_eq!(second["steps_cached"], 2);
    assert_eq!(digest(&first), digest(&second));
    // A changed file re-runs its COPY and everything after it.
    f.write("ctx/a.txt", "b\n");
    let third = f.build(dockerfile, "ctx", "localhost/r:1");
    assert_eq!(third["steps_run"], 2);
    f.write("ctx/a.txt", "a\n");
    // --no-cache runs everything again and, the RUN's timestamps being clamped, gets the same digest
    // except for what the command itself writes (`date`): so compare a build without it.
    // The last RUN reads the times of the step before: clamped (SOURCE_DATE_EPOCH 0) as they would be
    // unpacked from the cached layer, not the time the file was written.
    let stable = "FROM busybox:test\nCOPY a.txt /a.txt\nRUN touch /marker && mkdir -p /d && echo x > /d/x\n\
                  RUN stat -c %Y /d/x /d > /times\n";
    let one = f.build(stable, "ctx", "localhost/s:1");
    let out = f.ok(&[
        "build",
        "--no-cache",
        "-f",
        f.path("ctx/Dockerfile").to_str().unwrap(),
        "--context",
        f.path("ctx").to_str().unwrap(),
        "-t",
        "localhost/s:2",
        "--json",
    ]);
    let two: Value = serde_json::from_str::<Value>(&out).unwrap()[0].clone();
    assert_eq!(two["steps_run"], 3);
    if let Some(rootfs) = f.unpack("localhost/s:2") {
        assert_eq!(fs_err::read_to_string(rootfs.join("times")).unwrap(), "0\n0\n");
    }
    assert_eq!(
        digest(&one),
        digest(&two),
        "two clean builds of the same inputs differ"
    );
}

#[test]
fn multi_stage_whiteouts_and_onbuild() {
    let Some(f) = Fixture::new() else { return };
    f.write("ctx/keep.txt", "keep\n");
    f.build(
        "FROM busybox:test\n\
         RUN mkdir -p /opt/data && echo one > /opt/data/one && echo two > /opt/data/two\n\
         ONBUILD RUN echo triggered > /onbuild.txt\n",
        "parent",
        "localhost/parent:1",
    );
    f.build(
        "FROM busybox:test AS builder\n\
         RUN mkdir /out && echo built > /out/artifact\n\
         FROM localhost/parent:1\n\
         COPY --from=builder /out/artifact /artifact\n\
         RUN rm /opt/data/one && rm -r /etc/group\n\
         COPY keep.txt /\n",
        "ctx",
        "localhost/child:1",
    );
    let Some(rootfs) = f.unpack("localhost/child:1") else {
        return;
    };
    assert_eq!(
        fs_err::read_to_string(rootfs.join("artifact")).unwrap(),
        "built\n"
    );
    assert_eq!(
        fs_err::read_to_string(rootfs.join("onbuild.txt")).unwrap(),
        "triggered\n"
    );
    assert!(
        !rootfs.join("opt/data/one").exists(),
        "the whiteout did not remove the lower file"
    );
    assert!(rootfs.join("opt/data/two").exists());
    assert!(!rootfs.join("etc/group").exists());
    assert_eq!(fs_err::read_to_string(rootfs.join("keep.txt")).unwrap(), "keep\n");

    // docker loads the image.tar.zst artifact (Docker 20.10 reads it once decompressed; newer ones read
    // it as is) with the same image ID, and runs it with the whiteouts applied.
    let archive = f.path("child.tar.zst");
    f.ok(&[
        "image",
        "export",
        "localhost/child:1",
        "-o",
        archive.to_str().unwrap(),
    ]);
    let Some(dockerd) = kiln_test_support::Dockerd::start(&f.path("dockerd")) else {
        return;
    };
    let mut load = dockerd.command();
    load.args(["load", "-q"]).stdin(std::process::Stdio::piped());
    let mut child = load
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    zstd::stream::copy_decode(fs_err::File::open(&archive).unwrap(), &mut stdin).unwrap();
    drop(stdin);
    let loaded = kiln_test_support::ok(child.wait_with_output().unwrap());
    assert!(loaded.contains("localhost/child:1"), "{loaded}");
    let inspect: Value = serde_json::from_str(&f.ok(&["image", "inspect", "localhost/child:1"])).unwrap();
    let id = kiln_test_support::run(dockerd.command().args([
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "localhost/child:1",
    ]));
    assert_eq!(
        id.trim(),
        inspect["manifest"]["config"]["digest"].as_str().unwrap()
    );
    // Through Dockerd::run: under heavy load this once failed with `exec: "sh": executable file not found`
    // (not understood yet); the panic then shows dockerd's log.
    let listing = dockerd.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "localhost/child:1",
        "sh",
        "-c",
        "cat /artifact /onbuild.txt /keep.txt; ls /opt/data; test ! -e /etc/group && echo no-group",
    ]);
    assert_eq!(listing, "built\ntriggered\nkeep\ntwo\nno-group\n");
}

#[test]
fn copy_through_an_image_symlink_stays_inside_the_image() {
    let Some(f) = Fixture::new() else { return };
    let host_dir = f.path("host-target");
    fs_err::create_dir_all(&host_dir).unwrap();
    f.write("ctx/payload", "payload\n");
    // The image has /escape pointing at an absolute path that exists on the host.
    let dockerfile = format!(
        "FROM busybox:test\nRUN mkdir -p {0} && ln -s {0} /escape && ln -s ../../../../../.. /up\nCOPY payload /escape/payload\nCOPY payload /up/tmp/up-payload\n",
        host_dir.display()
    );
    f.build(&dockerfile, "ctx", "localhost/escape:1");
    assert!(
        !host_dir.join("payload").exists(),
        "COPY wrote through the image's symlink onto the host"
    );
    assert!(
        !Path::new("/tmp/up-payload").exists(),
        "COPY climbed out of the image root"
    );
    if let Some(rootfs) = f.unpack("localhost/escape:1") {
        let inside = rootfs.join(host_dir.strip_prefix("/").unwrap()).join("payload");
        assert_eq!(fs_err::read_to_string(inside).unwrap(), "payload\n");
        assert!(rootfs.join("tmp/up-payload").exists());
    }
}

#[test]
fn a_failing_run_names_its_line_and_exit_code_and_tags_nothing() {
    let Some(f) = Fixture::new() else { return };
    let file = f.write(
        "bad/Dockerfile",
        "FROM busybox:test\nRUN echo output-before-failure && exit 3\n",
    );
    let err = f.fails(&["build", "-f", file.to_str().unwrap(), "-t", "localhost/bad:1"]);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(
        err.contains("output-before-failure"),
        "RUN output is streamed: {err}"
    );
    let missing = f.fails(&["image", "inspect", "localhost/bad:1"]);
    assert!(missing.contains("localhost/bad:1"), "{missing}");
    let file = f.write("nobase/Dockerfile", "FROM nowhere/none:1\nRUN true\n");
    let err = f.fails(&["build", "-f", file.to_str().unwrap(), "-t", "localhost/x:1"]);
    assert!(
        err.contains("Dockerfile:1") && err.contains("nowhere/none:1") && err.contains("kiln image import"),
        "{err}"
    );
    let file = f.write(
        "insecure/Dockerfile",
        "FROM busybox:test\nRUN --security=insecure true\n",
    );
    let err = f.fails(&["build", "-f", file.to_str().unwrap(), "-t", "localhost/x:1"]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("--allow security.insecure"),
        "{err}"
    );
    f.ok(&[
        "build",
        "-f",
        file.to_str().unwrap(),
        "-t",
        "localhost/x:1",
        "--allow",
        "security.insecure",
    ]);
    let err = f.fails(&["build", "-f", file.to_str().unwrap(), "-t", "localhost/x:1"]);
    assert!(
        err.contains("--allow security.insecure"),
        "a cached step is no way around the entitlement: {err}"
    );
}

/// Issue 11, item 6: a Dockerfile reached a `kiln serve` listening only on the host's 127.0.0.1 and
/// pushed to it. RUN has a network of its own: outbound works (to a non-loopback address of the
/// host's), the host's loopback answers neither as 127.0.0.1 nor through slirp's 10.0.2.2 and
/// 10.0.2.3, `--network=none` has loopback only, and `RUN --network=host` needs `--allow network.host`
/// (or `--network host`) on the command line, also when the step is cached.
#[test]
fn regression_run_cannot_reach_a_service_on_the_host_s_loopback() {
    let Some(f) = Fixture::new() else { return };
    let host = kiln_test_support::host_address().expect("a default route to a non-loopback address");
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    loopback.set_nonblocking(true).unwrap();
    let port = loopback.local_addr().unwrap().port();
    let outside = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let outside_port = outside.local_addr().unwrap().port();
    let file = f.write(
        "net/Dockerfile",
        &format!(
            "FROM busybox:test\n\
             RUN for a in 127.0.0.1 10.0.2.2 10.0.2.3; do \
                 if nc -w 2 $a {port} -e /bin/true; then echo reached the host loopback as $a; exit 1; fi; done\n\
             RUN nc -w 5 {host} {outside_port} -e /bin/true && cat /etc/resolv.conf > /resolv-seen.txt\n\
             RUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /net.txt\n"
        ),
    );
    f.ok(&["build", "-f", file.to_str().unwrap(), "-t", "localhost/net:1"]);
    assert!(
        loopback.accept().is_err(),
        "nothing reached the loopback listener"
    );
    if let Some(rootfs) = f.unpack("localhost/net:1") {
        let seen = fs_err::read_to_string(rootfs.join("resolv-seen.txt")).unwrap();
        assert!(seen.starts_with("nameserver 10.0.2.3\n"), "{seen}");
        assert_eq!(
            fs_err::read_to_string(rootfs.join("net.txt")).unwrap(),
            "lo\n",
            "--network=none has only loopback"
        );
        assert!(
            !rootfs.join("etc/resolv.conf").exists() && !rootfs.join("etc/hosts").exists(),
            "the generated resolv.conf and hosts stay out of the layer"
        );
    }

    let file = f.write(
        "nethost/Dockerfile",
        &format!("FROM busybox:test\nRUN --network=host nc -w 2 127.0.0.1 {port} -e /bin/true\n"),
    );
    let path = file.to_str().unwrap();
    let build = |extra: &[&'static str]| {
        let mut args = vec!["build", "-f", path, "-t", "localhost/nethost:1"];
        args.extend_from_slice(extra);
        args
    };
    let err = f.fails(&build(&[]));
    assert!(
        err.contains("Dockerfile:2") && err.contains("--allow network.host"),
        "{err}"
    );
    f.ok(&build(&["--allow", "network.host"]));
    assert!(
        loopback.accept().is_ok(),
        "with the entitlement, RUN --network=host reaches the host's loopback"
    );
    let err = f.fails(&build(&[]));
    assert!(
        err.contains("--allow network.host"),
        "a cached step is no way around the entitlement: {err}"
    );
    f.ok(&build(&["--network", "host", "--no-cache"]));
}

#[test]
fn builds_the_in_tree_example_and_the_plan_turns_to_cached() {
    let Some(f) = Fixture::new() else { return };
    f.ok(&[
        "image",
        "export",
        "busybox:test",
        "-o",
        f.path("bb.tar").to_str().unwrap(),
    ]);
    let repo = f.path("repo");
    let copy = Command::new("cp")
        .arg("-r")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop"))
        .arg(&repo)
        .status()
        .unwrap();
    assert!(copy.success());
    let _ = fs_err::remove_dir_all(repo.join(".kiln"));
    let state = f.path("state");
    let kiln = |args: &[&str]| {
        let mut all = vec![
            "-C",
            repo.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        all.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| f.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run(kiln(&[
        "image",
        "import",
        f.path("bb.tar").to_str().unwrap(),
        "-t",
        "busybox:example",
    ]));
    let built: Value = serde_json::from_str(&run(kiln(&["build", "--all", "--json"]))).unwrap();
    let names: Vec<&str> = built
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["image"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["base", "runtime", "api", "worker", "worker-arm64"]);
    assert!(built.as_array().unwrap().iter().all(|s| s["status"] == "built"));
    let artifact = state.join("artifacts/api/image.tar.zst");
    assert!(artifact.is_file());
    let plan: Value = serde_json::from_str(&run(kiln(&["plan", "--json"]))).unwrap();
    assert!(
        plan.as_array().unwrap().iter().all(|e| e["status"] == "cached"),
        "{plan}"
    );
    let again: Value = serde_json::from_str(&run(kiln(&["build", "--all", "--json"]))).unwrap();
    assert!(
        again.as_array().unwrap().iter().all(|s| s["status"] == "cached"),
        "{again}"
    );
    if let Some(rootfs) = f.unpack(&format!("kiln/api:{}", plan[2]["cache_digest"].as_str().unwrap())) {
        assert_eq!(
            fs_err::read_to_string(rootfs.join("etc/shop/release")).unwrap(),
            "shop base 1\n"
        );
        assert!(rootfs.join("srv/api/app.sh").is_file());
        assert!(rootfs.join("srv/bin/shop-version").is_file());
    }
}

#[test]
fn a_run_that_changes_nothing_adds_no_layer() {
    let Some(f) = Fixture::new() else { return };
    f.build(
        "FROM busybox:test\nRUN true\nRUN cat /etc/passwd > /dev/null\n",
        "noop",
        "localhost/noop:1",
    );
    let inspect: Value = serde_json::from_str(&f.ok(&["image", "inspect", "localhost/noop:1"])).unwrap();
    assert_eq!(
        inspect["manifest"]["layers"].as_array().unwrap().len(),
        1,
        "only the base layer: {inspect}"
    );
    let history = inspect["config"]["history"].as_array().unwrap();
    assert!(
        history.iter().rev().take(2).all(|h| h["empty_layer"] == true),
        "{history:?}"
    );
}

#[test]
fn ctrl_c_stops_a_running_step_and_leaves_no_container_or_mount() {
    let Some(f) = Fixture::new() else { return };
    let file = f.write("slow/Dockerfile", "FROM busybox:test\nRUN sleep 60\n");
    let child = f.spawn(&["build", "-f", file.to_str().unwrap(), "-t", "localhost/slow:1"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let started = std::time::Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        started.elapsed().as_secs() < 15,
        "took {:?} to stop",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("interrupted") || stderr.contains("cancelled"),
        "{stderr}"
    );
    let mounts = fs_err::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(f.store.to_str().unwrap()),
        "an overlay stayed mounted: {mounts}"
    );
    assert!(
        f.fails(&["image", "inspect", "localhost/slow:1"])
            .contains("localhost/slow:1")
    );
}

#[test]
fn add_extracts_local_archives_inside_the_destination_only() {
    let Some(f) = Fixture::new() else { return };
    f.write("add/src/dir/a.txt", "a\n");
    f.write("add/plain.txt", "plain\n");
    let tar = |args: &[&str]| {
        let status = Command::new("tar")
            .current_dir(f.path("add"))
            .args(args)
            .status()
            .unwrap();
        assert!(status.success());
    };
    tar(&["-czf", "files.tar.gz", "-C", "src", "dir"]);
    // A hostile archive: a `../` name and a symlink followed by a file through it.
    let mut hostile = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    let name = b"../../../../tmp/kiln-add-escape";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_cksum();
    hostile.append(&header, &b"evil"[..]).unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    link.set_path("hop").unwrap();
    link.set_link_name("/tmp").unwrap();
    link.set_cksum();
    hostile.append(&link, std::io::empty()).unwrap();
    let mut through = tar::Header::new_gnu();
    through.set_size(4);
    through.set_mode(0o644);
    through.set_path("hop/kiln-add-through").unwrap();
    through.set_cksum();
    hostile.append(&through, &b"evil"[..]).unwrap();
    fs_err::write(f.path("add/hostile.tar"), hostile.into_inner().unwrap()).unwrap();
    let _ = fs_err::remove_file("/tmp/kiln-add-escape");
    let _ = fs_err::remove_file("/tmp/kiln-add-through");
    f.build(
        "FROM busybox:test\nADD files.tar.gz /opt/\nADD plain.txt /opt/plain.txt\nADD hostile.tar /x/\n",
        "add",
        "localhost/add:1",
    );
    assert!(
        !Path::new("/tmp/kiln-add-escape").exists(),
        "ADD wrote outside the image"
    );
    assert!(
        !Path::new("/tmp/kiln-add-through").exists(),
        "ADD followed an archive symlink out of the image"
    );
    if let Some(rootfs) = f.unpack("localhost/add:1") {
        assert_eq!(
            fs_err::read_to_string(rootfs.join("opt/dir/a.txt")).unwrap(),
            "a\n"
        );
        assert_eq!(
            fs_err::read_to_string(rootfs.join("opt/plain.txt")).unwrap(),
            "plain\n"
        );
        assert_eq!(
            fs_err::read_to_string(rootfs.join("x/tmp/kiln-add-escape")).unwrap(),
            "evil"
        );
        assert_eq!(
            fs_err::read_to_string(rootfs.join("tmp/kiln-add-through")).unwrap(),
            "evil"
        );
    }
    let file = f.write(
        "url/Dockerfile",
        "FROM busybox:test\nADD https://example.invalid/repo.git /x\n",
    );
    let err = f.fails(&["build", "-f", file.to_str().unwrap(), "-t", "localhost/url:1"]);
    assert!(
        err.contains("Dockerfile:2") && err.contains("git repository"),
        "{err}"
    );
}

/// A tiny HTTP/1.1 file server on a loopback port: `GET /path` answers the bytes set for the path (query
/// ignored) with a `Last-Modified`, anything else 404. Counts the requests it answered with a body.
struct FileServer {
    addr: String,
    files: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FileServer {
    /// `Last-Modified` of every file: 2015-10-21T07:28:00Z.
    const LAST_MODIFIED: (&str, i64) = ("Wed, 21 Oct 2015 07:28:00 GMT", 1_445_412_480);

    fn start() -> FileServer {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = FileServer {
            addr,
            files: Default::default(),
            hits: Default::default(),
        };
        let (files, hits) = (server.files.clone(), server.hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request_line.split(' ').nth(1).unwrap_or("/");
                let path = path.split('?').next().unwrap_or(path);
                let body = files.lock().unwrap().get(path).cloned();
                let head = match &body {
                    Some(bytes) => {
                        hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: {}\r\n\
                             Connection: close\r\n\r\n",
                            bytes.len(),
                            FileServer::LAST_MODIFIED.0
                        )
                    }
                    None => {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                    }
                };
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_deref().unwrap_or_default());
            }
        });
        server
    }

    fn put(&self, path: &str, bytes: &[u8]) {
        self.files.lock().unwrap().insert(path.to_owned(), bytes.to_vec());
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Issue 11, item 6, ADD's side: what a RUN cannot reach, a download does not fetch either. A URL
/// naming the host's loopback, or a name resolving to it, is refused unless `--allow network.host`.
#[test]
fn regression_add_does_not_fetch_from_the_host_s_loopback() {
    let Some(f) = Fixture::new() else { return };
    let server = FileServer::start();
    server.put("/private", b"loopback only\n");
    let port = server.addr.rsplit(':').next().unwrap();
    for url in [
        server.url("/private"),
        format!("http://localhost:{port}/private"),
        format!("http://[::ffff:127.0.0.1]:{port}/private"),
    ] {
        let file = f.write("addlo/Dockerfile", &format!("FROM busybox:test\nADD {url} /x\n"));
        let args = ["build", "-f", file.to_str().unwrap(), "-t", "localhost/addlo:1"];
        let err = f.fails(&args);
        assert!(
            err.contains("Dockerfile:2") && err.contains("--allow network.host"),
            "{url}: {err}"
        );
        assert_eq!(server.hits(), 0, "{url} was fetched");
    }
    let file = f.write(
        "addlo/Dockerfile",
        &format!("FROM busybox:test\nADD {} /x\n", server.url("/private")),
    );
    let path = file.to_str().unwrap();
    f.ok(&[
        "build",
        "-f",
        path,
        "-t",
        "localhost/addlo:1",
        "--allow",
        "network.host",
    ]);
    assert_eq!(server.hits(), 1, "allowed, it is fetched");
}

#[test]
fn add_downloads_urls_checks_checksums_and_caches_by_content() {
    use sha2::Digest as _;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(f) = Fixture::new() else { return };
    let server = FileServer::start();
    // A real gzip tarball: ADD of a URL never extracts it.
    let mut tarball = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), Default::default()));
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_path("inside.txt").unwrap();
    header.set_cksum();
    tarball.append(&header, &b"in\n"[..]).unwrap();
    let tarball = tarball.into_inner().unwrap().finish().unwrap();
    server.put("/dl/tool.tar.gz", &tarball);
    server.put("/dl/notes.txt", b"notes v1\n");
    let sha = hex::encode(sha2::Sha256::digest(&tarball));
    let sha512 = hex::encode(sha2::Sha512::digest(b"notes v1\n"));
    let dockerfile = format!(
        "FROM busybox:test\n\
         ADD --checksum=sha256:{sha} {tool} /opt/\n\
         ADD {notes}?version=1 /etc/notes\n\
         ADD --chmod=644 --checksum=sha512:{sha512} {notes} /opt/n/\n\
         RUN test -f /opt/tool.tar.gz && test ! -e /opt/inside.txt && grep -q 'notes v1' /etc/notes\n",
        tool = server.url("/dl/tool.tar.gz"),
        notes = server.url("/dl/notes.txt"),
    );
    f.write("remote/Dockerfile", &dockerfile);
    let build = |tag: &str| -> Output {
        f.kiln(&[
            "build",
            "-f",
            f.path("remote/Dockerfile").to_str().unwrap(),
            "--context",
            f.path("remote").to_str().unwrap(),
            "--source-date-epoch",
            "2000000000",
            "-t",
            tag,
            "--json",
            // The file server listens on the host's loopback.
            "--allow",
            "network.host",
        ])
    };
    let summary = |out: Output| -> Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone()
    };
    let first = summary(build("localhost/remote:1"));
    assert_eq!(first["steps_run"], 4, "{first}");
    // One request per URL (the RUN needs no second download of the step's inputs).
    assert_eq!(server.hits(), 3);
    if let Some(rootfs) = f.unpack("localhost/remote:1") {
        let tool = rootfs.join("opt/tool.tar.gz");
        assert_eq!(
            fs_err::read(&tool).unwrap(),
            tarball,
            "the tarball must land as is"
        );
        let meta = fs_err::metadata(&tool).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(
            meta.mtime(),
            FileServer::LAST_MODIFIED.1,
            "mtime comes from Last-Modified"
        );
        assert_eq!(
            fs_err::read_to_string(rootfs.join("etc/notes")).unwrap(),
            "notes v1\n"
        );
        let copied = fs_err::metadata(rootfs.join("opt/n/notes.txt")).unwrap();
        assert_eq!(copied.permissions().mode() & 0o7777, 0o644);
    }
    // Unchanged content: every step cached (the URLs are fetched again to learn that).
    let second = summary(build("localhost/remote:2"));
    assert_eq!(second["steps_run"], 0, "{second}");
    assert_eq!(digest(&first), digest(&second));
    // Changed content behind the same URL without a checksum: that ADD and what follows run again; with
    // a checksum pinning the old content, the build fails naming both digests and tags nothing.
    server.put("/dl/notes.txt", b"notes v2\n");
    let out = build("localhost/remote:3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a stale --checksum must fail the build");
    assert!(
        err.contains("Dockerfile:4") && err.contains("--checksum says sha512:") && err.contains(&sha512),
        "{err}"
    );
    let listed = f.ok(&["image", "ls"]);
    assert!(
        !listed.contains("remote:3"),
        "a failed build tagged its image:\n{listed}"
    );
    let relaxed = dockerfile
        .replace(&format!("--checksum=sha512:{sha512} "), "")
        .replace("grep -q 'notes v1'", "grep -q 'notes v2'");
    f.write("remote/Dockerfile", &relaxed);
    let third = summary(build("localhost/remote:3"));
    // Line 3 ran (with the new content) in the failed build and is cached since: lines 4 and 5 run.
    assert_eq!(
        (third["steps_run"].as_u64(), third["steps_cached"].as_u64()),
        (Some(2), Some(2)),
        "{third}"
    );
    // Errors name the Dockerfile line and the URL.
    server.put("/", b"an index page\n");
    for (line, want) in [
        (format!("ADD {} /x", server.url("/missing")), "404"),
        (format!("ADD {} /opt/", server.url("/")), "names no file"),
        (
            format!("ADD --checksum=md5:00 {} /x", server.url("/dl/notes.txt")),
            "sha256, sha384 or sha512",
        ),
        (
            "ADD --checksum=sha256:00 notes.txt /x".to_owned(),
            "http(s) URLs only",
        ),
    ] {
        f.write("remote/notes.txt", "local\n");
        f.write("remote/Dockerfile", &format!("FROM busybox:test\n{line}\n"));
        let out = build("localhost/remote:bad");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Dockerfile:2") && err.contains(want),
            "{line}: {err}"
        );
    }
}

#[test]
fn independent_stages_run_at_the_same_time() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipping: one core, stages run one after the other");
        return;
    }
    let Some(f) = Fixture::new() else { return };
    // A rendezvous through a shared cache mount rather than timing: each stage announces itself and
    // waits (up to 60 s) to see the other, which can only happen if both run at once.
    let stage = |me: &str, other: &str| {
        format!(
            "FROM busybox:test AS {me}\n\
             RUN --mount=type=cache,id=rendezvous,target=/rv touch /rv/{me} && \
             for i in $(seq 600); do [ -e /rv/{other} ] && break; sleep 0.1; done; \
             if [ -e /rv/{other} ]; then echo met > /result; else echo alone > /result; fi\n"
        )
    };
    let dockerfile = format!(
        "{}{}FROM busybox:test\nCOPY --from=a /result /a\nCOPY --from=b /result /b\n",
        stage("a", "b"),
        stage("b", "a")
    );
    f.build(&dockerfile, "stages", "localhost/stages:1");
    let Some(rootfs) = f.unpack("localhost/stages:1") else {
        return;
    };
    assert_eq!(fs_err::read_to_string(rootfs.join("a")).unwrap(), "met\n");
    assert_eq!(fs_err::read_to_string(rootfs.join("b")).unwrap(), "met\n");
}

#[test]
fn taskgraph_trees_build_from_docker_image_parent_with_or_without_the_arg() {
    let Some(f) = Fixture::new() else { return };
    let repo = f.path("tg");
    f.write("tg/.taskcluster.yml", "version: 1\n");
    f.write("tg/taskcluster/config.yml", "trust-domain: t\n");
    f.write(
        "tg/taskcluster/kinds/docker-image/kind.yml",
        "tasks:\n  base:\n    symbol: I(base)\n  child:\n    symbol: I(child)\n    parent: base\n  \
         declared:\n    symbol: I(declared)\n    parent: base\n",
    );
    f.write(
        "tg/taskcluster/docker/base/Dockerfile",
        "FROM busybox:test\nRUN echo base > /base.txt\n",
    );
    // kaniko took `FROM $DOCKER_IMAGE_PARENT` without an ARG; BuildKit needs `ARG` first. Both build.
    f.write(
        "tg/taskcluster/docker/child/Dockerfile",
        "FROM $DOCKER_IMAGE_PARENT\nRUN cat /base.txt > /child.txt\n",
    );
    f.write(
        "tg/taskcluster/docker/declared/Dockerfile",
        "ARG DOCKER_IMAGE_PARENT\nFROM $DOCKER_IMAGE_PARENT\nRUN cat /base.txt > /declared.txt\n",
    );
    let state = f.path("tg-state");
    let out = f.ok(&[
        "-C",
        repo.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "build",
        "--all",
        "--level",
        "3",
        "--json",
    ]);
    let built: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(built.as_array().unwrap().len(), 3, "{built}");
    assert!(
        built[1]["routes"][0]
            .as_str()
            .unwrap()
            .contains(".cache.level-3.docker-images.v2."),
        "{built}"
    );
    let plan: Value = serde_json::from_str(&f.ok(&[
        "-C",
        repo.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "plan",
        "--level",
        "3",
        "--json",
    ]))
    .unwrap();
    assert!(
        plan.as_array().unwrap().iter().all(|e| e["status"] == "cached"),
        "{plan}"
    );
    let child = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "child")
        .unwrap();
    if let Some(rootfs) = f.unpack(&format!("kiln/child:{}", child["cache_digest"].as_str().unwrap())) {
        assert_eq!(
            fs_err::read_to_string(rootfs.join("child.txt")).unwrap(),
            "base\n"
        );
    }
}

#[test]
fn run_mounts_secrets_network_none_and_dockerignore() {
    let Some(f) = Fixture::new() else { return };
    f.write("mounts/tool.sh", "echo from-bind\n");
    f.write("mounts/ignored.log", "must not be copied\n");
    f.write("mounts/.dockerignore", "*.log\n");
    let secret = f.write("secret.txt", "s3cr3t\n");
    // Owner-only on the host: the RUN reads kiln's copy, made with the mount's owner and mode.
    fs_err::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = f.write(
        "mounts/Dockerfile",
        "FROM busybox:test\n\
         RUN --mount=type=bind,target=/ctx sh /ctx/tool.sh > /bind.txt\n\
         RUN --mount=type=bind,target=/ctx,rw echo changed > /ctx/tool.sh && touch /ctx/new && cat /ctx/tool.sh > /rw.txt\n\
         RUN --mount=type=bind,source=tool.sh,target=/t.sh,rw echo changed > /t.sh && cat /t.sh >> /rw.txt\n\
         RUN --mount=type=cache,target=/cache echo run >> /cache/count && wc -l < /cache/count > /cache-count.txt\n\
         RUN --mount=type=cache,id=owned,target=/c2,uid=65534,mode=0700,sharing=locked stat -c '%u %a' /c2 > /cache-meta.txt\n\
         RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /tmpfs.txt\n\
         RUN --mount=type=secret,id=token cat /run/secrets/token > /secret-seen.txt\n\
         RUN --mount=type=secret,id=token,env=TOKEN,target=/s,mode=0440,gid=65534 echo \"$TOKEN\" > /secret-env.txt && stat -c '%u:%g %a' /s > /secret-meta.txt\n\
         USER nobody\n\
         RUN --mount=type=secret,id=token,uid=65534 cat /run/secrets/token > /tmp/nobody-secret.txt\n\
         USER root\n\
         RUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /net.txt\n\
         COPY . /ctx-copy/\n",
    );
    let build = |tag: &str, extra: &[&str]| {
        let mut args = vec!["build", "-f", file.to_str().unwrap(), "-t", tag, "--secret"];
        let spec = format!("id=token,src={}", secret.display());
        args.push(&spec);
        args.extend_from_slice(extra);
        f.ok(&args);
    };
    build("localhost/mounts:1", &[]);
    build("localhost/mounts:2", &["--no-cache"]);
    let Some(rootfs) = f.unpack("localhost/mounts:2") else {
        return;
    };
    let read = |name: &str| fs_err::read_to_string(rootfs.join(name)).unwrap();
    assert_eq!(read("bind.txt"), "from-bind\n");
    assert_eq!(read("rw.txt"), "changed\nchanged\n", "rw binds are writable");
    assert_eq!(
        fs_err::read_to_string(f.path("mounts/tool.sh")).unwrap(),
        "echo from-bind\n",
        "what a RUN writes to an rw bind never reaches the context"
    );
    assert!(!f.path("mounts/new").exists() && !rootfs.join("ctx/new").exists());
    assert_eq!(
        read("cache-count.txt").trim(),
        "2",
        "the cache mount keeps its content between builds"
    );
    assert!(
        !rootfs.join("cache").join("count").exists(),
        "cache mount content is not in the image"
    );
    assert_eq!(
        read("cache-meta.txt"),
        "65534 700\n",
        "a new cache folder gets the mount's owner and mode"
    );
    assert_eq!(read("tmpfs.txt"), "x\n");
    assert!(!rootfs.join("scratch/x").exists());
    assert_eq!(read("secret-seen.txt"), "s3cr3t\n");
    assert_eq!(
        read("secret-env.txt"),
        "s3cr3t\n\n",
        "env= gives the secret's content"
    );
    assert_eq!(
        read("secret-meta.txt"),
        "0:65534 440\n",
        "the mount's owner and mode, not the file's"
    );
    assert_eq!(
        read("tmp/nobody-secret.txt"),
        "s3cr3t\n",
        "uid= lets a non-root USER read it"
    );
    assert!(
        !rootfs.join("run/secrets/token").exists(),
        "the secret stays out of the image"
    );
    assert_eq!(read("net.txt"), "lo\n", "--network=none has only loopback");
    assert!(rootfs.join("ctx-copy/tool.sh").is_file());
    assert!(
        !rootfs.join("ctx-copy/ignored.log").exists(),
        ".dockerignore applies to COPY"
    );
}

#[test]
fn copy_flags_and_heredocs() {
    let Some(f) = Fixture::new() else { return };
    f.write("flags/src/a/keep.txt", "keep\n");
    f.write("flags/src/a/drop.tmp", "drop\n");
    f.write("flags/src/b/other.txt", "other\n");
    f.build(
        "FROM busybox:test\n\
         RUN echo 'app:x:1234:4321::/:/bin/sh' >> /etc/passwd && echo 'grp:x:4321:' >> /etc/group\n\
         COPY --chown=app:grp --chmod=600 src/a/keep.txt /owned/keep.txt\n\
         COPY --exclude=*.tmp src/a /excluded/\n\
         COPY --parents src/a/keep.txt src/b/other.txt /parents/\n\
         COPY <<EOF /etc/motd\n\
         hello $HOSTNAME\n\
         EOF\n\
         RUN <<EOF\n\
         #!/bin/sh\n\
         echo from-heredoc-script > /script.txt\n\
         EOF\n",
        "flags",
        "localhost/flags:1",
    );
    let Some(rootfs) = f.unpack("localhost/flags:1") else {
        return;
    };
    use std::os::unix::fs::MetadataExt;
    let owned = fs_err::metadata(rootfs.join("owned/keep.txt")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1234, 4321, 0o600)
    );
    assert!(rootfs.join("excluded/keep.txt").is_file());
    assert!(!rootfs.join("excluded/drop.tmp").exists(), "--exclude");
    assert!(
        rootfs.join("parents/src/a/keep.txt").is_file(),
        "--parents keeps the source path"
    );
    assert!(rootfs.join("parents/src/b/other.txt").is_file());
    assert_eq!(
        fs_err::read_to_string(rootfs.join("etc/motd")).unwrap(),
        "hello \n"
    );
    assert_eq!(
        fs_err::read_to_string(rootfs.join("script.txt")).unwrap(),
        "from-heredoc-script\n"
    );
    assert!(
        !rootfs.join("dev/pipes").exists(),
        "the heredoc script's mount point stays out of the image"
    );
}

#[test]
fn a_missing_base_that_names_a_registry_is_pulled() {
    use std::io::{BufRead, BufReader};
    let Some(f) = Fixture::new() else { return };
    let mut serve = Command::cargo_bin("kiln")
        .unwrap()
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(f.path("registry"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    let reference = format!("{addr}/base/bb:1");
    f.ok(&["push", "busybox:test", &reference]);
    let file = f.write(
        "pulled/Dockerfile",
        &format!("FROM {reference}\nRUN echo pulled > /pulled.txt\n"),
    );
    let other_store = f.path("other-store");
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .arg("--store")
        .arg(&other_store)
        .args(["build", "-f", file.to_str().unwrap(), "-t", "localhost/pulled:1"])
        .env("HOME", f.tmp.path())
        .output()
        .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("pulling base image {reference}")),
        "{stderr}"
    );
    let listed = Command::cargo_bin("kiln")
        .unwrap()
        .arg("--store")
        .arg(&other_store)
        .args(["image", "ls"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&reference) && listed.contains("localhost/pulled:1"),
        "{listed}"
    );
}

/// Issue 11, item 8: GNU tar, busybox tar and Python's tarfile leave the device fields of ordinary files
/// NUL; such root filesystems imported but `FROM` failed with `bad devmajor field`. Each imports, and a
/// build on it runs a RUN step and a COPY.
#[test]
fn regression_rootfs_tars_of_gnu_busybox_and_python_import_and_build() {
    let Some(f) = Fixture::new() else { return };
    if !require_tool("tar") || !require_tool("python3") {
        return;
    }
    let root = f.path("rootfs");
    let tars: [(&str, Vec<&str>); 3] = [
        ("gnu", vec!["tar", "-cf", "../gnu.tar", "."]),
        (
            "busybox",
            vec!["/bin/busybox", "tar", "-cf", "../busybox.tar", "."],
        ),
        (
            "python",
            vec![
                "python3",
                "-c",
                "import tarfile; t = tarfile.open('../python.tar', 'w'); t.add('.'); t.close()",
            ],
        ),
    ];
    f.write("ctx/hello.txt", "hello\n");
    for (tool, argv) in tars {
        let out = Command::new(argv[0])
            .args(&argv[1..])
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tar = f.path(&format!("{tool}.tar"));
        let name = format!("rootfs:{tool}");
        f.ok(&["image", "import", tar.to_str().unwrap(), "-t", &name]);
        let summary = f.build(
            &format!(
                "FROM {name}\nCOPY hello.txt /hello.txt\n\
                 RUN test \"$(cat /hello.txt)\" = hello && test -x /bin/busybox && echo {tool} > /built\n"
            ),
            "ctx",
            &format!("localhost/on-{tool}:1"),
        );
        assert_eq!(summary["status"], "built", "{tool}: {summary}");
    }
}

/// Issue 11, item 12: `kiln build -f Dockerfile` (a bare file name, whose parent is the empty path) said
/// "the build context  is not a folder"; the context, `-o` and `image export -o` are the current folder.
#[test]
fn regression_bare_file_names_mean_the_current_folder() {
    let Some(f) = Fixture::new() else { return };
    f.write("bare/hello.txt", "hello\n");
    f.write(
        "bare/Dockerfile",
        "FROM busybox:test\nCOPY hello.txt /hello.txt\nRUN test -f /hello.txt\n",
    );
    let dir = f.path("bare");
    let run = |args: &[&str]| {
        let out = f.command(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "kiln {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "build",
        "-f",
        "Dockerfile",
        "-t",
        "localhost/bare:1",
        "-o",
        "bare.tar",
    ]);
    run(&["image", "export", "localhost/bare:1", "-o", "exported.tar.zst"]);
    for file in ["bare.tar", "exported.tar.zst"] {
        assert!(
            dir.join(file).is_file(),
            "{file} not written in the current folder"
        );
    }
}

#[test]
fn platforms_are_the_hosts_and_a_foreign_one_is_refused() {
    let Some(f) = Fixture::new() else { return };
    let summary = f.build(
        "FROM --platform=$BUILDPLATFORM busybox:test\n\
         ARG TARGETPLATFORM TARGETARCH\n\
         RUN echo \"$TARGETPLATFORM $TARGETARCH\" > /platform\n",
        "platform",
        "localhost/platform:1",
    );
    assert_eq!(summary["status"], "built");
    if let Some(rootfs) = f.unpack("localhost/platform:1") {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        assert_eq!(
            fs_err::read_to_string(rootfs.join("platform")).unwrap(),
            format!("linux/{arch} {arch}\n")
        );
    }
    let foreign = if std::env::consts::ARCH == "s390x" {
        "linux/amd64"
    } else {
        "linux/s390x"
    };
    let file = f.write(
        "foreign/Dockerfile",
        &format!("FROM busybox:test\nRUN true\nFROM --platform={foreign} busybox:test\nRUN true\n"),
    );
    let err = f.fails(&["build", "-f", file.to_str().unwrap(), "-t", "localhost/foreign:1"]);
    assert!(
        err.contains("Dockerfile:3") && err.contains(foreign) && err.contains("platform"),
        "{err}"
    );
}

/// A real ssh-agent (killed when dropped) holding one new ed25519 key commented `kiln-test-key`.
struct Agent {
    child: std::process::Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Option<Agent> {
        if !["ssh-agent", "ssh-add", "ssh-keygen", "ldd"]
            .into_iter()
            .all(require_tool)
        {
            return None;
        }
        let key = dir.join("key");
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test-key", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        kiln_test_support::ok(keygen);
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let agent = Agent { child, socket };
        for _ in 0..100 {
            if agent.socket.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        kiln_test_support::ok(
            Command::new("ssh-add")
                .arg(&key)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .output()
                .unwrap(),
        );
        Some(agent)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies `binary` and the shared libraries `ldd` lists for it into `sysroot`, at their own paths, so it
/// runs in the busybox image.
fn copy_with_libraries(binary: &str, sysroot: &Path) {
    let out = kiln_test_support::run(Command::new("ldd").arg(binary));
    let libraries = out.lines().filter_map(|line| {
        let path = line.split("=>").last()?.split_whitespace().next()?;
        path.starts_with('/').then(|| path.to_owned())
    });
    for path in libraries.chain([binary.to_owned()]) {
        let dest = sysroot.join(path.trim_start_matches('/'));
        fs_err::create_dir_all(dest.parent().unwrap()).unwrap();
        fs_err::copy(&path, &dest).unwrap();
    }
}

#[test]
fn ssh_mounts_forward_the_agent_with_the_mounts_owner() {
    let Some(f) = Fixture::new() else { return };
    let Some(agent) = Agent::start(f.tmp.path()) else {
        return;
    };
    copy_with_libraries("/usr/bin/ssh-add", &f.path("ssh/sysroot"));
    let file = f.write(
        "ssh/Dockerfile",
        "FROM busybox:test\n\
         COPY sysroot/ /\n\
         RUN --mount=type=ssh ssh-add -l > /keys.txt && echo \"$SSH_AUTH_SOCK\" >> /keys.txt\n\
         USER nobody\n\
         RUN --mount=type=ssh,id=other,uid=65534,target=/tmp/agent ssh-add -l > /tmp/nobody-keys.txt\n",
    );
    let socket = agent.socket.to_str().unwrap();
    let default = format!("default={socket}");
    let other = format!("other={socket}");
    f.ok(&[
        "build",
        "-f",
        file.to_str().unwrap(),
        "-t",
        "localhost/ssh:1",
        "--ssh",
        &default,
        "--ssh",
        &other,
    ]);
    if let Some(rootfs) = f.unpack("localhost/ssh:1") {
        let keys = fs_err::read_to_string(rootfs.join("keys.txt")).unwrap();
        assert!(keys.contains("kiln-test-key (ED25519)"), "{keys}");
        assert!(keys.ends_with("/run/buildkit/ssh_agent.0\n"), "{keys}");
        let nobody = fs_err::read_to_string(rootfs.join("tmp/nobody-keys.txt")).unwrap();
        assert!(nobody.contains("kiln-test-key"), "{nobody}");
        assert!(
            !rootfs.join("run/buildkit/ssh_agent.0").exists(),
            "the socket stays out of the image"
        );
    }
    // A required agent that is not given, and an agent that is not a socket, are refused.
    let required = f.write(
        "ssh/Required",
        "FROM busybox:test\nRUN --mount=type=ssh,required true\n",
    );
    let err = f.fails(&[
        "build",
        "-f",
        required.to_str().unwrap(),
        "--context",
        f.path("ssh").to_str().unwrap(),
    ]);
    assert!(
        err.contains("Required:2") && err.contains("--ssh default"),
        "{err}"
    );
    let not_socket = format!("default={}", f.path("ssh/Required").display());
    let err = f.fails(&["build", "-f", required.to_str().unwrap(), "--ssh", &not_socket]);
    assert!(err.contains("not an agent socket"), "{err}");
}

/// The diff IDs of a stored image, from its config.
fn diff_ids(f: &Fixture, name: &str) -> Vec<String> {
    let inspect: Value = serde_json::from_str(&f.ok(&["image", "inspect", name])).unwrap();
    inspect["config"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}

/// The unpacked folder of a layer (under any boot's folder), if there is one.
fn layer_folder(f: &Fixture, diff_id: &str) -> Option<PathBuf> {
    let name = diff_id.replacen(':', "-", 1);
    fs_err::read_dir(f.store.join("kiln-build/layers"))
        .unwrap()
        .map(|e| e.unwrap().path().join(&name))
        .find(|p| p.is_dir())
}

fn gc_json(f: &Fixture, flags: &[&str]) -> Value {
    let args: Vec<&str> = ["gc", "--json"].iter().chain(flags).copied().collect();
    serde_json::from_str(&f.ok(&args)).unwrap()
}

fn cache_files(f: &Fixture) -> usize {
    fs_err::read_dir(f.store.join("kiln-build/cache")).map_or(0, |d| d.count())
}

#[test]
fn gc_keeps_the_build_cache_and_drops_it_when_asked() {
    let Some(f) = Fixture::new() else { return };
    // An intermediate stage (its layer is only ever named by a cache record), a cache mount, and layers
    // that a second version of the image leaves only to the cache.
    let dockerfile = "FROM busybox:test AS builder\n\
                      RUN mkdir /out && echo built > /out/artifact\n\
                      FROM busybox:test\n\
                      COPY a.txt /a.txt\n\
                      RUN --mount=type=cache,id=gc-test,target=/c cp /a.txt /c/ && cat /c/a.txt > /copy.txt\n\
                      COPY --from=builder /out/artifact /artifact\n";
    f.write("ctx/a.txt", "one\n");
    let v1 = f.build(dockerfile, "ctx", "localhost/gc:1");
    assert_eq!(v1["steps_run"], 4);
    f.write("ctx/a.txt", "two\n");
    f.build(dockerfile, "ctx", "localhost/gc:1");
    let v2_layers = diff_ids(&f, "localhost/gc:1");
    f.write("ctx/a.txt", "one\n");
    let blobs = || fs_err::read_dir(f.store.join("blobs/sha256")).unwrap().count();

    // A dry run reports and removes nothing.
    let before = (blobs(), cache_files(&f));
    let dry = gc_json(&f, &["--dry-run"]);
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["blobs"]["removed"], 2, "v1's manifest and config: {dry}");
    assert_eq!((blobs(), cache_files(&f)), before);
    let text = f.ok(&["gc", "--dry-run"]);
    assert!(text.starts_with("would remove 2 blobs"), "{text}");

    // gc keeps what only the cache names: the rebuild of v1 runs nothing and gives the same image.
    let gc = gc_json(&f, &[]);
    assert_eq!(gc["blobs"], dry["blobs"], "{gc}");
    assert_eq!(gc["cacheRecords"]["removed"], 0, "{gc}");
    assert_eq!(gc["layerFolders"]["removed"], 0, "{gc}");
    assert_eq!(blobs(), before.0 - 2);
    let again = f.build(dockerfile, "ctx", "localhost/gc:1");
    assert_eq!(again["steps_run"], 0, "a rebuild after gc ran steps: {again}");
    assert_eq!(again["steps_cached"], 4);
    assert_eq!(digest(&again), digest(&v1));

    // A store collected by an older kiln: cache records whose blobs are gone are misses (the step runs
    // again), and gc then removes them with their unpacked folders, and files that are not records.
    let v1_layers = diff_ids(&f, "localhost/gc:1");
    let cache_only: Vec<String> = fs_err::read_dir(f.store.join("kiln-build/cache"))
        .unwrap()
        .filter_map(|e| {
            let record: Value = serde_json::from_slice(&fs_err::read(e.unwrap().path()).unwrap()).unwrap();
            let layer = &record["layer"];
            let diff_id = layer["diff_id"].as_str()?;
            (!v1_layers.iter().any(|d| d == diff_id))
                .then(|| layer["blob"]["digest"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(
        cache_only.len(),
        3,
        "the builder's layer and v2's two: {cache_only:?}"
    );
    for digest in &cache_only {
        fs_err::remove_file(
            f.store
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap();
    }
    let rebuilt = f.build(dockerfile, "ctx", "localhost/gc:1");
    assert_eq!(rebuilt["steps_run"], 1, "only the builder stage's RUN: {rebuilt}");
    assert_eq!(digest(&rebuilt), digest(&v1));
    fs_err::write(f.store.join("kiln-build/cache/.tmpjunk"), b"{\"layer\":").unwrap();
    assert!(layer_folder(&f, &v2_layers[1]).is_some());
    let gc = gc_json(&f, &[]);
    assert_eq!(
        gc["cacheRecords"]["removed"], 3,
        "v2's two records and the junk: {gc}"
    );
    assert_eq!(gc["layerFolders"]["removed"], 2, "v2's two layers: {gc}");
    for d in &v2_layers[1..3] {
        assert!(layer_folder(&f, d).is_none(), "{d} is still unpacked");
    }
    // The base, and the COPY that the RUN needed unpacked, and the RUN's (the last COPY is written
    // straight to its layer: no folder).
    for d in &v1_layers[..3] {
        assert!(layer_folder(&f, d).is_some(), "{d} of a named image was removed");
    }
    assert_eq!(f.build(dockerfile, "ctx", "localhost/gc:1")["steps_run"], 0);

    // --drop-build-cache: every record, unpacked folder and cache mount goes; the next build runs
    // everything and gives the same image.
    let text = f.ok(&["gc", "--drop-build-cache"]);
    assert!(text.contains("removed 1 cache mount folders"), "{text}");
    assert_eq!(cache_files(&f), 0);
    assert!(v1_layers.iter().all(|d| layer_folder(&f, d).is_none()));
    let gc = gc_json(&f, &[]);
    assert_eq!(gc["freed"], 0, "a second gc finds nothing: {gc}");
    let fresh = f.build(dockerfile, "ctx", "localhost/gc:1");
    assert_eq!(fresh["steps_run"], 4, "{fresh}");
    assert_eq!(digest(&fresh), digest(&v1));
}

#[test]
fn gc_waits_for_a_running_build() {
    let Some(f) = Fixture::new() else { return };
    let file = f.write(
        "slow/Dockerfile",
        "FROM busybox:test\nRUN sleep 4 && echo done > /done\n",
    );
    let build = f.spawn(&["build", "-f", file.to_str().unwrap(), "-t", "localhost/slow:1"]);
    // The step's overlay exists only while the build runs (and holds the store's gc lock), in the
    // build's work folder.
    let tmp = f.store.join("kiln-build/tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !named(&tmp, "build-")
        .iter()
        .any(|work| !named(work, "step-").is_empty())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the build never started its step"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let gc = f.kiln(&["gc", "--drop-build-cache"]);
    let stderr = String::from_utf8_lossy(&gc.stderr);
    assert!(gc.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for the builds and imports"), "{stderr}");
    let out = build.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        f.ok(&["image", "inspect", "localhost/slow:1"])
            .contains("localhost/slow:1")
    );
}

/// The xattrs each layer entry of `name` records (`SCHILY.xattr.*` PAX keys), by path, over all layers.
fn layer_xattrs(f: &Fixture, name: &str) -> std::collections::BTreeMap<String, Vec<(String, Vec<u8>)>> {
    let archive = f.path(&format!("{}.tar", name.replace([':', '/'], "-")));
    f.ok(&["image", "export", name, "-o", archive.to_str().unwrap()]);
    let mut outer = tar::Archive::new(fs_err::File::open(&archive).unwrap());
    let mut found = std::collections::BTreeMap::new();
    for entry in outer.entries().unwrap() {
        let entry = entry.unwrap();
        if !entry.path().unwrap().to_string_lossy().ends_with(".tar") {
            continue;
        }
        let mut layer = tar::Archive::new(entry);
        for inner in layer.entries().unwrap() {
            let mut inner = inner.unwrap();
            let path = inner.path().unwrap().to_string_lossy().into_owned();
            let mut xattrs = Vec::new();
            if let Some(pax) = inner.pax_extensions().unwrap() {
                for ext in pax {
                    let ext = ext.unwrap();
                    if let Some(key) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                        xattrs.push((key.to_owned(), ext.value_bytes().to_vec()));
                    }
                }
            }
            found.insert(path, xattrs);
        }
    }
    found
}

#[test]
fn copy_keeps_file_capabilities_and_user_xattrs() {
    let Some(f) = Fixture::new() else { return };
    let capped = f.write("xattr/capped", "#!/bin/sh\n");
    f.write("xattr/plain", "plain\n");
    // cap_net_raw+ep, as `setcap cap_net_raw+ep` writes it (VFS_CAP_REVISION_2).
    let capability = [1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    for (key, value) in [("security.capability", &capability[..]), ("user.kiln", b"kept")] {
        rustix::fs::lsetxattr(&capped, key, value, rustix::fs::XattrFlags::empty()).unwrap();
    }
    f.build(
        "FROM busybox:test AS first\n\
         COPY capped plain /x/\n\
         FROM busybox:test\n\
         COPY --from=first /x/ /y/\n",
        "xattr",
        "localhost/xattr:1",
    );
    let want = vec![
        ("security.capability".to_owned(), capability.to_vec()),
        ("user.kiln".to_owned(), b"kept".to_vec()),
    ];
    let layers = layer_xattrs(&f, "localhost/xattr:1");
    assert_eq!(
        layers.get("y/capped"),
        Some(&want),
        "COPY --from keeps xattrs: {layers:?}"
    );
    assert_eq!(layers.get("y/plain"), Some(&Vec::new()));
    // The first stage alone (its COPY step is cached from the build above).
    f.build(
        "FROM busybox:test\nCOPY capped plain /x/\n",
        "xattr",
        "localhost/xattr:2",
    );
    let layers = layer_xattrs(&f, "localhost/xattr:2");
    assert_eq!(
        layers.get("x/capped"),
        Some(&want),
        "COPY from the context keeps xattrs"
    );
}

/// Issue 11, item 1: a bind mount's source is resolved inside its stage, image or context and handed to
/// the runtime pinned on a mount point kiln made, so no symlink in it (absolute, relative, to a folder
/// or to a file, present in the image or not) ever reaches a file of the build host.
#[test]
fn regression_bind_mount_symlinks_never_reach_host_files() {
    let Some(f) = Fixture::new() else { return };
    let host_dir = f.write("host-only/shadow", "HOST-SECRET\n");
    let host_dir = host_dir.parent().unwrap().to_str().unwrap().to_owned();
    f.write("ctx/plain.txt", "context file\n");
    std::os::unix::fs::symlink(&host_dir, f.path("ctx/abs-link")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../../..".to_owned() + &host_dir,
        f.path("ctx/rel-link"),
    )
    .unwrap();
    let stage = format!(
        "FROM busybox:test AS links\n\
         RUN ln -s {host_dir} /ld && ln -s {host_dir}/shadow /lf && ln -s /etc /etc-link && mkfifo /fifo\n"
    );
    let refused = |name: &str, mount: &str, needle: &str| {
        let dockerfile =
            format!("{stage}FROM busybox:test\nRUN --mount={mount},target=/m cat /m/shadow /m > /out\n");
        let file = f.write(&format!("ctx/{name}.Dockerfile"), &dockerfile);
        let out = f.kiln(&[
            "build",
            "-f",
            file.to_str().unwrap(),
            "--context",
            f.path("ctx").to_str().unwrap(),
            "-t",
            &format!("localhost/{name}:1"),
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{name}: the build must fail:\n{text}");
        assert!(
            !text.contains("HOST-SECRET"),
            "{name}: a host file was read:\n{text}"
        );
        assert!(
            text.contains(needle),
            "{name}: the error names the source ({needle}):\n{text}"
        );
    };
    refused(
        "stage-abs-dir",
        "type=bind,from=links,source=/ld",
        "bind mount source `/ld` in `links`",
    );
    refused(
        "stage-abs-dir-rw",
        "type=bind,from=links,source=/ld,rw",
        "bind mount source `/ld` in `links`",
    );
    refused(
        "stage-below-link",
        "type=bind,from=links,source=/ld/shadow",
        "bind mount source `/ld/shadow`",
    );
    refused(
        "stage-abs-file",
        "type=bind,from=links,source=/lf",
        "bind mount source `/lf`",
    );
    refused(
        "stage-abs-file-rw",
        "type=bind,from=links,source=/lf,rw",
        "bind mount source `/lf`",
    );
    refused(
        "stage-fifo",
        "type=bind,from=links,source=/fifo",
        "only a folder or a regular file",
    );
    refused(
        "context-abs-link",
        "type=bind,source=abs-link",
        "bind mount source `/abs-link` in the build context",
    );
    refused(
        "context-rel-link",
        "type=bind,source=rel-link,rw",
        "bind mount source `/rel-link` in the build context",
    );
    refused(
        "cache-from-link",
        "type=cache,from=links,source=/ld",
        "a cache seeded from a stage",
    );

    // A symlink whose target exists inside the stage is followed there, as in the container.
    let summary = f.build(
        &format!(
            "{stage}FROM busybox:test\n\
             RUN --mount=type=bind,from=links,source=/etc-link,target=/m cat /m/passwd > /out\n\
             RUN --mount=type=bind,source=plain.txt,target=/p.txt cat /p.txt >> /out\n"
        ),
        "ctx",
        "localhost/inside:1",
    );
    assert!(summary["manifest_digest"].is_string());
    let Some(rootfs) = f.unpack("localhost/inside:1") else {
        return;
    };
    let image_passwd = fs_err::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert_ne!(image_passwd, fs_err::read_to_string("/etc/passwd").unwrap());
    assert_eq!(
        fs_err::read_to_string(rootfs.join("out")).unwrap(),
        format!("{image_passwd}context file\n"),
        "the image's own /etc through the stage's symlink, not the host's"
    );
    // Nothing of the pinned mounts is left behind.
    let mounts = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(f.tmp.path().to_str().unwrap()), "{mounts}");
}

/// The entries of `dir` whose names start with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    fs_err::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&fs_err::metadata(path).unwrap().permissions()) & 0o777
}

/// Issue 11, item 7: a secret given to a RUN (as a file or with `env=`) is only ever in files private to
/// root (bundle `config.json` 0600 in a 0700 folder on /run, the copy in the build's 0700 work folder),
/// and what a killed build leaves (bundle, work folder, mounts, container) is removed by the next build.
#[test]
fn regression_secrets_stay_private_and_killed_builds_are_swept() {
    let Some(f) = Fixture::new() else { return };
    let secret = f.write("secret.txt", "TOP-SECRET-VALUE");
    let file = f.write(
        "slow-secret/Dockerfile",
        "FROM busybox:test\n\
         RUN --mount=type=secret,id=token,env=TOKEN --mount=type=secret,id=token,target=/s sleep 60\n",
    );
    let spec = format!("id=token,src={}", secret.display());
    let mut child = f.spawn(&[
        "build",
        "-f",
        file.to_str().unwrap(),
        "-t",
        "localhost/slow-secret:1",
        "--secret",
        &spec,
    ]);
    let pid = child.id();
    let bundles = Path::new("/run/kiln-runc-bundles");
    let scratch_root = f.store.join("kiln-build/tmp");
    let started = std::time::Instant::now();
    let (bundle, scratch) = loop {
        let bundle = named(bundles, &format!("bundle-{pid}-"))
            .into_iter()
            .find(|p| p.is_dir());
        let scratch = named(&scratch_root, &format!("build-{pid}-"))
            .into_iter()
            .find(|p| p.is_dir());
        if let (Some(bundle), Some(scratch)) = (&bundle, &scratch)
            && bundle.join("config.json").is_file()
        {
            break (bundle.clone(), scratch.clone());
        }
        assert!(started.elapsed().as_secs() < 30, "the RUN step never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let config = bundle.join("config.json");
    assert!(
        fs_err::read_to_string(&config)
            .unwrap()
            .contains("TOP-SECRET-VALUE")
    );
    assert_eq!(mode(&config), 0o600, "config.json holds the secret: owner only");
    assert_eq!(mode(&bundle), 0o700);
    assert_eq!(mode(bundles), 0o700);
    assert_eq!(mode(&scratch), 0o700);
    assert_eq!(mode(&scratch_root), 0o700);
    let copies: Vec<PathBuf> = named(&scratch, "secret-");
    assert!(
        !copies.is_empty(),
        "the secret copy is in the build's work folder"
    );

    // Killed as the OOM killer would: nothing of kiln runs its cleanup.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        bundle.exists() && scratch.exists(),
        "a killed build leaves its folders"
    );
    let mounts = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(mounts.contains(scratch.to_str().unwrap()), "and its step overlay");

    // The next build (of anything) removes them.
    f.build("FROM busybox:test\nRUN true\n", "next", "localhost/next:1");
    assert!(!bundle.exists(), "the killed build's bundle is removed");
    assert!(!scratch.exists(), "the killed build's work folder is removed");
    let mounts = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(scratch.to_str().unwrap()),
        "its mounts are detached: {mounts}"
    );
    let containers = named(Path::new("/run/kiln-runc"), &format!("kiln-{pid}-"));
    assert!(containers.is_empty(), "its container is deleted: {containers:?}");
}

/// Issue 12 part 2: `kiln build -f` on a taskgraph child Dockerfile (`FROM $DOCKER_IMAGE_PARENT`, no `ARG`)
/// takes the parent from `--build-arg DOCKER_IMAGE_PARENT=IMAGE`, as the in-tree build does.
#[test]
fn regression_build_f_of_a_child_dockerfile_without_the_parent_arg() {
    let Some(f) = Fixture::new() else { return };
    let file = f.write(
        "child/Dockerfile",
        "FROM $DOCKER_IMAGE_PARENT\nRUN echo child > /child.txt\n",
    );
    f.ok(&[
        "build",
        "-f",
        file.to_str().unwrap(),
        "-t",
        "localhost/child-of:1",
        "--build-arg",
        "DOCKER_IMAGE_PARENT=busybox:test",
    ]);
    let inspect: Value = serde_json::from_str(&f.ok(&["image", "inspect", "localhost/child-of:1"])).unwrap();
    let base: Value = serde_json::from_str(&f.ok(&["image", "inspect", "busybox:test"])).unwrap();
    let layers = |v: &Value| v["manifest"]["layers"].as_array().map_or(0, Vec::len);
    assert_eq!(
        layers(&inspect),
        layers(&base) + 1,
        "busybox:test's layers and the RUN's"
    );
}
