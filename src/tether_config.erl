%% @doc The application environment of `tether', read and checked.
%%
%% {@link tether_server} reads its configuration here once, at start, so
%% that a bad value (key files included) fails the start of the
%% application with `{bad_config, Detail}'. Keys this module does not
%% know are ignored.
%%
%% == Keys ==
%% <ul>
%% <li>`{cluster_secret_file, Path}': a file of exactly 32 bytes, mode
%%     0600 or stricter; or `{cluster_secret, <<_:256>>}'. Every node
%%     holding the secret derives every member's identity key from it.</li>
%% <li>`{identity_file, Path}': this node's own Ed25519 seed (32 bytes,
%%     0600, as `tether_cnode keygen' writes it), and
%%     `{trusted_keys, [{Node, PublicKey | Path}]}': the public keys of
%%     the nodes to trust. With an identity and no secret, only the
%%     listed nodes are trusted; with both, a peer may be either.</li>
%% <li>With no key configuration at all the secret derives from the
%%     Erlang cookie, so nodes sharing a cookie cluster with no
%%     configuration.</li>
%% <li>`{join, [Node]}': seeds joined at start, tried in turn by the engine
%%     until one answers.</li>
%% <li>`{heartbeat_ms, N}' (default 1000) and `{ttl_ms, N}' (default 5000,
%%     greater than the heartbeat).</li>
%% <li>`{join_timeout_ms, N}' (default 5000): how long a join waits for
%%     its contact's answer before `tether:join/1' gives up.</li>
%% <li>`{reconnect_attempts, N}' (default 6) and `{reconnect_max_ms, N}'
%%     (default 10000): a member this node has no connection to is
%%     redialled at most N times, the waits doubling from `heartbeat_ms'
%%     up to `reconnect_max_ms' with 25% jitter; then no more until a
%%     connection comes up by other means (the member dials in, traffic,
%%     a join).</li>
%% <li>`{ring_size, N}' (default 64): the number of shards of the cluster
%%     ring (see {@link tether_ring}), a power of two up to 65536. Every
%%     member must have the same; a join between nodes that differ is
%%     refused.</li>
%% <li>`{election_lease_ms, N}' (default 2000): the lease a quorum-mode
%%     leader holds from a majority of its voters (see {@link
%%     tether_election}); `{election_voters, [Node]}', the default voter
%%     set of quorum candidacies, is read when `tether:lead/2' is
%%     called.</li>
%% <li>`{defer_max_bytes, N}' (default 67108864, 64 MiB; at most 2^40):
%%     the bytes of messages a `defer' partition holds per peer and
%%     direction (besides at most 1024 messages). A message that would
%%     pass the bound is refused and counted (`defer_overflow' in the
%%     `stats' of {@link tether_server:info/0}); a cast is dropped, a
%%     call answers `{badrpc, nodedown}'. On heal the held messages go
%%     out in order, 4 MiB per tick of the server, so the server answers
%%     other calls meanwhile.</li>
%% <li>Reminders (see {@link tether_reminder}): `{reminder_replicas, N}'
%%     (1..8, default 3), `{reminder_hold_ms, N}' (default 24 h),
%%     `{data_dir, Dir}' (default none: nothing persisted) and
%%     `{reminder_persist, Bool}' (default true: reminders are
%%     persisted under `data_dir').</li>
%% <li>`{service_recheck_ms, N}' (default 5000): the health recheck of
%%     {@link tether_service_server}. A value that is not a positive
%%     integer means the default.</li>
%% </ul>
-module(tether_config).

-export([read/0, service_recheck_ms/0, ring_size/0]).

-export_type([config/0]).

-include_lib("kernel/include/file.hrl").

-define(APP, tether).
-define(DEFAULT_HB_MS, 1000).
-define(DEFAULT_TTL_MS, 5000).
-define(DEFAULT_RECHECK_MS, 5000).
-define(DEFAULT_JOIN_TIMEOUT_MS, 5000).
-define(DEFAULT_RECONNECT_MAX_MS, 10000).
-define(DEFAULT_RECONNECTS, 6).
-define(DEFAULT_RING_SIZE, 64).
-define(DEFAULT_LEASE_MS, 2000).
-define(DEFAULT_DEFER_MAX_BYTES, 64 * 1024 * 1024).
-define(DEFER_MAX_BYTES_MAX, 1 bsl 40).
-define(RING_SIZE_MAX, 65536).
%% Times are sent to the C engine as 32-bit unsigned integers.
-define(U32_MAX, (1 bsl 32) - 1).
-define(KEY_BYTES, 32).

%% The checked configuration of the tether server. `keys' holds
%% `cluster_secret' and `identity_seed' as configured (empty: derive the
%% secret from the cookie); `trust' the explicitly trusted public keys;
%% `join' the seeds.
-type config() :: #{keys := #{cluster_secret => binary(),
                              identity_seed => binary()},
                    trust := [{node(), binary()}],
                    heartbeat_ms := pos_integer(),
                    ttl_ms := pos_integer(),
                    join_timeout_ms := pos_integer(),
                    reconnect_max_ms := pos_integer(),
                    reconnect_attempts := pos_integer(),
                    ring_size := pos_integer(),
                    election_lease_ms := pos_integer(),
                    defer_max_bytes := pos_integer(),
                    reminders := tether_reminder:config(),
                    join := [node()]}.

%% @doc Reads and checks the application env, key files included, so
%% that a bad configuration fails the start at once (only the cookie
%% waits for the engine's start: it exists once the node is distributed).
%% `{error, Detail}' names the first bad key and value (`{ttl_ms, 10}'),
%% or the key file and what is wrong with it (`{key_file_mode, Path}',
%% `{key_file_size, Path}', `{enoent, Path}', ...).
-spec read() -> {ok, config()} | {error, term()}.
read() ->
    Env = application:get_all_env(?APP),
    Get = fun(K, Default) -> proplists:get_value(K, Env, Default) end,
    try
        Hb = check(heartbeat_ms, Get(heartbeat_ms, ?DEFAULT_HB_MS),
                   integer_in(1, ?U32_MAX)),
        Ttl = check(ttl_ms, Get(ttl_ms, max(?DEFAULT_TTL_MS, 5 * Hb)),
                    integer_in(Hb + 1, ?U32_MAX)),
        JoinTimeout = check(join_timeout_ms,
                            Get(join_timeout_ms, ?DEFAULT_JOIN_TIMEOUT_MS),
                            integer_in(1, ?U32_MAX)),
        RingSize = check(ring_size, Get(ring_size, ?DEFAULT_RING_SIZE),
                         fun is_ring_size/1),
        ReconnectMax = check(reconnect_max_ms,
                             Get(reconnect_max_ms, ?DEFAULT_RECONNECT_MAX_MS),
                             integer_in(1, ?U32_MAX)),
        Reconnects = check(reconnect_attempts,
                           Get(reconnect_attempts, ?DEFAULT_RECONNECTS),
                           integer_in(1, 1000)),
        LeaseMs = check(election_lease_ms,
                        Get(election_lease_ms, ?DEFAULT_LEASE_MS),
                        integer_in(1, ?U32_MAX)),
        DeferBytes = check(defer_max_bytes,
                           Get(defer_max_bytes, ?DEFAULT_DEFER_MAX_BYTES),
                           integer_in(1, ?DEFER_MAX_BYTES_MAX)),
        Seeds = check(join, Get(join, []), fun is_atom_list/1),
        Reminders = tether_reminder:read_config(Get),
        Secret = case {Get(cluster_secret_file, undefined),
                       Get(cluster_secret, undefined)} of
                     {undefined, undefined} ->
                         #{};
                     {undefined, B} ->
                         #{cluster_secret => check(cluster_secret, B,
                                                   fun is_key/1)};
                     {Path, _} ->
                         #{cluster_secret => read_key_file(Path, secret)}
                 end,
        Keys = case Get(identity_file, undefined) of
                   undefined -> Secret;
                   IdPath -> Secret#{identity_seed =>
                                         read_key_file(IdPath, secret)}
               end,
        Trusted = check(trusted_keys, Get(trusted_keys, []),
                        fun is_list/1),
        {ok, #{keys => Keys,
               trust => [trusted_entry(X) || X <- Trusted],
               heartbeat_ms => Hb,
               ttl_ms => Ttl,
               join_timeout_ms => JoinTimeout,
               reconnect_max_ms => ReconnectMax,
               reconnect_attempts => Reconnects,
               ring_size => RingSize,
               election_lease_ms => LeaseMs,
               defer_max_bytes => DeferBytes,
               reminders => Reminders,
               join => Seeds}}
    catch
        throw:Reason -> {error, Reason}
    end.

%% @doc The period of the services' health recheck, in milliseconds.
-spec service_recheck_ms() -> pos_integer().
service_recheck_ms() ->
    case application:get_env(?APP, service_recheck_ms) of
        {ok, N} when is_integer(N), N > 0 -> N;
        _ -> ?DEFAULT_RECHECK_MS
    end.

%% @doc The number of shards of the cluster ring: the application env
%% `ring_size' (see the module doc), or the default, 64, when it is unset
%% or invalid (an invalid value fails the start of the application).
-spec ring_size() -> pos_integer().
ring_size() ->
    case application:get_env(?APP, ring_size) of
        {ok, N} -> case is_ring_size(N) of
                       true -> N;
                       false -> ?DEFAULT_RING_SIZE
                   end;
        undefined -> ?DEFAULT_RING_SIZE
    end.

%% The check of an integer from Min to Max (inclusive).
-spec integer_in(integer(), integer()) -> fun((term()) -> boolean()).
integer_in(Min, Max) ->
    fun(V) -> is_integer(V) andalso V >= Min andalso V =< Max end.

-spec is_ring_size(term()) -> boolean().
is_ring_size(N) ->
    is_integer(N) andalso N > 0 andalso N =< ?RING_SIZE_MAX
        andalso N band (N - 1) =:= 0.

-spec check(atom(), term(), fun((term()) -> boolean())) -> term().
check(Key, Value, Pred) ->
    case Pred(Value) of
        true -> Value;
        false -> throw({Key, Value})
    end.

-spec is_atom_list(term()) -> boolean().
is_atom_list(L) ->
    is_list(L) andalso lists:all(fun is_atom/1, L).

-spec is_key(term()) -> boolean().
is_key(B) ->
    is_binary(B) andalso byte_size(B) =:= ?KEY_BYTES.

-spec trusted_entry(term()) -> {node(), binary()}.
trusted_entry({Node, Key}) when is_atom(Node) ->
    {Node, trusted_key(Key)};
trusted_entry(Other) ->
    throw({trusted_keys, Other}).

%% A trusted public key: 32 bytes, or the path of a 32-byte file.
-spec trusted_key(term()) -> binary().
trusted_key(<<_:?KEY_BYTES/binary>> = Key) ->
    Key;
trusted_key(Path) when is_list(Path); is_binary(Path) ->
    read_key_file(Path, public);
trusted_key(Other) ->
    throw({trusted_keys, Other}).

%% Reads a key file of exactly 32 raw bytes (the format `tether_cnode
%% keygen' writes). A secret must be a regular file that neither group
%% nor others may access, as core/keys.h requires of the C-node.
-spec read_key_file(term(), secret | public) -> binary().
read_key_file(Path, Kind) when is_list(Path); is_binary(Path) ->
    case file:read_file_info(Path) of
        {ok, #file_info{type = regular, mode = Mode}}
          when Kind =:= secret, Mode band 8#077 =/= 0 ->
            throw({key_file_mode, Path});
        {ok, #file_info{type = regular}} ->
            case file:read_file(Path) of
                {ok, <<_:?KEY_BYTES/binary>> = Key} -> Key;
                {ok, _} -> throw({key_file_size, Path});
                {error, R} -> throw({R, Path})
            end;
        {ok, #file_info{type = Type}} ->
            throw({key_file_type, Type, Path});
        {error, R} ->
            throw({R, Path})
    end;
read_key_file(Path, _Kind) ->
    throw({key_file, Path}).
