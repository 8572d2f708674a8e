//! The embedded index: one SQLite file (by default `.kiln/index.sqlite` in the repository). Schema and
//! versioning are documented in `docs/on-disk.md`. Every write is one transaction: a record and all its
//! routes appear together or not at all.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::error::IndexError;
use crate::record::ImageRecord;
use crate::routes::Scope;
use crate::{Index, RouteRecord};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    cache_type TEXT NOT NULL,
    cache_digest TEXT NOT NULL,
    context_hash TEXT NOT NULL,
    image_digest TEXT NOT NULL,
    artifact_digest TEXT,
    scope TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS routes (
    route TEXT PRIMARY KEY,
    record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS routes_by_record ON routes(record_id);
";

/// The SQLite index backend.
pub struct SqliteIndex {
    path: PathBuf,
    conn: Mutex<Option<Connection>>,
}

impl SqliteIndex {
    fn db_error(&self, source: rusqlite::Error) -> IndexError {
        IndexError::Database {
            path: self.path.clone(),
            source,
        }
    }

    /// Opens (creating if needed) the index at `path`.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let error = |source| IndexError::Database {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                error(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("cannot create {}: {e}", dir.display())),
                ))
            })?;
        }
        let conn = Connection::open(path).map_err(error)?;
        Self::prepare(path, conn, true)
    }

    /// Opens an existing index read-only; `None` when there is no file (an empty index).
    pub fn open_read_only(path: &Path) -> Result<Option<Self>, IndexError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|source| {
            IndexError::Database {
                path: path.to_owned(),
                source,
            }
        })?;
        Self::prepare(path, conn, false).map(Some)
    }

    fn prepare(path: &Path, conn: Connection, writable: bool) -> Result<Self, IndexError> {
        let error = |source| IndexError::Database {
            path: path.to_owned(),
            source,
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(error)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(error)?;
        if version > SCHEMA_VERSION {
            return Err(IndexError::SchemaTooNew {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if writable {
            conn.pragma_update(None, "journal_mode", "WAL").map_err(error)?;
            conn.pragma_update(None, "foreign_keys", true).map_err(error)?;
            if version < SCHEMA_VERSION {
                conn.execute_batch(SCHEMA).map_err(error)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(error)?;
            }
        }
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(Some(conn)),
        })
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, IndexError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(conn) => f(conn).map_err(|e| self.db_error(e)),
            None => Err(self.db_error(rusqlite::Error::InvalidQuery)),
        }
    }
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
    let scope_text: String = row.get("scope")?;
    let scope = Scope::parse(&scope_text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("bad scope `{scope_text}`").into(),
        )
    })?;
    Ok(ImageRecord {
        name: row.get("name")?,
        cache_type: row.get("cache_type")?,
        cache_digest: row.get("cache_digest")?,
        context_hash: row.get("context_hash")?,
        image_digest: row.get("image_digest")?,
        artifact_digest: row.get("artifact_digest")?,
        scope,
        created: row.get("created")?,
        expires: row.get("expires")?,
    })
}

const SELECT: &str =
    "SELECT routes.route, records.* FROM routes JOIN records ON records.id = routes.record_id";

impl Index for SqliteIndex {
    fn get(&self, route: &str) -> Result<Option<ImageRecord>, IndexError> {
        self.with_conn(|conn| {
            conn.query_row(
                &format!("{SELECT} WHERE routes.route = ?1"),
                [route],
                row_to_record,
            )
            .optional()
        })
    }

    fn insert(&self, routes: &[String], record: &ImageRecord) -> Result<(), IndexError> {
        record.check_routes(routes)?;
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO records (name, cache_type, cache_digest, context_hash, image_digest, artifact_digest, scope, created, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    record.name,
                    record.cache_type,
                    record.cache_digest,
                    record.context_hash,
                    record.image_digest,
                    record.artifact_digest,
                    record.scope.to_string(),
                    record.created,
                    record.expires
                ],
            )?;
            let id = tx.last_insert_rowid();
            for route in routes {
                tx.execute("INSERT OR REPLACE INTO routes (route, record_id) VALUES (?1, ?2)", params![route, id])?;
            }
            // Records no route points to any more (a `latest` that moved on) are dropped.
            tx.execute("DELETE FROM records WHERE id NOT IN (SELECT record_id FROM routes)", [])?;
            tx.commit()
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<RouteRecord>, IndexError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!(
                "{SELECT} WHERE substr(routes.route, 1, length(?1)) = ?1 ORDER BY routes.route"
            ))?;
            let rows = stmt.query_map([prefix], |row| {
                Ok(RouteRecord {
                    route: row.get(0)?,
                    record: row_to_record(row)?,
                })
            })?;
            rows.collect()
        })
    }

    fn remove_expired(&self, now: i64) -> Result<usize, IndexError> {
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let n = tx.execute(
                "DELETE FROM routes WHERE record_id IN (SELECT id FROM records WHERE expires <= ?1)",
                [now],
            )?;
            tx.execute("DELETE FROM records WHERE expires <= ?1", [now])?;
            tx.commit()?;
            Ok(n)
        })
    }
}
