/*
 * tether/cluster.h: the C-node as a member of a tether cluster.
 *
 * tether_cluster_start() starts the registered C process `tether` on a
 * node: it owns a cluster engine (membership by join, heartbeats and
 * leases, partitions) and speaks exactly the wire format of the BEAM
 * application's tether_server, so BEAM nodes running the `tether`
 * application and C-nodes form one cluster:
 *
 *   {'$tether', FromNode, Bytes}   engine bytes (hellos, signed restart
 *                                  notices, sealed envelopes), to
 *                                  `tether` on the peer, sent only over
 *                                  an existing connection
 *
 * Keys: with neither a cluster secret nor an identity, the cluster secret
 * derives from the node's cookie exactly as on the BEAM side, so nodes
 * sharing a cookie cluster with no configuration. With a secret, every
 * holder of it is trusted; with an identity seed, only the nodes given in
 * `trust` (and, with both, holders of the secret too).
 *
 * From Erlang, the process answers gen_server:call({tether, CNode}, Req)
 * with what the BEAM's tether facade answers:
 *   members                      sorted live members (atoms)
 *   {join, Node}                 ok | {error, Reason}
 *   leave                        ok
 *   {partition, A, B, drop | defer}
 *                                {ok, {tether_partition, Ref}} |
 *                                {error, invalid}
 *   {heal, {tether_partition, Ref}}  ok | {error, not_found}
 *   heal_all                     ok
 *   partitions                   [#{ref, mode, healed, a, b}]
 *   info                         #{name, incarnation, left, join_pending,
 *                                  bad_input, stats => #{...}}
 *   {place, Key}                 Node | undefined      (the ring, as
 *   {owners, Key, N}             [Node]                 tether:place/1,
 *   {shard, Key}                 Shard                  owners/2, shard/1,
 *   {is_owner, Key}              boolean()              is_owner/1,
 *   {shard_owners, Shard, N}     [Node]                 shard_owners/2
 *   ring_size                    pos_integer()          and ring_size/0)
 *   {leader, Name}               {ok, Node, Pid} |      (the election, as
 *                                {error, no_leader}     tether:leader/1,
 *   {is_leader, Name}            boolean()              is_leader/1,
 *   {fence, Name}                {ok, Fence} | {error,  fence/1 and
 *                                not_leader | no_quorum} candidates/1)
 *   {candidates, Name}           [{Node, Priority}]
 * Anything else sent to it (malformed tuples, non-binaries, garbage
 * bytes) is counted in `bad_input` and ignored.
 *
 * Threads: every function here runs on the node's loop thread (or between
 * tether_node_start() and tether_node_run()).
 */
#ifndef TETHER_CLUSTER_H
#define TETHER_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "tether/error.h"
#include "tether/messaging.h"
#include "tether/node.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TETHER_CLUSTER_KEY_BYTES      32   /* secret, seed, public key */
#define TETHER_CLUSTER_HB_MS_DEFAULT  1000 /* heartbeat period */
#define TETHER_CLUSTER_TTL_MS_DEFAULT 5000 /* lease; at least 5 heartbeats */
#define TETHER_CLUSTER_SEEDS_MAX      64   /* --join nodes */
#define TETHER_CLUSTER_TRUST_MAX      256  /* explicitly trusted keys */
#define TETHER_CLUSTER_PROCESS        "tether" /* the registered name */
#define TETHER_CLUSTER_SHARD_SUBS_MAX 16       /* shard subscribers */

/* A node whose Ed25519 public key is trusted. */
typedef struct tether_cluster_trust {
    const char *node; /* full node name */
    uint8_t public_key[TETHER_CLUSTER_KEY_BYTES];
} tether_cluster_trust_t;

/* How to start the cluster; zero fields take the defaults. Copied. */
typedef struct tether_cluster_config {
    const char *const *join; /* seed nodes, tried in turn until one answers */
    size_t njoin;
    uint32_t heartbeat_ms; /* 0: TETHER_CLUSTER_HB_MS_DEFAULT */
    uint32_t ttl_ms;       /* 0: max(5000, 5 * heartbeat); > heartbeat */
    const uint8_t *cluster_secret; /* TETHER_CLUSTER_KEY_BYTES or NULL */
    const uint8_t *identity_seed;  /* TETHER_CLUSTER_KEY_BYTES or NULL */
    const tether_cluster_trust_t *trust;
    size_t ntrust;
    uint32_t ring_size; /* shards of the ring (a power of two); 0: 64.
                           Every member must use the same. */
    uint32_t election_lease_ms; /* quorum-mode leases; 0: 2000 */
    uint64_t defer_max_bytes;   /* bytes a defer partition holds per peer
                                   and direction (1..2^40); 0: 64 MiB */
    /* Messaging channels (tether/messaging.h) besides `default` (which an
     * entry may resize); at most TETHER_MESSAGING_CHANNELS_MAX. */
    const tether_messaging_channel_t *channels;
    size_t nchannels;
    const char *data_dir; /* reminders persist in DIR/reminders-NODE.log
                             (the BEAM's data_dir); NULL: not at all */
    uint32_t reminder_replicas; /* 1..8; 0: 3 (reminder_replicas) */
} tether_cluster_config_t;

/*
 * Starts the `tether` process and its engine on a node, after
 * tether_node_start() (its pids carry the creation epmd gave), then joins
 * the seeds. tether_cnode does this unless --no-cluster is given. Returns 0,
 * TETHER_EINVAL (bad configuration), TETHER_EEXIST (a cluster or another
 * `tether` process already runs), TETHER_ENOMEM or TETHER_EIO (libsodium).
 * Secrets are copied and wiped when the process ends.
 */
TETHER_MUST_CHECK int tether_cluster_start(tether_node_t *node,
                                           const tether_cluster_config_t *cfg);

/*
 * The live members as the engine sees them, sorted, this node included
 * (unless it left). Fills up to cap pointers to names, valid until the
 * loop next runs the cluster (i.e. until the calling handler returns),
 * and returns the number of members (which may exceed cap), or
 * TETHER_ENOTFOUND when the node runs no cluster.
 */
int tether_cluster_members(tether_node_t *node, const char **out, size_t cap);

/* 1 if name is a live member, 0 if not, TETHER_ENOTFOUND (no cluster). */
int tether_cluster_is_member(tether_node_t *node, const char *name);

/*
 * Announces this node as an instance of the service `name` (an atom
 * name) with metadata `meta` (one 131-prefixed term, a map by convention;
 * NULL for #{}), or replaces what was announced. Every member then sees
 * it: tether:get_nodes(Name), tether:get_instances(Name), and
 * tether:call_service(Name, Fun, Args, Opts) runs the C function
 * name:Fun/length(Args) here (register it with tether_function_register);
 * a call of a service this node does not announce answers
 * {error, service_not_available} so the caller tries the next instance.
 * The instance's pid is the registered C process `name` if there is one,
 * else the `tether` process. Kept across engine restarts (leave and join).
 * Loop thread. Returns 0, TETHER_EINVAL, TETHER_ENOTFOUND (no cluster),
 * TETHER_ETOOBIG (too many services or too large a meta), TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_cluster_service_register(tether_node_t *node,
                                                      const char *name,
                                                      const char *meta,
                                                      size_t meta_len);

/* Withdraws the service `name`. Loop thread. Returns 0, TETHER_EINVAL or
 * TETHER_ENOTFOUND (not announced, or no cluster). */
int tether_cluster_service_unregister(tether_node_t *node, const char *name);

/*
 * Registers the local registered process `name` (a C service, say) in the
 * cluster registry under the atom `name`, so every member finds it with
 * tether:whereis_name(Name) and reaches it with {via, tether, Name}. The
 * entry goes when the process exits or this node leaves; if a name held
 * elsewhere wins a conflict after a partition heals, it is dropped here
 * and a warning is logged. Kept across engine restarts. Loop thread.
 * Returns 0, TETHER_EINVAL, TETHER_ENOTFOUND (no such process, or no
 * cluster), TETHER_EEXIST (already registered, here or anywhere),
 * TETHER_ETOOBIG, TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_cluster_register_name(tether_node_t *node,
                                                   const char *name);

/*
 * The consistent-hash ring: every member computes the same placement for
 * a key (see the Erlang facade's tether:place/1). A key is one term in
 * external format, 131-prefixed (ei_x_new_with_version and an encoder).
 * All loop thread.
 *
 * tether_cluster_shard: the key's shard (0..ring size - 1). 0,
 *   TETHER_EINVAL (not one term, or a closure), TETHER_ENOTFOUND.
 * tether_cluster_owners: up to n distinct owners of the key's shard, best
 *   first, into out (names valid until the loop next runs the cluster);
 *   returns how many (all members when fewer), or an error as above.
 * tether_cluster_place: the key's primary into *owner; 0, or
 *   TETHER_ENOTFOUND with no members (or no cluster).
 * tether_cluster_is_owner: 1 if this node is the key's primary, 0 if not.
 * tether_cluster_ring_size: the ring's shards (0 without a cluster).
 */
TETHER_MUST_CHECK int tether_cluster_shard(tether_node_t *node,
                                           const char *key, size_t len,
                                           uint32_t *shard);
int tether_cluster_owners(tether_node_t *node, const char *key, size_t len,
                          const char **out, size_t n);
int tether_cluster_place(tether_node_t *node, const char *key, size_t len,
                         const char **owner);
int tether_cluster_is_owner(tether_node_t *node, const char *key, size_t len);
uint32_t tether_cluster_ring_size(const tether_node_t *node);

/* Called on the loop thread when this node becomes (acquired = 1) or stops
 * being the primary of a shard, at ring generation `generation`. */
typedef void (*tether_cluster_shard_fn)(tether_node_t *node,
                                        uint64_t generation, uint32_t shard,
                                        int acquired, void *ctx);

/*
 * Subscribes fn(ctx) to this node's shard changes and returns a snapshot:
 * the generation and the shards this node owns now (up to cap into owned;
 * their number in *nowned). Events come with later generations only, so
 * the snapshot plus the events always give what tether_cluster_is_owner
 * answers. Returns 0, TETHER_EEXIST (fn and ctx subscribed already),
 * TETHER_ETOOBIG (TETHER_CLUSTER_SHARD_SUBS_MAX subscribers),
 * TETHER_EINVAL, TETHER_ENOTFOUND (no cluster). Unsubscribing returns 0 or
 * TETHER_ENOTFOUND.
 */
TETHER_MUST_CHECK int
tether_cluster_subscribe_shards(tether_node_t *node, tether_cluster_shard_fn fn,
                                void *ctx, uint64_t *generation,
                                uint32_t *owned, size_t cap, size_t *nowned);
int tether_cluster_unsubscribe_shards(tether_node_t *node,
                                      tether_cluster_shard_fn fn, void *ctx);

/*
 * Leader election with fencing tokens (the Erlang facade's tether:lead/2
 * and friends; the same engine module on every member). A name is one
 * term in external format, 131-prefixed; BEAM and C members that give
 * the same term campaign for the same name. All loop thread.
 *
 * tether_cluster_lead makes the local registered process `proc` (NULL:
 * the `tether` process itself, which then only logs its transitions) this
 * node's candidate for name. The process is monitored: when it exits it
 * resigns. Its later transitions arrive in its mailbox as the BEAM's
 * candidates get them:
 *   {tether_leader, Name, {elected, Fence}}   (again, with a fresh
 *                                              fence, after a heal)
 *   {tether_leader, Name, revoked}
 * Returns 0 with *outcome (TETHER_CLUSTER_LEADER with *fence: leading
 * now, no message follows for it; TETHER_CLUSTER_FOLLOWER: a candidate;
 * TETHER_CLUSTER_NO_QUORUM or TETHER_CLUSTER_VOTERS_MISMATCH: refused,
 * not a candidate), or TETHER_EINVAL (bad name, process name or
 * options), TETHER_ENOTFOUND (no such process, or no cluster),
 * TETHER_EEXIST (this node has a candidate for name), TETHER_ETOOBIG,
 * TETHER_ENOMEM. A candidacy outlives a leave and join (it campaigns
 * again on the fresh engine).
 * tether_cluster_resign ends it (no `revoked` is sent: it asked): 0 or
 *   TETHER_ENOTFOUND (no candidate here).
 * tether_cluster_fence: TETHER_CLUSTER_LEADER with *fence while this
 *   node's candidate leads name, TETHER_CLUSTER_NO_QUORUM (a quorum
 *   candidate without a majority of its voters), TETHER_CLUSTER_FOLLOWER
 *   otherwise; or TETHER_EINVAL / TETHER_ENOTFOUND (no cluster).
 * tether_cluster_leader: the leader's node name (as this node knows it)
 *   into leader (cap bytes) and its fence into *fence (may be NULL); 0,
 *   TETHER_ENOTFOUND (no leader, or no cluster), TETHER_ETOOBIG (cap),
 *   TETHER_EINVAL.
 */
#define TETHER_CLUSTER_FOLLOWER        0
#define TETHER_CLUSTER_LEADER          1
#define TETHER_CLUSTER_NO_QUORUM       2
#define TETHER_CLUSTER_VOTERS_MISMATCH 3
#define TETHER_CLUSTER_VOTERS_MAX      64

/* A candidacy's options; zero for the default mode at priority 0. */
typedef struct tether_cluster_lead_opts {
    int64_t priority;          /* higher wins; ties: the lowest node name */
    int quorum;                /* 1: lead only with a majority of voters */
    const char *const *voters; /* quorum: 1..VOTERS_MAX node names */
    size_t nvoters;
} tether_cluster_lead_opts_t;

TETHER_MUST_CHECK int tether_cluster_lead(tether_node_t *node, const char *proc,
                                          const char *name, size_t len,
                                          const tether_cluster_lead_opts_t *o,
                                          int *outcome, uint64_t *fence);
int tether_cluster_resign(tether_node_t *node, const char *name, size_t len);
int tether_cluster_fence(tether_node_t *node, const char *name, size_t len,
                         uint64_t *fence);
int tether_cluster_leader(tether_node_t *node, const char *name, size_t len,
                          char *leader, size_t cap, uint64_t *fence);
/*
 * Replicated maps (core/maps.h; tether:new_map/2 and friends on the
 * BEAM): last-writer-wins maps replicated among the nodes that host
 * them. Names, keys and values are 131-prefixed external-format terms.
 * tether_cluster_map_host: this node hosts the map (idempotent; also
 * `tether_cnode --map NAME`; at most TETHER_CLUSTER_MAPS_MAX). put and
 * remove write (stamped, applied here, sent to the hosts); get copies
 * the value into out[0..cap) and sets *vlen: 1 found, 0 not found,
 * TETHER_ETOOBIG (*vlen says the size). Errors: TETHER_EINVAL (a bad
 * term), TETHER_ENOTFOUND (no such map), TETHER_ETOOBIG (a value over
 * 4 MiB). The `tether' process answers {map_get, Name, Key} and
 * {map_to_list, Name} as the facade does.
 *
 * tether_cluster_map_foreach calls fn(ctx, key, klen, val, vlen) for every
 * live key of the map, in no set order (keys in their canonical
 * encoding, values as written; both 131-prefixed external format, valid
 * during the call only); fn must not write or host maps. 0,
 * TETHER_EINVAL, TETHER_ENOTFOUND.
 *
 * tether_cluster_map_subscribe: fn(ctx, name, nlen, key, klen, val, vlen)
 * runs on the loop thread once per change of what tether_cluster_map_get
 * answers on this node, local or remote, in the order they were applied
 * (as the BEAM's {tether_map, Name, {put, K, V} | {remove, K}}): val is
 * the new value, or NULL when the key went (removed, or collected). The
 * same (fn, ctx) twice is one subscription; at most
 * TETHER_CLUSTER_MAP_SUBS_MAX in all (TETHER_ETOOBIG). fn may unsubscribe
 * itself but must not write or host maps (post such work with
 * tether_node_post). unsubscribe drops (fn, ctx); 0 also when it was not
 * subscribed. Both: TETHER_EINVAL, TETHER_ENOTFOUND (not hosted here).
 *
 * Persistence (as `persist => true' on the BEAM):
 * tether_cluster_map_host_persist hosts a map whose every applied write
 * (this node's, a peer's, or one anti-entropy brought) is appended to a
 * log at DataDir/NodeName/map-<hash>.log (directories made 0700 when first
 * used), DataDir set by tether_cluster_set_data_dir (`--data-dir DIR';
 * default TETHER_CLUSTER_DATA_DIR_DEFAULT under the working directory;
 * TETHER_EINVAL for an empty or too long path or one that is not a
 * directory, TETHER_EEXIST once a persisted map is hosted). Hosting it
 * reads the log back (a torn last record or corrupted records: one log
 * line, the rest kept, a damaged file copied to .corrupt first) and
 * compacts it; the map then catches up with its peers by anti-entropy.
 * Appends are write(2)s on the loop thread; fdatasync runs on a worker,
 * one at a time, so the records appended while one runs share the next
 * (group commit). tether_cluster_map_sync calls fn(ctx, 0) on the loop
 * thread once every write made before the call is on disk (at once,
 * before it returns, when it is already), or fn(ctx, rc) if the sync
 * failed or the cluster stopped (TETHER_ECLOSED): put, then sync, then
 * acknowledge. The log is compacted, on the loop thread, when it holds
 * twice the map's entries and 1,000 records more. Errors: TETHER_ENOTFOUND
 * (no such persisted map), TETHER_EIO (the log cannot be created).
 */
#define TETHER_CLUSTER_MAPS_MAX 32
#define TETHER_CLUSTER_MAP_SUBS_MAX     64
#define TETHER_CLUSTER_DATA_DIR_MAX     3072 /* bytes of a --data-dir path */
typedef void (*tether_cluster_map_fn)(void *ctx, const char *key, size_t klen,
                                      const char *val, size_t vlen);
typedef void (*tether_cluster_map_event_fn)(void *ctx, const char *name,
                                            size_t nlen, const char *key,
                                            size_t klen, const char *val,
                                            size_t vlen);
TETHER_MUST_CHECK int tether_cluster_map_foreach(tether_node_t *node,
                                                 const char *name, size_t nlen,
                                                 tether_cluster_map_fn fn,
                                                 void *ctx);
TETHER_MUST_CHECK int tether_cluster_map_subscribe(
    tether_node_t *node, const char *name, size_t nlen,
    tether_cluster_map_event_fn fn, void *ctx);
int tether_cluster_map_unsubscribe(tether_node_t *node, const char *name,
                                   size_t nlen, tether_cluster_map_event_fn fn,
                                   void *ctx);
#define TETHER_CLUSTER_DATA_DIR_DEFAULT "tether_data"
typedef void (*tether_cluster_map_synced_fn)(void *ctx, int rc);
TETHER_MUST_CHECK int tether_cluster_set_data_dir(tether_node_t *node,
                                                  const char *dir);
TETHER_MUST_CHECK int tether_cluster_map_host_persist(tether_node_t *node,
                                                      const char *name,
                                                      size_t len);
TETHER_MUST_CHECK int tether_cluster_map_sync(tether_node_t *node,
                                              const char *name, size_t nlen,
                                              tether_cluster_map_synced_fn fn,
                                              void *ctx);
TETHER_MUST_CHECK int tether_cluster_map_host(tether_node_t *node,
                                              const char *name, size_t len);
TETHER_MUST_CHECK int tether_cluster_map_put(tether_node_t *node,
                                             const char *name, size_t nlen,
                                             const char *key, size_t klen,
                                             const char *val, size_t vlen);
TETHER_MUST_CHECK int tether_cluster_map_remove(tether_node_t *node,
                                                const char *name, size_t nlen,
                                                const char *key, size_t klen);
int tether_cluster_map_get(tether_node_t *node, const char *name, size_t nlen,
                           const char *key, size_t klen, char *out, size_t cap,
                           size_t *vlen);

/*
 * Reminders (core/reminders.h; tether:remind/4 and friends on the BEAM):
 * one-shot timers stored on the first reminder_replicas owners of the
 * key's shard and fired by its primary, the same engine module as on BEAM
 * members, so a C-node owns, stores, fires and hands off reminders as a
 * BEAM member does. Keys and payloads are 131-prefixed external-format
 * terms (a key as tether_cluster_shard takes it, at most
 * TETHER_CLUSTER_REMINDER_KEY_MAX bytes in the ring's canonical form; a
 * payload at most TETHER_CLUSTER_REMINDER_PAYLOAD_MAX bytes). Times are
 * ms since the Unix epoch (erlang:system_time(millisecond)); any 64-bit
 * value, the past fires at once. With a data_dir every record this node
 * replicates is appended to DIR/reminders-NODE.log and fdatasync'ed before
 * this node acknowledges it; the log is read back at start (a torn tail
 * costs one log line) and the node arms nothing for one TTL then. All
 * loop thread.
 *
 * tether_cluster_remind sets key's reminder (replacing any); flags 0 or
 *   TETHER_CLUSTER_REMINDER_SKIP (missed => skip: a reminder armed by a
 *   handoff or restart more than a second after its time is dropped, not
 *   fired). done(node, status, ctx) (may be NULL) is called once a
 *   majority of the replicas hold it (status 0), or with
 *   TETHER_ETIMEDOUT (no majority in 5 s) or TETHER_ECLOSED (the engine
 *   stopped: leave); never before the call returns. Returns 0 (done
 *   follows), TETHER_EINVAL (a bad term, a closure key, bad flags),
 *   TETHER_ETOOBIG (key or payload too large), TETHER_ENOTFOUND (no
 *   cluster), TETHER_ECLOSED (this node left), TETHER_EAGAIN,
 *   TETHER_ENOMEM.
 * tether_cluster_remind_after: the same at now + delay_ms (converted at
 *   the call, so every member agrees); TETHER_EINVAL past INT64_MAX.
 * tether_cluster_cancel_reminder: a tombstone, answered as remind is.
 * tether_cluster_reminder looks key's reminder up: got(node, status,
 *   fire_at, payload, plen, ctx) with status 1 (found; payload valid
 *   during the call), 0 (none: fired, cancelled, never set) or
 *   TETHER_ETIMEDOUT; called before the call returns when this node holds
 *   a copy, else once the primary answered. Returns 0 or an error as
 *   remind's (got is then not called).
 * tether_cluster_subscribe_reminders: fn(node, key, klen, payload, plen,
 *   fence, ctx) is called for every reminder this node fires; the same
 *   key and fence twice is one reminder delivered twice, never two. With
 *   no subscriber a fire is held (up to 24 h) until one subscribes. 0,
 *   TETHER_EEXIST, TETHER_ETOOBIG (TETHER_CLUSTER_REMINDER_SUBS_MAX),
 *   TETHER_EINVAL, TETHER_ENOTFOUND. Unsubscribing: 0 or TETHER_ENOTFOUND.
 *
 * The `tether' process answers, for Erlang callers, the BEAM server's
 * shapes: {reminder, {set, Key, FireAtMs, Payload, Skip}} -> ok |
 * {error, timeout | bad_key | payload_too_large | left | Reason},
 * {reminder, {cancel, Key}} likewise, {reminder, {get, Key}} ->
 * {ok, FireAtMs, Payload} | not_found | {error, timeout}, and
 * reminder_info -> #{Counter => N} (core/reminders.h's counters).
 */
#define TETHER_CLUSTER_REMINDER_SKIP        1u
#define TETHER_CLUSTER_REMINDER_SUBS_MAX    16
#define TETHER_CLUSTER_REMINDER_KEY_MAX     4096
#define TETHER_CLUSTER_REMINDER_PAYLOAD_MAX 65536
#define TETHER_CLUSTER_REMINDER_REPLICAS_MAX 8

typedef void (*tether_cluster_remind_done_fn)(tether_node_t *node, int status,
                                              void *ctx);
typedef void (*tether_cluster_reminder_got_fn)(tether_node_t *node, int status,
                                               int64_t fire_at,
                                               const char *payload,
                                               size_t plen, void *ctx);
typedef void (*tether_cluster_reminder_fn)(tether_node_t *node,
                                           const char *key, size_t klen,
                                           const char *payload, size_t plen,
                                           uint64_t fence, void *ctx);

TETHER_MUST_CHECK int
tether_cluster_remind(tether_node_t *node, const char *key, size_t klen,
                      int64_t fire_at_ms, const char *payload, size_t plen,
                      unsigned flags, tether_cluster_remind_done_fn done,
                      void *ctx);
TETHER_MUST_CHECK int
tether_cluster_remind_after(tether_node_t *node, const char *key, size_t klen,
                            uint64_t delay_ms, const char *payload,
                            size_t plen, unsigned flags,
                            tether_cluster_remind_done_fn done, void *ctx);
TETHER_MUST_CHECK int
tether_cluster_cancel_reminder(tether_node_t *node, const char *key,
                               size_t klen, tether_cluster_remind_done_fn done,
                               void *ctx);
TETHER_MUST_CHECK int tether_cluster_reminder(tether_node_t *node,
                                              const char *key, size_t klen,
                                              tether_cluster_reminder_got_fn got,
                                              void *ctx);
TETHER_MUST_CHECK int
tether_cluster_subscribe_reminders(tether_node_t *node,
                                   tether_cluster_reminder_fn fn, void *ctx);
int tether_cluster_unsubscribe_reminders(tether_node_t *node,
                                         tether_cluster_reminder_fn fn,
                                         void *ctx);


#ifdef __cplusplus
}
#endif

#endif /* TETHER_CLUSTER_H */
