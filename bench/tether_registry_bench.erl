%% @doc The tether registry against OTP's global, side by side in one run
%% on a 3-node BEAM cluster (this driver node and two peers, all running
%% the tether application), issue 6 item 4. Run by bench/run after its
%% other measures.
%%
%%   whereis      a tight loop of whereis_name(Name) on the driver, for a
%%                name registered by a peer's process (global answers
%%                from its ETS table, tether from the NIF's table under a
%%                read lock); calls per second, median of rounds.
%%   visibility   the time from the driver calling register_name(Name,
%%                Pid) until a process polling whereis_name(Name) on a
%%                peer sees Pid: both instants are read from the OS clock
%%                (os:system_time/1; one host, one clock), the peer's sent
%%                back afterwards; median of rounds. global's
%%                register_name is a cluster-wide locked transaction;
%%                tether's is a local insert and one broadcast.
%% Rounds alternate between the two so drift hits both. Output:
%% `name: value' lines, ratios first.
-module(tether_registry_bench).

-export([main/1]).

-define(ROUNDS, 25).
-define(WHEREIS_N, 200000).
-define(VIS_ROUNDS, 40).
-define(HB_MS, 200).

%% @doc Entry point: main([]). Prints the results and stops the node
%% (status 0 on success, 1 on failure).
-spec main([string()]) -> no_return().
main(_Args) ->
    tether_bench_lib:main(?MODULE, fun run/0).

run() ->
    tether_bench_lib:with_cluster(
      "tether_bench_reg", [{heartbeat_ms, ?HB_MS}, {ttl_ms, 10 * ?HB_MS}],
      fun([P1, P2]) ->
              ok = global:sync(),
              whereis_bench(P1),
              visibility_bench(P2)
      end).

%%% whereis

whereis_bench(Peer) ->
    Owner = erpc:call(Peer, erlang, spawn,
                      [fun() -> receive stop -> ok end end]),
    yes = erpc:call(Peer, global, register_name, [{where, global}, Owner]),
    %% A pid holds one name in each registry: a second owner for tether.
    Owner2 = erpc:call(Peer, erlang, spawn,
                       [fun() -> receive stop -> ok end end]),
    yes = erpc:call(Peer, tether, register_name, [{where, tether}, Owner2]),
    tether_bench_lib:wait(fun() -> {global:whereis_name({where, global}),
                   tether:whereis_name({where, tether})} end,
         fun(V) -> V =:= {Owner, Owner2} end),
    G = fun() -> loop(fun global:whereis_name/1, {where, global},
                      ?WHEREIS_N) end,
    T = fun() -> loop(fun tether:whereis_name/1, {where, tether},
                      ?WHEREIS_N) end,
    _ = [{G(), T()} || _ <- lists:seq(1, 3)], % warm up
    {Gs, Ts} = lists:unzip([{G(), T()} || _ <- lists:seq(1, ?ROUNDS)]),
    GRate = ?WHEREIS_N * 1000000 / max(1, tether_bench_lib:median(Gs)),
    TRate = ?WHEREIS_N * 1000000 / max(1, tether_bench_lib:median(Ts)),
    io:format("whereis_ratio: ~.2f~n", [TRate / GRate]),
    io:format("whereis_global_per_s: ~b~n", [round(GRate)]),
    io:format("whereis_tether_per_s: ~b~n", [round(TRate)]),
    Owner ! stop,
    Owner2 ! stop,
    ok.

%% Microseconds for N calls of F(Name).
loop(F, Name, N) ->
    T0 = erlang:monotonic_time(microsecond),
    ok = loop1(F, Name, N),
    erlang:monotonic_time(microsecond) - T0.

loop1(_F, _Name, 0) ->
    ok;
loop1(F, Name, N) ->
    _ = F(Name),
    loop1(F, Name, N - 1).

%%% visibility

visibility_bench(Peer) ->
    %% The poller spins at low priority: it never delays the registry
    %% work of its own node (tether's server, global's name server).
    Poller = tether_bench_lib:start_poller(Peer),
    Round = fun(Mod, K) -> visible_round(Poller, Mod, K) end,
    _ = [{Round(global, -K), Round(tether, -K)} || K <- lists:seq(1, 3)],
    {Gs, Ts} = lists:unzip([{Round(global, K), Round(tether, K)}
                            || K <- lists:seq(1, ?VIS_ROUNDS)]),
    G = tether_bench_lib:median([V || {V, _} <- Gs]),
    T = tether_bench_lib:median([V || {V, _} <- Ts]),
    io:format("register_visible_ratio: ~.2f~n", [G / max(1, T)]),
    io:format("register_visible_global_us: ~p~n", [G]),
    io:format("register_visible_tether_us: ~p~n", [T]),
    io:format("register_call_global_us: ~p~n",
              [tether_bench_lib:median([C || {_, C} <- Gs])]),
    io:format("register_call_tether_us: ~p~n",
              [tether_bench_lib:median([C || {_, C} <- Ts])]),
    Hop = tether_bench_lib:median([tether_bench_lib:hop(Poller)
                                   || _ <- lists:seq(1, ?VIS_ROUNDS)]),
    io:format("peer_one_way_us: ~p~n", [Hop]),
    Poller ! stop,
    ok.

%% Microseconds from register_name on the driver until the peer's poller
%% sees the pid, and until register_name returned.
visible_round(Poller, Mod, K) ->
    Name = {visible, Mod, K},
    Pid = spawn(fun() -> receive stop -> ok end end),
    Look = fun() ->
                   case Mod:whereis_name(Name) of
                       undefined -> none;
                       P -> {found, P}
                   end
           end,
    {Visible, Call, Pid} =
        tether_bench_lib:watch(Poller, Look,
                               fun() -> yes = Mod:register_name(Name, Pid) end),
    _ = Mod:unregister_name(Name),
    Pid ! stop,
    {Visible, Call}.
