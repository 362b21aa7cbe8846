%% EUnit tests of the engine NIFs and of the tether API on a node that is
%% not distributed.
%%
%% The engine is sans-IO, so two engines can run in this one process: the
%% test carries their SEND actions across by hand and passes the time in,
%% which makes these tests deterministic (no sleeps, no sockets).
-module(tether_api_tests).

-include_lib("eunit/include/eunit.hrl").

-define(HB, 100).
-define(TTL, 1000).

%%% Engines wired together in this process

new_engine(Name) ->
    tether_engine_pump:new(Name, #{cookie => <<"tether_api_tests">>,
                                   heartbeat_ms => ?HB, ttl_ms => ?TTL}).

%% Ticks every engine at Now and carries actions until none is left.
%% Connections are modelled as always up (peer_up on both sides once).
pump(Es, Now) ->
    _ = tether_engine_pump:pump(Es, Now, fun(_) -> false end),
    ok.

%% Two engines that know of each other's connection.
pair() ->
    A = new_engine(<<"a@h">>),
    B = new_engine(<<"b@h">>),
    ok = tether_nif:engine_peer_up(A, <<"b@h">>),
    ok = tether_nif:engine_peer_up(B, <<"a@h">>),
    Es = #{<<"a@h">> => A, <<"b@h">> => B},
    ok = pump(Es, 1),
    {A, B, Es}.

%% Joined, and a heartbeat round later each holds a lease on the other.
join_pair() ->
    {A, B, Es} = pair(),
    ok = tether_nif:engine_join(B, <<"a@h">>),
    ok = pump(Es, 2),
    ok = pump(Es, 2 + ?HB),
    {A, B, Es}.

join_test() ->
    {A, B, _} = join_pair(),
    ?assertEqual([<<"a@h">>, <<"b@h">>], tether_nif:engine_members(A)),
    ?assertEqual([<<"a@h">>, <<"b@h">>], tether_nif:engine_members(B)).

member_events_test() ->
    {_A, B, Es} = pair(),
    ok = tether_nif:engine_join(B, <<"a@h">>),
    [ok = tether_nif:engine_tick(E, 2) || E <- maps:values(Es)],
    Seen = collect_events(Es, <<"a@h">>),
    ?assert(lists:member({member, up, <<"b@h">>}, Seen)).

%% Carries actions like pump/2 (without a tick) but returns the events
%% (every action but send and connect) engine Me handed out, in order.
collect_events(Es, Me) ->
    [A || {N, A} <- tether_engine_pump:carry(Es, fun(A) -> not is_io(A) end),
          N =:= Me].

is_io({send, _, _}) -> true;
is_io({connect, _}) -> true;
is_io(_) -> false.

%% The SHELL messages (engine_send/3) engine Me received from From.
messages(Es, Me, From) ->
    [binary_to_term(Etf)
     || {message, F, Etf} <- collect_events(Es, Me), F =:= From].

drop_partition_test() ->
    {A, B, Es} = join_pair(),
    {ok, Ref} = tether_nif:engine_partition(A, [<<"a@h">>], [<<"b@h">>], drop),
    ok = pump(Es, 3),
    ?assertEqual([<<"a@h">>], tether_nif:engine_members(A)),
    ?assertEqual([<<"b@h">>], tether_nif:engine_members(B)),
    ?assertMatch([{Ref, drop, false, [<<"a@h">>], [<<"b@h">>]}],
                 tether_nif:engine_partitions(B)),
    ?assertEqual({error, closed},
                 tether_nif:engine_send(A, <<"b@h">>, term_to_binary(x))),
    ok = tether_nif:engine_heal(B, Ref),
    %% They come back with the next heartbeats.
    ok = pump(Es, 3 + ?HB),
    ok = pump(Es, 3 + 2 * ?HB),
    ?assertEqual([<<"a@h">>, <<"b@h">>], tether_nif:engine_members(A)),
    ?assertEqual([<<"a@h">>, <<"b@h">>], tether_nif:engine_members(B)),
    ?assertMatch([{Ref, drop, true, _, _}], tether_nif:engine_partitions(A)).

defer_partition_test() ->
    {A, B, Es} = join_pair(),
    {ok, _} = tether_nif:engine_partition(A, [<<"a@h">>], [<<"b@h">>], defer),
    ok = pump(Es, 3),
    [ok = tether_nif:engine_send(A, <<"b@h">>, term_to_binary({t, I}))
     || I <- lists:seq(1, 5)],
    %% Well past the lease, a round at a time: membership holds, nothing
    %% is delivered.
    Acts = lists:append(
             [begin
                  [ok = tether_nif:engine_tick(E, T) || E <- maps:values(Es)],
                  drain_all(Es)
              end || T <- lists:seq(3 + ?HB, 3 + 3 * ?TTL, ?HB)]),
    ?assertEqual([], [M || M = {message, _, _} <- Acts]),
    ?assertEqual([<<"a@h">>, <<"b@h">>], tether_nif:engine_members(A)),
    ?assertEqual([<<"a@h">>, <<"b@h">>], tether_nif:engine_members(B)),
    ok = tether_nif:engine_heal_all(A),
    %% Held sends go out from the next tick (in slices, see engine.c).
    ok = tether_nif:engine_tick(A, 3 + 3 * ?TTL),
    ?assertEqual([{t, I} || I <- lists:seq(1, 5)],
                 messages(Es, <<"b@h">>, <<"a@h">>)).

%% Carries every action between the engines; returns all of them.
drain_all(Es) ->
    [A || {_, A} <- tether_engine_pump:carry(Es, fun(_) -> true end)].

%% A 4 MiB message goes through the dirty-scheduler variants intact.
large_message_test() ->
    {A, _, Es} = join_pair(),
    Big = crypto:strong_rand_bytes(4 bsl 20),
    ok = tether_nif:engine_send_dirty(A, <<"b@h">>, term_to_binary({big, Big})),
    ?assertEqual([{big, Big}], messages(Es, <<"b@h">>, <<"a@h">>)).

leave_test() ->
    {A, B, Es} = join_pair(),
    ok = tether_nif:engine_leave(B),
    ?assertEqual({error, closed}, tether_nif:engine_leave(B)),
    ok = pump(Es, 3),
    ?assertEqual([<<"a@h">>], tether_nif:engine_members(A)),
    ?assertEqual([], tether_nif:engine_members(B)),
    ?assertMatch(#{left := true}, tether_nif:engine_info(B)),
    ?assertEqual({error, closed}, tether_nif:engine_join(B, <<"a@h">>)).

%% Identities from seeds: each trusts only the key it was given.
explicit_trust_test() ->
    Mk = fun(Name) ->
                 Seed = crypto:strong_rand_bytes(32),
                 E = tether_engine_pump:new(Name, #{identity_seed => Seed,
                                                    heartbeat_ms => ?HB,
                                                    ttl_ms => ?TTL}),
                 {Pub, _} = crypto:generate_key(eddsa, ed25519, Seed),
                 ?assertMatch(#{public_key := Pub}, tether_nif:engine_info(E)),
                 {E, Pub}
         end,
    {A, PA} = Mk(<<"a@h">>),
    {B, PB} = Mk(<<"b@h">>),
    Es = #{<<"a@h">> => A, <<"b@h">> => B},
    ok = tether_nif:engine_peer_up(A, <<"b@h">>),
    ok = tether_nif:engine_peer_up(B, <<"a@h">>),
    ok = tether_nif:engine_trust_add(B, <<"a@h">>, PA),
    ok = tether_nif:engine_join(B, <<"a@h">>),
    ok = pump(Es, 1),
    ok = pump(Es, 1 + 3 * ?HB),
    ?assertEqual([<<"a@h">>], tether_nif:engine_members(A)),
    ok = tether_nif:engine_trust_add(A, <<"b@h">>, PB),
    ?assertEqual({error, exists},
                 tether_nif:engine_trust_add(A, <<"b@h">>, PA)),
    [ok = pump(Es, T) || T <- lists:seq(1 + 4 * ?HB, 1 + 12 * ?HB, ?HB)],
    ?assertEqual([<<"a@h">>, <<"b@h">>], tether_nif:engine_members(A)),
    ?assertEqual([<<"a@h">>, <<"b@h">>], tether_nif:engine_members(B)).

forged_bytes_are_refused_test() ->
    {A, _, _} = join_pair(),
    ?assertMatch({error, _}, tether_nif:engine_recv(A, <<"b@h">>, <<>>)),
    ?assertMatch({error, _},
                 tether_nif:engine_recv(A, <<"b@h">>,
                                        crypto:strong_rand_bytes(80))),
    ?assertMatch({error, _},
                 tether_nif:engine_recv(A, <<"c@h">>, <<1, 16, 0:64, 0:256>>)),
    #{stats := #{recv_garbage := G, recv_unknown := U}} =
        tether_nif:engine_info(A),
    ?assert(G + U >= 2),
    ?assertEqual([<<"a@h">>, <<"b@h">>], tether_nif:engine_members(A)).

new_rejects_bad_options_test_() ->
    Good = #{name => <<"a@h">>, incarnation => 1,
             seed => binary:copy(<<1>>, 32), cookie => <<"c">>},
    IdentityOnly = (maps:remove(cookie, Good))#{
                     identity_seed => binary:copy(<<3>>, 32)},
    WithSecret = (maps:remove(cookie, Good))#{
                   cluster_secret => binary:copy(<<2>>, 32)},
    Bad = [maps:remove(name, Good), maps:remove(seed, Good),
           maps:remove(cookie, Good), Good#{seed => <<1>>},
           Good#{name => <<>>}, Good#{name => binary:copy(<<"a">>, 256)},
           Good#{name => <<"a", 0, "b">>}, Good#{incarnation => 0},
           Good#{heartbeat_ms => 100, ttl_ms => 100},
           Good#{cluster_secret => <<1, 2>>}, Good#{heartbeat_ms => -1},
           Good#{identity_seed => <<1>>},
           not_a_map],
    [?_assertError(badarg, tether_nif:engine_new(B)) || B <- Bad] ++
        [?_assertMatch({ok, _}, tether_nif:engine_new(Good)),
         ?_assertMatch({ok, _}, tether_nif:engine_new(WithSecret)),
         ?_assertMatch({ok, _}, tether_nif:engine_new(IdentityOnly))].

%% Every engine NIF, given a live engine and odd terms for the other
%% arguments, returns or raises badarg; the engine keeps working.
odd_arguments_test() ->
    {A, _, _} = join_pair(),
    Odd = [a, 'a@h', -1, 0, 1 bsl 64, 1 bsl 70, 1.5, <<>>, <<0>>,
           binary:copy(<<"x">>, 300), [], [<<>>], [<<"a@h">>], [a],
           [<<"x@h">> | improper], {a, b}, #{}, self(), make_ref(),
           drop, defer, lists:duplicate(300, <<"n@h">>)],
    Funs = [{F, Ar} || {F, Ar} <- tether_nif:module_info(exports),
                       lists:prefix("engine_", atom_to_list(F)),
                       F =/= engine_new, Ar >= 2],
    ?assertNotEqual([], Funs),
    [try_call(F, [A | Args]) || {F, Ar} <- Funs, Args <- combos(Ar - 1, Odd)],
    ?assertEqual([<<"a@h">>, <<"b@h">>], tether_nif:engine_members(A)).

combos(0, _) -> [[]];
combos(1, Odd) -> [[T] || T <- Odd];
combos(N, Odd) ->
    [[T | Rest] || T <- Odd, Rest <- combos(N - 1, lists:sublist(Odd, 8))].

try_call(F, Args) ->
    try apply(tether_nif, F, Args) of
        _ -> ok
    catch
        error:badarg -> ok
    end.

%%% The API without distribution (EUnit runs on a node that is not alive)

not_distributed_test_() ->
    {setup,
     fun() ->
             {ok, Started} = application:ensure_all_started(tether),
             Started
     end,
     fun(Started) ->
             [application:stop(App) || App <- lists:reverse(Started)]
     end,
     fun(_) ->
             case node() of
                 nonode@nohost ->
                     [?_assertEqual({error, not_distributed}, tether:members()),
                      ?_assertEqual({error, not_distributed},
                                    tether:join('x@127.0.0.1')),
                      ?_assertEqual({error, not_distributed}, tether:leave()),
                      ?_assertEqual({error, not_distributed},
                                    tether:partitions()),
                      ?_assertEqual({error, not_distributed}, tether:heal()),
                      ?_assertEqual(ok, tether:subscribe()),
                      ?_assertEqual(ok, tether:unsubscribe()),
                      ?_assert(is_pid(whereis(tether)))];
                 _ ->
                     []
             end
     end}.
