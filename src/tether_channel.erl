%% @doc Messaging between tether members with delivery guarantees: the
%% engine behind {@link tether_peer_service}'s `forward_message' and
%% `cast_message'.
%%
%% == Lanes ==
%%
%% A message to a process on another member travels on a lane: one per
%% peer, channel and lane index. A channel (application env `channels',
%% `#{Name => #{parallelism => N}}'; `default' always exists with
%% parallelism 1) has N lanes per peer; a message's `partition_key'
%% (any term; by default the sending process) picks the lane by
%% `erlang:phash2(Key, N)'. Each lane is one process ({@link
%% tether_channel_lane}) on each side, so lanes never wait for each
%% other; within a lane delivery is FIFO.
%%
%% == Delivery ==
%%
%% Every message of a lane has a sequence number under the lane's epoch
%% (the sending lane process's start time). The sending lane keeps each
%% message until the receiving lane acknowledges it (cumulative acks,
%% one per batch received), retransmits what is unacknowledged with a
%% bounded exponential backoff (`channel_rto_ms', default 200, doubling
%% up to `channel_rto_max_ms', default 5000; at once when the peer comes
%% back up), and the receiver drops duplicates by (epoch, sequence) and
%% delivers in sequence order. Batches, acks and retransmissions are
%% sealed by the engine (a MAC under the session of the two members,
%% refused if forged, tampered or replayed) and carried over Erlang
%% distribution to the peer's `tether_channel' process, which hands
%% them to the lane; across a defer partition the engine holds them and
%% delivers them on heal.
%%
%% A message sent with `ack => true' is kept until acknowledged or until
%% its budget (`ack_timeout_ms', default 60000) is spent; then the
%% sender's process gets `{tether_undelivered, ServerRef, Msg, Reason}',
%% Reason `timeout', or `noproc' when the receiving member found no
%% process for ServerRef. Without `ack' a message is kept for
%% retransmission for `channel_hold_ms' (default 1000) only: a message
%% cut by a connection that stays down longer is dropped (and counted),
%% never delivered out of order.
%%
%% Messages larger than `channel_part_bytes' (default 8192) travel in
%% parts; a lane has at most `channel_window_bytes' (default 8192: one
%% part) in flight unacknowledged, so a large message on one channel
%% does not hold the connection for long and a small message on another
%% channel passes between its parts (the price: one lane's throughput is
%% bound by its window per round trip). A lane busy with parts runs at
%% low process priority.
%%
%% == Around a cut path ==
%%
%% A message sent with `transitive => true' whose direct path is cut (a
%% drop partition between the two members, or no session) goes through
%% the other members: the lane hands the batch (and the receiving lane
%% its ack) to the engine's relay (`c_src/core/relay.h'), which signs it
%% with this node's Ed25519 identity key and sends it to every member it
%% has a session with; a member that reaches the destination passes it
%% on (at most two relays). The destination checks the signature against
%% the key it trusts for the origin, drops copies and replays by
%% (origin, incarnation, relay id), and hands the batch to the lane of
%% the true origin, so a relay can neither forge, alter nor replay a
%% message, and the lane's guarantees (order, de-duplication, `ack'
%% exactly once) hold as on the direct path. A batch holding any
%% message sent with `transitive' goes round whole (the lane stays in
%% order); the receiving lane sends its acks round the same way while
%% its data comes so. Without a route the message waits for the
%% retransmission, as on the direct path.
%%
%% Wire terms (the payload of a SHELL message; {@link
%% tether_channel_lane} lists Batch and Ack): `{tether_channel, Batch |
%% Ack}' sealed under the session and carried to `tether_channel' on the
%% peer as `{tether_channel_env, FromNode, Channel, Index, Envelope}';
%% round a cut path `{tether_channel, {relayed, Batch | Ack}}', carried
%% by the engine as a relayed message (engine message 0x26).
%%
%% A message sent with `causal_label' is stamped by {@link tether_causal}
%% and, on the receiving member, held there until its causes under the
%% same label were delivered.
%%
%% == Exactly once ==
%%
%% A message acknowledged reaches its process once. A receiving member
%% that restarts loses its duplicate filter: a message it delivered but
%% had not yet acknowledged may be delivered again by its new
%% incarnation.
-module(tether_channel).
-behaviour(gen_server).

-export([send/5, channels/0, parallelism/1, stats/0, deliver/2,
         resolve/1, count/1]).
-export([start_link/0, lane/3, lanes/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2,
         terminate/2]).

-export_type([server_ref/0, send_opts/0]).

-define(SERVER, ?MODULE).
-define(LANES, tether_channel_lanes).
-define(PEERS, tether_channel_peers).
-define(STATS, tether_channel_stats).
-define(DEFAULT_ACK_TIMEOUT_MS, 60000).

%% A process to deliver to, as partisan names them.
-type server_ref() :: pid() | atom() | {atom(), node()} | {global, term()}
                    | {via, module(), term()}.

%% The checked options of one send.
-type send_opts() :: #{ack := boolean(), ack_timeout_ms := pos_integer(),
                       channel := term(), partition_key := term(),
                       causal_label := term(), cast := boolean(),
                       transitive := boolean()}.

-record(st, {mons = #{} :: #{reference() => lane_key()}}).

-type lane_key() :: {node(), term(), non_neg_integer()}.

%%% API

%% @doc Sends Msg to ServerRef on Node with the checked options Opts
%% (see {@link tether_peer_service:forward_message/4}). `ok', or `{error,
%% Reason}': `noproc' (a local ServerRef with no process), `nodedown'
%% (Node is not a live member, and neither `ack' nor `transitive' is
%% set), `not_distributed'.
-spec send(node(), server_ref(), term(), term(), send_opts()) ->
          ok | {error, noproc | nodedown | not_distributed}.
send(Node, Ref, Msg, Payload, _Opts) when Node =:= node() ->
    case deliver(Ref, Payload) of
        ok -> ok;
        {error, noproc} -> count(local_noproc), _ = Msg, {error, noproc}
    end;
send(Node, Ref, Msg, Payload, Opts = #{ack := Ack}) ->
    case {ets:whereis(?PEERS), Ack orelse maps:get(transitive, Opts, false)} of
        {undefined, _} ->
            {error, not_distributed};
        {_, false} ->
            case ets:member(?PEERS, Node) of
                true -> enqueue(Node, Ref, Msg, Payload, Opts);
                false -> count(nodedown), {error, nodedown}
            end;
        {_, true} ->
            enqueue(Node, Ref, Msg, Payload, Opts)
    end.

%% @doc The channels: the application env `channels' with `default'
%% added (parallelism 1 unless configured); `#{Name => Parallelism}'.
%% Entries that are not `#{parallelism => N}' with N a positive integer
%% are refused by {@link tether_peer_service}'s checks of the env at
%% start; here they fall back to parallelism 1.
-spec channels() -> #{term() => pos_integer()}.
channels() ->
    Env = case application:get_env(tether, channels) of
              {ok, M} when is_map(M) -> M;
              _ -> #{}
          end,
    maps:merge(#{default => 1},
               maps:map(fun(_, #{parallelism := N})
                              when is_integer(N), N > 0 -> N;
                           (_, _) -> 1
                        end, Env)).

%% @doc The parallelism of Channel, or `error' for an unknown channel.
-spec parallelism(term()) -> {ok, pos_integer()} | error.
parallelism(Channel) ->
    maps:find(Channel, channels()).

%% @doc Counters of this node's messaging: refusals, drops, give-ups
%% and retransmissions, `#{Name => Count}'.
-spec stats() -> #{atom() => non_neg_integer()}.
stats() ->
    case ets:whereis(?STATS) of
        undefined -> #{};
        _ -> maps:from_list(ets:tab2list(?STATS))
    end.

%% @doc Adds one to counter Name of stats/0.
-spec count(atom()) -> ok.
count(Name) ->
    try ets:update_counter(?STATS, Name, 1, {Name, 0}) of
        _ -> ok
    catch
        error:badarg -> ok
    end.

%% @doc Delivers Payload to the process of ServerRef on this node:
%% `ok', or `{error, noproc}' when there is none.
-spec deliver(server_ref(), term()) -> ok | {error, noproc}.
deliver(Ref, Payload) ->
    case resolve(Ref) of
        Pid when is_pid(Pid) -> Pid ! Payload, ok;
        undefined -> {error, noproc}
    end.

%% @doc The pid of ServerRef on this node, or `undefined'.
-spec resolve(server_ref()) -> pid() | undefined.
resolve(Pid) when is_pid(Pid) ->
    case node(Pid) =:= node() andalso is_process_alive(Pid) of
        true -> Pid;
        false -> undefined
    end;
resolve(Name) when is_atom(Name) ->
    whereis(Name);
resolve({global, Name}) ->
    local_pid(catch global:whereis_name(Name));
resolve({via, Mod, Name}) when is_atom(Mod) ->
    local_pid(catch Mod:whereis_name(Name));
resolve({Name, _Node}) when is_atom(Name) ->
    whereis(Name);
resolve(_) ->
    undefined.

local_pid(Pid) when is_pid(Pid), node(Pid) =:= node() -> resolve(Pid);
local_pid(_) -> undefined.

%% @doc Starts the process registered as `tether_channel': it receives
%% the peers' sealed batches and acks and hands them to the lanes, and
%% keeps the lane table.
-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

%% @doc The lane process for Peer, Channel and lane Index, started if
%% there is none.
-spec lane(node(), term(), non_neg_integer()) -> {ok, pid()} | {error, term()}.
lane(Peer, Channel, Index) ->
    Key = {Peer, Channel, Index},
    case ets:lookup(?LANES, Key) of
        [{_, Pid}] -> {ok, Pid};
        [] -> gen_server:call(?SERVER, {lane, Key})
    end.

%% @doc The live lanes: `[{{Peer, Channel, Index}, Pid}]'.
-spec lanes() -> [{lane_key(), pid()}].
lanes() ->
    ets:tab2list(?LANES).

%%% Internals

enqueue(Node, Ref, Msg, Payload0, Opts = #{channel := Chan, ack := Ack}) ->
    {ok, N} = parallelism(Chan),
    Payload = case maps:get(causal_label, Opts) of
                  undefined ->
                      Payload0;
                  Label ->
                      {T, V} = tether_causal:stamp(Label, Node),
                      {'$tether_causal', Label, T, V, Payload0}
              end,
    Index = erlang:phash2(maps:get(partition_key, Opts), N),
    case lane(Node, Chan, Index) of
        {ok, Lane} ->
            Report = case Ack of
                         true ->
                             {self(), Ref, Msg,
                              erlang:monotonic_time(millisecond)
                              + maps:get(ack_timeout_ms, Opts)};
                         false ->
                             undefined
                     end,
            tether_channel_lane:push(Lane, Ref, Payload, Report,
                                     maps:get(transitive, Opts, false)),
            ok;
        {error, _} ->
            {error, not_distributed}
    end.

%%% gen_server

%% @private
-spec init([]) -> {ok, #st{}}.
init([]) ->
    process_flag(trap_exit, true),
    _ = ets:new(?LANES, [named_table, protected, {read_concurrency, true}]),
    _ = ets:new(?PEERS, [named_table, protected, {read_concurrency, true}]),
    _ = ets:new(?STATS, [named_table, public, {write_concurrency, true}]),
    ok = tether_server:subscribe(self()),
    _ = tether_server:register_handler(?MODULE, self()),
    case tether_server:members() of
        Nodes when is_list(Nodes) ->
            true = ets:insert(?PEERS, [{N} || N <- Nodes, N =/= node()]);
        _ ->
            ok
    end,
    {ok, #st{}}.

%% @private
-spec handle_call(term(), gen_server:from(), #st{}) ->
          {reply, term(), #st{}}.
handle_call({lane, Key}, _From, S) ->
    case ets:lookup(?LANES, Key) of
        [{_, Pid}] ->
            {reply, {ok, Pid}, S};
        [] ->
            {Reply, S1} = start_lane(Key, S),
            {reply, Reply, S1}
    end;
handle_call(_Req, _From, S) ->
    {reply, {error, unknown_call}, S}.

%% @private
-spec handle_cast(term(), #st{}) -> {noreply, #st{}}.
handle_cast(_Msg, S) ->
    {noreply, S}.

%% @private
-spec handle_info(term(), #st{}) -> {noreply, #st{}}.
handle_info({tether_channel_env, From, Chan, Index, Bytes}, S)
  when is_atom(From), is_integer(Index), is_binary(Bytes) ->
    {noreply, route(From, Chan, Index, {env, From, Bytes}, S)};
handle_info({tether_msg, From, ?MODULE, {relayed, Inner}}, S) ->
    %% Came round a cut path: the engine checked the origin's signature.
    {noreply, route_opened(From, Inner, relayed, S)};
handle_info({tether_msg, From, ?MODULE, Term}, S) ->
    %% Held by a defer partition and delivered on heal by the server,
    %% already opened (authenticated) by the engine.
    {noreply, route_opened(From, Term, opened, S)};
handle_info({tether_member, up, Node}, S) ->
    true = ets:insert(?PEERS, {Node}),
    _ = [Pid ! peer_up || {{P, _, _}, Pid} <- ets:tab2list(?LANES), P =:= Node],
    {noreply, S};
handle_info({tether_member, down, Node}, S) ->
    true = ets:delete(?PEERS, Node),
    {noreply, S};
handle_info({'DOWN', MRef, process, _, _}, S = #st{mons = Mons}) ->
    case maps:take(MRef, Mons) of
        {Key, Rest} ->
            true = ets:delete(?LANES, Key),
            {noreply, S#st{mons = Rest}};
        error ->
            {noreply, S}
    end;
handle_info(_Msg, S) ->
    count(unexpected),
    {noreply, S}.

%% @private
-spec terminate(term(), #st{}) -> ok.
terminate(_Reason, _S) ->
    ok.

%% Hands a batch or ack the engine opened to its lane as {How, From,
%% Inner}.
route_opened(From, {_, Chan, Index, _, _, _} = Inner, How, S)
  when is_integer(Index) ->
    route(From, Chan, Index, {How, From, Inner}, S);
route_opened(_From, _Inner, _How, S) ->
    count(malformed),
    S.

%% Hands an envelope to its lane. The header (channel, index) is not
%% authenticated: a lane is started only for a configured channel and
%% index, and the lane checks the header against the opened contents.
route(From, Chan, Index, What, S) ->
    case parallelism(Chan) of
        {ok, N} when Index >= 0, Index < N ->
            Key = {From, Chan, Index},
            case ets:lookup(?LANES, Key) of
                [{_, Pid}] ->
                    Pid ! What,
                    S;
                [] ->
                    case start_lane(Key, S) of
                        {{ok, Pid}, S1} -> Pid ! What, S1;
                        {_, S1} -> S1
                    end
            end;
        _ ->
            count(bad_lane),
            S
    end.

start_lane(Key, S = #st{mons = Mons}) ->
    case supervisor:start_child(tether_channel_sup, [Key]) of
        {ok, Pid} ->
            true = ets:insert(?LANES, {Key, Pid}),
            {{ok, Pid}, S#st{mons = Mons#{erlang:monitor(process, Pid) => Key}}};
        {error, _} = Error ->
            {Error, S}
    end.
