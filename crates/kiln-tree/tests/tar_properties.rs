//! Property tests of the taskgraph tar format: kiln's headers against Python's own `tarfile` with
//! taskgraph's `HackedType` patch (random names, unicode cut at 100 bytes, modes, sizes up to and past
//! 8 GiB), entry ordering against Python's `sorted`, and a synthetic 8 GiB entry streamed end to end.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_tree::tar_stream::{BLOCK, RECORD, TarWriter, file_headers};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The Python with taskgraph installed, or None (then the test is skipped unless peers are required).
fn taskgraph_python() -> Option<PathBuf> {
    let path = std::env::var_os("KILN_TASKGRAPH_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-taskgraph/bin/python"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("KILN_REQUIRE_PEERS").as_deref() != Ok("1"),
        "{} is missing; run scripts/setup-taskgraph-venv.sh",
        path.display()
    );
    eprintln!(
        "skipping: no taskgraph python at {} (run scripts/setup-taskgraph-venv.sh)",
        path.display()
    );
    None
}

const REFERENCE: &str = r#"
import json, sys, tarfile
from taskgraph.util.archive import TarInfo
cases = json.load(sys.stdin)
out = {"headers": [], "sorted": None}
for c in cases["headers"]:
    ti = TarInfo(c["name"])
    ti.mode = c["mode"]
    ti.type = tarfile.REGTYPE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mtime = 1451606400
    ti.size = c["size"]
    out["headers"].append(ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape").hex())
out["sorted"] = sorted(cases["names"])
json.dump(out, sys.stdout)
"#;

fn name_strategy() -> impl Strategy<Value = String> {
    let component = prop_oneof![
        "[a-zA-Z0-9._-]{1,40}",
        "[ü名前é-]{1,30}",
        Just("nested".to_owned()),
        Just("nested-file.txt".to_owned()),
        Just("nested.txt".to_owned()),
        Just(".hidden".to_owned()),
        Just("Zebra".to_owned()),
    ];
    proptest::collection::vec(component, 1..6).prop_map(|parts| parts.join("/"))
}

fn size_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..2048,
        0u64..(1 << 34),
        Just((1u64 << 33) - 1),
        Just(1u64 << 33),
        (1u64 << 33)..(1u64 << 40)
    ]
}

fn mode_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0o644u32),
        Just(0o755),
        Just(0o600),
        Just(0o664),
        Just(0o1644),
        0u32..0o1777
    ]
}

#[test]
fn headers_and_order_match_python_tarfile() {
    let Some(python) = taskgraph_python() else { return };
    let mut runner = TestRunner::new(Config {
        cases: 4,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec((name_strategy(), mode_strategy(), size_strategy()), 150),
        proptest::collection::vec(name_strategy(), 200),
    );
    runner
        .run(&strategy, |(headers, names)| {
            let cases = serde_json::json!({
                "headers": headers.iter().map(|(n, m, s)| serde_json::json!({"name": n, "mode": m, "size": s})).collect::<Vec<_>>(),
                "names": names,
            });
            let mut child = Command::new(&python)
                .args(["-c", REFERENCE])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(cases.to_string().as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            for ((name, mode, size), want) in headers.iter().zip(reference["headers"].as_array().unwrap()) {
                let got = hex::encode(file_headers(name, *mode, *size));
                prop_assert_eq!(&got, want.as_str().unwrap(), "name {:?} mode {:o} size {}", name, mode, size);
            }
            let mut sorted = names.clone();
            sorted.sort();
            let want: Vec<String> = serde_json::from_value(reference["sorted"].clone()).unwrap();
            prop_assert_eq!(sorted, want);
            Ok(())
        })
        .unwrap();
}

/// A writer that only counts, so an 8 GiB entry costs no memory and no disk.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_entry_past_8_gib_streams_with_a_base_256_size() {
    let size = (1u64 << 33) + 5;
    let headers = file_headers("big.bin", 0o644, size);
    assert_eq!(headers.len(), BLOCK);
    assert_eq!(headers[124], 0x80, "GNU base-256 marker");
    let mut tar = TarWriter::new(Counter(0));
    tar.start_file("big.bin", 0o644, size).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        tar.write_raw(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    tar.end_file(size).unwrap();
    let (counter, total) = tar.finish().unwrap();
    assert_eq!(counter.0, total);
    let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
    let expected = (BLOCK as u64 + padded + 2 * BLOCK as u64).div_ceil(RECORD) * RECORD;
    assert_eq!(total, expected);
}
