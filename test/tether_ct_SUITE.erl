%% tether_ct, the test kit shipped in the application, used as a
%% dependent project's suites use it:
%%
%% - start_cluster/2 with nothing but #{beam => 2, cnodes => 1}; every
%%   member lists every member, nodes/beam_nodes/cnodes list them, and
%%   stop_cluster/1 leaves no OS process behind;
%% - short names, and IPv6 (an epmd of the cluster's own on ::1);
%% - faults: drop and defer partitions and heal, kill and restart of a
%%   BEAM peer and of a C-node, isolate, a seeded random nemesis;
%% - assertions: members, registry (a registration on each side of a
%%   partition, one winner after the heal), one leader across a kill, and
%%   failures that say what each node saw;
%% - bad use: unknown node, overlapping groups, a missing C-node program,
%%   a spec that cannot start: a clear error and nothing left running;
%% - an OS process running the kit killed with SIGKILL mid-run leaves no
%%   peer and no C-node behind.
%%
%% Run alone: scripts/ct.sh --suite test/tether_ct_SUITE
-module(tether_ct_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, end_per_testcase/2]).
-export([minimal_spec/1, options_reach_nodes/1, short_names/1, ipv6/1, partitions_and_heal/1,
         kill_and_restart/1, isolate_and_nemesis/1, registry_after_partition/1,
         single_leader_across_kill/1, failures_say_what_each_saw/1,
         bad_use_stops_cluster/1, killed_runner_leaves_nothing/1,
         map_and_reminder_assertions/1]).

-define(TIMING, #{heartbeat_ms => 200, ttl_ms => 1000}).

suite() ->
    [{ct_hooks, [tether_case_hook]}].

all() ->
    [minimal_spec, options_reach_nodes, short_names, ipv6, partitions_and_heal, kill_and_restart,
     isolate_and_nemesis, registry_after_partition, single_leader_across_kill,
     failures_say_what_each_saw, bad_use_stops_cluster,
     killed_runner_leaves_nothing, map_and_reminder_assertions].

%% The case runs in this process: the cluster it started is in the
%% process dictionary (start/2), also when the case crashed.
end_per_testcase(_Case, _Config) ->
    case erase(cluster) of
        undefined -> ok;
        C -> tether_ct:stop_cluster(C)
    end.

%%% Cases

%% Nothing but the counts: two BEAM peers and a C-node, all joined.
minimal_spec(Config) ->
    C = tether_ct:start_cluster(Config, #{beam => 2, cnodes => 1}),
    put(cluster, C),
    [B1, B2] = tether_ct:beam_nodes(C),
    [CN] = tether_ct:cnodes(C),
    ?assertEqual([B1, B2, CN], tether_ct:nodes(C)),
    All = lists:sort([B1, B2, CN]),
    ?assertEqual(All, tether_ct:call(C, B1, tether, members, [])),
    ok = tether_ct:assert_members_agree(C),
    Pids = [P || {_, P} <- tether_ct:os_pids(C)],
    ?assertEqual(3, length(Pids)),
    ok = tether_ct:stop_cluster(C),
    ok = tether_ct:stop_cluster(C),
    ok = tether_ct:wait_until(fun() -> not lists:any(fun tether_ct:os_pid_alive/1,
                                                     Pids) end, 10000).

%% The cookie, application env for all and for one node, code paths,
%% and a C-node plug-in whose process is registered (--register) reach
%% the nodes.
options_reach_nodes(Config) ->
    Kv = tether_test_lib:kv_plugin(),
    Extra = filename:join(?config(priv_dir, Config), "extra_ebin"),
    ok = filelib:ensure_dir(filename:join(Extra, "x")),
    C = start(Config, #{beam => 2, cnodes => 1, cookie => "kit_cookie",
                        env => [{kit_app, shared, 1}],
                        node_env => #{2 => [{kit_app, own, 2}]},
                        code_path => [filename:dirname(code:which(tether_ct)),
                                      Extra],
                        plugins => [Kv], register => [kv]}),
    [B1, B2] = tether_ct:beam_nodes(C),
    [CN] = tether_ct:cnodes(C),
    ?assertEqual(kit_cookie, tether_ct:call(C, B1, erlang, get_cookie, [])),
    ?assertEqual({ok, 1}, tether_ct:call(C, B1, application, get_env, [kit_app, shared])),
    ?assertEqual(undefined, tether_ct:call(C, B1, application, get_env, [kit_app, own])),
    ?assertEqual({ok, 2}, tether_ct:call(C, B2, application, get_env, [kit_app, own])),
    ?assert(lists:member(Extra, tether_ct:call(C, B2, code, get_path, []))),
    ok = tether_ct:wait_until(
           fun() ->
                   Pid = tether_ct:call(C, B1, tether, whereis_name, [kv]),
                   is_pid(Pid) andalso node(Pid) =:= CN
           end, 10000),
    ok = tether_ct:assert_registry_agrees(C).

%% -sname peers and a --sname C-node.
short_names(Config) ->
    C = start(Config, #{beam => 1, cnodes => 1, naming => short}),
    Host = tether_ct:sname_host(),
    [?assertEqual(Host, host_of(N)) || N <- tether_ct:nodes(C)],
    ok = tether_ct:assert_members_agree(C).

%% NAME@::1 over inet6_tcp, registered in an epmd on ::1 only.
ipv6(Config) ->
    case tether_test_lib:ipv6_loopback() of
        false ->
            {skip, "no IPv6 loopback (::1) on this machine"};
        true ->
            C = start(Config, #{beam => 2, cnodes => 1, naming => ipv6}),
            [?assertEqual("::1", host_of(N)) || N <- tether_ct:nodes(C)],
            [B1, _] = tether_ct:beam_nodes(C),
            [CN] = tether_ct:cnodes(C),
            ok = tether_ct:partition(C, [B1], [CN], drop),
            ok = tether_ct:heal(C),
            ok = tether_ct:assert_members_agree(C)
    end.

%% drop: each side lists itself only; defer: membership holds; heal:
%% everyone agrees again.
partitions_and_heal(Config) ->
    C = start(Config, #{beam => 2, cnodes => 1}),
    {B1, B2, CN} = cut_off_first(C),
    ok = tether_ct:wait_until(
           fun() -> tether_ct:call(C, B2, tether, members, []) =:= lists:sort([B2, CN])
           end, 10000),
    ok = tether_ct:heal(C),
    ok = tether_ct:assert_members_agree(C),
    ok = tether_ct:partition(C, [B1, CN], [B2], defer),
    timer:sleep(1500),
    ok = tether_ct:assert_members_agree(C),
    ok = tether_ct:heal(C),
    ok = tether_ct:assert_members_agree(C).

%% SIGKILL a BEAM peer and the C-node: the rest agree without them; a
%% restart brings each back under its name, with a new OS process.
kill_and_restart(Config) ->
    C = start(Config, #{beam => 2, cnodes => 1}),
    [B1, B2] = tether_ct:beam_nodes(C),
    [CN] = tether_ct:cnodes(C),
    Pids0 = tether_ct:os_pids(C),
    ok = tether_ct:kill(C, CN),
    ok = tether_ct:kill(C, B2),
    ?assertNot(tether_ct:os_pid_alive(proplists:get_value(CN, Pids0))),
    ?assertNot(tether_ct:os_pid_alive(proplists:get_value(B2, Pids0))),
    ?assertEqual([B1], [N || {N, _} <- tether_ct:os_pids(C)]),
    ok = tether_ct:assert_members_agree(C),
    ok = tether_ct:restart(C, CN),
    ok = tether_ct:restart(C, B2),
    ok = tether_ct:assert_members_agree(C),
    Pids1 = tether_ct:os_pids(C),
    ?assertEqual(3, length(Pids1)),
    ?assertNotEqual(proplists:get_value(CN, Pids0), proplists:get_value(CN, Pids1)).

%% isolate/2 cuts one member off; a nemesis of fixed steps, then a
%% seeded random one (printed in the log), ends converged.
isolate_and_nemesis(Config) ->
    C = start(Config, #{beam => 2, cnodes => 1}),
    [B1, B2] = tether_ct:beam_nodes(C),
    [CN] = tether_ct:cnodes(C),
    ok = tether_ct:isolate(C, CN),
    ok = tether_ct:wait_until(
           fun() -> tether_ct:call(C, B1, tether, members, []) =:= lists:sort([B1, B2])
           end, 10000),
    ok = tether_ct:nemesis(C, [heal, {wait, 200}, {partition, [B1], [B2], defer},
                               {wait, 300}, heal, {kill, B2}, {restart, B2}]),
    ok = tether_ct:assert_members_agree(C),
    ok = tether_ct:nemesis(C, [{random, 20, 4}]),
    ok = tether_ct:assert_members_agree(C).

%% The same name registered on each side of a drop partition: after the
%% heal every member holds one and the same registration.
registry_after_partition(Config) ->
    C = start(Config, #{beam => 2, cnodes => 1}),
    {B1, B2, _CN} = cut_off_first(C),
    P1 = tether_ct:call(C, B1, erlang, spawn, [timer, sleep, [infinity]]),
    P2 = tether_ct:call(C, B2, erlang, spawn, [timer, sleep, [infinity]]),
    yes = tether_ct:call(C, B1, tether, register_name, [dup, P1]),
    yes = tether_ct:call(C, B2, tether, register_name, [dup, P2]),
    ok = tether_ct:heal(C),
    ok = tether_ct:assert_members_agree(C),
    ok = tether_ct:assert_registry_agrees(C),
    Winner = tether_ct:call(C, B1, tether, whereis_name, [dup]),
    ?assert(lists:member(Winner, [P1, P2])),
    ?assertEqual(Winner, tether_ct:call(C, B2, tether, whereis_name, [dup])).

%% Two C-nodes campaign for `lead' (--lead): one leader at every sample;
%% after SIGKILL of the leader the other one leads, still alone.
single_leader_across_kill(Config) ->
    C = start(Config, #{beam => 1, cnodes => 2, lead => [lead]}),
    ok = tether_ct:assert_single_leader(C, lead),
    [B] = tether_ct:beam_nodes(C),
    {ok, Leader, _} = tether_ct:call(C, B, tether, leader, [lead]),
    ok = tether_ct:kill(C, Leader),
    ok = tether_ct:wait_until(
           fun() ->
                   case tether_ct:call(C, B, tether, leader, [lead]) of
                       {ok, L, _} -> L =/= Leader;
                       _ -> false
                   end
           end, 15000),
    ok = tether_ct:assert_single_leader(C, lead, 1000).

%% assert_map_converged/2 over two BEAM hosts and a C-node host: fails
%% naming what each answered while a drop partition keeps two writes
%% apart, holds after the heal. assert_fired_once/2 with recorders on
%% three BEAM members: one reminder fired once; a key never set is
%% not_fired.
map_and_reminder_assertions(Config) ->
    C = start(Config, #{beam => 2, cnodes => 1, wait_ms => 3000,
                        record_reminders => true,
                        cnode_args => ["--map", "m"]}),
    [B1, B2] = tether_ct:beam_nodes(C),
    [CN] = tether_ct:cnodes(C),
    [ok = tether_ct:call(C, B, tether, new_map, [m]) || B <- [B1, B2]],
    ok = tether_ct:call(C, B1, tether, map_put, [m, k, 1]),
    ok = tether_ct:assert_map_converged(C, m),
    ?assertEqual({ok, 1}, tether_ct:call(C, B2, tether, map_get, [m, k])),
    ok = tether_ct:partition(C, [B1], [B2, CN], drop),
    ok = tether_ct:call(C, B1, tether, map_put, [m, k, 2]),
    {'EXIT', {{tether_ct, {map_diverged, m, Seen}}, _}} =
        (catch tether_ct:assert_map_converged(C, m)),
    ?assertEqual([{B1, [{k, 2}]}, {B2, [{k, 1}]}, {CN, [{k, 1}]}],
                 lists:sort(Seen)),
    ok = tether_ct:heal(C),
    ok = tether_ct:assert_map_converged(C, m),
    %% Reminders run on BEAM members only (a C-node owns no reminder).
    R = start(Config, #{beam => 3, wait_ms => 5000,
                        record_reminders => true}),
    [R1 | _] = tether_ct:beam_nodes(R),
    ok = tether_ct:call(R, R1, tether, remind_after, [rk, 100, hello]),
    ok = tether_ct:assert_fired_once(R, rk),
    {'EXIT', {{tether_ct, {not_fired, never_set, _}}, _}} =
        (catch tether_ct:assert_fired_once(R, never_set)),
    ok.

%% A failed assertion names each node and what it saw, and leaves the
%% cluster running.
failures_say_what_each_saw(Config) ->
    C = start(Config, #{beam => 2, wait_ms => 1000}),
    [B1, B2] = tether_ct:beam_nodes(C),
    ok = tether_ct:partition(C, [B1], [B2], drop),
    {'EXIT', {{tether_ct, {members_disagree, [B1, B2], Seen}}, _}} =
        (catch tether_ct:assert_members_agree(C)),
    ?assertEqual([{B1, [B1]}, {B2, [B2]}], Seen),
    {'EXIT', {{tether_ct, {no_leader, nobody, Sample}}, _}} =
        (catch tether_ct:assert_single_leader(C, nobody, 100)),
    ?assertEqual([{B1, false}, {B2, false}], Sample),
    ok = tether_ct:heal(C),
    ok = tether_ct:assert_members_agree(C).

%% Bad use: a clear error naming the problem, and the cluster stopped.
bad_use_stops_cluster(Config) ->
    C1 = start(Config, #{beam => 1, cnodes => 1}),
    Pids1 = [P || {_, P} <- tether_ct:os_pids(C1)],
    ?assertError({tether_ct, {unknown_node, 'nobody@127.0.0.1'}},
                 tether_ct:kill(C1, 'nobody@127.0.0.1')),
    ?assertError({tether_ct, cluster_stopped}, tether_ct:nodes(C1)),
    gone(Pids1),
    C2 = start(Config, #{beam => 2}),
    [B1, B2] = tether_ct:beam_nodes(C2),
    Pids2 = [P || {_, P} <- tether_ct:os_pids(C2)],
    ?assertError({tether_ct, {overlapping_groups, [B2]}},
                 tether_ct:partition(C2, [B1, B2], [B2], drop)),
    gone(Pids2),
    ?assertError({tether_ct, {no_cnode_program, "/nonexistent/tether_cnode"}},
                 tether_ct:start_cluster(Config, #{cnodes => 1,
                                                   cnode_exe => "/nonexistent/tether_cnode"})),
    ?assertError({tether_ct, {bad_option, {naming, {long, "localhost"}}, _}},
                 tether_ct:start_cluster(Config, #{beam => 1,
                                                   naming => {long, "localhost"}})),
    ?assertError({tether_ct, {bad_option, {bogus, 1}}},
                 tether_ct:start_cluster(Config, #{beam => 1, bogus => 1})),
    %% A C-node flag it refuses, after a BEAM peer started: named, and
    %% the peer stopped too.
    Prefix = "badspec_" ++ integer_to_list(erlang:unique_integer([positive])),
    ?assertError({tether_ct, {start_failed, _, {{exited, 2}, _, _}}},
                 tether_ct:start_cluster(Config, #{beam => 1, cnodes => 1,
                                                   prefix => Prefix,
                                                   cnode_args => ["--bogus"]})),
    %% tether refusing its configuration on a peer.
    ?assertError({tether_ct, {start_failed, _, {tether_not_started, _}}},
                 tether_ct:start_cluster(Config, #{beam => 1, prefix => Prefix,
                                                   env => [{tether, ttl_ms, 1}]})),
    ok = tether_ct:wait_until(fun() -> processes_named(Prefix) =:= [] end, 10000).

%% An OS process (a plain erl, not distributed: Config = []) runs the kit
%% and is killed with SIGKILL mid-run: its peer and C-node go too.
killed_runner_leaves_nothing(_Config) ->
    Prefix = "runner_" ++ integer_to_list(erlang:unique_integer([positive])),
    Paths = lists:append([["-pa", D] || D <- [filename:dirname(code:which(tether_ct))]]),
    Eval = "C = tether_ct:start_cluster([], #{beam => 1, cnodes => 1, prefix => \""
        ++ Prefix ++ "\"}), io:format(\"pids ~w~n\", [[P || {_, P} <- "
        "tether_ct:os_pids(C)]]), timer:sleep(infinity).",
    Port = open_port({spawn_executable, os:find_executable("erl")},
                     [{args, ["-noshell" | Paths] ++ ["-eval", Eval]},
                      {line, 4096}, exit_status, stderr_to_stdout]),
    {os_pid, Runner} = erlang:port_info(Port, os_pid),
    Pids = runner_pids(Port),
    ct:pal("runner ~p started ~p", [Runner, Pids]),
    ?assertEqual(2, length(Pids)),
    ?assert(lists:all(fun tether_ct:os_pid_alive/1, Pids)),
    ok = tether_ct:signal_os_pid(kill, Runner),
    gone(Pids),
    ?assertEqual([], processes_named(Prefix)).

%%% Helpers

%% A drop partition between the first BEAM member and the rest; returns
%% {B1, B2, CN} once B1 lists itself alone.
cut_off_first(C) ->
    [B1, B2] = tether_ct:beam_nodes(C),
    [CN] = tether_ct:cnodes(C),
    ok = tether_ct:partition(C, [B1], [B2, CN], drop),
    ok = tether_ct:wait_until(
           fun() -> tether_ct:call(C, B1, tether, members, []) =:= [B1] end, 10000),
    {B1, B2, CN}.

start(Config, Spec) ->
    C = tether_ct:start_cluster(Config, maps:merge(?TIMING, Spec)),
    _ = case get(cluster) of
            undefined -> ok;
            Earlier -> tether_ct:stop_cluster(Earlier)
        end,
    put(cluster, C),
    C.

runner_pids(Port) ->
    receive
        {Port, {data, {eol, "pids " ++ List}}} ->
            {ok, Toks, _} = erl_scan:string(List ++ "."),
            {ok, Pids} = erl_parse:parse_term(Toks),
            Pids;
        {Port, {data, {eol, Line}}} ->
            ct:log("runner: ~s", [Line]),
            runner_pids(Port);
        {Port, {exit_status, S}} ->
            ct:fail({runner_exited, S})
    after 60000 ->
            ct:fail(runner_not_ready)
    end.

gone(Pids) ->
    ?assertEqual(ok, tether_ct:wait_until(
                       fun() -> not lists:any(fun tether_ct:os_pid_alive/1, Pids) end,
                       15000)).

%% OS processes whose command line mentions Text.
processes_named(Text) ->
    Self = os:getpid(),
    [P || P <- filelib:wildcard("/proc/[0-9]*"),
          filename:basename(P) =/= Self,
          case file:read_file(P ++ "/cmdline") of
              {ok, Cmd} -> binary:match(Cmd, list_to_binary(Text)) =/= nomatch;
              _ -> false
          end,
          tether_ct:os_pid_alive(list_to_integer(filename:basename(P)))].

host_of(Node) ->
    [_, Host] = string:split(atom_to_list(Node), "@"),
    Host.
