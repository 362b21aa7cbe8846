%% @doc The Erlang twin of the C test plugin rpctest
%% (c_src/test/plugins/rpctest.c, loaded into a C-node with
%% `--load c_src/build/plugins/rpctest.so').
%%
%% The rpc suites load this module on BEAM peers and run every call
%% against a peer and against the C-node: the two must answer alike.
%% Each function does what the contract in the issue says the C function
%% does, with the plain Erlang primitive that a BEAM node would use.
%%
%% Like the plugin, it also has a service registered as rpctest (started
%% by start_service/0) answering gen_server:call/2,3 with
%%   {echo, X}    -> X, at once
%%   {sleep, Ms}  -> ok, replied later by another process after Ms ms
%%   {crash, R}   -> the service stops with reason R (the caller exits
%%                   with {R, {gen_server, call, ...}})
%%   anything else -> bad_request
%% and gen_server:cast/2 with {send, Pid, Msg} -> Pid ! Msg.
-module(rpctest).
-behaviour(gen_server).

-compile({no_auto_import, [throw/1, error/1, exit/1, node/0]}).

-export([echo/1, add/2, throw/1, error/1, exit/1, sleep/1, node/0,
         call_erlang/4, send_name/3]).
-export([start_service/0]).
-export([init/1, handle_call/3, handle_cast/2]).

%% @doc Returns its argument.
-spec echo(term()) -> term().
echo(X) ->
    X.

%% @doc The sum of two integers. Any other arguments raise error
%% badarith, as erlang:'+'/2 does for non-numbers; the stack trace starts
%% at rpctest:add/2, as for any error a C function raises.
-spec add(integer(), integer()) -> integer().
add(A, B) when is_integer(A), is_integer(B) ->
    A + B;
add(_A, _B) ->
    erlang:error(badarith).

%% @doc Throws X.
-spec throw(term()) -> no_return().
throw(X) ->
    erlang:throw(X).

%% @doc Raises error X.
-spec error(term()) -> no_return().
error(X) ->
    erlang:error(X).

%% @doc Exits with X.
-spec exit(term()) -> no_return().
exit(X) ->
    erlang:exit(X).

%% @doc Sleeps Ms milliseconds, then returns ok.
-spec sleep(non_neg_integer()) -> ok.
sleep(Ms) ->
    timer:sleep(Ms),
    ok.

%% @doc This node's name.
-spec node() -> node().
node() ->
    erlang:node().

%% @doc Calls M:F(Args) on Node; {ok, Result} when it returns, else
%% {error, Reason} with the erpc exception reason.
-spec call_erlang(node(), module(), atom(), [term()]) ->
          {ok, term()} | {error, term()}.
call_erlang(Node, M, F, Args) ->
    try erpc:call(Node, M, F, Args) of
        Result -> {ok, Result}
    catch
        _Class:Reason -> {error, Reason}
    end.

%% @doc Sends Msg to the process registered as Name on Node; ok.
-spec send_name(node(), atom(), term()) -> ok.
send_name(Node, Name, Msg) ->
    erlang:send({Name, Node}, Msg),
    ok.

%% @doc Starts the rpctest service (not linked to the caller); {ok, Pid}
%% also when it already runs.
-spec start_service() -> {ok, pid()}.
start_service() ->
    case gen_server:start({local, ?MODULE}, ?MODULE, [], []) of
        {ok, Pid} -> {ok, Pid};
        {error, {already_started, Pid}} -> {ok, Pid}
    end.

%% gen_server callbacks of the service; it keeps no state.

init([]) ->
    {ok, #{}}.

handle_call({echo, X}, _From, S) ->
    {reply, X, S};
handle_call({sleep, Ms}, From, S) when is_integer(Ms), Ms >= 0 ->
    _ = spawn(fun() ->
                      timer:sleep(Ms),
                      gen_server:reply(From, ok)
              end),
    {noreply, S};
handle_call({crash, Reason}, _From, S) ->
    {stop, Reason, S};
handle_call(_Other, _From, S) ->
    {reply, bad_request, S}.

handle_cast({send, Pid, Msg}, S) when is_pid(Pid) ->
    Pid ! Msg,
    {noreply, S};
handle_cast(_Other, S) ->
    {noreply, S}.
