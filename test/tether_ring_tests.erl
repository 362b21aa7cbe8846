%% EUnit tests of the ring's hash (the golden vectors) and of standalone
%% rings (tether_ring:new/2 and friends). The cluster ring is tested in
%% tether_ring_SUITE, with BEAM nodes and a C-node.
-module(tether_ring_tests).

-include_lib("eunit/include/eunit.hrl").

golden() ->
    File = filename:join(filename:dirname(?FILE), "data/ring_golden.etf"),
    {ok, Bin} = file:read_file(File),
    binary_to_term(Bin).

%% Every vector of the checked-in file, through the hash NIF and through
%% standalone rings of both sizes: a release that changes placement fails
%% here (and in c_src/test/test_ring.c).
golden_vectors_test() ->
    Vectors = golden(),
    ?assert(length(Vectors) >= 40),
    R64 = tether_ring:new([a@h], #{shards => 64}),
    R1024 = tether_ring:new([a@h], #{shards => 1024}),
    lists:foreach(
      fun({Term, S64, S1024}) ->
              ?assertEqual({Term, S64}, {Term, tether_nif:ring_shard(Term, 64)}),
              ?assertEqual({Term, S1024},
                           {Term, tether_nif:ring_shard(Term, 1024)}),
              ?assertEqual(S64, tether_ring:shard(Term, R64)),
              ?assertEqual(S1024, tether_ring:shard(Term, R1024))
      end, Vectors).

%% The fast paths (binaries, atoms, small integers) agree with the
%% general path: the same values inside a one-element list hash
%% differently, so compare against the hash of the term re-encoded.
fast_paths_agree_with_encoding_test() ->
    Terms = [<<"k">>, <<>>, abc, 'été', 0, 255, -1, 1 bsl 40, 1 bsl 70],
    lists:foreach(
      fun(T) ->
              T2 = binary_to_term(term_to_binary(T)),
              ?assertEqual(tether_nif:ring_hash(T), tether_nif:ring_hash(T2))
      end, Terms),
    %% Map order never matters, nor how an atom or integer is encoded.
    ?assertEqual(tether_nif:ring_hash(#{a => 1, b => 2}),
                 tether_nif:ring_hash(maps:from_list([{b, 2}, {a, 1}]))),
    ?assertEqual(tether_nif:ring_hash(abc),
                 tether_nif:ring_hash(binary_to_term(
                                        <<131, 119, 3, "abc">>))),
    ?assertEqual(tether_nif:ring_hash(abc),
                 tether_nif:ring_hash(binary_to_term(
                                        <<131, 100, 0, 3, "abc">>))).

empty_ring_test() ->
    R = tether_ring:new([]),
    ?assertEqual(undefined, tether_ring:place(key, R)),
    ?assertEqual([], tether_ring:owners(key, 3, R)),
    ?assertEqual([], tether_ring:nodes(R)),
    ?assertEqual(64, tether_ring:shards(R)),
    S = tether_ring:shard(key, R),
    ?assert(S >= 0 andalso S < 64),
    ?assertEqual([], tether_ring:shard_owners(S, 2, R)).

owners_test() ->
    R = tether_ring:new([c@h, a@h, b@h], #{shards => 1024}),
    ?assertEqual([a@h, b@h, c@h], tether_ring:nodes(R)),
    ?assertEqual(1024, tether_ring:shards(R)),
    lists:foreach(
      fun(I) ->
              Key = {user, I},
              Owners = tether_ring:owners(Key, 3, R),
              ?assertEqual(3, length(lists:usort(Owners))),
              ?assertEqual(hd(Owners), tether_ring:place(Key, R)),
              ?assertEqual(Owners, tether_ring:owners(Key, 10, R)),
              ?assertEqual(lists:sublist(Owners, 2),
                           tether_ring:owners(Key, 2, R)),
              ?assertEqual(Owners, tether_ring:shard_owners(
                                     tether_ring:shard(Key, R), 3, R))
      end, lists:seq(1, 200)).

%% Each node owns about a third of 1,024 shards.
balance_test() ->
    R = tether_ring:new([a@h, b@h, c@h], #{shards => 1024}),
    Counts = lists:foldl(
               fun(S, Acc) ->
                       [P] = tether_ring:shard_owners(S, 1, R),
                       maps:update_with(P, fun(C) -> C + 1 end, 1, Acc)
               end, #{}, lists:seq(0, 1023)),
    ?assertEqual(3, map_size(Counts)),
    [?assert(C > 250 andalso C < 440) || C <- maps:values(Counts)].

%% Adding a node moves shards only to it; removing it puts them back.
add_remove_test() ->
    R3 = tether_ring:new([a@h, b@h, c@h], #{shards => 1024}),
    R4 = tether_ring:add(d@h, R3),
    ?assertEqual([a@h, b@h, c@h, d@h], tether_ring:nodes(R4)),
    Moved = [S || S <- lists:seq(0, 1023),
                  tether_ring:shard_owners(S, 1, R3) =/=
                      tether_ring:shard_owners(S, 1, R4)],
    [?assertEqual([d@h], tether_ring:shard_owners(S, 1, R4)) || S <- Moved],
    ?assert(length(Moved) > 150 andalso length(Moved) < 370),
    R3b = tether_ring:remove(d@h, R4),
    [?assertEqual(tether_ring:shard_owners(S, 3, R3),
                  tether_ring:shard_owners(S, 3, R3b))
     || S <- lists:seq(0, 1023)],
    %% Adding a member or removing a stranger changes nothing.
    ?assertEqual(tether_ring:nodes(R4),
                 tether_ring:nodes(tether_ring:add(a@h, R4))),
    ?assertEqual(tether_ring:nodes(R3),
                 tether_ring:nodes(tether_ring:remove(z@h, R3))),
    %% The ring itself is a value: R3 is unchanged.
    ?assertEqual([a@h, b@h, c@h], tether_ring:nodes(R3)).

%% The same members give the same answers, however the ring was built.
order_independent_test() ->
    A = tether_ring:new([a@h, b@h, c@h]),
    B = tether_ring:add(a@h, tether_ring:new([c@h, b@h])),
    [?assertEqual(tether_ring:owners(K, 3, A), tether_ring:owners(K, 3, B))
     || K <- lists:seq(1, 300)].

unicode_node_test() ->
    N = list_to_atom("nœud@hôte"),
    R = tether_ring:new([N, a@h]),
    ?assertEqual(lists:sort([N, a@h]), tether_ring:nodes(R)),
    ?assert(lists:member(tether_ring:place(k, R), [N, a@h])).

bad_input_test_() ->
    R = tether_ring:new([a@h, b@h]),
    [?_assertError(badarg, tether_ring:new([a@h, a@h])),
     ?_assertError(badarg, tether_ring:new([a@h, "b@h"])),
     ?_assertError(badarg, tether_ring:new(not_a_list)),
     ?_assertError(badarg, tether_ring:new([a@h], #{shards => 0})),
     ?_assertError(badarg, tether_ring:new([a@h], #{shards => 100})),
     ?_assertError(badarg, tether_ring:new([a@h], #{shards => 1 bsl 17})),
     ?_assertError(badarg, tether_ring:new([a@h], #{shards => many})),
     ?_assertError(badarg, tether_ring:new([a@h], #{bogus => 1})),
     ?_assertError(badarg, tether_ring:new([a@h], [{shards, 64}])),
     ?_assertError(badarg, tether_ring:owners(k, 0, R)),
     ?_assertError(badarg, tether_ring:owners(k, -1, R)),
     ?_assertError(badarg, tether_ring:owners(k, 1.0, R)),
     ?_assertError(badarg, tether_ring:shard_owners(64, 1, R)),
     ?_assertError(badarg, tether_ring:shard_owners(-1, 1, R)),
     ?_assertError(badarg, tether_ring:shard_owners(x, 1, R)),
     ?_assertError(badarg, tether_ring:place(k, not_a_ring)),
     ?_assertError(badarg, tether_ring:place(fun() -> ok end, R)),
     ?_assertError(badarg, tether_ring:add("c", R)),
     ?_assertError(badarg, tether_ring:remove(3, R)),
     ?_assertError(badarg, tether_nif:ring_shard(k, 3)),
     ?_assertError(badarg, tether_nif:ring_shard(k, 0)),
     ?_assertError(badarg, tether_ring:owners(k, 0)),
     ?_assertError(badarg, tether_ring:shard_owners(0, 0))].

%% Without distribution the cluster ring has no members.
not_distributed_test() ->
    case node() of
        nonode@nohost ->
            ?assertEqual(undefined, tether:place(k)),
            ?assertEqual([], tether:owners(k, 2)),
            ?assertEqual(false, tether:is_owner(k)),
            S = tether:shard(k),
            ?assert(S >= 0 andalso S < tether:ring_size());
        _ ->
            ok
    end.
