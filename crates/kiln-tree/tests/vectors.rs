//! The sample tree of `tests/vectors/make_sample.py` must give taskgraph 24.5.1's own context hashes, tar
//! sizes and cache digests (`tests/vectors/expected.json`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tree::{DiscoverOptions, Repo, StatCache, hash_images};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn make_sample(dest: &Path) {
    let status = Command::new("python3")
        .arg(vectors_dir().join("make_sample.py"))
        .arg(dest)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("python3 runs");
    assert!(status.success());
}

#[test]
fn sample_tree_matches_taskgraph_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sample");
    make_sample(&root);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vectors_dir().join("expected.json")).unwrap()).unwrap();

    let repo = Repo::load(&root, &DiscoverOptions::default()).unwrap();
    assert_eq!(
        repo.config.index.prefix,
        expected["cached_task_prefix"].as_str().unwrap()
    );
    let all: BTreeSet<String> = repo.images.iter().map(|i| i.name.clone()).collect();
    let cache = StatCache::in_memory();
    let hashes = hash_images(&repo, &all, &cache).unwrap();

    let images = expected["images"].as_object().unwrap();
    assert!(!images.is_empty());
    for (name, want) in images {
        let got = hashes
            .iter()
            .find(|h| &h.name == name)
            .unwrap_or_else(|| panic!("image {name} missing"));
        assert_eq!(
            got.context.hex,
            want["context_hash"].as_str().unwrap(),
            "context hash of {name}"
        );
        assert_eq!(
            got.context.size,
            want["tar_size"].as_u64().unwrap(),
            "tar size of {name}"
        );
        assert_eq!(
            got.digest.hex,
            want["cache_digest"].as_str().unwrap(),
            "cache digest of {name}"
        );
    }
}
