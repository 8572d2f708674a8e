//! `kiln serve`: the command shape, the loopback guard, and a real start answering `/v2/`.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

/// Starts `kiln serve`; returns the child, its stderr up to the `listening on` line, and the address.
#[allow(clippy::zombie_processes)] // the caller kills and waits for the child
fn start_serve(cmd: &mut Command) -> (std::process::Child, String, String) {
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
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
            return (child, text, addr);
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
    let (mut child, _, addr) = start_serve(&mut cmd);
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
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
    let (mut child, line, _) = start_serve(&mut cmd);
    child.kill().unwrap();
    child.wait().unwrap();
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
