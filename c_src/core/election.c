/*
 * core/election.c: leader election with fencing tokens (see election.h
 * for the protocol, its states and its messages).
 *
 * Layout. Names live in a fixed array of hash chains (names are never
 * removed while the engine lives, so a reader holding the read lock can
 * walk a chain while the engine thread inserts at its head under the
 * write lock). Each name holds the records of the live members (ours
 * among them), what we know of its fences, our candidacy's state and,
 * for readers, a view rebuilt after each input. Owners (node names) get
 * a stable index; index 0 is us.
 *
 * Every entry point ends with finish(): the names an input touched are
 * evaluated (the state machines of election.h), our changed records are
 * broadcast, and their views are rebuilt aside and swapped in under the
 * write lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/codec.h"
#include "core/election.h"
#include "core/module.h"

#define BUCKETS    1024 /* name hash chains (a power of two) */
#define SELF       0u
#define OWNERS_MAX TETHER_MEMBERS_MAX
#define EVAL_ITERS 4 /* state steps one evaluation may take */

#define F_CAND   1u /* the record's node has a candidate */
#define F_QUORUM 2u /* ... in quorum mode */
#define F_ALL    (F_CAND | F_QUORUM)

enum { ST_IDLE = 0, ST_CLAIM, ST_LEAD };

typedef char name_t[TETHER_NODE_NAME_MAX + 1];

/* A fence and the owner that minted it; pairs order by value, then by
 * the minter's node name. */
typedef struct fpair {
    uint64_t v;
    uint32_t by;
} fpair_t;

typedef struct owner {
    name_t name;
    int live;         /* a live member (us: never used) */
    int synced;       /* its full sync arrived since it came up */
    uint64_t applied; /* its versions applied with no gap */
    int pulling;      /* a pull is out this round */
} owner_t;

/* One node's published record of a name. */
typedef struct rec {
    uint32_t owner;
    uint64_t ver;
    uint32_t flags; /* F_* */
    int64_t prio;
    uint64_t claim; /* the fence it asks to be acknowledged, or 0 */
    uint64_t lead;  /* the fence it leads with, or 0 */
    fpair_t seen;   /* the highest fence it has seen */
    uint64_t term;  /* its quorum campaign, or 0 */
    uint64_t cfg;   /* its candidacy's mode and voters (hash) */
    uint8_t *pid;
    size_t plen;
} rec_t;

/* A voter's grant as the candidate counts it. */
typedef struct grant {
    uint64_t until; /* valid until (our clock) */
    uint64_t fence; /* for this fence */
} grant_t;

typedef struct vcand {
    name_t node;
    int64_t prio;
} vcand_t;

/* A name's status as tether_election_name_fence() reads it without a
 * lock: a sequence lock (odd while the one writer, under the engine's
 * serialization, stores a new status) over the fields view_t also
 * holds. Every field is accessed with __atomic builtins. */
typedef struct pub {
    uint64_t seq;
    uint64_t fence, lease_until;
    uint32_t leading, no_quorum;
} pub_t;

/* What readers see of a name (swapped in under the write lock). */
typedef struct view {
    int leading;
    uint64_t fence, lease_until; /* lease_until 0: no lease to check */
    int no_quorum;               /* quorum candidate, voters unreachable */
    int has_leader;              /* another leader in our view */
    name_t leader;
    uint64_t leader_fence;
    uint8_t *lpid, *opid; /* the leader's and our candidate's pid */
    size_t lplen, oplen;
    vcand_t *cands;
    size_t ncands;
} view_t;

typedef struct ename {
    struct ename *next; /* hash chain */
    uint64_t kh;
    uint8_t *key;
    size_t klen;
    rec_t *recs; /* the live members' records, ours included */
    size_t nrecs, caprecs;
    fpair_t seen;   /* the highest fence we know of */
    uint64_t other; /* the highest fence value another node minted */
    /* Our candidacy. */
    int cand, quorum;
    int64_t prio;
    uint64_t cfg;
    name_t *voters;
    uint32_t *vowner; /* the voters' owner indexes */
    grant_t *grants;  /* one per voter */
    size_t nvoters;
    uint8_t *pid;
    size_t plen;
    /* Its state machine. */
    int state;
    uint64_t claim, lead;
    int remint; /* a member came: claim a fresh fence once synced */
    int quiet;  /* inside tether_election_lead(): push no ELECTED */
    uint64_t term, next_ask, lease_until, led_since;
    /* As a voter. */
    int v_active;
    uint32_t v_holder;
    uint64_t v_term, v_fence, v_until;
    fpair_t v_high; /* the highest fence granted */
    /* Bookkeeping of finish(). */
    int listed, eval, own_dirty;
    view_t view;
    pub_t pub; /* the view's status, readable without a lock */
} ename_t;

/* A growable array of names. */
typedef struct nvec {
    ename_t **v;
    size_t n, cap;
} nvec_t;

struct tether_election {
    tether_election_config_t cfg;
    tether_engine_t *eng;
    name_t self; /* our node name (readers use it: owners may move) */
    owner_t *owners;
    size_t nowners, capowners;
    ename_t *buckets[BUCKETS];
    nvec_t touched; /* names finish() has to look at */
    nvec_t cands;   /* names we have a candidate for */
    uint64_t ver;   /* our record counter */
    uint64_t next_round;
    uint64_t quiet_until; /* as a voter, grant nothing before */
    int started, grew;
    tether_election_stats_t stats;
};

/* Decoded wire record, pointing into the message. */
typedef struct wrec {
    const uint8_t *name, *pid;
    size_t nlen, plen;
    uint64_t ver;
    uint32_t flags;
    int64_t prio;
    uint64_t claim, lead, seen, term, cfg;
    name_t seen_by;
} wrec_t;

static void finish(tether_election_t *m);

/* ------------------------------------------------------------ helpers */

static uint64_t now_of(const tether_election_t *m)
{
    return tether_engine_now(m->eng);
}

static int nvec_add(nvec_t *v, ename_t *n)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        ename_t **p = realloc(v->v, cap * sizeof *p);
        if (p == NULL)
            return TETHER_ENOMEM;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = n;
    return 0;
}

static void nvec_del(nvec_t *v, const ename_t *n)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->v[i] == n) {
            v->v[i] = v->v[--v->n];
            return;
        }
}

static int owner_find(const tether_election_t *m, const char *name)
{
    for (size_t i = 0; i < m->nowners; i++)
        if (strcmp(m->owners[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The owner index of name, made if new. Returns it, or -1 (bad name, the
 * table full, no memory). */
static int owner_get(tether_election_t *m, const char *name)
{
    int o = owner_find(m, name);

    if (o >= 0)
        return o;
    if (tether__node_name_len(name) == 0 || m->nowners == OWNERS_MAX)
        return -1;
    if (m->nowners == m->capowners) {
        size_t cap = m->capowners ? m->capowners * 2 : 16;
        owner_t *p = realloc(m->owners, cap * sizeof *p);
        if (p == NULL)
            return -1;
        m->owners = p;
        m->capowners = cap;
    }
    memset(&m->owners[m->nowners], 0, sizeof m->owners[0]);
    memcpy(m->owners[m->nowners].name, name, strlen(name) + 1);
    return (int)m->nowners++;
}

/* Orders fence pairs: value, then the minter's node name. */
static int fcmp(const tether_election_t *m, fpair_t a, fpair_t b)
{
    if (a.v != b.v)
        return a.v < b.v ? -1 : 1;
    if (a.by == b.by)
        return 0;
    return strcmp(m->owners[a.by].name, m->owners[b.by].name);
}

static uint64_t key_hash(const uint8_t *key, size_t klen)
{
    return tether__fnv1a(TETHER_FNV_OFFSET, key, klen);
}

TETHER__MODULE_LOCK_HOOKS(tether_election_t)

/* ------------------------------------------------------------- names */

static ename_t *name_find(const tether_election_t *m, const uint8_t *key,
                          size_t klen)
{
    uint64_t h = key_hash(key, klen);

    for (ename_t *n = m->buckets[h & (BUCKETS - 1)]; n; n = n->next)
        if (n->kh == h && n->klen == klen && memcmp(n->key, key, klen) == 0)
            return n;
    return NULL;
}

/* The name of key, made if new (inserted under the write lock). NULL
 * when the table is full or memory is short (counted). */
static ename_t *name_get(tether_election_t *m, const uint8_t *key, size_t klen)
{
    ename_t *n = name_find(m, key, klen);
    size_t b;

    if (n != NULL)
        return n;
    if (m->stats.names >= TETHER_ELECTION_NAMES_MAX ||
        (n = calloc(1, sizeof *n)) == NULL || (n->key = malloc(klen)) == NULL) {
        free(n);
        m->stats.dropped++;
        return NULL;
    }
    memcpy(n->key, key, klen);
    n->klen = klen;
    n->kh = key_hash(key, klen);
    b = n->kh & (BUCKETS - 1);
    wlock(m);
    n->next = m->buckets[b];
    m->buckets[b] = n;
    wunlock(m);
    m->stats.names++;
    return n;
}

/* Lists n for finish(), to be evaluated when eval is set. */
static void touch(tether_election_t *m, ename_t *n, int eval)
{
    n->eval |= eval;
    if (!n->listed && nvec_add(&m->touched, n) == 0)
        n->listed = 1;
}

static rec_t *rec_find(const ename_t *n, uint32_t o)
{
    for (size_t i = 0; i < n->nrecs; i++)
        if (n->recs[i].owner == o)
            return &n->recs[i];
    return NULL;
}

/* The record of owner o in n, made (zeroed) if new; NULL on no memory. */
static rec_t *rec_get(ename_t *n, uint32_t o)
{
    rec_t *r = rec_find(n, o);

    if (r != NULL)
        return r;
    if (n->nrecs == n->caprecs) {
        size_t cap = n->caprecs ? n->caprecs * 2 : 4;
        rec_t *p = realloc(n->recs, cap * sizeof *p);
        if (p == NULL)
            return NULL;
        n->recs = p;
        n->caprecs = cap;
    }
    r = &n->recs[n->nrecs++];
    memset(r, 0, sizeof *r);
    r->owner = o;
    return r;
}

static void rec_drop(ename_t *n, uint32_t o)
{
    rec_t *r = rec_find(n, o);

    if (r == NULL)
        return;
    free(r->pid);
    *r = n->recs[--n->nrecs];
}

/* Records that fence v, minted by owner `by`, exists: what we have seen
 * (published in our record: an acknowledgement) and, minted by another
 * node, what we must mint above. */
static void learn(tether_election_t *m, ename_t *n, uint64_t v, uint32_t by)
{
    fpair_t p = {v, by};

    if (v == 0)
        return;
    if (fcmp(m, p, n->seen) > 0) {
        n->seen = p;
        n->own_dirty = 1;
        touch(m, n, 1);
    }
    if (by != SELF && v > n->other)
        n->other = v;
}

/* A fresh fence: above every fence seen, an HLC stamp if that is more. */
static uint64_t mint(tether_election_t *m, ename_t *n)
{
    uint64_t f = n->seen.v + 1, st = 0;

    if (tether__engine_stamp(m->eng, &st) == 0 && st > f)
        f = st;
    learn(m, n, f, SELF);
    m->stats.claims++;
    return f;
}

/* ------------------------------------------------------------ encoding */

static int x_rec(ei_x_buff *x, const tether_election_t *m, const ename_t *n,
                 const rec_t *r)
{
    const char *by = m->owners[r->seen.v ? r->seen.by : SELF].name;

    return ei_x_encode_tuple_header(x, 11) < 0 ||
                   ei_x_encode_binary(x, n->key, (long)n->klen) < 0 ||
                   ei_x_encode_ulonglong(x, r->ver) < 0 ||
                   ei_x_encode_ulong(x, r->flags) < 0 ||
                   ei_x_encode_longlong(x, r->prio) < 0 ||
                   ei_x_encode_ulonglong(x, r->claim) < 0 ||
                   ei_x_encode_ulonglong(x, r->lead) < 0 ||
                   ei_x_encode_ulonglong(x, r->seen.v) < 0 ||
                   tether__etf_encode_name(x, by) < 0 ||
                   ei_x_encode_ulonglong(x, r->term) < 0 ||
                   ei_x_encode_ulonglong(x, r->cfg) < 0 ||
                   ei_x_encode_binary(x, r->pid ? r->pid : (const uint8_t *)"",
                                      (long)r->plen) < 0
               ? TETHER_ENOMEM
               : 0;
}

/* Sends x (freed here) to `to`, or to every live member when NULL. */
static void send_x(tether_election_t *m, const char *to, ei_x_buff *x, int rc)
{
    if (rc == 0) {
        if (to == NULL)
            (void)tether__engine_broadcast(m->eng, TETHER_MSG_ELECTION,
                                           (const uint8_t *)x->buff,
                                           (size_t)x->index, TETHER_SEND_STATE);
        else
            (void)tether_engine_send(m->eng, to, TETHER_MSG_ELECTION,
                                     (const uint8_t *)x->buff, (size_t)x->index,
                                     TETHER_SEND_STATE);
    }
    ei_x_free(x);
}

/* Rebuilds our record of n from our state and broadcasts it. */
static void publish_own(tether_election_t *m, ename_t *n)
{
    rec_t *r = rec_get(n, SELF);
    ei_x_buff x;
    int rc;

    n->own_dirty = 0;
    if (r == NULL)
        return;
    r->ver = ++m->ver;
    r->flags = n->cand ? F_CAND | (n->quorum ? F_QUORUM : 0) : 0;
    r->prio = n->cand ? n->prio : 0;
    r->claim = n->claim;
    r->lead = n->state == ST_LEAD ? n->lead : 0;
    r->seen = n->seen;
    r->term = n->term;
    r->cfg = n->cand ? n->cfg : 0;
    free(r->pid);
    r->pid = NULL;
    r->plen = 0;
    if (n->cand && (r->pid = malloc(n->plen)) != NULL) {
        memcpy(r->pid, n->pid, n->plen);
        r->plen = n->plen;
    }
    if (tether_engine_has_left(m->eng))
        return;
    rc = tether__etf_begin(&x, 2, "el_rec");
    if (rc == 0)
        rc = x_rec(&x, m, n, r);
    send_x(m, NULL, &x, rc);
}

/* Sends every record of ours to peer. */
static void send_sync(tether_election_t *m, const char *peer)
{
    ei_x_buff x;
    long count = 0;
    int rc = tether__etf_begin(&x, 3, "el_sync");

    for (size_t b = 0; b < BUCKETS; b++)
        for (const ename_t *n = m->buckets[b]; n; n = n->next)
            count += rec_find(n, SELF) != NULL;
    if (rc == 0 && (ei_x_encode_ulonglong(&x, m->ver) < 0 ||
                    (count > 0 && ei_x_encode_list_header(&x, count) < 0)))
        rc = TETHER_ENOMEM;
    for (size_t b = 0; rc == 0 && b < BUCKETS; b++)
        for (const ename_t *n = m->buckets[b]; rc == 0 && n; n = n->next) {
            const rec_t *r = rec_find(n, SELF);
            if (r != NULL && x_rec(&x, m, n, r) < 0)
                rc = TETHER_ENOMEM;
        }
    if (rc == 0 && ei_x_encode_empty_list(&x) < 0)
        rc = TETHER_ENOMEM;
    if (rc == 0)
        m->stats.syncs_sent++;
    send_x(m, peer, &x, rc);
}

/* Asks owner o for its sync, once a round. */
static void pull(tether_election_t *m, uint32_t o)
{
    ei_x_buff x;

    if (m->owners[o].pulling || tether__etf_begin(&x, 1, "el_pull") < 0)
        return;
    m->owners[o].pulling = 1;
    m->stats.pulls_sent++;
    send_x(m, m->owners[o].name, &x, 0);
}

/* -------------------------------------------------------- transitions */

static void act(tether_election_t *m, ename_t *n, int elected, uint64_t fence)
{
    tether_action_t a = {.kind = TETHER_ACT_LEADER};

    if (elected)
        m->stats.elected++;
    else
        m->stats.revoked++;
    if (n->quiet)
        return;
    a.u.leader.name.ptr = n->key;
    a.u.leader.name.len = n->klen;
    a.u.leader.cand.ptr = n->pid;
    a.u.leader.cand.len = n->plen;
    a.u.leader.elected = elected;
    a.u.leader.fence = fence;
    (void)tether__engine_push(m->eng, &a); /* lost to memory: as a link */
}

static int live(const tether_election_t *m, uint32_t o)
{
    return o == SELF ? !tether_engine_has_left(m->eng) : m->owners[o].live;
}

static size_t majority(const ename_t *n)
{
    return n->nvoters / 2 + 1;
}

static size_t live_voters(const tether_election_t *m, const ename_t *n)
{
    size_t c = 0;

    for (size_t i = 0; i < n->nvoters; i++)
        c += live(m, n->vowner[i]) != 0;
    return c;
}

/* Tells voter i of n that our campaign `term` is over. */
static void send_release(tether_election_t *m, ename_t *n, size_t i,
                         uint64_t term)
{
    ei_x_buff x;
    int rc;

    if (n->vowner[i] == SELF) {
        if (n->v_active && n->v_holder == SELF && n->v_term == term)
            n->v_active = 0;
        return;
    }
    rc = tether__etf_begin(&x, 3, "el_release");
    if (rc == 0 && (ei_x_encode_binary(&x, n->key, (long)n->klen) < 0 ||
                    ei_x_encode_ulonglong(&x, term) < 0))
        rc = TETHER_ENOMEM;
    send_x(m, n->voters[i], &x, rc);
}

/* Leaves every state for IDLE: REVOKED if we led and notify is set, and
 * a quorum campaign's voters are released after we stopped leading. */
static void step_down(tether_election_t *m, ename_t *n, int notify)
{
    uint64_t term = n->term;

    if (n->state == ST_IDLE && term == 0)
        return;
    if (n->state == ST_LEAD && notify)
        act(m, n, 0, 0);
    n->state = ST_IDLE;
    n->claim = n->lead = 0;
    n->remint = 0;
    n->term = 0;
    n->lease_until = 0;
    n->own_dirty = 1;
    for (size_t i = 0; term != 0 && i < n->nvoters; i++) {
        send_release(m, n, i, term);
        n->grants[i].until = n->grants[i].fence = 0;
    }
}

/*
 * The best live candidate of n, ours included (highest priority, then
 * lowest node name), among those of our configuration; *conflict is set
 * when a live candidate has another. Returns its owner or -1.
 */
static long best(const tether_election_t *m, const ename_t *n, int *conflict)
{
    long w = n->cand && live(m, SELF) ? (long)SELF : -1;
    int64_t wp = n->prio;

    *conflict = 0;
    for (size_t i = 0; i < n->nrecs; i++) {
        const rec_t *r = &n->recs[i];
        if (r->owner == SELF || !(r->flags & F_CAND) || !live(m, r->owner))
            continue;
        if (r->cfg != n->cfg) {
            *conflict = 1;
            continue;
        }
        if (w < 0 || r->prio > wp ||
            (r->prio == wp &&
             strcmp(m->owners[r->owner].name, m->owners[w].name) < 0)) {
            w = (long)r->owner;
            wp = r->prio;
        }
    }
    return w;
}

/* We hold a full sync of every live member. */
static int ready(const tether_election_t *m)
{
    for (size_t o = 1; o < m->nowners; o++)
        if (m->owners[o].live && !m->owners[o].synced)
            return 0;
    return 1;
}

/* Every live member's record shows our fence c as the highest it saw. */
static int acked(const tether_election_t *m, const ename_t *n, uint64_t c)
{
    for (size_t o = 1; o < m->nowners; o++) {
        const rec_t *r;
        if (!m->owners[o].live)
            continue;
        r = rec_find(n, (uint32_t)o);
        if (r == NULL || r->seen.v != c || r->seen.by != SELF)
            return 0;
    }
    return 1;
}

/* Another live member leads n with a fence not below ours. */
static int rival(const tether_election_t *m, const ename_t *n)
{
    for (size_t i = 0; i < n->nrecs; i++) {
        const rec_t *r = &n->recs[i];
        if (r->owner != SELF && r->lead != 0 && r->lead >= n->lead &&
            live(m, r->owner))
            return 1;
    }
    return 0;
}

/* One step of the default mode (election.h); returns 1 if the state
 * moved and another step may follow. */
static int step_default(tether_election_t *m, ename_t *n)
{
    if (!ready(m))
        return 0;
    if (n->state == ST_IDLE) {
        n->state = ST_CLAIM;
        n->claim = 0;
    }
    if (n->state == ST_LEAD && !n->remint && rival(m, n))
        n->remint = 1;
    if (n->state == ST_LEAD && !n->remint)
        return 0;
    if (n->claim == 0 || n->other >= n->claim) {
        n->claim = mint(m, n);
        n->own_dirty = 1;
        return 1;
    }
    if (!acked(m, n, n->claim))
        return 0;
    if (n->state == ST_LEAD)
        m->stats.remints++;
    n->state = ST_LEAD;
    n->lead = n->claim;
    n->claim = 0;
    n->remint = 0;
    n->own_dirty = 1;
    act(m, n, 1, n->lead);
    return 0;
}

static uint64_t renew_ms(const tether_election_t *m)
{
    return m->cfg.lease_ms / 4 ? m->cfg.lease_ms / 4 : 1;
}

static void vote_ask(tether_election_t *m, ename_t *n, size_t i, uint64_t now);

/* One step of the quorum mode (election.h); returns 1 to step again. */
static int step_quorum(tether_election_t *m, ename_t *n)
{
    uint64_t now = now_of(m), until[TETHER_ELECTION_VOTERS_MAX];
    size_t valid = 0, maj = majority(n);

    if (n->term == 0) {
        /* Renewals go on while a new member syncs; a campaign starts
         * only once we hold everyone's sync, as in the default mode. */
        if (!ready(m))
            return 0;
        tether__engine_random(m->eng, (uint8_t *)&n->term, sizeof n->term);
        n->term |= 1; /* never 0 */
        n->state = ST_CLAIM;
        n->claim = 0;
        n->next_ask = now;
    }
    /* A voter has seen a fence >= ours: ask again at once, above it. */
    if (n->state != ST_LEAD && n->other >= n->claim)
        n->next_ask = now;
    for (size_t i = 0; i < n->nvoters; i++)
        if (n->grants[i].fence == n->claim && n->grants[i].until > now) {
            /* Insertion: until[] sorted descending. */
            size_t k = valid++;
            while (k > 0 && until[k - 1] < n->grants[i].until) {
                until[k] = until[k - 1];
                k--;
            }
            until[k] = n->grants[i].until;
        }
    if (valid >= maj) {
        if (n->lease_until != until[maj - 1])
            touch(m, n, 0);
        n->lease_until = until[maj - 1];
        if (n->state != ST_LEAD) {
            n->state = ST_LEAD;
            n->lead = n->claim;
            n->led_since = now;
            n->own_dirty = 1;
            act(m, n, 1, n->lead);
        }
    } else if (n->state == ST_LEAD) {
        /* The lease ran out before a majority renewed it. */
        act(m, n, 0, 0);
        m->stats.lease_lost++;
        n->state = ST_CLAIM;
        n->lead = 0;
        n->lease_until = 0;
        n->next_ask = now;
        n->own_dirty = 1;
    }
    if (now < n->next_ask)
        return 0;
    /* Each try of a campaign asks with a fresh fence: one granted by
     * voters that restarted (and forgot) is then still above every fence
     * minted a lease or more before (the clocks' offsets well below a
     * lease). */
    if (n->state != ST_LEAD) {
        n->claim = mint(m, n);
        n->own_dirty = 1;
    }
    n->next_ask = now + renew_ms(m);
    for (size_t i = 0; i < n->nvoters; i++)
        vote_ask(m, n, i, now);
    return n->eval; /* a local vote counts at once */
}

/* Brings our candidacy for n up to date with what we know. */
static void evaluate(tether_election_t *m, ename_t *n)
{
    int conflict = 0;

    for (int k = 0; k < EVAL_ITERS; k++) {
        n->eval = 0;
        if (!n->cand || best(m, n, &conflict) != (long)SELF || conflict) {
            step_down(m, n, 1);
            return;
        }
        if (!(n->quorum ? step_quorum(m, n) : step_default(m, n)))
            return;
    }
}

/* Candidates best first: priority, then node name. */
static int vcand_rank(const void *a, const void *b)
{
    const vcand_t *x = a, *y = b;

    if (x->prio != y->prio)
        return x->prio > y->prio ? -1 : 1;
    return strcmp(x->node, y->node);
}

/* Stores v's status in p for lock-free readers (see pub_t). */
static void publish(pub_t *p, const view_t *v)
{
    uint64_t s = __atomic_load_n(&p->seq, __ATOMIC_RELAXED);

    __atomic_store_n(&p->seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    __atomic_store_n(&p->fence, v->fence, __ATOMIC_RELAXED);
    __atomic_store_n(&p->lease_until, v->lease_until, __ATOMIC_RELAXED);
    __atomic_store_n(&p->leading, (uint32_t)v->leading, __ATOMIC_RELAXED);
    __atomic_store_n(&p->no_quorum, (uint32_t)v->no_quorum, __ATOMIC_RELAXED);
    __atomic_store_n(&p->seq, s + 2, __ATOMIC_RELEASE);
}

/* Rebuilds n's view aside, then swaps it in under the write lock. */
static void view_build(tether_election_t *m, ename_t *n)
{
    view_t v, old;
    const rec_t *lr = NULL;
    size_t k = 0;

    memset(&v, 0, sizeof v);
    v.leading = n->state == ST_LEAD;
    v.fence = n->lead;
    v.lease_until = n->quorum && v.leading ? n->lease_until : 0;
    v.no_quorum = n->cand && n->quorum && live_voters(m, n) < majority(n);
    if (n->cand && (v.opid = malloc(n->plen)) != NULL) {
        memcpy(v.opid, n->pid, n->plen);
        v.oplen = n->plen;
    }
    for (size_t i = 0; i < n->nrecs; i++) {
        const rec_t *r = &n->recs[i];
        if (r->owner == SELF || !live(m, r->owner))
            continue;
        if (r->lead != 0 &&
            (lr == NULL || r->lead > lr->lead ||
             (r->lead == lr->lead &&
              strcmp(m->owners[r->owner].name, m->owners[lr->owner].name) < 0)))
            lr = r;
        k += (r->flags & F_CAND) != 0;
    }
    if (lr != NULL) {
        v.has_leader = 1;
        memcpy(v.leader, m->owners[lr->owner].name, sizeof v.leader);
        v.leader_fence = lr->lead;
        if (lr->plen && (v.lpid = malloc(lr->plen)) != NULL) {
            memcpy(v.lpid, lr->pid, lr->plen);
            v.lplen = lr->plen;
        }
    }
    k += n->cand != 0;
    if (k > 0 && (v.cands = malloc(k * sizeof *v.cands)) != NULL) {
        if (n->cand) {
            memcpy(v.cands[v.ncands].node, m->self, sizeof(name_t));
            v.cands[v.ncands++].prio = n->prio;
        }
        for (size_t i = 0; i < n->nrecs; i++) {
            const rec_t *r = &n->recs[i];
            if (r->owner == SELF || !(r->flags & F_CAND) || !live(m, r->owner))
                continue;
            memcpy(v.cands[v.ncands].node, m->owners[r->owner].name,
                   sizeof(name_t));
            v.cands[v.ncands++].prio = r->prio;
        }
        qsort(v.cands, v.ncands, sizeof *v.cands, vcand_rank);
    }
    wlock(m);
    old = n->view;
    n->view = v;
    publish(&n->pub, &v);
    wunlock(m);
    free(old.lpid);
    free(old.opid);
    free(old.cands);
}

/* Evaluates the touched names, broadcasts our changed records and
 * rebuilds the views (see the file comment). */
static void finish(tether_election_t *m)
{
    for (size_t i = 0; i < m->touched.n; i++)
        if (m->touched.v[i]->eval)
            evaluate(m, m->touched.v[i]);
    for (size_t i = 0; i < m->touched.n; i++) {
        ename_t *n = m->touched.v[i];
        if (n->own_dirty)
            publish_own(m, n);
        view_build(m, n);
        n->listed = 0;
        n->eval = 0;
    }
    m->touched.n = 0;
}

/* Every name we have a candidate for is evaluated by finish(). */
static void touch_cands(tether_election_t *m)
{
    for (size_t i = 0; i < m->cands.n; i++)
        touch(m, m->cands.v[i], 1);
}

/* ------------------------------------------------------------- quorum */

/* Our grant of n's lease to owner o for (term, fence); returns the lease
 * granted (ms), or 0 for a refusal (election.h, quorum mode). */
static uint64_t vote(tether_election_t *m, ename_t *n, uint32_t o,
                     uint64_t term, uint64_t fence, uint64_t lease)
{
    uint64_t now = now_of(m);
    int active = n->v_active && now < n->v_until;
    fpair_t f = {fence, o};

    learn(m, n, fence, o);
    if (!m->started || now < m->quiet_until || fence == 0 || lease == 0)
        goto refuse;
    if (lease > m->cfg.lease_ms)
        lease = m->cfg.lease_ms;
    if (active && n->v_holder == o && n->v_term == term) {
        if (fence < n->v_fence)
            goto refuse;
    } else if (active || fcmp(m, f, n->v_high) <= 0) {
        goto refuse;
    }
    n->v_active = 1;
    n->v_holder = o;
    n->v_term = term;
    n->v_fence = fence;
    n->v_until = now + lease;
    if (fcmp(m, f, n->v_high) > 0)
        n->v_high = f;
    m->stats.grants++;
    return lease;
refuse:
    m->stats.refusals++;
    return 0;
}

/* A voter's answer to our ask (voter index i of n). */
static void granted(tether_election_t *m, ename_t *n, size_t i, uint64_t term,
                    uint64_t fence, uint64_t sent_at, uint64_t lease)
{
    uint64_t until;

    if (term != n->term || term == 0 || lease == 0 || fence != n->claim ||
        sent_at > now_of(m))
        return;
    until = sent_at + lease - lease / 8;
    if (n->grants[i].fence != fence || n->grants[i].until < until) {
        n->grants[i].fence = fence;
        n->grants[i].until = until;
        touch(m, n, 1);
    }
}

/* Asks voter i of n for the lease (a local voter answers at once). */
static void vote_ask(tether_election_t *m, ename_t *n, size_t i, uint64_t now)
{
    ei_x_buff x;
    int rc;

    m->stats.asks_sent++;
    if (n->vowner[i] == SELF) {
        uint64_t l = vote(m, n, SELF, n->term, n->claim, m->cfg.lease_ms);
        if (l > 0)
            granted(m, n, i, n->term, n->claim, now, l);
        else
            touch(m, n, 1);
        return;
    }
    rc = tether__etf_begin(&x, 8, "el_ask");
    if (rc == 0 && (ei_x_encode_binary(&x, n->key, (long)n->klen) < 0 ||
                    ei_x_encode_ulonglong(&x, n->term) < 0 ||
                    ei_x_encode_ulonglong(&x, n->claim) < 0 ||
                    ei_x_encode_ulonglong(&x, n->cfg) < 0 ||
                    ei_x_encode_ulonglong(&x, m->cfg.lease_ms) < 0 ||
                    ei_x_encode_ulonglong(&x, now) < 0 ||
                    ei_x_encode_list_header(&x, (long)n->nvoters) < 0))
        rc = TETHER_ENOMEM;
    for (size_t k = 0; rc == 0 && k < n->nvoters; k++)
        if (tether__etf_encode_name(&x, n->voters[k]) < 0)
            rc = TETHER_ENOMEM;
    if (rc == 0 && ei_x_encode_empty_list(&x) < 0)
        rc = TETHER_ENOMEM;
    send_x(m, n->voters[i], &x, rc);
}

/* ----------------------------------------------------------- messages */

/* Decodes a record at *idx into w (pointers into buf). 0 or EPROTO. */
static int decode_rec(const char *buf, int *idx, wrec_t *w)
{
    unsigned long flags;
    long long prio;

    if (tether__etf_expect_tuple(buf, idx, 11) < 0 ||
        tether__etf_decode_bin_ref(buf, idx, &w->name, &w->nlen) < 0 ||
        tether__etf_decode_u64(buf, idx, &w->ver) < 0 ||
        ei_decode_ulong(buf, idx, &flags) < 0 || flags > F_ALL ||
        ei_decode_longlong(buf, idx, &prio) < 0 ||
        tether__etf_decode_u64(buf, idx, &w->claim) < 0 ||
        tether__etf_decode_u64(buf, idx, &w->lead) < 0 ||
        tether__etf_decode_u64(buf, idx, &w->seen) < 0 ||
        tether__etf_decode_name(buf, idx, w->seen_by) < 0 ||
        tether__etf_decode_u64(buf, idx, &w->term) < 0 ||
        tether__etf_decode_u64(buf, idx, &w->cfg) < 0 ||
        tether__etf_decode_bin_ref(buf, idx, &w->pid, &w->plen) < 0)
        return TETHER_EPROTO;
    w->flags = (uint32_t)flags;
    w->prio = prio;
    if (w->nlen == 0 || w->nlen > TETHER_ELECTION_NAME_MAX ||
        w->plen > TETHER_ELECTION_PID_MAX ||
        tether__etf_validate((const char *)w->name, w->nlen) < 0 ||
        (w->plen > 0 &&
         tether__etf_validate((const char *)w->pid, w->plen) < 0) ||
        ((w->flags & F_CAND) && w->plen == 0))
        return TETHER_EPROTO;
    return 0;
}

/* Applies one record of owner o: its fences are learnt from anyone; the
 * record is kept only for a live member and when newer than ours. */
static void apply_rec(tether_election_t *m, uint32_t o, const wrec_t *w)
{
    ename_t *n = name_get(m, w->name, w->nlen);
    int by = owner_get(m, w->seen_by);
    rec_t *r;
    uint8_t *pid = NULL;

    if (n == NULL)
        return;
    learn(m, n, w->claim, o);
    learn(m, n, w->lead, o);
    if (by >= 0)
        learn(m, n, w->seen, (uint32_t)by);
    if (!m->owners[o].live)
        return;
    r = rec_find(n, o);
    if (r != NULL && r->ver >= w->ver)
        return;
    if (w->plen > 0 && (pid = malloc(w->plen)) == NULL)
        return;
    if ((r = rec_get(n, o)) == NULL) {
        free(pid);
        return;
    }
    if (pid != NULL)
        memcpy(pid, w->pid, w->plen);
    free(r->pid);
    r->pid = pid;
    r->plen = w->plen;
    r->ver = w->ver;
    r->flags = w->flags;
    r->prio = w->prio;
    r->claim = w->claim;
    r->lead = w->lead;
    r->seen.v = w->seen;
    r->seen.by = by >= 0 ? (uint32_t)by : o;
    r->term = w->term;
    r->cfg = w->cfg;
    touch(m, n, 1);
}

/* {el_sync, Ver, [Rec]}: read to its end first, so a bad one changes
 * nothing. */
static int handle_sync(tether_election_t *m, uint32_t o, const char *buf,
                       int idx)
{
    uint64_t ver;
    int count, start;
    wrec_t w;

    if (tether__etf_decode_u64(buf, &idx, &ver) < 0)
        return TETHER_EPROTO;
    start = idx;
    for (int pass = 0; pass < 2; pass++) {
        idx = start;
        if (tether__etf_list(buf, &idx, &count) < 0)
            return TETHER_EPROTO;
        for (int k = 0; k < count; k++) {
            if (decode_rec(buf, &idx, &w) < 0)
                return TETHER_EPROTO;
            if (pass == 1)
                apply_rec(m, o, &w);
        }
        if (tether__etf_list_end(buf, &idx, count) < 0)
            return TETHER_EPROTO;
    }
    m->stats.syncs_recv++;
    if (m->owners[o].live) {
        m->owners[o].synced = 1;
        if (ver > m->owners[o].applied)
            m->owners[o].applied = ver;
        touch_cands(m); /* we may be ready now */
    }
    return 0;
}

/* {el_ask, NameBin, Term, Fence, Cfg, LeaseMs, SentAt, [Voter]} from o. */
static int handle_ask(tether_election_t *m, uint32_t o, const char *buf,
                      int idx)
{
    const uint8_t *key;
    size_t klen;
    uint64_t term, fence, cfg, lease, sent, l = 0;
    int count, mine = 0;
    ename_t *n;
    ei_x_buff x;
    int rc;

    if (tether__etf_decode_bin_ref(buf, &idx, &key, &klen) < 0 ||
        tether__etf_decode_u64(buf, &idx, &term) < 0 ||
        tether__etf_decode_u64(buf, &idx, &fence) < 0 ||
        tether__etf_decode_u64(buf, &idx, &cfg) < 0 ||
        tether__etf_decode_u64(buf, &idx, &lease) < 0 ||
        tether__etf_decode_u64(buf, &idx, &sent) < 0 ||
        tether__etf_list(buf, &idx, &count) < 0 || count < 1 ||
        count > TETHER_ELECTION_VOTERS_MAX || klen == 0 ||
        klen > TETHER_ELECTION_NAME_MAX)
        return TETHER_EPROTO;
    for (int k = 0; k < count; k++) {
        name_t v;
        if (tether__etf_decode_name(buf, &idx, v) < 0)
            return TETHER_EPROTO;
        mine |= strcmp(v, m->owners[SELF].name) == 0;
    }
    if (tether__etf_list_end(buf, &idx, count) < 0)
        return TETHER_EPROTO;
    (void)cfg;
    n = name_get(m, key, klen);
    if (n == NULL)
        return 0;
    if (mine)
        l = vote(m, n, o, term, fence, lease);
    else
        m->stats.refusals++; /* not a voter of that set */
    touch(m, n, 1);
    rc = tether__etf_begin(&x, 10, "el_grant");
    if (rc == 0 &&
        (ei_x_encode_binary(&x, key, (long)klen) < 0 ||
         ei_x_encode_ulonglong(&x, term) < 0 ||
         ei_x_encode_ulonglong(&x, fence) < 0 ||
         ei_x_encode_ulonglong(&x, sent) < 0 ||
         ei_x_encode_ulonglong(&x, l) < 0 ||
         ei_x_encode_boolean(&x, l > 0) < 0 ||
         ei_x_encode_ulonglong(&x, n->v_high.v) < 0 ||
         tether__etf_encode_name(
             &x, m->owners[n->v_high.v ? n->v_high.by : SELF].name) < 0 ||
         ei_x_encode_ulonglong(&x, m->ver) < 0))
        rc = TETHER_ENOMEM;
    send_x(m, m->owners[o].name, &x, rc);
    return 0;
}

/* {el_grant, NameBin, Term, Fence, SentAt, LeaseMs, Granted, High,
 * HighBy, Ver} from voter o. */
static int handle_grant(tether_election_t *m, uint32_t o, const char *buf,
                        int idx)
{
    const uint8_t *key;
    size_t klen;
    uint64_t term, fence, sent, lease, high, ver;
    int yes, by;
    name_t hby;
    ename_t *n;

    if (tether__etf_decode_bin_ref(buf, &idx, &key, &klen) < 0 ||
        tether__etf_decode_u64(buf, &idx, &term) < 0 ||
        tether__etf_decode_u64(buf, &idx, &fence) < 0 ||
        tether__etf_decode_u64(buf, &idx, &sent) < 0 ||
        tether__etf_decode_u64(buf, &idx, &lease) < 0 ||
        ei_decode_boolean(buf, &idx, &yes) < 0 ||
        tether__etf_decode_u64(buf, &idx, &high) < 0 ||
        tether__etf_decode_name(buf, &idx, hby) < 0 ||
        tether__etf_decode_u64(buf, &idx, &ver) < 0)
        return TETHER_EPROTO;
    (void)ver;
    n = name_find(m, key, klen);
    if (n == NULL)
        return 0;
    by = owner_get(m, hby);
    if (by >= 0)
        learn(m, n, high, (uint32_t)by);
    touch(m, n, 1);
    for (size_t i = 0; yes && n->cand && n->quorum && i < n->nvoters; i++)
        if (n->vowner[i] == o)
            granted(m, n, i, term, fence, sent, lease);
    return 0;
}

/* {el_release, NameBin, Term} from o: its campaign is over. */
static int handle_release(tether_election_t *m, uint32_t o, const char *buf,
                          int idx)
{
    const uint8_t *key;
    size_t klen;
    uint64_t term;
    ename_t *n;

    if (tether__etf_decode_bin_ref(buf, &idx, &key, &klen) < 0 ||
        tether__etf_decode_u64(buf, &idx, &term) < 0)
        return TETHER_EPROTO;
    n = name_find(m, key, klen);
    if (n != NULL && n->v_active && n->v_holder == o && n->v_term == term)
        n->v_active = 0;
    return 0;
}

static void on_message(tether_engine_t *eng, void *ctx, const char *from,
                       const char *buf, size_t len)
{
    tether_election_t *m = ctx;
    char tag[TETHER_ETF_TAG_MAX];
    int idx = 0, arity, o, rc = TETHER_EPROTO;
    uint64_t v;
    wrec_t w;

    (void)eng;
    (void)len;
    o = owner_get(m, from);
    if (o <= 0 || tether__etf_decode_head(buf, &idx, tag, &arity) < 0)
        goto done;
    if (!m->owners[o].live)
        m->stats.stale_msgs++; /* its fences are still learnt */
    if (strcmp(tag, "el_rec") == 0 && arity == 2) {
        rc = decode_rec(buf, &idx, &w);
        if (rc == 0) {
            apply_rec(m, (uint32_t)o, &w);
            if (m->owners[o].live && w.ver == m->owners[o].applied + 1)
                m->owners[o].applied = w.ver;
        }
    } else if (strcmp(tag, "el_sync") == 0 && arity == 3) {
        rc = handle_sync(m, (uint32_t)o, buf, idx);
    } else if (strcmp(tag, "el_digest") == 0 && arity == 2) {
        rc = tether__etf_decode_u64(buf, &idx, &v);
        if (rc == 0 && m->owners[o].live && v > m->owners[o].applied)
            pull(m, (uint32_t)o);
    } else if (strcmp(tag, "el_pull") == 0 && arity == 1) {
        send_sync(m, from);
        rc = 0;
    } else if (strcmp(tag, "el_ask") == 0 && arity == 8) {
        rc = handle_ask(m, (uint32_t)o, buf, idx);
    } else if (strcmp(tag, "el_grant") == 0 && arity == 10) {
        rc = handle_grant(m, (uint32_t)o, buf, idx);
    } else if (strcmp(tag, "el_release") == 0 && arity == 3) {
        rc = handle_release(m, (uint32_t)o, buf, idx);
    }
done:
    if (rc < 0)
        m->stats.bad_msgs++;
    finish(m);
}

/* ---------------------------------------------------- engine events */

static void on_member(tether_engine_t *eng, void *ctx, const char *name, int up)
{
    tether_election_t *m = ctx;
    int o;

    (void)eng;
    if (strcmp(name, m->owners[SELF].name) == 0 || (o = owner_get(m, name)) < 0)
        return;
    m->owners[o].live = up;
    m->owners[o].synced = 0;
    m->owners[o].applied = 0;
    m->owners[o].pulling = 0;
    if (up) {
        m->grew = 1;
        send_sync(m, name);
        pull(m, (uint32_t)o);
        return;
    }
    /* Its records go; a lease we granted it stands until it expires. */
    for (size_t b = 0; b < BUCKETS; b++)
        for (ename_t *n = m->buckets[b]; n; n = n->next)
            if (rec_find(n, (uint32_t)o) != NULL) {
                rec_drop(n, (uint32_t)o);
                touch(m, n, 1);
            }
}

static void on_members_changed(tether_engine_t *eng, void *ctx)
{
    tether_election_t *m = ctx;

    (void)eng;
    /* A heal or a join: every leader claims a fresh fence (election.h). */
    for (size_t i = 0; m->grew && i < m->cands.n; i++) {
        ename_t *n = m->cands.v[i];
        if (!n->quorum && n->state == ST_LEAD)
            n->remint = 1;
    }
    m->grew = 0;
    touch_cands(m);
    finish(m);
}

static void on_session_up(tether_engine_t *eng, void *ctx, const char *peer)
{
    tether_election_t *m = ctx;

    (void)eng;
    if (tether_engine_is_member(m->eng, peer))
        send_sync(m, peer);
}

static void on_tick(tether_engine_t *eng, void *ctx, uint64_t now)
{
    tether_election_t *m = ctx;
    ei_x_buff x;

    (void)eng;
    if (!m->started) {
        m->started = 1;
        m->quiet_until = now + m->cfg.lease_ms;
    }
    for (size_t i = 0; i < m->cands.n; i++)
        if (m->cands.v[i]->quorum)
            touch(m, m->cands.v[i], 1);
    if (now >= m->next_round) {
        m->next_round = now + m->cfg.round_ms;
        if (tether_engine_has_left(m->eng))
            goto done;
        for (size_t o = 1; o < m->nowners; o++) {
            m->owners[o].pulling = 0;
            if (m->owners[o].live && !m->owners[o].synced)
                pull(m, (uint32_t)o);
        }
        if (tether__etf_begin(&x, 2, "el_digest") == 0) {
            int rc = ei_x_encode_ulonglong(&x, m->ver) < 0 ? TETHER_ENOMEM : 0;
            send_x(m, NULL, &x, rc);
        }
    }
done:
    finish(m);
}

static uint64_t next_deadline(tether_engine_t *eng, void *ctx)
{
    tether_election_t *m = ctx;
    uint64_t d = m->next_round;

    (void)eng;
    for (size_t i = 0; i < m->cands.n; i++) {
        const ename_t *n = m->cands.v[i];
        if (!n->quorum || n->term == 0)
            continue;
        if (n->next_ask < d)
            d = n->next_ask;
        if (n->state == ST_LEAD && n->lease_until < d)
            d = n->lease_until;
    }
    return d;
}

/* ------------------------------------------------------------ the API */

static void cand_clear(ename_t *n)
{
    free(n->pid);
    free(n->voters);
    free(n->vowner);
    free(n->grants);
    n->pid = NULL;
    n->voters = NULL;
    n->vowner = NULL;
    n->grants = NULL;
    n->plen = n->nvoters = 0;
    n->cand = n->quorum = 0;
    n->prio = 0;
    n->cfg = 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Copies opts' voters into n (sorted, repeats dropped) and hashes the
 * configuration. Returns 0, TETHER_EINVAL or TETHER_ENOMEM. */
static int cand_config(tether_election_t *m, ename_t *n,
                       const tether_election_opts_t *o)
{
    uint64_t h = tether__fnv1a(TETHER_FNV_OFFSET, "q", o->quorum ? 1 : 0);
    size_t k = 0;

    n->quorum = o->quorum != 0;
    if (n->quorum) {
        if (o->nvoters == 0 || o->nvoters > TETHER_ELECTION_VOTERS_MAX ||
            o->voters == NULL)
            return TETHER_EINVAL;
        n->voters = calloc(o->nvoters, sizeof *n->voters);
        n->vowner = calloc(o->nvoters, sizeof *n->vowner);
        n->grants = calloc(o->nvoters, sizeof *n->grants);
        if (n->voters == NULL || n->vowner == NULL || n->grants == NULL)
            return TETHER_ENOMEM;
        for (size_t i = 0; i < o->nvoters; i++) {
            if (o->voters[i] == NULL ||
                tether__node_name_len(o->voters[i]) == 0)
                return TETHER_EINVAL;
            memcpy(n->voters[i], o->voters[i], strlen(o->voters[i]) + 1);
        }
        qsort(n->voters, o->nvoters, sizeof *n->voters, name_cmp);
        for (size_t i = 0; i < o->nvoters; i++) {
            int ow;
            if (k > 0 && strcmp(n->voters[k - 1], n->voters[i]) == 0)
                continue;
            if ((ow = owner_get(m, n->voters[i])) < 0)
                return TETHER_ENOMEM;
            memmove(n->voters[k], n->voters[i], sizeof(name_t));
            n->vowner[k++] = (uint32_t)ow;
            h = tether__fnv1a(h, n->voters[i], strlen(n->voters[i]) + 1);
        }
        n->nvoters = k;
    }
    n->cfg = h | 1; /* never 0: a record's 0 means no candidate */
    return 0;
}

int tether_election_lead(tether_election_t *m, const uint8_t *name, size_t nlen,
                         const uint8_t *cand, size_t clen,
                         const tether_election_opts_t *opts, int *outcome,
                         uint64_t *fence)
{
    ename_t *n;
    int conflict = 0, rc;

    if (m == NULL || name == NULL || cand == NULL || opts == NULL ||
        outcome == NULL || fence == NULL || nlen == 0 ||
        nlen > TETHER_ELECTION_NAME_MAX || clen == 0 ||
        clen > TETHER_ELECTION_PID_MAX ||
        tether__etf_validate((const char *)name, nlen) < 0 ||
        tether__etf_validate((const char *)cand, clen) < 0)
        return TETHER_EINVAL;
    if (tether_engine_has_left(m->eng))
        return TETHER_ECLOSED;
    n = name_get(m, name, nlen);
    if (n == NULL)
        return TETHER_ETOOBIG;
    if (n->cand)
        return TETHER_EEXIST;
    *fence = 0;
    rc = cand_config(m, n, opts);
    if (rc == 0 && (n->pid = malloc(clen)) == NULL)
        rc = TETHER_ENOMEM;
    if (rc == 0 && nvec_add(&m->cands, n) < 0)
        rc = TETHER_ENOMEM;
    if (rc < 0) {
        cand_clear(n);
        return rc;
    }
    memcpy(n->pid, cand, clen);
    n->plen = clen;
    n->prio = opts->priority;
    /* Refused: the configuration disagrees, or no majority is in sight. */
    (void)best(m, n, &conflict);
    *outcome = conflict ? TETHER_ELECTION_VOTERS_MISMATCH
               : n->quorum && live_voters(m, n) < majority(n)
                   ? TETHER_ELECTION_NO_QUORUM
                   : TETHER_ELECTION_FOLLOWER;
    if (*outcome != TETHER_ELECTION_FOLLOWER) {
        nvec_del(&m->cands, n);
        cand_clear(n);
        return 0;
    }
    n->cand = 1;
    n->own_dirty = 1;
    n->quiet = 1;
    touch(m, n, 1);
    finish(m);
    n->quiet = 0;
    if (n->state == ST_LEAD) {
        *outcome = TETHER_ELECTION_LEADER;
        *fence = n->lead;
    }
    return 0;
}

int tether_election_resign(tether_election_t *m, const uint8_t *name,
                           size_t nlen)
{
    ename_t *n = m != NULL && name != NULL ? name_find(m, name, nlen) : NULL;

    if (n == NULL || !n->cand)
        return TETHER_ENOTFOUND;
    step_down(m, n, 0);
    nvec_del(&m->cands, n);
    cand_clear(n);
    n->own_dirty = 1;
    touch(m, n, 0);
    finish(m);
    return 0;
}

/* -------------------------------------------------------------- readers */

static int leads_now(const view_t *v, uint64_t now_ms)
{
    return v->leading && (v->lease_until == 0 || now_ms < v->lease_until);
}

const tether_election_name_t *tether_election_find(const tether_election_t *m,
                                                   const uint8_t *name,
                                                   size_t nlen)
{
    return name_find(m, name, nlen);
}

int tether_election_name_fence(const tether_election_name_t *n,
                               uint64_t (*clock)(const void *),
                               const void *clock_ctx, uint64_t *fence)
{
    const pub_t *p = &n->pub;
    uint64_t s, f, until;
    uint32_t leading, noq;

    do {
        s = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
        f = __atomic_load_n(&p->fence, __ATOMIC_RELAXED);
        until = __atomic_load_n(&p->lease_until, __ATOMIC_RELAXED);
        leading = __atomic_load_n(&p->leading, __ATOMIC_RELAXED);
        noq = __atomic_load_n(&p->no_quorum, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
    } while ((s & 1) != 0 || __atomic_load_n(&p->seq, __ATOMIC_RELAXED) != s);
    if (leading && (until == 0 || clock(clock_ctx) < until)) {
        if (fence != NULL)
            *fence = f;
        return TETHER_ELECTION_LEADER;
    }
    return noq ? TETHER_ELECTION_NO_QUORUM : TETHER_ELECTION_FOLLOWER;
}

/* A clock that tells *ctx. */
static uint64_t fixed_clock(const void *ctx)
{
    return *(const uint64_t *)ctx;
}

int tether_election_fence(const tether_election_t *m, const uint8_t *name,
                          size_t nlen, uint64_t now_ms, uint64_t *fence)
{
    const ename_t *n = name_find(m, name, nlen);

    return n == NULL
               ? TETHER_ELECTION_FOLLOWER
               : tether_election_name_fence(n, fixed_clock, &now_ms, fence);
}

int tether_election_leader(const tether_election_t *m, const uint8_t *name,
                           size_t nlen, uint64_t now_ms,
                           char node[TETHER_NODE_NAME_MAX + 1], uint8_t *cand,
                           size_t cap, size_t *clen, uint64_t *fence)
{
    const ename_t *n = name_find(m, name, nlen);
    const uint8_t *pid;
    size_t plen;

    if (n == NULL)
        return TETHER_ENOTFOUND;
    if (leads_now(&n->view, now_ms)) {
        if (node != NULL)
            memcpy(node, m->self, TETHER_NODE_NAME_MAX + 1);
        pid = n->view.opid;
        plen = n->view.oplen;
        if (fence != NULL)
            *fence = n->view.fence;
    } else if (n->view.has_leader) {
        if (node != NULL)
            memcpy(node, n->view.leader, TETHER_NODE_NAME_MAX + 1);
        pid = n->view.lpid;
        plen = n->view.lplen;
        if (fence != NULL)
            *fence = n->view.leader_fence;
    } else {
        return TETHER_ENOTFOUND;
    }
    if (clen != NULL)
        *clen = plen;
    if (cand != NULL) {
        if (plen > cap)
            return TETHER_ETOOBIG;
        if (plen > 0)
            memcpy(cand, pid, plen);
    }
    return 0;
}

size_t tether_election_candidates(const tether_election_t *m,
                                  const uint8_t *name, size_t nlen,
                                  tether_election_candidate_t *out, size_t cap)
{
    const ename_t *n = name_find(m, name, nlen);
    size_t k;

    if (n == NULL)
        return 0;
    for (k = 0; out != NULL && k < n->view.ncands && k < cap; k++) {
        memcpy(out[k].node, n->view.cands[k].node, sizeof out[k].node);
        out[k].priority = n->view.cands[k].prio;
    }
    return n->view.ncands;
}

uint64_t tether_election_lease_until(const tether_election_t *m,
                                     const uint8_t *name, size_t nlen,
                                     uint64_t *since)
{
    const ename_t *n = name_find(m, name, nlen);

    if (n == NULL || !n->quorum || n->state != ST_LEAD)
        return 0;
    if (since != NULL)
        *since = n->led_since;
    return n->lease_until;
}

void tether__election_describe(const tether_election_t *m, const uint8_t *name,
                               size_t nlen, char *buf, size_t cap)
{
    const ename_t *n = name_find(m, name, nlen);
    size_t off = 0;
    int w;

#define PUT(...)                                                               \
    do {                                                                       \
        w = snprintf(buf + off, cap - off, __VA_ARGS__);                       \
        if (w < 0 || (size_t)w >= cap - off)                                   \
            return;                                                            \
        off += (size_t)w;                                                      \
    } while (0)
    buf[0] = '\0';
    if (n == NULL) {
        PUT("unknown name");
        return;
    }
    PUT("cand %d prio %lld state %d claim %llu lead %llu remint %d seen "
        "%llu/%s other %llu term %llx lease %llu | ",
        n->cand, (long long)n->prio, n->state, (unsigned long long)n->claim,
        (unsigned long long)n->lead, n->remint, (unsigned long long)n->seen.v,
        m->owners[n->seen.by].name, (unsigned long long)n->other,
        (unsigned long long)n->term, (unsigned long long)n->lease_until);
    for (size_t o = 1; o < m->nowners; o++)
        if (m->owners[o].live)
            PUT("%s%s ", m->owners[o].name,
                m->owners[o].synced ? "" : "(unsynced)");
    PUT("| ");
    for (size_t i = 0; i < n->nrecs; i++) {
        const rec_t *r = &n->recs[i];
        PUT("%s: f%u p%lld c%llu l%llu s%llu/%s; ", m->owners[r->owner].name,
            r->flags, (long long)r->prio, (unsigned long long)r->claim,
            (unsigned long long)r->lead, (unsigned long long)r->seen.v,
            m->owners[r->seen.by].name);
    }
    if (n->v_active)
        PUT("| vote %s until %llu", m->owners[n->v_holder].name,
            (unsigned long long)n->v_until);
#undef PUT
}

const tether_election_stats_t *tether_election_stats(const tether_election_t *m)
{
    return &m->stats;
}

void tether_election_stats_list(
    const tether_election_stats_t *st,
    tether_election_stat_t out[TETHER_ELECTION_STATS_N])
{
#define STAT(f)                                                                \
    {                                                                          \
#f, offsetof(tether_election_stats_t, f)                               \
    }
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        STAT(names),      STAT(claims),     STAT(elected),    STAT(revoked),
        STAT(remints),    STAT(lease_lost), STAT(syncs_sent), STAT(syncs_recv),
        STAT(pulls_sent), STAT(asks_sent),  STAT(grants),     STAT(refusals),
        STAT(bad_msgs),   STAT(stale_msgs), STAT(dropped),
    };
#undef STAT
    _Static_assert(sizeof fields / sizeof fields[0] == TETHER_ELECTION_STATS_N,
                   "every counter is listed");
    _Static_assert(sizeof(tether_election_stats_t) ==
                       TETHER_ELECTION_STATS_N * sizeof(uint64_t),
                   "every counter is a uint64_t and listed");

    for (size_t i = 0; i < TETHER_ELECTION_STATS_N; i++) {
        out[i].name = fields[i].name;
        memcpy(&out[i].value, (const char *)st + fields[i].off,
               sizeof out[i].value);
    }
}

/* ---------------------------------------------------------- lifecycle */

static void module_free(void *ctx)
{
    tether_election_t *m = ctx;

    for (size_t b = 0; b < BUCKETS; b++) {
        ename_t *n = m->buckets[b];
        while (n != NULL) {
            ename_t *next = n->next;
            for (size_t i = 0; i < n->nrecs; i++)
                free(n->recs[i].pid);
            free(n->recs);
            cand_clear(n);
            free(n->view.lpid);
            free(n->view.opid);
            free(n->view.cands);
            free(n->key);
            free(n);
            n = next;
        }
    }
    free(m->touched.v);
    free(m->cands.v);
    free(m->owners);
    free(m);
}

int tether_election_new(const tether_election_config_t *cfg,
                        tether_engine_t *eng, tether_election_t **out)
{
    tether_engine_module_t mod = {
        .name = "election",
        .type = TETHER_MSG_ELECTION,
        .on_message = on_message,
        .on_session_up = on_session_up,
        .on_member = on_member,
        .on_tick = on_tick,
        .next_deadline = next_deadline,
        .on_members_changed = on_members_changed,
        .free = module_free,
    };
    tether_election_t *m;
    int rc;

    if (!TETHER__MODULE_ARGS_OK(cfg, eng, out))
        return TETHER_EINVAL;
    m = calloc(1, sizeof *m);
    if (m == NULL)
        return TETHER_ENOMEM;
    m->cfg = *cfg;
    if (m->cfg.lease_ms == 0)
        m->cfg.lease_ms = TETHER_ELECTION_DEFAULT_LEASE_MS;
    if (m->cfg.round_ms == 0)
        m->cfg.round_ms = TETHER_ELECTION_DEFAULT_ROUND_MS;
    m->eng = eng;
    memcpy(m->self, tether_engine_name(eng),
           strlen(tether_engine_name(eng)) + 1);
    rc = tether__module_register(
        eng, &mod, m, owner_get(m, m->self) == (int)SELF ? 0 : TETHER_ENOMEM);
    if (rc == 0)
        *out = m;
    return rc;
}
