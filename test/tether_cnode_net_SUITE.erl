%% @doc The C-node named and addressed as real networks name nodes
%% (issue 13): short names (-sname, this machine's short host name), long
%% names with host names (localhost), names that do not resolve, --name
%% without a host (the fully qualified name, or a refusal as erl's), and
%% IPv6 (-proto_dist inet6_tcp, NAME@::1, epmd on ::1 only).
%%
%% Stock OTP peers are driven over peer's control channel (this node is
%% long-named on 127.0.0.1, so it cannot reach short-named or IPv6
%% nodes over distribution): everything the C-node does here is seen
%% from stock nodes with stock calls (net_adm:ping, rpc:call, gen_server
%% via tether's registry). The C-node's outgoing connections are made by
%% the rpctest plug-in's call_erlang(Node, M, F, A) (tether_erlang_call).
%%
%% Short names use sname_host(): this machine's short host name when it
%% resolves to loopback (here: /etc/hosts), else NAME@localhost.
-module(tether_cnode_net_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_group/2, end_per_group/2, init_per_testcase/2,
         end_per_testcase/2]).
-export([sname_ping_and_rpc_both_ways/1, sname_join_registry_kv/1,
         localhost_ping_and_rpc_both_ways/1, unresolvable_host_is_nodedown/1,
         name_without_host/1, name_flags_refused/1,
         ipv6_ping_and_rpc_both_ways/1, ipv6_wildcard_listen/1]).

-define(LIB, tether_test_lib).
-define(WAIT, 30000).
-define(HB_MS, 200).
-define(TTL_MS, 2000).

suite() ->
    [{timetrap, {minutes, 3}}].

all() ->
    [{group, short_names}, {group, long_names}, {group, ipv6}].

groups() ->
    [{short_names, [], [sname_ping_and_rpc_both_ways, sname_join_registry_kv]},
     {long_names, [], [localhost_ping_and_rpc_both_ways,
                       unresolvable_host_is_nodedown, name_without_host,
                       name_flags_refused]},
     {ipv6, [], [ipv6_ping_and_rpc_both_ways, ipv6_wildcard_listen]}].

init_per_suite(Config) ->
    ?LIB:require_env_plugin(Config, ?LIB:rpctest_plugin()).

end_per_suite(_Config) ->
    ok.

%% IPv6 runs against an epmd of its own that listens on ::1 only: the
%% C-node and the peers can only find each other through epmd on ::1.
init_per_group(ipv6, Config) ->
    case ?LIB:ipv6_loopback() of
        false ->
            {skip, "no IPv6 loopback (::1) on this machine"};
        true ->
            Epmd = ?LIB:start_private_epmd("::1"),
            [{epmd6, Epmd} | Config]
    end;
init_per_group(_, Config) ->
    Config.

end_per_group(ipv6, Config) ->
    ?LIB:stop_private_epmd(?config(epmd6, Config));
end_per_group(_, _Config) ->
    ok.

init_per_testcase(_Case, Config) ->
    [{keeper, ?LIB:start_keeper()} | Config].

end_per_testcase(_Case, Config) ->
    ?LIB:release_all(?config(keeper, Config)).

%%--------------------------------------------------------------------
%% Short names
%%--------------------------------------------------------------------

%% Two -sname peers and a C-node started with --sname: ping and rpc:call
%% from a peer to the C-node; the C-node dials the other peer by its
%% short name (call_erlang) and calls it, and that peer pings back.
sname_ping_and_rpc_both_ways(Config) ->
    [P1, P2] = [peer(Config, short, #{}) || _ <- [1, 2]],
    C = cnode(Config, #{sname => true}),
    CN = ?LIB:cnode_node(C),
    N2 = ?LIB:peer_node(P2),
    ?assertEqual(?LIB:sname_host(), host_of(CN)),
    ?assertEqual(host_of(N2), host_of(CN)),
    ?assertEqual(pong, ?LIB:peer_call(P1, net_adm, ping, [CN])),
    ?assertEqual(hello, ?LIB:peer_call(P1, rpc, call, [CN, rpctest, echo, [hello]])),
    %% The C-node connects to P2 itself, by name, and calls it.
    ?assertEqual({ok, N2}, ?LIB:peer_call(P1, rpc, call,
                                          [CN, rpctest, call_erlang,
                                           [N2, erlang, node, []]])),
    ?assertEqual({ok, pong}, ?LIB:peer_call(P1, rpc, call,
                                            [CN, rpctest, call_erlang,
                                             [N2, net_adm, ping, [CN]]])),
    ?assert(lists:member(CN, ?LIB:peer_call(P2, erlang, nodes, [hidden]))),
    ?LIB:cnode_logged(C, "connection to '" ++ atom_to_list(N2) ++ "' up").

%% A C-node with --sname joins a tether cluster of one -sname BEAM node
%% by its short name (--join NAME@shorthost); its C service kv,
%% registered in the cluster registry, is reached from the BEAM node
%% with gen_server:call({via, tether, kv}, ...).
sname_join_registry_kv(Config) ->
    P = peer(Config, short, #{}),
    PN = ?LIB:peer_node(P),
    {ok, _} = ?LIB:start_tether_peer(P, [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS}]),
    C = cnode(Config, #{sname => true, join => [PN],
                        heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS,
                        extra_args => ["--load", ?LIB:kv_plugin(),
                                       "--register", "kv"]}),
    CN = ?LIB:cnode_node(C),
    _ = ?LIB:poll(fun() -> ?LIB:peer_call(P, tether, members, []) end,
                  fun(Ms) -> Ms =:= lists:sort([CN, PN]) end, ?WAIT),
    _ = ?LIB:poll(fun() -> ?LIB:peer_call(P, tether, whereis_name, [kv]) end,
                  fun(Pid) -> is_pid(Pid) andalso node(Pid) =:= CN end, ?WAIT),
    Via = {via, tether, kv},
    ?assertEqual(ok, ?LIB:peer_call(P, gen_server, call, [Via, {put, color, <<"blue">>}])),
    ?assertEqual({ok, <<"blue">>}, ?LIB:peer_call(P, gen_server, call, [Via, {get, color}])).

%%--------------------------------------------------------------------
%% Long names, host names
%%--------------------------------------------------------------------

%% A stock node named x@localhost (-name): it pings and calls the
%% C-node (NAME@127.0.0.1: a long-named BEAM node only dials hosts with
%% a dot or an address); the C-node resolves "localhost" (off its loop)
%% to dial it, calls it, and it pings back.
localhost_ping_and_rpc_both_ways(Config) ->
    X = peer(Config, {long, "localhost"}, #{}),
    XN = ?LIB:peer_node(X),
    ?assertEqual("localhost", host_of(XN)),
    C = cnode(Config, #{}),
    CN = ?LIB:cnode_node(C),
    ?assertEqual(pong, ?LIB:peer_call(X, net_adm, ping, [CN])),
    ?assertEqual([1, 2], ?LIB:peer_call(X, rpc, call, [CN, rpctest, echo, [[1, 2]]])),
    %% X drops its connection: the C-node must dial X itself now.
    true = ?LIB:peer_call(X, erlang, disconnect_node, [CN]),
    ?LIB:cnode_logged(C, "connection to '" ++ atom_to_list(XN) ++ "' closed"),
    ?assertEqual({ok, XN}, rpc:call(CN, rpctest, call_erlang, [XN, erlang, node, []])),
    ?assertEqual({ok, pong}, rpc:call(CN, rpctest, call_erlang,
                                      [XN, net_adm, ping, [CN]])),
    ?LIB:cnode_logged(C, "connection to '" ++ atom_to_list(XN) ++ "' up").

%% A node whose host does not resolve: the caller waiting on the C-node
%% gets noconnection (nodedown) well within the set-up time, the C-node
%% logs one line naming the host, and keeps serving. A --join seed that
%% does not resolve is one line too, and the C-node runs on.
unresolvable_host_is_nodedown(Config) ->
    C = cnode(Config, #{}),
    CN = ?LIB:cnode_node(C),
    Nowhere = 'nobody@no-such-host.invalid',
    {Us, R} = timer:tc(fun() ->
                               rpc:call(CN, rpctest, call_erlang,
                                        [Nowhere, erlang, node, []])
                       end),
    ?assertEqual({error, {erpc, noconnection}}, R),
    ?assert(Us < 7000000),
    ?LIB:cnode_logged_once(C, "cannot resolve host 'no-such-host.invalid'"),
    ?assertEqual(hello, rpc:call(CN, rpctest, echo, [hello])),
    %% A message to a process there: no hang, nothing delivered, and the
    %% C-node still answers.
    C2 = cnode(Config, #{join => [Nowhere]}),
    CN2 = ?LIB:cnode_node(C2),
    ?LIB:cnode_logged(C2, "cannot resolve host 'no-such-host.invalid'"),
    ?assertEqual(pong, net_adm:ping(CN2)).

%% --name NAME without a host takes this machine's fully qualified name
%% as erl -name does (kernel's inet_db: the host name with its domain);
%% where there is none, erl refuses to start and so does the C-node,
%% with status 1 and one clear line.
name_without_host(Config) ->
    {ok, H} = inet:gethostname(),
    Short = hd(string:split(H, ".")),
    case inet_db:res_option(domain) of
        "" ->
            Name = ?LIB:unique_name(nofqdn),
            {Status, Out} = ?LIB:run_cnode(["--name", Name, "--cookie", "c",
                                            "--no-cluster"]),
            ct:log("~s", [Out]),
            ?assertEqual(1, Status),
            ?assertNotEqual(nomatch, string:find(Out, "cannot take a long node name")),
            ?assertEqual(nomatch, string:find(Out, "ready"));
        Domain ->
            C = cnode(Config, #{host => none}),
            ?assertEqual(Short ++ "." ++ Domain, host_of(?LIB:cnode_node(C)))
    end.

%% Bad naming and addressing flags: one line, status 2.
name_flags_refused(_Config) ->
    Bad = [["--sname", "a@b.c"], ["--name", "a@h", "--sname", "b"],
           ["--name", "a@h", "--proto-dist", "inet7_tcp"],
           ["--name", "a@h", "--proto-dist", "inet_tls"],
           ["--name", "a@h", "--ssl-dist-optfile", "/dev/null"],
           ["--name", "a@h", "--listen", "::1:0"],
           ["--name", "a@h", "--listen", "[::1]:0"],
           ["--name", "a@h", "--proto-dist", "inet6_tcp", "--listen", "127.0.0.1:0"],
           ["--name", "a@h", "--setuptime", "0"]],
    lists:foreach(
      fun(Args) ->
              {Status, Out} = ?LIB:run_cnode(Args ++ ["--cookie", "c"]),
              ct:log("~p -> ~p: ~s", [Args, Status, Out]),
              ?assertEqual({2, Args}, {Status, Args}),
              ?assertEqual({1, Args}, {length(string:split(string:trim(Out), "\n", all)), Args})
      end, Bad).

%%--------------------------------------------------------------------
%% IPv6
%%--------------------------------------------------------------------

%% Stock nodes with -proto_dist inet6_tcp -name NAME@::1 and a C-node
%% with --proto-dist inet6_tcp, NAME@::1, listening on [::1], all
%% registered in an epmd that listens on ::1 only: ping and rpc:call
%% from a peer; the C-node dials the other peer and calls it; it pings
%% back.
ipv6_ping_and_rpc_both_ways(Config) ->
    ipv6_both_ways(Config, "[::1]:0").

%% The same with the C-node listening on the wildcard [::].
ipv6_wildcard_listen(Config) ->
    ipv6_both_ways(Config, "[::]:0").

ipv6_both_ways(Config, Listen) ->
    {_, Port} = ?config(epmd6, Config),
    Opts = #{args => ["-proto_dist", "inet6_tcp"],
             env => [{"ERL_EPMD_PORT", integer_to_list(Port)}]},
    [B1, B2] = [peer(Config, {long, "::1"}, Opts) || _ <- [1, 2]],
    C = cnode(Config, #{host => "::1", listen => Listen, epmd_port => Port,
                        extra_args => ["--proto-dist", "inet6_tcp"]}),
    CN = ?LIB:cnode_node(C),
    N2 = ?LIB:peer_node(B2),
    ?assertEqual("::1", host_of(CN)),
    ?assertEqual(pong, ?LIB:peer_call(B1, net_adm, ping, [CN])),
    ?assertEqual(v6, ?LIB:peer_call(B1, rpc, call, [CN, rpctest, echo, [v6]])),
    ?assertEqual({ok, N2}, ?LIB:peer_call(B1, rpc, call,
                                          [CN, rpctest, call_erlang,
                                           [N2, erlang, node, []]])),
    ?assertEqual({ok, pong}, ?LIB:peer_call(B1, rpc, call,
                                            [CN, rpctest, call_erlang,
                                             [N2, net_adm, ping, [CN]]])),
    ?LIB:cnode_logged(C, "connection to '" ++ atom_to_list(N2) ++ "' up").

%%--------------------------------------------------------------------
%% Helpers
%%--------------------------------------------------------------------

%% A peer (start_peer/2's host option and Opts), kept for
%% end_per_testcase.
peer(Config, Host, Opts) ->
    P = ?LIB:start_peer(?LIB:unique_name(net), Opts#{host => Host}),
    ?LIB:keep(?config(keeper, Config), {peer, P}).

%% A C-node with the rpctest plug-in (start_cnode/1 options).
cnode(Config, Opts) ->
    Extra = ["--load", ?LIB:rpctest_plugin() | maps:get(extra_args, Opts, [])],
    ?LIB:start_kept_cnode(?config(keeper, Config),
                          Opts#{log_dir => ?config(priv_dir, Config),
                                extra_args => Extra}).

host_of(Node) ->
    [_, Host] = string:split(atom_to_list(Node), "@"),
    Host.
