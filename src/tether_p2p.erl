%% @doc barrel_p2p's service and view calls that have no other home in
%% tether (see `tether' for the facade): lookups in barrel_p2p's return
%% shapes over {@link tether_service}, the views of a full mesh, global
%% registration of the caller, and service holders (processes that hold
%% a service instance for as long as they live).
-module(tether_p2p).

-export([lookup/1, lookup_local/1, list_services/0, active_view/0,
         passive_view/0, global_register/1, get_proxy/1,
         start_service_holder/1, stop_service_holder/1, holder_init/2]).

-define(STOP_MS, 5000).

%% @doc See {@link tether:lookup/1}.
-spec lookup(term()) -> {ok, [{node(), pid(), term()}]} | {error, not_found}.
lookup(Name) ->
    case maps:find(Name, tether_service:get_services()) of
        {ok, [_ | _] = Instances} -> {ok, Instances};
        _ -> {error, not_found}
    end.

%% @doc See {@link tether:lookup_local/1}.
-spec lookup_local(term()) -> {ok, pid()} | {error, not_found}.
lookup_local(Name) ->
    case tether_service:whereis_service(Name, #{node => node()}) of
        {ok, Pid} when is_pid(Pid) -> {ok, Pid};
        _ -> {error, not_found}
    end.

%% @doc See {@link tether:list_services/0}.
-spec list_services() -> [term()].
list_services() ->
    lists:sort(maps:keys(tether_service:get_services())).

%% @doc See {@link tether:active_view/0}.
-spec active_view() -> [node()].
active_view() ->
    case tether:members() of
        L when is_list(L) -> L -- [node()];
        _ -> []
    end.

%% @doc See {@link tether:passive_view/0}.
-spec passive_view() -> [].
passive_view() ->
    [].

%% @doc See {@link tether:global_register/1}.
-spec global_register(term()) ->
          {ok, pid()} | {error, {already_registered, pid() | undefined}}.
global_register(Name) ->
    Self = self(),
    case tether:register_name(Name, Self) of
        yes -> {ok, Self};
        no -> case tether:whereis_name(Name) of
                  Self -> {ok, Self};
                  Other -> {error, {already_registered, Other}}
              end
    end.

%% @doc See {@link tether:get_proxy/1}.
-spec get_proxy(term()) -> {ok, pid()} | not_found.
get_proxy(Name) ->
    case tether:whereis_name(Name) of
        Pid when is_pid(Pid) -> {ok, Pid};
        undefined -> not_found
    end.

%% @doc See {@link tether:start_service_holder/1}.
-spec start_service_holder(term()) -> {ok, pid()} | {error, term()}.
start_service_holder(Name) ->
    Ref = make_ref(),
    {Pid, MRef} = spawn_monitor(?MODULE, holder_init, [self(), {Ref, Name}]),
    receive
        {Ref, ok} ->
            erlang:demonitor(MRef, [flush]),
            {ok, Pid};
        {Ref, {error, _} = Error} ->
            erlang:demonitor(MRef, [flush]),
            Error;
        {'DOWN', MRef, process, Pid, Reason} ->
            {error, Reason}
    end.

%% @doc See {@link tether:stop_service_holder/1}. A pid that is not a
%% service holder is left alone.
-spec stop_service_holder(pid()) -> ok.
stop_service_holder(Pid) when is_pid(Pid) ->
    case is_holder(Pid) of
        true ->
            MRef = erlang:monitor(process, Pid),
            Pid ! {'$tether_holder_stop', self()},
            receive
                {'DOWN', MRef, process, Pid, _} -> ok
            after ?STOP_MS ->
                    erlang:demonitor(MRef, [flush]),
                    ok
            end;
        false ->
            ok
    end;
stop_service_holder(_) ->
    ok.

%% Only holders are stopped: a holder marks itself in its dictionary.
is_holder(Pid) ->
    Info = try erpc:call(node(Pid), erlang, process_info, [Pid, dictionary],
                         ?STOP_MS)
           catch _:_ -> undefined
           end,
    case Info of
        {dictionary, D} -> lists:keymember('$tether_service_holder', 1, D);
        _ -> false
    end.

%% @private The holder: registers itself as this node's instance of Name,
%% then waits to be stopped (its exit removes the instance).
-spec holder_init(pid(), {reference(), term()}) -> ok.
holder_init(Parent, {Ref, Name}) ->
    put('$tether_service_holder', Name),
    case tether_service:register_service(Name, self(), #{holder => true}) of
        ok ->
            Parent ! {Ref, ok},
            receive
                {'$tether_holder_stop', _} ->
                    _ = tether_service:unregister_service(Name),
                    ok
            end;
        {error, _} = Error ->
            Parent ! {Ref, Error},
            ok
    end.
