/*
 * core/service.c: the cluster service table (see service.h).
 *
 * The table is a chained hash of service names; each name holds the list
 * of its instances, at most one per owner. Instances refer to their owner
 * by index into an owners array that also keeps, per owner, the version
 * of its set we hold and whether that version is known to be the
 * owner's. Owners are never removed from the array (a restarted node
 * reuses its slot), so indexes stay valid.
 *
 * Per-owner replica state (what we hold of a peer's set):
 *   UNKNOWN   known == 0: at first, after the owner went down, and from
 *             each new session with it on. Every add, del and digest of
 *             the owner pulls.
 *   KNOWN     known == 1, version V: set by a sync. add/del at V + 1 apply
 *             and move to V + 1; any other version, or a digest at another
 *             version, pulls (the instances held stay until the sync).
 * At most one pull per owner is out between two digest rounds.
 *
 * Messages arrive validated as one term (core/codec.h); their binaries are
 * read in place (pointers into the message), every size is checked against
 * its bound and every name, pid and meta must itself be one valid term.
 * A sync is read to its end before anything of it is applied, so a bad
 * one changes nothing.
 */
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "core/service.h"

#define SVC_BUCKETS_MIN 64

typedef struct inst {
    struct inst *next; /* the next instance of the same name */
    uint32_t owner;    /* index into owners */
    int mark;          /* scratch for svc_sync */
    size_t plen, mlen;
    uint8_t *pid, *meta; /* into data */
    uint8_t data[];
} inst_t;

typedef struct sname {
    struct sname *next; /* bucket chain */
    uint64_t h;         /* hash of the name */
    inst_t *insts;
    size_t ninst;
    size_t nlen;
    uint8_t name[];
} sname_t;

typedef struct owner {
    char name[TETHER_NODE_NAME_MAX + 1];
    uint64_t version; /* of the set held; ours: of our own set */
    int known;        /* version is the owner's (a sync arrived) */
    int pulling;      /* a pull is out since the last digest round */
    size_t count;     /* instances held */
    size_t bytes;     /* their name, pid and meta bytes */
} owner_t;

struct tether_svc {
    tether_svc_config_t cfg;
    tether_engine_t *eng;
    sname_t **buckets;
    size_t nb, nnames, n;
    owner_t *owners;
    size_t nown, capown;
    uint64_t next_digest;
    tether_svc_stats_t stats;
};

/* One instance as read from a message or given by the shell; the pointers
 * refer to the caller's bytes. */
typedef struct wire {
    const uint8_t *name, *pid, *meta;
    size_t nlen, plen, mlen;
} wire_t;

/* ------------------------------------------------------------ hashing */

static uint64_t name_hash(const uint8_t *name, size_t nlen)
{
    return tether__fnv1a(TETHER_FNV_OFFSET, name, nlen);
}

static uint64_t len_word(size_t n)
{
    return (uint64_t)n * UINT64_C(0x9e3779b97f4a7c15);
}

/* The hash of one instance, for table digests. */
static uint64_t inst_hash(const sname_t *sn, const inst_t *in,
                          const char *owner)
{
    uint64_t h = tether__fnv1a(TETHER_FNV_OFFSET, sn->name, sn->nlen);

    h = tether__fnv1a(h, owner, strlen(owner) + 1);
    h = tether__fnv1a(h, in->pid, in->plen);
    h = tether__fnv1a(h, in->meta, in->mlen);
    return h ^ len_word(sn->nlen) ^ len_word(in->plen) << 1 ^
           len_word(in->mlen) << 2;
}

/* ------------------------------------------------------------- locking */

static void wlock(tether_svc_t *t)
{
    if (t->cfg.wlock)
        t->cfg.wlock(t->cfg.lock_ctx);
}

static void wunlock(tether_svc_t *t)
{
    if (t->cfg.wunlock)
        t->cfg.wunlock(t->cfg.lock_ctx);
}

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
static int check_wire(const wire_t *w)
{
    if (w->nlen > TETHER_SVC_NAME_MAX || w->plen > TETHER_SVC_PID_MAX ||
        w->mlen > TETHER_SVC_META_MAX)
        return TETHER_ETOOBIG;
    if (w->name == NULL || w->pid == NULL || w->meta == NULL ||
        !is_term(w->name, w->nlen) || !is_pid(w->pid, w->plen) ||
        !is_term(w->meta, w->mlen))
        return TETHER_EINVAL;
    return 0;
}

/* --------------------------------------------------------------- table */

static sname_t *find_name(const tether_svc_t *t, const uint8_t *name,
                          size_t nlen, uint64_t h)
{
    for (sname_t *s = t->buckets[h & (t->nb - 1)]; s != NULL; s = s->next)
        if (s->h == h && s->nlen == nlen && memcmp(s->name, name, nlen) == 0)
            return s;
    return NULL;
}

static inst_t *find_inst(const sname_t *sn, uint32_t o)
{
    for (inst_t *in = sn->insts; in != NULL; in = in->next)
        if (in->owner == o)
            return in;
    return NULL;
}

/* The index of owner `name` if it has a slot, else -1. */
static int owner_find(const tether_svc_t *t, const char *name)
{
    for (size_t i = 0; i < t->nown; i++)
        if (strcmp(t->owners[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The index of owner `name`, created if new. Returns -1 when full. */
static int owner_index(tether_svc_t *t, const char *name)
{
    int o = owner_find(t, name);

    if (o >= 0)
        return o;
    if (t->nown == TETHER_SVC_OWNERS_MAX)
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

static int self_index(tether_svc_t *t)
{
    return owner_index(t, tether_engine_name(t->eng));
}

/* Tells the event subscriber that owner's instance of name came or went. */
static void event(tether_svc_t *t, int up, const uint8_t *name, size_t nlen,
                  const char *owner)
{
    ei_x_buff x;

    if (t->cfg.event_sub == 0 || tether__etf_begin(&x, 4, "tether_service") < 0)
        return;
    if (ei_x_encode_atom(&x, up ? "up" : "down") == 0 &&
        ei_x_encode_binary(&x, name, (long)nlen) == 0 &&
        ei_x_encode_binary(&x, owner, (long)strlen(owner)) == 0) {
        int rc = tether_engine_deliver(
            t->eng, t->cfg.event_sub, (const uint8_t *)x.buff, (size_t)x.index);
        (void)rc; /* out of memory loses the event, not the change */
    }
    ei_x_free(&x);
}

/* Doubles the bucket array when the table is dense (under the lock). */
static void grow(tether_svc_t *t)
{
    size_t nb = t->nb * 2;
    sname_t **b;

    if (t->nnames < t->nb * 2)
        return;
    b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->nb; i++) {
        sname_t *s = t->buckets[i], *next;
        for (; s != NULL; s = next) {
            next = s->next;
            s->next = b[s->h & (nb - 1)];
            b[s->h & (nb - 1)] = s;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nb = nb;
}

static inst_t *inst_new(uint32_t o, const wire_t *w)
{
    inst_t *in = malloc(sizeof *in + w->plen + w->mlen);

    if (in == NULL)
        return NULL;
    in->next = NULL;
    in->owner = o;
    in->mark = 0;
    in->plen = w->plen;
    in->mlen = w->mlen;
    in->pid = in->data;
    in->meta = in->data + w->plen;
    memcpy(in->pid, w->pid, w->plen);
    memcpy(in->meta, w->meta, w->mlen);
    return in;
}

/*
 * Inserts or replaces owner o's instance of w->name (w checked). Returns 1
 * when the table changed, 0 when the same instance was there already (its
 * mark is cleared either way), TETHER_ETOOBIG (table full) or
 * TETHER_ENOMEM.
 */
static int upsert(tether_svc_t *t, uint32_t o, const wire_t *w)
{
    uint64_t h = name_hash(w->name, w->nlen);
    sname_t *sn = find_name(t, w->name, w->nlen, h), *fresh = NULL;
    inst_t **pp = NULL, *old = NULL, *in;

    if (sn != NULL)
        for (pp = &sn->insts; *pp != NULL; pp = &(*pp)->next)
            if ((*pp)->owner == o) {
                old = *pp;
                break;
            }
    if (old != NULL) {
        old->mark = 0;
        if (old->plen == w->plen && old->mlen == w->mlen &&
            memcmp(old->pid, w->pid, w->plen) == 0 &&
            memcmp(old->meta, w->meta, w->mlen) == 0)
            return 0;
    } else if (t->n >= TETHER_SVC_ENTRIES_MAX) {
        return TETHER_ETOOBIG;
    }
    in = inst_new(o, w);
    if (in == NULL)
        return TETHER_ENOMEM;
    if (sn == NULL) {
        fresh = malloc(sizeof *fresh + w->nlen);
        if (fresh == NULL) {
            free(in);
            return TETHER_ENOMEM;
        }
        fresh->h = h;
        fresh->insts = NULL;
        fresh->ninst = 0;
        fresh->nlen = w->nlen;
        memcpy(fresh->name, w->name, w->nlen);
        sn = fresh;
    }
    wlock(t);
    if (old != NULL) {
        in->next = old->next;
        *pp = in;
    } else {
        in->next = sn->insts;
        sn->insts = in;
        sn->ninst++;
        t->n++;
        if (fresh != NULL) {
            fresh->next = t->buckets[h & (t->nb - 1)];
            t->buckets[h & (t->nb - 1)] = fresh;
            t->nnames++;
            grow(t);
        }
    }
    wunlock(t);
    t->owners[o].bytes += w->plen + w->mlen + w->nlen;
    if (old != NULL) {
        t->owners[o].bytes -= old->plen + old->mlen + w->nlen;
        free(old); /* unlinked: no reader reaches it any more */
        t->stats.replaced++;
    } else {
        t->owners[o].count++;
        t->stats.added++;
    }
    event(t, 1, sn->name, sn->nlen, t->owners[o].name);
    return 1;
}

/* Unlinks and frees instance in of sn, and sn with its last instance. */
static void remove_inst(tether_svc_t *t, sname_t *sn, inst_t *in)
{
    inst_t **pp = &sn->insts;
    sname_t **sp = NULL;
    owner_t *ow = &t->owners[in->owner];

    while (*pp != in)
        pp = &(*pp)->next;
    if (sn->ninst == 1) {
        sp = &t->buckets[sn->h & (t->nb - 1)];
        while (*sp != sn)
            sp = &(*sp)->next;
    }
    wlock(t);
    *pp = in->next;
    sn->ninst--;
    t->n--;
    if (sp != NULL) {
        *sp = sn->next;
        t->nnames--;
    }
    wunlock(t);
    ow->count--;
    ow->bytes -= in->plen + in->mlen + sn->nlen;
    t->stats.removed++;
    event(t, 0, sn->name, sn->nlen, ow->name);
    free(in);
    if (sp != NULL)
        free(sn);
}

/* Removes every instance of owner o, or only the marked ones. */
static void remove_owned(tether_svc_t *t, uint32_t o, int marked_only)
{
    if (t->owners[o].count == 0)
        return;
    for (size_t i = 0; i < t->nb; i++) {
        sname_t *sn = t->buckets[i], *snext;
        for (; sn != NULL; sn = snext) {
            inst_t *in, *inext;
            snext = sn->next;
            /* When the last instance goes, sn goes too: inext is then
             * NULL and sn is not read again. */
            for (in = sn->insts; in != NULL; in = inext) {
                inext = in->next;
                if (in->owner == o && (!marked_only || in->mark))
                    remove_inst(t, sn, in);
            }
        }
    }
}

static void mark_owned(tether_svc_t *t, uint32_t o)
{
    for (size_t i = 0; i < t->nb; i++)
        for (sname_t *sn = t->buckets[i]; sn != NULL; sn = sn->next)
            for (inst_t *in = sn->insts; in != NULL; in = in->next)
                in->mark = in->owner == o;
}

/* ------------------------------------------------------------ encoding */

/* Sends x to `to`, or to every live member but us when to is NULL. */
static void send_x(tether_svc_t *t, const char *to, const ei_x_buff *x,
                   unsigned flags)
{
    const uint8_t *b = (const uint8_t *)x->buff;

    if (to != NULL)
        (void)tether_engine_send(t->eng, to, TETHER_MSG_SERVICE, b,
                                 (size_t)x->index, flags);
    else
        (void)tether_engine_broadcast(t->eng, TETHER_MSG_SERVICE, b,
                                      (size_t)x->index, flags);
}

static int x_wire(ei_x_buff *x, const uint8_t *name, size_t nlen,
                  const inst_t *in)
{
    if (ei_x_encode_binary(x, name, (long)nlen) < 0 ||
        ei_x_encode_binary(x, in->pid, (long)in->plen) < 0 ||
        ei_x_encode_binary(x, in->meta, (long)in->mlen) < 0)
        return TETHER_ENOMEM;
    return 0;
}

/* Broadcasts our instance of sn at our current version. */
static void broadcast_add(tether_svc_t *t, const sname_t *sn, const inst_t *in)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, 5, "svc_add") < 0)
        return;
    if (ei_x_encode_ulonglong(&x, t->owners[in->owner].version) == 0 &&
        x_wire(&x, sn->name, sn->nlen, in) == 0)
        send_x(t, NULL, &x, 0);
    ei_x_free(&x);
}

static void broadcast_del(tether_svc_t *t, uint64_t version,
                          const uint8_t *name, size_t nlen)
{
    ei_x_buff x;

    if (tether__etf_begin(&x, 3, "svc_del") < 0)
        return;
    if (ei_x_encode_ulonglong(&x, version) == 0 &&
        ei_x_encode_binary(&x, name, (long)nlen) == 0)
        send_x(t, NULL, &x, 0);
    ei_x_free(&x);
}

/* Sends our version and full set of own instances to peer. */
static void send_sync(tether_svc_t *t, const char *peer)
{
    int self = self_index(t);
    ei_x_buff x;
    int rc;

    if (self < 0 || tether__etf_begin(&x, 3, "svc_sync") < 0)
        return;
    rc = ei_x_encode_ulonglong(&x, t->owners[self].version) < 0 ? -1 : 0;
    if (rc == 0 && t->owners[self].count > 0)
        rc = ei_x_encode_list_header(&x, (long)t->owners[self].count);
    for (size_t i = 0; rc == 0 && i < t->nb; i++)
        for (sname_t *sn = t->buckets[i]; rc == 0 && sn != NULL; sn = sn->next)
            for (inst_t *in = sn->insts; rc == 0 && in != NULL; in = in->next) {
                if (in->owner != (uint32_t)self)
                    continue;
                if (ei_x_encode_tuple_header(&x, 3) < 0)
                    rc = TETHER_ENOMEM;
                else
                    rc = x_wire(&x, sn->name, sn->nlen, in);
            }
    if (rc == 0 && ei_x_encode_empty_list(&x) == 0) {
        t->stats.syncs_sent++;
        send_x(t, peer, &x, TETHER_SEND_STATE);
    }
    ei_x_free(&x);
}

/* Asks owner o for its sync, unless a pull is already out. */
static void pull(tether_svc_t *t, int o)
{
    ei_x_buff x;

    if (t->owners[o].pulling || tether__etf_begin(&x, 1, "svc_pull") < 0)
        return;
    t->owners[o].pulling = 1;
    t->stats.pulls_sent++;
    send_x(t, t->owners[o].name, &x, TETHER_SEND_STATE);
    ei_x_free(&x);
}

/* ------------------------------------------------------------ decoding */

/* Decodes NameEtf, PidEtf, MetaEtf (in place) and checks them. */
static int decode_wire(const char *buf, int *idx, wire_t *w)
{
    if (tether__etf_decode_bin_ref(buf, idx, &w->name, &w->nlen) < 0 ||
        tether__etf_decode_bin_ref(buf, idx, &w->pid, &w->plen) < 0 ||
        tether__etf_decode_bin_ref(buf, idx, &w->meta, &w->mlen) < 0 ||
        check_wire(w) < 0)
        return TETHER_EPROTO;
    return 0;
}

/* ----------------------------------------------------------- handling */

/* Applies one checked instance of owner o; a full table is counted. */
static void apply_add(tether_svc_t *t, int o, const wire_t *w)
{
    if (upsert(t, (uint32_t)o, w) < 0)
        t->stats.dropped++;
}

/* 1 if a versioned change of owner o may apply now; else pulls. */
static int in_order(tether_svc_t *t, int o, uint64_t version)
{
    owner_t *ow = &t->owners[o];

    if (ow->known && version == ow->version + 1)
        return 1;
    t->stats.gaps++;
    pull(t, o);
    return 0;
}

/* {svc_sync, Version, List} from owner o, idx at List. Returns 0 or
 * TETHER_EPROTO (nothing applied). */
static int handle_sync(tether_svc_t *t, int o, uint64_t version,
                       const char *buf, int idx)
{
    int count, start;
    wire_t w;

    if (tether__etf_list(buf, &idx, &count) < 0 || count > TETHER_SVC_OWN_MAX)
        return TETHER_EPROTO;
    start = idx;
    for (int k = 0; k < count; k++)
        if (tether__etf_expect_tuple(buf, &idx, 3) < 0 ||
            decode_wire(buf, &idx, &w) < 0)
            return TETHER_EPROTO;
    if (tether__etf_list_end(buf, &idx, count) < 0)
        return TETHER_EPROTO;
    /* Read to its end: now apply it, same walk. */
    mark_owned(t, (uint32_t)o);
    idx = start;
    for (int k = 0; k < count; k++) {
        if (tether__etf_expect_tuple(buf, &idx, 3) < 0 ||
            decode_wire(buf, &idx, &w) < 0)
            break; /* not reached: checked above */
        apply_add(t, o, &w);
    }
    remove_owned(t, (uint32_t)o, 1);
    t->owners[o].version = version;
    t->owners[o].known = 1;
    t->owners[o].pulling = 0;
    t->stats.syncs_recv++;
    return 0;
}

static void on_message(tether_engine_t *node, void *ctx, const char *from,
                       const char *buf, size_t len)
{
    tether_svc_t *t = ctx;
    char tag[TETHER_ETF_TAG_MAX];
    int idx = 0, arity, o;
    uint64_t v = 0;
    wire_t w;

    (void)node;
    (void)len;
    if (!tether_engine_is_member(t->eng, from) ||
        strcmp(from, tether_engine_name(t->eng)) == 0) {
        t->stats.stale_msgs++;
        return;
    }
    if (tether__etf_decode_head(buf, &idx, tag, &arity) < 0)
        goto bad;
    if (arity >= 2 && tether__etf_decode_u64(buf, &idx, &v) < 0)
        goto bad;
    o = owner_index(t, from);
    if (o < 0) {
        t->stats.stale_msgs++;
        return;
    }
    if (strcmp(tag, "svc_add") == 0 && arity == 5) {
        if (decode_wire(buf, &idx, &w) < 0)
            goto bad;
        if (in_order(t, o, v)) {
            apply_add(t, o, &w);
            t->owners[o].version = v;
        }
        return;
    }
    if (strcmp(tag, "svc_del") == 0 && arity == 3) {
        sname_t *sn;
        inst_t *in;
        if (tether__etf_decode_bin_ref(buf, &idx, &w.name, &w.nlen) < 0 ||
            w.nlen == 0 || w.nlen > TETHER_SVC_NAME_MAX)
            goto bad;
        if (!in_order(t, o, v))
            return;
        sn = find_name(t, w.name, w.nlen, name_hash(w.name, w.nlen));
        if (sn != NULL && (in = find_inst(sn, (uint32_t)o)) != NULL)
            remove_inst(t, sn, in);
        t->owners[o].version = v;
        return;
    }
    if (strcmp(tag, "svc_sync") == 0 && arity == 3) {
        if (handle_sync(t, o, v, buf, idx) < 0)
            goto bad;
        return;
    }
    if (strcmp(tag, "svc_digest") == 0 && arity == 2) {
        if (!t->owners[o].known || t->owners[o].version != v)
            pull(t, o);
        return;
    }
    if (strcmp(tag, "svc_pull") == 0 && arity == 1) {
        send_sync(t, from);
        return;
    }
bad:
    t->stats.bad_msgs++;
}

/* Forgets what we hold of peer's versions: its next messages pull. */
static void forget_version(tether_svc_t *t, int o)
{
    t->owners[o].known = 0;
    t->owners[o].pulling = 0;
    t->owners[o].version = 0;
}

static void on_member(tether_engine_t *node, void *ctx, const char *name,
                      int up)
{
    tether_svc_t *t = ctx;
    int o;

    (void)node;
    if (strcmp(name, tether_engine_name(t->eng)) == 0)
        return;
    if (up) {
        /* Both ways: the peer's own sync may have reached us before we
         * counted it a member, and been dropped as stale. */
        send_sync(t, name);
        o = owner_index(t, name);
        if (o >= 0) {
            forget_version(t, o);
            pull(t, o);
        }
        return;
    }
    o = owner_find(t, name);
    if (o < 0)
        return;
    forget_version(t, o);
    remove_owned(t, (uint32_t)o, 0);
}

static void on_session_up(tether_engine_t *node, void *ctx, const char *peer)
{
    tether_svc_t *t = ctx;
    int o;

    (void)node;
    /* A new session may be a restarted peer counting from zero again. */
    o = owner_find(t, peer);
    if (o >= 0)
        forget_version(t, o);
    if (tether_engine_is_member(t->eng, peer))
        send_sync(t, peer);
}

static void on_tick(tether_engine_t *node, void *ctx, uint64_t now_ms)
{
    tether_svc_t *t = ctx;
    ei_x_buff x;
    int si;

    (void)node;
    if (now_ms < t->next_digest)
        return;
    t->next_digest = now_ms + t->cfg.digest_ms;
    /* A pull lost on the way is asked again from this round on. */
    for (size_t i = 0; i < t->nown; i++)
        t->owners[i].pulling = 0;
    if (tether_engine_has_left(t->eng) || (si = self_index(t)) < 0)
        return;
    if (tether__etf_begin(&x, 2, "svc_digest") < 0)
        return;
    if (ei_x_encode_ulonglong(&x, t->owners[si].version) == 0)
        send_x(t, NULL, &x, TETHER_SEND_STATE);
    ei_x_free(&x);
}

static uint64_t next_deadline(tether_engine_t *node, void *ctx)
{
    tether_svc_t *t = ctx;

    (void)node;
    return t->next_digest;
}

/* ----------------------------------------------------------------- API */

void tether_svc_config_default(tether_svc_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->digest_ms = TETHER_SVC_DEFAULT_DIGEST;
}

int tether_svc_new(const tether_svc_config_t *cfg, tether_engine_t *eng,
                   tether_svc_t **out)
{
    tether_engine_module_t m = {
        .name = "service",
        .type = TETHER_MSG_SERVICE,
        .on_message = on_message,
        .on_session_up = on_session_up,
        .on_member = on_member,
        .on_tick = on_tick,
        .next_deadline = next_deadline,
    };
    tether_svc_t *t;
    int rc;

    if (cfg == NULL || eng == NULL || out == NULL ||
        (cfg->wlock == NULL) != (cfg->wunlock == NULL))
        return TETHER_EINVAL;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return TETHER_ENOMEM;
    t->cfg = *cfg;
    if (t->cfg.digest_ms == 0)
        t->cfg.digest_ms = TETHER_SVC_DEFAULT_DIGEST;
    t->eng = eng;
    t->nb = SVC_BUCKETS_MIN;
    t->buckets = calloc(t->nb, sizeof *t->buckets);
    if (t->buckets == NULL) {
        rc = TETHER_ENOMEM;
        goto fail;
    }
    if (self_index(t) < 0) {
        rc = TETHER_ENOMEM;
        goto fail;
    }
    t->owners[0].known = 1; /* our own version is always known */
    rc = tether_engine_register_module(eng, &m, t);
    if (rc < 0)
        goto fail;
    *out = t;
    return 0;
fail:
    tether_svc_free(t);
    return rc;
}

void tether_svc_free(tether_svc_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; t->buckets != NULL && i < t->nb; i++) {
        sname_t *sn = t->buckets[i], *snext;
        for (; sn != NULL; sn = snext) {
            inst_t *in = sn->insts, *inext;
            snext = sn->next;
            for (; in != NULL; in = inext) {
                inext = in->next;
                free(in);
            }
            free(sn);
        }
    }
    free(t->buckets);
    free(t->owners);
    free(t);
}

int tether_svc_register(tether_svc_t *t, const uint8_t *name, size_t nlen,
                        const uint8_t *pid, size_t plen, const uint8_t *meta,
                        size_t mlen)
{
    wire_t w = {name, pid, meta, nlen, plen, mlen};
    sname_t *sn;
    inst_t *old;
    size_t oldbytes = 0;
    int self, rc;

    if (t == NULL || tether_engine_has_left(t->eng))
        return TETHER_EINVAL;
    rc = check_wire(&w);
    if (rc < 0)
        return rc;
    if ((self = self_index(t)) < 0)
        return TETHER_ENOMEM;
    sn = find_name(t, name, nlen, name_hash(name, nlen));
    old = sn != NULL ? find_inst(sn, (uint32_t)self) : NULL;
    if (old == NULL && t->owners[self].count >= TETHER_SVC_OWN_MAX)
        return TETHER_ETOOBIG;
    if (old != NULL)
        oldbytes = old->plen + old->mlen + nlen;
    if (t->owners[self].bytes - oldbytes + nlen + plen + mlen >
        TETHER_SVC_OWN_BYTES_MAX)
        return TETHER_ETOOBIG;
    rc = upsert(t, (uint32_t)self, &w);
    if (rc <= 0)
        return rc; /* an error, or the same instance: nothing to tell */
    t->owners[self].version++;
    sn = find_name(t, name, nlen, name_hash(name, nlen));
    broadcast_add(t, sn, find_inst(sn, (uint32_t)self));
    return 0;
}

int tether_svc_unregister(tether_svc_t *t, const uint8_t *name, size_t nlen)
{
    sname_t *sn;
    inst_t *in;
    int self;

    if (t == NULL || name == NULL || nlen == 0 || nlen > TETHER_SVC_NAME_MAX)
        return TETHER_ENOTFOUND;
    self = owner_find(t, tether_engine_name(t->eng));
    sn = find_name(t, name, nlen, name_hash(name, nlen));
    if (self < 0 || sn == NULL || (in = find_inst(sn, (uint32_t)self)) == NULL)
        return TETHER_ENOTFOUND;
    t->owners[self].version++;
    broadcast_del(t, t->owners[self].version, name, nlen);
    remove_inst(t, sn, in);
    return 0;
}

size_t tether_svc_lookup(const tether_svc_t *t, const uint8_t *name,
                         size_t nlen, tether_svc_visit_t visit, void *ctx)
{
    const sname_t *sn;
    size_t n = 0;

    if (t == NULL || name == NULL)
        return 0;
    sn = find_name(t, name, nlen, name_hash(name, nlen));
    if (sn == NULL)
        return 0;
    for (const inst_t *in = sn->insts; in != NULL; in = in->next, n++)
        if (visit != NULL)
            visit(ctx, sn->name, sn->nlen, t->owners[in->owner].name, in->pid,
                  in->plen, in->meta, in->mlen);
    return n;
}

int tether_svc_local(const tether_svc_t *t, const uint8_t *name, size_t nlen,
                     tether_svc_visit_t visit, void *ctx)
{
    const sname_t *sn;
    const inst_t *in;
    int self;

    if (t == NULL || name == NULL)
        return TETHER_ENOTFOUND;
    self = owner_find(t, tether_engine_name(t->eng));
    sn = find_name(t, name, nlen, name_hash(name, nlen));
    if (self < 0 || sn == NULL || (in = find_inst(sn, (uint32_t)self)) == NULL)
        return TETHER_ENOTFOUND;
    if (visit != NULL)
        visit(ctx, sn->name, sn->nlen, t->owners[self].name, in->pid, in->plen,
              in->meta, in->mlen);
    return 0;
}

void tether_svc_foreach(const tether_svc_t *t, tether_svc_visit_t visit,
                        void *ctx)
{
    for (size_t i = 0; i < t->nb; i++)
        for (const sname_t *sn = t->buckets[i]; sn != NULL; sn = sn->next)
            for (const inst_t *in = sn->insts; in != NULL; in = in->next)
                visit(ctx, sn->name, sn->nlen, t->owners[in->owner].name,
                      in->pid, in->plen, in->meta, in->mlen);
}

void tether_svc_names(const tether_svc_t *t, tether_svc_name_visit_t visit,
                      void *ctx)
{
    for (size_t i = 0; i < t->nb; i++)
        for (const sname_t *sn = t->buckets[i]; sn != NULL; sn = sn->next)
            visit(ctx, sn->name, sn->nlen, sn->ninst);
}

size_t tether_svc_count(const tether_svc_t *t)
{
    return t->n;
}

uint64_t tether_svc_digest(const tether_svc_t *t)
{
    uint64_t d = 0;

    for (size_t i = 0; i < t->nb; i++)
        for (const sname_t *sn = t->buckets[i]; sn != NULL; sn = sn->next)
            for (const inst_t *in = sn->insts; in != NULL; in = in->next)
                d ^= inst_hash(sn, in, t->owners[in->owner].name);
    return d ^ (uint64_t)t->n;
}

uint64_t tether_svc_version(const tether_svc_t *t)
{
    int self = owner_find(t, tether_engine_name(t->eng));

    return self < 0 ? 0 : t->owners[self].version;
}

const tether_svc_stats_t *tether_svc_stats(const tether_svc_t *t)
{
    return &t->stats;
}
