/*
 * core/engine.h: tether_engine, the sans-IO cluster engine of one member,
 * as a shell sees it (the C-node's cluster process, the NIF's tether
 * server, the simulator). What an engine module sees is core/module.h.
 *
 * The engine never reads a clock, a socket or a random source. The shell
 * feeds it:
 *   - bytes received from a peer      tether_engine_recv()
 *   - connection events               tether_engine_peer_up/_down()
 *   - the time                        tether_engine_tick(now_ms), and the
 *                                     wall clock tether_engine_set_wall()
 *   - local API calls                 join, leave, members, partition, ...
 * and drains typed actions with tether_engine_next_action() (see
 * tether_action_t below): bytes to SEND to a peer, a peer to CONNECT to,
 * and the events it owes the shell (a MEMBER up or down, a MESSAGE of
 * the shell's own, a registry conflict, a service change). Each shell
 * turns actions into its own terms or calls in one place, a switch over
 * the kinds. tether_engine_next_deadline() says when tick() is next due.
 * Randomness (hello nonces, kx seeds, refs) derives from the configured
 * seed: BLAKE2b keyed by the seed over a counter, so one seed replays byte
 * for byte.
 *
 * Wire. Every byte string exchanged between engines is a hello, a restart
 * notice or a sealed envelope (core/envelope.h). The shell carries it as
 * the Erlang term {'$tether', FromNode, Bytes} to the registered name
 * `tether` on the peer (a BEAM receiver cannot see the sender's node
 * otherwise; the claim is untrusted: a hello or notice must carry
 * FromNode's signature, an envelope opens only under FromNode's session).
 * The table of every message (envelope kind or sealed type byte; the
 * payload of a sealed one is one term in external format):
 *
 *   0x01 HELLO       signed hello: session set-up (envelope.h)
 *   0x02 RESTART     signed restart notice {Name, Incarnation} (envelope.h):
 *                    sent on every peer_up; a peer that holds state of an
 *                    older incarnation of the sender drops it (the member
 *                    goes down and the session starts over), so a peer
 *                    whose distribution connection outlived our restart
 *                    never keeps sending to our old session
 *   0x10 ACK         ok                     session confirmation (server)
 *   0x11 HEARTBEAT   {hb, Inc, MembersDigest}
 *   0x12 JOIN        {join, Inc, [{Param, Value}]}   Params are what members
 *                    must agree on (module-declared, e.g. ring_size)
 *   0x17 JOIN_REFUSED {join_refused, Param, Ours, Theirs}  the contact's
 *                    answer to a join whose parameters differ from its own
 *   0x13 MEMBERS     {members, [{Node, Inc, alive|left}]}
 *   0x14 LEAVE       {leave, Inc}
 *   0x15 PARTITIONS  {partitions, [{Ref, drop|defer, active|healed,
 *                                   [Node], [Node]}]}
 *   0x16 PDIGEST     {pdigest, PartitionsDigest}
 *   0x20 SHELL       any term of the shells' own (Erlang-side plug-ins'
 *                    {Tag, Term}, tether_rpc requests): never decoded by
 *                    the engine, handed to the shell as a MESSAGE action
 *                    (or to the caller of tether_engine_open())
 *   0x21 REGISTRY    the name registry (core/registry.h)
 *   0x22 SERVICE     the cluster service table (core/service_table.h)
 *   (the ring, core/ring.h, has no messages: it follows membership)
 *   0x23 ELECTION    leader election with fences (core/election.h)
 *   0x24 MAPS        replicated last-writer-wins maps (core/maps.h)
 *   0x25 REMINDERS   one-shot reminders on the ring (core/reminders.h)
 *   0x26 RELAY       {relay, Origin, Inc, Dest, Id, Hops, Payload, Sig}:
 *                    a SHELL payload signed by its origin's identity key,
 *                    carried by other members around a cut path
 *                    (core/relay.h); delivered as a MESSAGE action from
 *                    the origin
 *   0x27..0xff       free for new modules (core/module.h); list each here
 *
 * Partitions and liveness (the decision): hellos, restart notices, ACK,
 * PARTITIONS and PDIGEST are the control plane and cross partitions
 * (otherwise a heal could never reach the other side). Everything else is
 * enforced on both send and receive:
 *   - drop: messages vanish (counted), and peers across a drop partition
 *     are reported down at once (calls fail with nodedown at once, as in
 *     Lockstep); they come back up with their next heartbeat after heal.
 *   - defer: messages queue per peer (bounded, overflow counted) and go out
 *     in order on heal. Peers across a defer partition stay members: their
 *     leases are held, because a call in defer mode hangs until heal rather
 *     than failing. Only a real connection loss (peer_down) reports them
 *     down. Heartbeats and member tables are state, not calls: across a
 *     defer partition they are skipped, never queued (fresh ones follow the
 *     heal).
 *
 * Session set-up: on peer_up the node whose name sorts first (the kx
 * client) sends a hello; the other answers every valid hello with its own
 * and a sealed ACK. The client counts the session usable once it opens an
 * envelope from the server, and starts over with a fresh hello if that has
 * not happened within hello_retry_ms. So lost, duplicated or stale hellos
 * cost a retry, never a stuck session.
 *
 * Reconnection: a member we have no connection to (lost, or learnt of
 * from another member) is redialled by CONNECT actions with exponential
 * backoff and jitter, a bounded number of times; then the engine stops
 * asking until a connection comes up by other means (the member dials
 * us, the shell connects for its own traffic, or a join). A usable
 * session resets the count. So a dead or departed node costs each member
 * a few dials, never a dial every few seconds forever.
 *
 * Seeds: an engine configured with seeds joins them itself, in turn,
 * every seed_retry_ms from its first tick, until a join has been answered
 * and it has company, or it left. A pending join (a seed's or the user's)
 * is never replaced by the next seed: it runs until it is answered or
 * times out (join_timeout_ms).
 */
#ifndef TETHER_CORE_ENGINE_H
#define TETHER_CORE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "core/envelope.h"
#include "core/keys.h"
#include "core/membership.h"
#include "core/partition.h"
#include "tether/error.h"

/* Sealed message types (envelope type byte): the table above. */
#define TETHER_MSG_ACK          0x10
#define TETHER_MSG_HEARTBEAT    0x11
#define TETHER_MSG_JOIN         0x12
#define TETHER_MSG_MEMBERS      0x13
#define TETHER_MSG_LEAVE        0x14
#define TETHER_MSG_PARTITIONS   0x15
#define TETHER_MSG_PDIGEST      0x16
#define TETHER_MSG_JOIN_REFUSED 0x17
#define TETHER_MSG_MODULE_MIN   0x20 /* first type beyond the engine's own */
#define TETHER_MSG_SHELL        0x20
#define TETHER_MSG_REGISTRY     0x21
#define TETHER_MSG_SERVICE      0x22
#define TETHER_MSG_ELECTION     0x23
#define TETHER_MSG_MAPS         0x24
#define TETHER_MSG_REMINDERS    0x25
#define TETHER_MSG_RELAY        0x26

#define TETHER_ENGINE_SEED_BYTES               32
#define TETHER_ENGINE_DEFAULT_HB_MS            1000
#define TETHER_ENGINE_DEFAULT_TTL_MS           5000
#define TETHER_ENGINE_DEFAULT_DEFER            1024 /* queued messages per peer */
#define TETHER_ENGINE_DEFAULT_DEFER_BYTES      (64u << 20) /* their bytes */
#define TETHER_ENGINE_LEAVE_ROUNDS             3 /* heartbeats a leave is repeated */
#define TETHER_ENGINE_PEERS_MAX                1024
#define TETHER_ENGINE_SEEDS_MAX                64
#define TETHER_ENGINE_MODULES_MAX              32
#define TETHER_ENGINE_PARAMS_MAX               8
#define TETHER_ENGINE_PARAM_NAME_MAX           16 /* bytes, NUL included */
#define TETHER_ENGINE_DEFAULT_JOIN_TIMEOUT_MS  5000
#define TETHER_ENGINE_DEFAULT_RECONNECT_MAX_MS 10000
#define TETHER_ENGINE_DEFAULT_RECONNECTS       6

/* Defer queues: the largest defer_max_bytes, and the flush after a heal
 * (at most SLICE_BYTES of held sends sealed per tick, a slice every
 * SLICE_MS). A slice is sized to take well under a millisecond, the most a
 * NIF may run on a normal scheduler: its HMAC-SHA-512/256 and copy take
 * about 0.45 ms of CPU for 128 KiB on one core of the development VM
 * (250 MB/s). One slice a millisecond lets a backlog out at up to
 * 128 MiB/s, the default 64 MiB in about half a second. */
#define TETHER_ENGINE_DEFER_BYTES_MAX   ((uint64_t)1 << 40)
#define TETHER_ENGINE_DEFER_SLICE_BYTES (128u << 10)
#define TETHER_ENGINE_DEFER_SLICE_MS    1

typedef struct tether_engine tether_engine_t;

/*
 * Configuration; start from tether_engine_config_default(). Trust: with
 * `cluster_secret` set, identity and trust derive from it; else with
 * `cookie` from the cookie; `identity_seed` (optional) overrides our own
 * identity, whose public key peers must then be given explicitly
 * (tether_engine_trust_add). Pointers are read during tether_engine_new only.
 */
typedef struct tether_engine_config {
    const char *name;     /* node name, 1..255 bytes */
    uint64_t incarnation; /* must grow across restarts of the same name */
    uint32_t heartbeat_ms;
    uint32_t ttl_ms;         /* lease length; > heartbeat_ms */
    uint32_t hello_retry_ms; /* 0: 2 * heartbeat_ms */
    size_t defer_max;        /* per-peer defer queue bound */
    size_t defer_max_bytes;  /* its bound in payload bytes (each direction);
                                0: TETHER_ENGINE_DEFAULT_DEFER_BYTES */
    uint8_t seed[TETHER_ENGINE_SEED_BYTES]; /* randomness for this engine */
    const uint8_t *cluster_secret; /* TETHER_CLUSTER_SECRET_BYTES or NULL */
    const uint8_t *cookie;
    size_t cookie_len;
    const uint8_t *identity_seed; /* TETHER_KEY_SEED_BYTES or NULL */
    const char *const *seeds;     /* nodes to join at start (copied) */
    size_t nseeds;                /* 0..TETHER_ENGINE_SEEDS_MAX */
    uint32_t seed_retry_ms;       /* 0: 3 * heartbeat_ms */
    uint32_t join_timeout_ms;     /* 0: the default; a join not answered
                                     by then ends (TETHER_ACT_JOIN) */
    /* Redials of a member we have no connection to (see Reconnection):
     * at most `reconnect_attempts` CONNECT actions (0: the default, 6)
     * spaced by heartbeat_ms doubling up to reconnect_max_ms (0: 10 s),
     * each +-25%. */
    uint32_t reconnect_max_ms;
    uint32_t reconnect_attempts;
} tether_engine_config_t;

/* A byte string inside an action (valid until the action is released). */
typedef struct tether_bytes {
    const uint8_t *ptr;
    size_t len;
} tether_bytes_t;

/* What an action asks of the shell, or tells it. */
typedef enum tether_action_kind {
    /* Send u.send.bytes to `peer` as {'$tether', OurNode, Bytes}, over an
     * existing connection only (the engine retries what is lost). */
    TETHER_ACT_SEND = 1,
    /* Open a connection to `peer` if there is none (the result comes back
     * as peer_up, or nothing: the engine asks again). */
    TETHER_ACT_CONNECT,
    /* `peer` became a live member (u.member.up = 1) or stopped being one. */
    TETHER_ACT_MEMBER,
    /* A SHELL message (0x20) from `peer`: u.message.etf, authenticated,
     * not validated (decode it with a complete decoder). */
    TETHER_ACT_MESSAGE,
    /* Our registration of a name lost a conflict and is already removed
     * everywhere: tell the registrant (core/registry.h). winner is empty
     * when a resolver kept neither. */
    TETHER_ACT_REG_LOST,
    /* Run our registrant's resolver on a conflict and answer with
     * tether_registry_resolve() (core/registry.h). */
    TETHER_ACT_REG_RESOLVE,
    /* `peer`'s instance of a service came or changed (u.service.up = 1)
     * or went (core/service_table.h). */
    TETHER_ACT_SERVICE,
    /* A join through contact `peer` ended: u.join.status (joined, refused
     * for a parameter both sides set differently, or no answer in time). */
    TETHER_ACT_JOIN,
    /* This node became or stopped being the primary of a shard of the
     * cluster ring (core/ring.h), at ring generation u.shard.generation. */
    TETHER_ACT_SHARD,
    /* A line the shell should log (u.log: level and text). */
    TETHER_ACT_LOG,
    /* Our candidate for u.leader.name (core/election.h) was elected with
     * u.leader.fence (u.leader.elected = 1; again, with a fresh fence,
     * after a heal) or lost the leadership (0). */
    TETHER_ACT_LEADER,
    /* A reminder fires (core/reminders.h): deliver u.reminder to this
     * node's subscribers. */
    TETHER_ACT_REMINDER,
    /* The answer to a reminders call made with u.reminder_reply.ref. */
    TETHER_ACT_REMINDER_REPLY,
    /* Persist u.reminder_store.rec (feed it back with
     * tether_reminders_load() at start). */
    TETHER_ACT_REMINDER_STORE,
    /* What a get answers for u.map.key in hosted map u.map.name changed
     * (core/maps.h; only for a map with notify on): the new value, or
     * removed. */
    TETHER_ACT_MAP,
    /* Persist u.map_store.rec for hosted map u.map_store.name (a map
     * hosted with persist on, core/maps.h): one applied write; feed it
     * back with tether_maps_load() at start. */
    TETHER_ACT_MAP_STORE,
} tether_action_kind_t;

/* u.join.status */
#define TETHER_JOIN_OK      0
#define TETHER_JOIN_REFUSED 1 /* u.join.param differs: ours, theirs */
#define TETHER_JOIN_TIMEOUT 2 /* no answer within join_timeout_ms */

/* u.log.level */
#define TETHER_ACT_LOG_ERROR   0
#define TETHER_ACT_LOG_WARNING 1
#define TETHER_ACT_LOG_INFO    2

/*
 * One action. After tether_engine_next_action() the caller owns it and
 * frees it with tether_engine_action_release(); the byte strings of u
 * live in one block that goes with it.
 */
typedef struct tether_action {
    tether_action_kind_t kind;
    char peer[TETHER_NODE_NAME_MAX + 1]; /* "" where the kind has none */
    union {
        struct {
            tether_bytes_t bytes; /* a hello, notice or sealed envelope */
        } send;
        struct {
            int up;
        } member;
        struct {
            tether_bytes_t etf; /* one term, the sender's bytes */
        } message;
        struct {
            tether_bytes_t name;   /* the name's term (ETF) */
            tether_bytes_t loser;  /* our registrant's pid (ETF) */
            tether_bytes_t winner; /* the kept pid (ETF), or empty */
            int method;            /* TETHER_REG_NOTIFY/_EXIT/_RESOLVE */
        } reg_lost;
        struct {
            tether_bytes_t name;   /* the name's term (ETF) */
            tether_bytes_t winner; /* the earlier registration's pid */
            tether_bytes_t loser;  /* the later one's pid */
        } reg_resolve;
        struct {
            int up;
            tether_bytes_t name; /* the service name's term (ETF) */
        } service;
        struct {
            int status;                               /* TETHER_JOIN_* */
            char param[TETHER_ENGINE_PARAM_NAME_MAX]; /* REFUSED */
            uint64_t ours, theirs;                    /* REFUSED */
        } join;
        struct {
            uint64_t generation;
            uint32_t shard;
            int acquired; /* 1: acquired, 0: released */
        } shard;
        struct {
            int level;           /* TETHER_ACT_LOG_* */
            tether_bytes_t text; /* UTF-8, no NUL */
        } log;
        struct {
            tether_bytes_t name; /* the name's canonical term (ETF) */
            tether_bytes_t cand; /* our candidate's pid (ETF) */
            int elected;         /* 1: elected, 0: revoked */
            uint64_t fence;      /* elected: the fence */
        } leader;
        struct {
            tether_bytes_t key;     /* canonical ETF */
            tether_bytes_t payload; /* ETF */
            uint64_t fence;
        } reminder;
        struct {
            uint64_t ref;
            int status; /* TETHER_REMINDER_* */
            int64_t fire_at;
            tether_bytes_t payload; /* FOUND */
        } reminder_reply;
        struct {
            tether_bytes_t rec;
        } reminder_store;
        struct {
            tether_bytes_t name;  /* the map's name (canonical ETF) */
            tether_bytes_t key;   /* the key (canonical ETF) */
            tether_bytes_t value; /* the new value (ETF); empty if removed */
            int removed;
        } map;
        struct {
            tether_bytes_t name; /* the map's name (canonical ETF) */
            tether_bytes_t rec;  /* the record (see tether_maps_load) */
        } map_store;
    } u;
    void *block; /* private: holds the byte strings above */
} tether_action_t;

/* What happened to input, for tests, the simulator and metrics. */
typedef struct tether_engine_stats {
    uint64_t recv;            /* recv() calls */
    uint64_t recv_garbage;    /* not a tether message at all */
    uint64_t recv_rejected;   /* hello, notice or envelope refused */
    uint64_t recv_bad_term;   /* authenticated but undecodable payload */
    uint64_t recv_unknown;    /* unknown message type or sender */
    uint64_t recv_stale;      /* from an old incarnation or a left node */
    uint64_t sent;            /* SEND actions */
    uint64_t send_no_session; /* a send with no usable session: dropped */
    uint64_t part_dropped;    /* messages dropped by drop partitions */
    uint64_t part_skipped;    /* state messages skipped by defer ones */
    uint64_t part_deferred;   /* messages queued by defer partitions */
    uint64_t defer_overflow;  /* refused because a defer queue was full */
    uint64_t defer_flushed;   /* queued messages sent or handled on heal */
    uint64_t defer_discarded; /* queued messages of a peer that left */
    uint64_t hellos_sent;
    uint64_t sessions_up; /* sessions that became usable */
    uint64_t member_events;
    uint64_t ticks;
    uint64_t restarts_seen;  /* restart notices of a newer incarnation */
    uint64_t seed_joins;     /* joins started from the configured seeds */
    uint64_t joins_refused;  /* joins refused for a parameter (both sides) */
    uint64_t dials;          /* CONNECT actions to members */
    uint64_t dials_given_up; /* members no longer redialled */
    uint64_t peers_freed;    /* entries of gone non-members forgotten */
    uint64_t peers_refused;  /* peers refused: the table was full */
    /* Relayed messages (core/relay.h). */
    uint64_t relay_sent;       /* ours, handed to at least one member */
    uint64_t relay_forwarded;  /* others', passed on */
    uint64_t relay_delivered;  /* for us, handed to the shell */
    uint64_t relay_refused;    /* bad signature, untrusted, malformed */
    uint64_t relay_duplicates; /* seen before (a replay or a second copy) */
    uint64_t relay_stale;      /* from an older incarnation of the origin */
    uint64_t relay_hop_limit;  /* no hops left, or more than allowed */
    uint64_t relay_no_route;   /* no member to pass it on to */
} tether_engine_stats_t;

/* Envelope-accepted hook: called once per envelope opened (for checks). */
typedef void (*tether_engine_open_hook_t)(
    void *ctx, const char *self, const char *from,
    const uint8_t sid[TETHER_ENV_SID_BYTES], uint64_t seq);

/* Fills cfg with defaults (no name, incarnation 1, 1 s heartbeat, 5 s TTL,
 * no seeds). */
void tether_engine_config_default(tether_engine_config_t *cfg);

/* Creates an engine. Returns 0 and *out, TETHER_EINVAL, TETHER_ENOMEM or
 * TETHER_EIO (libsodium). */
TETHER_MUST_CHECK int tether_engine_new(const tether_engine_config_t *cfg,
                                        tether_engine_t **out);

/* Frees the engine, wiping keys, and every undrained action. NULL: no-op.
 * Modules created on it (registry, service table) are freed first. */
void tether_engine_free(tether_engine_t *eng);

/*
 * Inputs. recv/peer_up/peer_down use the time of the last tick. recv
 * returns 0 for a message taken, or the negative reason it was refused
 * (always also counted in the stats; refusing is never fatal). peer_up
 * and peer_down report the shell's connection events; tick passes time
 * (it never goes backwards: an earlier now_ms is taken as the last one).
 */
int tether_engine_recv(tether_engine_t *eng, const char *from,
                       const uint8_t *bytes, size_t len);
int tether_engine_peer_up(tether_engine_t *eng, const char *name);
int tether_engine_peer_down(tether_engine_t *eng, const char *name);
int tether_engine_tick(tether_engine_t *eng, uint64_t now_ms);

/*
 * The size from which a shell may verify an envelope's MAC apart from the
 * engine (64 KiB: below it, the MAC costs less than taking a lock twice).
 */
#define TETHER_ENGINE_VERIFY_APART_BYTES (64u * 1024u)

/*
 * recv in three steps, so that a shell that guards the engine with a lock
 * verifies a large envelope's MAC without holding it (the NIF does; the
 * MAC over 4 MiB takes tens of ms). Under the lock, begin returns 0 and
 * fills *o when `bytes` is a sealed envelope of at least
 * TETHER_ENGINE_VERIFY_APART_BYTES from a peer with a session; otherwise
 * TETHER_EAGAIN (nothing counted): the caller then calls
 * tether_engine_recv() as usual. Without the lock, verify checks the
 * envelope's structure and MAC against *o and touches no engine (its
 * result needs no checking: the verdict stays in *o for end). Under the
 * lock again, end takes the bytes as tether_engine_recv() would, without
 * computing the MAC again, and returns what it would: an envelope whose
 * session was replaced or reset meanwhile is refused (counted as
 * tampered or no_session, as one of an old session is), and the replay
 * window is checked only then. The bytes must not change between the
 * steps; *o is wiped by end.
 */
int tether_engine_recv_begin(tether_engine_t *eng, const char *from,
                             const uint8_t *bytes, size_t len,
                             tether_opener_t *o);
int tether_engine_recv_verify(tether_opener_t *o, const uint8_t *bytes,
                              size_t len);
int tether_engine_recv_end(tether_engine_t *eng, const char *from,
                           const uint8_t *bytes, size_t len,
                           tether_opener_t *o);

/*
 * Tells the engine the shell's wall clock (ms since the Unix epoch) at its
 * current time. Hybrid-logical-clock stamps (registrations, service
 * instances) use it; between two calls the wall clock is taken to advance
 * with tick()'s time. Shells call it with every tick.
 */
void tether_engine_set_wall(tether_engine_t *eng, uint64_t wall_ms);

/* When tick() is next due (ms, the shell's clock): the next heartbeat
 * round, lease expiry, hello retry or module deadline, whichever is first.
 * Before the first tick it is 0 (tick at once). */
uint64_t tether_engine_next_deadline(const tether_engine_t *eng);

/* Takes the oldest pending action: returns 1 and fills *out, or 0. */
int tether_engine_next_action(tether_engine_t *eng, tether_action_t *out);
/* Frees an action's byte strings. NULL: no-op. */
void tether_engine_action_release(tether_action_t *a);
/* For a SEND or MESSAGE action: hands its bytes (u.send.bytes or
 * u.message.etf, malloc'd) over to the caller, who frees them; release()
 * then frees nothing. Saves a copy for a shell that queues the bytes
 * itself. NULL for any other kind. */
uint8_t *tether_engine_action_take(tether_action_t *a);

/* Local API. */
/* Joins the cluster `contact` belongs to; the outcome comes as a
 * TETHER_ACT_JOIN action (joined, refused, or no answer within
 * join_timeout_ms). Returns 0, TETHER_EINVAL, TETHER_ECLOSED (we left),
 * TETHER_ENOMEM. */
int tether_engine_join(tether_engine_t *eng, const char *contact);
/* Leaves the cluster (announced with our incarnation). Terminal: a node
 * that left comes back only as a new incarnation. Returns 0 or
 * TETHER_ECLOSED (already left). */
int tether_engine_leave(tether_engine_t *eng);
/* The live members, sorted (ourselves included unless we left). Fills up
 * to cap pointers (valid until the next input) and returns the count. */
size_t tether_engine_members(tether_engine_t *eng, const char **out,
                             size_t cap);
/* 1 if `name` is a live member. */
int tether_engine_is_member(tether_engine_t *eng, const char *name);

/* Partitions: inject (returns the ref), heal one, heal all, the table. */
TETHER_MUST_CHECK int tether_engine_partition(tether_engine_t *eng,
                                              const char *const *a, size_t na,
                                              const char *const *b, size_t nb,
                                              int mode, uint64_t *ref);
TETHER_MUST_CHECK int tether_engine_heal(tether_engine_t *eng, uint64_t ref);
void tether_engine_heal_all(tether_engine_t *eng);
const tether_partition_table_t *
tether_engine_partitions(const tether_engine_t *eng);

/* Trust an explicit public key for `name`. */
TETHER_MUST_CHECK int tether_engine_trust_add(tether_engine_t *eng,
                                              const char *name,
                                              const uint8_t *pk);
/* Our identity public key (TETHER_KEY_PUBLIC_BYTES). */
const uint8_t *tether_engine_public_key(const tether_engine_t *eng);

/* Flags for tether_engine_send(). */
/* The message is state, not a call: skip it (do not queue it) across a
 * defer partition; a fresh one follows the heal. */
#define TETHER_SEND_STATE 1u

/*
 * Sends one message of a sealed type >= TETHER_MSG_MODULE_MIN (a shell
 * sends TETHER_MSG_SHELL) to a peer, subject to partitions (see above;
 * TETHER_SEND_STATE skips rather than queues in defer). Returns 0 (sent,
 * queued or skipped), TETHER_ECLOSED (no usable session, or a drop
 * partition: the caller answers nodedown; counted), TETHER_ETOOBIG (defer
 * queue full; counted), TETHER_EINVAL.
 */
int tether_engine_send(tether_engine_t *eng, const char *to, uint8_t type,
                       const uint8_t *etf, size_t len, unsigned flags);
/*
 * The direct path, for traffic the shell carries itself (the NIF's RPC
 * calls go from the calling process, not through the server's action
 * queue). tether_engine_seal() applies the rules of tether_engine_send()
 * but hands the sealed envelope to the caller: 0 and *out (malloc'd, the
 * caller frees it) to send to `to` now; TETHER_EAGAIN when a defer
 * partition holds the message (queued in the engine: it goes out as a
 * SEND action on heal); TETHER_ECLOSED (no usable session, a drop
 * partition, we left), TETHER_ETOOBIG (defer queue full), TETHER_EINVAL.
 */
int tether_engine_seal(tether_engine_t *eng, const char *to, uint8_t type,
                       const uint8_t *etf, size_t len, uint8_t **out,
                       size_t *out_len);
/*
 * Opens an envelope of a type >= TETHER_MSG_MODULE_MIN that `from` sealed
 * with tether_engine_seal() and returns its payload instead of handing it
 * on: 0 with *type and *payload (authenticated bytes pointing into bytes,
 * not validated: the caller checks them with a complete decoder) to
 * handle now; TETHER_EAGAIN when a defer partition holds it (it is handed
 * on at heal, as if received then: a SHELL message as a MESSAGE action);
 * TETHER_ECLOSED (a drop partition, we left, session not usable);
 * TETHER_EPROTO (a hello or notice, counted and not handled; or an engine
 * control message, which is handled as tether_engine_recv() would); the
 * envelope's own refusals (TETHER_EAUTH, TETHER_EREPLAY, ...). Every
 * refusal is counted as tether_engine_recv() counts it.
 */
int tether_engine_open(tether_engine_t *eng, const char *from,
                       const uint8_t *bytes, size_t len, uint8_t *type,
                       const uint8_t **payload, size_t *plen);

/* Introspection. */
const char *tether_engine_name(const tether_engine_t *eng);
uint64_t tether_engine_incarnation(const tether_engine_t *eng);
uint64_t tether_engine_now(const tether_engine_t *eng);
int tether_engine_has_left(const tether_engine_t *eng);
/* 1 while a join() has not been answered by its contact. */
int tether_engine_join_pending(const tether_engine_t *eng);
/* The contact a pending join currently goes through ("" if none). */
const char *tether_engine_join_contact(const tether_engine_t *eng);
/* 1 if a session with peer is usable for engine messages. */
int tether_engine_session_up(const tether_engine_t *eng, const char *peer);
const tether_engine_stats_t *tether_engine_stats(const tether_engine_t *eng);

/* One counter of tether_engine_stats_t, named as the field. */
typedef struct tether_engine_stat {
    const char *name;
    uint64_t value;
} tether_engine_stat_t;

#define TETHER_ENGINE_STATS_N 33 /* the counters of tether_engine_stats_t */

/* Every counter of st with its name, in declaration order: the one list
 * the shells' info maps are made from. */
void tether_engine_stats_list(const tether_engine_stats_t *st,
                              tether_engine_stat_t out[TETHER_ENGINE_STATS_N]);
const tether_envelope_stats_t *
tether_engine_envelope_stats(const tether_engine_t *eng);
const tether_membership_t *tether_engine_membership(const tether_engine_t *eng);
void tether_engine_set_open_hook(tether_engine_t *eng,
                                 tether_engine_open_hook_t hook, void *ctx);

#endif /* TETHER_CORE_ENGINE_H */
