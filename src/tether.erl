%% @doc The tether API facade.
%%
%% Membership and injected partitions of a tether cluster, run by the
%% `tether' application. Every function here is one call into the module
%% that implements it: {@link tether_server} (membership, partitions; it
%% owns the engine and tells the wire format), {@link tether_registry},
%% {@link tether_rpc} and {@link tether_service}; {@link tether_config}
%% tells the configuration, and `src/README.md' which calls reach the
%% engine how.
%%
%% Members are nodes whose tether engines hold an authenticated session
%% with each other and renew leases by heartbeats. `members()' lists the
%% live ones, sorted. Subscribers receive
%% `{tether_member, up | down, Node}' on every change seen by this node.
%%
%% Partitions are a test and chaos tool. `partition(A, B, drop)' makes
%% engine messages between the groups vanish and reports the other side
%% down at once; `partition(A, B, defer)' holds engine messages in order
%% until heal and keeps membership as it is. A partition injected on any
%% member is gossiped to every member and applies on all of them; healing
%% one anywhere heals it everywhere.
%%
%% == Registry ==
%%
%% A `global'-compatible name registry: `register_name/2,3',
%% `unregister_name/1', `whereis_name/1', `send/2', `registered_names/0'
%% and `sync/0', so `{via, tether, Name}' works with `gen_server',
%% `gen_statem', `supervisor' and Elixir's `GenServer'. Each node is
%% authoritative for its own processes (a registration of a remote pid
%% is made by the pid's node); registrations are broadcast to every
%% member, and `whereis_name/1' reads this node's copy in the NIF, with
%% no message to any process. An entry disappears when its process dies
%% or its node goes down or leaves. As in `global', a pid holds at most
%% one name. After a partition heals, a name registered on both sides
%% keeps the earlier registration (hybrid logical clock, then node name);
%% the loser's registrant is told as it chose (see conflict_method/0) and
%% its entry is removed everywhere. When a registrant gave a resolver,
%% the resolver decides instead, as in `global': it runs once, on one
%% node, and the registration it keeps (or neither) is what every node
%% ends up with.
%%
%% == Ring ==
%%
%% A consistent-hash ring over the live members ({@link tether_ring}):
%% `place/1', `owners/2', `shard/1', `shard_owners/2', `is_owner/1' and
%% `ring_size/0' answer in the NIF from a table rebuilt at every
%% membership change, with no message to any process, and the same on a
%% C-node. `subscribe_shard/0,1' gives the shards this node owns and then
%% every change of them.
%%
%% == Election ==
%%
%% Leader election with fencing tokens ({@link tether_election}):
%% `lead/1,2', `resign/1', `leader/1', `is_leader/1', `fence/1' and
%% `candidates/1'. In the default mode the winner is the live candidate
%% with the highest priority, then the lowest node name (each side of a
%% drop partition elects its own); in quorum mode a leader holds a lease
%% granted by a majority of the configured voters, so at most one leader
%% exists cluster-wide. Fences grow with every leadership term and are
%% minted afresh after every heal. `fence/1' and `is_leader/1' are
%% answered by the NIF with no message to any process; C-nodes campaign
%% and answer the same calls.
%%
%% == Reminders ==
%%
%% One-shot timers owned by the key's ring owner ({@link
%% tether_reminder}): `remind/3,4', `remind_after/3,4',
%% `cancel_reminder/1', `reminder/1', `subscribe_reminders/0,1' and
%% `unsubscribe_reminders/1'. Stored on the key's `reminder_replicas'
%% owners (a majority before `remind' returns), fired once by the
%% primary as `{tether_reminder, Key, Payload, Fence}' to the
%% subscribers on its node, handed over when the ring changes,
%% persisted under `data_dir'.
%%
%% == Replicated maps ==
%%
%% Last-writer-wins maps ({@link tether_map}): `new_map/1,2',
%% `delete_map/1', `map_put/3', `map_get/2', `map_remove/2',
%% `map_keys/1', `map_to_list/1', `map_size/1', `subscribe_map/1,2' and
%% `unsubscribe_map/1,2'. A map is replicated among the nodes that host
%% it; a write is stamped once and sent with its stamp, so concurrent
%% writes converge without an anti-entropy pass, and anti-entropy
%% exchanges only the keys that differ. Reads are answered by the NIF.
%%
%% Every cluster call answers `{error, not_distributed}' while the node
%% is not alive; the application starts anyway and clusters once
%% distribution starts.
-module(tether).

-export([version/0]).
-export([join/1, leave/0, members/0, subscribe/0, subscribe/1,
         unsubscribe/0, unsubscribe/1, partition/3, heal/1, heal/0,
         partitions/0]).

-export([register_name/2, register_name/3, unregister_name/1,
         whereis_name/1, send/2, registered_names/0, sync/0]).

-export([call/4, call/5, multicall/3, multicall/4, multicall/5, cast/4,
         abcast/2, abcast/3]).

-export([register_service/1, register_service/2, register_service/3,
         unregister_service/1, whereis_service/1, whereis_service/2,
         get_nodes/1, get_instances/1, get_services/0,
         wait_for_services/2, call_service/4, call_service_all/4,
         stub/2]).

-export([place/1, owners/2, shard/1, shard_owners/2, is_owner/1,
         ring_size/0, subscribe_shard/0, subscribe_shard/1,
         unsubscribe_shard/1]).

-export([lead/1, lead/2, resign/1, leader/1, is_leader/1, fence/1,
         candidates/1]).

-export([lookup/1, lookup_local/1, list_services/0, subscribe_services/0,
         subscribe_services/1, unsubscribe_services/1, active_view/0,
         passive_view/0, global_register/1, get_proxy/1,
         start_service_holder/1, stop_service_holder/1, migrate_peer/1,
         migrate_peer/2]).
-export([remind/3, remind/4, remind_after/3, remind_after/4,
         cancel_reminder/1, reminder/1, subscribe_reminders/0,
         subscribe_reminders/1, unsubscribe_reminders/1]).
-export([new_map/1, new_map/2, delete_map/1, map_put/3, map_get/2,
         map_remove/2, map_keys/1, map_to_list/1, map_size/1,
         subscribe_map/1, subscribe_map/2, unsubscribe_map/1,
         unsubscribe_map/2]).
-compile({no_auto_import, [map_size/1]}).

-export_type([partition_ref/0, partition_info/0, conflict_method/0]).

%% An opaque handle of an injected partition.
-opaque partition_ref() :: {tether_partition, non_neg_integer()}.

%% One entry of partitions/0: the groups, the mode and whether it healed.
-type partition_info() :: #{ref := partition_ref(),
                            mode := drop | defer,
                            a := [node()],
                            b := [node()],
                            healed := boolean()}.

%% How a conflict on a name is decided and the loser told:
%% `notify' (the default) sends the loser
%% `{global_name_conflict, Name, Winner}'; `exit' kills it
%% (`exit(Pid, kill)', as `global''s default resolver does). With no
%% resolver on either side the earlier registration wins.
%% `{resolve, Fun}' lets `Fun(Name, Pid1, Pid2)' decide, as `global'
%% does: Pid1 is the earlier registration. It runs once, in a fresh
%% process on the node of the registrant that gave it (the earlier one's
%% when both did). It returns the pid that keeps the name; anything else
%% (`none', a crash) removes both. A registration removed by the verdict
%% is told as its own method says (`exit': killed; otherwise the message,
%% with Winner `none' when neither was kept); the resolver's own
%% registrant is told nothing (the resolver had its say). Until the
%% verdict the earlier registration is the one every node sees.
-type conflict_method() :: notify | exit
                         | {resolve, fun((term(), pid(), pid()) -> term())}.

%% @doc The version of tether's C core as a string, for example `"0.1.0"'.
%% It is read from the loaded NIF library, so it also proves the library
%% loaded.
-spec version() -> string().
version() ->
    binary_to_list(tether_nif:version()).

%% @doc Joins the cluster `Node' belongs to, and returns once Node's
%% tether has taken us in (the other members follow within a heartbeat
%% or two: watch members/0 or subscribe). The distribution connection to
%% Node is made first, in the caller.
%%
%% Errors: `{error, nodedown}' when Node cannot be reached;
%% `{error, not_a_tether_node}' when Node is connected but its tether
%% did not answer within `join_timeout_ms' (default 5000; Node runs no
%% tether, or one that does not trust us); `{error, {ring_size_mismatch,
%% Ours, Theirs}}' when Node's cluster has another `ring_size' (both
%% nodes log it and neither becomes the other's member);
%% `{error, superseded}' when a join through another node was asked
%% before this one ended. Nothing retries a failed join in the
%% background. A node that left joins again as a new incarnation.
-spec join(node()) ->
          ok | {error, nodedown | not_a_tether_node | not_distributed
                | superseded
                | {ring_size_mismatch, pos_integer(), pos_integer()}
                | term()}.
join(Node) ->
    tether_server:join(Node).

%% @doc Leaves the cluster: the others drop this node from their members
%% at once, and this node's members/0 becomes `[]'. Leaving twice is `ok'.
-spec leave() -> ok | {error, not_distributed}.
leave() ->
    tether_server:leave().

%% @doc The live members, this node included (unless it left), sorted.
-spec members() -> [node()] | {error, not_distributed}.
members() ->
    tether_server:members().

%% @doc subscribe(self()).
-spec subscribe() -> ok.
subscribe() ->
    tether_server:subscribe(self()).

%% @doc Sends `{tether_member, up | down, Node}' to Pid on every change
%% of the member set seen by this node, until Pid exits or unsubscribes.
%% Subscribing twice is `ok' (one message per event). Current members are
%% not replayed: call members/0 after subscribing.
-spec subscribe(pid()) -> ok.
subscribe(Pid) ->
    tether_server:subscribe(Pid).

%% @doc unsubscribe(self()).
-spec unsubscribe() -> ok.
unsubscribe() ->
    tether_server:unsubscribe(self()).

%% @doc Stops member events to Pid. Unknown Pids are `ok'.
-spec unsubscribe(pid()) -> ok.
unsubscribe(Pid) ->
    tether_server:unsubscribe(Pid).

%% @doc Injects a partition between two non-empty, disjoint groups of
%% nodes, cluster-wide. `drop': engine messages between the groups vanish
%% and each side reports the other down at once. `defer': engine messages
%% wait, in order, until heal; membership holds. Answers
%% `{error, invalid}' for empty or overlapping groups, `{error, too_big}'
%% when too many partitions are active.
-spec partition([node()], [node()], drop | defer) ->
          {ok, partition_ref()} | {error, invalid | too_big | not_distributed
                                   | term()}.
partition(GroupA, GroupB, Mode) ->
    tether_server:partition(GroupA, GroupB, Mode).

%% @doc Heals one partition, cluster-wide. Healing a healed partition is
%% `ok'; a Ref this node never heard of is `{error, not_found}'.
-spec heal(partition_ref()) -> ok | {error, not_found | not_distributed}.
heal(Ref) ->
    tether_server:heal(Ref).

%% @doc Heals every partition this node knows of, cluster-wide.
-spec heal() -> ok | {error, not_distributed}.
heal() ->
    tether_server:heal().

%% @doc Every partition this node knows of, active and healed (healed
%% ones are kept as tombstones, oldest evicted first), sorted by ref.
-spec partitions() -> [partition_info()] | {error, not_distributed}.
partitions() ->
    tether_server:partitions().

%%% Registry

%% @doc register_name(Name, Pid, notify).
-spec register_name(term(), pid()) -> yes | no.
register_name(Name, Pid) ->
    tether_registry:register_name(Name, Pid).

%% @doc Registers Pid as Name cluster-wide. `yes', or `no' if the name
%% is held (anywhere this node knows of), Pid is not alive, Pid already
%% holds a name, or the node is not distributed. A pid of another node is
%% registered by that node's tether server. Method says how Pid is told
%% if its registration later loses a conflict (see conflict_method/0; a
%% `global'-style resolver `fun/3' is taken as `{resolve, Fun}').
-spec register_name(term(), pid(), conflict_method()
                    | fun((term(), pid(), pid()) -> term())) -> yes | no.
register_name(Name, Pid, Method) ->
    tether_registry:register_name(Name, Pid, Method).

%% @doc Removes Name wherever it is registered (the owner node removes it
%% and tells every member). `ok', also when Name is not registered.
-spec unregister_name(term()) -> ok.
unregister_name(Name) ->
    tether_registry:unregister_name(Name).

%% @doc The pid registered as Name, or `undefined'. Answered from this
%% node's table by the NIF: no message to any process, no wait on the
%% engine.
-spec whereis_name(term()) -> pid() | undefined.
whereis_name(Name) ->
    tether_registry:whereis_name(Name).

%% @doc Sends Msg to the pid registered as Name and returns that pid;
%% exits with `{badarg, {Name, Msg}}' when Name is not registered, as
%% `global:send/2' does.
-spec send(term(), term()) -> pid().
send(Name, Msg) ->
    tether_registry:send(Name, Msg).

%% @doc Every name registered in the cluster, as this node knows it.
-spec registered_names() -> [term()].
registered_names() ->
    tether_registry:registered_names().

%% @doc Asks every member and waits for their answers, so that once it
%% returns, every registration and removal made on any member before the
%% call is visible here (unless a partition holds it). Members that do
%% not answer within 5 seconds are skipped. Always `ok'.
-spec sync() -> ok.
sync() ->
    tether_registry:sync().

%%% RPC (implemented by tether_rpc, whose module doc tells how requests
%%% travel inside envelopes and how partitions apply to them)

%% @doc As `rpc:call/4', across tether members. See {@link tether_rpc:call/5}.
-spec call(node(), module(), atom(), [term()]) -> term() | {badrpc, term()}.
call(Node, M, F, A) ->
    tether_rpc:call(Node, M, F, A).

%% @doc As `rpc:call/5': `{badrpc, nodedown}' at once across a drop
%% partition, completes after heal across a defer one unless Timeout
%% passes first (`{badrpc, timeout}'). See {@link tether_rpc:call/5}.
-spec call(node(), module(), atom(), [term()], timeout()) ->
          term() | {badrpc, term()}.
call(Node, M, F, A, Timeout) ->
    tether_rpc:call(Node, M, F, A, Timeout).

%% @doc As `rpc:multicall/3', on every member. See {@link tether_rpc:multicall/5}.
-spec multicall(module(), atom(), [term()]) -> {[term()], [node()]}.
multicall(M, F, A) ->
    tether_rpc:multicall(M, F, A).

%% @doc As `rpc:multicall/4'. See {@link tether_rpc:multicall/5}.
-spec multicall([node()], module(), atom(), [term()]) ->
          {[term()], [node()]}.
multicall(Nodes, M, F, A) ->
    tether_rpc:multicall(Nodes, M, F, A).

%% @doc As `rpc:multicall/5': `{Results, BadNodes}', Results in node
%% order. See {@link tether_rpc:multicall/5}.
-spec multicall([node()], module(), atom(), [term()], timeout()) ->
          {[term()], [node()]}.
multicall(Nodes, M, F, A, Timeout) ->
    tether_rpc:multicall(Nodes, M, F, A, Timeout).

%% @doc As `rpc:cast/4'; always `true'. See {@link tether_rpc:cast/4}.
-spec cast(node(), module(), atom(), [term()]) -> true.
cast(Node, M, F, A) ->
    tether_rpc:cast(Node, M, F, A).

%% @doc As `rpc:abcast/2', to every member. See {@link tether_rpc:abcast/3}.
-spec abcast(atom(), term()) -> abcast.
abcast(Name, Msg) ->
    tether_rpc:abcast(Name, Msg).

%% @doc As `rpc:abcast/3'. See {@link tether_rpc:abcast/3}.
-spec abcast([node()], atom(), term()) -> abcast.
abcast(Nodes, Name, Msg) ->
    tether_rpc:abcast(Nodes, Name, Msg).

%%% Services (implemented by tether_service and tether_rpc)

%% @doc Registers the caller as this node's instance of Service, with no
%% metadata. See {@link tether_service:register_service/3}.
-spec register_service(term()) -> ok | {error, term()}.
register_service(Name) ->
    tether_service:register_service(Name).

%% @doc Registers the caller as this node's instance of Service with
%% metadata Meta. See {@link tether_service:register_service/3}.
-spec register_service(term(), map()) -> ok | {error, term()}.
register_service(Name, Meta) ->
    tether_service:register_service(Name, Meta).

%% @doc Registers Pid (local, alive) as this node's instance of Service.
%% See {@link tether_service:register_service/3}.
-spec register_service(term(), pid(), map()) -> ok | {error, term()}.
register_service(Name, Pid, Meta) ->
    tether_service:register_service(Name, Pid, Meta).

%% @doc Removes this node's instance of Service.
-spec unregister_service(term()) -> ok.
unregister_service(Name) ->
    tether_service:unregister_service(Name).

%% @doc `{ok, Pid}' for a local instance, `{ok, Node, Pid}' for the first
%% remote one, or `{error, not_found}'.
-spec whereis_service(term()) ->
          {ok, pid()} | {ok, node(), pid()} | {error, not_found}.
whereis_service(Name) ->
    tether_service:whereis_service(Name).

%% @doc As whereis_service/1; `#{node => Node}' asks for Node's instance
%% (any other key: `{error, {bad_option, {Key, Value}}}').
-spec whereis_service(term(), map()) ->
          {ok, pid()} | {ok, node(), pid()}
          | {error, not_found | {bad_option, term()}}.
whereis_service(Name, Opts) ->
    tether_service:whereis_service(Name, Opts).

%% @doc The nodes running Service: this node first, the others in an
%% order reshuffled at every health recheck.
-spec get_nodes(term()) -> [node()].
get_nodes(Name) ->
    tether_service:get_nodes(Name).

%% @doc As get_nodes/1, with each instance's metadata.
-spec get_instances(term()) -> [{node(), term()}].
get_instances(Name) ->
    tether_service:get_instances(Name).

%% @doc Every service known here with its instances.
-spec get_services() -> #{term() => [{node(), pid(), term()}]}.
get_services() ->
    tether_service:get_services().

%% @doc Waits until every service of Names has an instance: `ok' or
%% `timeout' (`{error, {bad_option, Opt}}' for a bad option). See
%% {@link tether_service:wait_for_services/2}.
-spec wait_for_services([term()], list() | map()) ->
          ok | timeout | {error, {bad_option, term()}}.
wait_for_services(Names, Opts) ->
    tether_service:wait_for_services(Names, Opts).

%% @doc Calls Fun(Args...) on an instance of Service with failover. See
%% {@link tether_rpc:call_service/4}.
-spec call_service(term(), atom(), [term()],
                   [tether_rpc:call_service_opt()]) ->
          term() | {badrpc, term()}
          | {error, service_not_available | {bad_option, term()}}.
call_service(Service, Fun, Args, Opts) ->
    tether_rpc:call_service(Service, Fun, Args, Opts).

%% @doc Calls Fun(Args...) on every instance of Service. See
%% {@link tether_rpc:call_service_all/4}.
-spec call_service_all(term(), atom(), [term()],
                       [tether_rpc:call_service_opt()]) ->
          [{node(), term()}] | {error, {bad_option, term()}}.
call_service_all(Service, Fun, Args, Opts) ->
    tether_rpc:call_service_all(Service, Fun, Args, Opts).

%% @doc Generates and loads Module, whose functions Fun/Arity call the
%% service Module (call_service/4) and return
%% `{error, service_not_available}' until an instance appears.
-spec stub(module(), [{atom(), arity()}]) -> ok | {error, term()}.
stub(Module, Funs) ->
    tether_service:stub(Module, Funs).

%%% Ring

%% @doc The member that owns Key: the primary of Key's shard in the
%% cluster ring, `undefined' only when there are no members (the node
%% left, or is not distributed). Computed in the NIF from a table rebuilt
%% at each membership change: a hash and an index, whatever the size of
%% the cluster. Any term but a fun can be a key.
-spec place(term()) -> node() | undefined.
place(Key) ->
    tether_ring:place(Key).

%% @doc The first N distinct owners of Key's shard, primary first (all
%% members when there are fewer than N). `badarg' when N is not a
%% positive integer.
-spec owners(term(), pos_integer()) -> [node()].
owners(Key, N) ->
    tether_ring:owners(Key, N).

%% @doc Key's shard: `0..ring_size() - 1', the same on every member, BEAM
%% or C, on every OTP release and architecture (a fixed hash of one
%% canonical encoding of the term).
-spec shard(term()) -> tether_ring:shard().
shard(Key) ->
    tether_ring:shard(Key).

%% @doc The first N distinct owners of Shard, primary first. `badarg'
%% when Shard is not in `0..ring_size() - 1' or N is not a positive
%% integer.
-spec shard_owners(tether_ring:shard(), pos_integer()) -> [node()].
shard_owners(Shard, N) ->
    tether_ring:shard_owners(Shard, N).

%% @doc Whether this node is the primary owner of Key's shard.
-spec is_owner(term()) -> boolean().
is_owner(Key) ->
    tether_ring:is_owner(Key).

%% @doc The number of shards of the cluster ring: the application env
%% `ring_size' (a power of two, default 64), the same on every member.
-spec ring_size() -> pos_integer().
ring_size() ->
    tether_ring:ring_size().

%% @doc subscribe_shard(self()).
-spec subscribe_shard() ->
          {ok, tether_ring:generation(), [tether_ring:shard()]}
          | {error, not_distributed}.
subscribe_shard() ->
    tether_ring:subscribe_shard(self()).

%% @doc Returns `{ok, Generation, Shards}', the shards this node owns
%% now, then sends Pid `{tether_shard, Gen, {acquired, Shard}}' and
%% `{tether_shard, Gen, {released, Shard}}' for every later change of
%% them, until Pid exits or unsubscribes. Gen counts the ring's changes:
%% every event has a greater generation than the snapshot, and the
%% snapshot plus the events always equals is_owner/1. Subscribing again
%% gives a fresh snapshot (one message per event). Across a leave and
%% join or a restart of distribution the shards are released, then
%% acquired again, with generations still increasing.
-spec subscribe_shard(pid()) ->
          {ok, tether_ring:generation(), [tether_ring:shard()]}
          | {error, not_distributed}.
subscribe_shard(Pid) ->
    tether_ring:subscribe_shard(Pid).

%% @doc Stops shard events to Pid. Unknown Pids are `ok'.
-spec unsubscribe_shard(pid()) -> ok.
unsubscribe_shard(Pid) ->
    tether_ring:unsubscribe_shard(Pid).

%%% Election (implemented by tether_election)

%% @doc lead(Name, #{}): a default-mode candidacy of priority 0.
-spec lead(term()) -> {ok, {leader, tether_election:fence()}}
                      | {ok, follower}
                      | {error, already_candidate | no_quorum
                         | voters_mismatch | not_distributed | term()}.
lead(Name) ->
    tether_election:lead(Name).

%% @doc Makes the caller this node's candidate for Name (any term but a
%% fun; one candidate per node and name) and monitors it: if it dies it
%% stops being a candidate. Answers its role now, `{ok, {leader, Fence}}'
%% or `{ok, follower}'; every later transition comes to it as
%% `{tether_leader, Name, {elected, Fence}}' (again, with a fresh fence,
%% after a heal) or `{tether_leader, Name, revoked}'.
%%
%% Options: `priority' (an integer, default 0: the highest wins, ties go
%% to the lowest node name), `quorum' (default `false'; `true': lead only
%% while a majority of the voters grant a lease, see {@link
%% tether_election}) and `voters' (with `quorum', the voter nodes;
%% default the application env `election_voters').
%%
%% Errors: `{error, already_candidate}' (this node has one for Name),
%% `{error, no_quorum}' (quorum mode: fewer than a majority of the voters
%% are members here; not a candidate then), `{error, voters_mismatch}' (a
%% candidate of Name has another mode or voter set), `{error,
%% {bad_options, Opts}}' (not a map), `{error, {bad_option, {Key,
%% Value}}}' (an unknown key), `{error,
%% {bad_priority, P}}' (not a 64-bit integer), `{error, {bad_quorum,
%% Q}}', `{error, {bad_voters, V}}' (not a list of atoms), `{error,
%% no_voters}', `{error, voters_without_quorum}', `{error, bad_name}' (a
%% fun), `{error, not_distributed}'.
%%
%% Fence is a positive integer that grows with every leadership term:
%% stamp it on writes to a shared resource that refuses any write whose
%% fence is not greater than the last it accepted.
-spec lead(term(), tether_election:opts()) ->
          {ok, {leader, tether_election:fence()}} | {ok, follower}
          | {error, already_candidate | no_quorum | voters_mismatch
             | not_distributed | term()}.
lead(Name, Opts) ->
    tether_election:lead(Name, Opts).

%% @doc Ends this node's candidacy for Name, yielding the leadership if
%% it held it; no `revoked' is sent (the caller asked). `{error,
%% not_candidate}' when this node has no candidate for Name.
-spec resign(term()) -> ok | {error, not_candidate | not_distributed}.
resign(Name) ->
    tether_election:resign(Name).

%% @doc The leader of Name as this node knows it: `{ok, Node, Pid}' (Pid
%% the leading candidate), or `{error, no_leader}'. Read in the NIF, no
%% message to any process.
-spec leader(term()) -> {ok, node(), pid()} | {error, no_leader}.
leader(Name) ->
    tether_election:leader(Name).

%% @doc Whether this node's candidate for Name leads now (in quorum mode:
%% and its lease holds). Read in the NIF, no message to any process.
-spec is_leader(term()) -> boolean().
is_leader(Name) ->
    tether_election:is_leader(Name).

%% @doc This node's fence for Name while its candidate leads: `{ok,
%% Fence}'; `{error, no_quorum}' when its quorum candidate does not lead
%% and fewer than a majority of the voters are members here; `{error,
%% not_leader}' otherwise. Read in the NIF, no message to any process.
-spec fence(term()) -> {ok, tether_election:fence()}
                       | {error, not_leader | no_quorum}.
fence(Name) ->
    tether_election:fence(Name).

%% @doc The live candidates of Name as this node knows them, best first:
%% `[{Node, Priority}]'.
-spec candidates(term()) -> [{node(), integer()}].
candidates(Name) ->
    tether_election:candidates(Name).

%%% Peer service and the rest of barrel_p2p
%%%
%%% partisan's peer-service API is the module tether_peer_service (same
%%% names, arities and shapes as partisan_peer_service_manager). Below:
%%% barrel_p2p's remaining calls, in barrel_p2p's return shapes.

%% @doc The instances of service Name, `{ok, [{Node, Pid, Meta}]}', or
%% `{error, not_found}' when it has none (barrel_p2p's `lookup/1').
-spec lookup(term()) -> {ok, [{node(), pid(), term()}]} | {error, not_found}.
lookup(Name) ->
    tether_p2p:lookup(Name).

%% @doc This node's instance of service Name: `{ok, Pid}' or `{error,
%% not_found}'.
-spec lookup_local(term()) -> {ok, pid()} | {error, not_found}.
lookup_local(Name) ->
    tether_p2p:lookup_local(Name).

%% @doc The names of the services with at least one instance, sorted.
-spec list_services() -> [term()].
list_services() ->
    tether_p2p:list_services().

%% @doc subscribe_services(self()).
-spec subscribe_services() -> ok.
subscribe_services() ->
    tether_service_server:subscribe(self()).

%% @doc Sends Pid `{tether_service, up | down, Name, Node}' when an
%% instance of a service comes (or changes) and goes, until Pid exits or
%% unsubscribes (barrel_p2p's events on instance up/down). `ok', or
%% `{error, {bad_pid, Pid}}' for a term that is not a pid.
-spec subscribe_services(pid()) -> ok | {error, {bad_pid, term()}}.
subscribe_services(Pid) when is_pid(Pid) ->
    tether_service_server:subscribe(Pid);
subscribe_services(Other) ->
    {error, {bad_pid, Other}}.

%% @doc Stops the service events to Pid. Unknown Pids are `ok'; a term
%% that is not a pid `{error, {bad_pid, Term}}'.
-spec unsubscribe_services(pid()) -> ok | {error, {bad_pid, term()}}.
unsubscribe_services(Pid) when is_pid(Pid) ->
    tether_service_server:unsubscribe(Pid);
unsubscribe_services(Other) ->
    {error, {bad_pid, Other}}.

%% @doc The active view: in tether's full mesh, every other live member.
-spec active_view() -> [node()].
active_view() ->
    tether_p2p:active_view().

%% @doc The passive view: `[]' in tether's full mesh (no HyParView).
-spec passive_view() -> [].
passive_view() ->
    tether_p2p:passive_view().

%% @doc Registers the caller as Name cluster-wide (register_name/2 with
%% the caller): `{ok, self()}' (also when it holds Name already), or
%% `{error, {already_registered, Pid}}'.
-spec global_register(term()) ->
          {ok, pid()} | {error, {already_registered, pid() | undefined}}.
global_register(Name) ->
    tether_p2p:global_register(Name).

%% @doc The process registered as Name cluster-wide: `{ok, Pid}' or
%% `not_found' (barrel_p2p's shape; no proxy process is needed over
%% Erlang distribution, the pid is the registrant's).
-spec get_proxy(term()) -> {ok, pid()} | not_found.
get_proxy(Name) ->
    tether_p2p:get_proxy(Name).

%% @doc Starts a process that holds this node's instance of service Name
%% until stop_service_holder/1 (or its exit): `{ok, Pid}', or
%% register_service/3's `{error, Reason}'.
-spec start_service_holder(term()) -> {ok, pid()} | {error, term()}.
start_service_holder(Name) ->
    tether_p2p:start_service_holder(Name).

%% @doc Stops a service holder, which removes its instance: `ok' (also
%% for a holder already gone; any other process is left alone).
-spec stop_service_holder(pid()) -> ok.
stop_service_holder(Pid) ->
    tether_p2p:stop_service_holder(Pid).

%% @doc `{error, not_supported}': barrel_p2p migrates the QUIC path of the
%% connection to Node; tether rides Erlang distribution (TCP or TLS),
%% which has no path migration.
-spec migrate_peer(node()) -> {error, not_supported}.
migrate_peer(_Node) ->
    {error, not_supported}.

%% @doc As migrate_peer/1: `{error, not_supported}'.
-spec migrate_peer(node(), map()) -> {error, not_supported}.
migrate_peer(_Node, _Opts) ->
    {error, not_supported}.

%%% Reminders (implemented by tether_reminder)

%% @doc remind(Key, FireAtMs, Payload, #{}).
-spec remind(term(), integer(), term()) -> ok | {error, term()}.
remind(Key, FireAtMs, Payload) ->
    tether_reminder:remind(Key, FireAtMs, Payload).

%% @doc Sets Key's reminder: at FireAtMs (an integer on the
%% `erlang:system_time(millisecond)' scale, any 64-bit value; the past
%% fires at once) every subscriber on the node that owns Key receives
%% `{tether_reminder, Key, Payload, Fence}'. Setting Key again replaces
%% its reminder (with a new Fence). Returns `ok' once a majority of Key's
%% `reminder_replicas' owners hold it (on disk with persistence).
%% Opts: `missed => fire | skip' (default `fire'): what to do when the
%% fire time passed while no owner could fire it. Errors:
%% `{error, {bad_time, T}}', `{error, {bad_option, Opt}}',
%% `{error, bad_key}' (a closure, or over 4096 canonical bytes),
%% `{error, payload_too_large}' (its external format over 65536 bytes),
%% `{error, timeout}' (no majority within 5 s), `{error, not_distributed}'.
-spec remind(term(), integer(), term(), tether_reminder:opts()) ->
          ok | {error, term()}.
remind(Key, FireAtMs, Payload, Opts) ->
    tether_reminder:remind(Key, FireAtMs, Payload, Opts).

%% @doc remind_after(Key, DelayMs, Payload, #{}).
-spec remind_after(term(), non_neg_integer(), term()) -> ok | {error, term()}.
remind_after(Key, DelayMs, Payload) ->
    tether_reminder:remind_after(Key, DelayMs, Payload).

%% @doc remind/4 at DelayMs (a non-negative integer, else
%% `{error, {bad_delay, D}}') from now, made an absolute time at the call
%% so that all nodes agree.
-spec remind_after(term(), non_neg_integer(), term(),
                   tether_reminder:opts()) -> ok | {error, term()}.
remind_after(Key, DelayMs, Payload, Opts) ->
    tether_reminder:remind_after(Key, DelayMs, Payload, Opts).

%% @doc Cancels Key's reminder (`ok' also when there was none), once a
%% majority of its owners hold the cancellation: it never fires after.
-spec cancel_reminder(term()) -> ok | {error, term()}.
cancel_reminder(Key) ->
    tether_reminder:cancel_reminder(Key).

%% @doc Key's pending reminder, `{ok, FireAtMs, Payload}', or `not_found'
%% once it fired or was cancelled. Answered on any node (one that holds
%% no copy asks the primary).
-spec reminder(term()) -> {ok, integer(), term()} | not_found
                          | {error, term()}.
reminder(Key) ->
    tether_reminder:reminder(Key).

%% @doc subscribe_reminders(self()).
-spec subscribe_reminders() -> ok.
subscribe_reminders() ->
    tether_reminder:subscribe_reminders().

%% @doc Pid receives `{tether_reminder, Key, Payload, Fence}' for every
%% reminder this node fires, until it exits or unsubscribes. A reminder
%% whose time comes while its owning node has no subscriber is held and
%% delivered when one subscribes there (at most `reminder_hold_ms').
-spec subscribe_reminders(pid()) -> ok | {error, {bad_option, term()}}.
subscribe_reminders(Pid) ->
    tether_reminder:subscribe_reminders(Pid).

%% @doc Pid stops receiving reminders.
-spec unsubscribe_reminders(pid()) -> ok | {error, {bad_option, term()}}.
unsubscribe_reminders(Pid) ->
    tether_reminder:unsubscribe_reminders(Pid).

%%% Replicated maps (implemented by tether_map)

%% @doc This node hosts the replicated map Name, with no options.
-spec new_map(term()) -> ok | {error, term()}.
new_map(Name) ->
    tether_map:new_map(Name).

%% @doc This node hosts the replicated map Name (idempotent: the options
%% of a map hosted already are kept). A map is replicated among the nodes
%% that host it (also declared by the application env `maps', a list of
%% names or `{Name, Opts}', and on a C-node by `--map NAME'); per key the
%% last write by (hybrid logical clock, node name) wins. Opts:
%% `validator' (a `fun((Key, Value) -> boolean())' run on the writing
%% node: a put it refuses, or that makes it crash, returns `{error,
%% invalid_value}'), `tombstone_ttl_ms' (how long a remove is kept,
%% default 24 h), `persist' (`true': every write this node applies is
%% appended to a log under `DataDir/NodeName/', DataDir the application
%% env `data_dir', default `"tether_data"'; a restarted node comes back
%% with the map and catches up by anti-entropy; see {@link tether_map}).
%% Unknown or bad options return `{error, {bad_option, Opt}}'; a log that
%% cannot be created, `{error, {persist, Reason}}'.
-spec new_map(term(), tether_map:opts()) -> ok | {error, term()}.
new_map(Name, Opts) ->
    tether_map:new_map(Name, Opts).

%% @doc Stops hosting map Name on this node (its copy here goes; the
%% other hosts keep theirs: not a cluster-wide erase).
-spec delete_map(term()) -> ok.
delete_map(Name) ->
    tether_map:delete_map(Name).

%% @doc Writes Key => Value in map Name: applied here, then sent to every
%% host with the same stamp. Values up to 4 MiB in external format
%% (`{error, too_large}' beyond), without funs. On a persisted map it
%% returns once the write is in this node's log and fdatasync'ed
%% (`{error, {persist, Reason}}' if it could not be written).
-spec map_put(term(), term(), term()) ->
          ok | {error, invalid_value | too_large | no_such_map
                | {persist, term()}}.
map_put(Name, Key, Value) ->
    tether_map:map_put(Name, Key, Value).

%% @doc Key's value in map Name on this node: read in the NIF under its
%% read lock, no message to any process.
-spec map_get(term(), term()) -> {ok, term()} | not_found
                                 | {error, no_such_map}.
map_get(Name, Key) ->
    case tether_server:engine() of
        undefined -> {error, no_such_map};
        E -> tether_nif:map_get(E, Name, Key)
    end.

%% @doc Removes Key from map Name (a tombstone, ordered as writes are;
%% persisted as map_put/3 is).
-spec map_remove(term(), term()) -> ok | {error, no_such_map
                                         | {persist, term()}}.
map_remove(Name, Key) ->
    tether_map:map_remove(Name, Key).

%% @doc The keys of map Name on this node, in no set order.
-spec map_keys(term()) -> [term()] | {error, no_such_map}.
map_keys(Name) ->
    tether_map:map_keys(Name).

%% @doc The `{Key, Value}' pairs of map Name on this node, in no set order.
-spec map_to_list(term()) -> [{term(), term()}] | {error, no_such_map}.
map_to_list(Name) ->
    tether_map:map_to_list(Name).

%% @doc The number of keys of map Name on this node.
-spec map_size(term()) -> non_neg_integer() | {error, no_such_map}.
map_size(Name) ->
    tether_map:map_size(Name).

%% @doc Subscribes the caller to map Name's changes; see subscribe_map/2.
-spec subscribe_map(term()) -> ok | {error, no_such_map}.
subscribe_map(Name) ->
    tether_map:subscribe_map(Name).

%% @doc Pid gets `{tether_map, Name, {put, Key, Value}}' and
%% `{tether_map, Name, {remove, Key}}' for local and remote changes, once
%% per change of what map_get/2 answers on this node.
-spec subscribe_map(term(), pid()) -> ok | {error, no_such_map}.
subscribe_map(Name, Pid) ->
    tether_map:subscribe_map(Name, Pid).

%% @doc Ends the caller's subscription to map Name.
-spec unsubscribe_map(term()) -> ok | {error, no_such_map}.
unsubscribe_map(Name) ->
    tether_map:unsubscribe_map(Name).

%% @doc Ends Pid's subscription to map Name.
-spec unsubscribe_map(term(), pid()) -> ok | {error, no_such_map}.
unsubscribe_map(Name, Pid) ->
    tether_map:unsubscribe_map(Name, Pid).
