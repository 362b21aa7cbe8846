/*
 * core/engine.c: the cluster engine of one member (see engine.h for inputs,
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
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/engine.h"
#include "core/hlc.h"
#include "core/module.h"
#include "core/relay.h"

#define ACTIONS_INITIAL_CAP 32

typedef struct peer {
    char name[TETHER_NODE_NAME_MAX + 1];
    tether_session_t sess;
    int connected;
    int usable;
    int is_client;
    uint64_t hello_at; /* when our last hello went out (client) */
    uint64_t dial_at;  /* no CONNECT action for it before then */
    unsigned dials;    /* CONNECT actions since its last usable session */
    tether_defer_queue_t outq; /* held sends (defer partitions) */
    tether_defer_queue_t inq;  /* held receives (defer partitions) */
    uint64_t outq_inc;         /* peer incarnation when outq began */
    /* The held send being sealed, a slice at a time (seal_slice): taken
     * from outq (data NULL: none); its envelope, when begun, is `out`,
     * sealed by `sealer` on the session whose id is `sid`. */
    struct {
        tether_defer_item_t it;
        uint8_t *out;
        tether_sealer_t sealer;
        uint8_t sid[TETHER_ENV_SID_BYTES];
    } sealing;
} peer_t;

typedef struct module_slot {
    tether_engine_module_t m;
    void *ctx;
} module_slot_t;

struct tether_engine {
    char name[TETHER_NODE_NAME_MAX + 1];
    uint64_t incarnation;
    uint64_t hellos; /* hellos sent this incarnation (their counter) */
    uint64_t hb_ms, ttl_ms, retry_ms;
    uint64_t redial_max_ms;
    unsigned redials;
    size_t defer_max, defer_max_bytes;

    tether_identity_t id;
    tether_trust_t trust;
    tether_envelope_stats_t env_stats;
    uint8_t seed[TETHER_ENGINE_SEED_BYTES];
    uint64_t rng_counter;

    uint64_t now;
    uint64_t next_round; /* 0 until the first tick */
    uint64_t flush_at;   /* no slice of held sends before then */
    int left;
    int leave_rounds;

    int join_pending;
    char join_contact[TETHER_NODE_NAME_MAX + 1];
    char join_first[TETHER_NODE_NAME_MAX + 1]; /* the contact asked */
    uint64_t join_at, join_started, join_timeout_ms;

    /* Parameters members must agree on (tether__engine_set_param). */
    struct {
        char name[TETHER_ENGINE_PARAM_NAME_MAX];
        uint64_t value;
    } params[TETHER_ENGINE_PARAMS_MAX];
    size_t nparams;

    tether_membership_t ms;
    tether_partition_table_t parts;

    peer_t **peers;
    size_t npeers, peers_cap;

    tether_action_t *acts;
    size_t act_head, act_n, act_cap;

    /* Seeds joined at start (tether_engine_config_t.seeds). */
    char (*seeds)[TETHER_NODE_NAME_MAX + 1];
    size_t nseeds, seed_next;
    uint64_t seed_retry_ms, seed_at;
    int seed_started;

    /* The hybrid logical clock of the modules' writes, and the shell's
     * wall clock: wall_base at engine time wall_at. */
    tether_hlc_t hlc;
    uint64_t wall_base, wall_at;
    int wall_set;

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

void tether__engine_random(tether_engine_t *eng, uint8_t *buf, size_t len)
{
    while (len > 0) {
        uint8_t ctr[8], block[crypto_generichash_BYTES_MAX];
        size_t take = len < sizeof block ? len : sizeof block;
        for (int i = 0; i < 8; i++)
            ctr[i] = (uint8_t)(eng->rng_counter >> (8 * i));
        eng->rng_counter++;
        crypto_generichash(block, sizeof block, ctr, sizeof ctr, eng->seed,
                           sizeof eng->seed);
        memcpy(buf, block, take);
        sodium_memzero(block, sizeof block);
        buf += take;
        len -= take;
    }
}

static uint64_t random_u64(tether_engine_t *eng)
{
    uint8_t b[8];
    uint64_t v = 0;

    tether__engine_random(eng, b, sizeof b);
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return v;
}

/* ---------------------------------------------------------- actions */

/* A free slot at the tail of the action queue, zeroed, or NULL. */
static tether_action_t *push_slot(tether_engine_t *eng)
{
    tether_action_t *a;

    if (eng->act_head + eng->act_n == eng->act_cap) {
        if (eng->act_head > 0) {
            memmove(eng->acts, eng->acts + eng->act_head,
                    eng->act_n * sizeof *eng->acts);
            eng->act_head = 0;
        } else {
            size_t cap = eng->act_cap ? eng->act_cap * 2 : ACTIONS_INITIAL_CAP;
            tether_action_t *v = realloc(eng->acts, cap * sizeof *eng->acts);
            if (v == NULL)
                return NULL;
            eng->acts = v;
            eng->act_cap = cap;
        }
    }
    a = &eng->acts[eng->act_head + eng->act_n];
    memset(a, 0, sizeof *a);
    return a;
}

/*
 * The byte-string fields of an action of a's kind, into f (at most
 * TETHER_ACT_FIELDS_MAX); returns how many. The one place that knows
 * each kind's layout: a new kind with byte strings adds its case here.
 */
#define TETHER_ACT_FIELDS_MAX 3
static size_t byte_fields(tether_action_t *a, tether_bytes_t **f)
{
    switch (a->kind) {
    case TETHER_ACT_SEND:
        f[0] = &a->u.send.bytes;
        return 1;
    case TETHER_ACT_MESSAGE:
        f[0] = &a->u.message.etf;
        return 1;
    case TETHER_ACT_REG_LOST:
        f[0] = &a->u.reg_lost.name;
        f[1] = &a->u.reg_lost.loser;
        f[2] = &a->u.reg_lost.winner;
        return 3;
    case TETHER_ACT_REG_RESOLVE:
        f[0] = &a->u.reg_resolve.name;
        f[1] = &a->u.reg_resolve.winner;
        f[2] = &a->u.reg_resolve.loser;
        return 3;
    case TETHER_ACT_SERVICE:
        f[0] = &a->u.service.name;
        return 1;
    case TETHER_ACT_LOG:
        f[0] = &a->u.log.text;
        return 1;
    case TETHER_ACT_LEADER:
        f[0] = &a->u.leader.name;
        f[1] = &a->u.leader.cand;
        return 2;
    case TETHER_ACT_REMINDER:
        f[0] = &a->u.reminder.key;
        f[1] = &a->u.reminder.payload;
        return 2;
    case TETHER_ACT_REMINDER_REPLY:
        f[0] = &a->u.reminder_reply.payload;
        return 1;
    case TETHER_ACT_REMINDER_STORE:
        f[0] = &a->u.reminder_store.rec;
        return 1;
    case TETHER_ACT_MAP:
        f[0] = &a->u.map.name;
        f[1] = &a->u.map.key;
        f[2] = &a->u.map.value;
        return 3;
    case TETHER_ACT_MAP_STORE:
        f[0] = &a->u.map_store.name;
        f[1] = &a->u.map_store.rec;
        return 2;
    case TETHER_ACT_CONNECT:
    case TETHER_ACT_MEMBER:
    case TETHER_ACT_JOIN:
    case TETHER_ACT_SHARD:
        return 0;
    }
    return 0;
}

int tether__engine_push(tether_engine_t *eng, const tether_action_t *tmpl)
{
    tether_bytes_t *f[TETHER_ACT_FIELDS_MAX];
    tether_action_t *a = push_slot(eng);
    size_t n, total = 0;
    uint8_t *block, *p;

    if (a == NULL)
        return TETHER_ENOMEM;
    *a = *tmpl;
    a->block = NULL;
    n = byte_fields(a, f);
    for (size_t i = 0; i < n; i++)
        total += f[i]->len;
    block = malloc(total ? total : 1);
    if (block == NULL)
        return TETHER_ENOMEM; /* the slot is not counted: nothing queued */
    p = block;
    for (size_t i = 0; i < n; i++) {
        if (f[i]->len)
            memcpy(p, f[i]->ptr, f[i]->len);
        f[i]->ptr = p;
        p += f[i]->len;
    }
    a->block = block;
    eng->act_n++;
    return 0;
}

int tether_engine_next_action(tether_engine_t *eng, tether_action_t *out)
{
    if (eng->act_n == 0)
        return 0;
    *out = eng->acts[eng->act_head++];
    eng->act_n--;
    if (eng->act_n == 0)
        eng->act_head = 0;
    return 1;
}

void tether_engine_action_release(tether_action_t *a)
{
    if (a == NULL)
        return;
    free(a->block);
    a->block = NULL;
    memset(&a->u, 0, sizeof a->u);
}

uint8_t *tether_engine_action_take(tether_action_t *a)
{
    uint8_t *bytes;

    /* A SEND's or MESSAGE's block is its one byte string (act_send,
     * push). */
    if (a == NULL || a->block == NULL ||
        (a->kind != TETHER_ACT_SEND && a->kind != TETHER_ACT_MESSAGE))
        return NULL;
    bytes = a->block;
    a->block = NULL;
    return bytes;
}

static int act_connect(tether_engine_t *eng, const char *peer)
{
    tether_action_t *a = push_slot(eng);

    if (a == NULL)
        return TETHER_ENOMEM;
    a->kind = TETHER_ACT_CONNECT;
    memcpy(a->peer, peer, strlen(peer) + 1);
    eng->act_n++;
    return 0;
}

/* Queues a SEND of `data`, taking ownership of it (freed on failure). */
static int act_send(tether_engine_t *eng, const char *peer, uint8_t *data,
                    size_t len)
{
    tether_action_t *a = push_slot(eng);

    if (a == NULL) {
        free(data);
        return TETHER_ENOMEM;
    }
    a->kind = TETHER_ACT_SEND;
    memcpy(a->peer, peer, strlen(peer) + 1);
    a->u.send.bytes.ptr = data;
    a->u.send.bytes.len = len;
    a->block = data;
    eng->act_n++;
    eng->stats.sent++;
    return 0;
}

/* ------------------------------------------------------------- peers */

static peer_t *find_peer(const tether_engine_t *eng, const char *name)
{
    for (size_t i = 0; i < eng->npeers; i++)
        if (strcmp(eng->peers[i]->name, name) == 0)
            return eng->peers[i];
    return NULL;
}

static peer_t *get_peer(tether_engine_t *eng, const char *name)
{
    peer_t *p = find_peer(eng, name);

    if (p != NULL)
        return p;
    if (!valid_name(name) || strcmp(name, eng->name) == 0)
        return NULL;
    if (eng->npeers >= TETHER_ENGINE_PEERS_MAX) {
        eng->stats.peers_refused++;
        return NULL;
    }
    if (eng->npeers == eng->peers_cap) {
        size_t cap = eng->peers_cap ? eng->peers_cap * 2 : 8;
        peer_t **v = realloc(eng->peers, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        eng->peers = v;
        eng->peers_cap = cap;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    memcpy(p->name, name, strlen(name) + 1);
    if (tether__session_init(&p->sess, &eng->id, &eng->trust, name,
                             &eng->env_stats) < 0) {
        free(p);
        return NULL;
    }
    p->is_client = strcmp(eng->name, name) < 0;
    tether__defer_init(&p->outq, eng->defer_max, eng->defer_max_bytes);
    tether__defer_init(&p->inq, eng->defer_max, eng->defer_max_bytes);
    eng->peers[eng->npeers++] = p;
    return p;
}

/* Held sends of p not yet handed out: queued, and the one being sealed. */
static size_t held_sends(const peer_t *p)
{
    return p->outq.n + (p->sealing.it.data != NULL);
}

/* Abandons the envelope of p's send being sealed, if one was begun; the
 * send stays, to be sealed again from its first byte. */
static void unseal(peer_t *p)
{
    if (p->sealing.out == NULL)
        return;
    tether__sealer_abort(&p->sealing.sealer);
    free(p->sealing.out);
    p->sealing.out = NULL;
}

/* Drops p's send being sealed, with its envelope. Returns 1 if there
 * was one, else 0. */
static size_t drop_sealing(peer_t *p)
{
    unseal(p);
    if (p->sealing.it.data == NULL)
        return 0;
    free(p->sealing.it.data);
    p->sealing.it.data = NULL;
    return 1;
}

/* Drops every held send of p. Returns how many went. */
static size_t clear_sends(peer_t *p)
{
    return tether__defer_clear(&p->outq) + drop_sealing(p);
}

static void free_peer(peer_t *p)
{
    tether__session_fini(&p->sess);
    (void)clear_sends(p);
    tether__defer_fini(&p->outq);
    tether__defer_fini(&p->inq);
    free(p);
}

/* Forgets the peer get_peer() just created (the last one). */
static void drop_last_peer(tether_engine_t *eng)
{
    free_peer(eng->peers[--eng->npeers]);
}

/*
 * 1 if the entry of p holds nothing worth keeping: no connection, not in
 * the member table, not the contact of a pending join, nothing queued.
 * Such entries are what visitors (hidden nodes, remote shells, tools that
 * connect and go) leave behind.
 */
static int peer_forgettable(const tether_engine_t *eng, const peer_t *p)
{
    return !p->connected && !p->usable &&
           tether__membership_find(&eng->ms, p->name) == NULL &&
           !(eng->join_pending && strcmp(eng->join_contact, p->name) == 0) &&
           held_sends(p) == 0 && p->inq.n == 0;
}

/* Frees the entry at index i (the last one takes its place). */
static void forget_peer(tether_engine_t *eng, size_t i)
{
    free_peer(eng->peers[i]);
    eng->peers[i] = eng->peers[--eng->npeers];
    eng->stats.peers_freed++;
}

/* Frees every forgettable entry (see peer_forgettable). */
static void sweep_peers(tether_engine_t *eng)
{
    for (size_t i = eng->npeers; i-- > 0;)
        if (peer_forgettable(eng, eng->peers[i]))
            forget_peer(eng, i);
}

/* ------------------------------------------------------------ sending */

static int part_mode(const tether_engine_t *eng, const char *peer)
{
    return tether__partition_between(&eng->parts, eng->name, peer);
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
static int seal_send(tether_engine_t *eng, peer_t *p, uint8_t type,
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
        eng->stats.send_no_session++;
        return rc;
    }
    if (direct != NULL) {
        direct->data = out;
        direct->len = out_len;
        eng->stats.sent++;
        return 0;
    }
    return act_send(eng, p->name, out, out_len);
}

/* Sends one engine message to `to` under the partition rules (see
 * sealed_t for `direct`; a message held by a defer partition then
 * answers TETHER_EAGAIN, as nothing is handed out). */
static int send_msg(tether_engine_t *eng, const char *to, uint8_t type,
                    const uint8_t *payload, size_t len, unsigned flags,
                    sealed_t *direct)
{
    peer_t *p = find_peer(eng, to);
    int mode;

    if (is_control(type)) {
        if (p == NULL || !tether__session_established(&p->sess)) {
            eng->stats.send_no_session++;
            return TETHER_ECLOSED;
        }
        return seal_send(eng, p, type, payload, len, direct);
    }
    mode = part_mode(eng, to);
    if (mode == TETHER_PARTITION_DROP) {
        eng->stats.part_dropped++;
        return TETHER_ECLOSED;
    }
    if (mode == TETHER_PARTITION_NONE && p != NULL && p->usable &&
        held_sends(p) > 0 && !(flags & TETHER_SEND_STATE) && !is_state(type)) {
        /* A healed backlog is still going out: behind it, in order. */
        if (tether__defer_push(&p->outq, type, payload, len) < 0) {
            eng->stats.defer_overflow++;
            return TETHER_ETOOBIG;
        }
        return direct != NULL ? TETHER_EAGAIN : 0;
    }
    if (mode == TETHER_PARTITION_DEFER) {
        if ((flags & TETHER_SEND_STATE) || is_state(type)) {
            eng->stats.part_skipped++;
            return direct != NULL ? TETHER_EAGAIN : 0;
        }
        p = get_peer(eng, to);
        if (p == NULL)
            return TETHER_ENOMEM;
        if (held_sends(p) == 0)
            p->outq_inc = tether__session_peer_incarnation(&p->sess);
        if (tether__defer_push(&p->outq, type, payload, len) < 0) {
            eng->stats.defer_overflow++;
            return TETHER_ETOOBIG;
        }
        eng->stats.part_deferred++;
        return direct != NULL ? TETHER_EAGAIN : 0;
    }
    if (p == NULL || !p->usable) {
        eng->stats.send_no_session++;
        return TETHER_ECLOSED;
    }
    return seal_send(eng, p, type, payload, len, direct);
}

static int send_x(tether_engine_t *eng, const char *to, uint8_t type,
                  ei_x_buff *x, int rc)
{
    if (rc == 0)
        rc = send_msg(eng, to, type, (const uint8_t *)x->buff, (size_t)x->index,
                      0, NULL);
    ei_x_free(x);
    return rc;
}

static int send_heartbeat(tether_engine_t *eng, const char *to)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 3, "hb");

    if (rc == 0 &&
        (ei_x_encode_ulonglong(&x, eng->incarnation) < 0 ||
         ei_x_encode_ulonglong(&x, tether__membership_digest(&eng->ms)) < 0))
        rc = TETHER_ENOMEM;
    return send_x(eng, to, TETHER_MSG_HEARTBEAT, &x, rc);
}

static int send_inc_msg(tether_engine_t *eng, const char *to, uint8_t type,
                        const char *tag)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 2, tag);

    if (rc == 0 && ei_x_encode_ulonglong(&x, eng->incarnation) < 0)
        rc = TETHER_ENOMEM;
    return send_x(eng, to, type, &x, rc);
}

/* {join, Inc, [{Param, Value}]} to the contact. */
static int send_join(tether_engine_t *eng, const char *to)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 3, "join");

    if (rc == 0 && (ei_x_encode_ulonglong(&x, eng->incarnation) < 0 ||
                    (eng->nparams > 0 &&
                     ei_x_encode_list_header(&x, (long)eng->nparams) < 0)))
        rc = TETHER_ENOMEM;
    for (size_t i = 0; rc == 0 && i < eng->nparams; i++)
        if (ei_x_encode_tuple_header(&x, 2) < 0 ||
            ei_x_encode_atom(&x, eng->params[i].name) < 0 ||
            ei_x_encode_ulonglong(&x, eng->params[i].value) < 0)
            rc = TETHER_ENOMEM;
    if (rc == 0 && ei_x_encode_empty_list(&x) < 0)
        rc = TETHER_ENOMEM;
    return send_x(eng, to, TETHER_MSG_JOIN, &x, rc);
}

static int send_members(tether_engine_t *eng, const char *to)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 2, "members");

    if (rc == 0)
        rc = tether__membership_encode(&eng->ms, &x);
    return send_x(eng, to, TETHER_MSG_MEMBERS, &x, rc);
}

static int send_partitions(tether_engine_t *eng, const char *to)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 2, "partitions");

    if (rc == 0)
        rc = tether__partition_encode(&eng->parts, &x);
    return send_x(eng, to, TETHER_MSG_PARTITIONS, &x, rc);
}

static int send_pdigest(tether_engine_t *eng, const char *to)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 2, "pdigest");

    if (rc == 0 &&
        ei_x_encode_ulonglong(&x, tether__partition_digest(&eng->parts)) < 0)
        rc = TETHER_ENOMEM;
    return send_x(eng, to, TETHER_MSG_PDIGEST, &x, rc);
}

static int send_ack(tether_engine_t *eng, peer_t *p)
{
    ei_x_buff x;
    int rc;

    if (ei_x_new_with_version(&x) < 0)
        return TETHER_ENOMEM;
    rc = ei_x_encode_atom(&x, "ok") < 0 ? TETHER_ENOMEM : 0;
    if (rc == 0)
        rc = seal_send(eng, p, TETHER_MSG_ACK, (const uint8_t *)x.buff,
                       (size_t)x.index, NULL);
    ei_x_free(&x);
    return rc;
}

static int send_hello(tether_engine_t *eng, peer_t *p)
{
    uint8_t nonce[TETHER_ENV_NONCE_BYTES], kx[TETHER_ENV_KX_SEED_BYTES];
    uint8_t *out = malloc(TETHER_HELLO_MAX_BYTES);
    size_t len = 0;
    int rc;

    if (out == NULL)
        return TETHER_ENOMEM;
    tether__engine_random(eng, nonce, sizeof nonce);
    /* The counter the peer checks freshness by (envelope.h): one per
     * engine, so it never repeats within our incarnation whatever
     * becomes of the peer's entry. */
    eng->hellos++;
    for (int i = 0; i < 8; i++)
        nonce[i] = (uint8_t)(eng->hellos >> (56 - 8 * i));
    tether__engine_random(eng, kx, sizeof kx);
    rc = tether__session_hello(&p->sess, eng->incarnation, nonce, kx, out,
                               TETHER_HELLO_MAX_BYTES, &len);
    sodium_memzero(kx, sizeof kx);
    if (rc < 0) {
        free(out);
        return rc;
    }
    p->hello_at = eng->now;
    eng->stats.hellos_sent++;
    return act_send(eng, p->name, out, len);
}

int tether_engine_send(tether_engine_t *eng, const char *to, uint8_t type,
                       const uint8_t *etf, size_t len, unsigned flags)
{
    if (!valid_name(to) || type < TETHER_MSG_MODULE_MIN || etf == NULL ||
        len == 0)
        return TETHER_EINVAL;
    if (eng->left)
        return TETHER_ECLOSED;
    return send_msg(eng, to, type, etf, len, flags, NULL);
}

int tether_engine_seal(tether_engine_t *eng, const char *to, uint8_t type,
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
    if (eng->left)
        return TETHER_ECLOSED;
    rc = send_msg(eng, to, type, etf, len, 0, &direct);
    if (rc == 0) {
        *out = direct.data;
        *out_len = direct.len;
    }
    return rc;
}

/*
 * Sends (sealed NULL) or seals for sealed() one module message to every
 * live member but us, in member order; see tether__engine_broadcast().
 */
static int broadcast(tether_engine_t *eng, uint8_t type, const uint8_t *etf,
                     size_t len, unsigned flags, tether_engine_sealed_t sealed,
                     void *ctx)
{
    if (type < TETHER_MSG_MODULE_MIN || etf == NULL || len == 0)
        return TETHER_EINVAL;
    if (eng->left)
        return TETHER_ECLOSED;
    for (size_t i = 0; i < eng->ms.n; i++) {
        const tether_member_t *m = &eng->ms.v[i];
        sealed_t direct = {NULL, 0};
        if (!m->live || m->is_self)
            continue;
        if (sealed == NULL) {
            (void)send_msg(eng, m->name, type, etf, len, flags, NULL);
            continue;
        }
        if (send_msg(eng, m->name, type, etf, len, 0, &direct) == 0)
            sealed(ctx, m->name, direct.data, direct.len);
        free(direct.data);
    }
    return 0;
}

int tether__engine_broadcast(tether_engine_t *eng, uint8_t type,
                             const uint8_t *etf, size_t len, unsigned flags)
{
    return broadcast(eng, type, etf, len, flags, NULL, NULL);
}

int tether__engine_broadcast_sealed(tether_engine_t *eng, uint8_t type,
                                    const uint8_t *etf, size_t len,
                                    tether_engine_sealed_t sealed, void *ctx)
{
    if (sealed == NULL)
        return TETHER_EINVAL;
    return broadcast(eng, type, etf, len, 0, sealed, ctx);
}

/* ------------------------------------------------------ member events */

static void act_member(tether_engine_t *eng, const char *name, int up)
{
    tether_action_t a = {.kind = TETHER_ACT_MEMBER};

    memcpy(a.peer, name, strlen(name) + 1);
    a.u.member.up = up;
    (void)tether__engine_push(eng, &a); /* out of memory loses the event */
}

/*
 * Recomputes every entry's liveness at eng->now under the partition rules
 * and reports changes to the shell (MEMBER actions) and modules. Holds the
 * leases of peers across defer partitions, clears those across drop ones.
 */
static void refresh_liveness(tether_engine_t *eng)
{
    int changed = 0;

    for (size_t i = 0; i < eng->ms.n; i++) {
        tether_member_t *m = &eng->ms.v[i];
        char name[TETHER_NODE_NAME_MAX + 1];
        int live;

        if (m->is_self) {
            live = !eng->left;
        } else {
            int mode = part_mode(eng, m->name);
            if (mode == TETHER_PARTITION_DROP)
                m->lease_until = 0;
            else if (mode == TETHER_PARTITION_DEFER &&
                     m->lease_until > eng->now)
                m->lease_until = eng->now + eng->ttl_ms;
            live = !eng->left && tether__membership_lease_ok(m, eng->now);
        }
        if (live == m->live)
            continue;
        m->live = live;
        changed = 1;
        eng->stats.member_events++;
        memcpy(name, m->name, sizeof name);
        act_member(eng, name, live);
        for (size_t k = 0; k < eng->nmodules; k++)
            if (eng->modules[k].m.on_member)
                eng->modules[k].m.on_member(eng, eng->modules[k].ctx, name,
                                            live);
    }
    if (changed)
        for (size_t k = 0; k < eng->nmodules; k++)
            if (eng->modules[k].m.on_members_changed)
                eng->modules[k].m.on_members_changed(eng, eng->modules[k].ctx);
}

/* ------------------------------------------------- sessions and flows */

static void dispatch(tether_engine_t *eng, peer_t *p, uint8_t type,
                     const char *buf, size_t len, int from_queue);

/* What is left of a flush's byte budget after len bytes of work. */
static size_t spend(size_t budget, size_t len)
{
    return len >= budget ? 0 : budget - len;
}

/* 1 if p has held messages that may go now (no partition holds them). */
static int flushable(const tether_engine_t *eng, const peer_t *p)
{
    return (p->inq.n > 0 || (held_sends(p) > 0 && p->usable)) &&
           part_mode(eng, p->name) == TETHER_PARTITION_NONE;
}

/*
 * Seals at most `budget` more payload bytes of p's send being sealed
 * (p->sealing.it, which must be set; p usable), and queues its SEND once
 * the last byte went in. A large held send is thus sealed over several
 * ticks, a slice per tick, so that no call into the engine spends more
 * than a slice's MAC and copy on it (an engine call runs on the shell's
 * event loop or, in the BEAM, as a NIF on a normal scheduler: a 4 MiB
 * send sealed at once held it for 15-40 ms). The envelope is begun on the
 * current session; one begun on a session that has since ended is
 * abandoned and begun again on this one. A send that cannot be sealed is
 * lost and counted, as seal_send() does. Returns what is left of budget.
 */
static size_t seal_slice(tether_engine_t *eng, peer_t *p, size_t budget)
{
    tether_defer_item_t *it = &p->sealing.it;
    size_t n;

    if (p->sealing.out != NULL &&
        memcmp(p->sealing.sid, p->sess.sid, sizeof p->sealing.sid) != 0)
        unseal(p);
    if (p->sealing.out == NULL) {
        size_t cap = tether__envelope_sealed_size(it->len);
        int rc = TETHER_ENOMEM;

        p->sealing.out = malloc(cap);
        if (p->sealing.out != NULL)
            rc = tether__session_seal_begin(&p->sess, it->type, it->len,
                                            p->sealing.out, cap,
                                            &p->sealing.sealer);
        if (rc < 0) {
            if (rc != TETHER_ENOMEM)
                eng->stats.send_no_session++;
            (void)drop_sealing(p);
            return spend(budget, 1);
        }
        memcpy(p->sealing.sid, p->sess.sid, sizeof p->sealing.sid);
    }
    n = tether__sealer_update(&p->sealing.sealer,
                              it->data + p->sealing.sealer.done, budget);
    if (p->sealing.sealer.done == it->len) {
        size_t len = tether__sealer_end(&p->sealing.sealer);

        (void)act_send(eng, p->name, p->sealing.out, len);
        p->sealing.out = NULL;
        (void)drop_sealing(p);
    }
    return spend(budget, n > 0 ? n : 1);
}

/* Hands out p's held messages, in order, until *budget bytes went: the
 * received ones, and with `outgoing` the ones to send, once no partition
 * separates us and the session is usable. */
static void flush_peer(tether_engine_t *eng, peer_t *p, size_t *budget,
                       int outgoing)
{
    tether_defer_item_t it;

    if (!flushable(eng, p))
        return;
    while (*budget > 0 && tether__defer_pop(&p->inq, &it)) {
        eng->stats.defer_flushed++;
        *budget = spend(*budget, it.len);
        dispatch(eng, p, it.type, (const char *)it.data, it.len, 1);
        free(it.data);
    }
    if (outgoing && held_sends(p) > 0 && p->usable) {
        uint64_t inc = tether__session_peer_incarnation(&p->sess);
        if (p->outq_inc != 0 && inc != p->outq_inc) {
            /* The peer restarted: the held calls were for its old life. */
            eng->stats.defer_discarded += clear_sends(p);
            return;
        }
        while (*budget > 0) {
            if (p->sealing.it.data == NULL) {
                if (!tether__defer_pop(&p->outq, &p->sealing.it))
                    break;
                eng->stats.defer_flushed++;
            }
            *budget = seal_slice(eng, p, *budget);
        }
    }
}

/*
 * Flushes held messages of every peer no partition separates from us, at
 * most TETHER_ENGINE_DEFER_SLICE_BYTES of work per call. Held receives go
 * at once, whole (a heal hands out their first slice before it returns);
 * held sends, which must be sealed, go from ticks only, one slice every
 * TETHER_ENGINE_DEFER_SLICE_MS at most, the first at the tick after the
 * heal (next_deadline: at once), a send larger than a slice sealed over
 * several (seal_slice). So a heal of a large backlog is spread over many
 * short ticks (next_deadline says when): the shell, which ticks the engine
 * on every input, serves its other work between them, and at most a
 * slice a millisecond goes out. Messages to or from a peer with a backlog
 * queue behind it (send_msg, dispatch): order holds.
 */
static void flush_all(tether_engine_t *eng, int outgoing)
{
    size_t budget = TETHER_ENGINE_DEFER_SLICE_BYTES;

    if (outgoing && eng->now < eng->flush_at)
        outgoing = 0;
    for (size_t i = 0; i < eng->npeers && budget > 0; i++)
        flush_peer(eng, eng->peers[i], &budget, outgoing);
    if (outgoing && budget < TETHER_ENGINE_DEFER_SLICE_BYTES)
        eng->flush_at = eng->now + TETHER_ENGINE_DEFER_SLICE_MS;
}

static void session_up(tether_engine_t *eng, peer_t *p)
{
    tether_member_t *m;

    p->usable = 1;
    p->dials = 0; /* a member again: redial it if it goes */
    eng->stats.sessions_up++;
    if (eng->left) {
        if (eng->leave_rounds > 0)
            (void)send_inc_msg(eng, p->name, TETHER_MSG_LEAVE, "leave");
        return;
    }
    if (eng->parts.n > 0)
        (void)send_partitions(eng, p->name);
    if (eng->join_pending && strcmp(eng->join_contact, p->name) == 0)
        (void)send_join(eng, p->name);
    m = tether__membership_find(&eng->ms, p->name);
    if (m != NULL && m->status == TETHER_MEMBER_ALIVE)
        (void)send_heartbeat(eng, p->name);
    {
        size_t budget = TETHER_ENGINE_DEFER_SLICE_BYTES;
        flush_peer(eng, p, &budget, 0); /* sends: from the next tick */
    }
    for (size_t k = 0; k < eng->nmodules; k++)
        if (eng->modules[k].m.on_session_up)
            eng->modules[k].m.on_session_up(eng, eng->modules[k].ctx, p->name);
}

/* The wait before redial number n (1, 2, ...): heartbeat_ms doubling up
 * to redial_max_ms, then +-25% of jitter so members do not dial in step. */
static uint64_t redial_wait(tether_engine_t *eng, unsigned n)
{
    uint64_t w = eng->hb_ms;
    uint32_t r;

    while (n-- > 1 && w < eng->redial_max_ms)
        w *= 2;
    if (w > eng->redial_max_ms)
        w = eng->redial_max_ms;
    tether__engine_random(eng, (uint8_t *)&r, sizeof r);
    return w - w / 4 + (uint64_t)r % (w / 2 + 1);
}

/* Asks the shell to connect to every alive member we have no connection
 * to, on the redial schedule (see Reconnection in engine.h). */
static void connect_pass(tether_engine_t *eng)
{
    if (eng->left)
        return;
    for (size_t i = 0; i < eng->ms.n; i++) {
        tether_member_t *m = &eng->ms.v[i];
        peer_t *p;
        if (m->is_self || m->status != TETHER_MEMBER_ALIVE)
            continue;
        p = get_peer(eng, m->name);
        if (p == NULL || p->connected || p->dials >= eng->redials ||
            eng->now < p->dial_at)
            continue;
        p->dials++;
        p->dial_at = eng->now + redial_wait(eng, p->dials);
        eng->stats.dials++;
        if (p->dials == eng->redials)
            eng->stats.dials_given_up++;
        (void)act_connect(eng, p->name);
    }
}

/* Drops everything held for a node that left. */
static void discard_queues_of(tether_engine_t *eng, const char *name)
{
    peer_t *p = find_peer(eng, name);

    if (p == NULL)
        return;
    eng->stats.defer_discarded += clear_sends(p);
    eng->stats.defer_discarded += tether__defer_clear(&p->inq);
}

/* --------------------------------------------------------- receiving */

static void handle_heartbeat(tether_engine_t *eng, peer_t *p, const char *buf,
                             int idx)
{
    uint64_t inc, digest;

    if (tether__etf_decode_u64(buf, &idx, &inc) < 0 ||
        tether__etf_decode_u64(buf, &idx, &digest) < 0) {
        eng->stats.recv_bad_term++;
        return;
    }
    if (tether__membership_heartbeat(&eng->ms, p->name, inc, eng->now,
                                     eng->ttl_ms) < 0) {
        eng->stats.recv_stale++;
        return;
    }
    if (digest != tether__membership_digest(&eng->ms))
        (void)send_members(eng, p->name);
}

/* A line for the shell's log (TETHER_ACT_LOG). */
static void act_log(tether_engine_t *eng, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void act_log(tether_engine_t *eng, int level, const char *fmt, ...)
{
    tether_action_t a = {.kind = TETHER_ACT_LOG};
    char text[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    a.u.log.level = level;
    a.u.log.text.ptr = (const uint8_t *)text;
    a.u.log.text.len = (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
    (void)tether__engine_push(eng, &a);
}

/* Ends the pending join with a TETHER_ACT_JOIN action. */
static void join_done(tether_engine_t *eng, int status, const char *param,
                      uint64_t ours, uint64_t theirs)
{
    tether_action_t a = {.kind = TETHER_ACT_JOIN};

    if (!eng->join_pending)
        return;
    eng->join_pending = 0;
    memcpy(a.peer, eng->join_first, sizeof a.peer);
    a.u.join.status = status;
    if (param != NULL)
        snprintf(a.u.join.param, sizeof a.u.join.param, "%s", param);
    a.u.join.ours = ours;
    a.u.join.theirs = theirs;
    (void)tether__engine_push(eng, &a);
}

/* Our value of parameter name, or -1 when we set none. */
static int param_find(const tether_engine_t *eng, const char *name)
{
    for (size_t i = 0; i < eng->nparams; i++)
        if (strcmp(eng->params[i].name, name) == 0)
            return (int)i;
    return -1;
}

/*
 * Reads the joiner's [{Param, Value}] and compares it with ours. Returns
 * 1 and fills name/ours/theirs for the first parameter both set and
 * differ, 0 when they agree, TETHER_EPROTO for a bad list.
 */
static int params_differ(tether_engine_t *eng, const char *buf, int *idx,
                         char name[TETHER_ENGINE_PARAM_NAME_MAX],
                         uint64_t *ours, uint64_t *theirs)
{
    int count, found = 0;

    if (tether__etf_list(buf, idx, &count) < 0 ||
        count > TETHER_ENGINE_PARAMS_MAX)
        return TETHER_EPROTO;
    for (int k = 0; k < count; k++) {
        char n[MAXATOMLEN_UTF8];
        uint64_t v;
        int i;
        if (tether__etf_expect_tuple(buf, idx, 2) < 0 ||
            ei_decode_atom_as(buf, idx, n, sizeof n, ERLANG_UTF8, NULL, NULL) <
                0 ||
            tether__etf_decode_u64(buf, idx, &v) < 0)
            return TETHER_EPROTO;
        i = param_find(eng, n);
        if (!found && i >= 0 && eng->params[i].value != v) {
            found = 1;
            snprintf(name, TETHER_ENGINE_PARAM_NAME_MAX, "%s",
                     eng->params[i].name);
            *ours = eng->params[i].value;
            *theirs = v;
        }
    }
    if (tether__etf_list_end(buf, idx, count) < 0)
        return TETHER_EPROTO;
    return found;
}

/* {join_refused, Param, Ours, Theirs} to a joiner. */
static void send_join_refused(tether_engine_t *eng, const char *to,
                              const char *param, uint64_t ours, uint64_t theirs)
{
    ei_x_buff x;
    int rc = tether__etf_begin(&x, 4, "join_refused");

    if (rc == 0 && (ei_x_encode_atom(&x, param) < 0 ||
                    ei_x_encode_ulonglong(&x, ours) < 0 ||
                    ei_x_encode_ulonglong(&x, theirs) < 0))
        rc = TETHER_ENOMEM;
    (void)send_x(eng, to, TETHER_MSG_JOIN_REFUSED, &x, rc);
}

static void handle_join(tether_engine_t *eng, peer_t *p, const char *buf,
                        int idx)
{
    char param[TETHER_ENGINE_PARAM_NAME_MAX];
    uint64_t inc, ours = 0, theirs = 0;
    int rc;

    if (tether__etf_decode_u64(buf, &idx, &inc) < 0 ||
        (rc = params_differ(eng, buf, &idx, param, &ours, &theirs)) < 0) {
        eng->stats.recv_bad_term++;
        return;
    }
    if (rc == 1) {
        /* Never a member: it would not agree with us on `param`. */
        eng->stats.joins_refused++;
        act_log(eng, TETHER_ACT_LOG_WARNING,
                "refused the join of '%s': its %s is %llu, ours %llu", p->name,
                param, (unsigned long long)theirs, (unsigned long long)ours);
        send_join_refused(eng, p->name, param, ours, theirs);
        return;
    }
    if (tether__membership_heartbeat(&eng->ms, p->name, inc, eng->now,
                                     eng->ttl_ms) < 0) {
        eng->stats.recv_stale++;
        return;
    }
    (void)send_members(eng, p->name);
    connect_pass(eng);
}

/*
 * The join contact answered with its table. The join is done if the
 * contact is still an alive member; a contact that left only relays what
 * it knows, so the join moves on to the next alive member it told us of
 * (in name order), and stays pending if there is none.
 */
static void join_answered(tether_engine_t *eng, const char *contact)
{
    const tether_member_t *c = tether__membership_find(&eng->ms, contact);
    const tether_member_t *next = NULL;

    if (c != NULL && c->status == TETHER_MEMBER_ALIVE) {
        join_done(eng, TETHER_JOIN_OK, NULL, 0, 0);
        return;
    }
    for (size_t i = 0; i < eng->ms.n; i++) {
        const tether_member_t *m = &eng->ms.v[i];
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
    memcpy(eng->join_contact, next->name, strlen(next->name) + 1);
    eng->join_at = 0; /* retry at the next round */
}

static void handle_members(tether_engine_t *eng, peer_t *p, const char *buf,
                           int idx)
{
    int changed = 0, behind = 0;

    if (tether__membership_decode_merge(&eng->ms, buf, &idx, &changed,
                                        &behind) < 0) {
        eng->stats.recv_bad_term++;
        return;
    }
    if (eng->join_pending && strcmp(eng->join_contact, p->name) == 0)
        join_answered(eng, p->name);
    if (behind)
        (void)send_members(eng, p->name);
    if (changed) {
        for (size_t i = 0; i < eng->ms.n; i++)
            if (eng->ms.v[i].status == TETHER_MEMBER_LEFT)
                discard_queues_of(eng, eng->ms.v[i].name);
        connect_pass(eng);
    }
}

static void handle_leave(tether_engine_t *eng, peer_t *p, const char *buf,
                         int idx)
{
    uint64_t inc;

    if (tether__etf_decode_u64(buf, &idx, &inc) < 0) {
        eng->stats.recv_bad_term++;
        return;
    }
    if (tether__membership_merge(&eng->ms, p->name, inc, TETHER_MEMBER_LEFT) <
        0) {
        eng->stats.recv_bad_term++;
        return;
    }
    discard_queues_of(eng, p->name);
}

static void partitions_changed(tether_engine_t *eng)
{
    refresh_liveness(eng);
    flush_all(eng, 0); /* held sends: from the next tick */
    /* Held receives handled by the flush (a leave, a join) change the
     * member table: report that before heal() returns, not at the next
     * input. */
    refresh_liveness(eng);
}

static void handle_partitions(tether_engine_t *eng, peer_t *p, const char *buf,
                              int idx)
{
    int changed = 0, behind = 0;

    if (tether__partition_decode_merge(&eng->parts, buf, &idx, &changed,
                                       &behind) < 0) {
        eng->stats.recv_bad_term++;
        return;
    }
    if (behind)
        (void)send_partitions(eng, p->name);
    if (changed)
        partitions_changed(eng);
}

static void handle_pdigest(tether_engine_t *eng, peer_t *p, const char *buf,
                           int idx)
{
    uint64_t digest;

    if (tether__etf_decode_u64(buf, &idx, &digest) < 0) {
        eng->stats.recv_bad_term++;
        return;
    }
    if (digest != tether__partition_digest(&eng->parts))
        (void)send_partitions(eng, p->name);
}

/* {join_refused, Param, Ours, Theirs} from the contact of our join: it
 * would not take us (its Ours is our Theirs). */
static void handle_join_refused(tether_engine_t *eng, peer_t *p,
                                const char *buf, int idx)
{
    char param[MAXATOMLEN_UTF8];
    uint64_t theirs, ours;

    if (ei_decode_atom_as(buf, &idx, param, sizeof param, ERLANG_UTF8, NULL,
                          NULL) < 0 ||
        tether__etf_decode_u64(buf, &idx, &theirs) < 0 ||
        tether__etf_decode_u64(buf, &idx, &ours) < 0) {
        eng->stats.recv_bad_term++;
        return;
    }
    if (!eng->join_pending || strcmp(eng->join_contact, p->name) != 0 ||
        param_find(eng, param) < 0) {
        eng->stats.recv_stale++;
        return;
    }
    eng->stats.joins_refused++;
    act_log(eng, TETHER_ACT_LOG_WARNING,
            "'%s' refused our join: its %s is %llu, ours %llu", p->name, param,
            (unsigned long long)theirs, (unsigned long long)ours);
    join_done(eng, TETHER_JOIN_REFUSED, param, ours, theirs);
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
    void (*handle)(tether_engine_t *eng, peer_t *p, const char *buf, int idx);
} core_msg_t;

static const core_msg_t core_msgs[] = {
    {TETHER_MSG_HEARTBEAT, 3, "hb", handle_heartbeat},
    {TETHER_MSG_JOIN, 3, "join", handle_join},
    {TETHER_MSG_JOIN_REFUSED, 4, "join_refused", handle_join_refused},
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
static void dispatch(tether_engine_t *eng, peer_t *p, uint8_t type,
                     const char *buf, size_t len, int from_queue)
{
    int idx = 0, version, mode, opaque;

    if (type == TETHER_MSG_ACK)
        return;
    opaque = type == TETHER_MSG_SHELL ||
             (eng->module_of[type] >= 0 &&
              eng->modules[eng->module_of[type]].m.opaque);
    if (!opaque && (tether__etf_validate(buf, len) < 0 ||
                    ei_decode_version(buf, &idx, &version) < 0)) {
        eng->stats.recv_bad_term++;
        return;
    }
    /* A node that left is no member (no heartbeats of its own, no module
     * traffic) but still relays what it knows: member tables, partitions,
     * answers to joins. So knowledge does not leave with it. */
    if (eng->left && type >= TETHER_MSG_MODULE_MIN)
        return;
    if (!is_control(type) && !from_queue) {
        mode = part_mode(eng, p->name);
        if (mode == TETHER_PARTITION_DROP) {
            eng->stats.part_dropped++;
            return;
        }
        if (mode == TETHER_PARTITION_DEFER ||
            (p->inq.n > 0 && !is_state(type))) { /* behind a backlog */
            if (is_state(type)) {
                eng->stats.part_skipped++;
            } else if (tether__defer_push(&p->inq, type, (const uint8_t *)buf,
                                          len) < 0) {
                eng->stats.defer_overflow++;
            } else {
                eng->stats.part_deferred++;
            }
            return;
        }
    }
    for (size_t i = 0; i < sizeof core_msgs / sizeof core_msgs[0]; i++) {
        const core_msg_t *m = &core_msgs[i];
        if (m->type != type)
            continue;
        if (expect_tag(buf, &idx, m->arity, m->tag) == 0) {
            m->handle(eng, p, buf, idx);
            return;
        }
        eng->stats.recv_bad_term++;
        return;
    }
    if (type == TETHER_MSG_SHELL) {
        tether_action_t a = {.kind = TETHER_ACT_MESSAGE};
        memcpy(a.peer, p->name, strlen(p->name) + 1);
        a.u.message.etf.ptr = (const uint8_t *)buf;
        a.u.message.etf.len = len;
        (void)tether__engine_push(eng, &a); /* out of memory: lost, as a
                                               message on a lost link */
        return;
    }
    if (eng->module_of[type] >= 0) {
        module_slot_t *s = &eng->modules[eng->module_of[type]];
        if (s->m.on_message)
            s->m.on_message(eng, s->ctx, p->name, buf, len);
        return;
    }
    eng->stats.recv_unknown++;
}

static int recv_hello(tether_engine_t *eng, const char *from,
                      const uint8_t *bytes, size_t len)
{
    int created = find_peer(eng, from) == NULL;
    peer_t *p = get_peer(eng, from);
    int rc;

    if (p == NULL) {
        eng->stats.recv_unknown++;
        return TETHER_EINVAL;
    }
    rc = tether__session_accept(&p->sess, bytes, len);
    if (rc < 0) {
        eng->stats.recv_rejected++;
        if (created) /* keep no state for names that proved nothing */
            drop_last_peer(eng);
        return rc;
    }
    p->connected = 1;
    if (p->is_client) {
        if (!tether__session_established(&p->sess)) {
            /* A server hello we did not ask for (stale or duplicated):
             * start over with a fresh one rather than answer it. */
            p->usable = 0;
            tether__session_reset(&p->sess);
            return send_hello(eng, p);
        }
        return 0; /* usable once an envelope of the server opens */
    }
    /* Server: answer every valid client hello with ours and an ACK. */
    p->usable = 0;
    if (tether__session_wants_hello(&p->sess) && (rc = send_hello(eng, p)) < 0)
        return rc;
    if (!tether__session_established(&p->sess))
        return 0;
    if ((rc = send_ack(eng, p)) < 0)
        return rc;
    session_up(eng, p);
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
 * hello (TETHER_ENV_TYPE_HELLO), a restart notice (TETHER_ENV_TYPE_RESTART),
 * an envelope (the other kinds), or the negative reason they are refused
 * (counted). */
static int recv_kind(tether_engine_t *eng, const char *from,
                     const uint8_t *bytes, size_t len)
{
    int kind;

    eng->stats.recv++;
    if (!valid_name(from) || strcmp(from, eng->name) == 0 || bytes == NULL) {
        eng->stats.recv_garbage++;
        return TETHER_EINVAL;
    }
    kind = tether__envelope_kind(bytes, len);
    if (kind < 0) {
        eng->stats.recv_garbage++;
        return TETHER_EPROTO;
    }
    return kind;
}

/*
 * Opens an envelope from `from` under its session: 1 with *pp, *type and
 * the payload (pointing into bytes) when it is to be handled, 0 when it
 * was authentic but is not for handling (a server that has not made the
 * session usable yet), or the negative reason it was refused (counted).
 * With `verified` (an opener already through tether_engine_recv_verify) the
 * MAC is not computed again: the envelope is finished on the session.
 */
static int open_envelope(tether_engine_t *eng, const char *from,
                         const uint8_t *bytes, size_t len,
                         tether_opener_t *verified, peer_t **pp, uint8_t *type,
                         const uint8_t **payload, size_t *plen)
{
    peer_t *p = find_peer(eng, from);
    int rc;

    if (p == NULL) {
        eng->stats.recv_unknown++;
        return TETHER_ENOTFOUND;
    }
    if (verified != NULL)
        rc = tether__session_open_end(&p->sess, verified, bytes, len, type,
                                      payload, plen);
    else
        rc = tether__session_open(&p->sess, bytes, len, type, payload, plen);
    if (rc < 0) {
        eng->stats.recv_rejected++;
        return rc;
    }
    if (eng->open_hook) {
        uint8_t sid[TETHER_ENV_SID_BYTES];
        if (tether__session_id(&p->sess, sid) == 0)
            eng->open_hook(eng->open_hook_ctx, eng->name, p->name, sid,
                           be64(bytes + 2));
    }
    if (!p->usable) {
        if (!p->is_client) {
            eng->stats.recv_unknown++;
            return 0; /* server side: usable since its hello went out */
        }
        session_up(eng, p);
    }
    *pp = p;
    return 1;
}

static int recv_restart(tether_engine_t *eng, const char *from,
                        const uint8_t *bytes, size_t len);

/* recv, with the envelope's MAC already verified (`verified`) or not
 * (NULL). */
static int recv_bytes(tether_engine_t *eng, const char *from,
                      const uint8_t *bytes, size_t len,
                      tether_opener_t *verified)
{
    const uint8_t *payload = NULL;
    size_t plen = 0;
    uint8_t type = 0;
    peer_t *p = NULL;
    int kind, rc;

    kind = recv_kind(eng, from, bytes, len);
    if (kind < 0)
        return kind;
    if (kind == TETHER_ENV_TYPE_HELLO) {
        rc = recv_hello(eng, from, bytes, len);
        goto done;
    }
    if (kind == TETHER_ENV_TYPE_RESTART) {
        rc = recv_restart(eng, from, bytes, len);
        goto done;
    }
    rc = open_envelope(eng, from, bytes, len, verified, &p, &type, &payload,
                       &plen);
    if (rc < 0)
        return rc;
    if (rc == 1)
        dispatch(eng, p, type, (const char *)payload, plen, 0);
    rc = 0;
done:
    refresh_liveness(eng);
    return rc;
}

int tether_engine_recv(tether_engine_t *eng, const char *from,
                       const uint8_t *bytes, size_t len)
{
    return recv_bytes(eng, from, bytes, len, NULL);
}

int tether_engine_recv_begin(tether_engine_t *eng, const char *from,
                             const uint8_t *bytes, size_t len,
                             tether_opener_t *o)
{
    peer_t *p;

    if (len < TETHER_ENGINE_VERIFY_APART_BYTES || bytes == NULL || o == NULL ||
        !valid_name(from) || strcmp(from, eng->name) == 0)
        return TETHER_EAGAIN;
    if (tether__envelope_kind(bytes, len) < TETHER_ENV_TYPE_USER_MIN)
        return TETHER_EAGAIN;
    p = find_peer(eng, from);
    if (p == NULL || !tether__session_established(&p->sess))
        return TETHER_EAGAIN;
    tether__session_open_begin(&p->sess, o);
    return 0;
}

int tether_engine_recv_verify(tether_opener_t *o, const uint8_t *bytes,
                              size_t len)
{
    if (o == NULL || (bytes == NULL && len > 0))
        return TETHER_EINVAL;
    return tether__opener_verify(o, bytes, len);
}

int tether_engine_recv_end(tether_engine_t *eng, const char *from,
                           const uint8_t *bytes, size_t len, tether_opener_t *o)
{
    int rc;

    if (o == NULL)
        return TETHER_EINVAL;
    rc = recv_bytes(eng, from, bytes, len, o);
    sodium_memzero(o, sizeof *o); /* refused before the session saw it */
    return rc;
}

int tether_engine_open(tether_engine_t *eng, const char *from,
                       const uint8_t *bytes, size_t len, uint8_t *type,
                       const uint8_t **payload, size_t *plen)
{
    peer_t *p = NULL;
    int kind, rc, mode;

    if (type == NULL || payload == NULL || plen == NULL)
        return TETHER_EINVAL;
    *payload = NULL;
    *plen = 0;
    kind = recv_kind(eng, from, bytes, len);
    if (kind < 0)
        return kind;
    if (kind == TETHER_ENV_TYPE_HELLO || kind == TETHER_ENV_TYPE_RESTART) {
        eng->stats.recv_unknown++;
        return TETHER_EPROTO;
    }
    rc = open_envelope(eng, from, bytes, len, NULL, &p, type, payload, plen);
    if (rc <= 0) {
        *payload = NULL;
        *plen = 0;
        return rc == 0 ? TETHER_ECLOSED : rc;
    }
    if (*type < TETHER_MSG_MODULE_MIN) {
        /* Authentic engine traffic on the shell's direct path: handle it
         * as recv would; there is nothing for the caller. */
        dispatch(eng, p, *type, (const char *)*payload, *plen, 0);
        rc = TETHER_EPROTO;
        goto refused;
    }
    if (eng->left) {
        rc = TETHER_ECLOSED;
        goto refused;
    }
    mode = part_mode(eng, p->name);
    if (mode == TETHER_PARTITION_DROP) {
        eng->stats.part_dropped++;
        rc = TETHER_ECLOSED;
        goto refused;
    }
    if (mode == TETHER_PARTITION_DEFER || p->inq.n > 0) {
        /* Held like a received message: the module hook gets it on heal
         * (or, behind a healed backlog still being handled, after it). */
        if (tether__defer_push(&p->inq, *type, *payload, *plen) < 0) {
            eng->stats.defer_overflow++;
            rc = TETHER_ETOOBIG;
        } else {
            eng->stats.part_deferred++;
            rc = TETHER_EAGAIN;
        }
        goto refused;
    }
    refresh_liveness(eng);
    return 0;
refused:
    *payload = NULL;
    *plen = 0;
    refresh_liveness(eng);
    return rc;
}

/* --------------------------------------------------- connection events */

/* Tells every module the session with `peer` is gone. */
static void modules_session_down(tether_engine_t *eng, const char *peer)
{
    for (size_t k = 0; k < eng->nmodules; k++)
        if (eng->modules[k].m.on_session_down)
            eng->modules[k].m.on_session_down(eng, eng->modules[k].ctx, peer);
}

/* Sends our signed restart notice to p (see engine.h's table). */
static void send_restart_notice(tether_engine_t *eng, peer_t *p)
{
    uint8_t *out = malloc(TETHER_HELLO_MAX_BYTES);
    size_t len = 0;

    if (out == NULL)
        return;
    if (tether__session_restart_notice(&p->sess, eng->incarnation, out,
                                       TETHER_HELLO_MAX_BYTES, &len) < 0) {
        free(out);
        return;
    }
    (void)act_send(eng, p->name, out, len);
}

int tether_engine_peer_up(tether_engine_t *eng, const char *name)
{
    peer_t *p;

    if (!valid_name(name) || strcmp(name, eng->name) == 0)
        return TETHER_EINVAL;
    p = get_peer(eng, name);
    if (p == NULL)
        return TETHER_ENOMEM;
    if (p->usable) /* a new connection replaces the old one */
        modules_session_down(eng, name);
    tether__session_reset(&p->sess);
    p->connected = 1;
    p->usable = 0;
    send_restart_notice(eng, p);
    if (p->is_client)
        return send_hello(eng, p);
    return 0;
}

/* The session with p ends as on a connection loss (its lease with it);
 * the connection itself is the caller's to account for. */
static void session_lost(tether_engine_t *eng, peer_t *p)
{
    int was_usable = p->usable;

    p->usable = 0;
    tether__session_reset(&p->sess);
    tether__membership_expire(&eng->ms, p->name);
    if (was_usable)
        modules_session_down(eng, p->name);
}

int tether_engine_peer_down(tether_engine_t *eng, const char *name)
{
    peer_t *p;

    if (!valid_name(name))
        return TETHER_EINVAL;
    p = find_peer(eng, name);
    if (p == NULL)
        return TETHER_ENOTFOUND;
    p->connected = 0;
    p->dial_at = eng->now + redial_wait(eng, p->dials + 1);
    session_lost(eng, p);
    refresh_liveness(eng);
    if (peer_forgettable(eng, p)) /* a visitor, gone: nothing to keep */
        for (size_t i = 0; i < eng->npeers; i++)
            if (eng->peers[i] == p) {
                forget_peer(eng, i);
                break;
            }
    return 0;
}

/*
 * A restart notice from `from` (untrusted until verified). The sender
 * says which incarnation it runs as; a notice is replayable, so only one
 * newer than what we hold means anything. A usable session with an older
 * incarnation ends as on a connection loss (the member goes down, modules
 * drop its state) and a fresh one starts on the same connection; with no
 * usable session, only a live member entry of an older incarnation goes
 * down. With nothing older held (a first contact) the handshake under way
 * covers it.
 */
static int recv_restart(tether_engine_t *eng, const char *from,
                        const uint8_t *bytes, size_t len)
{
    peer_t *p = find_peer(eng, from);
    const tether_member_t *m;
    uint64_t inc;
    int rc;

    if (p == NULL) {
        eng->stats.recv_unknown++; /* we hold nothing of it */
        return TETHER_ENOTFOUND;
    }
    rc = tether__session_check_restart(&p->sess, bytes, len, &inc);
    if (rc < 0) {
        eng->stats.recv_rejected++;
        return rc;
    }
    if (p->usable && tether__session_peer_incarnation(&p->sess) < inc) {
        eng->stats.restarts_seen++;
        session_lost(eng, p);
        if (p->connected && p->is_client)
            (void)send_hello(eng, p);
        return 0;
    }
    m = tether__membership_find(&eng->ms, from);
    if (m != NULL && m->live && m->incarnation < inc) {
        eng->stats.restarts_seen++;
        tether__membership_expire(&eng->ms, from);
    }
    return 0;
}

/* ------------------------------------------------------------- timers */

/* One heartbeat round: heartbeats, partition digests, leave repeats,
 * connection and join retries. */
static void round_tick(tether_engine_t *eng)
{
    if (eng->left) {
        if (eng->leave_rounds > 0) {
            eng->leave_rounds--;
            for (size_t i = 0; i < eng->npeers; i++)
                if (eng->peers[i]->usable)
                    (void)send_inc_msg(eng, eng->peers[i]->name,
                                       TETHER_MSG_LEAVE, "leave");
        }
        return;
    }
    for (size_t i = 0; i < eng->ms.n; i++) {
        tether_member_t *m = &eng->ms.v[i];
        peer_t *p;
        if (m->is_self || m->status != TETHER_MEMBER_ALIVE)
            continue;
        p = find_peer(eng, m->name);
        if (p != NULL && p->usable)
            (void)send_heartbeat(eng, m->name);
    }
    if (eng->parts.active > 0)
        for (size_t i = 0; i < eng->npeers; i++)
            if (eng->peers[i]->usable)
                (void)send_pdigest(eng, eng->peers[i]->name);
    if (eng->join_pending &&
        eng->now >= eng->join_started + eng->join_timeout_ms) {
        act_log(eng, TETHER_ACT_LOG_WARNING,
                "the join through '%s' had no answer in %llu ms",
                eng->join_first, (unsigned long long)eng->join_timeout_ms);
        join_done(eng, TETHER_JOIN_TIMEOUT, NULL, 0, 0);
    }
    sweep_peers(eng); /* members removed since, joins given up */
    if (eng->join_pending && eng->now >= eng->join_at + eng->retry_ms) {
        peer_t *c = find_peer(eng, eng->join_contact);
        eng->join_at = eng->now;
        if (c != NULL && c->usable)
            (void)send_join(eng, c->name);
        else if (c == NULL || !c->connected)
            (void)act_connect(eng, eng->join_contact);
    }
    connect_pass(eng);
}

/*
 * Joins the next configured seed (in turn, round after round, skipping
 * ourselves) every seed_retry_ms from the first tick on, until a join has
 * been answered and we have company, or we left; then never again.
 */
static void seed_pass(tether_engine_t *eng)
{
    if (eng->nseeds == 0)
        return;
    if (eng->left || (eng->seed_started && !eng->join_pending &&
                      tether_engine_members(eng, NULL, 0) > 1)) {
        eng->nseeds = 0; /* done */
        return;
    }
    if (eng->join_pending ||
        (eng->seed_started && eng->now < eng->seed_at + eng->seed_retry_ms))
        return; /* a join runs until answered or timed out, never replaced */
    eng->seed_started = 1;
    eng->seed_at = eng->now;
    for (size_t tries = 0; tries < eng->nseeds; tries++) {
        const char *seed = eng->seeds[eng->seed_next];
        eng->seed_next = (eng->seed_next + 1) % eng->nseeds;
        if (strcmp(seed, eng->name) == 0)
            continue;
        eng->stats.seed_joins++;
        (void)tether_engine_join(eng, seed);
        return;
    }
}

int tether_engine_tick(tether_engine_t *eng, uint64_t now_ms)
{
    if (now_ms > eng->now)
        eng->now = now_ms;
    eng->stats.ticks++;
    seed_pass(eng);
    if (eng->next_round == 0 || eng->now >= eng->next_round) {
        eng->next_round = eng->now + eng->hb_ms;
        round_tick(eng);
    }
    for (size_t i = 0; i < eng->npeers; i++) {
        peer_t *p = eng->peers[i];
        if (p->is_client && p->connected && !p->usable &&
            eng->now >= p->hello_at + eng->retry_ms)
            (void)send_hello(eng, p);
    }
    flush_all(eng, 1);
    for (size_t k = 0; k < eng->nmodules; k++)
        if (eng->modules[k].m.on_tick)
            eng->modules[k].m.on_tick(eng, eng->modules[k].ctx, eng->now);
    refresh_liveness(eng);
    return 0;
}

uint64_t tether_engine_next_deadline(const tether_engine_t *eng)
{
    uint64_t d = eng->next_round ? eng->next_round : eng->now;

    if (eng->nseeds > 0 && eng->seed_started && !eng->join_pending &&
        eng->seed_at + eng->seed_retry_ms < d)
        d = eng->seed_at + eng->seed_retry_ms;

    for (size_t i = 0; i < eng->ms.n; i++) {
        const tether_member_t *m = &eng->ms.v[i];
        if (!m->is_self && m->live && m->lease_until < d)
            d = m->lease_until;
    }
    for (size_t i = 0; i < eng->npeers; i++) {
        const peer_t *p = eng->peers[i];
        if (p->is_client && p->connected && !p->usable &&
            p->hello_at + eng->retry_ms < d)
            d = p->hello_at + eng->retry_ms;
        if (flushable(eng, p)) { /* the rest of a healed backlog */
            uint64_t at = p->inq.n > 0 || eng->flush_at < eng->now
                              ? eng->now
                              : eng->flush_at;
            if (at < d)
                d = at;
        }
    }
    for (size_t k = 0; k < eng->nmodules; k++) {
        if (eng->modules[k].m.next_deadline) {
            uint64_t md = eng->modules[k].m.next_deadline(
                (tether_engine_t *)eng, eng->modules[k].ctx);
            if (md < d)
                d = md;
        }
    }
    return d;
}

/* ---------------------------------------------------------- local API */

int tether_engine_join(tether_engine_t *eng, const char *contact)
{
    peer_t *c;

    if (!valid_name(contact))
        return TETHER_EINVAL;
    if (eng->left)
        return TETHER_ECLOSED;
    if (strcmp(contact, eng->name) == 0)
        return 0;
    c = get_peer(eng, contact);
    if (c == NULL)
        return TETHER_ENOMEM;
    memcpy(eng->join_contact, contact, strlen(contact) + 1);
    memcpy(eng->join_first, contact, strlen(contact) + 1);
    eng->join_pending = 1;
    eng->join_at = eng->now;
    eng->join_started = eng->now;
    if (c->usable)
        return send_join(eng, contact) == TETHER_ENOMEM ? TETHER_ENOMEM : 0;
    if (!c->connected)
        return act_connect(eng, contact);
    return 0;
}

int tether_engine_leave(tether_engine_t *eng)
{
    if (eng->left)
        return TETHER_ECLOSED;
    tether__membership_leave_self(&eng->ms);
    eng->join_pending = 0;
    for (size_t i = 0; i < eng->npeers; i++)
        if (eng->peers[i]->usable)
            (void)send_inc_msg(eng, eng->peers[i]->name, TETHER_MSG_LEAVE,
                               "leave");
    eng->left = 1;
    eng->leave_rounds = TETHER_ENGINE_LEAVE_ROUNDS;
    refresh_liveness(eng);
    return 0;
}

size_t tether_engine_members(tether_engine_t *eng, const char **out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < eng->ms.n; i++) {
        if (!eng->ms.v[i].live)
            continue;
        if (out != NULL && n < cap)
            out[n] = eng->ms.v[i].name;
        n++;
    }
    return n;
}

int tether_engine_is_member(tether_engine_t *eng, const char *name)
{
    const tether_member_t *m = tether__membership_find(&eng->ms, name);

    return m != NULL && m->live;
}

static void broadcast_partitions(tether_engine_t *eng)
{
    for (size_t i = 0; i < eng->npeers; i++)
        if (tether__session_established(&eng->peers[i]->sess))
            (void)send_partitions(eng, eng->peers[i]->name);
}

int tether_engine_partition(tether_engine_t *eng, const char *const *a,
                            size_t na, const char *const *b, size_t nb,
                            int mode, uint64_t *ref)
{
    uint64_t r;
    int rc;

    do
        r = random_u64(eng);
    while (r == 0 || tether__partition_find(&eng->parts, r) != NULL);
    rc = tether__partition_add(&eng->parts, r, mode, 0, a, na, b, nb);
    if (rc < 0)
        return rc;
    if (ref != NULL)
        *ref = r;
    broadcast_partitions(eng);
    partitions_changed(eng);
    return 0;
}

int tether_engine_heal(tether_engine_t *eng, uint64_t ref)
{
    int rc = tether__partition_heal(&eng->parts, ref);

    if (rc < 0)
        return rc;
    if (rc > 0) {
        broadcast_partitions(eng);
        partitions_changed(eng);
    }
    return 0;
}

void tether_engine_heal_all(tether_engine_t *eng)
{
    if (tether__partition_heal_all(&eng->parts) > 0) {
        broadcast_partitions(eng);
        partitions_changed(eng);
    }
}

const tether_partition_table_t *
tether_engine_partitions(const tether_engine_t *eng)
{
    return &eng->parts;
}

int tether_engine_trust_add(tether_engine_t *eng, const char *name,
                            const uint8_t *pk)
{
    if (!valid_name(name) || pk == NULL)
        return TETHER_EINVAL;
    return tether__trust_add_pubkey(&eng->trust, name, pk);
}

const uint8_t *tether_engine_public_key(const tether_engine_t *eng)
{
    return eng->id.pk;
}

int tether__engine_sign(tether_engine_t *eng, const uint8_t *msg, size_t len,
                        uint8_t sig[TETHER_SIG_BYTES])
{
    return tether__identity_sign(&eng->id, msg, len, sig);
}

int tether__engine_verify(tether_engine_t *eng, const char *name,
                          const uint8_t *msg, size_t len,
                          const uint8_t sig[TETHER_SIG_BYTES])
{
    return tether__trust_verify_signed(&eng->trust, name, msg, len, sig);
}

tether_engine_stats_t *tether__engine_stats_rw(tether_engine_t *eng)
{
    return &eng->stats;
}

int tether__engine_register_module(tether_engine_t *eng,
                                   const tether_engine_module_t *m, void *ctx)
{
    if (m == NULL || (m->type != 0 && (m->type < TETHER_MSG_MODULE_MIN ||
                                       m->type == TETHER_MSG_SHELL)))
        return TETHER_EINVAL;
    if (m->type != 0 && eng->module_of[m->type] >= 0)
        return TETHER_EEXIST;
    for (size_t k = 0; m->type == 0 && m->name != NULL && k < eng->nmodules;
         k++)
        if (eng->modules[k].m.name != NULL &&
            strcmp(eng->modules[k].m.name, m->name) == 0)
            return TETHER_EEXIST; /* a module without a type, by name */
    if (eng->nmodules == TETHER_ENGINE_MODULES_MAX)
        return TETHER_ETOOBIG;
    eng->modules[eng->nmodules].m = *m;
    eng->modules[eng->nmodules].ctx = ctx;
    if (m->type != 0)
        eng->module_of[m->type] = (int8_t)eng->nmodules;
    eng->nmodules++;
    return 0;
}

void *tether__engine_module_ctx(tether_engine_t *eng, uint8_t type)
{
    if (eng == NULL || eng->module_of[type] < 0)
        return NULL;
    return eng->modules[eng->module_of[type]].ctx;
}

int tether__engine_set_param(tether_engine_t *eng, const char *name,
                             uint64_t value)
{
    size_t n = name ? strlen(name) : 0;
    int i;

    if (n == 0 || n >= TETHER_ENGINE_PARAM_NAME_MAX)
        return TETHER_EINVAL;
    for (size_t k = 0; k < n; k++)
        if (!((name[k] >= 'a' && name[k] <= 'z') ||
              (name[k] >= '0' && name[k] <= '9') || name[k] == '_'))
            return TETHER_EINVAL;
    i = param_find(eng, name);
    if (i >= 0)
        return eng->params[i].value == value ? 0 : TETHER_EEXIST;
    if (eng->nparams == TETHER_ENGINE_PARAMS_MAX)
        return TETHER_ETOOBIG;
    memcpy(eng->params[eng->nparams].name, name, n + 1);
    eng->params[eng->nparams++].value = value;
    return 0;
}

/* ---------------------------------------------------------- the clock */

void tether_engine_set_wall(tether_engine_t *eng, uint64_t wall_ms)
{
    eng->wall_base = wall_ms;
    eng->wall_at = eng->now;
    eng->wall_set = 1;
}

uint64_t tether__engine_wall(const tether_engine_t *eng)
{
    if (!eng->wall_set)
        return eng->now;
    return eng->wall_base + (eng->now - eng->wall_at);
}

int tether__engine_stamp(tether_engine_t *eng, uint64_t *stamp)
{
    return tether__hlc_now(&eng->hlc, tether__engine_wall(eng), stamp);
}

void tether__engine_stamp_merge(tether_engine_t *eng, uint64_t stamp)
{
    uint64_t ignored;

    /* A stamp too far ahead of our wall clock is not merged (hlc.h). */
    if (tether__hlc_update(&eng->hlc, tether__engine_wall(eng), stamp,
                           &ignored) < 0)
        return;
}

/* ------------------------------------------------------ introspection */

const char *tether_engine_name(const tether_engine_t *eng)
{
    return eng->name;
}

uint64_t tether_engine_incarnation(const tether_engine_t *eng)
{
    return eng->incarnation;
}

uint64_t tether_engine_now(const tether_engine_t *eng)
{
    return eng->now;
}

int tether_engine_has_left(const tether_engine_t *eng)
{
    return eng->left;
}

int tether_engine_join_pending(const tether_engine_t *eng)
{
    return eng->join_pending;
}

const char *tether_engine_join_contact(const tether_engine_t *eng)
{
    return eng->join_pending ? eng->join_contact : "";
}

int tether_engine_session_up(const tether_engine_t *eng, const char *peer)
{
    const peer_t *p = valid_name(peer) ? find_peer(eng, peer) : NULL;

    return p != NULL && p->usable;
}

const tether_engine_stats_t *tether_engine_stats(const tether_engine_t *eng)
{
    return &eng->stats;
}

void tether_engine_stats_list(const tether_engine_stats_t *st,
                              tether_engine_stat_t out[TETHER_ENGINE_STATS_N])
{
#define STAT(f)                                                                \
    {                                                                          \
#f, offsetof(tether_engine_stats_t, f)                                 \
    }
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        STAT(recv),          STAT(recv_garbage),    STAT(recv_rejected),
        STAT(recv_bad_term), STAT(recv_unknown),    STAT(recv_stale),
        STAT(sent),          STAT(send_no_session), STAT(part_dropped),
        STAT(part_skipped),  STAT(part_deferred),   STAT(defer_overflow),
        STAT(defer_flushed), STAT(defer_discarded), STAT(hellos_sent),
        STAT(sessions_up),   STAT(member_events),   STAT(ticks),
        STAT(restarts_seen), STAT(seed_joins),      STAT(joins_refused),
        STAT(dials),         STAT(dials_given_up),  STAT(peers_freed),
        STAT(peers_refused), STAT(relay_sent),      STAT(relay_forwarded),
        STAT(relay_delivered), STAT(relay_refused), STAT(relay_duplicates),
        STAT(relay_stale),   STAT(relay_hop_limit), STAT(relay_no_route),
    };
#undef STAT
    _Static_assert(sizeof fields / sizeof fields[0] == TETHER_ENGINE_STATS_N,
                   "every counter is listed");
    _Static_assert(sizeof(tether_engine_stats_t) ==
                       TETHER_ENGINE_STATS_N * sizeof(uint64_t),
                   "every counter is a uint64_t and listed");

    for (size_t i = 0; i < TETHER_ENGINE_STATS_N; i++) {
        out[i].name = fields[i].name;
        memcpy(&out[i].value, (const char *)st + fields[i].off,
               sizeof out[i].value);
    }
}

const tether_envelope_stats_t *
tether_engine_envelope_stats(const tether_engine_t *eng)
{
    return &eng->env_stats;
}

const tether_membership_t *tether_engine_membership(const tether_engine_t *eng)
{
    return &eng->ms;
}

void tether_engine_set_open_hook(tether_engine_t *eng,
                                 tether_engine_open_hook_t hook, void *ctx)
{
    eng->open_hook = hook;
    eng->open_hook_ctx = ctx;
}

/* ---------------------------------------------------------- lifecycle */

void tether_engine_config_default(tether_engine_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->incarnation = 1;
    cfg->heartbeat_ms = TETHER_ENGINE_DEFAULT_HB_MS;
    cfg->ttl_ms = TETHER_ENGINE_DEFAULT_TTL_MS;
    cfg->defer_max = TETHER_ENGINE_DEFAULT_DEFER;
    cfg->defer_max_bytes = TETHER_ENGINE_DEFAULT_DEFER_BYTES;
}

/* Sets up identity and trust from the configured key material. */
static int setup_keys(tether_engine_t *eng, const tether_engine_config_t *cfg)
{
    tether_identity_t own;
    int rc;

    if (cfg->cluster_secret != NULL)
        rc = tether__keys_from_secret(&eng->id, &eng->trust, eng->name,
                                      cfg->cluster_secret);
    else if (cfg->cookie != NULL)
        rc = tether__keys_from_cookie(&eng->id, &eng->trust, eng->name,
                                      cfg->cookie, cfg->cookie_len);
    else
        rc = tether__trust_init(&eng->trust);
    if (rc < 0)
        return rc;
    if (cfg->identity_seed != NULL) {
        rc = tether__identity_from_seed(&own, eng->name, cfg->identity_seed);
        if (rc < 0)
            return rc;
        tether__identity_fini(&eng->id);
        eng->id = own;
        sodium_memzero(&own, sizeof own);
    } else if (cfg->cluster_secret == NULL && cfg->cookie == NULL) {
        return TETHER_EINVAL; /* no identity at all */
    }
    return 0;
}

int tether_engine_new(const tether_engine_config_t *cfg, tether_engine_t **out)
{
    tether_engine_t *eng;
    int rc;

    if (cfg == NULL || out == NULL || !valid_name(cfg->name) ||
        cfg->heartbeat_ms == 0 || cfg->ttl_ms <= cfg->heartbeat_ms ||
        cfg->incarnation == 0 || cfg->nseeds > TETHER_ENGINE_SEEDS_MAX ||
        (cfg->nseeds > 0 && cfg->seeds == NULL))
        return TETHER_EINVAL;
    for (size_t i = 0; i < cfg->nseeds; i++)
        if (cfg->seeds[i] == NULL || !valid_name(cfg->seeds[i]))
            return TETHER_EINVAL;
    if (tether__crypto_init() < 0)
        return TETHER_EIO;
    eng = calloc(1, sizeof *eng);
    if (eng == NULL)
        return TETHER_ENOMEM;
    memcpy(eng->name, cfg->name, strlen(cfg->name) + 1);
    eng->incarnation = cfg->incarnation;
    eng->hb_ms = cfg->heartbeat_ms;
    eng->ttl_ms = cfg->ttl_ms;
    eng->retry_ms =
        cfg->hello_retry_ms ? cfg->hello_retry_ms : 2u * cfg->heartbeat_ms;
    eng->redial_max_ms = cfg->reconnect_max_ms
                             ? cfg->reconnect_max_ms
                             : TETHER_ENGINE_DEFAULT_RECONNECT_MAX_MS;
    if (eng->redial_max_ms < eng->hb_ms)
        eng->redial_max_ms = eng->hb_ms;
    eng->redials = cfg->reconnect_attempts ? cfg->reconnect_attempts
                                           : TETHER_ENGINE_DEFAULT_RECONNECTS;
    eng->defer_max = cfg->defer_max ? cfg->defer_max : 1;
    eng->defer_max_bytes = cfg->defer_max_bytes
                               ? cfg->defer_max_bytes
                               : TETHER_ENGINE_DEFAULT_DEFER_BYTES;
    memcpy(eng->seed, cfg->seed, sizeof eng->seed);
    memset(eng->module_of, -1, sizeof eng->module_of);
    tether__partition_table_init(&eng->parts);
    tether__hlc_init(&eng->hlc, 0);
    eng->seed_retry_ms =
        cfg->seed_retry_ms ? cfg->seed_retry_ms : 3u * cfg->heartbeat_ms;
    eng->join_timeout_ms = cfg->join_timeout_ms
                               ? cfg->join_timeout_ms
                               : TETHER_ENGINE_DEFAULT_JOIN_TIMEOUT_MS;
    if (cfg->nseeds > 0) {
        eng->seeds = calloc(cfg->nseeds, sizeof *eng->seeds);
        if (eng->seeds == NULL) {
            rc = TETHER_ENOMEM;
            goto fail;
        }
        for (size_t i = 0; i < cfg->nseeds; i++)
            memcpy(eng->seeds[i], cfg->seeds[i], strlen(cfg->seeds[i]) + 1);
        eng->nseeds = cfg->nseeds;
    }
    rc = setup_keys(eng, cfg);
    if (rc < 0)
        goto fail;
    rc = tether__membership_init(&eng->ms, eng->name, eng->incarnation);
    if (rc < 0)
        goto fail;
    rc = tether__relay_attach(eng);
    if (rc < 0)
        goto fail;
    *out = eng;
    return 0;
fail:
    tether_engine_free(eng);
    return rc;
}

void tether_engine_free(tether_engine_t *eng)
{
    tether_action_t a;

    if (eng == NULL)
        return;
    /* Modules first: they may hold pointers into nothing of the engine's
     * but must not outlive it. */
    for (size_t k = 0; k < eng->nmodules; k++)
        if (eng->modules[k].m.free)
            eng->modules[k].m.free(eng->modules[k].ctx);
    eng->nmodules = 0;
    while (tether_engine_next_action(eng, &a))
        tether_engine_action_release(&a);
    free(eng->acts);
    for (size_t i = 0; i < eng->npeers; i++)
        free_peer(eng->peers[i]);
    free(eng->peers);
    tether__membership_fini(&eng->ms);
    tether__partition_table_fini(&eng->parts);
    tether__identity_fini(&eng->id);
    tether__trust_fini(&eng->trust);
    sodium_memzero(eng->seed, sizeof eng->seed);
    free(eng->seeds);
    free(eng);
}
