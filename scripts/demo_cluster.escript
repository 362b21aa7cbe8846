#!/usr/bin/env escript
%%! -name tether_demo_a@127.0.0.1 -setcookie tether_demo
%% The cluster part of `make demo`: three BEAM nodes run the tether
%% application, join, agree on members, and go through a drop partition
%% and its heal. Usage: demo_cluster.escript EBIN_DIR
-mode(compile).

main([Ebin]) ->
    true = code:add_patha(Ebin),
    {ok, _} = application:ensure_all_started(tether),
    Peers = [start_peer(N, Ebin) || N <- [tether_demo_b, tether_demo_c]],
    Nodes = [node() | [N || {_, N} <- Peers]],
    [ok = erpc:call(N, tether, join, [node()]) || {_, N} <- Peers],
    show("members after join", wait_members(node(), Nodes)),
    [B, C] = [N || {_, N} <- Peers],
    {ok, Ref} = tether:partition([node(), B], [C], drop),
    show("partition({a, b}, {c}, drop)", Ref),
    show("members seen by a", wait_members(node(), [node(), B])),
    show("members seen by c", wait_members(C, [C])),
    ok = tether:heal(Ref),
    show("members after heal", wait_members(C, Nodes)),
    [peer:stop(P) || {P, _} <- Peers],
    halt(0);
main(_) ->
    io:format(standard_error, "usage: demo_cluster.escript EBIN_DIR~n", []),
    halt(2).

start_peer(Name, Ebin) ->
    {ok, P, N} = peer:start(#{name => Name, host => "127.0.0.1", longnames => true,
                              args => ["-setcookie", "tether_demo", "-pa", Ebin]}),
    {ok, _} = erpc:call(N, application, ensure_all_started, [tether]),
    {P, N}.

show(What, Value) -> io:format("  ~-34s ~p~n", [What, Value]).

%% members() on Node once it equals Want (sorted), within 20 s.
wait_members(Node, Want) ->
    wait_members(Node, lists:sort(Want), 200).

wait_members(Node, Want, 0) ->
    io:format(standard_error, "demo: ~p never saw ~p~n", [Node, Want]),
    halt(1);
wait_members(Node, Want, K) ->
    case erpc:call(Node, tether, members, []) of
        Want -> Want;
        _ -> timer:sleep(100), wait_members(Node, Want, K - 1)
    end.
