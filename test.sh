#!/bin/sh
# Runs the whole test suite as root against the real kernel (after ./setup.sh).
set -eu
cd "$(dirname "$0")"
# The peers, servers and test packages first (apt and pip; once).
tests/deps.sh
# The installed package is tested: a build of this checkout as it is now (build.sh skips
# the build when .venv already holds one of these exact sources, as after ./setup.sh).
./build.sh
# In a network namespace of its own, with lo up: nothing a test makes (bridges, veths,
# nft tables, routes, sysctls; a CLI `run` defaults to the bridge network) can reach the
# host's. The registry on 127.0.0.1, unix sockets and the peers all work in there.
exec unshare --net sh -c 'ip link set lo up && exec .venv/bin/pytest tests "$@"' test.sh "$@"
