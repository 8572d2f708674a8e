//! `kiln tag REF TAG…`: the manifest REF points to, under more tags of its repository. Only the manifest
//! moves: its bytes are fetched and PUT back unchanged with their media type under each tag.

use anyhow::{Context as _, Result, bail};
use kiln_client::Manifest;
use kiln_client::reference::is_valid_tag;

use crate::cli::{GlobalArgs, TagArgs};
use crate::commands::registry::{block_on, client, parse_reference};
use crate::output;

pub fn run(global: &GlobalArgs, args: &TagArgs) -> Result<()> {
    let source = parse_reference(&args.reference)?;
    check_tags(&args.tags)?;
    let client = client(global, &args.registry)?;
    let manifest = block_on(async {
        client
            .tag(&source, &args.tags)
            .await
            .with_context(|| format!("cannot tag {source}"))
    })?;
    print_tagged(args.registry.json, &source, &manifest, &args.tags, None)
}

pub fn check_tags(tags: &[String]) -> Result<()> {
    for tag in tags {
        if !is_valid_tag(tag) {
            bail!("invalid tag `{tag}`: it must match [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}");
        }
    }
    Ok(())
}

/// `REPO:TAG DIGEST` per tag, or JSON `{repository, digest, mediaType, size, tags, deleted}`.
pub fn print_tagged(
    json: bool,
    source: &kiln_client::Reference,
    manifest: &Manifest,
    tags: &[String],
    deleted: Option<&str>,
) -> Result<()> {
    output::stdout(|out| {
        if json {
            let value = serde_json::json!({
                "repository": source.name(),
                "digest": manifest.digest.to_string(),
                "mediaType": manifest.media_type,
                "size": manifest.bytes.len(),
                "tags": tags,
                "deleted": deleted,
            });
            serde_json::to_writer_pretty(&mut *out, &value)?;
            writeln!(out)
        } else {
            for tag in tags {
                writeln!(out, "{}:{tag}\t{}", source.name(), manifest.digest)?;
            }
            Ok(())
        }
    })
}
