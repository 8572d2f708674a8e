//! `kiln gc`: removes the content store's blobs that no image name reaches.

use anyhow::{Context as _, Result};

use crate::cli::{GcArgs, GlobalArgs};
use crate::commands::image::{open_store, store_dir};
use crate::output;

pub fn run(global: &GlobalArgs, args: &GcArgs) -> Result<()> {
    if !store_dir(global)?.exists() {
        // Nothing was ever stored: nothing to collect, and nothing to create.
        return output::stdout(|out| {
            if args.json {
                writeln!(out, "{{\"removed\": [], \"freed\": 0, \"kept\": 0}}")
            } else {
                writeln!(out, "removed 0 blobs, freed 0 bytes, kept 0 blobs")
            }
        });
    }
    let store = open_store(global)?;
    let report = store
        .gc()
        .with_context(|| format!("cannot collect garbage in {}", store.root().display()))?;
    output::stdout(|out| {
        if args.json {
            let doc = serde_json::json!({
                "removed": report.removed.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "freed": report.freed,
                "kept": report.kept,
            });
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)
        } else {
            writeln!(
                out,
                "removed {} blobs, freed {} bytes, kept {} blobs",
                report.removed.len(),
                report.freed,
                report.kept
            )
        }
    })
}
