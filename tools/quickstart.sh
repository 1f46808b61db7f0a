#!/usr/bin/env bash
# Quick start: install what is missing, build, and run pvkit's main job: the
# pvkit mini guest boots under KVM with a PV disk that pvkit-blkback serves
# from an image file, writes patterns through the blkfront core in guest
# user mode, reads them back and verifies them; then the same block
# workload runs in the guest and in a host process to report exits and
# notifications per request and the guest/host ratio.
#
# Everything runs from a scratch directory: its own pvkit-stored and
# pvkit-blkback (stopped on exit, whatever happens), the store's data, the
# daemons' logs. The disk image is /var/tmp/pvkit/minios-blk.img
# (tools/examples/minios-blk.json; created sparse on first use).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
echo "== 1/5 dependencies"
bash tools/install-deps.sh

echo "== 2/5 build (Release, ${jobs} jobs) into build-release/"
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DPVKIT_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j "${jobs}" | tail -n 1
bin=build-release
pvkit=${bin}/tools/pvkit
echo "   built: ${pvkit}, ${bin}/tools/store/pvkit-stored, ${bin}/backend-drivers/blkback/pvkit-blkback,"
echo "          ${bin}/hypervisor/vmm/pvkit-vmm, ${bin}/guest/pvkit-mini"

run=$(mktemp -d "${TMPDIR:-/tmp}/pvkit-quickstart.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "${pid}" 2>/dev/null || true; done
  if [ "${rc}" -ne 0 ]; then
    echo "!! failed (status ${rc}); the daemons' logs:" >&2
    tail -n 20 "${run}"/*.log >&2 2>/dev/null || true
  fi
  rm -rf "${run}"
}
trap cleanup EXIT

# Starts a daemon in the background and waits (at most 10 s) for the READY
# line it writes on --ready-fd once it serves.
start_daemon() {
  local name=$1; shift
  mkfifo "${run}/${name}.ready"
  "$@" --ready-fd 3 3>"${run}/${name}.ready" >"${run}/${name}.log" 2>&1 &
  pids+=($!)
  local line=""
  if ! read -r -t 10 line <"${run}/${name}.ready" || [ "${line}" != "READY" ]; then
    echo "!! ${name} did not start" >&2
    return 1
  fi
  echo "   ${name} ready (pid $!, log ${run}/${name}.log)"
}

echo "== 3/5 start pvkit-stored and pvkit-blkback in ${run}"
store="${run}/stored.sock"
start_daemon pvkit-stored "${bin}/tools/store/pvkit-stored" --foreground \
  --socket "${store}" --data-dir "${run}/store"
start_daemon pvkit-blkback "${bin}/backend-drivers/blkback/pvkit-blkback" \
  --store-socket "${store}" --handoff-socket "${run}/blkback.sock"

echo "== 4/5 pvkit create tools/examples/minios-blk.json: boot the mini guest, blk-selftest on its PV disk"
"${pvkit}" create tools/examples/minios-blk.json kernel="${bin}/guest/pvkit-mini" \
  --store-socket "${store}" --timeout 120 --stats-json "${run}/selftest-exits.json"
echo "   the guest reported success; blkback's side of it:"
sed -n 's/^/     /p' "${run}/pvkit-blkback.log"

echo "== 5/5 pvkit bench guest-blk: the same workload in the guest and in a host process"
"${pvkit}" bench guest-blk --rounds 3 --kernel "${bin}/guest/pvkit-mini"
echo "== done. More: ${pvkit} bench guest-blk --json, ${pvkit} bench blk, ${pvkit} bench ring;"
echo "   tests: bash tools/run-tests.sh"
