#!/usr/bin/env bash
# Push/pull benchmark (issue 6, "Performance"): `kiln push`/`kiln pull` of one image vs `skopeo copy` of
# the same blobs, to kiln's registry (`kiln serve`) and to Debian's docker-registry (distribution 2.8),
# side by side in one run; then retagging (`kiln tag` vs `skopeo copy` tag to tag in one repository) and, on
# kiln serve, `kiln promote` (new tag, temporary tag deleted) vs the same skopeo copy.
#
#   bench/push-pull.sh                 # a ~200 MB single-layer image (random bytes, zstd), 3 reps
#   bench/push-pull.sh --mb 1000 --reps 5
#   bench/push-pull.sh --quick         # 20 MB, 1 rep: does it still run
#
# Env: KILN_BIN (default: target/release/kiln under CARGO_TARGET_DIR or ./target; build it first with
# `cargo build --release -p kiln`). Needs skopeo, docker-registry, curl and python3; installs nothing.
# Every run pushes to fresh repositories, so each push uploads every blob. skopeo pushes from an OCI
# layout of the same store image (`--preserve-digests`, no recompression) and pulls into an OCI layout;
# kiln pulls into a fresh store. Prints median wall seconds and ratios (skopeo / kiln; above 1 means kiln
# is faster).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init "$@"
MB=200
REPS=3
while [ $# -gt 0 ]; do
    case "$1" in
        --mb) MB="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        --quick) MB=20; REPS=1; shift ;;
        *) echo "$BENCH: unknown option $1 (use --mb N, --reps N, --quick, --help)" >&2; exit 2 ;;
    esac
done

KILN="${KILN_BIN:-${CARGO_TARGET_DIR:-$WORKSPACE/target}/release/kiln}"
require_bin "$KILN" 'run `cargo build --release -p kiln` (or set KILN_BIN)'
require_tools skopeo docker-registry curl python3

echo "building a ${MB} MB image…" >&2
mkdir -p "$WORK/root/bin"
cp /bin/busybox "$WORK/root/bin/" 2>/dev/null || true
head -c "${MB}M" /dev/urandom >"$WORK/root/data.bin"
STORE="$WORK/store"
"$KILN" --store "$STORE" -q image import "$WORK/root" -t bench:1 --compression zstd >/dev/null
"$KILN" --store "$STORE" -q image export bench:1 -o "$WORK/layout/" >/dev/null
rm -rf "$WORK/root"

start_registries
skopeo_without_cache

declare -A T
record() { T["$1"]+="$2 "; }
for registry in "kiln serve:127.0.0.1:$KPORT" "docker-registry:127.0.0.1:$DPORT"; do
    name="${registry%%:*}"
    host="${registry#*:}"
    for rep in $(seq "$REPS"); do
        k="$host/k$rep/bench:1"
        s="$host/s$rep/bench:1"
        # Alternate who goes first.
        if [ $((rep % 2)) = 1 ]; then order="kiln skopeo"; else order="skopeo kiln"; fi
        for who in $order; do
            if [ "$who" = kiln ]; then
                record "$name push kiln" "$(timed "$KILN" --store "$STORE" -q push bench:1 "$k")"
            else
                record "$name push skopeo" "$(timed "${SKOPEO[@]}" copy -q --preserve-digests --dest-tls-verify=false \
                    "oci:$WORK/layout:1" "docker://$s")"
            fi
        done
        for who in $order; do
            rm -rf "$WORK/pulled"
            if [ "$who" = kiln ]; then
                record "$name pull kiln" "$(timed "$KILN" --store "$WORK/pulled" -q pull "$k")"
            else
                record "$name pull skopeo" "$(timed "${SKOPEO[@]}" copy -q --preserve-digests --src-tls-verify=false \
                    "docker://$s" "oci:$WORK/pulled:x")"
            fi
        done
        for who in $order; do
            if [ "$who" = kiln ]; then
                record "$name tag kiln" "$(timed "$KILN" -q tag "$k" "final$rep")"
            else
                record "$name tag skopeo" "$(timed "${SKOPEO[@]}" copy -q --preserve-digests --src-tls-verify=false \
                    --dest-tls-verify=false "docker://$s" "docker://${s%:1}:final$rep")"
            fi
        done
        # promote: the gate's temporary tag to its final tag, then the temporary tag deleted (kiln serve
        # only: distribution 2.8 cannot delete a tag alone). skopeo's figure is a copy of the same tag.
        if [ "$name" = "kiln serve" ]; then
            "$KILN" -q tag "$k" "change_${rep}_1" >/dev/null
            record "$name promote kiln" "$(timed "$KILN" -q promote "${k%:1}:change_${rep}_1" "release$rep")"
            record "$name promote skopeo" "$(timed "${SKOPEO[@]}" copy -q --preserve-digests --src-tls-verify=false \
                --dest-tls-verify=false "docker://$s" "docker://${s%:1}:release$rep")"
        fi
    done
done
rm -rf "$WORK/pulled"

printf '\n%s MB image, median of %s (wall seconds)\n\n' "$MB" "$REPS"
printf '| registry | operation | kiln | skopeo | skopeo / kiln |\n|---|---|---:|---:|---:|\n'
for name in "kiln serve" "docker-registry"; do
    ops="push pull tag"
    [ "$name" = "kiln serve" ] && ops="$ops promote"
    for op in $ops; do
        kv="$(median_of "${T["$name $op kiln"]}")"
        sv="$(median_of "${T["$name $op skopeo"]}")"
        ratio="$(awk -v k="$kv" -v s="$sv" 'BEGIN { printf "%.2f×", s / k }')"
        printf '| %s | %s | %.3f | %.3f | %s |\n' "$name" "$op" "$kv" "$sv" "$ratio"
    done
done
