%% Cluster services (tether:register_service/3 and the calls around it,
%% issue 7, items 2 to 4) across three BEAM peers running the tether
%% application and a C-node member: registration, lookups and
%% their order, waiting, instances that die or lose their node, stubs,
%% and callers busy on tether:call_service/4 while an instance's node is
%% killed.
%%
%% Every case starts its own cluster: three peers (127.0.0.1, long
%% names, this suite's directory on the path, a short heartbeat and
%% service recheck) joined together, and a C-node started with
%% `--join' to the first peer. The peers are not linked to the case (one
%% of them may be killed on purpose); end_per_testcase stops whatever is
%% left. Nothing waits a fixed time as an assertion: conditions are
%% polled up to a generous deadline.
%%
%% The group `cnode' holds the cases where a C-node serves a service
%% itself (the test plug-in rpctest, loaded with `--load', is the C
%% service `rpctest'), mixed with BEAM instances of the same service
%% (test/rpctest.erl). It is listed in all/0 once C-nodes offer the
%% services of their plug-ins.
%%
%% Run: see scripts/test.sh (a private epmd on loopback, then
%% rebar3 ct --name tether_ct@127.0.0.1 --setcookie tether_ct
%% --suite test/tether_cluster_service_SUITE).
-module(tether_cluster_service_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, suite/0, init_per_group/2, end_per_group/2]).
-export([register_and_lookup_everywhere/1, register_errors/1,
         local_first_then_reshuffled/1, get_services_lists_all/1,
         wait_for_services_ok_and_timeout/1, instance_dies_gone_everywhere/1,
         node_dies_gone_everywhere/1, rejoin_registers_again/1,
         stub_waits_for_instance/1, stub_refuses_real_module/1,
         call_service_runs_on_instance/1, call_service_across_partitions/1,
         node_killed_under_load_not_idempotent/1,
         node_killed_under_load_idempotent/1]).
-export([cnode_service_visible/1, cnode_service_called/1,
         mixed_instances_call_all/1, cnode_killed_under_load_mixed/1]).
%% Run on the peers.
-export([svc_info/0, spawn_idle/0, register_idle/2, record/2, double/1, callers_start/5,
         callers_stop/1, my_order/1]).

-define(HB_MS, 200).
-define(TTL_MS, 2000).
-define(RECHECK_MS, 300).
-define(WAIT_MS, 30000).
-define(CALL_MS, 10000).
%% How long one recorded execution works, so that calls are in flight
%% when a node is killed.
-define(WORK_MS, 20).
-define(CALLERS, 8).
%% Executions seen on the victim before the kill, and on a survivor
%% after it, before the callers stop.
-define(BEFORE_KILL, 20).
-define(AFTER_KILL, 20).

suite() ->
    [{timetrap, {minutes, 4}},
     {ct_hooks, [{tether_case_hook, #{compiled => tether_service, flush => true}}]}].

all() ->
    [{group, services}, {group, cnode}].

groups() ->
    [{services, [], [register_and_lookup_everywhere, register_errors,
                     local_first_then_reshuffled, get_services_lists_all,
                     wait_for_services_ok_and_timeout,
                     instance_dies_gone_everywhere, node_dies_gone_everywhere,
                     rejoin_registers_again, stub_waits_for_instance,
                     stub_refuses_real_module, call_service_runs_on_instance,
                     call_service_across_partitions,
                     node_killed_under_load_not_idempotent,
                     node_killed_under_load_idempotent]},
     {cnode, [], [cnode_service_visible, cnode_service_called,
                  mixed_instances_call_all, cnode_killed_under_load_mixed]}].

init_per_group(cnode, Config) ->
    Plugin = tether_test_lib:rpctest_plugin(),
    case tether_test_lib:require_plugin(Plugin) of
        ok -> [{cnode_args, ["--load", Plugin, "--service", "rpctest"]}
               | Config];
        Fail -> Fail
    end;
init_per_group(_Group, Config) ->
    [{cnode_args, []} | Config].

end_per_group(_Group, _Config) ->
    ok.

%%% Cases

%% An instance registered on one node is seen on every node, with its
%% meta; registering again replaces it; unregistering removes it
%% everywhere.
register_and_lookup_everywhere(Config) ->
    {[N1, N2, N3] = Bs, _CN} = cluster(Config),
    P = call(N1, ?MODULE, spawn_idle, []),
    ok = call(N1, tether, register_service, [svc_a, P, #{v => 1}]),
    wait_nodes(Bs, svc_a, [N1]),
    ?assertEqual({ok, P}, call(N1, tether, whereis_service, [svc_a])),
    [?assertEqual({ok, N1, P}, call(N, tether, whereis_service, [svc_a]))
     || N <- [N2, N3]],
    [?assertEqual([{N1, #{v => 1}}], call(N, tether, get_instances, [svc_a]))
     || N <- Bs],
    ?assertEqual({ok, N1, P},
                 call(N2, tether, whereis_service, [svc_a, #{node => N1}])),
    ?assertEqual({error, not_found},
                 call(N2, tether, whereis_service, [svc_a, #{node => N2}])),
    ?assertEqual({error, not_found},
                 call(N2, tether, whereis_service, [no_such_service])),
    ?assertEqual([], call(N2, tether, get_nodes, [no_such_service])),
    %% One instance per (service, node): a second registration replaces
    %% the first (pid and meta).
    Q = call(N1, ?MODULE, spawn_idle, []),
    ok = call(N1, tether, register_service, [svc_a, Q, #{v => 2}]),
    [wait_until(fun() -> call(N, tether, get_instances, [svc_a]) end,
                fun(I) -> I =:= [{N1, #{v => 2}}] end) || N <- Bs],
    ?assertEqual({ok, N1, Q}, call(N3, tether, whereis_service, [svc_a])),
    %% The replaced pid no longer holds the service: its death changes
    %% nothing.
    exit(P, kill),
    ok = call(N1, tether, unregister_service, [no_such_service]),
    ?assertEqual({ok, Q}, call(N1, tether, whereis_service, [svc_a])),
    ok = call(N1, tether, unregister_service, [svc_a]),
    wait_nodes(Bs, svc_a, []),
    [?assertEqual({error, not_found}, call(N, tether, whereis_service, [svc_a]))
     || N <- Bs],
    ?assert(is_process_alive_on(N1, Q)).

%% A dead pid, a pid of another node and a non-map meta are refused.
register_errors(Config) ->
    {[N1, N2, _], _CN} = cluster(Config),
    Dead = call(N1, ?MODULE, spawn_idle, []),
    exit(Dead, kill),
    wait_until(fun() -> is_process_alive_on(N1, Dead) end,
               fun(A) -> A =:= false end),
    ?assertEqual({error, noproc},
                 call(N1, tether, register_service, [svc_e, Dead, #{}])),
    Remote = call(N2, ?MODULE, spawn_idle, []),
    ?assertEqual({error, not_local},
                 call(N1, tether, register_service, [svc_e, Remote, #{}])),
    ?assertError({exception, function_clause, _},
                 call(N1, tether, register_service, [svc_e, Remote, not_a_map])),
    ?assertEqual([], call(N1, tether, get_nodes, [svc_e])),
    ?assertEqual([], call(N2, tether, get_nodes, [svc_e])).

%% Every node lists itself first when it runs an instance, then the
%% others; get_instances/1 follows the same order; the order of the
%% others changes over health rechecks (service_recheck_ms).
local_first_then_reshuffled(Config) ->
    {[N1, _, _] = Bs, _CN} = cluster(Config),
    [ok = call(N, ?MODULE, register_idle, [svc_o, #{at => N}]) || N <- Bs],
    wait_nodes(Bs, svc_o, lists:sort(Bs)),
    [begin
         {Nodes, Insts} = call(N, ?MODULE, my_order, [svc_o]),
         ?assertEqual(N, hd(Nodes)),
         ?assertEqual(lists:sort(Bs), lists:sort(Nodes)),
         ?assertEqual(Nodes, [Nd || {Nd, _} <- Insts]),
         ?assertEqual([#{at => Nd} || Nd <- Nodes], [M || {_, M} <- Insts])
     end || N <- Bs],
    %% Two other nodes: each recheck swaps them with probability 1/2, so
    %% a change is seen within a few rechecks.
    {[N1 | Others0], _} = call(N1, ?MODULE, my_order, [svc_o]),
    wait_until(fun() -> call(N1, tether, get_nodes, [svc_o]) end,
               fun([First | Others]) ->
                       First =:= N1 andalso Others =/= Others0
               end).

%% get_services/0 lists every service with its instances.
get_services_lists_all(Config) ->
    {[N1, N2, N3] = Bs, _CN} = cluster(Config),
    ok = call(N1, ?MODULE, register_idle, [svc_x, #{}]),
    ok = call(N2, ?MODULE, register_idle, [svc_x, #{}]),
    ok = call(N3, ?MODULE, register_idle, [{svc, y}, #{k => "y"}]),
    wait_nodes(Bs, svc_x, lists:sort([N1, N2])),
    wait_nodes(Bs, {svc, y}, [N3]),
    [begin
         Services = call(N, tether, get_services, []),
         ?assertEqual(lists:sort([svc_x, {svc, y}]),
                      lists:sort(maps:keys(Services))),
         ?assertEqual(call(N, tether, get_nodes, [svc_x]),
                      [Nd || {Nd, _, _} <- maps:get(svc_x, Services)]),
         ?assertMatch([{N3, Pid, #{k := "y"}}] when is_pid(Pid),
                      maps:get({svc, y}, Services))
     end || N <- Bs].

%% wait_for_services/2 answers ok at once for services that are up, ok
%% as soon as a missing one registers, and timeout when one never
%% comes.
wait_for_services_ok_and_timeout(Config) ->
    {[N1, N2, _], _CN} = cluster(Config),
    ok = call(N1, ?MODULE, register_idle, [svc_w1, #{}]),
    wait_nodes([N2], svc_w1, [N1]),
    ?assertEqual(ok, call(N2, tether, wait_for_services,
                          [[svc_w1], [{retries, 0}]])),
    ?assertEqual(timeout, call(N2, tether, wait_for_services,
                               [[svc_w1, svc_never],
                                #{retries => 3, interval_ms => 100}])),
    %% A waiter that starts before the registration.
    Self = self(),
    Waiter = spawn_link(fun() ->
                                R = erpc:call(N2, tether, wait_for_services,
                                              [[svc_w1, svc_w2],
                                               [{retries, 600},
                                                {interval_ms, 100}]],
                                              ?WAIT_MS + 70000),
                                Self ! {waited, self(), R}
                        end),
    ok = call(N1, ?MODULE, register_idle, [svc_w2, #{}]),
    receive
        {waited, Waiter, R} -> ?assertEqual(ok, R)
    after 2 * ?WAIT_MS ->
            ct:fail(waiter_did_not_return)
    end.

%% An instance whose process dies is gone on every node; a process that
%% serves two services takes both with it.
instance_dies_gone_everywhere(Config) ->
    {[N1, N2, N3] = Bs, _CN} = cluster(Config),
    P = call(N2, ?MODULE, spawn_idle, []),
    ok = call(N2, tether, register_service, [svc_d1, P, #{}]),
    ok = call(N2, tether, register_service, [svc_d2, P, #{}]),
    ok = call(N3, ?MODULE, register_idle, [svc_d1, #{}]),
    wait_nodes(Bs, svc_d1, lists:sort([N2, N3])),
    wait_nodes(Bs, svc_d2, [N2]),
    exit(P, kill),
    wait_nodes(Bs, svc_d1, [N3]),
    wait_nodes(Bs, svc_d2, []),
    ?assertEqual([svc_d1], maps:keys(call(N1, tether, get_services, []))).

%% The instances of a node that dies are gone on the others.
node_dies_gone_everywhere(Config) ->
    {[N1, N2, N3], _CN} = cluster(Config),
    ok = call(N3, ?MODULE, register_idle, [svc_n, #{}]),
    ok = call(N2, ?MODULE, register_idle, [svc_n, #{}]),
    wait_nodes([N1, N2, N3], svc_n, lists:sort([N2, N3])),
    kill_peer(N3),
    wait_nodes([N1, N2], svc_n, [N2]),
    ?assertEqual({ok, N2, call(N2, erlang, whereis, [svc_n_idle])},
                 call(N1, tether, whereis_service, [svc_n])).

%% A node that leaves takes its instances with it; when it joins again
%% (a fresh engine), its live instances are registered again.
rejoin_registers_again(Config) ->
    {[N1, N2, N3], _CN} = cluster(Config),
    ok = call(N3, ?MODULE, register_idle, [svc_r, #{round => 1}]),
    wait_nodes([N1, N2, N3], svc_r, [N3]),
    ok = call(N3, tether, leave, []),
    wait_nodes([N1, N2], svc_r, []),
    ok = call(N3, tether, join, [N1]),
    wait_nodes([N1, N2, N3], svc_r, [N3]),
    ?assertEqual([{N3, #{round => 1}}],
                 call(N1, tether, get_instances, [svc_r])).

%% A stub answers {error, service_not_available} until an instance
%% registers, then the instance's answer.
stub_waits_for_instance(Config) ->
    {[N1, N2, _], _CN} = cluster(Config),
    ok = call(N1, tether, stub, [tsvc_stubbed, [{double, 1}, {nothing, 0}]]),
    ?assertEqual({error, service_not_available},
                 call(N1, tsvc_stubbed, double, [21])),
    %% Stubbing again replaces the stub.
    ok = call(N1, tether, stub, [tsvc_stubbed, [{double, 1}]]),
    ?assertEqual({error, service_not_available},
                 call(N1, tsvc_stubbed, double, [21])),
    ok = call(N2, ?MODULE, register_idle, [tsvc_stubbed,
                                           #{module => ?MODULE}]),
    wait_until(fun() -> call(N1, tsvc_stubbed, double, [21]) end,
               fun(R) -> R =:= {42, N2} end).

%% A module that exists (loaded or on the code path) is not replaced by
%% a stub; bad function lists are refused.
stub_refuses_real_module(Config) ->
    {[N1, _, _], _CN} = cluster(Config),
    ?assertEqual({error, {module_exists, lists}},
                 call(N1, tether, stub, [lists, [{reverse, 1}]])),
    ?assertEqual({error, {module_exists, ?MODULE}},
                 call(N1, tether, stub, [?MODULE, [{double, 1}]])),
    ?assertEqual({error, badarg},
                 call(N1, tether, stub, [tsvc_bad, [{"f", 1}]])),
    ?assertEqual({error, badarg},
                 call(N1, tether, stub, [tsvc_bad, [{f, -1}]])),
    ?assertEqual(3, length(call(N1, lists, seq, [1, 3]))).

%% call_service/4 runs the function on the instance's node (the meta's
%% module), the local instance first; call_service_all/4 runs it on
%% every instance, in get_nodes/1 order.
call_service_runs_on_instance(Config) ->
    {[N1, N2, N3] = Bs, _CN} = cluster(Config),
    ?assertEqual({error, service_not_available},
                 call(N1, tether, call_service, [svc_c, double, [1], []])),
    ok = call(N2, ?MODULE, register_idle, [svc_c, #{module => ?MODULE}]),
    ok = call(N3, ?MODULE, register_idle, [svc_c, #{module => ?MODULE}]),
    wait_nodes(Bs, svc_c, lists:sort([N2, N3])),
    ?assertEqual({4, N2}, call(N2, tether, call_service,
                               [svc_c, double, [2], []])),
    [First | _] = call(N1, tether, get_nodes, [svc_c]),
    ?assertEqual({6, First}, call(N1, tether, call_service,
                                  [svc_c, double, [3], []])),
    All = call(N1, tether, call_service_all, [svc_c, double, [5], []]),
    ?assertEqual([{N, {10, N}} || N <- call(N1, tether, get_nodes, [svc_c])],
                 All).

%% Across a drop partition the instances of the other side are gone
%% (their node is down for us): service_not_available at once; after
%% heal they are back. Across a defer partition they stay listed and a
%% call waits: with a short timeout it answers {badrpc, timeout}, and
%% a call that outlives the partition completes after heal.
call_service_across_partitions(Config) ->
    {[N1, N2, N3] = Bs, _CN} = cluster(Config),
    ok = call(N2, ?MODULE, register_idle, [svc_p, #{module => ?MODULE}]),
    wait_nodes(Bs, svc_p, [N2]),
    {ok, Drop} = call(N1, tether, partition, [[N1], [N2, N3], drop]),
    wait_nodes([N1], svc_p, []),
    ?assertEqual({error, service_not_available},
                 call(N1, tether, call_service, [svc_p, double, [1],
                                                 [{timeout, 60000}]])),
    ?assertEqual({2, N2}, call(N3, tether, call_service,
                               [svc_p, double, [1], []])),
    ok = call(N1, tether, heal, [Drop]),
    wait_nodes(Bs, svc_p, [N2]),
    ?assertEqual({4, N2}, call(N1, tether, call_service,
                               [svc_p, double, [2], []])),
    {ok, Defer} = call(N1, tether, partition, [[N1], [N2, N3], defer]),
    wait_until(fun() -> call(N2, tether, partitions, []) end,
               fun(Ps) -> [R || #{ref := R, healed := false} <- Ps] =:= [Defer]
               end),
    ?assertEqual([N2], call(N1, tether, get_nodes, [svc_p])),
    ?assertEqual({badrpc, timeout},
                 call(N1, tether, call_service, [svc_p, double, [3],
                                                 [{timeout, 500}]])),
    Caller = tether_test_lib:held_call_start(
               N1, tether, call_service,
               [svc_p, double, [4], [{timeout, 4 * ?WAIT_MS}]], 5 * ?WAIT_MS,
               self()),
    %% The caller waits while the partition holds (two leases' worth of
    %% heartbeats skipped), then completes after heal.
    wait_leases_pass(N1),
    ok = tether_test_lib:held_call_not_returned(Caller),
    ok = call(N3, tether, heal, [Defer]),
    ?assertEqual({8, N2},
                 tether_test_lib:held_call_answer(Caller, 2 * ?WAIT_MS)).

%% Acceptance 4, not idempotent: callers loop on call_service/4 while
%% the node of the first instance in their order is killed (SIGKILL).
%% Every call returns a value or a clear error, and no request runs
%% twice (on one node or on two).
node_killed_under_load_not_idempotent(Config) ->
    {Results, Execs, Victim, Survivor} = killed_under_load(Config, []),
    assert_clear(Results),
    assert_at_most_once(Results, Execs),
    %% The kill was seen by the callers while requests were running
    %% there, or after: nothing ran on the victim after its death was
    %% reported; everything after ran on the survivor.
    ?assert(lists:any(fun({_, {done, N, _}}) -> N =:= Survivor;
                         (_) -> false end, Results)),
    ct:pal("victim ~p: ~p calls, ~p errors",
           [Victim, length(Results),
            length([R || {_, R} <- Results, not is_value(R)])]).

%% The same with the calls marked idempotent: a request in flight on the
%% victim is retried on the survivor, so every call returns the value.
node_killed_under_load_idempotent(Config) ->
    {Results, _Execs, _Victim, _Survivor} =
        killed_under_load(Config, [idempotent]),
    assert_clear(Results),
    ?assertEqual([], [R || {_, R} <- Results, not is_value(R)]).

%%% Cases of the group cnode (a C-node serves the C service rpctest)

%% The C service rpctest of the C-node is listed on every BEAM node,
%% with the C-node's pid.
cnode_service_visible(Config) ->
    {Bs, CN} = cluster(Config),
    wait_nodes(Bs, rpctest, [CN]),
    [?assertMatch({ok, CN, Pid} when is_pid(Pid) andalso node(Pid) =:= CN,
                  call(N, tether, whereis_service, [rpctest])) || N <- Bs],
    ?assert(maps:is_key(rpctest, call(hd(Bs), tether, get_services, []))).

%% call_service/4 runs the C function on the C-node.
cnode_service_called(Config) ->
    {[N1 | _] = Bs, CN} = cluster(Config),
    wait_nodes(Bs, rpctest, [CN]),
    ?assertEqual(3, call(N1, tether, call_service, [rpctest, add, [1, 2], []])),
    ?assertEqual(CN, call(N1, tether, call_service, [rpctest, node, [], []])),
    ?assertEqual({badrpc, {'EXIT', boom}},
                 call(N1, tether, call_service, [rpctest, exit, [boom], []])).

%% One service with a C instance and a BEAM instance (test/rpctest.erl):
%% call_service_all/4 reaches both, in get_nodes/1 order.
mixed_instances_call_all(Config) ->
    {[N1, N2, _] = Bs, CN} = cluster(Config),
    ok = call(N2, ?MODULE, register_idle, [rpctest, #{}]),
    wait_nodes(Bs, rpctest, lists:sort([CN, N2])),
    Order = call(N1, tether, get_nodes, [rpctest]),
    ?assertEqual([{N, N} || N <- Order],
                 call(N1, tether, call_service_all, [rpctest, node, [], []])),
    ?assertEqual(N2, call(N2, tether, call_service, [rpctest, node, [], []])).

%% Acceptance 4 with C and BEAM instances of one service: callers on a
%% BEAM node loop on idempotent calls while the C-node is killed; every
%% call returns its value (from either kind of instance).
cnode_killed_under_load_mixed(Config) ->
    {[N1, N2, _] = Bs, CN} = cluster(Config),
    ok = call(N2, ?MODULE, register_idle, [rpctest, #{}]),
    wait_nodes(Bs, rpctest, lists:sort([CN, N2])),
    Collector = tether_test_lib:start_collector(),
    Callers = call(N1, ?MODULE, callers_start,
                   [rpctest, echo, fun(Tag) -> [Tag] end, [idempotent],
                    Collector]),
    wait_results(Collector, ?BEFORE_KILL),
    [C] = tether_test_lib:case_cnodes(),
    {ok, _} = tether_test_lib:kill_cnode(C),
    ok = tether_test_lib:forget_cnodes(),
    wait_nodes([N1], rpctest, [N2]),
    N0 = length(results(Collector)),
    wait_results(Collector, N0 + ?AFTER_KILL),
    Results = stop_callers(N1, Callers, Collector),
    ?assertEqual([], [{T, R} || {T, R} <- Results, R =/= T]).

%%% Helpers run on the peers

%% The service table's counters, for failure reports.
svc_info() ->
    tether_nif:svc_info(tether_server:engine()).

%% A process that waits for `stop'.
spawn_idle() ->
    spawn(fun() -> receive stop -> ok end end).

%% Registers a new idle process, also registered locally as
%% <Service>_idle when Service is an atom, as this node's instance.
register_idle(Service, Meta) ->
    P = spawn_idle(),
    _ = is_atom(Service) andalso
        register(list_to_atom(atom_to_list(Service) ++ "_idle"), P),
    tether:register_service(Service, P, Meta).

%% A service function: double the argument, and say where it ran.
double(X) ->
    {2 * X, node()}.

%% A non-idempotent service function: reports its execution to
%% Collector, works a little, and returns where it ran.
record(Tag, Collector) ->
    Collector ! {executed, node(), Tag},
    timer:sleep(?WORK_MS),
    {done, node(), Tag}.

%% get_nodes and get_instances read together.
my_order(Service) ->
    {tether:get_nodes(Service), tether:get_instances(Service)}.

%% Starts ?CALLERS processes that loop on tether:call_service(Service,
%% Fun, ArgsFun(Tag), Opts) with a fresh Tag each time, each result
%% reported to Collector as {result, Tag, Result}, until told to stop.
callers_start(Service, Fun, ArgsFun, Opts, Collector) ->
    [spawn(fun() -> caller_loop(I, 1, Service, Fun, ArgsFun, Opts, Collector)
           end) || I <- lists:seq(1, ?CALLERS)].

caller_loop(I, Seq, Service, Fun, ArgsFun, Opts, Collector) ->
    receive
        {stop, From, Ref} ->
            From ! {Ref, stopped}
    after 0 ->
            Tag = {I, Seq},
            R = tether:call_service(Service, Fun, ArgsFun(Tag),
                                    [{timeout, ?CALL_MS} | Opts]),
            Collector ! {result, Tag, R},
            caller_loop(I, Seq + 1, Service, Fun, ArgsFun, Opts, Collector)
    end.

%% Stops the callers; returns when each has finished its last call.
callers_stop(Callers) ->
    Ref = make_ref(),
    [P ! {stop, self(), Ref} || P <- Callers],
    [receive {Ref, stopped} -> ok after 2 * ?CALL_MS + ?WAIT_MS -> error(stuck)
     end || _ <- Callers],
    ok.

%%% Helpers

%% Instances on N2 and N3 of svc_k (record/2 of this module); callers on
%% N1 loop on it; the first node of N1's order is killed with SIGKILL
%% once ?BEFORE_KILL requests ran there; the callers stop once
%% ?AFTER_KILL more calls returned. Returns {[{Tag, Result}],
%% [{executed, Node, Tag}], Victim, Survivor}.
killed_under_load(Config, Opts) ->
    {[N1, N2, N3], _CN} = cluster(Config),
    ok = call(N2, ?MODULE, register_idle, [svc_k, #{module => ?MODULE}]),
    ok = call(N3, ?MODULE, register_idle, [svc_k, #{module => ?MODULE}]),
    wait_nodes([N1, N2, N3], svc_k, lists:sort([N2, N3])),
    [Victim, Survivor] = call(N1, tether, get_nodes, [svc_k]),
    Collector = tether_test_lib:start_collector(),
    Callers = call(N1, ?MODULE, callers_start,
                   [svc_k, record, fun(Tag) -> [Tag, Collector] end, Opts,
                    Collector]),
    wait_until(fun() -> executions(Collector, Victim) end,
               fun(Es) -> length(Es) >= ?BEFORE_KILL end),
    kill_peer(Victim),
    N0 = length(results(Collector)),
    wait_results(Collector, N0 + ?AFTER_KILL),
    Results = stop_callers(N1, Callers, Collector),
    Execs = [E || {executed, _, _} = E <- tether_test_lib:collected(Collector)],
    Collector ! '$stop_collector',
    {Results, Execs, Victim, Survivor}.

stop_callers(Node, Callers, Collector) ->
    ok = erpc:call(Node, ?MODULE, callers_stop, [Callers],
                   2 * ?CALL_MS + 2 * ?WAIT_MS),
    Results = results(Collector),
    ct:log("~b calls: ~p", [length(Results), Results]),
    Results.

results(Collector) ->
    [{Tag, R} || {result, Tag, R} <- tether_test_lib:collected(Collector)].

executions(Collector, Node) ->
    [T || {executed, N, T} <- tether_test_lib:collected(Collector), N =:= Node].

wait_results(Collector, N) ->
    wait_until(fun() -> length(results(Collector)) end,
               fun(Len) -> Len >= N end).

%% Every call returned a value or one of the errors the contract names.
assert_clear(Results) ->
    ?assertEqual([], [{T, R} || {T, R} <- Results,
                                not (is_value(R) orelse is_clear_error(R))]),
    %% One result per call: no tag answered twice.
    Tags = [T || {T, _} <- Results],
    ?assertEqual(length(Tags), length(lists:usort(Tags))).

is_value({done, _, _}) -> true;
is_value(_) -> false.

is_clear_error({badrpc, nodedown}) -> true;
is_clear_error({badrpc, timeout}) -> true;
is_clear_error({badrpc, {'EXIT', _}}) -> true;
is_clear_error({error, service_not_available}) -> true;
is_clear_error(_) -> false.

%% No request ran twice: at most one execution per tag, and a value
%% names the node whose execution it reports.
assert_at_most_once(Results, Execs) ->
    ByTag = lists:foldl(fun({executed, N, T}, M) ->
                                maps:update_with(T, fun(L) -> [N | L] end,
                                                 [N], M)
                        end, #{}, Execs),
    ?assertEqual([], [{T, Ns} || {T, Ns} <- maps:to_list(ByTag),
                                 length(Ns) > 1]),
    %% A value from node N and a recorded execution elsewhere would be
    %% two runs (the victim's record may be lost with it, never made up).
    ?assertEqual([], [{T, N, maps:get(T, ByTag)}
                      || {T, {done, N, T}} <- Results,
                         maps:is_key(T, ByTag),
                         maps:get(T, ByTag) =/= [N]]).

%% Waits until more than two leases have passed on Node, across a
%% partition.
wait_leases_pass(Node) ->
    tether_test_lib:wait_leases_pass(Node, ?HB_MS, ?TTL_MS, ?WAIT_MS).

%% Kills a peer's OS process with SIGKILL and waits until it is gone.
kill_peer(Node) ->
    tether_test_lib:kill_node(Node, ?WAIT_MS).

is_process_alive_on(Node, Pid) ->
    call(Node, erlang, is_process_alive, [Pid]).

%% Waits until get_nodes(Service), sorted, is Expected on every node.
wait_nodes(Nodes, Service, Expected) ->
    try
        [wait_until(fun() -> lists:sort(call(N, tether, get_nodes, [Service]))
                    end,
                    fun(Got) -> Got =:= Expected end) || N <- Nodes],
        ok
    catch
        exit:{test_case_failed, _} = Failed ->
            [ct:log("~p: get_nodes ~p, local ~p, svc_info ~p",
                    [N, catch call(N, tether, get_nodes, [Service]),
                     catch call(N, tether_service_server, local, []),
                     catch call(N, ?MODULE, svc_info, [])]) || N <- Nodes],
            exit(Failed)
    end.

%% Three clustered peers with tether (not linked: a case may kill one; a
%% killed peer must not make global cut the others off) and a C-node
%% joined to the first (with the group's extra C-node arguments). Returns
%% {Peers, CNode}.
cluster(Config) ->
    Bs = tether_test_lib:start_cluster(
           3, #{prefix => tether_svc, overlapping_partitions => false,
                env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS},
                        {service_recheck_ms, ?RECHECK_MS}]}, ?WAIT_MS),
    Opts = #{name => tether_test_lib:unique_name(tsvc),
             heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS,
             extra_args => proplists:get_value(cnode_args, Config, []),
             log_dir => ?config(priv_dir, Config)},
    {Bs, tether_test_lib:join_cnode(Bs, Opts, ?WAIT_MS)}.

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, ?CALL_MS + ?WAIT_MS).

%% Polls Get until Check holds, failing after WAIT_MS with the last value.
wait_until(Get, Check) ->
    tether_test_lib:poll(Get, Check, ?WAIT_MS).
