%% Leader election with fencing tokens, with three BEAM nodes (OTP peers
%% running tether) and a real C-node (priv/tether_cnode campaigning with
%% --lead, asked with gen_server:call({tether, CNode}, {leader, Name})
%% and friends, stock OTP only):
%%
%% - candidates on all four: one leader that every member names, the
%%   same candidate list everywhere, concurrent lead/2 calls end with one
%%   leader whose fence exceeds every fence granted before it;
%% - SIGKILL of the leader's node (the C-node, then a BEAM node): the next
%%   candidate is elected within the TTL plus a heartbeat or so, with a
%%   higher fence; resign hands over at once (no `revoked' to the
%%   resigner); a higher priority takes over;
%% - a drop partition elects one leader per side; a fenced checker
%%   resource (accepts a write only with a fence above the last it
%%   accepted) takes both sides' writes, and after the heal the leader's
%%   fresh fence ({elected, NewFence} though it led already) is accepted;
%% - quorum mode with four voters: a 2|2 partition leaves no leader (lead
%%   and fence answer no_quorum), a 3|1 partition elects on the three
%%   side within two leases; never two leaders at any sampled instant,
%%   fences growing across partitions and heals;
%% - bad input answers clear errors and crashes nothing.
%%
%% Run alone: scripts/ct.sh --suite test/tether_election_SUITE
-module(tether_election_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0]).
-export([candidates_on_all_four/1, kill_leader_nodes/1,
         resign_hands_over/1, priority_takes_over/1,
         drop_partition_fenced_checker/1, quorum_partitions/1,
         bad_input/1, fence_follows_a_fresh_engine/1]).
%% Run on the peers.
-export([start_candidate/3, candidate_init/4]).

-define(HB_MS, 200).
-define(TTL_MS, 1000).
-define(TIMING, #{heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS}).
-define(LEASE_MS, 1000).
-define(WAIT_MS, 30000).
-define(CALL_MS, 10000).
-define(NAME, {svc, <<"singleton">>}).

suite() ->
    [{ct_hooks, [tether_case_hook]}].

all() ->
    [candidates_on_all_four, kill_leader_nodes, resign_hands_over,
     priority_takes_over, drop_partition_fenced_checker, quorum_partitions,
     bad_input, fence_follows_a_fresh_engine].

%%% Cases

%% Candidates on the three BEAM nodes (started concurrently) and the
%% C-node (--lead): one leader, named alike by all four, the lowest node
%% name at equal priority; candidates/1 lists all four everywhere; every
%% fence granted during the race is below the winner's.
candidates_on_all_four(Config) ->
    {CN, Bs} = four(Config, cnode_lead(lead, 0)),
    Col = tether_test_lib:start_collector(),
    Parent = self(),
    _ = [spawn_link(fun() -> Parent ! {started, B, start(B, lead, #{}, Col)}
                    end) || B <- Bs],
    Cands = [receive {started, B, P} -> {B, P} end || B <- Bs],
    [?assertMatch({ok, _}, R) || {_, {_, R}} <- Cands],
    All = lists:sort([CN | Bs]),
    Winner = hd(All),
    {Winner, _} = wait_leader(CN, Bs, lead),
    Expected = [{N, 0} || N <- All],
    [?assertEqual(Expected, call(B, tether, candidates, [lead])) || B <- Bs],
    ?assertEqual(Expected, ccall(CN, {candidates, lead})),
    Fence = leader_fence(Winner, CN, lead),
    Granted = [F || {cand, _, _, {elected, F}} <- collected(Col)]
        ++ [F || {_, {_, {ok, {leader, F}}}} <- Cands],
    ?assert(lists:all(fun(F) -> F =< Fence end, Granted)),
    %% Exactly one member says it leads.
    ?assertEqual([Winner], leaders(CN, Bs, lead)).

%% The C-node leads (priority 10); SIGKILL it: a BEAM candidate is
%% elected within TTL + a heartbeat (plus scheduling slack), with a
%% higher fence. Then SIGKILL that node: the next one likewise.
kill_leader_nodes(Config) ->
    {CN, Bs} = four(Config, cnode_lead(lead, 10)),
    Col = tether_test_lib:start_collector(),
    _ = [start(B, lead, #{}, Col) || B <- Bs],
    {CN, _} = wait_leader(CN, Bs, lead),
    {ok, F0} = ccall(CN, {fence, lead}),
    ?assert(ccall(CN, {is_leader, lead})),
    [C] = tether_test_lib:case_cnodes(),
    T0 = erlang:monotonic_time(millisecond),
    {ok, _} = tether_test_lib:kill_cnode(C),
    ok = tether_test_lib:forget_cnodes(),
    [B1, B2, B3] = lists:sort(Bs),
    {B1, F1, T1} = wait_elected(Col, [B1]),
    ct:pal("C-node killed: ~b elected after ~b ms (ttl ~b, hb ~b)",
           [F1, T1 - T0, ?TTL_MS, ?HB_MS]),
    ?assert(F1 > F0),
    ?assert(T1 - T0 =< ?TTL_MS + ?HB_MS + 1000),
    T2 = erlang:monotonic_time(millisecond),
    ok = tether_test_lib:kill_node(B1, ?WAIT_MS),
    {B2, F2, T3} = wait_elected(Col, [B2]),
    ct:pal("BEAM leader killed: ~b elected after ~b ms", [F2, T3 - T2]),
    ?assert(F2 > F1),
    ?assert(T3 - T2 =< ?TTL_MS + ?HB_MS + 1000),
    {B2, _} = wait_leader(none, [B2, B3], lead).

%% The leader resigns: the next is elected at once (well within a
%% heartbeat or two), with a higher fence; the resigner hears nothing.
resign_hands_over(Config) ->
    {CN, Bs} = four(Config, cnode_lead(lead, -1)),
    Col = tether_test_lib:start_collector(),
    Cands = maps:from_list([{B, element(1, start(B, lead, #{}, Col))}
                            || B <- Bs]),
    [B1, B2, _] = lists:sort(Bs),
    {B1, _} = wait_leader(CN, Bs, lead),
    {B1, F1, _} = wait_elected(Col, [B1]),
    T0 = erlang:monotonic_time(millisecond),
    ?assertEqual(ok, cand_cmd(maps:get(B1, Cands), resign)),
    {B2, F2, T1} = wait_elected(Col, [B2]),
    ct:pal("resign -> elected in ~b ms", [T1 - T0]),
    ?assert(F2 > F1),
    ?assert(T1 - T0 =< 2 * ?HB_MS + 500),
    ?assertEqual([], [E || {cand, N, _, revoked} = E <- collected(Col),
                           N =:= B1]),
    ?assertNot(call(B1, tether, is_leader, [lead])),
    ?assertEqual({error, not_leader}, call(B1, tether, fence, [lead])),
    ?assertEqual({error, not_candidate},
                 cand_cmd(maps:get(B1, Cands), resign)),
    %% The resigner may lead again later: it is a plain candidate anew.
    ?assertMatch({ok, follower},
                 cand_cmd(maps:get(B1, Cands), {lead, #{priority => -5}})),
    {B2, _} = wait_leader(CN, Bs, lead).

%% A candidate of higher priority joins: it takes over, the old leader
%% is told `revoked', and the new fence is higher. Its death hands the
%% leadership back.
priority_takes_over(Config) ->
    {CN, Bs} = four(Config, cnode_lead(lead, -1)),
    [B1, _, B3] = lists:sort(Bs),
    Col = tether_test_lib:start_collector(),
    _ = start(B1, lead, #{}, Col),
    {B1, F1, _} = wait_elected(Col, [B1]),
    {High, _} = start(B3, lead, #{priority => 5}, Col),
    {B3, F2, _} = wait_elected(Col, [B3]),
    ?assert(F2 > F1),
    wait_until(fun() -> [E || {cand, N, _, revoked} = E <- collected(Col),
                              N =:= B1] end,
               fun(Es) -> length(Es) =:= 1 end),
    ?assertEqual([{B3, 5}, {B1, 0}, {CN, -1}],
                 call(B1, tether, candidates, [lead])),
    ?assertEqual([{B3, 5}, {B1, 0}, {CN, -1}], ccall(CN, {candidates, lead})),
    Seen = length(collected(Col)),
    exit_candidate(High),
    {B1, F3, _} = wait_elected_after(Col, [B1], Seen),
    ?assert(F3 > F2),
    {B1, _} = wait_leader(CN, Bs, lead).

%% Default mode under a drop partition {C-node, B1} | {B2, B3}: each side
%% elects its own leader and both write to the checker; after the heal
%% the overall winner (B1, already leading its side) is told
%% {elected, NewFence} above both sides' fences, and its write is
%% accepted. A defer partition changes nothing meanwhile.
drop_partition_fenced_checker(Config) ->
    {CN, Bs0} = four(Config, cnode_lead(lead, -1)),
    [B1, B2, B3] = Bs = lists:sort(Bs0),
    Col = tether_test_lib:start_collector(),
    Cands = maps:from_list([{B, element(1, start(B, lead, #{}, Col))}
                            || B <- Bs]),
    Checker = spawn_link(fun() -> checker(0, []) end),
    {B1, _} = wait_leader(CN, Bs, lead),
    {ok, Defer} = call(B2, tether, partition, [[CN, B1], [B2, B3], defer]),
    timer:sleep(?TTL_MS + 2 * ?HB_MS),
    ?assertEqual([B1], leaders(CN, Bs, lead)),
    ok = call(B2, tether, heal, [Defer]),
    {ok, Ref} = call(B2, tether, partition, [[CN, B1], [B2, B3], drop]),
    {B2, FB2, _} = wait_elected(Col, [B2]),
    wait_until(fun() -> leaders(CN, Bs, lead) end,
               fun(L) -> L =:= [B1, B2] end),
    {ok, FB1} = call(B1, tether, fence, [lead]),
    ?assertEqual({B1, FB1}, wait_side_leader(B1, lead)),
    ?assertEqual({ok, B1}, leader_node(CN, lead)),
    ?assertEqual({ok, B2}, leader_node(B3, lead)),
    %% Both sides write, in fence order.
    [{_, Lo}, {_, Hi}] = lists:keysort(2, [{B1, FB1}, {B2, FB2}]),
    ?assertEqual({accepted, Lo}, write(Checker, Lo)),
    ?assertEqual({accepted, Hi}, write(Checker, Hi)),
    ok = call(B1, tether, heal, [Ref]),
    Seen = length(collected(Col)),
    {B1, _, _} = wait_elected_after(Col, [B1], Seen),
    {B1, _} = wait_leader(CN, Bs, lead),
    %% The members come back one by one and the leader may mint again for
    %% each: its fence is the last {elected, F} it was told.
    {{ok, FNew}, FNew} =
        wait_until(fun() -> {cand_cmd(maps:get(B1, Cands), fence),
                             last_elected(Col, B1, Seen)} end,
                   fun({{ok, F}, L}) -> F =:= L; (_) -> false end),
    ?assert(FNew > max(FB1, FB2)),
    ?assertEqual({accepted, FNew}, write(Checker, FNew)),
    %% The old leader of the other side is refused.
    ?assertMatch({rejected, _}, write(Checker, FB2)),
    ?assertEqual([B1], leaders(CN, Bs, lead)).

%% Quorum mode, voters = the four nodes: one leader; under 2|2 no side
%% has a majority (lead/fence answer no_quorum, nobody leads); after the
%% heal one leader; under 3|1 with the leader alone, the three elect
%% within two leases and the lone one steps down. Sampled throughout: at
%% most one node says it leads. Fences grow across it all.
quorum_partitions(Config) ->
    Bs0 = tether_test_lib:start_cluster(3, node_opts([]), ?WAIT_MS),
    [B1, B2, B3] = Bs = lists:sort(Bs0),
    CName = tether_test_lib:unique_name(tel),
    CN = list_to_atom(CName ++ "@127.0.0.1"),
    Voters = lists:sort([CN | Bs]),
    _ = start_cnode(Config, [B1], CName,
                    cnode_lead(q, 0) ++ ["--election-lease-ms",
                                          integer_to_list(?LEASE_MS)]
                    ++ lists:append([["--election-voter", atom_to_list(V)]
                                     || V <- Voters])),
    wait_all_members([CN | Bs], Voters),
    Opts = #{quorum => true, voters => Voters},
    Col = tether_test_lib:start_collector(),
    _ = [start(B, q, Opts, Col) || B <- Bs],
    Sampler = start_sampler(CN, Bs, q),
    Winner = hd(Voters),
    {Winner, _} = wait_leader(CN, Bs, q),
    F0 = leader_fence(Winner, CN, q),
    %% 2|2: nobody leads within a lease; no_quorum on both sides.
    {ok, R1} = call(B2, tether, partition, [[CN, B1], [B2, B3], drop]),
    wait_until(fun() -> leaders(CN, Bs, q) end, fun(L) -> L =:= [] end),
    [?assertEqual({error, no_quorum}, call(B, tether, fence, [q])) || B <- Bs],
    ?assertEqual({error, no_quorum}, ccall(CN, {fence, q})),
    ?assertEqual({error, no_quorum},
                 call(B2, tether, lead, [q2, Opts])),
    ok = call(B2, tether, heal, [R1]),
    wait_until(fun() -> leaders(CN, Bs, q) end, fun(L) -> L =:= [Winner] end),
    {Winner, _} = wait_leader(CN, Bs, q),
    F1 = leader_fence(Winner, CN, q),
    ?assert(F1 > F0),
    %% 3|1, the leader alone.
    Others = Voters -- [Winner],
    T0 = erlang:monotonic_time(millisecond),
    {ok, R2} = call(hd(Bs -- [Winner]), tether, partition,
                    [[Winner], Others, drop]),
    Next = hd(Others),
    wait_until(fun() -> leaders(CN, Bs, q) end, fun(L) -> L =:= [Next] end),
    T1 = erlang:monotonic_time(millisecond),
    ct:pal("3|1: ~p elected ~b ms after the partition (lease ~b)",
           [Next, T1 - T0, ?LEASE_MS]),
    ?assert(T1 - T0 =< 2 * ?LEASE_MS + 1000),
    F2 = leader_fence(Next, CN, q),
    ?assert(F2 > F1),
    ?assertEqual({error, no_quorum}, fence_of(Winner, CN, q)),
    ok = call(Next, tether, heal, [R2]),
    %% The best candidate is back: the leadership goes back to it.
    wait_until(fun() -> leaders(CN, Bs, q) end, fun(L) -> L =:= [Winner] end),
    {Winner, _} = wait_leader(CN, Bs, q),
    ?assert(leader_fence(Winner, CN, q) > F2),
    Samples = stop_sampler(Sampler),
    ct:pal("~b samples of who leads", [length(Samples)]),
    ?assert(length(Samples) > 20),
    ?assertEqual([], [S || S <- Samples, length(S) > 1]).

%% Bad input: clear errors, the caller and the tether server unharmed;
%% the C-node answers {error, invalid} and counts nothing against us.
bad_input(Config) ->
    {CN, [B | _]} = four(Config, []),
    Server = call(B, erlang, whereis, [tether]),
    [?assertEqual(Expect, call(B, tether, F, A))
     || {Expect, F, A} <-
            [{{error, {bad_options, x}}, lead, [n, x]},
             {{error, {bad_option, {prio, 1}}}, lead, [n, #{prio => 1}]},
             {{error, {bad_priority, high}}, lead, [n, #{priority => high}]},
             {{error, {bad_priority, 1 bsl 64}},
              lead, [n, #{priority => 1 bsl 64}]},
             {{error, {bad_quorum, yes}}, lead, [n, #{quorum => yes}]},
             {{error, {bad_voters, [<<"a">>]}},
              lead, [n, #{quorum => true, voters => [<<"a">>]}]},
             {{error, {bad_voters, a}}, lead, [n, #{quorum => true,
                                                    voters => a}]},
             {{error, no_voters}, lead, [n, #{quorum => true}]},
             {{error, voters_without_quorum}, lead, [n, #{voters => [a@b]}]},
             {{error, not_candidate}, resign, [never_led]},
             {{error, no_leader}, leader, [never_led]},
             {false, is_leader, [never_led]},
             {{error, not_leader}, fence, [never_led]},
             {[], candidates, [never_led]}]],
    %% Twice from one node: already_candidate; voter sets disagree:
    %% voters_mismatch.
    Col = tether_test_lib:start_collector(),
    {P, {ok, _}} = start(B, twice, #{}, Col),
    ?assertEqual({error, already_candidate}, cand_cmd(P, {lead, #{}})),
    [B2 | _] = lists:sort(ccall(CN, members)) -- [CN, B],
    Vs = ccall(CN, members),
    {_, {ok, _}} = start(B, qv, #{quorum => true, voters => Vs}, Col),
    wait_until(fun() -> call(B2, tether, candidates, [qv]) end,
               fun(L) -> L =/= [] end),
    ?assertMatch({_, {error, voters_mismatch}},
                 start(B2, qv, #{quorum => true, voters => tl(Vs)}, Col)),
    %% The C-node: a name that is no term, unknown requests.
    [?assertEqual({error, invalid}, ccall(CN, Req))
     || Req <- [{leader, fun() -> ok end}, {fence, fun() -> ok end},
                {leader, a, b}, {resign_everything}]],
    ?assertEqual(Server, call(B, erlang, whereis, [tether])),
    ?assert(is_list(ccall(CN, members))).

%%% The candidate process (runs on a peer)

%% Starts a candidate for Name with lead/2's Opts, reporting to
%% Collector as {cand, Node, Pid, Event}; returns {Pid, LeadResult}.
start_candidate(Name, Opts, Collector) ->
    Ref = make_ref(),
    Parent = self(),
    Pid = spawn(?MODULE, candidate_init, [Name, Opts, Collector,
                                          {Parent, Ref}]),
    receive {Ref, R} -> {Pid, R} end.

candidate_init(Name, Opts, Collector, {Parent, Ref}) ->
    R = tether:lead(Name, Opts),
    Collector ! {cand, node(), self(), {lead, R}},
    case R of
        {ok, {leader, F}} -> Collector ! {cand, node(), self(), {elected, F}};
        _ -> ok
    end,
    Parent ! {Ref, R},
    candidate_loop(Name, Collector).

candidate_loop(Name, Collector) ->
    receive
        {tether_leader, Name, Event} ->
            Collector ! {cand, node(), self(), Event},
            candidate_loop(Name, Collector);
        {cmd, From, Ref, resign} ->
            From ! {Ref, tether:resign(Name)},
            candidate_loop(Name, Collector);
        {cmd, From, Ref, fence} ->
            From ! {Ref, tether:fence(Name)},
            candidate_loop(Name, Collector);
        {cmd, From, Ref, {lead, Opts}} ->
            From ! {Ref, tether:lead(Name, Opts)},
            candidate_loop(Name, Collector);
        {cmd, _From, _Ref, exit} ->
            exit(normal)
    end.

%% fence/1 and is_leader/1 of an atom are served from a per-thread
%% memory of (engine, atom) -> name: after tether restarts on the node (a
%% fresh engine) they answer for the fresh engine, never the old one.
fence_follows_a_fresh_engine(_Config) ->
    [B] = tether_test_lib:start_cluster(1, node_opts([]), ?WAIT_MS),
    Col = tether_test_lib:start_collector(),
    {_, {ok, {leader, F}}} = start(B, fresh, #{}, Col),
    ?assertEqual({ok, F}, call(B, tether, fence, [fresh])),
    ?assert(call(B, tether, is_leader, [fresh])),
    ok = call(B, application, stop, [tether]),
    ok = call(B, application, start, [tether]),
    ?assertEqual({error, not_leader}, call(B, tether, fence, [fresh])),
    ?assertNot(call(B, tether, is_leader, [fresh])),
    {_, {ok, {leader, F2}}} = start(B, fresh, #{}, Col),
    ?assertEqual({ok, F2}, call(B, tether, fence, [fresh])).

%%% Helpers

start(Node, Name, Opts, Col) ->
    call(Node, ?MODULE, start_candidate, [Name, Opts, Col]).

cand_cmd(Pid, Cmd) ->
    Ref = make_ref(),
    Pid ! {cmd, self(), Ref, Cmd},
    receive {Ref, R} -> R after ?CALL_MS -> error({no_answer, Cmd}) end.

exit_candidate(Pid) ->
    Pid ! {cmd, self(), make_ref(), exit},
    ok.

%% The C-node's flags to campaign for the atom Name at Priority.
cnode_lead(Name, Priority) ->
    ["--lead", atom_to_list(Name), "--lead-priority",
     integer_to_list(Priority)].

collected(Col) ->
    tether_test_lib:collected(Col).

%% Waits for an {elected, F} of a candidate on one of Nodes (any
%% collected so far counts); returns {Node, F, WhenSeenMs} of the last.
wait_elected(Col, Nodes) ->
    wait_elected_after(Col, Nodes, 0).

%% The same, among the events after the first Skip ones; a fresh
%% {elected, F} only (one collected earlier does not count).
wait_elected_after(Col, Nodes, Skip) ->
    Es = wait_until(fun() -> elected(Col, Nodes, Skip) end,
                    fun(L) -> L =/= [] end),
    T = erlang:monotonic_time(millisecond),
    {N, F} = lists:last(Es),
    {N, F, T}.

%% The fence of the last {elected, F} Node's candidate was told after
%% the first Skip events, or none.
last_elected(Col, Node, Skip) ->
    case elected(Col, [Node], Skip) of
        [] -> none;
        Es -> element(2, lists:last(Es))
    end.

elected(Col, Nodes, Skip) ->
    All = collected(Col),
    New = lists:nthtail(min(Skip, length(All)), All),
    [{N, F} || {cand, N, _, {elected, F}} <- New, lists:member(N, Nodes)].

%% Waits until every reachable member names one leader (the C-node CN
%% too, unless `none'); returns {LeaderNode, LeaderPid}.
wait_leader(CN, Bs, Name) ->
    Get = fun() ->
                  Ls = [leader_node(B, Name) || B <- Bs]
                      ++ [leader_node(CN, Name) || CN =/= none],
                  {lists:usort(Ls), leaders(CN, Bs, Name)}
          end,
    {[{ok, L}], [L]} = wait_until(Get, fun({[{ok, L}], [L2]}) -> L =:= L2;
                                          (_) -> false
                                       end),
    {L, undefined}.

%% The leader as a side's member names it, and its fence.
wait_side_leader(B, Name) ->
    {ok, L} = leader_node(B, Name),
    {ok, F} = call(L, tether, fence, [Name]),
    {L, F}.

leader_node(CN, Name) when is_atom(CN) ->
    R = case is_cnode(CN) of
            true -> ccall(CN, {leader, Name});
            false -> call(CN, tether, leader, [Name])
        end,
    case R of
        {ok, N, P} when is_pid(P) -> {ok, N};
        Other -> Other
    end.

%% The members (C-node included unless `none') that say they lead.
leaders(CN, Bs, Name) ->
    lists:sort([B || B <- Bs, call(B, tether, is_leader, [Name])]
               ++ [CN || CN =/= none, ccall(CN, {is_leader, Name})]).

fence_of(Node, CN, Name) when Node =:= CN ->
    ccall(CN, {fence, Name});
fence_of(Node, _CN, Name) ->
    call(Node, tether, fence, [Name]).

leader_fence(Node, CN, Name) ->
    {ok, F} = fence_of(Node, CN, Name),
    F.

is_cnode(Node) ->
    lists:member(Node, [tether_test_lib:cnode_node(C)
                        || C <- tether_test_lib:case_cnodes()]).

%% The fenced resource: a write with a fence above the last accepted one
%% is accepted, any other refused.
checker(Last, Log) ->
    receive
        {write, F, From} when F > Last ->
            From ! {checked, {accepted, F}},
            checker(F, [F | Log]);
        {write, F, From} ->
            From ! {checked, {rejected, {F, Last}}},
            checker(Last, Log)
    end.

write(Checker, F) ->
    Checker ! {write, F, self()},
    receive {checked, R} -> R after ?CALL_MS -> error(checker) end.

%% Samples who says it leads, every 20 ms, until stopped.
start_sampler(CN, Bs, Name) ->
    Parent = self(),
    spawn_link(fun() -> sample(CN, Bs, Name, Parent, []) end).

sample(CN, Bs, Name, Parent, Acc) ->
    receive
        {stop, Ref} -> Parent ! {Ref, lists:reverse(Acc)}
    after 20 ->
            L = try leaders(CN, Bs, Name) catch _:_ -> [] end,
            sample(CN, Bs, Name, Parent, [L | Acc])
    end.

stop_sampler(S) ->
    Ref = make_ref(),
    S ! {stop, Ref},
    receive {Ref, L} -> L after ?CALL_MS -> error(sampler) end.

%% Three clustered BEAM nodes and a C-node joined by --join.
four(Config, Extra) ->
    tether_test_lib:start_four(Config, node_opts([]), tel, Extra, ?WAIT_MS).

start_cnode(Config, Seeds, Name, Extra) ->
    tether_test_lib:start_seeded_cnode(Config, ?TIMING, Seeds, Name, Extra).

node_opts(Env) ->
    #{prefix => tether_el, link => false,
      env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS},
              {election_lease_ms, ?LEASE_MS} | Env]}.

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, ?CALL_MS).

ccall(CNode, Req) ->
    gen_server:call({tether, CNode}, Req, ?CALL_MS).

wait_all_members(Nodes, Expected) ->
    tether_test_lib:wait_members(Nodes, Expected, ?WAIT_MS).

wait_until(Get, Check) ->
    tether_test_lib:poll(Get, Check, ?WAIT_MS).
