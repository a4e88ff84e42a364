#!/bin/sh
# Builds this checkout and installs it into .venv (with what it depends on), unless the
# installed build is already of these exact sources. A regular, not editable, install:
# the editable finder adds ~20 ms to every start. Used by setup.sh and test.sh; a build
# takes ~18 s here, and CI ran three of the same tree (setup, deps, test).
#   ./build.sh            # build unless .venv holds a build of these sources
#   ./build.sh --force    # build anyway
set -eu
cd "$(dirname "$0")"
STAMP=.venv/fastbox-build.sha256

# What goes into the build, hashed by content: files the build generates in the tree
# (fastbox/_core.c, fastbox/libexec/, the extension) and caches are left out.
sources_hash() {
    find setup.py pyproject.toml README.md bin csrc fastbox -type f \
        ! -name '*.pyc' ! -name '*.so' ! -path 'fastbox/_core.c' ! -path 'fastbox/libexec/*' \
        -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

# The installed package's file list with each file's hash (pip's RECORD): any other
# install since ours (pip by hand, an editable one) changes it.
installed_hash() {
    cat .venv/lib/python3*/site-packages/fastbox-*.dist-info/RECORD 2>/dev/null | sha256sum | cut -d' ' -f1
}

want=$(sources_hash)
if [ "${1:-}" != "--force" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want $(installed_hash)" ]; then
    exit 0
fi
rm -f "$STAMP"
# --force-reinstall: this checkout's build even when the version is unchanged; --no-deps:
# the dependencies are installed apart, only if missing (reinstalling them is slow).
.venv/bin/pip install -q --no-deps --force-reinstall .
# shellcheck disable=SC2046  # one requirement a line, none with spaces
.venv/bin/pip install -q $(.venv/bin/python -c 'import tomllib
print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
# the hash of before the build: a file changed during it makes the next run build again
echo "$want $(installed_hash)" >"$STAMP"
