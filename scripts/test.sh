#!/usr/bin/env bash
# Runs every tether test suite and ends with one line "N passed, N failed"
# summing them all: the Criterion suites (ASan+UBSan), rebar3 xref,
# dialyzer, edoc and the layering check of c_src (one check each), EUnit,
# common_test and the Mix dependency check. Exits non-zero when anything
# failed, when a suite could not be built or run, or when no test ran at
# all.
#
# common_test runs distributed on loopback against an epmd this script
# starts on a private port (TETHER_TEST_EPMD_PORT, default 14369) and
# stops by pid at the end.
set -u
cd "$(dirname "$0")/.."
export REBAR_COLOR=none

passed=0
failed=0
log=$(mktemp -d)
. scripts/lib.sh
cleanup() {
    stop_epmd
    rm -rf "$log"
}
trap cleanup EXIT

# plain FILE: the log without terminal colour codes.
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }

# count PASSED FAILED LABEL: adds one suite's figures to the totals.
count() {
    passed=$((passed + $1))
    failed=$((failed + $2))
    printf '%-28s %4d passed, %d failed\n' "$3" "$1" "$2" >>"$log/summary"
}

# broken LABEL: a suite that did not build or run counts as one failure.
broken() {
    echo "test.sh: $1 did not run to completion" >&2
    count 0 1 "$1"
}

# ct_count RC LOG LABEL: counts a common_test run from its output.
ct_count() {
    local rc=$1 p f a
    p=$(plain "$2" | grep -aoE 'All [0-9]+ tests passed|Passed [0-9]+ tests' | grep -oE '[0-9]+' | tail -n 1)
    f=$(plain "$2" | grep -aoE 'Failed [0-9]+ tests' | grep -oE '[0-9]+' | tail -n 1)
    # "Skipped N (U, A) tests": A were skipped automatically because a
    # setup failed, which is a failure.
    a=$(plain "$2" | grep -aoE 'Skipped [0-9]+ \([0-9]+, [0-9]+\) tests' \
        | sed -E 's/.*, ([0-9]+)\).*/\1/' | tail -n 1)
    if [ -z "$p$f" ]; then
        broken "$3"
    else
        f=$((${f:-0} + ${a:-0}))
        [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
        count "${p:-0}" "$f" "$3"
    fi
}

# criterion_count RC LOG LABEL: counts a Criterion binary's run from the
# last "Synthesis:" line of its output: crashes are failures, and so is a
# failed exit (RC) with nothing counted as failed (a sanitizer or valgrind
# report at exit, say). Returns 1 when there is no such line.
criterion_count() {
    local rc=$1 line p f c
    line=$(grep -a 'Synthesis:' "$2" | tail -n 1)
    p=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
    f=$(sed -n 's/.*Failing: \([0-9]*\).*/\1/p' <<<"$line")
    c=$(sed -n 's/.*Crashing: \([0-9]*\).*/\1/p' <<<"$line")
    [ -n "$p" ] || return 1
    f=$((${f:-0} + ${c:-0}))
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    count "$p" "$f" "$3"
}

# summary_count RC LOG LABEL: counts a run from the last "N tests, M
# failures" line of its output (EUnit's and ExUnit's summary), a failed
# run (RC) as at least one failure. Returns 1 when there is no such line.
summary_count() {
    local rc=$1 line p f
    line=$(plain "$2" | grep -aE '^[0-9]+ tests?, [0-9]+ failures?' | tail -n 1)
    [ -n "$line" ] || return 1
    p=$(sed -E 's/^([0-9]+) tests?, ([0-9]+) failures?.*/\1/' <<<"$line")
    f=$(sed -E 's/^([0-9]+) tests?, ([0-9]+) failures?.*/\2/' <<<"$line")
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
    count $((p - f)) "$f" "$3"
}

# -- build ---------------------------------------------------------------
if ! rebar3 compile; then
    broken "build (rebar3 compile)"
fi

# -- Criterion, under ASan and UBSan ---------------------------------------
if make -C c_src tests; then
    for t in c_src/build/asan/test/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        "$t" --jobs 2 >"$log/$name" 2>&1
        rc=$?
        cat "$log/$name"
        criterion_count "$rc" "$log/$name" "criterion $name" ||
            broken "criterion $name"
    done
else
    broken "criterion (build)"
fi

# -- Criterion under valgrind, in CI (or with TETHER_VALGRIND=1) ----------
# The same suites built without sanitizers (make -C c_src vg-tests), each
# run under memcheck: an invalid access, an uninitialised read or a
# definite leak fails the suite. test_sim is left out: its 1000 seeds
# under ASan above cover it, and under valgrind they would take long.
if [ "${CI:-}" = true ] || [ "${TETHER_VALGRIND:-}" = 1 ]; then
    if command -v valgrind >/dev/null && make -C c_src vg-tests; then
        for t in c_src/build/vg/test_*; do
            [ -x "$t" ] || continue
            name=$(basename "$t")
            [ "$name" = test_sim ] && continue
            valgrind -q --error-exitcode=99 --leak-check=full \
                --errors-for-leak-kinds=definite --trace-children=yes \
                "$t" --jobs 2 >"$log/vg_$name" 2>&1
            rc=$?
            # The log is shown when the run failed or was not counted.
            if ! criterion_count "$rc" "$log/vg_$name" "valgrind $name"; then
                cat "$log/vg_$name"
                broken "valgrind $name"
            elif [ $rc -ne 0 ]; then
                cat "$log/vg_$name"
            fi
        done
    else
        broken "valgrind (not installed, or vg-tests did not build)"
    fi
fi

# -- layering: core/ and dist/ include only themselves ----------------------
if make -C c_src check-layers >"$log/layers" 2>&1; then
    count 1 0 "check-layers"
else
    cat "$log/layers"
    count 0 1 "check-layers"
fi

# -- static checks: xref and dialyzer stay clean, edoc reads every doc ------
for tool in xref dialyzer edoc; do
    if rebar3 "$tool" >"$log/$tool" 2>&1; then
        count 1 0 "$tool"
    else
        cat "$log/$tool"
        count 0 1 "$tool"
    fi
done

# -- EUnit -------------------------------------------------------------------
rebar3 eunit 2>&1 | tee "$log/eunit"
rc=${PIPESTATUS[0]}
if summary_count "$rc" "$log/eunit" "eunit"; then
    :
elif grep -aq 'There were no tests to run' "$log/eunit" && [ "$rc" -eq 0 ]; then
    count 0 0 "eunit"
else
    broken "eunit"
fi

# -- common_test, distributed on loopback ------------------------------------
start_epmd "${TETHER_TEST_EPMD_PORT:-14369}"
# The CT node itself listens on loopback only.
ERL_FLAGS="${ERL_FLAGS:-} -kernel inet_dist_use_interface {127,0,0,1}" \
    rebar3 ct --name tether_ct@127.0.0.1 --setcookie tether_ct 2>&1 | tee "$log/ct"
rc=${PIPESTATUS[0]}
ct_count "$rc" "$log/ct" "common_test"

# -- examples/ct: a project that depends on tether, its suite written
# against tether_ct, run as its user would: its own rebar3 ct, not
# distributed (tether_ct starts the nodes, on the epmd above).
(cd examples/ct && rebar3 ct) 2>&1 | tee "$log/example_ct"
ct_count "${PIPESTATUS[0]}" "$log/example_ct" "examples/ct (rebar3 ct)"

# -- Mix: an Elixir project that depends on tether by path ------------------
# (its tether_ct test starts nodes on the epmd above, stopped after it)
(cd test/mix_project && MIX_REBAR3=$(command -v rebar3) mix test) 2>&1 | tee "$log/mix"
summary_count "${PIPESTATUS[0]}" "$log/mix" "mix (elixir)" || broken "mix (elixir)"
stop_epmd

echo
echo "== summary"
cat "$log/summary"
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
