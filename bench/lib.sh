# Shell helpers of the registry benchmarks (bench/push-pull.sh, bench/registry.sh), sourced after
# `set -euo pipefail`:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"; bench_init "$@"
# bench_init answers --help (the calling script's header comment) and sets BENCH (the script's name for
# messages), WORKSPACE, WORK (a temporary folder) and PIDS (background processes); both are cleaned up on
# exit.

# Sets up the script; exits 0 after printing its header for -h/--help.
bench_init() {
    BENCH="bench/$(basename "$0")"
    WORKSPACE="$(cd "$(dirname "$0")/.." && pwd)"
    for arg in "$@"; do
        case "$arg" in
            -h|--help) bench_usage; exit 0 ;;
        esac
    done
    WORK="$(mktemp -d)"
    PIDS=()
    trap bench_cleanup EXIT
}

# The comment block under the script's shebang, without the leading `# `.
bench_usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }

bench_cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

bench_die() { echo "$BENCH: $*" >&2; exit 1; }

# Exits with a message unless every command named is installed.
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || bench_die "$tool is not installed"
    done
}

# Exits with a message unless BIN is an executable; HOW says how to build it.
require_bin() { [ -x "$1" ] || bench_die "no binary at $1: $2"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# Runs a command quietly and prints its wall seconds; on failure shows its output and exits.
timed() {
    local start end
    start="$(now)"
    if ! "$@" >"$WORK/last.log" 2>&1; then
        echo "$BENCH: failed: $*" >&2
        cat "$WORK/last.log" >&2
        exit 1
    fi
    end="$(now)"
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

# The median of numbers, one a line on stdin.
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The median of a space-separated list.
median_of() { echo "$1" | tr ' ' '\n' | grep . | median; }

# Starts `$KILN serve` (KPORT, KPID; root $WORK/kreg) and Debian's docker-registry (DPORT, DPID; root
# $WORK/dreg) on free loopback ports and waits until both answer /v2/.
start_registries() {
    KPORT="$(free_port)"
    "$KILN" serve --listen "127.0.0.1:$KPORT" --root "$WORK/kreg" 2>"$WORK/kserve.log" &
    KPID=$!
    PIDS+=("$KPID")
    DPORT="$(free_port)"
    cat >"$WORK/reg.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/dreg}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$DPORT}
YML
    docker-registry serve "$WORK/reg.yml" >"$WORK/dreg.log" 2>&1 &
    DPID=$!
    PIDS+=("$DPID")
    local port
    for port in "$KPORT" "$DPORT"; do
        for _ in $(seq 100); do
            curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
            sleep 0.1
        done
    done
}

# Sets SKOPEO, the skopeo command line. skopeo remembers where it pushed a blob (its blob-info cache) and
# mounts it from there the next time, which would turn later pushes into mounts: as root, each run gets an
# empty cache in a private mount namespace; otherwise the figures may include mounts, and it says so.
skopeo_without_cache() {
    SKOPEO=(skopeo)
    if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
        mkdir -p /var/lib/containers/cache
        SKOPEO=(unshare -m --propagation private sh -c \
            'mount -t tmpfs tmpfs /var/lib/containers/cache && exec skopeo "$@"' skopeo)
    else
        echo "$BENCH: not root: skopeo keeps its blob-info cache, its later pushes may be mounts" >&2
    fi
}
