%% EUnit tests of reminders: the API's argument checks (in the caller,
%% before any message), the application env checks, and the reminders
%% NIFs over engines in this process (sans-IO: the test carries their
%% SEND actions and passes the time; the wall clock is the real one).
-module(tether_reminder_tests).

-include_lib("eunit/include/eunit.hrl").

-define(HB, 100).
-define(TTL, 1000).

%%% Argument checks: clear errors, nothing sent anywhere

bad_arguments_test_() ->
    [?_assertEqual({error, {bad_time, 1.5}}, tether:remind(k, 1.5, p)),
     ?_assertEqual({error, {bad_time, 1 bsl 63}},
                   tether:remind(k, 1 bsl 63, p)),
     ?_assertEqual({error, {bad_time, x}}, tether:remind(k, x, p)),
     ?_assertEqual({error, {bad_delay, -1}}, tether:remind_after(k, -1, p)),
     ?_assertEqual({error, {bad_delay, 1.0}}, tether:remind_after(k, 1.0, p)),
     ?_assertEqual({error, {bad_delay, 1 bsl 63}},
                   tether:remind_after(k, 1 bsl 63, p)),
     ?_assertEqual({error, {bad_option, {missed, later}}},
                   tether:remind(k, 0, p, #{missed => later})),
     ?_assertEqual({error, {bad_option, {colour, red}}},
                   tether:remind(k, 0, p, #{colour => red})),
     ?_assertEqual({error, {bad_option, [{missed, skip}]}},
                   tether:remind(k, 0, p, [{missed, skip}])),
     ?_assertEqual({error, {bad_option, self}},
                   tether:subscribe_reminders(self)),
     ?_assertEqual({error, {bad_option, 1}}, tether:unsubscribe_reminders(1))].

config_test_() ->
    Get = fun(Env) -> fun(K, D) -> proplists:get_value(K, Env, D) end end,
    [?_assertEqual(#{replicas => 3, hold_ms => 24 * 3600 * 1000,
                     data_dir => undefined, persist => true},
                   tether_reminder:read_config(Get([]))),
     ?_assertThrow({reminder_replicas, 0},
                   tether_reminder:read_config(Get([{reminder_replicas, 0}]))),
     ?_assertThrow({reminder_replicas, 9},
                   tether_reminder:read_config(Get([{reminder_replicas, 9}]))),
     ?_assertThrow({reminder_hold_ms, -1},
                   tether_reminder:read_config(Get([{reminder_hold_ms, -1}]))),
     ?_assertThrow({data_dir, 42},
                   tether_reminder:read_config(Get([{data_dir, 42}]))),
     ?_assertThrow({reminder_persist, yes},
                   tether_reminder:read_config(Get([{reminder_persist, yes}])))].

%% Without the tether server, the calls say so.
not_started_test() ->
    case whereis(tether) of
        undefined ->
            ?assertEqual({error, not_started}, tether:remind(k, 0, p)),
            ?assertEqual({error, not_started}, tether:cancel_reminder(k)),
            ?assertEqual({error, not_started}, tether:reminder(k));
        _ ->
            ok
    end.

%%% The NIFs over engines in this process

new_engine(Name) ->
    E = tether_engine_pump:new(Name, #{cookie => <<"tether_reminder_tests">>,
                                       heartbeat_ms => ?HB, ttl_ms => ?TTL,
                                       reminder_round_ms => ?HB}),
    ok = tether_nif:reminders_subscribers(E, 1),
    E.

%% The reminders actions are the ones these tests look at.
is_reminders(A) ->
    lists:member(element(1, A), [reminder, reminder_reply, reminder_store]).

%% Ticks every engine at Now and carries actions until none is left;
%% returns the reminders actions, as {EngineName, Action}.
pump(Es, Now) ->
    tether_engine_pump:pump(Es, Now, fun is_reminders/1).

run(Es, T0, Ms) ->
    tether_engine_pump:run(Es, T0, Ms, fun is_reminders/1).

%% Runs in real time (the wall clock decides fire times) for Ms.
run_real(Es, T0, Ms) ->
    lists:foldl(fun(T, {Acc, _}) -> timer:sleep(10), {Acc ++ pump(Es, T), T}
                end, {[], T0}, lists:seq(T0, T0 + Ms, 10)).

trio() ->
    Names = [<<"a@h">>, <<"b@h">>, <<"c@h">>],
    Es = maps:from_list([{N, new_engine(N)} || N <- Names]),
    T = tether_engine_pump:join_all(Es, <<"a@h">>, 5 * ?HB,
                                    fun is_reminders/1),
    {Es, T}.

now_ms() ->
    erlang:system_time(millisecond).

fires(Acts) ->
    [{N, binary_to_term(K), binary_to_term(P), F}
     || {N, {reminder, K, P, F}} <- Acts].

three_engines_fire_once_test() ->
    {Es, T0} = trio(),
    A = maps:get(<<"a@h">>, Es),
    B = maps:get(<<"b@h">>, Es),
    At = now_ms() + 200,
    [ok = tether_nif:reminders_set(A, {k, I}, At, {payload, I}, false, I)
     || I <- lists:seq(1, 30)],
    {Acts, T1} = run(Es, T0, 0),
    Replies = [R || {<<"a@h">>, {reminder_reply, _, R}} <- Acts],
    ?assertEqual(lists:duplicate(30, ok), Replies),
    %% Every node holds every key (R = 3), read anywhere.
    ?assertEqual({ok, At, term_to_binary({payload, 7})},
                 tether_nif:reminders_get(B, {k, 7}, 0)),
    {Acts2, _} = run_real(Es, T1, 400),
    Fired = fires(Acts2),
    ?assertEqual(30, length(Fired)),
    ?assertEqual(lists:seq(1, 30), lists:sort([I || {_, {k, I}, _, _} <- Fired])),
    [?assertEqual({payload, I}, P) || {_, {k, I}, P, _} <- Fired],
    ?assertEqual(not_found, tether_nif:reminders_get(B, {k, 7}, 0)),
    Stores = [R || {_, {reminder_store, R}} <- Acts ++ Acts2],
    ?assert(length(Stores) >= 30 * 3 * 2). % set and tombstone on each

cancel_and_replace_test() ->
    {Es, T0} = trio(),
    C = maps:get(<<"c@h">>, Es),
    At = now_ms() + 150,
    ok = tether_nif:reminders_set(C, x, At, one, false, 1),
    ok = tether_nif:reminders_set(C, y, At, two, false, 2),
    {_, T1} = run(Es, T0, 0),
    ok = tether_nif:reminders_cancel(C, x, 3),
    ok = tether_nif:reminders_set(C, y, At + 100, three, false, 4),
    {Acts, _} = run_real(Es, T1, 400),
    ?assertMatch([{_, y, three, _}], fires(Acts)).

load_and_dump_test() ->
    E = new_engine(<<"solo@h">>),
    _ = pump(#{<<"solo@h">> => E}, 1),
    ok = tether_nif:reminders_set(E, k, now_ms() + 100000, p, true, 1),
    Acts = pump(#{<<"solo@h">> => E}, 2),
    [Rec] = [R || {_, {reminder_store, R}} <- Acts],
    ?assertEqual([Rec], tether_nif:reminders_dump(E)),
    E2 = new_engine(<<"solo@h">>),
    ?assertEqual(ok, tether_nif:reminders_load(E2, Rec)),
    ?assertEqual({error, bad_record}, tether_nif:reminders_load(E2, <<"x">>)),
    ?assertEqual({error, bad_record},
                 tether_nif:reminders_load(E2, binary:part(Rec, 0, 10))),
    #{pending := 1, load_errors := 2} = tether_nif:reminders_info(E2).

nif_bad_arguments_test_() ->
    E = new_engine(<<"x@h">>),
    [?_assertError(badarg, tether_nif:reminders_set(E, k, 1.0, p, false, 1)),
     ?_assertError(badarg, tether_nif:reminders_set(E, k, 1, p, maybe, 1)),
     ?_assertError(badarg, tether_nif:reminders_set(E, k, 1, p, false, -1)),
     ?_assertError(badarg, tether_nif:reminders_set(nope, k, 1, p, false, 1)),
     ?_assertEqual({error, bad_key},
                   tether_nif:reminders_set(E, fun() -> ok end, 1, p, false,
                                            1)),
     ?_assertEqual({error, payload_too_large},
                   tether_nif:reminders_set(E, k, 1, binary:copy(<<1>>, 70000),
                                            false, 1)),
     ?_assertEqual({error, bad_key},
                   tether_nif:reminders_cancel(E, fun() -> ok end, 1)),
     ?_assertError(badarg, tether_nif:reminders_get(E, k, x)),
     ?_assertError(badarg, tether_nif:reminders_subscribers(E, -1)),
     ?_assertError(badarg, tether_nif:reminders_load(E, notabinary)),
     ?_assertError(badarg,
                   tether_nif:engine_new(#{name => <<"y@h">>, incarnation => 1,
                                           seed => <<0:256>>,
                                           cookie => <<"c">>,
                                           reminder_replicas => 9}))].
