//! The trust scope of a run and the one expiry policy of the records it writes.

use kiln_index::Scope;
use kiln_tree::RepoConfig;
use time::OffsetDateTime;

use crate::PlanError;

/// The trust scope of a run: its level, whether it is a pull request, and the build date its records
/// and `pushdate` routes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunScope {
    /// The trust level (1 to the repository's highest).
    pub level: u8,
    /// A pull request's run (records under `cache.pr` only).
    pub pull_request: bool,
    /// When the run's images are said to be built.
    pub build_date: OffsetDateTime,
}

impl RunScope {
    /// A scope checked against the repository's highest level `max_level`.
    pub fn new(
        level: u8,
        pull_request: bool,
        build_date: OffsetDateTime,
        max_level: u8,
    ) -> Result<Self, PlanError> {
        if level == 0 || level > max_level {
            return Err(PlanError::LevelOutOfRange {
                level,
                max: max_level,
            });
        }
        Ok(Self {
            level,
            pull_request,
            build_date,
        })
    }

    /// The scope a build in this run writes to.
    pub fn write_scope(&self) -> Scope {
        if self.pull_request {
            Scope::PullRequest
        } else {
            Scope::Level(self.level)
        }
    }

    /// When a record this run writes expires, by the repository's policy: level 1 and pull-request
    /// records live `expires-level1` (shorter, as taskgraph's), higher levels `expires`.
    pub fn expires(&self, config: &RepoConfig) -> i64 {
        let lifetime = match self.write_scope() {
            Scope::Level(1) | Scope::PullRequest => config.index.expires_level1_secs,
            Scope::Level(_) => config.index.expires_secs,
        };
        self.build_date
            .unix_timestamp()
            .saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX / 2))
    }
}
