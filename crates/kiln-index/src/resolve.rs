//! Plan statuses: for each image, in dependency order, is it already built (and found by a lookup at this
//! trust level, not expiring before the deadline) or must it be built? A child of an image that is built
//! is built too (taskgraph's cascade rule), even when its own digest is indexed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::IndexError;
use crate::record::ImageRecord;
use crate::{Index, RouteRecord};

/// One image to resolve.
#[derive(Debug, Clone)]
pub struct Lookup<'a> {
    /// The image name.
    pub name: &'a str,
    /// Its parent, which must come earlier in the list.
    pub parent: Option<&'a str>,
    /// The routes to search, in order.
    pub routes: &'a [String],
}

/// Why an image must be built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason")]
pub enum BuildReason {
    /// No route has it.
    NotIndexed,
    /// Found, but it expires before the deadline.
    ExpiresBeforeDeadline {
        /// The route it was found under.
        route: String,
        /// Its expiry, seconds since the epoch.
        expires: i64,
    },
    /// Its parent is built, so it is built too.
    ParentRebuilt {
        /// The parent.
        parent: String,
    },
}

/// The status of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Already built: the first route that had a usable record.
    Cached(RouteRecord),
    /// Must be built.
    Build(BuildReason),
}

impl Status {
    /// `cached` or `build`.
    pub fn label(&self) -> &'static str {
        match self {
            Status::Cached(_) => "cached",
            Status::Build(_) => "build",
        }
    }
}

/// The first route whose record does not expire before `deadline`, or why there is none.
pub fn find_usable(index: &dyn Index, routes: &[String], deadline: i64) -> Result<Status, IndexError> {
    let mut expired: Option<(String, ImageRecord)> = None;
    for route in routes {
        match index.get(route)? {
            Some(record) if record.expires >= deadline => {
                return Ok(Status::Cached(RouteRecord {
                    route: route.clone(),
                    record,
                }));
            }
            Some(record) => {
                expired.get_or_insert((route.clone(), record));
            }
            None => {}
        }
    }
    Ok(Status::Build(match expired {
        Some((route, record)) => BuildReason::ExpiresBeforeDeadline {
            route,
            expires: record.expires,
        },
        None => BuildReason::NotIndexed,
    }))
}

/// Resolves every image; `images` must list parents before children.
pub fn resolve(index: &dyn Index, images: &[Lookup<'_>], deadline: i64) -> Result<Vec<Status>, IndexError> {
    let mut built: BTreeMap<&str, bool> = BTreeMap::new();
    let mut out = Vec::with_capacity(images.len());
    for image in images {
        let parent_built = image.parent.and_then(|p| built.get(p).copied()).unwrap_or(false);
        let status = match (parent_built, image.parent) {
            (true, Some(parent)) => Status::Build(BuildReason::ParentRebuilt {
                parent: parent.to_owned(),
            }),
            _ => find_usable(index, image.routes, deadline)?,
        };
        built.insert(image.name, matches!(status, Status::Build(_)));
        out.push(status);
    }
    Ok(out)
}
