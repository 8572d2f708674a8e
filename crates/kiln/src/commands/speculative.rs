//! `kiln speculative push|pull --build ID --buildset R --intermediate R NAME:TAG…`: moves a buildset's
//! images to and from the intermediate registry, where they are tagged `<build-id>_<tag>`
//! (docs/speculative-images.md). Each image is a registry-to-registry copy of every platform
//! (`Client::copy_image`: blobs stream across, or are mounted within one registry), so digests stay.

use anyhow::{Context as _, Result, bail};
use kiln_client::{PlatformChoice, Reference};

use crate::cli::{GlobalArgs, SpeculativeArgs, SpeculativeCommand};
use crate::commands::registry::{block_on, client};
use crate::output;

/// One image to move: where it is read and where it goes.
#[derive(Debug, PartialEq, Eq)]
struct Move {
    source: Reference,
    target: Reference,
}

/// The buildset and intermediate references of `NAME:TAG` for `build`.
fn references(
    image: &str,
    build: &str,
    buildset: &str,
    intermediate: &str,
) -> Result<(Reference, Reference)> {
    let Some((name, tag)) = image.rsplit_once(':').filter(|(_, t)| !t.contains('/')) else {
        bail!("`{image}` has no tag: give images as NAME:TAG");
    };
    if name.contains('@') {
        bail!("`{image}`: give images by tag, not digest");
    }
    let speculative = format!("{build}_{tag}");
    if !kiln_client::reference::is_valid_tag(&speculative) {
        bail!(
            "`{speculative}` (build `{build}`, tag `{tag}`) is not a valid tag: build ids use letters, digits, \
             `_`, `.`, `-`, and the whole tag has at most 128 characters"
        );
    }
    let at = |registry: &str, tag: &str| -> Result<Reference> {
        let mut r: Reference = format!("{registry}/{name}:{tag}")
            .parse()
            .with_context(|| format!("`{image}` in {registry}"))?;
        // The buildset registry keeps Docker Hub names as they are given (no `library/` added).
        r.repository = name.to_owned();
        Ok(r)
    };
    Ok((at(buildset, tag)?, at(intermediate, &speculative)?))
}

fn plan(args: &SpeculativeArgs, push: bool) -> Result<Vec<Move>> {
    args.names
        .iter()
        .map(|image| {
            let (buildset, intermediate) =
                references(image, &args.build, &args.buildset, &args.intermediate)?;
            Ok(if push {
                Move {
                    source: buildset,
                    target: intermediate,
                }
            } else {
                Move {
                    source: intermediate,
                    target: buildset,
                }
            })
        })
        .collect()
}

pub fn run(global: &GlobalArgs, command: &SpeculativeCommand) -> Result<()> {
    let (args, push) = match command {
        SpeculativeCommand::Push(a) => (a, true),
        SpeculativeCommand::Pull(a) => (a, false),
    };
    let moves = plan(args, push)?;
    let client = client(global, &args.registry)?;
    block_on(async {
        let mut done = Vec::new();
        for m in &moves {
            let t = client
                .copy_image(&m.source, &m.target, &PlatformChoice::All)
                .await
                .with_context(|| format!("cannot copy {} to {}", m.source, m.target))?;
            done.push((m, t));
        }
        output::stdout(|out| {
            if args.registry.json {
                let list: Vec<serde_json::Value> = done
                    .iter()
                    .map(|(m, t)| {
                        serde_json::json!({
                            "source": m.source.to_string(),
                            "target": m.target.to_string(),
                            "digest": t.digest.to_string(),
                            "bytes": t.bytes,
                        })
                    })
                    .collect();
                serde_json::to_writer_pretty(&mut *out, &list)?;
                writeln!(out)
            } else {
                for (m, t) in &done {
                    writeln!(out, "{}\t{}\t{}", m.source, m.target, t.digest)?;
                }
                Ok(())
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speculative_tags_prefix_the_build() {
        let (b, i) = references("org/app:1.0", "b42", "127.0.0.1:5000", "inter.example:5000").unwrap();
        assert_eq!(b.to_string(), "127.0.0.1:5000/org/app:1.0");
        assert_eq!(i.to_string(), "inter.example:5000/org/app:b42_1.0");
        let (b, _) = references("quay.io/org/app:2", "b", "localhost:5000", "i:1").unwrap();
        assert_eq!(b.repository, "quay.io/org/app");
        let (b, _) = references("busybox:1", "b", "localhost:5000", "i:1").unwrap();
        assert_eq!(b.repository, "busybox", "no library/ in the buildset registry");
        assert!(references("org/app", "b", "r:1", "i:1").is_err());
        assert!(references("org/app:1", "b/x", "r:1", "i:1").is_err());
        assert!(references("localhost:5000/app", "b", "r:1", "i:1").is_err());
    }
}
