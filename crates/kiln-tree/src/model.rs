//! The repository model: how images are laid out, how they hash, how they are indexed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// Where the image definitions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// `taskcluster/config.yml` and the docker-image `kind.yml`, read as taskgraph reads them.
    Taskgraph,
    /// kiln's own `kiln.toml`.
    KilnToml,
    /// No configuration: subfolders of an images folder that hold a Dockerfile.
    Folder,
}

/// How context hashes and cache digests are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashMode {
    /// Byte-exact with taskcluster-taskgraph 24.5.1 (cache type `docker-images.v2`).
    Taskgraph,
    /// kiln's own hash (cache type `kiln-images.v1`): normalized modes, `.dockerignore`, strict includes.
    Native,
}

impl HashMode {
    /// The index cache type of images hashed this way; distinct so the two never collide.
    pub fn cache_type(self) -> &'static str {
        match self {
            HashMode::Taskgraph => "docker-images.v2",
            HashMode::Native => "kiln-images.v1",
        }
    }

    /// The name used in the CLI and in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            HashMode::Taskgraph => "taskgraph",
            HashMode::Native => "native",
        }
    }
}

/// How the args JSON in the taskgraph cache digest is encoded: taskgraph's output depends on whether
/// orjson is installed in its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArgsJson {
    /// Python's `json.dumps`: non-ASCII escaped as `\uXXXX` (taskgraph without orjson).
    Ascii,
    /// orjson: raw UTF-8.
    Orjson,
}

/// taskgraph's version-specific inputs, configurable so a repository can follow its taskgraph pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskgraphCompat {
    /// `IMAGE_BUILDER_IMAGE`, hashed into every digest as `image-builder-image:<pin>`.
    pub image_builder_image: String,
    /// The worker's `chain-of-trust` flag; `True` is appended to the digest when set.
    pub chain_of_trust: bool,
    /// Encoding of the args JSON.
    pub args_json: ArgsJson,
    /// taskgraph's bundled `run-task/` folder, for `# %include-run-task` (its content is version-specific).
    pub run_task_dir: Option<PathBuf>,
}

/// The image-builder pin of taskcluster-taskgraph 24.2.0 and later.
pub const TASKGRAPH_IMAGE_BUILDER_IMAGE: &str = "mozillareleases/image_builder:6.2.0@sha256:f7df722770d6caadea79b2de458e072d8b3d93e59675b34dffb32c3e7e30f5b9";

impl Default for TaskgraphCompat {
    fn default() -> Self {
        Self {
            image_builder_image: TASKGRAPH_IMAGE_BUILDER_IMAGE.to_owned(),
            chain_of_trust: true,
            args_json: ArgsJson::Ascii,
            run_task_dir: None,
        }
    }
}

/// Index settings: namespace prefix, trust levels, expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexSettings {
    /// The namespace prefix (taskgraph: `cached-task-prefix`, else `trust-domain`).
    pub prefix: String,
    /// The most trusted level (taskgraph: 3). Levels run from 1 to this.
    pub max_level: u8,
    /// Whether pull requests write and read the `cache.pr` namespace.
    pub cache_pull_requests: bool,
    /// Lifetime of images built at level 1, in seconds.
    pub expires_level1_secs: u64,
    /// Lifetime of images built at other levels, in seconds.
    pub expires_secs: u64,
}

/// 28 days: taskgraph's default `task-expires-after`.
pub const DEFAULT_LEVEL1_EXPIRY_SECS: u64 = 28 * 86_400;
/// One year: taskgraph's expiry of images above level 1.
pub const DEFAULT_EXPIRY_SECS: u64 = 365 * 86_400;

/// Everything read from the repository's configuration.
#[derive(Debug, Clone, Serialize)]
pub struct RepoConfig {
    /// The repository root (taskgraph's `topsrcdir`), absolute.
    pub root: PathBuf,
    /// Where the definitions come from.
    pub layout: Layout,
    /// The configuration file that defines the images, relative to `root` (none in folder layout).
    pub config_file: Option<PathBuf>,
    /// The folder holding the image folders, relative to `root`.
    pub images_dir: PathBuf,
    /// The hash mode.
    pub hash_mode: HashMode,
    /// Index settings.
    pub index: IndexSettings,
    /// taskgraph compatibility settings (used in taskgraph mode).
    pub taskgraph: TaskgraphCompat,
    /// Identifies the builder in native cache digests: a new builder that changes outputs bumps it.
    pub native_builder: String,
}

/// The default native-mode builder identity.
pub const NATIVE_BUILDER: &str = "kiln-build/1";

/// Whether an image is only built and indexed, or also published to a registry under a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum ImageKind {
    /// Built in-tree and found through the index.
    InTree,
    /// Published to a registry: its folder has `REGISTRY` (or the images root has one) and `VERSION`/`HASH`.
    Registry {
        /// The registry and namespace, from `REGISTRY`.
        registry: String,
        /// From `VERSION`, if present.
        version: Option<String>,
        /// The pinned digest, from `HASH`, if present.
        hash: Option<String>,
    },
}

impl ImageKind {
    /// A short label for listings.
    pub fn label(&self) -> &'static str {
        match self {
            ImageKind::InTree => "in-tree",
            ImageKind::Registry { .. } => "registry",
        }
    }
}

/// One image of the repository.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDef {
    /// The image name (unique).
    pub name: String,
    /// The folder name under the images folder (defaults to `name`).
    pub definition: String,
    /// The image folder, relative to the repository root.
    pub dir: PathBuf,
    /// The in-tree parent image, if any.
    pub parent: Option<String>,
    /// Build args, also used by `# %ARG`.
    pub args: BTreeMap<String, String>,
    /// The Treeherder symbol (taskgraph layout).
    pub symbol: Option<String>,
    /// In-tree or registry image.
    pub kind: ImageKind,
    /// The file where this image is defined (or its Dockerfile in folder layout), relative to the root.
    pub defined_in: PathBuf,
}
