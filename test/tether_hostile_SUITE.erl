%% @doc tether under visitors, large messages and long partitions.
%%
%% visitors_leave_no_peer_entries: 5,000 short-lived hidden connections
%% (raw distribution handshakes written here, as a hidden OTP 25 node
%% makes them: send_name 'N', challenge, MD5 digest of cookie ++
%% challenge, challenge_ack; then close) to a BEAM member and to a C-node
%% leave no entry in their engines' peer tables (the stats count
%% peers_freed, none refused), and a new node then joins each.
%%
%% heal_of_large_casts: 128 casts of 4 MiB across a defer partition: the
%% engine holds what fits in defer_max_bytes (64 MiB) and counts the rest
%% as overflow; heal/1 answers at once (under 100 ms) while the held
%% casts go out in slices of 128 KiB, a slice a millisecond; a prober
%% calling the server (members/0) and the registry (whereis_name/1) in a
%% loop through the whole flush is never kept waiting long (a 4 MiB slice
%% sealed in one NIF call kept it waiting 0.13-2.6 s), on the flushing
%% node and on the receiving one (whose server verified each envelope
%% under the engine lock and decoded it itself: 0.11-0.70 s); every cast that
%% fit arrives in order; and the holding node's memory grows by about
%% what fit, during the flush as well.
%%
%% large_and_small_casts_keep_order: casts of 1 MiB and of a few bytes,
%% alternating, held across a defer partition and flushed on heal: the
%% large ones are verified and decoded apart from the receiving server,
%% the small ones in it, and all arrive in the order they were sent.
%%
%% large_terms_through_a_cnode: rpc:call(C, kv, put | get, ...) of a
%% 64 MiB and a 256 MiB value on a C-node running the kv plug-in: both
%% directions go through (the C-node reads messages up to 1 GiB, whole or
%% in fragments, and writes one large reply as the caller reads it),
%% with the C-node's peak memory stated as a multiple of the term.
-module(tether_hostile_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0]).
-export([visitors_leave_no_peer_entries/1, heal_of_large_casts/1,
         large_and_small_casts_keep_order/1, large_terms_through_a_cnode/1]).
-export([start_sink/0, sink_seen/0, cast_large/3, cast_mixed/2, rss_kib/0,
         probe/1]).

-define(LIB, tether_test_lib).
-define(HB_MS, 200).
-define(TTL_MS, 2000).
-define(WAIT_MS, 30000).
-define(CALL_MS, 10000).
-define(HOST, "127.0.0.1").
-define(VISITORS, 5000).
-define(VISITOR_WORKERS, 8).
-define(MIB, (1024 * 1024)).
-define(CASTS, 128).
-define(DEFER_MAX_BYTES, (64 * ?MIB)).
%% The longest a probe may wait on the flushing node: loose enough for a
%% loaded CI VM (2 vCPUs at a load average over 10), and still well under
%% what a flush that seals whole 4 MiB messages in the server made them
%% wait (0.13 s unloaded, 0.56-2.6 s loaded).
-define(PROBE_MAX_US, 250000).
%% The most CPU time one engine tick may take: a slice of 128 KiB takes
%% about 0.5 ms; sealing a whole 4 MiB cast took 16 ms and more. CPU time,
%% unlike the probes' waits, does not grow with the machine's load.
-define(TICK_MAX_CPU_US, 5000).

%% Distribution flags of a hidden OTP 25 node without atom cache or
%% fragments (kernel/include/dist.hrl): extended references, monitors, fun
%% tags, extended pids and ports, export pointers, bit binaries, new
%% floats, UTF-8 atoms, maps, big creation, handshake 23, unlink id,
%% mandatory 25 digest, v4 node containers.
-define(RAW_FLAGS, (16#04 bor 16#08 bor 16#10 bor 16#80 bor 16#100 bor
                    16#200 bor 16#400 bor 16#800 bor 16#10000 bor 16#20000 bor
                    16#40000 bor 16#01000000 bor 16#02000000 bor 16#04000000 bor
                    (16#04 bsl 32))).

suite() ->
    [{timetrap, {minutes, 5}}, {ct_hooks, [tether_case_hook]}].

all() ->
    [visitors_leave_no_peer_entries, heal_of_large_casts,
     large_and_small_casts_keep_order, large_terms_through_a_cnode].

%%% Cases

%% 5,000 hidden connections that come and go, to a BEAM member and to a
%% C-node: every peer entry they made is freed, none refused, and a new
%% node joins each afterwards (the table held 1,024 and never freed).
visitors_leave_no_peer_entries(Config) ->
    [B, NewB, NewC] = start_nodes(3),
    C = start_cnode(Config),
    CN = ?LIB:cnode_node(C),
    Targets = [{beam, B, fun() -> call(B, tether_server, info, []) end},
               {cnode, CN, fun() -> ccall(CN, info) end}],
    lists:foreach(
      fun({Kind, Node, Info}) ->
              Freed0 = maps:get(peers_freed, maps:get(stats, Info())),
              {Us, ok} = timer:tc(fun() -> visit(Node, ?VISITORS) end),
              ct:pal("~p: ~b hidden connections in ~b ms", [Kind, ?VISITORS, Us div 1000]),
              #{stats := #{peers_freed := Freed, peers_refused := Refused}} =
                  poll(Info, fun(#{stats := #{peers_freed := F}}) ->
                                     F - Freed0 >= ?VISITORS
                             end),
              ct:pal("~p: peers_freed ~b, peers_refused ~b", [Kind, Freed - Freed0, Refused]),
              ?assertEqual(0, Refused)
      end, Targets),
    ok = call(NewB, tether, join, [B]),
    ok = call(NewC, tether, join, [CN]),
    ?LIB:wait_members([B, NewB], lists:sort([B, NewB]), ?WAIT_MS),
    ?LIB:wait_members([CN, NewC], lists:sort([CN, NewC]), ?WAIT_MS).

%% 128 x 4 MiB casts from A to B across a defer partition, then heal.
heal_of_large_casts(_Config) ->
    [A, B] = ?LIB:start_cluster(2, node_opts(), ?WAIT_MS),
    ok = call(B, ?MODULE, start_sink, []),
    {ok, Ref} = call(A, tether, partition, [[A], [B], defer]),
    #{stats := St0} = call(A, tether_server, info, []),
    Rss0 = call(A, ?MODULE, rss_kib, []),
    ok = call(A, ?MODULE, cast_large, [B, ?CASTS, 4 * ?MIB]),
    #{stats := St1} = call(A, tether_server, info, []),
    Rss1 = call(A, ?MODULE, rss_kib, []),
    %% part_deferred counts every message held, the engine's own small
    %% ones (heartbeats, anti-entropy) too; only casts overflow.
    Held = maps:get(part_deferred, St1) - maps:get(part_deferred, St0),
    Overflow = maps:get(defer_overflow, St1) - maps:get(defer_overflow, St0),
    HeldCasts = ?CASTS - Overflow,
    ct:pal("held ~b casts (~b messages), overflow ~b; A's RSS ~b -> ~b MiB "
           "(+~b MiB, ~b MiB held)",
           [HeldCasts, Held, Overflow, Rss0 div 1024, Rss1 div 1024,
            (Rss1 - Rss0) div 1024, HeldCasts * 4]),
    ?assert(Held >= HeldCasts),
    ?assert(HeldCasts >= 1 andalso HeldCasts * 4 * ?MIB =< ?DEFER_MAX_BYTES),
    %% The holder's memory: what it holds plus the casts' transient
    %% encodings, not the 512 MiB sent.
    ?assert(Rss1 - Rss0 < 3 * ?DEFER_MAX_BYTES div 1024),
    Prober = spawn_link(A, ?MODULE, probe, [self()]),
    %% The receiving side: its server verifies each 4 MiB envelope's MAC
    %% without the engine lock and decodes the payload in a decoder
    %% process, so it and the registry answer as fast during the flush.
    ProberB = spawn_link(B, ?MODULE, probe, [self()]),
    T0 = erlang:monotonic_time(millisecond),
    {HealUs, ok} = call(A, timer, tc, [tether, heal, [Ref]]),
    Seen = poll(fun() -> call(B, ?MODULE, sink_seen, []) end,
                fun(L) -> length(L) >= HeldCasts end),
    FlushMs = erlang:monotonic_time(millisecond) - T0,
    [Probed, ProbedB] = [begin
                             Pid ! stop,
                             receive {probed, Pid, Map} -> Map
                             after ?WAIT_MS -> error(no_probe) end
                         end || Pid <- [Prober, ProberB]],
    #{server_max_us := ServerMax, whereis_max_us := WhereisMax,
      rss_max_kib := RssMax} = Probed,
    #{tick_max_cpu_us := TickMax} = call(A, tether_server, info, []),
    ct:pal("heal/1 answered in ~b us; the flush took ~b ms; meanwhile ~p;~n"
           "A's RSS at most ~b MiB during the flush (+~b MiB over before the casts);~n"
           "the longest engine tick took ~b us of CPU; on the receiving node ~p",
           [HealUs, FlushMs, Probed, RssMax div 1024, (RssMax - Rss0) div 1024,
            TickMax, ProbedB]),
    %% The server hands a busy peer's messages to a sender process: it is
    %% never suspended on the distribution port itself.
    ?assertMatch(#{server_suspended := 0}, Probed),
    ?assertEqual(lists:seq(1, HeldCasts), Seen),
    ?assert(TickMax < ?TICK_MAX_CPU_US),
    ?assert(ServerMax < ?PROBE_MAX_US),
    ?assert(WhereisMax < ?PROBE_MAX_US),
    #{server_max_us := ServerMaxB, whereis_max_us := WhereisMaxB} = ProbedB,
    ?assert(ServerMaxB < ?PROBE_MAX_US),
    ?assert(WhereisMaxB < ?PROBE_MAX_US),
    %% The flush adds at most a few envelopes in flight to what was held.
    ?assert(RssMax - Rss0 < 3 * ?DEFER_MAX_BYTES div 1024),
    %% The issue's bound is 100 ms, and heal/1 takes well under 1 ms
    %% when the machine is not saturated (0.13 - 0.38 ms in most runs,
    %% 92.8 ms once at a load average of 13 on 2 vCPUs); the guard allows
    %% a loaded CI machine and still catches a flush inside the call
    %% (seconds, before).
    ?assert(HealUs < 1000000).

%% Casts of 1 MiB and of a few bytes, alternating, from A to B, held by
%% a defer partition and flushed on heal, so that they reach B's server
%% as engine envelopes: the large ones are verified and decoded apart
%% from B's server, the small ones in it, and still every cast arrives
%% in the order it was sent.
large_and_small_casts_keep_order(_Config) ->
    [A, B] = ?LIB:start_cluster(2, node_opts(), ?WAIT_MS),
    ok = call(B, ?MODULE, start_sink, []),
    N = 64,
    {ok, Ref} = call(A, tether, partition, [[A], [B], defer]),
    ok = call(A, ?MODULE, cast_mixed, [B, N]),
    ok = call(A, tether, heal, [Ref]),
    Seen = poll(fun() -> call(B, ?MODULE, sink_seen, []) end,
                fun(L) -> length(L) >= N end),
    ?assertEqual(lists:seq(1, N), Seen).

%% kv:put then kv:get of 64 MiB and 256 MiB values on a C-node.
large_terms_through_a_cnode(Config) ->
    C = start_cnode(Config, ["--load", ?LIB:kv_plugin()]),
    CN = ?LIB:cnode_node(C),
    OsPid = ?LIB:cnode_os_pid(C),
    lists:foreach(
      fun(Mib) ->
              Key = {large, Mib},
              Value = binary:copy(<<"0123456789abcdef">>, Mib * ?MIB div 16),
              {Rss0, _} = cnode_mem_kib(OsPid),
              {PutUs, ok} = timer:tc(fun() -> rpc:call(CN, kv, put, [Key, Value], 60000) end),
              {GetUs, Got} = timer:tc(fun() -> rpc:call(CN, kv, get, [Key], 60000) end),
              ?assertEqual({ok, byte_size(Value)},
                           case Got of {ok, V} -> {ok, byte_size(V)}; _ -> Got end),
              ?assert(Got =:= {ok, Value}),
              {Rss1, Hwm} = cnode_mem_kib(OsPid),
              ok = rpc:call(CN, kv, delete, [Key], 60000),
              ct:pal("~b MiB: put ~b ms, get ~b ms; C-node RSS ~b -> ~b MiB "
                     "(+~.1f x the term), peak ~b MiB (~.1f x)",
                     [Mib, PutUs div 1000, GetUs div 1000, Rss0 div 1024,
                      Rss1 div 1024, (Rss1 - Rss0) / (Mib * 1024),
                      Hwm div 1024, Hwm / (Mib * 1024)])
      end, [64, 256]),
    %% Still serving small calls on the same connection.
    ?assertEqual(ok, rpc:call(CN, kv, put, [small, 1])),
    ?assertEqual({ok, 1}, rpc:call(CN, kv, get, [small])).

%% An OS process's resident and peak resident memory in KiB.
cnode_mem_kib(OsPid) ->
    {ok, Status} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/status"),
    [Rss, Hwm] = [begin
                      {match, [K]} = re:run(Status, Field ++ ":\\s+(\\d+)",
                                            [{capture, all_but_first, list}]),
                      list_to_integer(K)
                  end || Field <- ["VmRSS", "VmHWM"]],
    {Rss, Hwm}.

%%% On the peers

%% A process registered as hostile_sink that keeps the ids of
%% {large, Id, Bin} messages (not the binaries).
start_sink() ->
    Parent = self(),
    Pid = spawn(fun() ->
                        true = register(hostile_sink, self()),
                        Parent ! {sink, self()},
                        sink([])
                end),
    receive {sink, Pid} -> ok end.

sink(Ids) ->
    receive
        {large, Id, _Bin} -> sink([Id | Ids]);
        {seen, From} -> From ! {seen, lists:reverse(Ids)}, sink(Ids)
    end.

sink_seen() ->
    hostile_sink ! {seen, self()},
    receive {seen, Ids} -> Ids end.

%% N casts of a Size-byte binary to B's hostile_sink, from a process that
%% ends afterwards (its garbage with it).
cast_large(B, N, Size) ->
    {Pid, MRef} =
        spawn_monitor(fun() ->
                              Bin = binary:copy(<<7>>, Size),
                              _ = [true = tether:cast(B, erlang, send,
                                                      [hostile_sink, {large, I, Bin}])
                                   || I <- lists:seq(1, N)]
                      end),
    receive {'DOWN', MRef, process, Pid, normal} -> ok end,
    _ = [erlang:garbage_collect(P) || P <- processes()],
    ok.

%% N casts to B's hostile_sink, of 1 MiB when odd and of a few bytes when
%% even.
cast_mixed(B, N) ->
    Large = binary:copy(<<7>>, ?MIB),
    _ = [true = tether:cast(B, erlang, send,
                            [hostile_sink, {large, I, case I rem 2 of
                                                          1 -> Large;
                                                          0 -> <<I>>
                                                      end}])
         || I <- lists:seq(1, N)],
    ok.

%% This OS process's resident memory in KiB.
rss_kib() ->
    {ok, Status} = file:read_file("/proc/" ++ os:getpid() ++ "/status"),
    {match, [Kib]} = re:run(Status, "VmRSS:\\s+(\\d+)", [{capture, all_but_first, list}]),
    list_to_integer(Kib).

%% Until told to stop, calls the tether server (members/0) and the
%% registry (whereis_name/1, a NIF read) in a loop and samples this
%% node's RSS; reports the median and longest wait of each in
%% microseconds, the largest RSS in KiB, and what the system monitor saw
%% of the server.
probe(Parent) ->
    Server = whereis(tether),
    Me = self(),
    Mon = spawn_link(fun() ->
                             _ = erlang:system_monitor(self(), [busy_dist_port,
                                                                {long_schedule, 50}]),
                             monitor_loop(Me, Server, 0, 0)
                     end),
    {ServerUs, WhereisUs, RssMax} = probe_loop([], [], 0),
    Mon ! stop,
    {Busy, LongMs} = receive {monitored, B, L} -> {B, L} end,
    Parent ! {probed, self(), #{calls => length(ServerUs),
                                server_median_us => median(ServerUs),
                                server_max_us => lists:max(ServerUs),
                                whereis_median_us => median(WhereisUs),
                                whereis_max_us => lists:max(WhereisUs),
                                rss_max_kib => RssMax,
                                server_suspended => Busy,
                                server_longest_schedule_ms => LongMs}}.

probe_loop(ServerUs, WhereisUs, RssMax) ->
    receive
        stop -> {ServerUs, WhereisUs, RssMax}
    after 2 ->
            {T, _} = timer:tc(tether, members, []),
            {W, undefined} = timer:tc(tether, whereis_name, [hostile_nobody]),
            probe_loop([T | ServerUs], [W | WhereisUs], max(RssMax, rss_kib()))
    end.

median(L) ->
    lists:nth((length(L) + 1) div 2, lists:sort(L)).

%% Counts the tether server's suspensions on a busy distribution port and
%% its longest time scheduled in without a yield (a NIF, say).
monitor_loop(Probe, Server, Busy, LongMs) ->
    receive
        {monitor, Server, busy_dist_port, _} ->
            monitor_loop(Probe, Server, Busy + 1, LongMs);
        {monitor, Server, long_schedule, Info} ->
            monitor_loop(Probe, Server, Busy,
                         max(LongMs, proplists:get_value(timeout, Info, 0)));
        {monitor, _, _, _} ->
            monitor_loop(Probe, Server, Busy, LongMs);
        stop ->
            Probe ! {monitored, Busy, LongMs}
    end.

%%% Visitors

%% N raw hidden connections to Node, made by VISITOR_WORKERS processes,
%% each completed and closed before the next.
visit(Node, N) ->
    [Name, Host] = string:split(atom_to_list(Node), "@"),
    {port, Port, _} = erl_epmd:port_please(Name, Host),
    Self = self(),
    Per = N div ?VISITOR_WORKERS,
    Ws = [spawn_link(fun() ->
                             _ = [ok = visit_once(Port) || _ <- lists:seq(1, Per)],
                             Self ! {visited, self()}
                     end) || _ <- lists:seq(1, ?VISITOR_WORKERS)],
    _ = [receive {visited, W} -> ok after 120000 -> error(visitors_stuck) end
         || W <- Ws],
    ok.

%% One hidden node's handshake on Port, then close.
visit_once(Port) ->
    Cookie = ?LIB:cookie(),
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port,
                              [binary, {packet, 2}, {active, false}, {nodelay, true}],
                              ?CALL_MS),
    Name = list_to_binary(?LIB:unique_name(visitor) ++ "@" ++ ?HOST),
    ok = gen_tcp:send(S, <<$N, ?RAW_FLAGS:64, 1:32, (byte_size(Name)):16, Name/binary>>),
    {ok, <<$s, "ok">>} = gen_tcp:recv(S, 0, ?CALL_MS),
    {ok, <<$N, _Flags:64, Challenge:32, _/binary>>} = gen_tcp:recv(S, 0, ?CALL_MS),
    Mine = rand:uniform(16#ffffffff),
    ok = gen_tcp:send(S, <<$r, Mine:32, (digest(Cookie, Challenge))/binary>>),
    Expected = digest(Cookie, Mine),
    {ok, <<$a, Expected:16/binary>>} = gen_tcp:recv(S, 0, ?CALL_MS),
    gen_tcp:close(S).

digest(Cookie, Challenge) ->
    erlang:md5([Cookie, integer_to_list(Challenge)]).

%%% Helpers

start_nodes(N) ->
    ?LIB:start_tether_nodes(N, node_opts()).

node_opts() ->
    #{prefix => tether_hos, link => true,
      env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS}]}.

start_cnode(Config) ->
    start_cnode(Config, []).

start_cnode(Config, Extra) ->
    ?LIB:start_case_cnode(#{name => ?LIB:unique_name(tho), heartbeat_ms => ?HB_MS,
                            ttl_ms => ?TTL_MS, join => [], extra_args => Extra,
                            log_dir => ?config(priv_dir, Config)}, 20).

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, ?CALL_MS).

ccall(CNode, Req) ->
    gen_server:call({tether, CNode}, Req, ?CALL_MS).

poll(Get, Check) ->
    ?LIB:poll(Get, Check, ?WAIT_MS).
