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
#define REG_TAG_MAX     16

typedef struct entry {
    struct entry *next;
    uint64_t h; /* hash of the name */
    uint8_t *name;
    size_t nlen;
    uint8_t *pid;
    size_t plen;
    uint64_t stamp;
    uint32_t owner; /* index into owners */
    int method;
    int mark;   /* scratch for reg_sync */
    void *data; /* the shell's (pid_attach) */
} entry_t;

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
    tether_registry_stats_t stats;
};

/* One decoded entry of a message; name and pid point into its buffer. */
typedef struct wire_entry {
    uint64_t stamp;
    int method;
    uint8_t name[TETHER_REG_NAME_MAX];
    size_t nlen;
    uint8_t pid[TETHER_REG_PID_MAX];
    size_t plen;
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

static entry_t *find(const tether_registry_t *r, const uint8_t *name,
                     size_t nlen, uint64_t h)
{
    for (entry_t *e = r->buckets[h & (r->nb - 1)]; e != NULL; e = e->next)
        if (e->h == h && e->nlen == nlen && memcmp(e->name, name, nlen) == 0)
            return e;
    return NULL;
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
    if (r->cfg.pid_attach != NULL)
        e->data = r->cfg.pid_attach(r->cfg.shell_ctx, pid, plen);
    memcpy(e->name, name, nlen);
    memcpy(e->pid, pid, plen);
    e->nlen = nlen;
    e->plen = plen;
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

static int x_tag(ei_x_buff *x, int arity, const char *tag)
{
    if (ei_x_new_with_version(x) < 0)
        return TETHER_ENOMEM;
    if (ei_x_encode_tuple_header(x, arity) < 0 ||
        ei_x_encode_atom(x, tag) < 0) {
        ei_x_free(x);
        return TETHER_ENOMEM;
    }
    return 0;
}

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
static void send_x(tether_registry_t *r, const char *to, ei_x_buff *x,
                   unsigned flags)
{
    const char *mem[TETHER_MEMBERS_MAX];
    const char *self = tether_engine_name(r->eng);
    size_t n;

    if (to != NULL) {
        (void)tether_engine_send(r->eng, to, TETHER_MSG_REGISTRY,
                                 (const uint8_t *)x->buff, (size_t)x->index,
                                 flags);
        return;
    }
    n = tether_engine_members(r->eng, mem, TETHER_MEMBERS_MAX);
    if (n > TETHER_MEMBERS_MAX)
        n = TETHER_MEMBERS_MAX;
    /* Copy first: sending may not change the member table, but be safe
     * against pointers into it by sending from a snapshot of names. */
    for (size_t i = 0; i < n; i++) {
        char peer[TETHER_NODE_NAME_MAX + 1];
        if (strcmp(mem[i], self) == 0)
            continue;
        memcpy(peer, mem[i], strlen(mem[i]) + 1);
        (void)tether_engine_send(r->eng, peer, TETHER_MSG_REGISTRY,
                                 (const uint8_t *)x->buff, (size_t)x->index,
                                 flags);
    }
}

static void broadcast_add(tether_registry_t *r, const entry_t *e)
{
    ei_x_buff x;

    if (x_tag(&x, 5, "reg_add") < 0)
        return;
    if (x_entry_fields(&x, e->stamp, e->method, e->name, e->nlen, e->pid,
                       e->plen) == 0)
        send_x(r, NULL, &x, 0);
    ei_x_free(&x);
}

static void broadcast_del(tether_registry_t *r, const uint8_t *name,
                          size_t nlen, uint64_t stamp)
{
    ei_x_buff x;

    if (x_tag(&x, 3, "reg_del") < 0)
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

    if (self < 0 || x_tag(&x, 2, "reg_sync") < 0)
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

static void send_counts(tether_registry_t *r, const char *peer, const char *tag,
                        uint64_t count, uint64_t hash, int with_hash)
{
    ei_x_buff x;

    if (x_tag(&x, with_hash ? 3 : 2, tag) < 0)
        return;
    if (ei_x_encode_ulonglong(&x, count) == 0 &&
        (!with_hash || ei_x_encode_ulonglong(&x, hash) == 0))
        send_x(r, peer, &x, TETHER_SEND_STATE);
    ei_x_free(&x);
}

/* Tells our shell that our entry e lost to winner_pid. */
static void deliver_conflict(tether_registry_t *r, const entry_t *e,
                             const uint8_t *wpid, size_t wplen)
{
    ei_x_buff x;

    if (x_tag(&x, 5, "tether_reg_conflict") < 0)
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

/* ------------------------------------------------------------ decoding */

static int decode_bytes(const char *buf, int *idx, uint8_t *out, size_t cap,
                        size_t *len)
{
    int type, size;
    long l;

    if (ei_get_type(buf, idx, &type, &size) < 0 || type != ERL_BINARY_EXT ||
        size <= 0 || (size_t)size > cap)
        return TETHER_EPROTO;
    if (ei_decode_binary(buf, idx, out, &l) < 0 || l != size)
        return TETHER_EPROTO;
    *len = (size_t)l;
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

/* Decodes Stamp, Method, NameEtf, PidEtf. */
static int decode_entry(const char *buf, int *idx, wire_entry_t *w)
{
    if (tether__etf_decode_u64(buf, idx, &w->stamp) < 0 ||
        decode_method(buf, idx, &w->method) < 0 ||
        decode_bytes(buf, idx, w->name, sizeof w->name, &w->nlen) < 0 ||
        decode_bytes(buf, idx, w->pid, sizeof w->pid, &w->plen) < 0)
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

/* 1 if (sa, oa) registered before (sb, ob). */
static int earlier(uint64_t sa, const char *oa, uint64_t sb, const char *ob)
{
    return sa < sb || (sa == sb && strcmp(oa, ob) < 0);
}

/* Applies one entry owned by `from` (index o). */
static void apply_add(tether_registry_t *r, const char *from, int o,
                      const wire_entry_t *w)
{
    uint64_t h = name_hash(w->name, w->nlen), ts;
    entry_t *e = find(r, w->name, w->nlen, h);
    const char *held;

    /* A stamp too far ahead is not merged; the entry still applies. */
    if (tether_hlc_update(&r->hlc, wall_now(r), w->stamp, &ts) < 0)
        ts = 0;
    if (e == NULL) {
        (void)insert(r, w->name, w->nlen, w->pid, w->plen, w->stamp, w->method,
                     o);
        return;
    }
    if (e->owner == (uint32_t)o) {
        if (w->stamp > e->stamp) { /* a newer registration of the owner */
            remove_entry(r, e);
            (void)insert(r, w->name, w->nlen, w->pid, w->plen, w->stamp,
                         w->method, o);
        } else if (w->stamp == e->stamp) {
            e->mark = 0;
        }
        return;
    }
    r->stats.conflicts++;
    held = r->owners[e->owner].name;
    if (!earlier(w->stamp, from, e->stamp, held))
        return; /* ours (or the third party's) stays; its owner tells */
    if (e->owner == (uint32_t)self_index(r)) {
        r->stats.lost++;
        deliver_conflict(r, e, w->pid, w->plen);
        broadcast_del(r, e->name, e->nlen, e->stamp);
    }
    remove_entry(r, e);
    (void)insert(r, w->name, w->nlen, w->pid, w->plen, w->stamp, w->method, o);
}

static void handle_sync(tether_registry_t *r, const char *from, int o,
                        const char *buf, int idx)
{
    wire_entry_t *w = malloc(sizeof *w);
    int count;

    if (w == NULL)
        return;
    if (tether__etf_list(buf, &idx, &count) < 0)
        goto bad;
    for (size_t i = 0; i < r->nb; i++)
        for (entry_t *e = r->buckets[i]; e != NULL; e = e->next)
            e->mark = e->owner == (uint32_t)o;
    for (int k = 0; k < count; k++) {
        if (tether__etf_expect_tuple(buf, &idx, 4) < 0 ||
            decode_entry(buf, &idx, w) < 0)
            goto bad;
        apply_add(r, from, o, w);
    }
    if (tether__etf_list_end(buf, &idx, count) < 0)
        goto bad;
    remove_owned(r, (uint32_t)o, 1);
    free(w);
    return;
bad:
    /* Entries already applied stand; nothing marked is removed on a
     * message we could not read to its end. */
    r->stats.bad_msgs++;
    free(w);
}

/* Decodes the tag atom of a {Tag, ...} tuple into tag. */
static int decode_tag(const char *buf, int *idx, char tag[REG_TAG_MAX],
                      int *arity)
{
    int type, size;

    if (ei_decode_tuple_header(buf, idx, arity) < 0 || *arity < 2 ||
        ei_get_type(buf, idx, &type, &size) < 0 ||
        (type != ERL_ATOM_EXT && type != ERL_SMALL_ATOM_EXT &&
         type != ERL_ATOM_UTF8_EXT && type != ERL_SMALL_ATOM_UTF8_EXT) ||
        size <= 0 || size >= REG_TAG_MAX)
        return TETHER_EPROTO;
    {
        char atom[MAXATOMLEN_UTF8];
        if (ei_decode_atom(buf, idx, atom) < 0)
            return TETHER_EPROTO;
        memcpy(tag, atom, (size_t)size);
        tag[size] = '\0';
    }
    return 0;
}

static void on_message(tether_engine_t *node, void *ctx, const char *from,
                       const char *buf, size_t len)
{
    tether_registry_t *r = ctx;
    char tag[REG_TAG_MAX];
    int idx = 0, version, arity, o;
    uint64_t a, b;
    wire_entry_t *w = NULL;

    (void)node;
    (void)len;
    if (!tether_engine_is_member(r->eng, from) ||
        strcmp(from, tether_engine_name(r->eng)) == 0) {
        r->stats.stale_msgs++;
        return;
    }
    if (ei_decode_version(buf, &idx, &version) < 0 ||
        decode_tag(buf, &idx, tag, &arity) < 0)
        goto bad;
    o = owner_index(r, from);
    if (o < 0) {
        r->stats.stale_msgs++;
        return;
    }
    if (strcmp(tag, "reg_add") == 0 && arity == 5) {
        w = malloc(sizeof *w);
        if (w == NULL)
            return;
        if (decode_entry(buf, &idx, w) < 0)
            goto bad;
        apply_add(r, from, o, w);
        free(w);
        return;
    }
    if (strcmp(tag, "reg_del") == 0 && arity == 3) {
        uint8_t name[TETHER_REG_NAME_MAX];
        size_t nlen;
        entry_t *e;
        if (tether__etf_decode_u64(buf, &idx, &a) < 0 ||
            decode_bytes(buf, &idx, name, sizeof name, &nlen) < 0)
            goto bad;
        e = find(r, name, nlen, name_hash(name, nlen));
        if (e != NULL && e->owner == (uint32_t)o && e->stamp == a)
            remove_entry(r, e);
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
    free(w);
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
    const char *mem[TETHER_MEMBERS_MAX];
    const char *self;
    int si;
    size_t n;

    (void)node;
    if (now_ms < r->next_digest)
        return;
    r->next_digest = now_ms + r->cfg.digest_ms;
    if (tether_engine_has_left(r->eng) || (si = self_index(r)) < 0)
        return;
    self = tether_engine_name(r->eng);
    n = tether_engine_members(r->eng, mem, TETHER_MEMBERS_MAX);
    if (n > TETHER_MEMBERS_MAX)
        n = TETHER_MEMBERS_MAX;
    for (size_t i = 0; i < n; i++) {
        char peer[TETHER_NODE_NAME_MAX + 1];
        if (strcmp(mem[i], self) == 0)
            continue;
        memcpy(peer, mem[i], strlen(mem[i]) + 1);
        send_counts(r, peer, "reg_digest", r->owners[si].count,
                    r->owners[si].hash, 1);
    }
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
    free(r->buckets);
    free(r->owners);
    free(r);
}

int tether_registry_register(tether_registry_t *r, const uint8_t *name,
                             size_t nlen, const uint8_t *pid, size_t plen,
                             int method, uint64_t wall_ms)
{
    uint64_t h, stamp;
    int self, rc;

    if (r == NULL || name == NULL || pid == NULL || nlen == 0 ||
        nlen > TETHER_REG_NAME_MAX || plen == 0 || plen > TETHER_REG_PID_MAX ||
        method < 0 || method > TETHER_REG_METHOD_MAX ||
        tether_engine_has_left(r->eng))
        return TETHER_EINVAL;
    h = name_hash(name, nlen);
    if (find(r, name, nlen, h) != NULL)
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
    broadcast_add(r, find(r, name, nlen, h));
    return 0;
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

    if (r == NULL || name == NULL || nlen == 0 || nlen > TETHER_REG_NAME_MAX)
        return TETHER_ENOTFOUND;
    e = find(r, name, nlen, name_hash(name, nlen));
    if (e == NULL || e->owner != (uint32_t)self_index(r))
        return TETHER_ENOTFOUND;
    stamp = e->stamp;
    broadcast_del(r, e->name, e->nlen, stamp);
    remove_entry(r, e);
    return 0;
}

int tether_registry_whereis(const tether_registry_t *r, const uint8_t *name,
                            size_t nlen, uint8_t *pid, size_t cap, size_t *plen)
{
    const entry_t *e;

    if (r == NULL || name == NULL)
        return TETHER_ENOTFOUND;
    e = find(r, name, nlen, name_hash(name, nlen));
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
    e = find(r, name, nlen, name_hash(name, nlen));
    if (e == NULL || e->data == NULL)
        return TETHER_ENOTFOUND;
    *data = e->data;
    return 0;
}

int tether_registry_owner(const tether_registry_t *r, const uint8_t *name,
                          size_t nlen, char owner[TETHER_NODE_NAME_MAX + 1])
{
    const entry_t *e = find(r, name, nlen, name_hash(name, nlen));

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
