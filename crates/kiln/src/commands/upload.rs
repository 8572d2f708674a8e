//! `kiln upload IMAGE --registry R --temporary-tag T`: the gate pipeline's push. The image (an in-tree
//! image, built first when the store lacks it, or a store image) goes to `R/<image>:T`; after merge
//! `kiln promote R/<image>:T TAG…` gives it its final tags without moving a blob.

use anyhow::{Context as _, Result, bail};
use kiln_tree::ImageKind;

use crate::cli::{GlobalArgs, UploadArgs};
use crate::commands::registry::{block_on, client};
use crate::commands::ship::{print_pinned, store_image, target, tree_image};
use crate::commands::tag::check_tags;

pub fn run(global: &GlobalArgs, args: &UploadArgs) -> Result<()> {
    check_tags(std::slice::from_ref(&args.temporary_tag))?;
    // A name with a tag is a store name; anything else an image of the repository.
    let (image, from_tree) = if args.image.contains(':') {
        (store_image(global, &args.image)?, None)
    } else {
        let ws = crate::settings::workspace(global)?;
        let image = tree_image(&ws, global, &args.image, &args.scope, &args.build)?;
        let kind = ws.require_image(&args.image)?.kind.clone();
        (image, Some(kind))
    };
    let registry = match (&args.to, &from_tree) {
        (Some(r), _) => r.clone(),
        (None, Some(ImageKind::Registry { registry, .. })) => registry.clone(),
        (None, _) => bail!(
            "give --registry: `{}` is not a registry image (no REGISTRY file)",
            args.image
        ),
    };
    let target = target(&registry, &image.repository, &args.temporary_tag)?;
    let client = client(global, &args.registry)?;
    let pushed = block_on(async {
        client
            .push_image(&image.store, &image.descriptor, &target, None)
            .await
            .with_context(|| format!("cannot upload {} to {target}", image.store_name))
    })?;
    let json = args.registry.json.then(|| {
        let mut value = serde_json::to_value(&pushed).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("name".to_owned(), image.store_name.clone().into());
            map.insert("pinned".to_owned(), format!("{target}@{}", pushed.digest).into());
        }
        value
    });
    print_pinned(json, &target, &pushed.digest.to_string())
}
