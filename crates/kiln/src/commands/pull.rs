//! `kiln pull REF [--name N]`: an image from a registry into the content store.

use anyhow::{Context as _, Result};

use crate::cli::{GlobalArgs, PullArgs};
use crate::commands::image::open_store;
use crate::commands::registry::{block_on, client, parse_reference, platform_choice, print_transferred};

pub fn run(global: &GlobalArgs, args: &PullArgs) -> Result<()> {
    let source = parse_reference(&args.reference)?;
    let platforms = platform_choice(&args.platforms)?;
    let name = args.name.clone().unwrap_or_else(|| source.to_string());
    let store = open_store(global)?;
    let client = client(global, &args.registry)?;
    let pulled = block_on(async {
        client
            .pull_image(&source, &store, &name, &platforms)
            .await
            .with_context(|| format!("cannot pull {source}"))
    })?;
    let name = kiln_oci::image::normalize_name(&name)?;
    print_transferred(args.registry.json, &pulled, Some(&name))
}
