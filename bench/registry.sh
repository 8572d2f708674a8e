#!/usr/bin/env bash
# Registry benchmark (issue 5, "Performance"): `kiln serve` (release build) against Debian's docker-registry
# (distribution 2.8) on the same machine with the same client, side by side in one run:
#   1. blobs of 1, 10 and 100 MiB pushed monolithically and chunked, pulled whole and in Range requests
#      (kiln-regbench blobs: one reqwest client, the registries taking turns);
#   2. a 200 MiB image (4 random-content layers in an OCI layout) pushed and pulled with `skopeo copy`;
#   3. a mixed load, 75 % pulls / 25 % pushes at concurrency 10 for a fixed time (1 MiB blobs, then 10 MiB
#      blobs; --mixed-sizes-kib "1024;10240", runs separated by ";", sizes within a run by ","), with throughput,
#      p50/p99 latency and the server's peak RSS (VmHWM, reset before the load).
#
#   bench/registry.sh                             # the full run (about 10 minutes)
#   bench/registry.sh --quick                     # 1 and 10 MiB, 3 reps, 10 s of mixed load
#   bench/registry.sh --only mixed --mixed-seconds 60
#
# Env: KILN_BIN and REGBENCH_BIN (default: target/release/{kiln,kiln-regbench} under CARGO_TARGET_DIR or
# ./target; build them with `cargo build --release -p kiln -p kiln-bench`). Needs skopeo, docker-registry,
# curl and python3; installs nothing. Registry roots live under $TMPDIR (default /tmp): put it on the disk
# you want to measure. Ratios are kiln / distribution (throughput: above 1 is better; latency: below 1).
set -euo pipefail

WORKSPACE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES=1,10,100
REPS=5
CHUNK_MIB=5
SKOPEO_REPS=3
IMAGE_MIB=200
MIXED_SECONDS=30
MIXED_SIZES_KIB="1024;10240"
ONLY=blobs,skopeo,mixed
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) SIZES="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        --chunk-mib) CHUNK_MIB="$2"; shift 2 ;;
        --skopeo-reps) SKOPEO_REPS="$2"; shift 2 ;;
        --image-mib) IMAGE_MIB="$2"; shift 2 ;;
        --mixed-seconds) MIXED_SECONDS="$2"; shift 2 ;;
        --mixed-sizes-kib) MIXED_SIZES_KIB="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --quick) SIZES=1,10; REPS=3; SKOPEO_REPS=1; MIXED_SECONDS=10; shift ;;
        *) echo "bench/registry.sh: unknown option $1 (see the header of this script)" >&2; exit 2 ;;
    esac
done

TARGET="${CARGO_TARGET_DIR:-$WORKSPACE/target}/release"
KILN="${KILN_BIN:-$TARGET/kiln}"
REGBENCH="${REGBENCH_BIN:-$TARGET/kiln-regbench}"
for bin in "$KILN" "$REGBENCH"; do
    if [ ! -x "$bin" ]; then
        echo "bench/registry.sh: no binary at $bin: run \`cargo build --release -p kiln -p kiln-bench\`" >&2
        exit 1
    fi
done
for tool in skopeo docker-registry curl python3; do
    command -v "$tool" >/dev/null || { echo "bench/registry.sh: $tool is not installed" >&2; exit 1; }
done
wants() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
timed() {
    local start end
    start="$(now)"
    if ! "$@" >"$WORK/last.log" 2>&1; then
        echo "bench/registry.sh: failed: $*" >&2
        cat "$WORK/last.log" >&2
        exit 1
    fi
    end="$(now)"
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
hwm_mb() { awk '/^VmHWM/ { printf "%.1f", $2 * 1024 / 1e6 }' "/proc/$1/status"; }

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
for port in "$KPORT" "$DPORT"; do
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
        sleep 0.1
    done
done

echo "# bench/registry.sh $(date -u +%FT%TZ), kiln $("$KILN" --version 2>/dev/null | head -1), $(docker-registry --version 2>/dev/null | head -1)"
echo "# load at start: $(uptime)"
echo

if wants blobs; then
    "$REGBENCH" blobs --registry "kiln=127.0.0.1:$KPORT" --registry "distribution=127.0.0.1:$DPORT" \
        --sizes "$SIZES" --reps "$REPS" --chunk-mib "$CHUNK_MIB" --json "$WORK/blobs.json"
fi

if wants skopeo; then
    echo "writing a ${IMAGE_MIB} MiB image (4 layers) into an OCI layout…" >&2
    "$REGBENCH" layout "$WORK/layout" --mib "$IMAGE_MIB" --layers 4 >/dev/null
    # skopeo's blob-info cache would turn later pushes into mounts: as root, each run gets an empty one.
    SKOPEO=(skopeo)
    if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
        mkdir -p /var/lib/containers/cache
        SKOPEO=(unshare -m --propagation private sh -c \
            'mount -t tmpfs tmpfs /var/lib/containers/cache && exec skopeo "$@"' skopeo)
    fi
    declare -A T
    for rep in $(seq "$SKOPEO_REPS"); do
        if [ $((rep % 2)) = 1 ]; then order="kiln distribution"; else order="distribution kiln"; fi
        for who in $order; do
            port=$KPORT; [ "$who" = distribution ] && port=$DPORT
            echo "skopeo push/pull $who #$rep" >&2
            T["$who push"]+="$(timed "${SKOPEO[@]}" copy -q --preserve-digests --dest-tls-verify=false \
                "oci:$WORK/layout:bench" "docker://127.0.0.1:$port/skopeo$rep/bench:1") "
            rm -rf "$WORK/pulled"
            T["$who pull"]+="$(timed "${SKOPEO[@]}" copy -q --preserve-digests --src-tls-verify=false \
                "docker://127.0.0.1:$port/skopeo$rep/bench:1" "oci:$WORK/pulled:x") "
        done
    done
    rm -rf "$WORK/pulled" "$WORK/layout"
    printf '\nskopeo copy of a %s MiB image (4 layers), median of %s, wall seconds\n\n' "$IMAGE_MIB" "$SKOPEO_REPS"
    printf '| operation | kiln s | distribution s | kiln / distribution (throughput) |\n|---|---:|---:|---:|\n'
    for op in push pull; do
        kv="$(echo "${T["kiln $op"]}" | tr ' ' '\n' | grep . | median)"
        dv="$(echo "${T["distribution $op"]}" | tr ' ' '\n' | grep . | median)"
        printf '| %s | %.3f | %.3f | **%.2f×** |\n' "$op" "$kv" "$dv" "$(awk -v k="$kv" -v d="$dv" 'BEGIN { print d / k }')"
    done
    echo
fi

if wants mixed; then
    for kib in ${MIXED_SIZES_KIB//;/ }; do
        "$REGBENCH" mixed --registry "kiln=127.0.0.1:$KPORT@$KPID" \
            --registry "distribution=127.0.0.1:$DPORT@$DPID" --concurrency 10 --seconds "$MIXED_SECONDS" \
            --pull-percent 75 --sizes-kib "$kib" --json "$WORK/mixed-$kib.json"
    done
fi

echo "# peak RSS over the whole run: kiln $(hwm_mb "$KPID") MB, distribution $(hwm_mb "$DPID") MB (VmHWM; the mixed load resets it)"
echo "# load at end: $(uptime)"
