#![doc = include_str!("../README.md")]

pub mod auth;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod names;
mod observe;
pub mod pull_through;
mod routes;
mod server;
mod service;
pub mod storage;
pub mod tls;

use std::sync::Arc;

pub use error::{ErrorCode, RegistryError};
pub use observe::ClientAddr;
pub use server::{Limits, ServeOptions, serve};
pub use storage::{FsStorage, Storage, StorageError};

/// Limits and switches of a registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The largest manifest accepted (larger: 413).
    pub max_manifest_bytes: usize,
    /// Who may do what ([`auth::Auth::open`] by default).
    pub auth: Arc<auth::Auth>,
    /// Fetch what the storage lacks from an intermediate registry and upstream mirrors (a buildset
    /// registry); `None`: answer from the storage only.
    pub pull_through: Option<Arc<pull_through::PullThrough>>,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            max_manifest_bytes: 4 * 1024 * 1024,
            auth: Arc::new(auth::Auth::open()),
            pull_through: None,
        }
    }
}

/// The registry's HTTP application over `storage`, with access logs (`tracing` targets
/// `kiln_registry::access` and `kiln_registry::event`) and Prometheus metrics at `GET /metrics`.
pub fn router(storage: Arc<dyn Storage>, config: RegistryConfig) -> axum::Router {
    let app = Arc::new(routes::App {
        storage: Arc::clone(&storage),
        config,
    });
    let routes = axum::Router::new().fallback(routes::handle).with_state(app);
    observe::instrument(routes, storage)
}
