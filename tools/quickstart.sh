#!/usr/bin/env bash
# Quick start: install what is missing, build, and run pvkit's main job.
#
# The main job today is the transport benchmark: two processes exchange
# requests and responses over a pvkit ring in a grant pool, checked
# against a bare shared-memory queue and an eventfd ping-pong measured in
# the same run. Later stages replace it with a guest booting on PV devices.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
echo "== 1/3 dependencies"
bash tools/install-deps.sh

echo "== 2/3 build (Release, ${jobs} jobs) into build-release/"
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DPVKIT_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "${jobs}" | tail -n 1
echo "   built: $(ls build-release/tools/pvkit)"

echo "== 3/3 main job: pvkit bench ring (about 10 s)"
./build-release/tools/pvkit bench ring "$@"
echo "== done. JSON: ./build-release/tools/pvkit bench ring --json; tests: bash tools/run-tests.sh"
