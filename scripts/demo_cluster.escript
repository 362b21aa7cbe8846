#!/usr/bin/env escript
%%! -name alice@127.0.0.1 -setcookie tether_demo
%% The cluster part of `make demo`: three BEAM nodes (alice, this one;
%% bob and carol, its peers) run the tether application, join, agree on
%% members, and go through a drop partition
%% and its heal; partition-aware calls; then a C-node joins them with
%% --join (kv_cnode), serving the kv example as a cluster service and a
%% registered name.
%% Usage: demo_cluster.escript EBIN_DIR CNODE_PROGRAM
-mode(compile).

main([Ebin, CNodeExe]) ->
    true = code:add_patha(Ebin),
    {ok, _} = application:ensure_all_started(tether),
    Peers = [start_peer(N, Ebin) || N <- [bob, carol]],
    Nodes = [node() | [N || {_, N} <- Peers]],
    [ok = erpc:call(N, tether, join, [node()]) || {_, N} <- Peers],
    show("members after join", wait_members(node(), Nodes)),
    [B, C] = [N || {_, N} <- Peers],
    {ok, Ref} = tether:partition([node(), B], [C], drop),
    show("partition({alice, bob}, {carol}, drop)", Ref),
    show("members seen by alice", wait_members(node(), [node(), B])),
    show("members seen by carol", wait_members(C, [C])),
    ok = tether:heal(Ref),
    show("members after heal", wait_members(C, Nodes)),
    _ = wait_members(node(), Nodes),
    show("tether:call(bob, erlang, node, [])", tether:call(B, erlang, node, [])),
    show("multicall(erlang, node, [])", tether:multicall(erlang, node, [])),
    {ok, Ref2} = tether:partition([node()], [C], drop),
    {Us, Down} = timer:tc(fun() -> tether:call(C, erlang, node, [], 5000) end),
    show("call to carol across drop (at once)", {Down, {ms, Us div 1000}}),
    ok = tether:heal(Ref2),
    _ = wait_members(node(), Nodes),
    {ok, Ref3} = tether:partition([node()], [C], defer),
    Self = self(),
    _ = spawn(fun() -> Self ! {deferred, tether:call(C, erlang, node, [], 20000)} end),
    timer:sleep(500),
    ok = tether:heal(Ref3),
    show("call to carol across defer (on heal)", receive {deferred, R} -> R end),
    CNode = 'kv_cnode@127.0.0.1',
    Kv = filename:join(filename:dirname(CNodeExe), "plugins/kv.so"),
    Port = open_port({spawn_executable, CNodeExe},
                     [{args, ["--name", atom_to_list(CNode), "--cookie", "tether_demo",
                              "--join", atom_to_list(node()), "--load", Kv,
                              "--service", "kv", "--register", "kv"]},
                      exit_status, stderr_to_stdout]),
    show("C-node started with --join alice", CNode),
    show("members seen by bob", wait_members(B, [CNode | Nodes])),
    show("members seen by the C-node",
         wait_for(fun() -> gen_server:call({tether, CNode}, members) end,
                  lists:sort([CNode | Nodes]))),
    show("get_nodes(kv) on bob", wait_for(fun() -> erpc:call(B, tether, get_nodes, [kv]) end,
                                        [CNode])),
    show("tether:call(kv_cnode, kv, put, ...)", tether:call(CNode, kv, put, [lang, <<"C">>])),
    show("call_service(kv, get, [lang])", tether:call_service(kv, get, [lang], [])),
    _ = wait_for(fun() -> is_pid(tether:whereis_name(kv)) end, true),
    show("{via, tether, kv} get lang", gen_server:call({via, tether, kv}, {get, lang})),
    {os_pid, OsPid} = erlang:port_info(Port, os_pid),
    os:cmd("kill -TERM " ++ integer_to_list(OsPid)),
    show("members after the C-node stops", wait_members(node(), Nodes)),
    [peer:stop(P) || {P, _} <- Peers],
    halt(0);
main(_) ->
    io:format(standard_error, "usage: demo_cluster.escript EBIN_DIR CNODE_PROGRAM~n", []),
    halt(2).

start_peer(Name, Ebin) ->
    {ok, P, N} = peer:start(#{name => Name, host => "127.0.0.1", longnames => true,
                              args => ["-setcookie", "tether_demo", "-pa", Ebin]}),
    {ok, _} = erpc:call(N, application, ensure_all_started, [tether]),
    {P, N}.

show(What, Value) -> io:format("  ~-44s ~p~n", [What, Value]).

%% members() on Node once it equals Want (sorted), within 20 s.
wait_members(Node, Want) ->
    wait_for(fun() -> erpc:call(Node, tether, members, []) end, lists:sort(Want)).

%% Fun() once it returns Want, polled for up to 20 s.
wait_for(Fun, Want) ->
    wait_for(Fun, Want, 200).

wait_for(_Fun, Want, 0) ->
    io:format(standard_error, "demo: never saw ~p~n", [Want]),
    halt(1);
wait_for(Fun, Want, K) ->
    case Fun() of
        Want -> Want;
        _ -> timer:sleep(100), wait_for(Fun, Want, K - 1)
    end.
