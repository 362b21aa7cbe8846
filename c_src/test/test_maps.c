/*
 * Criterion suite for core/maps.c, through real engines in the harness
 * (test/harness.h: heartbeat 100 ms, TTL 400 ms, a 10 ms tick): puts and
 * removes everywhere, concurrent puts that converge with no anti-entropy
 * round, drop and defer partitions, one key rewritten 100,000 times,
 * anti-entropy bytes for 10 changed keys of 100,000, notify actions,
 * tombstone collection and bad input.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "core/maps.h"
#include "core/ring.h"
#include "harness.h"

typedef struct term {
    uint8_t b[256];
    size_t len;
} term_t;

#define RECS_MAX 64

/* A persisted record as a TETHER_ACT_MAP_STORE carried it. */
typedef struct rec {
    uint8_t b[256];
    size_t len;
} rec_t;

typedef struct mh {
    harness_t h;
    tether_maps_t *m[H_MAX];
    tether_map_t *map[H_MAX];
    int events[H_MAX];
    int removed[H_MAX];
    rec_t recs[H_MAX][RECS_MAX]; /* MAP_STORE records of map "m" */
    int nrecs[H_MAX];
    int other_recs[H_MAX]; /* MAP_STORE records of other maps */
} mh_t;

static term_t T; /* scratch */

/* The canonical bytes of atom a / of integer i / of binary s. */
static term_t atom(const char *a)
{
    ei_x_buff x;
    term_t t;

    cr_assert_eq(ei_x_new_with_version(&x), 0);
    cr_assert_eq(ei_x_encode_atom(&x, a), 0);
    cr_assert_eq(tether_ring_canon((const uint8_t *)x.buff, (size_t)x.index,
                                   t.b, sizeof t.b, &t.len),
                 0);
    ei_x_free(&x);
    return t;
}

static term_t integer(long i)
{
    ei_x_buff x;
    term_t t;

    cr_assert_eq(ei_x_new_with_version(&x), 0);
    cr_assert_eq(ei_x_encode_long(&x, i), 0);
    cr_assert_eq(tether_ring_canon((const uint8_t *)x.buff, (size_t)x.index,
                                   t.b, sizeof t.b, &t.len),
                 0);
    ei_x_free(&x);
    return t;
}

static void on_act(void *ctx, int i, const tether_action_t *a)
{
    mh_t *x = ctx;

    if (a->kind == TETHER_ACT_MAP_STORE) {
        term_t m = atom("m");
        if (a->u.map_store.name.len != m.len ||
            memcmp(a->u.map_store.name.ptr, m.b, m.len) != 0) {
            x->other_recs[i]++;
            return;
        }
        cr_assert_lt(x->nrecs[i], RECS_MAX);
        cr_assert_leq(a->u.map_store.rec.len, sizeof x->recs[i][0].b);
        memcpy(x->recs[i][x->nrecs[i]].b, a->u.map_store.rec.ptr,
               a->u.map_store.rec.len);
        x->recs[i][x->nrecs[i]++].len = a->u.map_store.rec.len;
        return;
    }
    if (a->kind != TETHER_ACT_MAP)
        return;
    x->events[i]++;
    x->removed[i] += a->u.map.removed;
}

static void start_opts(mh_t *x, int n, uint32_t sync_ms,
                       const tether_map_opts_t *opts)
{
    tether_maps_config_t cfg = {.sync_ms = sync_ms};
    term_t name = atom("m");

    memset(x, 0, sizeof *x);
    h_init(&x->h, n);
    x->h.on_action = on_act;
    x->h.action_ctx = x;
    h_start_all(&x->h);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(tether_maps_new(&cfg, x->h.e[i], &x->m[i]), 0);
        cr_assert_eq(
            tether_maps_host(x->m[i], name.b, name.len, opts, &x->map[i]), 0);
        tether_maps_set_notify(x->map[i], 1);
    }
    h_join_all(&x->h);
    for (int i = 0; i < n; i++)
        cr_assert_eq(tether__maps_hosts(x->map[i]), (size_t)n - 1,
                     "node %d knows every other host", i);
}

static void start(mh_t *x, int n, uint32_t sync_ms)
{
    start_opts(x, n, sync_ms, NULL);
}

static void put(mh_t *x, int i, long k, long v)
{
    term_t key = integer(k);

    T = integer(v);
    cr_assert_eq(tether_maps_write(x->m[i], x->map[i], key.b, key.len, T.b,
                                   T.len, NULL, NULL),
                 0);
}

static void del(mh_t *x, int i, long k)
{
    term_t key = integer(k);

    cr_assert_eq(tether_maps_write(x->m[i], x->map[i], key.b, key.len, NULL, 0,
                                   NULL, NULL),
                 0);
}

/* The value of key k on node i, or -1. */
static long get(mh_t *x, int i, long k)
{
    term_t key = integer(k);
    const uint8_t *v;
    size_t vlen;
    long out;
    int idx = 1;

    if (!tether_maps_get(x->map[i], key.b, key.len, &v, &vlen))
        return -1;
    cr_assert_eq(ei_decode_long((const char *)v, &idx, &out), 0);
    return out;
}

static void assert_same(mh_t *x)
{
    for (int i = 1; i < x->h.n; i++) {
        cr_assert_eq(tether__maps_digest(x->map[i]),
                     tether__maps_digest(x->map[0]), "node %d differs", i);
        cr_assert_eq(tether_maps_size(x->map[i]), tether_maps_size(x->map[0]));
    }
}

Test(maps, puts_and_removes_everywhere)
{
    mh_t x;

    start(&x, 3, 1000000);
    for (int i = 0; i < 3; i++)
        for (long k = 0; k < 10; k++)
            put(&x, i, k + 100 * i, k);
    h_pump(&x.h);
    del(&x, 1, 3);
    del(&x, 2, 105);
    h_pump(&x.h);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tether_maps_size(x.map[i]), 28);
        cr_assert_eq(get(&x, i, 4), 4);
        cr_assert_eq(get(&x, i, 3), -1);
        cr_assert_eq(get(&x, i, 205), 5);
    }
    assert_same(&x);
    h_free(&x.h);
}

Test(maps, concurrent_puts_converge_with_no_anti_entropy)
{
    mh_t x;
    uint64_t rounds[3];

    start(&x, 3, 1000000);
    h_pump(&x.h);
    for (int i = 0; i < 3; i++)
        rounds[i] = tether_maps_stats(x.m[i])->ae_rounds;
    /* One key written on every node before any message moves. */
    for (int i = 0; i < 3; i++)
        put(&x, i, 7, 1000 + i);
    h_pump(&x.h);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tether_maps_stats(x.m[i])->ae_rounds, rounds[i],
                     "no anti-entropy round ran");
        cr_assert_eq(get(&x, i, 7), get(&x, 0, 7));
    }
    assert_same(&x);
    h_free(&x.h);
}

Test(maps, drop_partition_diverges_then_converges_on_heal)
{
    mh_t x;
    uint64_t ref;
    const char *a[] = {"a@test"}, *b[] = {"b@test", "c@test"};

    start(&x, 3, 1000000);
    put(&x, 0, 1, 1);
    h_pump(&x.h);
    cr_assert_eq(tether_engine_partition(x.h.e[0], a, 1, b, 2,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    h_run(&x.h, 200);
    put(&x, 0, 1, 10);
    put(&x, 2, 2, 20);
    del(&x, 1, 1);
    h_run(&x.h, 200);
    cr_assert_eq(get(&x, 0, 2), -1, "dropped");
    cr_assert_eq(get(&x, 2, 1), -1);
    cr_assert_eq(get(&x, 0, 1), 10);
    cr_assert_eq(tether_engine_heal(x.h.e[1], ref), 0);
    h_run(&x.h, 500);
    assert_same(&x);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(get(&x, i, 2), 20);
        cr_assert_eq(
            get(&x, i, 1), -1,
            "the remove is the later write (b sorts after a at one stamp)");
    }
    h_free(&x.h);
}

Test(maps, defer_partition_delivers_in_order_on_heal)
{
    mh_t x;
    uint64_t ref;
    const char *a[] = {"a@test"}, *b[] = {"b@test"};

    start(&x, 2, 1000000);
    cr_assert_eq(tether_engine_partition(x.h.e[0], a, 1, b, 1,
                                         TETHER_PARTITION_DEFER, &ref),
                 0);
    for (long v = 1; v <= 50; v++)
        put(&x, 0, 5, v);
    del(&x, 0, 5);
    put(&x, 0, 6, 66);
    h_run(&x.h, 1000);
    cr_assert_eq(get(&x, 1, 6), -1, "held");
    x.events[1] = 0;
    tether_engine_heal_all(x.h.e[1]);
    h_run(&x.h, 100);
    cr_assert_eq(get(&x, 1, 5), -1);
    cr_assert_eq(get(&x, 1, 6), 66);
    cr_assert_eq(x.events[1], 52, "every write applied in order");
    assert_same(&x);
    h_free(&x.h);
}

Test(maps, one_key_rewritten_100000_times_stays_one_entry)
{
    mh_t x;
    uint64_t bytes;

    start(&x, 2, 1000);
    h_run(&x.h, 1100);
    for (long v = 0; v < 100000; v++) {
        put(&x, 0, 1, v);
        if (v % 1000 == 0)
            h_run(&x.h, 10); /* the HLC's logical counter is 16 bits */
    }
    h_pump(&x.h);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(tether__maps_entries(x.map[i]), 1);
        cr_assert_eq(get(&x, i, 1), 99999);
    }
    /* A round after it all: a digest and nothing more (equal maps). */
    bytes = tether_maps_stats(x.m[0])->ae_bytes +
            tether_maps_stats(x.m[1])->ae_bytes;
    h_run(&x.h, 1100);
    cr_assert_lt(tether_maps_stats(x.m[0])->ae_bytes +
                     tether_maps_stats(x.m[1])->ae_bytes - bytes,
                 200);
    h_free(&x.h);
}

Test(maps, ten_changed_of_100000_cost_only_what_differs, .timeout = 120)
{
    mh_t x;
    uint64_t ref, before;
    const char *a[] = {"a@test"}, *b[] = {"b@test"};
    term_t name = atom("big");
    tether_map_t *big[2];

    start(&x, 2, 1000000);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(tether_maps_host(x.m[i], name.b, name.len, NULL, &big[i]),
                     0);
    cr_assert_eq(tether_engine_partition(x.h.e[0], a, 1, b, 1,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    h_run(&x.h, 100);
    for (long k = 0; k < 100000; k++) {
        term_t key = integer(k);
        T = integer(k);
        cr_assert_eq(tether_maps_write(x.m[0], big[0], key.b, key.len, T.b,
                                       T.len, NULL, NULL),
                     0);
        if (k % 10000 == 0)
            h_run(&x.h, 10);
    }
    tether_engine_heal_all(x.h.e[0]);
    h_run(&x.h, 500);
    cr_assert_eq(tether_maps_size(big[1]), 100000, "a first full copy");
    cr_assert_eq(tether__maps_digest(big[1]), tether__maps_digest(big[0]));
    /* Partitioned again: 10 keys change on b. */
    cr_assert_eq(tether_engine_partition(x.h.e[0], a, 1, b, 1,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    h_run(&x.h, 100);
    for (long k = 0; k < 10; k++) {
        term_t key = integer(k * 9973);
        T = integer(-k);
        cr_assert_eq(tether_maps_write(x.m[1], big[1], key.b, key.len, T.b,
                                       T.len, NULL, NULL),
                     0);
    }
    before = tether_maps_stats(x.m[0])->ae_bytes +
             tether_maps_stats(x.m[1])->ae_bytes;
    tether_engine_heal_all(x.h.e[0]);
    h_run(&x.h, 500);
    cr_assert_eq(tether__maps_digest(big[1]), tether__maps_digest(big[0]));
    {
        uint64_t sent = tether_maps_stats(x.m[0])->ae_bytes +
                        tether_maps_stats(x.m[1])->ae_bytes - before;
        fprintf(stderr,
                "maps: anti-entropy for 10 changed of 100,000 keys: %llu "
                "bytes (both ways, both maps)\n",
                (unsigned long long)sent);
        cr_assert_lt(sent, 64 * 1024, "no full copy: %llu bytes",
                     (unsigned long long)sent);
    }
    h_free(&x.h);
}

Test(maps, notify_once_per_visible_change)
{
    mh_t x;

    start(&x, 2, 1000000);
    put(&x, 0, 1, 1);
    put(&x, 0, 1, 1); /* the same value again: no change */
    put(&x, 0, 1, 2);
    del(&x, 0, 1);
    del(&x, 0, 1); /* removing what is gone: no change */
    h_pump(&x.h);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(x.events[i], 3, "node %d: %d", i, x.events[i]);
        cr_assert_eq(x.removed[i], 1);
    }
    h_free(&x.h);
}

Test(maps, tombstones_are_collected_after_their_ttl)
{
    mh_t x;
    term_t name = atom("short");
    tether_map_opts_t o = {.tombstone_ttl_ms = 300};
    tether_map_t *s[2];
    term_t key = integer(1);

    start(&x, 2, 100);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(tether_maps_host(x.m[i], name.b, name.len, &o, &s[i]), 0);
    h_run(&x.h, 200);
    T = integer(1);
    cr_assert_eq(
        tether_maps_write(x.m[0], s[0], key.b, key.len, T.b, T.len, NULL, NULL),
        0);
    cr_assert_eq(
        tether_maps_write(x.m[0], s[0], key.b, key.len, NULL, 0, NULL, NULL),
        0);
    h_pump(&x.h);
    cr_assert_eq(tether__maps_entries(s[1]), 1, "a tombstone");
    h_run(&x.h, 600);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(tether__maps_entries(s[i]), 0);
        cr_assert_gt(tether_maps_stats(x.m[i])->tombs_collected, 0);
    }
    h_free(&x.h);
}

Test(maps, bad_input_is_refused_and_counted)
{
    mh_t x;
    term_t key = integer(1);
    static uint8_t big[TETHER_MAPS_VALUE_MAX + 2];
    const uint8_t junk[] = {131, 104, 1};
    ei_x_buff m;
    tether_map_t *none;

    start(&x, 2, 1000000);
    cr_assert_eq(tether_maps_write(x.m[0], x.map[0], key.b, key.len, junk,
                                   sizeof junk, NULL, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_maps_write(x.m[0], x.map[0], key.b, key.len, big,
                                   sizeof big, NULL, NULL),
                 TETHER_ETOOBIG);
    cr_assert_eq(tether_maps_write(x.m[0], x.map[0], junk, sizeof junk, NULL, 0,
                                   NULL, NULL),
                 TETHER_EINVAL);
    none = tether_maps_find(x.m[0], key.b, key.len);
    cr_assert_null(none);
    cr_assert_eq(tether_maps_unhost(x.m[0], key.b, key.len), TETHER_ENOTFOUND);
    /* A map_put whose entry is not a 4-tuple; a digest of the wrong size;
     * a put for a map b does not host. */
    T = atom("m");
    h_etf_begin(&m, 3, "map_put");
    ei_x_encode_binary(&m, T.b, (long)T.len);
    ei_x_encode_list_header(&m, 1);
    ei_x_encode_atom(&m, "x");
    ei_x_encode_empty_list(&m);
    h_send_etf(&x.h, 0, 1, TETHER_MSG_MAPS, &m);
    h_etf_begin(&m, 4, "map_digest");
    ei_x_encode_binary(&m, T.b, (long)T.len);
    ei_x_encode_long(&m, 3);
    ei_x_encode_binary(&m, "abc", 3);
    h_send_etf(&x.h, 0, 1, TETHER_MSG_MAPS, &m);
    h_etf_begin(&m, 4, "map_hashes");
    ei_x_encode_binary(&m, T.b, (long)T.len);
    ei_x_encode_long(&m, 2);
    ei_x_encode_list_header(&m, 1);
    ei_x_encode_tuple_header(&m, 2);
    ei_x_encode_long(&m, 9); /* beyond 2^2 buckets */
    ei_x_encode_binary(&m, "", 0);
    ei_x_encode_empty_list(&m);
    h_send_etf(&x.h, 0, 1, TETHER_MSG_MAPS, &m);
    cr_assert_eq(tether_maps_stats(x.m[1])->bad, 3);
    T = atom("other");
    h_etf_begin(&m, 3, "map_pull");
    ei_x_encode_binary(&m, T.b, (long)T.len);
    ei_x_encode_binary(&m, "", 0);
    h_send_etf(&x.h, 0, 1, TETHER_MSG_MAPS, &m);
    cr_assert_eq(tether_maps_stats(x.m[1])->not_hosted, 1);
    /* The map still works. */
    put(&x, 0, 3, 3);
    h_pump(&x.h);
    cr_assert_eq(get(&x, 1, 3), 3);
    h_free(&x.h);
}

Test(maps, unhost_drops_entries_and_tells_peers)
{
    mh_t x;
    term_t name = atom("m");

    start(&x, 2, 1000000);
    put(&x, 0, 1, 1);
    h_pump(&x.h);
    cr_assert_eq(tether_maps_unhost(x.m[1], name.b, name.len), 0);
    h_pump(&x.h);
    cr_assert_null(tether_maps_find(x.m[1], name.b, name.len));
    cr_assert_eq(tether__maps_hosts(x.map[0]), 0);
    cr_assert_eq(tether_maps_host(x.m[1], name.b, name.len, NULL, &x.map[1]),
                 0);
    h_pump(&x.h);
    cr_assert_eq(get(&x, 1, 1), 1, "caught up by anti-entropy");
    h_free(&x.h);
}

/* tether_maps_dump's callback: loads each record into another map. */
static int load_into(void *ctx, const uint8_t *rec, size_t len)
{
    return tether_maps_load(ctx, rec, len);
}

/*
 * A persisted map yields one record per write applied on each host (its
 * own and the other's); fed back to a fresh map, in any order, they give
 * the same contents; loading yields no record; the dump (a compacted log)
 * gives the same contents again; bytes that are not a record change
 * nothing.
 */
Test(maps, persisted_records_rebuild_the_map)
{
    tether_map_opts_t opts = {.persist = 1};
    term_t copy = atom("copy"), copy2 = atom("copy2");
    tether_map_t *c, *c2;
    mh_t x;
    int n;

    start_opts(&x, 2, 1000000, &opts);
    for (long k = 1; k <= 10; k++)
        put(&x, (int)(k % 2), k, k * 10);
    h_run(&x.h, 200);
    del(&x, 0, 3);
    h_run(&x.h, 200);
    put(&x, 1, 4, 44);
    h_run(&x.h, 200);
    assert_same(&x);
    /* Every host logged every write it applied: 10 puts, 1 remove, 1 put. */
    cr_assert_eq(x.nrecs[0], 12);
    cr_assert_eq(x.nrecs[1], 12);
    cr_assert_eq(
        tether_maps_host(x.m[1], copy.b, copy.len, &opts, &c), 0);
    /* Newest first: the order of a log does not matter. */
    for (int r = x.nrecs[1] - 1; r >= 0; r--)
        cr_assert_eq(tether_maps_load(c, x.recs[1][r].b, x.recs[1][r].len), 0);
    cr_assert_eq(tether__maps_digest(c), tether__maps_digest(x.map[1]));
    cr_assert_eq(tether_maps_size(c), 9u);
    n = x.other_recs[1];
    h_run(&x.h, 100);
    cr_assert_eq(x.other_recs[1], n, "loading yields no record");
    cr_assert_eq(tether_maps_host(x.m[0], copy2.b, copy2.len, &opts, &c2), 0);
    cr_assert_eq(tether_maps_dump(x.map[0], load_into, c2), 0);
    cr_assert_eq(tether__maps_digest(c2), tether__maps_digest(x.map[0]));
    cr_assert_eq(tether__maps_entries(c2), 10u); /* the tombstone too */
    /* Not records: refused whole. */
    {
        rec_t r = x.recs[1][0];
        uint64_t d = tether__maps_digest(c);
        for (size_t cut = 0; cut < r.len; cut++)
            cr_assert_eq(tether_maps_load(c, r.b, cut), TETHER_EPROTO);
        r.b[r.len++] = 0;
        cr_assert_eq(tether_maps_load(c, r.b, r.len), TETHER_EPROTO);
        cr_assert_eq(tether__maps_digest(c), d);
    }
    cr_assert_eq(tether_maps_load(NULL, x.recs[1][0].b, 1), TETHER_EINVAL);
    h_free(&x.h);
}
