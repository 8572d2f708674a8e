//! `kiln image import|ls|inspect|export|rm`: the content store (kiln-oci's `ImageStore`). Needs no
//! repository; the store is `--store`, else `<state-dir>/store`, else `~/.local/share/kiln/store`.

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow, bail};
use kiln_oci::ImageStore;
use kiln_oci::compress::Compression;
use kiln_oci::export::{ExportFormat, export};
use kiln_oci::import::{ImportOptions, import};

use crate::cli::{
    GlobalArgs, ImageCommand, ImageExportArgs, ImageImportArgs, ImageInspectArgs, ImageLsArgs, ImageRmArgs,
    LayerCompressionArg,
};
use crate::output;

/// Where the store lives: `--store`/`KILN_STORE`; `<state-dir>/store` when `--state-dir` is given or a
/// repository is found (`<repo>/.kiln/store`); otherwise `$XDG_DATA_HOME/kiln/store` or
/// `~/.local/share/kiln/store`.
pub fn store_dir(global: &GlobalArgs) -> Result<PathBuf> {
    if let Some(store) = &global.store {
        return Ok(store.clone());
    }
    if let Some(state) = &global.state_dir {
        return Ok(state.join("store"));
    }
    if let Some(repo) = &global.repo {
        return Ok(repo.join(".kiln").join("store"));
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    if let Some(root) = kiln_tree::find_repo_root(&cwd)? {
        return Ok(root.join(".kiln").join("store"));
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(data).join("kiln").join("store"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/kiln/store")),
        None => {
            bail!("no repository here and HOME is not set: choose a store with --store DIR or KILN_STORE")
        }
    }
}

pub fn open_store(global: &GlobalArgs) -> Result<ImageStore> {
    let dir = store_dir(global)?;
    ImageStore::open(&dir).with_context(|| format!("cannot open the image store {}", dir.display()))
}

pub fn run(global: &GlobalArgs, command: &ImageCommand) -> Result<()> {
    let dir = store_dir(global)?;
    // Reading a store that does not exist yet answers from the empty store and creates nothing.
    if !dir.exists() {
        let empty = |names: String| {
            anyhow!(
                "no image named {names} in the store {} (it is empty)",
                dir.display()
            )
        };
        match command {
            ImageCommand::Import(_) => {}
            ImageCommand::Ls(args) => {
                return output::stdout(|out| {
                    if args.json {
                        writeln!(out, "[]")
                    } else {
                        writeln!(out, "NAME\tDIGEST\tSIZE")
                    }
                });
            }
            ImageCommand::Inspect(args) => return Err(empty(format!("`{}`", args.name))),
            ImageCommand::Export(args) => {
                // A wrong output format is the first thing to report, as with a populated store.
                ExportFormat::for_path(&args.output)?;
                return Err(empty(format!("`{}`", args.name)));
            }
            ImageCommand::Rm(args) => {
                let names: Vec<String> = args.names.iter().map(|n| format!("`{n}`")).collect();
                return Err(empty(names.join(", ")));
            }
        }
    }
    let store =
        ImageStore::open(&dir).with_context(|| format!("cannot open the image store {}", dir.display()))?;
    match command {
        ImageCommand::Import(args) => run_import(&store, args),
        ImageCommand::Ls(args) => run_ls(&store, args),
        ImageCommand::Inspect(args) => run_inspect(&store, args),
        ImageCommand::Export(args) => run_export(&store, args),
        ImageCommand::Rm(args) => run_rm(&store, args),
    }
}

fn run_import(store: &ImageStore, args: &ImageImportArgs) -> Result<()> {
    let options = ImportOptions {
        name: args.name.clone(),
        compression: match args.compression {
            LayerCompressionArg::Gzip => Compression::Gzip,
            LayerCompressionArg::Zstd => Compression::Zstd,
        },
    };
    let imported = import(store, &args.path, &options)
        .with_context(|| format!("cannot import {}", args.path.display()))?;
    output::stdout(|out| {
        if args.json {
            let list: Vec<_> = imported
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "name": i.name,
                        "digest": i.descriptor.digest.to_string(),
                        "mediaType": i.descriptor.media_type,
                        "format": i.format.to_string(),
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &list)?;
            writeln!(out)
        } else {
            for i in &imported {
                writeln!(out, "{}\t{}\t{}", i.name, i.descriptor.digest, i.format)?;
            }
            Ok(())
        }
    })
}

fn run_ls(store: &ImageStore, args: &ImageLsArgs) -> Result<()> {
    let mut rows = Vec::new();
    for image in store.refs()? {
        // The size of what the image's blobs take in the store.
        let mut size = 0;
        for digest in store.reachable(&image.descriptor)? {
            size += store.blobs().size(&digest)?.unwrap_or(0);
        }
        rows.push((image, size));
    }
    output::stdout(|out| {
        if args.json {
            let list: Vec<_> = rows
                .iter()
                .map(|(image, size)| {
                    serde_json::json!({
                        "name": image.name,
                        "digest": image.descriptor.digest.to_string(),
                        "mediaType": image.descriptor.media_type,
                        "size": size,
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &list)?;
            writeln!(out)
        } else {
            writeln!(out, "NAME\tDIGEST\tSIZE")?;
            for (image, size) in &rows {
                writeln!(out, "{}\t{}\t{}", image.name, image.descriptor.digest, size)?;
            }
            Ok(())
        }
    })
}

fn run_inspect(store: &ImageStore, args: &ImageInspectArgs) -> Result<()> {
    let image = store.require(&args.name)?;
    let resolved = store.resolve(&image.descriptor)?;
    let config: serde_json::Value = serde_json::from_slice(&resolved.config)
        .with_context(|| format!("config {} is not JSON", resolved.manifest.config.digest))?;
    let doc = serde_json::json!({
        "name": image.name,
        "digest": image.descriptor.digest.to_string(),
        "mediaType": image.descriptor.media_type,
        "manifestDigest": resolved.manifest_descriptor.digest.to_string(),
        "manifest": resolved.manifest,
        "config": config,
    });
    output::stdout(|out| {
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        writeln!(out)
    })
}

fn run_export(store: &ImageStore, args: &ImageExportArgs) -> Result<()> {
    let format = ExportFormat::for_path(&args.output)?;
    let descriptor = export(store, &args.name, &args.output, format)
        .with_context(|| format!("cannot export {} to {}", args.name, args.output.display()))?;
    eprintln!(
        "kiln: exported {} ({}) to {}",
        args.name,
        descriptor.digest,
        args.output.display()
    );
    Ok(())
}

fn run_rm(store: &ImageStore, args: &ImageRmArgs) -> Result<()> {
    let mut missing = Vec::new();
    for name in &args.names {
        match store.remove_ref(name)? {
            Some(_) => eprintln!("kiln: removed {name}"),
            None => missing.push(name.as_str()),
        }
    }
    if !missing.is_empty() {
        bail!(
            "no image named {} in the store {}",
            missing.join(", "),
            store.root().display()
        );
    }
    Ok(())
}
