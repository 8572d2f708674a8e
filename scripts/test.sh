#!/usr/bin/env bash
# kiln's one entry point for checks: formatting, lints, and the whole test suite with the real peer
# tools. Sets up what the tests need that cargo does not fetch (the reference taskgraph in a venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup-taskgraph-venv.sh
# Tests that compare against real tools fail instead of skipping when a tool is missing.
export KILN_REQUIRE_PEERS="${KILN_REQUIRE_PEERS:-1}"

echo "== cargo fmt" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --locked
