//! `kiln images`: the repository's images.

use anyhow::Result;
use serde_json::json;

use crate::cli::ImagesArgs;
use crate::output::stdout;
use kiln_plan::Workspace;

pub fn run(ws: &Workspace, args: &ImagesArgs) -> Result<()> {
    let images = &ws.repo.images;
    stdout(|out| {
        if args.json {
            let list: Vec<_> = images
                .iter()
                .map(|i| {
                    json!({
                        "name": i.name,
                        "definition": i.definition,
                        "folder": i.dir,
                        "parent": i.parent,
                        "kind": i.kind.label(),
                        "registry": i.kind,
                        "args": i.args,
                        "symbol": i.symbol,
                    })
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &list)?;
            return writeln!(out);
        }
        let width = images.iter().map(|i| i.name.len()).max().unwrap_or(4).max(4);
        let folder_width = images
            .iter()
            .map(|i| i.dir.display().to_string().len())
            .max()
            .unwrap_or(6)
            .max(6);
        writeln!(
            out,
            "{:width$}  {:folder_width$}  {:12}  KIND",
            "NAME", "FOLDER", "PARENT"
        )?;
        for i in images {
            writeln!(
                out,
                "{:width$}  {:folder_width$}  {:12}  {}",
                i.name,
                i.dir.display(),
                i.parent.as_deref().unwrap_or("-"),
                i.kind.label()
            )?;
        }
        Ok(())
    })
}
