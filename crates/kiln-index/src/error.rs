//! Index errors.

use std::path::PathBuf;

use crate::routes::Scope;

/// An index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The database could not be opened or queried.
    #[error("index {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer kiln.
    #[error(
        "index {path}: schema version {found} is newer than this kiln understands ({supported}); upgrade kiln"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Version found.
        found: i64,
        /// Highest version supported.
        supported: i64,
    },
    /// A record is malformed.
    #[error("invalid index record: {0}")]
    InvalidRecord(String),
    /// A record would be written under a route of another trust scope.
    #[error(
        "route `{route}` belongs to scope {route_scope:?}, but the image was built at {record_scope}; an image is indexed only in its own scope"
    )]
    TrustViolation {
        /// The route.
        route: String,
        /// The route's scope (None when it has no `cache.<scope>` segment).
        route_scope: Option<Scope>,
        /// The record's scope.
        record_scope: Scope,
    },
}
