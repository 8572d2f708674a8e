//! Pins kiln's native context hash and cache digest to the format written in docs/hash-formats.md,
//! recomputed here from the documented recipe: a change to either is a change of every cache key.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_tree::{DiscoverOptions, Repo, StatCache, hash_images};
use sha2::{Digest, Sha256};

fn write(root: &Path, rel: &str, content: &str, mode: u32) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn native_hash_and_digest_follow_the_documented_recipe() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(root, "kiln.toml", "[image.app]\nargs = { NAME = \"é\" }\n", 0o644);
    write(
        root,
        "images/base/Dockerfile",
        "FROM scratch\n# %include ./lib/../lib/tool.sh\n",
        0o644,
    );
    write(root, "images/base/data.txt", "data\n", 0o600);
    write(root, "images/base/.dockerignore", "*.tmp\n", 0o644);
    write(root, "images/base/junk.tmp", "ignored\n", 0o644);
    write(root, "lib/tool.sh", "#!/bin/sh\n", 0o700);
    write(root, "images/app/Dockerfile", "FROM base\n", 0o644);

    let repo = Repo::load(root, &DiscoverOptions::default()).unwrap();
    let all: BTreeSet<String> = repo.images.iter().map(|i| i.name.clone()).collect();
    let hashes = hash_images(&repo, &all, &StatCache::in_memory()).unwrap();
    let base = hashes.iter().find(|h| h.name == "base").unwrap();
    let app = hashes.iter().find(|h| h.name == "app").unwrap();

    // Entries sorted by name; modes 755 when any execute bit is set, else 644; the include normalized.
    let dockerfile = "FROM scratch\n# %include ./lib/../lib/tool.sh\n";
    let lines = [
        (644, ".dockerignore", "*.tmp\n"),
        (644, "Dockerfile", dockerfile),
        (644, "data.txt", "data\n"),
        (755, "topsrcdir/lib/tool.sh", "#!/bin/sh\n"),
    ];
    let mut manifest = String::from("kiln-context-v1\n");
    for (mode, name, content) in lines {
        manifest.push_str(&format!(
            "{mode} {} {} {name}\n",
            content.len(),
            sha(content.as_bytes())
        ));
    }
    assert_eq!(base.context.hex, sha(manifest.as_bytes()));

    let base_digest = sha(format!(
        "kiln-cache-v1\ncontext:{}\nargs:{{}}\nbuilder:kiln-build/1",
        base.context.hex
    )
    .as_bytes());
    assert_eq!(base.digest.hex, base_digest);
    let app_digest = sha(
        format!(
            "kiln-cache-v1\ncontext:{}\nargs:{{\"NAME\":\"\\u00e9\"}}\nbuilder:kiln-build/1\nparent:kiln-images.v1/base/{base_digest}",
            app.context.hex
        )
        .as_bytes(),
    );
    assert_eq!(app.digest.hex, app_digest);
}
