#!/usr/bin/env bash
# Installs what jim-export's demo, tests and benchmarks need on a fresh Debian machine, and nothing
# that is already there. Used by scripts/demo.sh, scripts/test.sh and .ci/run, so a fresh clone needs
# no manual step. Safe to run repeatedly.
set -euo pipefail

need_apt=()
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need_apt+=(slapd)
command -v ldapadd >/dev/null 2>&1 || need_apt+=(ldap-utils)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql-15 postgresql-contrib)

if [ "${#need_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need_apt[*]}; run this script as root or install them with apt" >&2
    exit 1
  fi
  echo "installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "${need_apt[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust 1.94 or newer) is required" >&2; exit 1; }
