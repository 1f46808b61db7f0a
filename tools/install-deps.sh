#!/usr/bin/env bash
# Installs the Debian 12 packages pvkit builds and tests with. Idempotent:
# when everything is present it only says so.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev     # Boost.Asio, Boost.Interprocess (grant pool mapping)
  nlohmann-json3-dev   # configs, benchmark JSON
  catch2               # test framework (v2.13)
  libcli11-dev         # command lines
  liburing-dev         # block backend I/O
  etcd-server          # baseline of `pvkit bench store` (etcd 3.4 at /usr/bin/etcd; the
                       # benchmark starts its own on loopback, the package's service is not needed)
  fio                  # baselines of `pvkit bench blk`: io_uring on the image file (the limit) and
                       # the nbd engine (Debian's fio is built with libnbd) against nbdkit
  nbdkit               # the peer block server of `pvkit bench blk` (file plugin on a Unix socket,
                       # started by the benchmark; no service)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "[deps] all ${#packages[@]} build packages already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "[deps] missing packages: ${missing[*]}; run as root to install them" >&2
  exit 1
fi
echo "[deps] installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "[deps] installed ${#missing[@]} packages"
