%% @doc A test kit for common_test and ExUnit suites of projects that use
%% tether: clusters of BEAM peers and C-nodes, partitions and other
%% faults, and assertions that wait until the cluster converged.
%%
%% A cluster is started by one call and stopped by one call:
%%
%% ```
%% init_per_testcase(_Case, Config) ->
%%     Cluster = tether_ct:start_cluster(Config, #{beam => 3, cnodes => 1}),
%%     [{cluster, Cluster} | Config].
%%
%% end_per_testcase(_Case, Config) ->
%%     tether_ct:stop_cluster(?config(cluster, Config)).
%%
%% conflict_after_heal(Config) ->
%%     C = ?config(cluster, Config),
%%     [A, B | _] = tether_ct:beam_nodes(C),
%%     ok = tether_ct:partition(C, [A], tether_ct:nodes(C) -- [A], drop),
%%     [PidA, PidB] = [tether_ct:call(C, N, erlang, spawn,
%%                                    [timer, sleep, [infinity]]) || N <- [A, B]],
%%     yes = tether_ct:call(C, A, tether, register_name, [x, PidA]),
%%     yes = tether_ct:call(C, B, tether, register_name, [x, PidB]),
%%     ok = tether_ct:heal(C),
%%     ok = tether_ct:assert_registry_agrees(C),
%%     ok = tether_ct:nemesis(C, [{kill, B}, {wait, 500}, {restart, B},
%%                                {random, 42, 5}]),
%%     ok = tether_ct:assert_members_agree(C).
%% '''
%%
%% In Elixir: `cluster = :tether_ct.start_cluster([], %{beam: 2})'.
%%
%% <h3>What start_cluster/2 starts</h3>
%% BEAM peers are started with OTP's `peer' module and controlled over
%% their standard input and output (`connection => standard_io'), never
%% over Erlang distribution: a partition cannot cut the test's control
%% channel, the caller need not be distributed (`Config = []' works in a
%% plain shell), and a peer halts when the process that runs the kit
%% goes away. Each peer gets the caller's code path, starts the tether
%% application and joins the first member. C-nodes (`priv/tether_cnode',
%% or the program in the option `cnode_exe') are run by a small shell
%% watchdog that kills the C-node with SIGKILL when its standard input
%% closes, that is when the BEAM that started it exits for any reason.
%% start_cluster/2 returns once every member lists every member.
%%
%% <h3>Options of the spec</h3>
%% <ul>
%% <li>`beam' (default 0), `cnodes' (default 0): how many of each.</li>
%% <li>`naming': `long' (the default: `NAME@127.0.0.1', `-name'),
%%   `{long, Host}' (`NAME@Host'; Host dotted or an address: OTP refuses
%%   `NAME@localhost' as a long name), `short' (`-sname NAME@'{@link
%%   sname_host/0}) or `ipv6' (`NAME@::1', `-proto_dist inet6_tcp', and
%%   an epmd of the cluster's own that listens on ::1 only; the C-node
%%   takes `--proto-dist inet6_tcp').</li>
%% <li>`cookie': an atom or string (default the caller's cookie when it
%%   is distributed, else a fresh random one).</li>
%% <li>`prefix': the start of every node name (default `"tether_ct"').</li>
%% <li>`code_path': directories for the peers' code path (default the
%%   caller's code path outside OTP's own directory).</li>
%% <li>`env': `[{App, Key, Value}]' set on every BEAM peer before tether
%%   starts; `node_env': `#{I => [{App, Key, Value}]}' for the I-th BEAM
%%   peer only (1-based).</li>
%% <li>`heartbeat_ms', `ttl_ms': tether's timing on every member (BEAM
%%   application environment and C-node flags).</li>
%% <li>`args': more `erl' arguments for every peer.</li>
%% <li>`plugins' (files for `--load'), `services' (`--service'),
%%   `register' (`--register'), `lead' (`--lead'), `cnode_args' (more
%%   flags): for every C-node; `cnode_opts': `#{I => #{...}}' the same
%%   keys for the I-th C-node only.</li>
%% <li>`cnode_exe': the C-node program; `log_dir': where each C-node's
%%   stderr goes (default the `priv_dir' of Config, else a temporary
%%   directory).</li>
%% <li>`epmd_port': the epmd the members use (default `$ERL_EPMD_PORT',
%%   else 4369).</li>
%% <li>`wait_ms': how long start-up and the assertions wait for the
%%   cluster to converge (default 30000).</li>
%% <li>`owner': a pid; the cluster is stopped when it exits (default: it
%%   lives until stop_cluster/1 or until the calling VM exits).</li>
%% <li>`record_reminders': `true' subscribes a recorder to the reminders
%%   of every BEAM member as tether starts there (again after a
%%   restart), for assert_fired_once/2 (default `false': a recorder is a
%%   subscriber, so reminders are never held for want of one).</li>
%% </ul>
%%
%% <h3>Errors</h3>
%% Bad use raises `error({tether_ct, Reason})' with Reason naming the
%% problem (`{bad_option, Opt}', `{unknown_node, Node}',
%% `{no_cnode_program, Path}', `{start_failed, Name, Why}',
%% `{overlapping_groups, Nodes}', ...), after stopping everything the
%% cluster had started. An assertion that fails raises
%% `error({tether_ct, {What, [{Node, WhatItSaw}]}})'.
%%
%% The lower-level functions start_peer/2 and start_cnode/1 (one node, no
%% cluster) are what tether's own test suites build on.
-module(tether_ct).
-behaviour(gen_server).
-compile({no_auto_import, [nodes/1]}).

%% Clusters.
-export([start_cluster/2, stop_cluster/1, nodes/1, beam_nodes/1, cnodes/1,
         os_pids/1, call/5]).
%% Faults.
-export([partition/4, heal/1, kill/2, stop/2, restart/2, isolate/2,
         nemesis/2]).
%% Waiting and assertions.
-export([wait_until/2, assert_members_agree/1, assert_registry_agrees/1,
         assert_single_leader/2, assert_single_leader/3,
         assert_map_converged/2, assert_fired_once/2]).
%% Run on the members.
-export([registry_snapshot/0, start_reminder_recorder/0,
         reminders_fired/1]).
%% One node at a time.
-export([start_peer/2, start_cnode/1, stop_cnode/1, kill_cnode/1,
         term_cnode/1, wait_cnode_exit/2, cnode_stdout/1, cnode_stderr/1,
         cnode_exe/0, os_pid_alive/1, signal_os_pid/2, sname_host/0,
         start_private_epmd/1, stop_private_epmd/1]).
%% gen_server.
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-export_type([cluster/0, spec/0, step/0, cnode/0, peer/0]).

%% The handle start_cluster/2 returns.
-opaque cluster() :: {tether_ct, pid()}.
%% See the module doc for the keys.
-type spec() :: #{atom() => term()}.
%% A step of nemesis/2.
-type step() :: {partition, [node()], [node()], drop | defer} | heal
              | {wait, non_neg_integer()} | {kill, node()}
              | {restart, node()} | {isolate, node()}
              | {random, integer(), non_neg_integer()}.
%% A C-node start_cnode/1 started.
-type cnode() :: #{node := node(), name := string(), os_pid := integer(),
                   owner := pid(), stderr := file:filename()}.
%% A BEAM peer start_peer/2 started.
-type peer() :: #{pid := pid(), node := node(),
                  connection := tcp | dist | standard_io}.

-define(LOOPBACK, {127, 0, 0, 1}).
-define(READY_TIMEOUT, 30000).
-define(STOP_TIMEOUT, 15000).
-define(KILL_TIMEOUT, 15000).
-define(PEER_BOOT_TIMEOUT, 60000).
-define(CALL_TIMEOUT, 30000).
-define(REPLY_TIMEOUT, 10000).
-define(LINE_MAX, 4096).
-define(WAIT_MS, 30000).
-define(LEADER_WINDOW_MS, 2000).
-define(DUPLICATE_WINDOW_MS, 500).
-define(START_TRIES, 8).
-define(SPEC_KEYS, [beam, cnodes, naming, cookie, prefix, code_path, env,
                    node_env, heartbeat_ms, ttl_ms, args, plugins, services,
                    register, lead, cnode_args, cnode_opts, cnode_exe,
                    log_dir, epmd_port, wait_ms, owner, record_reminders]).
-define(CNODE_KEYS, [plugins, services, register, lead, cnode_args]).
%% The watchdog a C-node runs under: it prints the C-node's pid, kills
%% the C-node when its own stdin closes (the BEAM that owns the port
%% exited) and exits with the C-node's status.
-define(WATCHDOG,
        "\"$0\" \"$@\" 2>>\"$TETHER_CNODE_STDERR\" </dev/null & c=$!\n"
        "echo \"tether_ct: pid $c\"\n"
        "exec 2>/dev/null\n"
        "exec 3<&0\n"
        "(while read -r _; do :; done; kill -KILL $c 2>/dev/null) <&3 &\n"
        "w=$!\n"
        "exec 3<&-\n"
        "wait $c; s=$?\n"
        "kill $w 2>/dev/null\n"
        "exit $s\n").

%%====================================================================
%% Clusters
%%====================================================================

%% @doc Starts a cluster as Spec says (see the module doc) and returns
%% once every member lists every member. Config is the common_test
%% config (its `priv_dir' keeps the C-nodes' stderr) or `[]'.
%% `start_cluster([], #{beam => 2, cnodes => 1})' starts two BEAM peers
%% running tether and one C-node, all joined. Raises
%% `error({tether_ct, Reason})' on bad use, with nothing left running.
-spec start_cluster(list(), spec()) -> cluster().
start_cluster(Config, Spec) when is_list(Config), is_map(Spec) ->
    S = check_spec(Config, Spec),
    {ok, Pid} = gen_server:start(?MODULE, S, []),
    Cluster = {tether_ct, Pid},
    case gen_server:call(Pid, start, infinity) of
        ok ->
            Cluster;
        {error, Why} ->
            ok = stop_cluster(Cluster),
            error({tether_ct, Why})
    end;
start_cluster(Config, Spec) ->
    error({tether_ct, {badarg, {Config, Spec}}}).

%% @doc Stops every peer, C-node and epmd the cluster started; `ok',
%% also when it was stopped already.
-spec stop_cluster(cluster()) -> ok.
stop_cluster({tether_ct, Pid}) ->
    try gen_server:call(Pid, stop, infinity)
    catch exit:_ -> ok
    end.

%% @doc Every member the cluster started (BEAM peers first, then
%% C-nodes), up or down.
-spec nodes(cluster()) -> [node()].
nodes(Cluster) ->
    [N || {N, _Kind, _Up} <- table(Cluster)].

%% @doc The BEAM peers the cluster started.
-spec beam_nodes(cluster()) -> [node()].
beam_nodes(Cluster) ->
    [N || {N, beam, _Up} <- table(Cluster)].

%% @doc The C-nodes the cluster started.
-spec cnodes(cluster()) -> [node()].
cnodes(Cluster) ->
    [N || {N, cnode, _Up} <- table(Cluster)].

%% @doc The OS pid of every member that is up.
-spec os_pids(cluster()) -> [{node(), integer()}].
os_pids(Cluster) ->
    ctl(Cluster, os_pids).

%% @doc Runs M:F(A) on the BEAM member Node over its control channel
%% (so it works across any partition) and returns the result; raises
%% as the call did.
-spec call(cluster(), node(), module(), atom(), [term()]) -> term().
call(Cluster, Node, M, F, A) ->
    case ctl(Cluster, {peer_of, Node}) of
        {ok, Pid} -> peer:call(Pid, M, F, A, ?CALL_TIMEOUT);
        {error, Why} -> bad_use(Cluster, Why)
    end.

%%====================================================================
%% Faults
%%====================================================================

%% @doc Injects a tether partition between GroupA and GroupB
%% (`drop' or `defer', see {@link tether:partition/3}), cluster-wide.
%% Groups must be non-empty, disjoint and made of members.
-spec partition(cluster(), [node()], [node()], drop | defer) -> ok.
partition(Cluster, A, B, Mode) ->
    ctl_ok(Cluster, {partition, A, B, Mode}).

%% @doc Heals every partition, on every member that is up.
-spec heal(cluster()) -> ok.
heal(Cluster) ->
    ctl_ok(Cluster, heal).

%% @doc Kills a member with SIGKILL (a BEAM peer or a C-node) and waits
%% until its OS process is gone.
-spec kill(cluster(), node()) -> ok.
kill(Cluster, Node) ->
    ctl_ok(Cluster, {kill, Node}).

%% @doc Stops a member the orderly way (`peer:stop/1' for a BEAM peer,
%% SIGTERM for a C-node) and waits until it is gone; restart/2 starts it
%% again.
-spec stop(cluster(), node()) -> ok.
stop(Cluster, Node) ->
    ctl_ok(Cluster, {stop, Node}).

%% @doc Starts a member again under the same name (killing it first if
%% it is up) and joins it to a member that is up; returns once it is up
%% and asked to join (assert_members_agree/1 waits for the rest: across
%% a partition the cluster converges only after the heal).
-spec restart(cluster(), node()) -> ok.
restart(Cluster, Node) ->
    ctl_ok(Cluster, {restart, Node}).

%% @doc A drop partition between Node and every other member.
-spec isolate(cluster(), node()) -> ok.
isolate(Cluster, Node) ->
    partition(Cluster, [Node], nodes(Cluster) -- [Node], drop).

%% @doc Runs a scenario, step by step: `{partition, A, B, Mode}',
%% `heal', `{wait, Ms}', `{kill, Node}', `{restart, Node}',
%% `{isolate, Node}' and `{random, Seed, Count}': Count steps drawn from
%% Seed (partitions of random halves, heals, waits, restarts of random
%% members; the last is a heal). The drawn steps are printed, so a
%% failing run replays by giving them (or the same seed) again.
%% Example: `nemesis(C, [{partition, [A], [B, Cn], defer}, {wait, 500},
%% heal, {kill, B}, {restart, B}])'.
-spec nemesis(cluster(), [step()]) -> ok.
nemesis(Cluster, Steps) when is_list(Steps) ->
    lists:foreach(fun(Step) -> step(Cluster, Step) end, Steps).

step(Cluster, {partition, A, B, Mode}) -> partition(Cluster, A, B, Mode);
step(Cluster, heal) -> heal(Cluster);
step(_Cluster, {wait, Ms}) when is_integer(Ms), Ms >= 0 -> timer:sleep(Ms);
step(Cluster, {kill, N}) -> kill(Cluster, N);
step(Cluster, {restart, N}) -> restart(Cluster, N);
step(Cluster, {isolate, N}) -> isolate(Cluster, N);
step(Cluster, {random, Seed, Count}) when is_integer(Seed), is_integer(Count),
                                          Count >= 0 ->
    Steps = random_steps(nodes(Cluster), Seed, Count),
    io:format("tether_ct:nemesis {random, ~p, ~p} runs:~n~p~n",
              [Seed, Count, Steps]),
    nemesis(Cluster, Steps);
step(Cluster, Step) ->
    bad_use(Cluster, {bad_step, Step}).

random_steps(Nodes, Seed, Count) ->
    S0 = rand:seed_s(exsss, Seed),
    {Steps, _} = lists:mapfoldl(fun(_, S) -> random_step(Nodes, S) end, S0,
                                lists:seq(1, Count)),
    Steps ++ [heal || Count > 0].

random_step(Nodes, S0) ->
    {Kind, S1} = rand:uniform_s(4, S0),
    case Kind of
        1 when length(Nodes) > 1 ->
            {Keys, S2} = lists:mapfoldl(fun(_, S) -> rand:uniform_s(S) end, S1,
                                        Nodes),
            Shuffled = [N || {_, N} <- lists:sort(lists:zip(Keys, Nodes))],
            {Cut, S3} = rand:uniform_s(length(Nodes) - 1, S2),
            {M, S4} = rand:uniform_s(2, S3),
            {A, B} = lists:split(Cut, Shuffled),
            {{partition, lists:sort(A), lists:sort(B),
              element(M, {drop, defer})}, S4};
        2 ->
            {heal, S1};
        3 ->
            {Ms, S2} = rand:uniform_s(10, S1),
            {{wait, 100 * Ms}, S2};
        _ ->
            {I, S2} = rand:uniform_s(length(Nodes), S1),
            {{restart, lists:nth(I, Nodes)}, S2}
    end.

%%====================================================================
%% Waiting and assertions
%%====================================================================

%% @doc Calls Fun every 50 ms until it returns true; `ok', or `timeout'
%% once TimeoutMs milliseconds passed. A Fun that raises counts as false.
-spec wait_until(fun(() -> boolean()), non_neg_integer()) -> ok | timeout.
wait_until(Fun, TimeoutMs) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    wait_until1(Fun, Deadline).

wait_until1(Fun, Deadline) ->
    case catch Fun() of
        true ->
            ok;
        _ ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> timeout;
                false -> timer:sleep(50), wait_until1(Fun, Deadline)
            end
    end.

%% @doc Waits (up to the cluster's `wait_ms') until every member that is
%% up lists exactly the members that are up; `ok', or raises
%% `{tether_ct, {members_disagree, Expected, [{Node, Members}]}}' with
%% what each saw last.
-spec assert_members_agree(cluster()) -> ok.
assert_members_agree(Cluster) ->
    ctl_ok(Cluster, members_agree).

%% @doc Waits (up to the cluster's `wait_ms') until every member that is
%% up holds the same registry (entry count and table digest); `ok', or
%% raises `{tether_ct, {registry_disagrees, [{Node, Seen}]}}', where Seen
%% is the count and digest (and, on BEAM members, the names with their
%% pids).
-spec assert_registry_agrees(cluster()) -> ok.
assert_registry_agrees(Cluster) ->
    ctl_ok(Cluster, registry_agrees).

%% @doc assert_single_leader/3 over a window of 2 seconds.
-spec assert_single_leader(cluster(), term()) -> ok.
assert_single_leader(Cluster, Name) ->
    assert_single_leader(Cluster, Name, ?LEADER_WINDOW_MS).

%% @doc Asks every member that is up `is_leader(Name)' every 20 ms for
%% WindowMs milliseconds; `ok' if at most one said yes at every sample
%% and exactly one at the last, else raises
%% `{tether_ct, {two_leaders | no_leader, Name, [{Node, IsLeader}]}}'
%% with the sample that broke it.
-spec assert_single_leader(cluster(), term(), non_neg_integer()) -> ok.
assert_single_leader(Cluster, Name, WindowMs) ->
    ctl_ok(Cluster, {single_leader, Name, WindowMs}).

%% @doc Waits (up to the cluster's `wait_ms') until every member that is
%% up and hosts Map (see {@link tether:new_map/2}; `--map' on a C-node)
%% answers the same `map_to_list(Map)', sorted; `ok', or raises
%% `{tether_ct, {map_diverged, Map, [{Node, Seen}]}}' with what each
%% member answered last (`{error, no_such_map}' where it is no host).
%% At least one member must host Map.
-spec assert_map_converged(cluster(), term()) -> ok.
assert_map_converged(Cluster, Map) ->
    ctl_ok(Cluster, {map_converged, Map}).

%% @doc Waits (up to the cluster's `wait_ms') for a delivery of the
%% reminder Key (see {@link tether:remind/4}) to the recorders of the
%% BEAM members (start_cluster/2 with `record_reminders => true'), then
%% half a second for any duplicate; `ok' if exactly one delivery was
%% recorded, else raises `{tether_ct, {not_fired | fired_more_than_once,
%% Key, [{Node, [{Payload, Fence}]}]}}', or `{tether_ct,
%% {not_recording_reminders, [{Node, Answer}]}}' without recorders.
-spec assert_fired_once(cluster(), term()) -> ok.
assert_fired_once(Cluster, Key) ->
    ctl_ok(Cluster, {fired_once, Key}).

%%====================================================================
%% The controller: a gen_server that owns the peers and C-nodes
%%====================================================================

%% @private
-spec init(map()) -> {ok, map()}.
init(S) ->
    process_flag(trap_exit, true),
    _ = case maps:find(owner, S) of
            {ok, Owner} -> erlang:monitor(process, Owner);
            error -> ok
        end,
    {ok, S#{members => [], epmd => undefined}}.

%% @private
-spec handle_call(term(), gen_server:from(), map()) ->
          {reply, term(), map()} | {stop, normal, ok, map()}.
handle_call(start, _From, S) ->
    case catch start_all(S) of
        {ok, S1} -> {reply, ok, S1};
        {error, Why, S1} -> {reply, {error, Why}, S1};
        Other -> {reply, {error, Other}, S}
    end;
handle_call(stop, _From, S) ->
    {stop, normal, ok, stop_all(S)};
handle_call(table, _From, #{members := Ms} = S) ->
    {reply, [{N, K, Up} || #{node := N, kind := K, up := Up} <- Ms], S};
handle_call(os_pids, _From, #{members := Ms} = S) ->
    {reply, [{N, P} || #{node := N, os_pid := P, up := true} <- Ms], S};
handle_call({peer_of, Node}, _From, S) ->
    Reply = case member(Node, S) of
                {ok, #{kind := beam, up := true, peer := P}} -> {ok, P};
                {ok, #{kind := beam}} -> {error, {node_down, Node}};
                {ok, _} -> {error, {not_a_beam_node, Node}};
                error -> {error, {unknown_node, Node}}
            end,
    {reply, Reply, S};
handle_call(Req, _From, S) ->
    case catch op(Req, S) of
        ok -> {reply, ok, S};
        {ok, S1} -> {reply, ok, S1};
        {error, Why} -> {reply, {error, Why}, S};
        {error, Why, S1} -> {reply, {error, Why}, S1};
        {fail, Why} -> {reply, {fail, Why}, S};
        Other -> {reply, {error, {crashed, Req, Other}}, S}
    end.

%% @private
-spec handle_cast(term(), map()) -> {noreply, map()}.
handle_cast(_Msg, S) ->
    {noreply, S}.

%% @private
-spec handle_info(term(), map()) -> {noreply, map()} | {stop, normal, map()}.
handle_info({'DOWN', _, process, Owner, _}, #{owner := Owner} = S) ->
    {stop, normal, stop_all(S)};
handle_info({'EXIT', Pid, _Why}, #{members := Ms} = S) ->
    Ms1 = [case M of
               #{peer := Pid} -> M#{up := false};
               _ -> M
           end || M <- Ms],
    {noreply, S#{members := Ms1}};
handle_info(_Msg, S) ->
    {noreply, S}.

%% @private
-spec terminate(term(), map()) -> ok.
terminate(_Why, S) ->
    _ = stop_all(S),
    ok.

table(Cluster) ->
    ctl(Cluster, table).

ctl({tether_ct, Pid}, Req) ->
    try gen_server:call(Pid, Req, infinity)
    catch exit:{noproc, _} -> error({tether_ct, cluster_stopped})
    end;
ctl(Other, _Req) ->
    error({tether_ct, {not_a_cluster, Other}}).

%% Operations that change the cluster or check it: ok, an assertion
%% that failed ({fail, What}: the cluster stays), or bad use ({error,
%% Why}: the cluster is stopped).
ctl_ok(Cluster, Req) ->
    case ctl(Cluster, Req) of
        ok -> ok;
        {fail, Why} -> error({tether_ct, Why});
        {error, Why} -> bad_use(Cluster, Why)
    end.

-spec bad_use(cluster(), term()) -> no_return().
bad_use(Cluster, Why) ->
    ok = stop_cluster(Cluster),
    error({tether_ct, Why}).

%%--------------------------------------------------------------------
%% Checking the spec (in the caller: bad options start nothing)
%%--------------------------------------------------------------------

check_spec(Config, Spec) ->
    _ = [error({tether_ct, {bad_option, {K, maps:get(K, Spec)}}})
         || K <- maps:keys(Spec), not lists:member(K, ?SPEC_KEYS)],
    Get = fun(K, D) -> maps:get(K, Spec, D) end,
    Beam = Get(beam, 0),
    CNodes = Get(cnodes, 0),
    _ = [error({tether_ct, {bad_option, {K, V}}})
         || {K, V} <- [{beam, Beam}, {cnodes, CNodes}],
            not (is_integer(V) andalso V >= 0)],
    Beam + CNodes > 0 orelse error({tether_ct, {bad_option, {beam, Beam}}}),
    Naming = Get(naming, long),
    case Naming of
        long -> ok;
        short -> ok;
        ipv6 -> ok;
        {long, H} when is_list(H) ->
            %% OTP refuses a long name whose host has no dot
            %% (NAME@localhost) between BEAM nodes.
            _ = string:find(H, ".") =:= nomatch
                andalso string:find(H, ":") =:= nomatch
                andalso error({tether_ct, {bad_option, {naming, Naming},
                                           "a long name needs a dotted host "
                                           "or an IP address"}}),
            ok;
        _ -> error({tether_ct, {bad_option, {naming, Naming}}})
    end,
    case Get(owner, self()) of
        Pid when is_pid(Pid) -> ok;
        Owner -> error({tether_ct, {bad_option, {owner, Owner}}})
    end,
    _ = is_boolean(Get(record_reminders, false))
        orelse error({tether_ct, {bad_option,
                                  {record_reminders,
                                   Get(record_reminders, false)}}}),
    Exe = Get(cnode_exe, cnode_exe()),
    _ = CNodes > 0 andalso not filelib:is_regular(Exe)
        andalso error({tether_ct, {no_cnode_program, Exe}}),
    _ = [error({tether_ct, {bad_option, {cnode_opts, O}}})
         || O <- maps:values(Get(cnode_opts, #{})),
            not is_map(O) orelse
                maps:keys(O) -- ?CNODE_KEYS =/= []],
    _ = [error({tether_ct, {no_plugin, P}})
         || P <- lists:append([Get(plugins, []) |
                               [maps:get(plugins, O, [])
                                || O <- maps:values(Get(cnode_opts, #{}))]]),
            not filelib:is_regular(P)],
    LogDir = case {Get(log_dir, undefined), proplists:get_value(priv_dir, Config)} of
                 {undefined, undefined} -> temp_dir();
                 {undefined, Priv} -> Priv;
                 {D, _} -> D
             end,
    Spec#{beam => Beam, cnodes => CNodes, naming => Naming,
          cnode_exe => Exe, log_dir => LogDir,
          cookie => cookie_string(Get(cookie, default_cookie())),
          prefix => to_list(Get(prefix, "tether_ct")),
          code_path => Get(code_path, default_code_path()),
          wait_ms => Get(wait_ms, ?WAIT_MS)}.

default_cookie() ->
    case node() of
        nonode@nohost ->
            "tether_ct_" ++ integer_to_list(erlang:unique_integer([positive]))
                ++ "_" ++ integer_to_list(rand:uniform(1 bsl 40));
        _ ->
            erlang:get_cookie()
    end.

cookie_string(C) when is_atom(C) -> atom_to_list(C);
cookie_string(C) when is_list(C) -> C;
cookie_string(C) -> error({tether_ct, {bad_option, {cookie, C}}}).

to_list(A) when is_atom(A) -> atom_to_list(A);
to_list(L) when is_list(L) -> L.

default_code_path() ->
    Otp = code:lib_dir(),
    [D || D <- code:get_path(), D =/= ".", not lists:prefix(Otp, D)].

temp_dir() ->
    Dir = filename:join(os:getenv("TMPDIR", "/tmp"),
                        "tether_ct_" ++ os:getpid()),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    Dir.

%%--------------------------------------------------------------------
%% Starting and stopping members
%%--------------------------------------------------------------------

start_all(#{beam := Beam, cnodes := CNodes, prefix := Prefix} = S0) ->
    S = start_epmd(S0),
    Tag = integer_to_list(erlang:unique_integer([positive])) ++ "_"
        ++ os:getpid(),
    Name = fun(Kind, I) ->
                   lists:concat([Prefix, "_", Kind, I, "_", Tag])
           end,
    Specs = [#{kind => beam, index => I, name => Name(b, I)}
             || I <- lists:seq(1, Beam)]
        ++ [#{kind => cnode, index => I, name => Name(c, I)}
            || I <- lists:seq(1, CNodes)],
    start_members(Specs, S).

start_members([], S) ->
    case wait_members_agree(S) of
        ok -> {ok, S};
        {fail, Why} -> {error, {not_converged, Why}, S}
    end;
start_members([Spec | Rest], #{members := Ms} = S) ->
    Seed = case [N || #{node := N, up := true} <- Ms] of
               [] -> none;
               [N | _] -> N
           end,
    case start_member(Spec, Seed, S) of
        {ok, M} -> start_members(Rest, S#{members := Ms ++ [M]});
        {error, Why} -> {error, {start_failed, maps:get(name, Spec), Why}, S}
    end.

%% Starts one member (Spec: kind, index, name) and joins it to Seed
%% (none for the first): {ok, Member} or {error, Why}, nothing left
%% running on error.
start_member(#{kind := beam} = Spec, Seed, S) ->
    case catch start_beam(Spec, S) of
        {ok, M} ->
            case catch start_tether(M, Seed, S) of
                ok ->
                    {ok, M};
                Why ->
                    stop_member(M),
                    {error, {tether_not_started, Why}}
            end;
        {error, _} = E ->
            E;
        Other ->
            {error, Other}
    end;
start_member(#{kind := cnode} = Spec, Seed, S) ->
    case start_cnode(cnode_opts(Spec, Seed, S)) of
        {ok, C} ->
            {ok, Spec#{node => maps:get(node, C), os_pid => maps:get(os_pid, C),
                       cnode => C, up => true}};
        {error, Why} ->
            {error, Why}
    end.

start_beam(#{name := Name} = Spec, S) ->
    #{naming := Naming, cookie := Cookie, code_path := Paths} = S,
    Host = case Naming of
               ipv6 -> {long, "::1"};
               Other -> Other
           end,
    {Args, Env} = case Naming of
                      ipv6 ->
                          {["-proto_dist", "inet6_tcp"], ipv6_env(S)};
                      _ ->
                          {[], epmd_env(S)}
                  end,
    P = start_peer(Name, #{host => Host, cookie => Cookie, link => true,
                           connection => standard_io, code_path => Paths,
                           args => Args ++ maps:get(args, S, []),
                           env => Env}),
    #{pid := Pid, node := Node} = P,
    OsPid = list_to_integer(peer:call(Pid, os, getpid, [], ?CALL_TIMEOUT)),
    {ok, Spec#{node => Node, peer => Pid, os_pid => OsPid, up => true}}.

epmd_env(S) ->
    case maps:find(epmd_port, S) of
        {ok, P} -> [{"ERL_EPMD_PORT", integer_to_list(P)}];
        error -> []
    end.

%% ERL_FLAGS may pin distribution to 127.0.0.1 (scripts/ct.sh does):
%% an IPv6 peer must not inherit that.
ipv6_env(#{epmd := {_, Port}}) ->
    Flags = os:getenv("ERL_FLAGS", ""),
    Stripped = re:replace(Flags, "-kernel\\s+inet_dist_use_interface\\s+\\S+",
                          "", [global, {return, list}]),
    [{"ERL_EPMD_PORT", integer_to_list(Port)}, {"ERL_FLAGS", Stripped}].

start_tether(#{peer := Pid, index := I}, Seed, S) ->
    Call = fun(M, F, A) -> peer:call(Pid, M, F, A, ?CALL_TIMEOUT) end,
    ok = case Call(application, load, [tether]) of
             {error, {already_loaded, tether}} -> ok;
             Loaded -> Loaded
         end,
    Timing = [{tether, K, V} || K <- [heartbeat_ms, ttl_ms],
                                {ok, V} <- [maps:find(K, S)]],
    NodeEnv = maps:get(I, maps:get(node_env, S, #{}), []),
    _ = [ok = Call(application, set_env, [App, K, V])
         || {App, K, V} <- Timing ++ maps:get(env, S, []) ++ NodeEnv],
    {ok, _} = Call(application, ensure_all_started, [tether]),
    ok = case maps:get(record_reminders, S, false) of
             true -> Call(?MODULE, start_reminder_recorder, []);
             false -> ok
         end,
    case Seed of
        none -> ok;
        _ -> ok = Call(tether, join, [Seed])
    end.

cnode_opts(#{index := I, name := Name}, Seed, S) ->
    #{naming := Naming, cookie := Cookie, log_dir := LogDir,
      cnode_exe := Exe} = S,
    Own = maps:get(I, maps:get(cnode_opts, S, #{}), #{}),
    Get = fun(K) -> maps:get(K, S, []) ++ maps:get(K, Own, []) end,
    Flags = lists:append([[Flag, to_list(V)] || {K, Flag} <- [{plugins, "--load"},
                                                              {services, "--service"},
                                                              {register, "--register"},
                                                              {lead, "--lead"}],
                                                V <- Get(K)]),
    Base = #{name => Name, cookie => Cookie, log_dir => LogDir, exe => Exe,
             join => [Seed || Seed =/= none],
             extra_args => Flags ++ Get(cnode_args)},
    Timing = maps:with([heartbeat_ms, ttl_ms], S),
    Net = case Naming of
              long -> #{};
              {long, Host} -> #{host => Host};
              short -> #{sname => true};
              ipv6 ->
                  {_, Port} = maps:get(epmd, S),
                  #{host => "::1", listen => "[::1]:0", epmd_port => Port,
                    proto_dist => "inet6_tcp"}
          end,
    Epmd = maps:with([epmd_port], S),
    maps:merge(maps:merge(maps:merge(Base, Timing), Epmd), Net).

start_epmd(#{naming := ipv6} = S) ->
    S#{epmd => start_private_epmd("::1")};
start_epmd(S) ->
    S.

stop_all(#{members := Ms, epmd := Epmd} = S) ->
    lists:foreach(fun stop_member/1, Ms),
    _ = case Epmd of
            undefined -> ok;
            _ -> stop_private_epmd(Epmd)
        end,
    S#{members := [], epmd := undefined}.

stop_member(#{kind := beam, peer := Pid, os_pid := OsPid}) ->
    _ = (catch peer:stop(Pid)),
    _ = signal_os_pid(kill, OsPid),
    ok;
stop_member(#{kind := cnode, cnode := C}) ->
    _ = (catch kill_cnode(C)),
    ok.

member(Node, #{members := Ms}) ->
    case [M || #{node := N} = M <- Ms, N =:= Node] of
        [M] -> {ok, M};
        [] -> error
    end.

replace(#{node := N} = M, #{members := Ms} = S) ->
    S#{members := [case X of
                       #{node := N} -> M;
                       _ -> X
                   end || X <- Ms]}.

%%--------------------------------------------------------------------
%% Operations
%%--------------------------------------------------------------------

op({partition, A, B, Mode}, S) ->
    ok = check_groups(A, B, Mode, S),
    case on_any(S, {partition, A, B, Mode}) of
        {ok, _Ref} -> {ok, S};
        Other -> {error, {partition_refused, Other}}
    end;
op(heal, S) ->
    _ = [on(M, heal, S) || M <- up(S)],
    {ok, S};
op({kill, Node}, S) ->
    M = known(Node, S),
    {ok, replace(kill_member(M), S)};
op({stop, Node}, S) ->
    M = known(Node, S),
    {ok, replace(stop_gracefully(M), S)};
op({restart, Node}, S) ->
    M = known(Node, S),
    M1 = case M of
             #{up := true} -> kill_member(M);
             _ -> M
         end,
    Seed = case [N || #{node := N} <- up(S), N =/= Node] of
               [] -> none;
               [N | _] -> N
           end,
    case restart_member(maps:with([kind, index, name], M1), Seed, S,
                        ?START_TRIES) of
        {ok, M2} ->
            {ok, replace(M2, S)};
        {error, Why} ->
            {error, {restart_failed, Node, Why}, replace(M1, S)}
    end;
op(members_agree, S) ->
    wait_members_agree(S);
op(registry_agrees, S) ->
    Look = fun() -> [{N, registry_of(M, S)} || #{node := N} = M <- up(S)] end,
    Agree = fun(Seen) ->
                    length(lists:usort([{C, D} || {_, #{count := C, digest := D}}
                                                      <- Seen])) =:= 1
                        andalso lists:all(fun({_, V}) -> is_map(V) end, Seen)
            end,
    case settle(Look, Agree, S) of
        ok -> ok;
        {fail, Seen} -> {fail, {registry_disagrees, Seen}}
    end;
op({single_leader, Name, Window}, S) ->
    Deadline = erlang:monotonic_time(millisecond) + Window,
    single_leader(Name, Deadline, S);
op({map_converged, Map}, S) ->
    Look = fun() -> [{N, sorted(on(M, {map_to_list, Map}, S))}
                     || #{node := N} = M <- up(S)] end,
    Agree = fun(Seen) ->
                    Lists = [L || {_, L} <- Seen, is_list(L)],
                    Lists =/= [] andalso length(lists:usort(Lists)) =:= 1
                        andalso lists:all(fun({_, L}) ->
                                                  is_list(L) orelse
                                                      L =:= {error, no_such_map}
                                          end, Seen)
            end,
    case settle(Look, Agree, S) of
        ok -> ok;
        {fail, Seen} -> {fail, {map_diverged, Map, Seen}}
    end;
op({fired_once, Key}, S) ->
    Look = fun() -> [{N, on(M, {fired, Key}, S)}
                     || #{node := N, kind := beam} = M <- up(S)] end,
    Recording = fun(Seen) -> lists:all(fun({_, L}) -> is_list(L) end, Seen)
                end,
    Count = fun(Seen) -> length(lists:append([L || {_, L} <- Seen,
                                                   is_list(L)])) end,
    case settle(Look, fun(Seen) -> not Recording(Seen) orelse Count(Seen) > 0
                      end, S) of
        {fail, Seen} ->
            {fail, {not_fired, Key, Seen}};
        ok ->
            timer:sleep(?DUPLICATE_WINDOW_MS),
            Seen = Look(),
            case {Recording(Seen), Count(Seen)} of
                {false, _} -> {fail, {not_recording_reminders, Seen}};
                {true, 1} -> ok;
                {true, _} -> {fail, {fired_more_than_once, Key, Seen}}
            end
    end.

sorted(L) when is_list(L) -> lists:sort(L);
sorted(Other) -> Other.

restart_member(Spec, Seed, S, Tries) ->
    case start_member(Spec, Seed, S) of
        {ok, M} ->
            {ok, M};
        {error, _} when Tries > 1 ->
            %% A name freed by SIGKILL may linger in epmd for a moment.
            timer:sleep(250),
            restart_member(Spec, Seed, S, Tries - 1);
        {error, _} = E ->
            E
    end.

known(Node, S) ->
    case member(Node, S) of
        {ok, M} -> M;
        error -> throw({error, {unknown_node, Node}})
    end.

check_groups(A, B, Mode, S) ->
    _ = lists:member(Mode, [drop, defer])
        orelse throw({error, {bad_mode, Mode}}),
    _ = [throw({error, {bad_group, G}})
         || G <- [A, B], not is_list(G) orelse G =:= []],
    _ = [known(N, S) || N <- A ++ B],
    case [N || N <- A, lists:member(N, B)] of
        [] -> ok;
        Both -> throw({error, {overlapping_groups, lists:usort(Both)}})
    end.

stop_gracefully(#{up := false} = M) ->
    M;
stop_gracefully(#{kind := beam, peer := Pid, os_pid := OsPid} = M) ->
    unlink(Pid),
    _ = (catch peer:stop(Pid)),
    _ = wait_until(fun() -> not os_pid_alive(OsPid) end, ?KILL_TIMEOUT),
    M#{up := false};
stop_gracefully(#{kind := cnode, cnode := C} = M) ->
    _ = stop_cnode(C),
    M#{up := false}.

kill_member(#{up := false} = M) ->
    M;
kill_member(#{kind := beam, peer := Pid, os_pid := OsPid} = M) ->
    _ = signal_os_pid(kill, OsPid),
    _ = wait_until(fun() -> not os_pid_alive(OsPid) end, ?KILL_TIMEOUT),
    unlink(Pid),
    _ = (catch peer:stop(Pid)),
    M#{up := false};
kill_member(#{kind := cnode, cnode := C} = M) ->
    _ = kill_cnode(C),
    M#{up := false}.

up(#{members := Ms}) ->
    [M || #{up := true} = M <- Ms].

%% What every member lists, until each lists exactly the members up.
wait_members_agree(S) ->
    Look = fun() -> [{N, members_of(M, S)} || #{node := N} = M <- up(S)] end,
    Expected = lists:sort([N || #{node := N} <- up(S)]),
    case settle(Look, fun(Seen) -> lists:all(fun({_, Ms}) -> Ms =:= Expected end,
                                             Seen)
                      end, S) of
        ok -> ok;
        {fail, Seen} -> {fail, {members_disagree, Expected, Seen}}
    end.

%% Polls Look until Check holds of what it saw or wait_ms passed:
%% ok, or {fail, LastSeen}.
settle(Look, Check, #{wait_ms := Wait}) ->
    Deadline = erlang:monotonic_time(millisecond) + Wait,
    settle1(Look, Check, Deadline).

settle1(Look, Check, Deadline) ->
    Seen = Look(),
    case Check(Seen) of
        true ->
            ok;
        false ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true -> {fail, Seen};
                false -> timer:sleep(100), settle1(Look, Check, Deadline)
            end
    end.

single_leader(Name, Deadline, S) ->
    Sample = [{N, on(M, {is_leader, Name}, S)} || #{node := N} = M <- up(S)],
    Leaders = [N || {N, true} <- Sample],
    Now = erlang:monotonic_time(millisecond),
    case Leaders of
        [_, _ | _] -> {fail, {two_leaders, Name, Sample}};
        [] when Now >= Deadline -> {fail, {no_leader, Name, Sample}};
        _ when Now >= Deadline -> {ok, S};
        _ -> timer:sleep(20), single_leader(Name, Deadline, S)
    end.

members_of(M, S) ->
    on(M, members, S).

registry_of(#{kind := beam} = M, S) ->
    case on(M, info, S) of
        #{registry := R} ->
            Names = on(M, registered, S),
            R#{names => Names};
        Other ->
            Other
    end;
registry_of(M, S) ->
    case on(M, info, S) of
        #{registry := R} -> R;
        Other -> Other
    end.

%% A request to one member: on a BEAM peer over its control channel, on
%% a C-node through its `tether' process (asked from a BEAM peer that is
%% up, else from this node). Never raises: a failure is the answer.
on(#{kind := beam, peer := Pid}, Req, _S) ->
    {M, F, A} = beam_mfa(Req),
    try peer:call(Pid, M, F, A, ?REPLY_TIMEOUT)
    catch C:W -> {C, W}
    end;
on(#{kind := cnode, node := Node}, Req, S) ->
    Msg = cnode_request(Req),
    Args = [{tether, Node}, Msg, ?REPLY_TIMEOUT],
    try
        case [P || #{kind := beam, peer := P} <- up(S)] of
            [P | _] -> peer:call(P, gen_server, call, Args, ?CALL_TIMEOUT);
            [] -> local_cnode_call(Node, Args, S)
        end
    catch C:W -> {C, W}
    end.

local_cnode_call(Node, Args, #{cookie := Cookie}) ->
    case node() of
        nonode@nohost ->
            {error, no_control_node};
        _ ->
            true = erlang:set_cookie(Node, list_to_atom(Cookie)),
            apply(gen_server, call, Args)
    end.

beam_mfa(members) -> {tether, members, []};
beam_mfa(info) -> {tether_server, info, []};
beam_mfa(registered) -> {?MODULE, registry_snapshot, []};
beam_mfa(heal) -> {tether, heal, []};
beam_mfa({is_leader, Name}) -> {tether, is_leader, [Name]};
beam_mfa({map_to_list, Map}) -> {tether, map_to_list, [Map]};
beam_mfa({fired, Key}) -> {?MODULE, reminders_fired, [Key]};
beam_mfa({partition, A, B, Mode}) -> {tether, partition, [A, B, Mode]}.

cnode_request(heal) -> heal_all;
cnode_request(Req) -> Req.

%% Runs a request on the first member that is up (BEAM peers first).
on_any(S, Req) ->
    case up(S) of
        [] -> {error, no_member_up};
        [M | _] -> on(M, Req, S)
    end.

%%====================================================================
%% One BEAM peer
%%====================================================================

%% @doc Starts one BEAM peer with OTP's `peer' (no tether, no cluster);
%% start_cluster/2 builds on it. Name is the part of its node name before
%% the `@', or `undefined' for a node that is not distributed. Options:
%% `host': `long' (the default: `Name@127.0.0.1', listening on loopback
%% only), `short' (`-sname Name@'{@link sname_host/0}) or `{long, Host}'
%% (`Name@Host'; for "::1" add `-proto_dist inet6_tcp' to `args');
%% `cookie' (string, default this node's); `connection': `tcp' (the
%% default: peer's TCP control channel on loopback), `dist' or
%% `standard_io'; `link' (true: `peer:start_link/1'); `code_path'
%% (directories, default this node's outside OTP); `overlapping_partitions'
%% (false turns global's prevent_overlapping_partitions off); `args' (more
%% `erl' arguments); `env' (`[{Var, Value}]' for its OS environment).
%% Raises when the peer does not boot.
-spec start_peer(string() | undefined, map()) -> peer().
start_peer(Name, Opts) ->
    Conn = maps:get(connection, Opts, tcp),
    Host = maps:get(host, Opts, long),
    %% A short-named node cannot connect to a long-named one.
    ok = case {Conn, Host, net_kernel:longnames()} of
             {dist, short, true} -> error({short_name_over_dist, Name});
             _ -> ok
         end,
    Paths = maps:get(code_path, Opts, default_code_path()),
    {NameOpts, Interface} = peer_name_opts(Name, Host),
    Args = ["-setcookie", maps:get(cookie, Opts, atom_to_list(erlang:get_cookie())),
            "-kernel", "inet_dist_use_interface", Interface]
        ++ lists:append([["-pa", D] || D <- Paths])
        ++ case maps:get(overlapping_partitions, Opts, true) of
               true -> [];
               false -> ["-kernel", "prevent_overlapping_partitions", "false"]
           end
        ++ maps:get(args, Opts, []),
    Base0 = NameOpts#{args => Args, wait_boot => ?PEER_BOOT_TIMEOUT},
    Base = case maps:find(env, Opts) of
               {ok, Env} -> Base0#{env => Env};
               error -> Base0
           end,
    PeerOpts = case Conn of
                   tcp -> Base#{connection => {?LOOPBACK, 0}};
                   dist -> Base;
                   standard_io -> Base#{connection => standard_io}
               end,
    {ok, Pid, Node} = case maps:get(link, Opts, false) of
                          true -> peer:start_link(PeerOpts);
                          false -> peer:start(PeerOpts)
                      end,
    #{pid => Pid, node => Node, connection => Conn}.

%% peer's name options, and the address the node listens on (as an
%% inet_dist_use_interface argument).
peer_name_opts(undefined, _Host) ->
    {#{}, "{127,0,0,1}"};
peer_name_opts(Name, long) ->
    {#{name => Name, host => "127.0.0.1", longnames => true}, "{127,0,0,1}"};
peer_name_opts(Name, short) ->
    {#{name => Name, host => sname_host(), longnames => false}, "{127,0,0,1}"};
peer_name_opts(Name, {long, Host}) ->
    Interface = case inet:parse_ipv6strict_address(Host) of
                    {ok, _} -> "{0,0,0,0,0,0,0,1}";
                    {error, _} -> "{127,0,0,1}"
                end,
    {#{name => Name, host => Host, longnames => true}, Interface}.

%% @doc The host part of short names (`-sname'): this machine's short host
%% name when it resolves to a loopback address (as /etc/hosts makes it on
%% most machines), else "localhost" (a container whose host name resolves
%% to its network address: nodes stay on loopback, and
%% `-sname NAME@localhost' is still a short name).
-spec sname_host() -> string().
sname_host() ->
    {ok, Host} = inet:gethostname(),
    Short = hd(string:split(Host, ".")),
    case inet:getaddr(Short, inet) of
        {ok, {127, _, _, _}} -> Short;
        _ -> "localhost"
    end.

%%====================================================================
%% One C-node
%%====================================================================

%% @doc The C-node program: `$TETHER_CNODE' if set, else tether's
%% `priv/tether_cnode'.
-spec cnode_exe() -> file:filename().
cnode_exe() ->
    case os:getenv("TETHER_CNODE") of
        V when V =:= false; V =:= "" -> filename:join(priv_dir(), "tether_cnode");
        Exe -> Exe
    end.

priv_dir() ->
    case code:priv_dir(tether) of
        {error, bad_name} ->
            filename:join([filename:dirname(code:which(?MODULE)), "..", "priv"]);
        Dir ->
            Dir
    end.

%% @doc Starts one C-node under the watchdog (it dies with this VM) and
%% waits for its `PROG: NODE ready' line; the node is the name that line
%% gives. Options: `name' (default unique), `cookie' (string, default
%% this node's) or `cookie_file', `visible', `ticktime', `log_dir' (where
%% NAME.stderr goes), `log_level', `heartbeat_ms', `ttl_ms', `join'
%% (nodes), `extra_args', `listen' (default "127.0.0.1:0"; `none' to
%% omit), `exe' (default cnode_exe/0), `prog' (the ready line's first
%% word, default "tether_cnode"), `host' (for `--name NAME@HOST', default
%% "127.0.0.1"; `none' for `--name NAME'), `sname' (true: `--sname
%% NAME@'{@link sname_host/0}), `proto_dist' and `epmd_port' (default
%% `$ERL_EPMD_PORT', else 4369). `{ok, CNode}' or `{error, {Why,
%% StdoutLines, StderrLines}}'.
-spec start_cnode(map()) -> {ok, cnode()} | {error, term()}.
start_cnode(Opts) ->
    Name = maps:get(name, Opts, lists:concat(["tcn_", erlang:unique_integer([positive]),
                                              "_", os:getpid()])),
    LogDir = maps:get(log_dir, Opts, os:getenv("TMPDIR", "/tmp")),
    Stderr = filename:join(LogDir, Name ++ ".stderr"),
    Args = cnode_args(Name, Opts),
    Exe = maps:get(exe, Opts, cnode_exe()),
    Ready = "^" ++ maps:get(prog, Opts, "tether_cnode") ++ ": \\S+ ready\\s*$",
    Parent = self(),
    Ref = make_ref(),
    Owner = spawn(fun() -> owner_init(Parent, Ref, {Exe, Args, Ready}, Stderr) end),
    MRef = erlang:monitor(process, Owner),
    receive
        {Ref, ready, OsPid, Line} ->
            erlang:demonitor(MRef, [flush]),
            {match, [Node]} = re:run(Line, "^\\S+: (\\S+) ready",
                                     [{capture, all_but_first, list}]),
            {ok, #{node => list_to_atom(Node), name => Name, os_pid => OsPid,
                   owner => Owner, stderr => Stderr}};
        {Ref, exited, Status, Lines} ->
            erlang:demonitor(MRef, [flush]),
            {error, {{exited, Status}, Lines, read_lines(Stderr)}};
        {'DOWN', MRef, process, Owner, Reason} ->
            {error, {{owner_died, Reason}, [], read_lines(Stderr)}}
    after ?READY_TIMEOUT ->
            erlang:demonitor(MRef, [flush]),
            Lines = owner_lines(Owner),
            _ = owner_kill(Owner),
            {error, {not_ready, Lines, read_lines(Stderr)}}
    end.

cnode_args(Name, Opts) ->
    Cookie = case maps:find(cookie_file, Opts) of
                 {ok, F} -> ["--cookie-file", F];
                 error -> ["--cookie", maps:get(cookie, Opts,
                                                atom_to_list(erlang:get_cookie()))]
             end,
    Visible = case maps:get(visible, Opts, false) of
                  true -> ["--visible"];
                  false -> []
              end,
    Valued = [[Flag, to_arg(V)]
              || {Key, Flag} <- [{ticktime, "--ticktime"},
                                 {log_level, "--log-level"},
                                 {heartbeat_ms, "--heartbeat-ms"},
                                 {ttl_ms, "--ttl-ms"},
                                 {proto_dist, "--proto-dist"}],
                 {ok, V} <- [maps:find(Key, Opts)]]
        ++ [["--join", atom_to_list(Seed)] || Seed <- maps:get(join, Opts, [])],
    Listen = case maps:get(listen, Opts, "127.0.0.1:0") of
                 none -> [];
                 L -> ["--listen", L]
             end,
    NameArgs = case {maps:get(sname, Opts, false), maps:get(host, Opts, "127.0.0.1")} of
                   {true, _} -> ["--sname", Name ++ "@" ++ sname_host()];
                   {false, none} -> ["--name", Name];
                   {false, Host} -> ["--name", Name ++ "@" ++ Host]
               end,
    Port = maps:get(epmd_port, Opts, list_to_integer(os:getenv("ERL_EPMD_PORT", "4369"))),
    NameArgs ++ Cookie ++ ["--epmd-port", integer_to_list(Port)]
        ++ Visible ++ Listen ++ lists:append(Valued)
        ++ maps:get(extra_args, Opts, []).

to_arg(V) when is_integer(V) -> integer_to_list(V);
to_arg(V) when is_atom(V) -> atom_to_list(V);
to_arg(V) when is_list(V) -> V.

%% @doc Stops a C-node with SIGTERM; if it has not exited after a
%% generous delay, with SIGKILL. `{term, Status}' when it exited after
%% SIGTERM, `{killed, Status}' when SIGKILL was needed.
-spec stop_cnode(cnode()) -> {term | killed, integer() | timeout} | already_stopped.
stop_cnode(#{owner := Owner, os_pid := OsPid}) ->
    case is_process_alive(Owner) of
        false ->
            already_stopped;
        true ->
            _ = signal_os_pid(term, OsPid),
            case owner_wait_exit(Owner, ?STOP_TIMEOUT) of
                {ok, Status} ->
                    owner_quit(Owner),
                    {term, Status};
                timeout ->
                    _ = signal_os_pid(kill, OsPid),
                    Res = owner_wait_exit(Owner, ?KILL_TIMEOUT),
                    owner_quit(Owner),
                    case Res of
                        {ok, Status} -> {killed, Status};
                        timeout -> {killed, timeout}
                    end
            end
    end.

%% @doc Kills a C-node with SIGKILL and waits for it to be gone:
%% `{ok, Status}', `timeout', or `already_stopped'.
-spec kill_cnode(cnode()) -> {ok, integer()} | timeout | already_stopped.
kill_cnode(#{os_pid := OsPid, owner := Owner}) ->
    case is_process_alive(Owner) of
        false ->
            already_stopped;
        true ->
            _ = signal_os_pid(kill, OsPid),
            Res = owner_wait_exit(Owner, ?KILL_TIMEOUT),
            owner_quit(Owner),
            Res
    end.

%% @doc Sends SIGTERM to a C-node and returns at once (wait_cnode_exit/2
%% waits).
-spec term_cnode(cnode()) -> ok.
term_cnode(#{os_pid := OsPid, owner := Owner}) ->
    true = is_process_alive(Owner),
    _ = signal_os_pid(term, OsPid),
    ok.

%% @doc Waits for a C-node's exit status: `{ok, Status}' or `timeout'.
-spec wait_cnode_exit(cnode(), timeout()) -> {ok, integer()} | timeout.
wait_cnode_exit(#{owner := Owner}, Timeout) ->
    Res = owner_wait_exit(Owner, Timeout),
    case Res of
        {ok, _} -> owner_quit(Owner);
        timeout -> ok
    end,
    Res.

%% @doc The stdout lines a C-node printed so far.
-spec cnode_stdout(cnode()) -> [binary()].
cnode_stdout(#{owner := Owner}) ->
    owner_lines(Owner).

%% @doc The stderr lines a C-node wrote so far.
-spec cnode_stderr(cnode()) -> [binary()].
cnode_stderr(#{stderr := File}) ->
    read_lines(File).

%% @doc True while an OS process with that pid exists and is not a
%% zombie.
-spec os_pid_alive(integer()) -> boolean().
os_pid_alive(OsPid) ->
    case file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/stat") of
        {ok, Stat} ->
            %% The state letter follows the ")" that closes the command.
            [_, After] = string:split(Stat, ")", trailing),
            case string:trim(After, leading) of
                <<$Z, _/binary>> -> false;
                _ -> true
            end;
        {error, _} ->
            false
    end.

%% @doc Sends SIGTERM or SIGKILL to an OS process; returns at once.
-spec signal_os_pid(term | kill, integer()) -> ok.
signal_os_pid(Sig, OsPid) ->
    Flag = case Sig of term -> "-TERM"; kill -> "-KILL" end,
    _ = os:cmd("kill " ++ Flag ++ " " ++ integer_to_list(OsPid) ++ " 2>/dev/null"),
    ok.

read_lines(File) ->
    case file:read_file(File) of
        {ok, Bin} -> [L || L <- binary:split(Bin, <<"\n">>, [global]), L =/= <<>>];
        {error, _} -> []
    end.

%% The owner process: holds the watchdog's port, keeps stdout lines,
%% reports the ready line to the starter and the exit status to whoever
%% waits.
owner_init(Parent, Ref, {Exe, Args, Ready}, Stderr) ->
    ok = filelib:ensure_dir(Stderr),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [{args, ["-c", ?WATCHDOG, Exe | Args]},
                      {env, [{"TETHER_CNODE_STDERR", Stderr}]},
                      {line, ?LINE_MAX}, binary, exit_status, use_stdio, hide]),
    owner_loop(#{port => Port, os_pid => undefined, lines => [], partial => <<>>,
                 ready => {Parent, Ref}, ready_re => Ready, exit => undefined,
                 waiters => []}).

owner_loop(#{port := Port} = S) ->
    receive
        {Port, {data, {noeol, Part}}} ->
            owner_loop(S#{partial := <<(maps:get(partial, S))/binary, Part/binary>>});
        {Port, {data, {eol, Part}}} ->
            Line = <<(maps:get(partial, S))/binary, Part/binary>>,
            owner_loop(owner_line(Line, S#{partial := <<>>}));
        {Port, {exit_status, Status}} ->
            S1 = S#{exit := Status},
            _ = case maps:get(ready, S1) of
                    {Parent, Ref} ->
                        Parent ! {Ref, exited, Status, lists:reverse(maps:get(lines, S1))};
                    done ->
                        ok
                end,
            _ = [W ! {WRef, exited, Status} || {W, WRef} <- maps:get(waiters, S1)],
            owner_loop(S1#{ready := done, waiters := []});
        {lines, From, Ref} ->
            From ! {Ref, lists:reverse(maps:get(lines, S))},
            owner_loop(S);
        {wait_exit, From, Ref} ->
            case maps:get(exit, S) of
                undefined ->
                    owner_loop(S#{waiters := [{From, Ref} | maps:get(waiters, S)]});
                Status ->
                    From ! {Ref, exited, Status},
                    owner_loop(S)
            end;
        {kill, From, Ref} ->
            _ = case maps:get(os_pid, S) of
                    undefined -> catch port_close(Port);
                    OsPid -> signal_os_pid(kill, OsPid)
                end,
            From ! {Ref, ok},
            owner_loop(S#{ready := done});
        quit ->
            catch port_close(Port),
            ok
    end.

%% The watchdog's first line is the C-node's pid; every other line is
%% the C-node's.
owner_line(<<"tether_ct: pid ", Pid/binary>>, #{os_pid := undefined} = S) ->
    S#{os_pid := binary_to_integer(Pid)};
owner_line(Line, S) ->
    maybe_ready(Line, S#{lines := [Line | maps:get(lines, S)]}).

maybe_ready(Line, #{ready := {Parent, Ref}, ready_re := Re, os_pid := OsPid} = S) ->
    case re:run(Line, Re) of
        {match, _} ->
            Parent ! {Ref, ready, OsPid, binary_to_list(Line)},
            S#{ready := done};
        nomatch ->
            S
    end;
maybe_ready(_Line, S) ->
    S.

owner_lines(Owner) ->
    Ref = make_ref(),
    Owner ! {lines, self(), Ref},
    receive {Ref, Lines} -> Lines after ?REPLY_TIMEOUT -> [] end.

owner_wait_exit(Owner, Timeout) ->
    Ref = make_ref(),
    Owner ! {wait_exit, self(), Ref},
    receive {Ref, exited, Status} -> {ok, Status} after Timeout -> timeout end.

owner_kill(Owner) ->
    Ref = make_ref(),
    Owner ! {kill, self(), Ref},
    receive {Ref, ok} -> ok after ?REPLY_TIMEOUT -> ok end,
    _ = owner_wait_exit(Owner, ?KILL_TIMEOUT),
    owner_quit(Owner).

owner_quit(Owner) ->
    Owner ! quit,
    ok.

%%====================================================================
%% Private epmds (IPv6)
%%====================================================================

%% @doc Starts an epmd listening on Address only ("::1", say) on a free
%% port, under the watchdog (it dies with this VM); returns `{Owner,
%% Port}'. stop_private_epmd/1 stops it.
-spec start_private_epmd(string()) -> {pid(), inet:port_number()}.
start_private_epmd(Address) ->
    {ok, Ip} = inet:parse_address(Address),
    Family = case tuple_size(Ip) of 4 -> inet; 8 -> inet6 end,
    {ok, L} = gen_tcp:listen(0, [Family, {ip, Ip}]),
    {ok, Port} = inet:port(L),
    ok = gen_tcp:close(L),
    Epmd = os:find_executable("epmd"),
    Owner = spawn(fun() ->
                          P = open_port({spawn_executable, "/bin/sh"},
                                        [{args, ["-c", ?WATCHDOG, Epmd, "-address",
                                                 Address, "-port",
                                                 integer_to_list(Port)]},
                                         {env, [{"TETHER_CNODE_STDERR", "/dev/null"}]},
                                         exit_status]),
                          receive quit -> catch port_close(P) end
                  end),
    ok = wait_until(fun() ->
                            case gen_tcp:connect(Ip, Port, [Family], 1000) of
                                {ok, S} -> gen_tcp:close(S), true;
                                {error, _} -> false
                            end
                    end, ?READY_TIMEOUT),
    {Owner, Port}.

%% @doc Stops an epmd start_private_epmd/1 started.
-spec stop_private_epmd({pid(), inet:port_number()}) -> ok.
stop_private_epmd({Owner, _Port}) ->
    Owner ! quit,
    ok.

%% @doc Runs on a BEAM member (start_cluster/2 calls it there with
%% `record_reminders => true'): starts the process `tether_ct_reminders',
%% subscribed to this node's reminders, which records every delivery.
-spec start_reminder_recorder() -> ok.
start_reminder_recorder() ->
    Parent = self(),
    Pid = spawn(fun() ->
                        true = register(tether_ct_reminders, self()),
                        ok = tether:subscribe_reminders(self()),
                        Parent ! {tether_ct_recorder, self()},
                        recorder_loop([])
                end),
    receive
        {tether_ct_recorder, Pid} -> ok
    after ?REPLY_TIMEOUT ->
        exit(Pid, kill),
        error({tether_ct, recorder_not_started})
    end.

recorder_loop(Fired) ->
    receive
        {tether_reminder, Key, Payload, Fence} ->
            recorder_loop([{Key, Payload, Fence} | Fired]);
        {fired, From, Ref, Key} ->
            From ! {Ref, [{P, F} || {K, P, F} <- lists:reverse(Fired),
                                    K =:= Key]},
            recorder_loop(Fired)
    end.

%% @doc Runs on a BEAM member (assert_fired_once/2 calls it there): the
%% deliveries of reminder Key the recorder saw, `[{Payload, Fence}]' in
%% order; `{error, not_recording}' when no recorder runs.
-spec reminders_fired(term()) -> [{term(), term()}] | {error, not_recording}.
reminders_fired(Key) ->
    case whereis(tether_ct_reminders) of
        undefined ->
            {error, not_recording};
        Pid ->
            Ref = make_ref(),
            Pid ! {fired, self(), Ref, Key},
            receive
                {Ref, L} -> L
            after ?REPLY_TIMEOUT -> {error, not_recording}
            end
    end.

%% @doc Runs on a BEAM member (assert_registry_agrees/1 calls it there):
%% every name tether registered, sorted, with its pid.
-spec registry_snapshot() -> [{term(), pid() | undefined}].
registry_snapshot() ->
    [{N, tether:whereis_name(N)} || N <- lists:sort(tether:registered_names())].
