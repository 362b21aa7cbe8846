%% The cluster ring with three BEAM nodes (OTP peers running tether) and
%% a real C-node (priv/tether_cnode, asked with gen_server:call({tether,
%% CNode}, {place, Key}) and friends, stock OTP only):
%%
%% - every member agrees on place/owners/shard/is_owner for 10,000 keys,
%%   and a standalone ring of the same members answers the same;
%% - when the C-node is killed its shards go to their next owners and
%%   the ownership events say so (snapshot plus events = is_owner/1);
%% - a drop partition gives each side its own ring until heal, a defer
%%   partition changes nothing;
%% - nodes with different ring sizes never form one ring, and join/1
%%   says why; join/1 to a node without tether or to no node at all
%%   answers within join_timeout_ms;
%% - PropEr: shard/1 of random terms is the same on a BEAM node and on
%%   the C-node.
%%
%% Run alone: scripts/ct.sh --suite test/tether_ring_SUITE
-module(tether_ring_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("proper/include/proper.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0]).
-export([members_agree_on_10000_keys/1, cnode_killed_shards_move/1,
         drop_partition_splits_the_ring/1, defer_partition_keeps_the_ring/1,
         ring_size_mismatch_refused/1, join_errors_are_bounded/1,
         events_across_leave_and_join/1, shard_same_on_beam_and_cnode/1,
         bad_arguments/1]).

-define(HB_MS, 200).
-define(TTL_MS, 2000).
-define(TIMING, #{heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS}).
-define(WAIT_MS, 30000).
-define(CALL_MS, 10000).
-define(KEYS, 10000).
-define(JOIN_TIMEOUT_MS, 1500).

suite() ->
    [{ct_hooks, [tether_case_hook]}].

all() ->
    [members_agree_on_10000_keys, cnode_killed_shards_move,
     drop_partition_splits_the_ring, defer_partition_keeps_the_ring,
     ring_size_mismatch_refused, join_errors_are_bounded,
     events_across_leave_and_join, shard_same_on_beam_and_cnode,
     bad_arguments].

%%% Cases

%% All four members answer the same place, owners, shard and
%% shard_owners for 10,000 keys of several kinds; for each key exactly
%% one member says is_owner; a standalone ring of the same members
%% answers the same.
members_agree_on_10000_keys(Config) ->
    {CN, Bs} = four(Config, []),
    All = lists:sort([CN | Bs]),
    Keys = keys(?KEYS),
    Places = [call(B, lists, map, [fun tether:place/1, Keys]) || B <- Bs],
    [P1 | _] = Places,
    [?assertEqual(P1, P) || P <- Places],
    ?assertEqual(All, lists:usort(P1)),
    ?assertEqual(P1, [ccall(CN, {place, K}) || K <- Keys]),
    Standalone = tether_ring:new(All, #{shards => 64}),
    ?assertEqual(P1, [tether_ring:place(K, Standalone) || K <- Keys]),
    %% owners/2, shard/1 on a sample (every kind of key in it).
    Sample = lists:sublist(Keys, 1, 997),
    Owners = [call(B, lists, map, [fun(K) -> tether:owners(K, 3) end,
                                   Sample]) || B <- Bs],
    [?assertEqual(hd(Owners), O) || O <- Owners],
    ?assertEqual(hd(Owners), [ccall(CN, {owners, K, 3}) || K <- Sample]),
    ?assertEqual(hd(Owners),
                 [tether_ring:owners(K, 3, Standalone) || K <- Sample]),
    Shards = call(hd(Bs), lists, map, [fun tether:shard/1, Sample]),
    ?assertEqual(Shards, [ccall(CN, {shard, K}) || K <- Sample]),
    ?assertEqual(Shards, [tether_ring:shard(K, Standalone) || K <- Sample]),
    [?assertEqual(call(hd(Bs), tether, shard_owners, [S, 4]),
                  ccall(CN, {shard_owners, S, 4})) || S <- lists:seq(0, 63)],
    %% Exactly one member owns each key, and it is place/1's answer.
    Mine = [{B, call(B, lists, map, [fun tether:is_owner/1, Sample])}
            || B <- Bs] ++
        [{CN, [ccall(CN, {is_owner, K}) || K <- Sample]}],
    lists:foreach(
      fun({I, Place}) ->
              ?assertEqual([Place], [N || {N, L} <- Mine, lists:nth(I, L)])
      end, lists:zip(lists:seq(1, length(Sample)),
                     lists:sublist(P1, length(Sample)))),
    ?assertEqual(64, call(hd(Bs), tether, ring_size, [])),
    ?assertEqual(64, ccall(CN, ring_size)).

%% SIGKILL of the C-node: its shards go to their next owners (the second
%% of their owners before), the others stay where they were, and each
%% BEAM node's snapshot plus events equals what it owns.
cnode_killed_shards_move(Config) ->
    {CN, Bs} = four(Config, []),
    Before = shard_table(hd(Bs)),
    Subs = [{B, subscribe(B)} || B <- Bs],
    [C] = tether_test_lib:case_cnodes(),
    {ok, _} = tether_test_lib:kill_cnode(C),
    ok = tether_test_lib:forget_cnodes(),
    wait_all_members(Bs, lists:sort(Bs)),
    After = shard_table(hd(Bs)),
    [?assertEqual(After, shard_table(B)) || B <- Bs],
    lists:foreach(
      fun({S, [P, Next | _]}) ->
              [New | _] = maps:get(S, After),
              case P of
                  CN -> ?assertEqual(Next, New);
                  _ -> ?assertEqual(P, New)
              end
      end, maps:to_list(Before)),
    CnShards = [S || {S, [P | _]} <- maps:to_list(Before), P =:= CN],
    ?assert(length(CnShards) > 0),
    %% Each node's events: it acquired exactly the C-node's shards whose
    %% next owner it was, and released nothing.
    lists:foreach(
      fun({B, {Collector, Gen0, Snapshot}}) ->
              Expected = lists:sort([S || S <- CnShards,
                                          hd(maps:get(S, After)) =:= B]),
              Owned = owned(B, After),
              Events = wait_events(Collector, Snapshot, Owned),
              ?assertEqual(Expected,
                           lists:sort([S || {_, {acquired, S}} <- Events])),
              ?assertEqual([], [S || {_, {released, S}} <- Events]),
              [?assert(G > Gen0) || {G, _} <- Events]
      end, Subs).

%% drop between {C-node, B1} and {B2, B3}: each side places every key on
%% its own side, the C-node agreeing with B1; after heal everyone
%% agrees again.
drop_partition_splits_the_ring(Config) ->
    {CN, [B1, B2, B3] = Bs} = four(Config, []),
    Keys = keys(500),
    {ok, Ref} = call(B2, tether, partition, [[CN, B1], [B2, B3], drop]),
    wait_all_members([CN, B1], lists:sort([CN, B1])),
    wait_all_members([B2, B3], lists:sort([B2, B3])),
    wait_until(fun() -> places(B1, Keys) end,
               fun(P) -> lists:usort(P) =:= lists:sort([CN, B1]) end),
    ?assertEqual(places(B1, Keys), [ccall(CN, {place, K}) || K <- Keys]),
    wait_until(fun() -> places(B2, Keys) end,
               fun(P) -> lists:usort(P) =:= lists:sort([B2, B3]) end),
    ?assertEqual(places(B2, Keys), places(B3, Keys)),
    ?assertEqual(places(B2, Keys),
                 [tether_ring:place(K, tether_ring:new([B2, B3])) || K <- Keys]),
    ok = call(B1, tether, heal, [Ref]),
    wait_all_members([CN | Bs], lists:sort([CN | Bs])),
    Healed = places(B1, Keys),
    [?assertEqual(Healed, places(B, Keys)) || B <- Bs],
    ?assertEqual(Healed, [ccall(CN, {place, K}) || K <- Keys]),
    ?assertEqual(lists:sort([CN | Bs]), lists:usort(Healed)).

%% defer between {C-node, B1} and {B2, B3}, for over two leases: no
%% member's ring changes (same placement, no ownership event).
defer_partition_keeps_the_ring(Config) ->
    {CN, [B1, B2, B3] = Bs} = four(Config, []),
    Keys = keys(500),
    Placed = places(B1, Keys),
    Subs = [{B, subscribe(B)} || B <- Bs],
    {ok, Ref} = call(B2, tether, partition, [[CN, B1], [B2, B3], defer]),
    _ = tether_test_lib:wait_leases_pass(B2, ?HB_MS, ?TTL_MS, ?WAIT_MS),
    [?assertEqual(Placed, places(B, Keys)) || B <- Bs],
    ?assertEqual(Placed, [ccall(CN, {place, K}) || K <- Keys]),
    [?assertEqual([], collected(Collector)) || {_, {Collector, _, _}} <- Subs],
    ok = call(B3, tether, heal, [Ref]).

%% A BEAM node and a C-node with 128 shards never join a cluster of 64:
%% join/1 answers {error, {ring_size_mismatch, 128, 64}}, both sides
%% count the refusal, and neither lists the other.
ring_size_mismatch_refused(Config) ->
    {CN, Bs} = four(Config, []),
    All = lists:sort([CN | Bs]),
    [Odd] = start_nodes(1, [{ring_size, 128}]),
    ?assertEqual(128, call(Odd, tether, ring_size, [])),
    ?assertEqual({error, {ring_size_mismatch, 128, 64}},
                 call(Odd, tether, join, [hd(Bs)])),
    ?assertEqual({error, {ring_size_mismatch, 128, 64}},
                 call(Odd, tether, join, [CN])),
    ?assertEqual([Odd], call(Odd, tether, members, [])),
    #{stats := #{joins_refused := OddRefused}} = info(Odd),
    ?assertEqual(2, OddRefused),
    #{stats := #{joins_refused := CnRefused}} = ccall(CN, info),
    ?assert(CnRefused >= 1),
    %% A C-node of 128 shards joining by --join is refused too.
    C2 = start_cnode(Config, [hd(Bs)], tether_test_lib:unique_name(trs),
                     ["--ring-size", "128"]),
    CN2 = tether_test_lib:cnode_node(C2),
    wait_until(fun() -> info(hd(Bs)) end,
               fun(#{stats := #{joins_refused := R}}) -> R >= 2 end),
    ?assertEqual([CN2], ccall(CN2, members)),
    ?assertEqual(128, ccall(CN2, ring_size)),
    [?assertEqual(All, call(B, tether, members, [])) || B <- Bs],
    ?assertEqual(All, ccall(CN, members)).

%% join/1 to a connected node that runs no tether answers
%% {error, not_a_tether_node}, to a node that does not exist
%% {error, nodedown}; both within join_timeout_ms and a few heartbeats,
%% and the joiner stays alone, with no join pending.
join_errors_are_bounded(_Config) ->
    [B] = start_nodes(1, [{join_timeout_ms, ?JOIN_TIMEOUT_MS}]),
    Plain = tether_test_lib:peer_node(
              tether_test_lib:start_case_peer(
                tether_test_lib:unique_name(plain), #{})),
    {Us, R} = timer:tc(fun() -> call(B, tether, join, [Plain]) end),
    ?assertEqual({error, not_a_tether_node}, R),
    ct:pal("join to a node without tether answered in ~b ms", [Us div 1000]),
    ?assert(Us div 1000 < ?JOIN_TIMEOUT_MS + 10 * ?HB_MS + 2000),
    ?assertMatch(#{join_pending := false}, info(B)),
    ?assertEqual([B], call(B, tether, members, [])),
    Nowhere = list_to_atom(tether_test_lib:unique_name(nowhere)
                           ++ "@127.0.0.1"),
    ?assertEqual({error, nodedown}, call(B, tether, join, [Nowhere])),
    ?assertEqual(ok, call(B, tether, join, [B])).

%% One subscriber through a leave and a join: released at leave,
%% acquired as the members change, generations increasing, and at every
%% point snapshot plus events = is_owner/1.
events_across_leave_and_join(Config) ->
    {_CN, [B1, B2 | _] = Bs} = four(Config, []),
    {Collector, Gen0, Snapshot} = subscribe(B1),
    ?assertEqual(lists:sort(Snapshot), owned(B1, shard_table(B1))),
    ok = call(B1, tether, leave, []),
    wait_until(fun() -> owned_by_events(Snapshot, collected(Collector)) end,
               fun(Owned) -> Owned =:= [] end),
    ok = call(B1, tether, join, [B2]),
    wait_all_members(Bs, lists:sort(Bs ++ [_CN])),
    Table = shard_table(B1),
    Owned = owned(B1, Table),
    ?assert(length(Owned) > 0),
    Events = wait_events(Collector, Snapshot, Owned),
    Gens = [G || {G, _} <- Events],
    ?assertEqual(Gens, lists:sort(Gens)),
    ?assert(hd(Gens) > Gen0),
    ok = call(B1, tether, unsubscribe_shard, [Collector]).

%% PropEr: shard/1 of random terms (atoms latin1 and UTF-8, integers of
%% any size, floats, binaries and bitstrings, lists, tuples, maps, pids,
%% refs) is the same on a BEAM member and on the C-node.
shard_same_on_beam_and_cnode(Config) ->
    {CN, [B | _]} = four(Config, []),
    Prop = ?FORALL(T, term_gen(),
                   begin
                       Beam = call(B, tether, shard, [T]),
                       Local = tether_nif:ring_shard(T, 64),
                       C = ccall(CN, {shard, T}),
                       Beam =:= C andalso Beam =:= Local
                   end),
    ?assert(proper:quickcheck(Prop, [{numtests, 500}, {to_file, user}])).

%% badarg on a BEAM node, {error, invalid} from the C-node (as for every
%% bad request), never a crash, for bad N and shards.
bad_arguments(Config) ->
    {CN, [B | _]} = four(Config, []),
    [?assertError({exception, badarg, _}, call(B, tether, F, A))
     || {F, A} <- [{owners, [k, 0]}, {owners, [k, -2]}, {owners, [k, x]},
                   {shard_owners, [64, 1]}, {shard_owners, [-1, 1]},
                   {shard_owners, [0, 0]}, {place, [fun() -> ok end]}]],
    [?assertEqual({error, invalid}, ccall(CN, Req))
     || Req <- [{owners, k, 0}, {shard_owners, 64, 1}, {shard_owners, x, 1},
                {owners, k, -1}]],
    ?assert(lists:member(ccall(CN, {place, k}), ccall(CN, members))),
    ?assert(lists:member(B, call(B, tether, members, []))).

%%% Helpers

%% Keys of several kinds: binaries, tuples, integers, atoms, lists, maps.
keys(N) ->
    [key(I) || I <- lists:seq(1, N)].

key(I) ->
    case I rem 6 of
        0 -> <<"key-", (integer_to_binary(I))/binary>>;
        1 -> {user, I, <<"session">>};
        2 -> I * 7919;
        3 -> list_to_atom("k" ++ integer_to_list(I));
        4 -> [I, "x", {I}];
        5 -> #{id => I, kind => k}
    end.

places(Node, Keys) ->
    call(Node, lists, map, [fun tether:place/1, Keys]).

%% Shard -> its four best owners, as Node sees the ring.
shard_table(Node) ->
    maps:from_list([{S, call(Node, tether, shard_owners, [S, 4])}
                    || S <- lists:seq(0, 63)]).

owned(Node, Table) ->
    lists:sort([S || {S, [P | _]} <- maps:to_list(Table), P =:= Node]).

%% Subscribes a collector on this node to Node's shard events.
subscribe(Node) ->
    Collector = tether_test_lib:start_collector(),
    {ok, Gen, Shards} = call(Node, tether, subscribe_shard, [Collector]),
    {Collector, Gen, Shards}.

collected(Collector) ->
    [{G, E} || {tether_shard, G, E} <- tether_test_lib:collected(Collector)].

%% The shards owned after the snapshot and these events.
owned_by_events(Snapshot, Events) ->
    lists:sort(lists:foldl(fun({_, {acquired, S}}, Acc) -> [S | Acc -- [S]];
                              ({_, {released, S}}, Acc) -> Acc -- [S]
                           end, Snapshot, Events)).

%% Waits until the snapshot plus the collected events equal Owned;
%% returns the events.
wait_events(Collector, Snapshot, Owned) ->
    Events = wait_until(fun() -> collected(Collector) end,
                        fun(Es) -> owned_by_events(Snapshot, Es) =:= Owned
                        end),
    Gens = [G || {G, _} <- Events],
    ?assertEqual(Gens, lists:sort(Gens)),
    Events.

term_gen() ->
    ?SIZED(Size, term_gen(Size)).

term_gen(0) ->
    leaf_gen();
term_gen(Size) ->
    Sub = ?LAZY(term_gen(Size div 4)),
    frequency([{4, leaf_gen()},
               {1, list(Sub)},
               {1, ?LET(L, list(Sub), list_to_tuple(L))},
               {1, ?LET(L, list({Sub, Sub}), maps:from_list(L))},
               {1, ?LET({H, T}, {Sub, Sub}, [H | T])}]).

leaf_gen() ->
    oneof([integer(), largeint(),
           ?LET(E, integer(0, 200), 1 bsl E),
           ?LET(E, integer(0, 200), -(1 bsl E) - 1),
           float(), binary(), bitstring(), atom(),
           ?LET(Cs, list(integer(0, 16#10FFFF - 16#800)),
                utf8_atom(Cs)),
           exactly(self()), exactly(make_ref()), exactly(node()),
           exactly(-0.0), exactly(0.0)]).

%% An atom of at most 255 code points, none a surrogate.
utf8_atom(Cs) ->
    list_to_atom([C + if C >= 16#D800 -> 16#800; true -> 0 end
                  || C <- lists:sublist(Cs, 255)]).

%% Three clustered BEAM nodes and a C-node joined by --join.
four(Config, Extra) ->
    tether_test_lib:start_four(Config, node_opts([]), trc, Extra, ?WAIT_MS).

start_cnode(Config, Seeds, Name, Extra) ->
    tether_test_lib:start_seeded_cnode(Config, ?TIMING, Seeds, Name, Extra).

start_nodes(N, Env) ->
    tether_test_lib:start_tether_nodes(N, node_opts(Env)).

node_opts(Env) ->
    #{prefix => tether_ring, link => true,
      env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS} | Env]}.

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, ?CALL_MS).

ccall(CNode, Req) ->
    gen_server:call({tether, CNode}, Req, ?CALL_MS).

info(Node) ->
    call(Node, tether_server, info, []).

wait_all_members(Nodes, Expected) ->
    tether_test_lib:wait_members(Nodes, Expected, ?WAIT_MS).

wait_until(Get, Check) ->
    tether_test_lib:poll(Get, Check, ?WAIT_MS).
