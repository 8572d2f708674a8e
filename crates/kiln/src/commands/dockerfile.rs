//! `kiln dockerfile`: evaluates a Dockerfile as BuildKit would and prints what it found.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{Context as _, Result, bail};
use kiln_dockerfile::{Base, EvalOptions, evaluate};

use crate::cli::DockerfileArgs;
use crate::output::stdout;

fn parse_build_args(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--build-arg `{pair}` must be KEY=value");
        };
        if key.is_empty() {
            bail!("--build-arg `{pair}` has an empty key");
        }
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

pub fn run(args: &DockerfileArgs) -> Result<()> {
    let (label, source) = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the Dockerfile from stdin")?;
        ("<stdin>".to_owned(), text)
    } else {
        let bytes = fs_err::read(&args.file)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}: not valid UTF-8 at byte {}",
                args.file.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        (args.file.display().to_string(), text)
    };
    let options = EvalOptions {
        build_args: parse_build_args(&args.build_args)?,
        target: args.target.clone(),
        target_platform: args.platform.clone(),
        parent_image: args.parent_image.clone(),
        file_name: Some(label.clone()),
        ..EvalOptions::default()
    };
    let description = evaluate(&source, &options)?;
    for warning in &description.warnings {
        eprintln!(
            "warning: {label}:{}: {} ({})",
            warning.line, warning.message, warning.rule
        );
    }
    stdout(|out| {
        if args.json {
            serde_json::to_writer_pretty(&mut *out, &description)?;
            return writeln!(out);
        }
        for stage in &description.stages {
            let base = match &stage.base {
                Base::Scratch => "scratch".to_owned(),
                Base::Image { reference } => reference.clone(),
                Base::Parent { reference } => format!("{reference} (in-tree parent)"),
                Base::Stage { index, name } => {
                    format!("stage {}", name.clone().unwrap_or_else(|| index.to_string()))
                }
            };
            let name = stage
                .name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            writeln!(out, "stage {}{name} FROM {base}", stage.index)?;
            for step in &stage.instructions {
                writeln!(out, "  {:>4}  {}", step.location.start_line, step.source)?;
            }
        }
        Ok(())
    })
}
