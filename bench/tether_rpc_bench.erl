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
    ok = logger:set_primary_config(level, error),
    ok = start_tether(),
    Ebin = filename:dirname(code:which(tether)),
    {ok, Peer, P} = peer:start(#{name => tether_bench_rpc_peer,
                                 host => "127.0.0.1", longnames => true,
                                 connection => standard_io,
                                 args => ["-setcookie",
                                          atom_to_list(erlang:get_cookie()),
                                          "-kernel", "inet_dist_use_interface",
                                          "{127,0,0,1}", "-pa", Ebin]}),
    try
        ok = peer:call(Peer, application, set_env,
                       [tether, heartbeat_ms, ?HB_MS]),
        {ok, _} = peer:call(Peer, application, ensure_all_started, [tether]),
        ok = tether:join(P),
        tether_bench_lib:wait(fun() -> lists:member(P, tether:members())
                              end),
        P = tether:call(P, erlang, node, []),
        P = rpc:call(P, erlang, node, []),
        _ = [tether:call(P, erlang, node, []) || _ <- lists:seq(1, ?WARMUP)],
        _ = [rpc:call(P, erlang, node, []) || _ <- lists:seq(1, ?WARMUP)],
        Rounds = [{rtt(fun() -> tether:call(P, erlang, node, []) end),
                   rtt(fun() -> rpc:call(P, erlang, node, []) end)}
                  || _ <- lists:seq(1, ?ROUNDS)],
        T = tether_bench_lib:median([X || {X, _} <- Rounds]),
        R = tether_bench_lib:median([Y || {_, Y} <- Rounds]),
        io:format("tether_call_ratio: ~.2f~n", [T / R]),
        io:format("tether_call_rtt_us: ~.1f~n", [T]),
        io:format("rpc_call_rtt_us: ~.1f~n", [R]),
        ok
    after
        catch peer:stop(Peer)
    end.

start_tether() ->
    ok = application:set_env(tether, heartbeat_ms, ?HB_MS),
    {ok, _} = application:ensure_all_started(tether),
    ok.

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
