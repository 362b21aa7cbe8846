#!/usr/bin/env bash
# `make demo`: builds tether and shows, honestly, what works so far. Each
# capability adds its section as it lands; the demo always runs to the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export REBAR_COLOR=none

section() { printf '\n== %s\n' "$*"; }

section "Building (rebar3 compile runs make -C c_src)"
rebar3 compile
ls -l priv/libtether.a priv/tether_nif.so priv/tether_cnode

section "The NIF, loaded by a stock Erlang VM"
erl -noshell -pa _build/default/lib/tether/ebin -eval '
    io:format("tether:version() -> ~p~n", [tether:version()]),
    halt().'

section "The C-node program"
priv/tether_cnode --version
priv/tether_cnode --help
echo "\$ priv/tether_cnode --no-such-flag"
priv/tether_cnode --no-such-flag || echo "(exit status $?)"

section "Done"
echo "See README.md for what each later release adds."
