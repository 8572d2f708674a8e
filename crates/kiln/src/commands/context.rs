//! `kiln context`: writes the context of an image, exactly the bytes taskgraph hashes, to a file.

use std::io::BufWriter;
use std::path::Path;

use anyhow::{Result, bail};
use kiln_tree::{Context, HashMode, TeeHash, collect, context_hash, write_tar};

use crate::cli::ContextArgs;
use kiln_plan::Workspace;

/// taskgraph's gzip mtime (2016-01-01T00:00:00Z), so `.tar.gz` contexts match its artifacts' headers.
const TASKGRAPH_GZIP_MTIME: u32 = 1_451_606_400;

enum Format {
    Tar,
    Gzip,
    Zstd,
}

fn format_of(path: &Path) -> Result<Format> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    Ok(if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Format::Gzip
    } else if name.ends_with(".tar.zst") {
        Format::Zstd
    } else if name.ends_with(".tar") {
        Format::Tar
    } else {
        bail!(
            "{}: unknown format; the name must end in .tar, .tar.gz or .tar.zst",
            path.display()
        )
    })
}

/// Streams the context tar into `sink`, hashing the uncompressed bytes on the way; returns the sink (to
/// be finished by the caller), the hex SHA-256 of the tar and its length.
fn tar_through<W: std::io::Write>(ctx: &Context, sink: W) -> Result<(W, String, u64)> {
    use sha2::Digest;
    let (tee, size) = write_tar(
        ctx,
        TeeHash {
            hasher: sha2::Sha256::new(),
            inner: sink,
        },
    )?;
    Ok((tee.inner, hex::encode(tee.hasher.finalize()), size))
}

pub fn run(ws: &Workspace, global: &crate::cli::GlobalArgs, args: &ContextArgs) -> Result<()> {
    let image = ws.require_image(&args.image)?;
    let format = format_of(&args.output)?;
    let ctx = collect(&ws.repo.config, image)?;
    crate::settings::warn(global.quiet, ws, &ctx.warnings);

    let tmp = kiln_oci::files::temp_beside(&args.output, ".kiln-context-")?;
    let file = BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?);
    let tar_name = format!("{}.tar", args.image);
    let (tar_hash, size) = match format {
        Format::Tar => {
            let (file, hash, size) = tar_through(&ctx, file)?;
            file.into_inner().map_err(|e| e.into_error())?;
            (hash, size)
        }
        Format::Gzip => {
            let gz = flate2::GzBuilder::new()
                .filename(tar_name.as_bytes())
                .mtime(TASKGRAPH_GZIP_MTIME)
                .write(file, flate2::Compression::best());
            let (gz, hash, size) = tar_through(&ctx, gz)?;
            gz.finish()?.into_inner().map_err(|e| e.into_error())?;
            (hash, size)
        }
        Format::Zstd => {
            let mut encoder = zstd::Encoder::new(file, 3)?;
            encoder.multithread(2)?;
            let (encoder, hash, size) = tar_through(&ctx, encoder)?;
            encoder.finish()?.into_inner().map_err(|e| e.into_error())?;
            (hash, size)
        }
    };
    kiln_oci::files::persist(tmp, &args.output, 0o644)?;

    // In taskgraph mode the hash is the tar's own; in native mode it is the Merkle hash over the entries.
    let hash = match ctx.mode {
        HashMode::Taskgraph => tar_hash,
        HashMode::Native => context_hash(&ctx, &ws.stat_cache())?.hex,
    };
    if !global.quiet {
        eprintln!(
            "wrote {} ({} files, {size} tar bytes); context hash {hash}",
            args.output.display(),
            ctx.entries.len()
        );
    }
    crate::output::stdout(|out| writeln!(out, "{hash}"))
}
