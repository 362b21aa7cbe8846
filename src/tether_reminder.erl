%% @doc Reminders: one-shot timers owned by the key's ring owner, the
%% API that {@link tether} delegates to, and what the tether server keeps
%% of them (subscribers, callers waiting for a majority, the log).
%%
%% The reminders themselves are an engine module
%% (`c_src/core/reminders.h', engine message type 0x25), the same code
%% on BEAM nodes and C-nodes.
%%
%% == Semantics ==
%%
%% A reminder is stored on the first `reminder_replicas' (default 3,
%% fewer in a smaller cluster) owners of its key's shard of the cluster
%% ring ({@link tether:owners/2}), last writer wins by a
%% hybrid-logical-clock stamp, and armed on one binary heap of the
%% shard's primary only. {@link remind/4} returns `ok' once a majority of
%% those replicas hold it (with persistence on, each has written it to
%% its log first). Setting a key again replaces its reminder.
%%
%% At its fire time the primary first turns the reminder into a
%% tombstone on the replicas, then, once a majority holds the tombstone,
%% sends `{tether_reminder, Key, Payload, Fence}' to every subscriber on
%% its node. Fence identifies the reminder (the stamp of the write that
%% set it): the same Key and Fence twice is a duplicate of one reminder,
%% never a new one. Exactly once in a stable cluster; under churn (owners
%% joining, leaving, dying at the fire instant) at least once, every
%% duplicate with the same Fence. When ownership of a shard moves, the
%% new primary arms its reminders only once the old primary released them
%% (or was declared down by the TTL); only the shards that moved are
%% handed over. Replicas that missed a write catch up by anti-entropy
%% (per-shard digests every few seconds and when a session comes up).
%%
%% With no subscriber on the owning node at fire time the reminder is
%% held, and delivered when a subscriber appears there; held at most
%% `reminder_hold_ms' (default 24 h) past its time, then dropped with one
%% log line and a counter. A reminder armed by a handoff or a restart more
%% than a second after its time was missed: `missed => fire' (default)
%% fires it at once, `skip' drops it.
%%
%% == Persistence ==
%%
%% With the application env `data_dir' set (a directory), every record a
%% node replicates is appended to `DataDir/reminders-<node>.log' before
%% the node acknowledges it (`reminder_persist', default `true', turns it
%% off): written to the operating system, not fsync'ed ({@link
%% tether_datalog}). At start the log is read back (a torn tail or a
%% corrupted record: one log line, the rest is kept, and the damaged file
%% is copied aside to `.corrupt') and compacted, and the node arms nothing for one TTL, so that a
%% restarted node joins its cluster before it fires what it held.
%%
%% == Limits ==
%%
%% A key is any term with a canonical form (not a closure) of at most
%% 4096 bytes in the ring's encoding; a payload's external format at most
%% 65536 bytes. Times are integers on the `erlang:system_time(millisecond)'
%% scale; any 64-bit value is accepted (the past fires at once).
-module(tether_reminder).

%% The API of tether (see there).
-export([remind/3, remind/4, remind_after/3, remind_after/4,
         cancel_reminder/1, reminder/1, subscribe_reminders/0,
         subscribe_reminders/1, unsubscribe_reminders/1]).
%% Callbacks of tether_server and tether_config.
-export([read_config/1, init/1, handle_call/4, is_subscriber/3, down/3,
         handle_action/3, engine_opts/1, engine_started/2,
         engine_stopped/2]).

-export_type([state/0, opts/0, fence/0, config/0]).

-define(SERVER, tether).
-define(INT64_MIN, -(1 bsl 63)).
-define(INT64_MAX, (1 bsl 63) - 1).
-define(CALL_MS, 15000).
-define(DEFAULT_REPLICAS, 3).
-define(DEFAULT_HOLD_MS, 24 * 3600 * 1000).
%% Appends between two looks at whether the log needs compacting.
-define(COMPACT_CHECK, 10000).

%% Identifies one reminder (the stamp of the write that set it).
-type fence() :: pos_integer().

%% The options of remind/4 and remind_after/4.
-type opts() :: #{missed => fire | skip}.

%% The reminders' part of the application env (tether_config).
-type config() :: #{replicas := 1..8, hold_ms := pos_integer(),
                    data_dir := file:filename() | undefined,
                    persist := boolean()}.

-record(rm, {
    config :: config(),
    ttl_ms = 5000 :: pos_integer(),
    subs = #{} :: #{pid() => reference()},
    waiting = #{} :: #{non_neg_integer() => {gen_server:from(), term()}},
    next_ref = 1 :: pos_integer(),
    log :: tether_datalog:log() | undefined, % the open log
    appended = 0 :: non_neg_integer()    % records since the last compaction
}).

-opaque state() :: #rm{}.

%%% The API (tether's)

%% @doc See {@link tether:remind/4}.
-spec remind(term(), integer(), term()) -> ok | {error, term()}.
remind(Key, FireAtMs, Payload) ->
    remind(Key, FireAtMs, Payload, #{}).

%% @doc See {@link tether:remind/4}.
-spec remind(term(), integer(), term(), opts()) -> ok | {error, term()}.
remind(Key, FireAtMs, Payload, Opts) ->
    case {check_time(FireAtMs), options(Opts)} of
        {ok, {ok, Skip}} ->
            server_call({set, Key, FireAtMs, Payload, Skip});
        {ok, Error} ->
            Error;
        {Error, _} ->
            Error
    end.

%% @doc See {@link tether:remind_after/4}.
-spec remind_after(term(), non_neg_integer(), term()) -> ok | {error, term()}.
remind_after(Key, DelayMs, Payload) ->
    remind_after(Key, DelayMs, Payload, #{}).

%% @doc See {@link tether:remind_after/4}.
-spec remind_after(term(), non_neg_integer(), term(), opts()) ->
          ok | {error, term()}.
remind_after(Key, DelayMs, Payload, Opts)
  when is_integer(DelayMs), DelayMs >= 0 ->
    At = erlang:system_time(millisecond) + DelayMs,
    case At =< ?INT64_MAX of
        true -> remind(Key, At, Payload, Opts);
        false -> {error, {bad_delay, DelayMs}}
    end;
remind_after(_Key, DelayMs, _Payload, _Opts) ->
    {error, {bad_delay, DelayMs}}.

%% @doc See {@link tether:cancel_reminder/1}.
-spec cancel_reminder(term()) -> ok | {error, term()}.
cancel_reminder(Key) ->
    server_call({cancel, Key}).

%% @doc See {@link tether:reminder/1}.
-spec reminder(term()) -> {ok, integer(), term()} | not_found
                          | {error, term()}.
reminder(Key) ->
    server_call({get, Key}).

%% @doc See {@link tether:subscribe_reminders/1}.
-spec subscribe_reminders() -> ok.
subscribe_reminders() ->
    subscribe_reminders(self()).

%% @doc See {@link tether:subscribe_reminders/1}.
-spec subscribe_reminders(pid()) -> ok | {error, {bad_option, term()}}.
subscribe_reminders(Pid) when is_pid(Pid) ->
    server_call({subscribe, Pid});
subscribe_reminders(Other) ->
    {error, {bad_option, Other}}.

%% @doc See {@link tether:unsubscribe_reminders/1}.
-spec unsubscribe_reminders(pid()) -> ok | {error, {bad_option, term()}}.
unsubscribe_reminders(Pid) when is_pid(Pid) ->
    server_call({unsubscribe, Pid});
unsubscribe_reminders(Other) ->
    {error, {bad_option, Other}}.

-spec server_call(term()) -> term().
server_call(Req) ->
    try
        gen_server:call(?SERVER, {reminder, Req}, ?CALL_MS)
    catch
        exit:{noproc, _} -> {error, not_started};
        exit:{timeout, _} -> {error, timeout}
    end.

-spec check_time(term()) -> ok | {error, {bad_time, term()}}.
check_time(T) when is_integer(T), T >= ?INT64_MIN, T =< ?INT64_MAX ->
    ok;
check_time(T) ->
    {error, {bad_time, T}}.

-spec options(term()) -> {ok, boolean()} | {error, {bad_option, term()}}.
options(Opts) when is_map(Opts) ->
    maps:fold(fun(missed, fire, {ok, _}) -> {ok, false};
                 (missed, skip, {ok, _}) -> {ok, true};
                 (K, V, {ok, _}) -> {error, {bad_option, {K, V}}};
                 (_, _, Error) -> Error
              end, {ok, false}, Opts);
options(Opts) ->
    {error, {bad_option, Opts}}.

%%% Configuration

%% @doc Reads the reminders' application env through Get (as
%% tether_config reads it); throws `{Key, Value}' for a bad value:
%% `reminder_replicas' (1..8, default 3), `reminder_hold_ms' (default
%% 24 h), `data_dir' (a directory; default none: no persistence) and
%% `reminder_persist' (default true).
-spec read_config(fun((atom(), term()) -> term())) -> config().
read_config(Get) ->
    R = Get(reminder_replicas, ?DEFAULT_REPLICAS),
    H = Get(reminder_hold_ms, ?DEFAULT_HOLD_MS),
    D = Get(data_dir, undefined),
    P = Get(reminder_persist, true),
    (is_integer(R) andalso R >= 1 andalso R =< 8)
        orelse throw({reminder_replicas, R}),
    (is_integer(H) andalso H > 0 andalso H < 1 bsl 62)
        orelse throw({reminder_hold_ms, H}),
    (D =:= undefined orelse io_lib:char_list(D) orelse is_binary(D))
        orelse throw({data_dir, D}),
    is_boolean(P) orelse throw({reminder_persist, P}),
    #{replicas => R, hold_ms => H, data_dir => D, persist => P}.

%%% The server side

%% @doc The server's reminders state for its configuration (the
%% `reminders' and `ttl_ms' of tether_config's map).
-spec init(#{reminders := config(), ttl_ms := pos_integer(), _ => _}) ->
          state().
init(#{reminders := Config, ttl_ms := Ttl}) ->
    #rm{config = Config, ttl_ms = Ttl}.

%% @doc The engine options of reminders for a fresh engine: replicas,
%% hold, and (when a log is there to load) a settle time of one TTL.
-spec engine_opts(state()) -> #{atom() => non_neg_integer()}.
engine_opts(#rm{config = #{replicas := R, hold_ms := H}, ttl_ms = Ttl} = S) ->
    Settle = case log_path(S) of
                 undefined -> 0;
                 Path -> case filelib:file_size(Path) of
                             0 -> 0;
                             _ -> Ttl
                         end
             end,
    #{reminder_replicas => R, reminder_hold_ms => H,
      reminder_settle_ms => Settle}.

%% @doc A reminders call in the server: `{reply, Reply, State}', or
%% `{noreply, State}' for a caller answered by a later action.
-spec handle_call(term(), gen_server:from(), tether_nif:engine() | undefined,
                  state()) -> {reply, term(), state()} | {noreply, state()}.
handle_call({subscribe, Pid}, _From, E, S = #rm{subs = Subs}) ->
    Subs1 = case maps:is_key(Pid, Subs) of
                true -> Subs;
                false -> Subs#{Pid => erlang:monitor(process, Pid)}
            end,
    {reply, ok, tell_subscribers(E, S#rm{subs = Subs1})};
handle_call({unsubscribe, Pid}, _From, E, S = #rm{subs = Subs}) ->
    case maps:take(Pid, Subs) of
        {MRef, Rest} ->
            erlang:demonitor(MRef, [flush]),
            {reply, ok, tell_subscribers(E, S#rm{subs = Rest})};
        error ->
            {reply, ok, S}
    end;
handle_call(_Req, _From, undefined, S) ->
    {reply, {error, not_distributed}, S};
handle_call({set, Key, At, Payload, Skip}, From, E, S = #rm{next_ref = Ref}) ->
    wait(tether_nif:reminders_set(E, Key, At, Payload, Skip, Ref), From,
         set, S);
handle_call({cancel, Key}, From, E, S = #rm{next_ref = Ref}) ->
    wait(tether_nif:reminders_cancel(E, Key, Ref), From, cancel, S);
handle_call({get, Key}, From, E, S = #rm{next_ref = Ref}) ->
    case tether_nif:reminders_get(E, Key, Ref) of
        {ok, At, PayloadEtf} -> {reply, {ok, At, binary_to_term(PayloadEtf)}, S};
        not_found -> {reply, not_found, S};
        pending -> wait(ok, From, get, S);
        {error, _} = Error -> {reply, Error, S}
    end;
handle_call(_Req, _From, _E, S) ->
    {reply, {error, badarg}, S}.

-spec wait(ok | {error, term()}, gen_server:from(), set | cancel | get,
           state()) -> {reply, term(), state()} | {noreply, state()}.
wait(ok, From, Kind, S = #rm{next_ref = Ref, waiting = W}) ->
    {noreply, S#rm{next_ref = Ref + 1, waiting = W#{Ref => {From, Kind}}}};
wait({error, _} = Error, _From, _Kind, S) ->
    {reply, Error, S}.

%% @doc Whether Pid (monitored by MRef) is a reminders subscriber.
-spec is_subscriber(pid(), reference(), state()) -> boolean().
is_subscriber(Pid, MRef, #rm{subs = Subs}) ->
    maps:get(Pid, Subs, undefined) =:= MRef.

%% @doc A subscriber died.
-spec down(pid(), tether_nif:engine() | undefined, state()) -> state().
down(Pid, E, S = #rm{subs = Subs}) ->
    tell_subscribers(E, S#rm{subs = maps:remove(Pid, Subs)}).

-spec tell_subscribers(tether_nif:engine() | undefined, state()) -> state().
tell_subscribers(undefined, S) ->
    S;
tell_subscribers(E, S = #rm{subs = Subs}) ->
    ok = tether_nif:reminders_subscribers(E, map_size(Subs)),
    S.

%% @doc Carries out a reminders action of the engine.
-spec handle_action(tether_nif:action(), tether_nif:engine() | undefined,
                    state()) -> state().
handle_action({reminder, KeyEtf, PayloadEtf, Fence}, _E, S) ->
    Msg = {tether_reminder, binary_to_term(KeyEtf),
           binary_to_term(PayloadEtf), Fence},
    _ = [Pid ! Msg || Pid <- maps:keys(S#rm.subs)],
    S;
handle_action({reminder_reply, Ref, Status}, _E, S = #rm{waiting = W}) ->
    case maps:take(Ref, W) of
        {{From, Kind}, W1} ->
            gen_server:reply(From, reply_of(Kind, Status)),
            S#rm{waiting = W1};
        error ->
            S
    end;
handle_action({reminder_store, Rec}, E, S) ->
    append(Rec, E, S).

-spec reply_of(set | cancel | get, term()) -> term().
reply_of(get, {found, At, PayloadEtf}) -> {ok, At, binary_to_term(PayloadEtf)};
reply_of(get, not_found) -> not_found;
reply_of(_, ok) -> ok;
reply_of(_, timeout) -> {error, timeout}.

%% @doc A fresh engine: the log is read into it and compacted, and it
%% learns how many subscribers there are.
-spec engine_started(tether_nif:engine(), state()) -> state().
engine_started(E, S) ->
    tell_subscribers(E, open_log(E, S)).

%% @doc The engine went: waiting callers are answered
%% `{error, not_distributed}' and the log is closed.
-spec engine_stopped(tether_nif:engine() | undefined, state()) -> state().
engine_stopped(_E, S = #rm{waiting = W}) ->
    _ = [gen_server:reply(From, {error, not_distributed})
         || {From, _} <- maps:values(W)],
    close_log(S#rm{waiting = #{}}).

%%% The log: tether_datalog records (written, not fsync'ed)

-spec log_path(state()) -> file:filename() | undefined.
log_path(#rm{config = #{persist := false}}) ->
    undefined;
log_path(#rm{config = #{data_dir := undefined}}) ->
    undefined;
log_path(#rm{config = #{data_dir := Dir}}) ->
    filename:join(Dir, "reminders-" ++ atom_to_list(node()) ++ ".log").

-spec open_log(tether_nif:engine(), state()) -> state().
open_log(E, S0) ->
    S = close_log(S0),
    case log_path(S) of
        undefined ->
            S;
        Path ->
            load(E, Path),
            case tether_datalog:open(Path, #{sync => false}) of
                {ok, Log} -> compact(E, S#rm{log = Log});
                {error, R} -> log_off(Path, R, S)
            end
    end.

-spec close_log(state()) -> state().
close_log(S = #rm{log = undefined}) ->
    S;
close_log(S = #rm{log = Log}) ->
    ok = tether_datalog:close(Log),
    S#rm{log = undefined}.

%% Feeds every intact record of the log to the engine
%% (tether_datalog:load_into/3 logs what it skipped).
-spec load(tether_nif:engine(), file:filename()) -> ok.
load(E, Path) ->
    tether_datalog:load_into(Path,
                             fun(Rec) -> tether_nif:reminders_load(E, Rec) end,
                             "reminder").

%% Rewrites the log with what the engine holds.
-spec compact(tether_nif:engine(), state()) -> state().
compact(E, S = #rm{log = Log}) ->
    case tether_datalog:compact(Log, fun() -> tether_nif:reminders_dump(E) end)
    of
        ok -> S#rm{appended = 0};
        {error, R} -> log_off(log_path(S), R, close_log(S))
    end.

-spec log_off(file:filename(), term(), state()) -> state().
log_off(Path, Reason, S) ->
    logger:error("tether: reminder log ~ts not writable (~p): reminders "
                 "are not persisted", [Path, Reason]),
    S#rm{log = undefined}.

-spec append(binary(), tether_nif:engine() | undefined, state()) -> state().
append(_Rec, _E, S = #rm{log = undefined}) ->
    S;
append(Rec, E, S = #rm{log = Log, appended = A}) ->
    case tether_datalog:append(Log, Rec) of
        ok when (A + 1) rem ?COMPACT_CHECK =:= 0, E =/= undefined ->
            maybe_compact(E, S#rm{appended = A + 1});
        ok ->
            S#rm{appended = A + 1};
        {error, R} ->
            log_off(log_path(S), R, close_log(S))
    end.

%% Compacts when the log holds more than twice the records held.
-spec maybe_compact(tether_nif:engine(), state()) -> state().
maybe_compact(E, S = #rm{appended = A}) ->
    case tether_nif:reminders_info(E) of
        #{pending := P, tombs := T} when A > 2 * (P + T) ->
            compact(E, S);
        _ ->
            S
    end.
