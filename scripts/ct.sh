#!/usr/bin/env bash
# scripts/ct.sh [rebar3 ct options...]: common_test as scripts/test.sh runs
# it (a private epmd on loopback, stopped at the end), for running some
# suites while working, e.g.
#   scripts/ct.sh --suite test/tether_registry_SUITE --case conflict_after_heal
set -u
cd "$(dirname "$0")/.."
case "${1:-}" in
-h | --help)
    sed -n '2,5s/^# \{0,1\}//p' "$0"
    exit 0
    ;;
esac
. scripts/lib.sh
trap stop_epmd EXIT
start_epmd "${TETHER_TEST_EPMD_PORT:-14369}"
ERL_FLAGS="${ERL_FLAGS:-} -kernel inet_dist_use_interface {127,0,0,1}" \
    rebar3 ct --name tether_ct@127.0.0.1 --setcookie tether_ct "$@"
