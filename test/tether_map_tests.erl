%% EUnit tests of the replicated maps' API on a node that is not
%% distributed: option checks (in the caller, before any message), and
%% the answers for maps that are not hosted; and the map NIFs on one
%% engine of this process (hosting, writes, reads, the term arena).
-module(tether_map_tests).

-include_lib("eunit/include/eunit.hrl").

bad_options_test_() ->
    [?_assertEqual({error, {bad_option, x}}, tether:new_map(m, x)),
     ?_assertEqual({error, {bad_option, {validator, 1}}},
                   tether:new_map(m, #{validator => 1})),
     ?_assertEqual({error, {bad_option, {validator, fun erlang:abs/1}}},
                   tether:new_map(m, #{validator => fun erlang:abs/1})),
     ?_assertEqual({error, {bad_option, {persist, maybe}}},
                   tether:new_map(m, #{persist => maybe})),
     ?_assertEqual({error, {bad_option, {tombstone_ttl_ms, -1}}},
                   tether:new_map(m, #{tombstone_ttl_ms => -1})),
     ?_assertEqual({error, {bad_option, {colour, red}}},
                   tether:new_map(m, #{colour => red}))].

not_hosted_test_() ->
    [?_assertEqual({error, no_such_map}, tether:map_get(nope, k)),
     ?_assertEqual({error, no_such_map}, tether:map_put(nope, k, v)),
     ?_assertEqual({error, no_such_map}, tether:map_remove(nope, k)),
     ?_assertEqual({error, no_such_map}, tether:map_keys(nope)),
     ?_assertEqual({error, no_such_map}, tether:map_to_list(nope)),
     ?_assertEqual({error, no_such_map}, tether:map_size(nope))].

engine() ->
    E = tether_engine_pump:new(<<"a@host">>, #{seed => binary:copy(<<7>>, 32),
                                               cookie => <<"c">>}),
    ok = tether_nif:engine_tick(E, 0),
    E.

nif_test() ->
    E = engine(),
    ?assertEqual({error, no_such_map}, tether_nif:map_get(E, m, k)),
    ok = tether_nif:map_host(E, m, 1000),
    ok = tether_nif:map_host(E, m, 1000),
    ?assertEqual(not_found, tether_nif:map_get(E, m, k)),
    ?assertMatch({ok, [], false}, tether_nif:map_put(E, m, k, {v, 1})),
    ?assertEqual({ok, {v, 1}}, tether_nif:map_get(E, m, k)),
    ?assertMatch({error, invalid_value},
                 tether_nif:map_put(E, m, k, fun() -> ok end)),
    ?assertEqual({ok, {v, 1}}, tether_nif:map_get(E, m, k)),
    _ = [{ok, [], false} = tether_nif:map_put(E, m, k, I)
         || I <- lists:seq(1, 20000)],
    ?assertEqual({ok, 20000}, tether_nif:map_get(E, m, k)),
    #{entries := 1, arena_garbage_bytes := G} = tether_nif:map_info(E, m),
    ?assert(G < 128 * 1024),
    ?assertMatch({ok, [], false}, tether_nif:map_remove(E, m, k)),
    ?assertEqual(not_found, tether_nif:map_get(E, m, k)),
    ?assertEqual(0, tether_nif:map_size(E, m)),
    ?assertMatch({ok, [], false}, tether_nif:map_put(E, m, <<"b">>, 2)),
    ?assertEqual([<<"b">>], tether_nif:map_list(E, m, keys)),
    ?assertEqual([{<<"b">>, 2}], tether_nif:map_list(E, m, pairs)),
    ok = tether_nif:map_notify(E, m, true),
    ?assertMatch({ok, [], true}, tether_nif:map_put(E, m, c, 3)),
    ?assertEqual([{m, c, 3}],
                 [{binary_to_term(N), binary_to_term(K), binary_to_term(V)}
                  || {map, N, K, V} <- tether_nif:engine_drain(E)]),
    ok = tether_nif:map_unhost(E, m),
    ?assertEqual({error, no_such_map}, tether_nif:map_unhost(E, m)),
    ?assertEqual({error, no_such_map}, tether_nif:map_get(E, m, c)),
    ?assertError(badarg, tether_nif:map_host(E, m, -1)).

%% A persisted map's writes yield records (a local write's in map_put's
%% answer); fed to another engine they give it the same contents, in any
%% order, and the dump is what a compacted log holds.
nif_records_test() ->
    E = engine(),
    ok = tether_nif:map_host(E, p, 1000000, true),
    {ok, [], false, R1} = tether_nif:map_put(E, p, a, 1),
    {ok, [], false, R2} = tether_nif:map_put(E, p, a, 2),
    {ok, [], false, R3} = tether_nif:map_put(E, p, b, 3),
    {ok, [], false, R4} = tether_nif:map_remove(E, p, b),
    Dump = tether_nif:map_dump(E, p),
    ?assertEqual(2, length(Dump)), % a's value and b's tombstone
    %% A map hosted without persist yields no record.
    ok = tether_nif:map_host(E, q, 1000),
    ?assertMatch({ok, [], false}, tether_nif:map_put(E, q, a, 1)),
    E2 = engine(),
    ok = tether_nif:map_host(E2, p, 1000000, true),
    [ok = tether_nif:map_load(E2, p, R) || R <- [R4, R2, R3, R1]],
    ?assertEqual([{a, 2}], tether_nif:map_list(E2, p, pairs)),
    %% Loading yields no store actions (nothing is written twice).
    ?assertEqual([], [A || A <- tether_nif:engine_drain(E2),
                           element(1, A) =:= map_store]),
    ?assertEqual(lists:sort(Dump), lists:sort(tether_nif:map_dump(E2, p))),
    %% Bytes that are not a record change nothing.
    ?assertEqual({error, bad_record}, tether_nif:map_load(E2, p, <<131, 1>>)),
    ?assertEqual({error, bad_record},
                 tether_nif:map_load(E2, p, binary:part(R1, 0, 10))),
    ?assertEqual({error, bad_record},
                 tether_nif:map_load(E2, p, <<R1/binary, 0>>)),
    ?assertEqual({error, no_such_map}, tether_nif:map_load(E2, zz, R1)),
    ?assertEqual({error, no_such_map}, tether_nif:map_dump(E2, zz)),
    ?assertEqual([{a, 2}], tether_nif:map_list(E2, p, pairs)).
