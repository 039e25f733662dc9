#!/usr/bin/env bash
# The whole test suite: formatting, lints, the committed C header, and every test (unit tests and
# integration tests against throwaway PostgreSQL and slapd servers that the tests start and stop).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --all-targets
# The Python and Kotlin bindings against throwaway servers (they reuse the build above). Kotlin first:
# it uses target/debug/libjim_export.so, which maturin's own library build overwrites.
echo "== kotlin bindings"
bash scripts/test-kotlin.sh
echo "== python bindings"
bash scripts/test-python.sh
