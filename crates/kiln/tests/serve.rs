//! `kiln serve`: the command shape, the loopback guard, and a real start answering `/v2/`.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

/// A `kiln serve` process, killed when dropped (also when a test panics).
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kiln serve`; returns the process, its stderr up to the `listening on` line, and the address.
#[allow(clippy::zombie_processes)] // `Served` kills and waits for it when dropped
fn start_serve(cmd: &mut Command) -> (Served, String, String) {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            drop(Served(child));
            panic!("kiln serve stopped before listening:\n{text}");
        }
        text.push_str(&line);
        if let Some(rest) = line
            .split("listening on http://")
            .nth(1)
            .or(line.split("listening on https://").nth(1))
        {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            // Keep draining stderr so the server never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return (Served(child), text, addr);
        }
    }
}

#[test]
fn serve_help_explains_every_option() {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--config",
        "--listen",
        "--root",
        "--allow-anonymous-push",
        "--max-manifest-size",
        "--htpasswd",
        "--token-key",
        "--tls-self-signed",
        "--gc-interval",
        "--expire-tags",
        "--uploads-per-repository",
        "--uploads-per-client",
        "--uploads-idle-timeout",
        "--log-format",
        "--max-connections",
        "--header-timeout",
        "--idle-timeout",
        "--stall-timeout",
        "loopback",
    ] {
        assert!(text.contains(option), "{option} missing from:\n{text}");
    }
}

#[test]
fn serve_refuses_a_non_loopback_address_without_auth() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["serve", "--listen", "0.0.0.0:0", "--root"])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--allow-anonymous-push"), "{err}");
}

#[test]
fn serve_starts_outside_any_repository_and_answers_v2() {
    let root = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::cargo_bin("kiln").unwrap();
    cmd.current_dir(cwd.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(root.path().join("reg"));
    let (child, _, addr) = start_serve(&mut cmd);
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    drop(child);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply
            .to_lowercase()
            .contains("docker-distribution-api-version: registry/2.0"),
        "{reply}"
    );
    assert!(root.path().join("reg/kiln-registry.json").is_file());
}

#[test]
fn serve_reads_a_config_file_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kiln-serve.toml");
    // `root` is relative to the file; the file's non-loopback listen address is overridden by the flag.
    std::fs::write(&config, "listen = \"0.0.0.0:0\"\nroot = \"reg\"\n").unwrap();
    let mut cmd = Command::cargo_bin("kiln").unwrap();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config);
    let (child, line, _) = start_serve(&mut cmd);
    drop(child);
    assert!(line.contains("listening on http://127.0.0.1:"), "{line}");
    assert!(dir.path().join("reg/kiln-registry.json").is_file());

    std::fs::write(&config, "root = \"reg\"\nlisten = \"127.0.0.1:0\"\nauht = 1\n").unwrap();
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("auht"), "{err}");
}

fn write_htpasswd(path: &std::path::Path, extra: &str) {
    let hash = bcrypt::hash("ci-secret", 4).unwrap();
    std::fs::write(path, format!("# kiln test users\nci:{hash}\n{extra}")).unwrap();
}

#[test]
fn serve_refuses_htpasswd_hashes_that_are_not_bcrypt_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    write_htpasswd(&users, "old:$apr1$salt$hash\n");
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["serve", "--listen", "127.0.0.1:0", "--htpasswd"])
        .arg(&users)
        .arg("--root")
        .arg(dir.path().join("reg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("line 3") && err.contains("`old`") && err.contains("bcrypt"),
        "{err}"
    );
}

/// `kiln serve --htpasswd` off loopback: a generated token key, then podman logs in, pushes and pulls
/// through the token flow; a wrong password is refused at login.
#[test]
fn serve_with_users_generates_a_key_and_podman_logs_in_and_pushes() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    write_htpasswd(&users, "");
    let root = dir.path().join("reg");
    let mut cmd = Command::cargo_bin("kiln").unwrap();
    // Not loopback, no --allow-anonymous-push: users make it acceptable.
    cmd.args(["serve", "--listen", "0.0.0.0:0", "--htpasswd"])
        .arg(&users)
        .arg("--root")
        .arg(&root);
    let (child, text, addr) = start_serve(&mut cmd);
    let key = root.join("token.key");
    assert!(
        text.contains(&format!("generated a token signing key at {}", key.display())),
        "{text}"
    );
    assert!(text.contains("auth anonymous-read"), "{text}");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let port = addr.rsplit(':').next().unwrap().to_owned();
    let registry = format!("127.0.0.1:{port}");

    if kiln_test_support::require_tool("podman") {
        let podman = kiln_test_support::Podman::new(dir.path());
        let podman = |args: &[&str]| podman.command(args);
        let authfile = dir.path().join("auth.json");
        let authfile = authfile.to_str().unwrap();
        let empty_auth = dir.path().join("empty-auth.json");
        std::fs::write(&empty_auth, "{}").unwrap();
        let empty_auth = empty_auth.to_str().unwrap().to_owned();
        let login = |password: &str| {
            podman(&[
                "login",
                "--tls-verify=false",
                "--authfile",
                authfile,
                "-u",
                "ci",
                "-p",
                password,
                &registry,
            ])
            .output()
            .unwrap()
        };
        let wrong = login("wrong");
        assert!(!wrong.status.success(), "a wrong password logs in");
        let ok = login("ci-secret");
        assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/hello"), "hello\n").unwrap();
        let tar = dir.path().join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        kiln_test_support::run(&mut podman(&[
            "import",
            tar.to_str().unwrap(),
            "localhost/kiln-serve-test:1",
        ]));
        let dest = format!("docker://{registry}/project/app:1");
        // Without credentials the push is refused; with the login it goes through.
        let anonymous = podman(&[
            "push",
            "--tls-verify=false",
            "--authfile",
            &empty_auth,
            "localhost/kiln-serve-test:1",
            &dest,
        ])
        .output()
        .unwrap();
        assert!(!anonymous.status.success(), "anonymous push accepted");
        kiln_test_support::run(&mut podman(&[
            "push",
            "--tls-verify=false",
            "--authfile",
            authfile,
            "localhost/kiln-serve-test:1",
            &dest,
        ]));
        kiln_test_support::run(&mut podman(&["rmi", "localhost/kiln-serve-test:1"]));
        // Anyone may pull (anonymous-read).
        kiln_test_support::run(&mut podman(&[
            "pull",
            "--tls-verify=false",
            "--authfile",
            &empty_auth,
            &format!("{registry}/project/app:1"),
        ]));
    }
    drop(child);
}

#[test]
fn serve_tls_self_signed_prints_its_ca_and_registry_gc_and_fsck_run_offline() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    let mut cmd = Command::cargo_bin("kiln").unwrap();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--tls-self-signed", "--root"])
        .arg(&root);
    let (server, text, _) = start_serve(&mut cmd);
    drop(server);
    let ca = root.join("tls/ca.crt");
    assert!(
        text.contains(&ca.display().to_string()) && text.contains("--cert-dir"),
        "{text}"
    );
    assert!(text.contains("listening on https://127.0.0.1:"), "{text}");
    assert!(ca.is_file());

    let kiln = |args: &[&str]| {
        Command::cargo_bin("kiln")
            .unwrap()
            .args(args)
            .arg("--root")
            .arg(&root)
            .output()
            .unwrap()
    };
    let out = kiln(&["registry", "fsck"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kiln(&[
        "registry",
        "gc",
        "--dry-run",
        "--json",
        "--expire-tags",
        "change_*=24h",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["blobs"], serde_json::json!([]));
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["registry", "gc", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a kiln registry root"));
}

/// `curl ARGS…`: its stdout, after checking it exited 0.
fn curl(args: &[String]) -> String {
    let out = Command::new("curl").arg("-sS").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Issue 11, item 4, end to end: each idle upload session used to hold a file descriptor, so a client
/// opening sessions without finishing them made every later request a 500. `kiln serve` limited to 64
/// descriptors now keeps 200 idle sessions (caps lifted with the flags) and still stores a pushed blob.
#[test]
fn regression_serve_keeps_more_idle_upload_sessions_than_file_descriptors() {
    if !kiln_test_support::require_tool("prlimit") || !kiln_test_support::require_tool("curl") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=64:64")
        .arg("--")
        .arg(assert_cmd::cargo::cargo_bin("kiln"))
        .args(["serve", "--listen", "127.0.0.1:0", "--uploads-per-client", "0"])
        .args(["--uploads-per-repository", "0", "--root"])
        .arg(root.path());
    let (_server, _, addr) = start_serve(&mut cmd);
    let start = format!("http://{addr}/v2/idle/blobs/uploads/");
    let mut args: Vec<String> = ["-X", "POST", "-w", "%{http_code}\\n"]
        .map(str::to_owned)
        .to_vec();
    args.extend(std::iter::repeat_n(start, 200));
    let codes = curl(&args);
    assert_eq!(codes.lines().filter(|c| *c == "202").count(), 200, "{codes}");
    let blob = b"pushed after 200 idle sessions";
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(blob))
    );
    let blob_file = root.path().join("blob");
    std::fs::write(&blob_file, blob).unwrap();
    let code = curl(&[
        "-X".into(),
        "POST".into(),
        "--data-binary".into(),
        format!("@{}", blob_file.display()),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        format!("http://{addr}/v2/idle/blobs/uploads/?digest={digest}"),
    ]);
    assert_eq!(code, "201");
    let body = curl(&[format!("http://{addr}/v2/idle/blobs/{digest}")]);
    assert_eq!(body.as_bytes(), blob);
}

/// Issue 11, item 2: `kiln registry gc` beside a running `kiln serve` could not order its sweep against
/// the server's writes; it refuses now, naming the server's process, and so does a second server.
#[test]
fn registry_gc_and_a_second_server_refuse_a_root_that_kiln_serve_uses() {
    let root = tempfile::tempdir().unwrap();
    let serve = |root: &std::path::Path| {
        let mut cmd = Command::cargo_bin("kiln").unwrap();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--root"]).arg(root);
        cmd
    };
    let (server, _, _) = start_serve(&mut serve(root.path()));
    let pid = server.0.id().to_string();
    let gc = || {
        Command::cargo_bin("kiln")
            .unwrap()
            .args(["registry", "gc", "--root"])
            .arg(root.path())
            .output()
            .unwrap()
    };
    let out = gc();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("in use by process {pid}")) && err.contains("--gc-interval"),
        "{err}"
    );
    let out = serve(root.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("in use by process {pid}")), "{err}");
    drop(server);
    let out = gc();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
