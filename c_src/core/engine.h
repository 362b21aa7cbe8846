/*
 * core/engine.h: tether_engine, the sans-IO cluster engine of one member (the
 * "tether_node" of the design; named engine because cnode/node.h owns the
 * tether_node_* prefix for the C-node runtime).
 *
 * The engine never reads a clock, a socket or a random source. The shell
 * (C-node event loop, NIF server, simulator) feeds it:
 *   - bytes received from a peer      tether_engine_recv()
 *   - connection events               tether_engine_peer_up/_down()
 *   - the time                        tether_engine_tick(now_ms)
 *   - local API calls                 join, leave, members, partition, ...
 * and drains actions with tether_engine_next_action(): SEND bytes to a peer,
 * DELIVER a term to a local subscriber, CONNECT to / DISCONNECT from a
 * peer. tether_engine_next_deadline() says when tick() is next needed.
 * Randomness (hello nonces, kx seeds, refs) derives from the configured
 * seed: BLAKE2b keyed by the seed over a counter, so one seed replays byte
 * for byte.
 *
 * Every byte string exchanged between engines is a hello or a sealed
 * envelope (core/envelope.h); the shell carries it as the Erlang term
 * {'$tether', FromNode, Bytes} to the registered name `tether` on the peer
 * (a BEAM receiver cannot see the sender's node otherwise; the claim is
 * untrusted: the envelope only opens under the real peer's session). The
 * envelope's type byte selects the engine message; its payload is one term
 * in external format:
 *   0x10 ACK         ok                     session confirmation (server)
 *   0x11 HEARTBEAT   {hb, Inc, MembersDigest}
 *   0x12 JOIN        {join, Inc}
 *   0x13 MEMBERS     {members, [{Node, Inc, alive|left}]}
 *   0x14 LEAVE       {leave, Inc}
 *   0x15 PARTITIONS  {partitions, [{Ref, drop|defer, active|healed,
 *                                   [Node], [Node]}]}
 *   0x16 PDIGEST     {pdigest, PartitionsDigest}
 *   0x20..0xff       modules (registry, rpc, election, ... ) registered
 *                    with tether_engine_register_module().
 *
 * Partitions and liveness (the decision): hellos, ACK, PARTITIONS and
 * PDIGEST are the control plane and cross partitions (otherwise a heal
 * could never reach the other side). Everything else is enforced on both
 * send and receive:
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

/* Engine message types (envelope type byte). */
#define TETHER_MSG_ACK        0x10
#define TETHER_MSG_HEARTBEAT  0x11
#define TETHER_MSG_JOIN       0x12
#define TETHER_MSG_MEMBERS    0x13
#define TETHER_MSG_LEAVE      0x14
#define TETHER_MSG_PARTITIONS 0x15
#define TETHER_MSG_PDIGEST    0x16
#define TETHER_MSG_MODULE_MIN 0x20 /* first type a module may claim */

#define TETHER_ENGINE_SEED_BYTES     32
#define TETHER_ENGINE_DEFAULT_HB_MS  1000
#define TETHER_ENGINE_DEFAULT_TTL_MS 5000
#define TETHER_ENGINE_DEFAULT_DEFER  1024 /* queued messages per peer */
#define TETHER_ENGINE_LEAVE_ROUNDS   3    /* heartbeats a leave is repeated */
#define TETHER_ENGINE_PEERS_MAX      1024
#define TETHER_ENGINE_SUBS_MAX       256
#define TETHER_ENGINE_MODULES_MAX    32

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
    uint32_t ttl_ms;                        /* lease length; > heartbeat_ms */
    uint32_t hello_retry_ms;                /* 0: 2 * heartbeat_ms */
    size_t defer_max;                       /* per-peer defer queue bound */
    uint8_t seed[TETHER_ENGINE_SEED_BYTES]; /* randomness for this engine */
    const uint8_t *cluster_secret; /* TETHER_CLUSTER_SECRET_BYTES or NULL */
    const uint8_t *cookie;
    size_t cookie_len;
    const uint8_t *identity_seed; /* TETHER_KEY_SEED_BYTES or NULL */
} tether_engine_config_t;

enum tether_engine_action_kind {
    TETHER_ACTION_SEND = 1,   /* send data to peer */
    TETHER_ACTION_DELIVER,    /* give data (one ETF term) to subscriber */
    TETHER_ACTION_CONNECT,    /* open a connection to peer if none */
    TETHER_ACTION_DISCONNECT, /* close the connection (reserved, not yet
                                 emitted) */
};

/* One action; after tether_engine_next_action() the caller owns `data` and
 * frees it with tether_engine_action_release(). */
typedef struct tether_engine_action {
    int kind;
    char peer[TETHER_NODE_NAME_MAX + 1]; /* SEND, CONNECT, DISCONNECT */
    uint64_t subscriber;                 /* DELIVER */
    uint8_t *data;                       /* SEND, DELIVER */
    size_t len;
} tether_engine_action_t;

/* What happened to input, for tests, the simulator and metrics. */
typedef struct tether_engine_stats {
    uint64_t recv;            /* recv() calls */
    uint64_t recv_garbage;    /* not a tether message at all */
    uint64_t recv_rejected;   /* hello or envelope refused by envelope.c */
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
} tether_engine_stats_t;

/*
 * A module of the engine (registry, rpc, election, ring, reminders, maps).
 * It owns one or more message types >= TETHER_MSG_MODULE_MIN (one per
 * registration) and gets hooks; every hook may be NULL. Messages are ETF
 * bytes already validated by tether__etf_validate(), unless the module is
 * `opaque`: then on_message gets the authenticated bytes as they came (any
 * nesting, funs) and must check them with a complete decoder of its own
 * (enif_binary_to_term, tether_term_valid) before reading them.
 */
typedef struct tether_engine_module {
    const char *name;
    uint8_t type;
    int opaque;
    void (*on_message)(tether_engine_t *node, void *ctx, const char *from,
                       const char *etf, size_t len);
    void (*on_session_up)(tether_engine_t *node, void *ctx, const char *peer);
    void (*on_session_down)(tether_engine_t *node, void *ctx, const char *peer);
    void (*on_member)(tether_engine_t *node, void *ctx, const char *name,
                      int up);
    void (*on_tick)(tether_engine_t *node, void *ctx, uint64_t now_ms);
    uint64_t (*next_deadline)(tether_engine_t *node, void *ctx);
} tether_engine_module_t;

/* Flags for tether_engine_send(). */
/* The message is state, not a call: skip it (do not queue it) across a
 * defer partition; a fresh one follows the heal. */
#define TETHER_SEND_STATE 1u

/* Envelope-accepted hook: called once per envelope opened (for checks). */
typedef void (*tether_engine_open_hook_t)(
    void *ctx, const char *self, const char *from,
    const uint8_t sid[TETHER_ENV_SID_BYTES], uint64_t seq);

/* Fills cfg with defaults (no name, incarnation 1, 1 s heartbeat, 5 s TTL). */
void tether_engine_config_default(tether_engine_config_t *cfg);

/* Creates an engine. Returns 0 and *out, TETHER_EINVAL, TETHER_ENOMEM or
 * TETHER_EIO (libsodium). */
TETHER_MUST_CHECK int tether_engine_new(const tether_engine_config_t *cfg,
                                        tether_engine_t **out);

/* Frees the engine, wiping keys, and every undrained action. NULL: no-op. */
void tether_engine_free(tether_engine_t *node);

/*
 * Inputs. recv/peer_up/peer_down use the time of the last tick. recv
 * returns 0 for a message taken, or the negative reason it was refused
 * (always also counted in the stats; refusing is never fatal). peer_up
 * and peer_down report the shell's connection events; tick passes time
 * (it never goes backwards: an earlier now_ms is taken as the last one).
 */
int tether_engine_recv(tether_engine_t *node, const char *from,
                       const uint8_t *bytes, size_t len);
int tether_engine_peer_up(tether_engine_t *node, const char *name);
int tether_engine_peer_down(tether_engine_t *node, const char *name);
int tether_engine_tick(tether_engine_t *node, uint64_t now_ms);

/* When tick() is next due (ms, the shell's clock): the next heartbeat
 * round, lease expiry, hello retry or module deadline, whichever is first.
 * Before the first tick it is 0 (tick at once). */
uint64_t tether_engine_next_deadline(const tether_engine_t *node);

/* Takes the oldest pending action: returns 1 and fills *out, or 0. */
int tether_engine_next_action(tether_engine_t *node,
                              tether_engine_action_t *out);
/* Frees an action's data. */
void tether_engine_action_release(tether_engine_action_t *a);

/* Local API. */
/* Joins the cluster `contact` belongs to. Returns 0, TETHER_EINVAL,
 * TETHER_ECLOSED (we left), TETHER_ENOMEM. */
int tether_engine_join(tether_engine_t *node, const char *contact);
/* Leaves the cluster (announced with our incarnation). Terminal: a node
 * that left comes back only as a new incarnation. Returns 0 or
 * TETHER_ECLOSED (already left). */
int tether_engine_leave(tether_engine_t *node);
/* The live members, sorted (ourselves included unless we left). Fills up
 * to cap pointers (valid until the next input) and returns the count. */
size_t tether_engine_members(tether_engine_t *node, const char **out,
                             size_t cap);
/* 1 if `name` is a live member. */
int tether_engine_is_member(tether_engine_t *node, const char *name);
/* Membership events go to subscriber id `sub` as DELIVER actions with the
 * term {tether_member, up | down, Node}. Returns 0, TETHER_EEXIST,
 * TETHER_ETOOBIG; unsubscribe returns 0 or TETHER_ENOTFOUND. */
TETHER_MUST_CHECK int tether_engine_subscribe(tether_engine_t *node,
                                              uint64_t sub);
TETHER_MUST_CHECK int tether_engine_unsubscribe(tether_engine_t *node,
                                                uint64_t sub);

/* Partitions: inject (returns the ref), heal one, heal all, the table. */
TETHER_MUST_CHECK int tether_engine_partition(tether_engine_t *node,
                                              const char *const *a, size_t na,
                                              const char *const *b, size_t nb,
                                              int mode, uint64_t *ref);
TETHER_MUST_CHECK int tether_engine_heal(tether_engine_t *node, uint64_t ref);
void tether_engine_heal_all(tether_engine_t *node);
const tether_partition_table_t *
tether_engine_partitions(const tether_engine_t *node);

/* Trust an explicit public key for `name`. */
TETHER_MUST_CHECK int tether_engine_trust_add(tether_engine_t *node,
                                              const char *name,
                                              const uint8_t *pk);
/* Our identity public key (TETHER_KEY_PUBLIC_BYTES). */
const uint8_t *tether_engine_public_key(const tether_engine_t *node);

/* Modules. */
TETHER_MUST_CHECK int
tether_engine_register_module(tether_engine_t *node,
                              const tether_engine_module_t *m, void *ctx);
/* Sends a message of a module type to a peer, subject to partitions (see
 * above; TETHER_SEND_STATE skips rather than queues in defer). Returns 0
 * (sent, queued or skipped), TETHER_ECLOSED (no usable session, or a drop
 * partition: the caller answers nodedown; counted), TETHER_ETOOBIG (defer
 * queue full; counted), TETHER_EINVAL. */
int tether_engine_send(tether_engine_t *node, const char *to, uint8_t type,
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
int tether_engine_seal(tether_engine_t *node, const char *to, uint8_t type,
                       const uint8_t *etf, size_t len, uint8_t **out,
                       size_t *out_len);
/*
 * Opens an envelope of a module type that `from` sealed with
 * tether_engine_seal() and returns its payload instead of dispatching it:
 * 0 with *type and *payload (authenticated bytes pointing into bytes, not
 * validated: the caller checks them with a complete decoder, as an opaque
 * module does) to handle now; TETHER_EAGAIN when a defer partition holds
 * it (the module of *type gets it on heal, as if received then);
 * TETHER_ECLOSED (a drop partition, we left, session not usable);
 * TETHER_EPROTO (a hello, counted and not handled; or an engine control
 * message, which is handled as tether_engine_recv() would); the
 * envelope's own refusals (TETHER_EAUTH, TETHER_EREPLAY, ...). Every
 * refusal is counted as tether_engine_recv() counts it.
 */
int tether_engine_open(tether_engine_t *node, const char *from,
                       const uint8_t *bytes, size_t len, uint8_t *type,
                       const uint8_t **payload, size_t *plen);
/*
 * Sends a message of a module type to every live member but us, as
 * tether_engine_send() would to each of them, in member order (flags as
 * there). What one peer refuses (no session, a partition, a full defer
 * queue) is counted in the stats, not returned. Returns 0, TETHER_ECLOSED
 * (we left) or TETHER_EINVAL.
 */
int tether_engine_broadcast(tether_engine_t *node, uint8_t type,
                            const uint8_t *etf, size_t len, unsigned flags);
/* Takes one sealed envelope for peer (len bytes, valid during the call).
 * It must not call into the engine. */
typedef void (*tether_engine_sealed_t)(void *ctx, const char *peer,
                                       const uint8_t *bytes, size_t len);
/*
 * tether_engine_broadcast() on the direct path: seals the message for
 * every live member but us, as tether_engine_seal() would, and hands each
 * envelope that is to go now to sealed(); what a defer partition holds
 * stays queued in the engine (a SEND action on heal), what cannot go is
 * counted. Returns 0, TETHER_ECLOSED (we left) or TETHER_EINVAL.
 */
int tether_engine_broadcast_sealed(tether_engine_t *node, uint8_t type,
                                   const uint8_t *etf, size_t len,
                                   tether_engine_sealed_t sealed, void *ctx);
/* Queues a DELIVER action. Returns 0 or TETHER_ENOMEM. */
TETHER_MUST_CHECK int tether_engine_deliver(tether_engine_t *node, uint64_t sub,
                                            const uint8_t *etf, size_t len);
/* Fills buf with deterministic random bytes from the engine's seed. */
void tether_engine_random(tether_engine_t *node, uint8_t *buf, size_t len);

/* Introspection. */
const char *tether_engine_name(const tether_engine_t *node);
uint64_t tether_engine_incarnation(const tether_engine_t *node);
uint64_t tether_engine_now(const tether_engine_t *node);
int tether_engine_has_left(const tether_engine_t *node);
/* 1 while a join() has not been answered by its contact. */
int tether_engine_join_pending(const tether_engine_t *node);
/* The contact a pending join currently goes through ("" if none). */
const char *tether_engine_join_contact(const tether_engine_t *node);
/* 1 if a session with peer is usable for engine messages. */
int tether_engine_session_up(const tether_engine_t *node, const char *peer);
const tether_engine_stats_t *tether_engine_stats(const tether_engine_t *node);
const tether_envelope_stats_t *
tether_engine_envelope_stats(const tether_engine_t *node);
const tether_membership_t *
tether_engine_membership(const tether_engine_t *node);
void tether_engine_set_open_hook(tether_engine_t *node,
                                 tether_engine_open_hook_t hook, void *ctx);

#endif /* TETHER_CORE_ENGINE_H */
