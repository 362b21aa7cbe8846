%% EUnit tests of the election: lead/2's option checks (in the caller,
%% before any message), the API on a node that is not distributed, and
%% the election NIFs over two engines wired together in this process
%% (sans-IO: the test carries their SEND actions and passes the time).
-module(tether_election_tests).

-include_lib("eunit/include/eunit.hrl").

-define(HB, 100).
-define(TTL, 1000).

%%% lead/2's options: clear errors, nothing sent anywhere

bad_options_test_() ->
    [?_assertEqual({error, {bad_options, x}}, tether:lead(n, x)),
     ?_assertEqual({error, {bad_options, [{priority, 1}]}},
                   tether:lead(n, [{priority, 1}])),
     ?_assertEqual({error, {bad_option, {prio, 1}}},
                   tether:lead(n, #{prio => 1})),
     ?_assertEqual({error, {bad_priority, 1.5}},
                   tether:lead(n, #{priority => 1.5})),
     ?_assertEqual({error, {bad_priority, 1 bsl 63}},
                   tether:lead(n, #{priority => 1 bsl 63})),
     ?_assertEqual({error, {bad_quorum, 1}}, tether:lead(n, #{quorum => 1})),
     ?_assertEqual({error, {bad_voters, [a, "b"]}},
                   tether:lead(n, #{quorum => true, voters => [a, "b"]})),
     ?_assertEqual({error, {bad_voters, a}},
                   tether:lead(n, #{quorum => true, voters => a})),
     ?_assertEqual({error, voters_without_quorum},
                   tether:lead(n, #{voters => [a]})),
     ?_assertMatch({error, {bad_voters, _}},
                   tether:lead(n, #{quorum => true,
                                    voters => [list_to_atom([$a + I rem 26]
                                                            ++ integer_to_list(I))
                                               || I <- lists:seq(1, 65)]}))].

%% With the application env election_voters unset, a quorum candidacy
%% names no voters.
no_voters_test() ->
    case application:get_env(tether, election_voters) of
        undefined ->
            ?assertEqual({error, no_voters}, tether:lead(n, #{quorum => true}));
        _ ->
            ok
    end.

%% Without distribution (no tether server, no engine): no leader, no
%% fence, no candidates; lead and resign say why.
not_distributed_test() ->
    case {node(), whereis(tether)} of
        {nonode@nohost, undefined} ->
            ?assertEqual({error, no_leader}, tether:leader(n)),
            ?assertEqual(false, tether:is_leader(n)),
            ?assertEqual({error, not_leader}, tether:fence(n)),
            ?assertEqual([], tether:candidates(n)),
            ?assertEqual({error, not_distributed}, tether:lead(n)),
            ?assertEqual({error, not_distributed}, tether:resign(n));
        _ ->
            ok
    end.

%%% The NIFs over engines in this process

new_engine(Name) ->
    tether_engine_pump:new(Name, #{cookie => <<"tether_election_tests">>,
                                   heartbeat_ms => ?HB, ttl_ms => ?TTL}).

%% The leader actions are the ones these tests look at.
is_leader({leader, _, _, _}) -> true;
is_leader(_) -> false.

%% Two joined engines, run for Ms of engine time from T0; returns the
%% leader actions and the time reached.
run(Es, T0, Ms) ->
    tether_engine_pump:run(Es, T0, Ms, fun is_leader/1).

pair() ->
    A = new_engine(<<"a@h">>),
    B = new_engine(<<"b@h">>),
    Es = #{<<"a@h">> => A, <<"b@h">> => B},
    T = tether_engine_pump:join_all(Es, <<"a@h">>, 3 * ?HB, fun is_leader/1),
    {A, B, Es, T}.

two_candidates_one_leader_test() ->
    {A, B, Es, T0} = pair(),
    Me = self(),
    ?assertMatch({ok, _}, tether_nif:election_lead(B, {svc, 1}, Me, 0,
                                                    false, [])),
    ?assertMatch({ok, _}, tether_nif:election_lead(A, {svc, 1}, Me, 0,
                                                    false, [])),
    ?assertEqual({error, already_candidate},
                 tether_nif:election_lead(A, {svc, 1}, Me, 0, false, [])),
    {Acts, T1} = run(Es, T0, 5 * ?HB),
    %% a (the lower name) leads; both name it; its fence is a positive
    %% integer; b never was told it leads.
    ?assert(tether_nif:election_is_leader(A, {svc, 1})),
    ?assertNot(tether_nif:election_is_leader(B, {svc, 1})),
    {ok, F} = tether_nif:election_fence(A, {svc, 1}),
    ?assert(is_integer(F) andalso F > 0),
    ?assertEqual({error, not_leader}, tether_nif:election_fence(B, {svc, 1})),
    ?assertMatch({ok, 'a@h', Me}, tether_nif:election_leader(B, {svc, 1})),
    ?assertEqual([{'a@h', 0}, {'b@h', 0}],
                 tether_nif:election_candidates(B, {svc, 1})),
    ?assertEqual([], [A1 || {<<"b@h">>, A1} <- Acts]),
    %% a resigns: b leads with a higher fence, a hears no revoked.
    ok = tether_nif:election_resign(A, {svc, 1}),
    ?assertEqual({error, not_candidate},
                 tether_nif:election_resign(A, {svc, 1})),
    {Acts2, _} = run(Es, T1, 2 * ?HB),
    [{leader, NameB, elected, F2}] = [A2 || {<<"b@h">>, A2} <- Acts2],
    ?assertEqual({svc, 1}, binary_to_term(NameB)),
    ?assert(F2 > F),
    ?assertEqual([], [A2 || {<<"a@h">>, A2} <- Acts2]),
    ?assertEqual({ok, F2}, tether_nif:election_fence(B, {svc, 1})),
    ?assert(maps:get(elected, tether_nif:election_info(B)) >= 1).

bad_arguments_test_() ->
    E = new_engine(<<"x@h">>),
    [?_assertError(badarg, tether_nif:election_lead(E, n, notapid, 0, false,
                                                    [])),
     ?_assertError(badarg, tether_nif:election_lead(E, n, self(), 1 bsl 64,
                                                    false, [])),
     ?_assertError(badarg, tether_nif:election_lead(E, n, self(), 0, maybe,
                                                    [])),
     ?_assertError(badarg, tether_nif:election_lead(E, n, self(), 0, true,
                                                    [1, 2])),
     ?_assertEqual({error, bad_name},
                   tether_nif:election_lead(E, fun() -> ok end, self(), 0,
                                            false, [])),
     ?_assertError(badarg, tether_nif:election_fence(E, fun() -> ok end)),
     ?_assertError(badarg, tether_nif:election_fence(not_an_engine, n)),
     ?_assertEqual({error, not_candidate},
                   tether_nif:election_resign(E, never)),
     ?_assertEqual({error, no_leader}, tether_nif:election_leader(E, never)),
     ?_assertEqual([], tether_nif:election_candidates(E, never))].
