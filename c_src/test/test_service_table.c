/*
 * Criterion suite for core/service_table.c, the cluster service table
 * (and through it core/owner_table.c): argument and bound checks,
 * instances seen on every node, replacement on re-registration, instances
 * dropped with their node and restored by a full sync when it comes back,
 * lost messages repaired by digests and pulls, stale and duplicate writes
 * ordered by their stamps, a restarted node's old instances dropped by its
 * restart notice, bad messages from an authenticated peer counted and
 * ignored (also under random mutation of valid ones), and the SERVICE
 * actions handed to the shell. Engines talk through test/harness.h, whose
 * pump hands the actions to a recorder here.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/codec.h"
#include "core/service_table.h"
#include "test/harness.h"

#define EV_MAX   512
#define TERM_MAX 256

typedef struct svc_ev {
    int up;
    long name;
    char node[TETHER_NODE_NAME_MAX + 1];
} svc_ev_t;

typedef struct svc_h {
    harness_t h;
    tether_svctab_t *t[H_MAX];
    svc_ev_t ev[H_MAX][EV_MAX];
    int nev[H_MAX];
} svc_h_t;

/* ------------------------------------------------------------- terms */

/* A name {svc, K} as ETF into buf. */
static size_t name_term(uint8_t *buf, long k)
{
    ei_x_buff x;
    size_t n;

    cr_assert_eq(ei_x_new_with_version(&x), 0);
    cr_assert_eq(ei_x_encode_tuple_header(&x, 2), 0);
    cr_assert_eq(ei_x_encode_atom(&x, "svc"), 0);
    cr_assert_eq(ei_x_encode_long(&x, k), 0);
    n = (size_t)x.index;
    cr_assert_leq(n, TERM_MAX);
    memcpy(buf, x.buff, n);
    ei_x_free(&x);
    return n;
}

/* A pid <node.num.0> as ETF into buf. */
static size_t pid_term(uint8_t *buf, const char *node, unsigned num)
{
    erlang_pid p;
    ei_x_buff x;
    size_t n;

    memset(&p, 0, sizeof p);
    snprintf(p.node, sizeof p.node, "%s", node);
    p.num = num;
    p.creation = 1;
    cr_assert_eq(ei_x_new_with_version(&x), 0);
    cr_assert_eq(ei_x_encode_pid(&x, &p), 0);
    n = (size_t)x.index;
    cr_assert_leq(n, TERM_MAX);
    memcpy(buf, x.buff, n);
    ei_x_free(&x);
    return n;
}

/* A meta {meta, V} as ETF into buf. */
static size_t meta_term(uint8_t *buf, long v)
{
    ei_x_buff x;
    size_t n;

    cr_assert_eq(ei_x_new_with_version(&x), 0);
    cr_assert_eq(ei_x_encode_tuple_header(&x, 2), 0);
    cr_assert_eq(ei_x_encode_atom(&x, "meta"), 0);
    cr_assert_eq(ei_x_encode_long(&x, v), 0);
    n = (size_t)x.index;
    memcpy(buf, x.buff, n);
    ei_x_free(&x);
    return n;
}

/* The K of a {Tag, K} term, or -1. */
static long term_k(const uint8_t *b)
{
    char atom[MAXATOMLEN_UTF8];
    int idx = 0, v, ar;
    long k;

    if (ei_decode_version((const char *)b, &idx, &v) < 0 ||
        ei_decode_tuple_header((const char *)b, &idx, &ar) < 0 || ar != 2 ||
        ei_decode_atom((const char *)b, &idx, atom) < 0 ||
        ei_decode_long((const char *)b, &idx, &k) < 0)
        return -1;
    return k;
}

/* The number of a pid term, or -1. */
static long pid_num(const uint8_t *b)
{
    erlang_pid p;
    int idx = 0, v;

    if (ei_decode_version((const char *)b, &idx, &v) < 0 ||
        ei_decode_pid((const char *)b, &idx, &p) < 0)
        return -1;
    return (long)p.num;
}

/* ------------------------------------------------------------ harness */

/* harness_t's on_action: records the SERVICE actions of node i. */
static void on_action(void *ctx, int i, const tether_action_t *a)
{
    svc_h_t *x = ctx;
    svc_ev_t *e;

    if (a->kind != TETHER_ACT_SERVICE)
        return;
    cr_assert_eq(tether__etf_validate((const char *)a->u.service.name.ptr,
                                      a->u.service.name.len),
                 0);
    cr_assert_lt(x->nev[i], EV_MAX);
    e = &x->ev[i][x->nev[i]++];
    e->up = a->u.service.up;
    e->name = term_k(a->u.service.name.ptr);
    memcpy(e->node, a->peer, sizeof e->node);
}

static void pump(svc_h_t *x)
{
    h_pump(&x->h);
}

static void run(svc_h_t *x, uint64_t ms)
{
    h_run(&x->h, ms);
}

static void attach(svc_h_t *x, int i)
{
    tether_svctab_config_t cfg;

    tether_svctab_config_default(&cfg);
    cfg.digest_ms = 100;
    cr_assert_eq(tether_svctab_new(&cfg, x->h.e[i], &x->t[i]), 0);
}

/* Starts n engines whose service events x records (no tables yet). */
static void init(svc_h_t *x, int n)
{
    memset(x, 0, sizeof *x);
    h_init(&x->h, n);
    x->h.on_action = on_action;
    x->h.action_ctx = x;
    h_start_all(&x->h);
}

static void start(svc_h_t *x, int n)
{
    init(x, n);
    for (int i = 0; i < n; i++)
        attach(x, i);
    h_join_all(&x->h);
}

static void stop(svc_h_t *x)
{
    h_free(&x->h); /* the tables go with their engines */
}

/* Registers {svc, name} on node i with pid <node_i.pid> and {meta, meta}. */
static int reg(svc_h_t *x, int i, long name, unsigned pid, long meta)
{
    uint8_t nb[TERM_MAX], pb[TERM_MAX], mb[TERM_MAX];
    size_t nl = name_term(nb, name), pl = pid_term(pb, x->h.names[i], pid),
           ml = meta_term(mb, meta);

    return tether_svctab_register(x->t[i], nb, nl, pb, pl, mb, ml);
}

static int unreg(svc_h_t *x, int i, long name)
{
    uint8_t nb[TERM_MAX];
    size_t nl = name_term(nb, name);

    return tether_svctab_unregister(x->t[i], nb, nl);
}

/* What a lookup saw: per owner index, the pid number and meta (-1: none). */
typedef struct seen {
    svc_h_t *x;
    long pid[H_MAX], meta[H_MAX];
    int n;
} seen_t;

static void seen_visit(void *ctx, const uint8_t *name, size_t nlen,
                       const char *owner, const uint8_t *pid, size_t plen,
                       const uint8_t *meta, size_t mlen)
{
    seen_t *s = ctx;
    int o = h_index(&s->x->h, owner);

    (void)name;
    (void)nlen;
    (void)plen;
    (void)mlen;
    cr_assert_geq(o, 0, "owner %s", owner);
    cr_assert_eq(s->pid[o], -1, "one instance per owner");
    s->pid[o] = pid_num(pid);
    s->meta[o] = term_k(meta);
    s->n++;
}

/* Looks {svc, name} up on node i. */
static seen_t look(svc_h_t *x, int i, long name)
{
    uint8_t nb[TERM_MAX];
    size_t nl = name_term(nb, name), n;
    seen_t s;

    memset(&s, 0, sizeof s);
    s.x = x;
    for (int k = 0; k < H_MAX; k++)
        s.pid[k] = s.meta[k] = -1;
    n = tether_svctab_lookup(x->t[i], nb, nl, seen_visit, &s);
    cr_assert_eq(n, (size_t)s.n);
    return s;
}

static void assert_same_tables(svc_h_t *x, int n)
{
    for (int i = 1; i < n; i++)
        if (x->t[i] != NULL && x->h.e[i] != NULL)
            cr_assert_eq(
                tether_svctab_digest(x->t[i]), tether_svctab_digest(x->t[0]),
                "tables of %s and %s differ", x->h.names[i], x->h.names[0]);
}

/* The number of events of node i matching (up, name, node). */
static int count_ev(svc_h_t *x, int i, int up, long name, const char *node)
{
    int c = 0;

    for (int k = 0; k < x->nev[i]; k++)
        if (x->ev[i][k].up == up && x->ev[i][k].name == name &&
            strcmp(x->ev[i][k].node, node) == 0)
            c++;
    return c;
}

/* ------------------------------------------------------------- local */

Test(service, config_and_arguments_are_checked)
{
    svc_h_t x;
    tether_svctab_config_t cfg;
    tether_svctab_t *t = NULL;
    uint8_t nb[TERM_MAX], pb[TERM_MAX], mb[TERM_MAX], *big;
    size_t nl, pl, ml;

    start(&x, 1);
    tether_svctab_config_default(&cfg);
    cr_assert_eq(cfg.digest_ms, TETHER_SVC_DEFAULT_DIGEST);
    cr_assert_eq(tether_svctab_new(&cfg, x.h.e[0], &t), TETHER_EEXIST,
                 "one table per engine");
    cr_assert_eq(tether_svctab_new(NULL, x.h.e[0], &t), TETHER_EINVAL);
    cr_assert_eq(tether_svctab_new(&cfg, NULL, &t), TETHER_EINVAL);
    cfg.wlock = NULL;
    cfg.wunlock = (void (*)(void *))free;
    cr_assert_eq(tether_svctab_new(&cfg, x.h.e[0], &t), TETHER_EINVAL);

    nl = name_term(nb, 1);
    pl = pid_term(pb, "a@test", 5);
    ml = meta_term(mb, 7);
    cr_assert_eq(tether_svctab_register(x.t[0], nb, 0, pb, pl, mb, ml),
                 TETHER_EINVAL, "empty name");
    cr_assert_eq(tether_svctab_register(x.t[0], nb, nl, pb, 0, mb, ml),
                 TETHER_EINVAL, "empty pid");
    cr_assert_eq(tether_svctab_register(x.t[0], nb, nl, pb, pl, mb, 0),
                 TETHER_EINVAL, "empty meta");
    cr_assert_eq(tether_svctab_register(x.t[0], nb, nl, mb, ml, mb, ml),
                 TETHER_EINVAL, "a meta is no pid");
    cr_assert_eq(tether_svctab_register(x.t[0], nb, nl - 1, pb, pl, mb, ml),
                 TETHER_EINVAL, "a truncated name");
    cr_assert_eq(tether_svctab_register(x.t[0], nb, nl, pb, pl, mb, ml - 1),
                 TETHER_EINVAL, "a truncated meta");
    cr_assert_eq(tether_svctab_register(NULL, nb, nl, pb, pl, mb, ml),
                 TETHER_EINVAL);
    big = calloc(1, TETHER_SVC_META_MAX + 16);
    cr_assert_not_null(big);
    cr_assert_eq(tether_svctab_register(x.t[0], big, TETHER_SVC_NAME_MAX + 1,
                                        pb, pl, mb, ml),
                 TETHER_ETOOBIG);
    cr_assert_eq(tether_svctab_register(x.t[0], nb, nl, big,
                                        TETHER_SVC_PID_MAX + 1, mb, ml),
                 TETHER_ETOOBIG);
    cr_assert_eq(tether_svctab_register(x.t[0], nb, nl, pb, pl, big,
                                        TETHER_SVC_META_MAX + 1),
                 TETHER_ETOOBIG);
    /* A meta of exactly the bound: a binary filling it. */
    {
        size_t blen = TETHER_SVC_META_MAX - 6;
        big[0] = TETHER_ETF_VERSION;
        big[1] = ERL_BINARY_EXT;
        big[2] = (uint8_t)(blen >> 24);
        big[3] = (uint8_t)(blen >> 16);
        big[4] = (uint8_t)(blen >> 8);
        big[5] = (uint8_t)blen;
        cr_assert_eq(tether_svctab_register(x.t[0], nb, nl, pb, pl, big,
                                            TETHER_SVC_META_MAX),
                     0);
    }
    free(big);
    cr_assert_eq(tether_svctab_count(x.t[0]), 1);
    cr_assert_eq(unreg(&x, 0, 2), TETHER_ENOTFOUND);
    cr_assert_eq(tether_svctab_unregister(x.t[0], nb, 0), TETHER_ENOTFOUND);
    cr_assert_eq(unreg(&x, 0, 1), 0);
    cr_assert_eq(unreg(&x, 0, 1), TETHER_ENOTFOUND);
    cr_assert_eq(tether_svctab_count(x.t[0]), 0);
    cr_assert_eq(tether_svctab_digest(x.t[0]), 0, "an empty table");
    stop(&x);
}

Test(service, own_set_is_bounded)
{
    svc_h_t x;

    start(&x, 1);
    for (long k = 0; k < TETHER_SVC_OWN_MAX; k++)
        cr_assert_eq(reg(&x, 0, k, 1, 0), 0);
    cr_assert_eq(reg(&x, 0, TETHER_SVC_OWN_MAX, 1, 0), TETHER_ETOOBIG);
    cr_assert_eq(reg(&x, 0, 5, 2, 0), 0, "replacing is no new instance");
    cr_assert_eq(tether_svctab_count(x.t[0]), TETHER_SVC_OWN_MAX);
    cr_assert_eq(unreg(&x, 0, 7), 0);
    cr_assert_eq(reg(&x, 0, TETHER_SVC_OWN_MAX, 1, 0), 0);
    stop(&x);
}

/* ------------------------------------------------------------ cluster */

Test(service, instances_are_seen_everywhere_and_removed_everywhere)
{
    svc_h_t x;
    uint8_t nb[TERM_MAX];
    size_t nl = name_term(nb, 1);
    seen_t s;

    start(&x, 3);
    cr_assert_eq(reg(&x, 0, 1, 10, 100), 0);
    cr_assert_eq(reg(&x, 2, 1, 30, 300), 0);
    cr_assert_eq(reg(&x, 1, 2, 21, 201), 0);
    pump(&x);
    for (int i = 0; i < 3; i++) {
        s = look(&x, i, 1);
        cr_assert_eq(s.n, 2, "node %d", i);
        cr_assert_eq(s.pid[0], 10);
        cr_assert_eq(s.meta[0], 100);
        cr_assert_eq(s.pid[2], 30);
        cr_assert_eq(s.meta[2], 300);
        cr_assert_eq(s.pid[1], -1);
        cr_assert_eq(look(&x, i, 2).pid[1], 21);
        cr_assert_eq(look(&x, i, 3).n, 0);
        cr_assert_eq(tether_svctab_count(x.t[i]), 3);
    }
    assert_same_tables(&x, 3);
    /* Our own instance only. */
    cr_assert_eq(tether_svctab_local(x.t[1], nb, nl, NULL, NULL),
                 TETHER_ENOTFOUND);
    memset(&s, 0, sizeof s);
    s.x = &x;
    for (int k = 0; k < H_MAX; k++)
        s.pid[k] = s.meta[k] = -1;
    cr_assert_eq(tether_svctab_local(x.t[2], nb, nl, seen_visit, &s), 0);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.pid[2], 30);
    /* Only the owner removes its instance. */
    cr_assert_eq(unreg(&x, 1, 1), TETHER_ENOTFOUND);
    cr_assert_eq(unreg(&x, 0, 1), 0);
    pump(&x);
    for (int i = 0; i < 3; i++) {
        s = look(&x, i, 1);
        cr_assert_eq(s.n, 1);
        cr_assert_eq(s.pid[2], 30);
    }
    cr_assert_eq(unreg(&x, 2, 1), 0);
    pump(&x);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(look(&x, i, 1).n, 0);
        cr_assert_eq(tether_svctab_count(x.t[i]), 1);
    }
    assert_same_tables(&x, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tether_svctab_stats(x.t[i])->bad_msgs, 0);
    stop(&x);
}

/* Counts names (foreach-names visitor). */
static void count_names(void *ctx, const uint8_t *name, size_t nlen,
                        size_t instances)
{
    size_t *c = ctx;

    (void)name;
    (void)nlen;
    cr_assert_gt(instances, 0);
    c[0]++;
    c[1] += instances;
}

static void count_all(void *ctx, const uint8_t *name, size_t nlen,
                      const char *owner, const uint8_t *pid, size_t plen,
                      const uint8_t *meta, size_t mlen)
{
    size_t *c = ctx;

    (void)name, (void)nlen, (void)owner, (void)pid, (void)plen;
    (void)meta, (void)mlen;
    (*c)++;
}

Test(service, many_services_converge)
{
    svc_h_t x;
    size_t c[2] = {0, 0}, all = 0;

    start(&x, 3);
    for (long k = 0; k < 300; k++)
        cr_assert_eq(reg(&x, (int)(k % 3), k % 200, (unsigned)k, k), 0);
    run(&x, 300);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tether_svctab_count(x.t[i]), 300);
    assert_same_tables(&x, 3);
    tether_svctab_names(x.t[1], count_names, c);
    cr_assert_eq(c[0], 200, "distinct names");
    cr_assert_eq(c[1], 300);
    tether_svctab_foreach(x.t[2], count_all, &all);
    cr_assert_eq(all, 300);
    for (long k = 0; k < 300; k += 2)
        cr_assert_eq(unreg(&x, (int)(k % 3), k % 200), 0);
    run(&x, 300);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tether_svctab_count(x.t[i]), 150);
    assert_same_tables(&x, 3);
    stop(&x);
}

Test(service, registering_again_replaces_pid_and_meta)
{
    svc_h_t x;
    seen_t s;
    uint64_t d;

    start(&x, 2);
    cr_assert_eq(reg(&x, 0, 1, 10, 100), 0);
    pump(&x);
    d = tether_svctab_digest(x.t[0]);
    cr_assert_eq(reg(&x, 0, 1, 10, 100), 0, "the same again");
    cr_assert_eq(tether_svctab_digest(x.t[0]), d, "changes nothing");
    cr_assert_eq(tether_svctab_stats(x.t[0])->replaced, 0);
    cr_assert_eq(reg(&x, 0, 1, 11, 100), 0);
    pump(&x);
    s = look(&x, 1, 1);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.pid[0], 11);
    cr_assert_eq(reg(&x, 0, 1, 11, 101), 0);
    pump(&x);
    s = look(&x, 1, 1);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(s.meta[0], 101);
    cr_assert_eq(tether_svctab_count(x.t[1]), 1);
    cr_assert_eq(tether_svctab_stats(x.t[1])->replaced, 2);
    assert_same_tables(&x, 2);
    stop(&x);
}

Test(service, instances_of_a_node_go_with_it)
{
    svc_h_t x;

    start(&x, 3);
    cr_assert_eq(reg(&x, 2, 1, 30, 0), 0);
    cr_assert_eq(reg(&x, 2, 2, 31, 0), 0);
    cr_assert_eq(reg(&x, 1, 1, 20, 0), 0);
    pump(&x);
    cr_assert_eq(look(&x, 0, 1).n, 2);
    /* c crashes: its connections drop, its instances go at once. */
    h_cut(&x.h, 2, 0);
    h_cut(&x.h, 2, 1);
    pump(&x);
    for (int i = 0; i < 2; i++) {
        seen_t s = look(&x, i, 1);
        cr_assert_eq(s.n, 1, "node %d", i);
        cr_assert_eq(s.pid[1], 20);
        cr_assert_eq(look(&x, i, 2).n, 0);
        cr_assert_eq(count_ev(&x, i, 0, 1, "c@test"), 1);
        cr_assert_eq(count_ev(&x, i, 0, 2, "c@test"), 1);
    }
    /* b leaves. */
    cr_assert_eq(tether_engine_leave(x.h.e[1]), 0);
    run(&x, 200);
    cr_assert_eq(look(&x, 0, 1).pid[1], -1);
    cr_assert_eq(count_ev(&x, 0, 0, 1, "b@test"), 1);
    /* c, still running, reconnected meanwhile: back with its own. */
    cr_assert_eq(look(&x, 0, 1).pid[2], 30);
    cr_assert_eq(look(&x, 0, 2).pid[2], 31);
    cr_assert_eq(tether_svctab_count(x.t[0]), 2);
    cr_assert_eq(reg(&x, 1, 3, 1, 0), TETHER_EINVAL, "b left");
    stop(&x);
}

Test(service, a_member_back_from_a_drop_partition_is_synced)
{
    svc_h_t x;
    const char *ga[] = {"a@test"}, *gb[] = {"b@test", "c@test"};
    uint64_t ref;

    start(&x, 3);
    cr_assert_eq(reg(&x, 0, 1, 10, 0), 0);
    cr_assert_eq(reg(&x, 1, 2, 20, 0), 0);
    run(&x, 100);
    cr_assert_eq(tether_engine_partition(x.h.e[2], ga, 1, gb, 2,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    run(&x, 200);
    cr_assert_eq(look(&x, 0, 2).n, 0, "b's instance gone from a");
    cr_assert_eq(look(&x, 2, 1).n, 0, "a's instance gone from c");
    /* Changes on both sides while apart. */
    cr_assert_eq(reg(&x, 0, 3, 11, 0), 0);
    cr_assert_eq(unreg(&x, 1, 2), 0);
    cr_assert_eq(reg(&x, 2, 4, 40, 0), 0);
    run(&x, 200);
    cr_assert_eq(tether_engine_heal(x.h.e[1], ref), 0);
    run(&x, 1000);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(look(&x, i, 1).pid[0], 10);
        cr_assert_eq(look(&x, i, 2).n, 0);
        cr_assert_eq(look(&x, i, 3).pid[0], 11);
        cr_assert_eq(look(&x, i, 4).pid[2], 40);
        cr_assert_eq(tether_svctab_count(x.t[i]), 3);
    }
    assert_same_tables(&x, 3);
    stop(&x);
}

Test(service, adds_across_a_defer_partition_apply_in_order_after_heal)
{
    svc_h_t x;
    const char *ga[] = {"a@test"}, *gb[] = {"b@test"};
    uint64_t ref;

    start(&x, 2);
    cr_assert_eq(tether_engine_partition(x.h.e[0], ga, 1, gb, 1,
                                         TETHER_PARTITION_DEFER, &ref),
                 0);
    run(&x, 100);
    for (long k = 0; k < 5; k++)
        cr_assert_eq(reg(&x, 0, k, (unsigned)k, 0), 0);
    cr_assert_eq(unreg(&x, 0, 2), 0);
    run(&x, 200);
    cr_assert_eq(tether_svctab_count(x.t[1]), 0, "held while deferred");
    cr_assert_eq(tether_engine_heal(x.h.e[0], ref), 0);
    run(&x, 500);
    cr_assert_eq(tether_svctab_count(x.t[1]), 4);
    cr_assert_eq(look(&x, 1, 2).n, 0);
    assert_same_tables(&x, 2);
    stop(&x);
}

Test(service, lost_messages_are_repaired_by_digest_and_pull)
{
    svc_h_t x;
    uint64_t pulls;

    start(&x, 3);
    pulls = tether_svctab_stats(x.t[1])->pulls_sent;
    x.h.link[0][1] = 0; /* a's messages to b vanish */
    cr_assert_eq(reg(&x, 0, 1, 10, 0), 0);
    cr_assert_eq(reg(&x, 0, 2, 11, 0), 0);
    pump(&x);
    cr_assert_eq(look(&x, 1, 1).n, 0);
    cr_assert_eq(look(&x, 2, 1).n, 1);
    cr_assert_eq(unreg(&x, 0, 2), 0);
    pump(&x);
    x.h.link[0][1] = 1;
    /* The next add applies at once; a's next digest shows b its copy
     * differs, and b pulls a's whole set. */
    cr_assert_eq(reg(&x, 0, 3, 12, 0), 0);
    pump(&x);
    cr_assert_eq(look(&x, 1, 3).pid[0], 12);
    run(&x, 300);
    cr_assert_gt(tether_svctab_stats(x.t[1])->pulls_sent, pulls);
    cr_assert_eq(look(&x, 1, 1).pid[0], 10, "the sync brought it");
    cr_assert_eq(look(&x, 1, 2).n, 0);
    cr_assert_eq(look(&x, 1, 3).pid[0], 12);
    assert_same_tables(&x, 3);

    /* Lost with nothing after: the digest finds it. */
    x.h.link[0][1] = 0;
    cr_assert_eq(unreg(&x, 0, 1), 0);
    pump(&x);
    x.h.link[0][1] = 1;
    cr_assert_eq(look(&x, 1, 1).n, 1);
    run(&x, 300);
    cr_assert_eq(look(&x, 1, 1).n, 0);
    assert_same_tables(&x, 3);
    stop(&x);
}

/* Sends one service message from node `from` to node `to`. */
static void send_raw(svc_h_t *x, int from, int to, ei_x_buff *m)
{
    h_send_etf(&x->h, from, to, TETHER_MSG_SERVICE, m);
}

/* Encodes Stamp, Flags 0, {svc, name}, a pid of node and {meta, meta}:
 * one entry as the owner table sends it (core/owner_table.h). */
static void wire(ei_x_buff *m, uint64_t stamp, long name, const char *node,
                 unsigned pid, long meta)
{
    uint8_t nb[TERM_MAX], pb[TERM_MAX], mb[TERM_MAX];
    size_t nl = name_term(nb, name), pl = pid_term(pb, node, pid),
           ml = meta_term(mb, meta);

    ei_x_encode_ulonglong(m, stamp);
    ei_x_encode_ulong(m, 0);
    ei_x_encode_binary(m, nb, (long)nl);
    ei_x_encode_binary(m, pb, (long)pl);
    ei_x_encode_binary(m, mb, (long)ml);
}

/* {svc_add, Stamp, 0, Name, Pid, Meta}. */
static void add_msg(ei_x_buff *m, uint64_t stamp, long name, const char *node,
                    unsigned pid, long meta)
{
    h_etf_begin(m, 6, "svc_add");
    wire(m, stamp, name, node, pid, meta);
}

/* A stamp far above any the engines issue in a test (HLC of 2020). */
#define STAMP_HIGH (UINT64_C(1577836800000) << 16)

Test(service, writes_are_ordered_by_their_stamps)
{
    svc_h_t x;
    ei_x_buff m;
    uint64_t pulls;
    uint8_t n9[TERM_MAX];
    size_t n9l = name_term(n9, 9);

    start(&x, 2);
    cr_assert_eq(reg(&x, 0, 1, 10, 0), 0);
    pump(&x);
    pulls = tether_svctab_stats(x.t[1])->pulls_sent;
    /* A newer write of a's (as if from a future a): applied. */
    add_msg(&m, STAMP_HIGH + 2, 9, "a@test", 90, 0);
    send_raw(&x, 0, 1, &m);
    cr_assert_eq(look(&x, 1, 9).pid[0], 90);
    /* An older write of the same key: ignored, as is a duplicate. */
    add_msg(&m, STAMP_HIGH + 1, 9, "a@test", 91, 0);
    send_raw(&x, 0, 1, &m);
    add_msg(&m, STAMP_HIGH + 2, 9, "a@test", 90, 0);
    send_raw(&x, 0, 1, &m);
    cr_assert_eq(look(&x, 1, 9).pid[0], 90);
    cr_assert_eq(tether_svctab_stats(x.t[1])->replaced, 0);
    /* A removal older than the entry held leaves it; a newer one takes
     * it out. */
    h_etf_begin(&m, 3, "svc_del");
    ei_x_encode_ulonglong(&m, STAMP_HIGH + 1);
    ei_x_encode_binary(&m, n9, (long)n9l);
    send_raw(&x, 0, 1, &m);
    cr_assert_eq(look(&x, 1, 9).n, 1);
    h_etf_begin(&m, 3, "svc_del");
    ei_x_encode_ulonglong(&m, STAMP_HIGH + 3);
    ei_x_encode_binary(&m, n9, (long)n9l);
    send_raw(&x, 0, 1, &m);
    cr_assert_eq(look(&x, 1, 9).n, 0);
    cr_assert_eq(tether_svctab_stats(x.t[1])->bad_msgs, 0);
    cr_assert_eq(tether_svctab_stats(x.t[1])->pulls_sent, pulls);
    /* a's real set has no {svc, 9}, but b took a newer one: a's digest
     * differs and b pulls a's sync, which puts the real set back. */
    add_msg(&m, STAMP_HIGH + 4, 9, "a@test", 92, 0);
    send_raw(&x, 0, 1, &m);
    run(&x, 300);
    cr_assert_eq(look(&x, 1, 9).n, 0);
    cr_assert_eq(look(&x, 1, 1).pid[0], 10);
    assert_same_tables(&x, 2);
    stop(&x);
}

Test(service, a_valid_sync_replaces_what_a_peer_holds_of_the_sender)
{
    svc_h_t x;
    ei_x_buff m;

    start(&x, 2);
    cr_assert_eq(reg(&x, 0, 1, 10, 0), 0);
    cr_assert_eq(reg(&x, 0, 2, 11, 0), 0);
    pump(&x);
    /* a (claimed by the test) rewrites {svc,2}, then says its whole set
     * is {svc,5} and that {svc,2}. */
    add_msg(&m, STAMP_HIGH + 10, 2, "a@test", 11, 0);
    send_raw(&x, 0, 1, &m);
    cr_assert_eq(count_ev(&x, 1, 1, 2, "a@test"), 2);
    h_etf_begin(&m, 2, "svc_sync");
    ei_x_encode_list_header(&m, 2);
    ei_x_encode_tuple_header(&m, 5);
    wire(&m, STAMP_HIGH, 5, "a@test", 50, 0);
    ei_x_encode_tuple_header(&m, 5);
    wire(&m, STAMP_HIGH + 10, 2, "a@test", 11, 0);
    ei_x_encode_empty_list(&m);
    send_raw(&x, 0, 1, &m);
    cr_assert_eq(look(&x, 1, 5).pid[0], 50);
    cr_assert_eq(look(&x, 1, 1).n, 0);
    cr_assert_eq(look(&x, 1, 2).pid[0], 11);
    cr_assert_eq(count_ev(&x, 1, 0, 1, "a@test"), 1);
    cr_assert_eq(count_ev(&x, 1, 1, 2, "a@test"), 2, "unchanged: no event");
    /* An empty sync empties it. */
    h_etf_begin(&m, 2, "svc_sync");
    ei_x_encode_empty_list(&m);
    send_raw(&x, 0, 1, &m);
    cr_assert_eq(tether_svctab_count(x.t[1]), 0);
    /* Digests then restore a's real set on b. */
    run(&x, 300);
    cr_assert_eq(look(&x, 1, 1).pid[0], 10);
    cr_assert_eq(look(&x, 1, 5).n, 0);
    assert_same_tables(&x, 2);
    stop(&x);
}

Test(service, a_restarted_nodes_old_instances_go_by_its_restart_notice)
{
    svc_h_t x;
    seen_t s;

    start(&x, 2);
    for (long k = 0; k < 4; k++)
        cr_assert_eq(reg(&x, 1, k, (unsigned)k, 0), 0);
    pump(&x);
    cr_assert_eq(tether_svctab_count(x.t[0]), 4);
    /* b restarts as a new incarnation and reconnects before a saw its
     * old connection go (so a never reports b down). */
    x.h.conn[0][1] = x.h.conn[1][0] = 0;
    tether_engine_free(x.h.e[1]);
    x.h.inc[1] = 2;
    h_start(&x.h, 1);
    attach(&x, 1);
    cr_assert_eq(tether_engine_join(x.h.e[1], x.h.names[0]), 0);
    /* Its restart notice ends a's session with the old life, whose
     * instances go; the new set arrives with the new session. */
    cr_assert_eq(reg(&x, 1, 7, 70, 0), 0);
    run(&x, 1000);
    s = look(&x, 0, 7);
    cr_assert_eq(s.pid[1], 70);
    for (long k = 0; k < 4; k++)
        cr_assert_eq(look(&x, 0, k).n, 0, "old instance %ld", k);
    cr_assert_eq(tether_svctab_count(x.t[0]), 1);
    cr_assert_eq(tether_engine_stats(x.h.e[0])->restarts_seen, 1);
    assert_same_tables(&x, 2);
    stop(&x);
}

Test(service, events_go_to_the_shell)
{
    svc_h_t x;

    start(&x, 2);
    cr_assert_eq(reg(&x, 0, 1, 10, 0), 0);
    pump(&x);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(count_ev(&x, i, 1, 1, "a@test"), 1, "node %d", i);
        cr_assert_eq(x.nev[i], 1);
    }
    cr_assert_eq(reg(&x, 0, 1, 11, 0), 0); /* a change is an up */
    pump(&x);
    cr_assert_eq(count_ev(&x, 1, 1, 1, "a@test"), 2);
    cr_assert_eq(unreg(&x, 0, 1), 0);
    pump(&x);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(count_ev(&x, i, 0, 1, "a@test"), 1);
    run(&x, 300); /* digests and syncs tell nothing new */
    cr_assert_eq(x.nev[0], 3);
    cr_assert_eq(x.nev[1], 3);
    stop(&x);
}

Test(service, changes_are_made_under_the_write_lock)
{
    svc_h_t x;
    tether_svctab_config_t cfg;
    h_lock_t lock = {0};
    int before;

    init(&x, 2);
    tether_svctab_config_default(&cfg);
    cfg.wlock = h_wlock;
    cfg.wunlock = h_wunlock;
    cfg.lock_ctx = &lock;
    for (int i = 0; i < 2; i++)
        cr_assert_eq(tether_svctab_new(&cfg, x.h.e[i], &x.t[i]), 0);
    cr_assert_eq(tether_engine_join(x.h.e[1], x.h.names[0]), 0);
    run(&x, 1000);
    before = lock.count;
    cr_assert_eq(reg(&x, 0, 1, 10, 0), 0);
    pump(&x);
    cr_assert_geq(lock.count, before + 2, "insert on a and on b");
    before = lock.count;
    cr_assert_eq(unreg(&x, 0, 1), 0);
    pump(&x);
    cr_assert_geq(lock.count, before + 2);
    cr_assert_eq(lock.depth, 0);
    stop(&x);
}

/* ------------------------------------------------------- bad messages */

Test(service, bad_messages_are_counted_and_change_nothing)
{
    svc_h_t x;
    ei_x_buff m;
    uint8_t *big, nb[TERM_MAX], mb[TERM_MAX], pb[TERM_MAX];
    size_t nl = name_term(nb, 3), ml = meta_term(mb, 0),
           pl = pid_term(pb, "a@test", 3);
    uint64_t bad0, d0, st = STAMP_HIGH;
    int sent = 0;

    big = calloc(1, TETHER_SVC_META_MAX + 16);
    cr_assert_not_null(big);
    start(&x, 2);
    cr_assert_eq(reg(&x, 0, 1, 10, 0), 0);
    pump(&x);
    bad0 = tether_svctab_stats(x.t[1])->bad_msgs;
    d0 = tether_svctab_digest(x.t[1]);

    cr_assert_eq(ei_x_new_with_version(&m), 0); /* not a tuple */
    ei_x_encode_atom(&m, "svc_pull");
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 2, "something_else");
    ei_x_encode_ulonglong(&m, st);
    send_raw(&x, 0, 1, &m), sent++;
    cr_assert_eq(ei_x_new_with_version(&m), 0); /* tag not an atom */
    ei_x_encode_tuple_header(&m, 2);
    ei_x_encode_long(&m, 1);
    ei_x_encode_long(&m, 1);
    send_raw(&x, 0, 1, &m), sent++;
    cr_assert_eq(ei_x_new_with_version(&m), 0); /* empty tuple */
    ei_x_encode_tuple_header(&m, 0);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 5, "svc_add"); /* wrong arity (truncated) */
    ei_x_encode_ulonglong(&m, st);
    ei_x_encode_ulong(&m, 0);
    ei_x_encode_binary(&m, nb, (long)nl);
    ei_x_encode_binary(&m, pb, (long)pl);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 6, "svc_add"); /* stamp not an integer */
    ei_x_encode_atom(&m, "one");
    ei_x_encode_ulong(&m, 0);
    ei_x_encode_binary(&m, nb, (long)nl);
    ei_x_encode_binary(&m, pb, (long)pl);
    ei_x_encode_binary(&m, mb, (long)ml);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 6, "svc_add"); /* negative stamp */
    ei_x_encode_long(&m, -1);
    ei_x_encode_ulong(&m, 0);
    ei_x_encode_binary(&m, nb, (long)nl);
    ei_x_encode_binary(&m, pb, (long)pl);
    ei_x_encode_binary(&m, mb, (long)ml);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 6, "svc_add"); /* flags beyond 32 bits */
    ei_x_encode_ulonglong(&m, st);
    ei_x_encode_ulonglong(&m, UINT64_C(1) << 32);
    ei_x_encode_binary(&m, nb, (long)nl);
    ei_x_encode_binary(&m, pb, (long)pl);
    ei_x_encode_binary(&m, mb, (long)ml);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 6, "svc_add"); /* name not a binary */
    ei_x_encode_ulonglong(&m, st);
    ei_x_encode_ulong(&m, 0);
    ei_x_encode_atom(&m, "name");
    ei_x_encode_binary(&m, pb, (long)pl);
    ei_x_encode_binary(&m, mb, (long)ml);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 6, "svc_add"); /* pid garbage, not a term */
    ei_x_encode_ulonglong(&m, st);
    ei_x_encode_ulong(&m, 0);
    ei_x_encode_binary(&m, nb, (long)nl);
    ei_x_encode_binary(&m, "\x83garbage", 8);
    ei_x_encode_binary(&m, mb, (long)ml);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 6, "svc_add"); /* pid a term but not a pid */
    ei_x_encode_ulonglong(&m, st);
    ei_x_encode_ulong(&m, 0);
    ei_x_encode_binary(&m, nb, (long)nl);
    ei_x_encode_binary(&m, mb, (long)ml);
    ei_x_encode_binary(&m, mb, (long)ml);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 6, "svc_add"); /* empty name */
    ei_x_encode_ulonglong(&m, st);
    ei_x_encode_ulong(&m, 0);
    ei_x_encode_binary(&m, "", 0);
    ei_x_encode_binary(&m, pb, (long)pl);
    ei_x_encode_binary(&m, mb, (long)ml);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 6, "svc_add"); /* oversized name */
    ei_x_encode_ulonglong(&m, st);
    ei_x_encode_ulong(&m, 0);
    ei_x_encode_binary(&m, big, TETHER_SVC_NAME_MAX + 1);
    ei_x_encode_binary(&m, pb, (long)pl);
    ei_x_encode_binary(&m, mb, (long)ml);
    send_raw(&x, 0, 1, &m), sent++;
    {
        /* an oversized meta: a valid term one byte above the bound */
        size_t blen = TETHER_SVC_META_MAX + 1 - 6;
        big[0] = TETHER_ETF_VERSION;
        big[1] = ERL_BINARY_EXT;
        big[2] = (uint8_t)(blen >> 24);
        big[3] = (uint8_t)(blen >> 16);
        big[4] = (uint8_t)(blen >> 8);
        big[5] = (uint8_t)blen;
        h_etf_begin(&m, 6, "svc_add");
        ei_x_encode_ulonglong(&m, st);
        ei_x_encode_ulong(&m, 0);
        ei_x_encode_binary(&m, nb, (long)nl);
        ei_x_encode_binary(&m, pb, (long)pl);
        ei_x_encode_binary(&m, big, TETHER_SVC_META_MAX + 1);
        send_raw(&x, 0, 1, &m), sent++;
        h_etf_begin(&m, 6, "svc_add"); /* meta truncated */
        ei_x_encode_ulonglong(&m, st);
        ei_x_encode_ulong(&m, 0);
        ei_x_encode_binary(&m, nb, (long)nl);
        ei_x_encode_binary(&m, pb, (long)pl);
        ei_x_encode_binary(&m, mb, (long)ml - 1);
        send_raw(&x, 0, 1, &m), sent++;
    }
    h_etf_begin(&m, 3, "svc_del"); /* name not a binary */
    ei_x_encode_ulonglong(&m, st);
    ei_x_encode_atom(&m, "n");
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 3, "svc_del"); /* empty name */
    ei_x_encode_ulonglong(&m, st);
    ei_x_encode_binary(&m, "", 0);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 2, "svc_sync"); /* not a list */
    ei_x_encode_atom(&m, "nope");
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 2, "svc_sync"); /* a string (list of bytes) */
    ei_x_encode_string(&m, "abc");
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 2, "svc_sync"); /* a good element, then a bad one */
    ei_x_encode_list_header(&m, 2);
    ei_x_encode_tuple_header(&m, 5);
    wire(&m, st, 4, "a@test", 40, 0);
    ei_x_encode_tuple_header(&m, 2);
    ei_x_encode_atom(&m, "a");
    ei_x_encode_atom(&m, "b");
    ei_x_encode_empty_list(&m);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 2, "svc_sync"); /* an improper list */
    ei_x_encode_list_header(&m, 1);
    ei_x_encode_tuple_header(&m, 5);
    wire(&m, st, 4, "a@test", 40, 0);
    ei_x_encode_atom(&m, "tail");
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 2, "svc_sync"); /* more entries than an owner may hold */
    ei_x_encode_list_header(&m, TETHER_SVC_OWN_MAX + 1);
    for (int k = 0; k <= TETHER_SVC_OWN_MAX; k++) {
        ei_x_encode_tuple_header(&m, 5);
        wire(&m, st, 4, "a@test", 40, 0);
    }
    ei_x_encode_empty_list(&m);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 3, "svc_sync"); /* wrong arity */
    ei_x_encode_ulonglong(&m, 7);
    ei_x_encode_empty_list(&m);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 3, "svc_digest"); /* count not an integer */
    ei_x_encode_atom(&m, "x");
    ei_x_encode_ulonglong(&m, 1);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 2, "svc_digest"); /* wrong arity */
    ei_x_encode_ulonglong(&m, 1);
    send_raw(&x, 0, 1, &m), sent++;
    h_etf_begin(&m, 2, "svc_pull"); /* wrong arity */
    ei_x_encode_ulonglong(&m, 0);
    send_raw(&x, 0, 1, &m), sent++;

    cr_assert_eq(tether_svctab_stats(x.t[1])->bad_msgs, bad0 + (uint64_t)sent);
    cr_assert_eq(tether_svctab_digest(x.t[1]), d0);
    cr_assert_eq(look(&x, 1, 1).pid[0], 10);
    cr_assert_eq(look(&x, 1, 4).n, 0, "nothing of a bad sync applied");
    /* The table still works. */
    cr_assert_eq(reg(&x, 0, 2, 12, 0), 0);
    pump(&x);
    cr_assert_eq(look(&x, 1, 2).pid[0], 12);
    assert_same_tables(&x, 2);
    free(big);
    stop(&x);
}

Test(service, undecodable_bytes_never_reach_the_table)
{
    svc_h_t x;
    ei_x_buff m;
    uint64_t bad_term, d0;
    static const uint8_t garbage[] = {0x83, 0x68, 0x05, 0x64, 0xff};

    start(&x, 2);
    cr_assert_eq(reg(&x, 0, 1, 10, 0), 0);
    pump(&x);
    bad_term = tether_engine_stats(x.h.e[1])->recv_bad_term;
    d0 = tether_svctab_digest(x.t[1]);
    /* A good add, cut short: the engine refuses it before the module. */
    add_msg(&m, STAMP_HIGH, 3, "a@test", 1, 0);
    m.index -= 3;
    send_raw(&x, 0, 1, &m);
    cr_assert_eq(tether_engine_send(x.h.e[0], "b@test", TETHER_MSG_SERVICE,
                                    garbage, sizeof garbage, 0),
                 0);
    pump(&x);
    cr_assert_eq(tether_engine_stats(x.h.e[1])->recv_bad_term, bad_term + 2);
    cr_assert_eq(tether_svctab_digest(x.t[1]), d0);
    cr_assert_eq(tether_svctab_stats(x.t[1])->bad_msgs, 0);
    stop(&x);
}

Test(service, messages_from_non_members_are_stale)
{
    svc_h_t x;
    ei_x_buff m;
    uint64_t stale;

    /* c has a session with a but never joined: no member. */
    init(&x, 3);
    for (int i = 0; i < 3; i++)
        attach(&x, i);
    cr_assert_eq(tether_engine_join(x.h.e[1], x.h.names[0]), 0);
    run(&x, 500);
    h_peer_up(&x.h, 0, 2);
    run(&x, 100);
    cr_assert(tether_engine_session_up(x.h.e[2], "a@test"));
    cr_assert_eq(tether_engine_is_member(x.h.e[0], "c@test"), 0);
    stale = tether_svctab_stats(x.t[0])->stale_msgs;
    add_msg(&m, STAMP_HIGH, 3, "c@test", 1, 0);
    send_raw(&x, 2, 0, &m);
    cr_assert_eq(tether_svctab_stats(x.t[0])->stale_msgs, stale + 1);
    cr_assert_eq(look(&x, 0, 3).n, 0);
    cr_assert_eq(tether_svctab_stats(x.t[0])->bad_msgs, 0);
    stop(&x);
}

/* A small deterministic generator for the mutation test. */
static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

Test(service, mutated_messages_never_break_the_table)
{
    svc_h_t x;
    ei_x_buff good[3], m;
    uint32_t seed = 12345;

    start(&x, 2);
    cr_assert_eq(reg(&x, 0, 1, 10, 0), 0);
    cr_assert_eq(reg(&x, 1, 2, 20, 0), 0);
    pump(&x);
    add_msg(&good[0], STAMP_HIGH, 3, "a@test", 30, 3);
    h_etf_begin(&good[1], 2, "svc_sync");
    ei_x_encode_list_header(&good[1], 2);
    ei_x_encode_tuple_header(&good[1], 5);
    wire(&good[1], STAMP_HIGH + 1, 4, "a@test", 40, 4);
    ei_x_encode_tuple_header(&good[1], 5);
    wire(&good[1], STAMP_HIGH + 2, 5, "a@test", 50, 5);
    ei_x_encode_empty_list(&good[1]);
    h_etf_begin(&good[2], 3, "svc_del");
    ei_x_encode_ulonglong(&good[2], STAMP_HIGH + 3);
    ei_x_encode_binary(&good[2], "\x83\x61\x01", 3);
    for (int k = 0; k < 1500; k++) {
        ei_x_buff *g = &good[lcg(&seed) % 3];
        int flips = 1 + (int)(lcg(&seed) % 3);
        size_t len = (size_t)g->index;
        cr_assert_eq(ei_x_new(&m), 0);
        cr_assert_eq(ei_x_append_buf(&m, g->buff, (int)len), 0);
        for (int f = 0; f < flips; f++)
            m.buff[1 + lcg(&seed) % (len - 1)] = (char)lcg(&seed);
        if (lcg(&seed) % 4 == 0) /* and sometimes cut short */
            m.index = 1 + (int)(lcg(&seed) % (len - 1));
        cr_assert_eq(tether_engine_send(x.h.e[0], "b@test", TETHER_MSG_SERVICE,
                                        (const uint8_t *)m.buff,
                                        (size_t)m.index, 0),
                     0);
        ei_x_free(&m);
        if (k % 16 == 0)
            pump(&x);
    }
    for (int i = 0; i < 3; i++)
        ei_x_free(&good[i]);
    pump(&x);
    cr_assert_gt(tether_svctab_stats(x.t[1])->bad_msgs, 0);
    cr_assert_eq(look(&x, 0, 2).pid[1], 20, "b's own set untouched on a");
    /* A reconnection syncs both ways: a's real set is back on b. */
    h_cut(&x.h, 0, 1);
    run(&x, 1000);
    cr_assert_eq(look(&x, 1, 1).pid[0], 10);
    cr_assert_eq(tether_svctab_count(x.t[1]), 2);
    assert_same_tables(&x, 2);
    stop(&x);
}
