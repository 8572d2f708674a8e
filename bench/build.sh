#!/usr/bin/env bash
# Image-build benchmark: `kiln build` vs buildah and BuildKit, side by side (issue 4, "Performance").
#
#   bench/build.sh                              # everything: copy, rebuild, run, mem (~10 minutes)
#   bench/build.sh --only copy,rebuild --reps 3 # a quicker run
#   bench/build.sh --peers ''                   # kiln alone
#
# Other options go to bench/build_bench.py (--files, --mb, --reps, --rebuild-reps, --run-reps,
# --mem-mb, --mem-reps). Env: KILN_BIN (default: target/release/kiln under CARGO_TARGET_DIR or
# ./target, which must be built first: `cargo build --release -p kiln`). Needs root (overlay mounts,
# runc). Installs nothing: it says what is missing and stops. Output lands in bench/out/build/.
set -euo pipefail

WORKSPACE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$WORKSPACE"

if [ "$(id -u)" != 0 ]; then
    echo "bench/build.sh: run as root (overlay mounts, runc, dockerd)" >&2
    exit 1
fi

if [ -n "${KILN_BIN:-}" ]; then
    KILN="$KILN_BIN"
else
    KILN="${CARGO_TARGET_DIR:-$WORKSPACE/target}/release/kiln"
fi
if [ ! -x "$KILN" ]; then
    echo "bench/build.sh: no kiln binary at $KILN: run \`cargo build --release -p kiln\` (or set KILN_BIN)" >&2
    exit 1
fi

# Parse only what decides which tools are needed; everything goes on to the driver.
ONLY="copy,rebuild,run,mem"
PEERS="buildkit,buildah"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[$i]}" in
        --only) ONLY="${args[$((i + 1))]:-}" ;;
        --only=*) ONLY="${args[$i]#--only=}" ;;
        --peers) PEERS="${args[$((i + 1))]:-}" ;;
        --peers=*) PEERS="${args[$i]#--peers=}" ;;
    esac
done

missing=()
need() { # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing+=("$1 (apt-get install $2)")
}
need python3 python3
need runc runc
need zstd zstd
need /usr/bin/time time
[ -x /bin/busybox ] || missing+=("/bin/busybox (apt-get install busybox-static)")
if [[ ",$ONLY," == *,run,* ]]; then
    need debootstrap debootstrap
fi
if [[ "$ONLY" =~ copy|rebuild|run ]]; then
    if [[ ",$PEERS," == *,buildkit,* ]]; then
        need dockerd docker.io
        need /usr/bin/docker docker.io
        need containerd containerd
    fi
    if [[ ",$PEERS," == *,buildah,* ]]; then
        need buildah buildah
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench/build.sh: missing tools:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    echo "(or leave peers out with --peers '' / --peers buildah / --peers buildkit)" >&2
    exit 1
fi

exec python3 bench/build_bench.py --kiln "$KILN" "$@"
