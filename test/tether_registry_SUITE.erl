%% The tether registry (the :global-compatible API) across three real BEAM
%% nodes (OTP peer), each running the tether application.
%%
%% Nothing waits a fixed time as an assertion: conditions are polled up to
%% a generous deadline.
%%
%% Run: epmd -address 127.0.0.1 -port 14397 & export ERL_EPMD_PORT=14397
%% ERL_EPMD_ADDRESS=127.0.0.1; rebar3 ct --name tether_ct@127.0.0.1
%% --setcookie tether_ct --suite test/tether_registry_SUITE
-module(tether_registry_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0]).
-export([register_visible_everywhere/1, dies_with_process/1,
         dies_with_node/1, via_gen_server/1, via_gen_statem/1,
         via_elixir_genserver/1, conflict_after_heal/1,
         resolver_decides_after_heal/1, sync_waits_for_every_member/1,
         stale_registrant_never_removes_successor/1,
         rejoin_keeps_live_registrations/1, churn_ends_consistent/1]).
%% Run on the peers.
-export([entries/0, spawn_idle/0, spawn_many/1, register_then_look/2,
         all_visible/1, churn_start/3, churn_result/1, reg_digest/0]).
%% gen_server and gen_statem callbacks of the via cases.
-export([init/1, handle_call/3, handle_cast/2, callback_mode/0,
         handle_event/4]).

-define(HB_MS, 200).
-define(TTL_MS, 2000).
-define(WAIT_MS, 30000).

suite() ->
    [{ct_hooks, [{tether_case_hook, #{require => dist, compiled => tether_nif}}]}].

all() ->
    [register_visible_everywhere, dies_with_process, dies_with_node,
     via_gen_server, via_gen_statem, via_elixir_genserver,
     conflict_after_heal, resolver_decides_after_heal,
     sync_waits_for_every_member, stale_registrant_never_removes_successor,
     rejoin_keeps_live_registrations, churn_ends_consistent].

%%% Cases

%% register/whereis/registered_names/send/unregister seen on every node;
%% a taken name and a second name for one pid are refused.
register_visible_everywhere(_Config) ->
    [N1, N2, N3] = Nodes = cluster(3),
    P = relay(N1),
    ?assertEqual(yes, call(N1, tether, register_name, [svc, P])),
    wait_where(Nodes, svc, P),
    [?assert(lists:member(svc, call(N, tether, registered_names, [])))
     || N <- Nodes],
    Q = relay(N2),
    ?assertEqual(no, call(N2, tether, register_name, [svc, Q])),
    %% One name per pid, as in global; a remote pid is registered by its
    %% own node.
    ?assertEqual(no, call(N3, tether, register_name, [other, P])),
    ?assertEqual(yes, call(N3, tether, register_name, [{q, 1}, Q])),
    wait_where(Nodes, {q, 1}, Q),
    ?assertEqual(P, call(N3, tether, send, [svc, hello])),
    ?assertEqual(hello, next_msg(P)),
    ok = call(N3, tether, sync, []),
    ok = call(N2, tether, unregister_name, [svc]),
    wait_where(Nodes, svc, undefined),
    ?assertEqual({badarg, {svc, hi}},
                 catch_exit(N3, fun() -> tether:send(svc, hi) end)),
    ok = call(N1, tether, unregister_name, [svc]),
    %% The freed name and pid can be registered again.
    ?assertEqual(yes, call(N1, tether, register_name, [svc2, P])),
    wait_where(Nodes, svc2, P).

%% A name goes with its process, on every node.
dies_with_process(_Config) ->
    [N1, _, _] = Nodes = cluster(3),
    P = call(N1, ?MODULE, spawn_idle, []),
    ?assertEqual(yes, call(N1, tether, register_name, [doomed, P])),
    wait_where(Nodes, doomed, P),
    exit(P, kill),
    wait_where(Nodes, doomed, undefined),
    [?assertEqual([], call(N, ?MODULE, entries, [])) || N <- Nodes].

%% A name goes with its node (the peer is stopped).
dies_with_node(_Config) ->
    [N1, N2, N3] = Nodes = cluster(3),
    P = call(N3, ?MODULE, spawn_idle, []),
    ?assertEqual(yes, call(N3, tether, register_name, [on_n3, P])),
    wait_where(Nodes, on_n3, P),
    ok = tether_test_lib:stop_case_peer(N3),
    wait_where([N1, N2], on_n3, undefined),
    [?assertEqual([], call(N, ?MODULE, entries, [])) || N <- [N1, N2]].

%% {via, tether, Name} with gen_server: start, call from another node,
%% already_started elsewhere.
via_gen_server(_Config) ->
    [N1, N2, N3] = Nodes = cluster(3),
    Via = {via, tether, {counter, 1}},
    {ok, Pid} = call(N1, gen_server, start, [Via, ?MODULE, {gen_server, 0}, []]),
    wait_where(Nodes, {counter, 1}, Pid),
    ?assertEqual(1, call(N2, gen_server, call, [Via, bump])),
    ?assertEqual(2, call(N3, gen_server, call, [Via, bump])),
    ?assertEqual({error, {already_started, Pid}},
                 call(N3, gen_server, start,
                      [Via, ?MODULE, {gen_server, 0}, []])),
    ok = call(N2, gen_server, stop, [Via]),
    wait_where(Nodes, {counter, 1}, undefined).

%% {via, tether, Name} with gen_statem.
via_gen_statem(_Config) ->
    [N1, N2, N3] = Nodes = cluster(3),
    Via = {via, tether, machine},
    {ok, Pid} = call(N2, gen_statem, start, [Via, ?MODULE, {gen_statem, 0}, []]),
    wait_where(Nodes, machine, Pid),
    ?assertEqual(1, call(N1, gen_statem, call, [Via, bump])),
    ?assertEqual(2, call(N3, gen_statem, call, [Via, bump])),
    ok = call(N1, gen_statem, stop, [Via]),
    wait_where(Nodes, machine, undefined).

%% Elixir's GenServer with {:via, :tether, name}, when Elixir is there.
via_elixir_genserver(_Config) ->
    case elixir_ebin() of
        false ->
            {skip, "Elixir is not installed"};
        Ebin ->
            [N1, N2, _] = Nodes = cluster(3),
            [true = call(N, code, add_patha, [Ebin]) || N <- Nodes],
            Via = {via, tether, ex_counter},
            {ok, Pid} = call(N1, 'Elixir.GenServer', start,
                             [?MODULE, {gen_server, 0}, [{name, Via}]]),
            wait_where(Nodes, ex_counter, Pid),
            ?assertEqual(1, call(N2, 'Elixir.GenServer', call, [Via, bump])),
            ?assertEqual(Pid, call(N2, 'Elixir.GenServer', whereis, [Via])),
            ok = call(N2, 'Elixir.GenServer', stop, [Via]),
            wait_where(Nodes, ex_counter, undefined)
    end.

%% A drop partition splits {N1} from {N2, N3}; the same names are
%% registered on both sides (N1 first); after heal the earlier
%% registration wins everywhere, the loser is told (notify: a message;
%% exit: killed), and every node holds the same table, with no zombie.
conflict_after_heal(_Config) ->
    [N1, N2, N3] = Nodes = cluster(3),
    {ok, Ref} = call(N3, tether, partition, [[N1], [N2, N3], drop]),
    wait_members([N1], [N1]),
    wait_members([N2, N3], lists:sort([N2, N3])),
    A1 = relay(N1),
    B1 = relay(N1),
    ?assertEqual(yes, call(N1, tether, register_name, [split, A1])),
    ?assertEqual(yes, call(N1, tether, register_name, [split_x, B1, exit])),
    [S1] = [S || {split, _, _, S, _} <- call(N1, ?MODULE, entries, [])],
    wait_clock_past(S1),
    A2 = relay(N2),
    B2 = call(N2, ?MODULE, spawn_idle, []),
    ?assertEqual(yes, call(N2, tether, register_name, [split, A2])),
    ?assertEqual(yes, call(N2, tether, register_name, [split_x, B2, exit])),
    wait_where([N2, N3], split, A2),
    ?assertEqual(A1, call(N1, tether, whereis_name, [split])),
    MonB2 = erlang:monitor(process, B2),
    ok = call(N1, tether, heal, [Ref]),
    wait_members(Nodes, lists:sort(Nodes)),
    wait_where(Nodes, split, A1),
    wait_where(Nodes, split_x, B1),
    %% The loser is told, in the way it asked for.
    ?assertEqual({global_name_conflict, split, A1}, next_msg(A2)),
    receive
        {'DOWN', MonB2, process, B2, Why} -> ?assertEqual(killed, Why)
    after ?WAIT_MS -> ct:fail(loser_not_killed)
    end,
    %% No zombie: every node holds exactly the winners, identically.
    Tables = [wait_until(fun() -> lists:sort(call(N, ?MODULE, entries, []))
                         end,
                         fun(T) -> length(T) =:= 2 end) || N <- Nodes],
    [T1 | _] = Tables,
    [?assertEqual(T1, T) || T <- Tables],
    ?assertEqual(lists:sort([{split, A1}, {split_x, B1}]),
                 lists:sort([{Nm, P} || {Nm, P, _, _, _} <- T1])),
    %% The loser's node forgot its registrant: it may register again.
    ?assertEqual(yes, call(N2, tether, register_name, [split_again, A2])).

%% Resolvers decide, as in global: split {N1} | {N2, N3} in drop mode;
%% `keep_later' is registered first on N1 with {resolve, Fun} keeping the
%% later pid, then on N2 (notify); `keep_none' first on N2 with a
%% global-style fun/3 returning none, then on N1 (exit). After heal each
%% resolver runs exactly once, on its registrant's node, with the earlier
%% pid first; every node ends with the kept registration (or none) and
%% the same table; a removed registrant is told as it chose.
resolver_decides_after_heal(_Config) ->
    [N1, N2, N3] = Nodes = cluster(3),
    {ok, Ref} = call(N3, tether, partition, [[N1], [N2, N3], drop]),
    wait_members([N1], [N1]),
    wait_members([N2, N3], lists:sort([N2, N3])),
    Self = self(),
    Later = fun(Name, P1, P2) -> Self ! {resolved, node(), Name, P1, P2}, P2
            end,
    None = fun(Name, P1, P2) -> Self ! {resolved, node(), Name, P1, P2}, none
           end,
    A1 = relay(N1),
    ?assertEqual(yes, call(N1, tether, register_name,
                           [keep_later, A1, {resolve, Later}])),
    B2 = relay(N2),
    ?assertEqual(yes, call(N2, tether, register_name, [keep_none, B2, None])),
    S1 = lists:max([S || {_, _, _, S, _} <- call(N1, ?MODULE, entries, [])
                         ++ call(N2, ?MODULE, entries, [])]),
    wait_clock_past(S1),
    A2 = relay(N2),
    ?assertEqual(yes, call(N2, tether, register_name, [keep_later, A2])),
    B1 = call(N1, ?MODULE, spawn_idle, []),
    MonB1 = erlang:monitor(process, B1),
    ?assertEqual(yes, call(N1, tether, register_name,
                           [keep_none, B1, exit])),
    ok = call(N1, tether, heal, [Ref]),
    wait_members(Nodes, lists:sort(Nodes)),
    %% Each resolver ran on its registrant's node, earlier pid first.
    Runs = lists:sort([receive {resolved, _, Nm, _, _} = R when Nm =:= Name ->
                                   R
                       after ?WAIT_MS -> ct:fail({resolver_not_run, Name})
                       end || Name <- [keep_later, keep_none]]),
    ?assertEqual(lists:sort([{resolved, N1, keep_later, A1, A2},
                             {resolved, N2, keep_none, B2, B1}]), Runs),
    wait_where(Nodes, keep_later, A2),
    wait_where(Nodes, keep_none, undefined),
    %% The removed registrant of keep_none asked to be killed.
    receive
        {'DOWN', MonB1, process, B1, Why} -> ?assertEqual(killed, Why)
    after ?WAIT_MS -> ct:fail(loser_not_killed)
    end,
    %% Every node holds exactly keep_later -> A2, identically, and the
    %% resolvers ran once each.
    Tables = [wait_until(fun() -> call(N, ?MODULE, entries, []) end,
                         fun(T) -> length(T) =:= 1 end) || N <- Nodes],
    [?assertMatch([{keep_later, A2, _, _, _}], T) || T <- Tables],
    [T1 | _] = Tables,
    [?assertEqual(T1, T) || T <- Tables],
    ok = call(N3, tether, sync, []),
    receive
        {resolved, _, _, _, _} = Again -> ct:fail({resolver_ran_twice, Again})
    after 0 -> ok
    end,
    %% The kept registrant was not told; the resolvers' own registrants
    %% are free to register again.
    ?assertEqual(yes, call(N1, tether, register_name, [again_a1, A1])),
    ?assertEqual(yes, call(N2, tether, register_name, [again_b2, B2])).

%% After sync/0 returns on N1, every registration made on N2 and N3
%% before the call is visible on N1 at once (no polling), and so is every
%% removal. A member whose server does not answer is skipped after the
%% bound, and sync/0 still returns ok.
sync_waits_for_every_member(_Config) ->
    [N1, N2, N3] = cluster(3),
    %% One process on N1 has N2 and N3 register their own pids (each
    %% register_name/2 is answered by the pid's node once it has broadcast
    %% the registration), calls sync/0 and looks at once.
    Pids = lists:append([call(N, ?MODULE, spawn_many, [200])
                         || N <- [N2, N3]]),
    ?assertEqual([], call(N1, ?MODULE, register_then_look, [Pids, true])),
    Names = [[{P, 0} || P <- Pids, node(P) =:= N] || N <- [N2, N3]],
    [ok = call(N2, tether, unregister_name, [Nm]) || Nm <- hd(Names)],
    ok = call(N1, tether, sync, []),
    ?assertEqual(lists:sort(lists:nth(2, Names)),
                 lists:sort(call(N1, tether, registered_names, []))),
    %% N3's server hangs: N1's sync gives up on it and returns.
    ok = call(N3, sys, suspend, [tether]),
    try
        ?assertEqual(ok, erpc:call(N1, tether, sync, [], 20000))
    after
        ok = call(N3, sys, resume, [tether])
    end.

%%% gen_server / gen_statem callbacks (a counter)

init({gen_server, N}) -> {ok, N};
init({gen_statem, N}) -> {ok, ready, N}.

handle_call(bump, _From, N) -> {reply, N + 1, N + 1}.

handle_cast(_Msg, N) -> {noreply, N}.

callback_mode() -> handle_event_function.

handle_event({call, From}, bump, ready, N) ->
    {keep_state, N + 1, [{reply, From, N + 1}]}.

%% The race of issue 12, step by step: A's tether server is suspended
%% while B registers `n' and X on A registers `n' on the direct path (the
%% entry goes in at once; the server has not tracked X nor seen B's
%% broadcast). On resume B's earlier registration wins: X is told and not
%% tracked. B's holder stops; Z on A takes `n'; X stops: Z keeps `n'.
stale_registrant_never_removes_successor(_Config) ->
    [A, B, C] = Nodes = cluster(3),
    Holder = relay(B),
    X = relay(A),
    Z = relay(A),
    ok = call(A, sys, suspend, [tether]),
    ?assertEqual(yes, call(B, tether, register_name, [n, Holder])),
    %% X's registration must be later by the clock too (A's clock has not
    %% seen B's stamp while its server is suspended).
    [SB] = [S || {n, _, _, S, _} <- call(B, ?MODULE, entries, [])],
    wait_clock_past(SB),
    Self = self(),
    _ = spawn_link(fun() ->
                           Self ! {x_registered,
                                   call(A, tether, register_name, [n, X])}
                   end),
    %% X's entry is in A's engine (read straight from the NIF) ...
    wait_until(fun() -> [P || {n, P, _, _, _} <- call(A, ?MODULE, entries,
                                                        [])] end,
               fun(Ps) -> lists:member(X, Ps) end),
    ok = call(A, sys, resume, [tether]),
    receive {x_registered, R} -> ?assertEqual(yes, R)
    after ?WAIT_MS -> ct:fail(register_stuck)
    end,
    %% ... and lost to B's earlier one, which X is told.
    ?assertEqual({global_name_conflict, n, Holder}, next_msg(X)),
    wait_where(Nodes, n, Holder),
    exit(Holder, kill),
    wait_where(Nodes, n, undefined),
    ?assertEqual(yes, call(A, tether, register_name, [n, Z])),
    wait_where(Nodes, n, Z),
    exit(X, kill),
    ok = call(C, tether, sync, []),
    wait_where(Nodes, n, Z),
    timer:sleep(3 * ?HB_MS),
    [?assertEqual(Z, call(N, tether, whereis_name, [n])) || N <- Nodes].

%% A node that leaves and joins again keeps the names of its live
%% processes (registered again in its fresh engine); one that died
%% meanwhile is not registered again.
rejoin_keeps_live_registrations(_Config) ->
    [N1, N2, N3] = Nodes = cluster(3),
    P = relay(N1),
    Q = relay(N1),
    ?assertEqual(yes, call(N1, tether, register_name, [kept, P])),
    ?assertEqual(yes, call(N1, tether, register_name, [gone, Q])),
    wait_where(Nodes, kept, P),
    ok = call(N1, tether, leave, []),
    wait_where([N2, N3], kept, undefined),
    exit(Q, kill),
    ok = call(N1, tether, join, [N2]),
    wait_members(Nodes, lists:sort(Nodes)),
    wait_where(Nodes, kept, P),
    wait_where(Nodes, gone, undefined),
    %% Still tracked: its death removes the name everywhere.
    exit(P, kill),
    wait_where(Nodes, kept, undefined).

%% Churn (issue 12): 100 processes on each of three BEAM nodes register,
%% unregister and die for 8 s, one drop partition is healed half-way and
%% a C-node member is killed. Then every member agrees (same registry
%% digest, the C-node's included until it dies), every registered pid is
%% alive and holds one name, and every live process that lost its name
%% was told (a process believes it holds a name only while it does).
churn_ends_consistent(Config) ->
    [B1, B2, B3] = Bs = cluster(3),
    CNode = tether_test_lib:start_case_cnode(
              #{name => tether_test_lib:unique_name(trc),
                heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS, join => [B1],
                extra_args => ["--register", "echo"],
                log_dir => ?config(priv_dir, Config)}, 20),
    CN = tether_test_lib:cnode_node(CNode),
    wait_members(Bs, lists:sort([CN | Bs])),
    Names = [{churn, I} || I <- lists:seq(1, 60)],
    Coords = [{B, call(B, ?MODULE, churn_start, [100, 8000, Names])}
              || B <- Bs],
    timer:sleep(2500),
    {ok, Ref} = call(B3, tether, partition, [[B1], [B2, B3, CN], drop]),
    timer:sleep(1500),
    ok = call(B2, tether, heal, [Ref]),
    timer:sleep(1500),
    {ok, _} = tether_test_lib:kill_cnode(CNode),
    ok = tether_test_lib:forget_cnodes(),
    Results = [{B, call(B, ?MODULE, churn_result, [Coord])}
               || {B, Coord} <- Coords],
    wait_members(Bs, lists:sort(Bs)),
    [ok = call(B, tether, sync, []) || B <- Bs],
    %% The same table everywhere.
    wait_until(fun() -> [call(B, ?MODULE, reg_digest, []) || B <- Bs] end,
               fun([D | Ds]) -> lists:all(fun(X) -> X =:= D end, Ds) end),
    Entries = call(B1, ?MODULE, entries, []),
    Pids = [P || {_, P, _, _, _} <- Entries],
    ?assertEqual(length(Pids), length(lists:usort(Pids))),
    [?assert(call(node(P), erlang, is_process_alive, [P])) || P <- Pids],
    Held = maps:from_list([{Nm, P} || {Nm, P, _, _, _} <- Entries]),
    Stats = [begin
                 #{beliefs := Beliefs} = Res,
                 [?assertEqual({Nm, P}, {Nm, maps:get(Nm, Held, undefined)})
                  || {P, Nm} <- Beliefs],
                 maps:without([beliefs], Res)
             end || {_, Res} <- Results],
    Sum = fun(K) -> lists:sum([maps:get(K, St) || St <- Stats]) end,
    ct:pal("churn: ~b registrations, ~b refused, ~b unregistered, ~b died "
           "holding, ~b told of a lost conflict, ~b names held at the end "
           "by ~b live processes; ~b conflicts seen by the engines",
           [Sum(registered), Sum(refused), Sum(unregistered), Sum(died),
            Sum(told), map_size(Held), length(Pids),
            lists:sum([maps:get(conflicts, call(B, tether_nif, reg_info,
                                                [call(B, tether_server,
                                                      engine, [])]))
                       || B <- Bs])]),
    ?assert(Sum(registered) > 500).

%%% Helpers run on the peers

%% Starts Count churning processes for Ms milliseconds over Names;
%% returns the coordinator, for churn_result/1.
churn_start(Count, Ms, Names) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    Coord = spawn(fun() -> churn_coord(Count, #{}) end),
    _ = [spawn(fun() ->
                       rand:seed(exsss, {I, erlang:unique_integer(), 7}),
                       %% Half the churners may die; the rest live on,
                       %% so the end state has live holders to check.
                       put(mortal, I rem 2 =:= 0),
                       churn_loop(Names, Deadline, Coord, none, #{})
               end) || I <- lists:seq(1, Count)],
    Coord.

%% Waits for every churner's report: its counters, and the name it
%% believes it holds (the churners that end alive stay alive).
churn_result(Coord) ->
    Coord ! {result, self()},
    receive {churn_result, R} -> R after 60000 -> error(churn_stuck) end.

churn_coord(0, Acc) ->
    receive
        {result, From} -> From ! {churn_result, Acc}
    end;
churn_coord(N, Acc) ->
    receive
        {churned, Pid, Counts, Belief} ->
            Acc1 = maps:fold(fun(K, V, A) -> maps:update_with(
                                                K, fun(X) -> X + V end, V, A)
                             end, Acc, Counts),
            Beliefs = case Belief of
                          none -> maps:get(beliefs, Acc1, []);
                          Nm -> [{Pid, Nm} | maps:get(beliefs, Acc1, [])]
                      end,
            churn_coord(N - 1, Acc1#{beliefs => Beliefs})
    end.

churn_loop(Names, Deadline, Coord, Holding0, C0) ->
    {Holding, C} = churn_told(Holding0, C0),
    Now = erlang:monotonic_time(millisecond),
    Zero = #{registered => 0, refused => 0, unregistered => 0, died => 0,
             told => 0},
    Counts = maps:merge(Zero, C),
    case Now >= Deadline of
        true ->
            %% Settle: a conflict decided late is still told.
            timer:sleep(3000),
            {Final, C2} = churn_told(Holding, Counts),
            Coord ! {churned, self(), C2, Final},
            receive stop -> ok end;
        false ->
            case {Holding, rand:uniform(10)} of
                {none, _} ->
                    Nm = lists:nth(rand:uniform(length(Names)), Names),
                    case tether:register_name(Nm, self()) of
                        yes -> churn_loop(Names, Deadline, Coord, Nm,
                                          bump(registered, Counts));
                        no -> churn_pause(Names, Deadline, Coord, none,
                                          bump(refused, Counts))
                    end;
                {_, 1} ->
                    case get(mortal) of
                        true ->
                            Coord ! {churned, self(), bump(died, Counts),
                                     none},
                            exit(churned);
                        false ->
                            churn_pause(Names, Deadline, Coord, Holding,
                                        Counts)
                    end;
                {Nm, R} when R =< 4 ->
                    case tether:whereis_name(Nm) =:= self() of
                        true -> ok = tether:unregister_name(Nm);
                        false -> ok
                    end,
                    churn_loop(Names, Deadline, Coord, none,
                               bump(unregistered, Counts));
                {Nm, _} ->
                    churn_pause(Names, Deadline, Coord, Nm, Counts)
            end
    end.

churn_pause(Names, Deadline, Coord, Holding, C) ->
    timer:sleep(rand:uniform(40)),
    churn_loop(Names, Deadline, Coord, Holding, C).

%% Takes the conflict messages: a process told it lost holds nothing.
churn_told(Holding, C) ->
    receive
        {global_name_conflict, Nm, _} when Nm =:= Holding ->
            churn_told(none, bump(told, C));
        {global_name_conflict, _, _} ->
            churn_told(Holding, bump(told, C))
    after 0 ->
            {Holding, C}
    end.

bump(K, C) ->
    maps:update_with(K, fun(V) -> V + 1 end, 1, C).

%% {Count, Digest} of this node's registry.
reg_digest() ->
    #{count := N, digest := D} = tether_nif:reg_info(tether_server:engine()),
    {N, D}.

entries() ->
    case tether_server:engine() of
        undefined -> [];
        E -> [{Nm, P, binary_to_atom(O, utf8), S, M}
              || {Nm, P, O, S, M} <- tether_nif:reg_entries(E)]
    end.

spawn_idle() ->
    spawn(fun() -> receive stop -> ok end end).

spawn_many(Count) ->
    [spawn_idle() || _ <- lists:seq(1, Count)].

%% Registers each pid as {Pid, 0} (from here: the pid's node does it),
%% calls sync/0 if asked, and returns the names not visible here yet.
%% The local tether server first gets a backlog of messages to work
%% through, so the broadcasts arrive well before it takes them in: only
%% a sync/0 that waits for them makes them visible at once.
register_then_look(Pids, Sync) ->
    Server = whereis(tether),
    [Server ! backlog || _ <- lists:seq(1, 300000)],
    [yes = tether:register_name({P, 0}, P) || P <- Pids],
    ok = case Sync of
             true -> tether:sync();
             false -> ok
         end,
    all_visible([{P, 0} || P <- Pids]).

%% The names of Names that whereis_name/1 does not know here.
all_visible(Names) ->
    [Nm || Nm <- Names, tether:whereis_name(Nm) =:= undefined].

%%% Helpers

relay(Node) ->
    call(Node, tether_test_lib, relay_start, [self(), fun() -> ok end]).

next_msg(Relay) ->
    tether_test_lib:relay_next(Relay, ?WAIT_MS).

catch_exit(Node, Fun) ->
    call(Node, erlang, apply,
         [fun() -> try Fun() of V -> {returned, V}
                   catch exit:R -> R end end, []]).

%% Waits until the wall clock is past an HLC stamp's millisecond, so a
%% later registration is later by the clock too.
wait_clock_past(Stamp) ->
    Wall = Stamp bsr 16,
    wait_until(fun() -> erlang:system_time(millisecond) end,
               fun(Now) -> Now > Wall + 1 end).

wait_where(Nodes, Name, Expected) ->
    [wait_until(fun() -> call(N, tether, whereis_name, [Name]) end,
                fun(P) -> P =:= Expected end) || N <- Nodes],
    ok.

elixir_ebin() ->
    case code:lib_dir(elixir) of
        {error, _} ->
            Candidates = filelib:wildcard("/usr/lib/elixir/lib/elixir/ebin")
                ++ filelib:wildcard("/usr/local/lib/elixir/lib/elixir/ebin"),
            case [D || D <- Candidates,
                       filelib:is_regular(filename:join(D,
                                                        "Elixir.GenServer.beam"))]
            of
                [D | _] -> D;
                [] -> false
            end;
        Dir ->
            filename:join(Dir, "ebin")
    end.

%% Starts N peers (linked to the case) with tether (short heartbeat) and
%% clusters them.
cluster(N) ->
    tether_test_lib:start_cluster(
      N, #{prefix => tether_reg, link => true,
           env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS}]}, ?WAIT_MS).

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, 10000).

wait_members(Nodes, Expected) ->
    tether_test_lib:wait_members(Nodes, Expected, ?WAIT_MS).

%% Polls Get until Check holds, failing after WAIT_MS with the last value.
wait_until(Get, Check) ->
    tether_test_lib:poll(Get, Check, ?WAIT_MS).
