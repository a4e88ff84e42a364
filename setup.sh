#!/bin/sh
# Sets fastbox up on Debian 12 (as root) and runs a first container on the built-in
# busybox image. Safe to run again.
set -eu
cd "$(dirname "$0")"

export DEBIAN_FRONTEND=noninteractive
# Only what running fastbox needs: the built-in image (busybox-static), a compiler for the
# core, and libseccomp2 (compiles seccomp profiles, loaded through ctypes). What the tests
# and benchmarks need is installed by ./test.sh (tests/deps.sh). iproute2 and nftables: a
# network's bridge and fastbox's nft table are made once with `ip` and `nft` (the
# per-container work is raw netlink from the core).
PACKAGES="busybox-static gcc libc6-dev python3-venv python3-dev libseccomp2 iproute2 nftables"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --upgrade pip
./build.sh

# --network none: the default bridge network would make a bridge, an nft table and a
# sysctl change in the host's network namespace (this also runs in CI on a shared host).
# FASTBOX_NO_ENGINE=1: an installer leaves no daemon behind; your first command starts it.
FASTBOX_NO_ENGINE=1 .venv/bin/fastbox run --rm --network none busybox echo "hello from a fastbox container"
