%% @doc The cluster ring against the fastest pure-Erlang ring, side by
%% side in one run on a 3-node BEAM cluster (this driver node and two
%% peers, all running the tether application), issue 15. Run by
%% bench/run after its other measures.
%%
%%   ring_place_ratio        calls per second of tether:place(Key) / of
%%                           the baseline, 16-byte binary keys. The
%%                           baseline is the fastest ring one can write in
%%                           Erlang: element(erlang:phash2(Key, S) + 1,
%%                           Owners), Owners a tuple of S nodes built for
%%                           the current members.
%%   ring_place_ns           tether:place/1's time per call (and the
%%                           baseline's, ring_place_baseline_ns).
%%   ring_place_tuple_ratio  the same with {user, Integer, Binary} keys.
%%   ring_hash_floor_ns      tether_nif:ring_shard(Key, 64) alone: one NIF
%%                           call and the key's SipHash, the least any
%%                           NIF-based place/1 can cost.
%%   ring_place_vs_hrw_ratio the seed's way (barrel_p2p: every member
%%                           hashed with the key at every lookup, highest
%%                           wins) over tether:place/1, 3 members; and
%%                           ring_place_vs_hrw50_ratio on a standalone
%%                           ring of 50 members.
%%   ring_place_flat_ratio   tether_ring:place/2 time per call on a
%%                           standalone ring of 10,000 nodes / of 3 nodes:
%%                           a lookup costs the same whatever the size.
%%
%% Each figure is the median of rounds that alternate between the two
%% sides, so drift hits both. Output: `name: value' lines.
-module(tether_ring_bench).

-export([main/1]).

-define(ROUNDS, 25).
-define(CALLS, 200000).
-define(KEYS, 1000).
-define(SHARDS, 64).
-define(HB_MS, 200).

%% @doc Entry point: main([]). Prints the results and stops the node
%% (status 0 on success, 1 on failure).
-spec main([string()]) -> no_return().
main(_Args) ->
    tether_bench_lib:main(?MODULE, fun run/0).

run() ->
    tether_bench_lib:with_cluster(
      "tether_bench_ring",
      [{heartbeat_ms, ?HB_MS}, {ttl_ms, 10 * ?HB_MS}, {ring_size, ?SHARDS}],
      fun(Peers) -> place_bench(lists:sort([node() | Peers])) end),
    flat_bench().

%%% place/1 against phash2 and element/2

place_bench(Members) ->
    %% The baseline's table: shard -> primary, as a pure-Erlang ring would
    %% keep it (taken from tether's ring so that both answer the same).
    Owners = list_to_tuple([hd(tether:shard_owners(S, 1))
                            || S <- lists:seq(0, ?SHARDS - 1)]),
    Bins = [crypto:strong_rand_bytes(16) || _ <- lists:seq(1, ?KEYS)],
    Tuples = [{user, I, crypto:strong_rand_bytes(8)}
              || I <- lists:seq(1, ?KEYS)],
    true = lists:all(fun(K) -> lists:member(tether:place(K), Members) end,
                     Bins ++ Tuples),
    {TBin, BBin} = alternate(fun() -> time_place(Bins) end,
                             fun() -> time_phash(Bins, Owners) end),
    {TTup, BTup} = alternate(fun() -> time_place(Tuples) end,
                             fun() -> time_phash(Tuples, Owners) end),
    io:format("ring_place_ratio: ~.2f~n", [BBin / TBin]),
    io:format("ring_place_ns: ~.1f~n", [TBin]),
    io:format("ring_place_baseline_ns: ~.1f~n", [BBin]),
    io:format("ring_place_tuple_ratio: ~.2f~n", [BTup / TTup]),
    io:format("ring_place_tuple_ns: ~.1f~n", [TTup]),
    io:format("ring_place_tuple_baseline_ns: ~.1f~n", [BTup]),
    Floor = median([time_calls(fun shard_loop/3, Bins, undefined)
                    || _ <- lists:seq(1, ?ROUNDS)]),
    io:format("ring_hash_floor_ns: ~.1f~n", [Floor]),
    {THrw, BHrw} = alternate(fun() -> time_place(Bins) end,
                             fun() -> time_calls(fun hrw_loop/3, Bins,
                                                 Members) end),
    io:format("ring_place_vs_hrw_ratio: ~.2f~n", [BHrw / THrw]),
    ok.

shard_loop([], _, Acc) -> Acc;
shard_loop([K | Ks], X, Acc) ->
    shard_loop(Ks, X, Acc + tether_nif:ring_shard(K, ?SHARDS)).

%% Rendezvous hashing done per lookup: every member's weight for the key,
%% the highest wins.
hrw_loop([], _, Acc) -> Acc;
hrw_loop([K | Ks], Members, Acc) ->
    hrw_loop(Ks, Members, Acc + tag(hrw(K, Members))).

hrw(Key, [M | Ms]) ->
    hrw(Key, Ms, M, erlang:phash2({M, Key})).

hrw(_Key, [], Best, _W) -> Best;
hrw(Key, [M | Ms], Best, W) ->
    case erlang:phash2({M, Key}) of
        W2 when W2 > W -> hrw(Key, Ms, M, W2);
        _ -> hrw(Key, Ms, Best, W)
    end.

%% Nanoseconds per call of tether:place/1 over Keys, cycled.
time_place(Keys) ->
    time_calls(fun place_loop/3, Keys, undefined).

time_phash(Keys, Owners) ->
    time_calls(fun phash_loop/3, Keys, Owners).

place_loop([], _, Acc) -> Acc;
place_loop([K | Ks], X, Acc) ->
    place_loop(Ks, X, Acc + tag(tether:place(K))).

phash_loop([], _, Acc) -> Acc;
phash_loop([K | Ks], Owners, Acc) ->
    phash_loop(Ks, Owners,
               Acc + tag(element(erlang:phash2(K, ?SHARDS) + 1, Owners))).

%% Uses the answer so that neither loop can skip the lookup.
tag(undefined) -> 0;
tag(A) when is_atom(A) -> 1.

time_calls(Loop, Keys, X) ->
    Passes = ?CALLS div length(Keys),
    T0 = erlang:monotonic_time(nanosecond),
    _ = passes(Loop, Keys, X, Passes, 0),
    (erlang:monotonic_time(nanosecond) - T0) / (Passes * length(Keys)).

passes(_Loop, _Keys, _X, 0, Acc) -> Acc;
passes(Loop, Keys, X, N, Acc) ->
    passes(Loop, Keys, X, N - 1, Loop(Keys, X, Acc)).

%%% tether_ring:place/2: 10,000 nodes against 3

flat_bench() ->
    Big = tether_ring:new([node_name(I) || I <- lists:seq(1, 10000)],
                          #{shards => 1024}),
    Small = tether_ring:new([node_name(I) || I <- lists:seq(1, 3)],
                            #{shards => 1024}),
    Keys = [crypto:strong_rand_bytes(16) || _ <- lists:seq(1, ?KEYS)],
    {TBig, TSmall} = alternate(fun() -> time_ring(Keys, Big) end,
                               fun() -> time_ring(Keys, Small) end),
    io:format("ring_place_flat_ratio: ~.2f~n", [TBig / TSmall]),
    io:format("ring_place_standalone_ns: ~.1f~n", [TSmall]),
    Fifty = [node_name(I) || I <- lists:seq(1, 50)],
    R50 = tether_ring:new(Fifty, #{shards => 1024}),
    {T50, H50} = alternate(fun() -> time_ring(Keys, R50) end,
                           fun() -> time_calls(fun hrw_loop/3, Keys, Fifty)
                           end),
    io:format("ring_place_vs_hrw50_ratio: ~.1f~n", [H50 / T50]),
    ok.

node_name(I) ->
    list_to_atom("n" ++ integer_to_list(I) ++ "@bench.host").

time_ring(Keys, Ring) ->
    time_calls(fun ring_loop/3, Keys, Ring).

ring_loop([], _, Acc) -> Acc;
ring_loop([K | Ks], Ring, Acc) ->
    ring_loop(Ks, Ring, Acc + tag(tether_ring:place(K, Ring))).

%%% Helpers

alternate(A, B) ->
    tether_bench_lib:alternate(?ROUNDS, A, B).

median(L) ->
    tether_bench_lib:median(L).
