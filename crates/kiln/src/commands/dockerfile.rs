//! `kiln dockerfile`: evaluates a Dockerfile as BuildKit would and prints what it found.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

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

/// The Dockerfile at `path` (`-`: stdin) as text, with its label for messages; one over
/// [`kiln_dockerfile::MAX_DOCKERFILE_BYTES`] is refused without reading more than that.
pub(crate) fn read_dockerfile(path: &Path) -> Result<(String, String)> {
    let (label, bytes) = if path.as_os_str() == "-" {
        let limit = kiln_dockerfile::MAX_DOCKERFILE_BYTES;
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the Dockerfile from stdin")?;
        if bytes.len() > limit {
            bail!("<stdin>: a Dockerfile of more than {limit} bytes is refused");
        }
        ("<stdin>".to_owned(), bytes)
    } else {
        (path.display().to_string(), kiln_tree::read_dockerfile(path)?)
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{label}: not valid UTF-8 at byte {}",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok((label, text))
}

pub fn run(args: &DockerfileArgs) -> Result<()> {
    let (label, source) = read_dockerfile(&args.file)?;
    let options = EvalOptions {
        build_args: parse_build_args(&args.build_args)?,
        target: args.target.clone(),
        target_platform: args.platform.clone(),
        parent_image: args.parent_image.clone(),
        // As the in-tree build (and kaniko): a child Dockerfile's `FROM $DOCKER_IMAGE_PARENT` needs no ARG.
        predeclare_parent_arg: args.parent_image.is_some(),
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
