#!/bin/sh
# Runs the whole test suite as root against the real kernel (after ./setup.sh).
set -eu
cd "$(dirname "$0")"
# The peers, servers and test packages first (apt and pip; once).
tests/deps.sh
# The installed package is tested; a fresh build of this checkout is installed first.
.venv/bin/pip install -q --no-deps --force-reinstall .
exec .venv/bin/pytest tests "$@"
