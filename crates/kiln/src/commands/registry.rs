//! What the registry commands (push, pull, copy, tag, promote, untag) share: the client from the
//! flags, the async runtime, progress on stderr, and their output.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use kiln_client::auth::{CredentialSource, Credentials};
use kiln_client::progress::{BlobOutcome, Progress};
use kiln_client::{Client, ClientConfig, Platform, PlatformChoice, Reference, Transferred};
use kiln_oci::Digest;

use crate::cli::{GlobalArgs, PlatformArgs, RegistryArgs};
use crate::output;

/// A timeout setting `what` (`--read-timeout`, `[http] idle-timeout`): a duration of at least 1 s.
pub fn timeout_of(what: &str, text: &str) -> Result<std::time::Duration> {
    match kiln_tree::parse_duration(text) {
        Ok(0) => anyhow::bail!("{what} `{text}`: must be at least 1s"),
        Ok(secs) => Ok(std::time::Duration::from_secs(secs)),
        Err(e) => anyhow::bail!("{what}: {e}"),
    }
}

/// The client the flags describe.
pub fn client(global: &GlobalArgs, args: &RegistryArgs) -> Result<Client> {
    let explicit = args.creds.as_deref().map(Credentials::parse).transpose()?;
    let config = ClientConfig {
        credentials: CredentialSource::from_env(explicit),
        tls_verify: args.tls_verify && !args.insecure,
        cert_dir: args.cert_dir.clone(),
        concurrency: args.jobs.max(1),
        read_timeout: match &args.read_timeout {
            Some(text) => timeout_of("--read-timeout", text)?,
            None => kiln_client::DEFAULT_READ_TIMEOUT,
        },
        progress: progress(global.quiet),
        ..ClientConfig::default()
    };
    Ok(Client::new(config))
}

/// Runs `f` on a multi-threaded runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    runtime()?.block_on(f)
}

/// A multi-threaded runtime, for a command that talks to registries in several steps with blocking work
/// in between (a client's connections live as long as the runtime that made them).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub fn parse_reference(text: &str) -> Result<Reference> {
    Ok(text.parse::<Reference>()?)
}

pub fn platform_choice(args: &PlatformArgs) -> Result<PlatformChoice> {
    Ok(if args.all {
        PlatformChoice::All
    } else {
        PlatformChoice::One(match &args.platform {
            Some(p) => Platform::parse(p)?,
            None => Platform::host(),
        })
    })
}

/// Prints a push or pull result: `REFERENCE DIGEST SIZE` or JSON (with the store name when there is one).
pub fn print_transferred(json: bool, t: &Transferred, name: Option<&str>) -> Result<()> {
    output::stdout(|out| {
        if json {
            let mut value = serde_json::to_value(t).map_err(std::io::Error::other)?;
            if let (Some(name), Some(map)) = (name, value.as_object_mut()) {
                map.insert("name".to_owned(), name.into());
            }
            serde_json::to_writer_pretty(&mut *out, &value)?;
            writeln!(out)
        } else {
            writeln!(out, "{}\t{}\t{}", name.unwrap_or(&t.reference), t.digest, t.bytes)
        }
    })
}

/// Progress bars on a terminal (when `CI` is unset), else one line per finished blob; nothing with -q.
fn progress(quiet: bool) -> Arc<dyn Progress> {
    if quiet {
        return Arc::new(kiln_client::progress::NoProgress);
    }
    let bars = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    Arc::new(StderrProgress {
        multi: bars.then(indicatif::MultiProgress::new),
        bars: Mutex::new(HashMap::new()),
    })
}

struct StderrProgress {
    multi: Option<indicatif::MultiProgress>,
    bars: Mutex<HashMap<Digest, (indicatif::ProgressBar, u64)>>,
}

fn short(digest: &Digest) -> String {
    format!("{}:{}", digest.algorithm(), &digest.hex()[..12])
}

impl Progress for StderrProgress {
    fn start(&self, digest: &Digest, size: u64, verb: &str) {
        let bar = match &self.multi {
            Some(multi) => {
                let bar = multi.add(indicatif::ProgressBar::new(size));
                let style = indicatif::ProgressStyle::with_template(
                    "{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
                bar.set_style(style);
                bar.set_prefix(format!("{verb} {}", short(digest)));
                bar
            }
            None => indicatif::ProgressBar::hidden(),
        };
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(digest.clone(), (bar, size));
        }
    }

    fn position(&self, digest: &Digest, position: u64) {
        if let Ok(bars) = self.bars.lock()
            && let Some((bar, _)) = bars.get(digest)
        {
            bar.set_position(position);
        }
    }

    fn finish(&self, digest: &Digest, outcome: BlobOutcome) {
        let entry = self.bars.lock().ok().and_then(|mut b| b.remove(digest));
        let size = entry.as_ref().map_or(0, |(_, size)| *size);
        if let Some((bar, _)) = &entry {
            bar.finish_and_clear();
        }
        let line = match outcome {
            BlobOutcome::Pushed | BlobOutcome::Pulled => {
                format!("{} {} ({size} bytes)", outcome.as_str(), short(digest))
            }
            _ => format!("{} {}", outcome.as_str(), short(digest)),
        };
        match &self.multi {
            Some(multi) => {
                let _ignored = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn retry(&self, what: &str, error: &str) {
        let line = format!("retrying {what}: {error}");
        match &self.multi {
            Some(multi) => {
                let _ignored = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}
