#![doc = include_str!("../README.md")]

pub mod auth;
mod error;
pub mod names;
mod routes;
mod service;
pub mod storage;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

pub use error::{ErrorCode, RegistryError};
pub use storage::{FsStorage, Storage, StorageError};

/// Limits and switches of a registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// The largest manifest accepted (larger: 413).
    pub max_manifest_bytes: usize,
    /// Who may do what ([`auth::Auth::open`] by default).
    pub auth: Arc<auth::Auth>,
}

impl Default for RegistryConfig {
    fn default() -> RegistryConfig {
        RegistryConfig {
            max_manifest_bytes: 4 * 1024 * 1024,
            auth: Arc::new(auth::Auth::open()),
        }
    }
}

/// The registry's HTTP application over `storage`.
pub fn router(storage: Arc<dyn Storage>, config: RegistryConfig) -> axum::Router {
    let app = Arc::new(routes::App { storage, config });
    axum::Router::new().fallback(routes::handle).with_state(app)
}

/// Serves `router` on `listener` (a `tokio::net::TcpListener`, or a [`tls::TlsListener`]) until `shutdown`
/// completes, then lets requests in flight finish.
pub async fn serve<L>(
    listener: L,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
