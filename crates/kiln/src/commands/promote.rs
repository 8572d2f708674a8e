//! `kiln promote REPO:TEMPORARY TAG…`: `kiln tag`, then the temporary tag is deleted — the tag only,
//! never the manifest (a registry that cannot delete a tag alone is reported, and the tag stays).

use anyhow::{Context as _, Result};

use crate::cli::{GlobalArgs, TagArgs};
use crate::commands::registry::{block_on, client, parse_reference};
use crate::commands::tag::{check_tags, print_tagged};

pub fn run(global: &GlobalArgs, args: &TagArgs) -> Result<()> {
    let source = parse_reference(&args.reference)?;
    check_tags(&args.tags)?;
    let client = client(global, &args.registry)?;
    let temporary = source.tag_or_latest();
    let delete = !args.tags.iter().any(|t| t == temporary);
    block_on(async {
        let manifest = client
            .tag(&source, &args.tags)
            .await
            .with_context(|| format!("cannot promote {source}"))?;
        let deleted = if delete {
            client.delete_tag(&source).await.with_context(|| {
                format!(
                    "promoted {source} to {} but cannot delete the temporary tag",
                    args.tags.join(", ")
                )
            })?;
            Some(temporary)
        } else {
            None
        };
        print_tagged(args.registry.json, &source, &manifest, &args.tags, deleted)
    })
}
