#!/usr/bin/env bash
# Builds and runs the whole test suite twice: a normal build and an
# AddressSanitizer + UndefinedBehaviorSanitizer build. Installs missing
# build packages first. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
bash tools/install-deps.sh

run_suite() {
  local dir=$1; shift
  echo "== configure ${dir} ($*)"
  # Ninja for a new tree; a tree configured by hand keeps its generator
  # (CMake refuses to switch one).
  local generator=(-G Ninja)
  [[ -f "${dir}/CMakeCache.txt" ]] && generator=()
  cmake -S . -B "${dir}" "${generator[@]}" "$@" >/dev/null
  echo "== build ${dir}"
  cmake --build "${dir}" -j "${jobs}"
  echo "== test ${dir}"
  # Tests fork peers and pin CPUs; run them one at a time so that figures in
  # smoke runs and timeouts are not distorted by each other.
  ctest --test-dir "${dir}" --output-on-failure --no-tests=error -j 1
}

run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DPVKIT_SANITIZE=ON
echo "== all test suites passed (normal and ASan+UBSan)"
