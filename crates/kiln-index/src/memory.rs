//! An index that lives in memory: the empty index of a repository that has none yet, and a test double.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::IndexError;
use crate::record::ImageRecord;
use crate::{Index, RouteRecord};

/// An in-memory index with the same rules as the SQLite one.
#[derive(Default)]
pub struct MemoryIndex {
    routes: Mutex<BTreeMap<String, ImageRecord>>,
}

impl Index for MemoryIndex {
    fn get(&self, route: &str) -> Result<Option<ImageRecord>, IndexError> {
        Ok(self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .cloned())
    }

    fn insert(&self, routes: &[String], record: &ImageRecord) -> Result<(), IndexError> {
        record.check_routes(routes)?;
        let mut map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for route in routes {
            map.insert(route.clone(), record.clone());
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<RouteRecord>, IndexError> {
        let map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map
            .iter()
            .filter(|(route, _)| route.starts_with(prefix))
            .map(|(route, record)| RouteRecord {
                route: route.clone(),
                record: record.clone(),
            })
            .collect())
    }

    fn remove_expired(&self, now: i64) -> Result<usize, IndexError> {
        let mut map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let before = map.len();
        map.retain(|_, r| r.expires > now);
        Ok(before - map.len())
    }
}
