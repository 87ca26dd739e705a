#!/usr/bin/env bash
# The one test command: installs what the tests need, then — hermetically, see
# scripts/hermetic.sh — checks formatting, runs clippy with warnings as errors, and runs
# every test (unit, property, mock-API, real-OVS, dataplane, chart, and the real
# kube-apiserver tier).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${RDO_TEST_INSIDE:-}" != 1 ]; then
  scripts/install-deps.sh
  # The real control plane (kube-apiserver, kube-controller-manager, etcd) in envtest's
  # layout, from ../shared/envtest when it is there; or bring your own KUBEBUILDER_ASSETS
  # (e.g. `setup-envtest use -p path`). CI always runs that tier.
  if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ -x ../shared/envtest/unpack.sh ]; then
    KUBEBUILDER_ASSETS=$(../shared/envtest/unpack.sh "$PWD/.tools/envtest")
    export KUBEBUILDER_ASSETS
  fi
  if [ "${CI:-}" = true ]; then export RDO_REQUIRE_ENVTEST=1; fi
  # Everything the build needs is downloaded now: the tests run without a network.
  cargo fetch --locked
  RDO_TEST_INSIDE=1 exec scripts/hermetic.sh "$0" "$@"
fi

export PATH="$PWD/.tools/bin:$PATH"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
# Each test that starts a real control plane notes its name here.
export RDO_ENVTEST_RAN="${TMPDIR:-/tmp}/envtest-ran.txt"
: > "$RDO_ENVTEST_RAN"
status=0
cargo test --locked --no-fail-fast "$@" || status=$?
ran=$(awk '{ sub(".*/", "", $1); sub("-[0-9a-f]+$", "", $1); print $1 "::" $2 }' "$RDO_ENVTEST_RAN" | sort -u)
if [ -n "$ran" ]; then
  version=$("${KUBEBUILDER_ASSETS:-}/kube-apiserver" --version 2>/dev/null || echo "kube-apiserver")
  echo "== real control plane tier: $(echo "$ran" | wc -l) tests ran against a real $version:"
  echo "$ran" | sed 's/^/   /'
else
  echo "== real control plane tier: no test of it ran (no KUBEBUILDER_ASSETS, or cargo test stopped before those test binaries)"
fi
exit "$status"
