#!/bin/sh
# The VM lane: runs the subset of tests/vm/subset.txt as root in a guest on Debian's 6.1
# kernel with a pure cgroup v2 hierarchy (the host may be hybrid, v1 or v2, and newer).
#
#   tests/vm/run.sh          # after ./setup.sh (it uses the checkout's .venv)
#   tests/vm/run.sh --deps   # only install what it lacks (CI, before the lanes run side by side)
#
# Installs what it lacks (apt: qemu-system-x86, linux-image-amd64; PyPI: virtme-ng into
# .venv), boots the kernel with virtme-ng under TCG (nested KVM hangs here), and runs
# tests/vm/guest.sh in the guest. The guest sees the host's filesystem read-only and writes
# only into a fresh temp dir shared with it, removed afterwards. Prints one line,
# "vm lane: ...", and exits non-zero if a test failed or the guest gave no result.
# Environment: FB_VM_TIMEOUT (seconds for the whole guest, default 1200; the guest takes 500-640 s here),
# FB_VM_KERNEL (a vmlinuz to boot instead of /boot/vmlinuz-6.1.*-amd64),
# FB_VM_PYTEST_ARGS (more pytest arguments, e.g. "-x" or "-k limits").
set -eu
cd "$(dirname "$0")/../.."
REPO=$(pwd)
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

[ -x .venv/bin/pytest ] || { echo "vm lane: FAILED: no .venv here (run ./setup.sh first)"; exit 1; }

kernel() {
    ls /boot/vmlinuz-6.1.*-amd64 2>/dev/null | sort -V | tail -n 1
}
export DEBIAN_FRONTEND=noninteractive
missing=""
command -v qemu-system-x86_64 >/dev/null || missing="$missing qemu-system-x86"
[ -n "${FB_VM_KERNEL:-}" ] || [ -n "$(kernel)" ] || missing="$missing linux-image-amd64"
if [ -n "$missing" ]; then
    apt-get update -qq
    # INITRD=No: the host never boots this kernel, and virtme-ng makes its own initramfs.
    INITRD=No apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
KERNEL=${FB_VM_KERNEL:-$(kernel)}
[ -r "$KERNEL" ] || { echo "vm lane: FAILED: no 6.1 kernel image in /boot"; exit 1; }
[ -x .venv/bin/vng ] || .venv/bin/pip install -q "virtme-ng==1.42"
[ "${1:-}" != "--deps" ] || exit 0
t_install=$(elapsed "$t0")

DIR=$(mktemp -d /tmp/fastbox-vm.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
mkdir "$DIR/fs"   # a guest tmpfs goes here: nothing below it reaches the host
# The guest starts with a clean environment: what it needs from ours goes through DIR.
printf '%s\n' "${FB_VM_PYTEST_ARGS:-}" >"$DIR/pytest-args"
t1=$(date +%s)
# vng and the tools it runs (virtme-run) are in the venv. timeout signals its whole
# process group, qemu included. The checkout is shared read-only at its own path: the
# guest sees the host's / but not what lies under /var/tmp, /run and the like.
set +e
PATH="$REPO/.venv/bin:$PATH" timeout -k 15 "${FB_VM_TIMEOUT:-1200}" \
    vng --disable-kvm --run "$KERNEL" --memory 2G --cpus 2 --rodir "$REPO" --rwdir "$DIR" \
    -- "sh $REPO/tests/vm/guest.sh $REPO $DIR" >"$DIR/console.log" 2>&1 </dev/null
vng_rc=$?
set -e
t_vm=$(elapsed "$t1")

echo "--- vm lane: guest output ($KERNEL)"
cat "$DIR/guest.log" 2>/dev/null || { echo "(no guest output) console:"; tail -n 40 "$DIR/console.log"; }
echo "---"
timing="installs ${t_install}, guest ${t_vm}"
# (the guest's clock is the host's: qemu starts its RTC from it)
[ -s "$DIR/t_up" ] && timing="$timing: boot $(( $(cat "$DIR/t_up") - t1 ))s"
[ -s "$DIR/t_pytest" ] && timing="$timing, checks $(( $(cat "$DIR/t_pytest") - $(cat "$DIR/t_up") ))s"
[ -s "$DIR/rc" ] && timing="$timing, pytest $(( $(date -r "$DIR/rc" +%s) - $(cat "$DIR/t_pytest") ))s"
timing="$timing; total $(elapsed "$t0")"
if [ -s "$DIR/error" ]; then
    echo "vm lane: FAILED: $(cat "$DIR/error") ($timing)"
    exit 1
fi
if [ ! -s "$DIR/rc" ] || [ ! -s "$DIR/junit.xml" ]; then
    [ "$vng_rc" = 124 ] && why="timed out after ${FB_VM_TIMEOUT:-1200}s" || why="vng exit $vng_rc"
    echo "vm lane: FAILED: the guest produced no result ($why; $timing)"
    exit 1
fi
summary=$(.venv/bin/python - "$DIR/junit.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
n = dict.fromkeys(("passed", "failed", "errors", "skipped", "xfailed"), 0)
for case in suite.iter("testcase"):
    if case.find("failure") is not None:
        n["failed"] += 1
    elif case.find("error") is not None:
        n["errors"] += 1
    elif (skip := case.find("skipped")) is not None:
        n["xfailed" if skip.get("type") == "pytest.xfail" else "skipped"] += 1
    else:
        n["passed"] += 1
print(", ".join(f"{v} {k}" for k, v in n.items() if v or k == "passed"))
PY
)
rc=$(cat "$DIR/rc")
if [ "$rc" != 0 ]; then
    echo "vm lane: FAILED (pytest exit $rc): $summary ($timing)"
    exit 1
fi
echo "vm lane: $summary on $(basename "$KERNEL") with pure cgroup v2 ($timing)"
