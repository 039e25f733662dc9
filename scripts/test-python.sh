#!/usr/bin/env bash
# The Python bindings, tested for real: builds the test-servers tool, builds the `jim_export` wheel
# with maturin (bindings/python), installs it into a fresh virtual environment with the test
# dependencies, and runs pytest against throwaway PostgreSQL and slapd servers (`jim-testkit serve`).
# Everything it creates lives under target/python. Run from anywhere; part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-deps.sh

start=$SECONDS
step() { echo "== python: $* ($((SECONDS - start)) s)"; }

# The same feature set as `cargo test --workspace --all-targets`, so after scripts/test.sh's own
# build this only links the testkit binary.
step "cargo build (jim-testkit)"
cargo build --quiet --workspace --all-targets

step "maturin build"
tools=target/python/tools
rm -rf target/python/wheels
(cd bindings/python && "$root/$tools/bin/maturin" build --quiet --out "$root/target/python/wheels")
wheel=$(ls target/python/wheels/jim_export-*.whl)

step "fresh virtualenv"
venv=target/python/venv
rm -rf "$venv"
"$tools/bin/python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$wheel[test]"

step "pytest"
export JIM_TESTKIT="$root/target/debug/jim-testkit"
set +e
(cd bindings/python && "$root/$venv/bin/python" -m pytest -q --tb=native -p no:cacheprovider tests "$@")
rc=$?
set -e
# pytest's 5 means it collected no test: that is a failure here, never a pass.
if [ "$rc" -eq 5 ]; then
  echo "python: pytest collected no tests" >&2
  exit 1
fi
step "done (pytest exit $rc)"
exit "$rc"
