#![doc = include_str!("../README.md")]

mod error;
mod memory;
mod record;
mod resolve;
mod routes;
mod sqlite;

pub use error::IndexError;
pub use memory::MemoryIndex;
pub use record::{ImageRecord, check_digest};
pub use resolve::{BuildReason, Lookup, Status, find_usable, resolve};
pub use routes::{Namespace, Scope};
pub use sqlite::SqliteIndex;

/// A record found under a route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteRecord {
    /// The route.
    pub route: String,
    /// The record.
    pub record: ImageRecord,
}

/// An index of built images: routes (namespaces) to image records. Backends: [`SqliteIndex`] (embedded,
/// the default), [`MemoryIndex`]; a PostgreSQL backend implements the same trait.
pub trait Index: Send + Sync {
    /// The record under `route`, if any (expired records included: expiry is the caller's decision).
    fn get(&self, route: &str) -> Result<Option<ImageRecord>, IndexError>;

    /// Writes `record` under every route, atomically. Every route must be in the record's trust scope.
    fn insert(&self, routes: &[String], record: &ImageRecord) -> Result<(), IndexError>;

    /// All routes starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<RouteRecord>, IndexError>;

    /// Drops records that expired at or before `now`; returns the number of routes removed.
    fn remove_expired(&self, now: i64) -> Result<usize, IndexError>;
}
