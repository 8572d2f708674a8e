//! Finding a repository's images: which layout, which settings, which images in which order.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::duration::parse_duration;
use crate::error::TreeError;
use crate::kiln_toml::{self, KilnToml};
use crate::model::{
    DEFAULT_EXPIRY_SECS, DEFAULT_LEVEL1_EXPIRY_SECS, HashMode, ImageDef, IndexSettings, Layout,
    NATIVE_BUILDER, RepoConfig, TaskgraphCompat,
};
use crate::{folder_layout, graph, taskgraph_layout};

/// The default images folder when there is no configuration.
pub const DEFAULT_IMAGES_DIR: &str = "images";
/// The default index prefix outside taskgraph layouts.
pub const DEFAULT_PREFIX: &str = "kiln";

/// A repository and its images, in dependency order.
#[derive(Debug, Clone, Serialize)]
pub struct Repo {
    /// Settings.
    pub config: RepoConfig,
    /// Images, parents before children.
    pub images: Vec<ImageDef>,
}

/// How to find the repository.
#[derive(Debug, Clone, Default)]
pub struct DiscoverOptions {
    /// An images folder to use instead of configuration (relative to the root or absolute).
    pub images_dir: Option<PathBuf>,
    /// Force a hash mode instead of the layout's default.
    pub hash_mode: Option<HashMode>,
    /// taskgraph's run-task folder, over kiln.toml's `run-task-dir` (relative to the current folder or
    /// absolute); without either it is found as `run_task` says.
    pub run_task_dir: Option<PathBuf>,
}

fn is_repo_root(dir: &Path) -> bool {
    dir.join(kiln_toml::FILE).is_file()
        || dir.join(taskgraph_layout::CONFIG_FILE).is_file()
        || dir.join(DEFAULT_IMAGES_DIR).is_dir()
}

/// The nearest ancestor of `start` (itself included) with `kiln.toml`, `taskcluster/config.yml` or an
/// `images/` folder, if there is one.
pub fn find_repo_root(start: &Path) -> Result<Option<PathBuf>, TreeError> {
    let start = std::path::absolute(start).map_err(|e| TreeError::io(start, e))?;
    Ok(start
        .ancestors()
        .find(|dir| is_repo_root(dir))
        .map(Path::to_owned))
}

/// The repository root for `start` ([`find_repo_root`]), or `start` itself when no ancestor is one.
pub fn find_root(start: &Path) -> Result<PathBuf, TreeError> {
    match find_repo_root(start)? {
        Some(root) => Ok(root),
        None => std::path::absolute(start).map_err(|e| TreeError::io(start, e)),
    }
}

fn config_error(message: String) -> TreeError {
    TreeError::Config {
        file: PathBuf::from(kiln_toml::FILE),
        message,
    }
}

impl Repo {
    /// Loads the repository rooted at `root` (see [`find_root`]).
    pub fn load(root: &Path, options: &DiscoverOptions) -> Result<Repo, TreeError> {
        let root = std::path::absolute(root).map_err(|e| TreeError::io(root, e))?;
        if !root.is_dir() {
            return Err(TreeError::io(
                &root,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let toml = kiln_toml::read(&root)?;
        let is_taskgraph = options.images_dir.is_none() && root.join(taskgraph_layout::CONFIG_FILE).is_file();
        let (config, images) = if is_taskgraph {
            Self::taskgraph(root, toml.unwrap_or_default())?
        } else {
            Self::native(root, toml, options)?
        };
        let mut config = config;
        if let Some(mode) = options.hash_mode {
            config.hash_mode = mode;
        }
        if let Some(dir) = &options.run_task_dir {
            config.taskgraph.run_task_dir = Some(dir.clone());
        }
        if images.is_empty() {
            return Err(TreeError::NoImages { root: config.root });
        }
        let images = graph::order_images(images)?;
        Ok(Repo { config, images })
    }

    fn taskgraph(root: PathBuf, toml: KilnToml) -> Result<(RepoConfig, Vec<ImageDef>), TreeError> {
        // kind.yml defines a taskgraph repository's images: kiln.toml tables that define images would be
        // silently ignored, so they are errors.
        if let Some(name) = toml.image.keys().next() {
            return Err(config_error(format!(
                "[image.{name}] does not apply to a taskgraph repository: its images are defined in \
                 taskcluster/kinds/docker-image/kind.yml (remove the table)"
            )));
        }
        if toml.images.root.is_some() {
            return Err(config_error(
                "[images] root does not apply to a taskgraph repository: its images are in taskcluster/docker/ \
                 (remove the table, or use --images DIR to build a folder of images)"
                    .to_owned(),
            ));
        }
        let loaded = taskgraph_layout::load(&root)?;
        let mut index = loaded.index;
        apply_index_section(&mut index, &toml)?;
        let config = RepoConfig {
            layout: Layout::Taskgraph,
            config_file: Some(loaded.kind_file),
            images_dir: PathBuf::from(taskgraph_layout::DOCKER_DIR),
            hash_mode: toml.hash.mode.unwrap_or(HashMode::Taskgraph),
            index,
            taskgraph: compat_settings(&root, &toml),
            native_builder: NATIVE_BUILDER.to_owned(),
            root,
        };
        Ok((config, loaded.images))
    }

    fn native(
        root: PathBuf,
        toml: Option<KilnToml>,
        options: &DiscoverOptions,
    ) -> Result<(RepoConfig, Vec<ImageDef>), TreeError> {
        let layout = if toml.is_some() {
            Layout::KilnToml
        } else {
            Layout::Folder
        };
        let toml = toml.unwrap_or_default();
        let images_dir = match (&options.images_dir, &toml.images.root) {
            (Some(dir), _) => dir.strip_prefix(&root).unwrap_or(dir).to_owned(),
            (None, Some(dir)) => dir.clone(),
            (None, None) => PathBuf::from(DEFAULT_IMAGES_DIR),
        };
        if images_dir.is_absolute()
            || images_dir
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(config_error(format!(
                "images folder {} must be inside the repository {}",
                images_dir.display(),
                root.display()
            )));
        }
        if !root.join(&images_dir).is_dir() {
            return Err(TreeError::NoImages {
                root: root.join(&images_dir),
            });
        }
        let mut index = IndexSettings {
            prefix: DEFAULT_PREFIX.to_owned(),
            max_level: 3,
            cache_pull_requests: true,
            expires_level1_secs: DEFAULT_LEVEL1_EXPIRY_SECS,
            expires_secs: DEFAULT_EXPIRY_SECS,
        };
        apply_index_section(&mut index, &toml)?;
        let config_file = (layout == Layout::KilnToml).then(|| PathBuf::from(kiln_toml::FILE));
        let images = folder_layout::load(&root, &images_dir, &toml.image, config_file.as_deref())?;
        let config = RepoConfig {
            layout,
            config_file,
            images_dir,
            hash_mode: toml.hash.mode.unwrap_or(HashMode::Native),
            index,
            taskgraph: compat_settings(&root, &toml),
            native_builder: NATIVE_BUILDER.to_owned(),
            root,
        };
        Ok((config, images))
    }

    /// Looks an image up by name.
    pub fn image(&self, name: &str) -> Option<&ImageDef> {
        self.images.iter().find(|i| i.name == name)
    }
}

fn apply_index_section(index: &mut IndexSettings, toml: &KilnToml) -> Result<(), TreeError> {
    let section = &toml.index;
    if let Some(prefix) = &section.prefix {
        if prefix.is_empty() || prefix.split('.').any(str::is_empty) {
            return Err(config_error(format!(
                "[index] prefix `{prefix}` must be dot-separated non-empty words"
            )));
        }
        index.prefix = prefix.clone();
    }
    if let Some(levels) = section.levels {
        if levels == 0 {
            return Err(config_error("[index] levels must be at least 1".into()));
        }
        index.max_level = levels;
    }
    if let Some(flag) = section.cache_pull_requests {
        index.cache_pull_requests = flag;
    }
    if let Some(text) = &section.expires_level_1 {
        index.expires_level1_secs =
            parse_duration(text).map_err(|m| config_error(format!("[index] expires-level-1: {m}")))?;
    }
    if let Some(text) = &section.expires {
        index.expires_secs =
            parse_duration(text).map_err(|m| config_error(format!("[index] expires: {m}")))?;
    }
    Ok(())
}

fn compat_settings(root: &Path, toml: &KilnToml) -> TaskgraphCompat {
    let section = &toml.taskgraph;
    let default = TaskgraphCompat::default();
    TaskgraphCompat {
        image_builder_image: section
            .image_builder_image
            .clone()
            .unwrap_or(default.image_builder_image),
        chain_of_trust: section.chain_of_trust.unwrap_or(default.chain_of_trust),
        args_json: section.args_json.unwrap_or(default.args_json),
        run_task_dir: section.run_task_dir.as_ref().map(|d| root.join(d)),
    }
}
