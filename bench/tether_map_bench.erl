%% @doc Replicated maps, issue 17, on BEAM nodes running the tether
%% application (this driver node and two peers on loopback). Run by
%% bench/run.
%%
%%   map_get_ratio          calls per second of tether:map_get/2 / of
%%                          ets:lookup/2 on a read_concurrency set table,
%%                          same keys and values (1,000 keys, small tuple
%%                          values), median of alternating rounds;
%%                          map_get_ns, map_get_ets_ns per call.
%%   map_put_visible_ratio  time from tether:map_put/3 on this node until
%%                          a process on a peer spinning on map_get/2 sees
%%                          the value / peer_one_way_us (a plain message
%%                          from here to that process), medians;
%%                          map_put_visible_us and peer_one_way_us;
%%                          map_put_call_us until map_put/3 returned.
%%   map_put_persist_us     a tether:map_put/3 on a map hosted with
%%                          persist => true (returns once the record is
%%                          fdatasync'ed), one caller, median; printed
%%                          beside fsync_us, the machine's raw time for
%%                          a 100-byte append and file:datasync/1 in the
%%                          same directory, alternating round by round
%%                          with the puts, and map_put_persist_fsync_ratio
%%                          (the median of the per-round ratios).
%%                          map_put_persist_16_us: the time per put of
%%                          16 concurrent writers (group commit: they
%%                          share fdatasyncs).
%%
%% Output: `name: value' lines.
-module(tether_map_bench).

-export([main/1]).
%% Run on the peers.

-define(KEYS, 1000).
-define(CALLS, 200000).
-define(ROUNDS, 15).
-define(VIS_ROUNDS, 41).
-define(WAIT_MS, 30000).
-define(PERSIST_ROUNDS, 201).
-define(WRITERS, 16).
-define(WRITER_PUTS, 50).

%% @doc Entry point: main([]). Prints the results and stops the node.
-spec main([string()]) -> no_return().
main(_Args) ->
    tether_bench_lib:main(?MODULE, fun run/0).

run() ->
    Dir = filename:join(case os:getenv("TMPDIR") of
                            false -> "/tmp";
                            T -> T
                        end, "tether_bench_map_" ++ os:getpid()),
    try
        tether_bench_lib:with_cluster(
          "tether_bench_map_", [{heartbeat_ms, 200}, {ttl_ms, 2000},
                                {data_dir, Dir},
                                {maps, [bench,
                                        {bench_p, #{persist => true}}]}],
          fun([Peer | _]) ->
                  tether_bench_lib:wait(
                    fun() ->
                            maps:get(hosts, tether_map:map_info(bench)) >= 2
                    end),
                  get_bench(),
                  visible_bench(Peer),
                  persist_bench(Dir)
          end)
    after
        file:del_dir_r(Dir)
    end.

%%% map_get/2 against ets:lookup/2

get_bench() ->
    T = ets:new(bench, [set, public, {read_concurrency, true}]),
    _ = [begin
             V = {value, K, <<"payload">>},
             ok = tether:map_put(bench, K, V),
             true = ets:insert(T, {K, V})
         end || K <- lists:seq(1, ?KEYS)],
    {TM, TE} = tether_bench_lib:alternate(
                 ?ROUNDS, fun() -> time_calls(fun map_loop/2, bench) end,
                 fun() -> time_calls(fun ets_loop/2, T) end),
    io:format("map_get_ratio: ~.2f~n", [TE / TM]),
    io:format("map_get_ns: ~.1f~n", [TM]),
    io:format("map_get_ets_ns: ~.1f~n", [TE]).

map_loop(0, _) -> ok;
map_loop(N, Name) ->
    {ok, _} = tether:map_get(Name, N rem ?KEYS + 1),
    map_loop(N - 1, Name).

ets_loop(0, _) -> ok;
ets_loop(N, T) ->
    [_] = ets:lookup(T, N rem ?KEYS + 1),
    ets_loop(N - 1, T).

time_calls(Loop, X) ->
    T0 = erlang:monotonic_time(nanosecond),
    ok = Loop(?CALLS, X),
    (erlang:monotonic_time(nanosecond) - T0) / ?CALLS.

%%% persisted puts against the raw fsync

persist_bench(Dir) ->
    Path = filename:join(Dir, "fsync_probe"),
    ok = filelib:ensure_dir(Path),
    {ok, Fd} = file:open(Path, [append, raw, binary]),
    %% Alternating, round by round: load from elsewhere hits both alike.
    Rounds = [{raw_fsync(Fd), timed_put(I)} || I <- lists:seq(1, ?PERSIST_ROUNDS)],
    ok = file:close(Fd),
    {Fs, Ps} = lists:unzip(Rounds),
    io:format("map_put_persist_us: ~p~n", [tether_bench_lib:median(Ps)]),
    io:format("fsync_us: ~p~n", [tether_bench_lib:median(Fs)]),
    io:format("map_put_persist_fsync_ratio: ~.2f~n",
              [tether_bench_lib:median([P / max(1, F) || {F, P} <- Rounds])]),
    io:format("map_put_persist_16_us: ~.1f~n", [concurrent_puts()]).

%% A 100-byte append and datasync on Fd (us).
raw_fsync(Fd) ->
    T0 = erlang:monotonic_time(microsecond),
    ok = file:write(Fd, binary:copy(<<"x">>, 100)),
    ok = file:datasync(Fd),
    erlang:monotonic_time(microsecond) - T0.

timed_put(I) ->
    T0 = erlang:monotonic_time(microsecond),
    ok = tether:map_put(bench_p, {p, I}, {value, I, <<"payload">>}),
    erlang:monotonic_time(microsecond) - T0.

%% ?WRITERS processes, ?WRITER_PUTS persisted puts each: the wall time per
%% put (us).
concurrent_puts() ->
    Self = self(),
    T0 = erlang:monotonic_time(microsecond),
    Pids = [spawn_link(fun() ->
                               _ = [ok = tether:map_put(bench_p, {w, W, I}, I)
                                    || I <- lists:seq(1, ?WRITER_PUTS)],
                               Self ! {done, self()}
                       end) || W <- lists:seq(1, ?WRITERS)],
    [receive {done, P} -> ok after ?WAIT_MS -> error(writer) end || P <- Pids],
    (erlang:monotonic_time(microsecond) - T0) / (?WRITERS * ?WRITER_PUTS).

%%% put visible on a peer

visible_bench(Peer) ->
    Poller = tether_bench_lib:start_poller(Peer),
    {Vs, Cs} = lists:unzip([visible_round(Poller, K)
                            || K <- lists:seq(1, ?VIS_ROUNDS)]),
    Hops = [tether_bench_lib:hop(Poller) || _ <- lists:seq(1, ?VIS_ROUNDS)],
    V = tether_bench_lib:median(Vs),
    H = tether_bench_lib:median(Hops),
    io:format("map_put_visible_ratio: ~.2f~n", [V / max(1, H)]),
    io:format("map_put_visible_us: ~p~n", [V]),
    io:format("peer_one_way_us: ~p~n", [H]),
    io:format("map_put_call_us: ~p~n", [tether_bench_lib:median(Cs)]),
    Poller ! stop,
    ok.

%% One round: the peer's poller spins on map_get/2 of a fresh key while
%% this node puts it; {visible after us, the put's own call us}.
visible_round(Poller, K) ->
    Key = {visible, K},
    Look = fun() ->
                   case tether:map_get(bench, Key) of
                       not_found -> none;
                       {ok, _} -> {found, ok}
                   end
           end,
    {Visible, Call, ok} =
        tether_bench_lib:watch(Poller, Look,
                               fun() -> ok = tether:map_put(bench, Key, K) end),
    {Visible, Call}.
