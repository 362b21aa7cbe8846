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
%% With a C-node (tether_ct: three BEAM members and one C-node running the
%% test plug-in rmtest, whose C callback records what the C-node fires):
%%
%% - cnode_primary: reminders whose primary is the C-node fire there, to
%%   the C subscriber, once, on time; the C API sets, reads and cancels
%%   (rmtest), and the C-node's `tether' process answers the facade's
%%   {reminder, ...} calls;
%% - cnode_churn: the 10,000-over-5-s churn with the C-node a member;
%% - cnode_killed: the C-node, primary of three keys, killed before their
%%   time: the next owner fires them (`missed => skip' honoured for one
%%   whose time passed while no owner could fire it);
%% - cnode_restart_with_persistence: the whole cluster, C-node included,
%%   stopped and started again with data_dir / --data-dir.
%%
%% Run alone: scripts/ct.sh --suite test/tether_reminder_SUITE
-module(tether_reminder_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, end_per_testcase/2]).
-export([basics/1, churn/1, owner_killed/1, restart_with_persistence/1,
         cnode_primary/1, cnode_churn/1, cnode_killed/1,
         cnode_restart_with_persistence/1]).
%% Run on the BEAM members (through tether_ct:call/5).
-export([start_recorder/0, take_recorded/0]).

-define(HB_MS, 200).
-define(TTL_MS, 1000).
-define(WAIT_MS, 30000).
-define(CALL_MS, 15000).

all() ->
    [basics, owner_killed, churn, restart_with_persistence, cnode_primary,
     cnode_killed, cnode_churn, cnode_restart_with_persistence].

suite() ->
    [{ct_hooks, [tether_case_hook]}].

%% The hook stops the case's nodes; a tether_ct cluster the case kept is
%% stopped here.
end_per_testcase(_Case, Config) ->
    _ = case erase(cluster) of
            undefined -> ok;
            C -> tether_ct:stop_cluster(C)
        end,
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

%% Reminders whose primary is the C-node fire on the C-node, to its C
%% subscriber, once each and on time; the others fire on BEAM members.
%% The C API (through rmtest) sets, reads and cancels, and the C-node's
%% `tether' process answers {reminder, ...} with the facade's shapes.
cnode_primary(Config) ->
    C = cnode_cluster(Config, #{}),
    [B1, B2, _B3] = tether_ct:beam_nodes(C),
    [CN] = tether_ct:cnodes(C),
    At = now_ms() + 2000,
    Keys = [{k, I} || I <- lists:seq(1, 200)],
    [ok = tether_ct:call(C, B1, tether, remind, [K, At, {p, K}]) || K <- Keys],
    Mine = [K || K <- Keys, primary_ct(C, B1, K) =:= CN],
    ct:pal("~b of 200 keys have the C-node as primary", [length(Mine)]),
    ?assert(length(Mine) > 0),
    %% Readable on the C-node (its `tether' process and its C API).
    [K1 | _] = Mine,
    ?assertEqual({ok, At, {p, K1}},
                 gen_server:call({tether, CN}, {reminder, {get, K1}})),
    ?assertEqual({ok, At, {p, K1}}, erpc:call(CN, rmtest, get, [K1])),
    %% Set, replace and cancel from C.
    ok = erpc:call(CN, rmtest, remind, [from_c, At, first, false]),
    ok = erpc:call(CN, rmtest, remind, [from_c, At, second, false]),
    ok = erpc:call(CN, rmtest, remind, [cancelled_in_c, At, never, false]),
    ok = erpc:call(CN, rmtest, cancel, [cancelled_in_c]),
    ?assertEqual(not_found, erpc:call(CN, rmtest, get, [cancelled_in_c])),
    ok = gen_server:call({tether, CN},
                         {reminder, {set, from_call, At, via_call, false}}),
    ?assertEqual({error, bad_key},
                 gen_server:call({tether, CN},
                                 {reminder, {set, fun() -> ok end, At, p,
                                             false}})),
    ?assertEqual({error, badarg},
                 gen_server:call({tether, CN}, {reminder, {set, k, 1.5, p,
                                                           false}})),
    ?assertEqual({error, payload_too_large},
                 erpc:call(CN, rmtest, remind,
                           [k, At, binary:copy(<<1>>, 70000), false])),
    All = [from_c, from_call | Keys],
    Got = collect_all(C, length(All), 15000) ++ collect_all(C, 1000, 1000),
    ByKey = by_key(Got),
    ?assertEqual(lists:sort(All), lists:sort(maps:keys(ByKey))),
    [?assertMatch([_], maps:get(K, ByKey)) || K <- All],
    [?assertEqual(primary_ct(C, B2, K), N)
     || {N, K, _, _, _} <- Got],
    OnC = [K || {N, K, _, _, _} <- Got, N =:= CN],
    ?assertEqual(lists:sort(Mine), lists:sort(OnC) -- [from_c, from_call]),
    ?assertMatch([{_, from_c, second, _, _}],
                 [X || {_, from_c, _, _, _} = X <- Got]),
    Skews = [T - At || {N, _, _, _, T} <- Got, N =:= CN],
    ct:pal("~b fired on the C-node, skew ~b..~b ms (load ~s)",
           [length(Skews), lists:min(Skews), lists:max(Skews), load()]),
    ?assert(lists:min(Skews) >= 0),
    Info = gen_server:call({tether, CN}, reminder_info),
    ?assertMatch(#{fired := F} when F >= 1, Info).

%% The C-node, primary of three keys, is killed (SIGKILL) before their
%% time could be served: one 4 s ahead fires on the next owner on time;
%% two 200 ms ahead are held on the C-node (its C subscriber is off) until
%% it is killed 2 s later, so the next owner arms them past their time:
%% `missed => fire' fires at once there, `missed => skip' never.
cnode_killed(Config) ->
    C = cnode_cluster(Config, #{}),
    [B1 | _] = Bs = tether_ct:beam_nodes(C),
    [CN] = tether_ct:cnodes(C),
    [KLate, KFire, KSkip] =
        lists:sublist([K || I <- lists:seq(1, 2000), K <- [{key, I}],
                            primary_ct(C, B1, K) =:= CN], 3),
    ok = erpc:call(CN, rmtest, subscribe, [false]),
    Now = now_ms(),
    At = Now + 4000,
    Soon = Now + 200,
    ok = tether_ct:call(C, B1, tether, remind, [KLate, At, late]),
    ok = tether_ct:call(C, B1, tether, remind, [KFire, Soon, fire,
                                               #{missed => fire}]),
    ok = tether_ct:call(C, B1, tether, remind, [KSkip, Soon, skip,
                                               #{missed => skip}]),
    timer:sleep(2000),
    #{held := Held} = gen_server:call({tether, CN}, reminder_info),
    ?assertEqual(2, Held),
    ok = tether_ct:kill(C, CN),
    TKill = now_ms(),
    Got = collect(C, Bs, [], 2, 15000) ++ collect(C, Bs, [], 100, 1500),
    ct:pal("C-node killed at +~b ms: ~p (load ~s)",
           [TKill - Now, [{N, K, T - Now} || {N, K, _, _, T} <- Got], load()]),
    ?assertEqual(lists:sort([KLate, KFire]),
                 lists:sort([K || {_, K, _, _, _} <- Got])),
    [{_, KLate, late, _, TLate}] = [X || {_, K, _, _, _} = X <- Got,
                                         K =:= KLate],
    ?assert(TLate >= At),
    ?assert(TLate - At < 1000).

%% The churn case with the C-node a member (and a recipient of fires):
%% 10,000 reminders over 5 s while a fifth node joins and a BEAM member
%% leaves; every reminder whose remind returned ok is delivered, on BEAM
%% members or the C-node, duplicates only with the same Fence.
cnode_churn(Config) ->
    C = cnode_cluster(Config, #{}),
    [B1, B2, B3] = Bs = tether_ct:beam_nodes(C),
    [CN] = tether_ct:cnodes(C),
    [B4] = tether_test_lib:start_tether_nodes(1, node_opts([])),
    ok = start_recorder_on(B4),
    N = 10000,
    T0 = now_ms(),
    Self = self(),
    _ = [spawn_link(fun() -> Self ! {set, W, setter(B3, W, N, T0)} end)
         || W <- lists:seq(0, 9)],
    timer:sleep(1500),
    ok = erpc:call(B4, tether, join, [B1]),
    timer:sleep(1500),
    ok = tether_ct:call(C, B2, tether, leave, []),
    Results = lists:append([receive {set, W, R} -> R end
                            || W <- lists:seq(0, 9)]),
    Ok = [K || {K, ok} <- Results],
    ct:pal("set ~b in ~b ms, ~b refused", [length(Ok), now_ms() - T0,
                                           length(Results) - length(Ok)]),
    Got = collect(C, Bs, [B4], length(Ok), 40000)
        ++ collect(C, Bs, [B4], 1000000, 3000),
    ByKey = by_key(Got),
    Missing = [K || K <- Ok, not maps:is_key(K, ByKey)],
    Dups = [{K, Fs} || {K, Fs} <- maps:to_list(ByKey), length(Fs) > 1],
    BadDups = [{K, Fs} || {K, Fs} <- Dups, length(lists:usort(Fs)) > 1],
    OnC = length([x || {Nd, _, _, _, _} <- Got, Nd =:= CN]),
    ct:pal("churn with a C-node: ~b delivered (~b on the C-node), ~b keys, "
           "~b missing, ~b duplicated (all with one Fence: ~p; load ~s)",
           [length(Got), OnC, maps:size(ByKey), length(Missing), length(Dups),
            BadDups =:= [], load()]),
    ?assertEqual([], Missing),
    ?assertEqual([], BadDups),
    ?assert(OnC > 0),
    ?assert(length(Dups) =< N div 100).

%% Three BEAM members with data_dir and the C-node with --data-dir;
%% 200 reminders 12 s ahead and two 1.5 s ahead; every member stopped,
%% started again 4 s later under the same names: every reminder fires
%% after the restart (the C-node's among them) but the skipped one.
cnode_restart_with_persistence(Config) ->
    Dir = filename:join(?config(priv_dir, Config), "rm_cnode_restart"),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    C = cnode_cluster(Config, #{env => [{tether, data_dir, Dir}],
                                cnode_args => ["--data-dir", Dir]}),
    [B1 | _] = Bs = tether_ct:beam_nodes(C),
    [CN] = Cs = tether_ct:cnodes(C),
    At = now_ms() + 12000,
    Keys = [{r, I} || I <- lists:seq(1, 200)],
    [ok = tether_ct:call(C, B1, tether, remind, [K, At, K]) || K <- Keys],
    Mine = [K || K <- Keys, primary_ct(C, B1, K) =:= CN],
    Soon = now_ms() + 1500,
    ok = erpc:call(CN, rmtest, remind, [fire_me, Soon, x, false]),
    ok = erpc:call(CN, rmtest, remind, [skip_me, Soon, x, true]),
    Log = filename:join(Dir, "reminders-" ++ atom_to_list(CN) ++ ".log"),
    ?assert(filelib:file_size(Log) > 0),
    [ok = tether_ct:stop(C, N) || N <- Bs ++ Cs],
    timer:sleep(max(0, Soon + 2500 - now_ms())),
    T1 = now_ms(),
    [ok = tether_ct:restart(C, N) || N <- Bs ++ Cs],
    ok = tether_ct:assert_members_agree(C),
    ct:pal("restarted in ~b ms; ~b keys with the C-node as primary",
           [now_ms() - T1, length(Mine)]),
    [ok = start_recorder_on_ct(C, B) || B <- Bs],
    Got = collect(C, Bs, [], 201, 25000) ++ collect(C, Bs, [], 1000, 2000),
    Fired = lists:usort([K || {_, K, _, _, _} <- Got]),
    ?assertEqual(lists:sort([fire_me | Keys]), Fired),
    OnC = lists:usort([K || {N, K, _, _, _} <- Got, N =:= CN]),
    Dups = [{K, Fs} || {K, Fs} <- maps:to_list(by_key(Got)), length(Fs) > 1],
    ct:pal("after restart (~b ms before the 200 were due): ~b deliveries "
           "of ~b keys, ~b keys on the C-node (~b of its ~b), ~b keys "
           "duplicated (load ~s)",
           [At - T1, length(Got), length(Fired), length(OnC),
            length([K || K <- Mine, lists:member(K, OnC)]), length(Mine),
            length(Dups), load()]),
    ct:pal("duplicated (node, ms after their time): ~p",
           [[{K, [{N, T - At} || {N, K1, _, _, T} <- Got, K1 =:= K]}
             || {K, _} <- lists:sublist(Dups, 5)]]),
    ?assertEqual([], [D || {_, Fs} = D <- Dups, length(lists:usort(Fs)) > 1]),
    ?assert(lists:member(fire_me, Fired)),
    ?assert(OnC =/= []).

%%% Helpers

%% Three BEAM members with a recorder each and a C-node with rmtest.
cnode_cluster(Config, Extra) ->
    Plugin = filename:join([tether_test_lib:priv_dir(), "..", "c_src", "build",
                            "plugins", "rmtest.so"]),
    Spec = maps:merge(#{beam => 3, cnodes => 1, prefix => "tether_rmc",
                        heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS,
                        plugins => [Plugin], wait_ms => ?WAIT_MS}, Extra),
    C = tether_ct:start_cluster(Config, Spec),
    put(cluster, C),
    [ok = start_recorder_on_ct(C, B) || B <- tether_ct:beam_nodes(C)],
    C.

start_recorder_on_ct(C, B) ->
    tether_ct:call(C, B, ?MODULE, start_recorder, []).

start_recorder_on(B) ->
    erpc:call(B, ?MODULE, start_recorder, []).

%% On a BEAM member: the process rm_recorder, subscribed to reminders,
%% which keeps {Key, Payload, Fence, ArrivalMs} of every delivery.
start_recorder() ->
    Parent = self(),
    Pid = spawn(fun() ->
                        true = register(rm_recorder, self()),
                        ok = tether:subscribe_reminders(self()),
                        Parent ! {ready, self()},
                        record([])
                end),
    receive {ready, Pid} -> ok after 5000 -> error(recorder_not_started) end.

record(Acc) ->
    receive
        {tether_reminder, K, P, F} ->
            record([{K, P, F, now_ms()} | Acc]);
        {take, From} ->
            From ! {taken, lists:reverse(Acc)},
            record([])
    end.

%% On a BEAM member: what its recorder kept since the last take.
take_recorded() ->
    case whereis(rm_recorder) of
        undefined ->
            [];
        Pid ->
            Pid ! {take, self()},
            receive {taken, L} -> L after 5000 -> [] end
    end.

%% Deliveries on every member of C that is up (BEAM recorders, rmtest on
%% the C-nodes) and on Extra (BEAM nodes outside tether_ct), until Count
%% or Ms: [{Node, Key, Payload, Fence, ArrivalMs}].
collect_all(C, Count, Ms) ->
    collect(C, tether_ct:beam_nodes(C), [], Count, Ms).

collect(C, Bs, Extra, Count, Ms) ->
    collect(C, Bs, Extra, Count, now_ms() + Ms, []).

collect(_C, _Bs, _Extra, Count, _Deadline, Acc) when Count =< 0 ->
    Acc;
collect(C, Bs, Extra, Count, Deadline, Acc) ->
    Up = [N || {N, _} <- tether_ct:os_pids(C)],
    New = lists:append(
            [[{B, K, P, F, T} || {K, P, F, T} <- take(C, B)]
             || B <- Bs, lists:member(B, Up)]
            ++ [[{B, K, P, F, T} || {K, P, F, T} <- take_extra(B)]
                || B <- Extra]
            ++ [[{N, K, P, F, T} || {K, P, F, T} <- take_c(N)]
                || N <- tether_ct:cnodes(C), lists:member(N, Up)]),
    Acc1 = Acc ++ New,
    case now_ms() >= Deadline orelse length(New) >= Count of
        true ->
            Acc1;
        false ->
            timer:sleep(100),
            collect(C, Bs, Extra, Count - length(New), Deadline, Acc1)
    end.

take(C, B) ->
    case catch tether_ct:call(C, B, ?MODULE, take_recorded, []) of
        L when is_list(L) -> L;
        _ -> []
    end.

take_extra(B) ->
    case catch erpc:call(B, ?MODULE, take_recorded, [], 5000) of
        L when is_list(L) -> L;
        _ -> []
    end.

take_c(N) ->
    case catch erpc:call(N, rmtest, take, [], 5000) of
        L when is_list(L) -> L;
        _ -> []
    end.

by_key(Got) ->
    lists:foldl(fun({_, K, _, F, _}, M) ->
                        maps:update_with(K, fun(L) -> [F | L] end, [F], M)
                end, #{}, Got).

primary_ct(C, B, Key) ->
    [P] = tether_ct:call(C, B, tether, owners, [Key, 1]),
    P.

load() ->
    case file:read_file("/proc/loadavg") of
        {ok, <<L/binary>>} -> hd(string:split(binary_to_list(L), " "));
        _ -> "?"
    end.

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
