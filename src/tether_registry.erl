%% @doc The name registry: the `global'-compatible API that {@link tether}
%% delegates to, and the bookkeeping the tether server keeps for it.
%%
%% The registry itself is an engine module (`c_src/core/registry.h',
%% engine message type 0x21): the engine broadcasts registrations,
%% exchanges full sets when a member comes up, repairs by digests and
%% resolves conflicts. This module has two halves.
%%
%% == The calling side ==
%%
%% `whereis_name/1', `send/2' and `registered_names/0' read this node's
%% copy of the table in the NIF, under its read lock, with no message to
%% any process. `register_name/3' of a pid of this node takes the direct
%% path: the caller inserts the entry and gets the broadcast sealed
%% (`tether_nif:reg_register_sealed/5'), sends it itself
%% ({@link tether_server:send_wire/2}), and only then asks the tether
%% server to track the registrant, so peers see the name without a
%% hand-over to the server first. A pid of another node is registered by
%% that node's tether server; `unregister_name/1' asks the server of the
%% owner node; `sync/0' asks ours.
%%
%% == The server side ==
%%
%% {@link tether_server} holds a {@link state()} and hands this module
%% the registry's requests, messages and engine actions, with the engine
%% (the callbacks below; they run in the server, the engine's single
%% writer). They register names of local processes (one name per pid, as
%% `global'), monitor them and unregister a name when its process dies,
%% and tell the registrant of a lost conflict (a `reg_lost' action) as
%% it chose at registration. When the engine asks this node to resolve a
%% conflict (our registrant gave a resolver, a `reg_resolve' action), the
%% resolver runs in a fresh process and its verdict comes back to the
%% server as `{reg_verdict, ...}' and goes to the engine
%% (`tether_registry_resolve()' in `core/registry.h'): our own
%% registration goes unless kept, and the other one's owner (a BEAM node
%% or a C-node) is told to yield, again until it has; it tells its
%% registrant as a lost conflict. A fresh engine (after a leave and join,
%% or a restart of distribution) starts with an empty registry, and
%% {@link engine_started/2} registers the live local registrants again in
%% it (new registrations: a conflict with a name registered elsewhere
%% meanwhile is decided as after a heal, and a loser is told).
%%
%% Every registration is tracked by pid and removed by (name, pid): a pid
%% whose registration lost a conflict before the server tracked it is not
%% tracked (it was told as a loser), and a registrant that exits removes
%% its own registration only, never the one of whoever holds the name
%% now.
%%
%% == Messages ==
%% ```
%% {reg_register, Name, Pid, Method}   call, to the server of node(Pid)
%% {reg_track, Name, Pid, Method}      call: a direct-path registration
%% {reg_unregister, Name}              call, to the server of the owner
%% reg_sync                            call (sync/0)
%% {'$tether_reg_ping', Ref, FromNode} to every member's server; a C-node
%% {'$tether_reg_pong', Ref, FromNode}   answers it too
%% {reg_verdict, Verdict}              from a resolver process
%% {reg_sync_timeout, Ref}             timer
%% '''
-module(tether_registry).

%% The API of tether (see there).
-export([register_name/2, register_name/3, unregister_name/1,
         whereis_name/1, send/2, registered_names/0, sync/0]).
%% Callbacks of tether_server.
-export([init/0, engine_started/2, handle_call/3, sync/3, handle_info/2,
         verdict/3, is_registrant/3, down/3, handle_action/2]).

-export_type([state/0, call/0, info/0, action/0]).

-define(SERVER, tether).
%% How long sync/0 waits for the members' answers, and for the server.
-define(SYNC_MS, 5000).
-define(SYNC_CALL_MS, 10000).

-record(reg, {
    %% Local registrants: one name per pid, monitored, and how each hears
    %% of a lost conflict (resolver funs do not cross the engine, so they
    %% stay here). Keyed by pid: a name can pass from a pid that lost it
    %% to another, and each is removed and told as itself.
    pids = #{} :: #{pid() => {term(), reference(), tether:conflict_method()}},
    %% sync/0 calls waiting for members' answers.
    syncs = #{} :: #{reference() => {gen_server:from(), [node()]}}
}).

%% The registry's part of the tether server's state.
-opaque state() :: #reg{}.

%% The registry's calls to the tether server (besides `reg_sync').
-type call() :: {reg_register, term(), pid(), tether:conflict_method()}
              | {reg_track, term(), pid(), tether:conflict_method()}
              | {reg_unregister, term()}.

%% The registry's messages that need no engine.
-type info() :: {'$tether_reg_ping', reference(), node()}
              | {'$tether_reg_pong', reference(), node()}
              | {reg_sync_timeout, reference()}.

%% The engine's registry actions (see tether_nif:action()).
-type action() :: {reg_lost, binary(), binary(), binary(), 0..2}
                | {reg_resolve, binary(), binary(), binary()}.

%% What a resolver process sends back: the name, as a term and as the
%% engine holds it, the two pids, the one kept (or none) and its bytes.
-type verdict() :: {term(), binary(), pid(), pid(), pid() | none, binary()}.

%%% The API (tether's)

%% @doc See {@link tether:register_name/2}.
-spec register_name(term(), pid()) -> yes | no.
register_name(Name, Pid) ->
    register_name(Name, Pid, notify).

%% @doc See {@link tether:register_name/3}.
-spec register_name(term(), pid(), tether:conflict_method()
                    | fun((term(), pid(), pid()) -> term())) -> yes | no.
register_name(Name, Pid, Fun) when is_function(Fun, 3) ->
    register_name(Name, Pid, {resolve, Fun});
register_name(Name, Pid, Method)
  when is_pid(Pid), (Method =:= notify orelse Method =:= exit orelse
                     (is_tuple(Method) andalso tuple_size(Method) =:= 2 andalso
                      element(1, Method) =:= resolve andalso
                      is_function(element(2, Method), 3))) ->
    case node(Pid) =:= node() of
        true ->
            register_local(Name, Pid, Method);
        false ->
            case server_call({?SERVER, node(Pid)},
                             {reg_register, Name, Pid, Method}) of
                yes -> yes;
                _ -> no
            end
    end.

%% The direct path for a pid of this node: the NIF inserts the entry and
%% seals its broadcast, which the caller sends itself (no hand-over to
%% the tether server before the peers can see it); the server then
%% monitors Pid and keeps its method.
-spec register_local(term(), pid(), tether:conflict_method()) -> yes | no.
register_local(Name, Pid, Method) ->
    E = tether_server:engine(),
    case E =/= undefined andalso is_process_alive(Pid) of
        false ->
            no;
        true ->
            Wall = erlang:system_time(millisecond),
            try tether_nif:reg_register_sealed(E, Name, Pid, method(Method),
                                               Wall) of
                {yes, Envelopes} ->
                    _ = [tether_server:send_wire(Peer, Bytes)
                         || {Peer, Bytes} <- Envelopes],
                    case server_call(?SERVER, {reg_track, Name, Pid, Method})
                    of
                        yes -> yes;
                        _ -> no
                    end;
                _ ->
                    no
            catch
                error:badarg -> no
            end
    end.

%% @doc See {@link tether:unregister_name/1}.
-spec unregister_name(term()) -> ok.
unregister_name(Name) ->
    case whereis_name(Name) of
        undefined ->
            ok;
        Pid ->
            _ = server_call({?SERVER, node(Pid)}, {reg_unregister, Name}),
            ok
    end.

%% @doc See {@link tether:whereis_name/1}.
-spec whereis_name(term()) -> pid() | undefined.
whereis_name(Name) ->
    case tether_server:engine() of
        undefined -> undefined;
        E -> tether_nif:reg_whereis(E, Name)
    end.

%% @doc See {@link tether:send/2}.
-spec send(term(), term()) -> pid().
send(Name, Msg) ->
    case whereis_name(Name) of
        undefined ->
            exit({badarg, {Name, Msg}});
        Pid ->
            Pid ! Msg,
            Pid
    end.

%% @doc See {@link tether:registered_names/0}.
-spec registered_names() -> [term()].
registered_names() ->
    case tether_server:engine() of
        undefined -> [];
        E -> tether_nif:reg_names(E)
    end.

%% @doc See {@link tether:sync/0}.
-spec sync() -> ok.
sync() ->
    _ = catch gen_server:call(?SERVER, reg_sync, ?SYNC_CALL_MS),
    ok.

%% A call to a tether server; a server that is not there (or a node that
%% is not) answers `{error, noproc}'.
-spec server_call(gen_server:server_ref(), call()) -> term().
server_call(Server, Req) ->
    try
        gen_server:call(Server, Req)
    catch
        exit:_ -> {error, noproc}
    end.

%% The engine's code of a conflict method.
-spec method(tether:conflict_method()) -> 0..2.
method(notify) -> 0;
method(exit) -> 1;
method({resolve, _}) -> 2.

%%% The server side

%% @doc The registry state of a fresh tether server.
-spec init() -> state().
init() ->
    #reg{}.

%% @doc A fresh engine runs (after a leave and join, or a restart of
%% distribution) with an empty table: every live local registrant is
%% registered again in it, stamped now, and forgotten if that fails.
%% Waiting sync/0 calls stay.
-spec engine_started(tether_nif:engine(), state()) -> state().
engine_started(E, R = #reg{pids = Regs}) ->
    maps:fold(
      fun(Pid, {Name, _, Method}, Acc) ->
              Wall = erlang:system_time(millisecond),
              case is_process_alive(Pid) andalso
                  tether_server:safe(
                    fun() -> tether_nif:reg_register(E, Name, Pid,
                                                     method(Method), Wall)
                    end) =:= yes of
                  true -> Acc;
                  false -> forget(Pid, Acc)
              end
      end, R, Regs).

%% @doc A registry call to the server, with the engine: answers `yes' or
%% `no' to `reg_register' and `reg_track', `ok' to `reg_unregister'.
-spec handle_call(call(), tether_nif:engine(), state()) ->
          {yes | no | ok, state()}.
handle_call({reg_register, Name, Pid, Method}, E, R) ->
    register(Name, Pid, Method, E, R);
handle_call({reg_track, Name, Pid, Method}, E, R) ->
    %% The entry went in before this call: if it lost a conflict
    %% meanwhile, the registrant was told then, and is not tracked.
    case tether_server:safe(fun() -> tether_nif:reg_holds(E, Name, Pid) end)
    of
        true -> {yes, track(Name, Pid, Method, R)};
        _ -> {yes, R}
    end;
handle_call({reg_unregister, Name}, E, R) ->
    case tether_server:safe(fun() -> tether_nif:reg_whereis(E, Name) end) of
        Pid when is_pid(Pid), node(Pid) =:= node() ->
            _ = tether_server:safe(
                  fun() -> tether_nif:reg_unregister(E, Name, Pid) end),
            {ok, forget(Pid, R)};
        _ ->
            {ok, R}
    end.

%% Registers a local pid (one name per pid, as global). Method is kept
%% here as well (a resolver fun does not cross the engine).
-spec register(term(), pid(), tether:conflict_method(), tether_nif:engine(),
               state()) -> {yes | no, state()}.
register(Name, Pid, Method, E, R = #reg{pids = Regs}) ->
    Live = node(Pid) =:= node() andalso is_process_alive(Pid),
    case Live andalso not maps:is_key(Pid, Regs) of
        false ->
            {no, R};
        true ->
            M = method(Method),
            Wall = erlang:system_time(millisecond),
            case tether_server:safe(
                   fun() -> tether_nif:reg_register(E, Name, Pid, M, Wall) end)
            of
                yes -> {yes, track(Name, Pid, Method, R)};
                _ -> {no, R}
            end
    end.

%% Keeps the bookkeeping of a registration: monitor, name and method.
-spec track(term(), pid(), tether:conflict_method(), state()) -> state().
track(Name, Pid, Method, R0) ->
    R = forget(Pid, R0),
    MRef = erlang:monitor(process, Pid),
    R#reg{pids = maps:put(Pid, {Name, MRef, Method}, R#reg.pids)}.

%% Drops the bookkeeping of a local registrant (not the engine entry).
-spec forget(pid(), state()) -> state().
forget(Pid, R = #reg{pids = Regs}) ->
    case maps:take(Pid, Regs) of
        {{_, MRef, _}, Rest} ->
            erlang:demonitor(MRef, [flush]),
            R#reg{pids = Rest};
        error ->
            R
    end.

%% The conflict method of local registrant Pid, or Default.
-spec method_of(pid(), Default, state()) -> tether:conflict_method() | Default
              when Default :: tether:conflict_method() | undefined.
method_of(Pid, Default, #reg{pids = Regs}) ->
    case Regs of
        #{Pid := {_, _, Method}} -> Method;
        _ -> Default
    end.

%% @doc Whether a `DOWN' message is the monitor of a local registrant.
-spec is_registrant(pid(), reference(), state()) -> boolean().
is_registrant(Pid, MRef, #reg{pids = Regs}) ->
    case Regs of
        #{Pid := {_, MRef, _}} -> true;
        _ -> false
    end.

%% @doc A registrant died (see is_registrant/3): its registration goes,
%% here and, through the engine, on every member (only its own: if the
%% name passed to another pid meanwhile, that one keeps it).
-spec down(pid(), tether_nif:engine() | undefined, state()) -> state().
down(Pid, E, R = #reg{pids = Regs}) ->
    {Name, _, _} = maps:get(Pid, Regs),
    _ = case E of
            undefined -> ok;
            _ -> tether_server:safe(
                   fun() -> tether_nif:reg_unregister(E, Name, Pid) end)
        end,
    forget(Pid, R).

%% @doc Starts a `sync/0' call. Every member's server sends its engine
%% messages to ours in order, so once a member answers a ping (sent back
%% after every registration it had broadcast before it), and ours has
%% taken in what arrived before that answer, its registrations are in
%% our table. The caller is answered when every member has answered, or
%% after 5 seconds (members that do not answer are skipped). C-nodes
%% answer the same ping (their names are in the registry too).
-spec sync(gen_server:from(), tether_nif:engine(), state()) -> state().
sync(From, E, R) ->
    Self = node(),
    Members = case tether_nif:engine_members(E) of
                  L when is_list(L) ->
                      [M || B <- L, M <- [binary_to_atom(B, utf8)],
                            M =/= Self];
                  _ ->
                      []
              end,
    case Members of
        [] ->
            gen_server:reply(From, ok),
            R;
        _ ->
            Ref = make_ref(),
            [erlang:send({?SERVER, M}, {'$tether_reg_ping', Ref, Self},
                         [noconnect]) || M <- Members],
            erlang:send_after(?SYNC_MS, self(), {reg_sync_timeout, Ref}),
            R#reg{syncs = maps:put(Ref, {From, Members}, R#reg.syncs)}
    end.

%% @doc A registry message that needs no engine: a member's ping (sent
%% after every engine message it sent before it, see sync/3) is
%% answered at once; a pong or a timeout moves a waiting sync.
-spec handle_info(info(), state()) -> state().
handle_info({'$tether_reg_ping', Ref, From}, R) ->
    _ = erlang:send({?SERVER, From}, {'$tether_reg_pong', Ref, node()},
                    [noconnect]),
    R;
handle_info({'$tether_reg_pong', Ref, From}, R = #reg{syncs = Syncs}) ->
    case Syncs of
        #{Ref := {Caller, Waiting}} ->
            case lists:delete(From, Waiting) of
                [] -> sync_done(Ref, R);
                Rest -> R#reg{syncs = Syncs#{Ref := {Caller, Rest}}}
            end;
        _ ->
            R
    end;
handle_info({reg_sync_timeout, Ref}, R) ->
    sync_done(Ref, R).

-spec sync_done(reference(), state()) -> state().
sync_done(Ref, R = #reg{syncs = Syncs}) ->
    case maps:take(Ref, Syncs) of
        {{From, _}, Rest} ->
            gen_server:reply(From, ok),
            R#reg{syncs = Rest};
        error ->
            R
    end.

%% @doc An engine action of the registry.
%%
%% `reg_lost': our registration of a name lost a conflict; the engine
%% already removed it everywhere. The registrant is told as it asked
%% (`exit': killed, as global's default resolver does; otherwise, and for
%% a resolver that was not the one to decide, `{global_name_conflict,
%% Name, Winner}'). An empty WinnerEtf means a resolver elsewhere kept
%% neither registration (Winner `none').
%%
%% `reg_resolve': the engine asks this node, and only this one, to
%% resolve a conflict on a name our registrant gave a resolver for
%% (core/registry.h): the resolver runs in a fresh process as
%% `Fun(Name, Earlier, Later)', and what it returns comes back to the
%% calling process (the server) as `{reg_verdict, Verdict}', for
%% verdict/3. A pid of the two keeps the name; anything else (none, a
%% crash) keeps neither, as in global.
-spec handle_action(action(), state()) -> state().
handle_action({reg_lost, NameB, LoserB, WinnerB, M}, R) ->
    try {binary_to_term(NameB), binary_to_term(LoserB), winner(WinnerB)} of
        {Name, Loser, Winner} when is_pid(Loser) ->
            %% A direct-path registrant may lose before it is tracked: the
            %% engine's copy of its method tells how to tell it then.
            Default = case M of
                          1 -> exit;
                          _ -> notify
                      end,
            tell_loser(Loser, Name, Winner, method_of(Loser, Default, R)),
            forget(Loser, R);
        _ ->
            R
    catch
        error:badarg -> R
    end;
handle_action({reg_resolve, NameB, WinnerB, LoserB}, R) ->
    try {binary_to_term(NameB), binary_to_term(WinnerB),
         binary_to_term(LoserB)} of
        {Name, W, L} when is_pid(W), is_pid(L) ->
            Own = case node(W) =:= node() of
                      true -> W;
                      false -> L
                  end,
            case method_of(Own, undefined, R) of
                {resolve, Fun} ->
                    Server = self(),
                    _ = spawn(fun() ->
                                      Keep = run_resolver(Fun, Name, W, L),
                                      KeepB = if Keep =:= W -> WinnerB;
                                                 Keep =:= L -> LoserB;
                                                 true -> <<>>
                                              end,
                                      Server ! {reg_verdict,
                                                {Name, NameB, W, L, Keep,
                                                 KeepB}}
                              end),
                    R;
                _ ->
                    R
            end;
        _ ->
            R
    catch
        error:badarg -> R
    end.

-spec winner(binary()) -> pid() | none.
winner(<<>>) ->
    none;
winner(WinnerB) ->
    case binary_to_term(WinnerB) of
        Pid when is_pid(Pid) -> Pid;
        _ -> error(badarg)
    end.

-spec tell_loser(pid(), term(), pid() | none, tether:conflict_method()) -> ok.
tell_loser(Loser, _Name, _Winner, exit) ->
    exit(Loser, kill),
    ok;
tell_loser(Loser, Name, Winner, _Method) ->
    Loser ! {global_name_conflict, Name, Winner},
    ok.

-spec run_resolver(fun((term(), pid(), pid()) -> term()), term(), pid(),
                   pid()) -> pid() | none.
run_resolver(Fun, Name, W, L) ->
    try Fun(Name, W, L) of
        Keep when Keep =:= W; Keep =:= L -> Keep;
        _ -> none
    catch
        _:_ -> none
    end.

%% @doc Carries out our resolver's verdict (a `{reg_verdict, Verdict}'
%% message) through the engine: our own registration goes unless kept
%% (the engine broadcasts the removal), and the other registration's
%% owner is told to yield unless kept. When our registrant is gone
%% meanwhile, its entry went with it and the other one simply stays; when
%% the registration kept is gone meanwhile, ours stays.
-spec verdict(verdict(), tether_nif:engine(), state()) -> state().
verdict({Name, NameB, W, L, Keep, KeepB}, E, R = #reg{pids = Regs}) ->
    Own = case node(W) =:= node() of
              true -> W;
              false -> L
          end,
    case Regs of
        #{Own := {Name, _, _}} ->
            case tether_server:safe(
                   fun() -> tether_nif:reg_resolve(E, NameB, KeepB) end) of
                kept_own -> R; % the pid kept went meanwhile: ours stays
                _ when Keep =:= Own -> R;
                _ -> forget(Own, R)
            end;
        _ ->
            R
    end.
