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
pub mod layers;
mod prune;
mod remote;
pub mod run;
pub mod snapshot;
mod ssh_agent;

pub use error::{BuildError, StepAt};
pub use executor::{BuildOptions, BuildOutput, Builder, Events, Quiet, StepStatus, base_references};
