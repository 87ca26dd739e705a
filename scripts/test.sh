#!/usr/bin/env bash
# The one test command: installs what the tests need, then checks formatting, runs clippy
# with warnings as errors, and runs every test (unit, property, mock-API, real-OVS,
# dataplane, chart).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
export PATH="$PWD/.tools/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked
