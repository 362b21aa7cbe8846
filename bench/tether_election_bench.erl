%% @doc Leader election, issue 16, on BEAM nodes running the tether
%% application (this driver node and peers on loopback). Run by
%% bench/run after its other measures.
%%
%%   election_failover_ratio     time from SIGKILL of the leader's node
%%                               to {elected, _} at the next candidate (on
%%                               this node) / the configured ttl_ms
%%                               (median of several rounds, a fresh peer
%%                               each); election_failover_ms the time.
%%   election_resign_handover_us from asking the leader (a candidate on a
%%                               peer) to resign/1 to {elected, _} at the
%%                               candidate here: one message to the peer
%%                               included (median).
%%   fence_ratio                 calls per second of tether:fence/1 by the
%%                               leader / of ets:lookup/2 of one key in a
%%                               set table on the same node; and
%%                               fence_ns, fence_ets_ns per call.
%%
%% Output: `name: value' lines.
-module(tether_election_bench).

-export([main/1]).
%% Run on the peers.
-export([candidate/3]).

-define(HB_MS, 100).
-define(TTL_MS, 1000).
-define(ENV, [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS}]).
-define(FAILOVER_ROUNDS, 5).
-define(HANDOVER_ROUNDS, 21).
-define(ROUNDS, 25).
-define(CALLS, 200000).
-define(WAIT_MS, 30000).

%% @doc Entry point: main([]). Prints the results and stops the node
%% (status 0 on success, 1 on failure).
-spec main([string()]) -> no_return().
main(_Args) ->
    tether_bench_lib:main(?MODULE, fun run/0).

run() ->
    ok = tether_bench_lib:start_tether(node(), ?ENV),
    fence_bench(),
    handover_bench(),
    failover_bench().

%% A peer running tether with ?ENV, joined to this node; {PeerPid, Node}.
start_peer(Tag) ->
    Name = list_to_atom(lists:concat(["tether_bench_el_", Tag, "_",
                                      os:getpid()])),
    {Pid, Node} = tether_bench_lib:start_peer(Name, []),
    ok = tether_bench_lib:start_tether(Node, ?ENV),
    ok = erpc:call(Node, tether, join, [node()]),
    _ = tether_bench_lib:wait(fun() -> tether:members() end,
             fun(Ms) -> lists:member(Node, Ms) end),
    {Pid, Node}.

%% A candidate on a peer: campaigns with Priority; on `resign' it
%% resigns, on `lead' it campaigns again; tells Report of every
%% transition.
candidate(Name, Priority, Report) ->
    lead(Name, Priority, Report),
    candidate_loop(Name, Priority, Report).

lead(Name, Priority, Report) ->
    case tether:lead(Name, #{priority => Priority}) of
        {ok, {leader, F}} -> Report ! {peer_candidate, {elected, F}};
        {ok, follower} -> ok
    end.

candidate_loop(Name, Priority, Report) ->
    receive
        {tether_leader, Name, Event} ->
            Report ! {peer_candidate, Event},
            candidate_loop(Name, Priority, Report);
        resign ->
            ok = tether:resign(Name),
            candidate_loop(Name, Priority, Report);
        lead ->
            lead(Name, Priority, Report),
            candidate_loop(Name, Priority, Report)
    end.

%%% fence/1 against ets:lookup/2

fence_bench() ->
    {ok, {leader, _}} = tether:lead(bench_fence),
    {ok, _} = tether:fence(bench_fence),
    T = ets:new(bench, [set, public, {read_concurrency, true}]),
    true = ets:insert(T, {key, 1}),
    {TF, TE} = alternate(fun() -> time_calls(fun fence_loop/2, bench_fence)
                         end,
                         fun() -> time_calls(fun ets_loop/2, T) end),
    io:format("fence_ratio: ~.2f~n", [TE / TF]),
    io:format("fence_ns: ~.1f~n", [TF]),
    io:format("fence_ets_ns: ~.1f~n", [TE]),
    ok = tether:resign(bench_fence).

fence_loop(0, _) -> ok;
fence_loop(N, Name) ->
    {ok, _} = tether:fence(Name),
    fence_loop(N - 1, Name).

ets_loop(0, _) -> ok;
ets_loop(N, T) ->
    [_] = ets:lookup(T, key),
    ets_loop(N - 1, T).

time_calls(Loop, X) ->
    T0 = erlang:monotonic_time(nanosecond),
    ok = Loop(?CALLS, X),
    (erlang:monotonic_time(nanosecond) - T0) / ?CALLS.

%%% resign handover: the leader on a peer resigns, this node's
%%% candidate is elected

handover_bench() ->
    {PeerPid, Peer} = start_peer(handover),
    try
        {ok, _} = tether:lead(bench_handover, #{priority => 0}),
        %% This node leads first, so that each round starts with its
        %% `revoked' when the peer takes over.
        tether_bench_lib:wait(fun() -> tether:is_leader(bench_handover) end,
             fun(L) -> L end),
        Cand = erpc:call(Peer, erlang, spawn,
                         [?MODULE, candidate, [bench_handover, 10, self()]]),
        Us = [handover_round(Cand) || _ <- lists:seq(1, ?HANDOVER_ROUNDS)],
        io:format("election_resign_handover_us: ~b~n",
                  [tether_bench_lib:median(Us)]),
        io:format("election_resign_handover_max_us: ~b~n", [lists:max(Us)]),
        ok = tether:resign(bench_handover)
    after
        catch peer:stop(PeerPid)
    end.

%% The peer's candidate leads (it takes over whenever it campaigns,
%% priority 10 against 0); then it resigns and the time until this
%% node's candidate is elected is measured; then it campaigns again.
handover_round(Cand) ->
    wait_msgs([fun({peer_candidate, {elected, _}}) -> true; (_) -> false end,
               fun({tether_leader, bench_handover, revoked}) -> true;
                  (_) -> false end]),
    T0 = erlang:monotonic_time(microsecond),
    Cand ! resign,
    wait_msg(fun({tether_leader, bench_handover, {elected, _}}) -> true;
                (_) -> false end),
    T = erlang:monotonic_time(microsecond) - T0,
    Cand ! lead,
    T.

%%% failover: SIGKILL of the leader's node

failover_bench() ->
    Ms = [failover_round(I) || I <- lists:seq(1, ?FAILOVER_ROUNDS)],
    M = tether_bench_lib:median(Ms),
    io:format("election_failover_ratio: ~.2f~n", [M / ?TTL_MS]),
    io:format("election_failover_ms: ~b~n", [M]),
    io:format("election_failover_ttl_ms: ~b~n", [?TTL_MS]),
    ok.

failover_round(I) ->
    Name = {bench_failover, I},
    {PeerPid, Peer} = start_peer(lists:concat([failover, I])),
    try
        {ok, _} = tether:lead(Name, #{priority => 0}),
        _ = erpc:call(Peer, erlang, spawn,
                      [?MODULE, candidate, [Name, 10, self()]]),
        tether_bench_lib:wait(fun() -> tether:leader(Name) end,
             fun({ok, N, _}) -> N =:= Peer; (_) -> false end),
        flush(),
        OsPid = erpc:call(Peer, os, getpid, []),
        T0 = erlang:monotonic_time(millisecond),
        _ = os:cmd("kill -KILL " ++ OsPid),
        wait_msg(fun({tether_leader, N, {elected, _}}) -> N =:= Name;
                    (_) -> false end),
        T = erlang:monotonic_time(millisecond) - T0,
        ok = tether:resign(Name),
        T
    after
        catch peer:stop(PeerPid)
    end.

%%% Helpers

%% Median of the two sides' times per call over ?ROUNDS rounds that
%% alternate between them, so drift hits both.
alternate(A, B) ->
    tether_bench_lib:alternate(?ROUNDS, A, B).

%% Waits for messages that each of Matches accepts, in any order,
%% dropping the others.
wait_msgs([]) ->
    ok;
wait_msgs(Matches) ->
    receive
        Msg ->
            wait_msgs([M || M <- Matches, not M(Msg)])
    after ?WAIT_MS ->
            error(timeout_waiting_messages)
    end.

%% Waits for a message Match accepts, dropping the others.
wait_msg(Match) ->
    receive
        Msg ->
            case Match(Msg) of
                true -> ok;
                false -> wait_msg(Match)
            end
    after ?WAIT_MS ->
            error(timeout_waiting_message)
    end.

flush() ->
    receive _ -> flush() after 0 -> ok end.
