#!/bin/sh
# Installs what only the tests and benchmarks need (run by ./test.sh; safe to run again):
# the peers (runc, crun, bubblewrap, podman, containerd, dockerd, buildah), a registry and
# image tools, network tools, and the Python test packages into .venv.
set -eu
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
PACKAGES="runc crun bubblewrap podman conmon containerd docker.io buildah
    docker-registry apache2-utils umoci skopeo openssl util-linux iproute2 nftables curl"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    # containerd and docker.io ship init scripts: a daemon started by apt would change the
    # host's network and firewall. policy-rc.d exit 101 tells invoke-rc.d to start nothing.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        guard=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null || rc=$?
    [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
    [ "${rc:-0}" = 0 ] || exit "$rc"
fi
# The test extra's requirements alone: `pip install ".[test]"` would build the checkout
# once more (~18 s; build.sh installs it).
# shellcheck disable=SC2046  # one requirement a line, none with spaces
.venv/bin/pip install -q $(.venv/bin/python -c 'import tomllib
print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["test"]))')
