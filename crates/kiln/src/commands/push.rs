//! `kiln push IMAGE REF`: an image of the content store to a registry.

use anyhow::{Context as _, Result};

use crate::cli::{GlobalArgs, PushArgs};
use crate::commands::image::open_store;
use crate::commands::registry::{block_on, client, parse_reference, print_transferred};

pub fn run(global: &GlobalArgs, args: &PushArgs) -> Result<()> {
    let target = parse_reference(&args.reference)?;
    let store = open_store(global)?;
    let image = store.require(&args.image)?;
    let client = client(global, &args.registry)?;
    let pushed = block_on(async {
        client
            .push_image(&store, &image.descriptor, &target, args.mount_from.as_deref())
            .await
            .with_context(|| format!("cannot push {} to {target}", image.name))
    })?;
    print_transferred(args.registry.json, &pushed, None)
}
