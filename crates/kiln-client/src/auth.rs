//! Credentials and authentication challenges.
//!
//! Credentials come, first match wins, from `--creds user:pass` ([`Credentials::parse`]), then from the
//! auth files: `$REGISTRY_AUTH_FILE` (podman's), `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`.
//! In an auth file a registry's `credHelpers` entry, else `auths` (base64 `user:password` in `auth`, or
//! `username`/`password`, or `identitytoken`), else the global `credsStore` answers; a helper is run as
//! `docker-credential-<name> get` with the registry on stdin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::ClientError;
use crate::reference::DOCKER_HUB;

/// A user name and a password (or an identity token, with user `<token>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Parses `user:password` (the password may contain `:`).
    pub fn parse(text: &str) -> Result<Credentials, ClientError> {
        match text.split_once(':') {
            Some((user, pass)) if !user.is_empty() => Ok(Credentials {
                username: user.to_owned(),
                password: pass.to_owned(),
            }),
            _ => Err(ClientError::Config {
                path: PathBuf::from("--creds"),
                reason: "credentials must be `user:password`".to_owned(),
            }),
        }
    }

    /// The `Authorization: Basic …` value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// Where credentials come from.
#[derive(Debug, Clone, Default)]
pub struct CredentialSource {
    /// Used for every registry when set (`--creds`).
    pub explicit: Option<Credentials>,
    /// Auth files, searched in order.
    pub files: Vec<PathBuf>,
    /// `PATH` to find `docker-credential-*` helpers in (default: the inherited one).
    pub helper_path: Option<std::ffi::OsString>,
}

impl CredentialSource {
    /// The default search path from the environment: `$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`
    /// (else `~/.docker/config.json`).
    pub fn from_env(explicit: Option<Credentials>) -> CredentialSource {
        let mut files = Vec::new();
        if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
            files.push(PathBuf::from(f));
        }
        if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            files.push(PathBuf::from(d).join("config.json"));
        } else if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            files.push(PathBuf::from(home).join(".docker/config.json"));
        }
        CredentialSource {
            explicit,
            files,
            helper_path: None,
        }
    }

    /// The credentials for `registry` (`host[:port]`), if any source has them.
    pub async fn lookup(&self, registry: &str) -> Result<Option<Credentials>, ClientError> {
        if let Some(c) = &self.explicit {
            return Ok(Some(c.clone()));
        }
        for file in &self.files {
            if let Some(found) = lookup_file(file, registry, self.helper_path.as_deref()).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// `https://host/v1/` → `host`: how docker and podman keys compare.
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn same_registry(key: &str, registry: &str) -> bool {
    let key = normalize_key(key);
    let hub = |h: &str| h == DOCKER_HUB || h == "index.docker.io" || h == "registry-1.docker.io";
    key == registry || (hub(key) && hub(registry))
}

async fn lookup_file(
    path: &Path,
    registry: &str,
    helper_path: Option<&std::ffi::OsStr>,
) -> Result<Option<Credentials>, ClientError> {
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ClientError::Config {
                path: path.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let config_err = |reason: String| ClientError::Config {
        path: path.to_owned(),
        reason,
    };
    let file: AuthFile = serde_json::from_slice(&bytes).map_err(|e| config_err(e.to_string()))?;
    if let Some((_, helper)) = file.cred_helpers.iter().find(|(k, _)| same_registry(k, registry)) {
        return run_helper(helper, registry, helper_path).await;
    }
    if let Some((key, entry)) = file.auths.iter().find(|(k, _)| same_registry(k, registry)) {
        if let Some(token) = &entry.identitytoken {
            return Ok(Some(Credentials {
                username: "<token>".to_owned(),
                password: token.clone(),
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                username: u.clone(),
                password: p.clone(),
            }));
        }
        if let Some(auth) = &entry.auth {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| config_err(format!("auths.\"{key}\".auth is not base64: {e}")))?;
            let text = String::from_utf8(raw)
                .map_err(|_| config_err(format!("auths.\"{key}\".auth is not UTF-8")))?;
            return Credentials::parse(&text)
                .map(Some)
                .map_err(|_| config_err(format!("auths.\"{key}\".auth is not base64 of user:password")));
        }
    }
    if let Some(store) = &file.creds_store {
        return run_helper(store, registry, helper_path).await;
    }
    Ok(None)
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Runs `docker-credential-<helper> get` with `registry` on stdin.
async fn run_helper(
    helper: &str,
    registry: &str,
    path: Option<&std::ffi::OsStr>,
) -> Result<Option<Credentials>, ClientError> {
    use tokio::io::AsyncWriteExt as _;
    let program = format!("docker-credential-{helper}");
    let err = |reason: String| ClientError::Config {
        path: PathBuf::from(&program),
        reason,
    };
    let mut command = tokio::process::Command::new(&program);
    if let Some(path) = path {
        // On Unix the program is searched on the child's PATH.
        command.env("PATH", path);
    }
    let mut child = command
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("cannot run the credential helper: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .await
            .map_err(|e| err(format!("cannot write to the credential helper: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| err(format!("credential helper failed: {e}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        // The helpers' protocol: "credentials not found in native keychain" means none.
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(err(format!(
            "`{program} get` for {registry} failed ({}): {}",
            out.status,
            text.trim()
        )));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|e| err(format!("unreadable answer for {registry}: {e}")))?;
    Ok(Some(Credentials {
        username: answer.username,
        password: answer.secret,
    }))
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`.
    Basic,
    /// `Bearer realm=…,service=…,scope=…`: the Docker token flow.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter, if any.
        service: Option<String>,
        /// `scope` parameter, if any.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header value; `None` for schemes kiln does not speak.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// `a="x, y",b=z` → {a: "x, y", b: z}.
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".to_owned(),
                service: Some("registry.example".to_owned()),
                scope: Some("repository:a/b:pull,push".to_owned()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[tokio::test]
    async fn auth_files_in_order_with_base64_and_hub_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("auth.json");
        let second = dir.path().join("config.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("u1:p:w");
        fs_err::write(
            &first,
            format!(r#"{{"auths":{{"localhost:5000":{{"auth":"{b64}"}}}}}}"#),
        )
        .unwrap();
        fs_err::write(
            &second,
            r#"{"auths":{"https://index.docker.io/v1/":{"username":"hub","password":"pw"},
                         "localhost:5000":{"username":"later","password":"x"}}}"#,
        )
        .unwrap();
        let src = CredentialSource {
            explicit: None,
            files: vec![dir.path().join("absent.json"), first, second],
            helper_path: None,
        };
        let c = src.lookup("localhost:5000").await.unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u1", "p:w"));
        assert_eq!(src.lookup("docker.io").await.unwrap().unwrap().username, "hub");
        assert_eq!(src.lookup("other:1").await.unwrap(), None);
        let explicit = CredentialSource {
            explicit: Some(Credentials::parse("a:b").unwrap()),
            ..src
        };
        assert_eq!(explicit.lookup("other:1").await.unwrap().unwrap().username, "a");
    }

    #[tokio::test]
    async fn credential_helpers_are_run() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-kilntest");
        fs_err::write(
            &helper,
            "#!/bin/sh\nread host\necho \"{\\\"Username\\\":\\\"h-$host\\\",\\\"Secret\\\":\\\"s\\\"}\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("config.json");
        fs_err::write(&config, r#"{"credHelpers":{"reg.example":"kilntest"}}"#).unwrap();
        let src = CredentialSource {
            explicit: None,
            files: vec![config],
            helper_path: Some(format!("{}:/usr/bin:/bin", dir.path().display()).into()),
        };
        let c = src.lookup("reg.example").await.unwrap().unwrap();
        assert_eq!(c.username, "h-reg.example");
        assert_eq!(src.lookup("other.example").await.unwrap(), None);
    }
}
