//! Images found by folder: every subfolder of the images root that holds a Dockerfile is an image, and a
//! `FROM` naming another such image makes it the parent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::TreeError;
use crate::kiln_toml::ImageSection;
use crate::model::ImageDef;
use crate::registry_image::image_kind;

/// Lists the image folders under `images_dir` (relative to `root`).
fn image_folders(root: &Path, images_dir: &Path) -> Result<Vec<String>, TreeError> {
    let abs = root.join(images_dir);
    let entries = std::fs::read_dir(&abs).map_err(|e| TreeError::io(&abs, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| TreeError::io(&abs, e))?;
        let path = entry.path();
        if !path.join("Dockerfile").is_file() {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|raw| TreeError::ContextFile {
                image: raw.to_string_lossy().into_owned(),
                path: path.clone(),
                message: "image folder name is not UTF-8".into(),
            })?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// The image references of a Dockerfile's `FROM` lines (flags and stage aliases skipped), with their lines.
pub fn from_references(dockerfile: &str) -> Vec<(usize, String)> {
    let mut stages = BTreeSet::new();
    let mut refs = Vec::new();
    for (index, line) in dockerfile.lines().enumerate() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        let Some(reference) = rest.first() else { continue };
        if let [_, kw, alias, ..] = rest.as_slice()
            && kw.eq_ignore_ascii_case("AS")
        {
            stages.insert(alias.to_ascii_lowercase());
        }
        if !stages.contains(&reference.to_ascii_lowercase()) || rest.len() > 1 {
            refs.push((index + 1, (*reference).to_owned()));
        }
    }
    refs
}

/// The repository name of a reference: without `@digest` and `:tag`.
fn repository_of(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

/// Finds the in-tree parent named by `FROM`, if any.
fn parent_from_dockerfile(
    name: &str,
    dockerfile: &Path,
    rel_dockerfile: &Path,
    known: &BTreeSet<String>,
) -> Result<Option<String>, TreeError> {
    let bytes = crate::preprocess::read_dockerfile(dockerfile)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut parents: Vec<(usize, String)> = from_references(&text)
        .into_iter()
        .filter_map(|(line, reference)| {
            let repo = repository_of(&reference);
            (known.contains(repo) && repo != name).then(|| (line, repo.to_owned()))
        })
        .collect();
    parents.dedup_by(|a, b| a.1 == b.1);
    match parents.as_slice() {
        [] => Ok(None),
        [(_, parent)] => Ok(Some(parent.clone())),
        [(_, first), (line, second), ..] => Err(TreeError::Include {
            image: name.to_owned(),
            file: rel_dockerfile.to_owned(),
            line: *line,
            message: format!(
                "FROM names two in-tree images (`{first}` and `{second}`); set `parent` in [image.{name}] of kiln.toml"
            ),
        }),
    }
}

/// Builds the image list from the folders under `images_dir` and the `[image.*]` sections of kiln.toml.
pub fn load(
    root: &Path,
    images_dir: &Path,
    sections: &BTreeMap<String, ImageSection>,
    defined_in: Option<&Path>,
) -> Result<Vec<ImageDef>, TreeError> {
    let folders = image_folders(root, images_dir)?;
    let mut names: BTreeSet<String> = folders.iter().cloned().collect();
    names.extend(sections.keys().cloned());

    let mut images = Vec::with_capacity(names.len());
    for name in &names {
        let section = sections.get(name);
        let definition = section
            .and_then(|s| s.definition.clone())
            .unwrap_or_else(|| name.clone());
        let dir = images_dir.join(&definition);
        let rel_dockerfile = dir.join("Dockerfile");
        let abs_dockerfile = root.join(&rel_dockerfile);
        let defined_in: PathBuf = match (section, defined_in) {
            (Some(_), Some(file)) => file.to_owned(),
            _ => rel_dockerfile.clone(),
        };
        if !root.join(&dir).is_dir() {
            return Err(TreeError::MissingFolder {
                image: name.clone(),
                path: dir,
            });
        }
        if !abs_dockerfile.is_file() {
            return Err(TreeError::MissingDockerfile {
                image: name.clone(),
                path: dir,
            });
        }
        let parent = match section.and_then(|s| s.parent.clone()) {
            Some(parent) => Some(parent),
            None => parent_from_dockerfile(name, &abs_dockerfile, &rel_dockerfile, &names)?,
        };
        let kind = image_kind(root, &dir, images_dir)?;
        images.push(ImageDef {
            name: name.clone(),
            definition,
            dir,
            parent,
            args: section.map(|s| s.args.clone()).unwrap_or_default(),
            symbol: None,
            kind,
            defined_in,
        });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_lines_skip_flags_and_stage_aliases() {
        let df = "FROM --platform=linux/amd64 base:1.0 AS build\nRUN x\nfrom build\nFROM registry:5000/tools@sha256:ab\n";
        let refs = from_references(df);
        assert_eq!(
            refs,
            vec![
                (1, "base:1.0".into()),
                (4, "registry:5000/tools@sha256:ab".into())
            ]
        );
    }

    #[test]
    fn repository_strips_tag_and_digest_not_port() {
        assert_eq!(repository_of("base:1.0"), "base");
        assert_eq!(repository_of("registry:5000/tools"), "registry:5000/tools");
        assert_eq!(
            repository_of("registry:5000/tools:2@sha256:ab"),
            "registry:5000/tools"
        );
    }
}
