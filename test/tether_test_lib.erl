%% @doc Helpers shared by the common_test suites: start and stop real
%% C-nodes (priv/tether_cnode, or another program built on libtether's
%% command line, such as priv/examples/kv_node) and BEAM peers, and talk
%% to the C-node's built-in `echo' process with stock OTP primitives only.
%% Every suite starts its nodes through this module, which delegates
%% peer start-up, C-node start-up and signalling OS processes to the
%% shipped kit tether_ct (the one copy of that code).
%%
%% A C-node runs under tether_ct's watchdog (it dies with the test VM);
%% signals go straight to the C-node's own pid and its stderr lands in a
%% file the suites can read and keep. An
%% owner process holds the port, collects stdout lines and learns the exit
%% status. Every start has a matching stop that never waits forever.
%%
%% Peers are started with OTP's `peer' module, by default on 127.0.0.1
%% with long names (NAME@127.0.0.1); with the option `host => short' a
%% peer is named as users name nodes, with -sname (NAME@shorthost), and
%% with `host => {long, Host}' as NAME@Host (localhost, ::1). By default their control channel is
%% peer's alternative TCP connection (on loopback), so a peer is not
%% connected to the common_test node over distribution: it can have
%% another cookie or another net_ticktime, and it only meets the C-node
%% when a test makes it. Functions in this module also run on the peers
%% (their code path includes this module's directory and tether's ebin).
%%
%% A suite's environment check and the clean-up after each case of what
%% the start_case_* functions started come from the common_test hook
%% tether_case_hook (`suite() -> [{ct_hooks, [tether_case_hook]}]').
-module(tether_test_lib).

%% C-node lifecycle.
-export([require_env/1, require_env/2, require_dist/2, priv_dir/0, cnode_exe/0, kv_plugin/0,
         rpctest_plugin/0, kv_node_exe/0, epmd_port/0, cookie/0,
         unique_name/1,
         start_cnode/1, start_kept_cnode/2, stop_cnode/1, kill_cnode/1,
         term_cnode/1, wait_cnode_exit/2, cnode_node/1, cnode_os_pid/1,
         cnode_stdout/1, cnode_stderr/1, log_cnode/1, run_cnode/1,
         os_pid_alive/1, kill_os_pid/1]).
%% BEAM peers.
-export([start_peer/1, start_peer/2, stop_peer/1, peer_node/1, peer_call/4,
         peer_call/5, start_peers/2, stop_peers/1]).
%% Cleanup of everything a test case started.
-export([start_keeper/0, keep/2, release_all/1, release_case/3,
         init_kept_cnode/3, end_kept_cnode/2]).
%% Talking to the C-node's echo processes (also run on peers).
-export([echo/2, echo/3, ping_and_echo/2, cnode_spawn/2, start_collector/0,
         collected/1, wait_collected/3, idle_watch/2, epmd_names/0,
         wait_until/2, flush/0]).
%% Polling conditions on tether clusters.
-export([poll/3, wait_members/3, members_of/1, info_of/1, wait_rejected/2,
         wait_leases_pass/4, relay_start/2, relay_next/2, relay_flush/2]).
%% Calls held across a defer partition.
-export([held_call_start/6, held_call_not_returned/1, held_call_answer/2]).
%% Group prerequisites.
-export([require_plugin/1, require_env_plugin/2]).
%% What a C-node logged.
-export([cnode_logged/2, cnode_logged_once/2, cnode_log_lines/2]).
%% Tether clusters a test case starts, stopped by its end_per_testcase.
-export([start_case_peer/2, start_case_nodes/2, start_tether/2,
         start_tether_peer/2,
         start_tether_nodes/2, join_all/2, start_cluster/3, stop_case_peer/1,
         kill_node/2, start_case_cnode/2, start_seeded_cnode/5, start_four/5,
         join_cnode/3, case_cnodes/0,
         forget_cnodes/0, stop_case/0]).
%% Key files for the cluster's secrets and identities.
-export([write_key_file/3, write_identity/2]).
%% Naming, addressing and TLS (tether_cnode_net_SUITE, tether_cnode_tls_SUITE).
-export([sname_host/0, tls_files/1, tls_args/1, start_private_epmd/1,
         stop_private_epmd/1, ipv6_loopback/0]).

-define(HOST, "127.0.0.1").
-define(NOT_DISTRIBUTED, "the common_test node must be distributed "
                         "(rebar3 ct --name tether_ct@127.0.0.1 --setcookie ...)").
%% Generous limits: the machine is a shared 2-vCPU VM.
-define(READY_TIMEOUT, 30000).
-define(PEER_BOOT_TIMEOUT, 60000).
-define(CALL_TIMEOUT, 30000).
-define(REPLY_TIMEOUT, 10000).

-type cnode() :: #{node := node(), name := string(), os_pid := integer(),
                   owner := pid(), stderr := file:filename()}.
-type peer() :: #{pid := pid(), node := node(),
                  connection := tcp | dist | standard_io}.
-export_type([cnode/0, peer/0]).

%%--------------------------------------------------------------------
%% Paths and environment
%%--------------------------------------------------------------------

%% @doc The tether priv directory (falls back to ../priv next to ebin, or
%% the source tree's priv when run from test/).
-spec priv_dir() -> file:filename().
priv_dir() ->
    case code:priv_dir(tether) of
        {error, bad_name} ->
            Here = filename:dirname(code:which(?MODULE)),
            Candidates = [filename:join([Here, "..", "priv"]),
                          filename:join([Here, "..", "..", "..", "..", "priv"])],
            case [D || D <- Candidates,
                       filelib:is_regular(filename:join(D, "tether_cnode"))] of
                [D | _] -> D;
                [] -> hd(Candidates)
            end;
        Dir ->
            Dir
    end.

%% @doc The C-node program: $TETHER_CNODE if set, else priv/tether_cnode.
-spec cnode_exe() -> file:filename().
%% @doc For init_per_suite of suites that start C-nodes: returns Config
%% when this node is distributed, the C-node program exists and the
%% runner's private epmd is set, and `{fail, Why}' otherwise. A missing
%% environment fails the suite instead of skipping it, so a broken set-up
%% can never pass as green.
-spec require_env(list()) -> list() | {fail, string()}.
require_env(Config) ->
    Exe = cnode_exe(),
    case {node(), filelib:is_regular(Exe), os:getenv("ERL_EPMD_PORT")} of
        {nonode@nohost, _, _} ->
            {fail, ?NOT_DISTRIBUTED};
        {_, false, _} ->
            {fail, "no C-node program at " ++ Exe ++ " (make -C c_src)"};
        {_, true, false} ->
            {fail, "ERL_EPMD_PORT is not set (the runner starts a private epmd)"};
        {_, true, _} ->
            Config
    end.

%% @doc require_env/1, and also that Module is compiled (on the code
%% path): `{fail, Why}' otherwise.
-spec require_env(list(), module()) -> list() | {fail, string()}.
require_env(Config, Module) ->
    case require_env(Config) of
        {fail, _} = Fail -> Fail;
        Config1 -> require_compiled(Config1, Module)
    end.

%% @doc For init_per_suite of suites that start BEAM peers only: returns
%% Config when this node is distributed and Module is compiled (on the
%% code path), and `{fail, Why}' otherwise.
-spec require_dist(list(), module()) -> list() | {fail, string()}.
require_dist(Config, Module) ->
    case node() of
        nonode@nohost -> {fail, ?NOT_DISTRIBUTED};
        _ -> require_compiled(Config, Module)
    end.

require_compiled(Config, Module) ->
    case code:which(Module) of
        non_existing -> {fail, atom_to_list(Module) ++ " is not compiled"};
        _ -> Config
    end.

cnode_exe() ->
    case os:getenv("TETHER_CNODE") of
        false -> filename:join(priv_dir(), "tether_cnode");
        "" -> filename:join(priv_dir(), "tether_cnode");
        Exe -> Exe
    end.

%% @doc The kv example plug-in (examples/kv/kv.c).
-spec kv_plugin() -> file:filename().
kv_plugin() ->
    filename:join([priv_dir(), "plugins", "kv.so"]).

%% @doc The test plug-in rpctest (the C twin of test/rpctest.erl).
-spec rpctest_plugin() -> file:filename().
rpctest_plugin() ->
    filename:join([priv_dir(), "..", "c_src", "build", "plugins", "rpctest.so"]).

%% @doc The standalone kv program (examples/kv/kv_node.c): the flags of
%% tether_cnode, with kv started; its ready line is `kv_node: NAME ready'.
-spec kv_node_exe() -> file:filename().
kv_node_exe() ->
    filename:join([priv_dir(), "examples", "kv_node"]).

%% @doc The private epmd port the runner started (ERL_EPMD_PORT).
-spec epmd_port() -> pos_integer().
epmd_port() ->
    list_to_integer(os:getenv("ERL_EPMD_PORT", "4369")).

%% @doc This node's cookie as a string.
-spec cookie() -> string().
cookie() ->
    atom_to_list(erlang:get_cookie()).

%% @doc A node name (without host) unique within this OS process.
-spec unique_name(string() | atom()) -> string().
unique_name(Prefix) ->
    lists:concat([Prefix, "_", erlang:unique_integer([positive]), "_",
                  os:getpid()]).

%%--------------------------------------------------------------------
%% C-node lifecycle
%%--------------------------------------------------------------------

%% @doc Starts a C-node: tether_ct:start_cnode/1 (its options; the
%% program defaults to cnode_exe/0).
-spec start_cnode(map()) -> {ok, cnode()} | {error, term()}.
start_cnode(Opts) ->
    tether_ct:start_cnode(maps:merge(#{exe => cnode_exe()}, Opts)).

%% @doc For init_per_testcase: starts a C-node (start_cnode/1 options)
%% and keeps it in Keeper. When it does not start, stops what Keeper
%% holds and fails the test case with {cnode_start_failed, Why}.
-spec start_kept_cnode(pid(), map()) -> cnode().
start_kept_cnode(Keeper, Opts) ->
    case start_cnode(Opts) of
        {ok, C} ->
            keep(Keeper, {cnode, C});
        {error, Why} ->
            _ = release_all(Keeper),
            ct:fail({cnode_start_failed, Why})
    end.

%% @doc Runs the C-node program once with Args (a command that exits by
%% itself: --help, --version, a bad flag); returns its exit status and
%% its stdout and stderr together.
-spec run_cnode([string()]) -> {integer(), string()}.
run_cnode(Args) ->
    Port = open_port({spawn_executable, cnode_exe()},
                     [{args, Args}, exit_status, stderr_to_stdout, binary]),
    run_collect(Port, []).

run_collect(Port, Acc) ->
    receive
        {Port, {data, Data}} ->
            run_collect(Port, [Acc, Data]);
        {Port, {exit_status, Status}} ->
            {Status, unicode:characters_to_list(Acc)}
    after ?REPLY_TIMEOUT ->
            error(cnode_timeout)
    end.

%% @doc Stops a C-node: tether_ct:stop_cnode/1.
-spec stop_cnode(cnode()) -> {term | killed, integer() | timeout} | already_stopped.
stop_cnode(C) ->
    tether_ct:stop_cnode(C).

%% @doc Kills a C-node with SIGKILL and waits for it to be gone
%% (tether_ct:kill_cnode/1).
-spec kill_cnode(cnode()) -> {ok, integer()} | timeout | already_stopped.
kill_cnode(C) ->
    tether_ct:kill_cnode(C).

%% @doc Sends SIGTERM and returns at once (see stop_cnode/1 to wait).
-spec term_cnode(cnode()) -> ok.
term_cnode(C) ->
    tether_ct:term_cnode(C).

%% @doc Waits for a C-node's exit status (after term_cnode/1).
-spec wait_cnode_exit(cnode(), timeout()) -> {ok, integer()} | timeout.
wait_cnode_exit(C, Timeout) ->
    tether_ct:wait_cnode_exit(C, Timeout).

-spec cnode_node(cnode()) -> node().
cnode_node(#{node := Node}) -> Node.

-spec cnode_os_pid(cnode()) -> integer().
cnode_os_pid(#{os_pid := P}) -> P.

%% @doc The stdout lines the C-node printed so far.
-spec cnode_stdout(cnode()) -> [binary()].
cnode_stdout(C) ->
    tether_ct:cnode_stdout(C).

%% @doc The stderr lines the C-node wrote so far.
-spec cnode_stderr(cnode()) -> [binary()].
cnode_stderr(C) ->
    tether_ct:cnode_stderr(C).

%% @doc Writes the C-node's stdout and stderr so far to the case log.
-spec log_cnode(cnode()) -> ok.
log_cnode(C) ->
    ct:log("C-node ~s stdout:~n~s~nC-node stderr:~n~s",
           [maps:get(name, C), [[L, $\n] || L <- cnode_stdout(C)],
            [[L, $\n] || L <- cnode_stderr(C)]]).

%% @doc True if an OS process with that pid exists (not a zombie).
-spec os_pid_alive(integer()) -> boolean().
os_pid_alive(OsPid) ->
    tether_ct:os_pid_alive(OsPid).

%% @doc Sends SIGKILL to an OS process; returns at once.
-spec kill_os_pid(integer()) -> ok.
kill_os_pid(OsPid) ->
    tether_ct:signal_os_pid(kill, OsPid).


%%--------------------------------------------------------------------
%% BEAM peers
%%--------------------------------------------------------------------

-spec start_peer(string()) -> peer().
start_peer(Name) ->
    start_peer(Name, #{}).

%% @doc Starts a BEAM peer: tether_ct:start_peer/2 (its options), with
%% tether's ebin and this module's directory as the default code path.
-spec start_peer(string() | undefined, map()) -> peer().
start_peer(Name, Opts) ->
    tether_ct:start_peer(Name, maps:merge(#{code_path => [tether_ebin(), test_dir()]},
                                          Opts)).

%% @doc The host part of short names (tether_ct:sname_host/0).
-spec sname_host() -> string().
sname_host() ->
    tether_ct:sname_host().

tether_ebin() ->
    filename:dirname(code:which(tether_nif)).

test_dir() ->
    filename:dirname(code:which(?MODULE)).

%% @doc Starts N peers in parallel (each named Prefix_I_...).
-spec start_peers(string(), pos_integer()) -> [peer()].
start_peers(Prefix, N) ->
    Parent = self(),
    Ws = [spawn_monitor(fun() ->
                                P = start_peer(unique_name(Prefix ++ integer_to_list(I))),
                                Parent ! {started, self(), P}
                        end) || I <- lists:seq(1, N)],
    collect_peers(Ws, []).

collect_peers([], Acc) ->
    lists:reverse(Acc);
collect_peers([{W, M} | Rest], Acc) ->
    receive
        {started, W, P} ->
            erlang:demonitor(M, [flush]),
            collect_peers(Rest, [P | Acc]);
        {'DOWN', M, process, W, Reason} ->
            stop_peers(Acc),
            [begin
                 erlang:demonitor(M2, [flush]),
                 receive {started, W2, P2} -> stop_peer(P2)
                 after ?PEER_BOOT_TIMEOUT + 5000 -> ok end
             end || {W2, M2} <- Rest],
            error({peer_start_failed, Reason})
    after ?PEER_BOOT_TIMEOUT + 10000 ->
            stop_peers(Acc),
            error(peer_start_timeout)
    end.

%% @doc Stops a peer; never raises (it may already be down).
-spec stop_peer(peer()) -> ok.
stop_peer(#{pid := Pid}) ->
    _ = (catch peer:stop(Pid)),
    ok.

-spec stop_peers([peer()]) -> ok.
stop_peers(Peers) ->
    lists:foreach(fun stop_peer/1, Peers).

-spec peer_node(peer()) -> node().
peer_node(#{node := Node}) -> Node.

-spec peer_call(peer(), module(), atom(), [term()]) -> term().
peer_call(Peer, M, F, A) ->
    peer_call(Peer, M, F, A, ?CALL_TIMEOUT).

%% @doc Calls M:F(A) on the peer over its control channel.
-spec peer_call(peer(), module(), atom(), [term()], timeout()) -> term().
peer_call(#{node := Node, connection := dist}, M, F, A, Timeout) ->
    erpc:call(Node, M, F, A, Timeout);
peer_call(#{pid := Pid}, M, F, A, Timeout) ->
    peer:call(Pid, M, F, A, Timeout).

%%--------------------------------------------------------------------
%% Keeper: remembers what a test case started so end_per_testcase can
%% stop it even when the case crashed half-way.
%%--------------------------------------------------------------------

%% @doc Starts a keeper (not linked: it outlives a crashed test case).
-spec start_keeper() -> pid().
start_keeper() ->
    spawn(fun() -> keeper([]) end).

%% @doc Remembers a peer or a C-node; returns it.
-spec keep(pid(), {peer, peer()} | {cnode, cnode()}) -> peer() | cnode().
keep(Keeper, {_Kind, Thing} = Item) ->
    Keeper ! {keep, Item},
    Thing.

%% @doc Stops everything kept (peers first, then C-nodes); returns, for
%% each C-node, whether it was still running before the stop and how
%% the stop went: [{Node, WasAlive, StopResult}]. The keeper ends: a
%% second release_all/1 returns [] at once.
-spec release_all(pid()) -> [{node(), boolean(), term()}].
release_all(Keeper) ->
    Ref = make_ref(),
    MRef = erlang:monitor(process, Keeper),
    Keeper ! {release, self(), Ref},
    Items = receive
                {Ref, Is} -> erlang:demonitor(MRef, [flush]), Is;
                {'DOWN', MRef, process, Keeper, _} -> []
            after ?REPLY_TIMEOUT ->
                    erlang:demonitor(MRef, [flush]), []
            end,
    stop_peers([P || {peer, P} <- Items]),
    [begin
         Alive = os_pid_alive(OsPid) andalso is_process_alive(Owner),
         {Node, Alive, stop_cnode(C)}
     end || {cnode, #{node := Node, os_pid := OsPid, owner := Owner} = C} <- Items].

%% @doc For init_per_testcase: starts a new keeper and in it a C-node
%% named after Case, its stderr in the case's priv_dir, with the
%% start_cnode/1 options Opts on top (start_kept_cnode/2). Returns Config
%% with `keeper', `cnode' (the cnode()) and `cnode_node'.
-spec init_kept_cnode(atom(), list(), map()) -> list().
init_kept_cnode(Case, Config, Opts) ->
    Keeper = start_keeper(),
    Base = #{name => unique_name(Case),
             log_dir => proplists:get_value(priv_dir, Config)},
    C = start_kept_cnode(Keeper, maps:merge(Base, Opts)),
    [{keeper, Keeper}, {cnode, C}, {cnode_node, cnode_node(C)} | Config].

%% @doc For end_per_testcase: release_case/3 of what init_kept_cnode/3
%% started. AllowDead: the case may have killed the C-node on purpose.
-spec end_kept_cnode(list(), boolean()) -> ok | {fail, term()}.
end_kept_cnode(Config, AllowDead) ->
    release_case(proplists:get_value(keeper, Config),
                 [proplists:get_value(cnode, Config)], AllowDead).

%% @doc For end_per_testcase: logs the stdout and stderr of the C-nodes
%% CNodes, stops everything Keeper holds and empties the mailbox. ok, or
%% {fail, {cnode_died_during_test, Dead}} when a kept C-node was not
%% running any more and AllowDead is false (the case did not kill it on
%% purpose).
-spec release_case(pid(), [cnode()], boolean()) -> ok | {fail, term()}.
release_case(Keeper, CNodes, AllowDead) ->
    _ = [log_cnode(C) || C <- CNodes],
    Results = release_all(Keeper),
    _ = flush(),
    case [R || {_Node, false, _} = R <- Results] of
        [_ | _] = Dead when not AllowDead -> {fail, {cnode_died_during_test, Dead}};
        _ -> ok
    end.

keeper(Items) ->
    receive
        {keep, Item} ->
            keeper([Item | Items]);
        {release, From, Ref} ->
            From ! {Ref, lists:reverse(Items)}
    end.

%%--------------------------------------------------------------------
%% Echo protocol helpers (run on this node or on peers)
%%--------------------------------------------------------------------

-spec echo(node() | pid() | {atom(), node()}, term()) -> ok | {error, term()}.
echo(Dest, Term) ->
    echo(Dest, Term, ?REPLY_TIMEOUT).

%% @doc Asks an echo process (a node's registered `echo', a {Name, Node}
%% or a pid) to send {tether_echo, Ref, Term} back; ok when it arrives
%% intact.
-spec echo(node() | pid() | {atom(), node()}, term(), timeout()) ->
          ok | {error, term()}.
echo(Dest0, Term, Timeout) ->
    Dest = case Dest0 of
               N when is_atom(N) -> {echo, N};
               D -> D
           end,
    Ref = make_ref(),
    Dest ! {echo, self(), {tether_echo, Ref, Term}},
    receive
        {tether_echo, Ref, Got} when Got =:= Term -> ok;
        {tether_echo, Ref, Got} -> {error, {mangled, Got}}
    after Timeout ->
            {error, timeout}
    end.

%% @doc net_adm:ping/1 then an echo; {Pong, EchoResult}.
-spec ping_and_echo(node(), term()) -> {pong | pang, ok | {error, term()}}.
ping_and_echo(CNode, Term) ->
    case net_adm:ping(CNode) of
        pong -> {pong, echo(CNode, Term)};
        pang -> {pang, {error, not_pinged}}
    end.

%% @doc Asks the C-node's echo to spawn a C process registered as Name.
-spec cnode_spawn(node(), atom()) -> {ok, pid()} | {error, term()}.
cnode_spawn(CNode, Name) ->
    {echo, CNode} ! {spawn, self(), Name},
    receive
        {spawned, Name, Pid} when is_pid(Pid) -> {ok, Pid}
    after ?REPLY_TIMEOUT ->
            {error, timeout}
    end.

%% @doc Starts a process that keeps every message it receives.
-spec start_collector() -> pid().
start_collector() ->
    spawn(fun() -> collector([]) end).

collector(Acc) ->
    receive
        {'$collected', From, Ref} ->
            From ! {Ref, lists:reverse(Acc)},
            collector(Acc);
        '$stop_collector' ->
            ok;
        Msg ->
            collector([Msg | Acc])
    end.

-spec collected(pid()) -> [term()].
collected(Pid) ->
    Ref = make_ref(),
    Pid ! {'$collected', self(), Ref},
    receive {Ref, Msgs} -> Msgs after ?REPLY_TIMEOUT -> error(collector_timeout) end.

%% @doc Waits until the collector holds Msg; returns its messages.
-spec wait_collected(pid(), term(), timeout()) -> {ok, [term()]} | {timeout, [term()]}.
wait_collected(Pid, Msg, Timeout) ->
    case wait_until(fun() -> lists:member(Msg, collected(Pid)) end, Timeout) of
        ok -> {ok, collected(Pid)};
        timeout -> {timeout, collected(Pid)}
    end.

%% @doc Pings CNode, watches it with monitor_node/2 for IdleMs without
%% sending anything, then reports whether a nodedown came, whether the
%% node is still connected, and whether an echo still works.
-spec idle_watch(node(), pos_integer()) -> map().
idle_watch(CNode, IdleMs) ->
    Pong = net_adm:ping(CNode),
    true = erlang:monitor_node(CNode, true),
    Down = receive {nodedown, CNode} -> true after IdleMs -> false end,
    Connected = lists:member(CNode, nodes(connected)),
    Echo = echo(CNode, still_here),
    #{ping => Pong, nodedown => Down, connected => Connected, echo => Echo,
      ticktime => net_kernel:get_net_ticktime()}.

%% @doc The names epmd lists on 127.0.0.1.
-spec epmd_names() -> [string()].
epmd_names() ->
    case net_adm:names(?HOST) of
        {ok, Names} -> [N || {N, _Port} <- Names];
        {error, _} -> []
    end.

%% @doc Polls Fun every 50 ms until it returns true; ok or timeout.
-spec wait_until(fun(() -> boolean()), non_neg_integer()) -> ok | timeout.
wait_until(Fun, Timeout) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    wait_until1(Fun, Deadline).

wait_until1(Fun, Deadline) ->
    case Fun() of
        true ->
            ok;
        false ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true ->
                    timeout;
                false ->
                    timer:sleep(50),
                    wait_until1(Fun, Deadline)
            end
    end.

%% @doc Polls Get() every 50 ms until Check(Value) holds and returns that
%% Value; fails the test case with {timeout_waiting, LastValue} once
%% Timeout milliseconds have passed.
-spec poll(fun(() -> T), fun((T) -> boolean()), non_neg_integer()) -> T.
poll(Get, Check, Timeout) ->
    poll1(Get, Check, erlang:monotonic_time(millisecond) + Timeout).

poll1(Get, Check, Deadline) ->
    V = Get(),
    case Check(V) of
        true ->
            V;
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> ct:fail({timeout_waiting, V});
                false -> timer:sleep(50), poll1(Get, Check, Deadline)
            end
    end.

%% @doc Waits until the member list of every node of Nodes (see
%% members_of/1) equals Expected; fails the test case after Timeout
%% milliseconds.
-spec wait_members([node()], [node()], non_neg_integer()) -> ok.
wait_members(Nodes, Expected, Timeout) ->
    _ = [poll(fun() -> members_of(N) end,
              fun(M) -> M =:= Expected end, Timeout) || N <- Nodes],
    ok.

%% @doc The member list of Node: tether:members() on a BEAM node running
%% the tether application, or the answer of a C-node's `tether' process
%% to `members' when Node is a C-node this test case started
%% (start_case_cnode/2).
-spec members_of(node()) -> [node()].
members_of(Node) ->
    ask(Node, members, {tether, members, []}).

%% @doc The engine's info map of Node: tether_server:info() on a BEAM
%% node, or the answer of a C-node's `tether' process to `info' when Node
%% is a C-node this test case started (start_case_cnode/2).
-spec info_of(node()) -> map().
info_of(Node) ->
    ask(Node, info, {tether_server, info, []}).

%% Request to the `tether' process of a C-node the case started, or the
%% call {M, F, A} on a BEAM node.
ask(Node, Request, {M, F, A}) ->
    case lists:member(Node, [cnode_node(C) || C <- case_cnodes()]) of
        true -> gen_server:call({tether, Node}, Request, ?REPLY_TIMEOUT);
        false -> erpc:call(Node, M, F, A, ?REPLY_TIMEOUT)
    end.

%% @doc Waits until the engines of Nodes (see info_of/1) have rejected
%% at least one message between them (recv_rejected: a signature that
%% did not verify, so no session forms); fails the test case after
%% Timeout milliseconds.
-spec wait_rejected([node()], non_neg_integer()) -> ok.
wait_rejected(Nodes, Timeout) ->
    _ = poll(fun() -> [info_of(N) || N <- Nodes] end,
             fun(Infos) ->
                     lists:sum([R || #{stats := #{recv_rejected := R}} <- Infos]) > 0
             end, Timeout),
    ok.

%% @doc Waits until more than two leases' worth of heartbeat rounds
%% (heartbeat HbMs, lease TtlMs) have passed on Node, a BEAM node across
%% a partition: it skips at least one heartbeat per round. Fails the test
%% case after Timeout milliseconds.
-spec wait_leases_pass(node(), pos_integer(), pos_integer(),
                       non_neg_integer()) -> map().
wait_leases_pass(Node, HbMs, TtlMs, Timeout) ->
    Info = fun() -> erpc:call(Node, tether_server, info, [], ?REPLY_TIMEOUT)
           end,
    #{stats := #{part_skipped := S0}} = Info(),
    Rounds = 2 * (TtlMs div HbMs) + 2,
    poll(Info, fun(#{stats := #{part_skipped := S}}) -> S >= S0 + Rounds end,
         Timeout).

%% @doc Runs on a peer (through erpc): starts a process that runs Setup,
%% then forwards every message it gets to Tester as {relay, Pid, Msg};
%% {'$relay_flush', From, Ref} is answered with {Ref, done} instead.
%% Returns the process once Setup has run.
-spec relay_start(pid(), fun(() -> term())) -> pid().
relay_start(Tester, Setup) ->
    Parent = self(),
    Pid = spawn(fun() ->
                        Setup(),
                        Parent ! {ready, self()},
                        relay_loop(Tester)
                end),
    receive {ready, Pid} -> Pid after 10000 -> error(relay_setup) end.

%% @doc The next message a relay (relay_start/2) forwarded to the caller;
%% fails the test case after Timeout milliseconds.
-spec relay_next(pid(), non_neg_integer()) -> term().
relay_next(Relay, Timeout) ->
    receive
        {relay, Relay, Msg} -> Msg
    after Timeout ->
            ct:fail({no_message_to, Relay})
    end.

%% @doc Everything a relay (relay_start/2) had forwarded to the caller
%% before a round trip through it; fails the test case when the round
%% trip takes over Timeout milliseconds.
-spec relay_flush(pid(), non_neg_integer()) -> [term()].
relay_flush(Relay, Timeout) ->
    Ref = make_ref(),
    Relay ! {'$relay_flush', self(), Ref},
    receive {Ref, done} -> ok after Timeout -> ct:fail(relay_flush) end,
    relay_collect(Relay).

relay_collect(Relay) ->
    receive
        {relay, Relay, Msg} -> [Msg | relay_collect(Relay)]
    after 0 ->
            []
    end.

relay_loop(Tester) ->
    receive
        {'$relay_flush', From, Ref} ->
            From ! {Ref, done},
            relay_loop(Tester);
        Msg ->
            Tester ! {relay, self(), Msg},
            relay_loop(Tester)
    end.

%% @doc Starts a process linked to the caller that runs
%% erpc:call(Node, M, F, A, Timeout), a call expected to be held by a
%% defer partition, and sends its answer to the caller as
%% {held_call, Pid, Answer}; returns Pid (see held_call_not_returned/1
%% and held_call_answer/2).
-spec held_call_start(node(), module(), atom(), list(), timeout(), pid()) ->
          pid().
held_call_start(Node, M, F, A, Timeout, Tester) ->
    spawn_link(fun() ->
                       R = erpc:call(Node, M, F, A, Timeout),
                       Tester ! {held_call, self(), R}
               end).

%% @doc ok if the held call (held_call_start/6) has not answered yet;
%% fails the test case with {returned_across_defer, Answer} if it has.
-spec held_call_not_returned(pid()) -> ok.
held_call_not_returned(Caller) ->
    receive
        {held_call, Caller, Early} -> ct:fail({returned_across_defer, Early})
    after 0 ->
            ok
    end.

%% @doc The answer of the held call (held_call_start/6); fails the test
%% case with no_answer_after_heal after Timeout milliseconds.
-spec held_call_answer(pid(), non_neg_integer()) -> term().
held_call_answer(Caller, Timeout) ->
    receive
        {held_call, Caller, R} -> R
    after Timeout ->
            ct:fail(no_answer_after_heal)
    end.

%% @doc For init_per_suite/1: require_env/1, and also the C-node test
%% plug-in Plugin (require_plugin/1); Config or {fail, Why}.
-spec require_env_plugin(list(), file:filename()) -> list() | {fail, string()}.
require_env_plugin(Config, Plugin) ->
    case require_env(Config) of
        {fail, _} = Fail ->
            Fail;
        Config1 ->
            case require_plugin(Plugin) of
                ok -> Config1;
                Fail -> Fail
            end
    end.

%% @doc Waits until a stderr line of the C-node contains Text; fails the
%% test case (with the C-node's output in its log) if none does within
%% ?READY_TIMEOUT.
-spec cnode_logged(cnode(), string()) -> ok.
cnode_logged(C, Text) ->
    case wait_until(fun() -> cnode_log_lines(C, Text) =/= [] end, ?READY_TIMEOUT) of
        ok -> ok;
        timeout -> log_cnode(C), ct:fail({not_logged, Text})
    end.

%% @doc cnode_logged/2, and exactly one line contains Text.
-spec cnode_logged_once(cnode(), string()) -> ok.
cnode_logged_once(C, Text) ->
    ok = cnode_logged(C, Text),
    case cnode_log_lines(C, Text) of
        [_] -> ok;
        Lines -> ct:fail({logged_more_than_once, Text, Lines})
    end.

%% @doc The C-node's stderr lines that contain Text.
-spec cnode_log_lines(cnode(), string()) -> [binary()].
cnode_log_lines(C, Text) ->
    [L || L <- cnode_stderr(C), string:find(L, Text) =/= nomatch].

%% @doc For init_per_group/2: ok if the C-node test plug-in Plugin has
%% been built, else {fail, Reason} naming it and how to build it.
-spec require_plugin(file:filename()) -> ok | {fail, string()}.
require_plugin(Plugin) ->
    case filelib:is_regular(Plugin) of
        true -> ok;
        false -> {fail, "no test plug-in at " ++ Plugin ++ " (make -C c_src)"}
    end.

%%--------------------------------------------------------------------
%% Tether clusters of a test case. What a case starts is kept in its
%% process dictionary (tether_peers, tether_cnodes), so
%% stop_case/0 in end_per_testcase (the same process) stops it even when
%% the case crashed half-way.
%%--------------------------------------------------------------------

%% @doc Starts a peer (start_peer/2: Name and options) and keeps it
%% for stop_case/0; returns it.
-spec start_case_peer(string() | undefined, map()) -> peer().
start_case_peer(Name, Opts) ->
    P = start_peer(Name, Opts),
    put(tether_peers, [P | case_list(tether_peers)]),
    P.

%% @doc Starts N peers for the test case (start_case_peer/2, named
%% peer:random_name(Prefix)) and returns their nodes, which the case
%% reaches with erpc (so they have long names, like this node). Options:
%% prefix (an atom, default tether_peer), connection (default dist: the
%% peers share this node's cookie and are connected to it), and
%% start_peer/2's (link: true, the peers go down with the case; default
%% false, a case may kill one).
-spec start_case_nodes(pos_integer(), map()) -> [node()].
start_case_nodes(N, Opts) ->
    Prefix = maps:get(prefix, Opts, tether_peer),
    PeerOpts = maps:merge(#{connection => dist}, maps:remove(prefix, Opts)),
    [peer_node(start_case_peer(peer:random_name(Prefix), PeerOpts))
     || _ <- lists:seq(1, N)].

%% @doc Starts the tether application on Node with the application
%% environment Env ([{Key, Value}]); ensure_all_started's answer.
-spec start_tether(node(), [{atom(), term()}]) ->
          {ok, [atom()]} | {error, term()}.
start_tether(Node, Env) ->
    start_tether_with(
      fun(F, A) -> erpc:call(Node, application, F, A, ?CALL_TIMEOUT) end, Env).

%% @doc start_tether/2 on a peer reached over its control channel (one
%% this node cannot reach over distribution: a short name, TLS, IPv6).
-spec start_tether_peer(peer(), [{atom(), term()}]) ->
          {ok, [atom()]} | {error, term()}.
start_tether_peer(Peer, Env) ->
    start_tether_with(fun(F, A) -> peer_call(Peer, application, F, A) end, Env).

start_tether_with(Call, Env) ->
    ok = case Call(load, [tether]) of
             {error, {already_loaded, tether}} -> ok;
             Loaded -> Loaded
         end,
    _ = [ok = Call(set_env, [tether, K, V]) || {K, V} <- Env],
    Call(ensure_all_started, [tether]).

%% @doc Starts N peers (start_case_nodes/2 and its options) and starts
%% the tether application on each, with the application environment in
%% the option env ([{Key, Value}]); returns their nodes.
-spec start_tether_nodes(pos_integer(), map()) -> [node()].
start_tether_nodes(N, Opts) ->
    Nodes = start_case_nodes(N, maps:remove(env, Opts)),
    _ = [{ok, _} = start_tether(Node, maps:get(env, Opts, [])) || Node <- Nodes],
    Nodes.

%% @doc Joins every other node of Nodes (BEAM nodes running tether) to
%% the first and waits until all of them list exactly Nodes; fails the
%% test case after Timeout milliseconds.
-spec join_all([node(), ...], non_neg_integer()) -> ok.
join_all([First | Rest] = Nodes, Timeout) ->
    _ = [ok = erpc:call(N, tether, join, [First], ?CALL_TIMEOUT) || N <- Rest],
    wait_members(Nodes, lists:sort(Nodes), Timeout).

%% @doc N clustered peers running tether, started by
%% tether_ct:start_cluster/2 and kept for stop_case/0; returns their
%% nodes (reached with erpc: they have long names and this node's
%% cookie). Options: prefix, env ([{Key, Value}] for tether),
%% overlapping_partitions (false: global's prevent_overlapping_partitions
%% off, so a killed peer does not make global cut the others off),
%% cnodes (C-nodes to add to the cluster, default 0; not in the result:
%% tether:members/0 lists them). Timeout is how long the members may take
%% to agree.
-spec start_cluster(pos_integer(), map(), non_neg_integer()) -> [node()].
start_cluster(N, Opts, Timeout) ->
    Args = case maps:get(overlapping_partitions, Opts, true) of
               true -> [];
               false -> ["-kernel", "prevent_overlapping_partitions", "false"]
           end,
    C = tether_ct:start_cluster(
          [], #{beam => N, cnodes => maps:get(cnodes, Opts, 0),
                prefix => maps:get(prefix, Opts, tether_peer),
                env => [{tether, K, V} || {K, V} <- maps:get(env, Opts, [])],
                code_path => [tether_ebin(), test_dir()], args => Args,
                wait_ms => Timeout}),
    put(tether_clusters, [C | case_list(tether_clusters)]),
    tether_ct:beam_nodes(C).

%% @doc Stops the peer behind a node the test case started
%% (start_case_peer/2 or start_cluster/3).
-spec stop_case_peer(node()) -> ok.
stop_case_peer(Node) ->
    case [P || #{node := N} = P <- case_list(tether_peers), N =:= Node] of
        [P] ->
            peer:stop(maps:get(pid, P));
        [] ->
            [C] = [C || C <- case_list(tether_clusters),
                        lists:member(Node, tether_ct:nodes(C))],
            tether_ct:stop(C, Node)
    end.

%% @doc Kills the OS process of a BEAM node with SIGKILL and waits until
%% it is gone; fails the test case after Timeout milliseconds.
-spec kill_node(node(), non_neg_integer()) -> ok.
kill_node(Node, Timeout) ->
    OsPid = list_to_integer(erpc:call(Node, os, getpid, [], ?CALL_TIMEOUT)),
    ok = kill_os_pid(OsPid),
    _ = poll(fun() -> os_pid_alive(OsPid) end, fun(Alive) -> not Alive end,
             Timeout),
    ok.

%% @doc Starts a C-node (start_cnode/1 options) and keeps it for
%% stop_case/0, trying up to Tries times (250 ms apart: a name just
%% freed by SIGKILL may still be in epmd); fails the test case when no
%% try succeeds.
-spec start_case_cnode(map(), pos_integer()) -> cnode().
start_case_cnode(Opts, Tries) ->
    case start_cnode(Opts) of
        {ok, C} ->
            put(tether_cnodes, [C | case_cnodes()]),
            C;
        {error, Why} when Tries > 1 ->
            ct:pal("C-node start failed, retrying: ~p", [Why]),
            timer:sleep(250),
            start_case_cnode(Opts, Tries - 1);
        {error, Why} ->
            ct:fail({cnode_start_failed, Why})
    end.

%% @doc Starts a C-node for the test case (start_case_cnode/2, up to 20
%% tries) named Name, with the heartbeat and TTL of Timing (a map with
%% `heartbeat_ms' and `ttl_ms'), joining Seeds (--join), with the extra
%% command-line arguments Extra and its stderr in the case's priv_dir.
-spec start_seeded_cnode(list(), map(), [node()], atom() | string(),
                         [string()]) -> cnode().
start_seeded_cnode(Config, Timing, Seeds, Name, Extra) ->
    Opts = Timing#{name => Name, join => Seeds, extra_args => Extra,
                   log_dir => proplists:get_value(priv_dir, Config)},
    start_case_cnode(Opts, 20).

%% @doc Starts for the test case three clustered BEAM nodes with NodeOpts
%% (start_cluster/3) and a C-node named after CNodePrefix that joins the
%% first of them with the heartbeat and TTL of NodeOpts' `env' and the
%% extra arguments Extra (start_seeded_cnode/5); waits until all four
%% list all four. Returns `{CNode, BeamNodes}'; fails the test case after
%% Timeout milliseconds at each step.
-spec start_four(list(), map(), atom(), [string()], non_neg_integer()) ->
          {node(), [node()]}.
start_four(Config, #{env := Env} = NodeOpts, CNodePrefix, Extra, Timeout) ->
    [B1 | _] = Bs = start_cluster(3, NodeOpts, Timeout),
    Timing = maps:with([heartbeat_ms, ttl_ms], maps:from_list(Env)),
    C = start_seeded_cnode(Config, Timing, [B1], unique_name(CNodePrefix),
                           Extra),
    CN = cnode_node(C),
    ok = wait_members([CN | Bs], lists:sort([CN | Bs]), Timeout),
    {CN, Bs}.

%% @doc Starts a C-node for the test case (start_case_cnode/2, one try)
%% that joins the first node of Nodes (BEAM nodes running tether), and
%% waits until every node of Nodes lists Nodes and the C-node; returns
%% the C-node's node. Fails the test case after Timeout milliseconds.
-spec join_cnode([node(), ...], map(), non_neg_integer()) -> node().
join_cnode([First | _] = Nodes, Opts, Timeout) ->
    C = start_case_cnode(Opts#{join => [First]}, 1),
    CN = cnode_node(C),
    ok = wait_members(Nodes, lists:sort([CN | Nodes]), Timeout),
    CN.

%% @doc The C-nodes the test case started and has not forgotten.
-spec case_cnodes() -> [cnode()].
case_cnodes() ->
    case_list(tether_cnodes).

%% @doc Forgets the case's C-nodes (after the case killed them itself).
-spec forget_cnodes() -> ok.
forget_cnodes() ->
    put(tether_cnodes, []),
    ok.

%% @doc For end_per_testcase: stops the C-nodes and peers the test case
%% started (never raises: some may be down already) and forgets them.
-spec stop_case() -> ok.
stop_case() ->
    _ = [catch stop_cnode(C) || C <- case_cnodes()],
    ok = stop_peers(case_list(tether_peers)),
    _ = [tether_ct:stop_cluster(C) || C <- case_list(tether_clusters)],
    _ = [erase(K) || K <- [tether_cnodes, tether_peers, tether_clusters]],
    ok.

case_list(Key) ->
    case get(Key) of
        undefined -> [];
        L -> L
    end.

%% @doc Writes Bytes to the file Name in Dir with mode 0600 (a key file
%% tether accepts); returns its path.
-spec write_key_file(file:filename(), string(), binary()) -> file:filename().
write_key_file(Dir, Name, Bytes) ->
    F = filename:join(Dir, Name),
    ok = file:write_file(F, Bytes),
    ok = file:change_mode(F, 8#600),
    F.

%% @doc A new Ed25519 identity in Dir: its seed in Prefix.seed (tether's
%% identity file) and its public key in Prefix.pub. Returns {SeedFile,
%% PublicKey, PublicKeyFile}.
-spec write_identity(file:filename(), string()) ->
          {file:filename(), binary(), file:filename()}.
write_identity(Dir, Prefix) ->
    Seed = crypto:strong_rand_bytes(32),
    {Pub, _} = crypto:generate_key(eddsa, ed25519, Seed),
    {write_key_file(Dir, Prefix ++ ".seed", Seed), Pub,
     write_key_file(Dir, Prefix ++ ".pub", Pub)}.

%% @doc Empties the caller's mailbox, returning what was there.
-spec flush() -> [term()].
flush() ->
    receive M -> [M | flush()] after 0 -> [] end.

%%--------------------------------------------------------------------
%% TLS distribution and private epmds
%%--------------------------------------------------------------------

%% @doc Throw-away certificates and ssl_dist_optfiles in Dir, made by
%% scripts/tls_certs.sh (openssl CLI): a map of their paths (keys dist,
%% other, rogue: optfiles; ca, cert, key, rogue_cert, rogue_key).
-spec tls_files(file:filename()) -> #{atom() => file:filename()}.
tls_files(Dir) ->
    Script = filename:join([priv_dir(), "..", "scripts", "tls_certs.sh"]),
    Out = os:cmd(Script ++ " '" ++ Dir ++ "' 2>&1; echo \"status=$?\""),
    case string:find(Out, "status=0") of
        nomatch -> error({tls_certs_failed, Out});
        _ -> ok
    end,
    F = fun(File) -> filename:join(Dir, File) end,
    #{dist => F("dist.conf"), other => F("other.conf"), rogue => F("rogue.conf"),
      ca => F("ca.pem"), cert => F("node.pem"), key => F("node.key"),
      rogue_cert => F("rogue.pem"), rogue_key => F("rogue.key")}.

%% @doc erl's arguments for TLS distribution with the optfile OptFile
%% (`-proto_dist inet_tls'); C-nodes take --proto-dist / --ssl-dist-optfile.
-spec tls_args(file:filename()) -> [string()].
tls_args(OptFile) ->
    ["-proto_dist", "inet_tls", "-ssl_dist_optfile", OptFile].

%% @doc Starts an epmd listening on Address only ("::1", say) on a free
%% port (tether_ct:start_private_epmd/1); returns {Owner, Port}. Stop it
%% with stop_private_epmd/1.
-spec start_private_epmd(string()) -> {pid(), inet:port_number()}.
start_private_epmd(Address) ->
    tether_ct:start_private_epmd(Address).

%% @doc Stops an epmd start_private_epmd/1 started.
-spec stop_private_epmd({pid(), inet:port_number()}) -> ok.
stop_private_epmd(Epmd) ->
    tether_ct:stop_private_epmd(Epmd).

%% @doc True when this machine can listen and connect on ::1.
-spec ipv6_loopback() -> boolean().
ipv6_loopback() ->
    case gen_tcp:listen(0, [inet6, {ip, {0, 0, 0, 0, 0, 0, 0, 1}}]) of
        {ok, L} -> gen_tcp:close(L), true;
        {error, _} -> false
    end.
