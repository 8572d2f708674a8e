#!/usr/bin/env python3
"""Context-hash benchmark: taskgraph's generate_context_hash vs `kiln plan`, side by side.

Called by bench/context-hash.sh (which prepares the taskgraph venv and the kiln binary).

1. Generates (or reuses) a taskgraph repository under bench/out/: N files / M MB in a realistic
   size mix (many small files, some large), split into 8 components; 4 images (one base, three
   children) each `# %include` two components plus a small shared folder, so the bytes across all
   images are about M.
2. Reads every file once so both tools see a warm page cache (dropping the cache is not possible
   here without root on the host).
3. Times taskgraph 24.5.1 (`tests/taskgraph/reference.py --mode direct`: generate_context_hash
   for every image, plus the digests) in the venv's Python.
4. Times `kiln plan --json` with a fresh `--state-dir` (cold: every byte read and hashed), then
   again with the same state dir (the unchanged tree: the stat cache), and checks that kiln's
   context hashes and cache digests equal taskgraph's.
5. Prints a table: seconds, MB/s, peak RSS, ratios; writes bench/out/results-<N>-<M>.json.
"""

import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKSPACE = os.path.dirname(HERE)
REFERENCE = os.path.join(WORKSPACE, "tests", "taskgraph", "reference.py")
GEN_VERSION = 2  # bump when the tree layout changes

COMPONENTS = 8
IMAGES = ["base", "builder", "linter", "runtime"]  # builder, linter, runtime: children of base


# ---------------------------------------------------------------- tree
def sizes(rng, nfiles, total):
    """A size mix like a source tree: log-normal (median ~4 KB) with a heavy tail, scaled to `total`."""
    raw = [rng.lognormvariate(math.log(4096), 1.9) for _ in range(nfiles)]
    # a few big blobs (archives, test data, binaries)
    for i in rng.sample(range(nfiles), max(1, nfiles // 2000)):
        raw[i] = rng.uniform(8, 40) * 2**20
    scale = total / sum(raw)
    out = [int(s * scale) for s in raw]
    out[0] += total - sum(out)  # exact total
    return out


def generate(root, nfiles, total_mb, seed=20240611):
    rng = random.Random(seed)
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)

    def w(rel, data, mode=0o644):
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)

    # a repository of its own: taskgraph takes the nearest .git upwards as topsrcdir, and bench/out/
    # is inside kiln's checkout
    subprocess.run(["git", "init", "-q", root], check=True)
    w(".taskcluster.yml", b"version: 1\ntasks: []\n")
    w("taskcluster/config.yml", b"""\
trust-domain: bench
task-priority: low
treeherder:
  group-names:
    I: Docker images
taskgraph:
  repositories:
    bench:
      name: bench
workers:
  aliases:
    images:
      provisioner: bench
      implementation: docker-worker
      os: linux
      worker-type: images
""")
    ctx_files = 6 * len(IMAGES)
    shared_files = max(10, nfiles // 100)
    n_comp = nfiles - ctx_files - shared_files
    total = total_mb * 2**20
    shared_bytes = total // 200
    ctx_bytes = 64 * 1024 * len(IMAGES)
    comp_sizes = sizes(rng, n_comp, total - shared_bytes - ctx_bytes)
    exts = [".py", ".c", ".h", ".rs", ".js", ".json", ".txt", ".md", ".sh", ".yml", ".bin", ""]
    comp_bytes = [0] * COMPONENTS
    written = 0

    def blob(n):
        return os.urandom(n)

    for i, size in enumerate(comp_sizes):
        c = i % COMPONENTS
        k = i // COMPONENTS
        rel = "src/comp%d/d%02d/s%02d/f%05d%s" % (c, k // 300, (k // 25) % 12, k, rng.choice(exts))
        mode = 0o755 if rng.random() < 0.08 else 0o644
        w(rel, blob(size), mode)
        comp_bytes[c] += size
        written += 1
    for k, size in enumerate(sizes(rng, shared_files, shared_bytes)):
        w("shared/common/f%04d.txt" % k, blob(size))
    img_bytes = {}
    for j, name in enumerate(IMAGES):
        ctx = "taskcluster/docker/" + name
        lines = ["FROM debian:bookworm-slim" if j == 0 else "FROM $DOCKER_IMAGE_PARENT"]
        lines.append("# %include shared/common")
        comps = [2 * j, 2 * j + 1]
        for c in comps:
            lines.append("# %include src/comp" + str(c))
            lines.append("COPY topsrcdir/src/comp%d /opt/comp%d" % (c, c))
        lines.append("RUN true")
        w(ctx + "/Dockerfile", ("\n".join(lines) + "\n").encode())
        for k in range(5):
            w(ctx + "/file%d.sh" % k, blob(64 * 1024 // 5), 0o755)
        img_bytes[name] = shared_bytes + sum(comp_bytes[c] for c in comps) + 5 * (64 * 1024 // 5)

    kind = [
        "loader: taskgraph.loader.transform:loader",
        "transforms:",
        "  - taskgraph.transforms.docker_image:transforms",
        "  - taskgraph.transforms.cached_tasks:transforms",
        "  - taskgraph.transforms.task:transforms",
        "tasks:",
    ]
    for j, name in enumerate(IMAGES):
        kind += ["  %s:" % name, "    symbol: I(%s)" % name]
        if j:
            kind.append("    parent: base")
    w("taskcluster/kinds/docker-image/kind.yml", ("\n".join(kind) + "\n").encode())
    n_total = tree_bytes = 0
    for d, dirs, fs in os.walk(root):
        if d == root:
            dirs.remove(".git")
        n_total += len(fs)
        tree_bytes += sum(os.lstat(os.path.join(d, f)).st_size for f in fs)
    return {"files": n_total, "image_bytes": img_bytes, "tree_bytes": tree_bytes}


def warm_up(root):
    t0 = time.perf_counter()
    n = 0
    for d, _, fs in os.walk(root):
        for f in fs:
            with open(os.path.join(d, f), "rb") as fh:
                while True:
                    b = fh.read(1 << 20)
                    if not b:
                        break
                    n += len(b)
    return n, time.perf_counter() - t0


# ---------------------------------------------------------------- measuring
def timed(cmd, cwd=None):
    """Run cmd; return (seconds, peak RSS in MB, stdout). Peak RSS from /usr/bin/time -v when
    installed, else from getrusage(RUSAGE_CHILDREN) measured in a fresh wrapper process."""
    if os.path.exists("/usr/bin/time"):
        full = ["/usr/bin/time", "-v"] + cmd
    else:
        wrapper = (
            "import resource,subprocess,sys;"
            "r=subprocess.run(sys.argv[1:]);"
            "sys.stderr.write('\\n\\tMaximum resident set size (kbytes): %d\\n' % "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
            "sys.exit(r.returncode)"
        )
        full = [sys.executable, "-c", wrapper] + cmd
    t0 = time.perf_counter()
    p = subprocess.run(full, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    secs = time.perf_counter() - t0
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        sys.exit("command failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), err[-4000:]))
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    rss = int(m.group(1)) / 1024 if m else float("nan")
    return secs, rss, p.stdout, err


def kiln_cmd(kiln, root, state):
    return [kiln, "-C", root, "plan", "--json", "--state-dir", state,
            "--index", os.path.join(state, "index.sqlite")]


def kiln_hashes(stdout):
    return {i["name"]: (i["context_hash"], i["cache_digest"]) for i in json.loads(stdout)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--mb", type=int, default=500)
    ap.add_argument("--python", required=True, help="Python with taskgraph 24.5.1")
    ap.add_argument("--kiln", required=True, help="the kiln binary")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--cold-reps", type=int, default=3)
    ap.add_argument("--warm-reps", type=int, default=5)
    ap.add_argument("--taskgraph-reps", type=int, default=1)
    ap.add_argument("--regenerate", action="store_true")
    a = ap.parse_args()

    os.makedirs(a.out, exist_ok=True)
    root = os.path.join(a.out, "tree-%d-%d" % (a.files, a.mb))
    stamp = os.path.join(a.out, "tree-%d-%d.json" % (a.files, a.mb))
    meta = None
    if not a.regenerate and os.path.exists(stamp) and os.path.isdir(root):
        with open(stamp) as f:
            meta = json.load(f)
        if meta.get("version") != GEN_VERSION:
            meta = None
    if meta is None:
        print("generating %s (%d files, %d MB) ..." % (root, a.files, a.mb), flush=True)
        t0 = time.perf_counter()
        meta = generate(root, a.files, a.mb)
        meta["generated_at"] = time.time()
        meta["version"] = GEN_VERSION
        with open(stamp, "w") as f:
            json.dump(meta, f)
        print("  generated in %.1f s" % (time.perf_counter() - t0), flush=True)
    hashed = sum(meta["image_bytes"].values())
    mb = hashed / 1e6

    n, secs = warm_up(root)
    print("warm-up: read %.0f MB in %.1f s; both tools run on a warm page cache" % (n / 1e6, secs),
          flush=True)

    # taskgraph
    tg_runs = []
    for _ in range(a.taskgraph_reps):
        s, rss, out, err = timed([a.python, REFERENCE, root, "--mode", "direct", "--timing"])
        inner = json.loads(err.strip().splitlines()[0]) if err.strip().startswith("{") else {}
        tg_runs.append((s, rss, inner.get("hash_seconds")))
    tg = {k: (v["context_hash"], v["cache_digest"]) for k, v in json.loads(out).items()}

    # kiln's stat cache never stores a file modified within 2 s of the save (racy-git rule), so a
    # tree generated a moment ago would be re-read on every "unchanged" run: let it age first.
    newest = meta.get("generated_at", 0)
    if time.time() - newest < 3:
        time.sleep(3 - (time.time() - newest))

    # kiln cold: a fresh state dir each time
    cold_runs = []
    state = os.path.join(a.out, "state-%d-%d" % (a.files, a.mb))
    for _ in range(a.cold_reps):
        shutil.rmtree(state, ignore_errors=True)
        os.makedirs(state)
        s, rss, out, _ = timed(kiln_cmd(a.kiln, root, state))
        cold_runs.append((s, rss))
        if kiln_hashes(out) != tg:
            sys.exit("MISMATCH (cold): kiln %s\ntaskgraph %s" % (kiln_hashes(out), tg))
    # kiln on the unchanged tree, same state dir
    warm_runs = []
    for _ in range(a.warm_reps):
        s, rss, out, _ = timed(kiln_cmd(a.kiln, root, state))
        warm_runs.append((s, rss))
        if kiln_hashes(out) != tg:
            sys.exit("MISMATCH (unchanged): kiln %s\ntaskgraph %s" % (kiln_hashes(out), tg))

    def med(runs, i=0):
        return statistics.median(r[i] for r in runs)

    tg_s, tg_rss = med(tg_runs), max(r[1] for r in tg_runs)
    tg_inner = med(tg_runs, 2) if tg_runs[0][2] is not None else None
    cold_s, cold_rss = med(cold_runs), max(r[1] for r in cold_runs)
    warm_s, warm_rss = med(warm_runs), max(r[1] for r in warm_runs)

    print()
    print("tree: %s" % root)
    print("      %d files, %.0f MB on disk; %d images, %.0f MB of file content across all images"
          % (meta["files"], meta["tree_bytes"] / 1e6, len(tg), mb))
    print("machine: %s, %d CPUs, Python %s" % (platform.platform(), os.cpu_count(),
                                               platform.python_version()))
    print("hashes: kiln == taskgraph for all %d images (context hash and cache digest)" % len(tg))
    print()
    hdr = "%-34s %9s %10s %13s %12s" % ("", "seconds", "MB/s", "peak RSS MB", "taskgraph/x")
    print(hdr)
    print("-" * len(hdr))
    rows = [
        ("taskgraph 24.5.1 (x%d)" % len(tg_runs), tg_s, tg_rss),
        ("kiln cold, median of %d" % len(cold_runs), cold_s, cold_rss),
        ("kiln unchanged tree, median of %d" % len(warm_runs), warm_s, warm_rss),
    ]
    for label, s, rss in rows:
        print("%-34s %9.3f %10.0f %13.1f %12.1f" % (label, s, mb / s, rss, tg_s / s))
    if tg_inner is not None:
        print("(taskgraph inside generate_context_hash only: %.3f s, %.0f MB/s)"
              % (tg_inner, mb / tg_inner))
    print()
    cold_x, warm_x = tg_s / cold_s, tg_s / warm_s
    print("targets: cold >= 6x: %.1fx %s | unchanged >= 50x: %.1fx %s | peak RSS < 64 MB: %.1f MB %s"
          % (cold_x, "ok" if cold_x >= 6 else "MISSED",
             warm_x, "ok" if warm_x >= 50 else "MISSED",
             max(cold_rss, warm_rss), "ok" if max(cold_rss, warm_rss) < 64 else "MISSED"))
    result = {
        "files": meta["files"], "tree_bytes": meta["tree_bytes"], "image_bytes": hashed,
        "images": len(tg), "cpus": os.cpu_count(),
        "taskgraph": {"seconds": [r[0] for r in tg_runs], "peak_rss_mb": tg_rss,
                      "generate_context_hash_seconds": [r[2] for r in tg_runs]},
        "kiln_cold": {"seconds": [r[0] for r in cold_runs], "peak_rss_mb": cold_rss},
        "kiln_unchanged": {"seconds": [r[0] for r in warm_runs], "peak_rss_mb": warm_rss},
        "ratios": {"cold": cold_x, "unchanged": warm_x},
    }
    with open(os.path.join(a.out, "results-%d-%d.json" % (a.files, a.mb)), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
