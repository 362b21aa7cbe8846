#!/usr/bin/env bash
# `make demo`: builds tether and shows what it does, each part with stock
# OTP calls on loopback (a private epmd on port 14469, or
# $TETHER_DEMO_EPMD_PORT, stopped at the end).
# Every section says what it is about to show; the demo runs to the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export REBAR_COLOR=none

section() { printf '\n== %s\n' "$*"; }

section "Building (rebar3 compile builds the C code first, through scripts/build_c.sh)"
rebar3 compile
echo "The C build's outputs: the library, the NIF, the C-node program and"
echo "the pkg-config file for your own C programs:"
ls -l priv/libtether.a priv/tether_nif.so priv/tether_cnode priv/tether.pc

section "The NIF (the C engine inside the Erlang VM), loaded by a stock VM"
erl -noshell -pa _build/default/lib/tether/ebin -eval '
    io:format("tether:version() -> ~p~n", [tether:version()]),
    halt().'

section "The C-node program: a C program that joins Erlang's distribution as a node"
priv/tether_cnode --version
priv/tether_cnode --help
echo
echo "A bad command line is refused with one line and status 2:"
echo "\$ priv/tether_cnode --no-such-flag"
priv/tether_cnode --no-such-flag || echo "(exit status $?)"
echo "\$ priv/tether_cnode --name 'bad name@127.0.0.1'"
priv/tether_cnode --name 'bad name@127.0.0.1' || echo "(exit status $?)"

section "A stock Erlang node talks to the C-node (private epmd on loopback)"
. scripts/lib.sh
cnode_pid=
cnode_log=$(mktemp)
cleanup() {
    if [ -n "$cnode_pid" ]; then kill "$cnode_pid" 2>/dev/null || true; fi
    stop_epmd
    rm -f "$cnode_log"
}
trap cleanup EXIT
# cnode ARG...: starts the C-node (cookie tether_demo, the kv plugin) in
# the background, waits for its ready line and shows its output so far.
cnode() {
    priv/tether_cnode "$@" --cookie tether_demo --load priv/plugins/kv.so \
        >"$cnode_log" 2>&1 &
    cnode_pid=$!
    for _ in $(seq 50); do
        grep -q 'ready' "$cnode_log" && break
        sleep 0.1
    done
    cat "$cnode_log"
}
# cnode_stop: SIGTERM, and waits for it.
cnode_stop() {
    kill -TERM "$cnode_pid"
    wait "$cnode_pid" 2>/dev/null || true
    cnode_pid=
}
start_epmd "${TETHER_DEMO_EPMD_PORT:-14469}"
echo "Starting the C-node demo_cnode@127.0.0.1 with the kv plugin (a key-value"
echo "service written in C); then an escript node, tether_demo@127.0.0.1, with"
echo "no tether code, talks to it:"
cnode --name demo_cnode@127.0.0.1
scripts/demo_cnode.escript demo_cnode@127.0.0.1

echo
echo "A node with another cookie is refused:"
echo "\$ erl -setcookie wrong ... net_adm:ping(demo_cnode@127.0.0.1)"
erl -noshell -name wrong_cookie@127.0.0.1 -setcookie wrong -eval '
    io:format("  ~p~n", [net_adm:ping(list_to_atom("demo_cnode@127.0.0.1"))]), halt().'
cnode_stop
echo "The C-node's log (its ready line, the wrong-cookie line, its shutdown):"
sed 's/^/  /' "$cnode_log"

section "Short names: a C-node started with --sname, a BEAM node with -sname"
# The host part is this machine's short host name, as erl -sname takes it
# (NAME@localhost where that name does not resolve to loopback: the demo
# stays on loopback).
short=$(hostname -s 2>/dev/null || hostname)
case "$(getent ahostsv4 "$short" 2>/dev/null | head -n 1)" in
127.*) sname=demo_s; host=$short ;;
*) sname=demo_s@localhost; host=localhost ;;
esac
echo "\$ priv/tether_cnode --sname $sname --cookie tether_demo --load priv/plugins/kv.so"
cnode --sname "$sname"
echo "\$ erl -sname demo_a@$host ... (net_adm:ping, rpc:call, gen_server:call)"
erl -noshell -sname "demo_a@$host" -setcookie tether_demo -eval "
    C = list_to_atom(\"demo_s@$host\"),
    io:format(\"  net_adm:ping(~p) -> ~p~n\", [C, net_adm:ping(C)]),
    io:format(\"  rpc:call(C, kv, put, [lang, c]) -> ~p~n\", [rpc:call(C, kv, put, [lang, c])]),
    io:format(\"  gen_server:call({kv, C}, {get, lang}) -> ~p~n\",
              [gen_server:call({kv, C}, {get, lang})]),
    halt()."
cnode_stop

section "Three BEAM nodes and a C-node form a tether cluster (signed envelopes, cookie-derived keys)"
echo "The BEAM nodes alice, bob and carol run the tether application; the"
echo "C-node kv_cnode joins them later, serving kv as a cluster service:"
scripts/demo_cluster.escript _build/default/lib/tether/ebin priv/tether_cnode

section "Done"
echo "README.md documents all of it and the rest of the API (registry, services,"
echo "ring, leader election, the C API); 'make test' runs every test suite."
