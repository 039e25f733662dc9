#!/usr/bin/env bash
# The Python bindings, tested for real: builds the test-servers tool, builds the `jim_export` wheel
# with maturin (bindings/python; a release build, stripped), installs it into a fresh virtual
# environment with the test dependencies, and runs pytest against throwaway PostgreSQL and slapd
# servers (`jim-testkit serve`).
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

# The wheel as it ships: an optimised build (the release profile, in target/release, so the debug
# library the Kotlin test and the FFI tests use is left alone), without debug info (`rustc-args` in
# pyproject.toml). A debug wheel is about 40 MB; this one must stay within 15 MB.
step "maturin build --release"
tools=target/python/tools
rm -rf target/python/wheels
(cd bindings/python && "$root/$tools/bin/maturin" build --release --quiet --out "$root/target/python/wheels")
wheel=$(ls target/python/wheels/jim_export-*.whl)
wheel_bytes=$(stat -c %s "$wheel")
max_wheel_bytes=15000000
echo "python: $(basename "$wheel"): $wheel_bytes bytes"
if [ "$wheel_bytes" -gt "$max_wheel_bytes" ]; then
  echo "python: the wheel is over $max_wheel_bytes bytes" >&2
  exit 1
fi

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
