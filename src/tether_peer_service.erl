%% @doc partisan's peer-service API (`partisan_peer_service_manager'),
%% over tether: the same function names, arities and return shapes, so
%% code written against partisan switches by changing the module name.
%% Nodes are BEAM nodes running tether, connected by Erlang
%% distribution; messages travel in tether's envelopes (see {@link
%% tether_channel} for the delivery guarantees).
%%
%% == Where it differs from partisan (and why) ==
%% <ul>
%% <li>`ack => true' delivers exactly once: retransmissions with bounded
%%     exponential backoff, duplicates dropped by the receiver, and a
%%     give-up after `ack_timeout_ms' (default 60000) reported to the
%%     sender as `{tether_undelivered, ServerRef, Msg, Reason}'.</li>
%% <li>`forward_message' answers `{error, Reason}' where partisan says
%%     `ok' and drops the message: `{error, noproc}' (a local ServerRef
%%     with no process), `{error, nodedown}' (the target node is not a
%%     live member, without `ack'), `{error, {unknown_channel, C}}',
%%     `{error, {bad_option, Opt}}', `{error, {bad_options, Opts}}' (not a
%%     map nor a proplist), `{error, {bad_server_ref, Ref}}',
%%     `{error, {bad_node, Node}}', `{error, not_distributed}'.</li>
%% <li>`transitive => true' relays: while the direct path to the node
%%     is cut (a drop partition between the two, or no connection), the
%%     message goes through a member that reaches both, signed by this
%%     node's identity key, so the relay can neither forge nor alter it
%%     and the receiver knows its true origin; at most two relays; with
%%     `ack', exactly once as on the direct path (see {@link
%%     tether_channel}). partisan's full-mesh manager drops such
%%     messages.</li>
%% <li>`partition_key' may be any term (partisan: an integer); without
%%     one, a lane is picked by the sending process, so one process's
%%     messages on a channel stay in order.</li>
%% <li>on_up/on_down funs of arity 0, 1 and 2 all work, channel-scoped
%%     ones too, and fire once per transition (in a fresh process: a fun
%%     that crashes or blocks harms nothing). An unscoped arity-2 fun gets
%%     the channel `default'.</li>
%% <li>`inject_partition(Spec, TTL)': TTL is a time in milliseconds (or
%%     `infinity') after which the partition heals itself, not
%%     partisan's hop radius; the partition isolates the node from every
%%     other member at once, cluster-wide, in tether's `drop' mode.</li>
%% <li>`connect/1' answers `{error, nodedown}' when the node cannot be
%%     reached; `connect(Spec, #{prune => true})' returns the stale specs
%%     (see connect/2), where partisan's full-mesh manager returns `{ok,
%%     []}'.</li>
%% </ul>
%%
%% Node specs are maps as partisan's: `#{name => Node, listen_addrs =>
%% [#{ip => IP, port => Port}], channels => #{Name => #{parallelism =>
%% N}}}'; a bare node name is accepted wherever a spec is.
-module(tether_peer_service).
-behaviour(gen_server).

%% partisan_peer_service_manager
-export([forward_message/2, forward_message/3, forward_message/4,
         cast_message/2, cast_message/3, cast_message/4,
         on_up/2, on_up/3, on_down/2, on_down/3,
         members/0, members_for_orchestration/0, myself/0, mynode/0,
         join/1, sync_join/1, leave/0, leave/1, update_members/1,
         connect/1, connect/2, reserve/1, supports_capability/1,
         supports_capability/2, inject_partition/2, resolve_partition/1,
         partitions/0, get_local_state/0, send_message/2,
         receive_message/3, process_forward/2, decode/1, start_link/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2,
         terminate/2]).

-export_type([node_spec/0, forward_opts/0, on_event_fun/0]).

-define(SERVER, ?MODULE).
-define(DEFAULT_ACK_TIMEOUT_MS, 60000).
-define(DEFAULT_RESERVATIONS, 16).
-define(SYNC_JOIN_POLL_MS, 50).
-define(CALL_MS, 5000).
-define(CAPABILITIES, [ack, causal_label, channels, partition_key,
                       inject_partition, on_up, on_down, prune,
                       transitive]).

-type node_spec() :: #{name := node(), listen_addrs => [map()],
                       channels => map()}.
-type forward_opts() :: map() | [{atom(), term()} | atom()].
-type on_event_fun() :: fun(() -> term()) | fun((node()) -> term())
                      | fun((node(), term()) -> term()).
-type event() :: up | down.

-record(cb, {event :: event(),
             node :: node() | any,
             channel :: term(),
             scoped :: boolean(),
             fn :: on_event_fun()}).

-record(st, {cbs = [] :: [#cb{}],
             specs = #{} :: #{node() => [node_spec()]},
             parts = #{} :: #{reference() => {term(), node_spec()}},
             reserved = #{} :: #{atom() => true}}).

%%% Messaging

%% @doc forward_message(ServerRef, Msg, #{}).
-spec forward_message(tether_channel:server_ref(), term()) -> ok | {error, term()}.
forward_message(Ref, Msg) ->
    forward_message(Ref, Msg, #{}).

%% @doc Sends Msg to ServerRef (a pid, a registered name, `{Name, Node}',
%% `{global, Name}' or `{via, Module, Name}'; global and via names are
%% looked up here) on its node, with options (a map or a proplist):
%% `ack' (boolean, exactly-once delivery, see the module doc),
%% `ack_timeout_ms' (the retry budget, default 60000), `channel' (a
%% configured channel, default `default'), `partition_key' (any term:
%% same key, same lane, same order), `causal_label' (messages under one
%% label are delivered in causal order at every receiver, see {@link
%% tether_causal}), `transitive' (boolean: while the direct path to the
%% node is cut, the message goes through other members, authenticated
%% end to end; also sent when the node is not a live member here, as
%% with `ack'), `clock' (accepted and ignored, as partisan's full-mesh
%% manager does).
%% `ok' or `{error, Reason}' (see the module doc).
-spec forward_message(tether_channel:server_ref(), term(), forward_opts()) ->
          ok | {error, term()}.
forward_message(Ref, Msg, Opts) ->
    send(undefined, Ref, Msg, Opts, false).

%% @doc forward_message/3 to ServerRef on Node (for a name, Node is where
%% it is looked up).
-spec forward_message(node(), tether_channel:server_ref(), term(),
                      forward_opts()) -> ok | {error, term()}.
forward_message(Node, Ref, Msg, Opts) ->
    send({node, Node}, Ref, Msg, Opts, false).

%% @doc cast_message(ServerRef, Msg, #{}).
-spec cast_message(tether_channel:server_ref(), term()) -> ok | {error, term()}.
cast_message(Ref, Msg) ->
    cast_message(Ref, Msg, #{}).

%% @doc forward_message/3 of `{'$gen_cast', Msg}': a gen_server's
%% handle_cast/2 gets Msg. An undelivered report carries Msg.
-spec cast_message(tether_channel:server_ref(), term(), forward_opts()) ->
          ok | {error, term()}.
cast_message(Ref, Msg, Opts) ->
    send(undefined, Ref, Msg, Opts, true).

%% @doc cast_message/3 to ServerRef on Node.
-spec cast_message(node(), tether_channel:server_ref(), term(),
                   forward_opts()) -> ok | {error, term()}.
cast_message(Node, Ref, Msg, Opts) ->
    send({node, Node}, Ref, Msg, Opts, true).

%% @doc Delivers Msg to ServerRef on this node (partisan's local
%% delivery step): `ok', also when there is no such process.
-spec process_forward(tether_channel:server_ref(), term()) -> ok.
process_forward(Ref, Msg) ->
    _ = tether_channel:deliver(Ref, Msg),
    ok.

%% @doc Sends Msg to the peer service on Node, which passes it to
%% receive_message/3 there: `ok' or forward_message/4's errors.
-spec send_message(node(), term()) -> ok | {error, term()}.
send_message(Node, Msg) ->
    forward_message(Node, ?SERVER, {'$tether_peer_message', node(), Msg}, #{}).

%% @doc A message sent with send_message/2 arrives: `{forward_message,
%% ServerRef, Payload}' is delivered to ServerRef on this node; other
%% messages are counted and ignored. `ok'.
-spec receive_message(node(), term(), term()) -> ok.
receive_message(_Node, _Channel, {forward_message, Ref, Payload}) ->
    process_forward(Ref, Payload);
receive_message(_Node, _Channel, _Msg) ->
    tether_channel:count(peer_messages_ignored),
    ok.

%% @doc Terms travel decoded: the identity.
-spec decode(term()) -> term().
decode(Term) ->
    Term.

%%% Callbacks

%% @doc on_up(Node | any, Fun, #{}).
-spec on_up(node() | any, on_event_fun()) -> ok | {error, term()}.
on_up(Node, Fun) ->
    on_event(up, Node, Fun, #{}).

%% @doc Calls Fun (arity 0, 1 with the node, or 2 with the node and the
%% channel) each time Node (or any node, for `any') becomes a member;
%% with `#{channel => C}' (or `[{channel, C}]') for channel C, whose
%% name the fun's second argument gets. `ok', or `{error, Reason}':
%% `{unknown_channel, C}', `{bad_fun, Fun}', `{bad_node, Node}',
%% `{bad_option, Opt}', `{bad_options, Opts}'.
-spec on_up(node() | any, on_event_fun(), forward_opts()) -> ok | {error, term()}.
on_up(Node, Fun, Opts) ->
    on_event(up, Node, Fun, Opts).

%% @doc on_down(Node | any, Fun, #{}).
-spec on_down(node() | any, on_event_fun()) -> ok | {error, term()}.
on_down(Node, Fun) ->
    on_event(down, Node, Fun, #{}).

%% @doc As on_up/3, each time Node stops being a member (it left, died,
%% or a drop partition cut it off).
-spec on_down(node() | any, on_event_fun(), forward_opts()) -> ok | {error, term()}.
on_down(Node, Fun, Opts) ->
    on_event(down, Node, Fun, Opts).

%%% Membership

%% @doc The live members, this node included, sorted (`[]' when not
%% distributed).
-spec members() -> [node()].
members() ->
    case tether:members() of
        L when is_list(L) -> L;
        _ -> []
    end.

%% @doc The specs of the live members.
-spec members_for_orchestration() -> [node_spec()].
members_for_orchestration() ->
    gen_server:call(?SERVER, orchestration, ?CALL_MS).

%% @doc This node's spec.
-spec myself() -> node_spec().
myself() ->
    spec_of(node()).

%% @doc This node's name.
-spec mynode() -> node().
mynode() ->
    node().

%% @doc Joins the cluster of the node of Spec (a spec or a node name):
%% `ok' or tether:join/1's errors, and `{error, {bad_spec, Spec}}'.
-spec join(node_spec() | node()) -> ok | {error, term()}.
join(Spec) ->
    with_node(Spec, fun tether:join/1).

%% @doc join/1, then waits until every member this node sees lists it
%% (`join_timeout_ms', default 5000): `ok', `{error, timeout}' or join/1's
%% errors.
-spec sync_join(node_spec() | node()) -> ok | {error, term()}.
sync_join(Spec) ->
    case join(Spec) of
        ok ->
            Deadline = erlang:monotonic_time(millisecond)
                + env(join_timeout_ms, 5000),
            wait_full_member(Deadline);
        Error ->
            Error
    end.

%% @doc Leaves the cluster (tether:leave/0): `ok'.
-spec leave() -> ok | {error, term()}.
leave() ->
    tether:leave().

%% @doc Makes the node of Spec leave the cluster (asked on that node;
%% this node itself: leave/0): `ok', `{error, nodedown}' or `{error,
%% {bad_spec, Spec}}'.
-spec leave(node_spec() | node()) -> ok | {error, term()}.
leave(Spec) ->
    with_node(Spec, fun(Node) when Node =:= node() -> leave();
                       (Node) ->
                            try erpc:call(Node, tether, leave, [], ?CALL_MS)
                            catch _:_ -> {error, nodedown}
                            end
                    end).

%% @doc Makes the member set Nodes (names or specs): asks those not yet
%% members to join this node's cluster, and the members not listed to
%% leave.
%% `ok', or the first error.
-spec update_members([node_spec() | node()]) -> ok | {error, term()}.
update_members(Specs) when is_list(Specs) ->
    case lists:foldr(fun(Spec, {ok, Acc}) ->
                             case node_of_spec(Spec) of
                                 {ok, N} -> {ok, [N | Acc]};
                                 error -> {error, {bad_spec, Spec}}
                             end;
                        (_, Error) -> Error
                     end, {ok, []}, Specs) of
        {ok, Nodes} ->
            Current = members(),
            first_error([invite(N) || N <- Nodes, not lists:member(N, Current),
                                      N =/= node()]
                        ++ [leave(N) || N <- Current,
                                        not lists:member(N, Nodes),
                                        N =/= node()]);
        Error ->
            Error
    end;
update_members(Other) ->
    {error, {bad_spec, Other}}.

%% @doc connect(Spec, #{prune => false}).
-spec connect(node_spec() | node()) -> ok | {error, term()}.
connect(Spec) ->
    connect(Spec, #{}).

%% @doc Connects to the node of Spec (Erlang distribution) and records
%% its spec. `ok'; with `#{prune => true}', `{ok, StaleSpecs}': the specs
%% recorded earlier for the same node name that differ from its spec now
%% (it came back on another address or port, a new incarnation), which
%% are forgotten. `{error, nodedown}' when it cannot be reached,
%% `{error, {bad_spec, Spec}}', `{error, {bad_option, Opt}}'.
-spec connect(node_spec() | node(), map() | list()) ->
          ok | {ok, [node_spec()]} | {error, term()}.
connect(Spec, Opts) ->
    case {node_of_spec(Spec), options(Opts, [prune])} of
        {error, _} ->
            {error, {bad_spec, Spec}};
        {_, {error, _} = Error} ->
            Error;
        {{ok, Node}, {ok, O}} ->
            Prune = maps:get(prune, O, false),
            case is_boolean(Prune) of
                false -> {error, {bad_option, {prune, Prune}}};
                true -> connect_node(Node, Prune)
            end
    end.

%% @doc Reserves a slot of the membership for Tag (an atom): `ok' (also
%% when Tag holds one already), `{error, no_available_slots}' once
%% `reservations' (application env, default 16) are held.
-spec reserve(atom()) -> ok | {error, no_available_slots | {bad_tag, term()}}.
reserve(Tag) when is_atom(Tag) ->
    gen_server:call(?SERVER, {reserve, Tag}, ?CALL_MS);
reserve(Tag) ->
    {error, {bad_tag, Tag}}.

%% @doc Whether this peer service supports Capability: `ack',
%% `causal_label', `channels', `partition_key', `inject_partition', `on_up',
%% `on_down', `prune', `transitive'.
-spec supports_capability(term()) -> boolean().
supports_capability(Cap) ->
    lists:member(Cap, ?CAPABILITIES).

%% @doc Module:supports_capability(Arg) when Module exports it, else
%% `false'.
-spec supports_capability(module(), term()) -> boolean().
supports_capability(Mod, Arg) when is_atom(Mod) ->
    _ = code:ensure_loaded(Mod),
    case erlang:function_exported(Mod, supports_capability, 1) of
        true -> Mod:supports_capability(Arg) =:= true;
        false -> false
    end;
supports_capability(_Mod, _Arg) ->
    false.

%%% Partitions

%% @doc Isolates the node of Spec from every other member (a tether
%% `drop' partition, cluster-wide) until resolve_partition/1 or, when TTL
%% is a number of milliseconds, until TTL has passed (`infinity': no
%% self-heal). `{ok, Ref}', or `{error, Reason}': `{unknown_node,
%% Node}' (not a member), `{bad_spec, Spec}', `{bad_ttl, TTL}',
%% tether:partition/3's errors.
-spec inject_partition(node_spec() | node(), non_neg_integer() | infinity) ->
          {ok, reference()} | {error, term()}.
inject_partition(Spec, TTL) ->
    case {node_of_spec(Spec), TTL} of
        {error, _} ->
            {error, {bad_spec, Spec}};
        {_, T} when not (T =:= infinity orelse (is_integer(T) andalso T >= 0)) ->
            {error, {bad_ttl, TTL}};
        {{ok, Node}, _} ->
            gen_server:call(?SERVER, {inject, Node, TTL}, ?CALL_MS)
    end.

%% @doc Heals a partition inject_partition/2 made: `ok', `{error,
%% not_found}'.
-spec resolve_partition(reference()) -> ok | {error, not_found}.
resolve_partition(Ref) ->
    gen_server:call(?SERVER, {resolve, Ref}, ?CALL_MS).

%% @doc The partitions inject_partition/2 made on this node that are
%% still active: `{ok, [{Ref, NodeSpec}]}'.
-spec partitions() -> {ok, [{reference(), node_spec()}]}.
partitions() ->
    gen_server:call(?SERVER, partitions, ?CALL_MS).

%% @doc This peer service's state, as a map: `members', `specs' (every
%% spec recorded per node), `partitions', `channels', `reservations',
%% `callbacks' (how many), `lanes' and `stats' (tether_channel's
%% counters).
-spec get_local_state() -> map().
get_local_state() ->
    gen_server:call(?SERVER, state, ?CALL_MS).

%%% Process

%% @doc Starts the peer service, registered as `tether_peer_service'
%% (under `tether_sup').
-spec start_link() -> {ok, pid()} | ignore | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?SERVER}, ?MODULE, [], []).

%%% Internals

send(Where, Ref, Msg, Opts, Cast) ->
    case {check_opts(Opts), target(Where, Ref)} of
        {{error, _} = Error, _} ->
            Error;
        {_, {error, _} = Error} ->
            Error;
        {{ok, O}, {ok, Node, Ref1}} ->
            Payload = case Cast of
                          true -> {'$gen_cast', Msg};
                          false -> Msg
                      end,
            tether_channel:send(Node, Ref1, Msg, Payload, O)
    end.

%% The node a ServerRef lives on (global and via names looked up here).
target({node, Node}, Ref) when is_atom(Node) ->
    case valid_ref(Ref) of
        true -> {ok, Node, Ref};
        false -> {error, {bad_server_ref, Ref}}
    end;
target({node, Node}, _Ref) ->
    {error, {bad_node, Node}};
target(undefined, Pid) when is_pid(Pid) ->
    {ok, node(Pid), Pid};
target(undefined, Name) when is_atom(Name) ->
    {ok, node(), Name};
target(undefined, {global, Name}) ->
    found(catch global:whereis_name(Name));
target(undefined, {via, Mod, Name}) when is_atom(Mod) ->
    found(catch Mod:whereis_name(Name));
target(undefined, {Name, Node} = Ref) when is_atom(Name), is_atom(Node) ->
    {ok, Node, Ref};
target(_, Ref) ->
    {error, {bad_server_ref, Ref}}.

found(Pid) when is_pid(Pid) -> {ok, node(Pid), Pid};
found(_) -> {error, noproc}.

valid_ref(Pid) when is_pid(Pid) -> true;
valid_ref(Name) when is_atom(Name) -> true;
valid_ref({Name, Node}) when is_atom(Name), is_atom(Node) -> true;
valid_ref({global, _}) -> true;
valid_ref({via, Mod, _}) when is_atom(Mod) -> true;
valid_ref(_) -> false.

%% Options: a map or a proplist (a bare atom means `{Atom, true}').
options(Opts, Keys) when is_map(Opts) ->
    options(maps:to_list(Opts), Keys);
options(Opts, Keys) when is_list(Opts) ->
    try lists:foldl(fun(Opt, Acc) -> option(Opt, Keys, Acc) end, #{}, Opts) of
        M -> {ok, M}
    catch
        throw:{bad_option, _} = Bad -> {error, Bad};
        error:function_clause -> {error, {bad_options, Opts}}
    end;
options(Opts, _Keys) ->
    {error, {bad_options, Opts}}.

option(Key, Keys, Acc) when is_atom(Key) ->
    option({Key, true}, Keys, Acc);
option({Key, Value} = Opt, Keys, Acc) ->
    case lists:member(Key, Keys) of
        true -> Acc#{Key => Value};
        false -> throw({bad_option, Opt})
    end;
option(Opt, _Keys, _Acc) ->
    throw({bad_option, Opt}).

check_opts(Opts) ->
    Keys = [ack, ack_timeout_ms, channel, partition_key, causal_label,
            transitive, clock],
    case options(Opts, Keys) of
        {ok, O} -> check(maps:to_list(O), defaults());
        Error -> Error
    end.

defaults() ->
    #{ack => false, ack_timeout_ms => env(ack_timeout_ms,
                                          ?DEFAULT_ACK_TIMEOUT_MS),
      channel => default, partition_key => self(), causal_label => undefined,
      cast => false, transitive => false}.

check([], O) ->
    {ok, O};
check([{ack, V} | Rest], O) when is_boolean(V) ->
    check(Rest, O#{ack => V});
check([{transitive, V} | Rest], O) when is_boolean(V) ->
    check(Rest, O#{transitive => V});
check([{ack_timeout_ms, V} | Rest], O) when is_integer(V), V > 0 ->
    check(Rest, O#{ack_timeout_ms => V});
check([{channel, C} | Rest], O) ->
    case tether_channel:parallelism(C) of
        {ok, _} -> check(Rest, O#{channel => C});
        error -> {error, {unknown_channel, C}}
    end;
check([{partition_key, K} | Rest], O) ->
    check(Rest, O#{partition_key => K});
check([{causal_label, L} | Rest], O) ->
    check(Rest, O#{causal_label => L});
check([{clock, _} | Rest], O) ->
    check(Rest, O);
check([Opt | _], _O) ->
    {error, {bad_option, Opt}}.

on_event(Event, Node, Fun, Opts) ->
    Arity = case is_function(Fun) of
                true -> element(2, erlang:fun_info(Fun, arity));
                false -> -1
            end,
    case {options(Opts, [channel]), Node} of
        {{error, _} = Error, _} ->
            Error;
        {_, N} when not is_atom(N) ->
            {error, {bad_node, Node}};
        {_, _} when Arity < 0; Arity > 2 ->
            {error, {bad_fun, Fun}};
        {{ok, #{channel := C}}, _} ->
            case tether_channel:parallelism(C) of
                {ok, _} ->
                    gen_server:call(?SERVER, {on, #cb{event = Event, node = Node,
                                                      channel = C, scoped = true,
                                                      fn = Fun}}, ?CALL_MS);
                error ->
                    {error, {unknown_channel, C}}
            end;
        {{ok, _}, _} ->
            gen_server:call(?SERVER, {on, #cb{event = Event, node = Node,
                                              channel = default, scoped = false,
                                              fn = Fun}}, ?CALL_MS)
    end.

fire(Event, Node, Cbs) ->
    _ = [spawn(fun() -> call_fun(Fn, Node, C) end)
         || #cb{event = E, node = N, channel = C, fn = Fn} <- Cbs,
            E =:= Event, N =:= any orelse N =:= Node],
    ok.

call_fun(Fn, _Node, _C) when is_function(Fn, 0) -> Fn();
call_fun(Fn, Node, _C) when is_function(Fn, 1) -> Fn(Node);
call_fun(Fn, Node, C) when is_function(Fn, 2) -> Fn(Node, C).

node_of_spec(#{name := Node}) when is_atom(Node) -> {ok, Node};
node_of_spec(Node) when is_atom(Node) -> {ok, Node};
node_of_spec(_) -> error.

with_node(Spec, Fun) ->
    case node_of_spec(Spec) of
        {ok, Node} -> Fun(Node);
        error -> {error, {bad_spec, Spec}}
    end.

invite(Node) ->
    try erpc:call(Node, tether, join, [node()], ?CALL_MS)
    catch _:_ -> {error, nodedown}
    end.

first_error(Results) ->
    case [E || E <- Results, E =/= ok] of
        [] -> ok;
        [E | _] -> E
    end.

wait_full_member(Deadline) ->
    Me = node(),
    Lists = [catch erpc:call(N, tether, members, [], ?CALL_MS)
             || N <- members(), N =/= Me],
    case lists:all(fun(L) -> is_list(L) andalso lists:member(Me, L) end, Lists)
        andalso lists:member(Me, members()) of
        true ->
            ok;
        false ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true ->
                    {error, timeout};
                false ->
                    timer:sleep(?SYNC_JOIN_POLL_MS),
                    wait_full_member(Deadline)
            end
    end.

connect_node(Node, Prune) ->
    case net_kernel:connect_node(Node) of
        true ->
            Spec = spec_of(Node),
            gen_server:call(?SERVER, {connected, Spec, Prune}, ?CALL_MS);
        _ ->
            {error, nodedown}
    end.

%% A node's spec: its address and distribution port (asked of epmd on its
%% host) and this node's channels (members share the configuration).
spec_of(Node) ->
    [Name, Host] = string:split(atom_to_list(Node), "@"),
    Addrs = case inet:getaddr(Host, inet) of
                {ok, IP} ->
                    case erl_epmd:port_please(Name, IP, ?CALL_MS) of
                        {port, Port, _} -> [#{ip => IP, port => Port}];
                        _ -> [#{ip => IP}]
                    end;
                _ ->
                    []
            end,
    #{name => Node, listen_addrs => Addrs,
      channels => maps:map(fun(_, N) -> #{parallelism => N} end,
                           tether_channel:channels())}.

env(Key, Default) ->
    case application:get_env(tether, Key) of
        {ok, V} when is_integer(V), V > 0 -> V;
        _ -> Default
    end.

%%% gen_server

%% @private
-spec init([]) -> {ok, #st{}}.
init([]) ->
    ok = tether_server:subscribe(self()),
    Self = self(),
    _ = [spawn(fun() -> Self ! {spec, spec_of(N)} end)
         || N <- members(), N =/= node()],
    {ok, #st{}}.

%% @private
-spec handle_call(term(), gen_server:from(), #st{}) -> {reply, term(), #st{}}.
handle_call({on, Cb}, _From, S = #st{cbs = Cbs}) ->
    {reply, ok, S#st{cbs = Cbs ++ [Cb]}};
handle_call(orchestration, _From, S = #st{specs = Specs}) ->
    {reply, [case maps:find(N, Specs) of
                 {ok, [Spec | _]} -> Spec;
                 error -> #{name => N, listen_addrs => [], channels => #{}}
             end || N <- members(), N =/= node()] ++ [myself()], S};
handle_call({connected, Spec = #{name := Node}, Prune}, _From,
            S = #st{specs = Specs}) ->
    Known = maps:get(Node, Specs, []),
    Stale = [K || K <- Known, K =/= Spec],
    case Prune of
        true ->
            {reply, {ok, Stale}, S#st{specs = Specs#{Node => [Spec]}}};
        false ->
            {reply, ok, S#st{specs = Specs#{Node => [Spec | Known -- [Spec]]}}}
    end;
handle_call({reserve, Tag}, _From, S = #st{reserved = R}) ->
    case maps:is_key(Tag, R) orelse
        map_size(R) < env(reservations, ?DEFAULT_RESERVATIONS) of
        true -> {reply, ok, S#st{reserved = R#{Tag => true}}};
        false -> {reply, {error, no_available_slots}, S}
    end;
handle_call({inject, Node, TTL}, _From, S = #st{parts = Parts}) ->
    Members = members(),
    case lists:member(Node, Members) of
        false ->
            {reply, {error, {unknown_node, Node}}, S};
        true ->
            case tether:partition([Node], Members -- [Node], drop) of
                {ok, TRef} ->
                    Ref = make_ref(),
                    _ = case TTL of
                            infinity -> ok;
                            _ -> erlang:send_after(TTL, self(), {heal, Ref})
                        end,
                    Spec = case maps:find(Node, S#st.specs) of
                               {ok, [Sp | _]} -> Sp;
                               _ -> #{name => Node, listen_addrs => [],
                                      channels => #{}}
                           end,
                    {reply, {ok, Ref},
                     S#st{parts = Parts#{Ref => {TRef, Spec}}}};
                Error ->
                    {reply, Error, S}
            end
    end;
handle_call({resolve, Ref}, _From, S) ->
    {Reply, S1} = heal(Ref, S),
    {reply, Reply, S1};
handle_call(partitions, _From, S) ->
    S1 = forget_healed(S),
    {reply, {ok, [{Ref, Spec} || {Ref, {_, Spec}} <- maps:to_list(S1#st.parts)]},
     S1};
handle_call(state, _From, S) ->
    S1 = forget_healed(S),
    {reply, #{members => members(), specs => S1#st.specs,
              partitions => [{Ref, Spec} || {Ref, {_, Spec}}
                                                <- maps:to_list(S1#st.parts)],
              channels => tether_channel:channels(),
              reservations => maps:keys(S1#st.reserved),
              callbacks => length(S1#st.cbs),
              lanes => [K || {K, _} <- tether_channel:lanes()],
              stats => tether_channel:stats()}, S1};
handle_call(_Req, _From, S) ->
    {reply, {error, unknown_call}, S}.

%% @private
-spec handle_cast(term(), #st{}) -> {noreply, #st{}}.
handle_cast(_Msg, S) ->
    {noreply, S}.

%% @private
-spec handle_info(term(), #st{}) -> {noreply, #st{}}.
handle_info({tether_member, Event, Node}, S = #st{cbs = Cbs}) ->
    ok = fire(Event, Node, Cbs),
    _ = case Event of
            up ->
                Self = self(),
                spawn(fun() -> Self ! {spec, spec_of(Node)} end);
            down ->
                ok
        end,
    {noreply, S};
handle_info({spec, Spec = #{name := Node}}, S = #st{specs = Specs}) ->
    Known = maps:get(Node, Specs, []),
    {noreply, S#st{specs = Specs#{Node => [Spec | Known -- [Spec]]}}};
handle_info({heal, Ref}, S) ->
    {_, S1} = heal(Ref, S),
    {noreply, S1};
handle_info({'$tether_peer_message', From, Msg}, S) ->
    ok = receive_message(From, default, Msg),
    {noreply, S};
handle_info(_Msg, S) ->
    {noreply, S}.

%% @private
-spec terminate(term(), #st{}) -> ok.
terminate(_Reason, _S) ->
    ok.

heal(Ref, S = #st{parts = Parts}) ->
    case maps:take(Ref, Parts) of
        {{TRef, _}, Rest} ->
            _ = tether:heal(TRef),
            {ok, S#st{parts = Rest}};
        error ->
            {{error, not_found}, S}
    end.

%% Partitions healed by someone else (tether:heal/0,1 anywhere).
forget_healed(S = #st{parts = Parts}) ->
    Active = case tether:partitions() of
                 L when is_list(L) ->
                     [R || #{ref := R, healed := false} <- L];
                 _ -> []
             end,
    S#st{parts = maps:filter(fun(_, {TRef, _}) -> lists:member(TRef, Active) end,
                             Parts)}.
