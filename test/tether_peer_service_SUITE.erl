%% partisan's peer-service API over tether (tether_peer_service), with
%% BEAM peers running tether:
%%
%% - forward_message/cast_message to every kind of ServerRef;
%% - `ack': exactly once across a defer partition (every transmission
%%   held, retransmissions too), across killed connections (small and
%%   large messages), across a drop partition healed in time; the give-up
%%   after ack_timeout_ms and the noproc report;
%% - channels and partition keys: FIFO per key with parallel lanes, a
%%   small message on one channel not held behind 8 MiB messages on
%%   another;
%% - `transitive': A partitioned (drop) from C only reaches C through B,
%%   with and without ack, whole and in parts; forged and replayed
%%   relays are refused (the engine's part is in test_relay.c);
%% - on_up/on_down with funs of arity 0, 1, 2 and channel-scoped, once
%%   per transition;
%% - the membership calls, inject_partition with a TTL, connect with
%%   prune after a node came back on a new port;
%% - bad input answers documented errors and crashes nothing.
%%
%% Run alone: scripts/ct.sh --suite test/tether_peer_service_SUITE
-module(tether_peer_service_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0]).
-export([forward_to_every_ref/1, ack_across_defer_partition/1,
         ack_across_killed_connections/1,
         large_ack_messages_across_killed_connections/1,
         ack_across_drop_partition/1, ack_gives_up/1, ack_noproc/1,
         fifo_per_partition_key/1, small_passes_large_on_other_channel/1,
         on_up_on_down_arities/1, channel_scoped_callbacks/1,
         membership_calls/1, inject_partition_ttl/1, connect_prune/1,
         causal_reply_never_overtakes/1, barrel_p2p_calls/1, peer_messages/1,
         bad_input/1, transitive_around_drop_partition/1,
         transitive_through_cnode/1]).
%% Run on the peers.
-export([rx_start/1, rx_loop/1, send_many/5, send_await/5, hold_name/2,
         relay_loop/3]).
%% Shared with tether_cnode_messaging_SUITE.
-export([got/2, kill_connections/4]).

-define(HB_MS, 200).
-define(TTL_MS, 1500).
-define(WAIT_MS, 30000).
-define(CALL_MS, 20000).
-define(PS, tether_peer_service).
-define(CHANNELS, #{bulk => #{parallelism => 1},
                    wide => #{parallelism => 4}}).

all() ->
    [forward_to_every_ref, ack_across_defer_partition,
     ack_across_killed_connections,
     large_ack_messages_across_killed_connections, ack_across_drop_partition,
     ack_gives_up, ack_noproc, fifo_per_partition_key,
     small_passes_large_on_other_channel, on_up_on_down_arities,
     channel_scoped_callbacks, membership_calls, inject_partition_ttl,
     connect_prune, causal_reply_never_overtakes, barrel_p2p_calls,
     peer_messages, bad_input, transitive_around_drop_partition,
     transitive_through_cnode].

suite() ->
    [{ct_hooks, [tether_case_hook]}].

%%% Cases

%% A pid, a registered name, {Name, Node}, {global, Name}, {via, tether,
%% Name}, with forward_message/2,3,4 and cast_message/2,3,4.
forward_to_every_ref(_Config) ->
    [A, B] = cluster(2),
    Rx = rx(B, rx1),
    yes = call(B, global, register_name, [rx1_global, Rx]),
    yes = call(B, tether, register_name, [rx1_tether, Rx]),
    ok = call(A, tether, sync, []),
    _ = call(A, global, sync, []),
    ok = call(A, ?PS, forward_message, [Rx, m1]),
    ok = call(A, ?PS, forward_message, [{rx1, B}, m2, #{}]),
    ok = call(A, ?PS, forward_message, [B, rx1, m3, []]),
    ok = call(A, ?PS, forward_message, [{global, rx1_global}, m4, #{ack => true}]),
    ok = call(A, ?PS, forward_message, [{via, tether, rx1_tether}, m5, [ack]]),
    ok = call(A, ?PS, cast_message, [Rx, c1]),
    ok = call(A, ?PS, cast_message, [{rx1, B}, c2, #{ack => true}]),
    ok = call(A, ?PS, cast_message, [B, rx1, c3, #{channel => wide}]),
    {error, noproc} = call(A, ?PS, forward_message, [A, rx_local_missing, x, #{}]),
    Want = lists:sort([m1, m2, m3, m4, m5, {'$gen_cast', c1},
                       {'$gen_cast', c2}, {'$gen_cast', c3}]),
    wait_rx(B, rx1, fun(Got) -> lists:sort(Got) =:= Want end).

%% Across a defer partition every transmission (the first and each
%% retransmission) is held by the engine; on heal the receiver drops the
%% duplicates: each message arrives once, in order.
ack_across_defer_partition(_Config) ->
    [A, B] = cluster(2),
    _ = rx(B, rx2),
    {ok, Ref} = call(A, tether, partition, [[A], [B], defer]),
    ok = call(A, ?MODULE, send_many, [B, rx2, 50, #{ack => true}, 0]),
    %% Several retransmissions pile up behind the partition.
    timer:sleep(1500),
    [] = got(B, rx2),
    ok = call(A, tether, heal, [Ref]),
    Want = lists:seq(1, 50),
    wait_rx(B, rx2, fun(Got) -> length(Got) >= 50 end),
    timer:sleep(1000),
    ?assertEqual(Want, got(B, rx2)),
    #{retransmissions := Re} = call(A, tether_channel, stats, []),
    ?assert(Re > 0).

%% Connections killed again and again while ack messages flow: every
%% message arrives exactly once, in order.
ack_across_killed_connections(_Config) ->
    [A, B] = cluster(2),
    _ = rx(B, rx3),
    N = 2000,
    Sender = spawn_on(A, ?MODULE, send_many, [B, rx3, N, #{ack => true}, 1]),
    kill_connections(A, B, 6, 150),
    wait_rx(B, rx3, fun(Got) -> length(Got) >= N end),
    timer:sleep(1000),
    ?assertEqual(lists:seq(1, N), got(B, rx3)),
    _ = Sender,
    ok.

%% The same with 200 KiB messages, sent in parts.
large_ack_messages_across_killed_connections(_Config) ->
    [A, B] = cluster(2),
    _ = rx(B, rx4),
    N = 40,
    _ = spawn_on(A, ?MODULE, send_many, [B, rx4, N, #{ack => true, big => 200000}, 0]),
    kill_connections(A, B, 4, 250),
    wait_rx(B, rx4, fun(Got) -> length(Got) >= N end, fun summary/1),
    timer:sleep(1000),
    Got = got(B, rx4),
    ?assertEqual(lists:seq(1, N), [I || {I, _} <- Got]),
    [?assertEqual(200000, byte_size(Bin)) || {_, Bin} <- Got],
    ok.

%% A drop partition refuses every transmission; healed before the budget
%% is spent, the messages arrive once.
ack_across_drop_partition(_Config) ->
    [A, B] = cluster(2),
    _ = rx(B, rx5),
    {ok, Ref} = call(A, tether, partition, [[A], [B], drop]),
    tether_test_lib:wait_members([A], [A], ?WAIT_MS),
    %% Without ack a non-member is refused at once.
    {error, nodedown} = call(A, ?PS, forward_message, [B, rx5, lost, #{}]),
    ok = call(A, ?MODULE, send_many, [B, rx5, 20, #{ack => true}, 0]),
    timer:sleep(1000),
    [] = got(B, rx5),
    ok = call(A, tether, heal, [Ref]),
    wait_rx(B, rx5, fun(Got) -> length(Got) >= 20 end),
    timer:sleep(500),
    ?assertEqual(lists:seq(1, 20), got(B, rx5)).

%% A drop partition between A and C only: A's messages with `transitive'
%% reach C through B (signed by A, checked by C), in order and, with
%% `ack', exactly once; large ones too (in parts). Without `transitive' C
%% is not reachable from A.
transitive_around_drop_partition(_Config) ->
    [A, B, C] = cluster(3),
    _ = rx(C, rx12),
    _ = rx(C, rx13),
    _ = rx(C, rx14),
    {ok, Ref} = call(A, tether, partition, [[A], [C], drop]),
    tether_test_lib:wait_members([A], lists:sort([A, B]), ?WAIT_MS),
    tether_test_lib:wait_members([C], lists:sort([B, C]), ?WAIT_MS),
    {error, nodedown} = call(A, ?PS, forward_message, [C, rx12, direct, #{}]),
    ok = call(A, ?MODULE, send_many, [C, rx12, 30, #{transitive => true}, 0]),
    wait_rx(C, rx12, fun(Got) -> length(Got) >= 30 end),
    ok = call(A, ?MODULE, send_many, [C, rx13, 30, #{transitive => true,
                                                     ack => true}, 0]),
    wait_rx(C, rx13, fun(Got) -> length(Got) >= 30 end),
    ok = call(A, ?MODULE, send_many, [C, rx14, 5, #{transitive => true,
                                                    ack => true,
                                                    big => 50000}, 0]),
    wait_rx(C, rx14, fun(Got) -> length(Got) >= 5 end, fun summary/1),
    %% Every ack came back (round B too): nothing is retransmitted for ever,
    %% nothing is reported undelivered.
    R = call(A, ?MODULE, send_await, [C, rx13, last, #{transitive => true,
                                                       ack => true,
                                                       ack_timeout_ms => 3000},
                                      4000]),
    ?assertEqual(no_report, R),
    timer:sleep(500),
    ?assertEqual(lists:seq(1, 30), got(C, rx12)),
    ?assertEqual(lists:seq(1, 30) ++ [last], got(C, rx13)),
    ?assertEqual(lists:seq(1, 5), [I || {I, _} <- got(C, rx14)]),
    #{stats := #{relay_forwarded := Fwd}} = call(B, tether_server, info, []),
    #{stats := #{relay_delivered := Dlv, relay_refused := 0}} =
        call(C, tether_server, info, []),
    #{stats := #{relay_sent := Sent}} = call(A, tether_server, info, []),
    ?assert(Fwd > 0 andalso Dlv > 0 andalso Sent > 0),
    %% Healed, the direct path is used again.
    ok = call(A, tether, heal, [Ref]),
    tether_test_lib:wait_members([A, C], lists:sort([A, B, C]), ?WAIT_MS),
    ok = call(A, ?PS, forward_message, [C, rx12, direct, #{transitive => true}]),
    wait_rx(C, rx12, fun(Got) -> lists:last(Got) =:= direct end),
    #{stats := #{relay_sent := Sent}} = call(A, tether_server, info, []).

%% The same with a C-node as the only member that reaches both: its
%% engine passes A's signed messages on to C.
transitive_through_cnode(_Config) ->
    [A, C] = tether_test_lib:start_cluster(2, (opts())#{cnodes => 1},
                                           ?WAIT_MS),
    [X] = call(A, tether, members, []) -- [A, C],
    _ = rx(C, rx15),
    {ok, _} = call(A, tether, partition, [[A], [C], drop]),
    tether_test_lib:wait_members([A], lists:sort([A, X]), ?WAIT_MS),
    {error, nodedown} = call(A, ?PS, forward_message, [C, rx15, direct, #{}]),
    ok = call(A, ?MODULE, send_many, [C, rx15, 20, #{transitive => true,
                                                     ack => true}, 0]),
    wait_rx(C, rx15, fun(Got) -> length(Got) >= 20 end),
    timer:sleep(500),
    ?assertEqual(lists:seq(1, 20), got(C, rx15)),
    #{stats := #{relay_delivered := Dlv}} = call(C, tether_server, info, []),
    ?assert(Dlv > 0).

%% Behind a drop partition for longer than ack_timeout_ms, the sender
%% gets {tether_undelivered, ServerRef, Msg, timeout}.
ack_gives_up(_Config) ->
    [A, B] = cluster(2),
    _ = rx(B, rx6),
    {ok, _} = call(A, tether, partition, [[A], [B], drop]),
    R = call(A, ?MODULE, send_await,
             [B, rx6, hello, #{ack => true, ack_timeout_ms => 800}, 5000]),
    ?assertEqual({tether_undelivered, rx6, hello, timeout}, R).

%% A name with no process on the receiving member: with ack the sender is
%% told noproc; without, it is dropped there (and counted).
ack_noproc(_Config) ->
    [A, B] = cluster(2),
    R = call(A, ?MODULE, send_await, [B, nobody, m, #{ack => true}, 10000]),
    ?assertEqual({tether_undelivered, nobody, m, noproc}, R),
    ok = call(A, ?PS, forward_message, [{nobody, B}, m2, #{}]),
    tether_test_lib:poll(fun() -> call(B, tether_channel, stats, []) end,
                         fun(#{noproc := C}) -> C >= 2; (_) -> false end,
                         ?WAIT_MS),
    {error, noproc} = call(A, ?PS, forward_message, [nobody, m3]).

%% Four lanes on channel `wide': the messages of each partition key
%% arrive in the order they were sent, keys interleaving freely.
fifo_per_partition_key(_Config) ->
    [A, B] = cluster(2),
    _ = rx(B, rx7),
    Keys = [k1, {k, 2}, <<"k3">>, 4, "five", 6.0],
    ok = call(A, ?MODULE, send_many,
              [B, rx7, 600, #{channel => wide, keys => Keys}, 0]),
    wait_rx(B, rx7, fun(Got) -> length(Got) >= 600 end),
    Got = got(B, rx7),
    _ = [begin
             Mine = [I || {K1, I} <- Got, K1 =:= K],
             ?assertEqual(lists:sort(Mine), Mine),
             ?assertEqual(100, length(Mine))
         end || K <- Keys],
    Lanes = [L || {B1, wide, L} <- maps:get(lanes, call(A, ?PS, get_local_state, [])),
                  B1 =:= B],
    ?assert(length(Lanes) > 1).

%% While channel `bulk' carries 8 MiB messages, a small message on the
%% default channel arrives before the large ones are through.
small_passes_large_on_other_channel(_Config) ->
    [A, B] = cluster(2),
    _ = rx(B, rx8),
    Big = binary:copy(<<"x">>, 8 * 1024 * 1024),
    _ = [ok = call(A, ?PS, forward_message, [B, rx8, {big, I, Big},
                                              #{channel => bulk}])
         || I <- [1, 2]],
    ok = call(A, ?PS, forward_message, [B, rx8, small, #{}]),
    wait_rx(B, rx8, fun(Got) -> length(Got) >= 3 end, fun summary/1),
    ?assertEqual([small, {big, 1}, {big, 2}], summary(got(B, rx8))).

%% Funs of arity 0, 1 and 2, for one node and for any: each fires once
%% per transition (down by a drop partition, up on heal).
on_up_on_down_arities(_Config) ->
    [A, B] = cluster(2),
    Col = tether_test_lib:start_collector(),
    ok = call(A, ?PS, on_down, [B, fun() -> Col ! {down0} end]),
    ok = call(A, ?PS, on_down, [B, fun(N) -> Col ! {down1, N} end]),
    ok = call(A, ?PS, on_down, [any, fun(N, C) -> Col ! {down2, N, C} end]),
    ok = call(A, ?PS, on_up, [B, fun() -> Col ! {up0} end]),
    ok = call(A, ?PS, on_up, [any, fun(N) -> Col ! {up1, N} end]),
    ok = call(A, ?PS, on_up, [B, fun(N, C) -> Col ! {up2, N, C} end]),
    {ok, Ref} = call(A, ?PS, inject_partition, [B, infinity]),
    tether_test_lib:wait_members([A], [A], ?WAIT_MS),
    ok = call(A, ?PS, resolve_partition, [Ref]),
    tether_test_lib:wait_members([A, B], lists:sort([A, B]), ?WAIT_MS),
    Want = lists:sort([{down0}, {down1, B}, {down2, B, default}, {up0},
                       {up1, B}, {up2, B, default}]),
    wait_col(Col, 6),
    timer:sleep(500),
    ?assertEqual(Want, lists:sort(tether_test_lib:collected(Col))).

%% Channel-scoped callbacks name their channel; an unknown channel is
%% refused.
channel_scoped_callbacks(_Config) ->
    [A, B] = cluster(2),
    Col = tether_test_lib:start_collector(),
    ok = call(A, ?PS, on_up, [B, fun(N, C) -> Col ! {up, N, C} end,
                              #{channel => wide}]),
    ok = call(A, ?PS, on_down, [B, fun(N, C) -> Col ! {down, N, C} end,
                                [{channel, bulk}]]),
    ok = call(A, ?PS, on_down, [B, fun(N) -> Col ! {down1, N} end,
                                #{channel => bulk}]),
    {error, {unknown_channel, nope}} =
        call(A, ?PS, on_up, [B, fun() -> ok end, #{channel => nope}]),
    {ok, Ref} = call(A, ?PS, inject_partition, [B, infinity]),
    tether_test_lib:wait_members([A], [A], ?WAIT_MS),
    ok = call(A, ?PS, resolve_partition, [Ref]),
    tether_test_lib:wait_members([A, B], lists:sort([A, B]), ?WAIT_MS),
    wait_col(Col, 3),
    timer:sleep(500),
    ?assertEqual(lists:sort([{down, B, bulk}, {down1, B}, {up, B, wide}]),
                 lists:sort(tether_test_lib:collected(Col))).

%% members, members_for_orchestration, myself, mynode, join, sync_join,
%% leave/1, update_members, reserve, supports_capability,
%% get_local_state.
membership_calls(_Config) ->
    [A, B, C] = Nodes = tether_test_lib:start_tether_nodes(3, opts()),
    ok = call(B, ?PS, join, [call(A, ?PS, myself, [])]),
    ok = call(C, ?PS, sync_join, [A]),
    All = lists:sort(Nodes),
    tether_test_lib:wait_members(Nodes, All, ?WAIT_MS),
    ?assertEqual(All, lists:sort(call(B, ?PS, members, []))),
    A = call(A, ?PS, mynode, []),
    #{name := A, listen_addrs := [#{ip := {127, 0, 0, 1}, port := P}],
      channels := #{default := #{parallelism := 1}, wide := #{parallelism := 4}}}
        = call(A, ?PS, myself, []),
    ?assert(is_integer(P)),
    Specs = tether_test_lib:poll(
              fun() -> call(A, ?PS, members_for_orchestration, []) end,
              fun(L) -> lists:all(fun(#{listen_addrs := [#{port := _}]}) -> true;
                                     (_) -> false end, L) end, ?WAIT_MS),
    ?assertEqual(All, lists:sort([N || #{name := N} <- Specs])),
    ok = call(A, ?PS, leave, [C]),
    tether_test_lib:wait_members([A, B], lists:sort([A, B]), ?WAIT_MS),
    ok = call(A, ?PS, update_members, [[A, B, C]]),
    tether_test_lib:wait_members(Nodes, All, ?WAIT_MS),
    ok = call(A, ?PS, update_members, [[A, C]]),
    tether_test_lib:wait_members([A, C], lists:sort([A, C]), ?WAIT_MS),
    ok = call(A, ?PS, reserve, [tag1]),
    ok = call(A, ?PS, reserve, [tag1]),
    _ = [ok = call(A, ?PS, reserve, [list_to_atom("t" ++ integer_to_list(I))])
         || I <- lists:seq(2, 16)],
    {error, no_available_slots} = call(A, ?PS, reserve, [tag17]),
    true = call(A, ?PS, supports_capability, [ack]),
    false = call(A, ?PS, supports_capability, [monotonic_channels]),
    true = call(A, ?PS, supports_capability, [?PS, causal_label]),
    true = call(A, ?PS, supports_capability, [transitive]),
    false = call(A, ?PS, supports_capability, [lists, ack]),
    #{members := _, partitions := [], reservations := Rs, stats := _}
        = call(A, ?PS, get_local_state, []),
    ?assertEqual(16, length(Rs)).

%% inject_partition isolates a node from all others (drop) and heals
%% itself after its TTL; partitions/0 lists it meanwhile;
%% resolve_partition of an unknown ref is not_found.
inject_partition_ttl(_Config) ->
    [A, B, C] = cluster(3),
    {ok, Ref} = call(A, ?PS, inject_partition, [#{name => C}, 1500]),
    ?assert(is_reference(Ref)),
    {ok, [{Ref, #{name := C}}]} = call(A, ?PS, partitions, []),
    tether_test_lib:wait_members([A, B], lists:sort([A, B]), ?WAIT_MS),
    tether_test_lib:wait_members([C], [C], ?WAIT_MS),
    tether_test_lib:wait_members([A, B, C], lists:sort([A, B, C]), ?WAIT_MS),
    {ok, []} = call(A, ?PS, partitions, []),
    {error, not_found} = call(A, ?PS, resolve_partition, [Ref]),
    {error, {unknown_node, 'nobody@127.0.0.1'}} =
        call(A, ?PS, inject_partition, ['nobody@127.0.0.1', 100]),
    {error, {bad_ttl, -1}} = call(A, ?PS, inject_partition, [B, -1]).

%% A node that comes back on another port: connect(Spec, #{prune =>
%% true}) returns the spec it had before.
connect_prune(_Config) ->
    [A] = tether_test_lib:start_tether_nodes(1, opts()),
    Name = "psprune" ++ integer_to_list(erlang:unique_integer([positive])),
    X = start_named(Name),
    ok = call(A, ?PS, connect, [X]),
    #{listen_addrs := [#{port := P1}]} = Old = call(X, ?PS, myself, []),
    ok = tether_test_lib:stop_case_peer(X),
    X = start_named(Name),
    #{listen_addrs := [#{port := P2}]} = New = call(X, ?PS, myself, []),
    ?assertNotEqual(P1, P2),
    {ok, [Old]} = call(A, ?PS, connect, [New, #{prune => true}]),
    {ok, []} = call(A, ?PS, connect, [New, [{prune, true}]]),
    ok = call(A, ?PS, connect, [New]),
    {error, nodedown} = call(A, ?PS, connect, ['gone@127.0.0.1']).

%% A sends m1 to C, then m2 to B, whose relay answers it with m3 to C.
%% A defer partition holds m1 (A|C only). Without a label C gets m3
%% first; under a causal label C holds m3 until m1 arrives on heal.
causal_reply_never_overtakes(_Config) ->
    [A, B, C] = cluster(3),
    _ = rx(C, rxc),
    Opts = [{label, undefined}, {label, chat}],
    Orders = [begin
                  Relay = spawn(B, ?MODULE, relay_loop, [C, rxc, L]),
                  {ok, Ref} = call(A, tether, partition, [[A], [C], defer]),
                  O = case L of
                          undefined -> #{};
                          _ -> #{causal_label => L}
                      end,
                  ok = call(A, ?PS, forward_message, [C, rxc, {m1, L}, O]),
                  ok = call(A, ?PS, forward_message, [Relay, {m2, L}, O]),
                  timer:sleep(1000),
                  Early = got(C, rxc),
                  ok = call(A, tether, heal, [Ref]),
                  wait_rx(C, rxc, fun(G) -> length(G) >= 2 end),
                  Relay ! stop,
                  Got = got(C, rxc),
                  _ = call(C, erlang, send, [rxc, clear]),
                  {L, Early, Got}
              end || {label, L} <- Opts],
    [{undefined, [{m3, undefined}], [{m3, undefined}, {m1, undefined}]},
     {chat, [], [{m1, chat}, {m3, chat}]}] = Orders,
    0 = call(C, tether_causal, held, []).

%% barrel_p2p's remaining calls in tether: lookups, service events,
%% views, global_register/get_proxy, service holders, migrate_peer.
barrel_p2p_calls(_Config) ->
    [A, B] = cluster(2),
    Col = tether_test_lib:start_collector(),
    ok = call(B, tether, subscribe_services, [Col]),
    {ok, H} = call(A, tether, start_service_holder, [svc_held]),
    {ok, [{A, H, _}]} = tether_test_lib:poll(
                          fun() -> call(B, tether, lookup, [svc_held]) end,
                          fun(R) -> R =/= {error, not_found} end, ?WAIT_MS),
    {ok, H} = call(A, tether, lookup_local, [svc_held]),
    {error, not_found} = call(B, tether, lookup_local, [svc_held]),
    {error, not_found} = call(B, tether, lookup, [nothing_here]),
    [svc_held] = call(B, tether, list_services, []),
    ok = call(A, tether, stop_service_holder, [H]),
    ok = call(A, tether, stop_service_holder, [H]),
    {error, not_found} = tether_test_lib:poll(
                           fun() -> call(B, tether, lookup, [svc_held]) end,
                           fun(R) -> R =:= {error, not_found} end, ?WAIT_MS),
    wait_col(Col, 2),
    [{tether_service, up, svc_held, A}, {tether_service, down, svc_held, A}]
        = tether_test_lib:collected(Col),
    ok = call(B, tether, unsubscribe_services, [Col]),
    ok = call(B, tether, subscribe_services, []),
    [B] = call(A, tether, active_view, []),
    [] = call(A, tether, passive_view, []),
    Self = self(),
    Holder = spawn(A, ?MODULE, hold_name, [p2p_name, Self]),
    {ok, Holder} = receive {held, Holder, R1} -> R1 after ?CALL_MS -> timeout end,
    Other = spawn(B, ?MODULE, hold_name, [p2p_name, Self]),
    {error, {already_registered, Holder}} =
        receive {held, Other, R2} -> R2 after ?CALL_MS -> timeout end,
    {ok, Holder} = tether_test_lib:poll(
                     fun() -> call(B, tether, get_proxy, [p2p_name]) end,
                     fun(R) -> R =/= not_found end, ?WAIT_MS),
    not_found = call(B, tether, get_proxy, [nobody_here]),
    {error, not_supported} = call(A, tether, migrate_peer, [B]),
    {error, not_supported} = call(A, tether, migrate_peer, [B, #{timeout => 1}]).

%% send_message/2 reaches the peer service on the other node, whose
%% receive_message/3 delivers {forward_message, Ref, Msg} with
%% process_forward/2; decode/1 is the identity; leave/0 leaves.
peer_messages(_Config) ->
    [A, B] = cluster(2),
    _ = rx(B, rxp),
    ok = call(A, ?PS, send_message, [B, {forward_message, rxp, via_peer}]),
    ok = call(A, ?PS, send_message, [B, something_else]),
    ok = call(B, ?PS, process_forward, [rxp, local]),
    ok = call(B, ?PS, process_forward, [nobody_here, lost]),
    ok = call(B, ?PS, receive_message, [A, default, {forward_message, rxp, direct}]),
    wait_rx(B, rxp, fun(G) -> lists:sort(G) =:= [direct, local, via_peer] end),
    tether_test_lib:poll(fun() -> call(B, tether_channel, stats, []) end,
                         fun(S) -> maps:get(peer_messages_ignored, S, 0) >= 1 end,
                         ?WAIT_MS),
    {x, [1]} = call(A, ?PS, decode, [{x, [1]}]),
    true = is_pid(call(A, erlang, whereis, [?PS])),
    ok = call(B, ?PS, leave, []),
    tether_test_lib:wait_members([A], [A], ?WAIT_MS).

%% Documented errors, no crash.
bad_input(_Config) ->
    [A, B] = cluster(2),
    _ = rx(B, rx9),
    E = fun(Args) -> call(A, ?PS, forward_message, Args) end,
    {error, {unknown_channel, nope}} = E([{rx9, B}, m, #{channel => nope}]),
    {error, {bad_options, 42}} = E([{rx9, B}, m, 42]),
    {error, {bad_options, [ack | b]}} = E([{rx9, B}, m, [ack | b]]),
    {error, {bad_option, {ack, maybe}}} = E([{rx9, B}, m, #{ack => maybe}]),
    {error, {bad_option, {colour, red}}} = E([{rx9, B}, m, [{colour, red}]]),
    {error, {bad_option, {ack_timeout_ms, 0}}} =
        E([{rx9, B}, m, #{ack => true, ack_timeout_ms => 0}]),
    {error, {bad_option, {1, 2, 3}}} = E([{rx9, B}, m, [{1, 2, 3}]]),
    {error, {bad_option, {transitive, 1}}} = E([{rx9, B}, m, #{transitive => 1}]),
    {error, {bad_server_ref, "str"}} = E(["str", m, #{}]),
    {error, {bad_server_ref, {1, 2}}} = call(A, ?PS, forward_message, [B, {1, 2}, m, #{}]),
    {error, {bad_node, "n"}} = call(A, ?PS, cast_message, ["n", rx9, m, #{}]),
    {error, noproc} = E([{global, nobody_here}, m, #{}]),
    {error, noproc} = E([{via, tether, nobody_here}, m, #{ack => true}]),
    {error, nodedown} = E([{rx9, 'nobody@127.0.0.1'}, m, #{}]),
    {error, {bad_spec, 42}} = call(A, ?PS, join, [42]),
    {error, {bad_spec, #{}}} = call(A, ?PS, connect, [#{}]),
    {error, {bad_option, {prune, 3}}} = call(A, ?PS, connect, [B, #{prune => 3}]),
    {error, {bad_spec, x}} = call(A, ?PS, update_members, [x]),
    {error, {bad_fun, x}} = call(A, ?PS, on_up, [B, x]),
    {error, {bad_fun, _}} = call(A, ?PS, on_up, [B, fun(_, _, _) -> ok end]),
    {error, {bad_node, "b"}} = call(A, ?PS, on_down, ["b", fun() -> ok end]),
    {error, {bad_options, 7}} = call(A, ?PS, on_down, [B, fun() -> ok end, 7]),
    {error, {bad_tag, "t"}} = call(A, ?PS, reserve, ["t"]),
    %% Forged and malformed envelopes to the channel process are counted.
    {tether_channel, B} ! {tether_channel_env, A, default, 0, <<"forged">>},
    {tether_channel, B} ! {tether_channel_env, A, nope, 0, <<"x">>},
    {tether_channel, B} ! garbage,
    tether_test_lib:poll(fun() -> call(B, tether_channel, stats, []) end,
                         fun(S) -> maps:is_key(bad_lane, S) andalso
                                       maps:is_key(unexpected, S) andalso
                                       lists:any(fun(K) -> lists:prefix("refused", atom_to_list(K)) end,
                                                 maps:keys(S)) end, ?WAIT_MS),
    ok = call(A, ?PS, forward_message, [{rx9, B}, still_fine, #{ack => true}]),
    wait_rx(B, rx9, fun(Got) -> Got =:= [still_fine] end).

%%% Run on the peers

%% A registered receiver that keeps what it gets.
rx_start(Name) ->
    Pid = spawn(?MODULE, rx_loop, [[]]),
    true = register(Name, Pid),
    Pid.

rx_loop(Acc) ->
    receive
        {'$rx_get', From} -> From ! {'$rx', lists:reverse(Acc)}, rx_loop(Acc);
        clear -> rx_loop([]);
        Msg -> rx_loop([Msg | Acc])
    end.

%% Sends 1..N to Name on Node (or {I, Big} with option big, or {Key, I}
%% with option keys, the keys in turn), pausing SleepEvery ms every 20.
send_many(Node, Name, N, Opts0, Pause) ->
    Keys = maps:get(keys, Opts0, undefined),
    Big = case maps:get(big, Opts0, undefined) of
              undefined -> undefined;
              Size -> binary:copy(<<"b">>, Size)
          end,
    Opts = maps:without([keys, big], Opts0),
    lists:foreach(
      fun(I) ->
              {Msg, O} = case {Keys, Big} of
                             {undefined, undefined} -> {I, Opts};
                             {undefined, _} -> {{I, Big}, Opts};
                             _ ->
                                 K = lists:nth(1 + I rem length(Keys), Keys),
                                 {{K, I}, Opts#{partition_key => K}}
                         end,
              ok = tether_peer_service:forward_message(Node, Name, Msg, O),
              case Pause > 0 andalso I rem 20 =:= 0 of
                  true -> timer:sleep(Pause);
                  false -> ok
              end
      end, lists:seq(1, N)).

%% Registers itself as Name (tether:global_register/1), tells Parent,
%% then stays.
hold_name(Name, Parent) ->
    Parent ! {held, self(), tether:global_register(Name)},
    receive stop -> ok end.

%% On {m2, L}: sends {m3, L} to Name on Node under the same label.
relay_loop(Node, Name, L) ->
    receive
        {m2, L} ->
            O = case L of
                    undefined -> #{};
                    _ -> #{causal_label => L}
                end,
            ok = tether_peer_service:forward_message(Node, Name, {m3, L}, O),
            relay_loop(Node, Name, L);
        stop ->
            ok
    end.

%% Sends one message and waits for an undelivered report.
send_await(Node, Name, Msg, Opts, Timeout) ->
    ok = tether_peer_service:forward_message(Node, Name, Msg, Opts),
    receive
        {tether_undelivered, _, _, _} = R -> R
    after Timeout -> no_report
    end.

%%% Helpers

opts() ->
    #{overlapping_partitions => false,
      env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS},
              {channels, ?CHANNELS}]}.

cluster(N) ->
    tether_test_lib:start_cluster(N, opts(), ?WAIT_MS).

start_named(Name) ->
    P = tether_test_lib:start_case_peer(Name, #{connection => dist,
                                                 overlapping_partitions => false}),
    X = tether_test_lib:peer_node(P),
    {ok, _} = tether_test_lib:start_tether(X, maps:get(env, opts())),
    X.

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, ?CALL_MS).

spawn_on(Node, M, F, A) ->
    spawn(Node, M, F, A).

rx(Node, Name) ->
    call(Node, ?MODULE, rx_start, [Name]).

got(Node, Name) ->
    {Name, Node} ! {'$rx_get', self()},
    receive
        {'$rx', L} -> L
    after ?CALL_MS -> ct:fail({no_answer, Name})
    end.

wait_rx(Node, Name, Check) ->
    wait_rx(Node, Name, Check, fun(L) -> L end).

%% Waits until Check(Got) holds; a timeout reports Show(Got).
wait_rx(Node, Name, Check, Show) ->
    Deadline = erlang:monotonic_time(millisecond) + ?WAIT_MS,
    wait_rx1(Node, Name, Check, Show, Deadline).

wait_rx1(Node, Name, Check, Show, Deadline) ->
    Got = got(Node, Name),
    case Check(Got) of
        true ->
            ok;
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> ct:fail({timeout_waiting, Show(Got)});
                false -> timer:sleep(50),
                         wait_rx1(Node, Name, Check, Show, Deadline)
            end
    end.

%% Messages with their large binaries left out.
summary(L) ->
    [case M of
         {big, I, _} -> {big, I};
         {I, Bin} when is_binary(Bin) -> {I, byte_size(Bin)};
         _ -> M
     end || M <- L].

wait_col(Col, N) ->
    _ = tether_test_lib:poll(fun() -> tether_test_lib:collected(Col) end,
                             fun(L) -> length(L) >= N end, ?WAIT_MS),
    ok.

%% Kills the distribution connection between A and B Times times, Every
%% ms apart (tether redials).
kill_connections(A, B, Times, Every) ->
    lists:foreach(fun(_) ->
                          timer:sleep(Every),
                          _ = call(A, erlang, disconnect_node, [B])
                  end, lists:seq(1, Times)).
