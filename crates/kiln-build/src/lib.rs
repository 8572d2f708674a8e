#![doc = include_str!("../README.md")]

mod archive;
pub mod cache;
mod cache_mount;
pub mod config;
pub mod context;
pub mod copy;
mod copy_layer;
mod error;
mod executor;
pub mod gc;
pub mod layers;
mod prune;
mod remote;
pub mod run;
pub mod snapshot;
mod ssh_agent;

pub use error::{BuildError, StepAt};

/// The builder's state folder inside the store it builds into (`<store>/kiln-build`: unpacked layers,
/// instruction-cache records, cache mounts, scratch).
pub const STATE_DIR: &str = "kiln-build";
pub use executor::{BuildOptions, BuildOutput, Builder, Events, Quiet, StepStatus, base_references};
