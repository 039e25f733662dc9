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
echo "== cargo doc (broken intra-doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib --quiet
# From here on every stage runs even when one before it failed, so one run reports every failure; the
# script still fails if any stage did.
failed=()
echo "== cargo test"
cargo test --workspace --all-targets --no-fail-fast || failed+=("cargo test")
# The Python and Kotlin bindings against throwaway servers. Kotlin uses the build above
# (target/debug/libjim_export.so); the Python wheel is a release build of its own (target/release),
# which leaves that library alone, so the order between the two no longer matters.
echo "== kotlin bindings"
bash scripts/test-kotlin.sh || failed+=("kotlin bindings")
echo "== python bindings"
bash scripts/test-python.sh || failed+=("python bindings")
if ((${#failed[@]})); then
    echo "== failed: ${failed[*]}" >&2
    exit 1
fi
echo "== all passed"
