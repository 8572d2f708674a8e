//! A mixed load: `concurrency` tasks, each pulling a random seeded blob or pushing a new unique one (the
//! pull share given in percent) until the duration is over; every registry gets the machine alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use crate::proto::{self, Registry};
use crate::random::{Blob, Pool, Rng};
use crate::stats::{mb, percentile, proc_status_bytes, reset_peak_rss};

/// What to run.
pub struct MixedPlan {
    /// Concurrent tasks.
    pub concurrency: usize,
    /// How long each registry is loaded.
    pub duration: Duration,
    /// Share of pulls, in percent.
    pub pull_percent: u64,
    /// Blob sizes in bytes, each op picks one uniformly.
    pub sizes: Vec<u64>,
    /// Blobs pushed before the load, which the pulls read.
    pub seed_blobs: usize,
}

#[derive(Default)]
struct Outcome {
    pulls: Vec<f64>,
    pushes: Vec<f64>,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

/// What one registry did under the load.
pub struct RegistryFigures {
    name: String,
    elapsed: f64,
    outcome: Outcome,
    rss_start: Option<u64>,
    rss_peak_sampled: Option<u64>,
    hwm: Option<u64>,
    hwm_reset: bool,
}

/// Runs the load against each registry in turn.
pub async fn run(
    http: &reqwest::Client,
    regs: &[Registry],
    plan: &MixedPlan,
) -> Result<(String, serde_json::Value)> {
    if plan.sizes.is_empty() || plan.concurrency == 0 {
        bail!("the mixed load needs sizes and a concurrency above 0");
    }
    let max = plan.sizes.iter().copied().max().unwrap_or(0) as usize;
    let pool = Arc::new(Pool::new(7, max));
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seeds: Vec<Blob> = (0..plan.seed_blobs.max(1))
        .map(|i| {
            let size = plan.sizes[i % plan.sizes.len()];
            pool.blob(
                &mut Rng::new(i as u64),
                run_id.wrapping_add(i as u128),
                size as usize,
            )
        })
        .collect();
    let seeds = Arc::new(seeds);
    let seed_repo = format!("mixed/{run_id}/seed");
    let mut figures = Vec::new();
    for (k, reg) in regs.iter().enumerate() {
        for blob in seeds.iter() {
            proto::push_monolithic(http, reg, &seed_repo, blob).await?;
        }
        let rss_start = reg.pid.and_then(|p| proc_status_bytes(p, "VmRSS"));
        let hwm_reset = reg.pid.is_some_and(reset_peak_rss);
        let done = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = reg.pid.map(|pid| {
            let (done, peak) = (Arc::clone(&done), Arc::clone(&peak));
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    if let Some(rss) = proc_status_bytes(pid, "VmRSS") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        });
        let started = Instant::now();
        let deadline = started + plan.duration;
        let mut tasks = Vec::new();
        for w in 0..plan.concurrency {
            let (http, reg, pool, seeds, seed_repo) = (
                http.clone(),
                reg.clone(),
                Arc::clone(&pool),
                Arc::clone(&seeds),
                seed_repo.clone(),
            );
            let (sizes, pull_percent) = (plan.sizes.clone(), plan.pull_percent);
            let unique_base = run_id.wrapping_add(((k as u128) << 80) | ((w as u128) << 64));
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng::new(1000 + w as u64);
                let mut out = Outcome::default();
                let repo = format!("mixed/{run_id}/w{w}");
                let mut n = 0u128;
                while Instant::now() < deadline {
                    let pulling = rng.below(100) < pull_percent;
                    let (result, bytes, t) = if pulling {
                        let blob = &seeds[rng.below(seeds.len() as u64) as usize];
                        let t = Instant::now();
                        let r = proto::pull(&http, &reg, &seed_repo, &blob.digest, None, false).await;
                        (r.map(|_| ()), blob.len(), t)
                    } else {
                        n += 1;
                        let size = sizes[rng.below(sizes.len() as u64) as usize] as usize;
                        let blob = pool.blob(&mut rng, unique_base.wrapping_add(n << 16), size);
                        let t = Instant::now();
                        let r = proto::push_monolithic(&http, &reg, &repo, &blob).await;
                        (r, blob.len(), t)
                    };
                    let secs = t.elapsed().as_secs_f64();
                    match result {
                        Ok(()) => {
                            out.bytes += bytes;
                            if pulling {
                                out.pulls.push(secs)
                            } else {
                                out.pushes.push(secs)
                            }
                        }
                        Err(e) => {
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
                out
            }));
        }
        let mut outcome = Outcome::default();
        for task in tasks {
            let o = task.await?;
            outcome.pulls.extend(o.pulls);
            outcome.pushes.extend(o.pushes);
            outcome.bytes += o.bytes;
            outcome.errors += o.errors;
            if outcome.first_error.is_none() {
                outcome.first_error = o.first_error;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        if let Some(s) = sampler {
            s.await?;
        }
        figures.push(RegistryFigures {
            name: reg.name.clone(),
            elapsed,
            outcome,
            rss_start,
            rss_peak_sampled: reg.pid.map(|_| peak.load(Ordering::Relaxed)),
            hwm: reg.pid.and_then(|p| proc_status_bytes(p, "VmHWM")),
            hwm_reset,
        });
    }
    Ok(report(plan, &figures))
}

fn mb_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "–".to_owned(), |b| format!("{:.1}", mb(b as f64)))
}

fn report(plan: &MixedPlan, figures: &[RegistryFigures]) -> (String, serde_json::Value) {
    use std::fmt::Write as _;
    let sizes: Vec<String> = plan
        .sizes
        .iter()
        .map(|s| format!("{:.2} MB", mb(*s as f64)))
        .collect();
    let mut md = format!(
        "Mixed load: {} % pulls / {} % pushes (monolithic) of blobs of {}, concurrency {}, {} s per registry\n\n\
         | registry | ops | ops/s | MB/s | p50 ms | p99 ms | pull p50 / p99 ms | push p50 / p99 ms | errors | RSS start MB | peak RSS MB |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        plan.pull_percent,
        100 - plan.pull_percent.min(100),
        sizes.join(" or "),
        plan.concurrency,
        plan.duration.as_secs_f64()
    );
    let mut rows = Vec::new();
    let mut summary = Vec::new();
    for f in figures {
        let o = &f.outcome;
        let all: Vec<f64> = o.pulls.iter().chain(&o.pushes).copied().collect();
        let ops = all.len() as f64 / f.elapsed;
        let mbs = mb(o.bytes as f64) / f.elapsed;
        let (p50, p99) = (percentile(&all, 50.0) * 1e3, percentile(&all, 99.0) * 1e3);
        // VmHWM after a reset is the peak during the load; without the reset, the sampled maximum.
        let peak = if f.hwm_reset { f.hwm } else { f.rss_peak_sampled };
        let _ = writeln!(
            md,
            "| {} | {} | {ops:.1} | {mbs:.1} | {p50:.1} | {p99:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {} | {} | {} |",
            f.name,
            all.len(),
            percentile(&o.pulls, 50.0) * 1e3,
            percentile(&o.pulls, 99.0) * 1e3,
            percentile(&o.pushes, 50.0) * 1e3,
            percentile(&o.pushes, 99.0) * 1e3,
            o.errors,
            mb_opt(f.rss_start),
            mb_opt(peak),
        );
        summary.push((ops, p99, peak));
        rows.push(json!({
            "registry": f.name,
            "seconds": f.elapsed,
            "pulls": o.pulls.len(),
            "pushes": o.pushes.len(),
            "bytes": o.bytes,
            "errors": o.errors,
            "first_error": o.first_error,
            "ops_per_s": ops,
            "mb_per_s": mbs,
            "p50_ms": p50,
            "p99_ms": p99,
            "pull_p50_ms": percentile(&o.pulls, 50.0) * 1e3,
            "pull_p99_ms": percentile(&o.pulls, 99.0) * 1e3,
            "push_p50_ms": percentile(&o.pushes, 50.0) * 1e3,
            "push_p99_ms": percentile(&o.pushes, 99.0) * 1e3,
            "rss_start": f.rss_start,
            "rss_peak": peak,
            "vm_hwm_reset": f.hwm_reset,
        }));
    }
    for f in figures {
        if let Some(e) = &f.outcome.first_error {
            let _ = writeln!(md, "\n{}: first error: {e}", f.name);
        }
    }
    if let ([a, b], [fa, fb]) = (&summary[..], figures) {
        let _ = writeln!(
            md,
            "\n{0} / {1}: throughput **{2:.2}×**, p99 latency **{3:.2}×** (below 1: {0} is lower), peak RSS {4}",
            fa.name,
            fb.name,
            a.0 / b.0,
            a.1 / b.1,
            match (a.2, b.2) {
                (Some(x), Some(y)) => format!("{:.2}×", x as f64 / y as f64),
                _ => "–".to_owned(),
            }
        );
    }
    (
        md,
        json!({
            "concurrency": plan.concurrency,
            "seconds": plan.duration.as_secs_f64(),
            "pull_percent": plan.pull_percent,
            "sizes": plan.sizes,
            "registries": rows,
        }),
    )
}
