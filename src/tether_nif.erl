%% @doc Loader and stubs for `tether_nif.so', the C core inside the BEAM.
%%
%% The library is looked up in the application's priv directory and, when
%% the application is not installed as such (a bare `-pa' of the ebin
%% directory), in `../priv' next to this module's beam file. Every stub
%% raises `nif_error' if the library did not load.
%%
%% The `engine_*' functions wrap one sans-IO cluster engine
%% (`c_src/core/engine.h') held in a resource; {@link tether_server} is
%% their one user. Node names cross this boundary as UTF-8 binaries
%% (`atom_to_binary(Node, utf8)'). Every function checks its arguments:
%% a wrong type raises `badarg', a refusal by the engine answers
%% `{error, Reason}' with Reason one of `invalid', `enomem', `too_big',
%% `not_found', `exists', `closed', `protocol', `auth', `replay', `io',
%% `again', `timeout', `unsupported'.
-module(tether_nif).

-export([version/0]).
-export([engine_new/1, engine_recv/3, engine_peer_up/2, engine_peer_down/2,
         engine_tick/2, engine_next_deadline/1, engine_drain/1,
         engine_join/2, engine_leave/1, engine_members/1,
         engine_partition/4, engine_heal/2, engine_heal_all/1,
         engine_partitions/1, engine_send/3, engine_relay/3, engine_info/1,
         engine_recv_dirty/3, engine_send_dirty/3, engine_trust_add/3]).
-export([engine_seal/3, engine_open/3, engine_seal_dirty/3,
         engine_open_dirty/3]).
-export([reg_register/5, reg_register_sealed/5, reg_unregister/2,
         reg_unregister/3, reg_holds/3,
         reg_resolve/3, reg_whereis/2, reg_names/1, reg_entries/1, reg_info/1]).
-export([svc_register/4, svc_unregister/2, svc_lookup/2, svc_local/2,
         svc_names/1, svc_info/1]).
-export([ring_hash/1, ring_shard/2, ring_new/2, ring_add/2, ring_remove/2,
         ring_nodes/1, ring_info/1, ring_place/2, ring_owners/3,
         ring_shard_of/2, ring_shard_owners/3]).
-export([engine_place/2, engine_owners/3, engine_shard/2,
         engine_shard_owners/3, engine_is_owner/2, engine_ring/1]).
-export([election_lead/6, election_resign/2, election_fence/2,
         election_is_leader/2, election_leader/2, election_candidates/2,
         election_info/1]).
-export([reminders_set/6, reminders_cancel/3, reminders_get/3,
         reminders_subscribers/2, reminders_load/2, reminders_dump/1,
         reminders_info/1]).
-export([map_host/3, map_host/4, map_load/3, map_dump/2, map_unhost/2,
         map_notify/3, map_put/4, map_put_dirty/4,
         map_remove/3, map_get/3, map_list/3, map_size/2, map_info/2]).

-export_type([engine/0, ring/0, action/0, engine_opts/0, error_reason/0]).

-on_load(init/0).

-define(LIB, "tether_nif").

%% An engine resource; freed (keys wiped) when no term refers to it.
-opaque engine() :: reference().

%% A standalone ring (`c_src/core/ring.h'): a value, never changed; an
%% update makes a new one.
-opaque ring() :: reference().

-type name() :: binary().

-type error_reason() :: invalid | enomem | too_big | not_found | exists
                      | closed | protocol | auth | replay | io | again
                      | timeout | unsupported | unknown.

%% Options of engine_new/1. Key material: `cluster_secret' (32 bytes), or
%% else `cookie', makes our identity and trusts every name derived from
%% it; `identity_seed' (32 bytes) overrides our identity, and alone trusts
%% nobody until engine_trust_add/3. At least one of the three is needed.
-type engine_opts() :: #{name := name(),
                         incarnation := pos_integer(),
                         seed := <<_:256>>,
                         heartbeat_ms => pos_integer(),
                         ttl_ms => pos_integer(),
                         hello_retry_ms => pos_integer(),
                         defer_max => pos_integer(),
                         defer_max_bytes => pos_integer(),
                         cluster_secret => <<_:256>>,
                         cookie => binary(),
                         identity_seed => <<_:256>>,
                         seeds => [name()],
                         seed_retry_ms => pos_integer(),
                         join_timeout_ms => pos_integer(),
                         reconnect_max_ms => pos_integer(),
                         reconnect_attempts => pos_integer(),
                         ring_size => pos_integer(),
                         election_lease_ms => pos_integer(),
                         reminder_replicas => 1..8,
                         reminder_hold_ms => non_neg_integer(),
                         reminder_tomb_ms => non_neg_integer(),
                         reminder_settle_ms => non_neg_integer(),
                         reminder_missed_ms => non_neg_integer(),
                         reminder_handoff_ms => non_neg_integer(),
                         reminder_round_ms => non_neg_integer(),
                         reminder_op_timeout_ms => non_neg_integer(),
                         map_sync_ms => pos_integer()}.

%% What the engine asks of its shell or tells it (`c_src/core/engine.h',
%% tether_action_t), one term per kind:
%% <ul>
%% <li>`{send, To, Bytes}': send `{'$tether', node(), Bytes}' to `tether'
%%     on To, over an existing connection only.</li>
%% <li>`{connect, To}': connect to To if not connected.</li>
%% <li>`{member, up | down, Node}': Node became, or stopped being, a live
%%     member.</li>
%% <li>`{message, From, Etf}': a SHELL message (engine_send/3 on From),
%%     authenticated, to decode with `binary_to_term/1'.</li>
%% <li>`{reg_lost, NameEtf, LoserEtf, WinnerEtf, Method}': our registrant
%%     lost a conflict (WinnerEtf `<<>>' when none was kept); Method 0
%%     notify, 1 exit, 2 resolve.</li>
%% <li>`{reg_resolve, NameEtf, WinnerEtf, LoserEtf}': run our registrant's
%%     resolver and answer with reg_resolve/3.</li>
%% <li>`{service, up | down, NameEtf, Node}': Node's instance of a service
%%     came or changed (up), or went (down).</li>
%% <li>`{join, Contact, ok | {refused, Param, Ours, Theirs} | timeout}': a
%%     join through Contact ended.</li>
%% <li>`{shard, Generation, acquired | released, Shard}': this node became
%%     or stopped being the primary of a shard of the cluster ring.</li>
%% <li>`{log, error | warning | info, Text}': a line to log.</li>
%% <li>`{leader, NameEtf, elected | revoked, Fence}': our candidate for
%%     the name (its canonical term, to decode with `binary_to_term/1')
%%     was elected with Fence, or lost the leadership (Fence 0).</li>
%% <li>`{reminder, KeyEtf, PayloadEtf, Fence}': a reminder fires here
%%     (`c_src/core/reminders.h'): deliver it to the subscribers.</li>
%% <li>`{reminder_reply, Ref, ok | timeout | {found, FireAt, PayloadEtf}
%%     | not_found}': the answer to a reminders call made with Ref.</li>
%% <li>`{reminder_store, Record}': persist Record (fed back with
%%     reminders_load/2 at start).</li>
%% <li>`{map, NameEtf, KeyEtf, ValueEtf | removed}': what map_get answers
%%     for the key of a hosted map with subscribers changed.</li>
%% </ul>
-type action() :: {send, name(), binary()}
                | {connect, name()}
                | {member, up | down, name()}
                | {message, name(), binary()}
                | {reg_lost, binary(), binary(), binary(), 0..2}
                | {reg_resolve, binary(), binary(), binary()}
                | {service, up | down, binary(), name()}
                | {join, name(), ok | timeout
                                 | {refused, atom(), non_neg_integer(),
                                    non_neg_integer()}}
                | {shard, non_neg_integer(), acquired | released,
                   non_neg_integer()}
                | {log, error | warning | info, binary()}
                | {leader, binary(), elected | revoked, non_neg_integer()}
                | {reminder, binary(), binary(), pos_integer()}
                | {reminder_reply, non_neg_integer(),
                   ok | timeout | not_found
                   | {found, integer(), binary()}}
                | {reminder_store, binary()}
                | {map, binary(), binary(), binary() | removed}
                | {map_store, binary(), binary()}.

%% @private Loads the shared library; called by the code server.
-spec init() -> ok | {error, term()}.
init() ->
    erlang:load_nif(filename:join(priv_dir(), ?LIB), 0).

%% @doc The version string of the C library, for example `<<"0.1.0">>'.
-spec version() -> binary().
version() ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Creates an engine for node `name'. With `seeds', the engine joins
%% them itself, in turn every `seed_retry_ms' (default three heartbeats),
%% until a join is answered and it has company. Bad options raise
%% `badarg'.
-spec engine_new(engine_opts()) -> {ok, engine()} | {error, error_reason()}.
engine_new(_Opts) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Feeds the bytes of one message received from peer `From'.
%% Refused input (forged, replayed, garbage) is counted by the engine and
%% answered with `{error, Reason}'; it is never fatal. The MAC of an
%% envelope of 64 KiB and more is verified without the engine lock, so
%% other calls on the engine (registry reads among them) go on meanwhile;
%% the calls for one peer must still come one at a time, in order.
-spec engine_recv(engine(), name(), binary()) -> ok | {error, error_reason()}.
engine_recv(_Engine, _From, _Bytes) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Reports that a connection to `Node' is up.
-spec engine_peer_up(engine(), name()) -> ok | {error, error_reason()}.
engine_peer_up(_Engine, _Node) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Reports that the connection to `Node' is lost.
-spec engine_peer_down(engine(), name()) -> ok | {error, error_reason()}.
engine_peer_down(_Engine, _Node) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Passes the time (milliseconds on the shell's monotonic clock);
%% the NIF reads the wall clock (system time) at the same moment.
-spec engine_tick(engine(), non_neg_integer()) -> ok | {error, error_reason()}.
engine_tick(_Engine, _NowMs) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc When engine_tick/2 is next due, on the same clock.
-spec engine_next_deadline(engine()) -> non_neg_integer().
engine_next_deadline(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Takes up to 256 pending actions, oldest first; call again until
%% it answers `[]'.
-spec engine_drain(engine()) -> [action()] | {error, enomem}.
engine_drain(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Joins the cluster `Contact' belongs to (asynchronous).
-spec engine_join(engine(), name()) -> ok | {error, error_reason()}.
engine_join(_Engine, _Contact) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Leaves the cluster; terminal for this engine (`{error, closed}'
%% when already left).
-spec engine_leave(engine()) -> ok | {error, error_reason()}.
engine_leave(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The live members, sorted bytewise, ourselves included unless we
%% left.
-spec engine_members(engine()) -> [name()] | {error, enomem}.
engine_members(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Injects a partition between two non-empty, disjoint groups; it is
%% gossiped to every member.
-spec engine_partition(engine(), [name()], [name()], drop | defer) ->
          {ok, pos_integer()} | {error, error_reason()}.
engine_partition(_Engine, _A, _B, _Mode) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Heals one partition (healing a healed one is `ok').
-spec engine_heal(engine(), non_neg_integer()) -> ok | {error, error_reason()}.
engine_heal(_Engine, _Ref) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Heals every partition.
-spec engine_heal_all(engine()) -> ok.
engine_heal_all(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The partition table, healed tombstones included, sorted by ref.
-spec engine_partitions(engine()) ->
          [{pos_integer(), drop | defer, boolean(), [name()], [name()]}].
engine_partitions(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Sends one module message (a term in external format) to the
%% Erlang side of peer `To', under the partition rules: `{error, closed}'
%% across a drop partition or without a session, queued in order across a
%% defer one (`{error, too_big}' when that queue is full).
-spec engine_send(engine(), name(), binary()) -> ok | {error, error_reason()}.
engine_send(_Engine, _To, _Etf) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Sends one module message (a term in external format) to the
%% Erlang side of peer `To' through the other members, for a path to To
%% that is cut (a drop partition between the two, or no session): the
%% engine signs it with this node's identity key, every member it has a
%% session with passes it on (at most two relays), and To hands it to
%% its module handler as if it had come straight from this node (see
%% `c_src/core/relay.h'). `ok' once a member took it; `{error, closed}'
%% when none could, `{error, too_big}' over 1 MiB. Queues sends: called
%% through the server ({@link tether_server:engine_call/1}).
-spec engine_relay(engine(), name(), binary()) -> ok | {error, error_reason()}.
engine_relay(_Engine, _To, _Etf) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc engine_recv/3 on a dirty CPU scheduler, for large messages (the
%% MAC check grows with the size, up to 64 MiB).
-spec engine_recv_dirty(engine(), name(), binary()) ->
          ok | {error, error_reason()}.
engine_recv_dirty(_Engine, _From, _Bytes) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc engine_send/3 on a dirty CPU scheduler, for large messages.
-spec engine_send_dirty(engine(), name(), binary()) ->
          ok | {error, error_reason()}.
engine_send_dirty(_Engine, _To, _Etf) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The direct path: seals one module message (a term in external
%% format) for peer `To' and returns the envelope for the caller to carry
%% itself (see {@link tether_rpc}), under the partition rules of
%% engine_send/3: `{error, closed}' across a drop partition or without a
%% session; `deferred' across a defer one (the engine holds the message
%% and sends it on heal, through the server).
-spec engine_seal(engine(), name(), binary()) ->
          {ok, binary()} | deferred | {error, error_reason()}.
engine_seal(_Engine, _To, _Etf) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Opens an envelope that peer `From' sealed with engine_seal/3 and
%% returns the term inside, decoded as `binary_to_term/1' would (new
%% atoms allowed, as Erlang distribution allows them: only a trusted
%% member holding the session can seal). `deferred' when a defer partition holds it (it reaches the
%% module handler through the server on heal); `{error, Reason}' when it
%% is refused (tampered, replayed, a drop partition, no session).
-spec engine_open(engine(), name(), binary()) ->
          {ok, term()} | deferred | {error, error_reason()}.
engine_open(_Engine, _From, _Bytes) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc engine_seal/3 on a dirty CPU scheduler, for large messages.
-spec engine_seal_dirty(engine(), name(), binary()) ->
          {ok, binary()} | deferred | {error, error_reason()}.
engine_seal_dirty(_Engine, _To, _Etf) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc engine_open/3 on a dirty CPU scheduler, for large messages.
-spec engine_open_dirty(engine(), name(), binary()) ->
          {ok, term()} | deferred | {error, error_reason()}.
engine_open_dirty(_Engine, _From, _Bytes) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Trusts `PublicKey' (Ed25519, 32 bytes) as the identity of `Node';
%% `{error, exists}' if Node already has another key.
-spec engine_trust_add(engine(), name(), <<_:256>>) ->
          ok | {error, error_reason()}.
engine_trust_add(_Engine, _Node, _PublicKey) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Name, incarnation, engine time, `left', `join_pending',
%% `join_contact', our identity `public_key', the engine's counters
%% under `stats', and `tick_max_cpu_us': the most CPU time one
%% engine_tick/2 took (a tick seals at most a slice of a healed backlog,
%% so this stays well under a millisecond).
-spec engine_info(engine()) -> #{atom() => term()} | {error, enomem}.
engine_info(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Registers `Name' for the local `Pid' in the engine's registry,
%% stamped at `WallMs' (`erlang:system_time(millisecond)'), and
%% broadcasts it. `Method' says how a lost conflict is reported (0
%% notify, 1 exit, 2 resolve). `no' when the name is held by anyone. The
%% caller monitors Pid and unregisters it.
-spec reg_register(engine(), term(), pid(), 0..2, non_neg_integer()) ->
          yes | no | {error, error_reason()}.
reg_register(_Engine, _Name, _Pid, _Method, _WallMs) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc reg_register/5 on the direct path: the broadcast comes back as
%% envelopes, `{yes, [{Peer, Envelope}]}', for the caller to send to
%% `tether' on each Peer as `{'$tether', node(), Envelope}'.
-spec reg_register_sealed(engine(), term(), pid(), 0..2, non_neg_integer()) ->
          {yes, [{name(), binary()}]} | no | {error, error_reason()}.
reg_register_sealed(_Engine, _Name, _Pid, _Method, _WallMs) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Removes this node's own entry for `Name' and broadcasts that.
-spec reg_unregister(engine(), term()) -> ok | {error, error_reason()}.
reg_unregister(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc reg_unregister/2, only if this node's entry for `Name' holds
%% `Pid': a registrant that lost its name never removes its successor's.
-spec reg_unregister(engine(), term(), pid()) ->
          ok | {error, error_reason()}.
reg_unregister(_Engine, _Name, _Pid) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Whether this node's own entry for `Name' holds `Pid' (a read
%% under the registry's read lock).
-spec reg_holds(engine(), term(), pid()) -> boolean().
reg_holds(_Engine, _Name, _Pid) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The verdict of our registrant's resolver on a conflict the engine
%% asked this node to resolve (a `{reg_resolve, NameEtf, WinnerEtf,
%% LoserEtf}' action): `KeepEtf' is one of the two pid binaries as
%% given, or `<<>>' for none. Our own entry goes unless
%% kept; the other's owner is told to yield, again until it has.
%% `kept_own' when the pid kept lost its entry while the resolver ran:
%% ours stays then, and the others yield to it.
-spec reg_resolve(engine(), binary(), binary()) ->
          ok | kept_own | {error, error_reason()}.
reg_resolve(_Engine, _NameEtf, _KeepEtf) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The pid registered as `Name' anywhere in the cluster, read from
%% this node's table under a read lock (no message, no engine lock).
-spec reg_whereis(engine(), term()) -> pid() | undefined.
reg_whereis(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Every registered name.
-spec reg_names(engine()) -> [term()].
reg_names(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The whole table: `{Name, Pid, OwnerNode, Stamp, Method}'.
-spec reg_entries(engine()) ->
          [{term(), pid(), name(), non_neg_integer(), 0..2}].
reg_entries(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The registry's entry count, table digest and counters.
-spec reg_info(engine()) -> #{atom() => non_neg_integer()} | {error, enomem}.
reg_info(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Registers (or replaces) this node's instance of service `Name'
%% as the local `Pid' with `Meta', and broadcasts it to every member.
%% One instance per service and node; registering again replaces Pid and
%% Meta. `{error, too_big}' past the bounds (a name of 4 KiB, a meta of
%% 64 KiB in external format, 4096 services per node), `{error, invalid}'
%% for a meta that cannot cross (a fun) or after the engine left. Change
%% events reach the shell as `{service, up | down, NameEtf, Node}'
%% actions. Call it through
%% `tether_server:engine_call/1', which sends what it queues; the caller
%% monitors Pid and unregisters.
-spec svc_register(engine(), term(), pid(), term()) ->
          ok | {error, error_reason()}.
svc_register(_Engine, _Name, _Pid, _Meta) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Removes this node's instance of service `Name' and broadcasts
%% that (through `tether_server:engine_call/1', as svc_register/4).
-spec svc_unregister(engine(), term()) -> ok | {error, not_found}.
svc_unregister(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Every instance of service `Name' in the cluster, ours included,
%% in no particular order, read from this node's table under a read lock
%% (no message, no engine lock).
-spec svc_lookup(engine(), term()) -> [{name(), pid(), term()}].
svc_lookup(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc This node's own instance of service `Name' (read lock only).
-spec svc_local(engine(), term()) -> {ok, pid(), term()} | undefined.
svc_local(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Every service with at least one instance, each once.
-spec svc_names(engine()) -> [term()].
svc_names(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The service table's instance count, digest and counters (`added', `removed', `replaced', `syncs_sent', `syncs_recv',
%% `pulls_sent', `bad_msgs', `stale_msgs', `dropped').
-spec svc_info(engine()) -> #{atom() => non_neg_integer()} | {error, enomem}.
svc_info(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

-spec priv_dir() -> file:filename().
priv_dir() ->
    case code:priv_dir(tether) of
        {error, bad_name} ->
            Ebin = filename:dirname(code:which(?MODULE)),
            filename:join(filename:dirname(Ebin), "priv");
        Dir ->
            Dir
    end.

%%% The consistent-hash ring (c_src/core/ring.h)

%% @doc The 64-bit ring hash of Term (its canonical encoding under
%% SipHash-2-4): the same on every member, BEAM or C, and every OTP
%% release. `badarg' for a term with no canonical form (a closure).
-spec ring_hash(term()) -> non_neg_integer().
ring_hash(_Term) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The shard of Term in a ring of Shards (a power of two).
-spec ring_shard(term(), pos_integer()) -> non_neg_integer().
ring_shard(_Term, _Shards) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc A standalone ring of Nodes (names as binaries or ASCII atoms) and
%% Shards shards. `{error, invalid}' for a repeated name; `badarg' for a
%% bad list or a Shards that is not a power of two up to 65536.
-spec ring_new([name() | atom()], pos_integer()) ->
          {ok, ring()} | {error, error_reason()}.
ring_new(_Nodes, _Shards) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc A new ring with Node added (`{error, exists}' when it is a member).
-spec ring_add(ring(), name() | atom()) -> {ok, ring()} | {error, error_reason()}.
ring_add(_Ring, _Node) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc A new ring without Node (`{error, not_found}' when it is none).
-spec ring_remove(ring(), name() | atom()) ->
          {ok, ring()} | {error, error_reason()}.
ring_remove(_Ring, _Node) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The members of a ring, sorted (atoms; binaries for names outside
%% ASCII).
-spec ring_nodes(ring()) -> [atom() | binary()].
ring_nodes(_Ring) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc `{Shards, Members}' of a ring.
-spec ring_info(ring()) -> {pos_integer(), non_neg_integer()}.
ring_info(_Ring) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The primary of Key's shard, or `undefined' in an empty ring.
-spec ring_place(ring(), term()) -> atom() | binary() | undefined.
ring_place(_Ring, _Key) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Up to N distinct owners of Key's shard, best first.
-spec ring_owners(ring(), term(), pos_integer()) -> [atom() | binary()].
ring_owners(_Ring, _Key, _N) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Key's shard in a ring.
-spec ring_shard_of(ring(), term()) -> non_neg_integer().
ring_shard_of(_Ring, _Key) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Up to N distinct owners of Shard, best first (`badarg' for a shard
%% out of range).
-spec ring_shard_owners(ring(), non_neg_integer(), pos_integer()) ->
          [atom() | binary()].
ring_shard_owners(_Ring, _Shard, _N) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The primary of Key in the engine's cluster ring (read under the
%% read lock, no message), or `undefined' with no members.
-spec engine_place(engine(), term()) -> atom() | binary() | undefined.
engine_place(_Engine, _Key) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Up to N distinct owners of Key in the cluster ring, best first.
-spec engine_owners(engine(), term(), pos_integer()) -> [atom() | binary()].
engine_owners(_Engine, _Key, _N) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Key's shard in the cluster ring.
-spec engine_shard(engine(), term()) -> non_neg_integer().
engine_shard(_Engine, _Key) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Up to N distinct owners of Shard in the cluster ring.
-spec engine_shard_owners(engine(), non_neg_integer(), pos_integer()) ->
          [atom() | binary()].
engine_shard_owners(_Engine, _Shard, _N) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Whether this node is the primary of Key's shard.
-spec engine_is_owner(engine(), term()) -> boolean().
engine_is_owner(_Engine, _Key) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc `{RingSize, Generation, OwnShards}': the cluster ring's size and a
%% snapshot of the shards this node owns at that generation.
-spec engine_ring(engine()) ->
          {pos_integer(), non_neg_integer(), [non_neg_integer()]}.
engine_ring(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%%% Leader election (c_src/core/election.h)

%% @doc Makes Pid this node's candidate for Name (through the engine: the
%% tether server calls it). `badarg' for a Pid, Priority (64-bit
%% integer), Quorum (boolean) or Voters (a list of names) of the wrong
%% type.
-spec election_lead(engine(), term(), pid(), integer(), boolean(),
                    [name() | atom()]) ->
          {ok, {leader, pos_integer()}} | {ok, follower}
          | {error, already_candidate | no_quorum | voters_mismatch
             | bad_name | left | too_many_names | error_reason()}.
election_lead(_Engine, _Name, _Pid, _Priority, _Quorum, _Voters) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Ends this node's candidacy for Name (no `revoked').
-spec election_resign(engine(), term()) -> ok | {error, not_candidate}.
election_resign(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc This node's fence for Name while it leads (a read under the read
%% lock, no message); `badarg' for a name that is a closure.
-spec election_fence(engine(), term()) ->
          {ok, pos_integer()} | {error, not_leader | no_quorum}.
election_fence(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Whether this node leads Name now (a read, no message).
-spec election_is_leader(engine(), term()) -> boolean().
election_is_leader(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The leader of Name as this node knows it (a read, no message).
-spec election_leader(engine(), term()) ->
          {ok, atom() | binary(), pid()} | {error, no_leader}.
election_leader(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The live candidates of Name, best first (a read, no message).
-spec election_candidates(engine(), term()) ->
          [{atom() | binary(), integer()}].
election_candidates(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The election module's counters.
-spec election_info(engine()) -> #{atom() => non_neg_integer()}
                                 | {error, enomem}.
election_info(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%%% Reminders (c_src/core/reminders.h)

%% @doc Sets Key's reminder at FireAt (ms, `erlang:system_time/1' scale,
%% any 64-bit integer) with Payload (any term; its external format at
%% most 65536 bytes); Skip: a missed fire is skipped. The outcome comes
%% as the action `{reminder_reply, Ref, ok | timeout}'. `badarg' for
%% arguments of the wrong type.
-spec reminders_set(engine(), term(), integer(), term(), boolean(),
                    non_neg_integer()) ->
          ok | {error, bad_key | payload_too_large | left | error_reason()}.
reminders_set(_Engine, _Key, _FireAt, _Payload, _Skip, _Ref) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Cancels Key's reminder, answered as reminders_set/6 is.
-spec reminders_cancel(engine(), term(), non_neg_integer()) ->
          ok | {error, bad_key | left | error_reason()}.
reminders_cancel(_Engine, _Key, _Ref) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Key's reminder as this node holds it, or `pending' when this
%% node holds no copy: the primary was asked and the answer comes as
%% `{reminder_reply, Ref, {found, FireAt, PayloadEtf} | not_found |
%% timeout}'.
-spec reminders_get(engine(), term(), non_neg_integer()) ->
          {ok, integer(), binary()} | not_found | pending
          | {error, bad_key | error_reason()}.
reminders_get(_Engine, _Key, _Ref) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Tells the engine how many reminder subscribers this node has.
-spec reminders_subscribers(engine(), non_neg_integer()) -> ok.
reminders_subscribers(_Engine, _N) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Feeds one persisted record back at start.
-spec reminders_load(engine(), binary()) -> ok | {error, bad_record}.
reminders_load(_Engine, _Record) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Every record held (live and tombstones), for a compacted log.
-spec reminders_dump(engine()) -> [binary()].
reminders_dump(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The reminders module's counters and `overhead_bytes' (memory
%% beyond keys and payloads).
-spec reminders_info(engine()) -> #{atom() => non_neg_integer()}
                                  | {error, enomem}.
reminders_info(_Engine) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%%% Replicated maps (c_src/core/maps.h, c_src/nif/maps.c)

%% @doc This node hosts map Name (idempotent), tombstones kept TtlMs.
-spec map_host(engine(), term(), non_neg_integer()) ->
          ok | {error, error_reason()}.
map_host(_Engine, _Name, _TtlMs) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc map_host/3, and with Persist true the map's writes yield records
%% for its log: map_put/4's fourth element for a local write,
%% `{map_store, NameEtf, Record}' actions for the others.
-spec map_host(engine(), term(), non_neg_integer(), boolean()) ->
          ok | {error, error_reason()}.
map_host(_Engine, _Name, _TtlMs, _Persist) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Feeds one persisted record of map Name back (at start).
-spec map_load(engine(), term(), binary()) ->
          ok | {error, bad_record | no_such_map | error_reason()}.
map_load(_Engine, _Name, _Record) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The record of every entry of map Name, tombstones included (what a
%% compacted log holds).
-spec map_dump(engine(), term()) -> [binary()] | {error, no_such_map}.
map_dump(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Stops hosting map Name here.
-spec map_unhost(engine(), term()) -> ok | {error, no_such_map}.
map_unhost(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Turns `{map, ...}' actions (subscriber events) for Name on or off.
-spec map_notify(engine(), term(), boolean()) -> ok | {error, no_such_map}.
map_notify(_Engine, _Name, _On) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Writes Key => Value on the direct path: the caller sends each
%% envelope to `tether' on Peer, and tells the server to drain when the
%% third element is true (subscriber events wait); for a persisted map
%% the fourth element is the write's record, which the caller appends to
%% the map's log.
-spec map_put(engine(), term(), term(), term()) ->
          {ok, [{binary(), binary()}], boolean()}
        | {ok, [{binary(), binary()}], boolean(), binary()}
        | {error, no_such_map | too_large | invalid_value | error_reason()}.
map_put(_Engine, _Name, _Key, _Value) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc map_put/4 on a dirty CPU scheduler (large values).
-spec map_put_dirty(engine(), term(), term(), term()) ->
          {ok, [{binary(), binary()}], boolean()}
        | {ok, [{binary(), binary()}], boolean(), binary()}
        | {error, no_such_map | too_large | invalid_value | error_reason()}.
map_put_dirty(_Engine, _Name, _Key, _Value) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Removes Key, as map_put/4 writes.
-spec map_remove(engine(), term(), term()) ->
          {ok, [{binary(), binary()}], boolean()}
        | {ok, [{binary(), binary()}], boolean(), binary()}
        | {error, no_such_map | too_large | error_reason()}.
map_remove(_Engine, _Name, _Key) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Key's value in map Name, read under the read lock.
-spec map_get(engine(), term(), term()) ->
          {ok, term()} | not_found | {error, no_such_map}.
map_get(_Engine, _Name, _Key) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The keys (`keys') or pairs (`pairs') of map Name.
-spec map_list(engine(), term(), keys | pairs) ->
          [term()] | [{term(), term()}] | {error, no_such_map}.
map_list(_Engine, _Name, _What) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc The number of keys of map Name.
-spec map_size(engine(), term()) -> non_neg_integer() | {error, no_such_map}.
map_size(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).

%% @doc Counters of map Name and of the maps module.
-spec map_info(engine(), term()) ->
          #{atom() => non_neg_integer()} | {error, no_such_map}.
map_info(_Engine, _Name) ->
    erlang:nif_error({not_loaded, ?MODULE}).
