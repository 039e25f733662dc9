#!/usr/bin/env bash
# The export demo on throwaway PostgreSQL and slapd servers (see examples/demo.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo run --quiet --release --example demo -- "$@"
