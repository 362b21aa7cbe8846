%% @doc C-node versus BEAM node, measured side by side in one run (issue
%% 3, item 6). Run by bench/run, which starts epmd, the C-node and the
%% BEAM node B; this module is the driver (node A) and also B's echo.
%%
%% Both targets run the same protocol in a process registered as `echo':
%% {echo, From, Term} sends Term to From; anything else is dropped. The
%% driver measures, alternating targets round by round so drift hits both:
%%   echo round trip     A -> echo -> A, one message in flight;
%%   one-way throughput  N pre-encoded messages into echo, written in bulk
%%                       on a raw distribution connection (see raw_connect/1)
%%                       and ended by an echo barrier: what the receiver
%%                       absorbs; and the same from ?SENDERS processes of
%%                       A (what a stock sender gets through);
%%   rpc:call round trip rpc:call(Node, kv, get, [Key]): the C kv plugin
%%                       against its Erlang twin (test/kv.erl) on B;
%%   gen_server calls    ?CALLERS calls to {kv, Node} in flight, sent as
%%                       gen_server:call sends them on a raw connection;
%%                       and ?CALLERS gen_server:call processes on A.
%% main_tls/1 measures the echo round trip and the small one-way messages
%% again with every node on TLS distribution (the C-node on OpenSSL, the
%% BEAM node on OTP's ssl, the driver's raw connection an ssl socket).
%% Each figure is the median of its rounds. When bench/run passes the OS
%% pids of the two targets, the CPU time each target used per operation
%% is reported too (from /proc/PID/stat): it shows the receiver's cost
%% even when the sender, not the receiver, limits the rate.
%% Output: `name: value' lines.
-module(tether_bench).

-export([main/1, main_tls/1, beam_echo_node/0]).

-define(ROUNDS, 25).
-define(ROUND_MS, 200).
-define(REPLY_TIMEOUT, 30000).
-define(CONNECT_TIMEOUT, 30000).
-define(CALLERS, 100).
-define(SENDERS, 4).
-define(RTT_TURN, 32).

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

%% @doc Entry point of node A on TLS distribution:
%% main_tls([CNode, BeamNode, COsPid, BeamOsPid, ClockTicksPerSecond,
%% OptFile]); OptFile is the ssl_dist_optfile all three nodes use (its
%% client options open the raw connections).
-spec main_tls([string()]) -> ok.
main_tls([CNodeS, BNodeS, CPid, BPid, Hz, OptFile]) ->
    %% TLS distribution starts ssl's distribution part only; the raw
    %% connections are ssl sockets of the application.
    {ok, _} = application:ensure_all_started(ssl),
    put(clk_tck, list_to_integer(Hz)),
    {ok, [Opts]} = file:consult(OptFile),
    put(raw_tls, proplists:get_value(client, Opts, [])),
    main1(CNodeS, BNodeS, {list_to_integer(CPid), list_to_integer(BPid)},
          fun run_tls/2).

main1(CNodeS, BNodeS, OsPids) ->
    main1(CNodeS, BNodeS, OsPids, fun run/2).

main1(CNodeS, BNodeS, OsPids, Run) ->
    put(os_pids, OsPids),
    Status = try Run(list_to_atom(CNodeS), list_to_atom(BNodeS)) of
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
    Rtt = measure_rtt(Targets),
    report(echo_rtt, Rtt, fun(Ops, Us) -> Us / Ops end, "us"),
    Rate = fun(Ops, Us) -> Ops * 1000000 / max(1, Us) end,
    Small = fun(I) -> {msg, I} end,
    Bin = binary:copy(<<"0123456789abcdef">>, 64),
    Kib = fun(_I) -> Bin end,
    %% What each receiver absorbs: one pre-encoded stream from a raw
    %% distribution connection, so the sender costs next to nothing.
    _ = [raw_warm(Node, Small) || {_, Node} <- Targets],
    SmallRN = raw_calibrate(BNode, Small),
    report(oneway_small, raw_measure(Targets, fun(S, _) -> raw_round(S, SmallRN, Small) end),
           Rate, "msgs_per_s"),
    KibRN = raw_calibrate(BNode, Kib),
    report(oneway_1k, raw_measure(Targets, fun(S, _) -> raw_round(S, KibRN, Kib) end),
           Rate, "msgs_per_s"),
    %% The same messages from ?SENDERS processes of this (stock) node:
    %% what a BEAM sender gets through, bounded by the sender on 2 cores.
    SmallN = calibrate(BNode, Small),
    SmallRes = measure(Targets, fun(N) -> oneway_timed(N, SmallN, Small) end),
    report(oneway_small_beam_senders, SmallRes, Rate, "msgs_per_s"),
    KibN = calibrate(BNode, Kib),
    KibRes = measure(Targets, fun(N) -> oneway_timed(N, KibN, Kib) end),
    report(oneway_1k_beam_senders, KibRes, Rate, "msgs_per_s"),
    %% C services against Erlang ones: the kv example (a plugin on the
    %% C-node) and its Erlang twin test/kv.erl (a gen_server on node B).
    {ok, _} = erpc:call(BNode, kv, start, []),
    _ = [ok = erpc:call(N, kv, put, [bench_key, <<"bench value">>])
         || {_, N} <- Targets],
    _ = [rpc_round_timed(N, 100) || {_, N} <- Targets],
    RpcRes = measure(Targets, fun(N) -> rpc_round_timed(N, ?ROUND_MS) end),
    report(rpc_call_rtt, RpcRes, fun(Ops, Us) -> Us / Ops end, "us"),
    %% What each service serves with ?CALLERS calls in flight, sent as
    %% gen_server:call sends them, from a raw connection.
    _ = [raw_warm_calls(Node) || {_, Node} <- Targets],
    CallsN = raw_calibrate_calls(BNode),
    report(gen_server_call_tput,
           raw_measure(Targets, fun(S, _) -> raw_calls(S, CallsN, ?CALLERS) end),
           Rate, "calls_per_s"),
    %% The same from ?CALLERS processes of this (stock) node.
    _ = [gen_server_timed(N, ?CALLERS, 100) || {_, N} <- Targets],
    GsRes = measure(Targets, fun(N) -> gen_server_timed(N, ?CALLERS, ?ROUND_MS) end),
    report(gen_server_call_tput_beam_callers, GsRes, Rate, "calls_per_s"),
    ok.

%% The TLS figures: echo round trip and what each receiver absorbs of
%% small messages, as run/2 measures them, over TLS.
run_tls(CNode, BNode) ->
    ok = connect(CNode),
    ok = connect(BNode),
    line(tls_loadavg, loadavg()),
    Targets = [{cnode, CNode}, {beam, BNode}],
    _ = [rtt_round(Node, 200) || {_, Node} <- Targets],
    Rtt = measure_rtt(Targets),
    report(echo_rtt_tls, Rtt, fun(Ops, Us) -> Us / Ops end, "us"),
    Rate = fun(Ops, Us) -> Ops * 1000000 / max(1, Us) end,
    Small = fun(I) -> {msg, I} end,
    _ = [raw_warm(Node, Small) || {_, Node} <- Targets],
    SmallRN = raw_calibrate(BNode, Small),
    report(oneway_small_tls,
           raw_measure(Targets, fun(S, _) -> raw_round(S, SmallRN, Small) end),
           Rate, "msgs_per_s"),
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
    Ratios = [Value(Oc, Uc) / Value(Ob, Ub) || {{Oc, Uc, _}, {Ob, Ub, _}} <- Pairs],
    line(lists:concat([Name, "_ratio"]), median(Ratios)),
    %% The spread of the per-round ratios: narrow when the ratio is the
    %% paths' own, wide when load from elsewhere hit some rounds.
    line(lists:concat([Name, "_ratio_p10"]), percentile(10, Ratios)),
    line(lists:concat([Name, "_ratio_p90"]), percentile(90, Ratios)),
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

%% The echo round trip, ?ROUNDS rounds of about ?ROUND_MS. Within a
%% round the targets take turns of ?RTT_TURN round trips (a few
%% milliseconds each), so a burst of load from elsewhere hits both alike,
%% and a round's time for a target is its median turn times its number of
%% turns: a turn in which the VM took the core away for a time slice is
%% not what the path costs. Returns what measure/2 does.
measure_rtt(Targets) ->
    Rounds = [rtt_interleaved(Targets, ?ROUND_MS) || _ <- lists:seq(1, ?ROUNDS)],
    maps:from_list([{Tag, [maps:get(Tag, R) || R <- Rounds]} || {Tag, _} <- Targets]).

%% One round of measure_rtt/1: #{Tag => {RoundTrips, Us, CpuUs | undefined}}.
%% The target's CPU time is sampled around the whole round (its idle time
%% in the other's turns included).
rtt_interleaved(Targets, Ms) ->
    Cpu0 = maps:from_list([{Tag, cpu_us(Tag)} || {Tag, _} <- Targets]),
    Deadline = erlang:monotonic_time() + erlang:convert_time_unit(Ms, millisecond, native),
    Turns = rtt_turns(Targets, Deadline, maps:from_list([{Tag, []} || {Tag, _} <- Targets])),
    maps:map(fun(Tag, Ts) ->
                     Cpu = case {maps:get(Tag, Cpu0), cpu_us(Tag)} of
                               {C0, C1} when is_integer(C0), is_integer(C1) -> C1 - C0;
                               _ -> undefined
                           end,
                     Us = erlang:convert_time_unit(round(median(Ts) * length(Ts)),
                                                   native, microsecond),
                     {?RTT_TURN * length(Ts), Us, Cpu}
             end, Turns).

%% Turns until Deadline; #{Tag => [TurnTime]} in native units.
rtt_turns(Targets, Deadline, Turns) ->
    Turns1 = lists:foldl(
               fun({Tag, Node}, Acc) ->
                       T0 = erlang:monotonic_time(),
                       ok = rtt_round(Node, ?RTT_TURN),
                       T = erlang:monotonic_time() - T0,
                       maps:update_with(Tag, fun(Ts) -> [T | Ts] end, Acc)
               end, Turns, Targets),
    case erlang:monotonic_time() >= Deadline of
        true -> Turns1;
        false -> rtt_turns(Targets, Deadline, Turns1)
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

%% ---- the raw sender ------------------------------------------------
%%
%% A distribution connection opened by hand (gen_tcp, or an ssl socket
%% under main_tls/1, handshake version 6 as dist_util does it, hidden, no
%% atom cache, no fragments), so that
%% messages are encoded once and written in bulk: the receiver, not the
%% sender, sets the rate. Both targets get the same bytes: pass-through
%% frames <<112, Ctl, Msg>> with Ctl = {6, FakePid, '', echo} (REG_SEND).

-define(DFLAG_EXTENDED_REFERENCES, 16#04).
-define(DFLAG_DIST_MONITOR, 16#08).
-define(DFLAG_DIST_MONITOR_NAME, 16#20).
-define(DFLAG_SMALL_ATOM_TAGS, 16#4000).
-define(DFLAG_UTF8_ATOMS, 16#10000).
-define(DFLAG_MANDATORY_25_DIGEST, 16#04000000).
-define(RAW_FLAGS, (?DFLAG_MANDATORY_25_DIGEST bor ?DFLAG_EXTENDED_REFERENCES
                    bor ?DFLAG_DIST_MONITOR bor ?DFLAG_DIST_MONITOR_NAME
                    bor ?DFLAG_SMALL_ATOM_TAGS bor ?DFLAG_UTF8_ATOMS)).
-define(RAW_CREATION, 16#5eed).

-record(raw, {sock, mod = gen_tcp :: gen_tcp | ssl, name :: binary(),
              pid :: pid(), node :: atom()}).

raw_send(#raw{mod = M, sock = S}, Data) -> M:send(S, Data).
raw_recv(#raw{mod = M, sock = S}, Timeout) -> M:recv(S, 0, Timeout).
raw_close(#raw{mod = M, sock = S}) -> M:close(S).

%% Like measure/2, with one raw connection per target for the whole
%% measure: Fun(Raw, Node) -> {Ops, ElapsedUs}.
raw_measure(Targets, Fun) ->
    Raws = [{Tag, raw_connect(Node)} || {Tag, Node} <- Targets],
    try
        measure([{Tag, R} || {Tag, R} <- Raws], fun(R) -> Fun(R, R#raw.node) end)
    after
        _ = [raw_close(R) || {_, R} <- Raws],
        raw_forget()
    end.

%% One round on a fresh raw connection (connection, code, allocators).
raw_warm(Node, MkMsg) ->
    R = raw_connect(Node),
    try raw_round(R, 20000, MkMsg) after raw_close(R), raw_forget() end.

raw_forget() ->
    _ = [erase(K) || {{raw_blob, _, _, _} = K, _} <- get()],
    ok.

%% Over TLS (main_tls/1 put the client options in raw_tls) the socket is
%% an ssl one and handshake messages have 4-byte lengths, as
%% inet_tls_dist sends them.
raw_connect(Node) ->
    [Name, Host] = string:split(atom_to_list(Node), "@"),
    {port, Port, _} = erl_epmd:port_please(Name, Host),
    Base = [binary, {active, false}, {nodelay, true}],
    {ok, Sock} = case get(raw_tls) of
                     undefined ->
                         gen_tcp:connect({127, 0, 0, 1}, Port, [{packet, 2} | Base],
                                         ?CONNECT_TIMEOUT);
                     TlsOpts ->
                         ssl:connect({127, 0, 0, 1}, Port,
                                     [{packet, 4} | Base] ++ TlsOpts,
                                     ?CONNECT_TIMEOUT)
                 end,
    R = #raw{sock = Sock, mod = case get(raw_tls) of undefined -> gen_tcp; _ -> ssl end,
             node = Node},
    Me = iolist_to_binary(io_lib:format("tether_bench_raw~w_~s@127.0.0.1",
                                        [erlang:unique_integer([positive]), os:getpid()])),
    ok = raw_send(R, <<$N, ?RAW_FLAGS:64, ?RAW_CREATION:32,
                       (byte_size(Me)):16, Me/binary>>),
    {ok, <<$s, "ok", _/binary>>} = raw_recv(R, ?CONNECT_TIMEOUT),
    {ok, <<$N, _Flags:64, Challenge:32, _Creation:32, _/binary>>} =
        raw_recv(R, ?CONNECT_TIMEOUT),
    Cookie = atom_to_list(erlang:get_cookie()),
    Mine = rand:uniform(16#ffffffff),
    ok = raw_send(R, [$r, <<Mine:32>>,
                      erlang:md5([Cookie | integer_to_list(Challenge)])]),
    Ack = erlang:md5([Cookie | integer_to_list(Mine)]),
    {ok, <<$a, Ack/binary>>} = raw_recv(R, ?CONNECT_TIMEOUT),
    ok = case R#raw.mod of
             gen_tcp -> inet:setopts(Sock, [{packet, raw}]);
             ssl -> ssl:setopts(Sock, [{packet, raw}])
         end,
    %% NEW_PID_EXT: a process of ours, the sender of every message.
    Pid = binary_to_term(<<131, 88, 119, (byte_size(Me)), Me/binary,
                           1:32, 0:32, ?RAW_CREATION:32>>),
    R#raw{name = Me, pid = Pid}.

raw_frame(Ctl, Msg) ->
    C = term_to_binary(Ctl),
    M = term_to_binary(Msg),
    [<<(1 + byte_size(C) + byte_size(M)):32, 112>>, C, M].

%% Writes N messages and a barrier {echo, FakePid, {done, Ref}} on the
%% raw connection and waits for the barrier's answer; {N, ElapsedUs}.
raw_round(#raw{pid = Pid} = R, N, MkMsg) ->
    Blob = raw_blob(Pid, N, MkMsg),
    Ref = make_ref(),
    Barrier = iolist_to_binary(raw_frame({6, Pid, '', echo}, {echo, Pid, {done, Ref}})),
    T0 = erlang:monotonic_time(),
    ok = raw_send(R, Blob),
    ok = raw_send(R, Barrier),
    ok = raw_await(R, {done, Ref}, <<>>),
    {N, erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond)}.

%% The N frames, built once per N and message kind (kept in the process
%% dictionary: the rounds of a measure reuse them).
raw_blob(Pid, N, MkMsg) ->
    Key = {raw_blob, Pid, N, MkMsg(1)},
    case get(Key) of
        undefined ->
            Blob = iolist_to_binary([raw_frame({6, Pid, '', echo}, MkMsg(I))
                                     || I <- lists:seq(1, N)]),
            put(Key, Blob),
            Blob;
        Blob ->
            Blob
    end.

%% Reads frames until a pass-through frame carries the message Want
%% (ticks and anything else are skipped).
raw_await(R, Want, Buf) ->
    case Buf of
        <<Len:32, Frame:Len/binary, Rest/binary>> ->
            case raw_message(Frame) of
                Want -> ok;
                _ -> raw_await(R, Want, Rest)
            end;
        _ ->
            case raw_recv(R, ?REPLY_TIMEOUT) of
                {ok, More} -> raw_await(R, Want, <<Buf/binary, More/binary>>);
                {error, Why} -> error({no_barrier_reply, Why})
            end
    end.

%% The message of a pass-through frame <<112, Ctl, Msg>>, or none.
raw_message(<<112, Terms/binary>>) ->
    try binary_to_term(Terms, [used]) of
        {_Ctl, Used} when Used < byte_size(Terms) ->
            binary_to_term(binary:part(Terms, Used, byte_size(Terms) - Used));
        _ ->
            none
    catch
        error:badarg -> none
    end;
raw_message(_) ->
    none.

%% Total gen_server calls {get, bench_key} to kv with Window of them in
%% flight, each as gen_server:call makes it: MONITOR_P on {kv, Node},
%% then {'$gen_call', {FakePid, Ref}, Request}, and DEMONITOR_P once the
%% reply {Ref, Reply} is in. Replies come in call order (one server
%% process), so reading K replies sends K demonitors and the next K
%% calls. Frames are encoded before the clock starts. {Total, ElapsedUs}.
raw_calls(#raw{pid = Pid} = S, Total, Window) ->
    {Calls, Demons, LastRef} = raw_call_frames(Pid, Total),
    First = min(Window, Total),
    T0 = erlang:monotonic_time(),
    ok = raw_send(S, [element(K, Calls) || K <- lists:seq(1, First)]),
    {Last, _} = raw_calls_loop(S, Calls, Demons, Total, First, 0, <<>>),
    Us = erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond),
    {LastRef, {ok, _}} = raw_message(Last),
    {Total, Us}.

raw_calls_loop(S, Calls, Demons, Total, Sent, Got, Buf0) ->
    {ok, More} = raw_recv(S, ?REPLY_TIMEOUT),
    {Frames, Last, Buf} = raw_split(<<Buf0/binary, More/binary>>, 0, none),
    Got1 = Got + Frames,
    Sent1 = min(Total, Sent + Frames),
    ok = raw_send(S, [[element(K, Demons) || K <- lists:seq(Got + 1, Got1)],
                          [element(K, Calls) || K <- lists:seq(Sent + 1, Sent1)]]),
    case Got1 >= Total of
        true -> {Last, Got1};
        false -> raw_calls_loop(S, Calls, Demons, Total, Sent1, Got1, Buf)
    end.

%% Counts the whole SEND frames (pass-through, control {2, '', Pid}: the
%% replies) in Buf, skipping ticks and anything else the target sends;
%% returns {Count, LastReply, Rest}.
raw_split(<<Len:32, Frame:Len/binary, Rest/binary>>, N, Last) ->
    case Frame of
        <<112, 131, 104, 3, 97, 2, _/binary>> -> raw_split(Rest, N + 1, Frame);
        _ -> raw_split(Rest, N, Last)
    end;
raw_split(Buf, N, Last) ->
    {N, Last, Buf}.

raw_call_frames(Pid, Total) ->
    Key = {raw_blob, Pid, Total, calls},
    case get(Key) of
        undefined ->
            Refs = [make_ref() || _ <- lists:seq(1, Total)],
            Calls = list_to_tuple(
                      [iolist_to_binary([raw_frame_ctl({19, Pid, kv, Ref}),
                                         raw_frame({6, Pid, '', kv},
                                                   {'$gen_call', {Pid, Ref}, {get, bench_key}})])
                       || Ref <- Refs]),
            Demons = list_to_tuple([iolist_to_binary(raw_frame_ctl({20, Pid, kv, Ref}))
                                    || Ref <- Refs]),
            V = {Calls, Demons, lists:last(Refs)},
            put(Key, V),
            V;
        V ->
            V
    end.

raw_frame_ctl(Ctl) ->
    C = term_to_binary(Ctl),
    [<<(1 + byte_size(C)):32, 112>>, C].

raw_warm_calls(Node) ->
    R = raw_connect(Node),
    try raw_calls(R, 2000, ?CALLERS) after raw_close(R), raw_forget() end.

%% Number of calls the BEAM service answers in about ?ROUND_MS.
raw_calibrate_calls(Node) ->
    Pilot = 5000,
    R = raw_connect(Node),
    try
        _ = raw_calls(R, Pilot, ?CALLERS),
        {_, Us} = raw_calls(R, Pilot, ?CALLERS),
        max(Pilot, round(Pilot * ?ROUND_MS * 1000 / max(1, Us)))
    after
        raw_close(R),
        raw_forget()
    end.

%% Number of messages the BEAM target absorbs in about ?ROUND_MS.
raw_calibrate(Node, MkMsg) ->
    Pilot = 20000,
    R = raw_connect(Node),
    try
        _ = raw_round(R, Pilot, MkMsg),
        {_, Us} = raw_round(R, Pilot, MkMsg),
        max(Pilot, round(Pilot * ?ROUND_MS * 1000 / max(1, Us)))
    after
        raw_close(R),
        raw_forget()
    end.

median(Vs) ->
    Sorted = lists:sort(Vs),
    Len = length(Sorted),
    case Len rem 2 of
        1 -> lists:nth(Len div 2 + 1, Sorted);
        0 -> (lists:nth(Len div 2, Sorted) + lists:nth(Len div 2 + 1, Sorted)) / 2
    end.

%% The P-th percentile of Vs (nearest rank).
percentile(P, Vs) ->
    Sorted = lists:sort(Vs),
    lists:nth(max(1, ceil(P * length(Sorted) / 100)), Sorted).

fmt(V) when is_float(V) ->
    float_to_list(V, [{decimals, 3}, compact]);
fmt(V) ->
    V.

line(Name, Value) ->
    io:format("~s: ~ts~n", [Name, to_chars(Value)]).

to_chars(V) when is_integer(V) -> integer_to_list(V);
to_chars(V) when is_float(V) -> fmt(V);
to_chars(V) -> V.
