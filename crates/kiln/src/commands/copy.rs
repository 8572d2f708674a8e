//! `kiln copy SRC DST`: each side is a registry (`docker://REF` or a bare reference), a store image
//! (`store:NAME`), an archive (`.tar`/`.tar.zst` docker-archive, `.oci.tar` OCI archive) or an OCI layout
//! (`oci:DIR[:TAG]`). Registries are reached through kiln-client, the rest through kiln-oci's import
//! and export. Registry to registry, blobs stream from one to the other (nothing on disk); otherwise an
//! image that is neither in the store nor meant for it passes through a temporary store (blobs
//! hard-linked from the store when they come from it), which is removed afterwards.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use kiln_client::{Client, Reference};
use kiln_oci::ImageStore;
use kiln_oci::export::{ExportFormat, export};
use kiln_oci::image::{normalize_name, split_name};
use kiln_oci::import::{ImportOptions, import};

use crate::cli::{CopyArgs, GlobalArgs};
use crate::commands::image::open_store;
use crate::commands::registry::{block_on, client, platform_choice, print_transferred};
use crate::output;

#[derive(Debug)]
enum Side {
    Registry(Reference),
    Store(String),
    Archive(PathBuf),
    Layout(PathBuf, Option<String>),
}

fn parse_side(text: &str) -> Result<Side> {
    if let Some(rest) = text.strip_prefix("docker://") {
        return Ok(Side::Registry(rest.parse()?));
    }
    if let Some(name) = text.strip_prefix("store:") {
        return Ok(Side::Store(normalize_name(name)?));
    }
    if let Some(rest) = text.strip_prefix("oci:") {
        return Ok(match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => {
                Side::Layout(PathBuf::from(dir), Some(tag.to_owned()))
            }
            _ => Side::Layout(PathBuf::from(rest), None),
        });
    }
    let archive = [".tar", ".tar.zst", ".tzst", ".tar.gz", ".oci.tar", ".oci.tar.zst"];
    if archive.iter().any(|ext| text.ends_with(ext)) || Path::new(text).is_file() {
        return Ok(Side::Archive(PathBuf::from(text)));
    }
    text.parse::<Reference>().map(Side::Registry).map_err(|e| {
        anyhow!(
            "{e}\n  (a copy side is docker://REF, store:NAME, FILE.tar|.tar.zst|.oci.tar or oci:DIR[:TAG])"
        )
    })
}

/// A store that holds the image being copied, and its name there.
struct Staged {
    store: ImageStore,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

fn temp_store(near: &ImageStore) -> Result<(tempfile::TempDir, ImageStore)> {
    let dir = tempfile::Builder::new()
        .prefix("copy-")
        .tempdir_in(near.root().join("ingest"))
        .context("cannot create a temporary store")?;
    let store = ImageStore::open(dir.path())?;
    Ok((dir, store))
}

/// `name` of `store` as a new name in a temporary store, its blobs hard-linked (copied across filesystems).
fn restage(store: &ImageStore, name: &str, new_name: &str) -> Result<Staged> {
    let image = store.require(name)?;
    let (dir, staged) = temp_store(store)?;
    for digest in store.reachable(&image.descriptor)? {
        let from = store.blobs().blob_path(&digest);
        let to = staged.blobs().blob_path(&digest);
        if fs_err::hard_link(&from, &to).is_err() {
            fs_err::copy(&from, &to)?;
        }
    }
    staged.set_ref(new_name, &image.descriptor)?;
    Ok(Staged {
        store: staged,
        name: normalize_name(new_name)?,
        _dir: Some(dir),
    })
}

fn import_into(store: &ImageStore, path: &Path, name: Option<&str>, tag: Option<&str>) -> Result<String> {
    let options = ImportOptions {
        name: name.map(str::to_owned),
        ..ImportOptions::default()
    };
    let imported = match import(store, path, &options) {
        Err(kiln_oci::ImageError::NeedsName { .. }) if name.is_none() => {
            let options = ImportOptions {
                name: Some("kiln-copy:latest".to_owned()),
                ..options
            };
            import(store, path, &options)
        }
        other => other,
    }
    .with_context(|| format!("cannot read {}", path.display()))?;
    let chosen = match tag {
        Some(tag) => imported.iter().find(|i| split_name(&i.name).1 == Some(tag)),
        None => imported.first(),
    };
    chosen.map(|i| i.name.clone()).ok_or_else(|| {
        anyhow!(
            "{} has no image{}",
            path.display(),
            tag.map(|t| format!(" tagged `{t}`")).unwrap_or_default()
        )
    })
}

pub fn run(global: &GlobalArgs, args: &CopyArgs) -> Result<()> {
    let source = parse_side(&args.source)?;
    let destination = parse_side(&args.destination)?;
    let platforms = platform_choice(&args.platforms)?;
    let store = open_store(global)?;
    let client = client(global, &args.registry)?;
    block_on(async {
        // 1. Get the image into a store: the user's when it is there or going there, else a temporary one.
        let staged = match (&source, &destination) {
            (Side::Store(name), _) => Staged {
                store: store.clone(),
                name: name.clone(),
                _dir: None,
            },
            (Side::Registry(r), Side::Store(name)) => {
                let pulled = client
                    .pull_image(r, &store, name, &platforms)
                    .await
                    .with_context(|| format!("cannot pull {r}"))?;
                return print_transferred(args.registry.json, &pulled, Some(name));
            }
            (Side::Registry(r), Side::Registry(target)) => {
                check_destination(target)?;
                let copied = client
                    .copy_image(r, target, &platforms)
                    .await
                    .with_context(|| format!("cannot copy {r} to {target}"))?;
                return print_transferred(args.registry.json, &copied, None);
            }
            (Side::Registry(r), _) => {
                let (dir, temp) = temp_store(&store)?;
                let name = r.to_string();
                client
                    .pull_image(r, &temp, &name, &platforms)
                    .await
                    .with_context(|| format!("cannot pull {r}"))?;
                Staged {
                    store: temp,
                    name: normalize_name(&name)?,
                    _dir: Some(dir),
                }
            }
            (Side::Archive(path) | Side::Layout(path, _), Side::Store(name)) => {
                let tag = match &source {
                    Side::Layout(_, tag) => tag.as_deref(),
                    _ => None,
                };
                let (dir, temp) = temp_store(&store)?;
                let imported = import_into(&temp, path, None, tag)?;
                let staged = restage(&temp, &imported, name)?;
                // Into the user's store: link the blobs over and name the image.
                let image = staged.store.require(&staged.name)?;
                let _writing = store.lock_for_writing()?;
                for digest in staged.store.reachable(&image.descriptor)? {
                    let from = staged.store.blobs().blob_path(&digest);
                    let to = store.blobs().blob_path(&digest);
                    if store.blobs().size(&digest)?.is_none() && fs_err::hard_link(&from, &to).is_err() {
                        fs_err::copy(&from, &to)?;
                    }
                }
                store.set_ref(name, &image.descriptor)?;
                drop(dir);
                return print_stored(args.registry.json, name, &image.descriptor);
            }
            (Side::Archive(path) | Side::Layout(path, _), _) => {
                let tag = match &source {
                    Side::Layout(_, tag) => tag.as_deref(),
                    _ => None,
                };
                let (dir, temp) = temp_store(&store)?;
                let name = import_into(&temp, path, None, tag)?;
                Staged {
                    store: temp,
                    name,
                    _dir: Some(dir),
                }
            }
        };
        // 2. From that store to the destination.
        match &destination {
            Side::Registry(target) => {
                let image = staged.store.require(&staged.name)?;
                let mount_from = match &source {
                    Side::Registry(r) if r.registry == target.registry => Some(r.repository.as_str()),
                    _ => None,
                };
                let pushed = push(&client, &staged.store, &image.descriptor, target, mount_from).await?;
                print_transferred(args.registry.json, &pushed, None)
            }
            Side::Store(name) => {
                let image = staged.store.require(&staged.name)?;
                store.set_ref(name, &image.descriptor)?;
                print_stored(args.registry.json, name, &image.descriptor)
            }
            Side::Archive(path) => {
                let format = ExportFormat::for_path(path)?;
                let d = export(&staged.store, &staged.name, path, format)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                print_stored(args.registry.json, &path.display().to_string(), &d)
            }
            Side::Layout(dir, tag) => {
                let (repo, _) = split_name(&staged.name);
                let staged = match tag {
                    Some(tag) => restage(&staged.store, &staged.name, &format!("{repo}:{tag}"))?,
                    None => staged,
                };
                let d = export(&staged.store, &staged.name, dir, ExportFormat::OciLayout)
                    .with_context(|| format!("cannot write {}", dir.display()))?;
                print_stored(args.registry.json, &dir.display().to_string(), &d)
            }
        }
    })
}

async fn push(
    client: &Client,
    store: &ImageStore,
    descriptor: &kiln_oci::manifest::Descriptor,
    target: &Reference,
    mount_from: Option<&str>,
) -> Result<kiln_client::Transferred> {
    check_destination(target)?;
    client
        .push_image(store, descriptor, target, mount_from)
        .await
        .with_context(|| format!("cannot push to {target}"))
}

fn check_destination(target: &Reference) -> Result<()> {
    if target.tag.is_none() && target.digest.is_none() {
        bail!("{target}: give the destination a tag");
    }
    Ok(())
}

fn print_stored(json: bool, name: &str, d: &kiln_oci::manifest::Descriptor) -> Result<()> {
    output::stdout(|out| {
        if json {
            let value = serde_json::json!({
                "name": name,
                "digest": d.digest.to_string(),
                "mediaType": d.media_type,
                "size": d.size,
            });
            serde_json::to_writer_pretty(&mut *out, &value)?;
            writeln!(out)
        } else {
            writeln!(out, "{name}\t{}", d.digest)
        }
    })
}
