%% tether:call/4,5, multicall/3,4,5, cast/4 and abcast/2,3, the
%% partition-aware RPC (issue 7, item 1), across BEAM members and a
%% C-node member, inside envelopes.
%%
%% Across a drop partition a call returns {badrpc, nodedown} at once;
%% across a defer partition it completes after heal, or returns {badrpc,
%% timeout} when its timeout passes first. Results and exceptions have
%% the shapes rpc:call/4,5 gives for the same function (stack traces are
%% compared by their first frame, as tether_cnode_rpc_lib:shape/1 does).
%%
%% Every case starts three peers (127.0.0.1, long names, this suite's
%% directory on the path, so test/rpctest.erl is the function called)
%% with tether running and joined. The group `cnode' adds a C-node that
%% loads the test plug-in rpctest (the C twin of test/rpctest.erl, see
%% tether_cnode_rpc_SUITE) and joins the cluster; it is listed in all/0
%% once C-nodes run calls that arrive in envelopes. Nothing waits a fixed
%% time as an assertion: "a while has passed" is counted in heartbeats
%% the engine skipped.
%%
%% Run: see scripts/test.sh (a private epmd on loopback, then
%% rebar3 ct --name tether_ct@127.0.0.1 --setcookie tether_ct
%% --suite test/tether_call_SUITE).
-module(tether_call_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, suite/0, init_per_group/2, end_per_group/2]).
-export([call_returns_value/1, exception_shapes_match_rpc/1,
         drop_partition_nodedown_at_once/1, defer_completes_after_heal/1,
         defer_short_timeout/1, multicall_in_node_order/1,
         multicall_one_node_down/1, cast_runs/1, abcast_every_node/1]).
-export([cnode_call/1, cnode_shapes_match_rpc/1, cnode_drop_nodedown/1,
         cnode_defer_completes_after_heal/1, cnode_multicall_mixed/1,
         cnode_many_held_calls_survive_heal/1]).
%% Run on the peers.
-export([timed_call/5, call_then_flush/3, many_calls/3]).

-define(HB_MS, 200).
-define(TTL_MS, 2000).
-define(WAIT_MS, 30000).
-define(CALL_MS, 10000).
%% The timeout of calls that must fail at once across a drop partition.
-define(LONG_MS, 60000).
-define(SHORT_MS, 500).

suite() ->
    [{timetrap, {minutes, 4}},
     {ct_hooks, [{tether_case_hook, #{compiled => rpctest, flush => true}}]}].

all() ->
    [{group, beam}, {group, cnode}].

groups() ->
    [{beam, [], [call_returns_value, exception_shapes_match_rpc,
                 drop_partition_nodedown_at_once, defer_completes_after_heal,
                 defer_short_timeout, multicall_in_node_order,
                 multicall_one_node_down, cast_runs, abcast_every_node]},
     {cnode, [], [cnode_call, cnode_shapes_match_rpc, cnode_drop_nodedown,
                  cnode_defer_completes_after_heal, cnode_multicall_mixed,
                  cnode_many_held_calls_survive_heal]}].

init_per_group(cnode, Config) ->
    case tether_test_lib:require_plugin(tether_test_lib:rpctest_plugin()) of
        ok -> Config;
        Fail -> Fail
    end;
init_per_group(_Group, Config) ->
    Config.

end_per_group(_Group, _Config) ->
    ok.

%%% Cases

%% A call returns the function's value, to another node and to this one,
%% with the default timeout and with one given.
call_returns_value(_Config) ->
    [N1, N2, _] = cluster(),
    ?assertEqual(N2, call(N1, tether, call, [N2, rpctest, node, []])),
    ?assertEqual(N1, call(N1, tether, call, [N1, rpctest, node, []])),
    echo_all(N1, N2),
    ?assertEqual(5, call(N1, tether, call, [N2, rpctest, add, [2, 3]])).

%% throw, error and exit (and undef) give what rpc:call gives for the
%% same function.
exception_shapes_match_rpc(_Config) ->
    [N1, N2, _] = cluster(),
    compare_with_rpc(N1, N2, exception_calls()).

%% Across a drop partition a call returns {badrpc, nodedown} well before
%% its timeout; multicall lists the other side as bad nodes; after heal
%% calls work again.
drop_partition_nodedown_at_once(_Config) ->
    [N1, N2, N3] = Nodes = cluster(),
    {ok, Ref} = call(N1, tether, partition, [[N1], [N2, N3], drop]),
    wait_members([N1], [N1]),
    wait_members([N2, N3], lists:sort([N2, N3])),
    {Ms, R} = call(N1, ?MODULE, timed_call, [N2, rpctest, node, [], ?LONG_MS]),
    ct:pal("call across a drop partition answered in ~b ms (timeout ~b ms)",
           [Ms, ?LONG_MS]),
    ?assertEqual({badrpc, nodedown}, R),
    ?assert(Ms < ?LONG_MS div 2),
    %% The other way too.
    ?assertEqual({badrpc, nodedown},
                 call(N3, tether, call, [N1, rpctest, node, [], ?LONG_MS])),
    ?assertEqual({[N1], [N2, N3]},
                 call(N1, tether, multicall, [[N1, N2, N3], rpctest, node, [],
                                              ?LONG_MS])),
    %% Inside one side, calls work.
    ?assertEqual(N3, call(N2, tether, call, [N3, rpctest, node, []])),
    ok = call(N2, tether, heal, [Ref]),
    wait_members(Nodes, lists:sort(Nodes)),
    ?assertEqual(N2, call(N1, tether, call, [N2, rpctest, node, []])).

%% Across a defer partition a call waits (membership holds, the call
%% does not return) and completes after heal.
defer_completes_after_heal(_Config) ->
    [N1, N2, N3] = Nodes = cluster(),
    {ok, _Ref} = call(N1, tether, partition, [[N1], [N2, N3], defer]),
    wait_partition_known(Nodes),
    Caller = held_call(N1, tether, call, [N2, rpctest, node, [], 4 * ?WAIT_MS]),
    wait_leases_pass(N1),
    ?assertEqual(lists:sort(Nodes), call(N1, tether, members, [])),
    ok = tether_test_lib:held_call_not_returned(Caller),
    ok = call(N3, tether, heal, []),
    ?assertEqual(N2, tether_test_lib:held_call_answer(Caller, 2 * ?WAIT_MS)).

%% Across a defer partition a call whose timeout passes first returns
%% {badrpc, timeout}; the late answer after heal reaches nobody's
%% mailbox, and calls work again.
defer_short_timeout(_Config) ->
    [N1, N2, N3] = Nodes = cluster(),
    {ok, Ref} = call(N1, tether, partition, [[N1], [N2, N3], defer]),
    wait_partition_known(Nodes),
    Fun = fun() ->
                  R = tether:call(N2, rpctest, node, [], ?SHORT_MS),
                  ok = tether:heal(Ref),
                  tether_test_lib:wait_until(
                    fun() -> [P || #{healed := false} = P
                                       <- tether:partitions()] =:= []
                    end, ?WAIT_MS),
                  After = tether:call(N2, rpctest, node, [], ?WAIT_MS),
                  %% One more round trip after the late answer had its
                  %% chance to arrive.
                  After2 = tether:call(N2, rpctest, node, [], ?WAIT_MS),
                  {R, After, After2, tether_test_lib:flush()}
          end,
    {R, After, After2, Mailbox} = call(N1, erlang, apply, [Fun, []]),
    ?assertEqual({badrpc, timeout}, R),
    ?assertEqual(N2, After),
    ?assertEqual(N2, After2),
    ?assertEqual([], Mailbox).

%% multicall/4,5 returns results in the order of the nodes given;
%% multicall/3 calls every member.
multicall_in_node_order(_Config) ->
    [N1, N2, N3] = Nodes = cluster(),
    ?assertEqual({[N3, N1, N2], []},
                 call(N1, tether, multicall, [[N3, N1, N2], rpctest, node, []])),
    ?assertEqual({[N2, N3], []},
                 call(N1, tether, multicall, [[N2, N3], rpctest, node, [],
                                              ?CALL_MS])),
    ?assertEqual({lists:sort(Nodes), []},
                 call(N2, tether, multicall, [rpctest, node, []])),
    %% An exception on one node is a result, as in rpc:multicall.
    {[A, B], []} = call(N1, tether, multicall,
                        [[N2, N3], rpctest, exit, [boom]]),
    ?assertEqual({badrpc, {'EXIT', boom}}, A),
    ?assertEqual({badrpc, {'EXIT', boom}}, B).

%% With one node down, multicall returns the others' results in order
%% and the dead node as a bad node.
multicall_one_node_down(_Config) ->
    [N1, N2, N3] = cluster(),
    ok = tether_test_lib:stop_case_peer(N2),
    wait_members([N1, N3], lists:sort([N1, N3])),
    ?assertEqual({[N3, N1], [N2]},
                 call(N1, tether, multicall, [[N3, N2, N1], rpctest, node, [],
                                              ?CALL_MS])),
    ?assertEqual({badrpc, nodedown},
                 call(N1, tether, call, [N2, rpctest, node, []])).

%% cast/4 returns true and the function runs on the node; a cast of a
%% function that fails is silent.
cast_runs(_Config) ->
    [N1, N2, _] = cluster(),
    Collector = tether_test_lib:start_collector(),
    ?assertEqual(true, call(N1, tether, cast,
                            [N2, erlang, send, [Collector, {cast_ran, 1}]])),
    ?assertEqual(true, call(N1, tether, cast, [N2, rpctest, error, [x]])),
    ?assertEqual(true, call(N1, tether, cast,
                            [N2, erlang, send, [Collector, {cast_ran, 2}]])),
    {ok, Got} = tether_test_lib:wait_collected(Collector, {cast_ran, 2},
                                               ?WAIT_MS),
    ?assert(lists:member({cast_ran, 1}, Got)),
    Collector ! '$stop_collector'.

%% abcast/2 delivers to the registered name on every member, abcast/3 to
%% the nodes given.
abcast_every_node(_Config) ->
    [N1, N2, N3] = Nodes = cluster(),
    Sinks = [{N, relay(N, fun() -> true = register(prpc_sink, self()) end)}
             || N <- Nodes],
    ?assertEqual(abcast, call(N1, tether, abcast, [prpc_sink, hello])),
    [?assertEqual(hello, next_msg(S)) || {_, S} <- Sinks],
    ?assertEqual(abcast, call(N1, tether, abcast, [[N2, N3], prpc_sink, hi])),
    [?assertEqual(hi, next_msg(proplists:get_value(N, Sinks)))
     || N <- [N2, N3]],
    %% N1 got nothing more: a message after it arrives first.
    S1 = proplists:get_value(N1, Sinks),
    S1 ! marker,
    ?assertEqual(marker, next_msg(S1)).

%%% Cases of the group cnode (a C-node with the rpctest plug-in)

%% tether:call to C functions of the C-node.
cnode_call(Config) ->
    {[N1 | _], CN} = cluster_with_cnode(Config),
    ?assertEqual(3, call(N1, tether, call, [CN, rpctest, add, [1, 2]])),
    ?assertEqual(CN, call(N1, tether, call, [CN, rpctest, node, []])),
    echo_all(N1, CN).

%% Exceptions of C functions have rpc:call's shapes.
cnode_shapes_match_rpc(Config) ->
    {[N1 | _], CN} = cluster_with_cnode(Config),
    compare_with_rpc(N1, CN, exception_calls()).

%% A drop partition between a BEAM node and the C-node: {badrpc,
%% nodedown} at once, both ways round the partition.
cnode_drop_nodedown(Config) ->
    {[N1, N2, N3] = Bs, CN} = cluster_with_cnode(Config),
    {ok, Ref} = call(N1, tether, partition, [[N1], [CN, N2, N3], drop]),
    wait_members([N1], [N1]),
    {Ms, R} = call(N1, ?MODULE, timed_call, [CN, rpctest, node, [], ?LONG_MS]),
    ct:pal("call to the C-node across a drop partition answered in ~b ms",
           [Ms]),
    ?assertEqual({badrpc, nodedown}, R),
    ?assert(Ms < ?LONG_MS div 2),
    ?assertEqual(CN, call(N2, tether, call, [CN, rpctest, node, []])),
    ok = call(N2, tether, heal, [Ref]),
    wait_members(Bs, lists:sort([CN | Bs])),
    ?assertEqual(CN, call(N1, tether, call, [CN, rpctest, node, []])).

%% A defer partition between a BEAM node and the C-node: the call
%% completes after heal.
cnode_defer_completes_after_heal(Config) ->
    {[N1, _, _] = Bs, CN} = cluster_with_cnode(Config),
    {ok, _Ref} = call(N1, tether, partition, [[N1], [CN], defer]),
    wait_partition_known(Bs),
    Caller = held_call(N1, tether, call, [CN, rpctest, node, [], 4 * ?WAIT_MS]),
    wait_leases_pass(N1),
    ok = tether_test_lib:held_call_not_returned(Caller),
    ok = call(N1, tether, heal, []),
    ?assertEqual(CN, tether_test_lib:held_call_answer(Caller, 2 * ?WAIT_MS)).

%% Hundreds of calls held by a defer partition reach the C-node at once on
%% heal; it runs them all and answers each (a regression: it used to
%% recurse once per held request and overflow its stack).
cnode_many_held_calls_survive_heal(Config) ->
    {[N1, _, _] = Bs, CN} = cluster_with_cnode(Config),
    N = 1000,
    {ok, _Ref} = call(N1, tether, partition, [[N1], [CN], defer]),
    wait_partition_known(Bs),
    Caller = held_call(N1, ?MODULE, many_calls, [CN, N, 4 * ?WAIT_MS]),
    %% Every call is held by N1's engine before the heal.
    wait_until(fun() -> call(N1, tether_server, info, []) end,
               fun(#{stats := #{part_deferred := D}}) -> D >= N;
                  (_) -> false end),
    ok = call(N1, tether, heal, []),
    ?assertEqual(lists:seq(1, N),
                 tether_test_lib:held_call_answer(Caller, 4 * ?WAIT_MS)),
    ?assertEqual(CN, call(N1, tether, call, [CN, rpctest, node, []])).

%% multicall over BEAM nodes and the C-node, in the order given.
cnode_multicall_mixed(Config) ->
    {[N1, N2, _], CN} = cluster_with_cnode(Config),
    ?assertEqual({[N2, CN, N1], []},
                 call(N1, tether, multicall, [[N2, CN, N1], rpctest, node, []])).

%%% Helpers run on the peers

%% The answers of N concurrent tether:call(Node, rpctest, echo, [I]),
%% sorted.
many_calls(Node, N, Timeout) ->
    Self = self(),
    Pids = [spawn_link(fun() ->
                               Self ! {echoed, self(),
                                       tether:call(Node, rpctest, echo, [I],
                                                   Timeout)}
                       end) || I <- lists:seq(1, N)],
    lists:sort([receive {echoed, P, R} -> R end || P <- Pids]).

%% {Milliseconds, tether:call(Node, M, F, A, Timeout)}.
timed_call(Node, M, F, A, Timeout) ->
    T0 = erlang:monotonic_time(millisecond),
    R = tether:call(Node, M, F, A, Timeout),
    {erlang:monotonic_time(millisecond) - T0, R}.

%% {tether:call(...) or rpc:call(...), Mailbox}: the answer of one call
%% made by Via (tether or rpc), and what else arrived.
call_then_flush(Via, Node, {M, F, A}) ->
    R = Via:call(Node, M, F, A, ?CALL_MS),
    {R, tether_test_lib:flush()}.

%%% Helpers

%% From Caller, rpctest:echo/1 on Target returns every kind of term
%% exactly (tether_cnode_rpc_lib:echo_terms/0); all mismatches are reported
%% together.
echo_all(Caller, Target) ->
    Bad = [{Label, Got}
           || {Label, T} <- tether_cnode_rpc_lib:echo_terms(),
              Got <- [call(Caller, tether, call,
                           [Target, rpctest, echo, [T], ?CALL_MS])],
              not tether_cnode_rpc_lib:exact(Got, T)],
    ?assertEqual([], Bad).

%% The exception cases compared with rpc:call.
exception_calls() ->
    [{rpctest, throw, [thrown]},
     {rpctest, error, [failed]},
     {rpctest, exit, [exited]},
     {rpctest, exit, [normal]},
     {rpctest, add, [a, 1]},
     {rpctest, no_such_function, []},
     {rpctest, echo, []},
     {tether_no_such_module, f, [1]}].

%% From Caller, each MFA through tether:call and rpc:call to Target
%% gives the same shape, and nothing else lands in the caller's mailbox.
compare_with_rpc(Caller, Target, MFAs) ->
    Bad = [{MFA, T, R}
           || MFA <- MFAs,
              {T, R} <- [{shape(call(Caller, ?MODULE, call_then_flush,
                                     [tether, Target, MFA]), Target),
                          shape(call(Caller, ?MODULE, call_then_flush,
                                     [rpc, Target, MFA]), Target)}],
              T =/= R],
    ?assertEqual([], Bad).

shape(Answer, Node) ->
    tether_cnode_rpc_lib:shape(tether_cnode_rpc_lib:replace_node(Answer, Node)).

%% Waits until every node lists one active partition.
wait_partition_known(Nodes) ->
    [wait_until(fun() -> call(N, tether, partitions, []) end,
                fun(Ps) -> length([P || #{healed := false} = P <- Ps]) =:= 1
                end) || N <- Nodes],
    ok.

%% Waits until more than two leases have passed on Node, across a
%% partition.
wait_leases_pass(Node) ->
    tether_test_lib:wait_leases_pass(Node, ?HB_MS, ?TTL_MS, ?WAIT_MS).

%% Starts erpc:call(Node, M, F, A) from a process of this node, a call a
%% defer partition holds (A's own timeout is below 5 * WAIT_MS).
held_call(Node, M, F, A) ->
    tether_test_lib:held_call_start(Node, M, F, A, 5 * ?WAIT_MS, self()).

relay(Node, Setup) ->
    call(Node, tether_test_lib, relay_start, [self(), Setup]).

next_msg(Relay) ->
    tether_test_lib:relay_next(Relay, ?WAIT_MS).

%% Three clustered peers running tether (not linked: a case stops one; a
%% killed peer must not make global cut the others off).
cluster() ->
    tether_test_lib:start_cluster(
      3, #{prefix => tether_prpc, overlapping_partitions => false,
           env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS}]}, ?WAIT_MS).

%% cluster/0 and a C-node with the rpctest plug-in joined to it.
cluster_with_cnode(Config) ->
    Bs = cluster(),
    Opts = #{name => tether_test_lib:unique_name(tprpc),
             heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS,
             extra_args => ["--load", tether_test_lib:rpctest_plugin()],
             log_dir => ?config(priv_dir, Config)},
    {Bs, tether_test_lib:join_cnode(Bs, Opts, ?WAIT_MS)}.

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, ?LONG_MS + ?WAIT_MS).

wait_members(Nodes, Expected) ->
    tether_test_lib:wait_members(Nodes, Expected, ?WAIT_MS).

%% Polls Get until Check holds, failing after WAIT_MS with the last value.
wait_until(Get, Check) ->
    tether_test_lib:poll(Get, Check, ?WAIT_MS).
