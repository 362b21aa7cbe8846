%% @doc tether:call against rpc:call, side by side in one run (issue 7
%% item 5). Run by bench/run after its other measures.
%%
%% The driver node and one peer, both running the tether application,
%% join into one tether cluster. Then, in rounds that alternate between
%% the two so drift hits both, one process makes N sequential calls of
%% `erlang:node/0' on the peer, with tether:call/4 (sealed by the
%% caller, opened and answered by the peer, envelope MACs both ways) and
%% with rpc:call/4 (erpc, no envelope). The round trip is the round's
%% time divided by N; the figure is the median of rounds. Output:
%% `name: value' lines, the ratio first.
-module(tether_rpc_bench).

-export([main/1]).

-define(ROUNDS, 21).
-define(CALLS, 2000).
-define(WARMUP, 500).
-define(HB_MS, 200).

%% @doc Entry point: main([]). Prints the results and stops the node
%% (status 0 on success, 1 on failure).
-spec main([string()]) -> no_return().
main(_Args) ->
    tether_bench_lib:main(?MODULE, fun run/0).

run() ->
    Env = [{heartbeat_ms, ?HB_MS}],
    ok = tether_bench_lib:start_tether(node(), Env),
    {Peer, P} = tether_bench_lib:start_peer(tether_bench_rpc_peer, []),
    try
        ok = tether_bench_lib:start_tether(P, Env),
        ok = tether:join(P),
        tether_bench_lib:wait(fun() -> lists:member(P, tether:members())
                              end),
        P = tether:call(P, erlang, node, []),
        P = rpc:call(P, erlang, node, []),
        _ = [tether:call(P, erlang, node, []) || _ <- lists:seq(1, ?WARMUP)],
        _ = [rpc:call(P, erlang, node, []) || _ <- lists:seq(1, ?WARMUP)],
        {T, R} = tether_bench_lib:alternate(
                   ?ROUNDS,
                   fun() -> rtt(fun() -> tether:call(P, erlang, node, []) end) end,
                   fun() -> rtt(fun() -> rpc:call(P, erlang, node, []) end) end),
        io:format("tether_call_ratio: ~.2f~n", [T / R]),
        io:format("tether_call_rtt_us: ~.1f~n", [T]),
        io:format("rpc_call_rtt_us: ~.1f~n", [R]),
        ok
    after
        catch peer:stop(Peer)
    end.

%% Microseconds per call of N sequential calls.
rtt(Call) ->
    T0 = erlang:monotonic_time(microsecond),
    loop(Call, ?CALLS),
    (erlang:monotonic_time(microsecond) - T0) / ?CALLS.

loop(_Call, 0) ->
    ok;
loop(Call, N) ->
    _ = Call(),
    loop(Call, N - 1).
