%% @doc The Erlang twin of the C key-value example (examples/kv, built as
%% priv/plugins/kv.so and priv/examples/kv_node).
%%
%% One store per node: a public ETS set (keys compared as =:= compares
%% them, so 1 and 1.0 are two keys and 0.0 and -0.0 one), owned by a
%% process of its own. The module functions use it directly:
%% put(K, V) -> ok, get(K) -> {ok, V} | not_found, delete(K) -> ok,
%% keys() -> [K] in no particular order. start/0 also starts a gen_server
%% registered as kv over the same store, answering gen_server:call with
%%   {put, K, V} -> ok, {get, K} -> {ok, V} | not_found,
%%   {delete, K} -> ok, keys -> [K],
%%   {crash, R}  -> the service stops with reason R (the caller exits with
%%                  {R, {gen_server, call, ...}}); the store stays, the
%%                  module functions keep using it,
%%   anything else -> {error, bad_request},
%% and gen_server:cast with {put, K, V}.
-module(kv).
-behaviour(gen_server).

-compile({no_auto_import, [put/2, get/1]}).

-export([start/0, put/2, get/1, delete/1, keys/0]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(SERVER, ?MODULE).
-define(TABLE, kv_store).
-define(OWNER, kv_store_owner).
-define(START_TIMEOUT, 30000).

%% @doc Starts the store and the kv service (neither linked to the
%% caller, so both outlive an rpc process); {ok, ServicePid} also when
%% they already run.
-spec start() -> {ok, pid()}.
start() ->
    ok = ensure_store(),
    case gen_server:start({local, ?SERVER}, ?MODULE, [], []) of
        {ok, Pid} -> {ok, Pid};
        {error, {already_started, Pid}} -> {ok, Pid}
    end.

%% @doc Stores Value under Key.
-spec put(term(), term()) -> ok.
put(Key, Value) ->
    ok = ensure_store(),
    true = ets:insert(?TABLE, {Key, Value}),
    ok.

%% @doc The value stored under Key.
-spec get(term()) -> {ok, term()} | not_found.
get(Key) ->
    ok = ensure_store(),
    case ets:lookup(?TABLE, Key) of
        [{_, Value}] -> {ok, Value};
        [] -> not_found
    end.

%% @doc Removes Key (ok also when it was not there).
-spec delete(term()) -> ok.
delete(Key) ->
    ok = ensure_store(),
    true = ets:delete(?TABLE, Key),
    ok.

%% @doc Every key in the store, in no particular order.
-spec keys() -> [term()].
keys() ->
    ok = ensure_store(),
    [K || {K, _} <- ets:tab2list(?TABLE)].

%% Starts the table's owner unless it runs; ok once the table exists.
ensure_store() ->
    case ets:whereis(?TABLE) of
        undefined -> start_owner();
        _ -> ok
    end.

start_owner() ->
    Parent = self(),
    Ref = make_ref(),
    {Pid, MRef} = spawn_monitor(fun() -> owner(Parent, Ref) end),
    receive
        {Ref, ok} -> erlang:demonitor(MRef, [flush]), ok;
        {'DOWN', MRef, process, Pid, _} -> wait_table()  % another one won
    after ?START_TIMEOUT ->
            error(kv_store_start_timeout)
    end.

owner(Parent, Ref) ->
    true = register(?OWNER, self()),
    ?TABLE = ets:new(?TABLE, [set, public, named_table,
                              {read_concurrency, true}, {write_concurrency, true}]),
    Parent ! {Ref, ok},
    receive stop -> ok end.

wait_table() ->
    case ets:whereis(?TABLE) of
        undefined -> timer:sleep(10), wait_table();
        _ -> ok
    end.

%% gen_server callbacks of the service; the state is unused, the store
%% is the table.

init([]) ->
    {ok, #{}}.

handle_call({put, K, V}, _From, S) ->
    {reply, put(K, V), S};
handle_call({get, K}, _From, S) ->
    {reply, get(K), S};
handle_call({delete, K}, _From, S) ->
    {reply, delete(K), S};
handle_call(keys, _From, S) ->
    {reply, keys(), S};
handle_call({crash, Reason}, _From, S) ->
    {stop, Reason, S};
handle_call(_Other, _From, S) ->
    {reply, {error, bad_request}, S}.

handle_cast({put, K, V}, S) ->
    ok = put(K, V),
    {noreply, S};
handle_cast(_Other, S) ->
    {noreply, S}.
