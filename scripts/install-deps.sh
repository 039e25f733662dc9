#!/usr/bin/env bash
# Installs what jim-export's demo, tests and benchmarks need on a fresh Debian machine, and nothing
# that is already there. Used by scripts/demo.sh, scripts/test.sh and .ci/run, so a fresh clone needs
# no manual step. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs the named Debian packages (refreshing the package lists only when an install fails).
apt_install() {
  [ "$#" -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: $*; run this script as root or install them with apt" >&2
    exit 1
  fi
  echo "installing: $*"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "$@" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq "$@" >/dev/null
  fi
}

command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust 1.94 or newer) is required" >&2; exit 1; }

need=()
# The test servers: slapd and PostgreSQL 15 (with pg_stat_statements).
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need+=(slapd)
command -v ldapadd >/dev/null 2>&1 || need+=(ldap-utils)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql-15 postgresql-contrib)
# The Samba AD domain controller of the AD tests and of `scripts/demo.sh --samba` (testkit/src/samba.rs).
# DEBIAN_FRONTEND=noninteractive (apt_install) keeps krb5-user from asking for a default realm.
if ! { [ -x /usr/sbin/samba ] || command -v samba >/dev/null 2>&1; } \
  || ! command -v samba-tool >/dev/null 2>&1; then
  need+=(samba samba-ad-dc winbind krb5-user)
fi
# The 389 Directory Server of the ds389 tests (testkit/src/ds389.rs): ns-slapd and dscreate, and the NSS
# tools and openssl that put the test CA's certificate into the server's NSS database.
if ! { [ -x /usr/sbin/ns-slapd ] || command -v ns-slapd >/dev/null 2>&1; } \
  || ! { [ -x /usr/sbin/dscreate ] || command -v dscreate >/dev/null 2>&1; }; then
  need+=(389-ds-base)
fi
{ command -v certutil >/dev/null 2>&1 && command -v pk12util >/dev/null 2>&1; } || need+=(libnss3-tools)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# C and .NET FFI tests: gcc for the C host, valgrind for its memory check, Mono (mcs, C# 7.2) for the
# .NET binding's test program.
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
{ command -v mcs >/dev/null 2>&1 && command -v mono >/dev/null 2>&1; } || need+=(mono-devel)
# Python and Kotlin binding tests: the venv module, JNA and a Java runtime.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
[ -f /usr/share/java/jna.jar ] || need+=(libjna-java)
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
apt_install "${need[@]}"

# maturin in a repo-local virtualenv, and the Kotlin compiler from npm into ./node_modules (both
# ignored by git).
tools=target/python/tools
if ! "$tools/bin/maturin" --version 2>/dev/null | grep -qx 'maturin 1.16.0'; then
  echo "installing: maturin 1.16.0 into $tools"
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check maturin==1.16.0
fi
if [ ! -x node_modules/kotlin-compiler/bin/kotlinc ]; then
  command -v npm >/dev/null 2>&1 || { echo "npm is required for the Kotlin tests" >&2; exit 1; }
  echo "installing: kotlin-compiler 2.4.20 (npm) into node_modules"
  npm install --prefix "$PWD" --no-save --no-package-lock --no-audit --no-fund --silent kotlin-compiler@2.4.20
fi
