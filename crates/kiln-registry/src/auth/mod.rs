//! Who may do what: auth modes, htpasswd users, per-user access rules, the Docker token flow.
//!
//! A request carries no credentials (anonymous), Basic credentials (checked against the htpasswd file), or
//! a Bearer token issued by `GET /token` (checked for signature, expiry, service and the repository and
//! action it needs). A refusal is a 401 with a `WWW-Authenticate` challenge (Bearer with the scope the
//! request needs, or Basic when tokens are off), or a 403 for a known user whom the rules refuse.

mod htpasswd;
mod token;

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine as _;
use globset::{Glob, GlobBuilder, GlobMatcher};

pub use htpasswd::Htpasswd;
pub use token::{Claims, Grant, MIN_KEY_BYTES, TokenError, TokenKey};

use crate::error::{ErrorCode, RegistryError};

/// Who may read and write without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Anyone may pull, push and delete (the loopback default).
    #[default]
    Open,
    /// Anyone may pull; pushing and deleting need a user (the CI intermediate-registry setup).
    AnonymousRead,
    /// Everything needs a user.
    Restricted,
}

impl AuthMode {
    /// The mode's name in flags and config files.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Open => "open",
            AuthMode::AnonymousRead => "anonymous-read",
            AuthMode::Restricted => "restricted",
        }
    }
}

/// What a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs, put manifests and tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// The action as written in scopes and tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// Parses `pull`, `push` or `delete`.
    pub fn from_name(name: &str) -> Option<Action> {
        match name {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            _ => None,
        }
    }

    const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];
}

/// Configuration problems: an unreadable or invalid htpasswd or key file, a bad pattern.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A file could not be read or written (fs-err names it).
    #[error(transparent)]
    Io(std::io::Error),
    /// A line of the htpasswd file is refused.
    #[error("{path} line {line}: {reason}")]
    Htpasswd {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The token signing key is unusable.
    #[error("token key {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A repository pattern of an access rule does not parse.
    #[error("invalid repository pattern `{pattern}`: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// An access rule names an unknown action.
    #[error("unknown action `{0}` (use pull, push, delete)")]
    Action(String),
}

/// One access rule: these users may do these actions on repositories matching these patterns.
#[derive(Debug)]
pub struct AccessRule {
    users: Vec<String>,
    patterns: Vec<GlobMatcher>,
    actions: Vec<Action>,
}

impl AccessRule {
    /// A rule. `users` may contain `*` (any authenticated user); patterns are globs where `*` stays within
    /// one name component and `**` crosses `/` (`project/**`, `tmp/*`, `*`); actions are `pull`, `push`,
    /// `delete`.
    pub fn new(users: &[String], patterns: &[String], actions: &[String]) -> Result<AccessRule, AuthError> {
        let patterns = patterns
            .iter()
            .map(|p| {
                GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()
                    .map(|g: Glob| g.compile_matcher())
                    .map_err(|e| AuthError::Pattern {
                        pattern: p.clone(),
                        reason: e.kind().to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let actions = actions
            .iter()
            .map(|a| Action::from_name(a).ok_or_else(|| AuthError::Action(a.clone())))
            .collect::<Result<_, _>>()?;
        Ok(AccessRule {
            users: users.to_vec(),
            patterns,
            actions,
        })
    }

    fn allows(&self, user: &str, repo: &str, action: Action) -> bool {
        self.actions.contains(&action)
            && self.users.iter().any(|u| u == user || u == "*")
            && self.patterns.iter().any(|p| p.is_match(repo))
    }
}

/// The auth configuration of a registry.
#[derive(Debug, Default)]
pub struct Auth {
    /// The mode.
    pub mode: AuthMode,
    /// The users.
    pub users: Htpasswd,
    /// Access rules; with none, every user may do everything.
    pub rules: Vec<AccessRule>,
    /// The token flow's signing key; `None` means Basic auth on every request.
    pub token_key: Option<TokenKey>,
    /// How long issued tokens last.
    pub token_ttl: Duration,
    /// The token endpoint URL in challenges; default `<scheme>://<Host>/token`.
    pub realm: Option<String>,
    /// The service name in challenges and tokens.
    pub service: String,
    /// Whether the registry is served over TLS (the default realm's scheme).
    pub https: bool,
}

impl Auth {
    /// An open registry.
    pub fn open() -> Auth {
        Auth {
            service: "kiln".to_owned(),
            token_ttl: Duration::from_secs(300),
            ..Auth::default()
        }
    }

    /// Whether `user` (None: anonymous) may do `action` on `repo` under the mode and the rules.
    pub fn allowed(&self, user: Option<&str>, repo: &str, action: Action) -> bool {
        match (self.mode, user) {
            (AuthMode::Open, _) => true,
            (AuthMode::AnonymousRead, _) if action == Action::Pull => true,
            (_, None) => false,
            (_, Some(user)) => {
                self.rules.is_empty() || self.rules.iter().any(|r| r.allows(user, repo, action))
            }
        }
    }

    fn may_list_catalog(&self, user: Option<&str>) -> bool {
        self.mode != AuthMode::Restricted || user.is_some()
    }

    fn realm(&self, headers: &HeaderMap) -> String {
        if let Some(realm) = &self.realm {
            return realm.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{host}/token")
    }

    /// A 401 with the challenge for `scope` (e.g. `repository:a/b:pull,push`), or Basic when tokens are off.
    fn challenge(
        &self,
        headers: &HeaderMap,
        scope: Option<&str>,
        message: String,
        error: Option<&str>,
    ) -> RegistryError {
        let value = if self.token_key.is_some() {
            let mut v = format!(
                "Bearer realm=\"{}\",service=\"{}\"",
                self.realm(headers),
                self.service
            );
            if let Some(scope) = scope {
                v.push_str(&format!(",scope=\"{scope}\""));
            }
            if let Some(error) = error {
                v.push_str(&format!(",error=\"{error}\""));
            }
            v
        } else {
            format!("Basic realm=\"{}\"", self.service)
        };
        let e = RegistryError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message);
        match HeaderValue::from_str(&value) {
            Ok(v) => e.with_header(header::WWW_AUTHENTICATE, v),
            Err(_) => e,
        }
    }
}

/// What a request needs before it reaches the registry.
#[derive(Debug, Clone)]
pub enum Need {
    /// Nothing (health).
    Nothing,
    /// Credentials when the registry is not open (`GET /v2/`: clients log in with it).
    Login,
    /// The catalog.
    Catalog,
    /// An action on a repository.
    Repository(String, Action),
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    /// Basic credentials that verified.
    User(String),
    /// A verified token.
    Token(Box<Claims>),
}

impl Caller {
    /// The user name, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::User(u) => Some(u),
            Caller::Token(c) => (!c.sub.is_empty()).then_some(c.sub.as_str()),
        }
    }

    /// Whether this caller may do `action` on `repo`.
    pub fn may(&self, auth: &Auth, repo: &str, action: Action) -> bool {
        match self {
            Caller::Token(claims) => auth.mode == AuthMode::Open || claims.allows(repo, action),
            other => auth.allowed(other.user(), repo, action),
        }
    }

    /// Whether the catalog shows `repo` to this caller: when its user (or anonymous caller) may pull it
    /// under the mode and the rules. A token counts for its user, not for the repositories it grants: a
    /// catalog token (`registry:catalog:*`) names none.
    pub fn may_list(&self, auth: &Auth, repo: &str) -> bool {
        auth.allowed(self.user(), repo, Action::Pull)
    }
}

/// Decodes `Basic base64(user:password)`.
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Checks Basic credentials off the async workers (bcrypt takes milliseconds).
async fn verify_user(
    auth: &std::sync::Arc<Auth>,
    user: String,
    password: String,
) -> Result<String, RegistryError> {
    let a = std::sync::Arc::clone(auth);
    let u = user.clone();
    let ok = tokio::task::spawn_blocking(move || a.users.verify(&u, &password))
        .await
        .map_err(|e| RegistryError::internal(format!("password check failed: {e}")))?;
    if ok {
        Ok(user)
    } else {
        Err(RegistryError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            format!("wrong user name or password for `{user}`"),
        ))
    }
}

fn scope_of(need: &Need) -> Option<String> {
    match need {
        Need::Repository(name, Action::Pull) => Some(format!("repository:{name}:pull")),
        Need::Repository(name, Action::Push) => Some(format!("repository:{name}:pull,push")),
        Need::Repository(name, Action::Delete) => Some(format!("repository:{name}:delete")),
        Need::Catalog => Some("registry:catalog:*".to_owned()),
        _ => None,
    }
}

/// Decides a request: the caller if it may go on, else the 401/403 to answer.
pub async fn authorize(
    auth: &std::sync::Arc<Auth>,
    headers: &HeaderMap,
    need: &Need,
) -> Result<Caller, RegistryError> {
    // The token endpoint checks its own credentials; health checks need none.
    if auth.mode == AuthMode::Open || matches!(need, Need::Nothing) {
        return Ok(Caller::Anonymous);
    }
    let scope = scope_of(need);
    let refuse =
        |message: String, error: Option<&str>| auth.challenge(headers, scope.as_deref(), message, error);
    let caller = match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        None => Caller::Anonymous,
        Some(value) if value.len() > 7 && value[..7].eq_ignore_ascii_case("bearer ") => {
            let Some(key) = &auth.token_key else {
                return Err(refuse(
                    "bearer tokens are not accepted here; use Basic credentials".to_owned(),
                    None,
                ));
            };
            match key.verify(value[7..].trim(), &auth.service) {
                Ok(claims) => Caller::Token(Box::new(claims)),
                Err(e) => return Err(refuse(e.to_string(), Some("invalid_token"))),
            }
        }
        Some(value) => match basic_credentials(value) {
            Some((user, password)) => match verify_user(auth, user, password).await {
                Ok(user) => Caller::User(user),
                Err(e) => return Err(refuse(e.message, None)),
            },
            None => return Err(refuse("unsupported Authorization header".to_owned(), None)),
        },
    };
    let allowed = match need {
        Need::Nothing => true,
        Need::Login => !matches!(caller, Caller::Anonymous),
        Need::Catalog => match &caller {
            Caller::Token(c) => c.allows_catalog() || auth.may_list_catalog(caller.user()),
            other => auth.may_list_catalog(other.user()),
        },
        Need::Repository(name, action) => caller.may(auth, name, *action),
    };
    if allowed {
        return Ok(caller);
    }
    let what = match need {
        Need::Repository(name, action) => format!("{} on repository {name}", action.as_str()),
        Need::Catalog => "listing the catalog".to_owned(),
        _ => "this request".to_owned(),
    };
    Err(match &caller {
        Caller::Anonymous => refuse(format!("authentication required for {what}"), None),
        Caller::Token(_) => refuse(
            format!("the token does not allow {what}"),
            Some("insufficient_scope"),
        ),
        Caller::User(user) => RegistryError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Denied,
            format!("user `{user}` may not do {what}"),
        ),
    })
}

/// Answers `GET /token?service=…&scope=…`: a token granting what the caller asked for and may do.
pub async fn issue_token(
    auth: &std::sync::Arc<Auth>,
    headers: &HeaderMap,
    query: &[(String, String)],
) -> Result<serde_json::Value, RegistryError> {
    let Some(key) = &auth.token_key else {
        return Err(RegistryError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Unsupported,
            "token auth is off".to_owned(),
        ));
    };
    let user = match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(value) => {
            let Some((user, password)) = basic_credentials(value) else {
                return Err(auth.challenge(
                    headers,
                    None,
                    "the token endpoint takes Basic credentials".to_owned(),
                    None,
                ));
            };
            match verify_user(auth, user, password).await {
                Ok(u) => Some(u),
                Err(e) => {
                    let e = RegistryError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, e.message);
                    return Err(
                        match HeaderValue::from_str(&format!("Basic realm=\"{}\"", auth.service)) {
                            Ok(v) => e.with_header(header::WWW_AUTHENTICATE, v),
                            Err(_) => e,
                        },
                    );
                }
            }
        }
    };
    if user.is_none() && auth.mode == AuthMode::Restricted {
        let e = RegistryError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "this registry needs a user".to_owned(),
        );
        return Err(
            match HeaderValue::from_str(&format!("Basic realm=\"{}\"", auth.service)) {
                Ok(v) => e.with_header(header::WWW_AUTHENTICATE, v),
                Err(_) => e,
            },
        );
    }
    let mut access = Vec::new();
    for (k, v) in query {
        if k != "scope" {
            continue;
        }
        for scope in v.split(' ').filter(|s| !s.is_empty()) {
            // type:name:actions, the name may not contain `:` but the actions come after the last one.
            let Some((rest, actions)) = scope.rsplit_once(':') else {
                continue;
            };
            let Some((kind, name)) = rest.split_once(':') else {
                continue;
            };
            let wanted: Vec<&str> = actions.split(',').collect();
            let granted: Vec<String> = match kind {
                "repository" if name.parse::<crate::names::RepoName>().is_ok() => Action::ALL
                    .into_iter()
                    .filter(|a| wanted.contains(&a.as_str()) || wanted.contains(&"*"))
                    .filter(|a| auth.allowed(user.as_deref(), name, *a))
                    .map(|a| a.as_str().to_owned())
                    .collect(),
                "registry" if name == "catalog" && auth.may_list_catalog(user.as_deref()) => {
                    vec!["*".to_owned()]
                }
                _ => Vec::new(),
            };
            if !granted.is_empty() {
                access.push(Grant {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    actions: granted,
                });
            }
        }
    }
    tracing::info!(
        target: "kiln_registry::access",
        user = user.as_deref().unwrap_or(""),
        grants = ?access,
        "issued token"
    );
    let token = key.issue(&auth.service, user.as_deref(), access, auth.token_ttl);
    Ok(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": auth.token_ttl.as_secs(),
        "issued_at": token::rfc3339_now(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(users: &[&str], repos: &[&str], actions: &[&str]) -> AccessRule {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        AccessRule::new(&s(users), &s(repos), &s(actions)).unwrap()
    }

    #[test]
    fn modes_and_rules() {
        let mut auth = Auth::open();
        assert!(auth.allowed(None, "a", Action::Delete));
        auth.mode = AuthMode::AnonymousRead;
        assert!(auth.allowed(None, "a", Action::Pull));
        assert!(!auth.allowed(None, "a", Action::Push));
        assert!(
            auth.allowed(Some("ci"), "a", Action::Push),
            "no rules: users may do everything"
        );
        auth.rules = vec![
            rule(&["ci"], &["project/**"], &["push", "delete"]),
            rule(&["*"], &["tmp/*"], &["push"]),
        ];
        assert!(auth.allowed(Some("ci"), "project/a/b", Action::Push));
        assert!(!auth.allowed(Some("ci"), "other", Action::Push));
        assert!(auth.allowed(Some("bob"), "tmp/x", Action::Push));
        assert!(
            !auth.allowed(Some("bob"), "tmp/x/y", Action::Push),
            "* stays in one component"
        );
        assert!(!auth.allowed(Some("bob"), "tmp/x", Action::Delete));
        assert!(
            auth.allowed(Some("bob"), "other", Action::Pull),
            "anonymous-read: everyone pulls"
        );
        auth.mode = AuthMode::Restricted;
        assert!(!auth.allowed(Some("bob"), "other", Action::Pull));
        assert!(!auth.allowed(None, "tmp/x", Action::Pull));
        assert!(AccessRule::new(&[], &["a[".to_owned()], &[]).is_err());
        assert!(AccessRule::new(&[], &[], &["write".to_owned()]).is_err());
    }

    #[test]
    fn basic_credentials_decode() {
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ci:pa:ss")
        );
        assert_eq!(basic_credentials(&v), Some(("ci".to_owned(), "pa:ss".to_owned())));
        assert_eq!(basic_credentials("Basic !!"), None);
    }
}
