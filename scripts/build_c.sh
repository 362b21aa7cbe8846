#!/usr/bin/env bash
# scripts/build_c.sh [make options...]: the C build as rebar3's pre-compile
# hook runs it (rebar.config), so also every `rebar3 compile', every Mix
# compile of a project that depends on tether, and `iex -S mix'.
#
# An unchanged tree is left alone, silently: make's own up-to-date check
# (make -q) comes first, and nothing is printed when it passes. Builds
# take turns: an flock on c_src/build/.lock serialises two builds started
# at once in the same tree (two nodes started together by `iex -S mix',
# say), and the Makefile writes every file of priv/ under a temporary name
# and renames it into place, so nothing ever sees half a file.
set -eu
cd "$(dirname "$0")/../c_src"
mkdir -p build
# flock(1) is util-linux's: where it is missing (macOS, the BSDs) builds
# are not serialised, and the renames still keep every output whole.
if command -v flock >/dev/null 2>&1; then
    exec 9>build/.lock
    flock 9
fi
if make -q "$@" >/dev/null 2>&1; then
    exit 0
fi
make --no-print-directory "$@"
