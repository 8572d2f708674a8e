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

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init "$@"
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
        *) echo "$BENCH: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

TARGET="${CARGO_TARGET_DIR:-$WORKSPACE/target}/release"
KILN="${KILN_BIN:-$TARGET/kiln}"
REGBENCH="${REGBENCH_BIN:-$TARGET/kiln-regbench}"
for bin in "$KILN" "$REGBENCH"; do
    require_bin "$bin" 'run `cargo build --release -p kiln -p kiln-bench`'
done
require_tools skopeo docker-registry curl python3
wants() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

hwm_mb() { awk '/^VmHWM/ { printf "%.1f", $2 * 1024 / 1e6 }' "/proc/$1/status"; }

start_registries

echo "# $BENCH $(date -u +%FT%TZ), kiln $("$KILN" --version 2>/dev/null | head -1), $(docker-registry --version 2>/dev/null | head -1)"
echo "# load at start: $(uptime)"
echo

if wants blobs; then
    "$REGBENCH" blobs --registry "kiln=127.0.0.1:$KPORT" --registry "distribution=127.0.0.1:$DPORT" \
        --sizes "$SIZES" --reps "$REPS" --chunk-mib "$CHUNK_MIB" --json "$WORK/blobs.json"
fi

if wants skopeo; then
    echo "writing a ${IMAGE_MIB} MiB image (4 layers) into an OCI layout…" >&2
    "$REGBENCH" layout "$WORK/layout" --mib "$IMAGE_MIB" --layers 4 >/dev/null
    skopeo_without_cache
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
        kv="$(median_of "${T["kiln $op"]}")"
        dv="$(median_of "${T["distribution $op"]}")"
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
