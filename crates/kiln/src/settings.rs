//! Validated settings: the repository, the state folder, the index, the trust scope.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use kiln_index::{Index, MemoryIndex, Scope, SqliteIndex};
use kiln_tree::{DiscoverOptions, HashMode, Repo, StatCache, Warning};
use time::OffsetDateTime;

use crate::cli::{GlobalArgs, HashModeArg, ScopeArgs};
use crate::timeparse::parse_time;

/// What makes two warnings the same: file, line, message (not the image).
type WarningKey = (Option<PathBuf>, Option<usize>, String);

/// The repository and where kiln keeps its state for it.
pub struct Workspace {
    pub repo: Repo,
    pub state_dir: PathBuf,
    pub index_path: PathBuf,
    pub quiet: bool,
    /// Warnings already shown: the same file seen through several images is reported once.
    shown: std::cell::RefCell<std::collections::HashSet<WarningKey>>,
}

impl Workspace {
    pub fn load(global: &GlobalArgs) -> Result<Self> {
        let start = match &global.repo {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().context("cannot read the current directory")?,
        };
        let root = if global.repo.is_some() {
            start
        } else {
            kiln_tree::find_root(&start)?
        };
        let options = DiscoverOptions {
            images_dir: global.images.clone(),
            hash_mode: global.hash_mode.map(|m| match m {
                HashModeArg::Taskgraph => HashMode::Taskgraph,
                HashModeArg::Native => HashMode::Native,
            }),
        };
        let repo = Repo::load(&root, &options)?;
        let state_dir = global
            .state_dir
            .clone()
            .unwrap_or_else(|| repo.config.root.join(".kiln"));
        let index_path = global
            .index
            .clone()
            .unwrap_or_else(|| state_dir.join("index.sqlite"));
        Ok(Self {
            repo,
            state_dir,
            index_path,
            quiet: global.quiet,
            shown: Default::default(),
        })
    }

    pub fn stat_cache(&self) -> StatCache {
        StatCache::load(&self.state_dir.join("hash-cache"))
    }

    /// The index for reading: an empty one when the file does not exist yet (nothing is created).
    pub fn index_for_reading(&self) -> Result<Box<dyn Index>> {
        Ok(match SqliteIndex::open_read_only(&self.index_path)? {
            Some(index) => Box::new(index),
            None => Box::new(MemoryIndex::default()),
        })
    }

    pub fn index_for_writing(&self) -> Result<SqliteIndex> {
        Ok(SqliteIndex::open(&self.index_path)?)
    }

    pub fn warn(&self, warnings: &[Warning]) {
        if self.quiet {
            return;
        }
        let mut shown = self.shown.borrow_mut();
        for warning in warnings {
            if shown.insert((warning.file.clone(), warning.line, warning.message.clone())) {
                eprintln!("warning: {warning}");
            }
        }
    }

    /// Checks an image name, suggesting the known ones.
    pub fn require_image(&self, name: &str) -> Result<&kiln_tree::ImageDef> {
        match self.repo.image(name) {
            Some(image) => Ok(image),
            None => {
                let known: Vec<&str> = self.repo.images.iter().map(|i| i.name.as_str()).collect();
                bail!(
                    "no image `{name}` in {}; images: {}",
                    self.repo.config.root.display(),
                    known.join(", ")
                )
            }
        }
    }
}

/// The trust scope of a run.
pub struct RunScope {
    pub level: u8,
    pub pull_request: bool,
    pub build_date: OffsetDateTime,
}

impl RunScope {
    pub fn from_args(args: &ScopeArgs, max_level: u8) -> Result<Self> {
        if args.level == 0 || args.level > max_level {
            bail!(
                "--level {} is out of range: this repository's levels are 1 to {max_level}",
                args.level
            );
        }
        Ok(Self {
            level: args.level,
            pull_request: args.pull_request,
            build_date: parse_time(&args.build_date)?,
        })
    }

    /// The scope a build in this run writes to.
    pub fn write_scope(&self) -> Scope {
        if self.pull_request {
            Scope::PullRequest
        } else {
            Scope::Level(self.level)
        }
    }
}
