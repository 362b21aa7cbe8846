%% @doc The process behind this node's service instances.
%%
%% Registered as `tether_service_server', started by {@link tether_sup}
%% after {@link tether_server}. It owns the local half of the services
%% API of {@link tether_service}:
%%
%% <ul>
%% <li>It registers and unregisters this node's instances in the
%%     engine's service table (`tether_nif:svc_register/4' and
%%     `svc_unregister/2'), through {@link tether_server:engine_call/1},
%%     so that the tether server sends what the engine queues.</li>
%% <li>It monitors every registered pid and unregisters its instances
%%     when it dies.</li>
%% <li>Every `service_recheck_ms' milliseconds (application env of
%%     `tether', default 5000), the health recheck, it draws a new salt
%%     for the order of remote instances (see {@link rank/1}) and checks
%%     that the engine it registered into is still the current one.</li>
%% <li>When the engine changes (a leave and a join, or a restart of
%%     distribution make a fresh engine with an empty service table), it
%%     registers its live instances again in the new one. It subscribes
%%     to member events so that this happens as soon as the new engine
%%     meets its first peer, not only at the next recheck.</li>
%% <li>It hands the service table's change events (the engine's `service'
%%     actions, which {@link tether_server} passes on) to the processes
%%     that subscribed to them, as
%%     `{tether_service, up | down, Name, Node}' (up: an instance
%%     appeared or changed; down: it went).</li>
%% </ul>
%%
%% The salt lives in a protected ETS table with read concurrency,
%% written only by this server, so that readers order instances without
%% a message to any process. A restart of this server (with the tether
%% server, rest_for_one) forgets the local instances, as a fresh engine
%% does.
-module(tether_service_server).
-behaviour(gen_server).

-export([start_link/0, register/3, unregister/1, local/0, rank/1,
         recheck/0, subscribe/1, unsubscribe/1, event/3]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2,
         terminate/2]).

-define(SERVER, ?MODULE).
-define(RANKS, tether_service_ranks).

%% One local instance: its pid, its meta and the monitor on the pid.
-type instance() :: {pid(), map(), reference()}.

-record(st, {
    instances = #{} :: #{term() => instance()},
    %% The engine the instances are registered in (undefined: none yet).
    engine :: tether_nif:engine() | undefined,
    recheck_ms :: pos_integer(),
    timer :: reference() | undefined,
    %% Subscribers of change events, monitored.
    subs = #{} :: #{pid() => reference()}
}).

-type state() :: #st{}.

%%% API

%% @doc Starts the server, registered as `tether_service_server'.
-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

%% @doc Registers the local, live Pid as this node's instance of Name
%% with Meta, replacing the node's previous instance of Name, and
%% monitors it. `{error, not_local}' for a pid of another node,
%% `{error, noproc}' for a dead one, `{error, not_distributed}' when the
%% node has no engine.
-spec register(term(), pid(), map()) -> ok | {error, term()}.
register(Name, Pid, Meta) when is_pid(Pid), is_map(Meta) ->
    gen_server:call(?SERVER, {register, Name, Pid, Meta}).

%% @doc Removes this node's instance of Name (`ok' also when there is
%% none).
-spec unregister(term()) -> ok.
unregister(Name) ->
    gen_server:call(?SERVER, {unregister, Name}).

%% @doc This node's instances as the server holds them: `[{Name, Pid,
%% Meta}]', sorted by name.
-spec local() -> [{term(), pid(), map()}].
local() ->
    gen_server:call(?SERVER, local).

%% @doc The rank of Node in the order of remote instances: a number
%% drawn afresh for every node at every recheck. Read from ETS, without
%% a message; 0 salt when the server is not running.
-spec rank(node()) -> non_neg_integer().
rank(Node) ->
    Salt = try ets:lookup_element(?RANKS, salt, 2)
           catch error:badarg -> 0
           end,
    erlang:phash2({Salt, Node}).

%% @doc Runs a health recheck now (redraws the ranks, follows an engine
%% change) and returns when it is done. For tests and operators.
-spec recheck() -> ok.
recheck() ->
    gen_server:call(?SERVER, recheck).

%% @doc Sends Pid `{tether_service, up | down, Name, Node}' for every
%% change of the service table seen by this node, until Pid exits or
%% unsubscribes. Subscribing twice is `ok' (one message per event).
-spec subscribe(pid()) -> ok.
subscribe(Pid) when is_pid(Pid) ->
    gen_server:call(?SERVER, {subscribe, Pid}).

%% @doc Stops the events to Pid; `ok' also when it had none.
-spec unsubscribe(pid()) -> ok.
unsubscribe(Pid) when is_pid(Pid) ->
    gen_server:call(?SERVER, {unsubscribe, Pid}).

%% @private A change event of the engine's service table (NameEtf as the
%% engine holds it), from the tether server.
-spec event(up | down, binary(), node()) -> ok.
event(UpDown, NameEtf, Node) ->
    gen_server:cast(?SERVER, {event, UpDown, NameEtf, Node}).

%%% gen_server

%% @private
-spec init([]) -> {ok, state()}.
init([]) ->
    _ = ets:new(?RANKS, [named_table, protected, set,
                         {read_concurrency, true}]),
    new_salt(),
    %% Member events tell us early that a fresh engine met its peers.
    ok = tether:subscribe(self()),
    S = #st{recheck_ms = tether_config:service_recheck_ms(),
            engine = tether_server:engine()},
    {ok, arm(S)}.

%% @private
-spec handle_call(term(), gen_server:from(), state()) ->
          {reply, term(), state()}.
handle_call({register, Name, Pid, Meta}, _From, S0) ->
    S = follow_engine(S0),
    case node(Pid) =:= node() andalso is_process_alive(Pid) of
        false when node(Pid) =/= node() ->
            {reply, {error, not_local}, S};
        false ->
            {reply, {error, noproc}, S};
        true ->
            case engine_register(Name, Pid, Meta) of
                ok ->
                    S1 = forget(Name, S),
                    MRef = erlang:monitor(process, Pid),
                    Insts = maps:put(Name, {Pid, Meta, MRef},
                                     S1#st.instances),
                    {reply, ok, S1#st{instances = Insts}};
                {error, _} = Error ->
                    {reply, Error, S}
            end
    end;
handle_call({unregister, Name}, _From, S0) ->
    S = follow_engine(S0),
    _ = engine_unregister(Name),
    {reply, ok, forget(Name, S)};
handle_call(local, _From, S) ->
    {reply, lists:sort([{Name, Pid, Meta}
                        || {Name, {Pid, Meta, _}}
                               <- maps:to_list(S#st.instances)]), S};
handle_call(recheck, _From, S) ->
    {reply, ok, do_recheck(S)};
handle_call({subscribe, Pid}, _From, S = #st{subs = Subs}) ->
    case Subs of
        #{Pid := _} -> {reply, ok, S};
        _ -> {reply, ok, S#st{subs = Subs#{Pid => monitor(process, Pid)}}}
    end;
handle_call({unsubscribe, Pid}, _From, S = #st{subs = Subs}) ->
    case maps:take(Pid, Subs) of
        {MRef, Rest} ->
            demonitor(MRef, [flush]),
            {reply, ok, S#st{subs = Rest}};
        error ->
            {reply, ok, S}
    end;
handle_call(_Req, _From, S) ->
    {reply, {error, badarg}, S}.

%% @private
-spec handle_cast(term(), state()) -> {noreply, state()}.
handle_cast({event, UpDown, NameEtf, Node}, S = #st{subs = Subs})
  when map_size(Subs) > 0 ->
    %% The bytes are the engine's copy of a name a member registered:
    %% decoded as distribution would decode it.
    try binary_to_term(NameEtf) of
        Name ->
            Msg = {tether_service, UpDown, Name, Node},
            _ = [Pid ! Msg || Pid <- maps:keys(Subs)],
            {noreply, S}
    catch
        error:badarg -> {noreply, S}
    end;
handle_cast(_Msg, S) ->
    {noreply, S}.

%% @private
-spec handle_info(term(), state()) -> {noreply, state()}.
handle_info({'DOWN', MRef, process, Pid, _Why}, S = #st{subs = Subs})
  when map_get(Pid, Subs) =:= MRef ->
    {noreply, S#st{subs = maps:remove(Pid, Subs)}};
handle_info({'DOWN', MRef, process, Pid, _Why}, S) ->
    %% An instance died: each service it served goes, here and on every
    %% member.
    Dead = [Name || {Name, {P, _, R}} <- maps:to_list(S#st.instances),
                    P =:= Pid, R =:= MRef],
    _ = [engine_unregister(Name) || Dead =/= [], Name <- Dead],
    {noreply, S#st{instances = maps:without(Dead, S#st.instances)}};
handle_info({timeout, TRef, recheck}, S = #st{timer = TRef}) ->
    {noreply, arm(do_recheck(S#st{timer = undefined}))};
handle_info({tether_member, _UpDown, _Node}, S) ->
    {noreply, follow_engine(S)};
handle_info(_Msg, S) ->
    {noreply, S}.

%% @private
-spec terminate(term(), state()) -> ok.
terminate(_Reason, _S) ->
    ok.

%%% Internals

%% The health recheck: new ranks, and the instances follow the engine.
-spec do_recheck(state()) -> state().
do_recheck(S) ->
    new_salt(),
    follow_engine(S).

-spec new_salt() -> true.
new_salt() ->
    ets:insert(?RANKS, {salt, rand:uniform(1 bsl 32)}).

-spec arm(state()) -> state().
arm(S = #st{recheck_ms = Ms}) ->
    S#st{timer = erlang:start_timer(Ms, self(), recheck)}.

%% Registers the live local instances again when the current engine is
%% not the one they were registered in. An instance the new engine
%% refuses is kept and tried again at the next change or recheck.
-spec follow_engine(state()) -> state().
follow_engine(S = #st{engine = Old, instances = Insts}) ->
    case tether_server:engine() of
        Old ->
            S;
        undefined ->
            S#st{engine = undefined};
        New ->
            Results = [{Name, engine_register(Name, Pid, Meta)}
                       || {Name, {Pid, Meta, _}} <- maps:to_list(Insts)],
            case [{N, R} || {N, R} <- Results, R =/= ok] of
                [] ->
                    S#st{engine = New};
                Failed ->
                    logger:warning("tether: services not registered in the "
                                   "new engine: ~p", [Failed]),
                    S
            end
    end.

-spec engine_register(term(), pid(), map()) -> ok | {error, term()}.
engine_register(Name, Pid, Meta) ->
    try tether_server:engine_call(
          fun(E) -> tether_nif:svc_register(E, Name, Pid, Meta) end) of
        ok -> ok;
        {error, _} = Error -> Error;
        Other -> {error, Other}
    catch
        error:badarg -> {error, badarg};
        exit:{Reason, _} -> {error, Reason}
    end.

-spec engine_unregister(term()) -> ok.
engine_unregister(Name) ->
    _ = try tether_server:engine_call(
              fun(E) -> tether_nif:svc_unregister(E, Name) end)
        catch
            error:badarg -> ok;
            exit:_ -> ok
        end,
    ok.

%% Drops the bookkeeping of the local instance of Name (not the engine
%% entry).
-spec forget(term(), state()) -> state().
forget(Name, S = #st{instances = Insts}) ->
    case maps:take(Name, Insts) of
        {{_Pid, _Meta, MRef}, Rest} ->
            erlang:demonitor(MRef, [flush]),
            S#st{instances = Rest};
        error ->
            S
    end.
