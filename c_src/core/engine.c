/*
 * core/engine.c: the cluster engine of one member (see node.h for inputs,
 * outputs, wire messages and the partition/liveness decision).
 *
 * Per-peer state machine (peer_t), on top of the envelope session's own:
 *
 *   DISCONNECTED  no connection (connected == 0); CONNECT actions are
 *                 issued, at most once per hello_retry_ms, while the peer
 *                 is an alive entry of the member table.
 *   HANDSHAKING   connected, session not usable. The client (our name
 *                 sorts first) sends a fresh hello on entry and again every
 *                 hello_retry_ms; the server answers each valid hello with
 *                 its own hello and an ACK and becomes USABLE at once.
 *   USABLE        usable == 1: the client opened an envelope of the server
 *                 (proof that both hold the same keys). Engine messages
 *                 flow; defer queues are flushed when no partition holds.
 *
 *   peer_up:   any -> HANDSHAKING (session reset)
 *   peer_down: any -> DISCONNECTED (session reset, lease cleared)
 *   an unsolicited server hello at the client: -> HANDSHAKING (fresh hello)
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/engine.h"

#define ACTIONS_INITIAL_CAP 32

typedef struct peer {
    char name[TETHER_NODE_NAME_MAX + 1];
    tether_session_t sess;
    int connected;
    int usable;
    int is_client;
    uint64_t hello_at;   /* when our last hello went out (client) */
    uint64_t connect_at; /* when we last asked the shell to connect */
    int connect_asked;
    tether_defer_queue_t outq; /* held sends (defer partitions) */
    tether_defer_queue_t inq;  /* held receives (defer partitions) */
    uint64_t outq_inc;         /* peer incarnation when outq began */
} peer_t;

typedef struct module_slot {
    tether_engine_module_t m;
    void *ctx;
} module_slot_t;

struct tether_engine {
    char name[TETHER_NODE_NAME_MAX + 1];
    uint64_t incarnation;
    uint64_t hb_ms, ttl_ms, retry_ms;
    size_t defer_max;

    tether_identity_t id;
    tether_trust_t trust;
    tether_envelope_stats_t env_stats;
    uint8_t seed[TETHER_ENGINE_SEED_BYTES];
    uint64_t rng_counter;

    uint64_t now;
    uint64_t next_round; /* 0 until the first tick */
    int left;
    int leave_rounds;

    int join_pending;
    char join_contact[TETHER_NODE_NAME_MAX + 1];
    uint64_t join_at;

    tether_membership_t ms;
    tether_partition_table_t parts;

    peer_t **peers;
    size_t npeers, peers_cap;

    tether_engine_action_t *acts;
    size_t act_head, act_n, act_cap;

    uint64_t subs[TETHER_ENGINE_SUBS_MAX];
    size_t nsubs;

    module_slot_t modules[TETHER_ENGINE_MODULES_MAX];
    size_t nmodules;
    int8_t module_of[256]; /* type -> module index, -1 none */

    tether_engine_open_hook_t open_hook;
    void *open_hook_ctx;

    tether_engine_stats_t stats;
};

/* ---------------------------------------------------------------- utils */

static int valid_name(const char *name)
{
    return tether__node_name_len(name) != 0;
}

void tether_engine_random(tether_engine_t *node, uint8_t *buf, size_t len)
{
    while (len > 0) {
        uint8_t ctr[8], block[crypto_generichash_BYTES_MAX];
        size_t take = len < sizeof block ? len : sizeof block;
        for (int i = 0; i < 8; i++)
            ctr[i] = (uint8_t)(node->rng_counter >> (8 * i));
        node->rng_counter++;
        crypto_generichash(block, sizeof block, ctr, sizeof ctr, node->seed,
                           sizeof node->seed);
        memcpy(buf, block, take);
        sodium_memzero(block, sizeof block);
        buf += take;
        len -= take;
    }
}

static uint64_t random_u64(tether_engine_t *node)
{
    uint8_t b[8];
    uint64_t v = 0;

    tether_engine_random(node, b, sizeof b);
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

/* ---------------------------------------------------------- actions */

static tether_engine_action_t *push_action(tether_engine_t *node, int kind)
{
    tether_engine_action_t *a;

    if (node->act_head + node->act_n == node->act_cap) {
        if (node->act_head > 0) {
            memmove(node->acts, node->acts + node->act_head,
                    node->act_n * sizeof *node->acts);
            node->act_head = 0;
        } else {
            size_t cap =
                node->act_cap ? node->act_cap * 2 : ACTIONS_INITIAL_CAP;
            tether_engine_action_t *v =
                realloc(node->acts, cap * sizeof *node->acts);
            if (v == NULL)
                return NULL;
            node->acts = v;
            node->act_cap = cap;
        }
    }
    a = &node->acts[node->act_head + node->act_n++];
    memset(a, 0, sizeof *a);
    a->kind = kind;
    return a;
}

int tether_engine_next_action(tether_engine_t *node,
                              tether_engine_action_t *out)
{
    if (node->act_n == 0)
        return 0;
    *out = node->acts[node->act_head++];
    node->act_n--;
    if (node->act_n == 0)
        node->act_head = 0;
    return 1;
}

void tether_engine_action_release(tether_engine_action_t *a)
{
    if (a == NULL)
        return;
    free(a->data);
    a->data = NULL;
    a->len = 0;
}

static int act_connect(tether_engine_t *node, const char *peer)
{
    tether_engine_action_t *a = push_action(node, TETHER_ACTION_CONNECT);

    if (a == NULL)
        return TETHER_ENOMEM;
    memcpy(a->peer, peer, strlen(peer) + 1);
    return 0;
}

/* Queues a SEND of `data`, taking ownership of it (freed on failure). */
static int act_send(tether_engine_t *node, const char *peer, uint8_t *data,
                    size_t len)
{
    tether_engine_action_t *a = push_action(node, TETHER_ACTION_SEND);

    if (a == NULL) {
        free(data);
        return TETHER_ENOMEM;
    }
    memcpy(a->peer, peer, strlen(peer) + 1);
    a->data = data;
    a->len = len;
    node->stats.sent++;
    return 0;
}

int tether_engine_deliver(tether_engine_t *node, uint64_t sub,
                          const uint8_t *etf, size_t len)
{
    tether_engine_action_t *a;
    uint8_t *copy = malloc(len ? len : 1);

    if (copy == NULL)
        return TETHER_ENOMEM;
    if (len)
        memcpy(copy, etf, len);
    a = push_action(node, TETHER_ACTION_DELIVER);
    if (a == NULL) {
        free(copy);
        return TETHER_ENOMEM;
    }
    a->subscriber = sub;
    a->data = copy;
    a->len = len;
    return 0;
}

/* ------------------------------------------------------------- peers */

static peer_t *find_peer(const tether_engine_t *node, const char *name)
{
    for (size_t i = 0; i < node->npeers; i++)
        if (strcmp(node->peers[i]->name, name) == 0)
            return node->peers[i];
    return NULL;
}

static peer_t *get_peer(tether_engine_t *node, const char *name)
{
    peer_t *p = find_peer(node, name);

    if (p != NULL)
        return p;
    if (!valid_name(name) || strcmp(name, node->name) == 0 ||
        node->npeers >= TETHER_ENGINE_PEERS_MAX)
        return NULL;
    if (node->npeers == node->peers_cap) {
        size_t cap = node->peers_cap ? node->peers_cap * 2 : 8;
        peer_t **v = realloc(node->peers, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        node->peers = v;
        node->peers_cap = cap;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    memcpy(p->name, name, strlen(name) + 1);
    if (tether__session_init(&p->sess, &node->id, &node->trust, name,
                             &node->env_stats) < 0) {
        free(p);
        return NULL;
    }
    p->is_client = strcmp(node->name, name) < 0;
    tether_defer_init(&p->outq, node->defer_max);
    tether_defer_init(&p->inq, node->defer_max);
    node->peers[node->npeers++] = p;
    return p;
}

static void free_peer(peer_t *p)
{
    tether__session_fini(&p->sess);
    tether_defer_fini(&p->outq);
    tether_defer_fini(&p->inq);
    free(p);
}

/* Forgets the peer get_peer() just created (the last one). */
static void drop_last_peer(tether_engine_t *node)
{
    free_peer(node->peers[--node->npeers]);
}

/* ------------------------------------------------------------ sending */

static int part_mode(const tether_engine_t *node, const char *peer)
{
    return tether_partition_between(&node->parts, node->name, peer);
}

/* Control-plane messages cross partitions. */
static int is_control(uint8_t type)
{
    return type == TETHER_MSG_ACK || type == TETHER_MSG_PARTITIONS ||
           type == TETHER_MSG_PDIGEST;
}

/* State messages are skipped, not queued, across defer partitions. */
static int is_state(uint8_t type)
{
    return type == TETHER_MSG_HEARTBEAT || type == TETHER_MSG_MEMBERS;
}

/* Where a sealed message goes: NULL queues a SEND action; otherwise the
 * bytes are handed to the caller (tether_engine_seal), who sends them. */
typedef struct sealed {
    uint8_t *data;
    size_t len;
} sealed_t;

/* Seals one message on p's session (which must be usable or, for ACK,
 * established) and queues it, or hands it to `direct`. */
static int seal_send(tether_engine_t *node, peer_t *p, uint8_t type,
                     const uint8_t *payload, size_t len, sealed_t *direct)
{
    size_t cap = tether__envelope_sealed_size(len), out_len = 0;
    uint8_t *out = malloc(cap);
    int rc;

    if (out == NULL)
        return TETHER_ENOMEM;
    rc = tether__session_seal(&p->sess, type, payload, len, out, cap, &out_len);
    if (rc < 0) {
        free(out);
        node->stats.send_no_session++;
        return rc;
    }
    if (direct != NULL) {
        direct->data = out;
        direct->len = out_len;
        node->stats.sent++;
        return 0;
    }
    return act_send(node, p->name, out, out_len);
}

/* Sends one engine message to `to` under the partition rules (see
 * sealed_t for `direct`; a message held by a defer partition then
 * answers TETHER_EAGAIN, as nothing is handed out). */
static int send_msg(tether_engine_t *node, const char *to, uint8_t type,
                    const uint8_t *payload, size_t len, unsigned flags,
                    sealed_t *direct)
{
    peer_t *p = find_peer(node, to);
    int mode;

    if (is_control(type)) {
        if (p == NULL || !tether__session_established(&p->sess)) {
            node->stats.send_no_session++;
            return TETHER_ECLOSED;
        }
        return seal_send(node, p, type, payload, len, direct);
    }
    mode = part_mode(node, to);
    if (mode == TETHER_PARTITION_DROP) {
        node->stats.part_dropped++;
        return TETHER_ECLOSED;
    }
    if (mode == TETHER_PARTITION_DEFER) {
        if ((flags & TETHER_SEND_STATE) || is_state(type)) {
            node->stats.part_skipped++;
            return direct != NULL ? TETHER_EAGAIN : 0;
        }
        p = get_peer(node, to);
        if (p == NULL)
            return TETHER_ENOMEM;
        if (p->outq.n == 0)
            p->outq_inc = tether__session_peer_incarnation(&p->sess);
        if (tether_defer_push(&p->outq, type, payload, len) < 0) {
            node->stats.defer_overflow++;
            return TETHER_ETOOBIG;
        }
        node->stats.part_deferred++;
        return direct != NULL ? TETHER_EAGAIN : 0;
    }
    if (p == NULL || !p->usable) {
        node->stats.send_no_session++;
        return TETHER_ECLOSED;
    }
    return seal_send(node, p, type, payload, len, direct);
}

static int send_x(tether_engine_t *node, const char *to, uint8_t type,
                  ei_x_buff *x, int rc)
{
    if (rc == 0)
        rc = send_msg(node, to, type, (const uint8_t *)x->buff,
                      (size_t)x->index, 0, NULL);
    ei_x_free(x);
    return rc;
}

static int send_heartbeat(tether_engine_t *node, const char *to)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 3, "hb");

    if (rc == 0 &&
        (ei_x_encode_ulonglong(&x, node->incarnation) < 0 ||
         ei_x_encode_ulonglong(&x, tether_membership_digest(&node->ms)) < 0))
        rc = TETHER_ENOMEM;
    return send_x(node, to, TETHER_MSG_HEARTBEAT, &x, rc);
}

static int send_inc_msg(tether_engine_t *node, const char *to, uint8_t type,
                        const char *tag)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 2, tag);

    if (rc == 0 && ei_x_encode_ulonglong(&x, node->incarnation) < 0)
        rc = TETHER_ENOMEM;
    return send_x(node, to, type, &x, rc);
}

static int send_members(tether_engine_t *node, const char *to)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 2, "members");

    if (rc == 0)
        rc = tether_membership_encode(&node->ms, &x);
    return send_x(node, to, TETHER_MSG_MEMBERS, &x, rc);
}

static int send_partitions(tether_engine_t *node, const char *to)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 2, "partitions");

    if (rc == 0)
        rc = tether_partition_encode(&node->parts, &x);
    return send_x(node, to, TETHER_MSG_PARTITIONS, &x, rc);
}

static int send_pdigest(tether_engine_t *node, const char *to)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 2, "pdigest");

    if (rc == 0 &&
        ei_x_encode_ulonglong(&x, tether_partition_digest(&node->parts)) < 0)
        rc = TETHER_ENOMEM;
    return send_x(node, to, TETHER_MSG_PDIGEST, &x, rc);
}

static int send_ack(tether_engine_t *node, peer_t *p)
{
    ei_x_buff x;
    int rc;

    if (ei_x_new_with_version(&x) < 0)
        return TETHER_ENOMEM;
    rc = ei_x_encode_atom(&x, "ok") < 0 ? TETHER_ENOMEM : 0;
    if (rc == 0)
        rc = seal_send(node, p, TETHER_MSG_ACK, (const uint8_t *)x.buff,
                       (size_t)x.index, NULL);
    ei_x_free(&x);
    return rc;
}

static int send_hello(tether_engine_t *node, peer_t *p)
{
    uint8_t nonce[TETHER_ENV_NONCE_BYTES], kx[TETHER_ENV_KX_SEED_BYTES];
    uint8_t *out = malloc(TETHER_HELLO_MAX_BYTES);
    size_t len = 0;
    int rc;

    if (out == NULL)
        return TETHER_ENOMEM;
    tether_engine_random(node, nonce, sizeof nonce);
    tether_engine_random(node, kx, sizeof kx);
    rc = tether__session_hello(&p->sess, node->incarnation, nonce, kx, out,
                               TETHER_HELLO_MAX_BYTES, &len);
    sodium_memzero(kx, sizeof kx);
    if (rc < 0) {
        free(out);
        return rc;
    }
    p->hello_at = node->now;
    node->stats.hellos_sent++;
    return act_send(node, p->name, out, len);
}

int tether_engine_send(tether_engine_t *node, const char *to, uint8_t type,
                       const uint8_t *etf, size_t len, unsigned flags)
{
    if (!valid_name(to) || type < TETHER_MSG_MODULE_MIN || etf == NULL ||
        len == 0)
        return TETHER_EINVAL;
    if (node->left)
        return TETHER_ECLOSED;
    return send_msg(node, to, type, etf, len, flags, NULL);
}

int tether_engine_seal(tether_engine_t *node, const char *to, uint8_t type,
                       const uint8_t *etf, size_t len, uint8_t **out,
                       size_t *out_len)
{
    sealed_t direct = {NULL, 0};
    int rc;

    if (out == NULL || out_len == NULL)
        return TETHER_EINVAL;
    *out = NULL;
    *out_len = 0;
    if (!valid_name(to) || type < TETHER_MSG_MODULE_MIN || etf == NULL ||
        len == 0)
        return TETHER_EINVAL;
    if (node->left)
        return TETHER_ECLOSED;
    rc = send_msg(node, to, type, etf, len, 0, &direct);
    if (rc == 0) {
        *out = direct.data;
        *out_len = direct.len;
    }
    return rc;
}

/*
 * Sends (sealed NULL) or seals for sealed() one module message to every
 * live member but us, in member order; see tether_engine_broadcast().
 */
static int broadcast(tether_engine_t *node, uint8_t type, const uint8_t *etf,
                     size_t len, unsigned flags, tether_engine_sealed_t sealed,
                     void *ctx)
{
    if (type < TETHER_MSG_MODULE_MIN || etf == NULL || len == 0)
        return TETHER_EINVAL;
    if (node->left)
        return TETHER_ECLOSED;
    for (size_t i = 0; i < node->ms.n; i++) {
        const tether_member_t *m = &node->ms.v[i];
        sealed_t direct = {NULL, 0};
        if (!m->live || m->is_self)
            continue;
        if (sealed == NULL) {
            (void)send_msg(node, m->name, type, etf, len, flags, NULL);
            continue;
        }
        if (send_msg(node, m->name, type, etf, len, 0, &direct) == 0)
            sealed(ctx, m->name, direct.data, direct.len);
        free(direct.data);
    }
    return 0;
}

int tether_engine_broadcast(tether_engine_t *node, uint8_t type,
                            const uint8_t *etf, size_t len, unsigned flags)
{
    return broadcast(node, type, etf, len, flags, NULL, NULL);
}

int tether_engine_broadcast_sealed(tether_engine_t *node, uint8_t type,
                                   const uint8_t *etf, size_t len,
                                   tether_engine_sealed_t sealed, void *ctx)
{
    if (sealed == NULL)
        return TETHER_EINVAL;
    return broadcast(node, type, etf, len, 0, sealed, ctx);
}

/* ------------------------------------------------------ member events */

static int deliver_member_event(tether_engine_t *node, const char *name, int up)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 3, "tether_member");

    if (rc == 0 && (ei_x_encode_atom(&x, up ? "up" : "down") < 0 ||
                    tether__etf_encode_name(&x, name) < 0))
        rc = TETHER_ENOMEM;
    for (size_t i = 0; rc == 0 && i < node->nsubs; i++)
        rc = tether_engine_deliver(node, node->subs[i], (const uint8_t *)x.buff,
                                   (size_t)x.index);
    ei_x_free(&x);
    return rc;
}

/*
 * Recomputes every entry's liveness at node->now under the partition rules
 * and reports changes to subscribers and modules. Holds the leases of
 * peers across defer partitions, clears those across drop ones.
 */
static void refresh_liveness(tether_engine_t *node)
{
    for (size_t i = 0; i < node->ms.n; i++) {
        tether_member_t *m = &node->ms.v[i];
        char name[TETHER_NODE_NAME_MAX + 1];
        int live;

        if (m->is_self) {
            live = !node->left;
        } else {
            int mode = part_mode(node, m->name);
            if (mode == TETHER_PARTITION_DROP)
                m->lease_until = 0;
            else if (mode == TETHER_PARTITION_DEFER &&
                     m->lease_until > node->now)
                m->lease_until = node->now + node->ttl_ms;
            live = !node->left && tether_membership_lease_ok(m, node->now);
        }
        if (live == m->live)
            continue;
        m->live = live;
        node->stats.member_events++;
        memcpy(name, m->name, sizeof name);
        (void)deliver_member_event(node, name, live);
        for (size_t k = 0; k < node->nmodules; k++)
            if (node->modules[k].m.on_member)
                node->modules[k].m.on_member(node, node->modules[k].ctx, name,
                                             live);
    }
}

/* ------------------------------------------------- sessions and flows */

static void dispatch(tether_engine_t *node, peer_t *p, uint8_t type,
                     const char *buf, size_t len, int from_queue);

/* Sends held messages to p, and handles held receives, once no partition
 * separates us and the session is usable. */
static void flush_peer(tether_engine_t *node, peer_t *p)
{
    tether_defer_item_t it;

    if (part_mode(node, p->name) != TETHER_PARTITION_NONE)
        return;
    if (p->inq.n > 0) {
        while (tether_defer_pop(&p->inq, &it)) {
            node->stats.defer_flushed++;
            dispatch(node, p, it.type, (const char *)it.data, it.len, 1);
            free(it.data);
        }
    }
    if (p->outq.n > 0 && p->usable) {
        uint64_t inc = tether__session_peer_incarnation(&p->sess);
        if (p->outq_inc != 0 && inc != p->outq_inc) {
            /* The peer restarted: the held calls were for its old life. */
            node->stats.defer_discarded += tether_defer_clear(&p->outq);
            return;
        }
        while (tether_defer_pop(&p->outq, &it)) {
            node->stats.defer_flushed++;
            (void)seal_send(node, p, it.type, it.data, it.len, NULL);
            free(it.data);
        }
    }
}

static void flush_all(tether_engine_t *node)
{
    for (size_t i = 0; i < node->npeers; i++)
        flush_peer(node, node->peers[i]);
}

/* The session with p just became usable. */
static void session_up(tether_engine_t *node, peer_t *p)
{
    tether_member_t *m;

    p->usable = 1;
    node->stats.sessions_up++;
    if (node->left) {
        if (node->leave_rounds > 0)
            (void)send_inc_msg(node, p->name, TETHER_MSG_LEAVE, "leave");
        return;
    }
    if (node->parts.n > 0)
        (void)send_partitions(node, p->name);
    if (node->join_pending && strcmp(node->join_contact, p->name) == 0)
        (void)send_inc_msg(node, p->name, TETHER_MSG_JOIN, "join");
    m = tether_membership_find(&node->ms, p->name);
    if (m != NULL && m->status == TETHER_MEMBER_ALIVE)
        (void)send_heartbeat(node, p->name);
    flush_peer(node, p);
    for (size_t k = 0; k < node->nmodules; k++)
        if (node->modules[k].m.on_session_up)
            node->modules[k].m.on_session_up(node, node->modules[k].ctx,
                                             p->name);
}

/* Asks the shell to connect to every alive member we have no connection
 * to, at most once per retry interval each. */
static void connect_pass(tether_engine_t *node)
{
    if (node->left)
        return;
    for (size_t i = 0; i < node->ms.n; i++) {
        tether_member_t *m = &node->ms.v[i];
        peer_t *p;
        if (m->is_self || m->status != TETHER_MEMBER_ALIVE)
            continue;
        p = get_peer(node, m->name);
        if (p == NULL || p->connected)
            continue;
        if (p->connect_asked && node->now < p->connect_at + node->retry_ms)
            continue;
        p->connect_asked = 1;
        p->connect_at = node->now;
        (void)act_connect(node, p->name);
    }
}

/* Drops everything held for a node that left. */
static void discard_queues_of(tether_engine_t *node, const char *name)
{
    peer_t *p = find_peer(node, name);

    if (p == NULL)
        return;
    node->stats.defer_discarded += tether_defer_clear(&p->outq);
    node->stats.defer_discarded += tether_defer_clear(&p->inq);
}

/* --------------------------------------------------------- receiving */

static void handle_heartbeat(tether_engine_t *node, peer_t *p, const char *buf,
                             int idx)
{
    uint64_t inc, digest;

    if (tether__etf_decode_u64(buf, &idx, &inc) < 0 ||
        tether__etf_decode_u64(buf, &idx, &digest) < 0) {
        node->stats.recv_bad_term++;
        return;
    }
    if (tether_membership_heartbeat(&node->ms, p->name, inc, node->now,
                                    node->ttl_ms) < 0) {
        node->stats.recv_stale++;
        return;
    }
    if (digest != tether_membership_digest(&node->ms))
        (void)send_members(node, p->name);
}

static void handle_join(tether_engine_t *node, peer_t *p, const char *buf,
                        int idx)
{
    uint64_t inc;

    if (tether__etf_decode_u64(buf, &idx, &inc) < 0) {
        node->stats.recv_bad_term++;
        return;
    }
    if (tether_membership_heartbeat(&node->ms, p->name, inc, node->now,
                                    node->ttl_ms) < 0) {
        node->stats.recv_stale++;
        return;
    }
    (void)send_members(node, p->name);
    connect_pass(node);
}

/*
 * The join contact answered with its table. The join is done if the
 * contact is still an alive member; a contact that left only relays what
 * it knows, so the join moves on to the next alive member it told us of
 * (in name order), and stays pending if there is none.
 */
static void join_answered(tether_engine_t *node, const char *contact)
{
    const tether_member_t *c = tether_membership_find(&node->ms, contact);
    const tether_member_t *next = NULL;

    if (c != NULL && c->status == TETHER_MEMBER_ALIVE) {
        node->join_pending = 0;
        return;
    }
    for (size_t i = 0; i < node->ms.n; i++) {
        const tether_member_t *m = &node->ms.v[i];
        if (m->is_self || m->status != TETHER_MEMBER_ALIVE)
            continue;
        if (next == NULL || strcmp(m->name, contact) > 0) {
            next = m;
            if (strcmp(m->name, contact) > 0)
                break;
        }
    }
    if (next == NULL)
        return;
    memcpy(node->join_contact, next->name, strlen(next->name) + 1);
    node->join_at = 0; /* retry at the next round */
}

static void handle_members(tether_engine_t *node, peer_t *p, const char *buf,
                           int idx)
{
    int changed = 0, behind = 0;

    if (tether_membership_decode_merge(&node->ms, buf, &idx, &changed,
                                       &behind) < 0) {
        node->stats.recv_bad_term++;
        return;
    }
    if (node->join_pending && strcmp(node->join_contact, p->name) == 0)
        join_answered(node, p->name);
    if (behind)
        (void)send_members(node, p->name);
    if (changed) {
        for (size_t i = 0; i < node->ms.n; i++)
            if (node->ms.v[i].status == TETHER_MEMBER_LEFT)
                discard_queues_of(node, node->ms.v[i].name);
        connect_pass(node);
    }
}

static void handle_leave(tether_engine_t *node, peer_t *p, const char *buf,
                         int idx)
{
    uint64_t inc;

    if (tether__etf_decode_u64(buf, &idx, &inc) < 0) {
        node->stats.recv_bad_term++;
        return;
    }
    if (tether_membership_merge(&node->ms, p->name, inc, TETHER_MEMBER_LEFT) <
        0) {
        node->stats.recv_bad_term++;
        return;
    }
    discard_queues_of(node, p->name);
}

static void partitions_changed(tether_engine_t *node)
{
    refresh_liveness(node);
    flush_all(node);
    /* Held receives handled by the flush (a leave, a join) change the
     * member table: report that before heal() returns, not at the next
     * input. */
    refresh_liveness(node);
}

static void handle_partitions(tether_engine_t *node, peer_t *p, const char *buf,
                              int idx)
{
    int changed = 0, behind = 0;

    if (tether_partition_decode_merge(&node->parts, buf, &idx, &changed,
                                      &behind) < 0) {
        node->stats.recv_bad_term++;
        return;
    }
    if (behind)
        (void)send_partitions(node, p->name);
    if (changed)
        partitions_changed(node);
}

static void handle_pdigest(tether_engine_t *node, peer_t *p, const char *buf,
                           int idx)
{
    uint64_t digest;

    if (tether__etf_decode_u64(buf, &idx, &digest) < 0) {
        node->stats.recv_bad_term++;
        return;
    }
    if (digest != tether_partition_digest(&node->parts))
        (void)send_partitions(node, p->name);
}

/* Checks {Tag, ...} of the given arity; leaves idx after the tag. */
static int expect_tag(const char *buf, int *idx, int arity, const char *tag)
{
    char a[MAXATOMLEN_UTF8];

    if (tether__etf_expect_tuple(buf, idx, arity) < 0 ||
        ei_decode_atom_as(buf, idx, a, sizeof a, ERLANG_UTF8, NULL, NULL) < 0 ||
        strcmp(a, tag) != 0)
        return TETHER_EPROTO;
    return 0;
}

/* The engine's own messages: type byte, {Tag, ...} arity, and handler. */
typedef struct core_msg {
    uint8_t type;
    int arity;
    const char *tag;
    void (*handle)(tether_engine_t *node, peer_t *p, const char *buf, int idx);
} core_msg_t;

static const core_msg_t core_msgs[] = {
    {TETHER_MSG_HEARTBEAT, 3, "hb", handle_heartbeat},
    {TETHER_MSG_JOIN, 2, "join", handle_join},
    {TETHER_MSG_MEMBERS, 2, "members", handle_members},
    {TETHER_MSG_LEAVE, 2, "leave", handle_leave},
    {TETHER_MSG_PARTITIONS, 2, "partitions", handle_partitions},
    {TETHER_MSG_PDIGEST, 2, "pdigest", handle_pdigest},
};

/*
 * Handles one authenticated engine message from p. Partition rules are
 * applied here on receive (the sender may not know a partition yet);
 * from_queue is 1 when a held message is released on heal.
 */
static void dispatch(tether_engine_t *node, peer_t *p, uint8_t type,
                     const char *buf, size_t len, int from_queue)
{
    int idx = 0, version, mode, opaque;

    if (type == TETHER_MSG_ACK)
        return;
    opaque = node->module_of[type] >= 0 &&
             node->modules[node->module_of[type]].m.opaque;
    if (!opaque && (tether__etf_validate(buf, len) < 0 ||
                    ei_decode_version(buf, &idx, &version) < 0)) {
        node->stats.recv_bad_term++;
        return;
    }
    /* A node that left is no member (no heartbeats of its own, no module
     * traffic) but still relays what it knows: member tables, partitions,
     * answers to joins. So knowledge does not leave with it. */
    if (node->left && type >= TETHER_MSG_MODULE_MIN)
        return;
    if (!is_control(type) && !from_queue) {
        mode = part_mode(node, p->name);
        if (mode == TETHER_PARTITION_DROP) {
            node->stats.part_dropped++;
            return;
        }
        if (mode == TETHER_PARTITION_DEFER) {
            if (is_state(type)) {
                node->stats.part_skipped++;
            } else if (tether_defer_push(&p->inq, type, (const uint8_t *)buf,
                                         len) < 0) {
                node->stats.defer_overflow++;
            } else {
                node->stats.part_deferred++;
            }
            return;
        }
    }
    for (size_t i = 0; i < sizeof core_msgs / sizeof core_msgs[0]; i++) {
        const core_msg_t *m = &core_msgs[i];
        if (m->type != type)
            continue;
        if (expect_tag(buf, &idx, m->arity, m->tag) == 0) {
            m->handle(node, p, buf, idx);
            return;
        }
        node->stats.recv_bad_term++;
        return;
    }
    if (node->module_of[type] >= 0) {
        module_slot_t *s = &node->modules[node->module_of[type]];
        if (s->m.on_message)
            s->m.on_message(node, s->ctx, p->name, buf, len);
        return;
    }
    node->stats.recv_unknown++;
}

static int recv_hello(tether_engine_t *node, const char *from,
                      const uint8_t *bytes, size_t len)
{
    int created = find_peer(node, from) == NULL;
    peer_t *p = get_peer(node, from);
    int rc;

    if (p == NULL) {
        node->stats.recv_unknown++;
        return TETHER_EINVAL;
    }
    rc = tether__session_accept(&p->sess, bytes, len);
    if (rc < 0) {
        node->stats.recv_rejected++;
        if (created) /* keep no state for names that proved nothing */
            drop_last_peer(node);
        return rc;
    }
    p->connected = 1;
    if (p->is_client) {
        if (!tether__session_established(&p->sess)) {
            /* A server hello we did not ask for (stale or duplicated):
             * start over with a fresh one rather than answer it. */
            p->usable = 0;
            tether__session_reset(&p->sess);
            return send_hello(node, p);
        }
        return 0; /* usable once an envelope of the server opens */
    }
    /* Server: answer every valid client hello with ours and an ACK. */
    p->usable = 0;
    if (tether__session_wants_hello(&p->sess) && (rc = send_hello(node, p)) < 0)
        return rc;
    if (!tether__session_established(&p->sess))
        return 0;
    if ((rc = send_ack(node, p)) < 0)
        return rc;
    session_up(node, p);
    return 0;
}

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Checks the sender of bytes (untrusted) and says what they are: a
 * hello (TETHER_ENV_TYPE_HELLO), an envelope (the other kind), or the
 * negative reason they are refused (counted). */
static int recv_kind(tether_engine_t *node, const char *from,
                     const uint8_t *bytes, size_t len)
{
    int kind;

    node->stats.recv++;
    if (!valid_name(from) || strcmp(from, node->name) == 0 || bytes == NULL) {
        node->stats.recv_garbage++;
        return TETHER_EINVAL;
    }
    kind = tether__envelope_kind(bytes, len);
    if (kind < 0) {
        node->stats.recv_garbage++;
        return TETHER_EPROTO;
    }
    return kind;
}

/*
 * Opens an envelope from `from` under its session: 1 with *pp, *type and
 * the payload (pointing into bytes) when it is to be handled, 0 when it
 * was authentic but is not for handling (a server that has not made the
 * session usable yet), or the negative reason it was refused (counted).
 */
static int open_envelope(tether_engine_t *node, const char *from,
                         const uint8_t *bytes, size_t len, peer_t **pp,
                         uint8_t *type, const uint8_t **payload, size_t *plen)
{
    peer_t *p = find_peer(node, from);
    int rc;

    if (p == NULL) {
        node->stats.recv_unknown++;
        return TETHER_ENOTFOUND;
    }
    rc = tether__session_open(&p->sess, bytes, len, type, payload, plen);
    if (rc < 0) {
        node->stats.recv_rejected++;
        return rc;
    }
    if (node->open_hook) {
        uint8_t sid[TETHER_ENV_SID_BYTES];
        if (tether__session_id(&p->sess, sid) == 0)
            node->open_hook(node->open_hook_ctx, node->name, p->name, sid,
                            be64(bytes + 2));
    }
    if (!p->usable) {
        if (!p->is_client) {
            node->stats.recv_unknown++;
            return 0; /* server side: usable since its hello went out */
        }
        session_up(node, p);
    }
    *pp = p;
    return 1;
}

int tether_engine_recv(tether_engine_t *node, const char *from,
                       const uint8_t *bytes, size_t len)
{
    const uint8_t *payload = NULL;
    size_t plen = 0;
    uint8_t type = 0;
    peer_t *p = NULL;
    int kind, rc;

    kind = recv_kind(node, from, bytes, len);
    if (kind < 0)
        return kind;
    if (kind == TETHER_ENV_TYPE_HELLO) {
        rc = recv_hello(node, from, bytes, len);
        goto done;
    }
    rc = open_envelope(node, from, bytes, len, &p, &type, &payload, &plen);
    if (rc < 0)
        return rc;
    if (rc == 1)
        dispatch(node, p, type, (const char *)payload, plen, 0);
    rc = 0;
done:
    refresh_liveness(node);
    return rc;
}

int tether_engine_open(tether_engine_t *node, const char *from,
                       const uint8_t *bytes, size_t len, uint8_t *type,
                       const uint8_t **payload, size_t *plen)
{
    peer_t *p = NULL;
    int kind, rc, mode;

    if (type == NULL || payload == NULL || plen == NULL)
        return TETHER_EINVAL;
    *payload = NULL;
    *plen = 0;
    kind = recv_kind(node, from, bytes, len);
    if (kind < 0)
        return kind;
    if (kind == TETHER_ENV_TYPE_HELLO) {
        node->stats.recv_unknown++;
        return TETHER_EPROTO;
    }
    rc = open_envelope(node, from, bytes, len, &p, type, payload, plen);
    if (rc <= 0) {
        *payload = NULL;
        *plen = 0;
        return rc == 0 ? TETHER_ECLOSED : rc;
    }
    if (*type < TETHER_MSG_MODULE_MIN) {
        /* Authentic engine traffic on the shell's direct path: handle it
         * as recv would; there is nothing for the caller. */
        dispatch(node, p, *type, (const char *)*payload, *plen, 0);
        rc = TETHER_EPROTO;
        goto refused;
    }
    if (node->left) {
        rc = TETHER_ECLOSED;
        goto refused;
    }
    mode = part_mode(node, p->name);
    if (mode == TETHER_PARTITION_DROP) {
        node->stats.part_dropped++;
        rc = TETHER_ECLOSED;
        goto refused;
    }
    if (mode == TETHER_PARTITION_DEFER) {
        /* Held like a received message: the module hook gets it on heal. */
        if (tether_defer_push(&p->inq, *type, *payload, *plen) < 0) {
            node->stats.defer_overflow++;
            rc = TETHER_ETOOBIG;
        } else {
            node->stats.part_deferred++;
            rc = TETHER_EAGAIN;
        }
        goto refused;
    }
    refresh_liveness(node);
    return 0;
refused:
    *payload = NULL;
    *plen = 0;
    refresh_liveness(node);
    return rc;
}

/* --------------------------------------------------- connection events */

int tether_engine_peer_up(tether_engine_t *node, const char *name)
{
    peer_t *p;

    if (!valid_name(name) || strcmp(name, node->name) == 0)
        return TETHER_EINVAL;
    p = get_peer(node, name);
    if (p == NULL)
        return TETHER_ENOMEM;
    if (p->usable) /* a new connection replaces the old one */
        for (size_t k = 0; k < node->nmodules; k++)
            if (node->modules[k].m.on_session_down)
                node->modules[k].m.on_session_down(node, node->modules[k].ctx,
                                                   name);
    tether__session_reset(&p->sess);
    p->connected = 1;
    p->usable = 0;
    p->connect_asked = 0;
    if (p->is_client)
        return send_hello(node, p);
    return 0;
}

int tether_engine_peer_down(tether_engine_t *node, const char *name)
{
    peer_t *p;
    int was_usable;

    if (!valid_name(name))
        return TETHER_EINVAL;
    p = find_peer(node, name);
    if (p == NULL)
        return TETHER_ENOTFOUND;
    was_usable = p->usable;
    p->connected = 0;
    p->usable = 0;
    p->connect_asked = 1; /* wait a retry interval before redialling */
    p->connect_at = node->now;
    tether__session_reset(&p->sess);
    tether_membership_expire(&node->ms, name);
    if (was_usable)
        for (size_t k = 0; k < node->nmodules; k++)
            if (node->modules[k].m.on_session_down)
                node->modules[k].m.on_session_down(node, node->modules[k].ctx,
                                                   name);
    refresh_liveness(node);
    return 0;
}

/* ------------------------------------------------------------- timers */

/* One heartbeat round: heartbeats, partition digests, leave repeats,
 * connection and join retries. */
static void round_tick(tether_engine_t *node)
{
    if (node->left) {
        if (node->leave_rounds > 0) {
            node->leave_rounds--;
            for (size_t i = 0; i < node->npeers; i++)
                if (node->peers[i]->usable)
                    (void)send_inc_msg(node, node->peers[i]->name,
                                       TETHER_MSG_LEAVE, "leave");
        }
        return;
    }
    for (size_t i = 0; i < node->ms.n; i++) {
        tether_member_t *m = &node->ms.v[i];
        peer_t *p;
        if (m->is_self || m->status != TETHER_MEMBER_ALIVE)
            continue;
        p = find_peer(node, m->name);
        if (p != NULL && p->usable)
            (void)send_heartbeat(node, m->name);
    }
    if (node->parts.active > 0)
        for (size_t i = 0; i < node->npeers; i++)
            if (node->peers[i]->usable)
                (void)send_pdigest(node, node->peers[i]->name);
    if (node->join_pending && node->now >= node->join_at + node->retry_ms) {
        peer_t *c = find_peer(node, node->join_contact);
        node->join_at = node->now;
        if (c != NULL && c->usable)
            (void)send_inc_msg(node, c->name, TETHER_MSG_JOIN, "join");
        else if (c == NULL || !c->connected)
            (void)act_connect(node, node->join_contact);
    }
    connect_pass(node);
}

int tether_engine_tick(tether_engine_t *node, uint64_t now_ms)
{
    if (now_ms > node->now)
        node->now = now_ms;
    node->stats.ticks++;
    if (node->next_round == 0 || node->now >= node->next_round) {
        node->next_round = node->now + node->hb_ms;
        round_tick(node);
    }
    for (size_t i = 0; i < node->npeers; i++) {
        peer_t *p = node->peers[i];
        if (p->is_client && p->connected && !p->usable &&
            node->now >= p->hello_at + node->retry_ms)
            (void)send_hello(node, p);
    }
    flush_all(node);
    for (size_t k = 0; k < node->nmodules; k++)
        if (node->modules[k].m.on_tick)
            node->modules[k].m.on_tick(node, node->modules[k].ctx, node->now);
    refresh_liveness(node);
    return 0;
}

uint64_t tether_engine_next_deadline(const tether_engine_t *node)
{
    uint64_t d = node->next_round ? node->next_round : node->now;

    for (size_t i = 0; i < node->ms.n; i++) {
        const tether_member_t *m = &node->ms.v[i];
        if (!m->is_self && m->live && m->lease_until < d)
            d = m->lease_until;
    }
    for (size_t i = 0; i < node->npeers; i++) {
        const peer_t *p = node->peers[i];
        if (p->is_client && p->connected && !p->usable &&
            p->hello_at + node->retry_ms < d)
            d = p->hello_at + node->retry_ms;
    }
    for (size_t k = 0; k < node->nmodules; k++) {
        if (node->modules[k].m.next_deadline) {
            uint64_t md = node->modules[k].m.next_deadline(
                (tether_engine_t *)node, node->modules[k].ctx);
            if (md < d)
                d = md;
        }
    }
    return d;
}

/* ---------------------------------------------------------- local API */

int tether_engine_join(tether_engine_t *node, const char *contact)
{
    peer_t *c;

    if (!valid_name(contact))
        return TETHER_EINVAL;
    if (node->left)
        return TETHER_ECLOSED;
    if (strcmp(contact, node->name) == 0)
        return 0;
    c = get_peer(node, contact);
    if (c == NULL)
        return TETHER_ENOMEM;
    memcpy(node->join_contact, contact, strlen(contact) + 1);
    node->join_pending = 1;
    node->join_at = node->now;
    if (c->usable)
        return send_inc_msg(node, contact, TETHER_MSG_JOIN, "join") ==
                       TETHER_ENOMEM
                   ? TETHER_ENOMEM
                   : 0;
    if (!c->connected) {
        c->connect_asked = 1;
        c->connect_at = node->now;
        return act_connect(node, contact);
    }
    return 0;
}

int tether_engine_leave(tether_engine_t *node)
{
    if (node->left)
        return TETHER_ECLOSED;
    tether_membership_leave_self(&node->ms);
    node->join_pending = 0;
    for (size_t i = 0; i < node->npeers; i++)
        if (node->peers[i]->usable)
            (void)send_inc_msg(node, node->peers[i]->name, TETHER_MSG_LEAVE,
                               "leave");
    node->left = 1;
    node->leave_rounds = TETHER_ENGINE_LEAVE_ROUNDS;
    refresh_liveness(node);
    return 0;
}

size_t tether_engine_members(tether_engine_t *node, const char **out,
                             size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < node->ms.n; i++) {
        if (!node->ms.v[i].live)
            continue;
        if (out != NULL && n < cap)
            out[n] = node->ms.v[i].name;
        n++;
    }
    return n;
}

int tether_engine_is_member(tether_engine_t *node, const char *name)
{
    const tether_member_t *m = tether_membership_find(&node->ms, name);

    return m != NULL && m->live;
}

int tether_engine_subscribe(tether_engine_t *node, uint64_t sub)
{
    for (size_t i = 0; i < node->nsubs; i++)
        if (node->subs[i] == sub)
            return TETHER_EEXIST;
    if (node->nsubs == TETHER_ENGINE_SUBS_MAX)
        return TETHER_ETOOBIG;
    node->subs[node->nsubs++] = sub;
    return 0;
}

int tether_engine_unsubscribe(tether_engine_t *node, uint64_t sub)
{
    for (size_t i = 0; i < node->nsubs; i++) {
        if (node->subs[i] == sub) {
            node->subs[i] = node->subs[--node->nsubs];
            return 0;
        }
    }
    return TETHER_ENOTFOUND;
}

static void broadcast_partitions(tether_engine_t *node)
{
    for (size_t i = 0; i < node->npeers; i++)
        if (tether__session_established(&node->peers[i]->sess))
            (void)send_partitions(node, node->peers[i]->name);
}

int tether_engine_partition(tether_engine_t *node, const char *const *a,
                            size_t na, const char *const *b, size_t nb,
                            int mode, uint64_t *ref)
{
    uint64_t r;
    int rc;

    do
        r = random_u64(node);
    while (r == 0 || tether_partition_find(&node->parts, r) != NULL);
    rc = tether_partition_add(&node->parts, r, mode, 0, a, na, b, nb);
    if (rc < 0)
        return rc;
    if (ref != NULL)
        *ref = r;
    broadcast_partitions(node);
    partitions_changed(node);
    return 0;
}

int tether_engine_heal(tether_engine_t *node, uint64_t ref)
{
    int rc = tether_partition_heal(&node->parts, ref);

    if (rc < 0)
        return rc;
    if (rc > 0) {
        broadcast_partitions(node);
        partitions_changed(node);
    }
    return 0;
}

void tether_engine_heal_all(tether_engine_t *node)
{
    if (tether_partition_heal_all(&node->parts) > 0) {
        broadcast_partitions(node);
        partitions_changed(node);
    }
}

const tether_partition_table_t *
tether_engine_partitions(const tether_engine_t *node)
{
    return &node->parts;
}

int tether_engine_trust_add(tether_engine_t *node, const char *name,
                            const uint8_t *pk)
{
    if (!valid_name(name) || pk == NULL)
        return TETHER_EINVAL;
    return tether__trust_add_pubkey(&node->trust, name, pk);
}

const uint8_t *tether_engine_public_key(const tether_engine_t *node)
{
    return node->id.pk;
}

int tether_engine_register_module(tether_engine_t *node,
                                  const tether_engine_module_t *m, void *ctx)
{
    if (m == NULL || m->type < TETHER_MSG_MODULE_MIN)
        return TETHER_EINVAL;
    if (node->module_of[m->type] >= 0)
        return TETHER_EEXIST;
    if (node->nmodules == TETHER_ENGINE_MODULES_MAX)
        return TETHER_ETOOBIG;
    node->modules[node->nmodules].m = *m;
    node->modules[node->nmodules].ctx = ctx;
    node->module_of[m->type] = (int8_t)node->nmodules;
    node->nmodules++;
    return 0;
}

/* ------------------------------------------------------ introspection */

const char *tether_engine_name(const tether_engine_t *node)
{
    return node->name;
}

uint64_t tether_engine_incarnation(const tether_engine_t *node)
{
    return node->incarnation;
}

uint64_t tether_engine_now(const tether_engine_t *node)
{
    return node->now;
}

int tether_engine_has_left(const tether_engine_t *node)
{
    return node->left;
}

int tether_engine_join_pending(const tether_engine_t *node)
{
    return node->join_pending;
}

const char *tether_engine_join_contact(const tether_engine_t *node)
{
    return node->join_pending ? node->join_contact : "";
}

int tether_engine_session_up(const tether_engine_t *node, const char *peer)
{
    const peer_t *p = valid_name(peer) ? find_peer(node, peer) : NULL;

    return p != NULL && p->usable;
}

const tether_engine_stats_t *tether_engine_stats(const tether_engine_t *node)
{
    return &node->stats;
}

const tether_envelope_stats_t *
tether_engine_envelope_stats(const tether_engine_t *node)
{
    return &node->env_stats;
}

const tether_membership_t *tether_engine_membership(const tether_engine_t *node)
{
    return &node->ms;
}

void tether_engine_set_open_hook(tether_engine_t *node,
                                 tether_engine_open_hook_t hook, void *ctx)
{
    node->open_hook = hook;
    node->open_hook_ctx = ctx;
}

/* ---------------------------------------------------------- lifecycle */

void tether_engine_config_default(tether_engine_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->incarnation = 1;
    cfg->heartbeat_ms = TETHER_ENGINE_DEFAULT_HB_MS;
    cfg->ttl_ms = TETHER_ENGINE_DEFAULT_TTL_MS;
    cfg->defer_max = TETHER_ENGINE_DEFAULT_DEFER;
}

/* Sets up identity and trust from the configured key material. */
static int setup_keys(tether_engine_t *node, const tether_engine_config_t *cfg)
{
    tether_identity_t own;
    int rc;

    if (cfg->cluster_secret != NULL)
        rc = tether__keys_from_secret(&node->id, &node->trust, node->name,
                                      cfg->cluster_secret);
    else if (cfg->cookie != NULL)
        rc = tether__keys_from_cookie(&node->id, &node->trust, node->name,
                                      cfg->cookie, cfg->cookie_len);
    else
        rc = tether__trust_init(&node->trust);
    if (rc < 0)
        return rc;
    if (cfg->identity_seed != NULL) {
        rc = tether__identity_from_seed(&own, node->name, cfg->identity_seed);
        if (rc < 0)
            return rc;
        tether__identity_fini(&node->id);
        node->id = own;
        sodium_memzero(&own, sizeof own);
    } else if (cfg->cluster_secret == NULL && cfg->cookie == NULL) {
        return TETHER_EINVAL; /* no identity at all */
    }
    return 0;
}

int tether_engine_new(const tether_engine_config_t *cfg, tether_engine_t **out)
{
    tether_engine_t *node;
    int rc;

    if (cfg == NULL || out == NULL || !valid_name(cfg->name) ||
        cfg->heartbeat_ms == 0 || cfg->ttl_ms <= cfg->heartbeat_ms ||
        cfg->incarnation == 0)
        return TETHER_EINVAL;
    if (tether__crypto_init() < 0)
        return TETHER_EIO;
    node = calloc(1, sizeof *node);
    if (node == NULL)
        return TETHER_ENOMEM;
    memcpy(node->name, cfg->name, strlen(cfg->name) + 1);
    node->incarnation = cfg->incarnation;
    node->hb_ms = cfg->heartbeat_ms;
    node->ttl_ms = cfg->ttl_ms;
    node->retry_ms =
        cfg->hello_retry_ms ? cfg->hello_retry_ms : 2u * cfg->heartbeat_ms;
    node->defer_max = cfg->defer_max ? cfg->defer_max : 1;
    memcpy(node->seed, cfg->seed, sizeof node->seed);
    memset(node->module_of, -1, sizeof node->module_of);
    tether_partition_table_init(&node->parts);
    rc = setup_keys(node, cfg);
    if (rc < 0)
        goto fail;
    rc = tether_membership_init(&node->ms, node->name, node->incarnation);
    if (rc < 0)
        goto fail;
    *out = node;
    return 0;
fail:
    tether_engine_free(node);
    return rc;
}

void tether_engine_free(tether_engine_t *node)
{
    tether_engine_action_t a;

    if (node == NULL)
        return;
    while (tether_engine_next_action(node, &a))
        tether_engine_action_release(&a);
    free(node->acts);
    for (size_t i = 0; i < node->npeers; i++)
        free_peer(node->peers[i]);
    free(node->peers);
    tether_membership_fini(&node->ms);
    tether_partition_table_fini(&node->parts);
    tether__identity_fini(&node->id);
    tether__trust_fini(&node->trust);
    sodium_memzero(node->seed, sizeof node->seed);
    free(node);
}
