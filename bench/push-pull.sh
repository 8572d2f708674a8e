#!/usr/bin/env bash
# Push/pull benchmark (issue 6, "Performance"): `kiln push`/`kiln pull` of one image vs `skopeo copy` of
# the same blobs, to kiln's registry (`kiln serve`) and to Debian's docker-registry (distribution 2.8),
# side by side in one run; then retagging (`kiln tag` vs `skopeo copy` tag to tag in one repository) and, on
# kiln serve, `kiln promote` (new tag, temporary tag deleted) vs the same skopeo copy.
#
#   bench/push-pull.sh                 # a ~200 MB single-layer image (random bytes, zstd), 3 reps
#   bench/push-pull.sh --mb 1000 --reps 5
#
# Env: KILN_BIN (default: target/release/kiln under CARGO_TARGET_DIR or ./target; build it first with
# `cargo build --release -p kiln`). Needs skopeo and docker-registry; installs nothing. Every run pushes
# to fresh repositories, so each push uploads every blob. skopeo pushes from an OCI layout of the same
# store image (`--preserve-digests`, no recompression) and pulls into an OCI layout; kiln pulls into a
# fresh store. Prints median wall seconds and ratios (skopeo / kiln; above 1 means kiln is faster).
set -euo pipefail

WORKSPACE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MB=200
REPS=3
while [ $# -gt 0 ]; do
    case "$1" in
        --mb) MB="$2"; shift 2 ;;
        --reps) REPS="$2"; shift 2 ;;
        *) echo "bench/push-pull.sh: unknown option $1 (use --mb N, --reps N)" >&2; exit 2 ;;
    esac
done

KILN="${KILN_BIN:-${CARGO_TARGET_DIR:-$WORKSPACE/target}/release/kiln}"
if [ ! -x "$KILN" ]; then
    echo "bench/push-pull.sh: no kiln binary at $KILN: run \`cargo build --release -p kiln\` (or set KILN_BIN)" >&2
    exit 1
fi
for tool in skopeo docker-registry python3; do
    command -v "$tool" >/dev/null || { echo "bench/push-pull.sh: $tool is not installed" >&2; exit 1; }
done

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
# Runs a command quietly and prints its wall seconds.
timed() {
    local start end
    start="$(now)"
    if ! "$@" >"$WORK/last.log" 2>&1; then
        echo "bench/push-pull.sh: failed: $*" >&2
        cat "$WORK/last.log" >&2
        exit 1
    fi
    end="$(now)"
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "building a ${MB} MB image…" >&2
mkdir -p "$WORK/root/bin"
cp /bin/busybox "$WORK/root/bin/" 2>/dev/null || true
head -c "${MB}M" /dev/urandom >"$WORK/root/data.bin"
STORE="$WORK/store"
"$KILN" --store "$STORE" -q image import "$WORK/root" -t bench:1 --compression zstd >/dev/null
"$KILN" --store "$STORE" -q image export bench:1 -o "$WORK/layout/" >/dev/null
rm -rf "$WORK/root"

KPORT="$(free_port)"
"$KILN" serve --listen "127.0.0.1:$KPORT" --root "$WORK/kreg" 2>"$WORK/kserve.log" &
PIDS+=("$!")
DPORT="$(free_port)"
cat >"$WORK/reg.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/dreg}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$DPORT}
YML
docker-registry serve "$WORK/reg.yml" >"$WORK/dreg.log" 2>&1 &
PIDS+=("$!")
for port in "$KPORT" "$DPORT"; do
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
        sleep 0.1
    done
done

# skopeo remembers where it pushed a blob (its blob-info cache) and mounts it from there the next time,
# which would turn its later pushes into mounts. As root, each skopeo run gets an empty cache in a private
# mount namespace; otherwise the figures say so.
SKOPEO=(skopeo)
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
    mkdir -p /var/lib/containers/cache
    SKOPEO=(unshare -m --propagation private sh -c \
        'mount -t tmpfs tmpfs /var/lib/containers/cache && exec skopeo "$@"' skopeo)
else
    echo "bench/push-pull.sh: not root: skopeo keeps its blob-info cache, its later pushes may be mounts" >&2
fi

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
        kv="$(echo "${T["$name $op kiln"]}" | tr ' ' '\n' | grep . | median)"
        sv="$(echo "${T["$name $op skopeo"]}" | tr ' ' '\n' | grep . | median)"
        ratio="$(awk -v k="$kv" -v s="$sv" 'BEGIN { printf "%.2f×", s / k }')"
        printf '| %s | %s | %.3f | %.3f | %s |\n' "$name" "$op" "$kv" "$sv" "$ratio"
    done
done
