#!/usr/bin/env bash
# The export demo on throwaway PostgreSQL and slapd servers (see examples/demo.rs); with --samba, on a
# throwaway Samba AD domain controller instead, with --389 on a throwaway 389 Directory Server.
# Arguments: [--samba | --389 | --target openldap|samba-ad|389] [Template].
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo run --quiet --release --example demo -- "$@"
