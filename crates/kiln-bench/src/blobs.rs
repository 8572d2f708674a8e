//! Blob push and pull timings, the registries taking turns for every repetition.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use crate::proto::{self, Registry};
use crate::random::Blob;
use crate::stats::{mb, median};

/// What to measure.
pub struct BlobPlan {
    /// Blob sizes, in MiB.
    pub sizes_mib: Vec<u64>,
    /// Repetitions of each case per registry.
    pub reps: usize,
    /// PATCH size of chunked uploads and Range size of ranged pulls, in MiB.
    pub chunk_mib: u64,
}

const CASES: [&str; 4] = ["push monolithic", "push chunked", "pull", "pull ranged"];

/// Runs the plan; returns the report as markdown and as JSON.
pub async fn run(
    http: &reqwest::Client,
    regs: &[Registry],
    plan: &BlobPlan,
) -> Result<(String, serde_json::Value)> {
    // (size, case) -> registry -> seconds of each repetition
    let mut times: BTreeMap<(u64, usize), Vec<Vec<f64>>> = BTreeMap::new();
    let chunk = (plan.chunk_mib << 20) as usize;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for &size in &plan.sizes_mib {
        let len = (size << 20) as usize;
        let mut pulled: Option<(String, Blob)> = None;
        for rep in 0..plan.reps {
            // Alternate who goes first.
            let order: Vec<usize> = if rep % 2 == 0 {
                (0..regs.len()).collect()
            } else {
                (0..regs.len()).rev().collect()
            };
            for (case, chunked) in [(0, false), (1, true)] {
                let blob = Blob::random(size * 1000 + rep as u64 * 10 + case as u64 + run_id, len);
                let repo = format!(
                    "bench/{run_id}/{}-{size}m-{rep}",
                    if chunked { "chunked" } else { "mono" }
                );
                for &r in &order {
                    let reg = &regs[r];
                    log(&format!("{}: {} {size} MiB #{rep}", reg.name, CASES[case]));
                    let t = Instant::now();
                    if chunked {
                        proto::push_chunked(http, reg, &repo, &blob, chunk).await?;
                    } else {
                        proto::push_monolithic(http, reg, &repo, &blob).await?;
                    }
                    record(&mut times, size, case, regs.len(), r, t.elapsed().as_secs_f64());
                }
                if !chunked && pulled.is_none() {
                    pulled = Some((repo, blob));
                }
            }
        }
        let Some((repo, blob)) = pulled else { continue };
        // Once per registry, untimed: what comes back is what went in.
        for reg in regs {
            proto::pull(http, reg, &repo, &blob.digest, None, true).await?;
        }
        for rep in 0..plan.reps {
            let order: Vec<usize> = if rep % 2 == 0 {
                (0..regs.len()).collect()
            } else {
                (0..regs.len()).rev().collect()
            };
            for &r in &order {
                let reg = &regs[r];
                log(&format!("{}: pull {size} MiB #{rep}", reg.name));
                let t = Instant::now();
                proto::pull(http, reg, &repo, &blob.digest, None, false).await?;
                record(&mut times, size, 2, regs.len(), r, t.elapsed().as_secs_f64());
                let t = Instant::now();
                proto::pull_ranged(http, reg, &repo, &blob.digest, blob.len(), chunk as u64).await?;
                record(&mut times, size, 3, regs.len(), r, t.elapsed().as_secs_f64());
            }
        }
    }
    Ok(report(regs, plan, &times))
}

fn record(
    times: &mut BTreeMap<(u64, usize), Vec<Vec<f64>>>,
    size: u64,
    case: usize,
    n: usize,
    r: usize,
    secs: f64,
) {
    times.entry((size, case)).or_insert_with(|| vec![Vec::new(); n])[r].push(secs);
}

fn log(line: &str) {
    use std::io::Write as _;
    let _ignored = writeln!(std::io::stderr().lock(), "kiln-regbench: {line}");
}

fn report(
    regs: &[Registry],
    plan: &BlobPlan,
    times: &BTreeMap<(u64, usize), Vec<Vec<f64>>>,
) -> (String, serde_json::Value) {
    use std::fmt::Write as _;
    let mut md = format!(
        "Blobs: median of {} per case, seconds and MB/s (1 MiB = 1,048,576 bytes; chunks and ranges of {} MiB)\n\n| blob | operation |",
        plan.reps, plan.chunk_mib
    );
    for reg in regs {
        let _ = write!(md, " {0} s | {0} MB/s |", reg.name);
    }
    if regs.len() == 2 {
        let _ = write!(md, " {} / {} |", regs[0].name, regs[1].name);
    }
    md.push_str("\n|---|---|");
    for _ in regs {
        md.push_str("---:|---:|");
    }
    if regs.len() == 2 {
        md.push_str("---:|");
    }
    md.push('\n');
    let mut rows = Vec::new();
    for ((size, case), per_reg) in times {
        let bytes = (*size << 20) as f64;
        let _ = write!(md, "| {size} MiB | {} |", CASES[*case]);
        let medians: Vec<f64> = per_reg.iter().map(|v| median(v)).collect();
        for m in &medians {
            let _ = write!(md, " {m:.3} | {:.0} |", mb(bytes) / m);
        }
        if let [a, b] = medians[..] {
            let _ = write!(md, " **{:.2}×** |", b / a);
        }
        md.push('\n');
        rows.push(json!({
            "size_mib": size,
            "operation": CASES[*case],
            "seconds": regs.iter().zip(per_reg).map(|(r, v)| (r.name.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    if regs.len() == 2 {
        let _ = writeln!(
            md,
            "\nThe last column is {0}'s throughput divided by {1}'s ({1}'s seconds / {0}'s): above 1, {0} is faster.",
            regs[0].name, regs[1].name
        );
    }
    (
        md,
        json!({ "reps": plan.reps, "chunk_mib": plan.chunk_mib, "cases": rows }),
    )
}
