%% @doc Reminders, issue 18, on BEAM nodes running the tether application
%% (this driver node and two peers on loopback). Run by bench/run.
%%
%%   reminder_bytes_each     memory per pending reminder beyond its key and
%%                           payload, at 1,000,000 pending in one engine
%%                           (the module's own count of its records,
%%                           tables and heap: reminders_info's
%%                           overhead_bytes / count); target <= 150.
%%   reminder_skew_p50_ms, reminder_skew_p99_ms
%%                           delivery time at a subscriber minus FireAtMs,
%%                           5,000 reminders firing at 1,000 per second on
%%                           a 3-node cluster; target p99 <= 5.
%%   remind_per_s            remind/3 calls answered per second on one node
%%                           of a 3-node cluster (64 concurrent callers,
%%                           replicated to a majority of 3), without
%%                           persistence; remind_per_s_persist with
%%                           data_dir (every replica appends to its log
%%                           before it acknowledges).
%%   reminder_join_moved     records sent by the handoff of one join to a
%%                           3-node cluster holding 100,000 reminders (the
%%                           shards that moved), reminder_join_synced the
%%                           records anti-entropy sent the joiner (the
%%                           shards it now replicates), and
%%                           reminder_join_touched_ratio their sum / all
%%                           records held (3 x 100,000).
%%
%% Output: `name: value' lines.
-module(tether_reminder_bench).

-export([main/1]).
%% Run on the peers.
-export([skew_sink/1]).

-define(HB_MS, 200).
-define(TTL_MS, 1000).
-define(PENDING, 1000000).
-define(SKEW_N, 5000).
-define(RATE_MS, 3000).
-define(CALLERS, 64).
-define(HANDOFF_N, 100000).

%% @doc Entry point: main([]). Prints the results and stops the node.
-spec main([string()]) -> no_return().
main(_Args) ->
    tether_bench_lib:main(?MODULE, fun run/0).

run() ->
    bytes_bench(),
    Env = [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS}],
    tether_bench_lib:with_cluster("tether_bench_rm", Env,
                                  fun(Peers) ->
                                          skew_bench(Peers),
                                          rate(remind_per_s),
                                          handoff_bench(Peers)
                                  end),
    Dir = filename:join(os:getenv("TMPDIR", "/tmp"),
                        "tether_rm_bench_" ++ os:getpid()),
    ok = application:stop(tether),
    ok = application:unload(tether),
    tether_bench_lib:with_cluster("tether_bench_rmp",
                                  Env ++ [{data_dir, Dir}],
                                  fun(_) -> rate(remind_per_s_persist) end),
    _ = file:del_dir_r(Dir),
    ok.

%% One engine, no cluster: 1,000,000 far-future reminders.
bytes_bench() ->
    {ok, E} = tether_nif:engine_new(#{name => <<"bench@h">>, incarnation => 1,
                                      seed => crypto:strong_rand_bytes(32),
                                      cookie => <<"bench">>}),
    put(t0, erlang:monotonic_time(millisecond) - 1),
    ok = tether_nif:engine_tick(E, 1),
    At = erlang:system_time(millisecond) + 3600000,
    lists:foreach(fun(I) ->
                          ok = tether_nif:reminders_set(E, I, At, I, false, I),
                          I rem 256 =:= 0 andalso drain(E)
                  end, lists:seq(1, ?PENDING)),
    drain(E),
    #{pending := P, overhead_bytes := B} = tether_nif:reminders_info(E),
    P = ?PENDING,
    out("reminder_bytes_each", B / P).

drain(E) ->
    ok = tether_nif:engine_tick(E, erlang:monotonic_time(millisecond)
                                   - get(t0)),
    case tether_nif:engine_drain(E) of
        [] -> true;
        _ -> drain(E)
    end.

%% 5,000 reminders at 1 per ms, from 2 s ahead; every node subscribes
%% with a sink that notes delivery time minus FireAt.
skew_bench(Peers) ->
    Nodes = [node() | Peers],
    Sinks = [erpc:call(N, ?MODULE, skew_sink, [self()]) || N <- Nodes],
    T0 = erlang:system_time(millisecond) + 2500,
    Self = self(),
    Ws = [spawn_link(fun() ->
                             [ok = tether:remind({skew, I}, T0 + I, T0 + I)
                              || I <- lists:seq(W, ?SKEW_N - 1, 8)],
                             Self ! {set, self()}
                     end) || W <- lists:seq(0, 7)],
    [receive {set, W} -> ok end || W <- Ws],
    true = erlang:system_time(millisecond) < T0, % all set before the first
    timer:sleep(max(0, T0 + ?SKEW_N - erlang:system_time(millisecond)) + 2000),
    Skews = lists:append([begin S ! {report, self()},
                                receive {skews, S, L} -> L end
                          end || S <- Sinks]),
    ?SKEW_N = length(Skews),
    Sorted = lists:sort(Skews),
    out("reminder_skew_p50_ms", pct(Sorted, 50)),
    out("reminder_skew_p99_ms", pct(Sorted, 99)),
    out("reminder_skew_max_ms", lists:last(Sorted)).

%% @doc A subscriber on a peer that keeps the delivery skew of every
%% reminder (its payload is its FireAt) and reports them on request.
-spec skew_sink(pid()) -> pid().
skew_sink(_Driver) ->
    Parent = self(),
    Pid = spawn(fun() ->
                        ok = tether:subscribe_reminders(),
                        Parent ! {ready, self()},
                        sink([])
                end),
    receive {ready, Pid} -> Pid end.

sink(Acc) ->
    receive
        {tether_reminder, _K, At, _F} ->
            sink([erlang:system_time(millisecond) - At | Acc]);
        {report, To} ->
            To ! {skews, self(), Acc},
            sink([])
    end.

pct(Sorted, P) ->
    lists:nth(max(1, (length(Sorted) * P + 99) div 100), Sorted).

%% remind/3 answered per second here, ?CALLERS callers for ?RATE_MS.
rate(Name) ->
    End = erlang:monotonic_time(millisecond) + ?RATE_MS,
    At = erlang:system_time(millisecond) + 3600000,
    Self = self(),
    Ws = [spawn_link(fun() -> Self ! {done, self(), caller(W, 0, At, End)} end)
          || W <- lists:seq(1, ?CALLERS)],
    N = lists:sum([receive {done, W, C} -> C end || W <- Ws]),
    out(Name, N * 1000 div ?RATE_MS).

caller(W, N, At, End) ->
    case erlang:monotonic_time(millisecond) < End of
        true ->
            ok = tether:remind({rate, W, N}, At, N),
            caller(W, N + 1, At, End);
        false ->
            N
    end.

%% 100,000 reminders on three nodes, then a fourth joins: what its join
%% moved.
handoff_bench(Peers) ->
    Nodes = [node() | Peers],
    At = erlang:system_time(millisecond) + 3600000,
    Self = self(),
    Ws = [spawn_link(fun() ->
                             [ok = tether:remind({h, I}, At, I)
                              || I <- lists:seq(W, ?HANDOFF_N, 32)],
                             Self ! {set, self()}
                     end) || W <- lists:seq(1, 32)],
    [receive {set, W} -> ok end || W <- Ws],
    Held = lists:sum([maps:get(pending, info(N)) || N <- Nodes]),
    Before = [{N, info(N)} || N <- Nodes],
    {Pid, New} = tether_bench_lib:start_peer(
                   list_to_atom("tether_bench_rmj_" ++ os:getpid()), []),
    try
        ok = tether_bench_lib:start_tether(New, [{heartbeat_ms, ?HB_MS},
                                                 {ttl_ms, ?TTL_MS}]),
        T0 = erlang:monotonic_time(millisecond),
        ok = erpc:call(New, tether, join, [node()]),
        %% Settled: the joiner holds its share and nothing more moves.
        tether_bench_lib:wait(fun() -> maps:get(pending, info(New)) end,
                              fun(P) -> P >= ?HANDOFF_N * 3 div 4 * 9 div 10
                              end),
        timer:sleep(3 * 5000),
        Ms = erlang:monotonic_time(millisecond) - T0,
        Diff = fun(K) -> lists:sum([maps:get(K, info(N)) -
                                        maps:get(K, I0) || {N, I0} <- Before])
               end,
        Moved = Diff(handoff_records),
        Forwarded = Diff(forward_records),
        Synced = Diff(sync_records),
        out("reminder_join_moved", Moved),
        out("reminder_join_forwarded", Forwarded),
        out("reminder_join_synced", Synced),
        out("reminder_join_touched_ratio",
            (Moved + Forwarded + Synced) / Held),
        out("reminder_join_settle_ms", Ms),
        out("reminder_join_joiner_pending", maps:get(pending, info(New)))
    after
        catch peer:stop(Pid)
    end.

info(N) ->
    erpc:call(N, tether_nif, reminders_info,
              [erpc:call(N, tether_server, engine, [])]).

out(Name, V) when is_float(V) ->
    io:format("~s: ~.1f~n", [Name, V]);
out(Name, V) ->
    io:format("~s: ~p~n", [Name, V]).
