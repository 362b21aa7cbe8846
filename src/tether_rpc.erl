%% @doc Partition-aware RPC between tether members, inside envelopes.
%%
%% `call/4,5', `multicall/3,4,5', `cast/4' and `abcast/2,3' have the
%% shapes of their `rpc' namesakes, as in Lockstep.RPC (an Elixir
%% library mirroring Erlang's `rpc' with partition modes, whose semantics
%% tether follows); `call_service/4' and `call_service_all/4' call a
%% service's instances with failover, as Malla.Node (an Elixir library
%% for services spread over a cluster) does; see {@link tether_service}.
%% The `tether' module exports all of them; this module implements them.
%%
%% Arguments of the wrong type raise `badarg' (as `rpc' does: a Timeout
%% that is neither `infinity' nor a non-negative integer, Nodes that is
%% not a list); an option list with an unknown or ill-typed option
%% answers `{error, {bad_option, Opt}}'.
%%
%% == How a call travels ==
%%
%% The request is one term, `{tether_rpc, Request}', sealed for the
%% target by this node's engine (an envelope with a MAC under the session
%% of the two members, see `c_src/core/engine.h'). The calling process
%% seals it itself (a NIF call, no message to the tether server) and
%% carries it with `erpc' to {@link execute/2} on the target, which opens
%% it under the same session, runs the function and answers with the
%% outcome sealed the other way. So a call costs one erpc round trip and
%% four MACs, and a forged, replayed or tampered request is refused
%% (and counted) before anything runs. The target may be a BEAM node
%% running the tether application or a C-node (`tether_cnode', whose
%% `tether_rpc:execute/2' is written in C and runs its C functions).
%%
%% == Partitions ==
%%
%% The engine applies the partition rules when it seals and when it
%% opens. Across a `drop' partition (or with no session to the target) a
%% request is not sealed at all: `call' returns `{badrpc, nodedown}' at
%% once, `cast' and `abcast' drop it. Across a `defer' partition the
%% engine holds the request (or, if the target learnt of the partition
%% first, the target's engine holds it) and delivers it in order on heal
%% through the tether servers; the caller waits for the answer until its
%% timeout, and then returns `{badrpc, timeout}' (the request still runs
%% on heal, as a timed-out `rpc:call' still runs).
%%
%% == Request and answer terms (module messages of the engine) ==
%% ```
%% {call, ReplyTo, M, F, A}            ReplyTo: an alias of the caller
%% {svc_call, ReplyTo, Service, F, A}
%% {cast, M, F, A}
%% {abcast, Name, Msg}
%% {reply, ReplyTo, Outcome}           the answer on the deferred path
%% Outcome = {return, V} | {throw, V} | {error, R, Stack} | {exit, R}
%%         | service_not_available
%% '''
%% execute/2 returns `{sealed, Envelope}' (the answer), `deferred' (a
%% partition holds the request or the answer: it comes later as
%% `{reply, ...}' through the servers), `{refused, Reason}' (the request
%% did not run) or `{no_answer, Reason}' (it ran, but its answer could
%% not be sealed: a drop partition came in between, say; the caller
%% counts it as a lost connection, so call_service retries it only when
%% idempotent).
-module(tether_rpc).

-export([call/4, call/5, multicall/3, multicall/4, multicall/5, cast/4,
         abcast/2, abcast/3, call_service/4, call_service_all/4]).
-export([execute/2, serve/3]).
-export([seal/3, open/3]).

-export_type([call_service_opt/0]).

%% Messages from this size on are sealed and opened on a dirty scheduler.
-define(DIRTY_BYTES, 256 * 1024).
-define(DEFAULT_SERVICE_TIMEOUT, 5000).
%% The frame of ours below which a user function's error stack is cut.
-define(IS_CUT_FRAME(Frame),
        (element(1, Frame) =:= ?MODULE andalso
         element(2, Frame) =:= apply_outcome)).

-type outcome() :: {return, term()} | {throw, term()}
                 | {error, term(), list()} | {exit, term()}
                 | service_not_available.

%% Options of call_service/4 and call_service_all/4.
-type call_service_opt() :: {timeout, timeout()} | idempotent
                          | {idempotent, boolean()} | {nodes, [node()]}.

%% A request in flight.
-record(req, {
    node :: node(),
    how :: local | fast | deferred | {failed, term()},
    id :: erpc:request_id() | reference() | undefined,
    alias :: reference() | undefined,
    engine :: tether_nif:engine() | undefined  % that sealed the request
}).

%%% Calls

%% @doc call(Node, M, F, A, infinity).
-spec call(node(), module(), atom(), [term()]) -> term() | {badrpc, term()}.
call(Node, M, F, A) ->
    call(Node, M, F, A, infinity).

%% @doc Runs `apply(M, F, A)' on Node and returns its value, with the
%% shapes of `rpc:call/5': a thrown value is returned, an error is
%% `{badrpc, {'EXIT', {Reason, Stack}}}', an exit `{badrpc, {'EXIT',
%% Reason}}'. `{badrpc, nodedown}' at once when Node is not a reachable
%% member (no session, or a drop partition between us), or when the
%% connection goes down during the call; `{badrpc, timeout}' after
%% Timeout ms (across a defer partition the call completes after heal if
%% its timeout has not passed). On a C-node, M:F/length(A) is a C function
%% registered with tether_function_register().
-spec call(node(), module(), atom(), [term()], timeout()) ->
          term() | {badrpc, term()}.
call(Node, M, F, A, Timeout)
  when is_atom(Node), is_atom(M), is_atom(F), is_list(A) ->
    Deadline = deadline(Timeout),
    R = send(Node, fun(Alias) -> {call, Alias, M, F, A} end,
             fun() -> apply_outcome(M, F, A) end),
    rpcify(await(R, Deadline));
call(_Node, _M, _F, _A, _Timeout) ->
    error(badarg).

%% @doc multicall(members(), M, F, A, infinity), this node included.
-spec multicall(module(), atom(), [term()]) -> {[term()], [node()]}.
multicall(M, F, A) ->
    multicall(members(), M, F, A, infinity).

%% @doc multicall(Nodes, M, F, A, infinity).
-spec multicall([node()], module(), atom(), [term()]) ->
          {[term()], [node()]}.
multicall(Nodes, M, F, A) ->
    multicall(Nodes, M, F, A, infinity).

%% @doc Calls `apply(M, F, A)' on every node of Nodes at once and waits
%% for all, at most Timeout ms in total. Returns `{Results, BadNodes}'
%% as `rpc:multicall/5' does: Results in the order of Nodes, one per node
%% that answered (an exception as `{badrpc, {'EXIT', ...}}'), and
%% BadNodes the nodes that were down, separated by a drop partition, or
%% did not answer in time.
-spec multicall([node()], module(), atom(), [term()], timeout()) ->
          {[term()], [node()]}.
multicall(Nodes, M, F, A, Timeout)
  when is_list(Nodes), is_atom(M), is_atom(F), is_list(A) ->
    Deadline = deadline(Timeout),
    Reqs = [send(N, fun(Alias) -> {call, Alias, M, F, A} end,
                 fun() -> apply_outcome(M, F, A) end)
            || N <- Nodes],
    Answers = [{R#req.node, rpcify(await(R, Deadline))} || R <- Reqs],
    {[V || {_, V} <- Answers, not bad_node(V)],
     [N || {N, V} <- Answers, bad_node(V)]};
multicall(_Nodes, _M, _F, _A, _Timeout) ->
    error(badarg).

%% @doc Runs `apply(M, F, A)' on Node without waiting; always `true', as
%% `rpc:cast/4'. Dropped across a drop partition, held across a defer one.
-spec cast(node(), module(), atom(), [term()]) -> true.
cast(Node, M, F, A) when is_atom(Node), is_atom(M), is_atom(F), is_list(A) ->
    case Node =:= node() of
        true ->
            _ = spawn(fun() -> _ = apply_outcome(M, F, A) end),
            true;
        false ->
            _ = push(Node, {cast, M, F, A}),
            true
    end;
cast(_Node, _M, _F, _A) ->
    error(badarg).

%% @doc abcast(members(), Name, Msg).
-spec abcast(atom(), term()) -> abcast.
abcast(Name, Msg) ->
    abcast(members(), Name, Msg).

%% @doc Sends Msg to the process registered locally as Name on every node
%% of Nodes (this one included when listed), as `rpc:abcast/3'; always
%% `abcast'. On a C-node, Name is a registered C process or service.
-spec abcast([node()], atom(), term()) -> abcast.
abcast(Nodes, Name, Msg) when is_list(Nodes), is_atom(Name) ->
    lists:foreach(
      fun(N) when N =:= node() -> catch Name ! Msg;
         (N) when is_atom(N) -> push(N, {abcast, Name, Msg})
      end, Nodes),
    abcast;
abcast(_Nodes, _Name, _Msg) ->
    error(badarg).

%%% Services

%% @doc Calls Fun(Args...) on an instance of Service, with failover.
%%
%% Instances are tried in the order of `tether_service:get_nodes/1' (this
%% node first) or of the `{nodes, Nodes}' option. On the instance's node
%% the call runs `Module:Fun(Args...)', where Module is the `module' key
%% of the instance's metadata if it has one, else Service itself; on a
%% C-node it runs the C function Service:Fun/length(Args). The next
%% instance is tried only when this one answers `{error,
%% service_not_available}' (its node no longer runs the service, or the
%% request could not be sent to it at all, so it never ran). After a crash
%% (`{badrpc, {'EXIT', _}}'), a timeout or a lost connection the call may
%% have run, so the next instance is tried only when the call is marked
%% `idempotent'. Returns the value, `{badrpc, Reason}' as call/5, or
%% `{error, service_not_available}' when no instance could take it.
%% Options: `{timeout, Ms}' per attempt (default 5000), `idempotent',
%% `{nodes, [Node]}'. An unknown option or a bad value answers `{error,
%% {bad_option, Opt}}' before anything is sent; a Fun, Args or Opts of
%% the wrong type raises `badarg'.
-spec call_service(term(), atom(), [term()], [call_service_opt()]) ->
          term() | {badrpc, term()}
          | {error, service_not_available | {bad_option, term()}}.
call_service(Service, Fun, Args, Opts)
  when is_atom(Fun), is_list(Args), is_list(Opts) ->
    with_service_opts(
      Opts,
      fun(Timeout) ->
              Idem = proplists:get_bool(idempotent, Opts),
              Nodes = service_nodes(Service, Opts),
              try_instances(Nodes, Service, Fun, Args, Timeout, Idem,
                            {error, service_not_available})
      end);
call_service(_Service, _Fun, _Args, _Opts) ->
    error(badarg).

%% @doc Calls Fun(Args...) on every instance of Service at once and
%% returns `[{Node, Result}]' in the order of `tether_service:get_nodes/1'
%% (or of the `{nodes, Nodes}' option), each Result as call_service/4
%% would return it from that instance alone. Options as call_service/4
%% (`idempotent' has no effect: nothing is retried), and so is
%% `{error, {bad_option, Opt}}'.
-spec call_service_all(term(), atom(), [term()], [call_service_opt()]) ->
          [{node(), term()}] | {error, {bad_option, term()}}.
call_service_all(Service, Fun, Args, Opts)
  when is_atom(Fun), is_list(Args), is_list(Opts) ->
    with_service_opts(
      Opts,
      fun(Timeout) ->
              Deadline = deadline(Timeout),
              Reqs = [service_send(N, Service, Fun, Args)
                      || N <- service_nodes(Service, Opts)],
              [{R#req.node, service_result(await(R, Deadline))} || R <- Reqs]
      end);
call_service_all(_Service, _Fun, _Args, _Opts) ->
    error(badarg).

%% Runs Run(Timeout) when Opts are good options of call_service/4 and
%% call_service_all/4 (Timeout: their `timeout', per attempt), and
%% answers the first bad one otherwise.
-spec with_service_opts(list(), fun((pos_integer()) -> T)) ->
          T | {error, {bad_option, term()}}.
with_service_opts(Opts, Run) ->
    case check_service_opts(Opts) of
        ok -> Run(proplists:get_value(timeout, Opts, ?DEFAULT_SERVICE_TIMEOUT));
        {error, _} = Error -> Error
    end.

%% The options of call_service/4 and call_service_all/4: `ok', or the
%% first unknown or ill-typed one as `{error, {bad_option, Opt}}'.
-spec check_service_opts(list()) -> ok | {error, {bad_option, term()}}.
check_service_opts([]) ->
    ok;
check_service_opts([Opt | Rest]) ->
    case service_opt_ok(Opt) of
        true -> check_service_opts(Rest);
        false -> {error, {bad_option, Opt}}
    end;
check_service_opts(Tail) ->
    {error, {bad_option, Tail}}.

-spec service_opt_ok(term()) -> boolean().
service_opt_ok({timeout, infinity}) -> true;
service_opt_ok({timeout, T}) -> is_integer(T) andalso T >= 0;
service_opt_ok(idempotent) -> true;
service_opt_ok({idempotent, B}) -> is_boolean(B);
service_opt_ok({nodes, Nodes}) ->
    is_list(Nodes) andalso lists:all(fun is_atom/1, Nodes);
service_opt_ok(_) -> false.

-spec service_nodes(term(), [call_service_opt()]) -> [node()].
service_nodes(Service, Opts) ->
    case proplists:get_value(nodes, Opts) of
        Nodes when is_list(Nodes) -> Nodes;
        undefined -> tether_service:get_nodes(Service)
    end.

-spec try_instances([node()], term(), atom(), [term()], timeout(),
                    boolean(), term()) -> term().
try_instances([], _Service, _Fun, _Args, _Timeout, _Idem, Last) ->
    Last;
try_instances([Node | Rest], Service, Fun, Args, Timeout, Idem, Last) ->
    R = service_send(Node, Service, Fun, Args),
    case await(R, deadline(Timeout)) of
        service_not_available ->
            try_instances(Rest, Service, Fun, Args, Timeout, Idem, Last);
        {not_sent, _} ->
            try_instances(Rest, Service, Fun, Args, Timeout, Idem, Last);
        Outcome ->
            Result = service_result(Outcome),
            case Idem andalso may_retry(Outcome) andalso Rest =/= [] of
                true ->
                    try_instances(Rest, Service, Fun, Args, Timeout, Idem,
                                  Result);
                false ->
                    Result
            end
    end.

%% An attempt that may have run: a crash, a timeout, a lost connection.
-spec may_retry(term()) -> boolean().
may_retry({error, _, _}) -> true;
may_retry({exit, _}) -> true;
may_retry({lost, _}) -> true;
may_retry(_) -> false.

-spec service_send(node(), term(), atom(), [term()]) -> #req{}.
service_send(Node, Service, Fun, Args) ->
    send(Node, fun(Alias) -> {svc_call, Alias, Service, Fun, Args} end,
         fun() -> service_outcome(Service, Fun, Args) end).

-spec service_result(term()) -> term().
service_result(service_not_available) -> {error, service_not_available};
service_result({not_sent, _}) -> {error, service_not_available};
service_result(Outcome) -> rpcify(Outcome).

%%% The target side

%% @doc The entry point a caller reaches with erpc: opens the request
%% sealed by FromNode, runs it and returns the answer sealed for
%% FromNode (see the module doc for the terms). Anything that is not a
%% valid envelope from FromNode is refused, never run.
-spec execute(term(), term()) ->
          {sealed, binary()} | deferred | {refused, term()}
          | {no_answer, term()}.
execute(From, Bytes) when is_atom(From), is_binary(Bytes) ->
    case tether_server:engine() of
        undefined ->
            {refused, not_distributed};
        E ->
            case open(E, From, Bytes) of
                {ok, {tether_rpc, Req}} -> run(E, From, Req);
                {ok, _} -> {refused, badarg};
                deferred -> deferred;
                {error, Reason} -> {refused, Reason}
            end
    end;
execute(_From, _Bytes) ->
    {refused, badarg}.

%% Runs an opened request; a call answers with its sealed outcome.
-spec run(tether_nif:engine(), node(), term()) ->
          {sealed, binary()} | deferred | {refused, term()}
          | {no_answer, term()}.
run(E, From, Req) ->
    case perform(Req) of
        {answer, ReplyTo, Outcome} -> answer(E, From, ReplyTo, Outcome);
        done -> {refused, no_reply};
        bad -> {refused, badarg}
    end.

-spec answer(tether_nif:engine(), node(), term(), outcome()) ->
          {sealed, binary()} | deferred | {no_answer, term()}.
answer(E, From, ReplyTo, Outcome) ->
    case seal(E, From, {tether_rpc, {reply, ReplyTo, Outcome}}) of
        {ok, Bytes} -> {sealed, Bytes};
        deferred -> deferred;
        {error, Reason} -> {no_answer, Reason}
    end.

%% @doc The deferred path, run by {@link tether_rpc_server} for a request
%% that a defer partition held and the engine delivered on heal: runs it
%% and sends the answer back through the engine (Reply), or hands an
%% answer to our own deferred call to its caller's alias.
-spec serve(node(), term(), fun((node(), term()) -> term())) -> ok.
serve(_From, {reply, ReplyTo, Outcome}, _Reply) when is_reference(ReplyTo) ->
    ReplyTo ! {tether_rpc_reply, ReplyTo, Outcome},
    ok;
serve(From, Req, Reply) ->
    case perform(Req) of
        {answer, ReplyTo, Outcome} ->
            _ = Reply(From, {reply, ReplyTo, Outcome}),
            ok;
        _ ->
            ok
    end.

%% Runs one request, on either path: a call or a service call gives the
%% address and outcome of its answer; a cast or abcast is done; anything
%% else is refused.
-spec perform(term()) -> {answer, term(), outcome()} | done | bad.
perform({call, ReplyTo, M, F, A}) when is_atom(M), is_atom(F), is_list(A) ->
    {answer, ReplyTo, apply_outcome(M, F, A)};
perform({svc_call, ReplyTo, Service, F, A}) when is_atom(F), is_list(A) ->
    {answer, ReplyTo, service_outcome(Service, F, A)};
perform({cast, M, F, A}) when is_atom(M), is_atom(F), is_list(A) ->
    _ = apply_outcome(M, F, A),
    done;
perform({abcast, Name, Msg}) when is_atom(Name) ->
    catch Name ! Msg,
    done;
perform(_Req) ->
    bad.

%% The outcome of apply(M, F, A) in the terms of the answer, the stack
%% trimmed as erpc trims it.
-spec apply_outcome(module(), atom(), [term()]) -> outcome().
apply_outcome(M, F, A) ->
    try
        {return, apply(M, F, A)}
    catch
        throw:V -> {throw, V};
        exit:R -> {exit, R};
        error:R:Stack -> {error, R, trim_stack(Stack, M, F, A)}
    end.

%% The stack of an error raised by apply(M, F, A) without our own frames,
%% cut as erpc cuts its own (so the caller sees what rpc:call shows).
-spec trim_stack(list(), module(), atom(), [term()]) -> list().
trim_stack([CF | _], M, F, A) when ?IS_CUT_FRAME(CF) ->
    [{M, F, A, []}];
trim_stack([{M, F, A, _} = SF, CF | _], M, F, A) when ?IS_CUT_FRAME(CF) ->
    [SF];
trim_stack(Stack, M, F, A) ->
    try
        trim_stack_aux(Stack, M, F, length(A))
    catch
        throw:use_all -> Stack
    end.

-spec trim_stack_aux(list(), module(), atom(), arity()) -> list().
trim_stack_aux([], _M, _F, _N) ->
    throw(use_all);
trim_stack_aux([{M, F, N, _} = SF, CF | _], M, F, N) when ?IS_CUT_FRAME(CF) ->
    [SF];
trim_stack_aux([CF | _], M, F, N) when ?IS_CUT_FRAME(CF) ->
    [{M, F, N, []}];
trim_stack_aux([SF | Rest], M, F, N) ->
    [SF | trim_stack_aux(Rest, M, F, N)].

%% Runs a service call here if this node has an instance of Service.
-spec service_outcome(term(), atom(), [term()]) -> outcome().
service_outcome(Service, F, A) ->
    case local_instance(Service) of
        {ok, Module} -> apply_outcome(Module, F, A);
        error -> service_not_available
    end.

-spec local_instance(term()) -> {ok, module()} | error.
local_instance(Service) ->
    case tether_server:engine() of
        undefined ->
            error;
        E ->
            case tether_nif:svc_local(E, Service) of
                {ok, _Pid, #{module := M}} when is_atom(M) -> {ok, M};
                {ok, _Pid, _Meta} when is_atom(Service) -> {ok, Service};
                _ -> error
            end
    end.

%%% The calling side

%% Starts one request: locally, sealed and carried by erpc, held by a
%% defer partition, or not sent.
-spec send(node(), fun((reference()) -> term()), fun(() -> outcome())) ->
          #req{}.
send(Node, _Make, Local) when Node =:= node() ->
    %% This node: no envelope. A process of its own, as rpc:call's.
    Ref = erpc:send_request(node(), erlang, apply, [Local, []]),
    #req{node = Node, how = local, id = Ref};
send(Node, Make, _Local) when is_atom(Node) ->
    case tether_server:engine() of
        undefined ->
            #req{node = Node, how = {failed, not_sent}};
        E ->
            Alias = erlang:alias([explicit_unalias]),
            case seal(E, Node, {tether_rpc, Make(Alias)}) of
                {ok, Bytes} ->
                    Id = erpc:send_request(Node, ?MODULE, execute,
                                           [node(), Bytes]),
                    #req{node = Node, how = fast, id = Id, alias = Alias,
                         engine = E};
                deferred ->
                    #req{node = Node, how = deferred, alias = Alias};
                {error, _} ->
                    _ = erlang:unalias(Alias),
                    #req{node = Node, how = {failed, not_sent}}
            end
    end;
send(Node, _Make, _Local) ->
    #req{node = Node, how = {failed, not_sent}}.

%% Sends a request that has no answer (cast, abcast).
-spec push(node(), term()) -> ok.
push(Node, Req) ->
    case tether_server:engine() of
        undefined ->
            ok;
        E ->
            case seal(E, Node, {tether_rpc, Req}) of
                {ok, Bytes} -> erpc:cast(Node, ?MODULE, execute,
                                         [node(), Bytes]);
                _ -> ok
            end
    end.

%% Waits for one request until Deadline. Returns the outcome, or
%% {not_sent, nodedown | {refused, Reason}} (it never ran: safe to retry
%% elsewhere; the target refused what it could not open) or
%% {lost, nodedown | timeout | Reason} (it may have run).
-spec await(#req{}, integer() | infinity) -> term().
await(#req{how = {failed, not_sent}}, _Deadline) ->
    {not_sent, nodedown};
await(#req{how = local, id = Id}, Deadline) ->
    try erpc:receive_response(Id, tmo(Deadline)) of
        Outcome -> Outcome
    catch
        error:{erpc, timeout} -> {lost, timeout};
        error:{erpc, noconnection} -> {lost, nodedown}
    end;
await(#req{how = fast, id = Id, alias = Alias, node = Node, engine = E},
      Deadline) ->
    Result =
        try erpc:receive_response(Id, tmo(Deadline)) of
            {sealed, Bytes} -> opened(E, Node, Bytes, Alias);
            deferred -> wait_reply(Alias, Deadline);
            {refused, closed} -> {not_sent, nodedown};
            {refused, Reason} -> {not_sent, {refused, Reason}};
            {no_answer, closed} -> {lost, nodedown};
            {no_answer, Reason} -> {lost, {no_answer, Reason}};
            Other -> {lost, {badanswer, Other}}
        catch
            error:{erpc, timeout} -> {lost, timeout};
            error:{erpc, noconnection} -> {lost, nodedown};
            error:{exception, undef, _} -> {not_sent, {not_running, tether}};
            error:{erpc, Reason} -> {lost, Reason};
            Class:Reason -> {lost, {Class, Reason}}
        end,
    done(Alias),
    Result;
await(#req{how = deferred, alias = Alias}, Deadline) ->
    Result = wait_reply(Alias, Deadline),
    done(Alias),
    Result.

%% The answer, opened by the engine that sealed the request (the session
%% the answer was sealed under).
-spec opened(tether_nif:engine(), node(), binary(), reference()) -> term().
opened(E, Node, Bytes, Alias) ->
    case open(E, Node, Bytes) of
        {ok, {tether_rpc, {reply, Alias, Outcome}}} -> Outcome;
        {ok, _} -> {lost, badanswer};
        deferred -> {lost, deferred};
        {error, Reason} -> {lost, {refused, Reason}}
    end.

-spec wait_reply(reference(), integer() | infinity) -> term().
wait_reply(Alias, Deadline) ->
    receive
        {tether_rpc_reply, Alias, Outcome} -> Outcome
    after tmo_ms(Deadline) ->
            {lost, timeout}
    end.

%% Deactivates the alias and drops an answer that raced with it.
-spec done(reference()) -> ok.
done(Alias) ->
    _ = erlang:unalias(Alias),
    receive
        {tether_rpc_reply, Alias, _} -> ok
    after 0 ->
            ok
    end.

%% An outcome in the shapes of rpc:call.
-spec rpcify(term()) -> term().
rpcify({return, V}) -> V;
rpcify({throw, {'EXIT', _} = V}) -> {badrpc, V};
rpcify({throw, V}) -> V;
rpcify({error, R, Stack}) -> {badrpc, {'EXIT', {R, Stack}}};
rpcify({exit, R}) -> {badrpc, {'EXIT', R}};
rpcify(service_not_available) -> {badrpc, {'EXIT', service_not_available}};
rpcify({not_sent, nodedown}) -> {badrpc, nodedown};
rpcify({not_sent, Reason}) -> {badrpc, Reason};
rpcify({lost, timeout}) -> {badrpc, timeout};
rpcify({lost, nodedown}) -> {badrpc, nodedown};
rpcify({lost, Reason}) -> {badrpc, Reason}.

-spec bad_node(term()) -> boolean().
bad_node({badrpc, nodedown}) -> true;
bad_node({badrpc, timeout}) -> true;
bad_node(_) -> false.

%%% Time

-spec deadline(timeout()) -> integer() | infinity.
deadline(infinity) ->
    infinity;
deadline(T) when is_integer(T), T >= 0 ->
    erlang:monotonic_time(millisecond) + T;
deadline(_) ->
    error(badarg).

-spec tmo(integer() | infinity) -> timeout().
tmo(infinity) -> infinity;
tmo(Deadline) -> tmo_ms(Deadline).

-spec tmo_ms(integer() | infinity) -> timeout().
tmo_ms(infinity) ->
    infinity;
tmo_ms(Deadline) ->
    max(0, Deadline - erlang:monotonic_time(millisecond)).

%%% The engine

%% The live members, or this node alone when not distributed.
-spec members() -> [node()].
members() ->
    case tether:members() of
        Nodes when is_list(Nodes) -> Nodes;
        _ -> [node()]
    end.

%% @doc Seals Term for Node with the engine E (the direct path, in the
%% calling process; on a dirty scheduler from 256 KiB): `{ok, Envelope}',
%% `deferred' (a defer partition: the engine holds it and sends it on
%% heal, through the servers, to the handler of the term's tag) or
%% `{error, Reason}' (`closed': no session or a drop partition).
%% The NIFs take a node as an ASCII atom (no atom_to_binary on the hot
%% path) or as its UTF-8 binary, which other node names need.
-spec seal(tether_nif:engine(), node(), term()) ->
          {ok, binary()} | deferred | {error, term()}.
seal(E, Node, Term) ->
    Etf = term_to_binary(Term),
    Seal = case byte_size(Etf) >= ?DIRTY_BYTES of
               true -> fun tether_nif:engine_seal_dirty/3;
               false -> fun tether_nif:engine_seal/3
           end,
    by_name(fun(To) -> Seal(E, To, Etf) end, Node).

%% @doc Opens an Envelope Node sealed with seal/3: `{ok, Term}',
%% `deferred' or `{error, Reason}' (forged, tampered, replayed, a drop
%% partition, no session).
-spec open(tether_nif:engine(), node(), binary()) ->
          {ok, term()} | deferred | {error, term()}.
open(E, Node, Bytes) ->
    Open = case byte_size(Bytes) >= ?DIRTY_BYTES of
               true -> fun tether_nif:engine_open_dirty/3;
               false -> fun tether_nif:engine_open/3
           end,
    by_name(fun(From) -> Open(E, From, Bytes) end, Node).

-spec by_name(fun((node() | binary()) -> Result), node()) ->
          Result | {error, invalid}.
by_name(Call, Node) ->
    try
        Call(Node)
    catch
        error:badarg ->
            try
                Call(atom_to_binary(Node, utf8))
            catch
                error:badarg -> {error, invalid}
            end
    end.
