//! RuncRuntime against the real runc, on a busybox root filesystem (needs root; skips otherwise,
//! fails when KILN_REQUIRE_PEERS=1).
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kiln_runtime::{
    CollectedOutput, MountSpec, Network, OutputSink, RunOutcome, RunSpec, RuncRuntime, Runtime, RuntimeError,
    Stream,
};
use kiln_test_support::{busybox_root, require_root, require_tool};

struct Fixture {
    dir: tempfile::TempDir,
    root: PathBuf,
    runtime: Arc<RuncRuntime>,
}

fn fixture() -> Option<Fixture> {
    // slirp4netns: the default network of a run is a private one.
    if !require_root() || !require_tool("runc") || !require_tool("slirp4netns") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = busybox_root(dir.path())?;
    fs_err::create_dir(dir.path().join("bundles")).unwrap();
    let runtime = RuncRuntime::runc(dir.path().join("state")).with_bundle_dir(dir.path().join("bundles"));
    Some(Fixture {
        dir,
        root,
        runtime: Arc::new(runtime),
    })
}

/// A container id unique across parallel tests and test processes.
fn id(name: &str) -> String {
    format!("kiln-rt-{name}-{}", std::process::id())
}

fn entries(dir: &Path) -> Vec<String> {
    match fs_err::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl Fixture {
    fn spec(&self, name: &str, script: &str) -> RunSpec {
        let mut spec = RunSpec::new(
            id(name),
            &self.root,
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        );
        spec.env = vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()];
        spec
    }

    fn run(&self, spec: &RunSpec) -> (RunOutcome, CollectedOutput) {
        let mut out = CollectedOutput::default();
        let outcome = self.runtime.run(spec, &mut out).unwrap();
        (outcome, out)
    }

    fn sh(&self, name: &str, script: &str) -> (RunOutcome, CollectedOutput) {
        self.run(&self.spec(name, script))
    }

    /// No runc state and no bundle left behind.
    fn assert_clean(&self) {
        assert_eq!(
            entries(&self.dir.path().join("state")),
            Vec::<String>::new(),
            "runc state left"
        );
        assert_eq!(
            entries(&self.dir.path().join("bundles")),
            Vec::<String>::new(),
            "bundle left"
        );
    }
}

/// Every entry under `root` (not following symlinks): path, type, mode, owner, size of files,
/// modification time, link target.
fn listing(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs_err::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let md = fs_err::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let size = if md.is_file() { md.len() } else { 0 };
            let link = if md.file_type().is_symlink() {
                fs_err::read_link(&path).unwrap().display().to_string()
            } else {
                String::new()
            };
            out.insert(format!(
                "{rel} {:o} {}:{} {size} {}.{} {link}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.mtime(),
                md.mtime_nsec()
            ));
            if md.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    let md = fs_err::metadata(root).unwrap();
    out.insert(format!(". {:o} {}.{}", md.mode(), md.mtime(), md.mtime_nsec()));
    walk(root, root, &mut out);
    out
}

#[test]
fn stdout_and_stderr_are_split_and_keep_their_order() {
    let Some(fx) = fixture() else { return };
    let (outcome, out) = fx.sh(
        "split",
        "echo out1; echo err1 >&2; echo out2; echo err2 >&2; seq 1 50000; seq 1 50000 >&2",
    );
    assert_eq!(
        outcome,
        RunOutcome {
            exit_code: 0,
            signal: None
        }
    );
    let numbers: String = (1..=50000).map(|n| format!("{n}\n")).collect();
    assert_eq!(out.stdout_text(), format!("out1\nout2\n{numbers}"));
    assert_eq!(out.stderr_text(), format!("err1\nerr2\n{numbers}"));
    fx.assert_clean();
}

#[test]
fn ten_megabytes_on_each_stream_do_not_deadlock() {
    let Some(fx) = fixture() else { return };
    // stderr first: a reader that drained stdout before stderr would block here.
    let (outcome, out) = fx.sh(
        "large",
        "head -c 10485760 /dev/zero | tr '\\0' e >&2; head -c 10485760 /dev/zero | tr '\\0' o",
    );
    assert!(outcome.success());
    assert_eq!(out.stdout.len(), 10 << 20);
    assert_eq!(out.stderr.len(), 10 << 20);
    assert!(out.stdout.iter().all(|b| *b == b'o'));
    assert!(out.stderr.iter().all(|b| *b == b'e'));
    fx.assert_clean();
}

#[test]
fn output_is_streamed_as_it_arrives() {
    let Some(fx) = fixture() else { return };
    let start = Instant::now();
    let mut arrivals: Vec<(Stream, Duration)> = Vec::new();
    let mut sink = |stream: Stream, _: &[u8]| arrivals.push((stream, start.elapsed()));
    let spec = fx.spec("stream", "echo first; sleep 1; echo second >&2");
    let outcome = fx.runtime.run(&spec, &mut sink as &mut dyn OutputSink).unwrap();
    let finished = start.elapsed();
    assert!(outcome.success());
    assert_eq!(arrivals.len(), 2, "{arrivals:?}");
    assert_eq!(arrivals[0].0, Stream::Stdout);
    assert!(
        finished - arrivals[0].1 >= Duration::from_millis(800),
        "{arrivals:?} {finished:?}"
    );
    fx.assert_clean();
}

#[test]
fn exit_code_is_an_outcome_not_an_error() {
    let Some(fx) = fixture() else { return };
    let (outcome, out) = fx.sh("exit3", "echo before; exit 3");
    assert_eq!(
        outcome,
        RunOutcome {
            exit_code: 3,
            signal: None
        }
    );
    assert_eq!(out.stdout_text(), "before\n");
    fx.assert_clean();
}

/// Start `spec` on another thread; return once runc has written the container's state (it runs).
fn start(fx: &Fixture, spec: RunSpec) -> JoinHandle<Result<RunOutcome, RuntimeError>> {
    let state = fx.dir.path().join("state").join(&spec.id).join("state.json");
    let runtime = fx.runtime.clone();
    let running = std::thread::spawn(move || runtime.run(&spec, &mut CollectedOutput::default()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !state.exists() {
        assert!(Instant::now() < deadline, "container never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    running
}

#[test]
fn a_signal_death_reports_the_signal() {
    let Some(fx) = fixture() else { return };
    let spec = fx.spec("signal", "sleep 60");
    let running = start(&fx, spec);
    let kill = Command::new("runc")
        .arg("--root")
        .arg(fx.dir.path().join("state"))
        .args(["kill", &id("signal"), "KILL"])
        .status()
        .unwrap();
    assert!(kill.success());
    let outcome = running.join().unwrap().unwrap();
    assert_eq!(
        outcome,
        RunOutcome {
            exit_code: 137,
            signal: Some(9)
        }
    );
    fx.assert_clean();
}

#[test]
fn env_cwd_and_hostname() {
    let Some(fx) = fixture() else { return };
    let mut spec = fx.spec("env", "pwd; echo \"$FOO|$EMPTY|$PATH\"; hostname");
    spec.env.extend(["FOO=bar baz".to_owned(), "EMPTY=".to_owned()]);
    spec.cwd = "/work/new/dir".into();
    spec.hostname = "builder".into();
    let (outcome, out) = fx.run(&spec);
    assert!(outcome.success(), "{}", out.stderr_text());
    assert_eq!(
        out.stdout_text(),
        "/work/new/dir\nbar baz||/usr/sbin:/usr/bin:/sbin:/bin\nbuilder\n"
    );
    assert!(
        fx.root.join("work/new/dir").is_dir(),
        "a created cwd is kept, as docker does"
    );
    fx.assert_clean();
}

#[test]
fn user_and_additional_groups() {
    let Some(fx) = fixture() else { return };
    let mut spec = fx.spec(
        "user",
        "id -u; id -g; id -G; touch /root/x 2>/dev/null || echo denied",
    );
    (spec.uid, spec.gid, spec.additional_gids) = (65534, 65534, vec![1, 2]);
    let (outcome, out) = fx.run(&spec);
    assert!(outcome.success(), "{}", out.stderr_text());
    let lines: Vec<&str> = out
        .stdout
        .split(|b| *b == b'\n')
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    assert_eq!(lines[0], "65534");
    assert_eq!(lines[1], "65534");
    let groups: BTreeSet<&str> = lines[2].split_whitespace().collect();
    assert_eq!(groups, BTreeSet::from(["65534", "1", "2"]));
    assert_eq!(lines[3], "denied");
    fx.assert_clean();
}

fn interfaces(proc_net_dev: &str) -> BTreeSet<String> {
    proc_net_dev
        .lines()
        .skip(2)
        .filter(|l| l.contains(':'))
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn network_none_has_only_loopback_and_host_has_the_host_s() {
    let Some(fx) = fixture() else { return };
    let mut spec = fx.spec(
        "netnone",
        "cat /proc/net/dev; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-up",
    );
    spec.network = Network::None;
    let (outcome, out) = fx.run(&spec);
    assert!(outcome.success(), "{}", out.stderr_text());
    assert_eq!(interfaces(&out.stdout_text()), BTreeSet::from(["lo".to_owned()]));
    assert!(out.stdout_text().ends_with("lo-up\n"), "{}", out.stdout_text());

    let mut spec = fx.spec("nethost", "cat /proc/net/dev");
    spec.network = Network::Host;
    let (outcome, out) = fx.run(&spec);
    assert!(outcome.success());
    let host = interfaces(&fs_err::read_to_string("/proc/net/dev").unwrap());
    assert_eq!(interfaces(&out.stdout_text()), host);
    assert!(host.len() > 1, "the host has more than loopback: {host:?}");
    fx.assert_clean();
}

#[test]
fn host_network_sees_the_host_s_resolv_conf_and_hosts_read_only() {
    let Some(fx) = fixture() else { return };
    let mut spec = fx.spec(
        "resolv",
        "cat /etc/resolv.conf /etc/hosts; echo x >> /etc/resolv.conf || echo read-only",
    );
    spec.network = Network::Host;
    let (outcome, out) = fx.run(&spec);
    assert!(outcome.success());
    let host =
        fs_err::read_to_string("/etc/resolv.conf").unwrap() + &fs_err::read_to_string("/etc/hosts").unwrap();
    assert_eq!(out.stdout_text(), host + "read-only\n");
    assert!(
        !fx.root.join("etc/resolv.conf").exists(),
        "the stub is removed again"
    );

    let mut spec = fx.spec("resolv-none", "cat /etc/resolv.conf");
    spec.network = Network::None;
    let (outcome, _) = fx.run(&spec);
    assert_eq!(outcome.exit_code, 1, "no resolv.conf without the host network");
    fx.assert_clean();
}

/// Issue 11, item 6: a RUN reached a `kiln serve` listening on the host's 127.0.0.1. A run's own
/// network (the default) has outbound access but no way to the host's loopback, neither as
/// 127.0.0.1 nor through slirp's gateway 10.0.2.2 or DNS forwarder 10.0.2.3.
#[test]
fn regression_private_network_does_not_reach_the_host_s_loopback() {
    let Some(fx) = fixture() else { return };
    let Some(host) = kiln_test_support::host_address() else {
        panic!("this host has no default route: no non-loopback address to reach");
    };
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = loopback.local_addr().unwrap().port();
    let outside = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let outside_port = outside.local_addr().unwrap().port();
    let script = format!(
        "for a in 127.0.0.1 10.0.2.2 10.0.2.3; do nc -w 2 $a {port} -e /bin/true && echo reached $a; done; \
         nc -w 5 {host} {outside_port} -e /bin/true && echo reached-host-address; \
         cat /proc/net/dev; cat /etc/resolv.conf /etc/hosts"
    );
    let spec = fx.spec("private", &script);
    assert_eq!(spec.network, Network::Private, "the default");
    let (outcome, out) = fx.run(&spec);
    assert!(outcome.success(), "{}", out.stderr_text());
    let stdout = out.stdout_text();
    assert!(
        !stdout.contains("reached 1"),
        "the host's loopback was reached: {stdout}"
    );
    assert!(
        stdout.contains("reached-host-address\n"),
        "{stdout}{}",
        out.stderr_text()
    );
    let (net_dev, files) = stdout.split_once("nameserver").unwrap_or_default();
    let net_dev = net_dev.split_once("Inter-").map(|(_, t)| t).unwrap_or_default();
    assert_eq!(
        interfaces(net_dev),
        BTreeSet::from(["lo".to_owned(), "tap0".to_owned()])
    );
    assert!(files.starts_with(" 10.0.2.3\n"), "{stdout}");
    assert!(files.contains("127.0.0.1\tlocalhost kiln\n"), "{stdout}");
    loopback.set_nonblocking(true).unwrap();
    assert!(
        loopback.accept().is_err(),
        "nothing connected to the loopback listener"
    );
    assert!(
        !fs_err::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&fx.dir.path().display().to_string()),
        "the namespace is unmounted"
    );
    fx.assert_clean();
}

#[test]
fn regression_missing_slirp4netns_is_a_clear_error_not_the_host_network() {
    let Some(fx) = fixture() else { return };
    let runtime = RuncRuntime::runc(fx.dir.path().join("state"))
        .with_bundle_dir(fx.dir.path().join("bundles"))
        .with_slirp4netns("/nonexistent/slirp4netns");
    let err = runtime
        .run(&fx.spec("noslirp", "true"), &mut CollectedOutput::default())
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NetworkHelperNotFound { .. }), "{err}");
    assert!(err.to_string().contains("apt-get install slirp4netns"), "{err}");
    fx.assert_clean();
}

#[test]
fn bind_mounts_read_only_and_read_write_and_tmpfs() {
    let Some(fx) = fixture() else { return };
    let rw = fx.dir.path().join("rw");
    let ro = fx.dir.path().join("ro");
    fs_err::create_dir(&rw).unwrap();
    fs_err::create_dir(&ro).unwrap();
    fs_err::write(ro.join("given"), "from host\n").unwrap();
    let file = fx.dir.path().join("app.conf");
    fs_err::write(&file, "key=value\n").unwrap();
    let mut spec = fx.spec(
        "mounts",
        "echo hi > /mnt/rw/f; \
         touch /mnt/ro/x 2>/dev/null && echo ro-writable || echo ro-refused; \
         cat /mnt/ro/given /etc/app.conf; \
         echo t > /scratch/t && grep ' /scratch ' /proc/mounts",
    );
    spec.mounts = vec![
        MountSpec::Bind {
            source: rw.clone(),
            destination: "/mnt/rw".into(),
            readonly: false,
        },
        MountSpec::Bind {
            source: ro.clone(),
            destination: "/mnt/ro".into(),
            readonly: true,
        },
        MountSpec::Bind {
            source: file,
            destination: "/etc/app.conf".into(),
            readonly: true,
        },
        MountSpec::Tmpfs {
            destination: "/scratch".into(),
            size: Some(1 << 20),
        },
    ];
    let (outcome, out) = fx.run(&spec);
    assert!(outcome.success(), "{}", out.stderr_text());
    let text = out.stdout_text();
    assert!(
        text.starts_with("ro-refused\nfrom host\nkey=value\ntmpfs /scratch tmpfs "),
        "{text}"
    );
    assert!(text.contains("size=1024k"), "{text}");
    assert_eq!(fs_err::read_to_string(rw.join("f")).unwrap(), "hi\n");
    assert_eq!(entries(&ro), ["given"]);
    for stub in ["mnt", "scratch", "etc/app.conf"] {
        assert!(!fx.root.join(stub).exists(), "stub {stub} removed");
    }
    fx.assert_clean();
}

#[test]
fn a_run_that_writes_nothing_leaves_the_rootfs_identical() {
    let Some(fx) = fixture() else { return };
    let cache = fx.dir.path().join("cache");
    fs_err::create_dir(&cache).unwrap();
    let before = listing(&fx.root);
    let mut spec = fx.spec("identical", "true");
    spec.mounts = vec![
        MountSpec::Bind {
            source: cache,
            destination: "/root/.cache/pip".into(),
            readonly: false,
        },
        MountSpec::Tmpfs {
            destination: "/var/tmp".into(),
            size: None,
        },
    ];
    let (outcome, _) = fx.run(&spec);
    assert!(outcome.success());
    assert_eq!(listing(&fx.root), before);

    // What the command writes stays, and nothing else changes.
    spec.id = id("writes");
    spec.argv[2] = "echo data > /tmp/written".into();
    let (outcome, _) = fx.run(&spec);
    assert!(outcome.success());
    let after = listing(&fx.root);
    let changed: Vec<&String> = after.symmetric_difference(&before).collect();
    assert_eq!(changed.len(), 3, "{changed:#?}"); // /tmp (old and new mtime) and /tmp/written
    assert!(
        changed
            .iter()
            .all(|l| l.starts_with("tmp ") || l.starts_with("tmp/written ")),
        "{changed:#?}"
    );
    fx.assert_clean();
}

#[test]
fn an_absolute_symlink_in_the_rootfs_does_not_touch_the_host() {
    let Some(fx) = fixture() else { return };
    let host_dir = PathBuf::from(format!("/tmp/kiln-rt-hostile-{}", std::process::id()));
    fs_err::create_dir_all(&host_dir).unwrap();
    let host_mtime = fs_err::metadata(&host_dir).unwrap().modified().unwrap();
    fs_err::remove_dir_all(fx.root.join("etc")).unwrap();
    symlink(&host_dir, fx.root.join("etc")).unwrap();
    let before = listing(&fx.root);

    let mut spec = fx.spec("hostile", "cat /etc/resolv.conf; pwd");
    // The host's resolv.conf is bound through the symlinked /etc.
    spec.network = Network::Host;
    spec.mounts = vec![MountSpec::Tmpfs {
        destination: "/etc/cache".into(),
        size: None,
    }];
    spec.cwd = "/etc/work".into();
    let (outcome, out) = fx.run(&spec);
    assert!(outcome.success(), "{}", out.stderr_text());
    assert_eq!(
        out.stdout_text(),
        // The shell prints the working directory with the symlink resolved (inside the root).
        fs_err::read_to_string("/etc/resolv.conf").unwrap() + &format!("{}/work\n", host_dir.display())
    );

    assert_eq!(
        entries(&host_dir),
        Vec::<String>::new(),
        "nothing created on the host"
    );
    assert_eq!(
        fs_err::metadata(&host_dir).unwrap().modified().unwrap(),
        host_mtime
    );
    // Inside the rootfs: the kept cwd (and its parent) are all that changed.
    let inside = fx.root.join(host_dir.strip_prefix("/").unwrap());
    assert!(inside.join("work").is_dir());
    assert_eq!(entries(&inside), ["work"]);
    let after = listing(&fx.root);
    let rel = inside.strip_prefix(&fx.root).unwrap().display().to_string();
    let tmp_changes: Vec<&String> = after
        .symmetric_difference(&before)
        .filter(|l| !l.starts_with(&rel))
        .collect();
    assert!(
        tmp_changes.iter().all(|l| l.starts_with("tmp ")),
        "{tmp_changes:#?}"
    );
    fs_err::remove_dir_all(&host_dir).unwrap();
    fx.assert_clean();
}

#[test]
fn a_missing_runtime_binary_is_a_clear_error() {
    let Some(fx) = fixture() else { return };
    let before = listing(&fx.root);
    let runtime = RuncRuntime::new("/nonexistent/runc", fx.dir.path().join("state"))
        .with_bundle_dir(fx.dir.path().join("bundles"));
    let mut spec = fx.spec("missing-binary", "true");
    spec.mounts = vec![MountSpec::Tmpfs {
        destination: "/scratch".into(),
        size: None,
    }];
    let err = runtime.run(&spec, &mut CollectedOutput::default()).unwrap_err();
    assert!(matches!(err, RuntimeError::RuntimeNotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "runtime binary `/nonexistent/runc` not found (install runc or give the runtime's path)"
    );
    assert_eq!(listing(&fx.root), before, "stubs removed after a failed start");
    fx.assert_clean();
}

#[test]
fn a_container_that_cannot_start_is_an_error_with_runc_s_message() {
    let Some(fx) = fixture() else { return };
    let before = listing(&fx.root);
    let mut spec = fx.spec("nostart", "");
    spec.argv = vec!["/bin/does-not-exist".into()];
    spec.mounts = vec![MountSpec::Tmpfs {
        destination: "/scratch".into(),
        size: None,
    }];
    let err = fx
        .runtime
        .run(&spec, &mut CollectedOutput::default())
        .unwrap_err();
    let RuntimeError::Start { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("/bin/does-not-exist"), "{message}");
    assert_eq!(listing(&fx.root), before);
    fx.assert_clean();
}

#[test]
fn two_runs_in_parallel() {
    let Some(fx) = fixture() else { return };
    let other = fx.dir.path().join("other");
    fs_err::create_dir(&other).unwrap();
    let other_root = busybox_root(&other).unwrap();
    let start = Instant::now();
    let runs: Vec<_> = [("par-a", fx.root.clone()), ("par-b", other_root)]
        .into_iter()
        .map(|(name, root)| {
            let mut spec = fx.spec(name, "sleep 1; echo $ME");
            spec.rootfs = root;
            spec.env.push(format!("ME={name}"));
            let runtime = fx.runtime.clone();
            std::thread::spawn(move || {
                let mut out = CollectedOutput::default();
                let outcome = runtime.run(&spec, &mut out).unwrap();
                (outcome, out.stdout_text())
            })
        })
        .collect();
    let results: Vec<_> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results[0], (RunOutcome::from_exit_code(0), "par-a\n".to_owned()));
    assert_eq!(results[1], (RunOutcome::from_exit_code(0), "par-b\n".to_owned()));
    assert!(
        start.elapsed() < Duration::from_millis(1900),
        "ran one after the other: {:?}",
        start.elapsed()
    );
    fx.assert_clean();
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    fs_err::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .filter(|pid| *pid != std::process::id())
        .collect()
}

#[test]
fn kill_all_cancels_promptly_and_leaves_no_state() {
    let Some(fx) = fixture() else { return };
    let marker = format!("marker-{}", id("cancel"));
    let spec = fx.spec("cancel", &format!("sleep 60; echo {marker}"));
    let running = start(&fx, spec);
    assert_eq!(fx.runtime.running(), [id("cancel")]);
    let killed_at = Instant::now();
    fx.runtime.kill_all();
    let err = running.join().unwrap().unwrap_err();
    assert!(matches!(err, RuntimeError::Cancelled { .. }), "{err:?}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed_at.elapsed()
    );
    assert_eq!(
        processes_with(&marker),
        Vec::<u32>::new(),
        "the container's process is gone"
    );
    assert!(fx.runtime.running().is_empty());
    // Later runs do not start.
    let again = fx
        .runtime
        .run(&fx.spec("after-cancel", "true"), &mut CollectedOutput::default());
    assert!(matches!(again, Err(RuntimeError::Cancelled { .. })), "{again:?}");
    fx.assert_clean();
}

#[test]
fn a_killed_runc_leaves_no_container_and_no_state() {
    let Some(fx) = fixture() else { return };
    let marker = format!("marker-{}", id("killed-runc"));
    let spec = fx.spec("killed-runc", &format!("sleep 60; echo {marker}"));
    let running = start(&fx, spec);
    let runc: Vec<u32> = processes_with(&id("killed-runc"))
        .into_iter()
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains("--bundle")
        })
        .collect();
    assert_eq!(runc.len(), 1, "one runc run process: {runc:?}");
    assert!(
        Command::new("kill")
            .args(["-KILL", &runc[0].to_string()])
            .status()
            .unwrap()
            .success()
    );
    let err = running.join().unwrap().unwrap_err();
    assert!(
        matches!(err, RuntimeError::RuntimeKilled { signal: 9, .. }),
        "{err:?}"
    );
    assert_eq!(
        processes_with(&marker),
        Vec::<u32>::new(),
        "the container's process is gone"
    );
    fx.assert_clean();
}

fn cap_eff(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn default_capabilities_are_docker_s_and_insecure_gets_the_host_s() {
    let Some(fx) = fixture() else { return };
    let (outcome, out) = fx.sh(
        "caps",
        "cat /proc/self/status; [ -s /proc/kcore ] && echo kcore-visible || echo kcore-masked",
    );
    assert!(outcome.success());
    assert_eq!(cap_eff(&out.stdout_text()), "00000000a80425fb");
    assert!(
        out.stdout_text().ends_with("kcore-masked\n"),
        "masked: {}",
        out.stdout_text()
    );

    let mut spec = fx.spec("caps-insecure", "cat /proc/self/status");
    spec.insecure = true;
    let (outcome, out) = fx.run(&spec);
    assert!(outcome.success(), "{}", out.stderr_text());
    let host = fs_err::read_to_string("/proc/self/status").unwrap();
    let host_bnd = host
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    assert_eq!(cap_eff(&out.stdout_text()), host_bnd);
    fx.assert_clean();
}

#[test]
fn crun_has_the_same_command_line_and_its_refusal_is_reported() {
    let Some(fx) = fixture() else { return };
    if !require_tool("crun") {
        return;
    }
    let runtime =
        RuncRuntime::new("crun", fx.dir.path().join("state")).with_bundle_dir(fx.dir.path().join("bundles"));
    let before = listing(&fx.root);
    let spec = fx.spec("crun", "echo from crun");
    let mut out = CollectedOutput::default();
    match runtime.run(&spec, &mut out) {
        // Hosts with a pure cgroup v1 or v2 hierarchy.
        Ok(outcome) => {
            assert!(outcome.success());
            assert_eq!(out.stdout_text(), "from crun\n");
        }
        // cgroup-v1 hybrid hosts such as kiln's machines: crun's own message comes through.
        Err(RuntimeError::Start { message, .. }) => {
            assert!(message.contains("cgroup"), "{message}");
        }
        Err(e) => panic!("{e:?}"),
    }
    assert_eq!(listing(&fx.root), before);
    fx.assert_clean();
}
