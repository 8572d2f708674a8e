//! `kiln registry gc|fsck --root DIR`: offline maintenance of a `kiln serve` root.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kiln_registry::storage::{GcOptions, GcReport, TagExpiry};
use kiln_registry::{FsStorage, StorageError};

use crate::cli::{RegistryCommand, RegistryFsckArgs, RegistryGcArgs};

pub fn run(command: &RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Gc(args) => gc(args),
        RegistryCommand::Fsck(args) => fsck(args),
    }
}

/// `--gc-grace`/`--grace` and `--expire-tags` as GC options.
pub fn gc_options(grace: Option<&str>, expire_tags: &[String], dry_run: bool) -> Result<GcOptions> {
    let grace = match grace {
        Some(text) => duration(text).context("grace period")?,
        None => GcOptions::default().grace,
    };
    let expire_tags = expire_tags
        .iter()
        .map(|rule| {
            let Some((pattern, after)) = rule.split_once('=') else {
                bail!("--expire-tags `{rule}`: expected PATTERN=DURATION, such as `change_*=24h`");
            };
            Ok(TagExpiry::new(pattern, duration(after)?)?)
        })
        .collect::<Result<_>>()?;
    Ok(GcOptions {
        dry_run,
        grace,
        expire_tags,
    })
}

fn duration(text: &str) -> Result<Duration> {
    kiln_tree::parse_duration(text)
        .map(Duration::from_secs)
        .map_err(|e| anyhow::anyhow!(e))
}

fn open(root: &std::path::Path) -> Result<FsStorage> {
    if !root.join("kiln-registry.json").is_file() {
        bail!(
            "{} is not a kiln registry root (no kiln-registry.json)",
            root.display()
        );
    }
    FsStorage::open(root).with_context(|| format!("cannot open registry root {}", root.display()))
}

fn gc(args: &RegistryGcArgs) -> Result<()> {
    let options = gc_options(args.grace.as_deref(), &args.expire_tags, args.dry_run)?;
    let storage = open(&args.root)?;
    // A server on this root writes what this process cannot order against its sweep: refuse.
    let _lock = match storage.lock_root() {
        Ok(lock) => lock,
        Err(e @ StorageError::RootLocked { .. }) => bail!(
            "{e}: stop that kiln serve first, or let it collect garbage while it serves \
             (kiln serve --gc-interval)"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot lock {}", args.root.display())),
    };
    let report = storage.gc(&options)?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)?;
        crate::output::stdout(|w| writeln!(w, "{text}"))?;
        return Ok(());
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for (what, items) in [
        ("expired tag", &report.expired_tags),
        ("manifest", &report.manifests),
        ("layer link", &report.layer_links),
        ("blob", &report.blobs),
        ("upload", &report.uploads),
    ] {
        for item in items {
            out.push_str(&format!("{verb} {what} {item}\n"));
        }
    }
    out.push_str(&format!("{verb} {}\n", gc_counts(&report)));
    crate::output::stdout(|w| w.write_all(out.as_bytes()))
}

/// What a gc removed (or would remove), counted on one line.
pub fn gc_counts(r: &GcReport) -> String {
    format!(
        "{} blobs ({} bytes), {} manifests, {} expired tags, {} uploads",
        r.blobs.len(),
        r.bytes,
        r.manifests.len(),
        r.expired_tags.len(),
        r.uploads.len()
    )
}

fn fsck(args: &RegistryFsckArgs) -> Result<()> {
    let problems = open(&args.root)?.fsck()?;
    if args.json {
        let text = serde_json::to_string_pretty(&problems)?;
        crate::output::stdout(|w| writeln!(w, "{text}"))?;
    } else {
        let mut out = String::new();
        for p in &problems {
            out.push_str(&format!("{}: {}\n", p.path, p.problem));
        }
        crate::output::stdout(|w| w.write_all(out.as_bytes()))?;
    }
    if !problems.is_empty() {
        bail!("{} problems in {}", problems.len(), args.root.display());
    }
    eprintln!("kiln registry fsck: {} is consistent", args.root.display());
    Ok(())
}
