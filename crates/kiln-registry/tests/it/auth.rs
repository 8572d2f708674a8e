//! Auth: modes, htpasswd users, access rules, the token flow, and every denial over raw HTTP; skopeo with
//! credentials through the token flow.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use kiln_registry::RegistryConfig;
use kiln_registry::auth::{AccessRule, Auth, AuthMode, Grant, Htpasswd, TokenKey};
use kiln_test_support::require_tool;
use reqwest::{Method, StatusCode};

use crate::skopeo::{make_layout, skopeo, skopeo_fails};
use crate::support::{Server, expect, header, push_image};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn users() -> Htpasswd {
    let text = format!(
        "ci:{}\nbob:{}\n",
        bcrypt::hash("ci-secret", 4).unwrap(),
        bcrypt::hash("bob-secret", 4).unwrap()
    );
    Htpasswd::parse(&text, std::path::Path::new("users")).unwrap()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// ci may push and delete under `project/**`; bob may only pull (anonymous-read lets everyone pull).
fn auth(mode: AuthMode, tokens: bool) -> RegistryConfig {
    let mut auth = Auth::open();
    auth.mode = mode;
    auth.users = users();
    auth.rules = vec![
        AccessRule::new(
            &strings(&["ci"]),
            &strings(&["project/**"]),
            &strings(&["pull", "push", "delete"]),
        )
        .unwrap(),
        AccessRule::new(&strings(&["bob"]), &strings(&["**"]), &strings(&["pull"])).unwrap(),
    ];
    auth.token_key = tokens.then(|| TokenKey::from_bytes(KEY).unwrap());
    RegistryConfig {
        auth: Arc::new(auth),
        ..RegistryConfig::default()
    }
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Fetches a token for `scope` with these credentials (None: anonymous).
async fn token(s: &Server, creds: Option<(&str, &str)>, scope: &str) -> String {
    let mut r = s.req(Method::GET, &format!("/token?service=kiln&scope={scope}"));
    if let Some((u, p)) = creds {
        r = r.header("authorization", basic(u, p));
    }
    let (_, body) = expect(r.send().await.unwrap(), StatusCode::OK, None).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["token"], v["access_token"]);
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    assert!(v["issued_at"].as_str().unwrap().ends_with('Z'));
    v["token"].as_str().unwrap().to_owned()
}

async fn start_push(s: &Server, repo: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut r = s.req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"));
    if let Some(a) = authorization {
        r = r.header("authorization", a);
    }
    r.send().await.unwrap()
}

fn challenge(h: &reqwest::header::HeaderMap) -> &str {
    header(h, "www-authenticate")
}

#[tokio::test]
async fn anonymous_read_with_tokens_lets_everyone_pull_and_users_push() {
    let s = Server::start_config(auth(AuthMode::AnonymousRead, true)).await;
    let realm = format!("Bearer realm=\"http://{}/token\",service=\"kiln\"", s.addr);

    // /v2/ asks anonymous clients to log in (that is how `podman login` checks credentials).
    let (h, _) = s
        .expect(
            Method::GET,
            "/v2/",
            StatusCode::UNAUTHORIZED,
            Some("UNAUTHORIZED"),
        )
        .await;
    assert_eq!(challenge(&h), realm);
    s.expect(Method::GET, "/healthz", StatusCode::OK, None).await;
    // Anonymous pulls go through; anonymous pushes get the challenge with the scope they need.
    s.expect(
        Method::GET,
        "/v2/project/app/tags/list",
        StatusCode::NOT_FOUND,
        Some("NAME_UNKNOWN"),
    )
    .await;
    let (h, _) = expect(
        start_push(&s, "project/app", None).await,
        StatusCode::UNAUTHORIZED,
        Some("UNAUTHORIZED"),
    )
    .await;
    assert_eq!(
        challenge(&h),
        format!("{realm},scope=\"repository:project/app:pull,push\"")
    );

    // A token for ci with pull and push on project/app: the push goes through.
    let t = token(&s, Some(("ci", "ci-secret")), "repository:project/app:pull,push").await;
    let bearer = format!("Bearer {t}");
    s.expect_with(Method::GET, "/v2/", &bearer, StatusCode::OK, None)
        .await;
    expect(
        start_push(&s, "project/app", Some(&bearer)).await,
        StatusCode::ACCEPTED,
        None,
    )
    .await;

    // Scoped to another repository: refused with insufficient_scope and the scope needed.
    let (h, _) = expect(
        start_push(&s, "project/other", Some(&bearer)).await,
        StatusCode::UNAUTHORIZED,
        Some("UNAUTHORIZED"),
    )
    .await;
    assert!(
        challenge(&h).contains("scope=\"repository:project/other:pull,push\",error=\"insufficient_scope\""),
        "{h:?}"
    );
    // A push token does not delete.
    let del = format!("/v2/project/app/manifests/sha256:{}", "0".repeat(64));
    s.expect_with(
        Method::DELETE,
        &del,
        &bearer,
        StatusCode::UNAUTHORIZED,
        Some("UNAUTHORIZED"),
    )
    .await;
    let t = token(&s, Some(("ci", "ci-secret")), "repository:project/app:delete").await;
    s.expect_with(
        Method::DELETE,
        &del,
        &format!("Bearer {t}"),
        StatusCode::NOT_FOUND,
        Some("MANIFEST_UNKNOWN"),
    )
    .await;

    // A pull-only token (asked for pull only, or all bob may have) does not push.
    for t in [
        token(&s, Some(("ci", "ci-secret")), "repository:project/app:pull").await,
        token(
            &s,
            Some(("bob", "bob-secret")),
            "repository:project/app:pull,push",
        )
        .await,
        token(&s, None, "repository:project/app:pull,push").await,
    ] {
        let r = start_push(&s, "project/app", Some(&format!("Bearer {t}"))).await;
        expect(r, StatusCode::UNAUTHORIZED, Some("UNAUTHORIZED")).await;
        let pull = format!("/v2/project/app/blobs/sha256:{}", "0".repeat(64));
        s.expect_with(
            Method::GET,
            &pull,
            &format!("Bearer {t}"),
            StatusCode::NOT_FOUND,
            Some("BLOB_UNKNOWN"),
        )
        .await;
    }
    // ci may not push outside project/**, whatever it asks for.
    let t = token(&s, Some(("ci", "ci-secret")), "repository:elsewhere:pull,push").await;
    expect(
        start_push(&s, "elsewhere", Some(&format!("Bearer {t}"))).await,
        StatusCode::UNAUTHORIZED,
        None,
    )
    .await;

    // Wrong password at the token endpoint: 401, no token.
    let r = s
        .req(
            Method::GET,
            "/token?service=kiln&scope=repository:project/app:push",
        )
        .header("authorization", basic("ci", "wrong"))
        .send()
        .await
        .unwrap();
    let (h, _) = expect(r, StatusCode::UNAUTHORIZED, Some("UNAUTHORIZED")).await;
    assert!(challenge(&h).starts_with("Basic "), "{h:?}");

    // Expired, tampered, and foreign-key tokens.
    let key = TokenKey::from_bytes(KEY).unwrap();
    let grant = vec![Grant {
        kind: "repository".to_owned(),
        name: "project/app".to_owned(),
        actions: strings(&["pull", "push"]),
    }];
    let expired = key.issue("kiln", Some("ci"), grant.clone(), Duration::ZERO);
    let other_key = TokenKey::from_bytes(&[9u8; 32]).unwrap();
    let foreign = other_key.issue("kiln", Some("ci"), grant.clone(), Duration::from_secs(60));
    let good = key.issue("kiln", Some("ci"), grant, Duration::from_secs(60));
    let mut tampered: Vec<u8> = good.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    expect(
        start_push(&s, "project/app", Some(&format!("Bearer {good}"))).await,
        StatusCode::ACCEPTED,
        None,
    )
    .await;
    for bad in [expired, foreign, tampered, "not-a-token".to_owned()] {
        let (h, _) = expect(
            start_push(&s, "project/app", Some(&format!("Bearer {bad}"))).await,
            StatusCode::UNAUTHORIZED,
            Some("UNAUTHORIZED"),
        )
        .await;
        assert!(challenge(&h).contains("error=\"invalid_token\""), "{h:?}");
    }
}

#[tokio::test]
async fn restricted_basic_auth_checks_every_request() {
    let s = Server::start_config(auth(AuthMode::Restricted, false)).await;
    let (h, _) = s
        .expect(
            Method::GET,
            "/v2/",
            StatusCode::UNAUTHORIZED,
            Some("UNAUTHORIZED"),
        )
        .await;
    assert_eq!(challenge(&h), "Basic realm=\"kiln\"");
    s.expect_with(
        Method::GET,
        "/v2/",
        &basic("ci", "nope"),
        StatusCode::UNAUTHORIZED,
        Some("UNAUTHORIZED"),
    )
    .await;
    s.expect_with(
        Method::GET,
        "/v2/",
        &basic("ci", "ci-secret"),
        StatusCode::OK,
        None,
    )
    .await;
    // Reading needs a user too.
    s.expect(
        Method::GET,
        "/v2/project/app/tags/list",
        StatusCode::UNAUTHORIZED,
        Some("UNAUTHORIZED"),
    )
    .await;
    s.expect(
        Method::GET,
        "/v2/_catalog",
        StatusCode::UNAUTHORIZED,
        Some("UNAUTHORIZED"),
    )
    .await;
    s.expect_with(
        Method::GET,
        "/v2/_catalog",
        &basic("bob", "bob-secret"),
        StatusCode::OK,
        None,
    )
    .await;
    // bob is known but the rules refuse him a push: 403, not a login prompt.
    let bob = basic("bob", "bob-secret");
    expect(
        start_push(&s, "project/app", Some(&bob)).await,
        StatusCode::FORBIDDEN,
        Some("DENIED"),
    )
    .await;
    // Tokens are off: a bearer token is refused.
    let t = TokenKey::from_bytes(KEY)
        .unwrap()
        .issue("kiln", Some("ci"), vec![], Duration::from_secs(60));
    s.expect_with(
        Method::GET,
        "/v2/",
        &format!("Bearer {t}"),
        StatusCode::UNAUTHORIZED,
        None,
    )
    .await;
    s.expect(
        Method::GET,
        "/token?scope=repository:a:pull",
        StatusCode::NOT_FOUND,
        Some("UNSUPPORTED"),
    )
    .await;

    // ci pushes a whole image with Basic credentials on every request.
    let ci = basic("ci", "ci-secret");
    let s = s.with_authorization(&ci);
    let (manifest, _, _) = push_image(&s, "project/app", b"layer").await;
    let r = s.put_manifest("project/app", "v1", OCI_MANIFEST, &manifest).await;
    expect(r, StatusCode::CREATED, None).await;
    s.expect(Method::GET, "/v2/project/app/manifests/v1", StatusCode::OK, None)
        .await;
}

#[tokio::test]
async fn restricted_tokens_are_not_given_to_anonymous_clients_and_mounts_need_pull_on_the_source() {
    let s = Server::start_config(auth(AuthMode::Restricted, true)).await;
    s.expect(
        Method::GET,
        "/token?service=kiln&scope=repository:a:pull",
        StatusCode::UNAUTHORIZED,
        Some("UNAUTHORIZED"),
    )
    .await;
    let t = token(&s, Some(("ci", "ci-secret")), "repository:project/a:pull,push").await;
    let ci = s.with_authorization(&format!("Bearer {t}"));
    let (manifest, _, layer) = push_image(&ci, "project/a", b"layer").await;
    expect(
        ci.put_manifest("project/a", "v1", OCI_MANIFEST, &manifest).await,
        StatusCode::CREATED,
        None,
    )
    .await;
    // A token with push on project/b but nothing on project/a: the mount falls back to an upload.
    let t = token(&s, Some(("ci", "ci-secret")), "repository:project/b:pull,push").await;
    let ci_b = s.with_authorization(&format!("Bearer {t}"));
    let path = format!("/v2/project/b/blobs/uploads/?mount={layer}&from=project/a");
    ci_b.expect(Method::POST, &path, StatusCode::ACCEPTED, None).await;
    let t = token(
        &s,
        Some(("ci", "ci-secret")),
        "repository:project/b:pull,push repository:project/a:pull",
    )
    .await;
    let ci_ab = s.with_authorization(&format!("Bearer {t}"));
    ci_ab.expect(Method::POST, &path, StatusCode::CREATED, None).await;
    // The catalog needs the catalog scope or a user.
    let t = token(&s, Some(("bob", "bob-secret")), "registry:catalog:*").await;
    s.expect_with(
        Method::GET,
        "/v2/_catalog",
        &format!("Bearer {t}"),
        StatusCode::OK,
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_and_pulls_through_the_token_flow() {
    if !require_tool("skopeo") {
        return;
    }
    let s = Server::start_config(auth(AuthMode::AnonymousRead, true)).await;
    let host = s.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let work = tempfile::tempdir().unwrap();
        let digest = make_layout(work.path());
        let src = format!("oci:{}:v1", work.path().join("layout").display());
        let dest = format!("docker://{host}/project/app:v1");
        let copy = |creds: &[&str], from: &str, to: &str| {
            let mut args = vec![
                "copy",
                "--preserve-digests",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ];
            args.extend_from_slice(creds);
            args.extend_from_slice(&[from, to]);
            args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>()
        };
        let run = |args: Vec<String>| skopeo(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let fails = |args: Vec<String>| skopeo_fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(fails(copy(&[], &src, &dest)), "anonymous push refused");
        assert!(
            fails(copy(&["--dest-creds", "ci:wrong"], &src, &dest)),
            "wrong password refused"
        );
        assert!(
            fails(copy(&["--dest-creds", "bob:bob-secret"], &src, &dest)),
            "bob may not push"
        );
        run(copy(&["--dest-creds", "ci:ci-secret"], &src, &dest));
        // Pull with credentials and anonymously.
        let out = work.path().join("out");
        run(copy(
            &["--src-creds", "bob:bob-secret"],
            &dest,
            &format!("oci:{}:v1", out.display()),
        ));
        let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &dest]);
        assert_eq!(crate::support::sha256(raw.as_bytes()), digest);
        // Registry to registry inside kiln, with a cross-repository mount.
        run(copy(
            &["--src-creds", "ci:ci-secret", "--dest-creds", "ci:ci-secret"],
            &dest,
            &format!("docker://{host}/project/copy:v1"),
        ));
        assert!(fails(vec![
            "delete".to_owned(),
            "--tls-verify=false".to_owned(),
            "--creds".to_owned(),
            "bob:bob-secret".to_owned(),
            dest.clone(),
        ]));
        skopeo(&["delete", "--tls-verify=false", "--creds", "ci:ci-secret", &dest]);
    })
    .await
    .unwrap();
}

/// A restricted buildset registry (pull-through on, its mirror unreachable: everything is served from
/// the storage) where ci may do anything and bob may pull `secret` and what is kept under `quay.io/`.
/// ci has pushed `secret:1`, `team/secret:1`, `team/tools:1` and `quay.io/org/app:1`; returns the
/// server and the layer digest of `team/secret`.
async fn buildset_with_secrets(spool: &std::path::Path) -> (Server, String) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mirror = kiln_registry::pull_through::UpstreamSpec {
        url: format!("http://{}", closed.local_addr().unwrap()),
        credentials: None,
    };
    drop(closed);
    let pull_through =
        kiln_registry::pull_through::PullThrough::new(kiln_registry::pull_through::PullThroughOptions {
            mirrors: [("docker.io".to_owned(), mirror)].into(),
            spool: spool.to_owned(),
            tls_verify: true,
            ..Default::default()
        })
        .unwrap();
    let mut auth = Auth::open();
    auth.mode = AuthMode::Restricted;
    auth.users = users();
    auth.rules = vec![
        AccessRule::new(&strings(&["ci"]), &strings(&["**"]), &strings(&["pull", "push"])).unwrap(),
        AccessRule::new(
            &strings(&["bob"]),
            &strings(&["secret", "quay.io/**"]),
            &strings(&["pull"]),
        )
        .unwrap(),
    ];
    auth.token_key = Some(TokenKey::from_bytes(KEY).unwrap());
    let s = Server::start_config(RegistryConfig {
        auth: Arc::new(auth),
        pull_through: Some(Arc::new(pull_through)),
        ..RegistryConfig::default()
    })
    .await;
    let ci = s.with_authorization(&basic("ci", "ci-secret"));
    let mut secret_layer = String::new();
    for repo in ["secret", "team/secret", "team/tools", "quay.io/org/app"] {
        let (manifest, _, layer) = push_image(&ci, repo, repo.as_bytes()).await;
        expect(
            ci.put_manifest(repo, "1", OCI_MANIFEST, &manifest).await,
            StatusCode::CREATED,
            None,
        )
        .await;
        if repo == "team/secret" {
            secret_layer = layer;
        }
    }
    (s, secret_layer)
}

#[tokio::test]
async fn regression_pull_through_name_mapping_is_authorized_on_the_repository_served() {
    let spool = tempfile::tempdir().unwrap();
    let (s, layer) = buildset_with_secrets(spool.path()).await;
    let bob = basic("bob", "bob-secret");
    s.expect_with(Method::GET, "/v2/secret/manifests/1", &bob, StatusCode::OK, None)
        .await;
    // `?ns=team` and a leading `docker.io/` read team/secret: bob may not pull that.
    for path in [
        "/v2/secret/manifests/1?ns=team".to_owned(),
        "/v2/docker.io/team/secret/manifests/1".to_owned(),
        format!("/v2/secret/blobs/{layer}?ns=team"),
        format!("/v2/docker.io/team/secret/blobs/{layer}"),
    ] {
        for method in [Method::GET, Method::HEAD] {
            let r = s.req(method.clone(), &path).header("authorization", &bob);
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        }
        let (_, body) = s
            .expect_with(Method::GET, &path, &bob, StatusCode::FORBIDDEN, Some("DENIED"))
            .await;
        let message = String::from_utf8_lossy(&body);
        assert!(message.contains("repository team/secret"), "{path}: {message}");
    }
    // What the mapping serves from a repository bob may pull is his to read.
    let (_, body) = s
        .expect_with(
            Method::GET,
            "/v2/org/app/manifests/1?ns=quay.io",
            &bob,
            StatusCode::OK,
            None,
        )
        .await;
    assert!(!body.is_empty());
    // A token for the name in the URL does not cover the repository served; the challenge names it.
    let t = token(&s, Some(("bob", "bob-secret")), "repository:secret:pull").await;
    let (h, _) = s
        .expect_with(
            Method::GET,
            "/v2/secret/manifests/1?ns=team",
            &format!("Bearer {t}"),
            StatusCode::UNAUTHORIZED,
            Some("UNAUTHORIZED"),
        )
        .await;
    assert!(
        challenge(&h).contains("scope=\"repository:team/secret:pull\",error=\"insufficient_scope\""),
        "{h:?}"
    );
    // Nor may a token granted for team/secret be had by bob.
    let t = token(&s, Some(("bob", "bob-secret")), "repository:team/secret:pull").await;
    s.expect_with(
        Method::GET,
        "/v2/secret/manifests/1?ns=team",
        &format!("Bearer {t}"),
        StatusCode::UNAUTHORIZED,
        Some("UNAUTHORIZED"),
    )
    .await;
}

/// The repositories of a catalog page and its `Link` header (empty when none).
async fn catalog_page(s: &Server, query: &str, authorization: &str) -> (Vec<String>, String) {
    let (h, body) = s
        .expect_with(
            Method::GET,
            &format!("/v2/_catalog{query}"),
            authorization,
            StatusCode::OK,
            None,
        )
        .await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let repos = v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let link = h
        .get("link")
        .map_or(String::new(), |l| l.to_str().unwrap().to_owned());
    (repos, link)
}

#[tokio::test]
async fn regression_restricted_catalog_lists_only_what_the_user_may_pull() {
    let spool = tempfile::tempdir().unwrap();
    let (s, _) = buildset_with_secrets(spool.path()).await;
    let ci = basic("ci", "ci-secret");
    let (all, _) = catalog_page(&s, "", &ci).await;
    assert_eq!(all, ["quay.io/org/app", "secret", "team/secret", "team/tools"]);
    let bob = basic("bob", "bob-secret");
    let (repos, link) = catalog_page(&s, "", &bob).await;
    assert_eq!(repos, ["quay.io/org/app", "secret"]);
    assert_eq!(link, "");
    // Pages are cut from bob's list: no Link after his last repository, however many follow it.
    let (page, link) = catalog_page(&s, "?n=1", &bob).await;
    assert_eq!(page, ["quay.io/org/app"]);
    assert_eq!(link, "</v2/_catalog?n=1&last=quay.io/org/app>; rel=\"next\"");
    let (page, link) = catalog_page(&s, "?n=1&last=quay.io/org/app", &bob).await;
    assert_eq!(page, ["secret"]);
    assert_eq!(link, "", "nothing bob may pull follows `secret`");
    // A catalog token stands for its user: the same list.
    let t = token(&s, Some(("bob", "bob-secret")), "registry:catalog:*").await;
    let (repos, _) = catalog_page(&s, "", &format!("Bearer {t}")).await;
    assert_eq!(repos, ["quay.io/org/app", "secret"]);
}
