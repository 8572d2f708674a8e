#!/usr/bin/env bash
# Context-hash benchmark: taskgraph 24.5.1's generate_context_hash vs `kiln plan`, side by side.
#
#   bench/context-hash.sh                      # full size: 20,000 files / ~500 MB
#   bench/context-hash.sh --files 2000 --mb 50 # a quick, smaller run
#
# Other options go to bench/context_hash.py (--cold-reps, --warm-reps, --taskgraph-reps,
# --regenerate). Env: KILN_BIN (default: build target/release/kiln), KILN_TASKGRAPH_PYTHON
# (default: the venv made by scripts/setup-taskgraph-venv.sh). Output lands in bench/out/.
set -euo pipefail

WORKSPACE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$WORKSPACE"

if [ -n "${KILN_TASKGRAPH_PYTHON:-}" ]; then
    PY="$KILN_TASKGRAPH_PYTHON"
else
    PY="$(scripts/setup-taskgraph-venv.sh)"
fi

if [ -n "${KILN_BIN:-}" ]; then
    KILN="$KILN_BIN"
else
    TARGET="${CARGO_TARGET_DIR:-$WORKSPACE/target}"
    cargo build --release --quiet -p kiln
    KILN="$TARGET/release/kiln"
fi

exec "$PY" bench/context_hash.py --python "$PY" --kiln "$KILN" "$@"
