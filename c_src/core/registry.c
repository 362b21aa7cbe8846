/*
 * core/registry.c: the cluster name registry (see registry.h).
 *
 * The table is a chained hash of entries keyed by the name's bytes. Each
 * entry refers to its owner by index into an owners array that also keeps,
 * per owner, the count and XOR hash of the entries held for it (what
 * anti-entropy digests compare). Owners are never removed from the array
 * (a restarted node reuses its slot), so indexes stay valid.
 */
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "core/hlc.h"
#include "core/registry.h"

#define REG_BUCKETS_MIN 64

typedef struct entry {
    struct entry *next;
    struct entry *pnext; /* our own entries only: chain by pid */
    uint64_t ph;         /* hash of the pid (own entries) */
    uint64_t h;          /* hash of the name */
    uint8_t *name;
    size_t nlen;
    uint8_t *pid;
    size_t plen;
    uint64_t stamp;
    uint32_t owner; /* index into owners */
    int method;
    int mark;       /* scratch for reg_sync */
    uint64_t asked; /* the rival our shell was last asked to resolve */
    void *data;     /* the shell's (pid_attach) */
} entry_t;

/* A rival entry a resolver verdict of ours removed: reg_yield is sent to
 * its owner until the entry is gone (a lost message costs a round). */
typedef struct yield {
    uint32_t owner;     /* the rival's owner (index into owners) */
    uint64_t stamp;     /* the rival's stamp */
    uint64_t own_stamp; /* our entry the verdict kept; 0: none kept */
    uint8_t *name;
    size_t nlen;
    uint8_t *kept; /* the kept pid's ETF (none: NULL) */
    size_t klen;
} yield_t;

typedef struct owner {
    char name[TETHER_NODE_NAME_MAX + 1];
    uint64_t count, hash;
} owner_t;

struct tether_registry {
    tether_registry_config_t cfg;
    tether_engine_t *eng;
    entry_t **buckets;
    size_t nb, n;
    owner_t *owners;
    size_t nown, capown;
    tether_hlc_t hlc;
    uint64_t wall_base, eng_base; /* wall clock = base + engine time since */
    int wall_set;
    uint64_t next_digest;
    entry_t **pbuckets; /* our own entries by pid: one name per pid */
    size_t pnb, pown;
    yield_t *yields; /* verdicts not yet carried out by rivals' owners */
    size_t nyields, capyields;
    tether_registry_stats_t stats;
};

/* One decoded entry of a message; name and pid point into its buffer. */
typedef struct wire_entry {
    uint64_t stamp;
    int method;
    const uint8_t *name, *pid;
    size_t nlen, plen;
} wire_entry_t;

/* ------------------------------------------------------------ hashing */

static uint64_t name_hash(const uint8_t *name, size_t nlen)
{
    return tether__fnv1a(TETHER_FNV_OFFSET, name, nlen);
}

/* The hash of an entry's content as its owner sees it (owner digests). */
static uint64_t content_hash(const uint8_t *name, size_t nlen,
                             const uint8_t *pid, size_t plen, uint64_t stamp)
{
    uint64_t h = tether__fnv1a(TETHER_FNV_OFFSET, name, nlen);
    uint8_t s[8];

    for (int i = 0; i < 8; i++)
        s[i] = (uint8_t)(stamp >> (8 * i));
    h = tether__fnv1a(h, pid, plen);
    h = tether__fnv1a(h, s, sizeof s);
    return h ^ (uint64_t)nlen << 32 ^ (uint64_t)plen;
}

/* ------------------------------------------------------------- locking */

static void wlock(tether_registry_t *r)
{
    if (r->cfg.wlock)
        r->cfg.wlock(r->cfg.lock_ctx);
}

static void wunlock(tether_registry_t *r)
{
    if (r->cfg.wunlock)
        r->cfg.wunlock(r->cfg.lock_ctx);
}

/* --------------------------------------------------------------- table */

static int same_name(const entry_t *e, const uint8_t *name, size_t nlen,
                     uint64_t h)
{
    return e->h == h && e->nlen == nlen && memcmp(e->name, name, nlen) == 0;
}

/* Any entry of name (of any owner), or NULL. */
static entry_t *find(const tether_registry_t *r, const uint8_t *name,
                     size_t nlen, uint64_t h)
{
    for (entry_t *e = r->buckets[h & (r->nb - 1)]; e != NULL; e = e->next)
        if (same_name(e, name, nlen, h))
            return e;
    return NULL;
}

/* The entry of name held for owner index o, or NULL. */
static entry_t *find_owned(const tether_registry_t *r, const uint8_t *name,
                           size_t nlen, uint64_t h, uint32_t o)
{
    for (entry_t *e = r->buckets[h & (r->nb - 1)]; e != NULL; e = e->next)
        if (e->owner == o && same_name(e, name, nlen, h))
            return e;
    return NULL;
}

/* 1 if (sa, oa) registered before (sb, ob). */
static int earlier(uint64_t sa, const char *oa, uint64_t sb, const char *ob)
{
    return sa < sb || (sa == sb && strcmp(oa, ob) < 0);
}

static int entry_before(const tether_registry_t *r, const entry_t *a,
                        const entry_t *b)
{
    return earlier(a->stamp, r->owners[a->owner].name, b->stamp,
                   r->owners[b->owner].name);
}

/* The visible entry of name: the earliest of its owners' entries (HLC
 * stamp, then owner name), or NULL. */
static entry_t *find_visible(const tether_registry_t *r, const uint8_t *name,
                             size_t nlen, uint64_t h)
{
    entry_t *v = NULL;

    for (entry_t *e = r->buckets[h & (r->nb - 1)]; e != NULL; e = e->next)
        if (same_name(e, name, nlen, h) && (v == NULL || entry_before(r, e, v)))
            v = e;
    return v;
}

/* The index of owner `name`, created if new. Returns -1 when full. */
static int owner_index(tether_registry_t *r, const char *name)
{
    for (size_t i = 0; i < r->nown; i++)
        if (strcmp(r->owners[i].name, name) == 0)
            return (int)i;
    if (r->nown == TETHER_REG_OWNERS_MAX)
        return -1;
    if (r->nown == r->capown) {
        size_t cap = r->capown ? r->capown * 2 : 8;
        owner_t *v;
        wlock(r);
        v = realloc(r->owners, cap * sizeof *v);
        if (v != NULL) {
            r->owners = v;
            r->capown = cap;
        }
        wunlock(r);
        if (v == NULL)
            return -1;
    }
    memset(&r->owners[r->nown], 0, sizeof r->owners[r->nown]);
    memcpy(r->owners[r->nown].name, name, strlen(name) + 1);
    return (int)r->nown++;
}

static int self_index(tether_registry_t *r)
{
    return owner_index(r, tether_engine_name(r->eng));
}

static void free_entry(tether_registry_t *r, entry_t *e)
{
    if (e->data != NULL && r->cfg.pid_detach != NULL)
        r->cfg.pid_detach(r->cfg.shell_ctx, e->data);
    free(e->name);
    free(e->pid);
    free(e);
}

/* Doubles the bucket array when the table is dense (under the lock). */
static void grow(tether_registry_t *r)
{
    size_t nb = r->nb * 2;
    entry_t **b;

    if (r->n < r->nb * 2)
        return;
    b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < r->nb; i++) {
        entry_t *e = r->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->h & (nb - 1)];
            b[e->h & (nb - 1)] = e;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->nb = nb;
}

/* ------------------------------------------------ own entries by pid */

/* Our own entry for pid, or NULL (a pid holds one name, as in global). */
static entry_t *find_own_pid(const tether_registry_t *r, const uint8_t *pid,
                             size_t plen)
{
    uint64_t ph = name_hash(pid, plen);

    if (r->pnb == 0)
        return NULL;
    for (entry_t *e = r->pbuckets[ph & (r->pnb - 1)]; e != NULL; e = e->pnext)
        if (e->ph == ph && e->plen == plen && memcmp(e->pid, pid, plen) == 0)
            return e;
    return NULL;
}

/* Links our own entry e into the pid index (doubling it when dense).
 * Returns 0 or TETHER_ENOMEM. */
static int pid_link(tether_registry_t *r, entry_t *e)
{
    if (r->pown >= r->pnb * 2) {
        size_t nb = r->pnb ? r->pnb * 2 : REG_BUCKETS_MIN;
        entry_t **b = calloc(nb, sizeof *b);
        if (b == NULL)
            return TETHER_ENOMEM;
        for (size_t i = 0; i < r->pnb; i++) {
            entry_t *x = r->pbuckets[i], *next;
            for (; x != NULL; x = next) {
                next = x->pnext;
                x->pnext = b[x->ph & (nb - 1)];
                b[x->ph & (nb - 1)] = x;
            }
        }
        free(r->pbuckets);
        r->pbuckets = b;
        r->pnb = nb;
    }
    e->ph = name_hash(e->pid, e->plen);
    e->pnext = r->pbuckets[e->ph & (r->pnb - 1)];
    r->pbuckets[e->ph & (r->pnb - 1)] = e;
    r->pown++;
    return 0;
}

static void pid_unlink(tether_registry_t *r, entry_t *e)
{
    entry_t **pp = &r->pbuckets[e->ph & (r->pnb - 1)];

    while (*pp != e)
        pp = &(*pp)->pnext;
    *pp = e->pnext;
    r->pown--;
}

/* Inserts a new entry (the name must be absent). Returns 0, TETHER_ENOMEM
 * or TETHER_ETOOBIG. */
static int insert(tether_registry_t *r, const uint8_t *name, size_t nlen,
                  const uint8_t *pid, size_t plen, uint64_t stamp, int method,
                  int owner)
{
    entry_t *e;
    uint64_t h = name_hash(name, nlen);

    if (r->n >= TETHER_REG_ENTRIES_MAX)
        return TETHER_ETOOBIG;
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return TETHER_ENOMEM;
    e->name = malloc(nlen);
    e->pid = malloc(plen);
    if (e->name == NULL || e->pid == NULL) {
        free_entry(r, e);
        return TETHER_ENOMEM;
    }
    memcpy(e->name, name, nlen);
    memcpy(e->pid, pid, plen);
    e->nlen = nlen;
    e->plen = plen;
    if (owner == self_index(r) && pid_link(r, e) < 0) {
        free_entry(r, e);
        return TETHER_ENOMEM;
    }
    if (r->cfg.pid_attach != NULL)
        e->data = r->cfg.pid_attach(r->cfg.shell_ctx, pid, plen);
    e->h = h;
    e->stamp = stamp;
    e->method = method;
    e->owner = (uint32_t)owner;
    wlock(r);
    e->next = r->buckets[h & (r->nb - 1)];
    r->buckets[h & (r->nb - 1)] = e;
    r->n++;
    grow(r);
    wunlock(r);
    r->owners[owner].count++;
    r->owners[owner].hash ^= content_hash(name, nlen, pid, plen, stamp);
    r->stats.added++;
    return 0;
}

/* Unlinks and frees e. */
static void remove_entry(tether_registry_t *r, entry_t *e)
{
    entry_t **pp = &r->buckets[e->h & (r->nb - 1)];

    while (*pp != e)
        pp = &(*pp)->next;
    wlock(r);
    *pp = e->next;
    r->n--;
    wunlock(r);
    if (e->owner == (uint32_t)self_index(r))
        pid_unlink(r, e);
    r->owners[e->owner].count--;
    r->owners[e->owner].hash ^=
        content_hash(e->name, e->nlen, e->pid, e->plen, e->stamp);
    r->stats.removed++;
    free_entry(r, e); /* unlinked: no reader reaches it any more */
}

/* Removes every entry of owner index o, or only the marked ones. */
static void remove_owned(tether_registry_t *r, uint32_t o, int marked_only)
{
    for (size_t i = 0; i < r->nb; i++) {
        entry_t *e = r->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            if (e->owner == o && (!marked_only || e->mark))
                remove_entry(r, e);
        }
    }
}

/* ------------------------------------------------------------ encoding */

static int x_entry_fields(ei_x_buff *x, uint64_t stamp, int method,
                          const uint8_t *name, size_t nlen, const uint8_t *pid,
                          size_t plen)
{
    if (ei_x_encode_ulonglong(x, stamp) < 0 ||
        ei_x_encode_long(x, method) < 0 ||
        ei_x_encode_binary(x, name, (long)nlen) < 0 ||
        ei_x_encode_binary(x, pid, (long)plen) < 0)
        return TETHER_ENOMEM;
    return 0;
}

/* Sends x to `to`, or to every live member but us when to is NULL. */
static void send_x(tether_registry_t *r, const char *to, const ei_x_buff *x,
                   unsigned flags)
{
    const uint8_t *b = (const uint8_t *)x->buff;

    if (to != NULL)
        (void)tether_engine_send(r->eng, to, TETHER_MSG_REGISTRY, b,
                                 (size_t)x->index, flags);
    else
        (void)tether_engine_broadcast(r->eng, TETHER_MSG_REGISTRY, b,
                                      (size_t)x->index, flags);
}

/* Broadcasts our new entry e: through engine actions, or (sealed set)
 * as envelopes handed to the caller. */
static void broadcast_add(tether_registry_t *r, const entry_t *e,
                          tether_registry_sealed_t sealed, void *ctx)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, 5, "reg_add") < 0)
        return;
    if (x_entry_fields(&x, e->stamp, e->method, e->name, e->nlen, e->pid,
                       e->plen) == 0) {
        if (sealed != NULL)
            (void)tether_engine_broadcast_sealed(r->eng, TETHER_MSG_REGISTRY,
                                                 (const uint8_t *)x.buff,
                                                 (size_t)x.index, sealed, ctx);
        else
            send_x(r, NULL, &x, 0);
    }
    ei_x_free(&x);
}

static void broadcast_del(tether_registry_t *r, const uint8_t *name,
                          size_t nlen, uint64_t stamp)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, 3, "reg_del") < 0)
        return;
    if (ei_x_encode_ulonglong(&x, stamp) == 0 &&
        ei_x_encode_binary(&x, name, (long)nlen) == 0)
        send_x(r, NULL, &x, 0);
    ei_x_free(&x);
}

/* Sends our full set of own entries to peer. */
static void send_sync(tether_registry_t *r, const char *peer)
{
    int self = self_index(r);
    ei_x_buff x;
    int rc;

    if (self < 0 || tether__etf_begin(&x, 2, "reg_sync") < 0)
        return;
    rc = 0;
    if (r->owners[self].count > 0)
        rc = ei_x_encode_list_header(&x, (long)r->owners[self].count);
    for (size_t i = 0; rc == 0 && i < r->nb; i++)
        for (entry_t *e = r->buckets[i]; rc == 0 && e != NULL; e = e->next) {
            if (e->owner != (uint32_t)self)
                continue;
            if (ei_x_encode_tuple_header(&x, 4) < 0)
                rc = TETHER_ENOMEM;
            else
                rc = x_entry_fields(&x, e->stamp, e->method, e->name, e->nlen,
                                    e->pid, e->plen);
        }
    if (rc == 0 && ei_x_encode_empty_list(&x) == 0) {
        r->stats.syncs_sent++;
        send_x(r, peer, &x, TETHER_SEND_STATE);
    }
    ei_x_free(&x);
}

/* Sends {Tag, Count} or {Tag, Count, Hash} to peer, or to every live
 * member but us when peer is NULL. */
static void send_counts(tether_registry_t *r, const char *peer, const char *tag,
                        uint64_t count, uint64_t hash, int with_hash)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, with_hash ? 3 : 2, tag) < 0)
        return;
    if (ei_x_encode_ulonglong(&x, count) == 0 &&
        (!with_hash || ei_x_encode_ulonglong(&x, hash) == 0))
        send_x(r, peer, &x, TETHER_SEND_STATE);
    ei_x_free(&x);
}

/* Tells our shell that our entry e lost to winner_pid (wplen 0: a
 * resolver kept neither). */
static void deliver_conflict(tether_registry_t *r, const entry_t *e,
                             const uint8_t *wpid, size_t wplen)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, 5, "tether_reg_conflict") < 0)
        return;
    if (ei_x_encode_binary(&x, e->name, (long)e->nlen) == 0 &&
        ei_x_encode_binary(&x, e->pid, (long)e->plen) == 0 &&
        ei_x_encode_binary(&x, wpid, (long)wplen) == 0 &&
        ei_x_encode_long(&x, e->method) == 0) {
        int rc =
            tether_engine_deliver(r->eng, r->cfg.conflict_sub,
                                  (const uint8_t *)x.buff, (size_t)x.index);
        (void)rc; /* out of memory loses the notice, not the removal */
    }
    ei_x_free(&x);
}

/* Sends {reg_yield, ...} for y to the rival's owner. */
static void send_yield(tether_registry_t *r, const yield_t *y)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, 4, "reg_yield") < 0)
        return;
    if (ei_x_encode_ulonglong(&x, y->stamp) == 0 &&
        ei_x_encode_binary(&x, y->name, (long)y->nlen) == 0 &&
        ei_x_encode_binary(&x, y->kept ? y->kept : (const uint8_t *)"",
                           (long)y->klen) == 0)
        send_x(r, r->owners[y->owner].name, &x, 0);
    ei_x_free(&x);
}

static void free_yield(yield_t *y)
{
    free(y->name);
    free(y->kept);
}

/* Queues and sends a verdict against rival entry e. */
static void add_yield(tether_registry_t *r, const entry_t *e,
                      uint64_t own_stamp, const uint8_t *kept, size_t klen)
{
    yield_t y = {.owner = e->owner,
                 .stamp = e->stamp,
                 .own_stamp = own_stamp,
                 .name = e->name,
                 .nlen = e->nlen,
                 .kept = (uint8_t *)kept,
                 .klen = klen};

    send_yield(r, &y); /* from the caller's bytes; copies are kept below */
    y.name = NULL;
    y.kept = NULL;
    if (r->nyields == r->capyields) {
        size_t cap = r->capyields ? r->capyields * 2 : 8;
        yield_t *v = realloc(r->yields, cap * sizeof *v);
        if (v == NULL)
            return; /* sent once, never repeated */
        r->yields = v;
        r->capyields = cap;
    }
    y.name = malloc(e->nlen);
    y.kept = klen ? malloc(klen) : NULL;
    if (y.name == NULL || (klen && y.kept == NULL)) {
        free_yield(&y);
        return;
    }
    memcpy(y.name, e->name, e->nlen);
    if (klen)
        memcpy(y.kept, kept, klen);
    r->yields[r->nyields++] = y;
}

/* Repeats every verdict whose rival entry is still held (and whose kept
 * entry of ours, if any, still stands); forgets the others. */
static void resend_yields(tether_registry_t *r)
{
    int self = self_index(r);
    size_t k = 0;

    for (size_t i = 0; i < r->nyields; i++) {
        yield_t *y = &r->yields[i];
        uint64_t h = name_hash(y->name, y->nlen);
        entry_t *rival = find_owned(r, y->name, y->nlen, h, y->owner);
        entry_t *own = self < 0
                           ? NULL
                           : find_owned(r, y->name, y->nlen, h, (uint32_t)self);
        if (rival != NULL && rival->stamp == y->stamp &&
            (y->own_stamp == 0 ||
             (own != NULL && own->stamp == y->own_stamp))) {
            send_yield(r, y);
            r->yields[k++] = *y;
        } else {
            free_yield(y);
        }
    }
    r->nyields = k;
}

/* ------------------------------------------------------------ decoding */

/* Reads a binary of min..max bytes in place: *p points into buf. */
static int decode_bin(const char *buf, int *idx, size_t min, size_t max,
                      const uint8_t **p, size_t *len)
{
    if (tether__etf_decode_bin_ref(buf, idx, p, len) < 0 || *len < min ||
        *len > max)
        return TETHER_EPROTO;
    return 0;
}

static int decode_method(const char *buf, int *idx, int *method)
{
    uint64_t m;

    if (tether__etf_decode_u64(buf, idx, &m) < 0 || m > TETHER_REG_METHOD_MAX)
        return TETHER_EPROTO;
    *method = (int)m;
    return 0;
}

/* Decodes Stamp, Method, NameEtf, PidEtf (in place). */
static int decode_entry(const char *buf, int *idx, wire_entry_t *w)
{
    if (tether__etf_decode_u64(buf, idx, &w->stamp) < 0 ||
        decode_method(buf, idx, &w->method) < 0 ||
        decode_bin(buf, idx, 1, TETHER_REG_NAME_MAX, &w->name, &w->nlen) < 0 ||
        decode_bin(buf, idx, 1, TETHER_REG_PID_MAX, &w->pid, &w->plen) < 0)
        return TETHER_EPROTO;
    return 0;
}

/* ----------------------------------------------------------- handling */

static uint64_t wall_now(const tether_registry_t *r)
{
    uint64_t now = tether_engine_now(r->eng);

    if (!r->wall_set)
        return now;
    return r->wall_base + (now > r->eng_base ? now - r->eng_base : 0);
}

/* Our entry s lost a conflict with no resolver involved: tell our shell,
 * remove it and broadcast the removal. */
static void lose(tether_registry_t *r, entry_t *s, const uint8_t *wpid,
                 size_t wplen)
{
    r->stats.lost++;
    deliver_conflict(r, s, wpid, wplen);
    broadcast_del(r, s->name, s->nlen, s->stamp);
    remove_entry(r, s);
}

/* Asks our shell to run the resolver of our entry `own` on the conflict
 * between w (the earlier registration) and l, once per rival:
 *   {tether_reg_resolve, NameEtf, WinnerPidEtf, LoserPidEtf}. */
static void ask(tether_registry_t *r, entry_t *own, const entry_t *w,
                const entry_t *l)
{
    const entry_t *rival = own == w ? l : w;
    const char *ro = r->owners[rival->owner].name;
    uint8_t st[8];
    uint64_t key;
    ei_x_buff x;

    for (int i = 0; i < 8; i++)
        st[i] = (uint8_t)(rival->stamp >> (8 * i));
    key = tether__fnv1a(tether__fnv1a(TETHER_FNV_OFFSET, ro, strlen(ro)), st,
                        sizeof st) |
          1;
    if (own->asked == key)
        return;
    own->asked = key;
    r->stats.resolves_asked++;
    if (tether__etf_begin(&x, 4, "tether_reg_resolve") < 0)
        return;
    if (ei_x_encode_binary(&x, own->name, (long)own->nlen) == 0 &&
        ei_x_encode_binary(&x, w->pid, (long)w->plen) == 0 &&
        ei_x_encode_binary(&x, l->pid, (long)l->plen) == 0) {
        int rc =
            tether_engine_deliver(r->eng, r->cfg.conflict_sub,
                                  (const uint8_t *)x.buff, (size_t)x.index);
        if (rc < 0)
            own->asked = 0; /* out of memory: ask again next time */
    }
    ei_x_free(&x);
}

/*
 * Applies the conflict rule (registry.h) to our own entry of a name after
 * the entries held for it changed: with no resolver involved our entry,
 * if it is not the visible one, loses; with one, the node whose resolver
 * decides asks its shell, and every other node waits for its verdict.
 */
static void settle(tether_registry_t *r, const uint8_t *name, size_t nlen,
                   uint64_t h)
{
    int self = self_index(r);
    entry_t *v, *s;

    if (self < 0)
        return;
    v = find_visible(r, name, nlen, h);
    s = find_owned(r, name, nlen, h, (uint32_t)self);
    if (v == NULL || s == NULL)
        return;
    if (s != v) {
        if (v->method != TETHER_REG_RESOLVE && s->method != TETHER_REG_RESOLVE)
            lose(r, s, v->pid, v->plen);
        else if (v->method != TETHER_REG_RESOLVE)
            ask(r, s, v, s); /* only ours has a resolver: we decide */
        return;              /* else the visible entry's owner decides */
    }
    if (s->method != TETHER_REG_RESOLVE)
        return; /* the rivals' owners lose or ask */
    /* Ours is visible and has the resolver: the earliest rival first. */
    {
        entry_t *next = NULL;
        for (entry_t *e = r->buckets[h & (r->nb - 1)]; e != NULL; e = e->next)
            if (e != s && same_name(e, name, nlen, h) &&
                (next == NULL || entry_before(r, e, next)))
                next = e;
        if (next != NULL)
            ask(r, s, s, next);
    }
}

/* 1 if name has an entry of an owner other than o. */
static int has_rival(const tether_registry_t *r, const uint8_t *name,
                     size_t nlen, uint64_t h, uint32_t o)
{
    for (entry_t *e = r->buckets[h & (r->nb - 1)]; e != NULL; e = e->next)
        if (e->owner != o && same_name(e, name, nlen, h))
            return 1;
    return 0;
}

/* Settles every name where we hold an entry and so does someone else.
 * Run every digest period: a rival removed by a sync or with its node
 * leaves the next pair of a three-way conflict to settle. */
static void settle_all(tether_registry_t *r)
{
    int self = self_index(r);

    if (self < 0)
        return;
    for (size_t i = 0; i < r->nb; i++) {
        entry_t *e = r->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next; /* settle may remove e (ours), nothing else */
            if (e->owner == (uint32_t)self &&
                has_rival(r, e->name, e->nlen, e->h, e->owner))
                settle(r, e->name, e->nlen, e->h);
        }
    }
}

/* Applies one entry owned by `from` (index o). Entries of different
 * owners for one name are all kept; the visible one is the earliest. */
static void apply_add(tether_registry_t *r, const char *from, int o,
                      const wire_entry_t *w)
{
    uint64_t h = name_hash(w->name, w->nlen), ts;
    entry_t *e = find_owned(r, w->name, w->nlen, h, (uint32_t)o);

    (void)from;
    /* A stamp too far ahead is not merged; the entry still applies. */
    if (tether_hlc_update(&r->hlc, wall_now(r), w->stamp, &ts) < 0)
        ts = 0;
    if (e != NULL && w->stamp == e->stamp) {
        e->mark = 0;
        return;
    }
    if (e != NULL && w->stamp < e->stamp)
        return; /* an older registration of the owner */
    if (e != NULL)
        remove_entry(r, e); /* a newer registration of the owner */
    if (insert(r, w->name, w->nlen, w->pid, w->plen, w->stamp, w->method, o) <
        0)
        return;
    if (has_rival(r, w->name, w->nlen, h, (uint32_t)o))
        r->stats.conflicts++;
    settle(r, w->name, w->nlen, h);
}

static void handle_sync(tether_registry_t *r, const char *from, int o,
                        const char *buf, int idx)
{
    wire_entry_t w;
    int count;

    if (tether__etf_list(buf, &idx, &count) < 0)
        goto bad;
    for (size_t i = 0; i < r->nb; i++)
        for (entry_t *e = r->buckets[i]; e != NULL; e = e->next)
            e->mark = e->owner == (uint32_t)o;
    for (int k = 0; k < count; k++) {
        if (tether__etf_expect_tuple(buf, &idx, 4) < 0 ||
            decode_entry(buf, &idx, &w) < 0)
            goto bad;
        apply_add(r, from, o, &w);
    }
    if (tether__etf_list_end(buf, &idx, count) < 0)
        goto bad;
    remove_owned(r, (uint32_t)o, 1);
    return;
bad:
    /* Entries already applied stand; nothing marked is removed on a
     * message we could not read to its end. */
    r->stats.bad_msgs++;
}

/* {reg_yield, Stamp, NameEtf, KeptPidEtf | <<>>}: a resolver's verdict
 * removed our entry (name, Stamp). Any member may send it (members are
 * trusted as they are with their own stamps); an entry that is not ours
 * or has another stamp (a new registration) is left alone. */
static void handle_yield(tether_registry_t *r, const char *buf, int idx)
{
    int self = self_index(r);
    wire_entry_t w;
    entry_t *e;

    if (tether__etf_decode_u64(buf, &idx, &w.stamp) < 0 ||
        decode_bin(buf, &idx, 1, TETHER_REG_NAME_MAX, &w.name, &w.nlen) < 0 ||
        decode_bin(buf, &idx, 0, TETHER_REG_PID_MAX, &w.pid, &w.plen) < 0) {
        r->stats.bad_msgs++;
        return;
    }
    e = self < 0 ? NULL
                 : find_owned(r, w.name, w.nlen, name_hash(w.name, w.nlen),
                              (uint32_t)self);
    if (e != NULL && e->stamp == w.stamp)
        lose(r, e, w.pid, w.plen);
    else
        r->stats.stale_msgs++;
}

static void on_message(tether_engine_t *node, void *ctx, const char *from,
                       const char *buf, size_t len)
{
    tether_registry_t *r = ctx;
    char tag[TETHER_ETF_TAG_MAX];
    int idx = 0, arity, o;
    uint64_t a, b;
    wire_entry_t w;

    (void)node;
    (void)len;
    if (!tether_engine_is_member(r->eng, from) ||
        strcmp(from, tether_engine_name(r->eng)) == 0) {
        r->stats.stale_msgs++;
        return;
    }
    /* Every registry message has a field after its tag. */
    if (tether__etf_decode_head(buf, &idx, tag, &arity) < 0 || arity < 2)
        goto bad;
    o = owner_index(r, from);
    if (o < 0) {
        r->stats.stale_msgs++;
        return;
    }
    if (strcmp(tag, "reg_add") == 0 && arity == 5) {
        if (decode_entry(buf, &idx, &w) < 0)
            goto bad;
        apply_add(r, from, o, &w);
        return;
    }
    if (strcmp(tag, "reg_del") == 0 && arity == 3) {
        entry_t *e;
        if (tether__etf_decode_u64(buf, &idx, &a) < 0 ||
            decode_bin(buf, &idx, 1, TETHER_REG_NAME_MAX, &w.name, &w.nlen) < 0)
            goto bad;
        e = find_owned(r, w.name, w.nlen, name_hash(w.name, w.nlen),
                       (uint32_t)o);
        if (e != NULL && e->stamp == a) {
            remove_entry(r, e);
            settle(r, w.name, w.nlen, name_hash(w.name, w.nlen));
        }
        return;
    }
    if (strcmp(tag, "reg_yield") == 0 && arity == 4) {
        handle_yield(r, buf, idx);
        return;
    }
    if (strcmp(tag, "reg_sync") == 0 && arity == 2) {
        handle_sync(r, from, o, buf, idx);
        return;
    }
    if (strcmp(tag, "reg_digest") == 0 && arity == 3) {
        if (tether__etf_decode_u64(buf, &idx, &a) < 0 ||
            tether__etf_decode_u64(buf, &idx, &b) < 0)
            goto bad;
        if (r->owners[o].count != a || r->owners[o].hash != b) {
            r->stats.pulls_sent++;
            send_counts(r, from, "reg_pull", r->owners[o].count, 0, 0);
        }
        return;
    }
    if (strcmp(tag, "reg_pull") == 0 && arity == 2) {
        send_sync(r, from);
        return;
    }
bad:
    r->stats.bad_msgs++;
}

static void on_member(tether_engine_t *node, void *ctx, const char *name,
                      int up)
{
    tether_registry_t *r = ctx;
    int o;

    (void)node;
    if (strcmp(name, tether_engine_name(r->eng)) == 0)
        return;
    if (up) {
        send_sync(r, name);
        return;
    }
    for (size_t i = 0; i < r->nown; i++)
        if (strcmp(r->owners[i].name, name) == 0) {
            o = (int)i;
            if (r->owners[o].count > 0)
                remove_owned(r, (uint32_t)o, 0);
            return;
        }
}

static void on_session_up(tether_engine_t *node, void *ctx, const char *peer)
{
    tether_registry_t *r = ctx;

    (void)node;
    if (tether_engine_is_member(r->eng, peer))
        send_sync(r, peer);
}

static void on_tick(tether_engine_t *node, void *ctx, uint64_t now_ms)
{
    tether_registry_t *r = ctx;
    int si;

    (void)node;
    if (now_ms < r->next_digest)
        return;
    r->next_digest = now_ms + r->cfg.digest_ms;
    if (tether_engine_has_left(r->eng) || (si = self_index(r)) < 0)
        return;
    settle_all(r);
    if (r->nyields > 0)
        resend_yields(r);
    send_counts(r, NULL, "reg_digest", r->owners[si].count, r->owners[si].hash,
                1);
}

static uint64_t next_deadline(tether_engine_t *node, void *ctx)
{
    tether_registry_t *r = ctx;

    (void)node;
    return r->next_digest;
}

/* ----------------------------------------------------------------- API */

void tether_registry_config_default(tether_registry_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->digest_ms = TETHER_REG_DEFAULT_DIGEST;
}

int tether_registry_new(const tether_registry_config_t *cfg,
                        tether_engine_t *eng, tether_registry_t **out)
{
    tether_engine_module_t m = {
        .name = "registry",
        .type = TETHER_MSG_REGISTRY,
        .on_message = on_message,
        .on_session_up = on_session_up,
        .on_member = on_member,
        .on_tick = on_tick,
        .next_deadline = next_deadline,
    };
    tether_registry_t *r;
    int rc;

    if (cfg == NULL || eng == NULL || out == NULL ||
        (cfg->wlock == NULL) != (cfg->wunlock == NULL))
        return TETHER_EINVAL;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return TETHER_ENOMEM;
    r->cfg = *cfg;
    if (r->cfg.digest_ms == 0)
        r->cfg.digest_ms = TETHER_REG_DEFAULT_DIGEST;
    r->eng = eng;
    r->nb = REG_BUCKETS_MIN;
    r->buckets = calloc(r->nb, sizeof *r->buckets);
    if (r->buckets == NULL) {
        rc = TETHER_ENOMEM;
        goto fail;
    }
    tether_hlc_init(&r->hlc, 0);
    if (self_index(r) < 0) {
        rc = TETHER_ENOMEM;
        goto fail;
    }
    rc = tether_engine_register_module(eng, &m, r);
    if (rc < 0)
        goto fail;
    *out = r;
    return 0;
fail:
    tether_registry_free(r);
    return rc;
}

void tether_registry_free(tether_registry_t *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; r->buckets != NULL && i < r->nb; i++) {
        entry_t *e = r->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            free_entry(r, e);
        }
    }
    for (size_t i = 0; i < r->nyields; i++)
        free_yield(&r->yields[i]);
    free(r->yields);
    free(r->pbuckets);
    free(r->buckets);
    free(r->owners);
    free(r);
}

/* Registers name -> pid as ours and broadcasts it (see the two public
 * callers). */
static int do_register(tether_registry_t *r, const uint8_t *name, size_t nlen,
                       const uint8_t *pid, size_t plen, int method,
                       uint64_t wall_ms, tether_registry_sealed_t sealed,
                       void *ctx)
{
    uint64_t h, stamp;
    int self, rc;

    if (r == NULL || name == NULL || pid == NULL || nlen == 0 ||
        nlen > TETHER_REG_NAME_MAX || plen == 0 || plen > TETHER_REG_PID_MAX ||
        method < 0 || method > TETHER_REG_METHOD_MAX ||
        tether_engine_has_left(r->eng))
        return TETHER_EINVAL;
    h = name_hash(name, nlen);
    if (find(r, name, nlen, h) != NULL || find_own_pid(r, pid, plen) != NULL)
        return TETHER_EEXIST;
    if ((self = self_index(r)) < 0)
        return TETHER_ENOMEM;
    tether_registry_set_wall(r, wall_ms);
    rc = tether_hlc_now(&r->hlc, wall_ms, &stamp);
    if (rc < 0)
        return rc;
    rc = insert(r, name, nlen, pid, plen, stamp, method, self);
    if (rc < 0)
        return rc;
    broadcast_add(r, find_owned(r, name, nlen, h, (uint32_t)self), sealed, ctx);
    return 0;
}

int tether_registry_register(tether_registry_t *r, const uint8_t *name,
                             size_t nlen, const uint8_t *pid, size_t plen,
                             int method, uint64_t wall_ms)
{
    return do_register(r, name, nlen, pid, plen, method, wall_ms, NULL, NULL);
}

int tether_registry_register_sealed(tether_registry_t *r, const uint8_t *name,
                                    size_t nlen, const uint8_t *pid,
                                    size_t plen, int method, uint64_t wall_ms,
                                    tether_registry_sealed_t sealed, void *ctx)
{
    if (sealed == NULL)
        return TETHER_EINVAL;
    return do_register(r, name, nlen, pid, plen, method, wall_ms, sealed, ctx);
}

void tether_registry_set_wall(tether_registry_t *r, uint64_t wall_ms)
{
    r->wall_base = wall_ms;
    r->eng_base = tether_engine_now(r->eng);
    r->wall_set = 1;
}

int tether_registry_unregister(tether_registry_t *r, const uint8_t *name,
                               size_t nlen)
{
    entry_t *e;
    uint64_t stamp;
    int self;

    if (r == NULL || name == NULL || nlen == 0 || nlen > TETHER_REG_NAME_MAX)
        return TETHER_ENOTFOUND;
    if ((self = self_index(r)) < 0)
        return TETHER_ENOTFOUND;
    e = find_owned(r, name, nlen, name_hash(name, nlen), (uint32_t)self);
    if (e == NULL)
        return TETHER_ENOTFOUND;
    stamp = e->stamp;
    broadcast_del(r, e->name, e->nlen, stamp);
    remove_entry(r, e);
    return 0;
}

int tether_registry_resolve(tether_registry_t *r, const uint8_t *name,
                            size_t nlen, const uint8_t *keep, size_t klen)
{
    uint64_t h;
    entry_t *s, *kept = NULL;
    int self;

    if (r == NULL || name == NULL || nlen == 0 || nlen > TETHER_REG_NAME_MAX ||
        (keep == NULL) != (klen == 0) || (self = self_index(r)) < 0)
        return TETHER_EINVAL;
    h = name_hash(name, nlen);
    s = find_owned(r, name, nlen, h, (uint32_t)self);
    if (s == NULL)
        return TETHER_ENOTFOUND;
    for (entry_t *e = r->buckets[h & (r->nb - 1)]; keep && e; e = e->next)
        if (same_name(e, name, nlen, h) && e->plen == klen &&
            memcmp(e->pid, keep, klen) == 0)
            kept = e;
    if (keep != NULL && kept == NULL)
        return TETHER_ENOTFOUND; /* the kept pid holds no entry here */
    for (entry_t *e = r->buckets[h & (r->nb - 1)]; e != NULL; e = e->next)
        if (e != s && e != kept && same_name(e, name, nlen, h))
            add_yield(r, e, kept == s ? s->stamp : 0, keep, klen);
    if (kept != s) {
        broadcast_del(r, s->name, s->nlen, s->stamp);
        remove_entry(r, s);
    }
    return 0;
}

int tether_registry_whereis(const tether_registry_t *r, const uint8_t *name,
                            size_t nlen, uint8_t *pid, size_t cap, size_t *plen)
{
    const entry_t *e;

    if (r == NULL || name == NULL)
        return TETHER_ENOTFOUND;
    e = find_visible(r, name, nlen, name_hash(name, nlen));
    if (e == NULL)
        return TETHER_ENOTFOUND;
    if (e->plen > cap)
        return TETHER_ETOOBIG;
    memcpy(pid, e->pid, e->plen);
    *plen = e->plen;
    return 0;
}

int tether_registry_whereis_data(const tether_registry_t *r,
                                 const uint8_t *name, size_t nlen, void **data)
{
    const entry_t *e;

    if (r == NULL || name == NULL)
        return TETHER_ENOTFOUND;
    e = find_visible(r, name, nlen, name_hash(name, nlen));
    if (e == NULL || e->data == NULL)
        return TETHER_ENOTFOUND;
    *data = e->data;
    return 0;
}

int tether_registry_owner(const tether_registry_t *r, const uint8_t *name,
                          size_t nlen, char owner[TETHER_NODE_NAME_MAX + 1])
{
    const entry_t *e = find_visible(r, name, nlen, name_hash(name, nlen));

    owner[0] = '\0';
    if (e == NULL)
        return TETHER_ENOTFOUND;
    memcpy(owner, r->owners[e->owner].name,
           strlen(r->owners[e->owner].name) + 1);
    return 0;
}

size_t tether_registry_count(const tether_registry_t *r)
{
    return r->n;
}

void tether_registry_foreach(const tether_registry_t *r,
                             tether_registry_visit_t visit, void *ctx)
{
    for (size_t i = 0; i < r->nb; i++)
        for (const entry_t *e = r->buckets[i]; e != NULL; e = e->next)
            if (find_visible(r, e->name, e->nlen, e->h) == e)
                visit(ctx, e->name, e->nlen, e->pid, e->plen,
                      r->owners[e->owner].name, e->stamp, e->method);
}

void tether_registry_foreach_held(const tether_registry_t *r,
                                  tether_registry_visit_t visit, void *ctx)
{
    for (size_t i = 0; i < r->nb; i++)
        for (const entry_t *e = r->buckets[i]; e != NULL; e = e->next)
            visit(ctx, e->name, e->nlen, e->pid, e->plen,
                  r->owners[e->owner].name, e->stamp, e->method);
}

uint64_t tether_registry_digest(const tether_registry_t *r)
{
    uint64_t d = 0;

    for (size_t i = 0; i < r->nb; i++)
        for (const entry_t *e = r->buckets[i]; e != NULL; e = e->next) {
            const char *o = r->owners[e->owner].name;
            d ^= tether__fnv1a(
                content_hash(e->name, e->nlen, e->pid, e->plen, e->stamp), o,
                strlen(o));
        }
    return d ^ (uint64_t)r->n;
}

const tether_registry_stats_t *tether_registry_stats(const tether_registry_t *r)
{
    return &r->stats;
}
