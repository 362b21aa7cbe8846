%% @doc Replicated maps: last-writer-wins maps hosted by the nodes that
%% ask for them, with subscriptions and anti-entropy (the API that
%% {@link tether} delegates to, and the tether server's bookkeeping).
%%
%% The maps are an engine module (`c_src/core/maps.h', engine message
%% type 0x24), the same code on BEAM nodes and C-nodes. Per key, every
%% host keeps the write with the greatest (hybrid logical clock stamp,
%% node name); a write is stamped once, applied here and sent to every
%% host with that stamp, so concurrent writes converge as soon as each
%% host has seen them all. A remove is a tombstone ordered the same way,
%% collected `tombstone_ttl_ms' after it was written (default 24 h).
%% Hosts compare digests when they meet and every `map_sync_ms'
%% (application env, default 5000) and exchange only the keys that
%% differ.
%%
%% == Paths ==
%%
%% `map_get/2', `map_keys/1', `map_to_list/1' and `map_size/1' read the
%% NIF's copy under its read lock, with no message to any process (the
%% values are kept as terms: a read copies one out, as `ets:lookup/2'
%% does). `map_put/3' and `map_remove/2' run in the caller: the
%% validator (if any) runs here, the NIF stamps and applies the write and
%% seals it for the map's hosts, and the caller sends the envelopes
%% itself ({@link tether_server:send_wire/2}). Hosting, deleting and
%% subscriptions go through the tether server.
%%
%% == Limits ==
%%
%% A key is at most 64 KiB in its canonical encoding, a value at most
%% 4 MiB in external term format (`{error, too_large}' beyond). Values
%% travel between nodes, so they may not hold funs (`{error,
%% invalid_value}'), nor be nested deeper than 32 levels.
%%
%% == The server side ==
%%
%% {@link tether_server} holds a {@link state()}: the hosted maps and
%% their options (application env `maps': a list of names or `{Name,
%% Opts}', hosted when the engine starts), and the subscribers with a
%% monitor each. Engine actions `{map, NameEtf, KeyEtf, ValueEtf |
%% removed}' become the events `{tether_map, Name, {put, Key, Value}}'
%% and `{tether_map, Name, {remove, Key}}'. A fresh engine hosts every
%% map again and catches up by anti-entropy.
-module(tether_map).

%% The API of tether (see there).
-export([new_map/1, new_map/2, delete_map/1, map_put/3, map_get/2,
         map_remove/2, map_keys/1, map_to_list/1, map_size/1,
         subscribe_map/1, subscribe_map/2, unsubscribe_map/1,
         unsubscribe_map/2, map_info/1]).
%% Callbacks of tether_server.
-export([init/0, sync_ms/0, handle_call/3, handle_action/2, down/4,
         engine_started/2]).

-export_type([state/0, opts/0]).

-compile({no_auto_import, [map_size/1]}).

-define(SERVER, tether).
-define(VALUE_MAX, 4 * 1024 * 1024).
-define(DIRTY_BYTES, 64 * 1024).
-define(DEFAULT_TTL_MS, 24 * 3600 * 1000).
-define(DEFAULT_SYNC_MS, 5000).

%% The options of new_map/2.
-type opts() :: #{validator => fun((term(), term()) -> boolean()),
                  persist => boolean(),
                  tombstone_ttl_ms => pos_integer()}.

-record(maps, {
    %% The maps this node hosts, with their options.
    hosted = #{} :: #{term() => opts()},
    %% Subscribers per map, each monitored.
    subs = #{} :: #{term() => #{pid() => reference()}}
}).

-opaque state() :: #maps{}.

%%% API

%% @doc See {@link tether:new_map/2}.
-spec new_map(term()) -> ok | {error, term()}.
new_map(Name) ->
    new_map(Name, #{}).

%% @doc See {@link tether:new_map/2}.
-spec new_map(term(), opts()) -> ok | {error, term()}.
new_map(Name, Opts) ->
    case check_opts(Opts) of
        ok -> call({map_new, Name, Opts});
        Error -> Error
    end.

%% @doc See {@link tether:delete_map/1}.
-spec delete_map(term()) -> ok.
delete_map(Name) ->
    _ = call({map_delete, Name}),
    ok.

%% @doc See {@link tether:map_put/3}.
-spec map_put(term(), term(), term()) ->
          ok | {error, invalid_value | too_large | no_such_map}.
map_put(Name, Key, Value) ->
    case persistent_term:get({?MODULE, Name}, undefined) of
        undefined ->
            {error, no_such_map};
        Validator ->
            case erlang:external_size(Value) > ?VALUE_MAX of
                true ->
                    {error, too_large};
                false ->
                    case valid(Validator, Key, Value) of
                        true -> write(Name, Key, {value, Value});
                        false -> {error, invalid_value}
                    end
            end
    end.

%% @doc See {@link tether:map_get/2}.
-spec map_get(term(), term()) -> {ok, term()} | not_found
                                 | {error, no_such_map}.
map_get(Name, Key) ->
    case tether_server:engine() of
        undefined -> {error, no_such_map};
        E -> tether_nif:map_get(E, Name, Key)
    end.

%% @doc See {@link tether:map_remove/2}.
-spec map_remove(term(), term()) -> ok | {error, no_such_map}.
map_remove(Name, Key) ->
    write(Name, Key, remove).

%% @doc See {@link tether:map_keys/1}.
-spec map_keys(term()) -> [term()] | {error, no_such_map}.
map_keys(Name) ->
    list(Name, keys).

%% @doc See {@link tether:map_to_list/1}.
-spec map_to_list(term()) -> [{term(), term()}] | {error, no_such_map}.
map_to_list(Name) ->
    list(Name, pairs).

%% @doc See {@link tether:map_size/1}.
-spec map_size(term()) -> non_neg_integer() | {error, no_such_map}.
map_size(Name) ->
    case tether_server:engine() of
        undefined -> {error, no_such_map};
        E -> tether_nif:map_size(E, Name)
    end.

%% @doc See {@link tether:subscribe_map/2}.
-spec subscribe_map(term()) -> ok | {error, no_such_map}.
subscribe_map(Name) ->
    subscribe_map(Name, self()).

%% @doc See {@link tether:subscribe_map/2}.
-spec subscribe_map(term(), pid()) -> ok | {error, no_such_map}.
subscribe_map(Name, Pid) when is_pid(Pid) ->
    call({map_subscribe, Name, Pid}).

%% @doc See {@link tether:unsubscribe_map/2}.
-spec unsubscribe_map(term()) -> ok | {error, no_such_map}.
unsubscribe_map(Name) ->
    unsubscribe_map(Name, self()).

%% @doc See {@link tether:unsubscribe_map/2}.
-spec unsubscribe_map(term(), pid()) -> ok | {error, no_such_map}.
unsubscribe_map(Name, Pid) when is_pid(Pid) ->
    call({map_unsubscribe, Name, Pid}).

%% @doc Counters of map Name on this node (entries with tombstones,
%% live keys, known hosts, the term arena's live and garbage bytes) and
%% of the maps module (anti-entropy bytes and rounds, writes applied,
%% stale, bad messages).
-spec map_info(term()) -> #{atom() => non_neg_integer()}
                          | {error, no_such_map}.
map_info(Name) ->
    case tether_server:engine() of
        undefined -> {error, no_such_map};
        E -> tether_nif:map_info(E, Name)
    end.

%%% Server side

%% @doc The initial state: the maps of the application env `maps'
%% (entries that are not a name or `{Name, Opts}' with valid options are
%% logged and skipped).
-spec init() -> state().
init() ->
    Hosted = lists:foldl(
               fun(Entry, Acc) ->
                       case env_entry(Entry) of
                           {ok, Name, Opts} ->
                               Acc#{Name => Opts};
                           {error, Reason} ->
                               logger:error("tether: map ~p not hosted: ~p",
                                            [Entry, Reason]),
                               Acc
                       end
               end, #{}, env_list()),
    #maps{hosted = Hosted}.

%% @doc The anti-entropy period: application env `map_sync_ms'.
-spec sync_ms() -> pos_integer().
sync_ms() ->
    case application:get_env(tether, map_sync_ms, ?DEFAULT_SYNC_MS) of
        N when is_integer(N), N > 0, N < 1 bsl 32 -> N;
        _ -> ?DEFAULT_SYNC_MS
    end.

%% @doc A fresh engine hosts every map (and its subscribers' events).
-spec engine_started(tether_nif:engine(), state()) -> state().
engine_started(E, St = #maps{hosted = Hosted, subs = Subs}) ->
    maps:foreach(
      fun(Name, Opts) ->
              case host(E, Name, Opts) of
                  ok ->
                      _ = maps:is_key(Name, Subs)
                          andalso tether_nif:map_notify(E, Name, true),
                      ok;
                  Error ->
                      logger:error("tether: map ~p not hosted: ~p",
                                   [Name, Error])
              end
      end, Hosted),
    St.

%% @doc A map call of the tether server, with its engine.
-spec handle_call(term(), tether_nif:engine(), state()) ->
          {term(), state()}.
handle_call({map_new, Name, _Opts}, _E, St = #maps{hosted = H})
  when is_map_key(Name, H) ->
    {ok, St}; % hosted already: its options are kept
handle_call({map_new, Name, Opts}, E, St = #maps{hosted = H}) ->
    case host(E, Name, Opts) of
        ok -> {ok, St#maps{hosted = H#{Name => Opts}}};
        Error -> {Error, St}
    end;
handle_call({map_delete, Name}, E, St = #maps{hosted = H, subs = Subs}) ->
    _ = persistent_term:erase({?MODULE, Name}),
    _ = tether_server:safe(fun() -> tether_nif:map_unhost(E, Name) end),
    _ = [erlang:demonitor(R, [flush])
         || R <- maps:values(maps:get(Name, Subs, #{}))],
    {ok, St#maps{hosted = maps:remove(Name, H),
                 subs = maps:remove(Name, Subs)}};
handle_call({map_subscribe, Name, Pid}, E, St = #maps{hosted = H, subs = S}) ->
    case maps:is_key(Name, H) of
        false ->
            {{error, no_such_map}, St};
        true ->
            Pids = maps:get(Name, S, #{}),
            case maps:is_key(Pid, Pids) of
                true ->
                    {ok, St};
                false ->
                    _ = tether_nif:map_notify(E, Name, true),
                    MRef = erlang:monitor(process, Pid),
                    {ok, St#maps{subs = S#{Name => Pids#{Pid => MRef}}}}
            end
    end;
handle_call({map_unsubscribe, Name, Pid}, E, St = #maps{hosted = H}) ->
    case maps:is_key(Name, H) of
        false -> {{error, no_such_map}, St};
        true -> {ok, drop_sub(Name, Pid, E, St)}
    end;
handle_call(_Req, _E, St) ->
    {{error, badarg}, St}.

%% @doc A `{map, ...}' engine action: the event to the map's subscribers.
-spec handle_action({map, binary(), binary(), binary() | removed},
                    state()) -> state().
handle_action({map, NameEtf, KeyEtf, Value}, St = #maps{subs = Subs}) ->
    %% Bytes the engine stored after a trusted member sent them (or we
    %% wrote them): decoded as distribution decodes.
    Name = binary_to_term(NameEtf),
    case maps:find(Name, Subs) of
        {ok, Pids} ->
            Key = binary_to_term(KeyEtf),
            Event = case Value of
                        removed -> {remove, Key};
                        _ -> {put, Key, binary_to_term(Value)}
                    end,
            _ = [P ! {tether_map, Name, Event} || P <- maps:keys(Pids)],
            St;
        error ->
            St
    end.

%% @doc A monitored process died: `{true, State}' if it was a
%% subscriber (dropped), else `false'.
-spec down(pid(), reference(), tether_nif:engine() | undefined, state()) ->
          {true, state()} | false.
down(Pid, MRef, E, St = #maps{subs = Subs}) ->
    case [N || {N, Pids} <- maps:to_list(Subs), maps:get(Pid, Pids, x) =:= MRef]
    of
        [] -> false;
        Names -> {true, lists:foldl(fun(N, S) -> drop_sub(N, Pid, E, S) end,
                                    St, Names)}
    end.

%%% Internal

-spec call(term()) -> term().
call(Req) ->
    try
        gen_server:call(?SERVER, Req, 30000)
    catch
        exit:{noproc, _} -> {error, not_started}
    end.

-spec host(tether_nif:engine(), term(), opts()) -> ok | {error, term()}.
host(E, Name, Opts) ->
    Ttl = maps:get(tombstone_ttl_ms, Opts, ?DEFAULT_TTL_MS),
    case tether_server:safe(fun() -> tether_nif:map_host(E, Name, Ttl) end) of
        ok ->
            persistent_term:put({?MODULE, Name},
                                maps:get(validator, Opts, none)),
            ok;
        {error, invalid} ->
            {error, {bad_name, Name}};
        Error ->
            Error
    end.

-spec drop_sub(term(), pid(), tether_nif:engine() | undefined, state()) ->
          state().
drop_sub(Name, Pid, E, St = #maps{subs = Subs}) ->
    Pids = maps:get(Name, Subs, #{}),
    case maps:take(Pid, Pids) of
        {MRef, Rest} ->
            erlang:demonitor(MRef, [flush]),
            case erlang:map_size(Rest) of
                0 ->
                    _ = E =/= undefined andalso
                        tether_nif:map_notify(E, Name, false),
                    St#maps{subs = maps:remove(Name, Subs)};
                _ ->
                    St#maps{subs = Subs#{Name => Rest}}
            end;
        error ->
            St
    end.

-spec valid(none | fun((term(), term()) -> boolean()), term(), term()) ->
          boolean().
valid(none, _Key, _Value) ->
    true;
valid(Validator, Key, Value) ->
    try Validator(Key, Value) of
        true -> true;
        _ -> false
    catch
        _:_ -> false
    end.

-spec write(term(), term(), {value, term()} | remove) ->
          ok | {error, term()}.
write(Name, Key, What) ->
    case tether_server:engine() of
        undefined ->
            {error, no_such_map};
        E ->
            R = try
                    case What of
                        {value, V} ->
                            case erlang:external_size(V) > ?DIRTY_BYTES of
                                true -> tether_nif:map_put_dirty(E, Name, Key, V);
                                false -> tether_nif:map_put(E, Name, Key, V)
                            end;
                        remove ->
                            tether_nif:map_remove(E, Name, Key)
                    end
                catch
                    error:badarg -> {error, invalid_value}
                end,
            case R of
                {ok, Envelopes, Drain} ->
                    _ = [tether_server:send_wire(Peer, Bytes)
                         || {Peer, Bytes} <- Envelopes],
                    _ = Drain andalso (catch ?SERVER ! map_drain),
                    ok;
                {error, too_large} when What =:= remove ->
                    ok; % a key that large cannot be in the map
                {error, _} = Error ->
                    Error
            end
    end.

-spec list(term(), keys | pairs) -> list() | {error, no_such_map}.
list(Name, What) ->
    case tether_server:engine() of
        undefined -> {error, no_such_map};
        E -> tether_nif:map_list(E, Name, What)
    end.

-spec check_opts(term()) -> ok | {error, {bad_option, term()}}.
check_opts(Opts) when is_map(Opts) ->
    check_list(maps:to_list(Opts));
check_opts(Opts) ->
    {error, {bad_option, Opts}}.

-spec check_list([{term(), term()}]) -> ok | {error, {bad_option, term()}}.
check_list([]) ->
    ok;
check_list([{validator, F} | T]) when is_function(F, 2) ->
    check_list(T);
check_list([{persist, false} | T]) ->
    check_list(T);
check_list([{tombstone_ttl_ms, N} | T])
  when is_integer(N), N > 0, N < 1 bsl 48 ->
    check_list(T);
check_list([Opt | _]) ->
    {error, {bad_option, Opt}}.

-spec env_list() -> list().
env_list() ->
    case application:get_env(tether, maps, []) of
        L when is_list(L) -> L;
        Other -> [{bad_env, Other}]
    end.

-spec env_entry(term()) -> {ok, term(), opts()} | {error, term()}.
env_entry({bad_env, Other}) ->
    {error, {bad_option, {maps, Other}}};
env_entry({Name, Opts}) when is_map(Opts) ->
    case check_opts(Opts) of
        ok -> {ok, Name, Opts};
        Error -> Error
    end;
env_entry(Name) ->
    {ok, Name, #{}}.
