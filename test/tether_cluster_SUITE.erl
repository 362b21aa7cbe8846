%% The tether application across real BEAM nodes (OTP peer).
%%
%% Each case starts its own peers through tether_test_lib (127.0.0.1,
%% long names, the CT node's cookie, tether's ebin and this suite's
%% directory on the path), starts the tether application on each with a
%% short heartbeat, and stops them at the end. Nothing waits a fixed time as an assertion: conditions are
%% polled up to a generous deadline, and "time has passed" is measured in
%% engine events (heartbeats skipped), not in sleeps.
%%
%% Run: epmd -address 127.0.0.1 -port 14395 & export ERL_EPMD_PORT=14395
%% ERL_EPMD_ADDRESS=127.0.0.1; rebar3 ct --name tether_ct@127.0.0.1
%% --setcookie tether_ct --suite test/tether_cluster_SUITE
-module(tether_cluster_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0]).
-export([members_agree_after_join/1, subscribers_see_up_and_down/1,
         leave_and_join_again/1, drop_partition/1, defer_partition/1,
         partition_api_errors/1, starts_without_distribution/1,
         configured_seeds_and_secret/1, lost_node_is_down_at_once/1,
         restarted_server_rejoins/1, configured_identity_keys/1,
         dead_nodes_are_redialled_a_bounded_number_of_times/1]).
%% Run on the peers.
-export([connect_counter_start/0, connect_count/0]).

-define(HB_MS, 200).
-define(TTL_MS, 2000).
-define(WAIT_MS, 30000).

suite() ->
    [{ct_hooks, [{tether_case_hook, #{require => none}}]}].

all() ->
    [members_agree_after_join, subscribers_see_up_and_down,
     leave_and_join_again, drop_partition, defer_partition,
     partition_api_errors, starts_without_distribution,
     configured_seeds_and_secret, lost_node_is_down_at_once,
     restarted_server_rejoins, configured_identity_keys,
     dead_nodes_are_redialled_a_bounded_number_of_times].

%%% Cases

%% Three nodes join in a chain and all agree on the sorted member list.
members_agree_after_join(_Config) ->
    [N1, N2, N3] = Nodes = start_nodes(3),
    [?assertEqual([N], call(N, tether, members, [])) || N <- Nodes],
    ok = call(N2, tether, join, [N1]),
    ok = call(N3, tether, join, [N2]),
    wait_members(Nodes, lists:sort(Nodes)),
    %% Joining a member again changes nothing.
    ok = call(N1, tether, join, [N3]),
    wait_members(Nodes, lists:sort(Nodes)).

%% A subscriber sees up when a node joins and down when it leaves; after
%% unsubscribe it sees nothing more; a dead subscriber is dropped.
subscribers_see_up_and_down(_Config) ->
    [N1, N2, N3] = Nodes = start_nodes(3),
    Sub = relay(N1, fun() -> ok = tether:subscribe() end),
    Quiet = relay(N1, fun() ->
                              ok = tether:subscribe(),
                              ok = tether:unsubscribe()
                      end),
    ok = call(N2, tether, join, [N1]),
    ?assertEqual({tether_member, up, N2}, next_event(Sub)),
    ok = call(N3, tether, join, [N1]),
    ?assertEqual({tether_member, up, N3}, next_event(Sub)),
    wait_members(Nodes, lists:sort(Nodes)),
    ok = call(N2, tether, leave, []),
    ?assertEqual({tether_member, down, N2}, next_event(Sub)),
    %% Everything sent to Quiet went before Sub's events: it has none.
    ?assertEqual([], relay_flush(Quiet)),
    ?assertEqual([], call(N2, tether, members, [])),
    wait_members([N1, N3], lists:sort([N1, N3])),
    %% A subscriber that exits is forgotten; the server carries on.
    exit(Sub, kill),
    ok = call(N2, tether, join, [N1]),
    wait_members(Nodes, lists:sort(Nodes)).

%% A node that leaves drops out everywhere at once and can join again as
%% a new incarnation.
leave_and_join_again(_Config) ->
    [N1, N2, N3] = Nodes = start_nodes(3),
    ok = call(N2, tether, join, [N1]),
    ok = call(N3, tether, join, [N1]),
    wait_members(Nodes, lists:sort(Nodes)),
    #{incarnation := Inc1} = call(N3, tether_server, info, []),
    ok = call(N3, tether, leave, []),
    ok = call(N3, tether, leave, []),
    ?assertEqual([], call(N3, tether, members, [])),
    wait_members([N1, N2], lists:sort([N1, N2])),
    ok = call(N3, tether, join, [N2]),
    wait_members(Nodes, lists:sort(Nodes)),
    #{incarnation := Inc2} = call(N3, tether_server, info, []),
    ?assert(Inc2 > Inc1).

%% drop: injected on a third node, it applies on every member; each side
%% reports the other down at once and engine messages across it vanish;
%% heal anywhere and they agree again.
drop_partition(_Config) ->
    [N1, N2, N3] = Nodes = start_nodes(3),
    cluster(Nodes),
    Sub = relay(N1, fun() -> ok = tether:subscribe() end),
    {ok, Ref} = call(N3, tether, partition, [[N1], [N2, N3], drop]),
    wait_members([N1], [N1]),
    wait_members([N2, N3], lists:sort([N2, N3])),
    Downs = lists:sort([next_event(Sub), next_event(Sub)]),
    ?assertEqual(lists:sort([{tether_member, down, N2},
                             {tether_member, down, N3}]), Downs),
    %% Every member lists it, active.
    [wait_until(fun() -> call(N, tether, partitions, []) end,
                fun(Ps) -> Ps =:= [#{ref => Ref, mode => drop,
                                     a => [N1], b => lists:sort([N2, N3]),
                                     healed => false}]
                           orelse Ps =:= [#{ref => Ref, mode => drop,
                                            a => [N1], b => [N2, N3],
                                            healed => false}] end)
     || N <- Nodes],
    %% Engine messages across it fail at once, both ways.
    ?assertEqual({error, nodedown},
                 call(N1, tether_server, send, [N2, test, hello])),
    ?assertEqual({error, nodedown},
                 call(N3, tether_server, send, [N1, test, hello])),
    %% Heal on another node than the one that injected it.
    ok = call(N2, tether, heal, [Ref]),
    wait_members(Nodes, lists:sort(Nodes)),
    Ups = lists:sort([next_event(Sub), next_event(Sub)]),
    ?assertEqual(lists:sort([{tether_member, up, N2},
                             {tether_member, up, N3}]), Ups),
    [wait_until(fun() -> call(N, tether, partitions, []) end,
                fun([#{ref := R, healed := true}]) -> R =:= Ref;
                   (_) -> false end)
     || N <- Nodes],
    ok = call(N1, tether, heal, [Ref]).

%% defer: membership holds (well past a lease), engine messages across it
%% wait and arrive in order on heal, in both directions.
defer_partition(_Config) ->
    [N1, N2, N3] = Nodes = start_nodes(3),
    cluster(Nodes),
    Sub = relay(N1, fun() -> ok = tether:subscribe() end),
    Handler = fun() -> ok = tether_server:register_handler(test, self()) end,
    At2 = relay(N2, Handler),
    At1 = relay(N1, Handler),
    %% Messages flow before the partition.
    ok = call(N1, tether_server, send, [N2, test, before]),
    ?assertEqual({tether_msg, N1, test, before}, next_event(At2)),
    {ok, Ref} = call(N1, tether, partition, [[N1], [N2, N3], defer]),
    %% N2 must know of it before it sends (it is gossiped).
    wait_until(fun() -> call(N2, tether, partitions, []) end,
               fun(Ps) ->
                       [R || #{ref := R, healed := false} <- Ps] =:= [Ref]
               end),
    Seq = lists:seq(1, 20),
    [ok = call(N1, tether_server, send, [N2, test, I]) || I <- Seq],
    [ok = call(N2, tether_server, send, [N1, test, -I]) || I <- Seq],
    #{stats := #{part_skipped := Skipped0}} = call(N1, tether_server, info, []),
    %% Let more than two leases' worth of heartbeat rounds pass (N1 skips
    %% two heartbeats, to N2 and N3, per round).
    Rounds = 2 * (?TTL_MS div ?HB_MS) + 2,
    wait_until(fun() -> call(N1, tether_server, info, []) end,
               fun(#{stats := #{part_skipped := S}}) ->
                       S >= Skipped0 + 2 * Rounds
               end),
    [?assertEqual(lists:sort(Nodes), call(N, tether, members, []))
     || N <- Nodes],
    ?assertEqual([], relay_flush(At2)),
    ?assertEqual([], relay_flush(At1)),
    ?assertEqual([], relay_flush(Sub)),
    ok = call(N3, tether, heal, []),
    ?assertEqual([{tether_msg, N1, test, I} || I <- Seq],
                 [next_event(At2) || _ <- Seq]),
    ?assertEqual([{tether_msg, N2, test, -I} || I <- Seq],
                 [next_event(At1) || _ <- Seq]),
    [wait_until(fun() -> call(N, tether, partitions, []) end,
                fun([#{healed := H}]) -> H; (_) -> false end)
     || N <- Nodes],
    ?assertEqual([], relay_flush(Sub)),
    ok = call(N1, tether_server, send, [N2, test, 'after']),
    ?assertEqual({tether_msg, N1, test, 'after'}, next_event(At2)).

%% Bad partition arguments and unknown refs answer errors, not crashes.
partition_api_errors(_Config) ->
    [N1, N2] = start_nodes(2),
    ?assertEqual({error, invalid},
                 call(N1, tether, partition, [[], [N2], drop])),
    ?assertEqual({error, invalid},
                 call(N1, tether, partition, [[N1], [N1], drop])),
    ?assertError({exception, badarg, _},
                 call(N1, tether, partition, [[1], [N2], drop])),
    ?assertError({exception, function_clause, _},
                 call(N1, tether, partition, [[N1], [N2], sideways])),
    ?assertEqual({error, not_found},
                 call(N1, tether, heal, [{tether_partition, 12345}])),
    ?assertEqual({error, not_found}, call(N1, tether, heal, [nonsense])),
    ?assertEqual(ok, call(N1, tether, heal, [])),
    ?assertEqual([], call(N1, tether, partitions, [])),
    {ok, Ref} = call(N1, tether, partition, [[N1], [N2], defer]),
    ?assertMatch([#{ref := Ref, mode := defer, healed := false}],
                 call(N1, tether, partitions, [])),
    ok = call(N1, tether, heal, []),
    ?assertMatch([#{ref := Ref, healed := true}],
                 call(N1, tether, partitions, [])),
    ?assertEqual({error, nodedown},
                 call(N1, tether, join, ['nobody@127.0.0.1'])),
    ?assertEqual([N1], call(N1, tether, members, [])).

%% On a node that is not distributed the application starts and answers
%% not_distributed; once distribution starts it clusters.
starts_without_distribution(_Config) ->
    [N1] = start_nodes(1),
    Peer = tether_test_lib:start_case_peer(undefined,
                                           #{connection => standard_io,
                                             link => true}),
    ?assertEqual(nonode@nohost, tether_test_lib:peer_node(Peer)),
    PCall = fun(M, F, A) -> tether_test_lib:peer_call(Peer, M, F, A) end,
    {ok, _} = PCall(application, ensure_all_started, [tether]),
    ok = PCall(tether, subscribe, []),
    ?assertEqual({error, not_distributed}, PCall(tether, members, [])),
    ?assertEqual({error, not_distributed}, PCall(tether, join, [N1])),
    ?assertEqual({error, not_distributed}, PCall(tether, partitions, [])),
    Name = list_to_atom(peer:random_name(late) ++ "@127.0.0.1"),
    {ok, _} = PCall(net_kernel, start, [[Name, longnames]]),
    wait_until(fun() -> PCall(tether, members, []) end,
               fun(M) -> M =:= [Name] end),
    ok = PCall(tether, join, [N1]),
    wait_members([N1, Name], lists:sort([N1, Name])).

%% Seeds from the application env are joined at start; nodes sharing an
%% explicit cluster secret cluster, a node with another secret does not.
configured_seeds_and_secret(_Config) ->
    Secret = binary:copy(<<7>>, 32),
    Other = binary:copy(<<8>>, 32),
    [N1] = start_nodes(1, [{cluster_secret, Secret}]),
    [N2] = start_nodes(1, [{cluster_secret, Secret}, {join, [N1]}]),
    wait_members([N1, N2], lists:sort([N1, N2])),
    [N3] = start_nodes(1, [{cluster_secret, Other}, {join, [N1]}]),
    %% No session forms: whichever side sends the hello, the other
    %% rejects its signature (N3 derives other keys for every name).
    ok = tether_test_lib:wait_rejected([N1, N3], ?WAIT_MS),
    ?assertEqual([N3], call(N3, tether, members, [])),
    ?assertEqual(lists:sort([N1, N2]), call(N1, tether, members, [])).

%% A node that stops is reported down by the others at once (nodedown):
%% the lease here is longer than the wait, so a down seen at all came
%% from the connection loss.
lost_node_is_down_at_once(_Config) ->
    [N1, N2, N3] = Nodes = start_nodes(3, [{ttl_ms, 4 * ?WAIT_MS}]),
    cluster(Nodes),
    Sub = relay(N1, fun() -> ok = tether:subscribe() end),
    ok = tether_test_lib:stop_case_peer(N3),
    ?assertEqual({tether_member, down, N3}, next_event(Sub)),
    wait_members([N1, N2], lists:sort([N1, N2])).

%% Two of four members are killed (SIGKILL). For a minute after, each
%% survivor's calls of net_kernel:connect_node/1 (counted by a call
%% trace) stay within reconnect_attempts per dead node, the engine says
%% it gave both up, and the survivors agree on the two of them. A C-node
%% member survives too: its log says little about each dead node (the
%% lost connection, the member going down, the first failed dial, then at
%% most one line a minute, --dial-log-ms).
dead_nodes_are_redialled_a_bounded_number_of_times(Config) ->
    Attempts = 4,
    [N1, N2, N3, N4] = Nodes =
        tether_test_lib:start_tether_nodes(
          4, #{prefix => tether_cluster, link => false,
               env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS},
                       {reconnect_attempts, Attempts},
                       {reconnect_max_ms, 2000}]}),
    cluster(Nodes),
    C = tether_test_lib:start_case_cnode(
          #{name => tether_test_lib:unique_name(tcl), heartbeat_ms => ?HB_MS,
            ttl_ms => ?TTL_MS, join => [N1],
            log_dir => ?config(priv_dir, Config)}, 20),
    CN = tether_test_lib:cnode_node(C),
    wait_members([N1, N2], lists:sort([CN | Nodes])),
    [ok = call(N, ?MODULE, connect_counter_start, []) || N <- [N1, N2]],
    ok = tether_test_lib:kill_node(N3, ?WAIT_MS),
    ok = tether_test_lib:kill_node(N4, ?WAIT_MS),
    wait_members([N1, N2], lists:sort([CN, N1, N2])),
    timer:sleep(60000),
    Counts = [{N, call(N, ?MODULE, connect_count, [])} || N <- [N1, N2]],
    Dead = [atom_to_binary(N) || N <- [N3, N4]],
    CLines = [{D, [L || L <- tether_test_lib:cnode_stderr(C),
                        binary:match(L, D) =/= nomatch]}
              || D <- Dead],
    ct:pal("connect_node calls per survivor in the minute after two nodes "
           "died: ~p (bound ~b); the C-node's log lines about each: ~p",
           [Counts, 2 * Attempts, [{D, length(Ls)} || {D, Ls} <- CLines]]),
    ct:log("~p", [CLines]),
    %% About each dead node: its connection up (once a side, at most
    %% twice), closed, the member down, then dial failures logged once
    %% and summarised at most once a minute (--dial-log-ms).
    [?assert(length([L || L <- Ls,
                          binary:match(L, <<"cannot connect">>) =/= nomatch])
             =< 2) || {_, Ls} <- CLines],
    [?assert(length(Ls) =< 6) || {_, Ls} <- CLines],
    [?assert(Count =< 2 * Attempts) || {_, Count} <- Counts],
    ?assert(lists:sum([Count || {_, Count} <- Counts]) > 0),
    [?assertMatch(#{stats := #{dials_given_up := 2}},
                  call(N, tether_server, info, [])) || N <- [N1, N2]],
    ?assertEqual(lists:sort([CN, N1, N2]), call(N1, tether, members, [])).

%% A tether server that crashes is restarted by its supervisor with a new
%% engine (a new incarnation); its peers drop the old session and it is
%% a member again, without any call.
restarted_server_rejoins(_Config) ->
    [N1, N2, _] = Nodes = start_nodes(3),
    cluster(Nodes),
    #{incarnation := Inc1} = call(N2, tether_server, info, []),
    Old = call(N2, erlang, whereis, [tether]),
    true = call(N2, erlang, exit, [Old, kill]),
    wait_until(fun() -> call(N2, erlang, whereis, [tether]) end,
               fun(P) -> is_pid(P) andalso P =/= Old end),
    wait_members(Nodes, lists:sort(Nodes)),
    #{incarnation := Inc2} = call(N2, tether_server, info, []),
    ?assert(Inc2 > Inc1),
    ?assertEqual(lists:sort(Nodes), call(N1, tether, members, [])).

%% Explicit identities: a node trusts only the public keys it is given
%% (as bytes or as a file); a secret key file open to others is refused.
configured_identity_keys(Config) ->
    Dir = ?config(priv_dir, Config),
    [N1, N2, N3] = start_peers(3),
    Keys = [{N, tether_test_lib:write_identity(Dir, atom_to_list(N))}
            || N <- [N1, N2, N3]],
    {F1, P1, P1File} = proplists:get_value(N1, Keys),
    {F2, P2, _} = proplists:get_value(N2, Keys),
    {F3, _, _} = proplists:get_value(N3, Keys),
    start_tether(N1, [{identity_file, F1}, {trusted_keys, [{N2, P2}]}]),
    start_tether(N2, [{identity_file, F2}, {trusted_keys, [{N1, P1File}]},
                      {join, [N1]}]),
    wait_members([N1, N2], lists:sort([N1, N2])),
    %% libsodium and OTP's crypto make the same key from a seed.
    ?assertMatch(#{public_key := P1}, call(N1, tether_server, info, [])),
    %% A secret key file readable by others fails the start.
    ok = file:change_mode(F3, 8#644),
    {error, Why} = start_tether_result(N3, [{identity_file, F3},
                                            {trusted_keys, [{N1, P1}]}]),
    ?assertNotEqual(nomatch, string:find(io_lib:format("~p", [Why]),
                                         "key_file_mode")),
    %% N3 trusts N1, but N1 does not trust N3: no session forms.
    ok = file:change_mode(F3, 8#600),
    start_tether(N3, [{identity_file, F3}, {trusted_keys, [{N1, P1}]},
                      {join, [N1]}]),
    ok = tether_test_lib:wait_rejected([N1, N3], ?WAIT_MS),
    ?assertEqual([N3], call(N3, tether, members, [])),
    ?assertEqual(lists:sort([N1, N2]), call(N1, tether, members, [])).

%%% Helpers

start_nodes(N) ->
    start_nodes(N, []).

%% Starts N peers with tether running (heartbeat HB_MS, lease TTL_MS plus
%% Env), linked to the case and kept for end_per_testcase.
start_nodes(N, Env) ->
    tether_test_lib:start_tether_nodes(
      N, #{prefix => tether_cluster, link => true,
           env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS} | Env]}).

%% Run on a peer: counts its calls of net_kernel:connect_node/1 from now
%% on (a call trace on every process, new ones included).
connect_counter_start() ->
    Parent = self(),
    Pid = spawn(fun() ->
                        erlang:trace(all, true, [call, {tracer, self()}]),
                        1 = erlang:trace_pattern(
                              {net_kernel, connect_node, 1}, true, [global]),
                        Parent ! ready,
                        connect_counter(0)
                end),
    true = register(tether_connect_counter, Pid),
    receive ready -> ok after 5000 -> error(counter) end.

connect_counter(N) ->
    receive
        {trace, _, call, {net_kernel, connect_node, [_]}} ->
            connect_counter(N + 1);
        {count, From} ->
            From ! {connect_count, N},
            connect_counter(N);
        _ ->
            connect_counter(N)
    end.

%% Run on a peer: the count so far.
connect_count() ->
    tether_connect_counter ! {count, self()},
    receive {connect_count, N} -> N after 5000 -> error(counter) end.

%% Starts N peers (tether not started), linked to the case.
start_peers(N) ->
    tether_test_lib:start_case_nodes(N, #{prefix => tether_cluster,
                                          link => true}).

start_tether(Node, Env) ->
    {ok, _} = start_tether_result(Node, Env).

start_tether_result(Node, Env) ->
    tether_test_lib:start_tether(Node, [{heartbeat_ms, ?HB_MS},
                                        {ttl_ms, ?TTL_MS} | Env]).

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, 10000).

%% Joins every node to the first and waits until all agree.
cluster(Nodes) ->
    tether_test_lib:join_all(Nodes, ?WAIT_MS).

wait_members(Nodes, Expected) ->
    tether_test_lib:wait_members(Nodes, Expected, ?WAIT_MS).

%% Polls Get until Check holds, failing after WAIT_MS with the last value.
wait_until(Get, Check) ->
    tether_test_lib:poll(Get, Check, ?WAIT_MS).

%% A process on Node that runs Setup and then forwards every message it
%% gets to the test process as {relay, Pid, Msg}.
relay(Node, Setup) ->
    call(Node, tether_test_lib, relay_start, [self(), Setup]).

next_event(Relay) ->
    tether_test_lib:relay_next(Relay, ?WAIT_MS).

%% Everything the relay had forwarded before a round trip through it.
relay_flush(Relay) ->
    tether_test_lib:relay_flush(Relay, ?WAIT_MS).
