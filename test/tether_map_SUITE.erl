%% Replicated maps with three BEAM nodes (OTP peers running tether):
%%
%% - puts and removes on every node, seen alike everywhere;
%% - one key written concurrently on all three converges with no
%%   anti-entropy round (map_sync_ms is ten minutes here);
%% - a drop partition diverges and converges on heal; a defer partition
%%   delivers the held writes in order on heal (a subscriber across it
%%   sees them in write order);
%% - subscriptions: local and remote changes, once per change of what
%%   map_get answers, none after unsubscribe or for a dead subscriber;
%% - one key rewritten 100,000 times: one entry, flat memory, a flat
%%   sync;
%% - 100,000 keys, 10 changed on the other side of a partition: the
%%   anti-entropy bytes after the heal (printed);
%% - bad input: unknown maps, validators (refusing, crashing, not a
%%   fun), values too large, bad options;
%% - persistence: a node killed with SIGKILL (its log's last record torn
%%   on purpose) and started again with the same name and data_dir comes
%%   back with the map from its log alone, then catches up with the
%%   writes and removes made while it was down; the same for a C-node
%%   (--map-persist, --data-dir) killed with SIGKILL;
%% - a C service on a C-node (c_src/test/plugins/maptest.c) subscribed to
%%   a map sees the BEAM nodes' puts and removes once per visible change,
%%   in order, and iterates the map;
%% - a C-node hosting the map (tether_cnode --map m) sees the BEAM nodes'
%%   puts and removes and answers {map_get, m, Key} and {map_to_list, m}
%%   on its `tether' process as the facade does.
%%
%% Run alone: scripts/ct.sh --suite test/tether_map_SUITE
-module(tether_map_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include_lib("kernel/include/file.hrl").

-export([all/0, suite/0]).
-export([puts_and_removes_everywhere/1, concurrent_puts_converge/1,
         drop_partition/1, defer_partition/1, subscriptions/1,
         one_key_rewritten/1, ten_changed_of_100000/1, bad_input/1,
         cnode_hosts_a_map/1, persisted_map_survives_kill/1,
         cnode_persisted_map_survives_kill/1,
         cnode_service_subscribes_and_iterates/1]).
%% Run on the peers.
-export([rewrite/3, fill/3, relay/1]).

-define(HB_MS, 200).
-define(TTL_MS, 1000).
-define(WAIT_MS, 30000).
-define(CALL_MS, 60000).
-define(SYNC_MS, 600000).

all() ->
    [puts_and_removes_everywhere, concurrent_puts_converge, drop_partition,
     defer_partition, subscriptions, one_key_rewritten, ten_changed_of_100000,
     bad_input, cnode_hosts_a_map, persisted_map_survives_kill,
     cnode_persisted_map_survives_kill,
     cnode_service_subscribes_and_iterates].

suite() ->
    [{ct_hooks, [tether_case_hook]}].

%%% Cases

puts_and_removes_everywhere(_Config) ->
    Bs = cluster([{maps, [m]}]),
    _ = [ok = call(B, tether, map_put, [m, {B, I}, I])
         || B <- Bs, I <- lists:seq(1, 20)],
    [B1, B2, B3] = Bs,
    ok = call(B2, tether, map_remove, [m, {B1, 1}]),
    ok = call(B3, tether, map_remove, [m, {B2, 2}]),
    Expected = lists:sort([{{B, I}, I} || B <- Bs, I <- lists:seq(1, 20)]
                          -- [{{B1, 1}, 1}, {{B2, 2}, 2}]),
    converge(Bs, m, Expected),
    [?assertEqual(58, call(B, tether, map_size, [m])) || B <- Bs],
    [?assertEqual({ok, 5}, call(B, tether, map_get, [m, {B3, 5}])) || B <- Bs],
    [?assertEqual(not_found, call(B, tether, map_get, [m, {B1, 1}]))
     || B <- Bs],
    ?assertEqual(lists:sort([K || {K, _} <- Expected]),
                 lists:sort(call(B1, tether, map_keys, [m]))).

%% One key written on all three at once (each put is applied locally and
%% sent with its stamp): all agree on one of the three values once the
%% writes crossed, and no anti-entropy round ran meanwhile.
concurrent_puts_converge(_Config) ->
    Bs = cluster([{maps, [m]}]),
    timer:sleep(500), % the rounds of hosts meeting are over
    Rounds = [ae_rounds(B, m) || B <- Bs],
    Parent = self(),
    _ = [spawn_link(fun() -> Parent ! {put, B, call(B, tether, map_put,
                                                    [m, k, B])} end)
         || B <- Bs],
    [receive {put, B, ok} -> ok end || B <- Bs],
    V = poll(fun() -> lists:usort([call(B, tether, map_get, [m, k])
                                   || B <- Bs]) end,
             fun(L) -> length(L) =:= 1 end),
    ct:pal("concurrent puts converged on ~p", [V]),
    ?assertEqual(Rounds, [ae_rounds(B, m) || B <- Bs]).

drop_partition(_Config) ->
    [B1, B2, B3] = Bs = cluster([{maps, [m]}]),
    ok = call(B1, tether, map_put, [m, a, 0]),
    converge(Bs, m, [{a, 0}]),
    {ok, Ref} = call(B1, tether, partition, [[B1], [B2, B3], drop]),
    ok = call(B1, tether, map_put, [m, a, 1]),
    ok = call(B1, tether, map_put, [m, b, 1]),
    ok = call(B3, tether, map_put, [m, c, 3]),
    ok = call(B2, tether, map_remove, [m, a]),
    timer:sleep(500),
    ?assertEqual(not_found, call(B1, tether, map_get, [m, c])),
    ?assertEqual(not_found, call(B2, tether, map_get, [m, b])),
    ok = call(B2, tether, heal, [Ref]),
    %% a's last write was B2's remove.
    converge(Bs, m, [{b, 1}, {c, 3}]).

defer_partition(_Config) ->
    [B1, B2, B3] = Bs = cluster([{maps, [m]}]),
    Relay = start_relay(B2, m),
    {ok, Ref} = call(B1, tether, partition, [[B1], [B2, B3], defer]),
    _ = [ok = call(B1, tether, map_put, [m, k, I]) || I <- lists:seq(1, 20)],
    ok = call(B1, tether, map_remove, [m, k]),
    timer:sleep(1000),
    ?assertEqual(not_found, call(B2, tether, map_get, [m, k])),
    ?assertEqual([], relayed(0)),
    ok = call(B3, tether, heal, [Ref]),
    converge(Bs, m, []),
    Events = relayed(2000),
    ?assertEqual([{put, k, I} || I <- lists:seq(1, 20)] ++ [{remove, k}],
                 Events),
    unlink(Relay).

subscriptions(_Config) ->
    [B1, B2, _] = cluster([{maps, [m]}]),
    Relay = start_relay(B2, m),
    ok = call(B1, tether, map_put, [m, x, 1]),
    ok = call(B2, tether, map_put, [m, y, 2]),
    ok = call(B1, tether, map_put, [m, x, 1]), % the same value: no event
    ok = call(B1, tether, map_remove, [m, x]),
    ok = call(B1, tether, map_remove, [m, x]), % gone already: no event
    ok = call(B2, tether, map_put, [m, y, 3]),
    Events = relayed(1500),
    %% Each key's events in write order (B1's and B2's writes race).
    ?assertEqual(4, length(Events)),
    ?assertEqual([{put, x, 1}, {remove, x}],
                 [E || E <- Events, element(2, E) =:= x]),
    ?assertEqual([{put, y, 2}, {put, y, 3}],
                 [E || E <- Events, element(2, E) =:= y]),
    %% None after unsubscribing.
    ok = call(B2, tether, unsubscribe_map, [m, Relay]),
    ok = call(B1, tether, map_put, [m, z, 1]),
    ?assertEqual([], relayed(1000)),
    ?assertEqual({error, no_such_map},
                 call(B2, tether, subscribe_map, [nope, self()])),
    ?assertEqual({error, no_such_map}, call(B2, tether, unsubscribe_map,
                                            [nope, self()])).

%% One key rewritten 100,000 times on B1: one entry on every node, the
%% term arena of each stays small, the node's memory does not grow with
%% the writes, and an anti-entropy round after it costs the bytes of a
%% one-key map.
one_key_rewritten(_Config) ->
    Bs = [B1 | _] = cluster([{maps, [m]}, {map_sync_ms, 1000}]),
    ok = call(B1, tether, map_put, [m, hot, 0]),
    converge(Bs, m, [{hot, 0}]),
    Mem0 = call(B1, erlang, memory, [total]),
    ok = call(B1, ?MODULE, rewrite, [m, hot, 100000]),
    converge(Bs, m, [{hot, 100000}]),
    [garbage_collect(P) || P <- [self()]],
    Mem1 = call(B1, erlang, memory, [total]),
    Infos = [call(B, tether_map, map_info, [m]) || B <- Bs],
    ct:pal("after 100,000 rewrites: memory ~b -> ~b bytes; map_info ~p",
           [Mem0, Mem1, Infos]),
    [?assertMatch(#{entries := 1, size := 1}, I) || I <- Infos],
    [?assert(maps:get(arena_live_bytes, I) + maps:get(arena_garbage_bytes, I)
             < 128 * 1024) || I <- Infos],
    ?assert(Mem1 - Mem0 < 16 * 1024 * 1024),
    Ae0 = ae_bytes(B1, m),
    timer:sleep(2500), % two rounds
    Ae1 = ae_bytes(B1, m),
    ct:pal("anti-entropy bytes over two rounds after it: ~b", [Ae1 - Ae0]),
    ?assert(Ae1 - Ae0 < 1000).

%% 100,000 keys on B1 copied to B2 (B2 starts hosting the map: a full
%% copy by anti-entropy), then 10 keys changed on B2 behind a drop
%% partition: after the heal both converge, sending only the differing
%% buckets' hashes and the 10 entries.
ten_changed_of_100000(_Config) ->
    [B1, B2, _] = cluster([]),
    ok = call(B1, tether, new_map, [big]),
    ok = call(B1, ?MODULE, fill, [big, 0, 100000]),
    ok = call(B2, tether, new_map, [big]),
    poll(fun() -> call(B2, tether, map_size, [big]) end,
         fun(N) -> N =:= 100000 end),
    {ok, Ref} = call(B1, tether, partition, [[B1], [B2], drop]),
    _ = [ok = call(B2, tether, map_put, [big, K * 9973, changed])
         || K <- lists:seq(0, 9)],
    Before = ae_bytes(B1, big) + ae_bytes(B2, big),
    ok = call(B1, tether, heal, [Ref]),
    poll(fun() -> call(B1, tether, map_get, [big, 9 * 9973]) end,
         fun(V) -> V =:= {ok, changed} end),
    timer:sleep(500),
    Sent = ae_bytes(B1, big) + ae_bytes(B2, big) - Before,
    ct:pal("anti-entropy for 10 changed of 100,000 keys: ~b bytes", [Sent]),
    ?assertEqual(call(B1, tether, map_size, [big]),
                 call(B2, tether, map_size, [big])),
    ?assert(Sent < 256 * 1024).

bad_input(_Config) ->
    [B1 | _] = cluster([]),
    ?assertEqual({error, no_such_map}, call(B1, tether, map_get, [nope, k])),
    ?assertEqual({error, no_such_map},
                 call(B1, tether, map_put, [nope, k, v])),
    ?assertEqual({error, no_such_map}, call(B1, tether, map_remove, [nope, k])),
    ?assertEqual({error, no_such_map}, call(B1, tether, map_keys, [nope])),
    ?assertEqual({error, no_such_map}, call(B1, tether, map_to_list, [nope])),
    ?assertEqual({error, no_such_map}, call(B1, tether, map_size, [nope])),
    ?assertEqual({error, {bad_option, {validator, x}}},
                 call(B1, tether, new_map, [v, #{validator => x}])),
    ?assertEqual({error, {bad_option, {colour, red}}},
                 call(B1, tether, new_map, [v, #{colour => red}])),
    ?assertEqual({error, {bad_option, {tombstone_ttl_ms, 0}}},
                 call(B1, tether, new_map, [v, #{tombstone_ttl_ms => 0}])),
    ?assertEqual({error, {bad_option, [a]}}, call(B1, tether, new_map, [v, [a]])),
    ok = call(B1, tether, new_map, [v, #{validator => fun erlang:'=:='/2}]),
    ok = call(B1, tether, new_map, [v]), % idempotent
    ok = call(B1, tether, map_put, [v, 1, 1]),
    ?assertEqual({error, invalid_value}, call(B1, tether, map_put, [v, 1, 2])),
    ok = call(B1, tether, new_map, [c, #{validator => fun(_, V) -> 1 / V > 0 end}]),
    ?assertEqual({error, invalid_value}, call(B1, tether, map_put, [c, k, 0])),
    ok = call(B1, tether, map_put, [c, k, 1]),
    ?assertEqual({error, invalid_value},
                 call(B1, tether, map_put, [c, k, fun() -> ok end])),
    Big = binary:copy(<<1>>, 5 * 1024 * 1024),
    MiB = binary:copy(<<2>>, 1024 * 1024),
    ok = call(B1, tether, new_map, [b]),
    ?assertEqual({error, too_large}, call(B1, tether, map_put, [b, k, Big])),
    ok = call(B1, tether, map_put, [b, k, MiB]),
    ?assertEqual({ok, MiB}, call(B1, tether, map_get, [b, k])),
    ?assertEqual({ok, 1}, call(B1, tether, map_get, [v, 1])),
    ok = call(B1, tether, delete_map, [b]),
    ?assertEqual({error, no_such_map}, call(B1, tether, map_get, [b, k])),
    ok = call(B1, tether, delete_map, [b]).

%% The C-node (--map m) joins three BEAM hosts: it gets what they wrote
%% before (anti-entropy when the hosts meet) and after, and answers
%% gen_server calls on `tether' as the facade does.
cnode_hosts_a_map(Config) ->
    [B1, B2, _] = Bs = cluster([{maps, [m]}, {map_sync_ms, 1000}]),
    ok = call(B1, tether, map_put, [m, before, {1, <<"x">>}]),
    C = tether_test_lib:start_seeded_cnode(
          Config, #{heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS}, [B1],
          tether_test_lib:unique_name(tmap), ["--map", "m"]),
    CN = tether_test_lib:cnode_node(C),
    tether_test_lib:wait_members([CN | Bs], lists:sort([CN | Bs]), ?WAIT_MS),
    CCall = fun(Req) -> gen_server:call({tether, CN}, Req, ?CALL_MS) end,
    poll(fun() -> CCall({map_get, m, before}) end,
         fun(V) -> V =:= {ok, {1, <<"x">>}} end),
    ok = call(B2, tether, map_put, [m, {k, 2}, [a, "b", 3.5]]),
    poll(fun() -> CCall({map_get, m, {k, 2}}) end,
         fun(V) -> V =:= {ok, [a, "b", 3.5]} end),
    ok = call(B1, tether, map_remove, [m, before]),
    poll(fun() -> CCall({map_get, m, before}) end,
         fun(V) -> V =:= not_found end),
    ?assertEqual([{{k, 2}, [a, "b", 3.5]}], CCall({map_to_list, m})),
    ?assertEqual({error, no_such_map}, CCall({map_get, nope, k})),
    ?assertEqual({error, no_such_map}, CCall({map_to_list, nope})),
    %% The C-node counts as a host: the BEAM nodes know three others.
    poll(fun() -> maps:get(hosts, call(B1, tether_map, map_info, [m])) end,
         fun(N) -> N =:= 3 end).

%%% Run on the peers

%% @private Writes Key := 1..N in map Name, in the calling process.
rewrite(Name, Key, N) ->
    lists:foreach(fun(I) -> ok = tether:map_put(Name, Key, I) end,
                  lists:seq(1, N)).

%% @private Writes keys From..To-1 (value: the key) in map Name.
fill(Name, From, To) ->
    lists:foreach(fun(I) -> ok = tether:map_put(Name, I, I) end,
                  lists:seq(From, To - 1)).

%% @private A subscriber of map Name forwarding its events to To.
relay({Name, To}) ->
    ok = tether:subscribe_map(Name),
    To ! {relay_ready, self()},
    relay_loop(Name, To).

relay_loop(Name, To) ->
    receive
        {tether_map, Name, Event} ->
            To ! {relayed, Event},
            relay_loop(Name, To)
    end.

%% Three nodes host pm with persist on. B1 writes (its own puts are
%% fsync'ed before map_put returns), B2 writes too (B1 logs them in the
%% background); B1 is killed with SIGKILL, its log gets a torn last
%% record, B2 and B3 write and remove meanwhile, then stop hosting pm; B1
%% started again with the same name and data_dir has the map from its
%% log alone; B2 and B3 host pm again from their logs, and all three
%% converge.
persisted_map_survives_kill(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "data"),
    Env = [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS}, {map_sync_ms, ?SYNC_MS},
           {data_dir, Dir}, {maps, [{pm, #{persist => true}}]}],
    [N1 | _] = Names = [peer:random_name(tether_mp) || _ <- [1, 2, 3]],
    [B1, B2, B3] = Bs = named_cluster(Names, Env),
    [ok = call(B1, tether, map_put, [pm, {k, I}, I]) || I <- lists:seq(1, 200)],
    [ok = call(B1, tether, map_remove, [pm, {k, I}]) || I <- lists:seq(1, 10)],
    [ok = call(B2, tether, map_put, [pm, {r, I}, I]) || I <- lists:seq(1, 50)],
    Before = lists:sort([{{k, I}, I} || I <- lists:seq(11, 200)] ++
                        [{{r, I}, I} || I <- lists:seq(1, 50)]),
    converge(Bs, pm, Before),
    ok = tether_test_lib:kill_node(B1, ?WAIT_MS),
    %% A torn last record: half a header at the end of B1's log.
    [Log] = filelib:wildcard(filename:join([Dir, atom_to_list(B1),
                                            "map-*.log"])),
    ok = file:write_file(Log, <<0, 0, 1>>, [append]),
    {ok, #file_info{mode = Mode}} = file:read_file_info(filename:dirname(Log)),
    ?assertEqual(8#700, Mode band 8#777),
    [ok = call(B2, tether, map_put, [pm, {d, I}, I]) || I <- lists:seq(1, 20)],
    ok = call(B3, tether, map_remove, [pm, {k, 11}]),
    ok = call(B3, tether, map_put, [pm, {k, 12}, changed]),
    After = lists:sort([{{k, 12}, changed}] ++
                       [{{k, I}, I} || I <- lists:seq(13, 200)] ++
                       [{{r, I}, I} || I <- lists:seq(1, 50)] ++
                       [{{d, I}, I} || I <- lists:seq(1, 20)]),
    converge([B2, B3], pm, After),
    %% B2 and B3 stop hosting pm (their logs stay), so that B1 can only
    %% get it back from its own log.
    [ok = call(B, tether, delete_map, [pm]) || B <- [B2, B3]],
    B1 = restart_named(N1, Env),
    ?assertEqual(Before, lists:sort(call(B1, tether, map_to_list, [pm]))),
    %% B2 and B3 host it again, from their logs; all three converge.
    [?assertEqual(ok, call(B, tether, new_map, [pm, #{persist => true}]))
     || B <- [B2, B3]],
    ?assertEqual(After, lists:sort(call(B2, tether, map_to_list, [pm]))),
    ok = call(B1, tether, join, [B2]),
    converge(Bs, pm, After).

%% A C-node hosting pm with --map-persist joins two BEAM hosts (persist
%% on too) and gets their writes; it is killed with SIGKILL; the BEAM
%% nodes write and remove, then stop hosting pm; the C-node started
%% again with the same name and --data-dir has the map from its log
%% alone; the BEAM nodes host pm again from their logs and the three
%% converge.
cnode_persisted_map_survives_kill(Config) ->
    Priv = ?config(priv_dir, Config),
    Dir = filename:join(Priv, "cdata"),
    Env = [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS}, {map_sync_ms, 1000},
           {data_dir, filename:join(Priv, "bdata")},
           {maps, [{pm, #{persist => true}}]}],
    [B1, B2] = Bs = named_cluster([peer:random_name(tether_cmp)
                                   || _ <- [1, 2]], Env),
    Name = tether_test_lib:unique_name(tmapp),
    Opts = #{name => Name, heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS,
             join => [B1], log_dir => Priv,
             extra_args => ["--map-persist", "pm", "--data-dir", Dir]},
    C = tether_test_lib:start_case_cnode(Opts, 20),
    CN = tether_test_lib:cnode_node(C),
    tether_test_lib:wait_members([CN | Bs], lists:sort([CN | Bs]), ?WAIT_MS),
    [ok = call(B1, tether, map_put, [pm, {k, I}, I]) || I <- lists:seq(1, 100)],
    ok = call(B2, tether, map_remove, [pm, {k, 1}]),
    Before = [{{k, I}, I} || I <- lists:seq(2, 100)],
    CList = fun() -> lists:sort(gen_server:call({tether, CN}, {map_to_list, pm},
                                                ?CALL_MS))
            end,
    poll(CList, fun(L) -> L =:= Before end),
    %% Records reach the C-node's log with one write(2) each as they are
    %% applied, and are fsync'ed by a worker within milliseconds.
    timer:sleep(500),
    {ok, _} = tether_test_lib:kill_cnode(C),
    ok = tether_test_lib:forget_cnodes(),
    [Log] = filelib:wildcard(filename:join([Dir, atom_to_list(CN),
                                            "map-*.log"])),
    ok = file:write_file(Log, <<0, 0, 0, 9, 1, 2>>, [append]), % torn
    ok = call(B2, tether, map_put, [pm, {k, 2}, changed]),
    ok = call(B1, tether, map_remove, [pm, {k, 3}]),
    After = lists:sort([{{k, 2}, changed} | [{{k, I}, I}
                                             || I <- lists:seq(4, 100)]]),
    converge(Bs, pm, After),
    [ok = call(B, tether, delete_map, [pm]) || B <- Bs],
    C2 = tether_test_lib:start_case_cnode(Opts#{join => []}, 20),
    CN = tether_test_lib:cnode_node(C2),
    poll(CList, fun(L) -> L =:= Before end),
    [?assertEqual(ok, call(B, tether, new_map, [pm, #{persist => true}]))
     || B <- Bs],
    ok = call(B1, tether, join, [CN]),
    poll(CList, fun(L) -> L =:= After end),
    converge(Bs, pm, After).

%% maptest.so on a C-node hosts mt and subscribes to it from C: each
%% change the BEAM nodes make is one event there, in order (a put of the
%% value held already is none); maptest:to_list() iterates from C; after
%% unsubscribe no event arrives.
cnode_service_subscribes_and_iterates(Config) ->
    [B1, B2, _] = Bs = cluster([{maps, [mt]}]),
    Plugin = filename:join([tether_test_lib:priv_dir(), "..", "c_src", "build",
                            "plugins", "maptest.so"]),
    C = tether_test_lib:start_case_cnode(
          #{name => tether_test_lib:unique_name(tmapc), heartbeat_ms => ?HB_MS,
            ttl_ms => ?TTL_MS, join => [B1], extra_args => ["--load", Plugin],
            log_dir => ?config(priv_dir, Config)}, 20),
    CN = tether_test_lib:cnode_node(C),
    tether_test_lib:wait_members([CN | Bs], lists:sort([CN | Bs]), ?WAIT_MS),
    poll(fun() -> maps:get(hosts, call(B1, tether_map, map_info, [mt])) end,
         fun(N) -> N =:= 3 end),
    CList = fun() -> lists:sort(call(CN, maptest, to_list, [])) end,
    Step = fun(Node, F, A, Want) ->
                   ok = call(Node, tether, F, [mt | A]),
                   poll(CList, fun(L) -> L =:= Want end)
           end,
    Step(B1, map_put, [{k, 1}, a], [{{k, 1}, a}]),
    Step(B2, map_put, [{k, 2}, <<"b">>], [{{k, 1}, a}, {{k, 2}, <<"b">>}]),
    Step(B2, map_remove, [{k, 1}], [{{k, 2}, <<"b">>}]),
    ok = call(B1, tether, map_put, [mt, {k, 2}, <<"b">>]), % no change
    Step(B1, map_put, [{k, 2}, {c, 3}], [{{k, 2}, {c, 3}}]),
    ?assertEqual([{put, {k, 1}, a}, {put, {k, 2}, <<"b">>}, {remove, {k, 1}},
                  {put, {k, 2}, {c, 3}}],
                 call(CN, maptest, events, [])),
    ok = call(CN, maptest, unsubscribe, []),
    Step(B2, map_put, [{k, 3}, d], [{{k, 2}, {c, 3}}, {{k, 3}, d}]),
    ?assertEqual(4, length(call(CN, maptest, events, []))).

%%% Helpers

%% Nodes with these names running tether with Env, joined.
named_cluster(Names, Env) ->
    Nodes = [restart_named(Name, Env) || Name <- Names],
    ok = tether_test_lib:join_all(Nodes, ?WAIT_MS),
    Nodes.

%% A node of that name running tether with Env (retried: a name just
%% freed by SIGKILL may still be in epmd).
restart_named(Name, Env) ->
    restart_named(Name, Env, 20).

restart_named(Name, Env, Tries) ->
    try tether_test_lib:start_case_peer(Name, #{connection => dist,
                                                link => false}) of
        P ->
            Node = tether_test_lib:peer_node(P),
            {ok, _} = tether_test_lib:start_tether(Node, Env),
            Node
    catch
        _:Why when Tries > 1 ->
            ct:pal("peer ~s not started, retrying: ~p", [Name, Why]),
            timer:sleep(250),
            restart_named(Name, Env, Tries - 1)
    end.

cluster(Env) ->
    tether_test_lib:start_cluster(
      3, #{prefix => tether_map, link => false,
           env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS} |
                   case lists:keymember(map_sync_ms, 1, Env) of
                       true -> Env;
                       false -> [{map_sync_ms, ?SYNC_MS} | Env]
                   end]},
      ?WAIT_MS).

start_relay(Node, Name) ->
    Pid = erlang:spawn(Node, ?MODULE, relay, [{Name, self()}]),
    receive {relay_ready, Pid} -> Pid after ?WAIT_MS -> ct:fail(no_relay) end.

relayed(WaitMs) ->
    receive
        {relayed, E} -> [E | relayed(WaitMs)]
    after WaitMs -> []
    end.

converge(Bs, Name, Expected) ->
    Sorted = lists:sort(Expected),
    poll(fun() -> [lists:sort(call(B, tether, map_to_list, [Name])) || B <- Bs]
         end,
         fun(Ls) -> lists:all(fun(L) -> L =:= Sorted end, Ls) end).

ae_rounds(B, Name) ->
    maps:get(ae_rounds, call(B, tether_map, map_info, [Name])).

ae_bytes(B, Name) ->
    maps:get(ae_bytes, call(B, tether_map, map_info, [Name])).

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, ?CALL_MS).

poll(Get, Check) ->
    tether_test_lib:poll(Get, Check, ?WAIT_MS).
