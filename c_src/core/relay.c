/*
 * core/relay.c: messages relayed around a cut path (see core/relay.h for
 * the protocol, the wire term and the guarantees).
 *
 * State: the next id of our own relayed messages, and per origin seen a
 * replay window (incarnation, highest id, a bit per id of the
 * TETHER_RELAY_WINDOW below it). One window serves relays and the
 * destination alike: an id is handed on once, whatever this node's part
 * in its journey, so a message that comes by two relays, or back round
 * a loop, stops at the second copy.
 */
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "core/module.h"
#include "core/relay.h"

#define RELAY_TAG       "relay"
#define RELAY_ARITY     8
#define RELAY_SIG_LABEL "tether/v1/relay"
/* Origins remembered; a message of one more is refused (counted). */
#define RELAY_ORIGINS_MAX TETHER_ENGINE_PEERS_MAX

/* The replay window of one origin. */
typedef struct origin {
    char name[TETHER_NODE_NAME_MAX + 1];
    uint64_t inc;  /* the newest incarnation seen */
    uint64_t high; /* the highest id seen under it */
    uint64_t mask; /* bit k: id high - 1 - k seen */
} origin_t;

typedef struct relay {
    uint64_t next_id; /* the id of our next relayed message - 1 */
    origin_t *origins;
    size_t norigins, cap;
} relay_t;

/* A relayed message as decoded (pointers into the received bytes). */
typedef struct relay_msg {
    char origin[TETHER_NODE_NAME_MAX + 1];
    char dest[TETHER_NODE_NAME_MAX + 1];
    uint64_t inc, id, hops;
    const uint8_t *payload, *sig;
    size_t payload_len;
} relay_msg_t;

/* What a window says of an id. */
enum { FRESH = 0, DUPLICATE = 1, STALE = 2, FULL = 3 };

static relay_t *relay_of(tether_engine_t *eng);

/*
 * Builds the signed bytes of m (see core/relay.h) in a fresh buffer the
 * caller frees. Returns it with *len, or NULL when out of memory.
 */
static uint8_t *signed_bytes(const relay_msg_t *m, size_t *len)
{
    size_t olen = strlen(m->origin), dlen = strlen(m->dest);
    size_t n = sizeof RELAY_SIG_LABEL + 1 + olen + 8 + 1 + dlen + 8 +
               m->payload_len;
    uint8_t *buf = malloc(n), *p = buf;

    if (buf == NULL)
        return NULL;
    memcpy(p, RELAY_SIG_LABEL, sizeof RELAY_SIG_LABEL); /* with its NUL */
    p += sizeof RELAY_SIG_LABEL;
    *p++ = (uint8_t)olen;
    memcpy(p, m->origin, olen);
    p += olen;
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(m->inc >> (56 - 8 * i));
    *p++ = (uint8_t)dlen;
    memcpy(p, m->dest, dlen);
    p += dlen;
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(m->id >> (56 - 8 * i));
    if (m->payload_len > 0)
        memcpy(p, m->payload, m->payload_len);
    *len = n;
    return buf;
}

/* Encodes m, with hops as given, into x (fresh). Returns 0 or
 * TETHER_ENOMEM (x then holds nothing to free). */
static int encode(ei_x_buff *x, const relay_msg_t *m, uint64_t hops)
{
    int rc = tether__etf_begin(x, RELAY_ARITY, RELAY_TAG);

    if (rc < 0)
        return rc;
    if (tether__etf_encode_name(x, m->origin) < 0 ||
        ei_x_encode_ulonglong(x, m->inc) < 0 ||
        tether__etf_encode_name(x, m->dest) < 0 ||
        ei_x_encode_ulonglong(x, m->id) < 0 ||
        ei_x_encode_ulonglong(x, hops) < 0 ||
        ei_x_encode_binary(x, m->payload, (long)m->payload_len) < 0 ||
        ei_x_encode_binary(x, m->sig, TETHER_SIG_BYTES) < 0) {
        ei_x_free(x);
        return TETHER_ENOMEM;
    }
    return 0;
}

/* Decodes a validated {relay, ...} term. Returns 0 or TETHER_EPROTO. */
static int decode(const char *buf, size_t len, relay_msg_t *m)
{
    char tag[TETHER_ETF_TAG_MAX];
    size_t siglen;
    int idx = 0, arity;

    (void)len; /* validated: every read below stays within it */
    if (tether__etf_decode_head(buf, &idx, tag, &arity) < 0 ||
        strcmp(tag, RELAY_TAG) != 0 || arity != RELAY_ARITY ||
        tether__etf_decode_name(buf, &idx, m->origin) < 0 ||
        tether__etf_decode_u64(buf, &idx, &m->inc) < 0 ||
        tether__etf_decode_name(buf, &idx, m->dest) < 0 ||
        tether__etf_decode_u64(buf, &idx, &m->id) < 0 ||
        tether__etf_decode_u64(buf, &idx, &m->hops) < 0 ||
        tether__etf_decode_bin_ref(buf, &idx, &m->payload, &m->payload_len) <
            0 ||
        tether__etf_decode_bin_ref(buf, &idx, &m->sig, &siglen) < 0 ||
        siglen != TETHER_SIG_BYTES || m->inc == 0 || m->id == 0 ||
        m->payload_len == 0 || m->payload_len > TETHER_RELAY_PAYLOAD_MAX)
        return TETHER_EPROTO;
    return 0;
}

/* The window of `name`, or NULL. */
static origin_t *origin_find(relay_t *r, const char *name)
{
    for (size_t i = 0; i < r->norigins; i++)
        if (strcmp(r->origins[i].name, name) == 0)
            return &r->origins[i];
    return NULL;
}

/* A new, empty window for `name`; NULL when the table is full or out of
 * memory. Made only for a message whose signature verified, so a member
 * cannot fill the table with names nobody signs for. */
static origin_t *origin_add(relay_t *r, const char *name)
{
    origin_t *o;

    if (r->norigins == RELAY_ORIGINS_MAX)
        return NULL;
    if (r->norigins == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 8;
        origin_t *v = realloc(r->origins, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        r->origins = v;
        r->cap = cap;
    }
    o = &r->origins[r->norigins++];
    memset(o, 0, sizeof *o);
    memcpy(o->name, name, strlen(name) + 1);
    return o;
}

/* What the window says of (inc, id), without recording it. */
static int window_check(const origin_t *o, uint64_t inc, uint64_t id)
{
    uint64_t back;

    if (inc < o->inc)
        return STALE;
    if (inc > o->inc || id > o->high)
        return FRESH;
    if (id == o->high)
        return DUPLICATE;
    back = o->high - id; /* 1.. */
    if (back > TETHER_RELAY_WINDOW)
        return DUPLICATE; /* too old to tell: refused as a replay */
    return (o->mask >> (back - 1)) & 1 ? DUPLICATE : FRESH;
}

/* Records (inc, id), which window_check() found FRESH. */
static void window_mark(origin_t *o, uint64_t inc, uint64_t id)
{
    uint64_t shift;

    if (inc > o->inc) {
        o->inc = inc;
        o->high = id;
        o->mask = 0;
        return;
    }
    if (id > o->high) {
        shift = id - o->high;
        o->mask = shift > TETHER_RELAY_WINDOW
                      ? 0
                      : (shift == 64 ? 0 : o->mask << shift) |
                            ((uint64_t)1 << (shift - 1));
        o->high = id;
        return;
    }
    o->mask |= (uint64_t)1 << (o->high - id - 1);
}

/*
 * Sends x to every live member with a usable session but the names in
 * except (NULL entries ignored). Returns how many took it.
 */
static size_t flood(tether_engine_t *eng, const ei_x_buff *x,
                    const char *const except[3])
{
    const char *names[TETHER_ENGINE_PEERS_MAX];
    size_t n = tether_engine_members(eng, names, TETHER_ENGINE_PEERS_MAX);
    size_t took = 0;

    if (n > TETHER_ENGINE_PEERS_MAX)
        n = TETHER_ENGINE_PEERS_MAX;
    for (size_t i = 0; i < n; i++) {
        int skip = strcmp(names[i], tether_engine_name(eng)) == 0;
        for (int k = 0; k < 3 && !skip; k++)
            skip = except[k] != NULL && strcmp(names[i], except[k]) == 0;
        if (skip || !tether_engine_session_up(eng, names[i]))
            continue;
        if (tether_engine_send(eng, names[i], TETHER_MSG_RELAY,
                               (const uint8_t *)x->buff, (size_t)x->index,
                               0) == 0)
            took++;
    }
    return took;
}

int tether_relay_send(tether_engine_t *eng, const char *dest,
                      const uint8_t *etf, size_t len, unsigned hops)
{
    relay_t *r = relay_of(eng);
    relay_msg_t m = {.payload = etf, .payload_len = len};
    uint8_t sig[TETHER_SIG_BYTES], *sb;
    const char *except[3] = {dest, NULL, NULL};
    size_t sblen, dlen = tether__node_name_len(dest);
    ei_x_buff x;
    int rc;

    if (r == NULL || dlen == 0 || etf == NULL || len == 0 ||
        hops > TETHER_RELAY_HOPS_MAX ||
        strcmp(dest, tether_engine_name(eng)) == 0)
        return TETHER_EINVAL;
    if (len > TETHER_RELAY_PAYLOAD_MAX)
        return TETHER_ETOOBIG;
    if (tether_engine_has_left(eng))
        return TETHER_ECLOSED;
    memcpy(m.origin, tether_engine_name(eng),
           strlen(tether_engine_name(eng)) + 1);
    memcpy(m.dest, dest, dlen + 1);
    m.inc = tether_engine_incarnation(eng);
    m.id = r->next_id + 1;
    sb = signed_bytes(&m, &sblen);
    if (sb == NULL)
        return TETHER_ENOMEM;
    rc = tether__engine_sign(eng, sb, sblen, sig);
    free(sb);
    if (rc < 0)
        return rc;
    m.sig = sig;
    rc = encode(&x, &m, hops ? hops : TETHER_RELAY_HOPS_DEFAULT);
    if (rc < 0)
        return rc;
    r->next_id++; /* an id is never used twice, sent or not */
    rc = flood(eng, &x, except) > 0 ? 0 : TETHER_ECLOSED;
    ei_x_free(&x);
    if (rc == 0)
        tether__engine_stats_rw(eng)->relay_sent++;
    else
        tether__engine_stats_rw(eng)->relay_no_route++;
    return rc;
}

/* Passes m on (we are not its destination): straight to the destination
 * when we can, else to our other members while hops remain. */
static void pass_on(tether_engine_t *eng, const char *from,
                    const relay_msg_t *m)
{
    tether_engine_stats_t *st = tether__engine_stats_rw(eng);
    const char *except[3] = {from, m->origin, m->dest};
    ei_x_buff x;

    if (m->hops == 0) {
        st->relay_hop_limit++;
        return;
    }
    if (encode(&x, m, m->hops - 1) < 0)
        return; /* out of memory: lost, as on a broken link */
    if (tether_engine_session_up(eng, m->dest) &&
        tether_engine_send(eng, m->dest, TETHER_MSG_RELAY,
                           (const uint8_t *)x.buff, (size_t)x.index, 0) == 0)
        st->relay_forwarded++;
    else if (m->hops > 1 && flood(eng, &x, except) > 0)
        st->relay_forwarded++;
    else
        st->relay_no_route++;
    ei_x_free(&x);
}

static void on_message(tether_engine_t *eng, void *ctx, const char *from,
                       const char *etf, size_t len)
{
    relay_t *r = ctx;
    tether_engine_stats_t *st = tether__engine_stats_rw(eng);
    relay_msg_t m;
    origin_t *o;
    uint8_t *sb;
    size_t sblen;
    int verdict, rc;

    if (decode(etf, len, &m) < 0 ||
        strcmp(m.origin, tether_engine_name(eng)) == 0) {
        st->relay_refused++;
        return;
    }
    if (m.hops > TETHER_RELAY_HOPS_MAX) {
        st->relay_hop_limit++;
        return;
    }
    o = origin_find(r, m.origin);
    verdict = o != NULL ? window_check(o, m.inc, m.id) : FRESH;
    if (verdict != FRESH) {
        if (verdict == STALE)
            st->relay_stale++;
        else
            st->relay_duplicates++;
        return;
    }
    /* The signature is checked before the window moves: a forgery must
     * not push the origin's genuine ids out of it. */
    sb = signed_bytes(&m, &sblen);
    if (sb == NULL)
        return;
    rc = tether__engine_verify(eng, m.origin, sb, sblen, m.sig);
    free(sb);
    if (rc < 0 || (o == NULL && (o = origin_add(r, m.origin)) == NULL)) {
        st->relay_refused++;
        return;
    }
    window_mark(o, m.inc, m.id);
    if (strcmp(m.dest, tether_engine_name(eng)) != 0) {
        pass_on(eng, from, &m);
        return;
    }
    {
        tether_action_t a = {.kind = TETHER_ACT_MESSAGE};
        memcpy(a.peer, m.origin, strlen(m.origin) + 1);
        a.u.message.etf.ptr = m.payload;
        a.u.message.etf.len = m.payload_len;
        if (tether__engine_push(eng, &a) == 0)
            st->relay_delivered++;
    }
}

static void relay_free(void *ctx)
{
    relay_t *r = ctx;

    if (r == NULL)
        return;
    free(r->origins);
    free(r);
}

static const tether_engine_module_t relay_module = {
    .name = "relay",
    .type = TETHER_MSG_RELAY,
    .on_message = on_message,
    .free = relay_free,
};

/* The engine's relay state: the ctx tether__relay_attach() registered. */
static relay_t *relay_of(tether_engine_t *eng)
{
    return tether__engine_module_ctx(eng, TETHER_MSG_RELAY);
}

int tether__relay_attach(tether_engine_t *eng)
{
    relay_t *r = calloc(1, sizeof *r);
    int rc;

    if (r == NULL)
        return TETHER_ENOMEM;
    rc = tether__engine_register_module(eng, &relay_module, r);
    if (rc < 0)
        free(r);
    return rc;
}
