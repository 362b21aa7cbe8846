#!/usr/bin/env escript
%%! -name tether_demo@127.0.0.1 -setcookie tether_demo -hidden
%% The C-node part of `make demo`: a stock Erlang node talks to a running
%% tether_cnode with plain OTP calls. Usage: demo_cnode.escript CNODE
-mode(compile).

main([CNodeName]) ->
    C = list_to_atom(CNodeName),
    show("net_adm:ping(C)", net_adm:ping(C)),
    show("lists:member(C, nodes(hidden))", lists:member(C, nodes(hidden))),
    {echo, C} ! {echo, self(), {hello, <<"from">>, node(), 42, #{k => 1.5}}},
    show("reply of the C echo process", wait(any)),
    {echo, C} ! {spawn, self(), demo_worker},
    {spawned, demo_worker, Pid} = wait(spawned),
    show("a C process spawned on request", Pid),
    Ref = erlang:monitor(process, {demo_worker, C}),
    process_flag(trap_exit, true),
    link(Pid),
    Pid ! {stop, shutting_down},
    show("monitor says", wait({'DOWN', Ref})),
    show("link says", wait('EXIT')),
    NoProc = erlang:monitor(process, {no_such_name, C}),
    show("monitor of a name nobody has", wait({'DOWN', NoProc})),
    io:format("~n  The kv plugin (C), called with stock OTP calls:~n"),
    show("rpc:call(C, kv, put, [K, V])",
         rpc:call(C, kv, put, [{user, 42}, #{name => <<"Ada">>, score => 1.5}])),
    show("gen_server:call({kv, C}, {get, K})",
         gen_server:call({kv, C}, {get, {user, 42}})),
    show("erpc:multicall([C], kv, keys, [])", erpc:multicall([C], kv, keys, [])),
    show("rpc:call(C, kv, nope, [])", rpc:call(C, kv, nope, [])),
    show("gen_server:call({missing, C}, x)", catch gen_server:call({missing, C}, x)),
    halt(0);
main(_) ->
    io:format(standard_error, "usage: demo_cnode.escript CNODE~n", []),
    halt(2).

show(What, Value) -> io:format("  ~-34s ~p~n", [What, Value]).

wait(Pattern) ->
    receive
        {spawned, _, _} = M when Pattern =:= spawned -> M;
        {'DOWN', Ref, process, _, _} = M when Pattern =:= {'DOWN', Ref} -> M;
        {'EXIT', _, _} = M when Pattern =:= 'EXIT' -> M;
        M when Pattern =:= any -> M
    after 5000 ->
        io:format(standard_error, "demo: no answer (waiting for ~p)~n", [Pattern]),
        halt(1)
    end.
