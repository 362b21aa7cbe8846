%% @doc tether under visitors, large messages and long partitions.
%%
%% visitors_leave_no_peer_entries: 5,000 short-lived hidden connections
%% (raw distribution handshakes written here, as a hidden OTP 25 node
%% makes them: send_name 'N', challenge, MD5 digest of cookie ++
%% challenge, challenge_ack; then close) to a BEAM member and to a C-node
%% leave no entry in their engines' peer tables (the stats count
%% peers_freed, none refused), and a new node then joins each.
-module(tether_hostile_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([visitors_leave_no_peer_entries/1]).

-define(LIB, tether_test_lib).
-define(HB_MS, 200).
-define(TTL_MS, 2000).
-define(WAIT_MS, 30000).
-define(CALL_MS, 10000).
-define(HOST, "127.0.0.1").
-define(VISITORS, 5000).
-define(VISITOR_WORKERS, 8).

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
    [{timetrap, {minutes, 5}}].

all() ->
    [visitors_leave_no_peer_entries].

init_per_suite(Config) ->
    ?LIB:require_env(Config).

end_per_suite(_Config) ->
    ok.

init_per_testcase(_Case, Config) ->
    Config.

end_per_testcase(_Case, Config) ->
    ok = ?LIB:stop_case(),
    Config.

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
    ?LIB:start_tether_nodes(N, #{prefix => tether_hos, link => true,
                                 env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS}]}).

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
