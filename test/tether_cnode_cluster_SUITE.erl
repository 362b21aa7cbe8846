%% A tether cluster of three BEAM nodes (OTP peers running the tether
%% application) and one real C-node (priv/tether_cnode and its `tether'
%% process): join in both directions, agreement on members, partitions in
%% drop and defer mode, SIGKILL of the C-node and its restart.
%%
%% The C-node is asked with stock OTP only: gen_server:call({tether,
%% CNode}, Request) answers what tether's facade answers on a BEAM node
%% (members, {partition, A, B, Mode}, {heal, Ref}, heal_all, partitions,
%% info). Nothing waits a fixed time as an assertion: conditions are
%% polled up to a generous deadline, and "a lease has passed" is measured
%% in engine events (heartbeats skipped), not in sleeps.
%%
%% Run: epmd -address 127.0.0.1 -port 14396 & EPMD_PID=$!;
%% export ERL_EPMD_PORT=14396 ERL_EPMD_ADDRESS=127.0.0.1;
%% ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}" rebar3 ct
%% --name tether_ct@127.0.0.1 --setcookie tether_ct
%% --suite test/tether_cnode_cluster_SUITE; kill $EPMD_PID
-module(tether_cnode_cluster_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0]).
-export([cnode_joins_with_flag/1, beam_joins_cnode/1, drop_partition/1,
         defer_partition/1, sigkill_removes_cnode_and_restart_rejoins/1,
         bad_input_is_counted/1, leave_and_join_again/1,
         shared_cluster_secret/1, identity_and_trusted_keys/1,
         cnode_name_in_registry/1]).

-define(HB_MS, 200).
-define(TTL_MS, 2000).
-define(TIMING, #{heartbeat_ms => ?HB_MS, ttl_ms => ?TTL_MS}).
-define(WAIT_MS, 30000).
-define(CALL_MS, 10000).

suite() ->
    [{ct_hooks, [tether_case_hook]}].

all() ->
    [cnode_joins_with_flag, beam_joins_cnode, drop_partition,
     defer_partition, sigkill_removes_cnode_and_restart_rejoins,
     bad_input_is_counted, leave_and_join_again, shared_cluster_secret,
     identity_and_trusted_keys, cnode_name_in_registry].

%%% Cases

%% A C service registered in the cluster registry (--register rpctest):
%% every BEAM member finds it with tether:whereis_name/1 and calls it
%% through {via, tether, rpctest}; when the service exits its name leaves
%% every member's table; when the C-node is killed with SIGKILL its other
%% name (the built-in echo, --register echo) goes too.
cnode_name_in_registry(Config) ->
    [B1 | _] = Bs = cluster(3, []),
    Plugin = tether_test_lib:rpctest_plugin(),
    C = start_cnode(Config, [B1], tether_test_lib:unique_name(tcc),
                    ["--load", Plugin, "--register", "rpctest",
                     "--register", "echo"]),
    CN = tether_test_lib:cnode_node(C),
    wait_all_members([CN | Bs], lists:sort([CN | Bs])),
    [wait_until(fun() -> call(N, tether, whereis_name, [rpctest]) end,
                fun(P) -> is_pid(P) andalso node(P) =:= CN end) || N <- Bs],
    ?assertEqual(hello, call(B1, gen_server, call,
                             [{via, tether, rpctest}, {echo, hello}])),
    ?assert(lists:member(rpctest, call(B1, tether, registered_names, []))),
    %% sync/0 asks the C-node too, which answers (well before the 5 s
    %% after which sync gives up on a silent member).
    {SyncUs, ok} = timer:tc(fun() -> call(B1, tether, sync, []) end),
    ?assert(SyncUs < 4000000),
    %% The service crashes: its name leaves the registry everywhere.
    ?assertExit({exception, {bye, _}},
                call(B1, gen_server, call,
                     [{via, tether, rpctest}, {crash, bye}])),
    [wait_until(fun() -> call(N, tether, whereis_name, [rpctest]) end,
                fun(P) -> P =:= undefined end) || N <- Bs],
    [wait_until(fun() -> call(N, tether, whereis_name, [echo]) end,
                fun(P) -> is_pid(P) andalso node(P) =:= CN end) || N <- Bs],
    {ok, _} = tether_test_lib:kill_cnode(C),
    ok = tether_test_lib:forget_cnodes(),
    [wait_until(fun() -> call(N, tether, whereis_name, [echo]) end,
                fun(P) -> P =:= undefined end) || N <- Bs].

%% The C-node started with --join B1 joins the cluster of three BEAM
%% nodes; all four agree on the sorted member list.
cnode_joins_with_flag(Config) ->
    [B1 | _] = Bs = cluster(3, []),
    C = start_cnode(Config, [B1]),
    CN = tether_test_lib:cnode_node(C),
    All = lists:sort([CN | Bs]),
    wait_all_members([CN | Bs], All),
    %% The C-node's view through the C API's twin, and its info.
    ?assertMatch(#{name := CN, left := false, join_pending := false},
                 cinfo(CN)).

%% A BEAM node joins the C-node (tether:join(CNode)); the other BEAM
%% nodes join that node; all four agree.
beam_joins_cnode(Config) ->
    C = start_cnode(Config, []),
    CN = tether_test_lib:cnode_node(C),
    ?assertEqual([CN], cmembers(CN)),
    [B1, B2, B3] = Bs = start_nodes(3),
    ok = call(B1, tether, join, [CN]),
    wait_all_members([CN, B1], lists:sort([CN, B1])),
    ok = call(B2, tether, join, [B1]),
    ok = call(B3, tether, join, [CN]),
    wait_all_members([CN | Bs], lists:sort([CN | Bs])).

%% drop between {C-node, B1} and {B2, B3}, injected on B2: each side's
%% members exclude the other side; heal from the C-node restores all.
drop_partition(Config) ->
    {CN, [B1, B2, B3] = Bs} = four(Config),
    {ok, Ref} = call(B2, tether, partition, [[CN, B1], [B2, B3], drop]),
    wait_all_members([CN, B1], lists:sort([CN, B1])),
    wait_all_members([B2, B3], lists:sort([B2, B3])),
    %% The C-node lists it, active, as the BEAM nodes do.
    wait_until(fun() -> cpartitions(CN) end,
               fun([#{ref := R, mode := drop, healed := false, a := A,
                      b := B}]) ->
                       R =:= Ref andalso lists:sort(A) =:= lists:sort([CN, B1])
                           andalso lists:sort(B) =:= lists:sort([B2, B3]);
                  (_) -> false
               end),
    ok = ccall(CN, {heal, Ref}),
    wait_all_members([CN | Bs], lists:sort([CN | Bs])),
    [wait_until(fun() -> call(N, tether, partitions, []) end,
                fun([#{ref := R, healed := true}]) -> R =:= Ref;
                   (_) -> false end) || N <- Bs],
    ?assertMatch([#{ref := Ref, healed := true}], cpartitions(CN)).

%% defer, injected on the C-node: membership holds well past a lease on
%% every member; heal_all from the C-node ends it everywhere.
defer_partition(Config) ->
    {CN, [B1, B2, B3] = Bs} = four(Config),
    All = lists:sort([CN | Bs]),
    {ok, Ref} = ccall(CN, {partition, [CN, B1], [B2, B3], defer}),
    [wait_until(fun() -> call(N, tether, partitions, []) end,
                fun(Ps) -> [R || #{ref := R, healed := false} <- Ps] =:= [Ref]
                end) || N <- Bs],
    #{stats := #{part_skipped := Skipped0}} = cinfo(CN),
    %% More than two leases' worth of heartbeat rounds (the C-node skips
    %% two heartbeats, to B2 and B3, per round).
    Rounds = 2 * (?TTL_MS div ?HB_MS) + 2,
    wait_until(fun() -> cinfo(CN) end,
               fun(#{stats := #{part_skipped := S}}) ->
                       S >= Skipped0 + 2 * Rounds
               end),
    ?assertEqual(All, cmembers(CN)),
    [?assertEqual(All, call(N, tether, members, [])) || N <- Bs],
    ok = ccall(CN, heal_all),
    [wait_until(fun() -> call(N, tether, partitions, []) end,
                fun([#{healed := H}]) -> H; (_) -> false end) || N <- Bs],
    ?assertMatch([#{ref := Ref, healed := true}], cpartitions(CN)),
    wait_all_members([CN | Bs], All).

%% SIGKILL of the C-node: every BEAM member drops it (the connection
%% loss reports it down; the lease would within TTL_MS). A C-node
%% restarted with the same name and --join is a member again, with a
%% new incarnation.
sigkill_removes_cnode_and_restart_rejoins(Config) ->
    {CN, [B1 | _] = Bs} = four(Config),
    #{incarnation := Inc1} = cinfo(CN),
    [C] = tether_test_lib:case_cnodes(),
    T0 = erlang:monotonic_time(millisecond),
    {ok, _} = tether_test_lib:kill_cnode(C),
    wait_all_members(Bs, lists:sort(Bs)),
    ct:pal("C-node dropped by every BEAM member after ~b ms (TTL ~b ms)",
           [erlang:monotonic_time(millisecond) - T0, ?TTL_MS]),
    ok = tether_test_lib:forget_cnodes(),
    C2 = start_cnode(Config, [B1], maps:get(name, C)),
    ?assertEqual(CN, tether_test_lib:cnode_node(C2)),
    wait_all_members([CN | Bs], lists:sort([CN | Bs])),
    #{incarnation := Inc2} = cinfo(CN),
    ?assert(Inc2 > Inc1).

%% Malformed tuples, non-binaries and garbage bytes sent to the C-node's
%% `tether' are counted and ignored; it stays a member and answers.
bad_input_is_counted(Config) ->
    {CN, Bs} = four(Config),
    #{bad_input := Bad0, stats := #{recv_garbage := G0}} = cinfo(CN),
    Dest = {tether, CN},
    Bad = [hello, {'$tether'}, {'$tether', hd(Bs), not_a_binary},
           {'$tether', "not an atom", <<1, 2, 3>>},
         {'$tether', nodename_without_host, <<1>>},
         {'$tether', hd(Bs), <<1:3>>},
         {'$tether_restart', 42},
         {'$tether_restart', a, b, c},
         <<0, 1, 2>>, [1, 2, 3], 3.14, make_ref(), self()],
    [Dest ! M || M <- Bad],
    %% Garbage bytes from a member's name: refused by the engine.
    Dest ! {'$tether', hd(Bs), <<"garbage bytes, not an envelope">>},
    Dest ! {'$tether', hd(Bs), <<>>},
    #{bad_input := Bad1, stats := #{recv_garbage := G1}} = cinfo(CN),
    ?assertEqual(Bad0 + length(Bad), Bad1),
    ?assert(G1 >= G0 + 2),
    %% Unknown calls answer an error; the process carries on.
    ?assertEqual({error, invalid}, ccall(CN, no_such_request)),
    ?assertEqual({error, invalid}, ccall(CN, {partition, [], [], drop})),
    ?assertEqual({error, not_found}, ccall(CN, {heal, nonsense})),
    wait_all_members([CN | Bs], lists:sort([CN | Bs])).

%% The C-node leaves (every member drops it) and joins again as a new
%% incarnation.
leave_and_join_again(Config) ->
    {CN, [B1 | _] = Bs} = four(Config),
    #{incarnation := Inc1} = cinfo(CN),
    ok = ccall(CN, leave),
    ?assertEqual([], cmembers(CN)),
    wait_all_members(Bs, lists:sort(Bs)),
    ok = ccall(CN, {join, B1}),
    wait_all_members([CN | Bs], lists:sort([CN | Bs])),
    #{incarnation := Inc2} = cinfo(CN),
    ?assert(Inc2 > Inc1).

%% The same 32-byte secret file on both sides (application env
%% cluster_secret_file, flag --cluster-secret-file): the C-node joins. A
%% C-node with another secret gets no session: it stays alone and the
%% cluster does not list it.
shared_cluster_secret(Config) ->
    Dir = ?config(priv_dir, Config),
    F = tether_test_lib:write_key_file(Dir, "shared.secret",
                                       crypto:strong_rand_bytes(32)),
    Other = tether_test_lib:write_key_file(Dir, "other.secret",
                                           crypto:strong_rand_bytes(32)),
    [B1 | _] = Bs = cluster(2, [{cluster_secret_file, F}]),
    C = start_cnode(Config, [B1], tether_test_lib:unique_name(tcc),
                    ["--cluster-secret-file", F]),
    CN = tether_test_lib:cnode_node(C),
    wait_all_members([CN | Bs], lists:sort([CN | Bs])),
    C2 = start_cnode(Config, [B1], tether_test_lib:unique_name(tcc),
                     ["--cluster-secret-file", Other]),
    CN2 = tether_test_lib:cnode_node(C2),
    %% Whichever side sends the hello, the other rejects its signature.
    ok = tether_test_lib:wait_rejected([CN2 | Bs], ?WAIT_MS),
    ?assertEqual([CN2], cmembers(CN2)),
    [?assertEqual(lists:sort([CN | Bs]), call(B, tether, members, []))
     || B <- Bs],
    ?assertEqual(lists:sort([CN | Bs]), cmembers(CN)).

%% Explicit identities: the C-node's seed (--identity) and the BEAM
%% node's (identity_file), each trusting the other's public key (--trust
%% NODE=PUBFILE, trusted_keys). libsodium and OTP's crypto derive the
%% same public key from a seed.
identity_and_trusted_keys(Config) ->
    Dir = ?config(priv_dir, Config),
    Name = tether_test_lib:unique_name(tcc),
    CN = list_to_atom(Name ++ "@127.0.0.1"),
    {CSeedF, _, CPubF} = tether_test_lib:write_identity(Dir, "cnode"),
    {BSeedF, _, BPubF} = tether_test_lib:write_identity(Dir, "beam"),
    [B1] = start_nodes(1, [{identity_file, BSeedF},
                           {trusted_keys, [{CN, CPubF}]}]),
    C = start_cnode(Config, [B1], Name,
                    ["--identity", CSeedF,
                     "--trust", atom_to_list(B1) ++ "=" ++ BPubF]),
    ?assertEqual(CN, tether_test_lib:cnode_node(C)),
    wait_all_members([CN, B1], lists:sort([CN, B1])).

%%% Helpers

%% Three clustered BEAM nodes and a C-node joined by --join.
four(Config) ->
    tether_test_lib:start_four(Config, node_opts([]), tcc, [], ?WAIT_MS).

start_cnode(Config, Seeds) ->
    start_cnode(Config, Seeds, tether_test_lib:unique_name(tcc)).

%% Starts a C-node (short heartbeat and lease, joining Seeds), retrying
%% a few times when its name is still registered in epmd (a restart
%% right after SIGKILL).
start_cnode(Config, Seeds, Name) ->
    start_cnode(Config, Seeds, Name, []).

start_cnode(Config, Seeds, Name, Extra) ->
    tether_test_lib:start_seeded_cnode(Config, ?TIMING, Seeds, Name, Extra).

start_nodes(N) ->
    start_nodes(N, []).

%% Starts N peers (linked to the case) with tether running (heartbeat
%% HB_MS, lease TTL_MS, plus the application env Env).
start_nodes(N, Env) ->
    tether_test_lib:start_tether_nodes(N, node_opts(Env)).

%% start_nodes/2, the nodes joined together.
cluster(N, Env) ->
    tether_test_lib:start_cluster(N, node_opts(Env), ?WAIT_MS).

node_opts(Env) ->
    #{prefix => tether_ccl, link => true,
      env => [{heartbeat_ms, ?HB_MS}, {ttl_ms, ?TTL_MS} | Env]}.

call(Node, M, F, A) ->
    erpc:call(Node, M, F, A, ?CALL_MS).

%% A call to the C-node's tether process.
ccall(CNode, Req) ->
    gen_server:call({tether, CNode}, Req, ?CALL_MS).

cmembers(CNode) -> ccall(CNode, members).
cinfo(CNode) -> ccall(CNode, info).
cpartitions(CNode) -> ccall(CNode, partitions).

%% Every node of Nodes (BEAM or the C-node) lists exactly Expected.
wait_all_members(Nodes, Expected) ->
    tether_test_lib:wait_members(Nodes, Expected, ?WAIT_MS).

%% Polls Get until Check holds, failing after WAIT_MS with the last value.
wait_until(Get, Check) ->
    tether_test_lib:poll(Get, Check, ?WAIT_MS).
