%% @doc The consistent-hash ring: where a key lives.
%%
%% Keys map to a fixed number of shards (`ring_size/0', a power of two,
%% default 64); each shard's owners are the members in rendezvous
%% (highest random weight) order, precomputed whenever the members change,
%% so `place/1' and `owners/2' cost a hash and an index however many
%% members there are. A node owns a shard when it is the shard's primary
%% (its first owner). A joining node takes over about `S/(N+1)' shards and
%% no shard ever moves between two nodes that both stay. "Partition" means
%% a network partition in tether, so a ring partition is called a shard.
%%
%% `shard(Key)' is the same on every member, BEAM node or C-node, on every
%% OTP release and architecture: the key is hashed through one canonical
%% encoding of the term (SipHash-2-4 of the external term format with
%% every encoding choice fixed, see `c_src/core/ring.h'). Any term has a
%% shard but closures (`badarg').
%%
%% Two uses:
%% <ul>
%% <li>The cluster ring (`tether:place/1', `owners/2', `shard/1',
%% `shard_owners/2', `is_owner/1', `ring_size/0', `subscribe_shard/0,1',
%% `unsubscribe_shard/1'): its members are the cluster's live members; a
%% drop partition gives each side its own ring until heal, a defer
%% partition changes nothing, a node that leaves or dies hands its shards
%% to the next owners. Lookups run in the NIF under a read lock, with no
%% message to any process. Members must agree on the ring size (the
%% application env `ring_size'): `tether:join/1' between nodes of
%% different sizes answers `{error, {ring_size_mismatch, Ours, Theirs}}'
%% and neither lists the other as a member.</li>
%% <li>A standalone ring (`new/1,2', `place/2', `owners/3', `shard/2',
%% `shard_owners/3', `add/2', `remove/2', `nodes/1', `shards/1'), a value
%% with the ring last as in `maps', for placement without a cluster; for
%% the same members it answers as the cluster ring does.</li>
%% </ul>
-module(tether_ring).

-export([place/1, owners/2, shard/1, shard_owners/2, is_owner/1,
         ring_size/0, subscribe_shard/0, subscribe_shard/1,
         unsubscribe_shard/1]).
-export([new/1, new/2, place/2, owners/3, shard/2, shard_owners/3, add/2,
         remove/2, nodes/1, shards/1]).
-export([node_term/1]).
%% The shard subscriptions, kept in tether_server's state.
-export([init/0, subscribe/3, unsubscribe/2, is_subscriber/3, handle_action/2,
         engine_started/2, engine_stopped/2]).

-export_type([ring/0, shard/0, generation/0, opts/0, state/0]).

-define(DEFAULT_SHARDS, 64).
-define(SHARDS_MAX, 65536).

%% A standalone ring: a value; add/2 and remove/2 return new ones.
-opaque ring() :: tether_nif:ring().
%% A shard: 0..ring size - 1.
-type shard() :: non_neg_integer().
%% One more for every change of the cluster ring, with no gaps.
-type generation() :: non_neg_integer().
%% Options of new/2.
-type opts() :: #{shards => pos_integer()}.

%% The shard subscribers and the generations told to them. The
%% generations subscribers see go on across engines (a leave and join,
%% a restart of distribution): an engine's generation plus `base'.
-record(subs, {pids = #{} :: #{pid() => reference()},
               base = 0 :: integer(),
               gen = 0 :: generation()}).
-opaque state() :: #subs{}.

%%% The cluster ring

%% @doc See {@link tether:place/1}.
-spec place(term()) -> node() | undefined.
place(Key) ->
    case tether_server:engine() of
        undefined -> undefined;
        E -> node_term(tether_nif:engine_place(E, Key))
    end.

%% @doc See {@link tether:owners/2}.
-spec owners(term(), pos_integer()) -> [node()].
owners(Key, N) when is_integer(N), N > 0 ->
    case tether_server:engine() of
        undefined -> [];
        E -> nodes_of(tether_nif:engine_owners(E, Key, N))
    end;
owners(_Key, _N) ->
    error(badarg).

%% @doc See {@link tether:shard/1}.
-spec shard(term()) -> shard().
shard(Key) ->
    case tether_server:engine() of
        undefined -> tether_nif:ring_shard(Key, ring_size());
        E -> tether_nif:engine_shard(E, Key)
    end.

%% @doc See {@link tether:shard_owners/2}.
-spec shard_owners(shard(), pos_integer()) -> [node()].
shard_owners(Shard, N) when is_integer(Shard), Shard >= 0, is_integer(N),
                            N > 0 ->
    case tether_server:engine() of
        undefined when Shard < ?SHARDS_MAX -> [];
        undefined -> error(badarg);
        E -> nodes_of(tether_nif:engine_shard_owners(E, Shard, N))
    end;
shard_owners(_Shard, _N) ->
    error(badarg).

%% @doc See {@link tether:is_owner/1}.
-spec is_owner(term()) -> boolean().
is_owner(Key) ->
    case tether_server:engine() of
        undefined -> false;
        E -> tether_nif:engine_is_owner(E, Key)
    end.

%% @doc See {@link tether:ring_size/0}.
-spec ring_size() -> pos_integer().
ring_size() ->
    tether_server:ring_size().

%% @doc See {@link tether:subscribe_shard/1}.
-spec subscribe_shard() -> {ok, generation(), [shard()]} |
          {error, not_distributed}.
subscribe_shard() ->
    subscribe_shard(self()).

%% @doc See {@link tether:subscribe_shard/1}.
-spec subscribe_shard(pid()) -> {ok, generation(), [shard()]} |
          {error, not_distributed}.
subscribe_shard(Pid) when is_pid(Pid) ->
    tether_server:subscribe_shard(Pid).

%% @doc See {@link tether:unsubscribe_shard/1}.
-spec unsubscribe_shard(pid()) -> ok.
unsubscribe_shard(Pid) when is_pid(Pid) ->
    tether_server:unsubscribe_shard(Pid).

%%% Standalone rings

%% @doc new(Nodes, #{}).
-spec new([node()]) -> ring().
new(Nodes) ->
    new(Nodes, #{}).

%% @doc A ring of Nodes (distinct atoms; `[]' is a valid empty ring whose
%% `place/2' is `undefined') with `shards' shards (a power of two up to
%% 65536, default 64). `badarg' for a node that is not an atom, a repeated
%% node, a bad shard count or an unknown option.
-spec new([node()], opts()) -> ring().
new(Nodes, Opts) when is_list(Nodes), is_map(Opts) ->
    Shards = maps:get(shards, Opts, ?DEFAULT_SHARDS),
    maps:size(maps:without([shards], Opts)) =:= 0 orelse error(badarg),
    is_shards(Shards) orelse error(badarg),
    lists:all(fun is_atom/1, Nodes) orelse error(badarg),
    length(lists:usort(Nodes)) =:= length(Nodes) orelse error(badarg),
    case tether_nif:ring_new([atom_to_binary(N, utf8) || N <- Nodes],
                             Shards) of
        {ok, Ring} -> Ring;
        {error, _} -> error(badarg)
    end;
new(_Nodes, _Opts) ->
    error(badarg).

%% @doc The primary of Key's shard in Ring, or `undefined' when the ring
%% has no nodes.
-spec place(term(), ring()) -> node() | undefined.
place(Key, Ring) ->
    node_term(tether_nif:ring_place(Ring, Key)).

%% @doc N distinct owners of Key in Ring, best first (all of them when
%% there are fewer than N).
-spec owners(term(), pos_integer(), ring()) -> [node()].
owners(Key, N, Ring) when is_integer(N), N > 0 ->
    nodes_of(tether_nif:ring_owners(Ring, Key, N));
owners(_Key, _N, _Ring) ->
    error(badarg).

%% @doc Key's shard in Ring.
-spec shard(term(), ring()) -> shard().
shard(Key, Ring) ->
    tether_nif:ring_shard_of(Ring, Key).

%% @doc N distinct owners of Shard in Ring, best first.
-spec shard_owners(shard(), pos_integer(), ring()) -> [node()].
shard_owners(Shard, N, Ring) when is_integer(N), N > 0 ->
    nodes_of(tether_nif:ring_shard_owners(Ring, Shard, N));
shard_owners(_Shard, _N, _Ring) ->
    error(badarg).

%% @doc Ring with Node added (the ring itself when Node is a member).
-spec add(node(), ring()) -> ring().
add(Node, Ring) when is_atom(Node) ->
    case tether_nif:ring_add(Ring, atom_to_binary(Node, utf8)) of
        {ok, Ring2} -> Ring2;
        {error, exists} -> Ring;
        {error, _} -> error(badarg)
    end;
add(_Node, _Ring) ->
    error(badarg).

%% @doc Ring without Node (the ring itself when Node is none).
-spec remove(node(), ring()) -> ring().
remove(Node, Ring) when is_atom(Node) ->
    case tether_nif:ring_remove(Ring, atom_to_binary(Node, utf8)) of
        {ok, Ring2} -> Ring2;
        {error, not_found} -> Ring;
        {error, _} -> error(badarg)
    end;
remove(_Node, _Ring) ->
    error(badarg).

%% @doc The nodes of Ring, sorted.
-spec nodes(ring()) -> [node()].
nodes(Ring) ->
    nodes_of(tether_nif:ring_nodes(Ring)).

%% @doc The number of shards of Ring.
-spec shards(ring()) -> pos_integer().
shards(Ring) ->
    element(1, tether_nif:ring_info(Ring)).

%%% Shard subscriptions (run in tether_server, the engine's writer)

%% @private No subscribers.
-spec init() -> state().
init() ->
    #subs{}.

%% @private Subscribes Pid (again: a fresh snapshot) to the ownership
%% events of engine E, whose actions were all carried out.
-spec subscribe(pid(), tether_nif:engine(), state()) ->
          {{ok, generation(), [shard()]}, state()}.
subscribe(Pid, E, St = #subs{pids = Pids, base = Base}) ->
    {_, Gen, Owned} = tether_nif:engine_ring(E),
    Pids1 = case maps:is_key(Pid, Pids) of
                true -> Pids;
                false -> Pids#{Pid => erlang:monitor(process, Pid)}
            end,
    {{ok, Gen + Base, Owned}, St#subs{pids = Pids1}}.

%% @private Ends Pid's subscription, if any.
-spec unsubscribe(pid(), state()) -> state().
unsubscribe(Pid, St = #subs{pids = Pids}) ->
    case maps:take(Pid, Pids) of
        {MRef, Rest} ->
            erlang:demonitor(MRef, [flush]),
            St#subs{pids = Rest};
        error ->
            St
    end.

%% @private Whether a `DOWN' of Pid and MRef is a subscriber's.
-spec is_subscriber(pid(), reference(), state()) -> boolean().
is_subscriber(Pid, MRef, #subs{pids = Pids}) ->
    maps:get(Pid, Pids, undefined) =:= MRef.

%% @private A `{shard, Generation, Change, Shard}' action of the engine.
-spec handle_action(tether_nif:action(), state()) -> state().
handle_action({shard, Gen, Change, Shard}, St = #subs{base = Base}) ->
    notify(Gen + Base, Change, [Shard], St).

%% @private A new engine runs: what it owns is acquired, at the next
%% generation, and its generations continue ours.
-spec engine_started(tether_nif:engine(), state()) -> state().
engine_started(E, St = #subs{gen = Last}) ->
    case tether_nif:engine_ring(E) of
        {_, Gen, []} -> St#subs{base = Last - Gen};
        {_, Gen, Owned} ->
            notify(Last + 1, acquired, Owned, St#subs{base = Last + 1 - Gen})
    end.

%% @private The engine stops (left and replaced, or distribution
%% stopped): what it owned is released, at the next generation.
-spec engine_stopped(tether_nif:engine(), state()) -> state().
engine_stopped(E, St = #subs{base = Base}) ->
    case tether_nif:engine_ring(E) of
        {_, Gen, []} -> St#subs{gen = Gen + Base};
        {_, Gen, Owned} -> notify(Gen + Base + 1, released, Owned, St)
    end.

-spec notify(generation(), acquired | released, [shard()], state()) ->
          state().
notify(Gen, Change, Shards, St = #subs{pids = Pids}) ->
    _ = [Pid ! {tether_shard, Gen, {Change, S}}
         || S <- Shards, Pid <- maps:keys(Pids)],
    St#subs{gen = Gen}.

%%% Internals

%% @private A node as the NIF gives it (an atom, or a binary for a name
%% outside ASCII) as an atom.
-spec node_term(atom() | binary()) -> atom().
node_term(B) when is_binary(B) -> binary_to_atom(B, utf8);
node_term(A) -> A.

-spec nodes_of([atom() | binary()]) -> [node()].
nodes_of(L) ->
    [node_term(N) || N <- L].

-spec is_shards(term()) -> boolean().
is_shards(S) ->
    is_integer(S) andalso S > 0 andalso S =< ?SHARDS_MAX
        andalso S band (S - 1) =:= 0.
