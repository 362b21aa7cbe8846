%% Messaging between BEAM members and a C-node (tether/messaging.h, the
%% C side of tether_peer_service:forward_message), with two BEAM nodes
%% running tether and one real C-node loading the test plug-in msgtest
%% (c_src/test/plugins/msgtest.c), whose service `msgsink' keeps every
%% message it gets and runs the C API on request:
%%
%% - C -> BEAM with ack while the connection is killed again and again:
%%   every message arrives exactly once, in order;
%% - BEAM -> C with ack across a defer partition: held, then delivered
%%   once each, in order, on heal (duplicates dropped by the C lane);
%% - channels and partition keys both ways: FIFO per key on a channel of
%%   four lanes;
%% - give-ups reported to the C sender: noproc and timeout;
%% - up/down callbacks registered from C fire once per transition;
%% - bad input: an unknown channel, a non-member without ack.
%%
%% Run alone: TETHER_TEST_EPMD_PORT=P scripts/ct.sh
%% --suite test/tether_cnode_messaging_SUITE
-module(tether_cnode_messaging_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2,
         end_per_testcase/2]).
-export([c_to_beam_ack_across_killed_connections/1,
         beam_to_c_ack_across_defer_partition/1,
         c_to_beam_ack_across_partitions/1,
         large_messages_in_parts_both_ways/1,
         partition_keys_keep_order_both_ways/1, c_sender_told_of_give_ups/1,
         up_down_callbacks_once_per_transition/1, bad_input/1]).

-define(HB_MS, 200).
-define(TTL_MS, 1500).
-define(WAIT_MS, 30000).
-define(CALL_MS, 20000).
-define(PS, tether_peer_service).
-define(PEERS, tether_peer_service_SUITE). % receivers, senders, helpers
-define(SINK, msgsink).

all() ->
    [c_to_beam_ack_across_killed_connections,
     beam_to_c_ack_across_defer_partition, c_to_beam_ack_across_partitions,
     large_messages_in_parts_both_ways,
     partition_keys_keep_order_both_ways, c_sender_told_of_give_ups,
     up_down_callbacks_once_per_transition, bad_input].

init_per_suite(Config) ->
    tether_test_lib:require_env(Config).

end_per_suite(_Config) ->
    ok.

init_per_testcase(_Case, Config) ->
    Config.

end_per_testcase(_Case, Config) ->
    ok = tether_test_lib:stop_case(),
    Config.

%%% Cases

%% The C-node sends 1..N with ack to a process on B, in rounds, and B
%% drops its connection to the C-node before each round (and once more
%% while messages flow): B's receiver gets each once, in order.
c_to_beam_ack_across_killed_connections(Config) ->
    {CN, [_A, B]} = setup(Config),
    _ = call(B, ?PEERS, rx_start, [rxc1]),
    Rounds = 6,
    Per = 50,
    Killer = spawn_link(fun() -> ?PEERS:kill_connections(B, CN, 3, 100) end),
    lists:foreach(
      fun(R) ->
              _ = call(B, erlang, disconnect_node, [CN]),
              [ok = forward(CN, B, rxc1, I, #{ack => true})
               || I <- lists:seq(R * Per + 1, (R + 1) * Per)]
      end, lists:seq(0, Rounds - 1)),
    N = Rounds * Per,
    wait_rx(B, rxc1, fun(Got) -> length(Got) >= N end),
    timer:sleep(1000),
    ?assertEqual(lists:seq(1, N), ?PEERS:got(B, rxc1)),
    unlink(Killer),
    %% The kills cost transmissions, which the C lanes made good.
    #{retransmissions := Re} = Stats = sink(CN, stats),
    ct:log("C-node messaging stats: ~p", [Stats]),
    ?assert(Re > 0).

%% A defer partition between A and the C-node holds every transmission
%% of A's ack messages (retransmissions too); on heal the C-node's lane
%% delivers each once, in order.
beam_to_c_ack_across_defer_partition(Config) ->
    {CN, [A, _B]} = setup(Config),
    {ok, Ref} = call(A, tether, partition, [[A], [CN], defer]),
    ok = call(A, ?PEERS, send_many, [CN, ?SINK, 50, #{ack => true}, 0]),
    timer:sleep(1500), % several retransmissions pile up
    ?assertEqual([], received(CN)),
    ok = call(A, tether, heal, [Ref]),
    wait_until(fun() -> received(CN) end, fun(L) -> length(L) >= 50 end),
    timer:sleep(1000),
    ?assertEqual(lists:seq(1, 50), received(CN)),
    #{retransmissions := Re} = call(A, tether_channel, stats, []),
    ?assert(Re > 0).

%% The C-node's ack messages to B wait behind a defer partition (held by
%% its engine, retransmissions too) and then behind a drop partition
%% (refused, retransmitted with backoff); each heal brings them, once
%% each, in order.
c_to_beam_ack_across_partitions(Config) ->
    {CN, [A, B]} = setup(Config),
    _ = call(B, ?PEERS, rx_start, [rxc5]),
    lists:foreach(
      fun({Mode, From}) ->
              {ok, Ref} = call(A, tether, partition, [[A, B], [CN], Mode]),
              [ok = forward(CN, B, rxc5, I, #{ack => true})
               || I <- lists:seq(From, From + 29)],
              timer:sleep(1500),
              ?assertEqual(lists:seq(1, From - 1), ?PEERS:got(B, rxc5)),
              ok = call(A, tether, heal, [Ref]),
              wait_rx(B, rxc5, fun(Got) -> length(Got) >= From + 29 end)
      end, [{defer, 1}, {drop, 31}]),
    timer:sleep(1000),
    ?assertEqual(lists:seq(1, 60), ?PEERS:got(B, rxc5)).

%% 200 KiB messages travel in 8 KiB parts, one in flight per lane: the
%% C lane's parts join on the BEAM and the BEAM lane's on the C-node,
%% each message whole, once, in order, a small one behind them too.
large_messages_in_parts_both_ways(Config) ->
    {CN, [A, B]} = setup(Config),
    _ = call(B, ?PEERS, rx_start, [rxc2]),
    Big = fun(I) -> {I, binary:copy(<<I>>, 200 * 1024)} end,
    [ok = forward(CN, B, rxc2, Big(I), #{ack => true}) || I <- [1, 2, 3]],
    ok = forward(CN, B, rxc2, small, #{ack => true}),
    wait_rx(B, rxc2, fun(Got) -> length(Got) >= 4 end),
    ?assertEqual([Big(1), Big(2), Big(3), small], ?PEERS:got(B, rxc2)),
    ok = call(A, ?PEERS, send_many,
              [CN, ?SINK, 3, #{ack => true, big => 200 * 1024}, 0]),
    wait_until(fun() -> received(CN) end, fun(L) -> length(L) >= 3 end),
    Blob = binary:copy(<<"b">>, 200 * 1024),
    ?assertEqual([{I, Blob} || I <- [1, 2, 3]], received(CN)).

%% Channel `wide' has four lanes on every member. {Key, I} sent with
%% partition_key Key arrive in the order of I per key, C -> BEAM and
%% BEAM -> C; the channel's parallelism is the one configured.
partition_keys_keep_order_both_ways(Config) ->
    {CN, [A, B]} = setup(Config),
    ?assertEqual(4, sink(CN, {parallelism, wide})),
    _ = call(B, ?PEERS, rx_start, [rxc3]),
    Keys = [k1, {k, 2}, <<"k3">>, 4],
    N = 200,
    [ok = forward(CN, B, rxc3, {K, I},
                  #{ack => true, channel => wide, partition_key => K})
     || I <- lists:seq(1, N), K <- [lists:nth(1 + I rem 4, Keys)]],
    wait_rx(B, rxc3, fun(Got) -> length(Got) >= N end),
    assert_fifo_per_key(?PEERS:got(B, rxc3), N),
    ok = call(A, ?PEERS, send_many,
              [CN, ?SINK, N, #{ack => true, channel => wide, keys => Keys}, 0]),
    wait_until(fun() -> received(CN) end, fun(L) -> length(L) >= N end),
    assert_fifo_per_key(received(CN), N).

%% With ack, a name with no process on B is reported noproc, and a
%% message behind a drop partition past its ack_timeout_ms is reported
%% timeout, both as {tether_undelivered, ServerRef, Msg, Reason}.
c_sender_told_of_give_ups(Config) ->
    {CN, [A, B]} = setup(Config),
    Self = self(),
    ok = forward(CN, B, nobody, m1, #{ack => true, report_to => Self}),
    receive
        {tether_undelivered, nobody, m1, noproc} -> ok
    after ?WAIT_MS -> ct:fail(no_noproc_report)
    end,
    _ = call(B, ?PEERS, rx_start, [rxc4]),
    {ok, _} = call(A, tether, partition, [[A, B], [CN], drop]),
    ok = forward(CN, B, rxc4, m2, #{ack => true, ack_timeout_ms => 1000,
                                    report_to => Self}),
    receive
        {tether_undelivered, rxc4, m2, timeout} -> ok
    after ?WAIT_MS -> ct:fail(no_timeout_report)
    end,
    ?assertEqual([], ?PEERS:got(B, rxc4)).

%% Callbacks registered on the C-node for any node, for B alone, and
%% scoped to channel `wide': a drop partition cutting the C-node off and
%% its heal make each fire exactly once per transition and node.
up_down_callbacks_once_per_transition(Config) ->
    {CN, [A, B]} = setup(Config),
    Self = self(),
    ok = sink(CN, {on_event, up, any, undefined, Self}),
    ok = sink(CN, {on_event, down, any, undefined, Self}),
    ok = sink(CN, {on_event, down, B, wide, Self}),
    ok = sink(CN, {on_event, up, B, wide, Self}),
    {ok, Ref} = call(A, tether, partition, [[A, B], [CN], drop]),
    wait_members(CN, [CN]),
    ok = call(A, tether, heal, [Ref]),
    wait_members(CN, lists:sort([CN, A, B])),
    timer:sleep(2 * ?TTL_MS), % no repeats come later
    Events = drain_events([]),
    Want = lists:sort([{down, A, undefined}, {down, B, undefined},
                       {down, B, wide}, {up, A, undefined},
                       {up, B, undefined}, {up, B, wide}]),
    ?assertEqual(Want, lists:sort(Events)).

%% Documented errors, no crash: an unknown channel, a non-member without
%% ack; the C-node still works after garbage sent to tether_channel.
bad_input(Config) ->
    {CN, [_A, B]} = setup(Config),
    ?assertEqual({error, enotfound}, sink(CN, {parallelism, nope})),
    ?assertEqual({error, enotfound},
                 forward(CN, B, rx, m, #{channel => nope})),
    ?assertEqual({error, eclosed},
                 forward(CN, 'nobody@127.0.0.1', rx, m, #{})),
    ?assertEqual({error, enotfound},
                 sink(CN, {on_event, up, any, nope, self()})),
    [{tether_channel, CN} ! G
     || G <- [garbage, {tether_channel_env, B, default, 0, <<"junk">>},
              {tether_channel_env, B, wide, 99, <<>>},
              {'$tether_held', B, <<131, 1>>}, {tether_member, up, 42}]],
    _ = call(B, ?PEERS, rx_start, [rxc6]),
    ok = forward(CN, B, rxc6, still_fine, #{ack => true}),
    wait_rx(B, rxc6, fun(Got) -> Got =:= [still_fine] end),
    #{malformed := M, refused := R} = sink(CN, stats),
    ?assert(M + R >= 4).

%%% Helpers

%% Two BEAM members with channel `wide' (4 lanes) and a C-node joined to
%% them with the same channel and the msgtest plug-in.
setup(Config) ->
    Bs = [B1 | _] = tether_test_lib:start_cluster(2, opts(), ?WAIT_MS),
    Plugin = filename:join(filename:dirname(tether_test_lib:rpctest_plugin()),
                           "msgtest.so"),
    C = tether_test_lib:start_case_cnode(
          #{name => tether_test_lib:unique_name(tcm), heartbeat_ms => ?HB_MS,
            ttl_ms => ?TTL_MS, join => [B1],
            extra_args => ["--load", Plugin, "--channel", "wide:4"],
            log_dir => ?config(priv_dir, Config)}, 20),
    CN = tether_test_lib:cnode_node(C),
    tether_test_lib:wait_members([CN | Bs], lists:sort([CN | Bs]), ?WAIT_MS),
    {CN, Bs}.

opts() ->
    #{overlapping_partitions => false,
      env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS},
              {channels, #{wide => #{parallelism => 4}}}]}.

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, ?CALL_MS).

sink(CN, Req) ->
    gen_server:call({?SINK, CN}, Req, ?CALL_MS).

forward(CN, Peer, To, Msg, Opts) ->
    sink(CN, {forward, Peer, To, Msg, Opts}).

received(CN) ->
    sink(CN, received).

wait_rx(Node, Name, Check) ->
    wait_until(fun() -> ?PEERS:got(Node, Name) end, Check).

wait_until(Get, Check) ->
    tether_test_lib:poll(Get, Check, ?WAIT_MS).

wait_members(Node, Expected) ->
    tether_test_lib:wait_members([Node], Expected, ?WAIT_MS).

%% Each key's messages {Key, I} in increasing I, all N there.
assert_fifo_per_key(Got, N) ->
    ?assertEqual(N, length(Got)),
    Keys = lists:usort([K || {K, _} <- Got]),
    [begin
         Is = [I || {K1, I} <- Got, K1 =:= K],
         ?assertEqual(lists:sort(Is), Is)
     end || K <- Keys],
    ok.

drain_events(Acc) ->
    receive
        {msgtest_event, Dir, Node, Chan} -> drain_events([{Dir, Node, Chan} | Acc])
    after 0 -> Acc
    end.
