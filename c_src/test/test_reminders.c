/*
 * Criterion suite for core/reminders.c, through real engines in the
 * harness (test/harness.h: heartbeat 100 ms, TTL 400 ms, a 10 ms tick;
 * the wall clock is the engine's time): the timer heap's order, sets
 * answered after a majority, exactly one fire in a stable cluster,
 * cancels, holds without a subscriber, handoff on a join (only moved
 * shards, no duplicate), the owner killed before the fire time (missed
 * => fire | skip), anti-entropy after a cut, persisted records loaded
 * into a fresh engine, and bad input.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/reminders.h"
#include "core/ring.h"
#include "harness.h"

#define FIRES_MAX 4096

typedef struct fire {
    int node;
    long key;
    uint64_t fence;
    uint64_t at;
} fire_t;

typedef struct rm_h {
    harness_t h;
    tether_ring_module_t *ring[H_MAX];
    tether_reminders_t *m[H_MAX];
    tether_reminders_config_t cfg;
    fire_t fires[FIRES_MAX];
    int nfires;
    int replies[H_MAX][4]; /* by status */
    /* STORE records of node 0, for the load test */
    uint8_t *stored[FIRES_MAX];
    size_t stored_len[FIRES_MAX];
    int nstored;
} rm_h_t;

typedef struct key {
    uint8_t b[32];
    size_t len;
} key_t_;

static key_t_ key_of(long k)
{
    ei_x_buff x;
    key_t_ out;

    cr_assert_eq(ei_x_new_with_version(&x), 0);
    cr_assert_eq(ei_x_encode_long(&x, k), 0);
    cr_assert_eq(tether_ring_canon((const uint8_t *)x.buff, (size_t)x.index,
                                   out.b, sizeof out.b, &out.len),
                 0);
    ei_x_free(&x);
    return out;
}

static long key_back(const tether_bytes_t *b)
{
    int i = 1;
    long k = -1;

    cr_assert_eq(ei_decode_long((const char *)b->ptr, &i, &k), 0);
    return k;
}

static void on_action(void *ctx, int i, const tether_action_t *a)
{
    rm_h_t *x = ctx;

    if (a->kind == TETHER_ACT_REMINDER && x->nfires < FIRES_MAX) {
        fire_t *f = &x->fires[x->nfires++];
        f->node = i;
        f->key = key_back(&a->u.reminder.key);
        f->fence = a->u.reminder.fence;
        f->at = x->h.now;
    } else if (a->kind == TETHER_ACT_REMINDER_REPLY) {
        x->replies[i][a->u.reminder_reply.status]++;
    } else if (a->kind == TETHER_ACT_REMINDER_STORE && i == 0 &&
               x->nstored < FIRES_MAX) {
        x->stored[x->nstored] = malloc(a->u.reminder_store.rec.len);
        memcpy(x->stored[x->nstored], a->u.reminder_store.rec.ptr,
               a->u.reminder_store.rec.len);
        x->stored_len[x->nstored++] = a->u.reminder_store.rec.len;
    }
}

static void attach(rm_h_t *x, int i)
{
    tether_ring_config_t rc = {0};

    cr_assert_eq(tether_ring_module_new(&rc, x->h.e[i], &x->ring[i]), 0);
    x->cfg.ring = x->ring[i];
    cr_assert_eq(tether_reminders_new(&x->cfg, x->h.e[i], &x->m[i]), 0);
    tether_reminders_subscribers(x->m[i], 1);
}

static void start(rm_h_t *x, int n, int cluster)
{
    tether_reminders_config_t cfg = x->cfg;

    memset(x, 0, sizeof *x);
    x->cfg = cfg;
    x->cfg.round_ms = x->cfg.round_ms ? x->cfg.round_ms : 200;
    x->cfg.handoff_ms = x->cfg.handoff_ms ? x->cfg.handoff_ms : 2000;
    h_init(&x->h, n);
    x->h.on_action = on_action;
    x->h.action_ctx = x;
    h_start_all(&x->h);
    for (int i = 0; i < n; i++)
        attach(x, i);
    if (cluster && n > 1)
        h_join_all(&x->h);
}

static void stop(rm_h_t *x)
{
    h_free(&x->h);
    for (int i = 0; i < x->nstored; i++)
        free(x->stored[i]);
}

static void set(rm_h_t *x, int i, long k, int64_t at, unsigned flags)
{
    key_t_ key = key_of(k);

    cr_assert_eq(tether_reminders_set(x->m[i], key.b, key.len, at,
                                      (const uint8_t *)"p", 1, flags,
                                      (uint64_t)k),
                 0);
}

static int fires_of(rm_h_t *x, long k)
{
    int n = 0;
    for (int i = 0; i < x->nfires; i++)
        n += x->fires[i].key == k;
    return n;
}

/* The primary of key k as node index. */
static int primary_of(rm_h_t *x, int via, long k)
{
    key_t_ key = key_of(k);
    const tether_ring_t *t = tether_ring_module_table(x->ring[via]);
    uint32_t s = tether_ring_shard_of_hash(
        tether_ring_hash_canon(key.b, key.len), tether_ring_shards(t));

    return h_index(&x->h, tether_ring_primary(t, s));
}

/* Node i crashes: nothing more from or to it, and no connection event
 * (the others find out by the TTL). */
static void kill_node(rm_h_t *x, int i)
{
    for (int j = 0; j < x->h.n; j++)
        x->h.link[i][j] = x->h.link[j][i] = 0;
    tether_engine_free(x->h.e[i]);
    x->h.e[i] = NULL;
    x->m[i] = NULL;
}

Test(reminders, heap_fires_in_time_order)
{
    rm_h_t *x = calloc(1, sizeof *x);
    uint32_t r = 12345;

    start(x, 1, 0);
    h_run(&x->h, 10);
    for (long k = 0; k < 1000; k++) {
        r = r * 1103515245u + 12345u;
        set(x, 0, k, (int64_t)x->h.now + 20 + (r >> 8) % 3000, 0);
    }
    for (long k = 0; k < 1000; k += 3) { /* cancel a third */
        key_t_ key = key_of(k);
        cr_assert_eq(tether_reminders_cancel(x->m[0], key.b, key.len, 0), 0);
    }
    h_pump(&x->h);
    cr_assert_eq(x->replies[0][TETHER_REMINDER_OK], 1000 + 334);
    cr_assert_eq(tether_reminders_stats(x->m[0])->armed, 666);
    h_run(&x->h, 3100);
    cr_assert_eq(x->nfires, 666);
    for (int i = 1; i < x->nfires; i++)
        cr_assert_leq(x->fires[i - 1].at, x->fires[i].at);
    for (int i = 0; i < x->nfires; i++)
        cr_assert_neq(x->fires[i].key % 3, 0, "a cancelled one fired");
    stop(x);
    free(x);
}

Test(reminders, past_fires_at_once_and_reads)
{
    rm_h_t *x = calloc(1, sizeof *x);
    key_t_ k = key_of(7);
    int64_t at = 0;
    const uint8_t *p;
    size_t pl;

    start(x, 1, 0);
    h_run(&x->h, 10);
    set(x, 0, 7, (int64_t)x->h.now + 500, 0);
    cr_assert_eq(tether_reminders_get(x->m[0], k.b, k.len, 1, &at, &p, &pl), 1);
    cr_assert_eq(at, (int64_t)x->h.now + 500);
    cr_assert_eq(pl, 1);
    set(x, 0, 8, INT64_MIN, 0); /* any 64-bit time: far past */
    h_run(&x->h, 10);
    cr_assert_eq(fires_of(x, 8), 1);
    set(x, 0, 9, INT64_MAX, 0); /* far future: pending */
    h_run(&x->h, 600);
    cr_assert_eq(fires_of(x, 7), 1);
    cr_assert_eq(tether_reminders_get(x->m[0], k.b, k.len, 1, &at, &p, &pl), 0,
                 "not_found once fired");
    cr_assert_eq(fires_of(x, 9), 0);
    stop(x);
    free(x);
}

Test(reminders, cluster_fires_once_after_majority)
{
    rm_h_t *x = calloc(1, sizeof *x);

    start(x, 3, 1);
    for (long k = 0; k < 300; k++)
        set(x, (int)(k % 3), k, (int64_t)x->h.now + 300 + k, 0);
    /* Before pumping, only what was local could be counted. */
    h_pump(&x->h);
    cr_assert_eq(x->replies[0][TETHER_REMINDER_OK] +
                     x->replies[1][TETHER_REMINDER_OK] +
                     x->replies[2][TETHER_REMINDER_OK],
                 300);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(tether_reminders_stats(x->m[i])->pending, 300,
                     "every node replicates every key (R = 3)");
    h_run(&x->h, 800);
    cr_assert_eq(x->nfires, 300);
    for (long k = 0; k < 300; k++)
        cr_assert_eq(fires_of(x, k), 1, "key %ld", k);
    for (int i = 0; i < x->nfires; i++)
        cr_assert_eq(x->fires[i].node, primary_of(x, 0, x->fires[i].key));
    stop(x);
    free(x);
}

Test(reminders, cancelled_never_fire_and_replace)
{
    rm_h_t *x = calloc(1, sizeof *x);
    key_t_ k = key_of(1);

    start(x, 3, 1);
    set(x, 1, 1, (int64_t)x->h.now + 200, 0);
    set(x, 2, 2, (int64_t)x->h.now + 200, 0);
    h_pump(&x->h);
    cr_assert_eq(tether_reminders_cancel(x->m[0], k.b, k.len, 5), 0);
    set(x, 0, 2, (int64_t)x->h.now + 400, 0); /* replaces key 2's */
    h_run(&x->h, 300);
    cr_assert_eq(fires_of(x, 1), 0);
    cr_assert_eq(fires_of(x, 2), 0, "replaced: the later time holds");
    h_run(&x->h, 200);
    cr_assert_eq(fires_of(x, 2), 1);
    stop(x);
    free(x);
}

Test(reminders, held_without_subscriber)
{
    rm_h_t *x = calloc(1, sizeof *x);

    x->cfg.hold_ms = 1000;
    start(x, 1, 0);
    tether_reminders_subscribers(x->m[0], 0);
    h_run(&x->h, 10);
    set(x, 0, 1, (int64_t)x->h.now + 100, 0);
    set(x, 0, 2, (int64_t)x->h.now + 100, 0);
    h_run(&x->h, 300);
    cr_assert_eq(x->nfires, 0);
    cr_assert_eq(tether_reminders_stats(x->m[0])->held, 2);
    tether_reminders_subscribers(x->m[0], 1);
    h_pump(&x->h);
    cr_assert_eq(x->nfires, 2, "delivered when a subscriber appears");
    tether_reminders_subscribers(x->m[0], 0);
    set(x, 0, 3, (int64_t)x->h.now + 100, 0);
    h_run(&x->h, 1300);
    cr_assert_eq(x->nfires, 2);
    cr_assert_eq(tether_reminders_stats(x->m[0])->hold_dropped, 1);
    tether_reminders_subscribers(x->m[0], 1);
    h_run(&x->h, 100);
    cr_assert_eq(x->nfires, 2, "dropped after hold_ms");
    stop(x);
    free(x);
}

Test(reminders, join_hands_off_moved_shards_only)
{
    rm_h_t *x = calloc(1, sizeof *x);
    uint64_t recs;

    start(x, 4, 0);
    /* a, b, c form the cluster; d joins later. */
    for (int i = 1; i < 3; i++)
        cr_assert_eq(tether_engine_join(x->h.e[i], x->h.names[0]), 0);
    h_run(&x->h, 1000);
    for (long k = 0; k < 600; k++) {
        set(x, (int)(k % 3), k, (int64_t)x->h.now + 600 + k, 0);
        if (k % 50 == 49)
            h_pump(&x->h);
    }
    h_pump(&x->h);
    cr_assert_eq(tether_engine_join(x->h.e[3], x->h.names[0]), 0);
    h_run(&x->h, 1400);
    cr_assert_eq(x->nfires, 600);
    for (long k = 0; k < 600; k++)
        cr_assert_eq(fires_of(x, k), 1, "key %ld fired %d times", k,
                     fires_of(x, k));
    recs = 0;
    for (int i = 0; i < 3; i++)
        recs += tether_reminders_stats(x->m[i])->handoff_records;
    {
        uint64_t fw = 0, sy = 0;
        for (int i = 0; i < 4; i++) {
            fw += tether_reminders_stats(x->m[i])->forward_records;
            sy += tether_reminders_stats(x->m[i])->sync_records;
        }
        cr_log_info("join of 600: handoff %llu, forward %llu, sync %llu "
                    "records",
                    (unsigned long long)recs, (unsigned long long)fw,
                    (unsigned long long)sy);
    }
    cr_assert_gt(tether_reminders_stats(x->m[3])->handoffs_in, 0);
    cr_assert_eq(tether_reminders_stats(x->m[3])->handoff_timeouts, 0);
    /* About a quarter of the shards moved to d: their records only
     * (the shards d newly replicates come by anti-entropy). */
    cr_assert_gt(recs, 0);
    cr_assert_lt(recs, 600 / 2, "handoff sent %llu records",
                 (unsigned long long)recs);
    stop(x);
    free(x);
}

static void owner_killed(int skip)
{
    rm_h_t *x = calloc(1, sizeof *x);
    long k = 11;
    int p, fired_on = -1;

    x->cfg.missed_ms = 100;
    start(x, 3, 1);
    p = primary_of(x, 0, k);
    set(x, (p + 1) % 3, k, (int64_t)x->h.now + 200,
        skip ? TETHER_REMINDER_SKIP : 0);
    h_pump(&x->h);
    kill_node(x, p);
    h_run(&x->h, 2000);
    for (int i = 0; i < x->nfires; i++)
        if (x->fires[i].key == k)
            fired_on = x->fires[i].node;
    if (skip) {
        cr_assert_eq(fires_of(x, k), 0, "missed, skip: not fired");
    } else {
        cr_assert_eq(fires_of(x, k), 1, "missed, fire: fired once");
        cr_assert_neq(fired_on, p);
    }
    stop(x);
    free(x);
}

Test(reminders, owner_killed_missed_fire)
{
    owner_killed(0);
}
Test(reminders, owner_killed_missed_skip)
{
    owner_killed(1);
}

Test(reminders, owner_killed_before_time_fires_on_next)
{
    rm_h_t *x = calloc(1, sizeof *x);
    long k = 12;
    int p;

    start(x, 3, 1);
    p = primary_of(x, 0, k);
    set(x, (p + 1) % 3, k, (int64_t)x->h.now + 1500, TETHER_REMINDER_SKIP);
    h_pump(&x->h);
    kill_node(x, p);
    h_run(&x->h, 2000);
    cr_assert_eq(fires_of(x, k), 1, "on time on the next owner: not missed");
    stop(x);
    free(x);
}

Test(reminders, anti_entropy_after_cut)
{
    rm_h_t *x = calloc(1, sizeof *x);

    start(x, 3, 1);
    /* c hears nothing from a for a while (a's puts to c are lost). */
    x->h.link[0][2] = 0;
    for (long k = 0; k < 50; k++)
        set(x, 0, k, (int64_t)x->h.now + 100000, 0);
    h_pump(&x->h);
    cr_assert_eq(x->replies[0][TETHER_REMINDER_OK], 50, "a and b: majority");
    cr_assert_eq(tether_reminders_stats(x->m[2])->pending, 0);
    x->h.link[0][2] = 1;
    h_run(&x->h, 300);
    cr_assert_eq(tether_reminders_stats(x->m[2])->pending, 50,
                 "c: %llu pending, a: %llu syncs, c: %llu syncs, %llu bad",
                 (unsigned long long)tether_reminders_stats(x->m[2])->pending,
                 (unsigned long long)tether_reminders_stats(x->m[0])->syncs,
                 (unsigned long long)tether_reminders_stats(x->m[2])->syncs,
                 (unsigned long long)tether_reminders_stats(x->m[2])->bad_msgs);
    stop(x);
    free(x);
}

Test(reminders, persisted_records_load)
{
    rm_h_t *x = calloc(1, sizeof *x), *y = calloc(1, sizeof *y);
    int64_t at;

    start(x, 1, 0);
    h_run(&x->h, 10);
    at = (int64_t)x->h.now + 300;
    for (long k = 0; k < 20; k++)
        set(x, 0, k, at, 0);
    {
        key_t_ key = key_of(3);
        cr_assert_eq(tether_reminders_cancel(x->m[0], key.b, key.len, 0), 0);
    }
    h_pump(&x->h);
    cr_assert_eq(x->nstored, 21);
    y->cfg.settle_ms = 100;
    start(y, 1, 0);
    y->h.now = x->h.now;
    for (int i = 0; i < x->nstored; i++)
        cr_assert_eq(
            tether_reminders_load(y->m[0], x->stored[i], x->stored_len[i]), 0);
    cr_assert_eq(tether_reminders_load(y->m[0], (const uint8_t *)"\x83xx", 3),
                 TETHER_EPROTO, "a torn record is refused");
    cr_assert_eq(tether_reminders_stats(y->m[0])->load_errors, 1);
    cr_assert_eq(tether_reminders_stats(y->m[0])->pending, 19);
    h_run(&y->h, 600);
    cr_assert_eq(y->nfires, 19);
    stop(x);
    stop(y);
    free(x);
    free(y);
}

Test(reminders, bad_input)
{
    rm_h_t *x = calloc(1, sizeof *x);
    static uint8_t big[TETHER_REMINDER_PAYLOAD_MAX + 1];
    key_t_ k = key_of(1);
    ei_x_buff m;

    start(x, 2, 1);
    cr_assert_eq(tether_reminders_set(x->m[0], k.b, 0, 0, NULL, 0, 0, 0),
                 TETHER_EINVAL);
    cr_assert_eq(
        tether_reminders_set(x->m[0], k.b, k.len, 0, big, sizeof big, 0, 0),
        TETHER_ETOOBIG);
    cr_assert_eq(tether_reminders_set(x->m[0], k.b, k.len, 0, big, 1, 0x80, 0),
                 TETHER_EINVAL);
    /* Garbage from an authenticated member: counted, nothing else. */
    h_etf_begin(&m, 3, "rm_put");
    cr_assert_eq(ei_x_encode_ulong(&m, 1), 0);
    cr_assert_eq(ei_x_encode_atom(&m, "nope"), 0);
    h_send_etf(&x->h, 1, 0, TETHER_MSG_REMINDERS, &m);
    h_etf_begin(&m, 3, "rm_release");
    cr_assert_eq(ei_x_encode_ulong(&m, 999999), 0);
    cr_assert_eq(ei_x_encode_ulong(&m, 1), 0);
    h_send_etf(&x->h, 1, 0, TETHER_MSG_REMINDERS, &m);
    h_etf_begin(&m, 2, "rm_whatever");
    cr_assert_eq(ei_x_encode_ulong(&m, 1), 0);
    h_send_etf(&x->h, 1, 0, TETHER_MSG_REMINDERS, &m);
    cr_assert_eq(tether_reminders_stats(x->m[0])->bad_msgs, 3);
    cr_assert_eq(tether_reminders_stats(x->m[0])->pending, 0);
    stop(x);
    free(x);
}
