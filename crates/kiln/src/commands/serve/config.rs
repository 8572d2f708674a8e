//! `kiln serve` settings: the TOML file of `--config` (format in docs/registry-config.md) overlaid with the
//! flags given on the command line, then checked into [`Settings`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kiln_client::auth::Credentials;
use kiln_registry::auth::{AccessRule, Auth, AuthMode, Htpasswd, TokenKey};
use kiln_registry::pull_through::{PullThroughOptions, UpstreamSpec, parse_upstream_url};
use kiln_registry::storage::UploadLimits;
use serde::Deserialize;

use crate::cli::{AuthModeArg, LogFormatArg, ServeArgs};
use crate::commands::registry::timeout_of;

/// The config file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub root: Option<PathBuf>,
    pub allow_anonymous_push: Option<bool>,
    pub max_manifest_size: Option<usize>,
    pub log_format: Option<LogFormatArg>,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub gc: GcSection,
    #[serde(default)]
    pub uploads: UploadsSection,
    #[serde(default)]
    pub pull_through: PullThroughSection,
    #[serde(default)]
    pub http: HttpSection,
}

/// `[http]`: connection limits against clients that hold connections without using them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpSection {
    pub max_connections: Option<usize>,
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub stall_timeout: Option<String>,
}

/// `[uploads]`: caps and expiry of upload sessions.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UploadsSection {
    pub per_repository: Option<usize>,
    pub per_client: Option<usize>,
    pub idle_timeout: Option<String>,
}

/// `[pull-through]`: a buildset registry's upstreams.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PullThroughSection {
    pub upstream: Option<String>,
    pub speculative_builds: Option<Vec<String>>,
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    pub cert_dir: Option<PathBuf>,
    pub insecure: Option<bool>,
    pub read_timeout: Option<String>,
    /// Registry `HOST[:PORT]` (as in its URL) → credentials.
    #[serde(default)]
    pub credentials: BTreeMap<String, UpstreamCredentials>,
}

/// `[pull-through.credentials."HOST"]`: a user and a password (or a file holding it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpstreamCredentials {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// `[gc]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GcSection {
    pub interval: Option<String>,
    pub grace: Option<String>,
    pub expire_tags: Option<Vec<String>>,
}

/// `[tls]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub self_signed: Option<bool>,
}

/// How `kiln serve` speaks: plain HTTP or HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    Off,
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
}

/// `[auth]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthSection {
    pub mode: Option<AuthModeArg>,
    pub htpasswd: Option<PathBuf>,
    pub token: Option<bool>,
    pub token_key: Option<PathBuf>,
    pub token_ttl: Option<String>,
    pub realm: Option<String>,
    pub service: Option<String>,
    #[serde(default)]
    pub access: Vec<AccessEntry>,
}

/// `[[auth.access]]`: these users may do these actions on repositories matching these globs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEntry {
    pub users: Vec<String>,
    pub repositories: Vec<String>,
    pub actions: Vec<String>,
}

impl FileConfig {
    /// Reads a config file; relative paths in it are resolved against its folder.
    pub fn read(path: &Path) -> Result<FileConfig> {
        let text = fs_err::read_to_string(path)?;
        let mut file: FileConfig =
            toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?;
        let base = kiln_oci::files::parent_dir(path);
        file.resolve_paths(base);
        Ok(file)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let auth = &mut self.auth;
        let tls = &mut self.tls;
        let pt = &mut self.pull_through;
        let password_files = pt.credentials.values_mut().map(|c| &mut c.password_file);
        for p in [
            &mut pt.cert_dir,
            &mut self.root,
            &mut auth.htpasswd,
            &mut auth.token_key,
            &mut tls.cert,
            &mut tls.key,
        ]
        .into_iter()
        .chain(password_files)
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Flags given on the command line replace the file's values.
    fn overlay(mut self, args: &ServeArgs) -> FileConfig {
        self.listen = args.listen.or(self.listen);
        self.root = args.root.clone().or(self.root);
        if args.allow_anonymous_push {
            self.allow_anonymous_push = Some(true);
        }
        self.max_manifest_size = args.max_manifest_size.or(self.max_manifest_size);
        self.log_format = args.log_format.or(self.log_format);
        let auth = &mut self.auth;
        auth.mode = args.auth_mode.or(auth.mode);
        auth.htpasswd = args.htpasswd.clone().or(auth.htpasswd.take());
        auth.token_key = args.token_key.clone().or(auth.token_key.take());
        auth.token_ttl = args.token_ttl.clone().or(auth.token_ttl.take());
        if args.no_token {
            auth.token = Some(false);
        }
        auth.realm = args.realm.clone().or(auth.realm.take());
        auth.service = args.service.clone().or(auth.service.take());
        let gc = &mut self.gc;
        gc.interval = args.gc_interval.clone().or(gc.interval.take());
        gc.grace = args.gc_grace.clone().or(gc.grace.take());
        if !args.expire_tags.is_empty() {
            gc.expire_tags = Some(args.expire_tags.clone());
        }
        let uploads = &mut self.uploads;
        uploads.per_repository = args.uploads_per_repository.or(uploads.per_repository);
        uploads.per_client = args.uploads_per_client.or(uploads.per_client);
        uploads.idle_timeout = args.uploads_idle_timeout.clone().or(uploads.idle_timeout.take());
        let pt = &mut self.pull_through;
        pt.upstream = args.upstream.clone().or(pt.upstream.take());
        if !args.speculative_build.is_empty() {
            pt.speculative_builds = Some(args.speculative_build.clone());
        }
        for m in &args.mirror {
            let (host, url) = m.split_once('=').unwrap_or((m.as_str(), ""));
            pt.mirrors.insert(host.to_owned(), url.to_owned());
        }
        pt.cert_dir = args.upstream_cert_dir.clone().or(pt.cert_dir.take());
        if args.upstream_insecure {
            pt.insecure = Some(true);
        }
        pt.read_timeout = args.upstream_read_timeout.clone().or(pt.read_timeout.take());
        let http = &mut self.http;
        http.max_connections = args.max_connections.or(http.max_connections);
        http.header_timeout = args.header_timeout.clone().or(http.header_timeout.take());
        http.idle_timeout = args.idle_timeout.clone().or(http.idle_timeout.take());
        http.stall_timeout = args.stall_timeout.clone().or(http.stall_timeout.take());
        let tls = &mut self.tls;
        if args.tls_cert.is_some() || args.tls_self_signed {
            // One way of doing TLS: the command line's replaces the file's.
            tls.cert = args.tls_cert.clone();
            tls.key = args.tls_key.clone();
            tls.self_signed = Some(args.tls_self_signed);
        }
        self
    }
}

/// What `kiln serve` runs with, checked. Files (htpasswd, key) are read by [`AuthSettings::build`].
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub root: PathBuf,
    pub registry: kiln_registry::RegistryConfig,
    pub auth: AuthSettings,
    pub tls: Tls,
    /// Online GC: how often, and how.
    pub gc: Option<(Duration, kiln_registry::storage::GcOptions)>,
    /// Caps and expiry of upload sessions.
    pub uploads: UploadLimits,
    /// Access log as JSON lines (else text).
    pub json_log: bool,
    /// A buildset registry's upstreams (`None`: none). The spool folder is set when serving.
    pub pull_through: Option<PullThroughOptions>,
    /// Connection limits (`[http]`).
    pub limits: kiln_registry::Limits,
}

/// `[http]`, checked; what is not given keeps [`kiln_registry::Limits`]'s default.
fn limits(http: &HttpSection) -> Result<kiln_registry::Limits> {
    let mut limits = kiln_registry::Limits::default();
    let timeout = |key: &str, text: &Option<String>, default: Duration| match text {
        None => Ok(default),
        Some(text) => timeout_of(&format!("[http] {key}"), text),
    };
    limits.header_timeout = timeout("header-timeout", &http.header_timeout, limits.header_timeout)?;
    limits.idle_timeout = timeout("idle-timeout", &http.idle_timeout, limits.idle_timeout)?;
    limits.stall_timeout = timeout("stall-timeout", &http.stall_timeout, limits.stall_timeout)?;
    match http.max_connections {
        Some(0) => bail!("[http] max-connections must be at least 1 (--max-connections)"),
        Some(n) => limits.max_connections = n,
        None => {}
    }
    Ok(limits)
}

/// `[auth]`, checked.
#[derive(Debug)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub htpasswd: Option<PathBuf>,
    /// `None`: Basic auth on every request.
    pub token_key: Option<PathBuf>,
    pub token_ttl: Duration,
    pub realm: Option<String>,
    pub service: String,
    pub access: Vec<AccessEntry>,
}

impl AuthSettings {
    fn from_section(a: AuthSection, root: &Path) -> Result<AuthSettings> {
        let mode = match (a.mode, &a.htpasswd) {
            (Some(AuthModeArg::Open), _) => AuthMode::Open,
            (Some(AuthModeArg::AnonymousRead), _) | (None, Some(_)) => AuthMode::AnonymousRead,
            (Some(AuthModeArg::Restricted), _) => AuthMode::Restricted,
            (None, None) => AuthMode::Open,
        };
        if mode != AuthMode::Open && a.htpasswd.is_none() {
            bail!(
                "auth mode `{}` needs users: pass --htpasswd FILE or set `[auth] htpasswd`",
                mode.as_str()
            );
        }
        let token_ttl = match &a.token_ttl {
            None => Duration::from_secs(300),
            Some(text) => Duration::from_secs(
                kiln_tree::parse_duration(text).map_err(|e| anyhow::anyhow!("token-ttl: {e}"))?,
            ),
        };
        let token_key = a
            .token
            .unwrap_or(true)
            .then(|| a.token_key.unwrap_or_else(|| root.join("token.key")));
        Ok(AuthSettings {
            mode,
            htpasswd: a.htpasswd,
            token_key,
            token_ttl,
            realm: a.realm,
            service: a.service.unwrap_or_else(|| "kiln".to_owned()),
            access: a.access,
        })
    }

    /// Reads the htpasswd file and the token key (generating the default key if absent: the message
    /// says so). `https`: whether the registry serves TLS (the default realm's scheme).
    pub fn build(&self, https: bool, say: &mut dyn FnMut(String)) -> Result<Auth> {
        let mut auth = Auth::open();
        auth.mode = self.mode;
        auth.https = https;
        auth.token_ttl = self.token_ttl;
        auth.realm = self.realm.clone();
        auth.service = self.service.clone();
        if self.mode == AuthMode::Open {
            return Ok(auth);
        }
        if let Some(path) = &self.htpasswd {
            auth.users = Htpasswd::load(path)?;
            if auth.users.is_empty() {
                bail!("{} has no users", path.display());
            }
        }
        for entry in &self.access {
            auth.rules.push(AccessRule::new(
                &entry.users,
                &entry.repositories,
                &entry.actions,
            )?);
        }
        if let Some(path) = &self.token_key {
            let (key, generated) = TokenKey::load_or_generate(path)?;
            if generated {
                say(format!(
                    "generated a token signing key at {} (mode 0600; pass --token-key FILE to use your own)",
                    path.display()
                ));
            }
            auth.token_key = Some(key);
        }
        Ok(auth)
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";

/// What `--print-client-config` needs: no root, no files read.
#[derive(Debug)]
pub struct ClientView {
    pub listen: SocketAddr,
    /// `None`: plain HTTP. `Some(None)`: HTTPS with a certificate clients already trust.
    pub ca: Option<Option<PathBuf>>,
    /// The mirrored registry hosts besides docker.io.
    pub mirrors: Vec<String>,
}

impl ClientView {
    pub fn load(args: &ServeArgs) -> Result<ClientView> {
        let file = match &args.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        }
        .overlay(args);
        let listen = match file.listen {
            Some(l) => l,
            None => DEFAULT_LISTEN.parse()?,
        };
        let ca = match (&file.tls.cert, file.tls.self_signed.unwrap_or(false), &file.root) {
            (None, false, _) => None,
            (Some(_), _, _) => Some(None),
            (None, true, Some(root)) => Some(Some(root.join("tls/ca.crt"))),
            (None, true, None) => bail!("the self-signed CA is in ROOT/tls: pass --root DIR"),
        };
        let mirrors = file
            .pull_through
            .mirrors
            .into_keys()
            .filter(|h| h != "docker.io")
            .collect();
        Ok(ClientView { listen, ca, mirrors })
    }
}

impl Settings {
    /// The config file (if any) overlaid with the flags, checked.
    pub fn load(args: &ServeArgs) -> Result<Settings> {
        let file = match &args.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Settings::from_file(file.overlay(args))
    }

    fn from_file(file: FileConfig) -> Result<Settings> {
        let listen = match file.listen {
            Some(l) => l,
            None => DEFAULT_LISTEN.parse()?,
        };
        let Some(root) = file.root else {
            bail!("no registry root: pass --root DIR or set `root` in the config file");
        };
        let auth = AuthSettings::from_section(file.auth, &root)?;
        let t = file.tls;
        let tls = match (t.cert, t.key, t.self_signed.unwrap_or(false)) {
            (None, None, false) => Tls::Off,
            (None, None, true) => Tls::SelfSigned,
            (Some(cert), Some(key), false) => Tls::Files { cert, key },
            (Some(_), Some(_), true) => bail!("[tls] self-signed and a certificate exclude each other"),
            _ => bail!("TLS needs both a certificate and its key (--tls-cert and --tls-key)"),
        };
        if auth.mode == AuthMode::Open
            && !listen.ip().is_loopback()
            && !file.allow_anonymous_push.unwrap_or(false)
        {
            bail!(
                "refusing to serve on non-loopback address {listen} without authentication; \
                 pass --htpasswd FILE (and --auth MODE), or --allow-anonymous-push to let anyone \
                 who reaches it push and delete"
            );
        }
        let mut registry = kiln_registry::RegistryConfig::default();
        if let Some(max) = file.max_manifest_size {
            registry.max_manifest_bytes = max;
        }
        let g = file.gc;
        let expire_tags = g.expire_tags.unwrap_or_default();
        let gc = match g.interval.as_deref() {
            Some("0") | Some("off") => None,
            None if expire_tags.is_empty() => None,
            interval => {
                let every = kiln_tree::parse_duration(interval.unwrap_or("1h"))
                    .map_err(|e| anyhow::anyhow!("gc interval: {e}"))?;
                let options =
                    super::super::registry_admin::gc_options(g.grace.as_deref(), &expire_tags, false)?;
                Some((Duration::from_secs(every.max(1)), options))
            }
        };
        let pull_through = pull_through_options(file.pull_through, &root)?;
        let limits = limits(&file.http)?;
        Ok(Settings {
            listen,
            root,
            registry,
            auth,
            tls,
            gc,
            uploads: upload_limits(file.uploads)?,
            json_log: file.log_format == Some(LogFormatArg::Json),
            pull_through,
            limits,
        })
    }
}

/// `[uploads]`, checked; unset keys keep [`UploadLimits::default`].
fn upload_limits(u: UploadsSection) -> Result<UploadLimits> {
    let default = UploadLimits::default();
    let idle_timeout = match u.idle_timeout.as_deref() {
        None => default.idle_timeout,
        Some(text) => timeout_of("[uploads] idle-timeout", text)?,
    };
    Ok(UploadLimits {
        per_repository: u.per_repository.unwrap_or(default.per_repository),
        per_client: u.per_client.unwrap_or(default.per_client),
        idle_timeout,
    })
}

/// The host a `--mirror` or `[pull-through] mirrors` entry without a URL pulls from: the registry itself.
fn default_mirror_url(host: &str) -> String {
    format!("https://{}", kiln_client::reference::endpoint_of(host))
}

/// `[pull-through]`, checked; `None` when neither an upstream nor a mirror is given.
fn pull_through_options(pt: PullThroughSection, root: &Path) -> Result<Option<PullThroughOptions>> {
    if pt.upstream.is_none() && pt.mirrors.is_empty() {
        if pt.speculative_builds.as_ref().is_some_and(|b| !b.is_empty()) {
            bail!("--speculative-build needs the intermediate registry: pass --upstream URL");
        }
        return Ok(None);
    }
    let mut credentials = BTreeMap::new();
    for (host, c) in pt.credentials {
        let password = match (c.password, c.password_file) {
            (Some(p), None) => p,
            (None, Some(file)) => fs_err::read_to_string(&file)?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            _ => bail!("[pull-through.credentials.\"{host}\"] needs one of `password` and `password-file`"),
        };
        credentials.insert(
            host,
            Credentials {
                username: c.username,
                password,
            },
        );
    }
    let spec = |url: String| -> Result<UpstreamSpec> {
        let (host, _) = parse_upstream_url(&url)?;
        Ok(UpstreamSpec {
            credentials: credentials.get(&host).cloned(),
            url,
        })
    };
    let mut mirrors = BTreeMap::new();
    for (host, url) in pt.mirrors {
        let url = if url.is_empty() {
            default_mirror_url(&host)
        } else {
            url
        };
        mirrors.insert(host, spec(url)?);
    }
    Ok(Some(PullThroughOptions {
        intermediate: pt.upstream.map(spec).transpose()?,
        builds: pt.speculative_builds.unwrap_or_default(),
        mirrors,
        tls_verify: !pt.insecure.unwrap_or(false),
        cert_dir: pt.cert_dir,
        read_timeout: pt
            .read_timeout
            .as_deref()
            .map(|t| timeout_of("[pull-through] read-timeout", t))
            .transpose()?,
        spool: root.join("ingest"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(argv: &[&str]) -> ServeArgs {
        let cli = crate::cli::Cli::try_parse_from([&["kiln", "serve"], argv].concat()).unwrap();
        match cli.command {
            crate::cli::Command::Serve(a) => *a,
            other => panic!("not serve: {other:?}"),
        }
    }

    fn settings(toml_text: &str, argv: &[&str]) -> Result<Settings> {
        let mut file: FileConfig = toml::from_str(toml_text)?;
        file.resolve_paths(Path::new("/etc/kiln"));
        Settings::from_file(file.overlay(&args(argv)))
    }

    #[test]
    fn flags_win_over_the_file() {
        let s = settings(
            "listen = \"127.0.0.1:6000\"\nroot = \"reg\"\nmax-manifest-size = 10\n",
            &["--listen", "127.0.0.1:7000"],
        )
        .unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.root, Path::new("/etc/kiln/reg"), "relative to the file");
        assert_eq!(s.registry.max_manifest_bytes, 10);
        let s = settings("root = \"/r\"", &["--root", "/x"]).unwrap();
        assert_eq!(s.root, Path::new("/x"));
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn unknown_keys_and_a_missing_root_are_refused() {
        assert!(settings("lisen = \"127.0.0.1:1\"", &["--root", "/r"]).is_err());
        let e = settings("", &[]).unwrap_err().to_string();
        assert!(e.contains("--root"), "{e}");
    }

    #[test]
    fn non_loopback_needs_auth_or_the_explicit_flag() {
        let e = settings("listen = \"0.0.0.0:5000\"", &["--root", "/r"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--allow-anonymous-push"), "{e}");
        assert!(
            settings(
                "listen = \"0.0.0.0:5000\"\nallow-anonymous-push = true",
                &["--root", "/r"]
            )
            .is_ok()
        );
        assert!(
            settings(
                "",
                &["--root", "/r", "--listen", "[::]:1", "--allow-anonymous-push"]
            )
            .is_ok()
        );
    }

    #[test]
    fn users_make_a_non_loopback_address_acceptable() {
        let s = settings(
            "listen = \"0.0.0.0:5000\"\n[auth]\nhtpasswd = \"users\"\n",
            &["--root", "/r"],
        )
        .unwrap();
        assert_eq!(
            s.auth.mode,
            AuthMode::AnonymousRead,
            "users given: anonymous read by default"
        );
        let e = settings(
            "listen = \"0.0.0.0:5000\"\n[auth]\nhtpasswd = \"users\"\nmode = \"open\"\n",
            &["--root", "/r"],
        )
        .unwrap_err();
        assert!(e.to_string().contains("--allow-anonymous-push"), "{e}");
    }

    #[test]
    fn log_format_from_the_file_or_the_flag() {
        assert!(
            !settings("root = \"/r\"", &[]).unwrap().json_log,
            "text by default"
        );
        assert!(
            settings("root = \"/r\"\nlog-format = \"json\"", &[])
                .unwrap()
                .json_log
        );
        let s = settings("root = \"/r\"\nlog-format = \"json\"", &["--log-format", "text"]).unwrap();
        assert!(!s.json_log, "the flag wins");
        assert!(settings("root = \"/r\"\nlog-format = \"xml\"", &[]).is_err());
    }

    #[test]
    fn auth_section_and_flags() {
        let text = "root = \"/r\"\n[auth]\nmode = \"restricted\"\nhtpasswd = \"users\"\ntoken-ttl = \"1h\"\n\
                    [[auth.access]]\nusers = [\"ci\"]\nrepositories = [\"project/**\"]\nactions = [\"push\"]\n";
        let s = settings(text, &[]).unwrap();
        assert_eq!(s.auth.mode, AuthMode::Restricted);
        assert_eq!(s.auth.htpasswd.as_deref(), Some(Path::new("/etc/kiln/users")));
        assert_eq!(s.auth.token_key.as_deref(), Some(Path::new("/r/token.key")));
        assert_eq!(s.auth.token_ttl, Duration::from_secs(3600));
        assert_eq!(s.auth.access.len(), 1);
        let s = settings(
            text,
            &["--auth", "anonymous-read", "--no-token", "--token-ttl", "30s"],
        )
        .unwrap();
        assert_eq!(s.auth.mode, AuthMode::AnonymousRead);
        assert_eq!(s.auth.token_key, None);
        assert_eq!(s.auth.token_ttl, Duration::from_secs(30));
        let e = settings("root = \"/r\"\n[auth]\nmode = \"restricted\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("--htpasswd"), "{e}");
        assert!(settings("root = \"/r\"\n[auth]\nmode = \"closed\"\n", &[]).is_err());
    }

    #[test]
    fn tls_from_the_file_or_the_flags() {
        let s = settings("root = \"/r\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n", &[]).unwrap();
        assert_eq!(
            s.tls,
            Tls::Files {
                cert: "/etc/kiln/c.pem".into(),
                key: "/etc/kiln/k.pem".into()
            }
        );
        let s = settings(
            "root = \"/r\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
            &["--tls-self-signed"],
        )
        .unwrap();
        assert_eq!(s.tls, Tls::SelfSigned);
        assert!(settings("root = \"/r\"\n[tls]\ncert = \"c.pem\"\n", &[]).is_err());
        assert_eq!(settings("root = \"/r\"", &[]).unwrap().tls, Tls::Off);
    }

    #[test]
    fn gc_runs_when_asked_or_when_tags_expire() {
        assert!(settings("root = \"/r\"", &[]).unwrap().gc.is_none());
        let s = settings("root = \"/r\"\n[gc]\nexpire-tags = [\"change_*=24h\"]\n", &[]).unwrap();
        let (every, options) = s.gc.unwrap();
        assert_eq!(every, Duration::from_secs(3600));
        assert_eq!(options.expire_tags[0].pattern(), "change_*");
        let s = settings("root = \"/r\"", &["--gc-interval", "10m", "--gc-grace", "5m"]).unwrap();
        let (every, options) = s.gc.unwrap();
        assert_eq!(
            (every, options.grace),
            (Duration::from_secs(600), Duration::from_secs(300))
        );
        assert!(settings("root = \"/r\"", &["--expire-tags", "change_*"]).is_err());
    }

    #[test]
    fn upload_limits_from_the_file_and_the_flags() {
        let s = settings("root = \"/r\"", &[]).unwrap();
        assert_eq!(s.uploads, UploadLimits::default());
        let text = "root = \"/r\"\n[uploads]\nper-repository = 10\nper-client = 2\nidle-timeout = \"5m\"\n";
        let s = settings(text, &["--uploads-per-client", "0"]).unwrap();
        assert_eq!(
            s.uploads,
            UploadLimits {
                per_repository: 10,
                per_client: 0,
                idle_timeout: Duration::from_secs(300),
            }
        );
        let e = settings("root = \"/r\"", &["--uploads-idle-timeout", "0s"]).unwrap_err();
        assert!(e.to_string().contains("at least 1s"), "{e}");
        assert!(settings("root = \"/r\"\n[uploads]\nper-repo = 1\n", &[]).is_err());
    }

    #[test]
    fn http_limits_from_the_file_and_the_flags() {
        let s = settings("root = \"/r\"", &[]).unwrap();
        assert_eq!(s.limits, kiln_registry::Limits::default());
        let text =
            "root = \"/r\"\n[http]\nmax-connections = 64\nheader-timeout = \"5s\"\nidle-timeout = \"2m\"\n";
        let s = settings(text, &["--stall-timeout", "30s", "--header-timeout", "3s"]).unwrap();
        assert_eq!(s.limits.max_connections, 64);
        assert_eq!(s.limits.header_timeout, Duration::from_secs(3), "the flag wins");
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(120));
        assert_eq!(s.limits.stall_timeout, Duration::from_secs(30));
        let e = settings("root = \"/r\"", &["--idle-timeout", "0s"]).unwrap_err();
        assert!(e.to_string().contains("idle-timeout"), "{e}");
        assert!(settings("root = \"/r\"", &["--max-connections", "0"]).is_err());
        assert!(settings("root = \"/r\"\n[http]\nstall-timeout = \"soon\"\n", &[]).is_err());
    }

    #[test]
    fn pull_through_from_the_file_and_the_flags() {
        assert!(settings("root = \"/r\"", &[]).unwrap().pull_through.is_none());
        let text = "root = \"/r\"\n[pull-through]\nupstream = \"https://inter.example:5000\"\n\
                    speculative-builds = [\"b1\"]\nmirrors = { \"quay.io\" = \"\" }\ncert-dir = \"certs\"\n\
                    [pull-through.credentials.\"inter.example:5000\"]\nusername = \"ci\"\npassword = \"s\"\n";
        let pt = settings(
            text,
            &[
                "--mirror",
                "docker.io=http://127.0.0.1:1",
                "--speculative-build",
                "b2",
            ],
        )
        .unwrap()
        .pull_through
        .unwrap();
        let intermediate = pt.intermediate.unwrap();
        assert_eq!(intermediate.url, "https://inter.example:5000");
        assert_eq!(intermediate.credentials.unwrap().username, "ci");
        assert_eq!(pt.builds, ["b2"], "the flag replaces the file's list");
        assert_eq!(pt.mirrors["quay.io"].url, "https://quay.io");
        assert_eq!(pt.mirrors["docker.io"].url, "http://127.0.0.1:1");
        assert!(pt.mirrors["docker.io"].credentials.is_none());
        assert_eq!(pt.cert_dir.as_deref(), Some(Path::new("/etc/kiln/certs")));
        assert_eq!(pt.spool, Path::new("/r/ingest"));
        assert_eq!(pt.read_timeout, None, "kiln-client's default");
        let pt = settings(
            "root = \"/r\"\n[pull-through]\nupstream = \"x:1\"\nread-timeout = \"2m\"\n",
            &[],
        )
        .unwrap()
        .pull_through
        .unwrap();
        assert_eq!(pt.read_timeout, Some(Duration::from_secs(120)));
        let e = settings("root = \"/r\"", &["--speculative-build", "b"]).unwrap_err();
        assert!(e.to_string().contains("--upstream"), "{e}");
        assert!(settings("root = \"/r\"", &["--upstream", "ftp://x"]).is_err());
        let e = settings(
            "root = \"/r\"\n[pull-through]\nupstream = \"x:1\"\n[pull-through.credentials.\"x:1\"]\nusername = \"u\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("password-file"), "{e}");
    }
}
