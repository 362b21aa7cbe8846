/*
 * Criterion suite for core/engine.c, the cluster engine: sessions, join,
 * leave, leases, incarnations, partitions (drop, defer, gossip, overflow,
 * heal order), modules, garbage input and determinism. Engines talk
 * through test/harness.h (FIFO, no loss).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/module.h"
#include "test/harness.h"

static char mb[512];

Test(engine, config_is_checked)
{
    tether_engine_config_t cfg;
    tether_engine_t *e = NULL;
    uint8_t secret[TETHER_CLUSTER_SECRET_BYTES] = {1};

    tether_engine_config_default(&cfg);
    cr_assert_eq(tether_engine_new(&cfg, &e), TETHER_EINVAL); /* no name */
    cfg.name = "a@x";
    cr_assert_eq(tether_engine_new(&cfg, &e), TETHER_EINVAL); /* no keys */
    cfg.cluster_secret = secret;
    cfg.ttl_ms = cfg.heartbeat_ms; /* the lease must outlast a heartbeat */
    cr_assert_eq(tether_engine_new(&cfg, &e), TETHER_EINVAL);
    cfg.ttl_ms = 5000;
    cfg.incarnation = 0;
    cr_assert_eq(tether_engine_new(&cfg, &e), TETHER_EINVAL);
    cfg.incarnation = 1;
    cr_assert_eq(tether_engine_new(&cfg, &e), 0);
    tether_engine_free(e);
}

Test(engine, alone_it_is_its_own_member)
{
    harness_t h;

    h_init(&h, 1);
    h_start_all(&h);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test");
    cr_assert(tether_engine_is_member(h.e[0], "a@test"));
    h_free(&h);
}

Test(engine, join_makes_everyone_agree)
{
    harness_t h;

    h_cluster(&h, 4);
    for (int i = 0; i < 4; i++)
        cr_assert_str_eq(h_members(&h, i, mb, sizeof mb),
                         "a@test b@test c@test d@test", "node %d: %s", i, mb);
    cr_assert(h_has_event(&h, 3, "tether_member up a@test"));
    cr_assert(h_has_event(&h, 0, "tether_member up d@test"));
    cr_assert(tether_engine_session_up(h.e[1], "c@test"),
              "gossip made b and c connect");
    cr_assert_eq(tether_engine_stats(h.e[0])->recv_rejected, 0);
    h_free(&h);
}

Test(engine, leave_is_announced_and_final)
{
    harness_t h;

    h_cluster(&h, 3);
    cr_assert_eq(tether_engine_leave(h.e[2]), 0);
    cr_assert_eq(tether_engine_leave(h.e[2]), TETHER_ECLOSED);
    cr_assert_eq(tether_engine_join(h.e[2], "a@test"), TETHER_ECLOSED);
    h_run(&h, 50);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test");
    cr_assert_str_eq(h_members(&h, 1, mb, sizeof mb), "a@test b@test");
    cr_assert_eq(tether_engine_members(h.e[2], NULL, 0), 0);
    cr_assert(h_has_event(&h, 0, "tether_member down c@test"));
    /* Long after, still gone: its tombstone outlives every lease. */
    h_run(&h, 3000);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test");
    cr_assert_eq(
        tether__membership_find(tether_engine_membership(h.e[1]), "c@test")
            ->status,
        TETHER_MEMBER_LEFT);
    h_free(&h);
}

Test(engine, stale_gossip_never_re_adds_a_node_that_left)
{
    harness_t h;

    h_cluster(&h, 3);
    /* c is cut off from everyone; b leaves while c cannot hear it. */
    h_cut(&h, 2, 0);
    h_cut(&h, 2, 1);
    for (int i = 0; i < 3; i++)
        h.link[2][i] = h.link[i][2] = 0;
    cr_assert_eq(tether_engine_leave(h.e[1]), 0);
    h_run(&h, 500);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test");
    /* c comes back still believing b alive; its gossip must not undo the
     * tombstone at a, and c must learn it. */
    for (int i = 0; i < 3; i++)
        h.link[2][i] = h.link[i][2] = 1;
    h_peer_up(&h, 0, 2);
    h_run(&h, 1000);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test c@test");
    cr_assert_str_eq(h_members(&h, 2, mb, sizeof mb), "a@test c@test");
    cr_assert_eq(
        tether__membership_find(tether_engine_membership(h.e[2]), "b@test")
            ->status,
        TETHER_MEMBER_LEFT);
    h_free(&h);
}

Test(engine, silent_peer_expires_after_ttl)
{
    harness_t h;

    h_cluster(&h, 2);
    h.link[1][0] = 0; /* b's bytes stop reaching a, the connection stays */
    h_run(&h, 300);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test",
                     "still within the lease");
    h_run(&h, 300);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test");
    cr_assert(h_has_event(&h, 0, "tether_member down b@test"));
    cr_assert_leq(tether_engine_next_deadline(h.e[0]), h.now + 100);
    h.link[1][0] = 1;
    h_run(&h, 300);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test");
    h_free(&h);
}

Test(engine, connection_loss_is_down_at_once)
{
    harness_t h;

    h_cluster(&h, 2);
    h.link[0][1] = h.link[1][0] = 0; /* no reconnection either */
    h_cut(&h, 0, 1);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test");
    cr_assert_str_eq(h_members(&h, 1, mb, sizeof mb), "b@test");
    h_free(&h);
}

Test(engine, restart_with_higher_incarnation_rejoins)
{
    harness_t h;

    h_cluster(&h, 3);
    h_cut(&h, 2, 0);
    h_cut(&h, 2, 1);
    tether_engine_free(h.e[2]);
    h.e[2] = NULL;
    h_run(&h, 500);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test");
    h.inc[2] = 2;
    h_start(&h, 2);
    tether_engine_join(h.e[2], "b@test");
    h_run(&h, 1000);
    for (int i = 0; i < 3; i++)
        cr_assert_str_eq(h_members(&h, i, mb, sizeof mb),
                         "a@test b@test c@test", "node %d: %s", i, mb);
    cr_assert_eq(
        tether__membership_find(tether_engine_membership(h.e[0]), "c@test")
            ->incarnation,
        2);
    h_free(&h);
}

Test(engine, left_node_restarted_as_new_incarnation_is_a_member)
{
    harness_t h;

    h_cluster(&h, 2);
    cr_assert_eq(tether_engine_leave(h.e[1]), 0);
    h_run(&h, 200);
    h_cut(&h, 0, 1);
    tether_engine_free(h.e[1]);
    h.inc[1] = 2;
    h_start(&h, 1);
    tether_engine_join(h.e[1], "a@test");
    h_run(&h, 1000);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test");
    h_free(&h);
}

/* A module that records the ids it receives, in order. */
typedef struct rec {
    int ids[256];
    int n;
} rec_t;

static void rec_msg(tether_engine_t *eng, void *ctx, const char *from,
                    const char *etf, size_t len)
{
    rec_t *r = ctx;
    int idx = 0, v;
    long id;

    (void)eng;
    (void)from;
    (void)len;
    cr_assert_eq(ei_decode_version(etf, &idx, &v), 0);
    cr_assert_eq(ei_decode_long(etf, &idx, &id), 0);
    if (r->n < 256)
        r->ids[r->n++] = (int)id;
}

static const tether_engine_module_t rec_module = {
    .name = "rec", .type = 0x30, .on_message = rec_msg};

static int send_id(harness_t *h, int from, int to, long id)
{
    ei_x_buff x;
    int rc;

    ei_x_new_with_version(&x);
    ei_x_encode_long(&x, id);
    rc = tether_engine_send(h->e[from], h->names[to], 0x30,
                            (const uint8_t *)x.buff, (size_t)x.index, 0);
    ei_x_free(&x);
    return rc;
}

static const char *const GA[] = {"a@test"};
static const char *const GB[] = {"b@test"};

Test(engine, modules_register_once_above_the_core_types)
{
    harness_t h;
    tether_engine_module_t low = rec_module;

    h_init(&h, 1);
    h_start_all(&h);
    low.type = TETHER_MSG_MEMBERS;
    cr_assert_eq(tether__engine_register_module(h.e[0], &low, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether__engine_register_module(h.e[0], &rec_module, NULL), 0);
    cr_assert_eq(tether__engine_register_module(h.e[0], &rec_module, NULL),
                 TETHER_EEXIST);
    cr_assert_eq(
        tether_engine_send(h.e[0], "b@test", 0x05, (const uint8_t *)"x", 1, 0),
        TETHER_EINVAL);
    h_free(&h);
}

Test(engine, drop_partition_downs_the_other_side_at_once)
{
    harness_t h;
    rec_t r = {0};
    uint64_t ref;

    h_cluster(&h, 2);
    cr_assert_eq(tether__engine_register_module(h.e[1], &rec_module, &r), 0);
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 1, GB, 1,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test",
                     "drop: down at once on the injecting side");
    h_pump(&h);
    cr_assert_str_eq(h_members(&h, 1, mb, sizeof mb), "b@test",
                     "and on the other side once the table arrives");
    cr_assert_eq(send_id(&h, 0, 1, 1), TETHER_ECLOSED);
    h_run(&h, 500);
    cr_assert_eq(r.n, 0);
    cr_assert_gt(tether_engine_stats(h.e[0])->part_dropped, 0);
    cr_assert_gt(tether_engine_stats(h.e[1])->part_dropped, 0,
                 "b enforces a's partition on its own sends");
    cr_assert_eq(tether_engine_heal(h.e[1], ref), 0); /* heal anywhere */
    h_run(&h, 300);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test");
    cr_assert_eq(send_id(&h, 0, 1, 2), 0);
    h_pump(&h);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(r.ids[0], 2);
    cr_assert_eq(tether_engine_heal(h.e[1], 12345), TETHER_ENOTFOUND);
    h_free(&h);
}

Test(engine, defer_partition_holds_members_and_delivers_in_order_on_heal)
{
    harness_t h;
    rec_t r = {0};
    uint64_t ref;

    h_cluster(&h, 2);
    cr_assert_eq(tether__engine_register_module(h.e[1], &rec_module, &r), 0);
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 1, GB, 1,
                                         TETHER_PARTITION_DEFER, &ref),
                 0);
    for (long id = 1; id <= 10; id++)
        cr_assert_eq(send_id(&h, 0, 1, id), 0);
    h_run(&h, 2000); /* far beyond the TTL */
    cr_assert_eq(r.n, 0, "nothing crosses a defer partition");
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test",
                     "defer: the other side stays a member");
    cr_assert_str_eq(h_members(&h, 1, mb, sizeof mb), "a@test b@test");
    cr_assert_eq(tether_engine_stats(h.e[0])->part_deferred, 10);
    cr_assert_gt(tether_engine_stats(h.e[0])->part_skipped, 0,
                 "heartbeats are skipped, not queued");
    tether_engine_heal_all(h.e[1]);
    h_run(&h, 100);
    cr_assert_eq(r.n, 10);
    for (int k = 0; k < 10; k++)
        cr_assert_eq(r.ids[k], k + 1, "in order");
    cr_assert_eq(tether_engine_partitions(h.e[0])->active, 0);
    h_free(&h);
}

Test(engine, defer_overflow_is_counted_never_silent)
{
    harness_t h;
    rec_t r = {0};

    h_init(&h, 2);
    h.defer_max = 4;
    h_start_all(&h);
    tether_engine_join(h.e[1], "a@test");
    h_run(&h, 500);
    cr_assert_eq(tether__engine_register_module(h.e[1], &rec_module, &r), 0);
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 1, GB, 1,
                                         TETHER_PARTITION_DEFER, NULL),
                 0);
    for (long id = 1; id <= 10; id++)
        (void)send_id(&h, 0, 1, id);
    cr_assert_eq(tether_engine_stats(h.e[0])->part_deferred, 4);
    cr_assert_eq(tether_engine_stats(h.e[0])->defer_overflow, 6);
    cr_assert_eq(send_id(&h, 0, 1, 11), TETHER_ETOOBIG);
    tether_engine_heal_all(h.e[0]);
    h_run(&h, 100);
    cr_assert_eq(r.n, 4);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(r.ids[k], k + 1);
    h_free(&h);
}

Test(engine, receiver_defers_what_an_uninformed_sender_sent)
{
    harness_t h;
    rec_t r = {0};

    h_cluster(&h, 2);
    cr_assert_eq(tether__engine_register_module(h.e[1], &rec_module, &r), 0);
    /* b learns of the partition; a's message is already on the wire. */
    cr_assert_eq(send_id(&h, 0, 1, 1), 0);
    cr_assert_eq(tether_engine_partition(h.e[1], GA, 1, GB, 1,
                                         TETHER_PARTITION_DEFER, NULL),
                 0);
    h_pump(&h);
    cr_assert_eq(r.n, 0, "held at the receiver");
    tether_engine_heal_all(h.e[1]);
    h_pump(&h);
    cr_assert_eq(r.n, 1);
    h_free(&h);
}

/* Regression (simulator, every node checked after every chaos step): a
 * leave held at the receiver by a defer partition is handled when the
 * partition heals; the node that left must be off members() as soon as
 * heal returns, not only after the next tick or message. */
Test(engine, leave_held_by_defer_takes_effect_when_heal_returns)
{
    harness_t h;

    h_cluster(&h, 2);
    /* a knows the partition; b leaves before it hears of it. */
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 1, GB, 1,
                                         TETHER_PARTITION_DEFER, NULL),
                 0);
    cr_assert_eq(tether_engine_leave(h.e[1]), 0);
    h_pump(&h);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test",
                     "the leave is held, b's lease too");
    tether_engine_heal_all(h.e[0]);
    cr_assert_eq(
        tether__membership_find(tether_engine_membership(h.e[0]), "b@test")
            ->status,
        TETHER_MEMBER_LEFT);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test");
    cr_assert_not(tether_engine_is_member(h.e[0], "b@test"));
    h_pump(&h);
    cr_assert(h_has_event(&h, 0, "tether_member down b@test"));
    h_free(&h);
}

Test(engine, partition_rejects_bad_groups)
{
    harness_t h;
    const char *const both[] = {"a@test", "b@test"};

    h_init(&h, 1);
    h_start_all(&h);
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 1, both, 2,
                                         TETHER_PARTITION_DROP, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 0, GB, 1,
                                         TETHER_PARTITION_DROP, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 1, GB, 1, 7, NULL),
                 TETHER_EINVAL);
    h_free(&h);
}

Test(engine, garbage_input_is_counted_not_fatal)
{
    harness_t h;
    uint8_t junk[512];
    uint8_t hello_like[200];
    const tether_engine_stats_t *st;
    uint32_t x = 12345;

    h_cluster(&h, 2);
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (uint8_t)(x >> 16);
    }
    cr_assert_lt(tether_engine_recv(h.e[0], "b@test", junk, 0), 0);
    cr_assert_lt(tether_engine_recv(h.e[0], "b@test", NULL, 3), 0);
    cr_assert_lt(tether_engine_recv(h.e[0], "", junk, 10), 0);
    cr_assert_lt(tether_engine_recv(h.e[0], "a@test", junk, 10), 0);
    for (size_t len = 1; len <= sizeof junk; len += 7)
        cr_assert_lt(tether_engine_recv(h.e[0], "b@test", junk, len), 0);
    /* Right version byte, sealed type, wrong MAC: tampered. */
    junk[0] = TETHER_ENVELOPE_VERSION;
    junk[1] = TETHER_MSG_MEMBERS;
    for (size_t len = 2; len <= 200; len += 13)
        cr_assert_lt(tether_engine_recv(h.e[0], "b@test", junk, len), 0);
    /* Hello-shaped bytes, truncated and garbled, from known and unknown
     * names. */
    memset(hello_like, 0, sizeof hello_like);
    hello_like[0] = TETHER_ENVELOPE_VERSION;
    hello_like[1] = TETHER_ENV_TYPE_HELLO;
    hello_like[2] = 6;
    hello_like[3] = 6;
    memcpy(hello_like + 4, "b@testa@test", 12);
    for (size_t len = 2; len <= sizeof hello_like; len += 11) {
        cr_assert_lt(tether_engine_recv(h.e[0], "b@test", hello_like, len), 0);
        cr_assert_lt(tether_engine_recv(h.e[0], "zz@nowhere", hello_like, len),
                     0);
    }
    cr_assert_not(tether_engine_session_up(h.e[0], "zz@nowhere"));
    st = tether_engine_stats(h.e[0]);
    cr_assert_gt(st->recv_garbage, 0);
    cr_assert_gt(st->recv_rejected, 0);
    cr_assert_gt(tether_engine_envelope_stats(h.e[0])->tampered, 0);
    /* The real session survived all of it. */
    h_run(&h, 500);
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test");
    h_free(&h);
}

Test(engine, replayed_envelopes_are_refused)
{
    harness_t h;
    uint8_t *copy;
    size_t len = 0;

    h_cluster(&h, 2);
    /* Catch one sealed heartbeat from a to b and play it twice. */
    copy = h_catch_heartbeat(&h, 0, &len);
    cr_assert_eq(tether_engine_recv(h.e[1], "a@test", copy, len), 0);
    cr_assert_eq(tether_engine_recv(h.e[1], "a@test", copy, len),
                 TETHER_EREPLAY);
    cr_assert_eq(tether_engine_envelope_stats(h.e[1])->replayed, 1);
    free(copy);
    h_free(&h);
}

/* Collects every SEND of a run into one digest. */
static uint64_t run_digest(void)
{
    harness_t h;
    uint64_t d = 1469598103934665603ull;

    h_init(&h, 3);
    h_start_all(&h);
    tether_engine_join(h.e[1], "a@test");
    tether_engine_join(h.e[2], "a@test");
    for (int step = 0; step < 50; step++) {
        h.now += 10;
        for (int i = 0; i < 3; i++) {
            tether_action_t a;
            tether_engine_tick(h.e[i], h.now);
            while (tether_engine_next_action(h.e[i], &a)) {
                const tether_bytes_t *b = &a.u.send.bytes;
                for (size_t k = 0; a.kind == TETHER_ACT_SEND && k < b->len; k++)
                    d = (d ^ b->ptr[k]) * 1099511628211ull;
                for (const char *c = a.peer; *c; c++)
                    d = (d ^ (uint8_t)*c) * 1099511628211ull;
                d = (d ^ (uint64_t)a.kind) * 1099511628211ull;
                tether_engine_action_release(&a);
            }
        }
    }
    h_free(&h);
    return d;
}

Test(engine, same_seed_same_bytes)
{
    cr_assert_eq(run_digest(), run_digest());
}

Test(engine, random_is_deterministic_per_seed)
{
    harness_t h1, h2;
    uint8_t a[100], b[100];

    h_init(&h1, 1);
    h_init(&h2, 1);
    h_start_all(&h1);
    h_start_all(&h2);
    tether__engine_random(h1.e[0], a, sizeof a);
    tether__engine_random(h2.e[0], b, sizeof b);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    tether__engine_random(h1.e[0], a, sizeof a);
    cr_assert_neq(memcmp(a, b, sizeof a), 0, "the counter moves on");
    h_free(&h1);
    h_free(&h2);
}

/* Broadcasts the term Id of rec_module's type from engine `from`. */
static int broadcast_id(harness_t *h, int from, long id)
{
    ei_x_buff x;
    int rc;

    ei_x_new_with_version(&x);
    ei_x_encode_long(&x, id);
    rc = tether__engine_broadcast(h->e[from], 0x30, (const uint8_t *)x.buff,
                                  (size_t)x.index, 0);
    ei_x_free(&x);
    return rc;
}

Test(engine, broadcast_reaches_every_live_member_but_us)
{
    static const char *const GC[] = {"c@test"};
    harness_t h;
    rec_t r[3] = {0};
    uint64_t ref, deferred;

    h_cluster(&h, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tether__engine_register_module(h.e[i], &rec_module, &r[i]),
                     0);
    cr_assert_eq(broadcast_id(&h, 0, 7), 0);
    h_pump(&h);
    cr_assert_eq(r[0].n, 0, "not to ourselves");
    cr_assert_eq(r[1].n, 1);
    cr_assert_eq(r[1].ids[0], 7);
    cr_assert_eq(r[2].n, 1);
    cr_assert_eq(r[2].ids[0], 7);
    /* What a defer partition holds for one peer is counted, not returned,
     * and goes out on heal. */
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 1, GC, 1,
                                         TETHER_PARTITION_DEFER, &ref),
                 0);
    deferred = tether_engine_stats(h.e[0])->part_deferred;
    cr_assert_eq(broadcast_id(&h, 0, 8), 0);
    cr_assert_eq(tether_engine_stats(h.e[0])->part_deferred, deferred + 1);
    h_pump(&h);
    cr_assert_eq(r[1].n, 2);
    cr_assert_eq(r[1].ids[1], 8);
    cr_assert_eq(r[2].n, 1);
    cr_assert_eq(tether_engine_heal(h.e[0], ref), 0);
    h_run(&h, 100);
    cr_assert_eq(r[2].n, 2);
    cr_assert_eq(r[2].ids[1], 8);
    /* Arguments, and a node that left. */
    cr_assert_eq(tether__engine_broadcast(h.e[0], TETHER_MSG_MEMBERS,
                                          (const uint8_t *)"x", 1, 0),
                 TETHER_EINVAL);
    cr_assert_eq(tether__engine_broadcast(h.e[0], 0x30, NULL, 1, 0),
                 TETHER_EINVAL);
    cr_assert_eq(
        tether__engine_broadcast(h.e[0], 0x30, (const uint8_t *)"x", 0, 0),
        TETHER_EINVAL);
    cr_assert_eq(tether_engine_leave(h.e[1]), 0);
    cr_assert_eq(broadcast_id(&h, 1, 9), TETHER_ECLOSED);
    h_free(&h);
}

Test(engine, member_changes_are_actions)
{
    harness_t h;

    h_cluster(&h, 2);
    cr_assert(h_has_event(&h, 0, "tether_member up b@test"));
    cr_assert(h_has_event(&h, 1, "tether_member up a@test"));
    h_cut(&h, 0, 1);
    h_pump(&h);
    cr_assert(h_has_event(&h, 0, "tether_member down b@test"));
    cr_assert(h_has_event(&h, 1, "tether_member down a@test"));
    h_free(&h);
}

/* Queues an action built on the stack and checks that the engine keeps
 * its own copies of the bytes. */
Test(engine, pushed_actions_own_their_bytes)
{
    harness_t h;
    tether_action_t a = {.kind = TETHER_ACT_REG_LOST}, got;
    uint8_t name[4] = "name", loser[5] = "loser";

    h_init(&h, 1);
    h_start_all(&h);
    h_pump(&h);
    memcpy(a.peer, "x@test", 7);
    a.u.reg_lost.name = (tether_bytes_t){name, sizeof name};
    a.u.reg_lost.loser = (tether_bytes_t){loser, sizeof loser};
    a.u.reg_lost.winner = (tether_bytes_t){NULL, 0};
    a.u.reg_lost.method = 1;
    cr_assert_eq(tether__engine_push(h.e[0], &a), 0);
    memset(name, 0, sizeof name);
    memset(loser, 0, sizeof loser);
    cr_assert_eq(tether_engine_next_action(h.e[0], &got), 1);
    cr_assert_eq(got.kind, TETHER_ACT_REG_LOST);
    cr_assert_str_eq(got.peer, "x@test");
    cr_assert_eq(got.u.reg_lost.name.len, 4);
    cr_assert_eq(memcmp(got.u.reg_lost.name.ptr, "name", 4), 0);
    cr_assert_eq(memcmp(got.u.reg_lost.loser.ptr, "loser", 5), 0);
    cr_assert_eq(got.u.reg_lost.winner.len, 0);
    cr_assert_eq(got.u.reg_lost.method, 1);
    cr_assert_null(tether_engine_action_take(&got), "not a SEND or a MESSAGE");
    tether_engine_action_release(&got);
    tether_engine_action_release(NULL);
    h_free(&h);
}

/* A MESSAGE's bytes can be taken as a SEND's are (a shell hands a large
 * received term on without a copy). */
Test(engine, a_message_s_bytes_can_be_taken)
{
    harness_t h;
    tether_action_t a = {.kind = TETHER_ACT_MESSAGE}, got;
    uint8_t etf[3] = {131, 97, 7};
    uint8_t *taken;

    h_init(&h, 1);
    h_start_all(&h);
    h_pump(&h);
    memcpy(a.peer, "x@test", 7);
    a.u.message.etf = (tether_bytes_t){etf, sizeof etf};
    cr_assert_eq(tether__engine_push(h.e[0], &a), 0);
    cr_assert(tether_engine_next_action(h.e[0], &got));
    taken = tether_engine_action_take(&got);
    cr_assert_not_null(taken);
    cr_assert_eq(taken, got.u.message.etf.ptr, "the bytes themselves");
    cr_assert_eq(memcmp(taken, etf, sizeof etf), 0);
    tether_engine_action_release(&got); /* frees nothing now */
    free(taken);
    h_free(&h);
}

/* Restarts engine i as a new incarnation while every connection of its
 * shell stays up (as a BEAM node whose tether application restarts): the
 * new engine reports its connected peers up, nobody else sees a change. */
static void restart_in_place(harness_t *h, int i)
{
    tether_engine_free(h->e[i]);
    h->inc[i]++;
    h_start(h, i);
    for (int j = 0; j < h->n; j++)
        if (j != i && h->conn[i][j])
            cr_assert_eq(tether_engine_peer_up(h->e[i], h->names[j]), 0);
}

Test(engine, a_restart_notice_ends_the_session_with_an_old_life)
{
    harness_t h;
    char buf[128];

    h_cluster(&h, 2);
    h.nevents[0] = 0;
    /* b (the kx server) restarts; a keeps its session with the old b until
     * the notice arrives. */
    restart_in_place(&h, 1);
    cr_assert_eq(tether_engine_join(h.e[1], "a@test"), 0);
    h_run(&h, 300);
    cr_assert_eq(tether_engine_stats(h.e[0])->restarts_seen, 1);
    cr_assert(h_has_event(&h, 0, "tether_member down b@test"));
    cr_assert(h_has_event(&h, 0, "tether_member up b@test"));
    cr_assert_str_eq(h_members(&h, 0, buf, sizeof buf), "a@test b@test");
    cr_assert_str_eq(h_members(&h, 1, buf, sizeof buf), "a@test b@test");
    /* a (the kx client) restarts: the same from b's side. */
    restart_in_place(&h, 0);
    h_run(&h, 300);
    cr_assert_eq(tether_engine_stats(h.e[1])->restarts_seen, 1);
    cr_assert(tether_engine_session_up(h.e[1], "a@test"));
    cr_assert(tether_engine_session_up(h.e[0], "b@test"));
    h_free(&h);
}

/* Keeps a copy of the first restart notice each engine sends. */
typedef struct notices {
    uint8_t *bytes[H_MAX];
    size_t len[H_MAX];
} notices_t;

static void tap_notice(void *ctx, int i, const tether_action_t *a)
{
    notices_t *n = ctx;
    const tether_bytes_t *b = &a->u.send.bytes;

    if (n->bytes[i] != NULL || b->ptr[1] != TETHER_ENV_TYPE_RESTART)
        return;
    n->bytes[i] = malloc(b->len);
    cr_assert_not_null(n->bytes[i]);
    memcpy(n->bytes[i], b->ptr, b->len);
    n->len[i] = b->len;
}

Test(engine, forged_and_replayed_restart_notices_change_nothing)
{
    harness_t h;
    notices_t n = {0};
    uint8_t *old, *mine;
    size_t olen, mlen;
    uint64_t rejected, restarts;

    h_init(&h, 3);
    h.tap = tap_notice;
    h.tap_ctx = &n;
    h_start_all(&h);
    h_join_all(&h);
    h.tap = NULL;
    old = n.bytes[1], olen = n.len[1];
    mine = n.bytes[2], mlen = n.len[2];
    cr_assert_not_null(old);
    cr_assert_not_null(mine);
    /* b's notice of its current life, replayed: nothing older is held. */
    restarts = tether_engine_stats(h.e[0])->restarts_seen;
    cr_assert_eq(tether_engine_recv(h.e[0], "b@test", old, olen), 0);
    h_pump(&h);
    cr_assert_eq(tether_engine_stats(h.e[0])->restarts_seen, restarts);
    cr_assert(tether_engine_session_up(h.e[0], "b@test"));
    /* c's own notice, claimed to come from b: refused. */
    rejected = tether_engine_stats(h.e[0])->recv_rejected;
    cr_assert_lt(tether_engine_recv(h.e[0], "b@test", mine, mlen), 0);
    cr_assert_eq(tether_engine_stats(h.e[0])->recv_rejected, rejected + 1);
    /* A flipped byte: refused. */
    old[olen / 2] ^= 1;
    cr_assert_lt(tether_engine_recv(h.e[0], "b@test", old, olen), 0);
    cr_assert_eq(tether_engine_stats(h.e[0])->recv_rejected, rejected + 2);
    cr_assert_eq(tether_engine_stats(h.e[0])->restarts_seen, restarts);
    cr_assert(tether_engine_session_up(h.e[0], "b@test"));
    cr_assert(tether_engine_is_member(h.e[0], "b@test"));
    for (int i = 0; i < H_MAX; i++)
        free(n.bytes[i]);
    h_free(&h);
}

Test(engine, seeds_are_joined_in_turn_until_one_answers)
{
    harness_t h;
    tether_engine_config_t cfg;
    const char *seeds[] = {"c@test", "zz@nowhere", "a@test"};
    char buf[128];
    uint64_t joins;

    h_init(&h, 3);
    h_start(&h, 0);
    /* b starts with three seeds: itself is skipped, one never answers. */
    tether_engine_config_default(&cfg);
    cfg.name = h.names[1];
    cfg.heartbeat_ms = 100;
    cfg.ttl_ms = 400;
    cfg.cluster_secret = h.secret;
    cfg.seeds = seeds;
    cfg.nseeds = 3;
    cfg.join_timeout_ms = 300; /* each dead seed holds the turn this long */
    cr_assert_eq(tether_engine_new(&cfg, &h.e[1]), 0);
    cr_assert_eq(tether_engine_tick(h.e[1], h.now), 0);
    h_run(&h, 2000);
    cr_assert_str_eq(h_members(&h, 1, buf, sizeof buf), "a@test b@test");
    joins = tether_engine_stats(h.e[1])->seed_joins;
    cr_assert_geq(joins, 2, "c (not started) and the unknown node first");
    h_run(&h, 2000);
    cr_assert_eq(tether_engine_stats(h.e[1])->seed_joins, joins,
                 "no more joins once it has company");
    /* Bad seed lists are refused. */
    tether_engine_t *e = NULL;
    const char *bad[] = {""};
    cfg.seeds = bad;
    cfg.nseeds = 1;
    cr_assert_eq(tether_engine_new(&cfg, &e), TETHER_EINVAL);
    cfg.seeds = NULL;
    cr_assert_eq(tether_engine_new(&cfg, &e), TETHER_EINVAL);
    cfg.nseeds = TETHER_ENGINE_SEEDS_MAX + 1;
    cr_assert_eq(tether_engine_new(&cfg, &e), TETHER_EINVAL);
    h_free(&h);
}

/* A member that died is redialled a bounded number of times, with waits
 * that grow, then never again; one that comes back is taken in at once. */
Test(engine, a_dead_member_is_redialled_a_bounded_number_of_times)
{
    harness_t h;
    const tether_engine_stats_t *st;
    uint64_t dials0, at_1s;
    char buf[64];

    h_cluster(&h, 3);
    st = tether_engine_stats(h.e[0]);
    dials0 = st->dials;
    /* c dies: its connections drop, nothing answers a dial any more. */
    h_cut(&h, 2, 0);
    h_cut(&h, 2, 1);
    tether_engine_free(h.e[2]);
    h.e[2] = NULL;
    h_run(&h, 1000);
    at_1s = st->dials - dials0;
    cr_assert_geq(at_1s, 1, "redialled soon after the loss");
    cr_assert_leq(at_1s, 4, "but not every tick: %llu",
                  (unsigned long long)at_1s);
    h_run(&h, 120000);
    cr_assert_eq(st->dials - dials0, TETHER_ENGINE_DEFAULT_RECONNECTS,
                 "%llu dials", (unsigned long long)(st->dials - dials0));
    cr_assert_eq(st->dials_given_up, 1);
    h_run(&h, 60000);
    cr_assert_eq(st->dials - dials0, TETHER_ENGINE_DEFAULT_RECONNECTS,
                 "none after giving up");
    cr_assert_str_eq(h_members(&h, 0, buf, sizeof buf), "a@test b@test");
    /* c restarts and joins: a member again, and redialled if lost. */
    h.inc[2]++;
    h_start(&h, 2);
    cr_assert_eq(tether_engine_join(h.e[2], "a@test"), 0);
    h_run(&h, 2000);
    cr_assert_str_eq(h_members(&h, 0, buf, sizeof buf), "a@test b@test c@test");
    dials0 = st->dials + tether_engine_stats(h.e[2])->dials;
    h_cut(&h, 2, 0);
    h_run(&h, 2000);
    cr_assert_gt(st->dials + tether_engine_stats(h.e[2])->dials, dials0,
                 "a member lost again is redialled (by either side)");
    cr_assert_str_eq(h_members(&h, 0, buf, sizeof buf), "a@test b@test c@test");
    h_free(&h);
}

/* A module that counts its hooks. */
typedef struct hooks {
    int up, down, member_up, member_down, ticks;
} hooks_t;

static void hk_up(tether_engine_t *n, void *ctx, const char *peer)
{
    (void)n;
    (void)peer;
    ((hooks_t *)ctx)->up++;
}

static void hk_down(tether_engine_t *n, void *ctx, const char *peer)
{
    (void)n;
    (void)peer;
    ((hooks_t *)ctx)->down++;
}

static void hk_member(tether_engine_t *n, void *ctx, const char *name, int up)
{
    (void)n;
    (void)name;
    if (up)
        ((hooks_t *)ctx)->member_up++;
    else
        ((hooks_t *)ctx)->member_down++;
}

static void hk_tick(tether_engine_t *n, void *ctx, uint64_t now)
{
    (void)n;
    (void)now;
    ((hooks_t *)ctx)->ticks++;
}

Test(engine, module_hooks_follow_sessions_and_members)
{
    harness_t h;
    hooks_t k = {0};
    const tether_engine_module_t m = {.name = "hooks",
                                      .type = 0x31,
                                      .on_session_up = hk_up,
                                      .on_session_down = hk_down,
                                      .on_member = hk_member,
                                      .on_tick = hk_tick};

    h_init(&h, 2);
    h_start_all(&h);
    cr_assert_eq(tether__engine_register_module(h.e[0], &m, &k), 0);
    tether_engine_join(h.e[1], "a@test");
    h_run(&h, 500);
    cr_assert_eq(k.up, 1);
    cr_assert_eq(k.member_up, 1);
    cr_assert_gt(k.ticks, 10);
    h_cut(&h, 0, 1);
    cr_assert_eq(k.down, 1);
    cr_assert_eq(k.member_down, 1);
    h_free(&h);
}

/* Connects `n` visitors (names v<first..>@test) to engine i of h: each
 * comes up (the engine says hello) and, unless `stay`, goes again. */
static void visit(harness_t *h, int i, int first, int n, int stay)
{
    char name[32];

    for (int k = first; k < first + n; k++) {
        snprintf(name, sizeof name, "v%d@test", k);
        cr_assert_eq(tether_engine_peer_up(h->e[i], name), 0, "%s", name);
        h_pump(h);
        if (!stay)
            cr_assert_eq(tether_engine_peer_down(h->e[i], name), 0);
    }
}

Test(engine, gone_visitors_free_their_peer_entries)
{
    harness_t h;

    h_init(&h, 2);
    h_start_all(&h);
    visit(&h, 0, 0, 5000, 0); /* five times the table's size */
    cr_assert_eq(tether_engine_stats(h.e[0])->peers_freed, 5000);
    cr_assert_eq(tether_engine_stats(h.e[0])->peers_refused, 0);
    h_join_all(&h); /* a new node still joins */
    cr_assert_str_eq(h_members(&h, 0, mb, sizeof mb), "a@test b@test");
    /* A member that goes keeps its entry (leases, redials, defer). */
    h.link[0][1] = h.link[1][0] = 0;
    h_cut(&h, 0, 1);
    cr_assert_eq(tether_engine_stats(h.e[0])->peers_freed, 5000);
    h_free(&h);
}

Test(engine, a_full_peer_table_refuses_and_counts)
{
    harness_t h;
    char name[32];

    h_init(&h, 2);
    h_start_all(&h);
    visit(&h, 0, 0, TETHER_ENGINE_PEERS_MAX, 1); /* all stay connected */
    cr_assert_eq(tether_engine_peer_up(h.e[0], "late@test"), TETHER_ENOMEM);
    cr_assert_eq(tether_engine_stats(h.e[0])->peers_refused, 1);
    for (int k = 0; k < TETHER_ENGINE_PEERS_MAX; k++) {
        snprintf(name, sizeof name, "v%d@test", k);
        cr_assert_eq(tether_engine_peer_down(h.e[0], name), 0);
    }
    cr_assert_eq(tether_engine_stats(h.e[0])->peers_freed,
                 TETHER_ENGINE_PEERS_MAX);
    h_join_all(&h); /* room again once they went */
    h_free(&h);
}

/* rec_module for payloads with padding after the id (opaque: the engine
 * does not validate them as one term). */
static const tether_engine_module_t rec_big_module = {
    .name = "recb", .type = 0x30, .opaque = 1, .on_message = rec_msg};

/* send_id with `pad` bytes after the id. */
static int send_big(harness_t *h, int from, int to, long id, size_t pad)
{
    ei_x_buff x;
    int rc;

    ei_x_new_with_version(&x);
    ei_x_encode_long(&x, id);
    while ((size_t)x.index < pad) {
        static const char zeros[4096];
        ei_x_append_buf(&x, zeros, sizeof zeros);
    }
    rc = tether_engine_send(h->e[from], h->names[to], 0x30,
                            (const uint8_t *)x.buff, (size_t)x.index, 0);
    ei_x_free(&x);
    return rc;
}

/* Two engines, r recording what the second receives; `n` messages of more
 * than `size` bytes (ids 1..n) held from the first to the second across
 * a defer partition, then healed: their flush is due at the next tick. */
static void held_big(harness_t *h, rec_t *r, long n, size_t size)
{
    h_cluster(h, 2);
    cr_assert_eq(tether__engine_register_module(h->e[1], &rec_big_module, r),
                 0);
    cr_assert_eq(tether_engine_partition(h->e[0], GA, 1, GB, 1,
                                         TETHER_PARTITION_DEFER, NULL),
                 0);
    h_pump(h);
    for (long id = 1; id <= n; id++)
        cr_assert_eq(send_big(h, 0, 1, id, size), 0);
    tether_engine_heal_all(h->e[0]);
    h_pump(h);
}

/* Ticks engine 0 every SLICE_MS, pumping between, until `want` messages
 * reached r or `max_ticks` went, and checks at every tick that no tick
 * sealed more than a slice: the first `big` messages hold more than `msg`
 * bytes each, and `done` ticks went before. Returns the ticks taken. */
static int tick_slices(harness_t *h, const rec_t *r, int want, int big,
                       size_t msg, int done, int max_ticks)
{
    int k = 0;

    while (r->n < want && k < max_ticks) {
        h->now += TETHER_ENGINE_DEFER_SLICE_MS;
        tether_engine_tick(h->e[0], h->now);
        h_pump(h);
        k++;
        cr_assert_leq((size_t)(r->n < big ? r->n : big) * msg,
                      (size_t)(done + k) * TETHER_ENGINE_DEFER_SLICE_BYTES,
                      "at most a slice sealed per tick: %d messages of "
                      "%zu bytes after %d ticks",
                      r->n, msg, done + k);
    }
    return k;
}

/* held_big(), then two slices of the first message sealed, and the
 * connection cut: a send is being sealed on a session that ended. */
static void cut_mid_seal(harness_t *h, rec_t *r, long n, size_t size)
{
    held_big(h, r, n, size);
    (void)tick_slices(h, r, 1, 1, size, 0, 2);
    cr_assert_eq(r->n, 0);
    h_cut(h, 0, 1);
    h_pump(h);
}

Test(engine, a_large_backlog_is_flushed_in_slices_in_order)
{
    harness_t h;
    rec_t r = {0};
    const size_t mib = 1u << 20;
    int ticks;

    held_big(&h, &r, 12, mib);
    cr_assert_eq(tether_engine_stats(h.e[0])->part_deferred, 12);
    cr_assert_eq(r.n, 0, "held sends go from ticks only");
    tether_engine_tick(h.e[0], h.now); /* one slice per SLICE_MS */
    h_pump(&h);
    cr_assert_eq(r.n, 0, "a slice is a part of the first message");
    cr_assert_eq(tether_engine_next_deadline(h.e[0]),
                 h.now + TETHER_ENGINE_DEFER_SLICE_MS,
                 "the next slice after SLICE_MS");
    /* A message sent now queues behind the backlog. */
    cr_assert_eq(send_id(&h, 0, 1, 13), 0);
    h_pump(&h);
    cr_assert_eq(r.n, 0);
    ticks = tick_slices(&h, &r, 13, 12, mib, 1, 1000);
    cr_assert_eq(r.n, 13, "all delivered, after %d ticks", ticks);
    cr_assert_geq((size_t)ticks + 1, 12 * mib / TETHER_ENGINE_DEFER_SLICE_BYTES,
                  "12 MiB took %d ticks", ticks);
    for (int k = 0; k < 13; k++)
        cr_assert_eq(r.ids[k], k + 1, "in order");
    cr_assert_eq(tether_engine_stats(h.e[0])->defer_overflow, 0);
    cr_assert_eq(tether_engine_stats(h.e[1])->recv_rejected, 0);
    h_free(&h);
}

/* A held send whose sealing a new session cut off is sealed again from
 * its first byte on the new session: it arrives once, whole, in order,
 * and nothing sealed on the old session reaches the peer. */
Test(engine, a_seal_cut_by_a_new_session_is_sealed_again)
{
    harness_t h;
    rec_t r = {0};
    const size_t mib = 1u << 20;

    cut_mid_seal(&h, &r, 2, mib);
    h_peer_up(&h, 0, 1);
    h_run(&h, 500); /* a new session, and the flush from the start */
    cr_assert_eq(r.n, 2);
    cr_assert_eq(r.ids[0], 1);
    cr_assert_eq(r.ids[1], 2);
    cr_assert_eq(tether_engine_stats(h.e[0])->defer_discarded, 0);
    cr_assert_eq(tether_engine_stats(h.e[1])->recv_rejected, 0);
    h_free(&h);
}

/* A peer that restarts while a held send is being sealed for its old life
 * gets none of them: the one being sealed is discarded with the rest. */
Test(engine, a_restart_discards_the_send_being_sealed)
{
    harness_t h;
    rec_t r = {0};
    const size_t mib = 1u << 20;

    cut_mid_seal(&h, &r, 3, mib);
    tether_engine_free(h.e[1]);
    h.e[1] = NULL;
    h.inc[1]++;
    h_start(&h, 1);
    cr_assert_eq(tether__engine_register_module(h.e[1], &rec_big_module, &r),
                 0);
    h_peer_up(&h, 0, 1);
    h_run(&h, 500);
    cr_assert_eq(r.n, 0, "nothing held for the old life arrives");
    cr_assert_eq(tether_engine_stats(h.e[0])->defer_discarded, 3);
    h_free(&h);
}
