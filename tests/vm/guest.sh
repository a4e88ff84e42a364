#!/bin/sh
# Runs inside the VM lane's guest (see run.sh), as root: checks that the guest is pure
# cgroup v2, records what its kernel offers, then runs the subset of subset.txt.
#   sh guest.sh REPO DIR
# REPO (the checkout with its .venv) is read-only here; DIR is shared with the host.
# Everything written goes under DIR: the log, the results, and a guest tmpfs on DIR/fs
# for FASTBOX_ROOT, FASTBOX_RUN and pytest's basetemp (overlayfs cannot use 9p as upper).
REPO=$1
DIR=$2
exec >"$DIR/guest.log" 2>&1 </dev/null
set -u
fail() {
    echo "vm guest: $*"
    echo "$*" >"$DIR/error"
    exit 1
}
date +%s >"$DIR/t_up"
cd "$REPO" || fail "no checkout at $REPO"
echo "guest kernel: $(uname -r)"
echo "guest root cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>&1)"
mount -t tmpfs -o size=1200m,mode=0755 fbvm "$DIR/fs" || fail "cannot mount a tmpfs on $DIR/fs"
mkdir -p "$DIR/fs/root" "$DIR/fs/run" "$DIR/fs/tmp" "$DIR/fs/home"
export FASTBOX_ROOT="$DIR/fs/root" FASTBOX_RUN="$DIR/fs/run" FASTBOX_NO_ENGINE=1
export FASTBOX_CONFIG="$DIR/fs/config.json"
export TMPDIR="$DIR/fs/tmp" HOME="$DIR/fs/home" PYTHONDONTWRITEBYTECODE=1
export PATH="$REPO/.venv/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Pure v2 with the controllers fastbox uses, or the lane tests nothing it means to.
for c in memory cpu pids; do
    grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || fail "guest cgroup v2 root lacks $c"
done
info=$(fastbox info 2>&1) || fail "fastbox info failed: $info"
echo "$info"
echo "$info" | grep -q '^cgroup mode: *v2$' || fail "fastbox does not see pure cgroup v2"

echo "--- what this kernel offers"
python3 "$REPO/tests/vm/kernel_probe.py" --guest || fail "kernel probe failed"
echo "--- a first container, 64m and 32 pids: its limits, and device access (MKNOD is a"
echo "    default capability; /dev is a tmpfs without nodev; only loop-control needs no capability)"
fastbox run --rm --timings -m 64m --pids-limit 32 busybox sh -c '
    echo "memory.max $(cat /sys/fs/cgroup/memory.max), pids.max $(cat /sys/fs/cgroup/pids.max)"
    mknod /dev/xmem c 1 1; mknod /dev/xkmsg c 1 11; mknod /dev/xloop c 10 237
    for d in /dev/xmem /dev/xkmsg /dev/xloop; do echo "$d: $(dd if=$d of=/dev/null count=0 2>&1 | tail -n 1)"; done' \
    || fail "a first container failed"

echo "--- pytest"
set --
while read -r entry rest; do
    case "$entry" in
        ''|'#'*) continue ;;
        -) set -- "$@" --deselect "$rest" ;;
        *) [ -e "${entry%%::*}" ] && set -- "$@" "$entry" || echo "(not here: $entry)" ;;
    esac
done <"$REPO/tests/vm/subset.txt"
start=$(date +%s)
echo "$start" >"$DIR/t_pytest"
"$REPO/.venv/bin/pytest" -p no:cacheprovider --basetemp="$DIR/fs/pt" -q -rfEs \
    --junitxml="$DIR/junit.xml" --durations=25 $(cat "$DIR/pytest-args") "$@"
rc=$?
echo "pytest exit $rc in $(( $(date +%s) - start ))s"
echo "$rc" >"$DIR/rc"
