#!/usr/bin/env bash
# kiln's main job on the bundled example (examples/shop): plan, build every image (RUN steps through runc,
# no daemon, no registry), write image.tar.zst artifacts and index records, then plan again to show every
# image turned from `build` to `cached`. The embedded store and index live in examples/shop/.kiln/.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v runc >/dev/null || need+=(runc)
command -v slirp4netns >/dev/null || need+=(slirp4netns)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${need[*]}…" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "kiln's example needs: ${need[*]} (apt-get install ${need[*]})" >&2
        exit 1
    fi
fi
if [ "$(id -u)" != 0 ]; then
    echo "building images runs RUN steps in runc on overlayfs: run this as root" >&2
    exit 1
fi

cargo build --release -q -p kiln
bin="${CARGO_TARGET_DIR:-target}/release/kiln"
kiln() { "$bin" -C examples/shop "$@"; }

# The example's base image: a 2 MB busybox root filesystem imported as busybox:example.
if ! kiln image inspect busybox:example >/dev/null 2>&1; then
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    mkdir -p "$root"/{bin,etc,tmp,root,proc,sys,dev}
    cp /bin/busybox "$root/bin/"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
    echo 'root:x:0:' > "$root/etc/group"
    chmod 1777 "$root/tmp"
    kiln image import "$root" -t busybox:example -q
fi

echo "== plan"
kiln plan
echo "== build --all"
kiln build --all
echo "== plan again: everything is cached now"
kiln plan
echo "== artifacts (zstd-compressed docker-archives: podman load -i FILE)"
ls -l examples/shop/.kiln/artifacts/*/image.tar.zst
