//! The workspace of a run: the repository, and where kiln keeps its state and index for it.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;

use kiln_index::{Index, MemoryIndex, SqliteIndex};
use kiln_tree::{DiscoverOptions, HashMode, ImageDef, Repo, StatCache, Warning};

use crate::PlanError;

/// What makes two warnings the same: file, line, message (not the image).
type WarningKey = (Option<PathBuf>, Option<usize>, String);

/// Where to find the repository and its state; `None` takes the default.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceOptions {
    /// The repository root (else found upwards from the current folder).
    pub repo: Option<PathBuf>,
    /// The folder of image folders (folder layout).
    pub images_dir: Option<PathBuf>,
    /// The hash mode (else the layout's default).
    pub hash_mode: Option<HashMode>,
    /// taskgraph's run-task folder (else kiln.toml's, else found: `kiln_tree::run_task`).
    pub run_task_dir: Option<PathBuf>,
    /// The state folder (default `<repo>/.kiln`).
    pub state_dir: Option<PathBuf>,
    /// The index file (default `<state>/index.sqlite`).
    pub index: Option<PathBuf>,
}

/// The repository and where kiln keeps its state for it.
#[derive(Debug)]
pub struct Workspace {
    /// The repository's definitions.
    pub repo: Repo,
    /// kiln's state folder for it (stat cache, artifacts, index).
    pub state_dir: PathBuf,
    /// The embedded index's file.
    pub index_path: PathBuf,
    /// Warnings already handed out by [`Workspace::fresh_warnings`].
    shown: RefCell<HashSet<WarningKey>>,
}

impl Workspace {
    /// Finds and reads the repository.
    pub fn load(options: &WorkspaceOptions) -> Result<Self, PlanError> {
        let root = match &options.repo {
            Some(dir) => dir.clone(),
            None => kiln_tree::find_root(&std::env::current_dir().map_err(PlanError::CurrentDir)?)?,
        };
        let discover = DiscoverOptions {
            images_dir: options.images_dir.clone(),
            hash_mode: options.hash_mode,
            run_task_dir: options.run_task_dir.clone(),
        };
        let repo = Repo::load(&root, &discover)?;
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| repo.config.root.join(".kiln"));
        let index_path = options
            .index
            .clone()
            .unwrap_or_else(|| state_dir.join("index.sqlite"));
        Ok(Self {
            repo,
            state_dir,
            index_path,
            shown: Default::default(),
        })
    }

    /// The stat cache of context hashing.
    pub fn stat_cache(&self) -> StatCache {
        StatCache::load(&self.state_dir.join("hash-cache"))
    }

    /// The folder of in-tree artifacts (`<state>/artifacts`).
    pub fn artifacts_dir(&self) -> PathBuf {
        self.state_dir.join("artifacts")
    }

    /// The index for reading: an empty one when the file does not exist yet (nothing is created).
    pub fn index_for_reading(&self) -> Result<Box<dyn Index>, PlanError> {
        Ok(match SqliteIndex::open_read_only(&self.index_path)? {
            Some(index) => Box::new(index),
            None => Box::new(MemoryIndex::default()),
        })
    }

    /// The index for writing (created when missing).
    pub fn index_for_writing(&self) -> Result<SqliteIndex, PlanError> {
        Ok(SqliteIndex::open(&self.index_path)?)
    }

    /// The warnings of `warnings` not handed out before: the same file seen through several images is
    /// reported once.
    pub fn fresh_warnings<'w>(&self, warnings: &'w [Warning]) -> Vec<&'w Warning> {
        let mut shown = self.shown.borrow_mut();
        warnings
            .iter()
            .filter(|w| shown.insert((w.file.clone(), w.line, w.message.clone())))
            .collect()
    }

    /// The image `name`, or an error listing the known ones.
    pub fn require_image(&self, name: &str) -> Result<&ImageDef, PlanError> {
        self.repo.image(name).ok_or_else(|| PlanError::UnknownImage {
            name: name.to_owned(),
            root: self.repo.config.root.clone(),
            known: self.repo.images.iter().map(|i| i.name.clone()).collect(),
        })
    }
}
