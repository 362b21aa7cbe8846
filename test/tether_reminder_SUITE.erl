%% Reminders with three BEAM nodes (OTP peers running tether):
%%
%% - basics: reminders set on one node fire once each, on their key's
%%   primary, at their time; reminder/1 answers on every node until they
%%   fire; cancel and replace; bad input answers clear errors;
%% - churn: 10,000 reminders set over 5 s while a fourth node joins and
%%   one of the three leaves: every reminder whose remind returned ok is
%%   delivered, duplicates only with the same Fence (counted and stated);
%% - the owner's node killed (SIGKILL) before its fire time: fires on the
%%   next owner, on time;
%% - full-cluster restart with persistence (data_dir): every pending
%%   reminder fires after the restart; the ones whose time passed while
%%   the whole cluster was down were missed: `missed => fire' delivers
%%   them, `skip' never.
%%
%% Run alone: scripts/ct.sh --suite test/tether_reminder_SUITE
-module(tether_reminder_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2,
         end_per_testcase/2]).
-export([basics/1, churn/1, owner_killed/1, restart_with_persistence/1]).

-define(HB_MS, 200).
-define(TTL_MS, 1000).
-define(WAIT_MS, 30000).
-define(CALL_MS, 15000).

all() ->
    [basics, owner_killed, churn, restart_with_persistence].

init_per_suite(Config) ->
    tether_test_lib:require_env(Config).

end_per_suite(_Config) ->
    ok.

init_per_testcase(_Case, Config) ->
    Config.

end_per_testcase(_Case, Config) ->
    ok = tether_test_lib:stop_case(),
    Config.

%%% Cases

basics(_Config) ->
    Bs = [B1, B2, B3] = cluster(3, []),
    Subs = subscribe(Bs),
    Now = now_ms(),
    Keys = [{k, I} || I <- lists:seq(1, 300)],
    [?assertEqual(ok, call(B1, tether, remind, [K, Now + 1500, {p, K}]))
     || K <- Keys],
    %% Readable anywhere before they fire.
    [?assertEqual({ok, Now + 1500, {p, {k, 7}}}, call(B, tether, reminder,
                                                       [{k, 7}]))
     || B <- Bs],
    ok = call(B2, tether, remind_after, [replaced, 600, first]),
    ok = call(B3, tether, remind_after, [replaced, 900, second]),
    ok = call(B3, tether, remind_after, [cancelled, 700, never]),
    ok = call(B1, tether, cancel_reminder, [cancelled]),
    Got = collect(Subs, 301, 6000),
    Fired = [{K, P, F, N} || {N, {tether_reminder, K, P, F}, _T} <- Got],
    ?assertEqual(301, length(Fired)),
    ?assertEqual(lists:sort([replaced | Keys]),
                 lists:sort([K || {K, _, _, _} <- Fired])),
    [?assertEqual(primary(B1, K), N) || {K, _, _, N} <- Fired],
    ?assertMatch([{replaced, second, _, _}],
                 [X || {replaced, _, _, _} = X <- Fired]),
    Skews = [T - (Now + 1500) || {_, {tether_reminder, {k, _}, _, _}, T} <- Got],
    ct:pal("skew of 300 fires at one instant: min ~b, max ~b ms",
           [lists:min(Skews), lists:max(Skews)]),
    ?assert(lists:min(Skews) >= 0),
    [?assertEqual(not_found, call(B, tether, reminder, [{k, 7}])) || B <- Bs],
    ?assertEqual([], collect(Subs, 1, 500)),
    %% Bad input: clear errors, nothing crashes.
    ?assertEqual({error, bad_key},
                 call(B1, tether, remind, [fun() -> ok end, 0, p])),
    ?assertEqual({error, payload_too_large},
                 call(B1, tether, remind, [k, 0, binary:copy(<<1>>, 70000)])),
    ?assertEqual({error, {bad_option, {missed, maybe}}},
                 call(B1, tether, remind, [k, 0, p, #{missed => maybe}])),
    ?assertEqual({error, {bad_time, 1.0}}, call(B1, tether, remind, [k, 1.0, p])),
    [?assertEqual(pong, net_adm:ping(B)) || B <- Bs].

%% The primary of a key dies (SIGKILL) 2 s before its fire time: the
%% next owner takes the shard after the TTL and fires it on time.
owner_killed(_Config) ->
    Bs = [B1 | _] = cluster(3, []),
    Subs = subscribe(Bs),
    {Key, Owner} = key_owned_by_other(B1, Bs),
    At = now_ms() + 2500,
    ok = call(B1, tether, remind, [Key, At, payload, #{missed => skip}]),
    ok = tether_test_lib:kill_node(Owner, ?WAIT_MS),
    Got = collect(Subs -- [{Owner, S} || {O, S} <- Subs, O =:= Owner], 1,
                  10000),
    [{N, {tether_reminder, Key, payload, _}, T}] = Got,
    ct:pal("owner ~p killed: fired on ~p, ~b ms after its time",
           [Owner, N, T - At]),
    ?assertNotEqual(Owner, N),
    ?assert(T - At < 1000).

%% 10,000 reminders set over about 5 s (ten setters on a node that stays)
%% while a fourth node joins and one of the three leaves; fire times
%% spread over the same window plus 2 s. Every reminder whose remind
%% returned ok is delivered; a key delivered twice carries one Fence.
churn(_Config) ->
    [B1, B2, B3] = Bs = cluster(3, []),
    [B4] = tether_test_lib:start_tether_nodes(1, node_opts([])),
    Subs = subscribe([B4 | Bs]),
    N = 10000,
    T0 = now_ms(),
    Self = self(),
    Setters = [spawn_link(fun() -> Self ! {set, W, setter(B3, W, N, T0)} end)
               || W <- lists:seq(0, 9)],
    timer:sleep(1500),
    ok = call(B4, tether, join, [B1]),
    timer:sleep(1500),
    ok = call(B2, tether, leave, []),
    Results = lists:append([receive {set, W, R} -> R end
                            || W <- lists:seq(0, 9)]),
    _ = Setters,
    Ok = [K || {K, ok} <- Results],
    Failed = [{K, E} || {K, E} <- Results, E =/= ok],
    ct:pal("set ~b in ~b ms, ~b refused: ~p", [length(Ok), now_ms() - T0,
                                                length(Failed),
                                                lists:sublist(Failed, 5)]),
    Got = collect(Subs, length(Ok), 30000) ++ collect(Subs, 1000000, 3000),
    ByKey = lists:foldl(fun({_, {tether_reminder, K, _, F}, _}, M) ->
                                maps:update_with(K, fun(L) -> [F | L] end,
                                                 [F], M)
                        end, #{}, Got),
    Missing = [K || K <- Ok, not maps:is_key(K, ByKey)],
    Dups = [{K, Fs} || {K, Fs} <- maps:to_list(ByKey), length(Fs) > 1],
    BadDups = [{K, Fs} || {K, Fs} <- Dups, length(lists:usort(Fs)) > 1],
    ct:pal("churn: ~b delivered, ~b keys, ~b missing, ~b duplicated "
           "(all with one Fence: ~p)",
           [length(Got), maps:size(ByKey), length(Missing), length(Dups),
            BadDups =:= []]),
    ?assertEqual([], Missing),
    ?assertEqual([], BadDups),
    ?assert(length(Dups) =< N div 100).

%% Three nodes with data_dir; 200 reminders 12 s ahead and two 1.5 s
%% ahead (missed => fire, missed => skip); every node stopped, 4 s
%% later started again (same names, same data_dir) and joined: every
%% reminder fires after the restart, but the skipped one.
restart_with_persistence(Config) ->
    Dir = ?config(priv_dir, Config),
    Names = [peer:random_name(tether_rmp) || _ <- [1, 2, 3]],
    Env = [{data_dir, Dir}],
    Bs = [B1 | _] = named_cluster(Names, Env),
    At = now_ms() + 12000,
    [ok = call(B1, tether, remind, [{r, I}, At, I]) || I <- lists:seq(1, 200)],
    Soon = now_ms() + 1500,
    ok = call(B1, tether, remind, [fire_me, Soon, x, #{missed => fire}]),
    ok = call(B1, tether, remind, [skip_me, Soon, x, #{missed => skip}]),
    [ok = tether_test_lib:stop_case_peer(B) || B <- Bs],
    timer:sleep(max(0, Soon + 2500 - now_ms())),
    T1 = now_ms(),
    Bs2 = named_cluster(Names, Env),
    ct:pal("restarted in ~b ms", [now_ms() - T1]),
    Subs = subscribe(Bs2),
    Got = collect(Subs, 201, 25000) ++ collect(Subs, 100, 2000),
    Keys = lists:usort([K || {_, {tether_reminder, K, _, _}, _} <- Got]),
    ?assertEqual(lists:sort([fire_me | [{r, I} || I <- lists:seq(1, 200)]]),
                 Keys),
    Late = [T - At || {_, _, T} <- Got],
    ct:pal("after restart: ~b deliveries of 200 keys, lateness ~b..~b ms",
           [length(Got), lists:min(Late), lists:max(Late)]).

%%% Helpers

setter(Node, W, N, T0) ->
    Per = N div 10,
    lists:map(
      fun(I) ->
              Key = {c, W, I},
              %% Paced over 5 s; fire times 2..7 s from the start.
              Due = T0 + (I * 5000) div Per,
              Wait = Due - now_ms(),
              _ = Wait > 0 andalso timer:sleep(Wait),
              R = catch erpc:call(Node, tether, remind,
                                  [Key, T0 + 2000 + (I * 5000) div Per, W],
                                  ?CALL_MS),
              {Key, R}
      end, lists:seq(1, Per)).

now_ms() ->
    erlang:system_time(millisecond).

node_opts(Env) ->
    #{prefix => tether_rm, link => false,
      env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS} | Env]}.

cluster(N, Env) ->
    Opts = node_opts([]),
    Env1 = lists:ukeymerge(1, lists:keysort(1, Env),
                           lists:keysort(1, maps:get(env, Opts))),
    tether_test_lib:start_cluster(N, Opts#{env => Env1}, ?WAIT_MS).

named_cluster(Names, Env) ->
    #{env := Base} = node_opts([]),
    Nodes = [begin
                 P = tether_test_lib:start_case_peer(
                       Name, #{connection => dist, link => false}),
                 Node = tether_test_lib:peer_node(P),
                 {ok, _} = tether_test_lib:start_tether(Node, Base ++ Env),
                 Node
             end || Name <- Names],
    ok = tether_test_lib:join_all(Nodes, ?WAIT_MS),
    Nodes.

%% A relay on each node subscribed to reminders: [{Node, Relay}].
subscribe(Nodes) ->
    [{N, call(N, tether_test_lib, relay_start,
              [self(), fun tether:subscribe_reminders/0])} || N <- Nodes].

%% Up to Count reminders relayed within Ms: [{Node, Msg, ArrivalMs}].
collect(Subs, Count, Ms) ->
    Deadline = now_ms() + Ms,
    collect(Subs, Count, Deadline, []).

collect(_Subs, 0, _Deadline, Acc) ->
    lists:reverse(Acc);
collect(Subs, Count, Deadline, Acc) ->
    Left = max(0, Deadline - now_ms()),
    receive
        {relay, Pid, {tether_reminder, _, _, _} = M} ->
            collect(Subs, Count - 1, Deadline,
                    [{node(Pid), M, now_ms()} | Acc])
    after Left ->
            lists:reverse(Acc)
    end.

primary(Node, Key) ->
    [P] = call(Node, tether, owners, [Key, 1]),
    P.

%% A key whose primary is not Node, and that primary.
key_owned_by_other(Node, _Bs) ->
    hd([{K, P} || I <- lists:seq(1, 1000), K <- [{key, I}],
                  P <- [primary(Node, K)], P =/= Node]).

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, ?CALL_MS).
