#![doc = include_str!("../README.md")]

pub mod dag;
mod error;
pub mod naming;
mod plan;
mod scope;
pub mod time;
mod workspace;

pub use error::PlanError;
pub use plan::{Plan, PlanEntry, PlanJson, hash_and_route, selection};
pub use scope::RunScope;
pub use workspace::{Workspace, WorkspaceOptions};
