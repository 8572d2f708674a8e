#!/usr/bin/env bash
# Create (or refresh) <workspace>/.venv-taskgraph with the reference taskgraph for the
# differential test (crates/kiln/tests/differential_taskgraph.rs) and the benchmark (bench/).
# Idempotent: an existing venv with the right version is left as it is.
#
# orjson is removed on purpose: with orjson installed taskgraph writes the args JSON of the
# cache digest as raw UTF-8 instead of stdlib json's \uXXXX escapes (docs: taskgraph-compat §1.8),
# and kiln reproduces the default, stdlib-json digests.
set -euo pipefail

TASKGRAPH_VERSION="24.5.1"
WORKSPACE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KILN_TASKGRAPH_VENV:-$WORKSPACE/.venv-taskgraph}"
PYTHON="${PYTHON:-python3}"

have_version() {
    "$VENV/bin/python" - "$TASKGRAPH_VERSION" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("taskcluster-taskgraph") == sys.argv[1] else 1)
PY
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi

if have_version; then
    echo "taskcluster-taskgraph $TASKGRAPH_VERSION already in $VENV" >&2
else
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "taskcluster-taskgraph==$TASKGRAPH_VERSION"
fi

if "$VENV/bin/python" -c 'import orjson' 2>/dev/null; then
    echo "removing orjson from $VENV (digests must use stdlib json)" >&2
    "$VENV/bin/python" -m pip uninstall --quiet --yes orjson
fi

"$VENV/bin/python" - "$TASKGRAPH_VERSION" <<'PY'
import sys
from importlib.metadata import version
import taskgraph.util.docker  # noqa: F401  (the module the reference calls)
try:
    import orjson  # noqa: F401
    sys.exit("orjson is still importable")
except ImportError:
    pass
assert version("taskcluster-taskgraph") == sys.argv[1]
PY
echo "$VENV/bin/python"
