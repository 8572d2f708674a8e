//! `kiln serve` settings: the TOML file of `--config` (format in docs/registry-config.md) overlaid with the
//! flags given on the command line, then checked into [`Settings`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use crate::cli::ServeArgs;

/// The config file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub root: Option<PathBuf>,
    pub allow_anonymous_push: Option<bool>,
    pub max_manifest_size: Option<usize>,
}

impl FileConfig {
    /// Reads a config file; relative paths in it are resolved against its folder.
    pub fn read(path: &Path) -> Result<FileConfig> {
        let text = fs_err::read_to_string(path)?;
        let mut file: FileConfig =
            toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        file.resolve_paths(base);
        Ok(file)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.root].into_iter().flatten() {
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
        self
    }
}

/// What `kiln serve` runs with, checked.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub root: PathBuf,
    pub registry: kiln_registry::RegistryConfig,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";

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
        if !listen.ip().is_loopback() && !file.allow_anonymous_push.unwrap_or(false) {
            bail!(
                "refusing to serve on non-loopback address {listen} without authentication; \
                 pass --allow-anonymous-push to let anyone who reaches it push and delete"
            );
        }
        let mut registry = kiln_registry::RegistryConfig::default();
        if let Some(max) = file.max_manifest_size {
            registry.max_manifest_bytes = max;
        }
        Ok(Settings {
            listen,
            root,
            registry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(argv: &[&str]) -> ServeArgs {
        let cli = crate::cli::Cli::try_parse_from([&["kiln", "serve"], argv].concat()).unwrap();
        match cli.command {
            crate::cli::Command::Serve(a) => a,
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
}
