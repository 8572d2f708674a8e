//! `kiln gc`: removes the content store's blobs that no image name or build-cache record reaches, and
//! the builder's state that nothing needs (docs/cli.md).

use anyhow::{Context as _, Result};
use kiln_build::gc::{GcOptions, GcReport, Tally};

use crate::cli::{GcArgs, GlobalArgs};
use crate::commands::image::{open_store, store_dir};
use crate::output;

pub fn run(global: &GlobalArgs, args: &GcArgs) -> Result<()> {
    let options = GcOptions {
        drop_build_cache: args.drop_build_cache,
        dry_run: args.dry_run,
    };
    if !store_dir(global)?.exists() {
        // Nothing was ever stored: nothing to collect, and nothing to create.
        return print(args, &GcReport::default());
    }
    let store = open_store(global)?;
    let lock = match store.try_lock_for_gc()? {
        Some(lock) => lock,
        None => {
            eprintln!(
                "kiln: waiting for the builds and imports running on {} to finish",
                store.root().display()
            );
            store.lock_for_gc()?
        }
    };
    let report = kiln_build::gc::collect(&store, &lock, options)
        .with_context(|| format!("cannot collect garbage in {}", store.root().display()))?;
    drop(lock);
    print(args, &report)
}

fn print(args: &GcArgs, report: &GcReport) -> Result<()> {
    output::stdout(|out| {
        if args.json {
            serde_json::to_writer_pretty(&mut *out, &json(args, report))?;
            return writeln!(out);
        }
        let (removed, freed) = if args.dry_run {
            ("would remove", "would free")
        } else {
            ("removed", "freed")
        };
        let blobs = &report.blobs;
        writeln!(
            out,
            "{removed} {} blobs, {freed} {} bytes, kept {} blobs",
            blobs.removed.len(),
            blobs.freed,
            blobs.kept
        )?;
        let lines = [
            ("build cache records", &report.cache_records),
            ("unpacked layer folders", &report.layer_folders),
            ("cache mount folders", &report.cache_mounts),
            ("scratch folders", &report.scratch),
        ];
        for (what, tally) in lines {
            writeln!(
                out,
                "{removed} {} {what}, {freed} {} bytes, kept {}",
                tally.removed, tally.freed, tally.kept
            )?;
        }
        writeln!(out, "{freed} {} bytes in total", report.freed())
    })
}

fn json(args: &GcArgs, report: &GcReport) -> serde_json::Value {
    let tally = |t: &Tally| serde_json::json!({"removed": t.removed, "freed": t.freed, "kept": t.kept});
    serde_json::json!({
        "dryRun": args.dry_run,
        "dropBuildCache": args.drop_build_cache,
        "removed": report.blobs.removed.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "freed": report.freed(),
        "kept": report.blobs.kept,
        "blobs": {
            "removed": report.blobs.removed.len(),
            "freed": report.blobs.freed,
            "kept": report.blobs.kept,
            "ingestFiles": report.blobs.ingest_files,
        },
        "cacheRecords": tally(&report.cache_records),
        "layerFolders": tally(&report.layer_folders),
        "cacheMounts": tally(&report.cache_mounts),
        "scratch": tally(&report.scratch),
    })
}
