//! `kiln untag REPO:TAG…` deletes tags (never manifests); `kiln untag REPO… --older-than 24h --match
//! 'change_*'` sweeps the tags matching the glob whose image's config says it was created longer ago.

use anyhow::{Context as _, Result, anyhow};

use crate::cli::{GlobalArgs, UntagArgs};
use crate::commands::registry::{block_on, client, parse_reference};
use crate::output;

pub fn run(global: &GlobalArgs, args: &UntagArgs) -> Result<()> {
    let references = args
        .references
        .iter()
        .map(|r| parse_reference(r))
        .collect::<Result<Vec<_>>>()?;
    let older_than = args
        .older_than
        .as_deref()
        .map(|d| {
            kiln_tree::parse_duration(d)
                .map(std::time::Duration::from_secs)
                .map_err(|_| anyhow!("--older-than `{d}` is not a duration such as 24h or 7d"))
        })
        .transpose()?;
    let client = client(global, &args.registry)?;
    let deleted = block_on(async {
        let mut targets = Vec::new();
        for reference in &references {
            match older_than {
                Some(age) => {
                    for tag in client
                        .tags_older_than(reference, &args.pattern, age)
                        .await
                        .with_context(|| format!("cannot list the tags of {}", reference.name()))?
                    {
                        targets.push(reference.with_tag(&tag));
                    }
                }
                None => targets.push(reference.clone()),
            }
        }
        if !args.dry_run {
            for target in &targets {
                client
                    .delete_tag(target)
                    .await
                    .with_context(|| format!("cannot delete tag {target}"))?;
            }
        }
        Ok(targets)
    })?;
    output::stdout(|out| {
        let names: Vec<String> = deleted.iter().map(ToString::to_string).collect();
        if args.registry.json {
            let value = serde_json::json!({"deleted": names, "dryRun": args.dry_run});
            serde_json::to_writer_pretty(&mut *out, &value)?;
            writeln!(out)
        } else {
            for name in names {
                writeln!(out, "{name}")?;
            }
            Ok(())
        }
    })
}
