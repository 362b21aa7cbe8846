%% @doc The C-node as a peer of stock OTP nodes (issue 3, items 2, 4, 5).
%%
%% Every case starts its own C-node (priv/tether_cnode) and, where it
%% needs them, its own BEAM peers, and drives them with stock OTP calls
%% only: net_adm:ping/1, erlang:monitor/2, link/1, !, nodes/1,
%% erlang:monitor_node/2, gen_server:call/3. The C-node side is its
%% built-in `echo' process:
%%   {echo, From, Term}       -> From ! Term
%%   {spawn, From, Name}      -> From ! {spawned, Name, NewPid}
%%   {stop, Reason}           -> the process exits with Reason
%%   {link, Pid}              -> the process links to Pid
%%   {unlink, Pid}            -> and unlinks
%%   {trap_exit, Bool}
%%   {get_exits, From}        -> From ! {exits, [{FromPid, Reason}]}
%%   gen_server:call(Echo, ping) -> pong
%%
%% Needs a distributed common_test node and a private epmd, see
%% ERL_EPMD_PORT in tether_test_lib.
-module(tether_cnode_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, suite/0, init_per_testcase/2,
         end_per_testcase/2]).
-export([ping_pong_hidden/1, visible_in_nodes/1, cookie_file/1,
         monitor_nosuch_noproc/1, monitor_stop_reason/1,
         monitor_kill9_noconnection/1, demonitor_no_down/1,
         link_beam_to_c/1, link_c_to_beam/1, link_c_to_beam_normal/1,
         link_c_to_beam_trapped/1, c_unlinks_beam/1, gen_server_call/1,
         wrong_cookie/1, wrong_cookie_outbound/1, twenty_peers/1,
         short_ticktime_idle/1, peer_restart/1, connects_out/1,
         sigterm_graceful/1]).

-define(LIB, tether_test_lib).
%% Generous: a shared 2-vCPU VM.
-define(WAIT, 10000).

suite() ->
    [{timetrap, {minutes, 3}}, {ct_hooks, [tether_case_hook]}].

all() ->
    [{group, basics}, {group, monitors}, {group, links},
     {group, connections}, sigterm_graceful].

groups() ->
    [{basics, [], [ping_pong_hidden, visible_in_nodes, cookie_file, gen_server_call]},
     {monitors, [], [monitor_nosuch_noproc, monitor_stop_reason,
                     monitor_kill9_noconnection, demonitor_no_down]},
     {links, [], [link_beam_to_c, link_c_to_beam, link_c_to_beam_normal,
                  link_c_to_beam_trapped, c_unlinks_beam]},
     {connections, [], [wrong_cookie, wrong_cookie_outbound, twenty_peers, short_ticktime_idle,
                        peer_restart, connects_out]}].

init_per_testcase(Case, Config) ->
    ?LIB:init_kept_cnode(Case, Config, cnode_opts(Case, Config)).

%% Stops everything; fails the case if its C-node died during it (a crash
%% provoked by the test) unless the case kills or stops it on purpose.
end_per_testcase(Case, Config) ->
    ExpectDead = lists:member(Case, [monitor_kill9_noconnection, sigterm_graceful]),
    ?LIB:end_kept_cnode(Config, ExpectDead).

cnode_opts(visible_in_nodes, _Config) ->
    #{visible => true};
cnode_opts(cookie_file, Config) ->
    File = filename:join(?config(priv_dir, Config), "cookie"),
    ok = file:write_file(File, ?LIB:cookie()),
    ok = file:change_mode(File, 8#600),
    #{cookie_file => File};
cnode_opts(wrong_cookie_outbound, _Config) ->
    %% Debug level: the failures not printed at info level show as
    %% "suppressed: " lines, so the case can count them.
    #{cookie => "not_the_cookie", join => [node()], heartbeat_ms => 100,
      log_level => debug};
cnode_opts(short_ticktime_idle, _Config) ->
    #{ticktime => 4};
cnode_opts(_Case, _Config) ->
    #{}.

%%--------------------------------------------------------------------
%% basics
%%--------------------------------------------------------------------

%% net_adm:ping gives pong; a C-node is hidden by default: it is in
%% nodes(hidden) and not in nodes().
ping_pong_hidden(Config) ->
    CNode = ?config(cnode_node, Config),
    ?assertEqual(pong, net_adm:ping(CNode)),
    ?assert(lists:member(CNode, nodes(hidden))),
    ?assertNot(lists:member(CNode, nodes())),
    ?assertEqual(ok, ?LIB:echo(CNode, {hello, [1, 2.5, <<"bin">>, #{k => v}]})).

%% --visible: the C-node is in nodes().
visible_in_nodes(Config) ->
    CNode = ?config(cnode_node, Config),
    ?assertEqual(pong, net_adm:ping(CNode)),
    ?assert(lists:member(CNode, nodes())),
    ?assertNot(lists:member(CNode, nodes(hidden))),
    ?assertEqual(ok, ?LIB:echo(CNode, visible)).

%% --cookie-file works like --cookie.
cookie_file(Config) ->
    CNode = ?config(cnode_node, Config),
    ?assertEqual(pong, net_adm:ping(CNode)),
    ?assertEqual(ok, ?LIB:echo(CNode, from_cookie_file)).

%% gen_server:call/2 to the echo answers (MONITOR_P, '$gen_call' and the
%% reply); a call to a name nobody holds exits with noproc, as on the BEAM.
gen_server_call(Config) ->
    CNode = ?config(cnode_node, Config),
    ?assertEqual(pong, gen_server:call({echo, CNode}, ping, ?WAIT)),
    ?assertMatch({'EXIT', {noproc, {gen_server, call, _}}},
                 catch gen_server:call({nosuch, CNode}, ping, ?WAIT)),
    %% No monitor or reply left behind.
    ?assertEqual([], ?LIB:flush()).

%%--------------------------------------------------------------------
%% monitors
%%--------------------------------------------------------------------

%% Monitoring a name nobody holds on the C-node: 'DOWN' with noproc.
monitor_nosuch_noproc(Config) ->
    CNode = ?config(cnode_node, Config),
    pong = net_adm:ping(CNode),
    Ref = erlang:monitor(process, {nosuch, CNode}),
    expect_down(Ref, {nosuch, CNode}, noproc, no_down_for_nosuch).

%% Monitors by name and by pid of a spawned echo process; {stop, R}: both
%% get 'DOWN' with R.
monitor_stop_reason(Config) ->
    CNode = ?config(cnode_node, Config),
    pong = net_adm:ping(CNode),
    {ok, CPid} = ?LIB:cnode_spawn(CNode, mon_target),
    ?assertEqual(CNode, node(CPid)),
    ?assertEqual(ok, ?LIB:echo({mon_target, CNode}, by_name)),
    ?assertEqual(ok, ?LIB:echo(CPid, by_pid)),
    NameRef = erlang:monitor(process, {mon_target, CNode}),
    PidRef = erlang:monitor(process, CPid),
    Reason = {tether_test_stop, 42, <<"why">>},
    CPid ! {stop, Reason},
    expect_down(NameRef, {mon_target, CNode}, Reason, no_down_by_name),
    expect_down(PidRef, CPid, Reason, no_down_by_pid),
    %% The name is free again: a new monitor on it is noproc at once.
    Ref3 = erlang:monitor(process, {mon_target, CNode}),
    expect_down(Ref3, {mon_target, CNode}, noproc, no_down_after_exit).

%% kill -9 of the C-node: monitors get 'DOWN' with noconnection, a
%% trapping linked process gets {'EXIT', CPid, noconnection}.
monitor_kill9_noconnection(Config) ->
    C = ?config(cnode, Config),
    CNode = ?config(cnode_node, Config),
    pong = net_adm:ping(CNode),
    {ok, CPid} = ?LIB:cnode_spawn(CNode, doomed),
    NameRef = erlang:monitor(process, {doomed, CNode}),
    PidRef = erlang:monitor(process, CPid),
    Self = self(),
    Linker = spawn(fun() ->
                           process_flag(trap_exit, true),
                           link(CPid),
                           Self ! {linked, self()},
                           receive
                               {'EXIT', CPid, R} -> Self ! {linker_exit, R}
                           after 3 * ?WAIT -> Self ! {linker_exit, timeout}
                           end
                   end),
    receive {linked, Linker} -> ok after ?WAIT -> ct:fail(no_link) end,
    %% Make sure the C-node has seen the monitors and the link.
    ?assertEqual(ok, ?LIB:echo(CPid, barrier)),
    {ok, _Status} = ?LIB:kill_cnode(C),
    expect_down(NameRef, {doomed, CNode}, noconnection, no_down_by_name),
    expect_down(PidRef, CPid, noconnection, no_down_by_pid),
    receive
        {linker_exit, R3} -> ?assertEqual(noconnection, R3)
    after 4 * ?WAIT -> ct:fail(no_linker_exit)
    end.

%% After demonitor, stopping the process sends no 'DOWN' for that
%% monitor. A second monitor set after the stop (noproc) orders things:
%% a 'DOWN' for the first would have arrived before it.
demonitor_no_down(Config) ->
    CNode = ?config(cnode_node, Config),
    pong = net_adm:ping(CNode),
    {ok, CPid} = ?LIB:cnode_spawn(CNode, demon_target),
    Ref1 = erlang:monitor(process, CPid),
    ?assertEqual(ok, ?LIB:echo(CPid, barrier)),
    true = erlang:demonitor(Ref1),
    CPid ! {stop, after_demonitor},
    Ref2 = erlang:monitor(process, CPid),
    receive
        {'DOWN', Ref2, process, CPid, R2} ->
            ?assert(lists:member(R2, [after_demonitor, noproc]))
    after ?WAIT -> ct:fail(no_down_for_second_monitor)
    end,
    receive
        {'DOWN', Ref1, _, _, _} = Down -> ct:fail({down_after_demonitor, Down})
    after 0 -> ok
    end,
    %% The C-node stays healthy.
    ?assertEqual(ok, ?LIB:echo(CNode, still_serving)).

%%--------------------------------------------------------------------
%% links
%%--------------------------------------------------------------------

%% A trapping BEAM process links to a C process; the C process stops with
%% R: the BEAM process gets {'EXIT', CPid, R}.
link_beam_to_c(Config) ->
    CNode = ?config(cnode_node, Config),
    pong = net_adm:ping(CNode),
    {ok, CPid} = ?LIB:cnode_spawn(CNode, link_target),
    Self = self(),
    Reason = {tether_link_test, stop},
    Watcher = spawn(fun() ->
                            process_flag(trap_exit, true),
                            true = link(CPid),
                            %% Same sender, same receiver: the echo reply
                            %% proves the C process has seen the link.
                            Self ! {linked, self(), ?LIB:echo(CPid, barrier)},
                            receive
                                {'EXIT', CPid, R} -> Self ! {watcher_exit, R}
                            after 3 * ?WAIT -> Self ! {watcher_exit, timeout}
                            end
                    end),
    receive
        {linked, Watcher, Barrier} -> ?assertEqual(ok, Barrier)
    after 2 * ?WAIT -> ct:fail(no_link)
    end,
    CPid ! {stop, Reason},
    receive
        {watcher_exit, R} -> ?assertEqual(Reason, R)
    after 4 * ?WAIT -> ct:fail(no_exit_signal)
    end.

%% A C process links to a BEAM process; the link shows on the BEAM side
%% (process_info links). The BEAM process exits with R: the (not
%% trapping) C process dies with R, as a monitor sees.
link_c_to_beam(Config) ->
    CNode = ?config(cnode_node, Config),
    {CPid, MRef, Beam} = c_links_to_beam(CNode, c_linker),
    Reason = {beam_exit, <<"reason">>},
    Beam ! {exit, Reason},
    expect_down(MRef, CPid, Reason, c_process_did_not_die).

%% Stock link semantics: a linked process exiting with `normal' does not
%% take a non-trapping process down.
link_c_to_beam_normal(Config) ->
    CNode = ?config(cnode_node, Config),
    {CPid, MRef, Beam} = c_links_to_beam(CNode, c_linker_normal),
    BeamRef = erlang:monitor(process, Beam),
    Beam ! {exit, normal},
    receive {'DOWN', BeamRef, process, Beam, normal} -> ok
    after ?WAIT -> ct:fail(beam_process_did_not_exit)
    end,
    expect_alive(CPid, MRef).

%% With trap_exit the C process survives and records {BeamPid, R}.
link_c_to_beam_trapped(Config) ->
    CNode = ?config(cnode_node, Config),
    pong = net_adm:ping(CNode),
    {ok, CPid0} = ?LIB:cnode_spawn(CNode, c_trapper),
    CPid0 ! {trap_exit, true},
    {CPid, MRef, Beam} = c_links_to_beam(CNode, CPid0),
    Reason = {trapped, 7},
    Beam ! {exit, Reason},
    Exits = get_exits_until_nonempty(CPid, ?WAIT),
    ?assertEqual([{Beam, Reason}], Exits),
    expect_alive(CPid, MRef).

%% {unlink, Pid}: the link disappears on the BEAM side too (UNLINK_ID), and
%% the BEAM process exiting then does not touch the C process.
c_unlinks_beam(Config) ->
    CNode = ?config(cnode_node, Config),
    {CPid, MRef, Beam} = c_links_to_beam(CNode, c_unlinker),
    Self = self(),
    CPid ! {unlink, Beam},
    CPid ! {echo, Beam, unlinked},
    Beam ! {report_links_after, unlinked, Self},
    receive
        {beam_links_after, Beam, Links} -> ?assertEqual([], Links)
    after ?WAIT -> ct:fail(no_unlink_report)
    end,
    Beam ! {exit, {should_not_matter, 1}},
    BeamRef = erlang:monitor(process, Beam),
    receive {'DOWN', BeamRef, process, Beam, _} -> ok
    after ?WAIT -> ct:fail(beam_process_did_not_exit)
    end,
    expect_alive(CPid, MRef).

%% The C process CPid still answers, and its monitor MRef has not fired.
expect_alive(CPid, MRef) ->
    ?assertEqual(ok, ?LIB:echo(CPid, still_alive)),
    receive
        {'DOWN', MRef, _, _, _} = Down -> ct:fail({c_process_died, Down})
    after 0 -> ok
    end.

%% Waits for the 'DOWN' of monitor Ref on Object and checks its reason;
%% fails the case with Tag when none comes within ?WAIT.
expect_down(Ref, Object, Reason, Tag) ->
    receive
        {'DOWN', Ref, process, Object, R} -> ?assertEqual(Reason, R)
    after ?WAIT -> ct:fail(Tag)
    end.

%% Spawns (or reuses) a C process, has it link to a fresh BEAM process and
%% checks the link is visible from the BEAM side. Returns the C pid, a
%% monitor on it and the BEAM pid (which exits on {exit, Reason}).
c_links_to_beam(CNode, NameOrPid) ->
    pong = net_adm:ping(CNode),
    CPid = case NameOrPid of
               Pid when is_pid(Pid) -> Pid;
               Name -> {ok, P} = ?LIB:cnode_spawn(CNode, Name), P
           end,
    MRef = erlang:monitor(process, CPid),
    Self = self(),
    Beam = spawn(fun() ->
                         receive linked -> ok end,
                         {links, Links} = process_info(self(), links),
                         Self ! {beam_links, self(), Links},
                         beam_linked_loop()
                 end),
    CPid ! {link, Beam},
    %% Same sender, same receiver: `linked' arrives after the LINK signal.
    CPid ! {echo, Beam, linked},
    receive
        {beam_links, Beam, Links} -> ?assertEqual([CPid], Links)
    after ?WAIT -> ct:fail(no_link_seen_on_beam_side)
    end,
    {CPid, MRef, Beam}.

beam_linked_loop() ->
    receive
        {exit, R} ->
            exit(R);
        {report_links_after, Marker, To} ->
            receive Marker -> ok end,
            {links, Links} = process_info(self(), links),
            To ! {beam_links_after, self(), Links},
            beam_linked_loop()
    end.

get_exits_until_nonempty(CPid, Timeout) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    get_exits_loop(CPid, Deadline).

get_exits_loop(CPid, Deadline) ->
    CPid ! {get_exits, self()},
    Exits = receive {exits, E} -> E after ?WAIT -> ct:fail(no_get_exits_reply) end,
    case Exits =:= [] andalso erlang:monotonic_time(millisecond) < Deadline of
        true -> timer:sleep(100), get_exits_loop(CPid, Deadline);
        false -> Exits
    end.

%%--------------------------------------------------------------------
%% connections
%%--------------------------------------------------------------------

%% A peer with another cookie gets pang; the C-node logs one stderr line
%% naming that peer, and keeps serving nodes with the right cookie.
wrong_cookie(Config) ->
    K = ?config(keeper, Config),
    CNode = ?config(cnode_node, Config),
    ?assertEqual(pong, net_adm:ping(CNode)),
    Bad = ?LIB:keep(K, {peer, ?LIB:start_peer(?LIB:unique_name(badcookie),
                                               #{cookie => "not_the_cookie"})}),
    BadNode = ?LIB:peer_node(Bad),
    ?assertEqual(pang, ?LIB:peer_call(Bad, net_adm, ping, [CNode])),
    Mentions = fun() ->
                       [L || L <- ?LIB:cnode_stderr(?config(cnode, Config)),
                             binary:match(L, atom_to_binary(BadNode)) =/= nomatch]
               end,
    ok = ?LIB:wait_until(fun() -> Mentions() =/= [] end, ?WAIT),
    ?assertMatch([_], Mentions()),
    [Line] = Mentions(),
    ct:log("handshake failure line: ~s", [Line]),
    ?assertNotEqual(nomatch, re:run(Line, "cookie", [caseless])),
    %% Still serving the right cookie: this node and a fresh peer.
    ?assertEqual(ok, ?LIB:echo(CNode, after_bad_cookie)),
    Good = ?LIB:keep(K, {peer, ?LIB:start_peer(?LIB:unique_name(goodcookie))}),
    ?assertEqual({pong, ok}, ?LIB:peer_call(Good, ?LIB, ping_and_echo, [CNode, good])).

%% A C-node with another cookie than its --join seed (this node) dials it
%% again and again: the first failure prints one line naming the seed and
%% saying the cookie is the likely cause; the later ones within
%% --dial-log-ms (default 60 s) print nothing at info level (debug shows
%% them as "suppressed: ").
wrong_cookie_outbound(Config) ->
    C = ?config(cnode, Config),
    Seed = atom_to_binary(node()),
    About = fun() ->
                    [L || L <- ?LIB:cnode_stderr(C),
                          binary:match(L, Seed) =/= nomatch,
                          binary:match(L, <<"handshake">>) =/= nomatch]
            end,
    Suppressed = fun(Ls) ->
                         [L || L <- Ls,
                               binary:match(L, <<"suppressed: ">>) =/= nomatch]
                 end,
    _ = ?LIB:wait_until(fun() -> length(Suppressed(About())) >= 4 end, 30000),
    Lines = About(),
    Printed = Lines -- Suppressed(Lines),
    ct:log("~b failed handshakes with ~s, ~b printed at info level:~n~s",
           [length(Lines), Seed, length(Printed), [[L, $\n] || L <- Lines]]),
    ?assert(length(Lines) >= 3),
    ?assertMatch([_], Printed),
    [Line] = Printed,
    ?assertNotEqual(nomatch, re:run(Line, "cookie", [caseless])),
    ?assertEqual(nomatch, re:run(Line, "connection closed$")).

%% 20 BEAM peers connected at the same time, each pings and echoes.
twenty_peers(Config) ->
    K = ?config(keeper, Config),
    CNode = ?config(cnode_node, Config),
    Peers = [?LIB:keep(K, {peer, P}) || P <- ?LIB:start_peers("many", 20)],
    First = on_all(Peers, fun(P) ->
                                  ?LIB:peer_call(P, ?LIB, ping_and_echo,
                                                 [CNode, {first, ?LIB:peer_node(P)}])
                          end),
    ?assertEqual([{pong, ok} || _ <- Peers], First),
    %% All 20 connections are up at once.
    Connected = on_all(Peers, fun(P) ->
                                      lists:member(CNode, ?LIB:peer_call(P, erlang, nodes, [hidden]))
                              end),
    ?assertEqual([true || _ <- Peers], Connected),
    Second = on_all(Peers, fun(P) ->
                                   ?LIB:peer_call(P, ?LIB, echo,
                                                  [CNode, {second, lists:seq(1, 100)}])
                           end),
    ?assertEqual([ok || _ <- Peers], Second).

%% Runs Fun on every peer in parallel; results in peer order.
on_all(Peers, Fun) ->
    Parent = self(),
    Ws = [spawn_monitor(fun() -> Parent ! {on_all, self(), Fun(P)} end) || P <- Peers],
    [receive
         {on_all, W, Res} -> erlang:demonitor(M, [flush]), Res;
         {'DOWN', M, process, W, Reason} -> {crashed, Reason}
     end || {W, M} <- Ws].

%% net_ticktime 4 on both sides, 15 s idle: the connection stays up (the
%% C-node sends ticks and counts the peer's).
short_ticktime_idle(Config) ->
    K = ?config(keeper, Config),
    CNode = ?config(cnode_node, Config),
    P = ?LIB:keep(K, {peer, ?LIB:start_peer(?LIB:unique_name(tick),
                                             #{args => ["-kernel", "net_ticktime", "4"]})}),
    Res = ?LIB:peer_call(P, ?LIB, idle_watch, [CNode, 15000], 60000),
    ?assertMatch(#{ticktime := 4, ping := pong}, Res),
    ?assertEqual(#{nodedown => false, connected => true, echo => ok},
                 maps:with([nodedown, connected, echo], Res)).

%% A peer connects, is stopped, comes back under the same name (a new
%% incarnation) and connects and echoes again.
peer_restart(Config) ->
    K = ?config(keeper, Config),
    CNode = ?config(cnode_node, Config),
    Name = ?LIB:unique_name(phoenix),
    P1 = ?LIB:keep(K, {peer, ?LIB:start_peer(Name)}),
    ?assertEqual({pong, ok}, ?LIB:peer_call(P1, ?LIB, ping_and_echo, [CNode, first_life])),
    ok = ?LIB:stop_peer(P1),
    ok = ?LIB:wait_until(fun() -> not lists:member(Name, ?LIB:epmd_names()) end, ?WAIT),
    P2 = ?LIB:keep(K, {peer, ?LIB:start_peer(Name)}),
    ?assertEqual(?LIB:peer_node(P1), ?LIB:peer_node(P2)),
    ?assertEqual({pong, ok}, ?LIB:peer_call(P2, ?LIB, ping_and_echo, [CNode, second_life])),
    ?assertEqual(ok, ?LIB:echo(CNode, ct_node_still_served)).

%% The C-node connects out: echo asked (from this node) to reply to a pid
%% on node B, which the C-node has never talked to; B receives the reply
%% and the new connection works both ways.
connects_out(Config) ->
    K = ?config(keeper, Config),
    CNode = ?config(cnode_node, Config),
    B = ?LIB:keep(K, {peer, ?LIB:start_peer(?LIB:unique_name(target))}),
    BNode = ?LIB:peer_node(B),
    Collector = ?LIB:peer_call(B, ?LIB, start_collector, []),
    ?assertNot(lists:member(CNode, ?LIB:peer_call(B, erlang, nodes, [connected]))),
    pong = net_adm:ping(CNode),
    {echo, CNode} ! {echo, Collector, {hello_from, node()}},
    ?assertMatch({ok, [{hello_from, _}]},
                 ?LIB:peer_call(B, ?LIB, wait_collected,
                                [Collector, {hello_from, node()}, ?WAIT])),
    ?assert(lists:member(CNode, ?LIB:peer_call(B, erlang, nodes, [hidden]))),
    %% This node never talked to B itself.
    ?assertNot(lists:member(BNode, nodes(connected))),
    ?assertEqual(ok, ?LIB:peer_call(B, ?LIB, echo, [CNode, back_from_b])).

%%--------------------------------------------------------------------
%% shutdown
%%--------------------------------------------------------------------

%% SIGTERM: a monitor_node gets nodedown promptly (the C-node closes its
%% connections rather than letting them time out), the program exits with
%% status 0 and epmd no longer lists it.
sigterm_graceful(Config) ->
    C = ?config(cnode, Config),
    CNode = ?config(cnode_node, Config),
    Name = maps:get(name, C),
    pong = net_adm:ping(CNode),
    ?assert(lists:member(Name, ?LIB:epmd_names())),
    true = erlang:monitor_node(CNode, true),
    ok = ?LIB:term_cnode(C),
    receive {nodedown, CNode} -> ok
    after ?WAIT -> ct:fail(no_prompt_nodedown)
    end,
    ?assertEqual({ok, 0}, ?LIB:wait_cnode_exit(C, ?WAIT)),
    ?assertEqual(ok, ?LIB:wait_until(
                       fun() -> not lists:member(Name, ?LIB:epmd_names()) end, ?WAIT)),
    ?assertNot(lists:member(CNode, nodes(connected))).
