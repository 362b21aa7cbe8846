%% @doc An append-only log of records, shared by the modules that persist
%% engine state (reminders, replicated maps).
%%
%% == Format ==
%%
%% A log file is a sequence of records, each framed as
%% `<<Len:32, Crc32:32, Record:Len/binary>>' (big endian; `Crc32' is
%% `erlang:crc32(Record)'). The C-node writes the same format
%% (`c_src/cnode/datalog.c').
%%
%% == Reading ==
%%
%% {@link load/3} folds a function over every whole record. A record whose
%% checksum does not match is skipped and counted (its length still frames
%% the next one); a last record cut short (a torn write: the node died in
%% the middle of an append) is skipped and reported with its offset, as
%% is a length no record can have (over 64 MiB, counted as corrupt: the
%% rest cannot be framed). The caller decides what to log. Before a log
%% with corrupted records is compacted, {@link keep_corrupt/1} copies it
%% aside (`Path ++ ".corrupt"'), so nothing it held is lost.
%%
%% == Writing ==
%%
%% {@link open/2} starts a writer process linked to the caller that owns
%% the open file (created with its directories, mode 0700, when first
%% used). {@link append/2} returns once the record is written, and, for a
%% log opened with `sync => true', once it is on disk (`fdatasync'):
%% appends that arrive while a write or a sync is running are written
%% together and share the next `fdatasync' (group commit), so N
%% concurrent appends cost about one sync, not N. {@link append_async/2}
%% queues a record (durable at the next sync of the group). {@link
%% compact/2} rewrites the log from a function the writer calls (so no
%% record appended before the compaction is lost): a temporary file,
%% synced, renamed over the log.
-module(tether_datalog).
-behaviour(gen_server).

-export([open/2, append/2, append_async/2, compact/2, close/1, load/3,
         load_into/3, frame/1, ensure_dir/1, keep_corrupt/1, stats/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2,
         terminate/2]).

-export_type([log/0, opts/0, load_result/0]).

-define(DIR_MODE, 8#700).
-define(FILE_MODE, 8#600).
-define(HEADER_BYTES, 8).
%% A record longer than this is not believed (a corrupted length).
-define(RECORD_MAX, 64 * 1024 * 1024).

%% A log: the writer process.
-type log() :: pid().

%% `sync': fdatasync before an append returns (default true).
%% `compact': asked after a written group, each time `compact_every'
%% (default 1000) more records were appended since the last compaction,
%% with that count; `{ok, Records}' rewrites the log with them (as
%% compact/2), `no' leaves it.
-type opts() :: #{sync => boolean(),
                  compact => fun((pos_integer()) -> {ok, [iodata()]} | no),
                  compact_every => pos_integer()}.

%% What load/3 found besides the records: how many were read, how many
%% were skipped as corrupted, and where a torn tail began (or none).
-type load_result() :: #{records := non_neg_integer(),
                         corrupt := non_neg_integer(),
                         torn_at := non_neg_integer() | none}.

-record(w, {
    path :: file:filename(),
    fd :: file:fd(),
    sync :: boolean(),
    compact :: fun((pos_integer()) -> {ok, [iodata()]} | no) | undefined,
    compact_every :: pos_integer(),
    since = 0 :: non_neg_integer(),        % records since the compaction
    asked = 0 :: non_neg_integer(),        % `since' when `compact' was asked
    pending = [] :: [iodata()],            % newest first
    waiting = [] :: [gen_server:from()],   % callers of this group
    groups = 0 :: non_neg_integer(),       % writes (and syncs) done
    records = 0 :: non_neg_integer()       % records appended
}).

%%% API

%% @doc Opens the log at Path for appending (creating it and its
%% directories, mode 0700, if absent) in a writer process linked to the
%% caller. Returns `{error, Reason}' (a `file' error) if the directory or
%% the file cannot be created or opened.
-spec open(file:filename(), opts()) -> {ok, log()} | {error, term()}.
open(Path, Opts) ->
    Sync = maps:get(sync, Opts, true),
    Compact = maps:get(compact, Opts, undefined),
    Every = maps:get(compact_every, Opts, 1000),
    if
        not is_boolean(Sync) ->
            {error, {bad_option, {sync, Sync}}};
        Compact =/= undefined, not is_function(Compact, 1) ->
            {error, {bad_option, {compact, Compact}}};
        not is_integer(Every); Every < 1 ->
            {error, {bad_option, {compact_every, Every}}};
        true ->
            %% Created here, so that the writer's own open (raw files
            %% belong to the process that opens them) does not fail.
            case open_file(Path) of
                {ok, Fd} ->
                    ok = file:close(Fd),
                    gen_server:start_link(?MODULE, {Path, Sync, Compact, Every},
                                          []);
                Error ->
                    Error
            end
    end.

%% @doc Appends one record; returns once it is written (and, with `sync',
%% on disk). `{error, Reason}' if the write or the sync failed, or the
%% writer is gone (`{error, closed}').
-spec append(log(), iodata()) -> ok | {error, term()}.
append(Log, Rec) ->
    try
        gen_server:call(Log, {append, Rec}, infinity)
    catch
        exit:_ -> {error, closed}
    end.

%% @doc Queues one record; it is written with the next group.
-spec append_async(log(), iodata()) -> ok.
append_async(Log, Rec) ->
    gen_server:cast(Log, {append, Rec}).

%% @doc Rewrites the log with the records Dump() returns (called by the
%% writer once every earlier append is written), through a synced
%% temporary file renamed over it; later appends go to the new file.
-spec compact(log(), fun(() -> [iodata()])) -> ok | {error, term()}.
compact(Log, Dump) when is_function(Dump, 0) ->
    try
        gen_server:call(Log, {compact, Dump}, infinity)
    catch
        exit:_ -> {error, closed}
    end.

%% @doc Writes what is queued and closes the log.
-spec close(log()) -> ok.
close(Log) ->
    try
        gen_server:call(Log, close, infinity)
    catch
        exit:_ -> ok
    end.

%% @doc Counters: `records' appended, `groups' written (each one write and,
%% with `sync', one fdatasync).
-spec stats(log()) -> #{records := non_neg_integer(),
                        groups := non_neg_integer()}.
stats(Log) ->
    gen_server:call(Log, stats, infinity).

%% @doc Folds Fun over every whole, intact record of the log at Path, in
%% order. An absent file is an empty log. See the module doc for what is
%% skipped; `{error, Reason}' only when the file cannot be read.
-spec load(file:filename(), fun((binary(), Acc) -> Acc), Acc) ->
          {ok, Acc, load_result()} | {error, term()}.
load(Path, Fun, Acc0) ->
    case file:read_file(Path) of
        {ok, Bin} ->
            {Acc, Info} = records(Bin, 0, Fun, Acc0,
                                  #{records => 0, corrupt => 0,
                                    torn_at => none}),
            {ok, Acc, Info};
        {error, enoent} ->
            {ok, Acc0, #{records => 0, corrupt => 0, torn_at => none}};
        {error, _} = Error ->
            Error
    end.

%% @doc Feeds every intact record of the log at Path to Feed (`ok', or
%% `{error, _}' for a record it refuses), as a module loading its state at
%% start does, and says what it skipped in one log line naming What: a
%% torn tail alone is a warning; corrupted or refused records an error,
%% after the file is copied aside ({@link keep_corrupt/1}) so that the
%% compaction that follows loses nothing. An unreadable file is an error
%% line too; the caller goes on with what was fed.
-spec load_into(file:filename(), fun((binary()) -> ok | {error, term()}),
                unicode:chardata()) -> ok.
load_into(Path, Feed, What) ->
    Count = fun(Rec, Refused) ->
                    case Feed(Rec) of
                        ok -> Refused;
                        {error, _} -> Refused + 1
                    end
            end,
    case load(Path, Count, 0) of
        {ok, 0, #{corrupt := 0, torn_at := none}} ->
            ok;
        {ok, 0, #{records := N, corrupt := 0, torn_at := Torn}} ->
            logger:warning("tether: ~ts log ~ts: torn last record at byte ~b "
                           "skipped; ~b records read", [What, Path, Torn, N]);
        {ok, Refused, #{records := N, corrupt := C, torn_at := Torn}} ->
            Aside = keep_corrupt(Path),
            logger:error("tether: ~ts log ~ts is corrupted: ~b records read, "
                         "~b corrupted and ~b refused skipped, torn at ~p; "
                         "the file is kept as ~p",
                         [What, Path, N - Refused, C, Refused, Torn, Aside]);
        {error, Reason} ->
            logger:error("tether: ~ts log ~ts not read: ~p",
                         [What, Path, Reason])
    end.

%% @doc A record framed for the log.
-spec frame(iodata()) -> iodata().
frame(Rec) ->
    Bin = iolist_to_binary(Rec),
    [<<(byte_size(Bin)):32, (erlang:crc32(Bin)):32>>, Bin].

%% @doc Creates Dir and its missing parents, each with mode 0700.
-spec ensure_dir(file:filename()) -> ok | {error, term()}.
ensure_dir(Dir) ->
    case file:read_file_info(Dir) of
        {ok, _} -> ok;
        {error, enoent} -> make_dir(filename:dirname(Dir), Dir);
        Error -> Error
    end.

-spec make_dir(file:filename(), file:filename()) -> ok | {error, term()}.
make_dir(Parent, Dir) ->
    case Parent =:= Dir orelse ensure_dir(Parent) of
        Error = {error, _} ->
            Error;
        _ ->
            case file:make_dir(Dir) of
                ok -> file:change_mode(Dir, ?DIR_MODE);
                {error, eexist} -> ok;
                Error -> Error
            end
    end.

%% @doc Copies the log at Path to `Path ++ ".corrupt"' (kept for a human
%% to look at before a compaction drops what could not be read).
-spec keep_corrupt(file:filename()) -> {ok, file:filename()} | {error, term()}.
keep_corrupt(Path) ->
    Aside = unicode:characters_to_list(Path) ++ ".corrupt",
    case file:copy(Path, Aside) of
        {ok, _} -> {ok, Aside};
        Error -> Error
    end.

%%% The writer

%% @private
init({Path, Sync, Compact, Every}) ->
    %% The owner's exit ends the writer through terminate/2, which writes
    %% what is queued (appends a peer's writes left with append_async/2).
    process_flag(trap_exit, true),
    case open_file(Path) of
        {ok, Fd} -> {ok, #w{path = Path, fd = Fd, sync = Sync,
                            compact = Compact, compact_every = Every}};
        {error, Reason} -> {stop, Reason}
    end.

%% @private
handle_call({append, Rec}, From, S = #w{pending = P, waiting = W}) ->
    %% Replied to once the group is written: timeout 0 runs after every
    %% message already queued, so they join this group.
    {noreply, S#w{pending = [frame(Rec) | P], waiting = [From | W]}, 0};
handle_call({compact, Dump}, _From, S0) ->
    S = flush(S0),
    {Reply, S1} = rewrite(Dump, S),
    {reply, Reply, S1, idle(S1)};
handle_call(close, _From, S) ->
    {stop, normal, ok, flush(S)};
handle_call(stats, _From, S = #w{records = R, groups = G}) ->
    {reply, #{records => R, groups => G}, S, idle(S)}.

%% @private
handle_cast({append, Rec}, S = #w{pending = P}) ->
    {noreply, S#w{pending = [frame(Rec) | P]}, 0}.

%% @private
handle_info(timeout, S) ->
    {noreply, maybe_compact(flush(S))};
handle_info(_Msg, S) ->
    {noreply, S, idle(S)}.

%% @private
terminate(_Reason, #w{fd = Fd} = S) ->
    _ = flush(S),
    _ = file:close(Fd),
    ok.

%%% Internal

%% The gen_server timeout after a message: 0 (flush once the mailbox is
%% empty) while a group is pending.
-spec idle(#w{}) -> 0 | infinity.
idle(#w{pending = []}) -> infinity;
idle(#w{}) -> 0.

-spec open_file(file:filename()) -> {ok, file:fd()} | {error, term()}.
open_file(Path) ->
    case ensure_dir(filename:dirname(Path)) of
        ok ->
            case file:open(Path, [append, raw, binary]) of
                {ok, Fd} ->
                    _ = file:change_mode(Path, ?FILE_MODE),
                    {ok, Fd};
                Error ->
                    Error
            end;
        Error ->
            Error
    end.

%% Writes the pending group with one write (and one fdatasync) and
%% answers its callers.
-spec flush(#w{}) -> #w{}.
flush(S = #w{pending = []}) ->
    S;
flush(S = #w{fd = Fd, sync = Sync, pending = P, waiting = W,
             groups = G, records = R}) ->
    Result = case file:write(Fd, lists:reverse(P)) of
                 ok when Sync -> file:datasync(Fd);
                 Other -> Other
             end,
    _ = [gen_server:reply(From, Result) || From <- W],
    N = length(P),
    S#w{pending = [], waiting = [], groups = G + 1, records = R + N,
        since = S#w.since + N}.

%% Asks the owner's `compact' fun every compact_every records.
-spec maybe_compact(#w{}) -> #w{}.
maybe_compact(S = #w{compact = undefined}) ->
    S;
maybe_compact(S = #w{compact = Fun, since = N, asked = A, compact_every = E})
  when N - A >= E ->
    case Fun(N) of
        {ok, Recs} ->
            {_, S1} = rewrite(fun() -> Recs end, S),
            S1;
        no ->
            S#w{asked = N}
    end;
maybe_compact(S) ->
    S.

-spec rewrite(fun(() -> [iodata()]), #w{}) -> {ok | {error, term()}, #w{}}.
rewrite(Dump, S = #w{path = Path, fd = Fd}) ->
    Tmp = unicode:characters_to_list(Path) ++ ".tmp",
    Written = case file:open(Tmp, [write, raw, binary]) of
                  {ok, T} ->
                      R = case file:write(T, [frame(Rec) || Rec <- Dump()]) of
                              ok -> file:sync(T);
                              E -> E
                          end,
                      _ = file:close(T),
                      _ = file:change_mode(Tmp, ?FILE_MODE),
                      R;
                  E ->
                      E
              end,
    case Written =:= ok andalso file:rename(Tmp, Path) of
        ok ->
            _ = file:close(Fd),
            _ = sync_dir(filename:dirname(Path)),
            case file:open(Path, [append, raw, binary]) of
                {ok, Fd1} -> {ok, S#w{fd = Fd1, since = 0, asked = 0}};
                Error -> {stop_writer(Error), S}
            end;
        Error ->
            _ = file:delete(Tmp),
            {Error, S}
    end.

%% The log cannot be reopened after a rename: nothing more can be
%% appended, so the writer stops (its owner sees the exit).
-spec stop_writer({error, term()}) -> no_return().
stop_writer({error, Reason}) ->
    exit({datalog_reopen, Reason}).

%% Makes the rename durable (best effort: not every file system lets a
%% directory be opened).
-spec sync_dir(file:filename()) -> ok | {error, term()}.
sync_dir(Dir) ->
    case file:open(Dir, [read, raw, directory]) of
        {ok, D} ->
            R = file:sync(D),
            _ = file:close(D),
            R;
        Error ->
            Error
    end.

-spec records(binary(), non_neg_integer(), fun((binary(), A) -> A), A,
              load_result()) -> {A, load_result()}.
records(<<>>, _Off, _Fun, Acc, Info) ->
    {Acc, Info};
records(<<Len:32, Crc:32, Rest/binary>>, Off, Fun, Acc, Info)
  when Len =< ?RECORD_MAX, byte_size(Rest) >= Len ->
    <<Rec:Len/binary, Next/binary>> = Rest,
    case erlang:crc32(Rec) of
        Crc ->
            records(Next, Off + ?HEADER_BYTES + Len, Fun, Fun(Rec, Acc),
                    Info#{records := maps:get(records, Info) + 1});
        _ ->
            records(Next, Off + ?HEADER_BYTES + Len, Fun, Acc,
                    Info#{corrupt := maps:get(corrupt, Info) + 1})
    end;
records(<<Len:32, _Crc:32, _/binary>>, Off, _Fun, Acc, Info)
  when Len > ?RECORD_MAX ->
    %% A length no record has: the rest cannot be framed.
    {Acc, Info#{corrupt := maps:get(corrupt, Info) + 1, torn_at := Off}};
records(_Short, Off, _Fun, Acc, Info) ->
    {Acc, Info#{torn_at := Off}}.
