#!/usr/bin/env bash
# The Kotlin bindings, tested for real: builds the library, the bindgen and the test-servers tool,
# regenerates the Kotlin bindings and checks that the committed copy in bindings/kotlin is fresh
# (JIM_EXPORT_WRITE_BINDINGS=1 rewrites it), compiles them with the test program using kotlinc (npm
# kotlin-compiler) and runs it on the JVM with JNA against throwaway PostgreSQL and slapd servers.
# Everything it creates lives under target/kotlin. Run from anywhere; part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-deps.sh

start=$SECONDS
step() { echo "== kotlin: $* ($((SECONDS - start)) s)"; }

# The same feature set as `cargo test --workspace --all-targets`, so after scripts/test.sh's own
# build this only links the binaries.
step "cargo build (library, uniffi-bindgen, jim-testkit)"
cargo build --quiet --workspace --all-targets

step "generate bindings"
out=target/kotlin
rm -rf "$out"
mkdir -p "$out"
target/debug/uniffi-bindgen generate target/debug/libjim_export.so --language kotlin \
  --out-dir "$out/generated" --no-format >/dev/null
committed=bindings/kotlin/org/jim/export/jim_export.kt
if [ "${JIM_EXPORT_WRITE_BINDINGS:-}" = 1 ]; then
  mkdir -p "$(dirname "$committed")"
  cp "$out/generated/org/jim/export/jim_export.kt" "$committed"
  echo "kotlin: wrote $committed"
elif ! cmp -s "$out/generated/org/jim/export/jim_export.kt" "$committed"; then
  echo "kotlin: $committed is stale: regenerate it with JIM_EXPORT_WRITE_BINDINGS=1 bash scripts/test-kotlin.sh and commit it" >&2
  exit 1
fi

step "kotlinc"
kc=node_modules/kotlin-compiler
jna=/usr/share/java/jna.jar
coroutines=$kc/lib/kotlinx-coroutines-core-jvm.jar
"$kc/bin/kotlinc" -nowarn -cp "$jna:$coroutines" "$committed" bindings/kotlin/org/jim/export/Secret.kt \
  bindings/kotlin/test/ExportTest.kt \
  -d "$out/export-test.jar"

step "run"
java -Djna.library.path="$root/target/debug" \
  -cp "$out/export-test.jar:$jna:$coroutines:$kc/lib/kotlin-stdlib.jar" \
  org.jim.export.test.ExportTestKt "$root/target/debug/jim-testkit"
step "done"
