%% @doc Services: named functionality offered by instances on many nodes,
%% with the semantics of Malla.Node, an Elixir library for services
%% spread over a cluster (service discovery, instance order, virtual
%% modules), delegated from the {@link tether} facade.
%%
%% A service is any term naming what an instance offers; an instance is
%% a process on some node, with a meta map. Each node holds at most one
%% instance of a service, is authoritative for its own instances and
%% tells every member (the engine's service table, engine message type
%% 0x22). An instance goes everywhere when its process dies, when it is
%% unregistered, and when its node goes down or leaves. Services of
%% C-nodes (C plug-ins) appear in the same table, with the C-node's
%% name.
%%
%% Reads (`get_nodes/1', `get_instances/1', `get_services/0',
%% `whereis_service/1,2') are answered by the NIF from this node's copy
%% of the table, under its read lock, with no message to any process.
%% Registrations go through {@link tether_service_server}, which
%% monitors the instances.
%%
%% == Order of instances ==
%%
%% The local node's instance comes first, then the others in an order
%% that changes at every health recheck (application env
%% `service_recheck_ms', default 5000): a random rank per node, redrawn
%% each time, spreads callers over the instances between rechecks.
%% `tether:call_service/4' tries the instances in this order.
%%
%% == Stubs ==
%%
%% `stub(Module, [{Fun, Arity}])' makes a proxy module for a service
%% named Module, as Malla's virtual modules do: each `Module:Fun/Arity'
%% is `tether:call_service(Module, Fun, Args, [])', so it answers
%% `{error, service_not_available}' until an instance appears anywhere
%% and then runs on the first instance in the order above.
-module(tether_service).

-export([register_service/1, register_service/2, register_service/3,
         unregister_service/1, whereis_service/1, whereis_service/2,
         get_nodes/1, get_instances/1, get_services/0,
         wait_for_services/2, stub/2]).

-export_type([name/0, meta/0, wait_opts/0]).

%% A service name: any term (an atom when `tether:call_service/4' is to
%% call a module of that name).
-type name() :: term().

%% What an instance says about itself. The key `module' names the module
%% `tether:call_service/4' calls on the instance's node.
-type meta() :: map().

%% retries (default 10) times interval_ms (default 1000) is the longest
%% wait.
-type wait_opts() :: [{retries, non_neg_integer()}
                      | {interval_ms, non_neg_integer()}]
                   | #{retries => non_neg_integer(),
                       interval_ms => non_neg_integer()}.

-define(DEFAULT_RETRIES, 10).
-define(DEFAULT_INTERVAL_MS, 1000).
%% wait_for_services/2 looks at every change event, and at least this
%% often.
-define(POLL_MS, 500).
%% The attribute that marks a module made by stub/2.
-define(STUB_ATTR, tether_stub).
-define(MAX_ARITY, 255).

%%% Registration

%% @doc register_service(Name, #{}).
-spec register_service(name()) -> ok | {error, term()}.
register_service(Name) ->
    register_service(Name, #{}).

%% @doc register_service(Name, self(), Meta): the caller is this node's
%% instance of Name.
-spec register_service(name(), meta()) -> ok | {error, term()}.
register_service(Name, Meta) ->
    register_service(Name, self(), Meta).

%% @doc Makes Pid this node's instance of Name, with Meta, on every
%% member. Pid must be a live local process; it is monitored and its
%% instance goes everywhere when it dies. Registering Name again on the
%% same node replaces the instance (pid and meta). `{error, not_local}'
%% for a pid of another node, `{error, noproc}' for a dead one,
%% `{error, not_distributed}' while the node is not alive.
-spec register_service(name(), pid(), meta()) -> ok | {error, term()}.
register_service(Name, Pid, Meta) when is_pid(Pid), is_map(Meta) ->
    tether_service_server:register(Name, Pid, Meta).

%% @doc Removes this node's instance of Name, everywhere. `ok', also when
%% there is none.
-spec unregister_service(name()) -> ok.
unregister_service(Name) ->
    tether_service_server:unregister(Name).

%%% Lookups

%% @doc Where Name runs: `{ok, Pid}' when this node has an instance,
%% else `{ok, Node, Pid}' for the first remote instance in get_nodes/1
%% order, else `{error, not_found}'.
-spec whereis_service(name()) ->
          {ok, pid()} | {ok, node(), pid()} | {error, not_found}.
whereis_service(Name) ->
    case instances(Name) of
        [] -> {error, not_found};
        [{Node, Pid, _} | _] -> found(Node, Pid)
    end.

%% @doc whereis_service/1, or with `#{node => Node}' the instance of that
%% node (`{ok, Pid}' for this node, `{ok, Node, Pid}' for another). Any
%% other key, or a Node that is not an atom, answers `{error,
%% {bad_option, {Key, Value}}}'.
-spec whereis_service(name(), #{node => node()}) ->
          {ok, pid()} | {ok, node(), pid()}
          | {error, not_found | {bad_option, term()}}.
whereis_service(Name, Opts) when is_map(Opts) ->
    case bad_option(Opts, fun(node, N) -> is_atom(N);
                             (_, _) -> false
                          end) of
        {error, _} = Error ->
            Error;
        ok when is_map_key(node, Opts) ->
            Node = maps:get(node, Opts),
            case lists:keyfind(Node, 1, instances(Name)) of
                {Node, Pid, _} -> found(Node, Pid);
                false -> {error, not_found}
            end;
        ok ->
            whereis_service(Name)
    end.

%% The first pair of Opts that Ok refuses, as `{error, {bad_option, {Key,
%% Value}}}' (keys in term order, so the answer is stable), else `ok'.
-spec bad_option(map(), fun((term(), term()) -> boolean())) ->
          ok | {error, {bad_option, {term(), term()}}}.
bad_option(Opts, Ok) ->
    case [KV || {K, V} = KV <- lists:sort(maps:to_list(Opts)), not Ok(K, V)] of
        [] -> ok;
        [Bad | _] -> {error, {bad_option, Bad}}
    end.

%% @doc The nodes running an instance of Name: this node first if it
%% runs one, the others in an order redrawn at every health recheck.
%% `[]' when there is none (or the node is not distributed).
-spec get_nodes(name()) -> [node()].
get_nodes(Name) ->
    [Node || {Node, _, _} <- instances(Name)].

%% @doc The instances of Name as `{Node, Meta}', in get_nodes/1 order.
-spec get_instances(name()) -> [{node(), meta()}].
get_instances(Name) ->
    [{Node, Meta} || {Node, _, Meta} <- instances(Name)].

%% @doc Every service this node knows of, with its instances in
%% get_nodes/1 order.
-spec get_services() -> #{name() => [{node(), pid(), meta()}]}.
get_services() ->
    case tether_server:engine() of
        undefined ->
            #{};
        E ->
            maps:from_list([{Name, Insts}
                            || Name <- tether_nif:svc_names(E),
                               Insts <- [instances(E, Name)],
                               Insts =/= []])
    end.

%% @doc Waits until every service of Names has an instance. Looks at
%% get_nodes/1, and again at every change of the service table (it
%% subscribes to the events meanwhile), until all are up (returning `ok'
%% at once then) or until `retries' times `interval_ms' milliseconds
%% have passed (`timeout').
%% Opts is a proplist or a map; the defaults, 10 and 1000, are Malla's. An
%% unknown option or a value that is not a non-negative integer answers
%% `{error, {bad_option, {Key, Value}}}'.
-spec wait_for_services([name()], wait_opts()) ->
          ok | timeout | {error, {bad_option, term()}}.
wait_for_services(Names, Opts) when is_list(Names), is_list(Opts) ->
    wait_for_services(Names, maps:from_list(proplists:unfold(Opts)));
wait_for_services(Names, Opts) when is_list(Names), is_map(Opts) ->
    case bad_option(Opts, fun(K, V) ->
                                  (K =:= retries orelse K =:= interval_ms)
                                      andalso is_integer(V) andalso V >= 0
                          end) of
        ok -> wait_for_services_checked(Names, Opts);
        {error, _} = Error -> Error
    end.

-spec wait_for_services_checked([name()], map()) -> ok | timeout.
wait_for_services_checked(Names, Opts) ->
    Retries = maps:get(retries, Opts, ?DEFAULT_RETRIES),
    Interval = maps:get(interval_ms, Opts, ?DEFAULT_INTERVAL_MS),
    Deadline = erlang:monotonic_time(millisecond) + Retries * Interval,
    Self = self(),
    Subscribed = catch tether_service_server:subscribe(Self),
    try
        wait_loop(Names, Deadline)
    after
        _ = Subscribed =:= ok andalso
            (catch tether_service_server:unsubscribe(Self)),
        flush_events()
    end.

-spec wait_loop([name()], integer()) -> ok | timeout.
wait_loop(Names, Deadline) ->
    case lists:all(fun(N) -> get_nodes(N) =/= [] end, Names) of
        true ->
            ok;
        false ->
            case Deadline - erlang:monotonic_time(millisecond) of
                Left when Left =< 0 ->
                    timeout;
                Left ->
                    %% A change event, or a look at most every POLL_MS
                    %% (an event lost with a restarted server).
                    receive
                        {tether_service, _, _, _} -> ok
                    after min(Left, ?POLL_MS) -> ok
                    end,
                    wait_loop(Names, Deadline)
            end
    end.

-spec flush_events() -> ok.
flush_events() ->
    receive
        {tether_service, _, _, _} -> flush_events()
    after 0 ->
        ok
    end.

%%% Stubs

%% @doc Compiles and loads Module as a proxy of the service named Module:
%% for each `{Fun, Arity}', `Module:Fun(A1, ..., An)' is
%% `tether:call_service(Module, Fun, [A1, ..., An], [])'. Stubbing a
%% module made by stub/2 again replaces it; a module that exists
%% otherwise (loaded, or on the code path) is refused with
%% `{error, {module_exists, Module}}', so that a node running the real
%% service never replaces it by a proxy of itself.
-spec stub(module(), [{atom(), arity()}]) -> ok | {error, term()}.
stub(Module, Funs) when is_atom(Module), is_list(Funs) ->
    case valid_funs(Funs) of
        false ->
            {error, badarg};
        true ->
            case is_stub(Module) orelse not module_exists(Module) of
                false -> {error, {module_exists, Module}};
                true -> load_stub(Module, lists:usort(Funs))
            end
    end.

-spec valid_funs(list()) -> boolean().
valid_funs(Funs) ->
    lists:all(fun({F, A}) ->
                      is_atom(F) andalso is_integer(A) andalso A >= 0
                          andalso A =< ?MAX_ARITY;
                 (_) ->
                      false
              end, Funs).

-spec module_exists(module()) -> boolean().
module_exists(Module) ->
    erlang:module_loaded(Module) orelse code:which(Module) =/= non_existing.

-spec is_stub(module()) -> boolean().
is_stub(Module) ->
    erlang:module_loaded(Module) andalso
        lists:keymember(?STUB_ATTR, 1, Module:module_info(attributes)).

-spec load_stub(module(), [{atom(), arity()}]) -> ok | {error, term()}.
load_stub(Module, Funs) ->
    case compile:forms(stub_forms(Module, Funs),
                       [binary, return_errors, no_spawn_compiler_process])
    of
        {ok, Module, Bin} ->
            %% Old code of an earlier stub must go before new code loads.
            _ = code:purge(Module),
            case code:load_binary(Module, stub_file(Module), Bin) of
                {module, Module} -> ok;
                {error, Reason} -> {error, Reason}
            end;
        {error, Errors, _Warnings} ->
            {error, {compile, Errors}}
    end.

%% The abstract forms of:
%%   -module(Module). -tether_stub(true). -export([Fun/Arity, ...]).
%%   Fun(A1, ..., An) -> tether:call_service(Module, Fun, [A1, ..., An], []).
-spec stub_forms(module(), [{atom(), arity()}]) -> [erl_parse:abstract_form()].
stub_forms(Module, Funs) ->
    L = erl_anno:new(1),
    [{attribute, L, module, Module},
     {attribute, L, ?STUB_ATTR, true},
     {attribute, L, export, Funs}
     | [stub_function(L, Module, F, A) || {F, A} <- Funs]].

-spec stub_function(erl_anno:anno(), module(), atom(), arity()) ->
          erl_parse:abstract_form().
stub_function(L, Module, F, A) ->
    Vars = [{var, L, list_to_atom("A" ++ integer_to_list(I))}
            || I <- lists:seq(1, A)],
    Args = lists:foldr(fun(V, Tail) -> {cons, L, V, Tail} end, {nil, L}, Vars),
    Call = {call, L, {remote, L, {atom, L, tether}, {atom, L, call_service}},
            [{atom, L, Module}, {atom, L, F}, Args, {nil, L}]},
    {function, L, F, A, [{clause, L, Vars, [], [Call]}]}.

-spec stub_file(module()) -> string().
stub_file(Module) ->
    "tether_stub:" ++ atom_to_list(Module).

%%% Internals

%% The instances of Name as {Node, Pid, Meta}, local first, then by rank.
-spec instances(name()) -> [{node(), pid(), meta()}].
instances(Name) ->
    case tether_server:engine() of
        undefined -> [];
        E -> instances(E, Name)
    end.

-spec instances(tether_nif:engine(), name()) -> [{node(), pid(), meta()}].
instances(E, Name) ->
    Self = node(),
    Keyed = [{key(Node, Self), {Node, Pid, Meta}}
             || {NodeB, Pid, Meta} <- tether_nif:svc_lookup(E, Name),
                Node <- [binary_to_atom(NodeB, utf8)]],
    [I || {_, I} <- lists:keysort(1, Keyed)].

%% Sorts this node first, then the others by rank (node name breaks a
%% tie).
-spec key(node(), node()) -> {0, node()} | {1, non_neg_integer(), node()}.
key(Self, Self) -> {0, Self};
key(Node, _Self) -> {1, tether_service_server:rank(Node), Node}.

-spec found(node(), pid()) -> {ok, pid()} | {ok, node(), pid()}.
found(Node, Pid) when Node =:= node() -> {ok, Pid};
found(Node, Pid) -> {ok, Node, Pid}.
