//! kiln's own configuration file, `kiln.toml` at the repository root. The format is a contract,
//! documented in `docs/kiln-toml.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::TreeError;
use crate::model::{ArgsJson, HashMode};

/// The file name.
pub const FILE: &str = "kiln.toml";

/// `kiln.toml` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KilnToml {
    /// `[images]`.
    #[serde(default)]
    pub images: ImagesSection,
    /// `[index]`.
    #[serde(default)]
    pub index: IndexSection,
    /// `[hash]`.
    #[serde(default)]
    pub hash: HashSection,
    /// `[taskgraph]`: taskgraph-compat knobs.
    #[serde(default)]
    pub taskgraph: TaskgraphSection,
    /// `[image.<name>]`: per-image settings.
    #[serde(default)]
    pub image: BTreeMap<String, ImageSection>,
}

/// `[images]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesSection {
    /// The folder holding one folder per image (default `images`).
    pub root: Option<PathBuf>,
}

/// `[index]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IndexSection {
    /// Namespace prefix of routes.
    pub prefix: Option<String>,
    /// Highest trust level (levels are 1..=levels).
    pub levels: Option<u8>,
    /// Whether pull requests use the `cache.pr` namespace.
    pub cache_pull_requests: Option<bool>,
    /// Lifetime of level-1 images (`28 days`).
    pub expires_level_1: Option<String>,
    /// Lifetime of images at other levels (`1 year`).
    pub expires: Option<String>,
}

/// `[hash]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashSection {
    /// `native` or `taskgraph`.
    pub mode: Option<HashMode>,
}

/// `[taskgraph]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskgraphSection {
    /// `IMAGE_BUILDER_IMAGE` pin.
    pub image_builder_image: Option<String>,
    /// Whether the CoT flag goes into digests.
    pub chain_of_trust: Option<bool>,
    /// `ascii` (stdlib json) or `orjson`.
    pub args_json: Option<ArgsJson>,
    /// taskgraph's `run-task/` folder for `# %include-run-task`, relative to the repository root.
    pub run_task_dir: Option<PathBuf>,
}

/// `[image.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// The folder under the images root (defaults to the image name).
    pub definition: Option<String>,
    /// The in-tree parent; overrides detection from `FROM`.
    pub parent: Option<String>,
    /// Build args (and `# %ARG` values).
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}

/// Reads `kiln.toml` from `root`, if present.
pub fn read(root: &Path) -> Result<Option<KilnToml>, TreeError> {
    let path = root.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TreeError::io(&path, e)),
    };
    toml::from_str(&text).map(Some).map_err(|e| TreeError::Config {
        file: PathBuf::from(FILE),
        message: e.to_string().trim_end().to_owned(),
    })
}
