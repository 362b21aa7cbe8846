%% A common_test suite as a project that uses tether writes it: only
%% tether_ct (the kit shipped in tether) and tether's own API. Each case
%% starts a cluster of two BEAM nodes and two C-nodes running the kv
%% plug-in as the service `kv', breaks it, and checks what a user relies
%% on:
%%
%% - a name registered on both sides of a partition has one owner,
%%   the same on every node, once the partition heals;
%% - a leader is elected again after its node is killed, and there is
%%   never more than one;
%% - a call to the C service fails over to the other instance when the
%%   node it reached first is killed.
%%
%% Run: rebar3 ct (nothing else: tether_ct starts the nodes).
-module(cluster_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_testcase/2, end_per_testcase/2]).
-export([registry_conflict_after_partition/1, leader_across_kill/1,
         c_service_failover/1]).

all() ->
    [registry_conflict_after_partition, leader_across_kill,
     c_service_failover].

init_per_testcase(_Case, Config) ->
    KvPlugin = filename:join([code:priv_dir(tether), "plugins", "kv.so"]),
    Cluster = tether_ct:start_cluster(
                Config, #{beam => 2, cnodes => 2,
                          plugins => [KvPlugin], services => [kv],
                          lead => [boss],
                          heartbeat_ms => 200, ttl_ms => 1000}),
    [{cluster, Cluster} | Config].

end_per_testcase(_Case, Config) ->
    tether_ct:stop_cluster(?config(cluster, Config)).

%% Both sides of a drop partition register `payments'; after the heal
%% the conflict is resolved the same way everywhere.
registry_conflict_after_partition(Config) ->
    C = ?config(cluster, Config),
    [A, B] = tether_ct:beam_nodes(C),
    ok = tether_ct:partition(C, [A], tether_ct:nodes(C) -- [A], drop),
    ok = tether_ct:wait_until(
           fun() -> tether_ct:call(C, A, tether, members, []) =:= [A] end, 10000),
    PidA = tether_ct:call(C, A, erlang, spawn, [timer, sleep, [infinity]]),
    PidB = tether_ct:call(C, B, erlang, spawn, [timer, sleep, [infinity]]),
    yes = tether_ct:call(C, A, tether, register_name, [payments, PidA]),
    yes = tether_ct:call(C, B, tether, register_name, [payments, PidB]),
    ok = tether_ct:heal(C),
    ok = tether_ct:assert_members_agree(C),
    ok = tether_ct:assert_registry_agrees(C),
    Owner = tether_ct:call(C, A, tether, whereis_name, [payments]),
    ?assert(Owner =:= PidA orelse Owner =:= PidB),
    ?assertEqual(Owner, tether_ct:call(C, B, tether, whereis_name, [payments])).

%% The C-nodes campaign for `boss' (--lead boss): one leader; SIGKILL its
%% node and the other C-node takes over, still the only one.
leader_across_kill(Config) ->
    C = ?config(cluster, Config),
    [A, _] = tether_ct:beam_nodes(C),
    ok = tether_ct:assert_single_leader(C, boss),
    {ok, Leader, _} = tether_ct:call(C, A, tether, leader, [boss]),
    ok = tether_ct:kill(C, Leader),
    ok = tether_ct:wait_until(
           fun() ->
                   case tether_ct:call(C, A, tether, leader, [boss]) of
                       {ok, New, _} -> New =/= Leader;
                       {error, no_leader} -> false
                   end
           end, 15000),
    ok = tether_ct:assert_single_leader(C, boss).

%% kv runs on both C-nodes; the call goes to the first instance. Kill
%% that node: the same idempotent call is answered by the other one.
c_service_failover(Config) ->
    C = ?config(cluster, Config),
    [A, _] = tether_ct:beam_nodes(C),
    CNodes = tether_ct:cnodes(C),
    ok = tether_ct:wait_until(
           fun() ->
                   lists:sort(tether_ct:call(C, A, tether, get_nodes, [kv])) =:= CNodes
           end, 10000),
    ok = tether_ct:call(C, A, tether, call_service, [kv, put, [k, v1], [idempotent]]),
    [First, Second] = tether_ct:call(C, A, tether, get_nodes, [kv]),
    ok = tether_ct:kill(C, First),
    ok = tether_ct:call(C, A, tether, call_service, [kv, put, [k, v2], [idempotent]]),
    ok = tether_ct:wait_until(
           fun() -> tether_ct:call(C, A, tether, get_nodes, [kv]) =:= [Second] end,
           10000),
    ?assertEqual({ok, v2}, tether_ct:call(C, A, tether, call_service,
                                          [kv, get, [k], []])).
