//! `kiln serve`: the command shape, the loopback guard, and a real start answering `/v2/`.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

#[test]
fn serve_help_explains_every_option() {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for option in ["--listen", "--root", "--allow-anonymous-push", "loopback"] {
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
    let mut child = Command::cargo_bin("kiln")
        .unwrap()
        .current_dir(cwd.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(root.path().join("reg"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
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
