/*
 * core/owner_table.c: the replicated owner table (see owner_table.h).
 *
 * Entries live in a chained hash by key hash; each entry is one
 * allocation holding its key, value and meta. The owners array keeps, per
 * owner, its name, the count, bytes and XOR hash of the entries held for
 * it (what digests compare) and whether a pull to it is out this round.
 *
 * Messages arrive validated as one term (core/codec.h); binaries are read
 * in place, every size is checked against its bound and by the module's
 * check hook. A sync is read to its end before anything of it is
 * applied, so a bad one changes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "core/owner_table.h"

#define OTAB_BUCKETS_MIN 64
#define TAG_BYTES        (TETHER_OTAB_PREFIX_MAX + 8) /* "_digest" + NUL */

typedef struct owner {
    char name[TETHER_NODE_NAME_MAX + 1];
    size_t count;  /* entries held */
    size_t bytes;  /* their key, value and meta bytes */
    uint64_t hash; /* XOR of their content hashes */
    int pulling;   /* a pull is out since the last digest round */
} owner_t;

struct tether_otab {
    tether_otab_config_t cfg;
    tether_engine_t *eng;
    tether_otab_entry_t **buckets;
    size_t nb, n;
    tether_otab_entry_t **vbuckets; /* our own entries by value */
    size_t vnb, vn;
    owner_t *owners;
    size_t nown, capown;
    uint32_t self;
    uint64_t next_digest;
    char tag_add[TAG_BYTES], tag_del[TAG_BYTES], tag_sync[TAG_BYTES],
        tag_digest[TAG_BYTES], tag_pull[TAG_BYTES];
    tether_otab_stats_t stats;
};

/* ------------------------------------------------------------ hashing */

static uint64_t bytes_hash(const uint8_t *b, size_t len)
{
    return tether__fnv1a(TETHER_FNV_OFFSET, b, len);
}

static uint64_t len_word(size_t n)
{
    return (uint64_t)n * UINT64_C(0x9e3779b97f4a7c15);
}

/* The hash of an entry's content as its owner wrote it (owner digests). */
static uint64_t content_hash(const tether_otab_entry_t *e)
{
    uint8_t w[12];
    uint64_t h;

    for (int i = 0; i < 8; i++)
        w[i] = (uint8_t)(e->stamp >> (8 * i));
    for (int i = 0; i < 4; i++)
        w[8 + i] = (uint8_t)(e->flags >> (8 * i));
    h = tether__fnv1a(TETHER_FNV_OFFSET, e->key, e->klen);
    h = tether__fnv1a(h, e->val, e->vlen);
    h = tether__fnv1a(h, e->meta, e->mlen);
    h = tether__fnv1a(h, w, sizeof w);
    return h ^ len_word(e->klen) ^ len_word(e->vlen) << 1 ^
           len_word(e->mlen) << 2;
}

/* ------------------------------------------------------------- locking */

TETHER__MODULE_LOCK_HOOKS(tether_otab_t)

/* ------------------------------------------------------------- owners */

int tether__otab_owner_find(const tether_otab_t *t, const char *name)
{
    for (size_t i = 0; i < t->nown; i++)
        if (strcmp(t->owners[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The index of owner `name`, created if new. Returns -1 when full. */
static int owner_index(tether_otab_t *t, const char *name)
{
    int o = tether__otab_owner_find(t, name);

    if (o >= 0)
        return o;
    if (t->nown == TETHER_OTAB_OWNERS_MAX)
        return -1;
    if (t->nown == t->capown) {
        size_t cap = t->capown ? t->capown * 2 : 8;
        owner_t *v;
        /* Readers see owner names through the array: move it locked. */
        wlock(t);
        v = realloc(t->owners, cap * sizeof *v);
        if (v != NULL) {
            t->owners = v;
            t->capown = cap;
        }
        wunlock(t);
        if (v == NULL)
            return -1;
    }
    memset(&t->owners[t->nown], 0, sizeof t->owners[t->nown]);
    memcpy(t->owners[t->nown].name, name, strlen(name) + 1);
    return (int)t->nown++;
}

uint32_t tether__otab_self(const tether_otab_t *t)
{
    return t->self;
}

const char *tether__otab_owner_name(const tether_otab_t *t, uint32_t o)
{
    return o < t->nown ? t->owners[o].name : "";
}

size_t tether__otab_count(const tether_otab_t *t)
{
    return t->n;
}

size_t tether__otab_owner_count(const tether_otab_t *t, uint32_t o)
{
    return o < t->nown ? t->owners[o].count : 0;
}

const tether_otab_stats_t *tether__otab_stats(const tether_otab_t *t)
{
    return &t->stats;
}

tether_engine_t *tether__otab_engine(const tether_otab_t *t)
{
    return t->eng;
}

/* ------------------------------------------------------------- lookups */

static int same_key(const tether_otab_entry_t *e, const uint8_t *key,
                    size_t klen, uint64_t h)
{
    return e->kh == h && e->klen == klen && memcmp(e->key, key, klen) == 0;
}

tether_otab_entry_t *tether__otab_find(const tether_otab_t *t,
                                       const uint8_t *key, size_t klen,
                                       uint32_t o)
{
    uint64_t h = bytes_hash(key, klen);

    for (tether_otab_entry_t *e = t->buckets[h & (t->nb - 1)]; e != NULL;
         e = e->next)
        if (e->owner == o && same_key(e, key, klen, h))
            return e;
    return NULL;
}

/* The first entry of key at or after e in its chain, or NULL. */
static tether_otab_entry_t *scan_key(tether_otab_entry_t *e, const uint8_t *key,
                                     size_t klen, uint64_t h)
{
    for (; e != NULL; e = e->next)
        if (same_key(e, key, klen, h))
            return e;
    return NULL;
}

tether_otab_entry_t *tether__otab_first(const tether_otab_t *t,
                                        const uint8_t *key, size_t klen)
{
    uint64_t h = bytes_hash(key, klen);

    return scan_key(t->buckets[h & (t->nb - 1)], key, klen, h);
}

tether_otab_entry_t *tether__otab_next(const tether_otab_t *t,
                                       const tether_otab_entry_t *e)
{
    (void)t;
    return scan_key(e->next, e->key, e->klen, e->kh);
}

tether_otab_entry_t *tether__otab_find_own_value(const tether_otab_t *t,
                                                 const uint8_t *val,
                                                 size_t vlen)
{
    uint64_t h;

    if (t->vnb == 0)
        return NULL;
    h = bytes_hash(val, vlen);
    for (tether_otab_entry_t *e = t->vbuckets[h & (t->vnb - 1)]; e != NULL;
         e = e->vnext)
        if (e->vh == h && e->vlen == vlen && memcmp(e->val, val, vlen) == 0)
            return e;
    return NULL;
}

void tether__otab_foreach(const tether_otab_t *t,
                          void (*visit)(void *ctx,
                                        const tether_otab_entry_t *e),
                          void *ctx)
{
    for (size_t i = 0; i < t->nb; i++)
        for (const tether_otab_entry_t *e = t->buckets[i]; e != NULL;
             e = e->next)
            visit(ctx, e);
}

uint64_t tether__otab_digest(const tether_otab_t *t)
{
    uint64_t d = 0;

    for (size_t i = 0; i < t->nb; i++)
        for (const tether_otab_entry_t *e = t->buckets[i]; e != NULL;
             e = e->next) {
            const char *o = t->owners[e->owner].name;
            d ^= tether__fnv1a(content_hash(e), o, strlen(o) + 1);
        }
    return d ^ (uint64_t)t->n;
}

/* --------------------------------------------------------------- table */

/* Rehashes a chain array into one of nb buckets (nb a power of two). */
static tether_otab_entry_t **rehash(tether_otab_entry_t **old, size_t oldnb,
                                    size_t nb, int by_value)
{
    tether_otab_entry_t **b = calloc(nb, sizeof *b);

    if (b == NULL)
        return NULL;
    for (size_t i = 0; i < oldnb; i++) {
        tether_otab_entry_t *e = old[i], *next;
        for (; e != NULL; e = next) {
            uint64_t h = by_value ? e->vh : e->kh;
            next = by_value ? e->vnext : e->next;
            if (by_value) {
                e->vnext = b[h & (nb - 1)];
            } else {
                e->next = b[h & (nb - 1)];
            }
            b[h & (nb - 1)] = e;
        }
    }
    return b;
}

/* Doubles the bucket array when the table is dense (under the lock). */
static void grow(tether_otab_t *t)
{
    tether_otab_entry_t **b;

    if (t->n < t->nb * 2)
        return;
    b = rehash(t->buckets, t->nb, t->nb * 2, 0);
    if (b == NULL)
        return; /* longer chains, still correct */
    free(t->buckets);
    t->buckets = b;
    t->nb *= 2;
}

/* Links our own entry e into the value index (doubling it when dense). */
static int value_link(tether_otab_t *t, tether_otab_entry_t *e)
{
    if (t->vn >= t->vnb * 2) {
        size_t nb = t->vnb ? t->vnb * 2 : OTAB_BUCKETS_MIN;
        tether_otab_entry_t **b = rehash(t->vbuckets, t->vnb, nb, 1);
        if (b == NULL)
            return TETHER_ENOMEM;
        free(t->vbuckets);
        t->vbuckets = b;
        t->vnb = nb;
    }
    e->vh = bytes_hash(e->val, e->vlen);
    e->vnext = t->vbuckets[e->vh & (t->vnb - 1)];
    t->vbuckets[e->vh & (t->vnb - 1)] = e;
    t->vn++;
    return 0;
}

static void value_unlink(tether_otab_t *t, tether_otab_entry_t *e)
{
    tether_otab_entry_t **pp = &t->vbuckets[e->vh & (t->vnb - 1)];

    while (*pp != e)
        pp = &(*pp)->vnext;
    *pp = e->vnext;
    t->vn--;
}

static int indexed(const tether_otab_t *t, const tether_otab_entry_t *e)
{
    return t->cfg.value_index && e->owner == t->self;
}

static size_t entry_bytes(const tether_otab_entry_t *e)
{
    return e->klen + e->vlen + e->mlen;
}

/* A new, unlinked entry of owner o with w's content and stamp. */
static tether_otab_entry_t *entry_new(const tether_otab_t *t, uint32_t o,
                                      const tether_otab_write_t *w,
                                      uint64_t stamp)
{
    tether_otab_entry_t *e = calloc(1, sizeof *e + w->klen + w->vlen + w->mlen);
    uint8_t *p;

    if (e == NULL)
        return NULL;
    p = e->bytes;
    memcpy(p, w->key, w->klen);
    e->key = p;
    p += w->klen;
    if (w->vlen)
        memcpy(p, w->val, w->vlen);
    e->val = p;
    p += w->vlen;
    if (w->mlen)
        memcpy(p, w->meta, w->mlen);
    e->meta = p;
    e->klen = w->klen;
    e->vlen = w->vlen;
    e->mlen = w->mlen;
    e->stamp = stamp;
    e->flags = w->flags;
    e->owner = o;
    e->kh = bytes_hash(e->key, e->klen);
    if (t->cfg.attach != NULL)
        e->data = t->cfg.attach(t->cfg.shell_ctx, e);
    return e;
}

static void entry_free(const tether_otab_t *t, tether_otab_entry_t *e)
{
    if (e->data != NULL && t->cfg.detach != NULL)
        t->cfg.detach(t->cfg.shell_ctx, e->data);
    free(e);
}

static void account(tether_otab_t *t, const tether_otab_entry_t *e, int sign)
{
    owner_t *ow = &t->owners[e->owner];

    if (sign > 0) {
        ow->count++;
        ow->bytes += entry_bytes(e);
    } else {
        ow->count--;
        ow->bytes -= entry_bytes(e);
    }
    ow->hash ^= content_hash(e);
}

static void changed(tether_otab_t *t, const tether_otab_entry_t *e, int what)
{
    if (t->cfg.changed != NULL)
        t->cfg.changed(t->cfg.mctx, e, what);
}

/*
 * Puts fresh (unlinked, owner o) in place of old (NULL: inserted new).
 * Returns 0, or TETHER_ENOMEM (the value index could not grow; nothing
 * changed and fresh is freed).
 */
static int link_entry(tether_otab_t *t, tether_otab_entry_t *old,
                      tether_otab_entry_t *fresh)
{
    tether_otab_entry_t **pp;

    if (indexed(t, fresh) && value_link(t, fresh) < 0) {
        entry_free(t, fresh);
        return TETHER_ENOMEM;
    }
    if (old != NULL) {
        pp = &t->buckets[old->kh & (t->nb - 1)];
        while (*pp != old)
            pp = &(*pp)->next;
        wlock(t);
        fresh->next = old->next;
        *pp = fresh;
        wunlock(t);
        if (indexed(t, old))
            value_unlink(t, old);
        account(t, old, -1);
        account(t, fresh, 1);
        t->stats.replaced++;
        changed(t, fresh, TETHER_OTAB_REPLACED);
        entry_free(t, old); /* unlinked: no reader reaches it any more */
        return 0;
    }
    wlock(t);
    pp = &t->buckets[fresh->kh & (t->nb - 1)];
    fresh->next = *pp;
    *pp = fresh;
    t->n++;
    grow(t);
    wunlock(t);
    account(t, fresh, 1);
    t->stats.added++;
    changed(t, fresh, TETHER_OTAB_ADDED);
    return 0;
}

/* Unlinks and frees e. */
static void remove_entry(tether_otab_t *t, tether_otab_entry_t *e)
{
    tether_otab_entry_t **pp = &t->buckets[e->kh & (t->nb - 1)];

    changed(t, e, TETHER_OTAB_REMOVED);
    while (*pp != e)
        pp = &(*pp)->next;
    wlock(t);
    *pp = e->next;
    t->n--;
    wunlock(t);
    if (indexed(t, e))
        value_unlink(t, e);
    account(t, e, -1);
    t->stats.removed++;
    entry_free(t, e);
}

/* Removes every entry of owner o, or only the marked ones. */
static void remove_owned(tether_otab_t *t, uint32_t o, int marked_only)
{
    if (t->owners[o].count == 0)
        return;
    for (size_t i = 0; i < t->nb; i++) {
        tether_otab_entry_t *e = t->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            if (e->owner == o && (!marked_only || e->mark))
                remove_entry(t, e);
        }
    }
}

/* ------------------------------------------------------------ encoding */

void tether__otab_send(tether_otab_t *t, const char *to, const ei_x_buff *x,
                       unsigned flags)
{
    const uint8_t *b = (const uint8_t *)x->buff;

    if (to != NULL)
        (void)tether_engine_send(t->eng, to, t->cfg.type, b, (size_t)x->index,
                                 flags);
    else
        (void)tether__engine_broadcast(t->eng, t->cfg.type, b, (size_t)x->index,
                                       flags);
}

/* Encodes Stamp, Flags, Key, Val, Meta of e. */
static int x_entry(ei_x_buff *x, const tether_otab_entry_t *e)
{
    if (ei_x_encode_ulonglong(x, e->stamp) < 0 ||
        ei_x_encode_ulong(x, e->flags) < 0 ||
        ei_x_encode_binary(x, e->key, (long)e->klen) < 0 ||
        ei_x_encode_binary(x, e->val, (long)e->vlen) < 0 ||
        ei_x_encode_binary(x, e->meta, (long)e->mlen) < 0)
        return TETHER_ENOMEM;
    return 0;
}

/* Broadcasts our entry e: as engine actions, or sealed for the caller. */
static void broadcast_add(tether_otab_t *t, const tether_otab_entry_t *e,
                          tether_engine_sealed_t sealed, void *ctx)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, 6, t->tag_add) < 0)
        return;
    if (x_entry(&x, e) == 0) {
        if (sealed != NULL)
            (void)tether__engine_broadcast_sealed(t->eng, t->cfg.type,
                                                  (const uint8_t *)x.buff,
                                                  (size_t)x.index, sealed, ctx);
        else
            tether__otab_send(t, NULL, &x, 0);
    }
    ei_x_free(&x);
}

static void broadcast_del(tether_otab_t *t, const tether_otab_entry_t *e)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, 3, t->tag_del) < 0)
        return;
    if (ei_x_encode_ulonglong(&x, e->stamp) == 0 &&
        ei_x_encode_binary(&x, e->key, (long)e->klen) == 0)
        tether__otab_send(t, NULL, &x, 0);
    ei_x_free(&x);
}

/* Sends our full set of own entries to peer. */
static void send_sync(tether_otab_t *t, const char *peer)
{
    ei_x_buff x;
    int rc = 0;

    if (tether__etf_begin(&x, 2, t->tag_sync) < 0)
        return;
    if (t->owners[t->self].count > 0)
        rc = ei_x_encode_list_header(&x, (long)t->owners[t->self].count);
    for (size_t i = 0; rc == 0 && i < t->nb; i++)
        for (const tether_otab_entry_t *e = t->buckets[i]; rc == 0 && e;
             e = e->next) {
            if (e->owner != t->self)
                continue;
            if (ei_x_encode_tuple_header(&x, 5) < 0)
                rc = TETHER_ENOMEM;
            else
                rc = x_entry(&x, e);
        }
    if (rc == 0 && ei_x_encode_empty_list(&x) == 0) {
        t->stats.syncs_sent++;
        tether__otab_send(t, peer, &x, TETHER_SEND_STATE);
    }
    ei_x_free(&x);
}

/* Asks owner o for its sync, unless a pull is already out this round. */
static void pull(tether_otab_t *t, uint32_t o)
{
    ei_x_buff x;

    if (t->owners[o].pulling || tether__etf_begin(&x, 1, t->tag_pull) < 0)
        return;
    t->owners[o].pulling = 1;
    t->stats.pulls_sent++;
    tether__otab_send(t, t->owners[o].name, &x, TETHER_SEND_STATE);
    ei_x_free(&x);
}

static void send_digest(tether_otab_t *t)
{
    const owner_t *ow = &t->owners[t->self];
    ei_x_buff x;

    if (tether__etf_begin(&x, 3, t->tag_digest) < 0)
        return;
    if (ei_x_encode_ulonglong(&x, ow->count) == 0 &&
        ei_x_encode_ulonglong(&x, ow->hash) == 0)
        tether__otab_send(t, NULL, &x, TETHER_SEND_STATE);
    ei_x_free(&x);
}

/* ------------------------------------------------------------ writing */

/* Checks a write's sizes against the table's bounds. */
static int check_sizes(const tether_otab_t *t, const tether_otab_write_t *w)
{
    if (w->key == NULL || w->klen == 0 || w->klen > t->cfg.key_max ||
        (w->val == NULL && w->vlen > 0) || w->vlen == 0 ||
        w->vlen > t->cfg.val_max || (w->meta == NULL && w->mlen > 0) ||
        w->mlen > t->cfg.meta_max)
        return TETHER_EINVAL;
    return 0;
}

/* 1 if e holds exactly w's value, meta and flags. */
static int same_content(const tether_otab_entry_t *e,
                        const tether_otab_write_t *w)
{
    return e->flags == w->flags && e->vlen == w->vlen && e->mlen == w->mlen &&
           memcmp(e->val, w->val, w->vlen) == 0 &&
           (w->mlen == 0 || memcmp(e->meta, w->meta, w->mlen) == 0);
}

int tether__otab_put(tether_otab_t *t, const tether_otab_write_t *w,
                     tether_engine_sealed_t sealed, void *ctx)
{
    tether_otab_entry_t *old, *fresh;
    const owner_t *ow = &t->owners[t->self];
    size_t oldbytes = 0, bytes;
    uint64_t stamp;
    int rc;

    if (t == NULL || w == NULL || tether_engine_has_left(t->eng) ||
        check_sizes(t, w) < 0)
        return TETHER_EINVAL;
    old = tether__otab_find(t, w->key, w->klen, t->self);
    if (old != NULL && same_content(old, w))
        return 0;
    if (old != NULL)
        oldbytes = entry_bytes(old);
    else if (t->n >= t->cfg.entries_max ||
             (t->cfg.own_max && ow->count >= t->cfg.own_max))
        return TETHER_ETOOBIG;
    bytes = w->klen + w->vlen + w->mlen;
    if (t->cfg.own_bytes_max &&
        ow->bytes - oldbytes + bytes > t->cfg.own_bytes_max)
        return TETHER_ETOOBIG;
    rc = tether__engine_stamp(t->eng, &stamp);
    if (rc < 0)
        return rc;
    fresh = entry_new(t, t->self, w, stamp);
    if (fresh == NULL)
        return TETHER_ENOMEM;
    rc = link_entry(t, old, fresh);
    if (rc < 0)
        return rc;
    broadcast_add(t, fresh, sealed, ctx);
    return 0;
}

void tether__otab_del(tether_otab_t *t, tether_otab_entry_t *e)
{
    broadcast_del(t, e);
    remove_entry(t, e);
}

/* ------------------------------------------------------------ decoding */

/* Decodes Stamp, Flags, Key, Val, Meta (in place) and checks them:
 * sizes, then the module's check. */
static int decode_entry(const tether_otab_t *t, const char *buf, int *idx,
                        tether_otab_entry_t *w)
{
    uint64_t flags;
    tether_otab_write_t ww;

    memset(w, 0, sizeof *w);
    if (tether__etf_decode_u64(buf, idx, &w->stamp) < 0 ||
        tether__etf_decode_u64(buf, idx, &flags) < 0 || flags > UINT32_MAX ||
        tether__etf_decode_bin_ref(buf, idx, &w->key, &w->klen) < 0 ||
        tether__etf_decode_bin_ref(buf, idx, &w->val, &w->vlen) < 0 ||
        tether__etf_decode_bin_ref(buf, idx, &w->meta, &w->mlen) < 0)
        return TETHER_EPROTO;
    w->flags = (uint32_t)flags;
    ww = (tether_otab_write_t){w->key,  w->val,  w->meta, w->klen,
                               w->vlen, w->mlen, w->flags};
    if (check_sizes(t, &ww) < 0 ||
        (t->cfg.check != NULL && t->cfg.check(t->cfg.mctx, w) < 0))
        return TETHER_EPROTO;
    return 0;
}

/* ----------------------------------------------------------- handling */

/* Applies one checked entry w of owner o (see the rules in the header). */
static void apply_add(tether_otab_t *t, uint32_t o,
                      const tether_otab_entry_t *w)
{
    tether_otab_entry_t *e = tether__otab_find(t, w->key, w->klen, o);
    tether_otab_entry_t *fresh;
    tether_otab_write_t ww = {w->key,  w->val,  w->meta, w->klen,
                              w->vlen, w->mlen, w->flags};

    tether__engine_stamp_merge(t->eng, w->stamp);
    if (e != NULL && w->stamp == e->stamp) {
        e->mark = 0; /* the same write */
        return;
    }
    if (e != NULL && w->stamp < e->stamp)
        return; /* an older write of the owner */
    if (e == NULL && t->n >= t->cfg.entries_max) {
        t->stats.dropped++;
        return;
    }
    fresh = entry_new(t, o, &ww, w->stamp);
    if (fresh == NULL || link_entry(t, e, fresh) < 0)
        t->stats.dropped++;
}

static void settle(tether_otab_t *t, const uint8_t *key, size_t klen)
{
    if (t->cfg.settle != NULL)
        t->cfg.settle(t->cfg.mctx, key, klen);
}

/* {P_sync, List} from owner o, idx at List. Returns 0 or TETHER_EPROTO
 * (nothing applied). */
static int handle_sync(tether_otab_t *t, uint32_t o, const char *buf, int idx)
{
    tether_otab_entry_t w;
    int count, start;

    if (tether__etf_list(buf, &idx, &count) < 0 ||
        (t->cfg.own_max && (size_t)count > t->cfg.own_max))
        return TETHER_EPROTO;
    start = idx;
    for (int k = 0; k < count; k++)
        if (tether__etf_expect_tuple(buf, &idx, 5) < 0 ||
            decode_entry(t, buf, &idx, &w) < 0)
            return TETHER_EPROTO;
    if (tether__etf_list_end(buf, &idx, count) < 0)
        return TETHER_EPROTO;
    /* Read to its end: now apply it, same walk. */
    for (size_t i = 0; i < t->nb; i++)
        for (tether_otab_entry_t *e = t->buckets[i]; e != NULL; e = e->next)
            e->mark = e->owner == o;
    idx = start;
    for (int k = 0; k < count; k++) {
        if (tether__etf_expect_tuple(buf, &idx, 5) < 0 ||
            decode_entry(t, buf, &idx, &w) < 0)
            break; /* not reached: checked above */
        apply_add(t, o, &w);
        settle(t, w.key, w.klen);
    }
    remove_owned(t, o, 1);
    t->owners[o].pulling = 0;
    t->stats.syncs_recv++;
    return 0;
}

static int handle_del(tether_otab_t *t, uint32_t o, const char *buf, int idx)
{
    const uint8_t *key;
    size_t klen;
    uint64_t stamp;
    tether_otab_entry_t *e;

    if (tether__etf_decode_u64(buf, &idx, &stamp) < 0 ||
        tether__etf_decode_bin_ref(buf, &idx, &key, &klen) < 0 || klen == 0 ||
        klen > t->cfg.key_max)
        return TETHER_EPROTO;
    e = tether__otab_find(t, key, klen, o);
    if (e != NULL && e->stamp <= stamp)
        remove_entry(t, e);
    settle(t, key, klen);
    return 0;
}

static void on_message(tether_engine_t *eng, void *ctx, const char *from,
                       const char *buf, size_t len)
{
    tether_otab_t *t = ctx;
    char tag[TETHER_ETF_TAG_MAX];
    tether_otab_entry_t w;
    int idx = 0, arity, o, rc;
    uint64_t a, b;

    (void)eng;
    (void)len;
    if (!tether_engine_is_member(t->eng, from) ||
        strcmp(from, tether_engine_name(t->eng)) == 0) {
        t->stats.stale_msgs++;
        return;
    }
    if (tether__etf_decode_head(buf, &idx, tag, &arity) < 0)
        goto bad;
    o = owner_index(t, from);
    if (o < 0) {
        t->stats.stale_msgs++;
        return;
    }
    if (strcmp(tag, t->tag_add) == 0 && arity == 6) {
        if (decode_entry(t, buf, &idx, &w) < 0)
            goto bad;
        apply_add(t, (uint32_t)o, &w);
        settle(t, w.key, w.klen);
        return;
    }
    if (strcmp(tag, t->tag_del) == 0 && arity == 3) {
        if (handle_del(t, (uint32_t)o, buf, idx) < 0)
            goto bad;
        return;
    }
    if (strcmp(tag, t->tag_sync) == 0 && arity == 2) {
        if (handle_sync(t, (uint32_t)o, buf, idx) < 0)
            goto bad;
        return;
    }
    if (strcmp(tag, t->tag_digest) == 0 && arity == 3) {
        if (tether__etf_decode_u64(buf, &idx, &a) < 0 ||
            tether__etf_decode_u64(buf, &idx, &b) < 0)
            goto bad;
        if (t->owners[o].count != a || t->owners[o].hash != b)
            pull(t, (uint32_t)o);
        return;
    }
    if (strcmp(tag, t->tag_pull) == 0 && arity == 1) {
        send_sync(t, from);
        return;
    }
    if (t->cfg.message != NULL) {
        rc = t->cfg.message(t->cfg.mctx, from, (uint32_t)o, tag, arity, buf,
                            idx);
        if (rc == 0)
            return;
    }
bad:
    t->stats.bad_msgs++;
}

static void on_member(tether_engine_t *eng, void *ctx, const char *name, int up)
{
    tether_otab_t *t = ctx;
    int o;

    (void)eng;
    if (strcmp(name, tether_engine_name(t->eng)) == 0)
        return;
    if (up) {
        /* Both ways: the peer's own sync may have reached us before we
         * counted it a member, and been dropped as stale. */
        send_sync(t, name);
        o = owner_index(t, name);
        if (o >= 0) {
            t->owners[o].pulling = 0;
            pull(t, (uint32_t)o);
        }
        return;
    }
    o = tether__otab_owner_find(t, name);
    if (o >= 0) {
        t->owners[o].pulling = 0;
        remove_owned(t, (uint32_t)o, 0);
    }
}

static void on_session_up(tether_engine_t *eng, void *ctx, const char *peer)
{
    tether_otab_t *t = ctx;

    (void)eng;
    if (tether_engine_is_member(t->eng, peer))
        send_sync(t, peer);
}

static void on_tick(tether_engine_t *eng, void *ctx, uint64_t now_ms)
{
    tether_otab_t *t = ctx;

    (void)eng;
    if (now_ms < t->next_digest)
        return;
    t->next_digest = now_ms + t->cfg.digest_ms;
    /* A pull lost on the way is asked again from this round on. */
    for (size_t i = 0; i < t->nown; i++)
        t->owners[i].pulling = 0;
    if (tether_engine_has_left(t->eng))
        return;
    if (t->cfg.round != NULL)
        t->cfg.round(t->cfg.mctx, now_ms);
    send_digest(t);
}

static uint64_t next_deadline(tether_engine_t *eng, void *ctx)
{
    const tether_otab_t *t = ctx;

    (void)eng;
    return t->next_digest;
}

/* ---------------------------------------------------------- lifecycle */

static void otab_free(void *ctx)
{
    tether_otab_t *t = ctx;

    if (t == NULL)
        return;
    if (t->cfg.free != NULL)
        t->cfg.free(t->cfg.mctx);
    for (size_t i = 0; t->buckets != NULL && i < t->nb; i++) {
        tether_otab_entry_t *e = t->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            entry_free(t, e);
        }
    }
    free(t->buckets);
    free(t->vbuckets);
    free(t->owners);
    free(t);
}

/* Builds the five tags from the prefix. */
static void make_tags(tether_otab_t *t)
{
    const char *p = t->cfg.prefix;

    snprintf(t->tag_add, TAG_BYTES, "%s_add", p);
    snprintf(t->tag_del, TAG_BYTES, "%s_del", p);
    snprintf(t->tag_sync, TAG_BYTES, "%s_sync", p);
    snprintf(t->tag_digest, TAG_BYTES, "%s_digest", p);
    snprintf(t->tag_pull, TAG_BYTES, "%s_pull", p);
}

int tether__otab_new(const tether_otab_config_t *cfg, tether_engine_t *eng,
                     tether_otab_t **out)
{
    tether_engine_module_t m = {
        .type = 0,
        .on_message = on_message,
        .on_session_up = on_session_up,
        .on_member = on_member,
        .on_tick = on_tick,
        .next_deadline = next_deadline,
        .free = otab_free,
    };
    tether_otab_t *t;
    size_t plen;
    int o, rc;

    if (cfg == NULL || eng == NULL || out == NULL || cfg->prefix == NULL ||
        (cfg->wlock == NULL) != (cfg->wunlock == NULL) || cfg->key_max == 0 ||
        cfg->val_max == 0 || cfg->entries_max == 0)
        return TETHER_EINVAL;
    plen = strlen(cfg->prefix);
    if (plen == 0 || plen > TETHER_OTAB_PREFIX_MAX)
        return TETHER_EINVAL;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return TETHER_ENOMEM;
    t->cfg = *cfg;
    if (t->cfg.digest_ms == 0)
        t->cfg.digest_ms = TETHER_OTAB_DEFAULT_DIGEST;
    t->eng = eng;
    make_tags(t);
    t->nb = OTAB_BUCKETS_MIN;
    t->buckets = calloc(t->nb, sizeof *t->buckets);
    o = t->buckets != NULL ? owner_index(t, tether_engine_name(eng)) : -1;
    if (o < 0) {
        rc = TETHER_ENOMEM;
        goto fail;
    }
    t->self = (uint32_t)o;
    m.name = cfg->name ? cfg->name : cfg->prefix;
    m.type = cfg->type;
    rc = tether__engine_register_module(eng, &m, t);
    if (rc < 0)
        goto fail;
    *out = t;
    return 0;
fail:
    t->cfg.free = NULL; /* the module is the caller's until we succeed */
    otab_free(t);
    return rc;
}
