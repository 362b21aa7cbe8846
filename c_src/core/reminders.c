/*
 * core/reminders.c: one-shot reminders on the cluster ring (see
 * reminders.h for the protocol).
 *
 * Layout. Each shard of the ring holds its records in its own chained
 * hash table (so a handoff walks the shard that moved and nothing else),
 * with a digest (the XOR of every record's fingerprint) kept up to date
 * for anti-entropy. A record is one allocation: its fields, then its key
 * and payload. One binary heap orders what has a deadline: armed live
 * records (fire time, or hold end when held) and tombstones (when to
 * forget them), on the wall clock. Writes in flight (sets, cancels,
 * fires waiting for their tombstone's majority, remote reads) are ops,
 * answered by acknowledgements or their deadline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "core/hlc.h"
#include "core/module.h"
#include "core/reminders.h"

#define NO_NODE      (-1)
#define BATCH        512 /* records per rm_sync message */
#define REPLICAS_MAX TETHER_RING_TOP

/* Local flags of a record (never on the wire). */
#define L_HELD   1u /* fire time passed with no subscriber */
#define L_MISSED 2u /* armed by a handoff or start past its time */

enum { S_NONE = 0, S_WAIT, S_ARMED };
enum { OP_WRITE = 1, OP_FIRE, OP_GET, OP_HANDOFF };

typedef struct rec {
    struct rec *next; /* the shard's hash chain */
    uint64_t stamp;   /* the write's HLC stamp */
    uint64_t origin;  /* the writer's node hash (ties of stamps) */
    int64_t fire_at;
    int64_t due;   /* the heap's key (wall ms) */
    uint32_t hidx; /* heap index + 1; 0: not in the heap */
    uint32_t plen;
    uint16_t klen;
    uint8_t flags;  /* TETHER_REMINDER_* */
    uint8_t local;  /* L_* */
    uint8_t data[]; /* key, then payload */
} rec_t;

typedef struct shard {
    rec_t **b;
    uint32_t nb, n;
    uint64_t digest;
    int state;
    int prim;          /* the primary in our last table (a node index) */
    int wait_for;      /* S_WAIT: the old primary */
    uint64_t released; /* nodes (index < 64) that released s to us */
    int released_to;   /* the new primary we last released to */
    int hand_pending;  /* that release did not go: retried every round */
    int hand_inflight; /* a handoff awaits the new primary's ack */
    uint64_t wait_until;
} shard_t;

typedef struct op {
    uint64_t id, ref, deadline, fence;
    int kind;
    uint32_t need, got, ntargets;
    int targets[REPLICAS_MAX];
    int acked[REPLICAS_MAX];
    uint8_t *key, *payload; /* OP_FIRE: what to deliver */
    uint64_t stamp, origin; /* OP_FIRE: the write fired */
    size_t klen, plen;
} op_t;

typedef char name_t[TETHER_NODE_NAME_MAX + 1];

struct tether_reminders {
    tether_reminders_config_t cfg;
    tether_engine_t *eng;
    uint32_t nshards;
    shard_t *shards;
    rec_t **heap;
    size_t hn, hcap;
    op_t *ops;
    size_t nops, capops;
    uint64_t next_op;
    name_t *names; /* node names by index (interned, never removed) */
    size_t nnames, capnames;
    int self;
    size_t subscribers;
    int started, armed_ok;
    int alone;       /* the ring had only us at the last change */
    uint64_t origin; /* our node name's hash, in our writes */
    uint64_t settle_end, next_round;
    int loading;
    uint8_t *got_payload; /* tether_reminders_get's answer */
    tether_reminders_stats_t stats;
};

/* ------------------------------------------------------------ helpers */

static uint64_t hash_key(const uint8_t *k, size_t n)
{
    return tether_ring_hash_canon(k, n);
}

static int64_t wall_of(const tether_reminders_t *m)
{
    return (int64_t)tether__engine_wall(m->eng);
}

static const uint8_t *rkey(const rec_t *r)
{
    return r->data;
}
static const uint8_t *rpay(const rec_t *r)
{
    return r->data + r->klen;
}

static int node_idx(tether_reminders_t *m, const char *name)
{
    for (size_t i = 0; i < m->nnames; i++)
        if (strcmp(m->names[i], name) == 0)
            return (int)i;
    if (m->nnames == m->capnames) {
        size_t cap = m->capnames ? m->capnames * 2 : 16;
        name_t *p = realloc(m->names, cap * sizeof *p);
        if (p == NULL)
            return NO_NODE;
        m->names = p;
        m->capnames = cap;
    }
    snprintf(m->names[m->nnames], sizeof m->names[0], "%s", name);
    return (int)m->nnames++;
}

static uint64_t fingerprint(const rec_t *r)
{
    uint64_t h = tether__fnv1a(TETHER_FNV_OFFSET, rkey(r), r->klen);
    uint8_t t = r->flags & TETHER_REMINDER_TOMB;

    h = tether__fnv1a(h, &r->stamp, sizeof r->stamp);
    h = tether__fnv1a(h, &r->origin, sizeof r->origin);
    h = tether__fnv1a(h, &t, 1);
    return h | 1; /* never 0 */
}

static void log_line(tether_reminders_t *m, int level, const char *text)
{
    tether_action_t a = {.kind = TETHER_ACT_LOG};

    a.u.log.level = level;
    a.u.log.text.ptr = (const uint8_t *)text;
    a.u.log.text.len = strlen(text);
    (void)tether__engine_push(m->eng, &a);
}

/* The owners of shard s (node indexes), at most cfg.replicas. */
static size_t owners_of(tether_reminders_t *m, uint32_t s,
                        int out[REPLICAS_MAX])
{
    const char *v[REPLICAS_MAX];
    const tether_ring_t *t = tether_ring_module_table(m->cfg.ring);
    size_t n = tether_ring_owners(t, s, m->cfg.replicas, v), k = 0;

    for (size_t i = 0; i < n; i++) {
        int x = node_idx(m, v[i]);
        if (x != NO_NODE)
            out[k++] = x;
    }
    return k;
}

static int is_owner(tether_reminders_t *m, uint32_t s)
{
    int o[REPLICAS_MAX];
    size_t n = owners_of(m, s, o);

    for (size_t i = 0; i < n; i++)
        if (o[i] == m->self)
            return 1;
    return 0;
}

/* ------------------------------------------------------------- the heap */

static int before(const rec_t *a, const rec_t *b)
{
    return a->due < b->due;
}

static void hset(tether_reminders_t *m, size_t i, rec_t *r)
{
    m->heap[i] = r;
    r->hidx = (uint32_t)i + 1;
}

static void sift_up(tether_reminders_t *m, size_t i)
{
    rec_t *r = m->heap[i];

    while (i > 0 && before(r, m->heap[(i - 1) / 2])) {
        hset(m, i, m->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    hset(m, i, r);
}

static void sift_down(tether_reminders_t *m, size_t i)
{
    rec_t *r = m->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m->hn)
            break;
        if (c + 1 < m->hn && before(m->heap[c + 1], m->heap[c]))
            c++;
        if (!before(m->heap[c], r))
            break;
        hset(m, i, m->heap[c]);
        i = c;
    }
    hset(m, i, r);
}

static int heap_push(tether_reminders_t *m, rec_t *r, int64_t due)
{
    if (r->hidx) { /* re-key */
        size_t i = r->hidx - 1;
        r->due = due;
        sift_up(m, i);
        sift_down(m, m->heap[i] == r ? i : r->hidx - 1);
        return 0;
    }
    if (m->hn == m->hcap) {
        size_t cap = m->hcap ? m->hcap * 2 : 64;
        rec_t **p = realloc(m->heap, cap * sizeof *p);
        if (p == NULL)
            return TETHER_ENOMEM;
        m->heap = p;
        m->hcap = cap;
    }
    r->due = due;
    if (!(r->flags & TETHER_REMINDER_TOMB))
        m->stats.armed++;
    hset(m, m->hn++, r);
    sift_up(m, m->hn - 1);
    return 0;
}

static void heap_del(tether_reminders_t *m, rec_t *r)
{
    size_t i;
    rec_t *last;

    if (r->hidx == 0)
        return;
    i = r->hidx - 1;
    r->hidx = 0;
    if (!(r->flags & TETHER_REMINDER_TOMB))
        m->stats.armed--;
    last = m->heap[--m->hn];
    if (i == m->hn)
        return;
    hset(m, i, last);
    sift_up(m, i);
    sift_down(m, last->hidx - 1);
}

/* --------------------------------------------------------- shard tables */

static uint32_t shard_of(const tether_reminders_t *m, uint64_t h)
{
    return tether_ring_shard_of_hash(h, m->nshards);
}

static rec_t **slot(shard_t *sh, uint64_t h, const uint8_t *k, size_t n)
{
    rec_t **p = &sh->b[(h >> 16) & (sh->nb - 1)];

    while (*p && !((*p)->klen == n && memcmp(rkey(*p), k, n) == 0))
        p = &(*p)->next;
    return p;
}

static int grow(shard_t *sh)
{
    uint32_t nb = sh->nb ? sh->nb * 2 : 16;
    rec_t **b = calloc(nb, sizeof *b);

    if (b == NULL)
        return TETHER_ENOMEM;
    for (uint32_t i = 0; i < sh->nb; i++)
        for (rec_t *r = sh->b[i], *nx; r; r = nx) {
            uint64_t h = hash_key(rkey(r), r->klen);
            nx = r->next;
            r->next = b[(h >> 16) & (nb - 1)];
            b[(h >> 16) & (nb - 1)] = r;
        }
    free(sh->b);
    sh->b = b;
    sh->nb = nb;
    return 0;
}

static void count(tether_reminders_t *m, const rec_t *r, int d)
{
    if (r->flags & TETHER_REMINDER_TOMB)
        m->stats.tombs += (uint64_t)d;
    else
        m->stats.pending += (uint64_t)d;
}

/* Unlinks *p from its shard and frees it. */
static void forget(tether_reminders_t *m, shard_t *sh, rec_t **p)
{
    rec_t *r = *p;

    *p = r->next;
    sh->n--;
    sh->digest ^= fingerprint(r);
    heap_del(m, r);
    count(m, r, -1);
    free(r);
}

/* ------------------------------------------------------------ encoding */

static int x_rec(ei_x_buff *x, const uint8_t *k, size_t kl, uint64_t stamp,
                 uint64_t origin, int64_t fire_at, unsigned flags,
                 const uint8_t *p, size_t pl)
{
    return ei_x_encode_tuple_header(x, 6) < 0 ||
                   ei_x_encode_binary(x, k, (long)kl) < 0 ||
                   ei_x_encode_ulonglong(x, stamp) < 0 ||
                   ei_x_encode_ulonglong(x, origin) < 0 ||
                   ei_x_encode_longlong(x, fire_at) < 0 ||
                   ei_x_encode_ulong(x, flags) < 0 ||
                   ei_x_encode_binary(x, p ? p : (const uint8_t *)"",
                                      (long)pl) < 0
               ? TETHER_ENOMEM
               : 0;
}

static int x_r(ei_x_buff *x, const rec_t *r)
{
    return x_rec(x, rkey(r), r->klen, r->stamp, r->origin, r->fire_at, r->flags,
                 rpay(r), r->plen);
}

static int send_x(tether_reminders_t *m, int to, ei_x_buff *x, int rc)
{
    if (rc == 0)
        rc = tether_engine_send(m->eng, m->names[to], TETHER_MSG_REMINDERS,
                                (const uint8_t *)x->buff, (size_t)x->index, 0);
    ei_x_free(x);
    return rc;
}

typedef struct wrec {
    const uint8_t *k, *p;
    size_t kl, pl;
    uint64_t stamp;
    int64_t fire_at;
    unsigned flags;
    uint64_t origin;
} wrec_t;

static int d_rec(const char *b, int *i, wrec_t *w)
{
    long long fa;
    unsigned long fl;

    if (tether__etf_expect_tuple(b, i, 6) < 0 ||
        tether__etf_decode_bin_ref(b, i, &w->k, &w->kl) < 0 ||
        tether__etf_decode_u64(b, i, &w->stamp) < 0 ||
        tether__etf_decode_u64(b, i, &w->origin) < 0 ||
        ei_decode_longlong(b, i, &fa) < 0 || ei_decode_ulong(b, i, &fl) < 0 ||
        tether__etf_decode_bin_ref(b, i, &w->p, &w->pl) < 0)
        return TETHER_EPROTO;
    w->fire_at = fa;
    w->flags = (unsigned)fl;
    if (w->kl == 0 || w->kl > TETHER_REMINDER_KEY_MAX ||
        w->pl > TETHER_REMINDER_PAYLOAD_MAX || w->stamp == 0 ||
        (w->flags & ~(TETHER_REMINDER_SKIP | TETHER_REMINDER_TOMB |
                      TETHER_REMINDER_FIRED | TETHER_REMINDER_FIRING)))
        return TETHER_EPROTO;
    return 0;
}

/* ------------------------------------------------------------- records */

static int can_arm(const tether_reminders_t *m, const shard_t *sh)
{
    return m->armed_ok && sh->state == S_ARMED;
}

/* When a tombstone is forgotten: tomb_ms after it was made, the same on
 * every replica (a tombstone's FireAt carries the wall time it was made
 * at; its stamp stays the reminder's, its fence). */
static int64_t tomb_due(const tether_reminders_t *m, uint64_t stamp,
                        int64_t made_at)
{
    int64_t t = (int64_t)tether__hlc_wall(stamp);

    return (made_at > t ? made_at : t) + (int64_t)m->cfg.tomb_ms;
}

/* The order of one write's states: live, firing (the fire decided,
 * delivery under way), tombstone. */
static unsigned rank_of(unsigned flags)
{
    return (flags & TETHER_REMINDER_TOMB)     ? 2
           : (flags & TETHER_REMINDER_FIRING) ? 1
                                              : 0;
}

static void arm(tether_reminders_t *m, rec_t *r, int by_handoff)
{
    if (r->flags & TETHER_REMINDER_TOMB)
        return;
    /* A firing one was decided: it fires again, whatever its policy. */
    if (by_handoff && !(r->flags & TETHER_REMINDER_FIRING) &&
        r->fire_at < wall_of(m) - (int64_t)m->cfg.missed_ms)
        r->local |= L_MISSED;
    (void)heap_push(m, r, r->fire_at);
}

/* The store: LWW by (stamp, tombstone, fired). Returns 1 if w replaced
 * what we held (or was new), 0 if it was older, or a negative code. */
static int apply(tether_reminders_t *m, const wrec_t *w)
{
    uint64_t h = hash_key(w->k, w->kl);
    uint32_t s = shard_of(m, h);
    shard_t *sh = &m->shards[s];
    rec_t **p, *old, *r;
    unsigned rank = rank_of(w->flags);

    if ((w->flags & TETHER_REMINDER_TOMB) &&
        tomb_due(m, w->stamp, w->fire_at) <= wall_of(m))
        return 0; /* a tombstone past its time: forgotten already */
    if (sh->n >= sh->nb * 2 || sh->nb == 0)
        if (grow(sh) < 0 && sh->nb == 0)
            return TETHER_ENOMEM;
    p = slot(sh, h, w->k, w->kl);
    old = *p;
    if (old != NULL) {
        unsigned orank = rank_of(old->flags);
        if (w->stamp < old->stamp ||
            (w->stamp == old->stamp &&
             (w->origin < old->origin ||
              (w->origin == old->origin && rank <= orank))))
            return 0;
    }
    r = malloc(sizeof *r + w->kl +
               ((w->flags & TETHER_REMINDER_TOMB) ? 0 : w->pl));
    if (r == NULL)
        return TETHER_ENOMEM;
    memset(r, 0, sizeof *r);
    r->stamp = w->stamp;
    r->origin = w->origin;
    r->fire_at = w->fire_at;
    r->klen = (uint16_t)w->kl;
    r->flags = (uint8_t)w->flags;
    r->plen = (w->flags & TETHER_REMINDER_TOMB) ? 0 : (uint32_t)w->pl;
    memcpy(r->data, w->k, w->kl);
    if (r->plen)
        memcpy(r->data + w->kl, w->p, r->plen);
    if (old != NULL)
        forget(m, sh, p);
    r->next = *p;
    *p = r;
    sh->n++;
    sh->digest ^= fingerprint(r);
    count(m, r, 1);
    if (!m->loading) {
        ei_x_buff x;
        if (ei_x_new_with_version(&x) == 0 && x_r(&x, r) == 0) {
            tether_action_t a = {.kind = TETHER_ACT_REMINDER_STORE};
            a.u.reminder_store.rec.ptr = (const uint8_t *)x.buff;
            a.u.reminder_store.rec.len = (size_t)x.index;
            (void)tether__engine_push(m->eng, &a);
        }
        ei_x_free(&x);
    }
    if (r->flags & TETHER_REMINDER_TOMB)
        (void)heap_push(m, r, tomb_due(m, r->stamp, r->fire_at));
    else if (can_arm(m, sh) && !(r->flags & TETHER_REMINDER_FIRING))
        arm(m, r, m->loading); /* a firing one: its primary delivers it */
    return 1;
}

/* -------------------------------------------------------------- ops */

static op_t *op_new(tether_reminders_t *m, int kind, uint64_t ref)
{
    op_t *o;

    if (m->nops == m->capops) {
        size_t cap = m->capops ? m->capops * 2 : 16;
        op_t *p = realloc(m->ops, cap * sizeof *p);
        if (p == NULL)
            return NULL;
        m->ops = p;
        m->capops = cap;
    }
    o = &m->ops[m->nops++];
    memset(o, 0, sizeof *o);
    o->id = ++m->next_op;
    o->kind = kind;
    o->ref = ref;
    o->deadline = tether_engine_now(m->eng) + m->cfg.op_timeout_ms;
    return o;
}

static void reply(tether_reminders_t *m, uint64_t ref, int status,
                  int64_t fire_at, const uint8_t *p, size_t pl)
{
    tether_action_t a = {.kind = TETHER_ACT_REMINDER_REPLY};

    a.u.reminder_reply.ref = ref;
    a.u.reminder_reply.status = status;
    a.u.reminder_reply.fire_at = fire_at;
    a.u.reminder_reply.payload.ptr = p;
    a.u.reminder_reply.payload.len = pl;
    (void)tether__engine_push(m->eng, &a);
}

static void deliver(tether_reminders_t *m, const op_t *o)
{
    tether_action_t a = {.kind = TETHER_ACT_REMINDER};

    a.u.reminder.key.ptr = o->key;
    a.u.reminder.key.len = o->klen;
    a.u.reminder.payload.ptr = o->payload;
    a.u.reminder.payload.len = o->plen;
    a.u.reminder.fence = o->fence;
    (void)tether__engine_push(m->eng, &a);
    m->stats.fired++;
}

/* Ends ops[i]: done (a majority) or not (its deadline). */
static int replicate(tether_reminders_t *m, const wrec_t *w, op_t *o);

/* Ends ops[i]: done (a majority) or not (its deadline). A fire is
 * delivered either way, then its write becomes a tombstone everywhere. */
static void handoff_done(tether_reminders_t *m, const op_t *o, int done);

static void op_end(tether_reminders_t *m, size_t i, int done)
{
    op_t o = m->ops[i];

    memmove(&m->ops[i], &m->ops[i + 1], (m->nops - i - 1) * sizeof o);
    m->nops--;
    if (o.kind == OP_WRITE) {
        if (!done)
            m->stats.timeouts++;
        reply(m, o.ref, done ? TETHER_REMINDER_OK : TETHER_REMINDER_TIMEOUT, 0,
              NULL, 0);
    } else if (o.kind == OP_FIRE) {
        wrec_t w = {o.key,
                    NULL,
                    o.klen,
                    0,
                    o.stamp,
                    wall_of(m),
                    TETHER_REMINDER_TOMB | TETHER_REMINDER_FIRED,
                    o.origin};
        op_t *t;
        if (!done)
            m->stats.fired_unacked++;
        deliver(m, &o);
        if ((t = op_new(m, 0, 0)) != NULL)
            (void)replicate(m, &w, t); /* nobody waits for it */
    } else if (o.kind == OP_GET && !done) {
        reply(m, o.ref, TETHER_REMINDER_TIMEOUT, 0, NULL, 0);
    } else if (o.kind == OP_HANDOFF) {
        handoff_done(m, &o, done);
    }
    free(o.key);
    free(o.payload);
}

static op_t *op_find(tether_reminders_t *m, uint64_t id, size_t *at)
{
    for (size_t i = 0; i < m->nops; i++)
        if (m->ops[i].id == id) {
            *at = i;
            return &m->ops[i];
        }
    return NULL;
}

/*
 * Writes w to the owners of its shard: applied here if we are one, sent
 * to the others with an op that ends when a majority holds it. The op is
 * filled by the caller's kind (ref, or what a fire delivers).
 */
static int replicate(tether_reminders_t *m, const wrec_t *w, op_t *o)
{
    uint32_t s = shard_of(m, hash_key(w->k, w->kl));
    int own[REPLICAS_MAX];
    size_t n = owners_of(m, s, own);
    ei_x_buff x;

    o->need = (uint32_t)(n / 2 + 1);
    for (size_t i = 0; i < n; i++) {
        o->targets[o->ntargets++] = own[i];
        if (own[i] == m->self) {
            int rc = apply(m, w);
            if (rc < 0)
                return rc;
            o->acked[i] = 1;
            o->got++;
            continue;
        }
        if (tether__etf_begin(&x, 3, "rm_put") < 0)
            return TETHER_ENOMEM;
        (void)send_x(m, own[i], &x,
                     ei_x_encode_ulonglong(&x, o->id) < 0 ||
                             ei_x_encode_list_header(&x, 1) < 0 ||
                             x_rec(&x, w->k, w->kl, w->stamp, w->origin,
                                   w->fire_at, w->flags, w->p, w->pl) < 0 ||
                             ei_x_encode_empty_list(&x) < 0
                         ? TETHER_ENOMEM
                         : 0);
    }
    return 0;
}

static void op_check(tether_reminders_t *m, uint64_t id)
{
    size_t i;
    op_t *o = op_find(m, id, &i);

    if (o != NULL && o->got >= o->need)
        op_end(m, i, 1);
}

static int write_local(tether_reminders_t *m, const wrec_t *w, uint64_t ref)
{
    op_t *o;
    uint64_t id;
    int rc;

    if (tether_engine_has_left(m->eng))
        return TETHER_ECLOSED;
    o = op_new(m, OP_WRITE, ref);
    if (o == NULL)
        return TETHER_ENOMEM;
    id = o->id;
    rc = replicate(m, w, o);
    if (rc < 0) {
        size_t i;
        if (op_find(m, id, &i))
            m->ops[i].kind = 0, op_end(m, i, 0);
        return rc;
    }
    op_check(m, id);
    return 0;
}

int tether_reminders_set(tether_reminders_t *m, const uint8_t *key, size_t klen,
                         int64_t fire_at, const uint8_t *payload, size_t plen,
                         unsigned flags, uint64_t ref)
{
    wrec_t w = {key, payload, klen, plen, 0, fire_at, flags, m->origin};

    if (m == NULL || key == NULL || klen == 0 || (plen && payload == NULL) ||
        (flags & ~TETHER_REMINDER_SKIP))
        return TETHER_EINVAL;
    if (klen > TETHER_REMINDER_KEY_MAX || plen > TETHER_REMINDER_PAYLOAD_MAX)
        return TETHER_ETOOBIG;
    if (tether__engine_stamp(m->eng, &w.stamp) < 0)
        return TETHER_EAGAIN; /* 65,536 writes in one ms of the clock */
    m->stats.sets++;
    return write_local(m, &w, ref);
}

int tether_reminders_cancel(tether_reminders_t *m, const uint8_t *key,
                            size_t klen, uint64_t ref)
{
    wrec_t w = {key,      NULL, klen, 0, 0, wall_of(m), TETHER_REMINDER_TOMB,
                m->origin};

    if (m == NULL || key == NULL || klen == 0)
        return TETHER_EINVAL;
    if (klen > TETHER_REMINDER_KEY_MAX)
        return TETHER_ETOOBIG;
    if (tether__engine_stamp(m->eng, &w.stamp) < 0)
        return TETHER_EAGAIN; /* 65,536 writes in one ms of the clock */
    m->stats.cancels++;
    return write_local(m, &w, ref);
}

static rec_t *lookup(tether_reminders_t *m, const uint8_t *k, size_t n,
                     uint32_t *shard)
{
    uint64_t h = hash_key(k, n);
    uint32_t s = shard_of(m, h);
    shard_t *sh = &m->shards[s];

    if (shard)
        *shard = s;
    return sh->nb ? *slot(sh, h, k, n) : NULL;
}

int tether_reminders_get(tether_reminders_t *m, const uint8_t *key, size_t klen,
                         uint64_t ref, int64_t *fire_at,
                         const uint8_t **payload, size_t *plen)
{
    uint32_t s;
    rec_t *r;
    op_t *o;
    ei_x_buff x;
    const char *prim;

    if (m == NULL || key == NULL || klen == 0 || klen > TETHER_REMINDER_KEY_MAX)
        return TETHER_EINVAL;
    r = lookup(m, key, klen, &s);
    prim = tether_ring_primary(tether_ring_module_table(m->cfg.ring), s);
    if (is_owner(m, s) || prim == NULL) {
        if (r == NULL || (r->flags & TETHER_REMINDER_TOMB))
            return 0;
        *fire_at = r->fire_at;
        *payload = rpay(r);
        *plen = r->plen;
        return 1;
    }
    o = op_new(m, OP_GET, ref);
    if (o == NULL)
        return TETHER_ENOMEM;
    if (tether__etf_begin(&x, 3, "rm_get") < 0)
        return TETHER_ENOMEM;
    (void)send_x(m, node_idx(m, prim), &x,
                 ei_x_encode_ulonglong(&x, o->id) < 0 ||
                         ei_x_encode_binary(&x, key, (long)klen) < 0
                     ? TETHER_ENOMEM
                     : 0);
    return 2;
}

/* -------------------------------------------------------------- firing */

/* A reminder's Fence: its write's stamp and writer mixed (two nodes may
 * issue equal stamps; a reminder is one (stamp, writer) pair). */
static uint64_t fence_of(uint64_t stamp, uint64_t origin)
{
    uint64_t z = stamp ^ (origin * UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    return z ? z : 1;
}

/* Turns live record r into a tombstone on the replicas; with deliver,
 * the fire is delivered once a majority holds the tombstone. */
static void tombstone(tether_reminders_t *m, rec_t *r, int fire)
{
    wrec_t w = {NULL,
                NULL,
                r->klen,
                0,
                r->stamp,
                wall_of(m),
                TETHER_REMINDER_TOMB | (r->flags & TETHER_REMINDER_SKIP),
                r->origin};
    op_t *o = op_new(m, fire ? OP_FIRE : OP_WRITE, 0);
    uint8_t *k = malloc(r->klen), *p = malloc(r->plen ? r->plen : 1);
    uint64_t id;

    if (o == NULL || k == NULL || p == NULL) {
        if (o != NULL)
            m->nops--;
        free(k);
        free(p);
        heap_del(m, r); /* out of memory: not fired now */
        return;
    }
    memcpy(k, rkey(r), r->klen);
    memcpy(p, rpay(r), r->plen);
    o->key = k;
    o->klen = r->klen;
    o->payload = p;
    o->plen = r->plen;
    o->fence = fence_of(r->stamp, r->origin);
    o->stamp = r->stamp;
    o->origin = r->origin;
    if (fire) { /* first "firing" on a majority, with what it delivers */
        w.flags = (r->flags & TETHER_REMINDER_SKIP) | TETHER_REMINDER_FIRING;
        w.fire_at = r->fire_at;
        w.p = p;
        w.pl = r->plen;
    } else {
        o->kind = 0; /* a dropped or skipped one: nobody to answer */
    }
    w.k = k;
    id = o->id;
    (void)replicate(m, &w, o); /* r is freed here (replaced) */
    op_check(m, id);
}

static void fire_due(tether_reminders_t *m)
{
    int64_t now = wall_of(m);
    char line[160];

    while (m->hn > 0 && m->heap[0]->due <= now) {
        rec_t *r = m->heap[0];
        uint64_t h;
        uint32_t s;

        heap_del(m, r); /* whatever happens next, not due again now */
        if (r->flags & TETHER_REMINDER_TOMB) {
            h = hash_key(rkey(r), r->klen);
            s = shard_of(m, h);
            forget(m, &m->shards[s], slot(&m->shards[s], h, rkey(r), r->klen));
        } else if (r->local & L_HELD) {
            m->stats.hold_dropped++;
            snprintf(line, sizeof line,
                     "reminder dropped: held %llu ms with no subscriber",
                     (unsigned long long)m->cfg.hold_ms);
            log_line(m, TETHER_ACT_LOG_WARNING, line);
            tombstone(m, r, 0);
        } else if ((r->local & L_MISSED) && (r->flags & TETHER_REMINDER_SKIP)) {
            m->stats.skipped++;
            tombstone(m, r, 0);
        } else if (m->subscribers == 0) {
            m->stats.held++;
            r->local |= L_HELD;
            (void)heap_push(m, r, r->fire_at + (int64_t)m->cfg.hold_ms);
        } else {
            if (r->local & L_MISSED)
                m->stats.missed_fired++;
            tombstone(m, r, 1);
        }
    }
}

void tether_reminders_subscribers(tether_reminders_t *m, size_t n)
{
    int64_t now = wall_of(m);

    m->subscribers = n;
    if (n == 0)
        return;
    for (size_t i = 0; i < m->hn; i++) {
        rec_t *r = m->heap[i];
        if (!(r->flags & TETHER_REMINDER_TOMB) && (r->local & L_HELD)) {
            r->local &= (uint8_t)~L_HELD;
            (void)heap_push(m, r, now);
        }
    }
    fire_due(m);
}

/* ----------------------------------------------------- shards, handoff */

/* 1 if node w released shard sh to us (nodes past the 64th are waited
 * for until handoff_ms). */
static int released(const shard_t *sh, int w)
{
    return w < 64 && (sh->released >> w) & 1;
}

static void arm_shard(tether_reminders_t *m, uint32_t s)
{
    shard_t *sh = &m->shards[s];

    if (sh->state == S_WAIT)
        sh->released = 0; /* consumed */
    sh->state = S_ARMED;
    if (!m->armed_ok)
        return;
    for (uint32_t i = 0; i < sh->nb; i++)
        for (rec_t *r = sh->b[i]; r; r = r->next)
            if (!r->hidx)
                arm(m, r, 1);
}

static void disarm_shard(tether_reminders_t *m, uint32_t s)
{
    shard_t *sh = &m->shards[s];

    sh->state = S_NONE;
    for (uint32_t i = 0; i < sh->nb; i++)
        for (rec_t *r = sh->b[i]; r; r = r->next)
            if (!(r->flags & TETHER_REMINDER_TOMB)) {
                heap_del(m, r);
                r->local = 0;
            }
}

/* Sends shard s's records to node `to` in batches of BATCH; the last
 * asks for theirs back when back is set. Returns 0 or the first send's
 * error. */
static int send_shard(tether_reminders_t *m, uint32_t s, int to, int back,
                      uint64_t *sent)
{
    shard_t *sh = &m->shards[s];
    uint32_t left = sh->n, bi = 0;
    rec_t *r = NULL;
    int rc = 0;

    do {
        uint32_t k = left < BATCH ? left : BATCH;
        ei_x_buff x;
        int e;
        if (tether__etf_begin(&x, 4, "rm_sync") < 0)
            return TETHER_ENOMEM;
        e = ei_x_encode_ulong(&x, s) < 0 ||
            ei_x_encode_atom(&x, back && k == left ? "true" : "false") < 0 ||
            (k && ei_x_encode_list_header(&x, k) < 0);
        for (uint32_t j = 0; j < k && !e; j++) {
            while (r == NULL)
                r = sh->b[bi++];
            e = x_r(&x, r) < 0;
            r = r->next;
        }
        if (!e)
            e = ei_x_encode_empty_list(&x) < 0;
        e = send_x(m, to, &x, e ? TETHER_ENOMEM : 0);
        if (e < 0 && rc == 0)
            rc = e;
        left -= k;
        *sent += k;
    } while (left > 0);
    return rc;
}

/* Frees every record of shard s. */
static void drop_shard(tether_reminders_t *m, uint32_t s)
{
    shard_t *sh = &m->shards[s];

    for (uint32_t i = 0; i < sh->nb; i++)
        while (sh->b[i])
            forget(m, sh, &sh->b[i]);
}

/* {rm_release, Shard, Op}: acknowledged with {rm_ack, Op}, which tells
 * the sender that the records sent before it arrived (one session keeps
 * their order). */
static int send_release(tether_reminders_t *m, uint32_t s, int to, uint64_t op)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, 3, "rm_release") < 0)
        return TETHER_ENOMEM;
    return send_x(m, to, &x,
                  ei_x_encode_ulong(&x, s) < 0 ||
                          ei_x_encode_ulonglong(&x, op) < 0
                      ? TETHER_ENOMEM
                      : 0);
}

/* Sends shard s's records to its new primary, then the release, as an
 * op that ends when the new primary acknowledges the release: only then
 * does a node that does not replicate s drop its records (a handoff lost
 * in flight, to a crash or a cut, is sent again: handoff_done()). A
 * handoff that could not go is sent again every round and when a session
 * comes up (the new primary arms after handoff_ms otherwise). Returns 0
 * when all went. */
static int send_offer(tether_reminders_t *m, uint32_t s, int to, uint64_t op);

/* An op that ends when `to` acknowledges shard s's records: its id, or 0
 * (out of memory). */
static uint64_t handoff_op(tether_reminders_t *m, uint32_t s, int to)
{
    op_t *o = op_new(m, OP_HANDOFF, s);

    if (o == NULL)
        return 0;
    o->targets[0] = to;
    o->ntargets = o->need = 1;
    return o->id;
}

/* After a handoff or forward was sent (rc 0: it waits for the ack) or
 * not (its op goes). */
static int handoff_sent(tether_reminders_t *m, uint32_t s, uint64_t id, int rc)
{
    size_t at;

    if (rc < 0) {
        if (op_find(m, id, &at) != NULL) {
            memmove(&m->ops[at], &m->ops[at + 1],
                    (m->nops - at - 1) * sizeof m->ops[0]);
            m->nops--;
        }
        return rc;
    }
    m->shards[s].hand_inflight = 1;
    return 0;
}

static int hand_over(tether_reminders_t *m, uint32_t s, int to, uint64_t *sent)
{
    uint64_t id = handoff_op(m, s, to);
    int rc;

    if (id == 0)
        return TETHER_ENOMEM;
    rc = send_shard(m, s, to, 0, sent);
    if (rc == 0)
        rc = send_release(m, s, to, id);
    return handoff_sent(m, s, id, rc);
}

/* Forwards shard s, which this node no longer replicates, to its primary
 * `to`: an offer of its fingerprints, answered with the records the
 * primary lacks (forward_records) and an ack; then they are dropped. */
static int forward(tether_reminders_t *m, uint32_t s, int to)
{
    uint64_t id = handoff_op(m, s, to);

    if (id == 0)
        return TETHER_ENOMEM;
    return handoff_sent(m, s, id, send_offer(m, s, to, id));
}

/* A handoff's op ended: acknowledged, the records reached the new
 * primary, and a node that does not replicate the shard drops them;
 * timed out, it is sent again next round. */
static void handoff_done(tether_reminders_t *m, const op_t *o, int done)
{
    uint32_t s = (uint32_t)o->ref;
    shard_t *sh = &m->shards[s];

    sh->hand_inflight = 0;
    if (sh->state != S_NONE || sh->released_to != o->targets[0])
        return;
    if (!done) {
        sh->hand_pending = 1;
        return;
    }
    sh->hand_pending = 0;
    if (!is_owner(m, s))
        drop_shard(m, s);
}

static void send_digests(tether_reminders_t *m, int to)
{
    uint32_t *v = malloc(m->nshards * sizeof *v), n = 0;
    ei_x_buff x;
    int e;

    if (v == NULL)
        return;
    for (uint32_t s = 0; s < m->nshards; s++) {
        int o[REPLICAS_MAX], me = 0, them = 0;
        size_t k = owners_of(m, s, o);
        for (size_t i = 0; i < k; i++)
            me |= o[i] == m->self, them |= o[i] == to;
        if (me && them)
            v[n++] = s;
    }
    if (n == 0 || tether__etf_begin(&x, 2, "rm_digest") < 0) {
        free(v);
        return;
    }
    e = ei_x_encode_list_header(&x, n) < 0;
    for (uint32_t i = 0; i < n && !e; i++)
        e = ei_x_encode_tuple_header(&x, 2) < 0 ||
            ei_x_encode_ulong(&x, v[i]) < 0 ||
            ei_x_encode_ulonglong(&x, m->shards[v[i]].digest) < 0;
    if (!e)
        e = ei_x_encode_empty_list(&x) < 0;
    free(v);
    (void)send_x(m, to, &x, e ? TETHER_ENOMEM : 0);
}

static void digest_round(tether_reminders_t *m)
{
    const char *v[TETHER_MEMBERS_MAX];
    size_t n = tether_engine_members(m->eng, v, TETHER_MEMBERS_MAX);

    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], m->names[m->self]) != 0 &&
            tether_engine_session_up(m->eng, v[i]))
            send_digests(m, node_idx(m, v[i]));
}

static void members_changed(tether_engine_t *eng, void *ctx)
{
    tether_reminders_t *m = ctx;
    const tether_ring_t *t = tether_ring_module_table(m->cfg.ring);
    uint64_t now = tether_engine_now(eng);
    int was_alone = m->alone;

    if (tether_engine_has_left(eng)) {
        /* We left: nothing is ours to fire any more. */
        m->armed_ok = 0;
        m->settle_end = UINT64_MAX;
        for (uint32_t s = 0; s < m->nshards; s++)
            disarm_shard(m, s);
        return;
    }
    m->alone = tether_ring_members(t, NULL, 0) <= 1;
    for (uint32_t s = 0; s < m->nshards; s++) {
        shard_t *sh = &m->shards[s];
        const char *p = tether_ring_primary(t, s);
        int np = p ? node_idx(m, p) : m->self;
        int prev = sh->prim;

        /* Alone, we armed every shard; joining a cluster, the shards we
         * keep were another's: take them over as gained. */
        if (was_alone && !m->alone && np == m->self && sh->state != S_NONE) {
            disarm_shard(m, s);
            prev = m->self;
        }

        if (sh->state != S_NONE && np != m->self) {
            disarm_shard(m, s);
            sh->released = 0;
            sh->released_to = np;
            m->stats.handoffs_out++;
            sh->hand_pending =
                hand_over(m, s, np, &m->stats.handoff_records) < 0;
        } else if (sh->state == S_NONE && np == m->self) {
            /* A live member topped s before us only if it did not know us
             * (we were alone or new): the one that would be primary
             * without us arms s until it releases it to us. */
            if (prev != NO_NODE && prev != m->self &&
                !tether_engine_is_member(eng, m->names[prev])) {
                m->stats.handoffs_in++;
                arm_shard(m, s);
            } else {
                sh->state = S_WAIT;
                sh->wait_for = NO_NODE;
                sh->wait_until = now + m->cfg.handoff_ms;
            }
        }
        if (sh->state == S_WAIT) {
            const char *o[2];
            int w = tether_ring_owners(t, s, 2, o) == 2 ? node_idx(m, o[1])
                                                        : NO_NODE;
            if (w == NO_NODE || released(sh, w) ||
                !tether_engine_is_member(eng, m->names[w])) {
                if (w != NO_NODE)
                    m->stats.handoffs_in++;
                arm_shard(m, s);
            } else {
                sh->wait_for = w;
            }
        }
        sh->prim = np;
    }
    digest_round(m);
}

/* -------------------------------------------------------------- input */

static void send_ack(tether_reminders_t *m, int to, uint64_t op)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, 2, "rm_ack") < 0)
        return;
    (void)send_x(m, to, &x,
                 ei_x_encode_ulonglong(&x, op) < 0 ? TETHER_ENOMEM : 0);
}

static void on_put(tether_reminders_t *m, int from, const char *b, int *i,
                   int sync)
{
    uint64_t op = 0;
    unsigned long shard = 0;
    int n, back = 0;
    char atom[MAXATOMLEN];
    wrec_t w;

    if (sync) {
        if (ei_decode_ulong(b, i, &shard) < 0 || shard >= m->nshards ||
            ei_decode_atom(b, i, atom) < 0)
            goto bad;
        back = strcmp(atom, "true") == 0;
    } else if (tether__etf_decode_u64(b, i, &op) < 0) {
        goto bad;
    }
    if (tether__etf_list(b, i, &n) < 0)
        goto bad;
    for (int k = 0; k < n; k++) {
        if (d_rec(b, i, &w) < 0)
            goto bad;
        /* A later write here (a cancel) gets a greater stamp. */
        tether__engine_stamp_merge(m->eng, w.stamp);
        (void)apply(m, &w);
    }
    if (tether__etf_list_end(b, i, n) < 0)
        goto bad;
    if (back) {
        m->stats.syncs++;
        (void)send_shard(m, (uint32_t)shard, from, 0, &m->stats.sync_records);
    }
    if (op)
        send_ack(m, from, op);
    return;
bad:
    m->stats.bad_msgs++;
}

static void on_ack(tether_reminders_t *m, int from, uint64_t id)
{
    size_t at;
    op_t *o = op_find(m, id, &at);

    if (o == NULL)
        return;
    for (uint32_t k = 0; k < o->ntargets; k++)
        if (o->targets[k] == from && !o->acked[k]) {
            o->acked[k] = 1;
            o->got++;
        }
    if (o->got >= o->need)
        op_end(m, at, 1);
}

static void on_release(tether_reminders_t *m, int from, unsigned long s)
{
    shard_t *sh = &m->shards[s];

    if (from < 64)
        sh->released |= UINT64_C(1) << from;
    if (sh->state == S_WAIT && sh->wait_for == from) {
        m->stats.handoffs_in++;
        arm_shard(m, (uint32_t)s);
    }
}

/* 1 if we or node `other` is shard s's primary. */
/* ------------------------------------------------- offers and wants */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int has_fp(const uint64_t *v, size_t n, uint64_t fp)
{
    return n > 0 && bsearch(&fp, v, n, sizeof *v, cmp_u64) != NULL;
}

/* The fingerprints of shard s's records, sorted, into a malloc'd *out
 * (NULL when the shard is empty). Returns how many, or TETHER_ENOMEM. */
static long shard_fps(tether_reminders_t *m, uint32_t s, uint64_t **out)
{
    shard_t *sh = &m->shards[s];
    size_t n = 0;

    *out = NULL;
    if (sh->n == 0)
        return 0;
    if ((*out = malloc(sh->n * sizeof **out)) == NULL)
        return TETHER_ENOMEM;
    for (uint32_t i = 0; i < sh->nb; i++)
        for (rec_t *r = sh->b[i]; r; r = r->next)
            (*out)[n++] = fingerprint(r);
    if (n > 1)
        qsort(*out, n, sizeof **out, cmp_u64);
    return (long)n;
}

/* {Tag, Shard, Op, [Fp]} to `to`. */
static int send_fps(tether_reminders_t *m, const char *tag, uint32_t s,
                    uint64_t op, const uint64_t *v, size_t n, int to)
{
    ei_x_buff x;
    int e;

    if (tether__etf_begin(&x, 4, tag) < 0)
        return TETHER_ENOMEM;
    e = ei_x_encode_ulong(&x, s) < 0 || ei_x_encode_ulonglong(&x, op) < 0 ||
        (n > 0 && ei_x_encode_list_header(&x, (long)n) < 0);
    for (size_t i = 0; i < n && !e; i++)
        e = ei_x_encode_ulonglong(&x, v[i]) < 0;
    if (!e)
        e = ei_x_encode_empty_list(&x) < 0;
    return send_x(m, to, &x, e ? TETHER_ENOMEM : 0);
}

/* Offers shard s to `to`: the fingerprints of what this node holds of it
 * (rm_offer). Returns 0 or an error. */
static int send_offer(tether_reminders_t *m, uint32_t s, int to, uint64_t op)
{
    uint64_t *v;
    long n = shard_fps(m, s, &v);
    int rc;

    if (n < 0)
        return (int)n;
    rc = send_fps(m, "rm_offer", s, op, v, (size_t)n, to);
    free(v);
    return rc;
}

/* Sends `to` the records of shard s whose fingerprint is (in = 1) or is
 * not (in = 0) among v[0..n), as {rm_put, Op, [Rec]} in batches of
 * BATCH, Op on the last only (so its ack says all arrived; one message
 * with Op goes even when no record does). Counts them in *sent. */
static int send_some(tether_reminders_t *m, uint32_t s, int to,
                     const uint64_t *v, size_t n, int in, uint64_t op,
                     uint64_t *sent)
{
    shard_t *sh = &m->shards[s];
    const rec_t **pick = malloc((sh->n ? sh->n : 1) * sizeof *pick);
    size_t k = 0, at = 0;
    int rc = 0;

    if (pick == NULL)
        return TETHER_ENOMEM;
    for (uint32_t i = 0; i < sh->nb; i++)
        for (rec_t *r = sh->b[i]; r; r = r->next)
            if (has_fp(v, n, fingerprint(r)) == in)
                pick[k++] = r;
    do {
        size_t c = k - at < BATCH ? k - at : BATCH;
        int last = at + c == k, e;
        ei_x_buff x;
        if (c == 0 && !(last && op))
            break;
        if (tether__etf_begin(&x, 3, "rm_put") < 0) {
            rc = TETHER_ENOMEM;
            break;
        }
        e = ei_x_encode_ulonglong(&x, last ? op : 0) < 0 ||
            (c && ei_x_encode_list_header(&x, (long)c) < 0);
        for (size_t j = 0; j < c && !e; j++)
            e = x_r(&x, pick[at + j]) < 0;
        if (!e)
            e = ei_x_encode_empty_list(&x) < 0;
        e = send_x(m, to, &x, e ? TETHER_ENOMEM : 0);
        if (e < 0 && rc == 0)
            rc = e;
        at += c;
        *sent += c;
    } while (at < k);
    free(pick);
    return rc;
}

/* Decodes {_, Shard, Op, [Fp]}'s tail into a sorted malloc'd *v. */
static int d_fps(tether_reminders_t *m, const char *b, int *i, unsigned long *s,
                 uint64_t *op, uint64_t **v, size_t *n)
{
    int len;

    *v = NULL;
    *n = 0;
    if (ei_decode_ulong(b, i, s) < 0 || *s >= m->nshards ||
        tether__etf_decode_u64(b, i, op) < 0 ||
        tether__etf_list(b, i, &len) < 0)
        return TETHER_EPROTO;
    if (len > 0 && (*v = malloc((size_t)len * sizeof **v)) == NULL)
        return TETHER_ENOMEM;
    for (int k = 0; k < len; k++)
        if (tether__etf_decode_u64(b, i, &(*v)[k]) < 0) {
            free(*v);
            *v = NULL;
            return TETHER_EPROTO;
        }
    if (tether__etf_list_end(b, i, len) < 0) {
        free(*v);
        *v = NULL;
        return TETHER_EPROTO;
    }
    *n = (size_t)len;
    if (*n > 1)
        qsort(*v, *n, sizeof **v, cmp_u64);
    return 0;
}

/*
 * {rm_offer, Shard, Op, [Fp]}: what the sender holds of Shard. With Op 0
 * (anti-entropy) the records it lacks go to it; with an Op (a node
 * forwarding a shard it no longer replicates) nothing goes back. Then the
 * records this node lacks are asked for ({rm_want, Shard, Op, [Fp]}); a
 * forward of nothing new is acknowledged at once.
 */
static void on_offer(tether_reminders_t *m, int from, const char *b, int *i)
{
    unsigned long s;
    uint64_t op, *theirs, *mine = NULL, *want = NULL;
    size_t nt, nw = 0;
    long nm;

    if (d_fps(m, b, i, &s, &op, &theirs, &nt) < 0) {
        m->stats.bad_msgs++;
        return;
    }
    nm = shard_fps(m, (uint32_t)s, &mine);
    if (nm >= 0 && (nt == 0 || (want = malloc(nt * sizeof *want)) != NULL)) {
        if (op == 0 && (size_t)nm > 0) {
            m->stats.syncs++;
            (void)send_some(m, (uint32_t)s, from, theirs, nt, 0, 0,
                            &m->stats.sync_records);
        }
        for (size_t k = 0; k < nt; k++)
            if (!has_fp(mine, (size_t)nm, theirs[k]))
                want[nw++] = theirs[k];
        if (nw > 0)
            (void)send_fps(m, "rm_want", (uint32_t)s, op, want, nw, from);
        else if (op)
            send_ack(m, from, op);
    }
    free(theirs);
    free(mine);
    free(want);
}

/* {rm_want, Shard, Op, [Fp]}: the records asked for, acknowledged by
 * their receiver when Op is set. */
static void on_want(tether_reminders_t *m, int from, const char *b, int *i)
{
    unsigned long s;
    uint64_t op, *v;
    size_t n;

    if (d_fps(m, b, i, &s, &op, &v, &n) < 0) {
        m->stats.bad_msgs++;
        return;
    }
    (void)send_some(m, (uint32_t)s, from, v, n, 1, op,
                    op ? &m->stats.forward_records : &m->stats.sync_records);
    free(v);
}

static int primary_pair(tether_reminders_t *m, uint32_t s, int other)
{
    const char *p =
        tether_ring_primary(tether_ring_module_table(m->cfg.ring), s);

    return p != NULL && (strcmp(p, m->names[m->self]) == 0 ||
                         strcmp(p, m->names[other]) == 0);
}

static void on_digest(tether_reminders_t *m, int from, const char *b, int *i)
{
    int n;

    if (tether__etf_list(b, i, &n) < 0)
        goto bad;
    for (int k = 0; k < n; k++) {
        unsigned long s;
        uint64_t d;
        if (tether__etf_expect_tuple(b, i, 2) < 0 ||
            ei_decode_ulong(b, i, &s) < 0 ||
            tether__etf_decode_u64(b, i, &d) < 0 || s >= m->nshards)
            goto bad;
        /* Replicas converge through the primary: a pair exchanges a
         * shard only when one of the two is its primary (so a new
         * replica gets each shard once, not from every replica). */
        if (d != m->shards[s].digest && is_owner(m, (uint32_t)s) &&
            primary_pair(m, (uint32_t)s, from)) {
            /* An offer: the sender answers with what we lack and asks
             * for what it lacks; only records that differ cross. */
            (void)send_offer(m, (uint32_t)s, from, 0);
        }
    }
    if (tether__etf_list_end(b, i, n) < 0)
        goto bad;
    return;
bad:
    m->stats.bad_msgs++;
}

static void on_get(tether_reminders_t *m, int from, const char *b, int *i)
{
    uint64_t op;
    const uint8_t *k;
    size_t kl;
    rec_t *r;
    ei_x_buff x;
    int live;

    if (tether__etf_decode_u64(b, i, &op) < 0 ||
        tether__etf_decode_bin_ref(b, i, &k, &kl) < 0 || kl == 0 ||
        kl > TETHER_REMINDER_KEY_MAX) {
        m->stats.bad_msgs++;
        return;
    }
    r = lookup(m, k, kl, NULL);
    live = r != NULL && !(r->flags & TETHER_REMINDER_TOMB);
    if (tether__etf_begin(&x, 5, "rm_got") < 0)
        return;
    (void)send_x(m, from, &x,
                 ei_x_encode_ulonglong(&x, op) < 0 ||
                         ei_x_encode_atom(&x, live ? "true" : "false") < 0 ||
                         ei_x_encode_longlong(&x, live ? r->fire_at : 0) < 0 ||
                         ei_x_encode_binary(&x, live ? rpay(r) : k,
                                            live ? (long)r->plen : 0) < 0
                     ? TETHER_ENOMEM
                     : 0);
}

static void on_got(tether_reminders_t *m, const char *b, int *i)
{
    uint64_t op;
    char atom[MAXATOMLEN];
    long long fa;
    const uint8_t *p;
    size_t pl, at;
    op_t *o;

    if (tether__etf_decode_u64(b, i, &op) < 0 ||
        ei_decode_atom(b, i, atom) < 0 || ei_decode_longlong(b, i, &fa) < 0 ||
        tether__etf_decode_bin_ref(b, i, &p, &pl) < 0) {
        m->stats.bad_msgs++;
        return;
    }
    o = op_find(m, op, &at);
    if (o == NULL || o->kind != OP_GET)
        return;
    if (strcmp(atom, "true") == 0)
        reply(m, o->ref, TETHER_REMINDER_FOUND, fa, p, pl);
    else
        reply(m, o->ref, TETHER_REMINDER_NOT_FOUND, 0, NULL, 0);
    o->kind = 0;
    op_end(m, at, 1);
}

static void on_message(tether_engine_t *eng, void *ctx, const char *from,
                       const char *etf, size_t len)
{
    tether_reminders_t *m = ctx;
    char tag[TETHER_ETF_TAG_MAX];
    int i = 0, arity, f;
    uint64_t u;
    unsigned long s;

    (void)eng;
    (void)len;
    f = node_idx(m, from);
    if (f == NO_NODE || tether__etf_decode_head(etf, &i, tag, &arity) < 0)
        goto bad;
    if (strcmp(tag, "rm_put") == 0 && arity == 3)
        on_put(m, f, etf, &i, 0);
    else if (strcmp(tag, "rm_sync") == 0 && arity == 4)
        on_put(m, f, etf, &i, 1);
    else if (strcmp(tag, "rm_ack") == 0 && arity == 2) {
        if (tether__etf_decode_u64(etf, &i, &u) < 0)
            goto bad;
        on_ack(m, f, u);
    } else if (strcmp(tag, "rm_release") == 0 && arity == 3) {
        if (ei_decode_ulong(etf, &i, &s) < 0 || s >= m->nshards ||
            tether__etf_decode_u64(etf, &i, &u) < 0)
            goto bad;
        on_release(m, f, s);
        send_ack(m, f, u);
    } else if (strcmp(tag, "rm_digest") == 0 && arity == 2)
        on_digest(m, f, etf, &i);
    else if (strcmp(tag, "rm_offer") == 0 && arity == 4)
        on_offer(m, f, etf, &i);
    else if (strcmp(tag, "rm_want") == 0 && arity == 4)
        on_want(m, f, etf, &i);
    else if (strcmp(tag, "rm_get") == 0 && arity == 3)
        on_get(m, f, etf, &i);
    else if (strcmp(tag, "rm_got") == 0 && arity == 5)
        on_got(m, etf, &i);
    else
        goto bad;
    fire_due(m);
    return;
bad:
    m->stats.bad_msgs++;
}

/*
 * Hands shards over again (to `to` only, or to any node: NO_NODE): those
 * whose handoff did not go, and forwards those this node holds records of
 * without replicating them (a replica the ring moved past, a handoff or a
 * sync that reached it after the ring moved on: the records may be the
 * only copies), to the shard's current primary; then drops what it does
 * not replicate. A handoff whose primary changed before it went goes
 * to the new primary: records are never left stranded on a node that no
 * anti-entropy round looks at.
 */
static void retry_hand_overs(tether_reminders_t *m, const tether_ring_t *t,
                             int to)
{
    for (uint32_t s = 0; s < m->nshards; s++) {
        shard_t *sh = &m->shards[s];
        const char *prim = tether_ring_primary(t, s);
        int p = prim != NULL ? node_idx(m, prim) : NO_NODE;

        if (sh->state != S_NONE || p == NO_NODE || p == m->self) {
            sh->hand_pending = 0;
            continue;
        }
        if (sh->hand_inflight ||
            (!sh->hand_pending && (sh->n == 0 || is_owner(m, s))) ||
            (to != NO_NODE && p != to))
            continue;
        sh->released_to = p;
        sh->hand_pending =
            (sh->hand_pending ? hand_over(m, s, p, &m->stats.handoff_records)
                              : forward(m, s, p)) < 0;
    }
}

static void on_session_up(tether_engine_t *eng, void *ctx, const char *peer)
{
    tether_reminders_t *m = ctx;
    int p = node_idx(m, peer);
    const tether_ring_t *t = tether_ring_module_table(m->cfg.ring);

    if (!tether_engine_is_member(eng, peer) || p == NO_NODE)
        return;
    retry_hand_overs(m, t, p);
    send_digests(m, p);
}

static void on_tick(tether_engine_t *eng, void *ctx, uint64_t now)
{
    tether_reminders_t *m = ctx;

    if (!m->started) {
        m->started = 1;
        m->settle_end = now + m->cfg.settle_ms;
        m->next_round = now + m->cfg.round_ms;
    }
    if (!m->armed_ok && now >= m->settle_end) {
        m->armed_ok = 1;
        for (uint32_t s = 0; s < m->nshards; s++)
            if (m->shards[s].state == S_ARMED)
                arm_shard(m, s);
    }
    for (uint32_t s = 0; s < m->nshards; s++) {
        shard_t *sh = &m->shards[s];
        if (sh->state == S_WAIT && now >= sh->wait_until) {
            m->stats.handoff_timeouts++;
            arm_shard(m, s);
        }
    }
    for (size_t i = 0; i < m->nops;)
        if (m->ops[i].deadline <= now)
            op_end(m, i, 0);
        else
            i++;
    if (now >= m->next_round) {
        m->next_round = now + m->cfg.round_ms;
        retry_hand_overs(m, tether_ring_module_table(m->cfg.ring), NO_NODE);
        digest_round(m);
    }
    fire_due(m);
    (void)eng;
}

static uint64_t next_deadline(tether_engine_t *eng, void *ctx)
{
    tether_reminders_t *m = ctx;
    uint64_t now = tether_engine_now(eng), d = m->started ? m->next_round : 0;

    if (!m->started)
        return 0;
    if (!m->armed_ok && m->settle_end < d)
        d = m->settle_end;
    if (m->hn > 0) {
        int64_t left = m->heap[0]->due - wall_of(m);
        uint64_t t = left <= 0 ? now : now + (uint64_t)left;
        if (t < d)
            d = t;
    }
    for (size_t i = 0; i < m->nops; i++)
        if (m->ops[i].deadline < d)
            d = m->ops[i].deadline;
    for (uint32_t s = 0; s < m->nshards; s++)
        if (m->shards[s].state == S_WAIT && m->shards[s].wait_until < d)
            d = m->shards[s].wait_until;
    return d;
}

static void module_free(void *ctx)
{
    tether_reminders_t *m = ctx;

    for (uint32_t s = 0; s < m->nshards; s++) {
        drop_shard(m, s);
        free(m->shards[s].b);
    }
    for (size_t i = 0; i < m->nops; i++) {
        free(m->ops[i].key);
        free(m->ops[i].payload);
    }
    free(m->ops);
    free(m->shards);
    free(m->heap);
    free(m->names);
    free(m);
}

int tether_reminders_new(const tether_reminders_config_t *cfg,
                         tether_engine_t *eng, tether_reminders_t **out)
{
    tether_engine_module_t mod = {
        .name = "reminders",
        .type = TETHER_MSG_REMINDERS,
        .on_message = on_message,
        .on_session_up = on_session_up,
        .on_tick = on_tick,
        .next_deadline = next_deadline,
        .on_members_changed = members_changed,
        .free = module_free,
    };
    tether_reminders_t *m;
    int rc;

    if (cfg == NULL || cfg->ring == NULL || eng == NULL || out == NULL ||
        cfg->replicas > REPLICAS_MAX)
        return TETHER_EINVAL;
    m = calloc(1, sizeof *m);
    if (m == NULL)
        return TETHER_ENOMEM;
    m->cfg = *cfg;
#define DEF(f, v)                                                              \
    if (m->cfg.f == 0)                                                         \
    m->cfg.f = (v)
    DEF(replicas, TETHER_REMINDER_REPLICAS);
    DEF(hold_ms, TETHER_REMINDER_HOLD_MS);
    DEF(tomb_ms, TETHER_REMINDER_TOMB_MS);
    DEF(op_timeout_ms, TETHER_REMINDER_OP_MS);
    DEF(handoff_ms, TETHER_REMINDER_HANDOFF_MS);
    DEF(missed_ms, TETHER_REMINDER_MISSED_MS);
    DEF(round_ms, TETHER_REMINDER_ROUND_MS);
#undef DEF
    m->eng = eng;
    m->nshards = tether_ring_shards(tether_ring_module_table(cfg->ring));
    m->shards = calloc(m->nshards, sizeof *m->shards);
    m->self = node_idx(m, tether_engine_name(eng));
    m->origin = tether__fnv1a(TETHER_FNV_OFFSET, tether_engine_name(eng),
                              strlen(tether_engine_name(eng)));
    rc = m->shards == NULL || m->self == NO_NODE ? TETHER_ENOMEM : 0;
    for (uint32_t s = 0; rc == 0 && s < m->nshards; s++) {
        m->shards[s].prim = m->self;
        m->shards[s].wait_for = NO_NODE;
        m->shards[s].released_to = NO_NODE;
        m->shards[s].state = S_ARMED; /* alone: every shard is ours */
    }
    m->alone = 1;
    rc = tether__module_register(eng, &mod, m, rc);
    if (rc == 0)
        *out = m;
    return rc;
}

int tether_reminders_load(tether_reminders_t *m, const uint8_t *rec, size_t len)
{
    wrec_t w;
    int i = 1, rc;

    if (m == NULL || rec == NULL || len < 2 || rec[0] != TETHER_ETF_VERSION ||
        tether__etf_validate((const char *)rec, len) < 0 ||
        d_rec((const char *)rec, &i, &w) < 0 || (size_t)i != len) {
        if (m)
            m->stats.load_errors++;
        return TETHER_EPROTO;
    }
    m->loading = 1;
    rc = apply(m, &w);
    m->loading = 0;
    return rc < 0 ? rc : 0;
}

void tether_reminders_each(tether_reminders_t *m,
                           void (*fn)(void *ctx, const uint8_t *rec,
                                      size_t len),
                           void *ctx)
{
    for (uint32_t s = 0; s < m->nshards; s++)
        for (uint32_t i = 0; i < m->shards[s].nb; i++)
            for (rec_t *r = m->shards[s].b[i]; r; r = r->next) {
                ei_x_buff x;
                if (ei_x_new_with_version(&x) == 0 && x_r(&x, r) == 0)
                    fn(ctx, (const uint8_t *)x.buff, (size_t)x.index);
                ei_x_free(&x);
            }
}

size_t tether_reminders_overhead(const tether_reminders_t *m)
{
    size_t n =
        sizeof *m + m->nshards * sizeof *m->shards + m->hcap * sizeof *m->heap;

    for (uint32_t s = 0; s < m->nshards; s++)
        n += m->shards[s].nb * sizeof(rec_t *) +
             m->shards[s].n * (sizeof(rec_t) + 16); /* + malloc's header */
    return n;
}

const tether_reminders_stats_t *
tether_reminders_stats(const tether_reminders_t *m)
{
    return &m->stats;
}

void tether_reminders_stats_list(
    const tether_reminders_stats_t *st,
    tether_reminders_stat_t out[TETHER_REMINDERS_STATS_N])
{
    size_t i = 0;
#define S(f) out[i++] = (tether_reminders_stat_t){#f, st->f}
    S(pending);
    S(armed);
    S(tombs);
    S(sets);
    S(cancels);
    S(fired);
    S(fired_unacked);
    S(skipped);
    S(missed_fired);
    S(held);
    S(hold_dropped);
    S(handoffs_out);
    S(handoffs_in);
    S(handoff_timeouts);
    S(handoff_records);
    S(forward_records);
    S(syncs);
    S(sync_records);
    S(timeouts);
    S(bad_msgs);
    S(load_errors);
#undef S
}

int tether__reminders_describe(tether_reminders_t *m, const uint8_t *key,
                               size_t klen, char *out, size_t cap)
{
    uint64_t h = hash_key(key, klen);
    uint32_t s = shard_of(m, h);
    shard_t *sh = &m->shards[s];
    rec_t **p = sh->nb ? slot(sh, h, key, klen) : NULL;
    rec_t *r = p ? *p : NULL;

    return snprintf(out, cap,
                    "shard %u state %d prim %d armed_ok %d wall %lld; %s "
                    "flags %u local %u fire_at %lld due %lld in heap %d",
                    (unsigned)s, sh->state, sh->prim, m->armed_ok,
                    (long long)wall_of(m), r ? "record" : "no record",
                    r ? r->flags : 0, r ? r->local : 0,
                    r ? (long long)r->fire_at : 0, r ? (long long)r->due : 0,
                    r ? r->hidx != 0 : 0);
}
