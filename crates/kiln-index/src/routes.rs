//! Index namespaces: the routes a build writes and the routes a lookup searches, as taskgraph forms them
//! (taskgraph-compat §3). Lower trust levels may reuse images of higher levels, never the reverse.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

/// The trust scope an image was built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub enum Scope {
    /// A push at trust level N (1 = least trusted).
    Level(u8),
    /// A pull request: its own namespace, read by no push.
    PullRequest,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Level(l) => write!(f, "level-{l}"),
            Scope::PullRequest => f.write_str("pr"),
        }
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> String {
        scope.to_string()
    }
}

impl Scope {
    /// Parses `level-N` or `pr`.
    pub fn parse(text: &str) -> Option<Scope> {
        if text == "pr" {
            return Some(Scope::PullRequest);
        }
        text.strip_prefix("level-")
            .and_then(|n| n.parse().ok())
            .filter(|&n| n >= 1)
            .map(Scope::Level)
    }

    /// The scope a route belongs to: its `cache.<scope>` segment.
    pub fn of_route(route: &str) -> Option<Scope> {
        let mut parts = route.split('.');
        while let Some(part) = parts.next() {
            if part == "cache" {
                return parts.next().and_then(Scope::parse);
            }
        }
        None
    }
}

/// What names an image in the index, apart from the scope.
#[derive(Debug, Clone, Copy)]
pub struct Namespace<'a> {
    /// The route prefix (taskgraph's `cached-task-prefix` or `trust-domain`).
    pub prefix: &'a str,
    /// The cache type (`docker-images.v2`, `kiln-images.v1`).
    pub cache_type: &'a str,
    /// The image name.
    pub name: &'a str,
    /// The cache digest.
    pub digest: &'a str,
}

impl Namespace<'_> {
    /// `<prefix>.cache.<scope>.<type>.<name>.hash.<digest>`: the route lookups search.
    pub fn hash_route(&self, scope: Scope) -> String {
        format!(
            "{}.cache.{scope}.{}.{}.hash.{}",
            self.prefix, self.cache_type, self.name, self.digest
        )
    }

    /// The routes a build in `scope` writes: the hash route, plus `latest` and `pushdate.…` for pushes.
    /// With pull-request caching off, a pull request writes nothing.
    pub fn write_routes(
        &self,
        scope: Scope,
        build_date: OffsetDateTime,
        cache_pull_requests: bool,
    ) -> Vec<String> {
        match scope {
            Scope::PullRequest if cache_pull_requests => vec![self.hash_route(scope)],
            Scope::PullRequest => Vec::new(),
            Scope::Level(_) => {
                let base = format!("{}.cache.{scope}.{}.{}", self.prefix, self.cache_type, self.name);
                vec![
                    self.hash_route(scope),
                    format!("{base}.latest"),
                    format!("{base}.pushdate.{}", pushdate(build_date)),
                ]
            }
        }
    }

    /// The routes a lookup at `level` searches, most trusted first: `level-max` … `level-<level>`, then
    /// `pr` for a pull request.
    pub fn lookup_routes(
        &self,
        level: u8,
        max_level: u8,
        pull_request: bool,
        cache_pull_requests: bool,
    ) -> Vec<String> {
        let mut routes: Vec<String> = (level..=max_level)
            .rev()
            .map(|l| self.hash_route(Scope::Level(l)))
            .collect();
        if pull_request && cache_pull_requests {
            routes.push(self.hash_route(Scope::PullRequest));
        }
        routes
    }
}

/// `%Y.%m.%d.%Y%m%d%H%M%S` in UTC.
fn pushdate(date: OffsetDateTime) -> String {
    let utc = date.to_offset(time::UtcOffset::UTC);
    let format = format_description!("[year].[month].[day].[year][month][day][hour][minute][second]");
    utc.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: Namespace<'static> = Namespace {
        prefix: "sample.v2.sample",
        cache_type: "docker-images.v2",
        name: "base",
        digest: "abc",
    };

    #[test]
    fn push_routes_have_latest_and_pushdate() {
        let date = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let routes = NS.write_routes(Scope::Level(3), date, true);
        assert_eq!(
            routes,
            [
                "sample.v2.sample.cache.level-3.docker-images.v2.base.hash.abc",
                "sample.v2.sample.cache.level-3.docker-images.v2.base.latest",
                "sample.v2.sample.cache.level-3.docker-images.v2.base.pushdate.2023.11.14.20231114221320",
            ]
        );
    }

    #[test]
    fn pull_requests_write_only_the_pr_route() {
        let date = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            NS.write_routes(Scope::PullRequest, date, true),
            ["sample.v2.sample.cache.pr.docker-images.v2.base.hash.abc"]
        );
        assert!(NS.write_routes(Scope::PullRequest, date, false).is_empty());
    }

    #[test]
    fn lookup_goes_from_most_trusted_down_to_own_level() {
        let routes = NS.lookup_routes(2, 3, false, true);
        assert_eq!(routes.len(), 2);
        assert!(routes[0].contains("level-3") && routes[1].contains("level-2"));
        let pr = NS.lookup_routes(1, 3, true, true);
        assert_eq!(pr.len(), 4);
        assert!(pr[3].contains(".cache.pr."));
    }

    #[test]
    fn scope_of_route() {
        assert_eq!(
            Scope::of_route(&NS.hash_route(Scope::Level(2))),
            Some(Scope::Level(2))
        );
        assert_eq!(
            Scope::of_route(&NS.hash_route(Scope::PullRequest)),
            Some(Scope::PullRequest)
        );
        assert_eq!(Scope::of_route("x.y"), None);
    }
}
