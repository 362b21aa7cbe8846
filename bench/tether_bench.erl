%% @doc C-node versus BEAM node, measured side by side in one run (issue
%% 3, item 6). Run by bench/run, which starts epmd, the C-node and the
%% BEAM node B; this module is the driver (node A) and also B's echo.
%%
%% Both targets run the same protocol in a process registered as `echo':
%% {echo, From, Term} sends Term to From; anything else is dropped. The
%% driver measures, alternating targets round by round so drift hits both:
%%   echo round trip     A -> echo -> A, one message in flight;
%%   one-way throughput  N messages into echo from ?SENDERS concurrent
%%                       processes, each ending with an echo barrier;
%%   rpc:call round trip rpc:call(Node, kv, get, [Key]): the C kv plugin
%%                       against its Erlang twin (test/kv.erl) on B;
%%   gen_server calls    ?CALLERS concurrent callers of {kv, Node}.
%% Each figure is the median of its rounds. When bench/run passes the OS
%% pids of the two targets, the CPU time each target used per operation
%% is reported too (from /proc/PID/stat): it shows the receiver's cost
%% even when the sender, not the receiver, limits the rate.
%% Output: `name: value' lines.
-module(tether_bench).

-export([main/1, beam_echo_node/0]).

-define(ROUNDS, 25).
-define(ROUND_MS, 200).
-define(REPLY_TIMEOUT, 30000).
-define(CONNECT_TIMEOUT, 30000).
-define(CALLERS, 100).
-define(SENDERS, 4).

%% @doc Entry point of node A: main([CNode, BeamNode]) or
%% main([CNode, BeamNode, COsPid, BeamOsPid, ClockTicksPerSecond]).
%% Prints the results and stops the node (status 0 on success, 1 on any
%% failure).
-spec main([string()]) -> ok.
main([CNodeS, BNodeS]) ->
    main1(CNodeS, BNodeS, undefined);
main([CNodeS, BNodeS, CPid, BPid, Hz]) ->
    put(clk_tck, list_to_integer(Hz)),
    main1(CNodeS, BNodeS, {list_to_integer(CPid), list_to_integer(BPid)}).

main1(CNodeS, BNodeS, OsPids) ->
    put(os_pids, OsPids),
    Status = try run(list_to_atom(CNodeS), list_to_atom(BNodeS)) of
                 ok -> 0
             catch
                 Class:Reason:Stack ->
                     io:format(standard_error, "tether_bench: ~p:~p~n~p~n",
                               [Class, Reason, Stack]),
                     1
             end,
    init:stop(Status).

%% @doc Entry point of node B: registers the BEAM echo and says so.
-spec beam_echo_node() -> ok.
beam_echo_node() ->
    register(echo, spawn(fun echo_loop/0)),
    io:format("tether_bench: ~s ready~n", [node()]).

echo_loop() ->
    receive
        {echo, From, Term} -> From ! Term;
        _ -> ok
    end,
    echo_loop().

run(CNode, BNode) ->
    ok = connect(CNode),
    ok = connect(BNode),
    machine(),
    Targets = [{cnode, CNode}, {beam, BNode}],
    %% Warm both paths up (connections, code, allocators).
    _ = [rtt_round(Node, 200) || {_, Node} <- Targets],
    _ = [oneway_round(Node, 20000, {msg, 0}) || {_, Node} <- Targets],
    Rtt = measure(Targets, fun(N) -> rtt_round_timed(N, ?ROUND_MS) end),
    report(echo_rtt, Rtt, fun(Ops, Us) -> Us / Ops end, "us"),
    Rate = fun(Ops, Us) -> Ops * 1000000 / max(1, Us) end,
    Small = fun(I) -> {msg, I} end,
    SmallN = calibrate(BNode, Small),
    SmallRes = measure(Targets, fun(N) -> oneway_timed(N, SmallN, Small) end),
    report(oneway_small, SmallRes, Rate, "msgs_per_s"),
    Bin = binary:copy(<<"0123456789abcdef">>, 64),
    Kib = fun(_I) -> Bin end,
    KibN = calibrate(BNode, Kib),
    KibRes = measure(Targets, fun(N) -> oneway_timed(N, KibN, Kib) end),
    report(oneway_1k, KibRes, Rate, "msgs_per_s"),
    %% C services against Erlang ones: the kv example (a plugin on the
    %% C-node) and its Erlang twin test/kv.erl (a gen_server on node B).
    {ok, _} = erpc:call(BNode, kv, start, []),
    _ = [ok = erpc:call(N, kv, put, [bench_key, <<"bench value">>])
         || {_, N} <- Targets],
    _ = [rpc_round_timed(N, 100) || {_, N} <- Targets],
    RpcRes = measure(Targets, fun(N) -> rpc_round_timed(N, ?ROUND_MS) end),
    report(rpc_call_rtt, RpcRes, fun(Ops, Us) -> Us / Ops end, "us"),
    _ = [gen_server_timed(N, ?CALLERS, 100) || {_, N} <- Targets],
    GsRes = measure(Targets, fun(N) -> gen_server_timed(N, ?CALLERS, ?ROUND_MS) end),
    report(gen_server_call_tput, GsRes, Rate, "calls_per_s"),
    ok.

%% rpc:call(Node, kv, get, [bench_key]) for about Ms milliseconds;
%% {Calls, ElapsedUs}.
rpc_round_timed(Node, Ms) ->
    T0 = erlang:monotonic_time(),
    Deadline = T0 + erlang:convert_time_unit(Ms, millisecond, native),
    Count = rpc_until(Node, Deadline, 0),
    {Count, erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond)}.

rpc_until(Node, Deadline, Count) ->
    _ = [{ok, _} = rpc:call(Node, kv, get, [bench_key], ?REPLY_TIMEOUT)
         || _ <- lists:seq(1, 16)],
    case erlang:monotonic_time() >= Deadline of
        true -> Count + 16;
        false -> rpc_until(Node, Deadline, Count + 16)
    end.

%% Callers processes each gen_server:call({kv, Node}, {get, bench_key})
%% in a loop for about Ms milliseconds; {TotalCalls, ElapsedUs}.
gen_server_timed(Node, Callers, Ms) ->
    Parent = self(),
    T0 = erlang:monotonic_time(),
    Deadline = T0 + erlang:convert_time_unit(Ms, millisecond, native),
    Pids = [spawn_link(fun() -> Parent ! {self(), gs_until(Node, Deadline, 0)} end)
            || _ <- lists:seq(1, Callers)],
    Total = lists:sum([receive {P, N} -> N after ?REPLY_TIMEOUT -> error(caller_stuck) end
                       || P <- Pids]),
    {Total, erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond)}.

gs_until(Node, Deadline, Count) ->
    {ok, _} = gen_server:call({kv, Node}, {get, bench_key}, ?REPLY_TIMEOUT),
    case erlang:monotonic_time() >= Deadline of
        true -> Count + 1;
        false -> gs_until(Node, Deadline, Count + 1)
    end.

connect(Node) ->
    Deadline = erlang:monotonic_time(millisecond) + ?CONNECT_TIMEOUT,
    connect(Node, Deadline).

connect(Node, Deadline) ->
    case net_adm:ping(Node) of
        pong ->
            ok;
        pang ->
            case erlang:monotonic_time(millisecond) < Deadline of
                true -> timer:sleep(200), connect(Node, Deadline);
                false -> error({cannot_connect, Node})
            end
    end.

machine() ->
    line(nproc, erlang:system_info(logical_processors_available)),
    line(cpu_model, cpu_model()),
    line(otp_release, erlang:system_info(otp_release) ++ " (erts "
         ++ erlang:system_info(version) ++ ")"),
    line(loadavg, loadavg()),
    line(rounds, ?ROUNDS),
    line(round_ms, ?ROUND_MS).

%% The 1, 5 and 15 minute load averages when the run starts: a busy
%% shared machine shows here.
loadavg() ->
    case file:read_file("/proc/loadavg") of
        {ok, L} -> lists:join(" ", lists:sublist(string:lexemes(binary_to_list(L), " "), 3));
        {error, _} -> "unknown"
    end.

cpu_model() ->
    case file:read_file("/proc/cpuinfo") of
        {ok, Info} ->
            case re:run(Info, "^model name\\s*:\\s*(.*)$",
                        [multiline, {capture, all_but_first, list}]) of
                {match, [Model]} -> string:trim(Model);
                nomatch -> "unknown"
            end;
        {error, _} ->
            "unknown"
    end.

%% Runs Fun(Node) ?ROUNDS times per target, alternating targets. Fun
%% returns {Ops, ElapsedUs}; the target's CPU time is sampled around it.
%% Returns #{Tag => [{Ops, ElapsedUs, CpuUs | undefined}]}.
measure(Targets, Fun) ->
    Rounds = [[{Tag, sample_cpu(Tag, fun() -> Fun(Node) end)} || {Tag, Node} <- Targets]
              || _ <- lists:seq(1, ?ROUNDS)],
    All = lists:append(Rounds),
    maps:from_list([{Tag, [V || {T, V} <- All, T =:= Tag]} || {Tag, _} <- Targets]).

sample_cpu(Tag, Fun) ->
    C0 = cpu_us(Tag),
    {Ops, Us} = Fun(),
    C1 = cpu_us(Tag),
    Cpu = case {C0, C1} of
              {undefined, _} -> undefined;
              {_, undefined} -> undefined;
              _ -> C1 - C0
          end,
    {Ops, Us, Cpu}.

%% CPU time (user + system) of the target's OS process, in microseconds.
cpu_us(Tag) ->
    case get(os_pids) of
        {CPid, BPid} ->
            Pid = case Tag of cnode -> CPid; beam -> BPid end,
            case file:read_file("/proc/" ++ integer_to_list(Pid) ++ "/stat") of
                {ok, Stat} ->
                    [_, After] = string:split(Stat, ")", trailing),
                    %% After ")": state is field 3, utime 14, stime 15.
                    Fields = string:lexemes(After, " "),
                    Ticks = binary_to_integer(lists:nth(12, Fields))
                        + binary_to_integer(lists:nth(13, Fields)),
                    Ticks * 1000000 div get(clk_tck);
                {error, _} ->
                    undefined
            end;
        undefined ->
            undefined
    end.

%% Prints NAME_cnode_UNIT, NAME_beam_UNIT (medians of Value(Ops, Us)
%% per round) and NAME_ratio (median of cnode / beam per round), then the CPU time each
%% target spent per operation and its ratio when known.
report(Name, Res, Value, Unit) ->
    Med = fun(Tag) -> median([Value(O, U) || {O, U, _} <- maps:get(Tag, Res)]) end,
    C = Med(cnode),
    B = Med(beam),
    case os:getenv("TETHER_BENCH_VERBOSE") of
        false -> ok;
        _ -> io:format(standard_error, "~p rounds {Ops, Us, CpuUs}: ~p~n", [Name, Res])
    end,
    line(lists:concat([Name, "_cnode_", Unit]), C),
    line(lists:concat([Name, "_beam_", Unit]), B),
    %% Rounds alternate targets, so round I of each ran under about the
    %% same load: the ratio is the median of the per-round ratios.
    Pairs = lists:zip(maps:get(cnode, Res), maps:get(beam, Res)),
    Ratio = median([Value(Oc, Uc) / Value(Ob, Ub) || {{Oc, Uc, _}, {Ob, Ub, _}} <- Pairs]),
    line(lists:concat([Name, "_ratio"]), Ratio),
    %% CPU samples are clock ticks (10 ms): sum them over all rounds.
    Cpu = fun(Tag) ->
                  Rs = maps:get(Tag, Res),
                  case lists:member(undefined, [Cu || {_, _, Cu} <- Rs]) of
                      true -> undefined;
                      false -> lists:sum([Cu || {_, _, Cu} <- Rs]) /
                                   lists:sum([O || {O, _, _} <- Rs])
                  end
          end,
    case {Cpu(cnode), Cpu(beam)} of
        {CC, BC} when is_number(CC), is_number(BC) ->
            line(lists:concat([Name, "_cnode_cpu_us_per_op"]), CC),
            line(lists:concat([Name, "_beam_cpu_us_per_op"]), BC),
            line(lists:concat([Name, "_cpu_ratio"]), CC / max(BC, 1.0e-9));
        _ ->
            ok
    end.

%% Echo round trips for about Ms milliseconds; {RoundTrips, ElapsedUs}.
rtt_round_timed(Node, Ms) ->
    T0 = erlang:monotonic_time(),
    Deadline = T0 + erlang:convert_time_unit(Ms, millisecond, native),
    Count = rtt_until(Node, Deadline, 0),
    {Count, erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond)}.

rtt_until(Node, Deadline, Count) ->
    ok = rtt_round(Node, 64),
    case erlang:monotonic_time() >= Deadline of
        true -> Count + 64;
        false -> rtt_until(Node, Deadline, Count + 64)
    end.

rtt_round(_Node, 0) ->
    ok;
rtt_round(Node, K) ->
    {echo, Node} ! {echo, self(), K},
    receive
        K -> rtt_round(Node, K - 1)
    after ?REPLY_TIMEOUT ->
            error({no_echo_reply, Node})
    end.

%% Number of messages that take about ?ROUND_MS on the BEAM target.
calibrate(Node, MkMsg) ->
    Pilot = 20000,
    {_, Us} = oneway_timed(Node, Pilot, MkMsg),
    max(Pilot, round(Pilot * ?ROUND_MS * 1000 / max(1, Us))).

%% Sends N messages into Node's echo and waits for a barrier echo;
%% {N, ElapsedUs}.
oneway_timed(Node, N, MkMsg) ->
    T0 = erlang:monotonic_time(),
    ok = oneway_round(Node, N, MkMsg),
    {N, erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond)}.

oneway_round(Node, N, MkMsg) when is_function(MkMsg) ->
    %% ?SENDERS processes share the N messages, each ending with its own
    %% barrier: one sender cannot load either receiver (both outrun it),
    %% so a single stream would measure the driver, not the target.
    Parent = self(),
    Per = max(1, N div ?SENDERS),
    Pids = [spawn_link(fun() -> Parent ! {self(), send_with_barrier(Node, Per, MkMsg)} end)
            || _ <- lists:seq(1, ?SENDERS)],
    _ = [receive {P, ok} -> ok end || P <- Pids],
    ok;
oneway_round(Node, N, Msg) ->
    oneway_round(Node, N, fun(_) -> Msg end).

send_with_barrier(Node, N, MkMsg) ->
    Dest = {echo, Node},
    send_n(Dest, N, MkMsg),
    Ref = make_ref(),
    Dest ! {echo, self(), {done, Ref}},
    receive
        {done, Ref} -> ok
    after ?REPLY_TIMEOUT ->
            error({no_barrier_reply, Node})
    end.

send_n(_Dest, 0, _MkMsg) ->
    ok;
send_n(Dest, I, MkMsg) ->
    Dest ! MkMsg(I),
    send_n(Dest, I - 1, MkMsg).

median(Vs) ->
    Sorted = lists:sort(Vs),
    Len = length(Sorted),
    case Len rem 2 of
        1 -> lists:nth(Len div 2 + 1, Sorted);
        0 -> (lists:nth(Len div 2, Sorted) + lists:nth(Len div 2 + 1, Sorted)) / 2
    end.

fmt(V) when is_float(V) ->
    float_to_list(V, [{decimals, 3}, compact]);
fmt(V) ->
    V.

line(Name, Value) ->
    io:format("~s: ~ts~n", [Name, to_chars(Value)]).

to_chars(V) when is_integer(V) -> integer_to_list(V);
to_chars(V) when is_float(V) -> fmt(V);
to_chars(V) -> V.
