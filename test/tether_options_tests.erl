%% EUnit: every public function that takes an option list or map answers
%% an unknown or ill-typed option with `{error, {bad_option, Opt}}' before
%% doing anything (so these run without distribution), and arguments of
%% the wrong type with `badarg'. tether_ring:new/2, which returns a bare
%% ring, raises `badarg' for a bad option as for any other bad argument.
-module(tether_options_tests).

-include_lib("eunit/include/eunit.hrl").

call_service_test_() ->
    [?_assertEqual({error, {bad_option, Opt}},
                   tether:call_service(s, f, [], [Opt]))
     || Opt <- bad_service_opts()] ++
        [?_assertEqual({error, {bad_option, bogus}},
                       tether:call_service(s, f, [], [idempotent, bogus])),
         ?_assertEqual({error, service_not_available},
                       tether:call_service(s, f, [],
                                           [{timeout, 10}, idempotent,
                                            {idempotent, false},
                                            {nodes, []}])),
         ?_assertError(badarg, tether:call_service(s, f, [], not_a_list))].

call_service_all_test_() ->
    [?_assertEqual({error, {bad_option, Opt}},
                   tether:call_service_all(s, f, [], [Opt]))
     || Opt <- bad_service_opts()] ++
        [?_assertEqual([], tether:call_service_all(s, f, [], [{nodes, []}]))].

multicall_test_() ->
    [?_assertError(badarg, tether:multicall([], m, f, [], -1)),
     ?_assertError(badarg, tether:multicall([], m, f, [], soon)),
     ?_assertError(badarg, tether:multicall(not_a_list, m, f, [], 10)),
     ?_assertEqual({[], []}, tether:multicall([], m, f, [], 10))].

lead_test_() ->
    [?_assertEqual({error, {bad_option, {prio, 1}}},
                   tether:lead(n, #{prio => 1})),
     ?_assertEqual({error, {bad_option, {bogus, x}}},
                   tether:lead(n, #{priority => 1, bogus => x}))].

whereis_service_test_() ->
    [?_assertEqual({error, {bad_option, {nod, a@h}}},
                   tether:whereis_service(s, #{nod => a@h})),
     ?_assertEqual({error, {bad_option, {node, "a@h"}}},
                   tether:whereis_service(s, #{node => "a@h"})),
     ?_assertEqual({error, not_found},
                   tether:whereis_service(s, #{node => a@h})),
     ?_assertEqual({error, not_found}, tether:whereis_service(s, #{}))].

wait_for_services_test_() ->
    [?_assertEqual({error, {bad_option, {retry, 1}}},
                   tether:wait_for_services([s], [{retry, 1}])),
     ?_assertEqual({error, {bad_option, {retries, -1}}},
                   tether:wait_for_services([s], #{retries => -1})),
     ?_assertEqual({error, {bad_option, {interval_ms, fast}}},
                   tether:wait_for_services([s], [{interval_ms, fast}])),
     ?_assertEqual(ok, tether:wait_for_services([], [{retries, 0}])),
     ?_assertEqual(timeout,
                   tether:wait_for_services([s], #{retries => 0}))].

ring_new_test_() ->
    [?_assertError(badarg, tether_ring:new([a@h], #{bogus => 1})),
     ?_assertError(badarg, tether_ring:new([a@h], #{shards => 3}))].

bad_service_opts() ->
    [bogus, {timeout, -1}, {timeout, soon}, {idempotent, yes},
     {nodes, a@h}, {nodes, ["a@h"]}, {node, [a@h]}].
