#!/usr/bin/env python3
"""Image-build benchmark: `kiln build` vs buildah and BuildKit, side by side (issue 4, "Performance").

Called by bench/build.sh, which checks the tools and finds the kiln binary. Everything it makes lives in
bench/out/build/ (gitignored). Scenarios (`--only`, comma-separated):

  copy     COPY-heavy: a generated context (default 2,000 files / 200 MB, a few large files and many small
           ones, half incompressible) copied into a busybox base, then exported to image.tar.zst.
           Every repetition is cold: a fresh kiln store (base imported, not timed), `docker builder prune`
           and `buildah rmi --prune` between runs. kiln: `kiln build -o image.tar.zst` (one command);
           BuildKit: `docker build` + `docker save | zstd -T0 -3`; buildah: `bud --layers` +
           `push docker-archive` + `zstd -T0 -3`.
  rebuild  The no-change rebuild of `copy`: the same build again (build only, as the peers' figure), and
           for kiln also with `-o` (the artifact written again).
  run      RUN-heavy: a debootstrap minbase bookworm root imported everywhere; `RUN apt-get update &&
           apt-get install -y --no-install-recommends PKGS` with the cache off. Baseline: the same command
           in plain runc on an overlay of the same root (mount, `runc run`, unmount). Runs interleave
           (baseline, kiln, peers, …) so network drift hits every tool alike.
  mem      Peak RSS (/usr/bin/time -v) of `kiln build -o image.tar.zst` for a 1 GB context (cold).

The page cache is warm for every tool (the contexts are read once first); it cannot be dropped here.
Prints one table per scenario with medians and ratios; writes bench/out/build/results.json.
"""

import argparse
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

from context_hash import warm_up  # noqa: E402  (bench/ is the script's folder)

HERE = os.path.dirname(os.path.abspath(__file__))
WORKSPACE = os.path.dirname(HERE)
GEN_VERSION = 1  # bump when the generated context changes

PACKAGES = ["jq", "less", "tree"]


# ---------------------------------------------------------------- generated contexts
def sizes(rng, nfiles, total):
    """A few large files (~30 % of the bytes), some medium ones (~25 %), the rest small (log-normal,
    median ~16 KB); scaled to exactly `total` bytes."""
    nlarge = max(1, nfiles // 500)
    nmedium = max(1, nfiles // 50)
    nsmall = nfiles - nlarge - nmedium
    large = [rng.uniform(0.5, 1.5) for _ in range(nlarge)]
    medium = [rng.uniform(0.5, 1.5) for _ in range(nmedium)]
    small = [rng.lognormvariate(math.log(16384), 1.2) for _ in range(nsmall)]

    def scale(xs, share):
        f = total * share / sum(xs)
        return [max(0, int(x * f)) for x in xs]

    out = scale(large, 0.30) + scale(medium, 0.25) + scale(small, 0.45)
    out[0] += total - sum(out)
    rng.shuffle(out)
    return out


TEXT = bytes.maketrans(bytes(range(256)), (b"etaoinshrdlcum \n" * 16))


def generate(root, nfiles, total_mb, seed=20261123):
    """Writes the context deterministically: same seed, same bytes. Half the files are random bytes
    (incompressible, like binaries and archives), half 16-symbol text (zstd gets ~2:1)."""
    marker = os.path.join(root, ".generated")
    want = "v%d %d %d %d" % (GEN_VERSION, nfiles, total_mb, seed)
    if os.path.exists(marker) and open(marker).read() == want:
        return False
    if os.path.exists(root):
        shutil.rmtree(root)
    rng = random.Random(seed)
    for i, size in enumerate(sizes(rng, nfiles, total_mb * 2**20)):
        rel = "d%02d/s%d/f%05d.%s" % (i % 20, (i // 20) % 5, i, "bin" if i % 2 else "txt")
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = rng.randbytes(size)
        if i % 2 == 0:
            data = data.translate(TEXT)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o755 if i % 13 == 0 else 0o644)
        os.utime(path, (1_700_000_000, 1_700_000_000))
    with open(marker, "w") as f:
        f.write(want)
    return True


def warm(root):
    """Reads every file once: every tool then sees a warm page cache."""
    return warm_up(root)[0]


def du(path):
    total = 0
    for d, _, fs in os.walk(path):
        for f in fs:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return total


# ---------------------------------------------------------------- running things
def sh(cmd, env=None, check=True, quiet=True, cwd=None):
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE if quiet else None,
                       stderr=subprocess.PIPE if quiet else None, shell=isinstance(cmd, str))
    if check and p.returncode != 0:
        out = (p.stdout or b"").decode("utf-8", "replace")[-3000:]
        err = (p.stderr or b"").decode("utf-8", "replace")[-3000:]
        sys.exit("command failed (%d): %s\n%s\n%s" % (p.returncode, cmd if isinstance(cmd, str)
                                                       else " ".join(cmd), out, err))
    return p


class T(float):
    """Wall seconds of one run, carrying its CPU seconds (user + system of the command and every
    process it waited for, plus the daemon's when `daemon` pids are given)."""

    def __new__(cls, wall, cpu):
        t = float.__new__(cls, wall)
        t.cpu = cpu
        return t

    def __add__(self, other):
        return T(float(self) + float(other), self.cpu + getattr(other, "cpu", 0.0))


def proc_cpu(pids):
    """utime + stime (+ reaped children's) of `pids`, in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def timed(cmd, env=None, rss=False, cwd=None, daemon=()):
    """The wall and CPU seconds (a T) of one command; with rss=True, (T, peak RSS in MB) measured by
    /usr/bin/time -v."""
    full = (["/usr/bin/time", "-v"] + cmd) if rss else cmd
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    d0 = proc_cpu(daemon)
    t0 = time.perf_counter()
    p = sh(full, env=env, cwd=cwd)
    secs = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime) + proc_cpu(daemon) - d0
    t = T(secs, cpu)
    if not rss:
        return t
    m = re.search(rb"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return t, (int(m.group(1)) / 1024 if m else float("nan"))


def ser(rows):
    """Runs as JSON: wall and CPU seconds."""
    return {k: {"wall": [float(x) for x in v], "cpu": [getattr(x, "cpu", None) for x in v]}
            for k, v in rows.items()}


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    if len(xs) < 2:
        return ""
    return "%.2f–%.2f" % (min(xs), max(xs))


def load_average():
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


def busy_compilers():
    """Other engineers' compilers running now: the main source of noise here."""
    p = subprocess.run(["ps", "-eo", "comm="], stdout=subprocess.PIPE, text=True)
    names = p.stdout.split()
    return sum(1 for n in names if n in ("rustc", "cc1", "cc1plus", "ld", "cargo"))


# ---------------------------------------------------------------- tools
class Kiln:
    def __init__(self, binary, out):
        self.bin = binary
        self.out = out
        self.template = os.path.join(out, "kiln-template")

    def env(self):
        e = dict(os.environ)
        e.pop("KILN_STORE", None)
        return e

    def cmd(self, store, *args):
        return [self.bin, "--quiet", "--store", store] + list(args)

    def prepare_template(self, bases):
        """A store holding the base images, copied for every cold repetition."""
        if os.path.exists(self.template):
            shutil.rmtree(self.template)
        for src, name in bases:
            sh(self.cmd(self.template, "image", "import", src, "-t", name), env=self.env())

    def fresh_store(self, name):
        store = os.path.join(self.out, name)
        if os.path.exists(store):
            shutil.rmtree(store)
        shutil.copytree(self.template, store, symlinks=True)
        return store


class Docker:
    """A private dockerd (peers.md): started here, stopped at exit."""

    def __init__(self, out):
        self.dir = os.path.join(out, "docker")
        self.sock = os.path.join(self.dir, "docker.sock")
        self.proc = None

    def env(self):
        e = dict(os.environ)
        e["DOCKER_HOST"] = "unix://" + self.sock
        e["DOCKER_BUILDKIT"] = "1"
        return e

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        log = open(os.path.join(self.dir, "dockerd.log"), "ab")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", os.path.join(self.dir, "data"),
             "--exec-root", os.path.join(self.dir, "exec"),
             "--pidfile", os.path.join(self.dir, "dockerd.pid"), "-H", "unix://" + self.sock,
             "--storage-driver=overlay2", "--iptables=false", "--ip6tables=false", "--bridge=none"],
            stdout=log, stderr=log, start_new_session=True)
        for _ in range(300):
            if os.path.exists(self.sock) and subprocess.run(
                    ["/usr/bin/docker", "version"], env=self.env(), stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL).returncode == 0:
                return
            if self.proc.poll() is not None:
                sys.exit("dockerd exited; see %s/dockerd.log" % self.dir)
            time.sleep(0.1)
        sys.exit("dockerd did not come up; see %s/dockerd.log" % self.dir)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        netns = os.path.join(self.dir, "exec", "netns", "default")
        if os.path.ismount(netns):
            subprocess.run(["umount", netns])

    def run(self, *args, **kw):
        return sh(["/usr/bin/docker"] + list(args), env=self.env(), **kw)

    def pids(self):
        """dockerd and its direct children (containerd), whose CPU time counts for BuildKit."""
        pids = [self.proc.pid]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(open("/proc/%s/stat" % entry).read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == self.proc.pid:
                    pids.append(int(entry))
        return pids

    def cmd(self, *args):
        return ["/usr/bin/docker"] + list(args)


class Buildah:
    def __init__(self, out):
        self.dir = os.path.join(out, "buildah")
        os.makedirs(self.dir, exist_ok=True)
        self.storage = os.path.join(self.dir, "storage.conf")
        self.conf = os.path.join(self.dir, "containers.conf")
        with open(self.storage, "w") as f:
            f.write('[storage]\ndriver = "overlay"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n'
                    % (self.dir, self.dir))
        with open(self.conf, "w") as f:
            f.write('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
                    '[engine]\nruntime = "runc"\n')

    def env(self):
        e = dict(os.environ)
        e["CONTAINERS_STORAGE_CONF"] = self.storage
        e["CONTAINERS_CONF"] = self.conf
        return e

    def cmd(self, *args):
        return ["buildah"] + list(args)

    def run(self, *args, **kw):
        return sh(self.cmd(*args), env=self.env(), **kw)

    def clean(self, image):
        self.run("rmi", "-f", image, check=False)
        self.run("rm", "-a", check=False)
        self.run("rmi", "--prune", check=False)


# ---------------------------------------------------------------- scenarios
def cpu_of(xs):
    return [getattr(x, "cpu", float("nan")) for x in xs]


def table(title, rows, ref=None, note=None):
    """rows: (label, list of T). Ratios: the ref row's median divided by the row's, for wall time and
    for CPU time."""
    print("\n### %s\n" % title)
    print("| %-48s | %8s | %11s | %7s | %8s | %7s |" % ("", "wall s", "wall range", "vs ref", "CPU s",
                                                       "vs ref"))
    print("|%s|%s|%s|%s|%s|%s|" % ("-" * 50, "-" * 10, "-" * 13, "-" * 9, "-" * 10, "-" * 9))
    refrow = dict(rows).get(ref, []) if ref else []
    for label, xs in rows:
        r_wall = r_cpu = ""
        if refrow and xs:
            r_wall = "%.2f×" % (med(refrow) / med(xs))
            r_cpu = "%.2f×" % (med(cpu_of(refrow)) / med(cpu_of(xs)))
        print("| %-48s | %8.3f | %11s | %7s | %8.3f | %7s |" % (label, med(xs), spread(xs), r_wall,
                                                                med(cpu_of(xs)), r_cpu))
    if note:
        print("\n" + note)
    sys.stdout.flush()


def copy_dockerfile(ctx_dir, base):
    with open(os.path.join(ctx_dir, "..", os.path.basename(ctx_dir) + ".Dockerfile"), "w") as f:
        f.write("FROM %s\nCOPY . /data/\n" % base)
    return os.path.join(ctx_dir, "..", os.path.basename(ctx_dir) + ".Dockerfile")


def scenario_copy(a, kiln, docker, buildah, results, rebuild):
    out = a.out
    ctx = os.path.join(out, "ctx-%d-%d" % (a.files, a.mb))
    if generate(ctx, a.files, a.mb):
        print("generated %s" % ctx)
    nbytes = warm(ctx)
    # the marker file is not part of the benchmark's bytes but harmless; a .dockerignore keeps it out
    with open(os.path.join(ctx, ".dockerignore"), "w") as f:
        f.write(".generated\n.dockerignore\n")
    dockerfile = copy_dockerfile(ctx, "localhost/busybox:bench")
    print("\ncontext: %d files, %.1f MB (warm page cache)" % (a.files, nbytes / 2**20))
    art = os.path.join(out, "artifacts")
    os.makedirs(art, exist_ok=True)
    tag = "localhost/bench:copy"
    rows = {k: [] for k in ("kiln", "kiln-build", "kiln-export", "bk-build", "bk-save", "bk",
                            "bah-build", "bah-push", "bah-zstd", "bah")}
    sizes = {}
    for rep in range(a.reps):
        # kiln, end to end in one command
        store = kiln.fresh_store("store-copy")
        target = os.path.join(art, "kiln.tar.zst")
        rows["kiln"].append(timed(kiln.cmd(store, "build", "-f", dockerfile, "--context", ctx,
                                           "-t", tag, "-o", target), env=kiln.env()))
        sizes["kiln"] = os.path.getsize(target)
        # kiln again, split: build, then export
        store = kiln.fresh_store("store-copy")
        rows["kiln-build"].append(timed(kiln.cmd(store, "build", "-f", dockerfile, "--context", ctx,
                                                 "-t", tag), env=kiln.env()))
        rows["kiln-export"].append(timed(kiln.cmd(store, "image", "export", tag, "-o", target),
                                         env=kiln.env()))
        if docker:
            docker.run("rmi", "-f", tag, check=False)
            docker.run("builder", "prune", "-af")
            target = os.path.join(art, "buildkit.tar.zst")
            b = timed(docker.cmd("build", "-q", "-f", dockerfile, "-t", tag, ctx), env=docker.env(),
                      daemon=docker.pids())
            s = timed(["sh", "-c", "/usr/bin/docker save %s | zstd -q -T0 -3 -f -o %s" % (tag, target)],
                      env=docker.env(), daemon=docker.pids())
            rows["bk-build"].append(b)
            rows["bk-save"].append(s)
            rows["bk"].append(b + s)
            sizes["buildkit"] = os.path.getsize(target)
        if buildah:
            buildah.clean(tag)
            target = os.path.join(art, "buildah.tar")
            if os.path.exists(target):
                os.remove(target)
            b = timed(buildah.cmd("bud", "--layers", "-q", "-f", dockerfile, "-t", tag, ctx),
                      env=buildah.env())
            p = timed(buildah.cmd("push", "-q", tag, "docker-archive:%s:%s" % (target, tag)),
                      env=buildah.env())
            z = timed(["zstd", "-q", "-T0", "-3", "-f", "--rm", target, "-o", target + ".zst"])
            rows["bah-build"].append(b)
            rows["bah-push"].append(p)
            rows["bah-zstd"].append(z)
            rows["bah"].append(b + p + z)
            sizes["buildah"] = os.path.getsize(target + ".zst")
        print("  copy rep %d/%d: kiln %.2f s%s%s (load %s)" % (
            rep + 1, a.reps, rows["kiln"][-1],
            ", BuildKit %.2f s" % rows["bk"][-1] if docker else "",
            ", buildah %.2f s" % rows["bah"][-1] if buildah else "", load_average()))
        sys.stdout.flush()
    label = {
        "kiln": "kiln build -o image.tar.zst (one command)",
        "kiln-build": "  kiln build (store only)",
        "kiln-export": "  kiln image export -o image.tar.zst",
        "bk": "BuildKit: build + save | zstd",
        "bk-build": "  docker build",
        "bk-save": "  docker save | zstd -T0 -3",
        "bah": "buildah: bud + push + zstd",
        "bah-build": "  buildah bud --layers",
        "bah-push": "  buildah push docker-archive",
        "bah-zstd": "  zstd -T0 -3",
    }
    order = [k for k in label if rows[k]]
    ref = "BuildKit: build + save | zstd" if docker else None
    table("COPY-heavy, cold, end to end (%d files, %d MB; %d reps)" % (a.files, a.mb, a.reps),
          [(label[k], rows[k]) for k in order], ref=ref,
          note="vs ref: BuildKit's end-to-end median divided by the row's. Artifact sizes: " +
          ", ".join("%s %.1f MB" % (k, v / 2**20) for k, v in sizes.items()))
    results["copy"] = {"reps": a.reps, "files": a.files, "mb": a.mb, "runs": ser(rows), "sizes": sizes}

    if not rebuild:
        return
    # no-change rebuilds: the last cold build of each tool is in place
    r = {k: [] for k in ("kiln", "kiln-o", "bk", "bah")}
    store = kiln.fresh_store("store-copy")
    sh(kiln.cmd(store, "build", "-f", dockerfile, "--context", ctx, "-t", tag), env=kiln.env())
    target = os.path.join(art, "kiln.tar.zst")
    for rep in range(a.rebuild_reps):
        r["kiln"].append(timed(kiln.cmd(store, "build", "-f", dockerfile, "--context", ctx, "-t", tag),
                               env=kiln.env()))
        r["kiln-o"].append(timed(kiln.cmd(store, "build", "-f", dockerfile, "--context", ctx, "-t", tag,
                                          "-o", target), env=kiln.env()))
        if docker:
            r["bk"].append(timed(docker.cmd("build", "-q", "-f", dockerfile, "-t", tag, ctx),
                                 env=docker.env(), daemon=docker.pids()))
        if buildah:
            r["bah"].append(timed(buildah.cmd("bud", "--layers", "-q", "-f", dockerfile, "-t", tag, ctx),
                                  env=buildah.env()))
    label = {
        "kiln": "kiln build (nothing to do)",
        "kiln-o": "kiln build -o image.tar.zst (artifact rewritten)",
        "bk": "BuildKit docker build (all cached)",
        "bah": "buildah bud --layers (all cached)",
    }
    table("No-change rebuild of the COPY-heavy image (%d reps)" % a.rebuild_reps,
          [(label[k], r[k]) for k in label if r[k]],
          ref="BuildKit docker build (all cached)" if docker else None)
    results["rebuild"] = {"reps": a.rebuild_reps, "runs": ser(r)}


def debian_root(a):
    root = os.path.join(a.out, "debian-bookworm")
    if os.path.exists(os.path.join(root, ".complete")):
        return root
    if os.path.exists(root):
        shutil.rmtree(root)
    print("debootstrap --variant=minbase bookworm (once; needs the Debian mirror) …")
    sys.stdout.flush()
    sh(["debootstrap", "--variant=minbase", "bookworm", root], quiet=True)
    # apt's downloads from the debootstrap run would make `apt-get install` skip work
    sh(["sh", "-c", "rm -rf %s/var/cache/apt/archives/*.deb %s/var/lib/apt/lists/*" % (root, root)],
       check=False)
    open(os.path.join(root, ".complete"), "w").close()
    return root


def runc_bundle(a, rootfs, argv):
    """A plain runc bundle on `rootfs`: `runc spec`'s defaults, host network, resolv.conf/hosts bound,
    as kiln does for RUN."""
    bundle = os.path.join(a.out, "runc-bundle")
    if os.path.exists(bundle):
        shutil.rmtree(bundle)
    os.makedirs(bundle)
    sh(["runc", "spec"], cwd=bundle)
    cfgp = os.path.join(bundle, "config.json")
    cfg = json.load(open(cfgp))
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = argv
    cfg["process"]["env"] = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                             "HOSTNAME=kiln"]
    cfg["process"]["capabilities"] = {k: sorted(set(v + ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
                                                         "CAP_FSETID", "CAP_SETUID", "CAP_SETGID",
                                                         "CAP_SETFCAP", "CAP_SYS_CHROOT", "CAP_MKNOD"]))
                                      for k, v in cfg["process"]["capabilities"].items()}
    cfg["root"] = {"path": rootfs, "readonly": False}
    cfg["hostname"] = "kiln"
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    for f in ("/etc/resolv.conf", "/etc/hosts"):
        cfg["mounts"].append({"destination": f, "type": "bind", "source": f, "options": ["rbind", "ro"]})
    json.dump(cfg, open(cfgp, "w"))
    return bundle


def baseline_run(a, rootfs, bundle, n):
    """overlay mount of the base + `runc run` + unmount: the RUN itself, nothing else."""
    d = os.path.join(a.out, "baseline")
    if os.path.exists(d):
        shutil.rmtree(d)
    up, wk, mg = (os.path.join(d, x) for x in ("upper", "work", "merged"))
    for x in (up, wk, mg):
        os.makedirs(x)
    cfgp = os.path.join(bundle, "config.json")
    cfg = json.load(open(cfgp))
    cfg["root"]["path"] = mg
    json.dump(cfg, open(cfgp, "w"))
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    sh(["mount", "-t", "overlay", "overlay", "-o",
        "lowerdir=%s,upperdir=%s,workdir=%s" % (rootfs, up, wk), mg])
    try:
        sh(["runc", "--root", os.path.join(a.out, "runc-state"), "run", "bench-%d" % n], cwd=bundle)
    finally:
        sh(["umount", mg])
    secs = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    upper = du(up)
    shutil.rmtree(d)
    return T(secs, cpu), upper


def scenario_run(a, kiln, docker, buildah, results):
    rootfs = debian_root(a)
    command = "apt-get update && apt-get install -y --no-install-recommends %s" % " ".join(PACKAGES)
    d = os.path.join(a.out, "run-ctx")
    os.makedirs(d, exist_ok=True)
    dockerfile = os.path.join(d, "Dockerfile")
    with open(dockerfile, "w") as f:
        f.write("FROM localhost/debian:bench\nENV DEBIAN_FRONTEND=noninteractive\nRUN %s\n" % command)
    tag = "localhost/bench:run"
    store = os.path.join(a.out, "store-run")
    if os.path.exists(store):
        shutil.rmtree(store)
    t0 = time.perf_counter()
    sh(kiln.cmd(store, "image", "import", rootfs, "-t", "localhost/debian:bench"), env=kiln.env())
    t_import = time.perf_counter() - t0
    # The first build unpacks the base layer into kiln's layer folders (as docker load does for its
    # store): timed separately, not part of the RUN overhead.
    t0 = time.perf_counter()
    sh(kiln.cmd(store, "build", "-f", dockerfile, "--context", d, "-t", tag), env=kiln.env())
    t_first = time.perf_counter() - t0
    debian_tar = os.path.join(a.out, "debian.tar")
    sh(kiln.cmd(store, "image", "export", "localhost/debian:bench", "-o", debian_tar), env=kiln.env())
    if docker:
        docker.run("load", "-q", "-i", debian_tar)
    if buildah:
        buildah.run("pull", "-q", "docker-archive:" + debian_tar)
    bundle = runc_bundle(a, rootfs, ["sh", "-c", "DEBIAN_FRONTEND=noninteractive; export DEBIAN_FRONTEND; "
                                     + command])
    rows = {k: [] for k in ("base", "kiln", "bk", "bah")}
    upper = 0
    for rep in range(a.run_reps):
        secs, upper = baseline_run(a, rootfs, bundle, rep)
        rows["base"].append(secs)
        rows["kiln"].append(timed(kiln.cmd(store, "build", "--no-cache", "-f", dockerfile, "--context", d,
                                           "-t", tag), env=kiln.env()))
        if docker:
            rows["bk"].append(timed(docker.cmd("build", "-q", "--no-cache", "--network", "host", "-f",
                                               dockerfile, "-t", tag, d), env=docker.env(),
                                    daemon=docker.pids()))
        if buildah:
            rows["bah"].append(timed(buildah.cmd("bud", "--layers", "--no-cache", "-q", "--network",
                                                 "host", "-f", dockerfile, "-t", tag, d),
                                     env=buildah.env()))
        print("  run rep %d/%d: baseline %.2f s, kiln %.2f s%s%s (load %s)" % (
            rep + 1, a.run_reps, rows["base"][-1], rows["kiln"][-1],
            ", BuildKit %.2f s" % rows["bk"][-1] if docker else "",
            ", buildah %.2f s" % rows["bah"][-1] if buildah else "", load_average()))
        sys.stdout.flush()
    # Paired overhead: each repetition's tool time over the baseline of the same repetition.
    def overhead(k):
        return [t / b - 1 for t, b in zip(rows[k], rows["base"])]

    label = {"base": "baseline: overlay + runc run (the RUN itself)",
             "kiln": "kiln build --no-cache",
             "bk": "BuildKit docker build --no-cache",
             "bah": "buildah bud --no-cache"}
    print("\n### RUN-heavy: `%s` on debootstrap minbase bookworm (%d reps)\n" % (command, a.run_reps))
    print("| %-44s | %8s | %11s | %15s | %8s | %8s | %9s |" % (
        "", "wall s", "wall range", "over baseline", "paired", "CPU s", "CPU over"))
    print("|%s|%s|%s|%s|%s|%s|%s|" % ("-" * 46, "-" * 10, "-" * 13, "-" * 17, "-" * 10, "-" * 10, "-" * 11))
    b = med(rows["base"])
    bc = med(cpu_of(rows["base"]))
    for k in label:
        if not rows[k]:
            continue
        c = med(cpu_of(rows[k]))
        over = "" if k == "base" else "%+.1f %% %+.2fs" % ((med(rows[k]) / b - 1) * 100, med(rows[k]) - b)
        paired = "" if k == "base" else "%+.1f %%" % (med(overhead(k)) * 100)
        cover = "" if k == "base" else "%+.2f s" % (c - bc)
        print("| %-44s | %8.3f | %11s | %15s | %8s | %8.3f | %9s |" % (
            label[k], med(rows[k]), spread(rows[k]), over, paired, c, cover))
    print("\nThe RUN's upper layer: %.1f MB. kiln import of the root: %.2f s; first kiln build (base layer "
          "unpacked, not counted above): %.2f s." % (upper / 2**20, t_import, t_first))
    results["run"] = {"reps": a.run_reps, "command": command, "runs": ser(rows), "upper_bytes": upper,
                      "import_s": t_import, "first_build_s": t_first,
                      "paired_overhead": {k: overhead(k) for k in ("kiln", "bk", "bah") if rows[k]}}


def scenario_mem(a, kiln, results):
    ctx = os.path.join(a.out, "ctx-%d-%d" % (a.mem_files, a.mem_mb))
    if generate(ctx, a.mem_files, a.mem_mb, seed=7):
        print("generated %s" % ctx)
    nbytes = warm(ctx)
    with open(os.path.join(ctx, ".dockerignore"), "w") as f:
        f.write(".generated\n.dockerignore\n")
    dockerfile = copy_dockerfile(ctx, "localhost/busybox:bench")
    target = os.path.join(a.out, "artifacts", "kiln-1g.tar.zst")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    runs = []
    for rep in range(a.mem_reps):
        store = kiln.fresh_store("store-mem")
        runs.append(timed(kiln.cmd(store, "build", "-f", dockerfile, "--context", ctx, "-t",
                                   "localhost/bench:mem", "-o", target), env=kiln.env(), rss=True))
        print("  mem rep %d/%d: %.2f s, peak RSS %.1f MB" % (rep + 1, a.mem_reps, runs[-1][0], runs[-1][1]))
        sys.stdout.flush()
    shutil.rmtree(os.path.join(a.out, "store-mem"))
    secs = [r[0] for r in runs]
    rss = [r[1] for r in runs]
    print("\n### Peak memory: kiln build -o image.tar.zst of a %.0f MB context (%d files, cold; %d reps)\n"
          % (nbytes / 2**20, a.mem_files, a.mem_reps))
    print("| %-30s | %9s | %13s |" % ("", "median", "range"))
    print("|%s|%s|%s|" % ("-" * 32, "-" * 11, "-" * 15))
    print("| %-30s | %6.1f MB | %13s |" % ("peak RSS (/usr/bin/time -v)", med(rss), spread(rss)))
    print("| %-30s | %7.2f s | %13s |" % ("wall time", med(secs), spread(secs)))
    print("| %-30s | %9s | %13s |" % ("artifact", "%.0f MB" % (os.path.getsize(target) / 2**20), ""))
    os.remove(target)
    results["mem"] = {"files": a.mem_files, "mb": a.mem_mb, "rss_mb": rss, "seconds": secs}


def busybox_root(out):
    root = os.path.join(out, "busybox-root")
    if os.path.exists(os.path.join(root, "bin", "busybox")):
        return root
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    names = subprocess.run([os.path.join(root, "bin", "busybox"), "--list"], stdout=subprocess.PIPE,
                           text=True, check=True).stdout.split()
    for n in names:
        if n != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", n))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\n")
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    return root


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kiln", required=True)
    p.add_argument("--only", default="copy,rebuild,run,mem")
    p.add_argument("--peers", default="buildkit,buildah", help="comma-separated; empty for kiln alone")
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--mb", type=int, default=200)
    p.add_argument("--reps", type=int, default=5, help="cold COPY-heavy repetitions")
    p.add_argument("--rebuild-reps", type=int, default=11)
    p.add_argument("--run-reps", type=int, default=3)
    p.add_argument("--mem-files", type=int, default=2000)
    p.add_argument("--mem-mb", type=int, default=1024)
    p.add_argument("--mem-reps", type=int, default=3)
    p.add_argument("--out", default=os.path.join(HERE, "out", "build"))
    a = p.parse_args()
    only = set(x for x in a.only.split(",") if x)
    peers = set(x for x in a.peers.split(",") if x)
    a.out = os.path.abspath(a.out)
    os.makedirs(a.out, exist_ok=True)

    print("## kiln build benchmark — %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print("machine: %d CPUs, %s, Linux %s; load %s, %d compiler processes running at start" % (
        os.cpu_count(), platform.machine(), platform.release(), load_average(), busy_compilers()))
    ver = subprocess.run([a.kiln, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    print("kiln: %s (%s)" % (a.kiln, ver))

    kiln = Kiln(a.kiln, a.out)
    bb = busybox_root(a.out)
    kiln.prepare_template([(bb, "localhost/busybox:bench")])
    busybox_tar = os.path.join(a.out, "busybox.tar")
    sh(kiln.cmd(kiln.template, "image", "export", "localhost/busybox:bench", "-o", busybox_tar),
       env=kiln.env())

    docker = buildah = None
    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kiln": ver,
               "load_at_start": load_average()}
    try:
        if "buildkit" in peers and only & {"copy", "rebuild", "run"}:
            docker = Docker(a.out)
            docker.start()
            docker.run("load", "-q", "-i", busybox_tar)
        if "buildah" in peers and only & {"copy", "rebuild", "run"}:
            buildah = Buildah(a.out)
            buildah.run("pull", "-q", "docker-archive:" + busybox_tar)
        if only & {"copy", "rebuild"}:
            scenario_copy(a, kiln, docker, buildah, results, "rebuild" in only)
        if "run" in only:
            scenario_run(a, kiln, docker, buildah, results)
        if "mem" in only:
            scenario_mem(a, kiln, results)
    finally:
        if docker:
            docker.stop()
    results["load_at_end"] = load_average()
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("\nload average at the end: %s; results in %s/results.json" % (load_average(), a.out))


if __name__ == "__main__":
    main()
