%% @doc The deferred path of {@link tether_rpc}: the handler of module
%% messages tagged `tether_rpc' (see {@link tether_server:register_handler/2}).
%%
%% A request that a defer partition held is delivered by the engine on
%% heal to the tether server, which hands it here as
%% `{tether_msg, FromNode, tether_rpc, Request}'. Each request runs in a
%% process of its own (this server never blocks on user code) and its
%% answer goes back through the engine, under the partition rules like
%% any engine message. Answers to our own deferred calls arrive the same
%% way and are passed to the waiting caller's alias.
-module(tether_rpc_server).
-behaviour(gen_server).

-export([start_link/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(TAG, tether_rpc).

%% @doc Starts the server, registered as `tether_rpc_server'.
-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @private
-spec init([]) -> {ok, undefined}.
init([]) ->
    ok = tether_server:register_handler(?TAG, self()),
    {ok, undefined}.

%% @private
-spec handle_call(term(), gen_server:from(), State) -> {reply, {error, badarg}, State}.
handle_call(_Req, _From, S) ->
    {reply, {error, badarg}, S}.

%% @private
-spec handle_cast(term(), State) -> {noreply, State}.
handle_cast(_Msg, S) ->
    {noreply, S}.

%% @private
-spec handle_info(term(), State) -> {noreply, State}.
handle_info({tether_msg, From, ?TAG, {reply, _, _} = Req}, S) ->
    ok = tether_rpc:serve(From, Req, fun reply/2),
    {noreply, S};
handle_info({tether_msg, From, ?TAG, Req}, S) when is_atom(From) ->
    _ = spawn(fun() -> tether_rpc:serve(From, Req, fun reply/2) end),
    {noreply, S};
handle_info(_Msg, S) ->
    {noreply, S}.

-spec reply(node(), term()) -> ok | {error, term()}.
reply(Node, Answer) ->
    tether_server:send(Node, ?TAG, Answer).
