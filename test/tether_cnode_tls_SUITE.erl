%% @doc The C-node on TLS distribution (issue 13) with stock OTP nodes
%% started with -proto_dist inet_tls (or inet6_tls) -ssl_dist_optfile
%% FILE, the C-node reading the same FILE (--ssl-dist-optfile):
%%
%%   interop    both directions, verified certificates (chain to the CA,
%%              verify_peer, fail_if_no_peer_cert), the host check OTP's
%%              client makes, IPv6;
%%   bad_input  a plain TCP peer on the TLS port, untrusted and missing
%%              client certificates, stalled TLS handshakes (closed after
%%              the set-up time, 7 s by default), garbage records and
%%              garbage plaintext after the TLS handshake: each refused,
%%              one stderr line, counted (the C-node's closing summary),
%%              and a TLS node keeps being served;
%%   cluster    a tether cluster of a C-node and two BEAM nodes, all on
%%              TLS: join, registry, tether:call, call_service;
%%   cli        a bad optfile is refused at start with its line.
%%
%% Certificates are made at run time by scripts/tls_certs.sh (openssl).
%% This node is not on TLS: peers are driven over peer's control channel
%% and the hostile clients are this node's gen_tcp and ssl sockets.
-module(tether_cnode_tls_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_group/2, end_per_group/2, init_per_testcase/2,
         end_per_testcase/2]).
-export([beam_to_cnode/1, cnode_to_beam/1, cnode_checks_the_server_host/1,
         inet6_tls/1,
         plain_tcp_on_tls_port/1, untrusted_client_cert/1, no_client_cert/1,
         stalled_tls_handshakes/1, garbage_records_after_tls_handshake/1,
         garbage_after_tls_handshake/1,
         tls_cluster/1, bad_optfile_refused/1]).

-define(LIB, tether_test_lib).
-define(WAIT, 30000).
-define(HB_MS, 200).
-define(TTL_MS, 2000).
-define(SETUP_MS, 7000). % the C-node's default set-up time (net_setuptime)

suite() ->
    [{timetrap, {minutes, 4}}].

all() ->
    [{group, interop}, {group, bad_input}, {group, cluster}, {group, cli}].

groups() ->
    [{interop, [], [beam_to_cnode, cnode_to_beam, cnode_checks_the_server_host,
                    inet6_tls]},
     {bad_input, [], [plain_tcp_on_tls_port, untrusted_client_cert,
                      no_client_cert, stalled_tls_handshakes,
                      garbage_records_after_tls_handshake,
                      garbage_after_tls_handshake]},
     {cluster, [], [tls_cluster]},
     {cli, [], [bad_optfile_refused]}].

init_per_suite(Config) ->
    case ?LIB:require_env_plugin(Config, ?LIB:rpctest_plugin()) of
        {fail, _} = Fail ->
            Fail;
        Config1 ->
            {ok, _} = application:ensure_all_started(ssl),
            Dir = filename:join(?config(priv_dir, Config1), "tls"),
            [{tls, ?LIB:tls_files(Dir)} | Config1]
    end.

end_per_suite(_Config) ->
    ok.

%% bad_input: one TLS peer (the probe) checks after each case that the
%% C-node still serves TLS nodes.
init_per_group(bad_input, Config) ->
    Probe = ?LIB:start_peer(?LIB:unique_name(probe),
                            #{args => ?LIB:tls_args(tls(Config, dist))}),
    [{probe, Probe} | Config];
init_per_group(_, Config) ->
    Config.

end_per_group(bad_input, Config) ->
    ?LIB:stop_peer(?config(probe, Config));
end_per_group(_, _Config) ->
    ok.

init_per_testcase(_Case, Config) ->
    [{keeper, ?LIB:start_keeper()} | Config].

end_per_testcase(_Case, Config) ->
    ok = ?LIB:stop_case(),
    ?LIB:release_all(?config(keeper, Config)).

%%--------------------------------------------------------------------
%% interop
%%--------------------------------------------------------------------

%% A stock TLS node reaches the C-node: ping, rpc:call, gen_server:call.
beam_to_cnode(Config) ->
    B = peer(Config, dist),
    C = cnode(Config, #{}),
    CN = ?LIB:cnode_node(C),
    ?assertEqual(pong, ?LIB:peer_call(B, net_adm, ping, [CN])),
    ?assertEqual(<<"tls">>, ?LIB:peer_call(B, rpc, call, [CN, rpctest, echo, [<<"tls">>]])),
    ?assertEqual(pong, ?LIB:peer_call(B, gen_server, call, [{echo, CN}, ping])),
    ?LIB:cnode_logged(C, "connection from '" ++ atom_to_list(?LIB:peer_node(B)) ++ "' up (TLS)").

%% The C-node dials a stock TLS node (client side: its certificate is
%% checked against the node's host part, 127.0.0.1, as OTP's client
%% does) and calls it; that node pings back over the connection.
cnode_to_beam(Config) ->
    [B1, B2] = [peer(Config, dist) || _ <- [1, 2]],
    N2 = ?LIB:peer_node(B2),
    C = cnode(Config, #{}),
    CN = ?LIB:cnode_node(C),
    ?assertEqual({ok, N2}, ?LIB:peer_call(B1, rpc, call,
                                          [CN, rpctest, call_erlang, [N2, erlang, node, []]])),
    ?assertEqual({ok, pong}, ?LIB:peer_call(B1, rpc, call,
                                            [CN, rpctest, call_erlang,
                                             [N2, net_adm, ping, [CN]]])),
    ?LIB:cnode_logged(C, "connection to '" ++ atom_to_list(N2) ++ "' up (TLS)").

%% A server whose certificate chains to the CA but names another host
%% (other.invalid, not 127.0.0.1): the C-node refuses it as a stock
%% client does (pang from a stock node), one line, and the caller gets
%% noconnection.
cnode_checks_the_server_host(Config) ->
    B1 = peer(Config, dist),
    B2 = peer(Config, other),
    N2 = ?LIB:peer_node(B2),
    ?assertEqual(pang, ?LIB:peer_call(B1, net_adm, ping, [N2])),
    C = cnode(Config, #{}),
    CN = ?LIB:cnode_node(C),
    ?assertEqual({error, {erpc, noconnection}},
                 ?LIB:peer_call(B1, rpc, call, [CN, rpctest, call_erlang,
                                                [N2, erlang, node, []]])),
    ?LIB:cnode_logged_once(C, "TLS handshake with '" ++ atom_to_list(N2)
                ++ "' failed: certificate refused: hostname mismatch"),
    ?assertEqual(pong, ?LIB:peer_call(B1, net_adm, ping, [CN])).

%% inet6_tls: NAME@::1 everywhere, epmd on ::1 only.
inet6_tls(Config) ->
    case ?LIB:ipv6_loopback() of
        false ->
            {skip, "no IPv6 loopback"};
        true ->
            Epmd = {_, Port} = ?LIB:start_private_epmd("::1"),
            try inet6_tls(Config, Port) after ?LIB:stop_private_epmd(Epmd) end
    end.

inet6_tls(Config, Port) ->
    Opts = #{host => {long, "::1"},
             args => ["-proto_dist", "inet6_tls",
                      "-ssl_dist_optfile", tls(Config, dist)],
             env => [{"ERL_EPMD_PORT", integer_to_list(Port)}]},
    [B1, B2] = [keep(Config, ?LIB:start_peer(?LIB:unique_name(tls6), Opts))
                || _ <- [1, 2]],
    N2 = ?LIB:peer_node(B2),
    C = cnode(Config, #{host => "::1", epmd_port => Port, proto => "inet6_tls"}),
    CN = ?LIB:cnode_node(C),
    ?assertEqual(pong, ?LIB:peer_call(B1, net_adm, ping, [CN])),
    ?assertEqual(six, ?LIB:peer_call(B1, rpc, call, [CN, rpctest, echo, [six]])),
    ?assertEqual({ok, pong}, ?LIB:peer_call(B1, rpc, call,
                                            [CN, rpctest, call_erlang,
                                             [N2, net_adm, ping, [CN]]])),
    ?LIB:cnode_logged(C, "connection to '" ++ atom_to_list(N2) ++ "' up (TLS)").

%%--------------------------------------------------------------------
%% bad_input
%%--------------------------------------------------------------------

%% A plain distribution handshake on the TLS port: refused.
plain_tcp_on_tls_port(Config) ->
    C = cnode(Config, #{}),
    S = raw_connect(C, [{packet, 2}]),
    Name = <<"plain@127.0.0.1">>,
    ok = gen_tcp:send(S, <<$N, 16#0d07df7fbd:64, 1:32, (byte_size(Name)):16, Name/binary>>),
    ?assertEqual(closed, wait_closed(S, ?WAIT)),
    tls_refused(Config, C, 1, 0).

%% Certificates from another CA: refused from this node's ssl client and
%% from a stock TLS node configured with them (pang).
untrusted_client_cert(Config) ->
    C = cnode(Config, #{}),
    CN = ?LIB:cnode_node(C),
    ?assertMatch({error, _}, tls_connect(Config, C, rogue)),
    Rogue = peer(Config, rogue),
    ?assertEqual(pang, ?LIB:peer_call(Rogue, net_adm, ping, [CN])),
    tls_refused(Config, C, 2, 0).

%% No client certificate while the server side says verify_peer and
%% fail_if_no_peer_cert: refused.
no_client_cert(Config) ->
    C = cnode(Config, #{}),
    ?assertMatch({error, _}, tls_connect(Config, C, none)),
    tls_refused(Config, C, 1, 0).

%% A client that says nothing and one that stops half way through its
%% hello: both closed once the set-up time (7 s) has passed, not before;
%% the C-node serves TLS nodes meanwhile.
stalled_tls_handshakes(Config) ->
    C = cnode(Config, #{}),
    T0 = erlang:monotonic_time(millisecond),
    Silent = raw_connect(C, []),
    Half = raw_connect(C, []),
    ok = gen_tcp:send(Half, <<22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3, 0, 1, 2>>),
    still_serving(Config, C),
    ?assertEqual(closed, wait_closed(Silent, ?WAIT)),
    ?assertEqual(closed, wait_closed(Half, ?WAIT)),
    Ms = erlang:monotonic_time(millisecond) - T0,
    ct:log("closed after ~p ms", [Ms]),
    ?assert(Ms >= ?SETUP_MS - 500),
    ?assert(Ms =< ?SETUP_MS + 3000),
    ?LIB:cnode_logged(C, "failed: timed out (set-up time)"),
    tls_refused(Config, C, 2, 0).

%% A verified TLS session, then bytes that are not TLS records written
%% under it: the connection is dropped with one TLS error line.
garbage_records_after_tls_handshake(Config) ->
    C = cnode(Config, #{}),
    {ok, Tcp, Tls} = tls_connect(Config, C, dist),
    ok = gen_tcp:send(Tcp, [<<23, 3, 3, 0, 40>>, binary:copy(<<16#ab>>, 40)]),
    ?assertMatch({error, _}, ssl:recv(Tls, 0, ?WAIT)),
    ?LIB:cnode_logged(C, "TLS error"),
    tls_refused(Config, C, 1, 0).

%% A verified TLS session, then garbage where the distribution handshake
%% belongs: the distribution handshake fails (counted as such).
garbage_after_tls_handshake(Config) ->
    C = cnode(Config, #{}),
    {ok, _Tcp, Tls} = tls_connect(Config, C, dist),
    ok = ssl:send(Tls, <<0, 0, 0, 5, "junk!">>),
    ?assertMatch({error, _}, ssl:recv(Tls, 0, ?WAIT)),
    ?LIB:cnode_logged(C, "handshake with"),
    tls_refused(Config, C, 0, 1).

%%--------------------------------------------------------------------
%% cluster
%%--------------------------------------------------------------------

%% Two BEAM nodes running tether and a C-node, all on TLS distribution,
%% form one cluster; the C-node's service is found and called from the
%% BEAM nodes (registry, call_service) and tether:call reaches it.
tls_cluster(Config) ->
    Env = [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS}],
    [B1, B2] = [peer(Config, dist) || _ <- [1, 2]],
    [{ok, _} = ?LIB:start_tether_peer(B, Env) || B <- [B1, B2]],
    [N1, N2] = [?LIB:peer_node(B) || B <- [B1, B2]],
    ok = ?LIB:peer_call(B2, tether, join, [N1]),
    C = cnode(Config, #{join => [N1], heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS,
                        extra_args => ["--service", "rpctest",
                                       "--register", "rpctest"]}),
    CN = ?LIB:cnode_node(C),
    All = lists:sort([CN, N1, N2]),
    [_ = ?LIB:poll(fun() -> ?LIB:peer_call(B, tether, members, []) end,
                   fun(Ms) -> Ms =:= All end, ?WAIT) || B <- [B1, B2]],
    _ = ?LIB:poll(fun() -> ?LIB:peer_call(B1, gen_server, call, [{tether, CN}, members]) end,
                  fun(Ms) -> Ms =:= All end, ?WAIT),
    %% Registry.
    _ = ?LIB:poll(fun() -> ?LIB:peer_call(B2, tether, whereis_name, [rpctest]) end,
                  fun(P) -> is_pid(P) andalso node(P) =:= CN end, ?WAIT),
    ?assertEqual(hello, ?LIB:peer_call(B2, gen_server, call,
                                       [{via, tether, rpctest}, {echo, hello}])),
    %% tether:call to the C-node and between the BEAM nodes.
    ?assertEqual(CN, ?LIB:peer_call(B1, tether, call, [CN, rpctest, node, []])),
    ?assertEqual(N2, ?LIB:peer_call(B1, tether, call, [N2, erlang, node, []])),
    %% A C service through call_service.
    _ = ?LIB:poll(fun() -> ?LIB:peer_call(B1, tether, get_nodes, [rpctest]) end,
                  fun(Ns) -> Ns =:= [CN] end, ?WAIT),
    ?assertEqual(3, ?LIB:peer_call(B1, tether, call_service, [rpctest, add, [1, 2], []])),
    ?assertEqual(CN, ?LIB:peer_call(B2, tether, call_service, [rpctest, node, [], []])).

%%--------------------------------------------------------------------
%% cli
%%--------------------------------------------------------------------

%% An optfile outside the supported subset, or naming a missing file:
%% one line naming the file (and the line), status 2.
bad_optfile_refused(Config) ->
    Dir = ?config(priv_dir, Config),
    Bad = filename:join(Dir, "bad.conf"),
    ok = file:write_file(Bad, "[{server,\n  [{certfile, Cert}]}].\n"),
    Missing = filename:join(Dir, "missing.conf"),
    ok = file:write_file(Missing, "[{server, [{certfile, \"/nonexistent.pem\"}]}].\n"),
    lists:foreach(
      fun({File, Want}) ->
              {Status, Out} = ?LIB:run_cnode(["--name", "bad@127.0.0.1",
                                              "--cookie", "c",
                                              "--proto-dist", "inet_tls",
                                              "--ssl-dist-optfile", File]),
              ct:log("~s -> ~p: ~s", [File, Status, Out]),
              ?assertEqual(2, Status),
              [?assertNotEqual(nomatch, string:find(Out, W)) || W <- [File | Want]]
      end, [{Bad, ["line 2", "variables are not supported"]},
            {Missing, ["/nonexistent.pem"]}]).

%%--------------------------------------------------------------------
%% Helpers
%%--------------------------------------------------------------------

tls(Config, Key) ->
    maps:get(Key, ?config(tls, Config)).

keep(Config, P) ->
    ?LIB:keep(?config(keeper, Config), {peer, P}).

%% A stock TLS peer using the optfile Key (dist, other, rogue).
peer(Config, Key) ->
    keep(Config, ?LIB:start_peer(?LIB:unique_name(tls),
                                 #{args => ?LIB:tls_args(tls(Config, Key))})).

%% A C-node on TLS (inet_tls, or Opts' proto) with the dist optfile and
%% the rpctest plug-in; start_cnode/1 options.
cnode(Config, Opts) ->
    Proto = maps:get(proto, Opts, "inet_tls"),
    Extra = ["--proto-dist", Proto, "--ssl-dist-optfile", tls(Config, dist),
             "--load", ?LIB:rpctest_plugin() | maps:get(extra_args, Opts, [])],
    Listen = case Proto of "inet6_tls" -> "[::1]:0"; _ -> "127.0.0.1:0" end,
    C = ?LIB:start_case_cnode(maps:merge(#{listen => Listen},
                                         Opts#{log_dir => ?config(priv_dir, Config),
                                               extra_args => Extra}), 1),
    C.

%% A TCP connection to the C-node's distribution port.
raw_connect(C, Opts) ->
    {port, Port, _} = erl_epmd:port_please(maps:get(name, C), "127.0.0.1"),
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port,
                              [binary, {active, false}, {nodelay, true} | Opts],
                              ?WAIT),
    S.

%% A TLS session with the C-node from this node, with the client
%% certificate of Which (dist, rogue) or none; {ok, TcpSocket, TlsSocket}
%% or {error, Why}.
tls_connect(Config, C, Which) ->
    Tcp = raw_connect(C, []),
    Files = ?config(tls, Config),
    Certs = case Which of
                none -> [];
                dist -> [{certfile, maps:get(cert, Files)}, {keyfile, maps:get(key, Files)}];
                rogue -> [{certfile, maps:get(rogue_cert, Files)},
                          {keyfile, maps:get(rogue_key, Files)}]
            end,
    Opts = [{verify, verify_none}, {versions, ['tlsv1.2']}, {active, false},
            binary | Certs],
    case ssl:connect(Tcp, Opts, ?WAIT) of
        {ok, Tls} ->
            %% A refusal of our certificate may come after the handshake
            %% in the client's view (TLS 1.2 sends it in the last flight).
            case ssl:recv(Tls, 0, 1000) of
                {error, timeout} -> {ok, Tcp, Tls};
                Other -> {error, {after_handshake, Other}}
            end;
        {error, _} = E ->
            E
    end.

wait_closed(S, Timeout) ->
    case gen_tcp:recv(S, 0, Timeout) of
        {error, closed} -> closed;
        {error, econnreset} -> closed;
        {ok, _} -> wait_closed(S, Timeout);
        Other -> Other
    end.

%% The probe (a stock TLS node) pings the C-node and calls it on a new
%% connection, then drops it (the next check opens another).
still_serving(Config, C) ->
    Probe = ?config(probe, Config),
    CN = ?LIB:cnode_node(C),
    ?assertEqual(pong, ?LIB:peer_call(Probe, net_adm, ping, [CN])),
    ?assertEqual(alive, ?LIB:peer_call(Probe, rpc, call, [CN, rpctest, echo, [alive]])),
    true = ?LIB:peer_call(Probe, erlang, disconnect_node, [CN]),
    ok.

%% After a bad-input case: the C-node still serves a TLS node, then stops
%% and its summary counts exactly Tls TLS failures and Bad bad (distribution)
%% handshakes, each with one log line.
tls_refused(Config, C, Tls, Bad) ->
    still_serving(Config, C),
    {term, 0} = ?LIB:stop_cnode(C),
    ok = ?LIB:forget_cnodes(),
    Lines = ?LIB:cnode_stderr(C),
    ?LIB:log_cnode(C),
    [Summary] = [L || L <- Lines, string:find(L, "stopping:") =/= nomatch],
    {match, [BadN, TlsN]} = re:run(Summary, "(\\d+) bad handshakes, (\\d+) TLS failures",
                                   [{capture, all_but_first, list}]),
    ?assertEqual({Tls, Bad}, {list_to_integer(TlsN), list_to_integer(BadN)}),
    Failed = [L || L <- Lines, re:run(L, "TLS handshake .* failed|TLS error") =/= nomatch],
    HsFailed = [L || L <- Lines, re:run(L, "^[^:]*: handshake with .* failed") =/= nomatch],
    ?assertEqual({Tls, Bad}, {length(Failed), length(HsFailed)}).
