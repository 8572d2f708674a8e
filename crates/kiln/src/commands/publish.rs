//! `kiln publish IMAGE`: a registry image (`VERSION`, `HASH`, and `REGISTRY` in its folder or the images
//! root) goes to `<registry>/<name>:<version>`. A version tag that already points to another digest is
//! never overwritten (the command fails naming both digests, having changed nothing); `latest` and the
//! `--tag`s move to the pushed manifest; its digest goes to `HASH` (atomically) and `--digest-file`.
//!
//! The image is always planned (and built when the store lacks it): publishing the same VERSION again is
//! harmless when the build gives the same digest, and refused when the image changed without a new
//! VERSION. The check and the push are separate requests: two publishers racing on one new version can both pass the check (the registry has no
//! conditional PUT); CI runs publish jobs one at a time per image.

use anyhow::{Context as _, Result, bail};
use kiln_oci::Digest;
use kiln_tree::ImageKind;

use crate::cli::{GlobalArgs, PublishArgs};
use crate::commands::registry::{client, runtime};
use crate::commands::ship::{print_pinned, target, tree_image};
use crate::commands::tag::check_tags;
use kiln_plan::Workspace;

pub fn run(ws: &Workspace, global: &GlobalArgs, args: &PublishArgs) -> Result<()> {
    let def = ws.require_image(&args.image)?;
    let dir = ws.repo.config.root.join(&def.dir);
    let ImageKind::Registry {
        registry,
        version,
        hash,
    } = &def.kind
    else {
        bail!(
            "`{}` is not a registry image: {} needs a VERSION file and a REGISTRY file (there or in the images folder)",
            def.name,
            dir.display()
        );
    };
    let Some(version) = version else {
        bail!(
            "registry image `{}` has no {}",
            def.name,
            dir.join("VERSION").display()
        );
    };
    let hash_file = dir.join("HASH");
    let recorded: Option<Digest> = match hash.as_deref().filter(|h| !h.is_empty()) {
        Some(h) => Some(
            h.parse()
                .with_context(|| format!("{} holds `{h}`, not a digest", hash_file.display()))?,
        ),
        None => None,
    };
    let mut tags = vec!["latest".to_owned()];
    for tag in &args.tags {
        if !tags.contains(tag) && tag != version {
            tags.push(tag.clone());
        }
    }
    check_tags(&tags)?;
    let target = target(registry, &def.name, version)?;
    let client = client(global, &args.registry)?;
    let rt = runtime()?;

    let existing = rt
        .block_on(client.head_manifest(&target))
        .with_context(|| format!("cannot look up {target}"))?;
    let image = tree_image(ws, global, &def.name, &args.scope, &args.build)?;
    let digest = image.descriptor.digest.clone();
    if let Some(existing) = existing.filter(|e| *e != digest) {
        bail!(
            "{target} already points to {existing}, and `{}` is now {digest}: a published version is \
             never overwritten (nothing was changed); bump {}",
            def.name,
            dir.join("VERSION").display()
        );
    }
    let bytes = image.store.read_json_blob(&image.descriptor)?;
    let media_type = image.descriptor.media_type.clone().unwrap_or_default();
    let pushed = rt.block_on(async {
        let pushed = client
            .push_image(&image.store, &image.descriptor, &target, None)
            .await
            .with_context(|| format!("cannot push {} to {target}", image.store_name))?;
        for tag in &tags {
            client
                .put_manifest(&target.with_tag(tag), &bytes, &media_type)
                .await
                .with_context(|| format!("pushed {target} but cannot tag it `{tag}`"))?;
        }
        anyhow::Ok(pushed)
    })?;
    let line = format!("{digest}\n");
    if recorded.as_ref() != Some(&digest) {
        kiln_oci::files::write_atomic(&hash_file, line.as_bytes(), 0o644)?;
    }
    if let Some(file) = &args.digest_file {
        kiln_oci::files::write_atomic(file, line.as_bytes(), 0o644)?;
    }
    let json = args.registry.json.then(|| {
        serde_json::json!({
            "reference": target.to_string(),
            "digest": digest.to_string(),
            "pinned": format!("{target}@{digest}"),
            "tags": tags,
            "bytes": pushed.bytes,
            "blobs": pushed.blobs,
            "hashFile": hash_file,
        })
    });
    print_pinned(json, &target, &digest.to_string())
}
