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
