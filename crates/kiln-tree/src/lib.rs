#![doc = include_str!("../README.md")]

mod context;
mod digest;
mod dockerignore;
mod duration;
mod error;
mod folder_layout;
mod fsmeta;
mod graph;
mod hash;
mod images;
mod kiln_toml;
mod model;
mod preprocess;
mod registry_image;
mod repo;
pub mod run_task;
mod stat_cache;
mod stream;
pub mod tar_stream;
mod taskgraph_layout;

pub use context::{Context, Entry, Source, collect};
pub use digest::{CacheDigest, ParentDigest, args_json, cache_digest};
pub use dockerignore::{DockerIgnore, clean as clean_context_path};
pub use duration::parse_duration;
pub use error::{TreeError, Warning};
pub use fsmeta::FileMeta;
pub use hash::{ContextHash, HashSink, TeeHash, context_hash};
pub use images::{ImageHashes, hash_images, with_ancestors};
pub use model::{
    ArgsJson, HashMode, ImageDef, ImageKind, IndexSettings, Layout, RepoConfig,
    TASKGRAPH_IMAGE_BUILDER_IMAGE, TaskgraphCompat,
};
pub use preprocess::{IncludeRequest, PreprocessError, Preprocessed, preprocess, read_dockerfile};
pub use repo::{DiscoverOptions, Repo, find_repo_root, find_root};
pub use stat_cache::StatCache;
pub use stream::write_tar;
