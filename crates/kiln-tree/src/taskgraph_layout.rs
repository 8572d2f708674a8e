//! Reads a taskgraph repository as taskgraph does: `taskcluster/config.yml` and the docker-image kind's
//! `kind.yml`, image folders under `taskcluster/docker/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::duration::parse_duration;
use crate::error::TreeError;
use crate::model::{DEFAULT_EXPIRY_SECS, DEFAULT_LEVEL1_EXPIRY_SECS, ImageDef, IndexSettings};
use crate::registry_image::image_kind;

/// `taskcluster/config.yml`, the parts kiln reads.
#[derive(Debug, Deserialize)]
struct GraphConfig {
    #[serde(rename = "trust-domain")]
    trust_domain: String,
    #[serde(default)]
    taskgraph: TaskgraphSection,
    #[serde(rename = "task-expires-after")]
    task_expires_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct TaskgraphSection {
    #[serde(rename = "cached-task-prefix")]
    cached_task_prefix: Option<String>,
    #[serde(rename = "cache-pull-requests")]
    cache_pull_requests: Option<bool>,
    #[serde(rename = "docker-image-kind")]
    docker_image_kind: Option<String>,
}

/// The docker-image kind file.
#[derive(Debug, Deserialize)]
struct KindFile {
    #[serde(alias = "jobs")]
    tasks: BTreeMap<String, KindTask>,
}

#[derive(Debug, Deserialize)]
struct KindTask {
    definition: Option<String>,
    parent: Option<String>,
    #[serde(default)]
    args: BTreeMap<String, String>,
    symbol: Option<String>,
    #[serde(default)]
    packages: Vec<String>,
}

/// The config file that marks a taskgraph repository.
pub const CONFIG_FILE: &str = "taskcluster/config.yml";
/// Where taskgraph keeps image folders.
pub const DOCKER_DIR: &str = "taskcluster/docker";

/// What a taskgraph layout defines.
pub struct TaskgraphRepo {
    /// The kind file the images come from, relative to the root.
    pub kind_file: PathBuf,
    /// Index settings derived from config.yml.
    pub index: IndexSettings,
    /// The images, unordered.
    pub images: Vec<ImageDef>,
}

fn read_yaml<T: serde::de::DeserializeOwned>(root: &Path, rel: &Path) -> Result<T, TreeError> {
    let path = root.join(rel);
    let text = fs_err::read_to_string(&path).map_err(|e| TreeError::io(&path, e))?;
    yaml_serde::from_str(&text).map_err(|e| TreeError::Config {
        file: rel.to_owned(),
        message: e.to_string(),
    })
}

/// Loads the taskgraph layout rooted at `root`.
pub fn load(root: &Path) -> Result<TaskgraphRepo, TreeError> {
    let config_rel = Path::new(CONFIG_FILE);
    let config: GraphConfig = read_yaml(root, config_rel)?;
    let kind_name = config
        .taskgraph
        .docker_image_kind
        .as_deref()
        .unwrap_or("docker-image");
    let candidates = [
        PathBuf::from(format!("taskcluster/kinds/{kind_name}/kind.yml")),
        PathBuf::from(format!("taskcluster/ci/{kind_name}/kind.yml")),
    ];
    let kind_file = candidates
        .iter()
        .find(|p| root.join(p).is_file())
        .cloned()
        .ok_or_else(|| TreeError::Config {
            file: config_rel.to_owned(),
            message: format!(
                "no kind file for the `{kind_name}` kind: looked for {} and {}",
                candidates[0].display(),
                candidates[1].display()
            ),
        })?;
    let kind: KindFile = read_yaml(root, &kind_file)?;

    let expires_level1_secs = match &config.task_expires_after {
        Some(text) => parse_duration(text).map_err(|message| TreeError::Config {
            file: config_rel.to_owned(),
            message: format!("task-expires-after: {message}"),
        })?,
        None => DEFAULT_LEVEL1_EXPIRY_SECS,
    };
    let index = IndexSettings {
        prefix: config.taskgraph.cached_task_prefix.unwrap_or(config.trust_domain),
        max_level: 3,
        cache_pull_requests: config.taskgraph.cache_pull_requests.unwrap_or(true),
        expires_level1_secs,
        expires_secs: DEFAULT_EXPIRY_SECS,
    };

    let docker_dir = Path::new(DOCKER_DIR);
    let mut images = Vec::with_capacity(kind.tasks.len());
    for (name, task) in kind.tasks {
        if !task.packages.is_empty() {
            return Err(TreeError::Config {
                file: kind_file.clone(),
                message: format!("image `{name}`: `packages` dependencies are not supported by kiln yet"),
            });
        }
        let definition = task.definition.unwrap_or_else(|| name.clone());
        let dir = docker_dir.join(&definition);
        let kind = image_kind(root, &dir, docker_dir)?;
        images.push(ImageDef {
            name,
            definition,
            dir,
            parent: task.parent,
            args: task.args,
            symbol: task.symbol,
            kind,
            defined_in: kind_file.clone(),
        });
    }
    Ok(TaskgraphRepo {
        kind_file,
        index,
        images,
    })
}
