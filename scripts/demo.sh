#!/usr/bin/env bash
# The export demo on throwaway PostgreSQL and slapd servers (see examples/demo.rs); with --samba, on a
# throwaway Samba AD domain controller instead. Arguments: [--samba | --target openldap|samba-ad] [Template].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo run --quiet --release --example demo -- "$@"
