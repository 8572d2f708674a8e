//! `kiln digest`: an image's cache digest, and with `--explain` what goes into it.

use anyhow::Result;
use kiln_tree::hash_images;

use crate::cli::{DigestArgs, GlobalArgs};
use crate::output::stdout;
use kiln_plan::Workspace;

pub fn run(ws: &Workspace, global: &GlobalArgs, args: &DigestArgs) -> Result<()> {
    let selection = kiln_plan::selection(ws, std::slice::from_ref(&args.image))?;
    let cache = ws.stat_cache();
    let hashed = hash_images(&ws.repo, &selection, &cache)?;
    let _ = cache.save();
    let Some(mine) = hashed.iter().find(|h| h.name == args.image) else {
        anyhow::bail!("image `{}` was not hashed", args.image);
    };
    crate::settings::warn(global.quiet, ws, &mine.warnings);
    stdout(|out| {
        writeln!(out, "{}", mine.digest.hex)?;
        if args.explain {
            for (i, part) in mine.digest.parts.iter().enumerate() {
                writeln!(out, "  part {}: {part}", i + 1)?;
            }
            if let Some(run_task) = &mine.run_task {
                writeln!(
                    out,
                    "  run-task files: {} from {}",
                    run_task.dir.display(),
                    run_task.source
                )?;
            }
        }
        Ok(())
    })
}
