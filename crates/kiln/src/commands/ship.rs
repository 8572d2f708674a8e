//! What `kiln upload` and `kiln publish` share: the image to ship, taken from the store and built first
//! (exactly as `kiln build IMAGE` builds it) when the store lacks it, and how the result is printed.

use anyhow::{Context as _, Result};
use kiln_client::Reference;
use kiln_oci::ImageStore;
use kiln_oci::image::split_name;
use kiln_oci::manifest::Descriptor;

use crate::cli::{BuildSettingsArgs, GlobalArgs, ScopeArgs};
use crate::commands::build::{TreeRequest, build_tree_quietly};
use crate::commands::image::open_store;
use crate::commands::plan::hash_and_route;
use crate::output;
use crate::settings::run_scope;
use kiln_plan::Workspace;
use kiln_plan::naming::store_name;

/// An image ready to push: the store that holds it, its name there, its manifest, and the repository
/// name it goes under (the in-tree image's name).
pub struct Shippable {
    pub store: ImageStore,
    pub store_name: String,
    pub descriptor: Descriptor,
    pub repository: String,
}

/// The in-tree image `image` as `kiln/<image>:<cache-digest>`, built first when the store lacks it
/// (`kiln build IMAGE --force` with the same scope: parents the store lacks are built too, the index
/// records what was built).
pub fn tree_image(
    ws: &Workspace,
    global: &GlobalArgs,
    image: &str,
    scope: &ScopeArgs,
    settings: &BuildSettingsArgs,
) -> Result<Shippable> {
    let run_scope = run_scope(scope, ws.repo.config.index.max_level)?;
    let entries = hash_and_route(ws, global, &[image.to_owned()], &run_scope)?;
    let entry = entries
        .iter()
        .find(|e| e.image.name == image)
        .with_context(|| format!("image `{image}` was not planned"))?;
    let name = store_name(image, &entry.hashes.digest.hex);
    let store = open_store(global)?;
    if store.get(&name)?.is_none() {
        if !global.quiet {
            eprintln!("building {image}: the store has no {name}");
        }
        // `kiln build IMAGE --force` with the same scope and build settings.
        let request = TreeRequest {
            names: vec![image.to_owned()],
            force: true,
            scope,
            artifacts: None,
            settings,
        };
        build_tree_quietly(ws, global, &request)?;
    }
    let stored = store
        .require(&name)
        .with_context(|| format!("building `{image}` did not name {name} in the store"))?;
    Ok(Shippable {
        store,
        store_name: name,
        descriptor: stored.descriptor,
        repository: image.to_owned(),
    })
}

/// A store image by name (`kiln/<image>:<cache-digest>` or any other); it goes under its repository,
/// without the `kiln/` prefix of in-tree store names.
pub fn store_image(global: &GlobalArgs, name: &str) -> Result<Shippable> {
    let store = open_store(global)?;
    let stored = store.require(name)?;
    let (repo, _) = split_name(&stored.name);
    let repository = repo.strip_prefix("kiln/").unwrap_or(repo).to_owned();
    Ok(Shippable {
        store_name: stored.name.clone(),
        descriptor: stored.descriptor,
        repository,
        store,
    })
}

/// `<registry>/<repository>:<tag>` as a reference.
pub fn target(registry: &str, repository: &str, tag: &str) -> Result<Reference> {
    let registry = registry.trim_end_matches('/');
    let text = format!("{registry}/{repository}:{tag}");
    text.parse::<Reference>()
        .with_context(|| format!("`{text}` (from the registry `{registry}`) is not an image reference"))
}

/// Prints `REFERENCE@DIGEST`, or with `--json` the given object.
pub fn print_pinned(json: Option<serde_json::Value>, reference: &Reference, digest: &str) -> Result<()> {
    output::stdout(|out| match &json {
        Some(value) => {
            serde_json::to_writer_pretty(&mut *out, value)?;
            writeln!(out)
        }
        None => writeln!(out, "{reference}@{digest}"),
    })
}
