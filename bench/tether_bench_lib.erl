%% @doc What the cluster benchmarks share: the entry point's error
%% handling, starting tether on this node and on peers, waiting, medians
%% and alternating rounds. Compiled with them by bench/run.
-module(tether_bench_lib).

-export([main/2, start_tether/2, start_peer/2, with_cluster/3, wait/1,
         wait/2, median/1, alternate/3]).
%% Visibility: how soon a peer sees what the driver did.
-export([start_poller/1, poller/1, watch/3, hop/1]).

-define(WAIT_MS, 30000).

%% @doc Runs Run() for the benchmark module Mod with the logger at level
%% error (a peer stopping at the end makes OTP log notices that would mix
%% with the figures), prints what it raised, and stops the node: status 0
%% when Run returned, 1 when it raised.
-spec main(module(), fun(() -> term())) -> no_return().
main(Mod, Run) ->
    ok = logger:set_primary_config(level, error),
    Status = try Run() of
                 _ -> 0
             catch
                 Class:Reason:Stack ->
                     io:format(standard_error, "~s: ~p:~p~n~p~n",
                               [Mod, Class, Reason, Stack]),
                     1
             end,
    init:stop(Status),
    receive after infinity -> ok end.

%% @doc Starts the tether application on Node with the application env
%% Env (a proplist) set first.
-spec start_tether(node(), [{atom(), term()}]) -> ok.
start_tether(Node, Env) ->
    ok = erpc:call(Node, application, load, [tether]),
    [ok = erpc:call(Node, application, set_env, [tether, K, V])
     || {K, V} <- Env],
    {ok, _} = erpc:call(Node, application, ensure_all_started, [tether]),
    ok.

%% @doc Starts a peer named Name on loopback with this node's cookie and
%% code paths of tether and the benchmarks; returns {PeerPid, Node}.
-spec start_peer(atom(), [string()]) -> {pid(), node()}.
start_peer(Name, ExtraArgs) ->
    Ebin = filename:dirname(code:which(tether)),
    Here = filename:dirname(code:which(?MODULE)),
    {ok, Pid, Node} =
        peer:start(#{name => Name, host => "127.0.0.1", longnames => true,
                     args => ["-setcookie", atom_to_list(erlang:get_cookie()),
                              "-kernel", "inet_dist_use_interface",
                              "{127,0,0,1}", "-pa", Ebin, "-pa", Here
                              | ExtraArgs]}),
    {Pid, Node}.

%% @doc Starts tether here and on two peers named after Prefix (all with
%% the application env Env), joins the peers to this node, waits until
%% all three list the same members, runs Fun([Peer1, Peer2]) and stops
%% the peers, whatever happens.
-spec with_cluster(string(), [{atom(), term()}], fun(([node()]) -> T)) -> T.
with_cluster(Prefix, Env, Fun) ->
    ok = start_tether(node(), Env),
    Peers = [start_peer(list_to_atom(lists:concat([Prefix, I, "_",
                                                  os:getpid()])), [])
             || I <- [1, 2]],
    Nodes = [N || {_, N} <- Peers],
    try
        [ok = start_tether(N, Env) || N <- Nodes],
        [ok = erpc:call(N, tether, join, [node()]) || N <- Nodes],
        All = lists:sort([node() | Nodes]),
        wait(fun() -> [tether:members() | [erpc:call(N, tether, members, [])
                                          || N <- Nodes]] end,
             fun(Ms) -> lists:all(fun(M) -> M =:= All end, Ms) end),
        Fun(Nodes)
    after
        [catch peer:stop(Pid) || {Pid, _} <- Peers]
    end.

%% @doc Polls Pred() until it is true, failing after 30 s.
-spec wait(fun(() -> boolean())) -> true.
wait(Pred) ->
    wait(Pred, fun(V) -> V end).

%% @doc Polls Get() until Check(Value) holds and returns Value; fails
%% with {timeout_waiting, LastValue} after 30 s.
-spec wait(fun(() -> T), fun((T) -> boolean())) -> T.
wait(Get, Check) ->
    wait(Get, Check, erlang:monotonic_time(millisecond) + ?WAIT_MS).

wait(Get, Check, Deadline) ->
    V = Get(),
    case Check(V) of
        true -> V;
        false ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> error({timeout_waiting, V});
                false -> timer:sleep(20), wait(Get, Check, Deadline)
            end
    end.

%% @doc The median of a non-empty list of numbers (the lower middle one
%% for an even count).
-spec median([number()]) -> number().
median(L) ->
    lists:nth((length(L) + 1) div 2, lists:sort(L)).

%% @doc The medians of Rounds rounds of A() and B() alternating (one
%% warm-up of each first), so that drift hits both alike: {MedianA,
%% MedianB}.
-spec alternate(pos_integer(), fun(() -> number()), fun(() -> number())) ->
          {number(), number()}.
alternate(Rounds, A, B) ->
    _ = {A(), B()},
    {As, Bs} = lists:unzip([{A(), B()} || _ <- lists:seq(1, Rounds)]),
    {median(As), median(Bs)}.

%%% Visibility

%% @doc Spawns poller/1 on Peer for this driver process; returns its pid
%% (send it `stop' when done).
-spec start_poller(node()) -> pid().
start_poller(Peer) ->
    erpc:call(Peer, erlang, spawn, [?MODULE, poller, [self()]]).

%% @doc On a peer: serves the driver's visibility rounds. On `{watch,
%% Look, Driver, Ref}' it checks that Look() answers `none' now, says so
%% with `{watching, Ref}', then calls Look() until it answers `{found,
%% V}' and sends `{seen, Ref, V, SeenAtUs}' (the OS clock: one host, one
%% clock); `{hop, Driver, Ref}' is answered at once with `{hop, Ref,
%% NowUs}'; `stop' ends it. It spins at low priority, so that it never
%% delays the work of its own node it is watching.
-spec poller(pid()) -> ok.
poller(Driver) ->
    _ = process_flag(priority, low),
    poll(Driver).

poll(Driver) ->
    receive
        {watch, Look, Driver, Ref} ->
            none = Look(),
            Driver ! {watching, Ref},
            V = spin(Look),
            SeenAt = os:system_time(microsecond),
            Driver ! {seen, Ref, V, SeenAt},
            poll(Driver);
        {hop, Driver, Ref} ->
            Driver ! {hop, Ref, os:system_time(microsecond)},
            poll(Driver);
        stop ->
            ok
    end.

spin(Look) ->
    case Look() of
        none -> erlang:yield(), spin(Look);
        {found, V} -> V
    end.

%% @doc Has Poller watch Look (see poller/1), then runs Act() here:
%% returns `{VisibleUs, ActUs, V}', the microseconds from just before
%% Act() until the poller saw Look() answer `{found, V}' (at least 1),
%% and those Act() itself took.
-spec watch(pid(), fun(() -> none | {found, T}), fun(() -> term())) ->
          {pos_integer(), non_neg_integer(), T}.
watch(Poller, Look, Act) ->
    Ref = make_ref(),
    Poller ! {watch, Look, self(), Ref},
    receive {watching, Ref} -> ok after ?WAIT_MS -> error(poller) end,
    T0 = os:system_time(microsecond),
    _ = Act(),
    Tr = os:system_time(microsecond),
    receive
        {seen, Ref, V, T1} -> {max(1, T1 - T0), Tr - T0, V}
    after ?WAIT_MS ->
            error(not_visible)
    end.

%% @doc Microseconds for one message from this process to Poller (at
%% least 1).
-spec hop(pid()) -> pos_integer().
hop(Poller) ->
    Ref = make_ref(),
    T0 = os:system_time(microsecond),
    Poller ! {hop, self(), Ref},
    receive {hop, Ref, T1} -> max(1, T1 - T0)
    after ?WAIT_MS -> error(hop)
    end.
