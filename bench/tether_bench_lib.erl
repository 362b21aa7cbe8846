%% @doc What the cluster benchmarks share: the entry point's error
%% handling, starting tether on this node and on peers, waiting, medians
%% and alternating rounds. Compiled with them by bench/run.
-module(tether_bench_lib).

-export([main/2, start_tether/2, start_peer/2, with_cluster/3, wait/1,
         wait/2, median/1, alternate/3]).

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
