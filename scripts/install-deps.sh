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

# Python and Kotlin binding tests (scripts/test-python.sh, scripts/test-kotlin.sh): the venv module,
# JNA and a Java runtime from Debian, maturin in a repo-local virtualenv (target/python/tools), and
# the Kotlin compiler from npm into ./node_modules (ignored by git).
(
  cd "$(dirname "$0")/.."
  bindings_apt=()
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || bindings_apt+=(python3-venv)
  [ -f /usr/share/java/jna.jar ] || bindings_apt+=(libjna-java)
  command -v java >/dev/null 2>&1 || bindings_apt+=(default-jre-headless)
  if [ "${#bindings_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "missing packages: ${bindings_apt[*]}; run this script as root or install them with apt" >&2
      exit 1
    fi
    echo "installing: ${bindings_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq "${bindings_apt[@]}" >/dev/null 2>&1; then
      apt-get update -qq
      apt-get install -y -qq "${bindings_apt[@]}" >/dev/null
    fi
  fi
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
)

# C and .NET FFI tests (tests/ffi_c*.rs, tests/ffi_dotnet.rs): gcc for the C host, valgrind for the
# C tests' memory check, Mono's mcs (C# 7.2) and runtime for the .NET binding's test program.
ffi_apt=()
command -v gcc >/dev/null 2>&1 || ffi_apt+=(gcc)
command -v valgrind >/dev/null 2>&1 || ffi_apt+=(valgrind)
{ command -v mcs >/dev/null 2>&1 && command -v mono >/dev/null 2>&1; } || ffi_apt+=(mono-devel)
if [ "${#ffi_apt[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${ffi_apt[*]}; run this script as root or install them with apt" >&2
    exit 1
  fi
  echo "installing: ${ffi_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "${ffi_apt[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq "${ffi_apt[@]}" >/dev/null
  fi
fi
