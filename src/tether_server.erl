%% @doc The process that owns this node's cluster engine and does its I/O.
%%
%% Registered as `tether'. It holds one engine resource
%% ({@link tether_nif}), feeds it connection events, received bytes and
%% the time, and carries out the actions it drains: sending bytes to
%% peers, delivering member events to subscribers, opening connections.
%% Nothing here blocks: connections are opened by short-lived helper
%% processes, and every engine call is a small NIF call.
%%
%% == Wire format between members ==
%%
%% Every engine message (a signed hello or a MAC'd envelope, see
%% `c_src/core/envelope.h' and `c_src/core/engine.h') travels as
%% ```
%% {'$tether', FromNode :: node(), Bytes :: binary()}
%% '''
%% sent to the registered name `tether' on the peer node with
%% `erlang:send({tether, Node}, Msg, [noconnect, nosuspend])'; when the
%% peer's distribution buffer is busy, that message and every later one
%% to the peer go, in order, through a short-lived sender process, so this
%% server never waits on a slow peer. FromNode is only a
%% claim made by the sender; it is never trusted. The engine looks up the
%% session it has with FromNode and checks the envelope's MAC under that
%% session's keys (set up by hellos signed with FromNode's identity key),
%% so a message whose FromNode is a lie fails the MAC and is dropped and
%% counted, never decoded.
%%
%% Besides hellos and envelopes, an engine sends a signed restart notice
%% to every peer that comes up; a peer that still holds a session with an
%% older incarnation of the sender drops it (the member goes down) and
%% starts a fresh one. Only the real node can sign one, and an old one
%% replayed means nothing (`c_src/core/engine.h').
%%
%% == Connections ==
%%
%% `net_kernel:monitor_nodes(true, [{node_type, all}])' feeds peer up and
%% down events (hidden C-nodes included). A CONNECT action makes a helper
%% process call `net_kernel:connect_node/1' and report back. Because a
%% message of a new connection may be read before its `nodeup', a message
%% from a connected node not yet reported up reports it up first.
%%
%% == Not distributed ==
%%
%% On a node that is not alive (`nonode@nohost') the server starts without
%% an engine and checks once a second; the engine starts as soon as the
%% node is distributed, and stops if distribution stops. Meanwhile the
%% cluster calls answer `{error, not_distributed}'.
%%
%% == The engine handle ==
%%
%% The current engine is kept in `persistent_term' and read with
%% {@link engine/0}, so that readers (registry and service lookups, the
%% direct paths of {@link tether_registry} and {@link tether_rpc}) use
%% it without a message to this server. Every call that changes the
%% engine's state runs in this server, the engine's single writer (see
%% `src/README.md'). A fresh engine (after a leave and join, or a
%% restart of distribution) starts with empty registry and service
%% tables; the live local registrants (here) and service instances
%% ({@link tether_service_server}) are registered in it again.
%%
%% == Election ==
%%
%% This server holds the local candidates ({@link
%% tether_election:state()}): `lead' and `resign' calls run here, the
%% engine's `leader' actions become the candidates' messages, and a
%% candidate that dies resigns.
%%
%% == Reminders ==
%%
%% This server holds the reminders' subscribers, the callers waiting for
%% a majority and the log ({@link tether_reminder:state()}); the
%% engine's `reminder*' actions go to {@link tether_reminder}.
%%
%% == Registry ==
%%
%% This server holds the registry's bookkeeping ({@link
%% tether_registry:state()}) and hands the registry's calls, messages
%% and engine actions to {@link tether_registry}.
%%
%% == Plug-ins ==
%%
%% Erlang-side modules run as processes that register a
%% handler tag with {@link register_handler/2} and exchange terms with
%% their peers through {@link send/3}: `{Tag, Term}' sent to a node
%% arrives there as `{tether_msg, FromNode, Tag, Term}' at the process
%% registered for Tag, under the partition rules (dropped across drop
%% partitions, held in order across defer ones).
%%
%% == Configuration ==
%%
%% Read at start by {@link tether_config}; a bad value fails the start
%% with `{bad_config, Detail}'.
-module(tether_server).
-behaviour(gen_server).

-export([start_link/0, join/1, leave/0, members/0, subscribe/1,
         unsubscribe/1, partition/3, heal/1, heal/0, partitions/0]).
-export([send/3, register_handler/2, unregister_handler/1, engine_call/1,
         info/0, engine/0, send_wire/2, safe/1]).
-export([subscribe_shard/1, unsubscribe_shard/1, ring_size/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2,
         terminate/2]).

-define(SERVER, tether).
-define(ENGINE_KEY, {?MODULE, engine}).
%% What callers need of the configuration: #{ring_size, join_call_ms}.
-define(SETTINGS_KEY, {?MODULE, settings}).
-define(DIST_CHECK_MS, 1000).
%% Messages from this size on are MAC'd and copied on a dirty scheduler.
-define(DIRTY_BYTES, 256 * 1024).
%% Received messages of this size and more are verified (the engine's
%% TETHER_ENGINE_VERIFY_APART_BYTES), and module messages decoded, apart
%% from the server (see in_order/5).
-define(APART_BYTES, 64 * 1024).
%% The most nodes in a partition group (the engine's
%% TETHER_PARTITION_GROUP_MAX).
-define(GROUP_MAX, 256).

-record(st, {
    engine :: tether_nif:engine() | undefined,
    name = nonode@nohost :: node(),          % the node the engine runs as
    net_kernel :: pid() | undefined,         % whose node monitor we hold
    start = 0 :: integer(),                  % monotonic ms at engine time 0
    timer :: {reference(), integer()} | undefined,
    up = #{} :: #{node() => true},           % peers reported up
    connecting = #{} :: #{node() => true},   % connect helpers running
    subs = #{} :: #{pid() => reference()},   % member event subscribers
    handlers = #{} :: handlers(),
    config :: tether_config:config(),
    seeds = [] :: [node()],                  % joined by a fresh engine
    joins = #{} :: #{node() => [gen_server:from()]}, % join/1 callers
    reg :: tether_registry:state(),
    ring :: tether_ring:state(),             % shard subscriptions
    el :: tether_election:state(),           % local candidates
    %% Senders of peers whose distribution buffer was busy (see wire/3):
    %% the sender and the number of messages handed to it.
    senders = #{} :: #{node() => {pid(), non_neg_integer()}},
    rm :: tether_reminder:state(),           % reminder subscribers, log
    maps :: tether_map:state(),              % hosted maps, subscribers
    %% The last process doing a peer's large work apart (see in_order/5)
    %% until it is done.
    apart = #{} :: #{{recv | decode, node()} => pid()}
}).

-type state() :: #st{}.
-type handlers() :: #{term() => {pid(), reference()}}.

%%% API: membership and partitions (tether's, see there)

%% @doc Starts the server, registered as `tether'. Fails with
%% `{bad_config, Detail}' for an invalid application environment (see
%% {@link tether_config:read/0}).
-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

%% @doc See {@link tether:join/1}. The distribution connection to Node
%% is made here, in the caller; the server answers when Node's engine
%% has answered, refused, or not answered within `join_timeout_ms'.
-spec join(node()) ->
          ok | {error, nodedown | not_a_tether_node | not_distributed
                | {ring_size_mismatch, pos_integer(), pos_integer()}
                | term()}.
join(Node) when is_atom(Node) ->
    case node() of
        nonode@nohost ->
            {error, not_distributed};
        Node ->
            gen_server:call(?SERVER, {join, Node});
        _ ->
            case net_kernel:connect_node(Node) of
                true ->
                    #{join_call_ms := Ms} = settings(),
                    gen_server:call(?SERVER, {join, Node}, Ms);
                false -> {error, nodedown};
                ignored -> {error, not_distributed}
            end
    end.

%% @doc See {@link tether:leave/0}.
-spec leave() -> ok | {error, not_distributed}.
leave() ->
    gen_server:call(?SERVER, leave).

%% @doc See {@link tether:members/0}.
-spec members() -> [node()] | {error, not_distributed}.
members() ->
    gen_server:call(?SERVER, members).

%% @doc See {@link tether:subscribe/1}.
-spec subscribe(pid()) -> ok.
subscribe(Pid) when is_pid(Pid) ->
    gen_server:call(?SERVER, {subscribe, Pid}).

%% @doc See {@link tether:unsubscribe/1}.
-spec unsubscribe(pid()) -> ok.
unsubscribe(Pid) when is_pid(Pid) ->
    gen_server:call(?SERVER, {unsubscribe, Pid}).

%% @doc See {@link tether:subscribe_shard/1}.
-spec subscribe_shard(pid()) ->
          {ok, tether_ring:generation(), [tether_ring:shard()]}
          | {error, not_distributed}.
subscribe_shard(Pid) when is_pid(Pid) ->
    gen_server:call(?SERVER, {subscribe_shard, Pid}).

%% @doc See {@link tether:unsubscribe_shard/1}.
-spec unsubscribe_shard(pid()) -> ok.
unsubscribe_shard(Pid) when is_pid(Pid) ->
    gen_server:call(?SERVER, {unsubscribe_shard, Pid}).

%% @doc The number of shards of the cluster ring, as configured when the
%% server started (see {@link tether_config}), read without a message.
-spec ring_size() -> pos_integer().
ring_size() ->
    #{ring_size := N} = settings(),
    N.

%% The settings callers read (the defaults before the server started).
-spec settings() -> #{ring_size := pos_integer(),
                      join_call_ms := pos_integer()}.
settings() ->
    persistent_term:get(?SETTINGS_KEY,
                        #{ring_size => tether_config:ring_size(),
                          join_call_ms => 60000}).

%% @doc See {@link tether:partition/3}. The groups are checked here, in
%% the caller: a node that is not an atom raises `badarg'.
-spec partition([node()], [node()], drop | defer) ->
          {ok, tether:partition_ref()}
          | {error, invalid | too_big | not_distributed | term()}.
partition(GroupA, GroupB, Mode)
  when is_list(GroupA), is_list(GroupB),
       (Mode =:= drop orelse Mode =:= defer) ->
    lists:all(fun is_atom/1, GroupA ++ GroupB) orelse error(badarg),
    case valid_group(GroupA) andalso valid_group(GroupB) of
        true -> gen_server:call(?SERVER, {partition, GroupA, GroupB, Mode});
        false -> {error, invalid}
    end.

-spec valid_group([node()]) -> boolean().
valid_group(Group) ->
    Group =/= [] andalso length(Group) =< ?GROUP_MAX.

%% @doc See {@link tether:heal/1}.
-spec heal(tether:partition_ref()) ->
          ok | {error, not_found | not_distributed}.
heal(Ref) ->
    gen_server:call(?SERVER, {heal, Ref}).

%% @doc See {@link tether:heal/0}.
-spec heal() -> ok | {error, not_distributed}.
heal() ->
    gen_server:call(?SERVER, heal_all).

%% @doc See {@link tether:partitions/0}.
-spec partitions() -> [tether:partition_info()] | {error, not_distributed}.
partitions() ->
    gen_server:call(?SERVER, partitions).

%%% API: for the other tether modules

%% @doc Sends `{Tag, Term}' to the handler of Tag on Node, through the
%% engine (see the module doc). `{error, nodedown}' when no session with
%% Node is up or a drop partition separates us; `{error, queue_full}' when
%% a defer partition's queue is full.
-spec send(node(), term(), term()) ->
          ok | {error, nodedown | queue_full | not_distributed | term()}.
send(Node, Tag, Term) when is_atom(Node) ->
    gen_server:call(?SERVER, {send, Node, term_to_binary({Tag, Term})}).

%% @doc Makes Pid the receiver of module messages tagged Tag, as
%% `{tether_msg, FromNode, Tag, Term}', until it exits or is replaced.
-spec register_handler(term(), pid()) -> ok.
register_handler(Tag, Pid) when is_pid(Pid) ->
    gen_server:call(?SERVER, {register_handler, Tag, Pid}).

%% @doc Removes the handler of Tag.
-spec unregister_handler(term()) -> ok.
unregister_handler(Tag) ->
    gen_server:call(?SERVER, {unregister_handler, Tag}).

%% @doc Runs `Fun(Engine)' inside the server and returns its result,
%% then carries out the actions it queued (sends, deliveries). This is
%% how other tether modules make engine calls that change the engine's
%% state (a service registration, say) without a clause of their own
%% here. Fun must be short and must not call this server. `{error,
%% not_distributed}' when there is no engine.
-spec engine_call(fun((tether_nif:engine()) -> Result)) ->
          Result | {error, not_distributed}.
engine_call(Fun) when is_function(Fun, 1) ->
    case gen_server:call(?SERVER, {engine_call, Fun}) of
        {'$engine_call_raised', Class, Reason, Stack} ->
            erlang:raise(Class, Reason, Stack);
        Result ->
            Result
    end.

%% @doc The engine's name, incarnation, time, state and counters, for
%% tests and metrics.
-spec info() -> #{atom() => term()} | {error, not_distributed}.
info() ->
    gen_server:call(?SERVER, info).

%% @doc The current engine, or `undefined' while there is none, read
%% without a message to this server. For the NIF calls that only read
%% (under the NIF's read lock) and for the direct paths (see
%% `src/README.md'); a call that changes the engine's state goes through
%% engine_call/1 instead.
-spec engine() -> tether_nif:engine() | undefined.
engine() ->
    persistent_term:get(?ENGINE_KEY, undefined).

%% @doc Sends engine bytes to the tether server of peer To (its name as
%% the engine gives it, UTF-8) as `{'$tether', node(), Bytes}', over an
%% existing connection only (see the module doc).
-spec send_wire(binary(), binary()) -> ok.
send_wire(To, Bytes) ->
    _ = erlang:send({?SERVER, binary_to_atom(To, utf8)},
                    {'$tether', node(), Bytes}, [noconnect]),
    ok.

%% @doc Runs a NIF call whose arguments come from outside (node names
%% of any length, peers' claims, registered names): a value the engine
%% cannot take (a name longer than 255 bytes, or with a NUL) raises
%% badarg, which becomes `{error, invalid}' rather than a crash of the
%% server.
-spec safe(fun(() -> Result)) -> Result | {error, invalid}.
safe(Fun) ->
    try
        Fun()
    catch
        error:badarg -> {error, invalid}
    end.

%%% gen_server

%% @private
-spec init([]) -> {ok, state()} | {stop, term()}.
init([]) ->
    case tether_config:read() of
        {ok, Config = #{join := Seeds}} ->
            #{ring_size := RingSize, join_timeout_ms := JoinMs,
              heartbeat_ms := Hb} = Config,
            %% The server answers a join by its timeout and a round.
            persistent_term:put(?SETTINGS_KEY,
                                #{ring_size => RingSize,
                                  join_call_ms => JoinMs + 2 * Hb + 5000}),
            erlang:send_after(?DIST_CHECK_MS, self(), dist_check),
            {ok, maybe_start(#st{config = Config, seeds = Seeds,
                                 reg = tether_registry:init(),
                                 ring = tether_ring:init(),
                                 el = tether_election:init(),
                                 rm = tether_reminder:init(Config),
                                 maps = tether_map:init()})};
        {error, Reason} ->
            {stop, {bad_config, Reason}}
    end.

%% @private
-spec handle_call(term(), gen_server:from(), state()) ->
          {reply, term(), state()} | {noreply, state()}.
handle_call({subscribe, Pid}, _From, S) ->
    {reply, ok, add_sub(Pid, S)};
handle_call({unsubscribe, Pid}, _From, S = #st{subs = Subs}) ->
    case maps:take(Pid, Subs) of
        {MRef, Rest} ->
            erlang:demonitor(MRef, [flush]),
            {reply, ok, S#st{subs = Rest}};
        error ->
            {reply, ok, S}
    end;
handle_call({register_handler, Tag, Pid}, _From, S) ->
    S1 = drop_handler(Tag, S),
    MRef = erlang:monitor(process, Pid),
    {reply, ok, S1#st{handlers = maps:put(Tag, {Pid, MRef},
                                          S1#st.handlers)}};
handle_call({unregister_handler, Tag}, _From, S) ->
    {reply, ok, drop_handler(Tag, S)};
handle_call({unsubscribe_shard, Pid}, _From, S) ->
    {reply, ok, S#st{ring = tether_ring:unsubscribe(Pid, S#st.ring)}};
handle_call({reminder, Req}, From, S0) ->
    S = case S0#st.engine of
            undefined -> S0;
            _ -> tick(S0)
        end,
    case tether_reminder:handle_call(Req, From, S#st.engine, S#st.rm) of
        {reply, Reply, Rm} -> {reply, Reply, run(S#st{rm = Rm})};
        {noreply, Rm} -> {noreply, run(S#st{rm = Rm})}
    end;
handle_call({reg_register, _, _, _}, _From, S = #st{engine = undefined}) ->
    {reply, no, S};
handle_call(_Req, _From, S = #st{engine = undefined}) ->
    {reply, {error, not_distributed}, S};
handle_call(reg_sync, From, S0) ->
    S = run(tick(S0)),
    {noreply, S#st{reg = tether_registry:sync(From, S#st.engine, S#st.reg)}};
handle_call({subscribe_shard, Pid}, _From, S0) ->
    %% Every action carried out first: the snapshot is the engine's now.
    S = run(tick(S0)),
    {Reply, Ring} = tether_ring:subscribe(Pid, S#st.engine, S#st.ring),
    {reply, Reply, S#st{ring = Ring}};
handle_call({join, Node}, From, S0) when Node =/= node() ->
    S = tick(S0),
    {noreply, run(start_join(Node, From, S))};
handle_call(Req, From, S0) when element(1, Req) =:= heal; Req =:= heal_all ->
    %% Answered before the actions run: the flush of what the partition
    %% held goes out in slices, tick after tick (see the engine's
    %% flush_all), while this server serves other calls.
    S = tick(S0),
    {Reply, S1} = call(Req, S),
    gen_server:reply(From, Reply),
    {noreply, run(S1)};
handle_call(Req, _From, S0) ->
    S = tick(S0),
    {Reply, S1} = call(Req, S),
    {reply, Reply, run(S1)}.

%% @private
-spec handle_cast(term(), state()) -> {noreply, state()}.
handle_cast(_Msg, S) ->
    {noreply, S}.

%% @private
-spec handle_info(term(), state()) -> {noreply, state()}.
handle_info({'$tether', From, Bytes}, S = #st{engine = E})
  when E =/= undefined, is_atom(From), is_binary(Bytes) ->
    S1 = ensure_up(From, tick(S)),
    %% Refused input is counted by the engine; nothing to do here.
    Recv = fun(ok) -> _ = safe(fun() -> recv(E, bin(From), Bytes) end), ok end,
    {noreply, run(in_order({recv, From}, byte_size(Bytes) >= ?APART_BYTES,
                           fun() -> ok end, Recv, S1))};
handle_info({apart_done, Key, Pid}, S = #st{apart = A}) ->
    %% What the process gave the engine (if anything) is carried out.
    S1 = case A of
             #{Key := Pid} -> S#st{apart = maps:remove(Key, A)};
             _ -> S
         end,
    case S1#st.engine of
        undefined -> {noreply, S1};
        _ -> {noreply, run(tick(S1))}
    end;
handle_info({nodeup, Node, _Info}, S = #st{engine = E})
  when E =/= undefined ->
    {noreply, run(peer_up(Node, tick(S)))};
handle_info({nodedown, Node, _Info}, S = #st{engine = E, up = Up})
  when E =/= undefined ->
    S1 = tick(S),
    case maps:is_key(Node, Up) of
        true ->
            _ = safe(fun() -> tether_nif:engine_peer_down(E, bin(Node)) end),
            {noreply, run(S1#st{up = maps:remove(Node, Up)})};
        false ->
            {noreply, run(S1)}
    end;
handle_info({sender_idle, Node, Pid, Sent}, S = #st{senders = Ss}) ->
    case Ss of
        #{Node := {Pid, Sent}} ->
            Pid ! stop,
            {noreply, S#st{senders = maps:remove(Node, Ss)}};
        _ ->
            {noreply, S} % more was handed to it meanwhile
    end;
handle_info({connect_result, Node, Result}, S) ->
    S1 = S#st{connecting = maps:remove(Node, S#st.connecting)},
    case {Result, S1#st.engine} of
        {true, E} when E =/= undefined ->
            {noreply, run(ensure_up(Node, tick(S1)))};
        _ ->
            {noreply, S1}
    end;
handle_info({timeout, TRef, tick}, S = #st{timer = {TRef, _}}) ->
    {noreply, run(tick(S#st{timer = undefined}))};
handle_info(dist_check, S) ->
    erlang:send_after(?DIST_CHECK_MS, self(), dist_check),
    {noreply, dist_check(S)};
handle_info(map_drain, S) ->
    %% A write of this node queued subscriber events.
    {noreply, run(S)};
handle_info({reg_verdict, Verdict}, S) when S#st.engine =/= undefined ->
    {noreply, registry(fun(E, R) -> tether_registry:verdict(Verdict, E, R)
                       end, S)};
handle_info({'$tether_reg_ping', _Ref, From} = Msg, S) when is_atom(From) ->
    {noreply, S#st{reg = tether_registry:handle_info(Msg, S#st.reg)}};
handle_info({'$tether_reg_pong', _Ref, _From} = Msg, S) ->
    {noreply, S#st{reg = tether_registry:handle_info(Msg, S#st.reg)}};
handle_info({reg_sync_timeout, _Ref} = Msg, S) ->
    {noreply, S#st{reg = tether_registry:handle_info(Msg, S#st.reg)}};
handle_info({'DOWN', MRef, process, Pid, _}, S) ->
    case tether_reminder:is_subscriber(Pid, MRef, S#st.rm) of
        true ->
            {noreply, run(S#st{rm = tether_reminder:down(Pid, S#st.engine,
                                                         S#st.rm)})};
        false ->
            process_down(Pid, MRef, S)
    end;
handle_info(_Msg, S) ->
    {noreply, S}.

%% A monitored process other than a reminders subscriber died.
-spec process_down(pid(), reference(), state()) -> {noreply, state()}.
process_down(Pid, MRef, S) ->
    case tether_registry:is_registrant(Pid, MRef, S#st.reg) of
        true ->
            %% A registrant died: its name goes, here and on every member.
            {noreply, registry(fun(E, R) -> tether_registry:down(Pid, E, R)
                               end, S)};
        false ->
            case tether_election:is_candidate(Pid, MRef, S#st.el) of
                true ->
                    %% A candidate died: it stops being one at once.
                    {noreply, election_down(Pid, S)};
                false ->
                    map_or_other_down(Pid, MRef, S)
            end
    end.

%% A monitored process that is no registrant nor candidate died: a map
%% subscriber, a shard subscriber, a member event subscriber or a handler.
-spec map_or_other_down(pid(), reference(), state()) -> {noreply, state()}.
map_or_other_down(Pid, MRef, S) ->
    case tether_map:down(Pid, MRef, S#st.engine, S#st.maps) of
        {true, Maps} ->
            {noreply, S#st{maps = Maps}};
        false ->
            Ring = case tether_ring:is_subscriber(Pid, MRef, S#st.ring) of
                       true -> tether_ring:unsubscribe(Pid, S#st.ring);
                       false -> S#st.ring
                   end,
            {noreply, drop_monitored(Pid, MRef, S#st{ring = Ring})}
    end.

%% @private
-spec terminate(term(), state()) -> ok.
terminate(_Reason, _S) ->
    ok.

%%% Calls with an engine

-spec call(term(), state()) -> {term(), state()}.
call({join, _Self}, S) ->
    {ok, S};
call(leave, S) ->
    _ = tether_nif:engine_leave(S#st.engine),
    {ok, reply_joins({error, left}, S#st{seeds = []})};
call(members, S) ->
    case tether_nif:engine_members(S#st.engine) of
        Names when is_list(Names) ->
            {lists:sort([binary_to_atom(N, utf8) || N <- Names]), S};
        Error ->
            {Error, S}
    end;
call({partition, A, B, Mode}, S) ->
    case safe(fun() -> tether_nif:engine_partition(S#st.engine, bins(A),
                                                   bins(B), Mode) end) of
        {ok, Ref} -> {{ok, {tether_partition, Ref}}, S};
        Error -> {Error, S}
    end;
call({heal, {tether_partition, Ref}}, S)
  when is_integer(Ref), Ref >= 0, Ref < 1 bsl 64 ->
    {tether_nif:engine_heal(S#st.engine, Ref), S};
call({heal, _}, S) ->
    {{error, not_found}, S};
call(heal_all, S) ->
    {tether_nif:engine_heal_all(S#st.engine), S};
call(partitions, S) ->
    {[#{ref => {tether_partition, Ref}, mode => Mode, healed => Healed,
        a => atoms(A), b => atoms(B)}
      || {Ref, Mode, Healed, A, B}
             <- tether_nif:engine_partitions(S#st.engine)], S};
call({send, Node, Etf}, S) ->
    case safe(fun() ->
                      engine_send(S#st.engine, bin(Node), Etf)
              end) of
        ok -> {ok, S};
        {error, closed} -> {{error, nodedown}, S};
        {error, too_big} -> {{error, queue_full}, S};
        {error, _} = Error -> {Error, S}
    end;
call({reg_register, _, _, _} = Req, S) ->
    registry_call(Req, S);
call({reg_track, _, _, _} = Req, S) ->
    registry_call(Req, S);
call({reg_unregister, _} = Req, S) ->
    registry_call(Req, S);
call(Req, S = #st{engine = E, el = El})
  when element(1, Req) =:= election_lead;
       element(1, Req) =:= election_resign ->
    {Reply, El1} = tether_election:handle_call(Req, E, El),
    {Reply, S#st{el = El1}};
call(Req, S = #st{engine = E, maps = Maps})
  when element(1, Req) =:= map_new; element(1, Req) =:= map_delete;
       element(1, Req) =:= map_subscribe;
       element(1, Req) =:= map_unsubscribe ->
    {Reply, Maps1} = tether_map:handle_call(Req, E, Maps),
    {Reply, S#st{maps = Maps1}};
call(info, S) ->
    {tether_nif:engine_info(S#st.engine), S};
call({engine_call, Fun}, S) when is_function(Fun, 1) ->
    %% A crash of Fun is the caller's, not the server's.
    try Fun(S#st.engine) of
        Result -> {Result, S}
    catch
        Class:Reason:Stack -> {{'$engine_call_raised', Class, Reason, Stack}, S}
    end;
call(_Req, S) ->
    {{error, badarg}, S}.

%%% Joins

%% Starts a join through Node for From, who is answered when it ends (a
%% fresh engine first if ours left). A join through another contact
%% replaces the pending one, whose callers get `{error, superseded}'.
-spec start_join(node(), gen_server:from(), state()) -> state().
start_join(Node, From, S0) ->
    S = case tether_nif:engine_info(S0#st.engine) of
            #{left := true} -> restart_engine(S0);
            _ -> S0
        end,
    case S#st.engine of
        undefined ->
            gen_server:reply(From, {error, not_distributed}),
            S;
        E ->
            case safe(fun() -> tether_nif:engine_join(E, bin(Node)) end) of
                ok ->
                    Others = maps:without([Node], S#st.joins),
                    _ = [gen_server:reply(F, {error, superseded})
                         || Fs <- maps:values(Others), F <- Fs],
                    Waiting = maps:get(Node, S#st.joins, []),
                    S#st{joins = #{Node => [From | Waiting]}};
                Error ->
                    gen_server:reply(From, Error),
                    S
            end
    end.

%% What join/1 answers for an engine's outcome of a join through Node.
-spec join_reply(node(), ok | timeout
                 | {refused, atom(), non_neg_integer(), non_neg_integer()})
                -> term().
join_reply(_Node, ok) ->
    ok;
join_reply(_Node, {refused, ring_size, Ours, Theirs}) ->
    {error, {ring_size_mismatch, Ours, Theirs}};
join_reply(_Node, {refused, Param, Ours, Theirs}) ->
    {error, {param_mismatch, Param, Ours, Theirs}};
join_reply(Node, timeout) ->
    %% Connected but silent: no tether there (or one that does not trust
    %% us, which the engine counts and logs).
    case lists:member(Node, nodes(connected)) of
        true -> {error, not_a_tether_node};
        false -> {error, nodedown}
    end.

-spec join_answered(node(), term(), state()) -> state().
join_answered(Node, Reply, S = #st{joins = Joins}) ->
    case maps:take(Node, Joins) of
        {Froms, Rest} ->
            _ = [gen_server:reply(F, Reply) || F <- Froms],
            S#st{joins = Rest};
        error ->
            S
    end.

-spec reply_joins(term(), state()) -> state().
reply_joins(Reply, S = #st{joins = Joins}) ->
    _ = [gen_server:reply(F, Reply) || Fs <- maps:values(Joins), F <- Fs],
    S#st{joins = #{}}.

%%% Engine life cycle

%% Starts the engine if the node is distributed and has none yet.
-spec maybe_start(state()) -> state().
maybe_start(S = #st{engine = undefined}) ->
    case node() of
        nonode@nohost -> S;
        _ -> start_engine(S)
    end;
maybe_start(S) ->
    S.

-spec start_engine(state()) -> state().
start_engine(S0) ->
    Nk = whereis(net_kernel),
    S = case S0#st.net_kernel of
            Nk -> S0;
            _ ->
                %% A new net_kernel: our old node monitor went with the old.
                _ = net_kernel:monitor_nodes(true, [{node_type, all}]),
                S0#st{net_kernel = Nk}
        end,
    #{keys := Keys, trust := Trust, heartbeat_ms := Hb, ttl_ms := Ttl,
      join_timeout_ms := JoinMs, ring_size := RingSize,
      reconnect_max_ms := ReconnectMax, reconnect_attempts := Reconnects,
      election_lease_ms := LeaseMs, defer_max_bytes := DeferBytes} = S#st.config,
    Opts = (key_opts(Keys))#{
             name => bin(node()),
             incarnation => erlang:system_time(microsecond),
             seed => crypto:strong_rand_bytes(32),
             heartbeat_ms => Hb,
             ttl_ms => Ttl,
             join_timeout_ms => JoinMs,
             reconnect_max_ms => ReconnectMax,
             reconnect_attempts => Reconnects,
             ring_size => RingSize,
             election_lease_ms => LeaseMs,
             defer_max_bytes => DeferBytes,
             map_sync_ms => tether_map:sync_ms(),
             seeds => bins(S#st.seeds)},
    Opts1 = maps:merge(Opts, tether_reminder:engine_opts(S#st.rm)),
    case safe(fun() -> tether_nif:engine_new(Opts1) end) of
        {ok, E} ->
            persistent_term:put(?ENGINE_KEY, E),
            ok = trust_all(E, Trust),
            S1 = S#st{engine = E, name = node(), up = #{},
                      start = erlang:monotonic_time(millisecond),
                      reg = tether_registry:engine_started(E, S#st.reg),
                      ring = tether_ring:engine_started(E, S#st.ring),
                      rm = tether_reminder:engine_started(E, S#st.rm)},
            S2 = run(lists:foldl(fun peer_up/2, tick(S1), nodes(connected))),
            run(S2#st{el = tether_election:engine_started(E, S2#st.el),
                      maps = tether_map:engine_started(E, S2#st.maps)});
        {error, Reason} ->
            logger:error("tether: engine not started: ~p", [Reason]),
            S
    end.

-spec trust_all(tether_nif:engine(), [{node(), binary()}]) -> ok.
trust_all(E, Trust) ->
    lists:foreach(
      fun({N, K}) ->
              case safe(fun() -> tether_nif:engine_trust_add(E, bin(N), K) end)
              of
                  ok -> ok;
                  Error -> logger:error("tether: key of ~p not trusted: ~p",
                                        [N, Error])
              end
      end, Trust).

%% A fresh engine (new incarnation) in place of one that left.
-spec restart_engine(state()) -> state().
restart_engine(S) ->
    start_engine(stop_engine(S)).

%% Drops the engine: its shards are released to the subscribers and
%% join/1 callers learn that it is gone.
-spec stop_engine(state()) -> state().
stop_engine(S = #st{engine = E}) ->
    _ = persistent_term:erase(?ENGINE_KEY),
    S1 = reply_joins({error, not_distributed}, S),
    cancel_timer(S1#st{engine = undefined, up = #{},
                       ring = tether_ring:engine_stopped(E, S#st.ring),
                       el = tether_election:engine_stopped(E, S#st.el),
                       rm = tether_reminder:engine_stopped(E, S#st.rm)}).

%% The engine's key options: what the env configured, else the cookie.
-spec key_opts(#{atom() => binary()}) -> #{atom() => binary()}.
key_opts(Keys) when map_size(Keys) =:= 0 ->
    #{cookie => atom_to_binary(erlang:get_cookie(), utf8)};
key_opts(Keys) ->
    Keys.

%% Follows distribution starting, stopping or restarting.
-spec dist_check(state()) -> state().
dist_check(S = #st{engine = undefined}) ->
    maybe_start(S);
dist_check(S = #st{name = Name, net_kernel = Nk}) ->
    case node() =:= Name andalso whereis(net_kernel) =:= Nk of
        true -> S;
        false ->
            S1 = stop_engine(S),
            maybe_start(S1)
    end.

%%% Connection events

-spec peer_up(node(), state()) -> state().
peer_up(Node, S = #st{engine = E, up = Up}) ->
    case maps:is_key(Node, Up) of
        true ->
            S;
        false ->
            _ = safe(fun() -> tether_nif:engine_peer_up(E, bin(Node)) end),
            S#st{up = Up#{Node => true}}
    end.

%% Reports Node up if it is connected and not reported yet (a message of
%% a new connection can arrive before net_kernel's nodeup).
-spec ensure_up(node(), state()) -> state().
ensure_up(Node, S = #st{up = Up}) ->
    case maps:is_key(Node, Up) orelse
        not lists:member(Node, nodes(connected)) of
        true -> S;
        false -> peer_up(Node, S)
    end.

%%% Time and actions

-spec tick(state()) -> state().
tick(S = #st{engine = E, start = Start}) ->
    ok = tether_nif:engine_tick(E, now_ms(Start)),
    S.

-spec now_ms(integer()) -> non_neg_integer().
now_ms(Start) ->
    max(0, erlang:monotonic_time(millisecond) - Start).

%% Carries out every pending action, then arms the timer for the next
%% deadline.
-spec run(state()) -> state().
run(S = #st{engine = undefined}) ->
    S;
run(S = #st{engine = E}) ->
    case tether_nif:engine_drain(E) of
        [] ->
            arm(S);
        Actions when is_list(Actions) ->
            run(lists:foldl(fun act/2, S, Actions));
        {error, _} ->
            arm(S)
    end.

-spec act(tether_nif:action(), state()) -> state().
act({send, To, Bytes}, S) ->
    wire(binary_to_atom(To, utf8), {'$tether', node(), Bytes}, S);
act({member, Up, Node}, S = #st{subs = Subs}) ->
    Event = {tether_member, Up, binary_to_atom(Node, utf8)},
    _ = [Pid ! Event || Pid <- maps:keys(Subs)],
    S;
act({message, From, Etf}, S) ->
    module_msg(binary_to_atom(From, utf8), Etf, S);
act(Action, S) when element(1, Action) =:= reg_lost;
                    element(1, Action) =:= reg_resolve ->
    S#st{reg = tether_registry:handle_action(Action, S#st.reg)};
act({join, Contact, Outcome}, S) ->
    Node = binary_to_atom(Contact, utf8),
    join_answered(Node, join_reply(Node, Outcome), S);
act({shard, _Generation, _Change, _Shard} = Action, S) ->
    S#st{ring = tether_ring:handle_action(Action, S#st.ring)};
act(Action, S) when element(1, Action) =:= reminder;
                    element(1, Action) =:= reminder_reply;
                    element(1, Action) =:= reminder_store ->
    S#st{rm = tether_reminder:handle_action(Action, S#st.engine, S#st.rm)};
act({leader, _NameEtf, _Change, _Fence} = Action, S) ->
    S#st{el = tether_election:handle_action(Action, S#st.el)};
act(Action, S) when element(1, Action) =:= map;
                    element(1, Action) =:= map_store ->
    S#st{maps = tether_map:handle_action(Action, S#st.maps)};
act({log, Level, Text}, S) ->
    logger:log(Level, "tether: ~ts", [Text]),
    S;
act({service, Up, NameB, Node}, S) ->
    tether_service_server:event(Up, NameB, binary_to_atom(Node, utf8)),
    S;
act({connect, To}, S = #st{connecting = C}) ->
    Node = binary_to_atom(To, utf8),
    case maps:is_key(Node, C) of
        true ->
            S;
        false ->
            Server = self(),
            _ = spawn(fun() ->
                              R = net_kernel:connect_node(Node),
                              Server ! {connect_result, Node, R}
                      end),
            S#st{connecting = C#{Node => true}}
    end.

%% Sends Msg to the tether server of Node without ever suspending this
%% server: when Node's distribution buffer is busy (a large backlog going
%% out after a heal, a peer that reads slowly), Msg and every later
%% message to Node, in order, go through a sender process, which waits
%% for the buffer in our stead and ends once it has sent everything
%% handed to it (sender_idle).
-spec wire(node(), term(), state()) -> state().
wire(Node, Msg, S = #st{senders = Ss}) ->
    case Ss of
        #{Node := {Pid, N}} ->
            Pid ! {send, Msg},
            S#st{senders = Ss#{Node := {Pid, N + 1}}};
        _ ->
            case erlang:send({?SERVER, Node}, Msg, [noconnect, nosuspend]) of
                nosuspend ->
                    Server = self(),
                    Pid = spawn(fun() -> sender(Server, Node, 0) end),
                    Pid ! {send, Msg},
                    S#st{senders = Ss#{Node => {Pid, 1}}};
                _ ->
                    S
            end
    end.

%% A sender of wire/3: sends what it is handed, then tells the server it
%% is idle and waits for more, or to stop (or for the server to go).
-spec sender(pid(), node(), non_neg_integer()) -> ok.
sender(Server, Node, Sent) ->
    receive
        {send, Msg} ->
            _ = erlang:send({?SERVER, Node}, Msg, [noconnect]),
            sender(Server, Node, Sent + 1)
    after 0 ->
            MRef = erlang:monitor(process, Server),
            Server ! {sender_idle, Node, self(), Sent},
            receive
                {send, Msg} ->
                    erlang:demonitor(MRef, [flush]),
                    _ = erlang:send({?SERVER, Node}, Msg, [noconnect]),
                    sender(Server, Node, Sent + 1);
                stop ->
                    ok;
                {'DOWN', MRef, process, Server, _} ->
                    ok
            end
    end.

%% Hands a module message {Tag, Term} from a peer to the handler of Tag,
%% a large one (a 4 MiB payload takes 14-100 ms to decode) decoded apart
%% from the server (see in_order/5).
-spec module_msg(node(), binary(), state()) -> state().
module_msg(From, Etf, S = #st{handlers = Handlers}) ->
    in_order({decode, From}, byte_size(Etf) >= ?APART_BYTES,
             fun() -> decode(Etf) end,
             fun(Decoded) -> handle_decoded(From, Decoded, Handlers) end, S).

%% Work on one peer's stream Key (its received bytes, its module
%% messages), done in the order it was given without keeping the server
%% waiting on large work: Post(Pre()) runs here and now when the work is
%% small and no earlier work of Key is still running apart; otherwise a
%% short-lived process runs Pre() at once (alongside earlier work) and
%% Post only once the previous process of Key has ended, then tells the
%% server (apart_done), which carries out what the engine was given.
-spec in_order({recv | decode, node()}, boolean(), fun(() -> R),
               fun((R) -> ok), state()) -> state().
in_order(Key, Large, Pre, Post, S = #st{apart = A}) ->
    case Large orelse maps:is_key(Key, A) of
        true ->
            Server = self(),
            Prev = maps:get(Key, A, none),
            Pid = spawn(fun() ->
                                R = Pre(),
                                await(Prev),
                                ok = Post(R),
                                Server ! {apart_done, Key, self()}
                        end),
            S#st{apart = A#{Key => Pid}};
        false ->
            ok = Post(Pre()),
            S
    end.

-spec await(pid() | none) -> ok.
await(none) ->
    ok;
await(Pid) ->
    MRef = erlang:monitor(process, Pid),
    receive {'DOWN', MRef, process, Pid, _} -> ok end.

%% The bytes passed the peer's MAC: only a trusted member can have sealed
%% them, so they are decoded as Erlang distribution decodes (new atoms
%% allowed: a deferred rpc names its module and function), never unsafe
%% to the VM (binary_to_term checks every byte).
-spec decode(binary()) -> {ok, term()} | error.
decode(Etf) ->
    try binary_to_term(Etf) of
        Term -> {ok, Term}
    catch
        error:badarg -> error
    end.

-spec handle_decoded(node(), {ok, term()} | error, handlers()) -> ok.
handle_decoded(From, {ok, {Tag, Term}}, Handlers) ->
    case maps:find(Tag, Handlers) of
        {ok, {Pid, _}} -> Pid ! {tether_msg, From, Tag, Term}, ok;
        error -> ok
    end;
handle_decoded(_From, _Other, _Handlers) ->
    ok.

%% One timer, at the engine's next deadline (absolute, monotonic ms).
-spec arm(state()) -> state().
arm(S = #st{engine = E, start = Start, timer = T}) ->
    At = Start + tether_nif:engine_next_deadline(E),
    case T of
        {_, At} ->
            S;
        _ ->
            S1 = cancel_timer(S),
            TRef = erlang:start_timer(At, self(), tick, [{abs, true}]),
            S1#st{timer = {TRef, At}}
    end.

-spec cancel_timer(state()) -> state().
cancel_timer(S = #st{timer = undefined}) ->
    S;
cancel_timer(S = #st{timer = {TRef, _}}) ->
    _ = erlang:cancel_timer(TRef, [{async, true}, {info, false}]),
    S#st{timer = undefined}.

%%% Subscribers and handlers

-spec add_sub(pid(), state()) -> state().
add_sub(Pid, S = #st{subs = Subs}) ->
    case maps:is_key(Pid, Subs) of
        true -> S;
        false -> S#st{subs = Subs#{Pid => erlang:monitor(process, Pid)}}
    end.

-spec drop_handler(term(), state()) -> state().
drop_handler(Tag, S = #st{handlers = H}) ->
    case maps:take(Tag, H) of
        {{_, MRef}, Rest} ->
            erlang:demonitor(MRef, [flush]),
            S#st{handlers = Rest};
        error ->
            S
    end.

-spec drop_monitored(pid(), reference(), state()) -> state().
drop_monitored(Pid, MRef, S = #st{subs = Subs, handlers = H}) ->
    Subs1 = case Subs of
                #{Pid := MRef} -> maps:remove(Pid, Subs);
                _ -> Subs
            end,
    H1 = maps:filter(fun(_, {_, R}) -> R =/= MRef end, H),
    S#st{subs = Subs1, handlers = H1}.

%%% Registry

%% A registry call (tether_registry:call()) with the engine.
-spec registry_call(tether_registry:call(), state()) -> {term(), state()}.
registry_call(Req, S = #st{engine = E, reg = R}) ->
    {Reply, R1} = tether_registry:handle_call(Req, E, R),
    {Reply, S#st{reg = R1}}.

%% Runs a registry callback that may change the engine: after a tick,
%% then carries out what it queued. Without an engine the callback gets
%% `undefined'.
-spec registry(fun((tether_nif:engine() | undefined,
                    tether_registry:state()) -> tether_registry:state()),
               state()) -> state().
registry(Fun, S = #st{engine = undefined, reg = R}) ->
    S#st{reg = Fun(undefined, R)};
registry(Fun, S0) ->
    S = tick(S0),
    run(S#st{reg = Fun(S#st.engine, S#st.reg)}).

%%% Election

%% A candidate died: its candidacies end in the engine (when there is
%% one), and what that queued is carried out.
-spec election_down(pid(), state()) -> state().
election_down(Pid, S = #st{engine = undefined}) ->
    S#st{el = tether_election:down(Pid, undefined, S#st.el)};
election_down(Pid, S0) ->
    S = tick(S0),
    run(S#st{el = tether_election:down(Pid, S#st.engine, S#st.el)}).

%%% Size-dependent NIF calls

-spec recv(tether_nif:engine(), binary(), binary()) ->
          ok | {error, tether_nif:error_reason()}.
recv(E, From, Bytes) when byte_size(Bytes) >= ?DIRTY_BYTES ->
    tether_nif:engine_recv_dirty(E, From, Bytes);
recv(E, From, Bytes) ->
    tether_nif:engine_recv(E, From, Bytes).

-spec engine_send(tether_nif:engine(), binary(), binary()) ->
          ok | {error, tether_nif:error_reason()}.
engine_send(E, To, Etf) when byte_size(Etf) >= ?DIRTY_BYTES ->
    tether_nif:engine_send_dirty(E, To, Etf);
engine_send(E, To, Etf) ->
    tether_nif:engine_send(E, To, Etf).

%%% Names

-spec bin(node()) -> binary().
bin(Node) ->
    atom_to_binary(Node, utf8).

-spec bins([node()]) -> [binary()].
bins(Nodes) ->
    [bin(N) || N <- Nodes].

-spec atoms([binary()]) -> [node()].
atoms(Names) ->
    [binary_to_atom(N, utf8) || N <- Names].
