/*
 * Criterion suite for core/registry.c, the cluster name registry: local
 * API checks, broadcast and removal, owner-only unregistration, entries
 * dropped with their node, conflicts after a drop partition heals (earlier
 * stamp wins, then node name; the loser's owner is told and removes it
 * everywhere), repair of lost messages by digests, and bad messages from
 * an authenticated peer; conflicts decided by a registrant's resolver
 * (exactly one node asks its shell; the verdict, whichever pid it keeps or
 * none, reaches every node, also through lost messages), one name per pid,
 * and the direct path (the caller sends the sealed broadcast). Engines talk
 * through test/harness.h; the last case runs the simulator's registry
 * invariant (sim/sim.h).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/hlc.h"
#include "core/registry.h"
#include "sim/sim.h"
#include "test/harness.h"
#include "test/sim_check.h"

typedef struct reg_h {
    harness_t h;
    tether_registry_t *r[H_MAX];
} reg_h_t;

static void start(reg_h_t *x, int n)
{
    tether_registry_config_t cfg;

    h_init(&x->h, n);
    h_start_all(&x->h);
    tether_registry_config_default(&cfg);
    cfg.digest_ms = 100;
    for (int i = 0; i < n; i++)
        cr_assert_eq(tether_registry_new(&cfg, x->h.e[i], &x->r[i]), 0);
    h_join_all(&x->h);
}

static void stop(reg_h_t *x)
{
    h_free(&x->h); /* the registries go with their engines */
}

/* A name or pid as ETF: {Tag, K}. */
static size_t term(uint8_t *buf, const char *tag, long k)
{
    ei_x_buff x;
    size_t n;

    cr_assert_eq(ei_x_new_with_version(&x), 0);
    cr_assert_eq(ei_x_encode_tuple_header(&x, 2), 0);
    cr_assert_eq(ei_x_encode_atom(&x, tag), 0);
    cr_assert_eq(ei_x_encode_long(&x, k), 0);
    n = (size_t)x.index;
    memcpy(buf, x.buff, n);
    ei_x_free(&x);
    return n;
}

static int reg(reg_h_t *x, int i, long name, long pid, int method,
               uint64_t wall)
{
    uint8_t nb[64], pb[64];
    size_t nl = term(nb, "name", name), pl = term(pb, "pid", pid);

    return tether_registry_register(x->r[i], nb, nl, pb, pl, method, wall);
}

static int unreg(reg_h_t *x, int i, long name)
{
    uint8_t nb[64];
    size_t nl = term(nb, "name", name);

    return tether_registry_unregister(x->r[i], nb, nl);
}

/* The pid number registered as name on node i, or -1. */
static long where(reg_h_t *x, int i, long name)
{
    uint8_t nb[64], pb[TETHER_REG_PID_MAX];
    size_t nl = term(nb, "name", name), pl = 0;
    int idx = 0, v, ar;
    char atom[MAXATOMLEN_UTF8];
    long k;

    if (tether_registry_whereis(x->r[i], nb, nl, pb, sizeof pb, &pl) < 0)
        return -1;
    cr_assert_eq(ei_decode_version((const char *)pb, &idx, &v), 0);
    cr_assert_eq(ei_decode_tuple_header((const char *)pb, &idx, &ar), 0);
    cr_assert_eq(ei_decode_atom((const char *)pb, &idx, atom), 0);
    cr_assert_eq(ei_decode_long((const char *)pb, &idx, &k), 0);
    return k;
}

static void assert_same_tables(reg_h_t *x, int n)
{
    for (int i = 1; i < n; i++)
        cr_assert_eq(
            tether_registry_digest(x->r[i]), tether_registry_digest(x->r[0]),
            "tables of %s and %s differ", x->h.names[i], x->h.names[0]);
}

Test(registry, config_and_arguments_are_checked)
{
    reg_h_t x;
    tether_registry_config_t cfg;
    tether_registry_t *r = NULL;
    uint8_t nb[64], pb[4];
    size_t nl;

    start(&x, 2);
    tether_registry_config_default(&cfg);
    cr_assert_eq(tether_registry_new(&cfg, x.h.e[0], &r), TETHER_EEXIST,
                 "one registry per engine");
    cr_assert_eq(tether_registry_new(NULL, x.h.e[0], &r), TETHER_EINVAL);
    cfg.wlock = NULL;
    cfg.wunlock = (void (*)(void *))free;
    cr_assert_eq(tether_registry_new(&cfg, x.h.e[0], &r), TETHER_EINVAL);
    nl = term(nb, "name", 1);
    cr_assert_eq(tether_registry_register(x.r[0], nb, 0, nb, nl, 0, 1),
                 TETHER_EINVAL);
    cr_assert_eq(tether_registry_register(x.r[0], nb, nl, nb, 0, 0, 1),
                 TETHER_EINVAL);
    cr_assert_eq(tether_registry_register(x.r[0], nb, nl, nb, nl, 3, 1),
                 TETHER_EINVAL);
    cr_assert_eq(tether_registry_register(x.r[0], nb, TETHER_REG_NAME_MAX + 1,
                                          nb, nl, 0, 1),
                 TETHER_EINVAL);
    cr_assert_eq(reg(&x, 0, 1, 10, 0, 1000), 0);
    cr_assert_eq(tether_registry_whereis(x.r[0], nb, nl, pb, sizeof pb, &nl),
                 TETHER_ETOOBIG);
    cr_assert_eq(unreg(&x, 0, 2), TETHER_ENOTFOUND);
    stop(&x);
}

Test(registry, register_is_seen_everywhere_and_unregister_too)
{
    reg_h_t x;
    char owner[TETHER_NODE_NAME_MAX + 1];
    uint8_t nb[64];
    size_t nl = term(nb, "name", 1);

    start(&x, 3);
    cr_assert_eq(reg(&x, 0, 1, 10, TETHER_REG_NOTIFY, 1000), 0);
    h_pump(&x.h);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(where(&x, i, 1), 10);
        cr_assert_eq(tether_registry_owner(x.r[i], nb, nl, owner), 0);
        cr_assert_str_eq(owner, "a@test");
    }
    cr_assert_eq(reg(&x, 1, 1, 11, 0, 1001), TETHER_EEXIST);
    cr_assert_eq(unreg(&x, 1, 1), TETHER_ENOTFOUND, "only the owner removes");
    cr_assert_eq(unreg(&x, 0, 1), 0);
    h_pump(&x.h);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(where(&x, i, 1), -1);
        cr_assert_eq(tether_registry_count(x.r[i]), 0);
    }
    /* Many names: the table grows and every node agrees. */
    for (long k = 0; k < 500; k++)
        cr_assert_eq(reg(&x, (int)(k % 3), 100 + k, k, 0, 2000), 0);
    h_run(&x.h, 300);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tether_registry_count(x.r[i]), 500);
    assert_same_tables(&x, 3);
    stop(&x);
}

Test(registry, names_of_a_node_go_with_it)
{
    reg_h_t x;

    start(&x, 3);
    cr_assert_eq(reg(&x, 2, 1, 10, 0, 1000), 0);
    cr_assert_eq(reg(&x, 1, 2, 20, 0, 1000), 0);
    h_pump(&x.h);
    cr_assert_eq(where(&x, 0, 1), 10);
    /* c crashes: its connections drop. */
    h_cut(&x.h, 2, 0);
    h_cut(&x.h, 2, 1);
    h_pump(&x.h);
    cr_assert_eq(where(&x, 0, 1), -1);
    cr_assert_eq(where(&x, 1, 1), -1);
    cr_assert_eq(where(&x, 0, 2), 20);
    /* b leaves. */
    cr_assert_eq(tether_engine_leave(x.h.e[1]), 0);
    h_run(&x.h, 200);
    cr_assert_eq(where(&x, 0, 2), -1);
    cr_assert_eq(reg(&x, 1, 3, 30, 0, 2000), TETHER_EINVAL, "b left");
    stop(&x);
}

/* Partitions {a} | {b, c} in drop mode, registers name 1 on both sides
 * and heals. */
static void split_register_heal(reg_h_t *x, uint64_t wall_a, uint64_t wall_b,
                                int first_b)
{
    const char *ga[] = {"a@test"}, *gb[] = {"b@test", "c@test"};
    uint64_t ref;

    cr_assert_eq(tether_engine_partition(x->h.e[2], ga, 1, gb, 2,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    h_run(&x->h, 200);
    if (first_b)
        cr_assert_eq(reg(x, 1, 1, 20, TETHER_REG_EXIT, wall_b), 0);
    cr_assert_eq(reg(x, 0, 1, 10, TETHER_REG_NOTIFY, wall_a), 0);
    if (!first_b)
        cr_assert_eq(reg(x, 1, 1, 20, TETHER_REG_EXIT, wall_b), 0);
    h_run(&x->h, 200);
    cr_assert_eq(where(x, 0, 1), 10);
    cr_assert_eq(where(x, 2, 1), 20);
    cr_assert_eq(tether_engine_heal(x->h.e[1], ref), 0);
    h_run(&x->h, 2000);
}

Test(registry, earlier_registration_wins_after_heal)
{
    reg_h_t x;

    start(&x, 3);
    split_register_heal(&x, 1000, 2000, 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(where(&x, i, 1), 10, "node %d", i);
    cr_assert_eq(tether_registry_stats(x.r[1])->lost, 1, "b is told");
    cr_assert_eq(tether_registry_stats(x.r[0])->lost, 0);
    assert_same_tables(&x, 3);
    cr_assert_eq(tether_registry_count(x.r[2]), 1, "no zombie on c");
    stop(&x);
}

Test(registry, later_side_wins_when_its_clock_is_earlier)
{
    reg_h_t x;

    start(&x, 3);
    /* b registers first in the run but a's stamp is earlier: HLC order,
     * not arrival order, decides. */
    split_register_heal(&x, 3000, 4000, 1);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(where(&x, i, 1), 10);
    cr_assert_eq(tether_registry_stats(x.r[1])->lost, 1);
    stop(&x);
}

Test(registry, equal_stamps_go_to_the_lower_node_name)
{
    reg_h_t x;

    start(&x, 3);
    split_register_heal(&x, 5000, 5000, 1);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(where(&x, i, 1), 10, "a@test sorts first");
    assert_same_tables(&x, 3);
    stop(&x);
}

/* Partitions {a} | {b, c} in drop mode, registers name 1 as pid 10 on a
 * (wall 1000, method ma) and as pid 20 on b (wall 2000, method mb), and
 * heals: a's registration is the earlier. */
static void split_methods_heal(reg_h_t *x, int ma, int mb)
{
    const char *ga[] = {"a@test"}, *gb[] = {"b@test", "c@test"};
    uint64_t ref;

    cr_assert_eq(tether_engine_partition(x->h.e[2], ga, 1, gb, 2,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    h_run(&x->h, 200);
    cr_assert_eq(reg(x, 0, 1, 10, ma, 1000), 0);
    cr_assert_eq(reg(x, 1, 1, 20, mb, 2000), 0);
    h_run(&x->h, 200);
    cr_assert_eq(tether_engine_heal(x->h.e[1], ref), 0);
    h_run(&x->h, 1000);
}

static uint64_t asked(reg_h_t *x, int i)
{
    return tether_registry_stats(x->r[i])->resolves_asked;
}

/* The verdict of node i's shell on name 1: keep pid k, or none (k < 0). */
static int verdict(reg_h_t *x, int i, long k)
{
    uint8_t nb[64], pb[64];
    size_t nl = term(nb, "name", 1), pl = k < 0 ? 0 : term(pb, "pid", k);

    return tether_registry_resolve(x->r[i], nb, nl, k < 0 ? NULL : pb, pl);
}

static void assert_everywhere(reg_h_t *x, long pid, size_t count)
{
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(where(x, i, 1), pid, "node %d", i);
        cr_assert_eq(tether_registry_count(x->r[i]), count, "node %d", i);
    }
    assert_same_tables(x, 3);
}

Test(registry, winner_s_resolver_is_asked_once_and_nothing_moves_before)
{
    reg_h_t x;

    start(&x, 3);
    split_methods_heal(&x, TETHER_REG_RESOLVE, TETHER_REG_NOTIFY);
    cr_assert_eq(asked(&x, 0), 1, "a owns the earlier entry, a resolver's");
    cr_assert_eq(asked(&x, 1), 0);
    cr_assert_eq(asked(&x, 2), 0);
    /* Pending: both entries everywhere, the earlier one visible, no
     * loser told. */
    assert_everywhere(&x, 10, 2);
    cr_assert_eq(tether_registry_stats(x.r[1])->lost, 0);
    h_run(&x.h, 1000);
    cr_assert_eq(asked(&x, 0), 1, "asked once, not every digest");
    stop(&x);
}

Test(registry, resolver_may_keep_the_later_registration)
{
    reg_h_t x;

    start(&x, 3);
    split_methods_heal(&x, TETHER_REG_RESOLVE, TETHER_REG_NOTIFY);
    cr_assert_eq(verdict(&x, 0, 20), 0);
    h_run(&x.h, 500);
    assert_everywhere(&x, 20, 1);
    cr_assert_eq(tether_registry_stats(x.r[1])->lost, 0, "b's entry kept");
    cr_assert_eq(unreg(&x, 0, 1), TETHER_ENOTFOUND, "a's entry is gone");
    stop(&x);
}

Test(registry, resolver_keeping_its_own_makes_the_rival_yield)
{
    reg_h_t x;

    start(&x, 3);
    split_methods_heal(&x, TETHER_REG_RESOLVE, TETHER_REG_EXIT);
    cr_assert_eq(verdict(&x, 0, 10), 0);
    h_run(&x.h, 500);
    assert_everywhere(&x, 10, 1);
    cr_assert_eq(tether_registry_stats(x.r[1])->lost, 1, "b is told");
    stop(&x);
}

Test(registry, resolver_may_keep_neither)
{
    reg_h_t x;

    start(&x, 3);
    split_methods_heal(&x, TETHER_REG_RESOLVE, TETHER_REG_RESOLVE);
    cr_assert_eq(asked(&x, 0), 1, "both have resolvers: the winner's runs");
    cr_assert_eq(asked(&x, 1), 0);
    cr_assert_eq(verdict(&x, 0, -1), 0);
    h_run(&x.h, 500);
    assert_everywhere(&x, -1, 0);
    cr_assert_eq(tether_registry_stats(x.r[1])->lost, 1);
    stop(&x);
}

Test(registry, the_loser_s_resolver_decides_when_only_it_has_one)
{
    reg_h_t x;

    start(&x, 3);
    split_methods_heal(&x, TETHER_REG_NOTIFY, TETHER_REG_RESOLVE);
    cr_assert_eq(asked(&x, 0), 0);
    cr_assert_eq(asked(&x, 1), 1, "b's entry carries the resolver");
    assert_everywhere(&x, 10, 2);
    cr_assert_eq(verdict(&x, 1, 20), 0);
    h_run(&x.h, 500);
    assert_everywhere(&x, 20, 1);
    cr_assert_eq(tether_registry_stats(x.r[0])->lost, 1, "a is told");
    stop(&x);
}

/* The resolver keeps b's registration, but b unregisters while it runs:
 * the verdict is moot, a keeps the name and every node agrees. */
Test(registry, a_verdict_for_a_registration_gone_meanwhile_keeps_ours)
{
    reg_h_t x;

    start(&x, 3);
    split_methods_heal(&x, TETHER_REG_RESOLVE, TETHER_REG_NOTIFY);
    cr_assert_eq(unreg(&x, 1, 1), 0);
    h_run(&x.h, 300);
    cr_assert_eq(verdict(&x, 0, 20), 1);
    h_run(&x.h, 500);
    assert_everywhere(&x, 10, 1);
    stop(&x);
}

/* A registrant that lost its name exits after the name passed to another
 * of our pids: removal by (name, pid) takes nothing from the new holder. */
Test(registry, a_stale_registrant_never_removes_its_successor)
{
    reg_h_t x;
    uint8_t nb[64], old[64], cur[64];
    size_t nl = term(nb, "name", 1), ol = term(old, "pid", 10),
           cl = term(cur, "pid", 30);

    start(&x, 3);
    split_methods_heal(&x, TETHER_REG_NOTIFY, TETHER_REG_NOTIFY);
    assert_everywhere(&x, 10, 1); /* a's pid 10 was the earlier */
    cr_assert_eq(unreg(&x, 0, 1), 0);
    h_run(&x.h, 300);
    cr_assert_eq(reg(&x, 0, 1, 30, TETHER_REG_NOTIFY, 3000), 0);
    h_run(&x.h, 300);
    cr_assert(tether_registry_holds(x.r[0], nb, nl, cur, cl));
    cr_assert_not(tether_registry_holds(x.r[0], nb, nl, old, ol));
    cr_assert_eq(tether_registry_unregister_pid(x.r[0], nb, nl, old, ol),
                 TETHER_ENOTFOUND, "pid 10 holds nothing now");
    h_run(&x.h, 300);
    assert_everywhere(&x, 30, 1);
    cr_assert_eq(tether_registry_unregister_pid(x.r[0], nb, nl, cur, cl), 0);
    h_run(&x.h, 300);
    assert_everywhere(&x, -1, 0);
    stop(&x);
}

Test(registry, a_lost_verdict_is_repeated_until_the_rival_yields)
{
    reg_h_t x;

    start(&x, 3);
    split_methods_heal(&x, TETHER_REG_RESOLVE, TETHER_REG_NOTIFY);
    x.h.link[0][1] = 0; /* a's messages to b vanish */
    cr_assert_eq(verdict(&x, 0, 10), 0);
    h_run(&x.h, 300);
    cr_assert_eq(tether_registry_count(x.r[1]), 2, "b never heard");
    x.h.link[0][1] = 1;
    h_run(&x.h, 500);
    assert_everywhere(&x, 10, 1);
    stop(&x);
}

Test(registry, resolve_arguments_are_checked)
{
    reg_h_t x;
    uint8_t nb[64], pb[64];
    size_t nl = term(nb, "name", 1), pl = term(pb, "pid", 10);

    start(&x, 2);
    cr_assert_eq(tether_registry_resolve(x.r[0], nb, nl, NULL, 0),
                 TETHER_ENOTFOUND, "we hold no entry of the name");
    cr_assert_eq(reg(&x, 0, 1, 10, TETHER_REG_RESOLVE, 1000), 0);
    cr_assert_eq(tether_registry_resolve(x.r[0], nb, nl, pb, 0), TETHER_EINVAL);
    cr_assert_eq(tether_registry_resolve(x.r[0], nb, 0, NULL, 0),
                 TETHER_EINVAL);
    cr_assert_eq(verdict(&x, 0, 99), 1, "99 holds no entry: ours kept");
    cr_assert_eq(where(&x, 0, 1), 10, "a moot verdict changes nothing");
    cr_assert_eq(tether_registry_resolve(x.r[0], nb, nl, pb, pl), 0,
                 "keeping our own without a rival is a no-op");
    cr_assert_eq(where(&x, 0, 1), 10);
    stop(&x);
}

Test(registry, a_pid_holds_one_name_of_ours)
{
    reg_h_t x;

    start(&x, 2);
    cr_assert_eq(reg(&x, 0, 1, 10, 0, 1000), 0);
    cr_assert_eq(reg(&x, 0, 2, 10, 0, 1000), TETHER_EEXIST);
    cr_assert_eq(reg(&x, 1, 3, 10, 0, 1000), 0, "another node's pid 10");
    cr_assert_eq(unreg(&x, 0, 1), 0);
    cr_assert_eq(reg(&x, 0, 2, 10, 0, 1000), 0, "free again");
    /* Many pids: the pid index grows and still finds each. */
    for (long k = 0; k < 300; k++)
        cr_assert_eq(reg(&x, 0, 100 + k, 1000 + k, 0, 2000), 0);
    for (long k = 0; k < 300; k += 7)
        cr_assert_eq(reg(&x, 0, 1000 + k, 1000 + k, 0, 2000), TETHER_EEXIST);
    stop(&x);
}

/* Envelopes handed over by tether_registry_register_sealed(). */
typedef struct sealed_log {
    char peer[4][32];
    uint8_t *bytes[4];
    size_t len[4];
    int n;
} sealed_log_t;

static void on_sealed(void *ctx, const char *peer, const uint8_t *bytes,
                      size_t len)
{
    sealed_log_t *l = ctx;

    cr_assert_lt(l->n, 4);
    snprintf(l->peer[l->n], sizeof l->peer[l->n], "%s", peer);
    l->bytes[l->n] = malloc(len);
    cr_assert_not_null(l->bytes[l->n]);
    memcpy(l->bytes[l->n], bytes, len);
    l->len[l->n++] = len;
}

static int reg_sealed(reg_h_t *x, int i, long name, long pid, sealed_log_t *l)
{
    uint8_t nb[64], pb[64];
    size_t nl = term(nb, "name", name), pl = term(pb, "pid", pid);

    return tether_registry_register_sealed(x->r[i], nb, nl, pb, pl, 0, 1000,
                                           on_sealed, l);
}

/* Delivers the logged envelopes from node `from` as its shell would. */
static void deliver_sealed(reg_h_t *x, int from, sealed_log_t *l)
{
    for (int k = 0; k < l->n; k++) {
        cr_assert_eq(tether_engine_recv(x->h.e[h_index(&x->h, l->peer[k])],
                                        x->h.names[from], l->bytes[k],
                                        l->len[k]),
                     0);
        free(l->bytes[k]);
    }
    l->n = 0;
}

Test(registry, the_direct_path_hands_the_broadcast_to_the_caller)
{
    reg_h_t x;
    sealed_log_t l = {0};
    tether_action_t a;
    uint8_t nb[64], pb[64];
    size_t nl = term(nb, "name", 9), pl = term(pb, "pid", 90);

    start(&x, 3);
    cr_assert_eq(tether_registry_register_sealed(x.r[0], nb, nl, pb, pl, 0,
                                                 1000, NULL, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(reg_sealed(&x, 0, 1, 10, &l), 0);
    cr_assert_eq(l.n, 2, "one envelope per peer");
    cr_assert_eq(tether_engine_next_action(x.h.e[0], &a), 0,
                 "nothing left for the engine's owner to send");
    cr_assert_eq(where(&x, 1, 1), -1);
    deliver_sealed(&x, 0, &l);
    cr_assert_eq(where(&x, 1, 1), 10);
    cr_assert_eq(where(&x, 2, 1), 10);
    cr_assert_eq(reg_sealed(&x, 0, 1, 11, &l), TETHER_EEXIST);
    cr_assert_eq(l.n, 0);
    h_run(&x.h, 300);
    assert_same_tables(&x, 3);
    stop(&x);
}

Test(registry, the_direct_path_leaves_deferred_messages_to_the_engine)
{
    reg_h_t x;
    sealed_log_t l = {0};
    const char *ga[] = {"a@test"}, *gc[] = {"c@test"};
    uint64_t ref;

    start(&x, 3);
    cr_assert_eq(tether_engine_partition(x.h.e[0], ga, 1, gc, 1,
                                         TETHER_PARTITION_DEFER, &ref),
                 0);
    h_run(&x.h, 100);
    cr_assert_eq(reg_sealed(&x, 0, 1, 10, &l), 0);
    cr_assert_eq(l.n, 1);
    cr_assert_str_eq(l.peer[0], "b@test", "c's is held by the partition");
    deliver_sealed(&x, 0, &l);
    cr_assert_eq(where(&x, 1, 1), 10);
    cr_assert_eq(where(&x, 2, 1), -1);
    cr_assert_eq(tether_engine_heal(x.h.e[0], ref), 0);
    tether_engine_tick(x.h.e[0], x.h.now); /* held sends go from ticks */
    h_pump(&x.h);
    cr_assert_eq(where(&x, 2, 1), 10, "sent by the engine on heal");
    stop(&x);
}

Test(registry, digests_repair_lost_messages)
{
    reg_h_t x;

    start(&x, 3);
    x.h.link[0][1] = 0; /* a's messages to b vanish */
    cr_assert_eq(reg(&x, 0, 1, 10, 0, 1000), 0);
    cr_assert_eq(reg(&x, 0, 2, 11, 0, 1000), 0);
    h_pump(&x.h);
    cr_assert_eq(where(&x, 1, 1), -1);
    cr_assert_eq(unreg(&x, 0, 2), 0);
    h_pump(&x.h);
    x.h.link[0][1] = 1;
    h_run(&x.h, 500);
    cr_assert_eq(where(&x, 1, 1), 10);
    cr_assert_eq(where(&x, 1, 2), -1);
    assert_same_tables(&x, 3);
    stop(&x);
}

/* Sends one registry message from a to b. */
static void send_raw(reg_h_t *x, ei_x_buff *m)
{
    h_send_etf(&x->h, 0, 1, TETHER_MSG_REGISTRY, m);
}

Test(registry, bad_messages_are_counted_and_change_nothing)
{
    reg_h_t x;
    ei_x_buff m;
    uint8_t big[TETHER_REG_NAME_MAX + 1];
    uint64_t bad0, d0;

    memset(big, 0x61, sizeof big);
    start(&x, 2);
    cr_assert_eq(reg(&x, 0, 1, 10, 0, 1000), 0);
    h_pump(&x.h);
    bad0 = tether_registry_stats(x.r[1])->bad_msgs;
    d0 = tether_registry_digest(x.r[1]);

    h_etf_begin(&m, 6, "reg_add"); /* bad method */
    ei_x_encode_ulonglong(&m, 5);
    ei_x_encode_long(&m, 7);
    ei_x_encode_binary(&m, "n", 1);
    ei_x_encode_binary(&m, "p", 1);
    ei_x_encode_binary(&m, "", 0);
    send_raw(&x, &m);
    h_etf_begin(&m, 6, "reg_add"); /* oversized name */
    ei_x_encode_ulonglong(&m, 5);
    ei_x_encode_long(&m, 0);
    ei_x_encode_binary(&m, big, sizeof big);
    ei_x_encode_binary(&m, "p", 1);
    ei_x_encode_binary(&m, "", 0);
    send_raw(&x, &m);
    h_etf_begin(&m, 6, "reg_add"); /* empty pid */
    ei_x_encode_ulonglong(&m, 5);
    ei_x_encode_long(&m, 0);
    ei_x_encode_binary(&m, "n", 1);
    ei_x_encode_binary(&m, "", 0);
    ei_x_encode_binary(&m, "", 0);
    send_raw(&x, &m);
    h_etf_begin(&m, 6, "reg_add"); /* a meta: registrations have none */
    ei_x_encode_ulonglong(&m, 5);
    ei_x_encode_long(&m, 0);
    ei_x_encode_binary(&m, "n", 1);
    ei_x_encode_binary(&m, "p", 1);
    ei_x_encode_binary(&m, "m", 1);
    send_raw(&x, &m);
    h_etf_begin(&m, 5, "reg_add"); /* the old shape, one field short */
    ei_x_encode_ulonglong(&m, 5);
    ei_x_encode_long(&m, 0);
    ei_x_encode_binary(&m, "n", 1);
    ei_x_encode_binary(&m, "p", 1);
    send_raw(&x, &m);
    h_etf_begin(&m, 2, "reg_sync"); /* not a list */
    ei_x_encode_atom(&m, "nope");
    send_raw(&x, &m);
    h_etf_begin(&m, 2, "reg_sync"); /* a list with a bad element */
    ei_x_encode_list_header(&m, 1);
    ei_x_encode_atom(&m, "nope");
    ei_x_encode_empty_list(&m);
    send_raw(&x, &m);
    h_etf_begin(&m, 3, "reg_del"); /* name not a binary */
    ei_x_encode_ulonglong(&m, 5);
    ei_x_encode_atom(&m, "n");
    send_raw(&x, &m);
    h_etf_begin(&m, 3, "reg_digest"); /* counts not integers */
    ei_x_encode_atom(&m, "x");
    ei_x_encode_atom(&m, "y");
    send_raw(&x, &m);
    h_etf_begin(&m, 4, "reg_yield"); /* kept pid not a binary */
    ei_x_encode_ulonglong(&m, 5);
    ei_x_encode_binary(&m, "n", 1);
    ei_x_encode_atom(&m, "p");
    send_raw(&x, &m);
    h_etf_begin(&m, 2, "something_else");
    ei_x_encode_atom(&m, "x");
    send_raw(&x, &m);
    cr_assert_eq(ei_x_new_with_version(&m), 0); /* not a tuple */
    ei_x_encode_atom(&m, "reg_add");
    send_raw(&x, &m);

    cr_assert_eq(tether_registry_stats(x.r[1])->bad_msgs, bad0 + 12);
    cr_assert_eq(tether_registry_digest(x.r[1]), d0);
    cr_assert_eq(where(&x, 1, 1), 10);
    stop(&x);
}

Test(registry, a_valid_sync_replaces_what_a_peer_holds_of_the_sender)
{
    reg_h_t x;
    ei_x_buff m;
    uint8_t nb[64], pb[64];
    size_t nl = term(nb, "name", 5), pl = term(pb, "pid", 50);

    start(&x, 2);
    cr_assert_eq(reg(&x, 0, 1, 10, 0, 1000), 0);
    h_pump(&x.h);
    /* a (claimed by the test) says its whole set is just name 5. */
    h_etf_begin(&m, 2, "reg_sync");
    ei_x_encode_list_header(&m, 1);
    ei_x_encode_tuple_header(&m, 5);
    ei_x_encode_ulonglong(&m, tether__hlc_pack(900, 0));
    ei_x_encode_long(&m, 0);
    ei_x_encode_binary(&m, nb, (long)nl);
    ei_x_encode_binary(&m, pb, (long)pl);
    ei_x_encode_binary(&m, "", 0);
    ei_x_encode_empty_list(&m);
    send_raw(&x, &m);
    cr_assert_eq(where(&x, 1, 5), 50);
    cr_assert_eq(where(&x, 1, 1), -1);
    /* Digests then restore a's real set on b. */
    h_run(&x.h, 500);
    cr_assert_eq(where(&x, 1, 1), 10);
    cr_assert_eq(where(&x, 1, 5), -1);
    assert_same_tables(&x, 2);
    stop(&x);
}

Test(registry, sim_invariant_holds_and_catches_a_broken_check)
{
    tether_sim_result_t res = sim_holds_and_breaks(
        42, SIM_BREAK(break_reg_check), "registries differ");

    cr_assert_gt(res.reg_ops, 0);
}
