/*
 * core/registry.c: the cluster name registry (see registry.h), an owner
 * table (core/owner_table.h) with the registry's semantics on top: which
 * of a name's entries is visible, who loses a conflict, who resolves it,
 * and the verdicts (reg_yield) a resolver sends until they are carried out.
 *
 * Entry fields: key = NameEtf, val = PidEtf, flags = Method, scratch =
 * the rival our shell was last asked to resolve against (0: none).
 */
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "core/owner_table.h"
#include "core/registry.h"

typedef tether_otab_entry_t entry_t;

/* A rival entry a resolver verdict of ours removed: reg_yield is sent to
 * its owner until the entry is gone (a lost message costs a round). */
typedef struct yield {
    uint32_t owner;     /* the rival's owner (owner index) */
    uint64_t stamp;     /* the rival's stamp */
    uint64_t own_stamp; /* our entry the verdict kept; 0: none kept */
    uint8_t *name;
    size_t nlen;
    uint8_t *kept; /* the kept pid's ETF (none: NULL) */
    size_t klen;
} yield_t;

struct tether_registry {
    tether_registry_config_t cfg;
    tether_engine_t *eng;
    tether_otab_t *t;
    yield_t *yields; /* verdicts not yet carried out by rivals' owners */
    size_t nyields, capyields;
    tether_registry_stats_t stats; /* conflicts, lost, resolves_asked */
    tether_registry_stats_t view;  /* the whole, as tether_registry_stats() */
};

/* ---------------------------------------------------------- visibility */

/* 1 if (sa, oa) registered before (sb, ob). */
static int earlier(uint64_t sa, const char *oa, uint64_t sb, const char *ob)
{
    return sa < sb || (sa == sb && strcmp(oa, ob) < 0);
}

static int entry_before(const tether_registry_t *r, const entry_t *a,
                        const entry_t *b)
{
    return earlier(a->stamp, tether__otab_owner_name(r->t, a->owner), b->stamp,
                   tether__otab_owner_name(r->t, b->owner));
}

/* The visible entry of name: the earliest of its owners' entries (HLC
 * stamp, then owner name), or NULL. */
static entry_t *find_visible(const tether_registry_t *r, const uint8_t *name,
                             size_t nlen)
{
    entry_t *v = NULL;

    for (entry_t *e = tether__otab_first(r->t, name, nlen); e != NULL;
         e = tether__otab_next(r->t, e))
        if (v == NULL || entry_before(r, e, v))
            v = e;
    return v;
}

static entry_t *find_own(const tether_registry_t *r, const uint8_t *name,
                         size_t nlen)
{
    return tether__otab_find(r->t, name, nlen, tether__otab_self(r->t));
}

/* 1 if name has an entry of an owner other than o. */
static int has_rival(const tether_registry_t *r, const uint8_t *name,
                     size_t nlen, uint32_t o)
{
    for (entry_t *e = tether__otab_first(r->t, name, nlen); e != NULL;
         e = tether__otab_next(r->t, e))
        if (e->owner != o)
            return 1;
    return 0;
}

/* ------------------------------------------------------------- verdicts */

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
        tether__otab_send(r->t, tether__otab_owner_name(r->t, y->owner), &x, 0);
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
                 .name = (uint8_t *)e->key,
                 .nlen = e->klen,
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
    y.name = malloc(e->klen);
    y.kept = klen ? malloc(klen) : NULL;
    if (y.name == NULL || (klen && y.kept == NULL)) {
        free_yield(&y);
        return;
    }
    memcpy(y.name, e->key, e->klen);
    if (klen)
        memcpy(y.kept, kept, klen);
    r->yields[r->nyields++] = y;
}

/* Repeats every verdict whose rival entry is still held (and whose kept
 * entry of ours, if any, still stands); forgets the others. A forgotten
 * verdict also clears our entry's record of having asked about that
 * rival: a rival dropped with its node across a partition comes back
 * with the same stamp at the heal, and must be resolved again (else the
 * conflict would never be settled). */
static void resend_yields(tether_registry_t *r)
{
    size_t k = 0;

    for (size_t i = 0; i < r->nyields; i++) {
        yield_t *y = &r->yields[i];
        entry_t *rival = tether__otab_find(r->t, y->name, y->nlen, y->owner);
        entry_t *own = find_own(r, y->name, y->nlen);
        if (rival != NULL && rival->stamp == y->stamp &&
            (y->own_stamp == 0 ||
             (own != NULL && own->stamp == y->own_stamp))) {
            send_yield(r, y);
            r->yields[k++] = *y;
        } else {
            if (own != NULL)
                own->scratch = 0;
            free_yield(y);
        }
    }
    r->nyields = k;
}

/* ------------------------------------------------------------ conflicts */

static tether_bytes_t bytes(const uint8_t *p, size_t len)
{
    return (tether_bytes_t){p, len};
}

/* Our entry s lost a conflict with no resolver involved: tell our shell,
 * remove it and broadcast the removal. wpid (wplen 0: none) was kept. */
static void lose(tether_registry_t *r, entry_t *s, const uint8_t *wpid,
                 size_t wplen)
{
    tether_action_t a = {.kind = TETHER_ACT_REG_LOST};

    r->stats.lost++;
    a.u.reg_lost.name = bytes(s->key, s->klen);
    a.u.reg_lost.loser = bytes(s->val, s->vlen);
    a.u.reg_lost.winner = bytes(wpid, wplen);
    a.u.reg_lost.method = (int)s->flags;
    /* Out of memory loses the notice, not the removal. */
    (void)tether__engine_push(r->eng, &a);
    tether__otab_del(r->t, s);
}

/* Asks our shell to run the resolver of our entry `own` on the conflict
 * between w (the earlier registration) and l, once per rival. */
static void ask(tether_registry_t *r, entry_t *own, const entry_t *w,
                const entry_t *l)
{
    const entry_t *rival = own == w ? l : w;
    const char *ro = tether__otab_owner_name(r->t, rival->owner);
    tether_action_t a = {.kind = TETHER_ACT_REG_RESOLVE};
    uint8_t st[8];
    uint64_t key;

    for (int i = 0; i < 8; i++)
        st[i] = (uint8_t)(rival->stamp >> (8 * i));
    key = tether__fnv1a(tether__fnv1a(TETHER_FNV_OFFSET, ro, strlen(ro)), st,
                        sizeof st) |
          1;
    if (own->scratch == key)
        return;
    r->stats.resolves_asked++;
    a.u.reg_resolve.name = bytes(own->key, own->klen);
    a.u.reg_resolve.winner = bytes(w->val, w->vlen);
    a.u.reg_resolve.loser = bytes(l->val, l->vlen);
    /* Out of memory: asked again next time. */
    if (tether__engine_push(r->eng, &a) == 0)
        own->scratch = key;
}

/*
 * Applies the conflict rule (registry.h) to our own entry of a name after
 * the entries held for it changed: with no resolver involved our entry,
 * if it is not the visible one, loses; with one, the node whose resolver
 * decides asks its shell, and every other node waits for its verdict.
 */
static void settle(void *ctx, const uint8_t *name, size_t nlen)
{
    tether_registry_t *r = ctx;
    entry_t *v = find_visible(r, name, nlen), *s = find_own(r, name, nlen);
    entry_t *next = NULL;

    if (v == NULL || s == NULL)
        return;
    if (s != v) {
        if (v->flags != TETHER_REG_RESOLVE && s->flags != TETHER_REG_RESOLVE)
            lose(r, s, v->val, v->vlen);
        else if (v->flags != TETHER_REG_RESOLVE)
            ask(r, s, v, s); /* only ours has a resolver: we decide */
        return;              /* else the visible entry's owner decides */
    }
    if (s->flags != TETHER_REG_RESOLVE)
        return; /* the rivals' owners lose or ask */
    /* Ours is visible and has the resolver: the earliest rival first. */
    for (entry_t *e = tether__otab_first(r->t, name, nlen); e != NULL;
         e = tether__otab_next(r->t, e))
        if (e != s && (next == NULL || entry_before(r, e, next)))
            next = e;
    if (next != NULL)
        ask(r, s, s, next);
}

/* Collects our own entries that have a rival (settle_all's first pass). */
typedef struct rivals {
    const tether_registry_t *r;
    uint8_t **names;
    size_t *lens;
    size_t n, cap;
} rivals_t;

static void collect_rival(void *ctx, const entry_t *e)
{
    rivals_t *c = ctx;
    uint8_t *copy;

    if (e->owner != tether__otab_self(c->r->t) ||
        !has_rival(c->r, e->key, e->klen, e->owner))
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        uint8_t **nv = realloc(c->names, cap * sizeof *nv);
        size_t *lv;
        if (nv == NULL)
            return;
        c->names = nv;
        lv = realloc(c->lens, cap * sizeof *lv);
        if (lv == NULL)
            return;
        c->lens = lv;
        c->cap = cap;
    }
    copy = malloc(e->klen);
    if (copy == NULL)
        return;
    memcpy(copy, e->key, e->klen);
    c->names[c->n] = copy;
    c->lens[c->n++] = e->klen;
}

/* Settles every name where we hold an entry and so does someone else.
 * Run every digest period: a rival removed by a sync or with its node
 * leaves the next pair of a three-way conflict to settle. */
static void settle_all(tether_registry_t *r)
{
    rivals_t c = {.r = r};

    tether__otab_foreach(r->t, collect_rival, &c);
    for (size_t i = 0; i < c.n; i++) {
        settle(r, c.names[i], c.lens[i]);
        free(c.names[i]);
    }
    free(c.names);
    free(c.lens);
}

/* ------------------------------------------------------------ handling */

/* A peer's entry: Method must be one we know. */
static int check(void *ctx, const entry_t *w)
{
    (void)ctx;
    return w->flags > TETHER_REG_METHOD_MAX || w->vlen > TETHER_REG_PID_MAX
               ? TETHER_EPROTO
               : 0;
}

static void changed(void *ctx, const entry_t *e, int what)
{
    tether_registry_t *r = ctx;

    if (what == TETHER_OTAB_ADDED && e->owner != tether__otab_self(r->t) &&
        has_rival(r, e->key, e->klen, e->owner))
        r->stats.conflicts++;
}

/* {reg_yield, Stamp, NameEtf, KeptPidEtf | <<>>}: a resolver's verdict
 * removed our entry (name, Stamp). Any member may send it (members are
 * trusted as they are with their own stamps); an entry that is not ours
 * or has another stamp (a new registration) is left alone. */
static int message(void *ctx, const char *from, uint32_t o, const char *tag,
                   int arity, const char *buf, int idx)
{
    tether_registry_t *r = ctx;
    const uint8_t *name, *kept;
    size_t nlen, klen;
    uint64_t stamp;
    entry_t *e;

    (void)from;
    (void)o;
    if (strcmp(tag, "reg_yield") != 0 || arity != 4 ||
        tether__etf_decode_u64(buf, &idx, &stamp) < 0 ||
        tether__etf_decode_bin_ref(buf, &idx, &name, &nlen) < 0 || nlen == 0 ||
        nlen > TETHER_REG_NAME_MAX ||
        tether__etf_decode_bin_ref(buf, &idx, &kept, &klen) < 0 ||
        klen > TETHER_REG_PID_MAX)
        return TETHER_EPROTO;
    e = find_own(r, name, nlen);
    if (e != NULL && e->stamp == stamp)
        lose(r, e, kept, klen);
    else
        r->stats.stale_msgs++;
    return 0;
}

static void round_tick(void *ctx, uint64_t now_ms)
{
    tether_registry_t *r = ctx;

    (void)now_ms;
    settle_all(r);
    if (r->nyields > 0)
        resend_yields(r);
}

static void registry_free(void *ctx)
{
    tether_registry_t *r = ctx;

    for (size_t i = 0; i < r->nyields; i++)
        free_yield(&r->yields[i]);
    free(r->yields);
    free(r);
}

/* The shell's data of an entry, from its pid (registry.h's pid_attach). */
static void *attach(void *ctx, const entry_t *e)
{
    tether_registry_t *r = ctx;

    return r->cfg.pid_attach(r->cfg.shell_ctx, e->val, e->vlen);
}

static void detach(void *ctx, void *data)
{
    tether_registry_t *r = ctx;

    r->cfg.pid_detach(r->cfg.shell_ctx, data);
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
    tether_otab_config_t oc = {
        .type = TETHER_MSG_REGISTRY,
        .prefix = "reg",
        .name = "registry",
        .key_max = TETHER_REG_NAME_MAX,
        .val_max = TETHER_REG_PID_MAX,
        .meta_max = 0,
        .entries_max = TETHER_REG_ENTRIES_MAX,
        .value_index = 1,
        .check = check,
        .changed = changed,
        .settle = settle,
        .message = message,
        .round = round_tick,
        .free = registry_free,
    };
    tether_registry_t *r;
    int rc;

    if (cfg == NULL || eng == NULL || out == NULL ||
        (cfg->wlock == NULL) != (cfg->wunlock == NULL) ||
        (cfg->pid_attach == NULL) != (cfg->pid_detach == NULL))
        return TETHER_EINVAL;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return TETHER_ENOMEM;
    r->cfg = *cfg;
    r->eng = eng;
    oc.digest_ms = cfg->digest_ms;
    oc.mctx = r;
    oc.wlock = cfg->wlock;
    oc.wunlock = cfg->wunlock;
    oc.lock_ctx = cfg->lock_ctx;
    if (cfg->pid_attach != NULL) {
        oc.attach = attach;
        oc.detach = detach;
        oc.shell_ctx = r;
    }
    rc = tether__otab_new(&oc, eng, &r->t);
    if (rc < 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Registers name -> pid as ours and broadcasts it (see the two public
 * callers). */
static int do_register(tether_registry_t *r, const uint8_t *name, size_t nlen,
                       const uint8_t *pid, size_t plen, int method,
                       uint64_t wall_ms, tether_registry_sealed_t sealed,
                       void *ctx)
{
    tether_otab_write_t w = {name, pid, NULL, nlen, plen, 0, 0};

    if (r == NULL || name == NULL || pid == NULL || nlen == 0 ||
        nlen > TETHER_REG_NAME_MAX || plen == 0 || plen > TETHER_REG_PID_MAX ||
        method < 0 || method > TETHER_REG_METHOD_MAX ||
        tether_engine_has_left(r->eng))
        return TETHER_EINVAL;
    if (tether__otab_first(r->t, name, nlen) != NULL ||
        tether__otab_find_own_value(r->t, pid, plen) != NULL)
        return TETHER_EEXIST;
    w.flags = (uint32_t)method;
    tether_engine_set_wall(r->eng, wall_ms);
    return tether__otab_put(r->t, &w, sealed, ctx);
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

int tether_registry_unregister(tether_registry_t *r, const uint8_t *name,
                               size_t nlen)
{
    entry_t *e;

    if (r == NULL || name == NULL || nlen == 0 || nlen > TETHER_REG_NAME_MAX)
        return TETHER_ENOTFOUND;
    e = find_own(r, name, nlen);
    if (e == NULL)
        return TETHER_ENOTFOUND;
    tether__otab_del(r->t, e);
    return 0;
}

int tether_registry_holds(const tether_registry_t *r, const uint8_t *name,
                          size_t nlen, const uint8_t *pid, size_t plen)
{
    const entry_t *e;

    if (r == NULL || name == NULL || pid == NULL || nlen == 0 ||
        nlen > TETHER_REG_NAME_MAX)
        return 0;
    e = find_own(r, name, nlen);
    return e != NULL && e->vlen == plen && memcmp(e->val, pid, plen) == 0;
}

int tether_registry_unregister_pid(tether_registry_t *r, const uint8_t *name,
                                   size_t nlen, const uint8_t *pid, size_t plen)
{
    if (!tether_registry_holds(r, name, nlen, pid, plen))
        return TETHER_ENOTFOUND;
    return tether_registry_unregister(r, name, nlen);
}

int tether_registry_resolve(tether_registry_t *r, const uint8_t *name,
                            size_t nlen, const uint8_t *keep, size_t klen)
{
    entry_t *s, *kept = NULL;
    int moot = 0;

    if (r == NULL || name == NULL || nlen == 0 || nlen > TETHER_REG_NAME_MAX ||
        (keep == NULL) != (klen == 0))
        return TETHER_EINVAL;
    s = find_own(r, name, nlen);
    if (s == NULL)
        return TETHER_ENOTFOUND;
    for (entry_t *e = tether__otab_first(r->t, name, nlen); keep && e;
         e = tether__otab_next(r->t, e))
        if (e->vlen == klen && memcmp(e->val, keep, klen) == 0)
            kept = e;
    if (keep != NULL && kept == NULL) {
        /* The pid the resolver kept lost its entry meanwhile (unregistered,
         * dead, its node gone): nothing can keep the name but ours. */
        kept = s;
        keep = s->val;
        klen = s->vlen;
        moot = 1;
    }
    for (entry_t *e = tether__otab_first(r->t, name, nlen); e != NULL;
         e = tether__otab_next(r->t, e))
        if (e != s && e != kept)
            add_yield(r, e, kept == s ? s->stamp : 0, keep, klen);
    if (kept != s)
        tether__otab_del(r->t, s);
    return moot;
}

int tether_registry_whereis(const tether_registry_t *r, const uint8_t *name,
                            size_t nlen, uint8_t *pid, size_t cap, size_t *plen)
{
    const entry_t *e;

    if (r == NULL || name == NULL)
        return TETHER_ENOTFOUND;
    e = find_visible(r, name, nlen);
    if (e == NULL)
        return TETHER_ENOTFOUND;
    if (e->vlen > cap)
        return TETHER_ETOOBIG;
    memcpy(pid, e->val, e->vlen);
    *plen = e->vlen;
    return 0;
}

int tether_registry_whereis_data(const tether_registry_t *r,
                                 const uint8_t *name, size_t nlen, void **data)
{
    const entry_t *e;

    if (r == NULL || name == NULL)
        return TETHER_ENOTFOUND;
    e = find_visible(r, name, nlen);
    if (e == NULL || e->data == NULL)
        return TETHER_ENOTFOUND;
    *data = e->data;
    return 0;
}

int tether_registry_owner(const tether_registry_t *r, const uint8_t *name,
                          size_t nlen, char owner[TETHER_NODE_NAME_MAX + 1])
{
    const entry_t *e = find_visible(r, name, nlen);
    const char *o;

    owner[0] = '\0';
    if (e == NULL)
        return TETHER_ENOTFOUND;
    o = tether__otab_owner_name(r->t, e->owner);
    memcpy(owner, o, strlen(o) + 1);
    return 0;
}

size_t tether_registry_count(const tether_registry_t *r)
{
    return tether__otab_count(r->t);
}

typedef struct visit_ctx {
    const tether_registry_t *r;
    tether_registry_visit_t visit;
    void *ctx;
    int visible_only;
} visit_ctx_t;

static void visit_entry(void *ctx, const entry_t *e)
{
    visit_ctx_t *v = ctx;

    if (v->visible_only && find_visible(v->r, e->key, e->klen) != e)
        return;
    v->visit(v->ctx, e->key, e->klen, e->val, e->vlen,
             tether__otab_owner_name(v->r->t, e->owner), e->stamp,
             (int)e->flags);
}

void tether_registry_foreach(const tether_registry_t *r,
                             tether_registry_visit_t visit, void *ctx)
{
    visit_ctx_t v = {r, visit, ctx, 1};

    tether__otab_foreach(r->t, visit_entry, &v);
}

void tether_registry_foreach_held(const tether_registry_t *r,
                                  tether_registry_visit_t visit, void *ctx)
{
    visit_ctx_t v = {r, visit, ctx, 0};

    tether__otab_foreach(r->t, visit_entry, &v);
}

uint64_t tether_registry_digest(const tether_registry_t *r)
{
    return tether__otab_digest(r->t);
}

const tether_registry_stats_t *tether_registry_stats(const tether_registry_t *r)
{
    /* The view is refreshed on each call from the table's counters and
     * the registry's own (r is not a const object: see new()). */
    tether_registry_stats_t *v = (tether_registry_stats_t *)&r->view;
    const tether_otab_stats_t *o = tether__otab_stats(r->t);

    *v = r->stats;
    v->added = o->added;
    v->removed = o->removed;
    v->syncs_sent = o->syncs_sent;
    v->syncs_recv = o->syncs_recv;
    v->pulls_sent = o->pulls_sent;
    v->bad_msgs = o->bad_msgs;
    v->stale_msgs = o->stale_msgs + r->stats.stale_msgs;
    return v;
}
