//! The SQLite index against the rules every backend must keep.
#![allow(clippy::unwrap_used, missing_docs)]

use kiln_index::{
    BuildReason, ImageRecord, Index, IndexError, Lookup, MemoryIndex, Namespace, Scope, SqliteIndex, Status,
    resolve,
};

fn record(name: &str, scope: Scope, expires: i64) -> ImageRecord {
    ImageRecord {
        name: name.into(),
        cache_type: "docker-images.v2".into(),
        cache_digest: "d".repeat(64),
        context_hash: "c".repeat(64),
        image_digest: format!("sha256:{}", "a".repeat(64)),
        artifact_digest: Some(format!("sha256:{}", "b".repeat(64))),
        scope,
        created: 100,
        expires,
    }
}

fn ns(name: &str) -> Namespace<'_> {
    Namespace {
        prefix: "p",
        cache_type: "docker-images.v2",
        name,
        digest: "x",
    }
}

fn backends() -> (tempfile::TempDir, Vec<Box<dyn Index>>) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteIndex::open(&dir.path().join("sub/index.sqlite")).unwrap();
    (dir, vec![Box::new(sqlite), Box::new(MemoryIndex::default())])
}

#[test]
fn records_round_trip_under_all_routes() {
    let (_dir, backends) = backends();
    for index in backends {
        let routes = vec![
            ns("base").hash_route(Scope::Level(3)),
            "p.cache.level-3.docker-images.v2.base.latest".into(),
        ];
        index
            .insert(&routes, &record("base", Scope::Level(3), 1000))
            .unwrap();
        for route in &routes {
            assert_eq!(
                index.get(route).unwrap(),
                Some(record("base", Scope::Level(3), 1000))
            );
        }
        assert_eq!(index.list("p.cache.level-3").unwrap().len(), 2);
        assert_eq!(index.list("q.").unwrap().len(), 0);
    }
}

#[test]
fn a_record_never_goes_under_another_trust_scope_and_nothing_is_half_written() {
    let (_dir, backends) = backends();
    for index in backends {
        let routes = vec![
            ns("base").hash_route(Scope::Level(1)),
            ns("base").hash_route(Scope::Level(3)),
        ];
        let err = index
            .insert(&routes, &record("base", Scope::Level(1), 1000))
            .unwrap_err();
        assert!(matches!(err, IndexError::TrustViolation { .. }), "{err}");
        assert_eq!(index.get(&routes[0]).unwrap(), None, "no partial record");
    }
}

#[test]
fn malformed_records_are_refused() {
    let (_dir, backends) = backends();
    for index in backends {
        let mut bad = record("base", Scope::Level(1), 1000);
        bad.image_digest = "sha256:short".into();
        let route = vec![ns("base").hash_route(Scope::Level(1))];
        assert!(matches!(
            index.insert(&route, &bad),
            Err(IndexError::InvalidRecord(_))
        ));
        let expired_at_birth = record("base", Scope::Level(1), 50);
        assert!(index.insert(&route, &expired_at_birth).is_err());
        assert_eq!(index.get(&route[0]).unwrap(), None);
    }
}

#[test]
fn lookup_prefers_trusted_levels_skips_expired_and_cascades() {
    let (_dir, backends) = backends();
    for index in backends {
        let base = ns("base");
        index
            .insert(
                &[base.hash_route(Scope::Level(3))],
                &record("base", Scope::Level(3), 500),
            )
            .unwrap();
        index
            .insert(
                &[base.hash_route(Scope::Level(1))],
                &record("base", Scope::Level(1), 5000),
            )
            .unwrap();
        let child = ns("child");
        index
            .insert(
                &[child.hash_route(Scope::Level(1))],
                &record("child", Scope::Level(1), 5000),
            )
            .unwrap();

        let base_routes = base.lookup_routes(1, 3, false, true);
        let child_routes = child.lookup_routes(1, 3, false, true);
        let lookups = [
            Lookup {
                name: "base",
                parent: None,
                routes: &base_routes,
            },
            Lookup {
                name: "child",
                parent: Some("base"),
                routes: &child_routes,
            },
        ];
        // Deadline before the level-3 expiry: level 3 wins.
        let statuses = resolve(index.as_ref(), &lookups, 400).unwrap();
        match &statuses[0] {
            Status::Cached(hit) => assert_eq!(hit.route, base.hash_route(Scope::Level(3))),
            other => panic!("{other:?}"),
        }
        assert_eq!(statuses[1].label(), "cached");
        // Deadline after the level-3 expiry: level 1 is used.
        let statuses = resolve(index.as_ref(), &lookups, 1000).unwrap();
        match &statuses[0] {
            Status::Cached(hit) => assert_eq!(hit.route, base.hash_route(Scope::Level(1))),
            other => panic!("{other:?}"),
        }
        // A level-3 lookup never reads level-1 output, so base is built, and child with it.
        let base3 = base.lookup_routes(3, 3, false, true);
        let child3 = child.lookup_routes(3, 3, false, true);
        let lookups3 = [
            Lookup {
                name: "base",
                parent: None,
                routes: &base3,
            },
            Lookup {
                name: "child",
                parent: Some("base"),
                routes: &child3,
            },
        ];
        let statuses = resolve(index.as_ref(), &lookups3, 1000).unwrap();
        assert!(matches!(
            &statuses[0],
            Status::Build(BuildReason::ExpiresBeforeDeadline { .. })
        ));
        assert_eq!(
            statuses[1],
            Status::Build(BuildReason::ParentRebuilt {
                parent: "base".into()
            })
        );
    }
}

#[test]
fn read_only_open_of_missing_index_is_empty_and_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    assert!(SqliteIndex::open_read_only(&path).unwrap().is_none());
    drop(SqliteIndex::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteIndex::open(&path).err().unwrap();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn expired_records_are_removed() {
    let (_dir, backends) = backends();
    for index in backends {
        index
            .insert(
                &[ns("a").hash_route(Scope::Level(1))],
                &record("a", Scope::Level(1), 200),
            )
            .unwrap();
        index
            .insert(
                &[ns("b").hash_route(Scope::Level(1))],
                &record("b", Scope::Level(1), 900),
            )
            .unwrap();
        assert_eq!(index.remove_expired(500).unwrap(), 1);
        assert_eq!(index.list("p.").unwrap().len(), 1);
    }
}
