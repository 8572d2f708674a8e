//! Helpers shared by the registry test binaries: the `kiln` binary with a store in a temp dir, a busybox
//! image in it, `kiln serve` on a free port.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt;
use kiln_test_support::{Server, busybox_root, ok, start_kiln_serve};

/// `kiln serve --listen 127.0.0.1:0 --root ROOT EXTRA…` until dropped.
pub fn kiln_serve(root: &Path, extra: &[&str]) -> Server {
    let mut cmd = Command::cargo_bin("kiln").unwrap();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .args(extra);
    start_kiln_serve(&mut cmd)
}

/// Runs `kiln --store DIR/store ARGS…` in `dir` (with `HOME=dir`, no progress bars).
pub fn kiln(dir: &Path, args: &[&str]) -> Output {
    kiln_env(dir, args, &[])
}

/// [`kiln`] with more environment variables.
pub fn kiln_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::cargo_bin("kiln")
        .unwrap()
        .arg("--store")
        .arg(dir.join("store"))
        .args(args)
        .current_dir(dir)
        .env("CI", "1")
        .env("HOME", dir)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The JSON stdout of a command that must have succeeded.
pub fn json(out: Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// A temp dir whose store holds the busybox base as `bb:1`, or `None` (skip policy) without busybox.
pub fn busybox_store() -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    let root = busybox_root(dir.path())?;
    ok(kiln(
        dir.path(),
        &["image", "import", root.to_str().unwrap(), "-t", "bb:1"],
    ));
    Some(dir)
}
