#![doc = include_str!("../README.md")]

mod blobs;
mod layout;
mod mixed;
mod proto;
mod random;
mod stats;

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

use crate::proto::Registry;

/// Load generator for registry benchmarks (bench/registry.sh).
#[derive(Parser)]
#[command(name = "kiln-regbench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Push (monolithic and chunked) and pull (whole and ranged) blobs of each size; registries take turns.
    Blobs {
        /// A registry as NAME=HOST:PORT (plain HTTP); give two to get ratios (first / second).
        #[arg(long = "registry", required = true)]
        registries: Vec<String>,
        /// Blob sizes in MiB, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
        sizes: Vec<u64>,
        /// Repetitions of each case per registry (medians are reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// PATCH size of chunked pushes and Range size of ranged pulls, in MiB.
        #[arg(long, default_value_t = 5)]
        chunk_mib: u64,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A mixed pull/push load at a fixed concurrency for a fixed time, each registry alone in turn.
    Mixed {
        /// A registry as NAME=HOST:PORT[@PID]; with PID its memory is measured (VmHWM, VmRSS).
        #[arg(long = "registry", required = true)]
        registries: Vec<String>,
        /// Concurrent requests.
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
        /// Seconds of load per registry.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Share of pulls in percent (the rest are pushes of new blobs).
        #[arg(long, default_value_t = 75)]
        pull_percent: u64,
        /// Blob sizes in KiB, comma-separated; each operation picks one at random.
        #[arg(long, value_delimiter = ',', default_value = "1024")]
        sizes_kib: Vec<u64>,
        /// Blobs pushed before the load for the pulls to read.
        #[arg(long, default_value_t = 20)]
        seed_blobs: usize,
        /// Also write the figures as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Writes an OCI layout holding one image of random-content layers (uncompressed tars).
    Layout {
        /// The layout folder.
        dir: PathBuf,
        /// Total content in MiB.
        #[arg(long, default_value_t = 200)]
        mib: u64,
        /// Number of layers.
        #[arg(long, default_value_t = 4)]
        layers: usize,
        /// The image's name in the layout (`oci:DIR:TAG`).
        #[arg(long, default_value = "bench")]
        tag: String,
        /// Seed of the content.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn parse_registry(spec: &str) -> Result<Registry> {
    let (name, rest) = spec
        .split_once('=')
        .with_context(|| format!("registry {spec:?} is not NAME=HOST:PORT[@PID]"))?;
    let (addr, pid) = match rest.split_once('@') {
        Some((a, p)) => (
            a,
            Some(p.parse().with_context(|| format!("bad pid in {spec:?}"))?),
        ),
        None => (rest, None),
    };
    if name.is_empty() || addr.is_empty() {
        bail!("registry {spec:?} is not NAME=HOST:PORT[@PID]");
    }
    Ok(Registry {
        name: name.to_owned(),
        base: format!("http://{addr}"),
        pid,
    })
}

/// The registries of the command line and a client pooling `connections` to each.
fn setup(specs: &[String], connections: usize) -> Result<(Vec<Registry>, reqwest::Client)> {
    let regs = specs
        .iter()
        .map(|s| parse_registry(s))
        .collect::<Result<Vec<_>>>()?;
    Ok((regs, proto::http_client(connections)?))
}

fn emit(markdown: &str, value: &serde_json::Value, json: Option<&PathBuf>) -> Result<()> {
    if let Some(path) = json {
        fs_err::write(path, serde_json::to_vec_pretty(value)?)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{markdown}")?;
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Blobs {
            registries,
            sizes,
            reps,
            chunk_mib,
            json,
        } => {
            let (regs, http) = setup(&registries, 4)?;
            let plan = blobs::BlobPlan {
                sizes_mib: sizes,
                reps,
                chunk_mib,
            };
            let (md, value) = runtime.block_on(blobs::run(&http, &regs, &plan))?;
            emit(&md, &value, json.as_ref())
        }
        Command::Mixed {
            registries,
            concurrency,
            seconds,
            pull_percent,
            sizes_kib,
            seed_blobs,
            json,
        } => {
            let (regs, http) = setup(&registries, concurrency)?;
            let plan = mixed::MixedPlan {
                concurrency,
                duration: Duration::from_secs(seconds),
                pull_percent: pull_percent.min(100),
                sizes: sizes_kib.iter().map(|k| k * 1024).collect(),
                seed_blobs,
            };
            let (md, value) = runtime.block_on(mixed::run(&http, &regs, &plan))?;
            emit(&md, &value, json.as_ref())
        }
        Command::Layout {
            dir,
            mib,
            layers,
            tag,
            seed,
        } => {
            let digest = layout::write(&dir, mib << 20, layers, &tag, seed)?;
            writeln!(std::io::stdout().lock(), "{digest}")?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_specs() {
        let r = parse_registry("kiln=127.0.0.1:5000@42").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.name.as_str(), r.base.as_str(), r.pid),
            ("kiln", "http://127.0.0.1:5000", Some(42))
        );
        assert!(parse_registry("127.0.0.1:5000").is_err());
        assert!(parse_registry("x=1:2@y").is_err());
    }
}
