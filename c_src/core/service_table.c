/*
 * core/service_table.c: the cluster service table (see service_table.h),
 * an owner table (core/owner_table.h) whose entries are instances: key =
 * NameEtf, val = PidEtf, meta = MetaEtf. What is the service table's own:
 * the shape check of a peer's instance and the TETHER_ACT_SERVICE events.
 */
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "core/owner_table.h"
#include "core/service_table.h"

typedef tether_otab_entry_t inst_t;

struct tether_svctab {
    tether_engine_t *eng;
    tether_otab_t *t;
    tether_svctab_stats_t view; /* as tether_svctab_stats() last made it */
};

/* ---------------------------------------------------------- validation */

/* 1 if b[0..len) is one term in external format. */
static int is_term(const uint8_t *b, size_t len)
{
    return len >= 2 && tether__etf_validate((const char *)b, len) == 0;
}

/* 1 if b[0..len) is one pid in external format. */
static int is_pid(const uint8_t *b, size_t len)
{
    return is_term(b, len) && (b[1] == ERL_NEW_PID_EXT || b[1] == ERL_PID_EXT);
}

/* Checks an instance's sizes and shapes. Returns 0, TETHER_ETOOBIG (a
 * size above its bound) or TETHER_EINVAL (empty or malformed). */
static int check_instance(const uint8_t *name, size_t nlen, const uint8_t *pid,
                          size_t plen, const uint8_t *meta, size_t mlen)
{
    if (nlen > TETHER_SVC_NAME_MAX || plen > TETHER_SVC_PID_MAX ||
        mlen > TETHER_SVC_META_MAX)
        return TETHER_ETOOBIG;
    if (name == NULL || pid == NULL || meta == NULL || !is_term(name, nlen) ||
        !is_pid(pid, plen) || !is_term(meta, mlen))
        return TETHER_EINVAL;
    return 0;
}

/* ------------------------------------------------------------- hooks */

static int check(void *ctx, const inst_t *w)
{
    (void)ctx;
    return check_instance(w->key, w->klen, w->val, w->vlen, w->meta, w->mlen) <
                   0
               ? TETHER_EPROTO
               : 0;
}

/* Tells the shell that an instance came, changed or went. */
static void changed(void *ctx, const inst_t *e, int what)
{
    tether_svctab_t *s = ctx;
    tether_action_t a = {.kind = TETHER_ACT_SERVICE};
    const char *owner = tether__otab_owner_name(s->t, e->owner);

    memcpy(a.peer, owner, strlen(owner) + 1);
    a.u.service.up = what != TETHER_OTAB_REMOVED;
    a.u.service.name = (tether_bytes_t){e->key, e->klen};
    /* Out of memory loses the event, not the change. */
    (void)tether__engine_push(s->eng, &a);
}

static void svctab_free(void *ctx)
{
    free(ctx);
}

/* ----------------------------------------------------------------- API */

void tether_svctab_config_default(tether_svctab_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->digest_ms = TETHER_SVC_DEFAULT_DIGEST;
}

int tether_svctab_new(const tether_svctab_config_t *cfg, tether_engine_t *eng,
                      tether_svctab_t **out)
{
    tether_otab_config_t oc = {
        .type = TETHER_MSG_SERVICE,
        .prefix = "svc",
        .name = "service",
        .key_max = TETHER_SVC_NAME_MAX,
        .val_max = TETHER_SVC_PID_MAX,
        .meta_max = TETHER_SVC_META_MAX,
        .entries_max = TETHER_SVC_ENTRIES_MAX,
        .own_max = TETHER_SVC_OWN_MAX,
        .own_bytes_max = TETHER_SVC_OWN_BYTES_MAX,
        .check = check,
        .changed = changed,
        .free = svctab_free,
    };
    tether_svctab_t *s;
    int rc;

    if (cfg == NULL || eng == NULL || out == NULL ||
        (cfg->wlock == NULL) != (cfg->wunlock == NULL))
        return TETHER_EINVAL;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return TETHER_ENOMEM;
    s->eng = eng;
    oc.digest_ms = cfg->digest_ms;
    oc.mctx = s;
    oc.wlock = cfg->wlock;
    oc.wunlock = cfg->wunlock;
    oc.lock_ctx = cfg->lock_ctx;
    rc = tether__otab_new(&oc, eng, &s->t);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int tether_svctab_register(tether_svctab_t *s, const uint8_t *name, size_t nlen,
                           const uint8_t *pid, size_t plen, const uint8_t *meta,
                           size_t mlen)
{
    tether_otab_write_t w = {name, pid, meta, nlen, plen, mlen, 0};
    int rc;

    if (s == NULL || tether_engine_has_left(s->eng))
        return TETHER_EINVAL;
    rc = check_instance(name, nlen, pid, plen, meta, mlen);
    if (rc < 0)
        return rc;
    return tether__otab_put(s->t, &w, NULL, NULL);
}

int tether_svctab_unregister(tether_svctab_t *s, const uint8_t *name,
                             size_t nlen)
{
    inst_t *in;

    if (s == NULL || name == NULL || nlen == 0 || nlen > TETHER_SVC_NAME_MAX)
        return TETHER_ENOTFOUND;
    in = tether__otab_find(s->t, name, nlen, tether__otab_self(s->t));
    if (in == NULL)
        return TETHER_ENOTFOUND;
    tether__otab_del(s->t, in);
    return 0;
}

static void visit_inst(const tether_svctab_t *s, const inst_t *in,
                       tether_svctab_visit_t visit, void *ctx)
{
    visit(ctx, in->key, in->klen, tether__otab_owner_name(s->t, in->owner),
          in->val, in->vlen, in->meta, in->mlen);
}

size_t tether_svctab_lookup(const tether_svctab_t *s, const uint8_t *name,
                            size_t nlen, tether_svctab_visit_t visit, void *ctx)
{
    size_t n = 0;

    if (s == NULL || name == NULL)
        return 0;
    for (const inst_t *in = tether__otab_first(s->t, name, nlen); in != NULL;
         in = tether__otab_next(s->t, in), n++)
        if (visit != NULL)
            visit_inst(s, in, visit, ctx);
    return n;
}

int tether_svctab_local(const tether_svctab_t *s, const uint8_t *name,
                        size_t nlen, tether_svctab_visit_t visit, void *ctx)
{
    const inst_t *in;

    if (s == NULL || name == NULL)
        return TETHER_ENOTFOUND;
    in = tether__otab_find(s->t, name, nlen, tether__otab_self(s->t));
    if (in == NULL)
        return TETHER_ENOTFOUND;
    if (visit != NULL)
        visit_inst(s, in, visit, ctx);
    return 0;
}

typedef struct visit_ctx {
    const tether_svctab_t *s;
    tether_svctab_visit_t visit;
    tether_svctab_name_visit_t name_visit;
    void *ctx;
} visit_ctx_t;

static void each_inst(void *ctx, const inst_t *in)
{
    visit_ctx_t *v = ctx;

    visit_inst(v->s, in, v->visit, v->ctx);
}

void tether_svctab_foreach(const tether_svctab_t *s,
                           tether_svctab_visit_t visit, void *ctx)
{
    visit_ctx_t v = {s, visit, NULL, ctx};

    tether__otab_foreach(s->t, each_inst, &v);
}

/* Each name once: at its first entry in the chain. */
static void each_name(void *ctx, const inst_t *in)
{
    visit_ctx_t *v = ctx;

    if (tether__otab_first(v->s->t, in->key, in->klen) != in)
        return;
    v->name_visit(v->ctx, in->key, in->klen,
                  tether_svctab_lookup(v->s, in->key, in->klen, NULL, NULL));
}

void tether_svctab_names(const tether_svctab_t *s,
                         tether_svctab_name_visit_t visit, void *ctx)
{
    visit_ctx_t v = {s, NULL, visit, ctx};

    tether__otab_foreach(s->t, each_name, &v);
}

size_t tether_svctab_count(const tether_svctab_t *s)
{
    return tether__otab_count(s->t);
}

uint64_t tether_svctab_digest(const tether_svctab_t *s)
{
    return tether__otab_digest(s->t);
}

const tether_svctab_stats_t *tether_svctab_stats(const tether_svctab_t *s)
{
    /* Refreshed from the table's counters (s is not a const object). */
    tether_svctab_stats_t *v = (tether_svctab_stats_t *)&s->view;
    const tether_otab_stats_t *o = tether__otab_stats(s->t);

    v->added = o->added;
    v->removed = o->removed;
    v->replaced = o->replaced;
    v->syncs_sent = o->syncs_sent;
    v->syncs_recv = o->syncs_recv;
    v->pulls_sent = o->pulls_sent;
    v->bad_msgs = o->bad_msgs;
    v->stale_msgs = o->stale_msgs;
    v->dropped = o->dropped;
    return v;
}
