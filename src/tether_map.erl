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
%% Optionally persisted (see below).
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
%% == Persistence ==
%%
%% A map hosted with `persist => true' keeps an append-only log
%% ({@link tether_datalog}) at `DataDir/NodeName/map-<Hash>.log', where
%% DataDir is the application env `data_dir' (default `"tether_data"',
%% relative to the working directory), NodeName the full node name and
%% Hash identifies the map's name; the directories are created 0700 when
%% a persisted map is first hosted. Every write this node applies to the
%% map (its own, a peer's, or one anti-entropy brought) is a record
%% `{Key, Stamp, Node, Value | remove}' in the log. `map_put/3' and
%% `map_remove/2' return once their record is written and fdatasync'ed
%% (concurrent writers share one fdatasync: group commit); a peer's
%% write is appended in the background. When the map is hosted again
%% (a restart with the same `data_dir', or a fresh engine) the log is
%% read back into it, then compacted, and the map catches up with its
%% peers by anti-entropy. A torn last record (the node died in the middle
%% of an append) is skipped with one log line; a corrupted record is
%% skipped too, counted in that line, and the file is copied aside to
%% `.corrupt' before the compaction rewrites it, so nothing it held is
%% lost. The log is compacted (rewritten from the map's entries) each
%% time it holds more than twice as many records as the map has entries.
%% A log that cannot be created makes `new_map/2' answer `{error,
%% {persist, Reason}}'; a write whose record cannot be written answers
%% `{error, {persist, Reason}}' (the write was applied and sent: it is
%% only not durable here).
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
-define(DEFAULT_DATA_DIR, "tether_data").
%% Records appended between two looks at whether a log needs compacting.
-define(COMPACT_EVERY, 1000).

%% The options of new_map/2.
-type opts() :: #{validator => fun((term(), term()) -> boolean()),
                  persist => boolean(),
                  tombstone_ttl_ms => pos_integer()}.

-record(maps, {
    %% The maps this node hosts, with their options.
    hosted = #{} :: #{term() => opts()},
    %% Subscribers per map, each monitored.
    subs = #{} :: #{term() => #{pid() => reference()}},
    %% The open log of each persisted map.
    logs = #{} :: #{term() => tether_datalog:log()}
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
          ok | {error, invalid_value | too_large | no_such_map
                | {persist, term()}}.
map_put(Name, Key, Value) ->
    case persistent_term:get({?MODULE, Name}, undefined) of
        undefined ->
            {error, no_such_map};
        {Validator, _Log} ->
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
-spec map_remove(term(), term()) -> ok | {error, no_such_map
                                         | {persist, term()}}.
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
engine_started(E, St0 = #maps{hosted = Hosted, subs = Subs}) ->
    maps:fold(
      fun(Name, Opts, St) ->
              case host(E, Name, Opts, St) of
                  {ok, St1} ->
                      _ = maps:is_key(Name, Subs)
                          andalso tether_nif:map_notify(E, Name, true),
                      St1;
                  {Error, St1} ->
                      logger:error("tether: map ~p not hosted: ~p",
                                   [Name, Error]),
                      St1
              end
      end, St0, Hosted).

%% @doc A map call of the tether server, with its engine.
-spec handle_call(term(), tether_nif:engine(), state()) ->
          {term(), state()}.
handle_call({map_new, Name, _Opts}, _E, St = #maps{hosted = H})
  when is_map_key(Name, H) ->
    {ok, St}; % hosted already: its options are kept
handle_call({map_new, Name, Opts}, E, St = #maps{hosted = H}) ->
    case host(E, Name, Opts, St) of
        {ok, St1} -> {ok, St1#maps{hosted = H#{Name => Opts}}};
        {Error, St1} -> {Error, St1}
    end;
handle_call({map_delete, Name}, E, St = #maps{hosted = H, subs = Subs}) ->
    _ = persistent_term:erase({?MODULE, Name}),
    _ = tether_server:safe(fun() -> tether_nif:map_unhost(E, Name) end),
    _ = [erlang:demonitor(R, [flush])
         || R <- maps:values(maps:get(Name, Subs, #{}))],
    St1 = close_log(Name, St),
    {ok, St1#maps{hosted = maps:remove(Name, H),
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

%% @doc A `{map, ...}' engine action: the event to the map's subscribers;
%% a `{map_store, ...}' action: a record for the map's log (appended in
%% the background: a peer's write, durable with the next group).
-spec handle_action({map, binary(), binary(), binary() | removed}
                    | {map_store, binary(), binary()}, state()) -> state().
handle_action({map_store, NameEtf, Rec}, St = #maps{logs = Logs}) ->
    case maps:find(binary_to_term(NameEtf), Logs) of
        {ok, Log} -> ok = tether_datalog:append_async(Log, Rec);
        error -> ok
    end,
    St;
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

%% Hosts Name in engine E; a persisted map's log is read into it and
%% opened (or, for a fresh engine, read again).
-spec host(tether_nif:engine(), term(), opts(), state()) ->
          {ok | {error, term()}, state()}.
host(E, Name, Opts, St) ->
    Ttl = maps:get(tombstone_ttl_ms, Opts, ?DEFAULT_TTL_MS),
    Persist = maps:get(persist, Opts, false),
    case tether_server:safe(
           fun() -> tether_nif:map_host(E, Name, Ttl, Persist) end) of
        ok when Persist ->
            case open_log(E, Name, St) of
                {ok, Log, St1} ->
                    publish(Name, Opts, Log),
                    {ok, St1};
                {error, Reason} ->
                    _ = tether_server:safe(
                          fun() -> tether_nif:map_unhost(E, Name) end),
                    {{error, {persist, Reason}}, St}
            end;
        ok ->
            publish(Name, Opts, none),
            {ok, St};
        {error, invalid} ->
            {{error, {bad_name, Name}}, St};
        Error ->
            {Error, St}
    end.

%% What map_put and map_remove read in the caller: the validator and the
%% log.
-spec publish(term(), opts(), tether_datalog:log() | none) -> ok.
publish(Name, Opts, Log) ->
    persistent_term:put({?MODULE, Name},
                        {maps:get(validator, Opts, none), Log}).

%%% The logs

%% DataDir/NodeName/map-<Hash>.log
-spec log_path(term()) -> file:filename().
log_path(Name) ->
    Dir = case application:get_env(tether, data_dir) of
              {ok, D} when is_list(D); is_binary(D) -> D;
              _ -> ?DEFAULT_DATA_DIR
          end,
    <<Hash:16/binary, _/binary>> =
        crypto:hash(sha256, term_to_binary(Name, [deterministic])),
    File = "map-" ++ string:lowercase(binary_to_list(binary:encode_hex(Hash)))
        ++ ".log",
    filename:join([Dir, atom_to_list(node()), File]).

%% Reads Name's log into E, opens it (once: a fresh engine reuses the
%% writer) and compacts it.
-spec open_log(tether_nif:engine(), term(), state()) ->
          {ok, tether_datalog:log(), state()} | {error, term()}.
open_log(E, Name, St = #maps{logs = Logs}) ->
    Path = log_path(Name),
    load(E, Name, Path),
    Compact = fun(Appended) -> compact_check(Name, Appended) end,
    Opened = case maps:find(Name, Logs) of
                 {ok, Log0} ->
                     {ok, Log0};
                 error ->
                     tether_datalog:open(Path, #{sync => true,
                                                 compact => Compact,
                                                 compact_every =>
                                                     ?COMPACT_EVERY})
             end,
    case Opened of
        {ok, Log} ->
            case tether_datalog:compact(Log, fun() -> dump(E, Name) end) of
                ok ->
                    {ok, Log, St#maps{logs = Logs#{Name => Log}}};
                {error, _} = Error ->
                    ok = tether_datalog:close(Log),
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

-spec close_log(term(), state()) -> state().
close_log(Name, St = #maps{logs = Logs}) ->
    case maps:take(Name, Logs) of
        {Log, Rest} ->
            ok = tether_datalog:close(Log),
            St#maps{logs = Rest};
        error ->
            St
    end.

%% Feeds Name's log to E (tether_datalog:load_into/3 logs what it
%% skipped).
-spec load(tether_nif:engine(), term(), file:filename()) -> ok.
load(E, Name, Path) ->
    tether_datalog:load_into(Path,
                             fun(Rec) -> tether_nif:map_load(E, Name, Rec) end,
                             io_lib:format("map ~0p", [Name])).

-spec dump(tether_nif:engine(), term()) -> [binary()].
dump(E, Name) ->
    case tether_nif:map_dump(E, Name) of
        L when is_list(L) -> L;
        {error, _} -> []
    end.

%% The log's compact fun (run by its writer, every ?COMPACT_EVERY
%% records): rewrite when the log holds more than twice the map's entries
%% in the current engine.
-spec compact_check(term(), pos_integer()) -> {ok, [binary()]} | no.
compact_check(Name, Appended) ->
    case tether_server:engine() of
        undefined ->
            no;
        E ->
            case tether_server:safe(fun() -> tether_nif:map_info(E, Name) end)
            of
                #{entries := N} when Appended > 2 * N -> {ok, dump(E, Name)};
                _ -> no
            end
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
                    sent(Envelopes, Drain);
                {ok, Envelopes, Drain, Rec} ->
                    ok = sent(Envelopes, Drain),
                    persist(Name, Rec);
                {error, too_large} when What =:= remove ->
                    ok; % a key that large cannot be in the map
                {error, _} = Error ->
                    Error
            end
    end.

-spec sent([{binary(), binary()}], boolean()) -> ok.
sent(Envelopes, Drain) ->
    _ = [tether_server:send_wire(Peer, Bytes) || {Peer, Bytes} <- Envelopes],
    _ = Drain andalso (catch ?SERVER ! map_drain),
    ok.

%% Appends a local write's record to its map's log (returns once on disk).
-spec persist(term(), binary()) -> ok | {error, {persist, term()}}.
persist(Name, Rec) ->
    case persistent_term:get({?MODULE, Name}, undefined) of
        {_, Log} when is_pid(Log) ->
            case tether_datalog:append(Log, Rec) of
                ok -> ok;
                {error, Reason} -> {error, {persist, Reason}}
            end;
        _ ->
            {error, {persist, closed}} % deleted meanwhile
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
check_list([{persist, P} | T]) when is_boolean(P) ->
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
