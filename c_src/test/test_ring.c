/*
 * Criterion suite for core/ring.c: the canonical encoding (every encoder
 * choice of the same term gives the same bytes; the fast paths equal the
 * general path; closures, truncations and trailing bytes refused; golden
 * vectors from test/data/ring_golden.etf), the rendezvous table (distinct
 * owners, precomputed and computed orders agree, about S/(N+1) shards move
 * to a joining member and none between members that stay, copies and
 * bad input), and the cluster ring module (one generation per change of
 * membership, each node's events add up to its ownership, every node
 * agrees on every shard's owners).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "core/ring.h"
#include "sim/sim.h"
#include "test/harness.h"
#include "test/sim_check.h"

/* ------------------------------------------------------------- keys */

/* The hash of raw ETF bytes (given without the version byte). */
static uint64_t hash_of(const uint8_t *b, size_t n)
{
    uint8_t buf[512];
    uint64_t h = 0;

    cr_assert_lt(n + 1, sizeof buf);
    buf[0] = 131;
    memcpy(buf + 1, b, n);
    cr_assert_eq(tether_ring_hash_term(buf, n + 1, &h), 0);
    return h;
}

Test(ring_key, every_encoding_of_a_term_hashes_alike)
{
    /* 5 as SMALL_INTEGER, INTEGER and SMALL_BIG. */
    const uint8_t i1[] = {97, 5}, i2[] = {98, 0, 0, 0, 5},
                  i3[] = {110, 2, 0, 5, 0};
    /* the atom abc in all four atom encodings */
    const uint8_t a1[] = {100, 0, 3, 'a', 'b', 'c'},
                  a2[] = {115, 3, 'a', 'b', 'c'},
                  a3[] = {118, 0, 3, 'a', 'b', 'c'},
                  a4[] = {119, 3, 'a', 'b', 'c'};
    /* 'é' latin1 and UTF-8 */
    const uint8_t l1[] = {115, 1, 0xE9}, l2[] = {119, 2, 0xC3, 0xA9};
    /* [1,2] as STRING_EXT and LIST_EXT */
    const uint8_t s1[] = {107, 0, 2, 1, 2},
                  s2[] = {108, 0, 0, 0, 2, 97, 1, 97, 2, 106};
    /* {a} small and large tuple */
    const uint8_t t1[] = {104, 1, 119, 1, 'a'},
                  t2[] = {105, 0, 0, 0, 1, 119, 1, 'a'};
    /* #{a => 1, b => 2} in both orders */
    const uint8_t m1[] = {116, 0, 0,   0, 2,   119, 1, 'a',
                          97,  1, 119, 1, 'b', 97,  2},
                  m2[] = {116, 0, 0,   0, 2,   119, 1, 'b',
                          97,  2, 119, 1, 'a', 97,  1};
    /* a full-byte bitstring is a binary; junk in unused bits ignored */
    const uint8_t b1[] = {109, 0, 0, 0, 1, 7}, b2[] = {77, 0, 0, 0, 1, 8, 7},
                  b3[] = {77, 0, 0, 0, 1, 3, 0xE0},
                  b4[] = {77, 0, 0, 0, 1, 3, 0xFF};
    /* a pid as PID_EXT and NEW_PID_EXT */
    const uint8_t p1[] = {103, 119, 3, 'n', '@', 'h', 0, 0,
                          0,   7,   0, 0,   0,   0,   2},
                  p2[] = {88, 119, 3, 'n', '@', 'h', 0, 0, 0,
                          7,  0,   0, 0,   0,   0,   0, 0, 2};

    cr_assert_eq(hash_of(i1, sizeof i1), hash_of(i2, sizeof i2));
    cr_assert_eq(hash_of(i1, sizeof i1), hash_of(i3, sizeof i3));
    cr_assert_eq(hash_of(i1, sizeof i1), tether_ring_hash_int(5));
    cr_assert_eq(hash_of(a1, sizeof a1), hash_of(a2, sizeof a2));
    cr_assert_eq(hash_of(a1, sizeof a1), hash_of(a3, sizeof a3));
    cr_assert_eq(hash_of(a1, sizeof a1), hash_of(a4, sizeof a4));
    cr_assert_eq(hash_of(l1, sizeof l1), hash_of(l2, sizeof l2));
    cr_assert_eq(hash_of(s1, sizeof s1), hash_of(s2, sizeof s2));
    cr_assert_eq(hash_of(t1, sizeof t1), hash_of(t2, sizeof t2));
    cr_assert_eq(hash_of(m1, sizeof m1), hash_of(m2, sizeof m2));
    cr_assert_eq(hash_of(b1, sizeof b1), hash_of(b2, sizeof b2));
    cr_assert_eq(hash_of(b3, sizeof b3), hash_of(b4, sizeof b4));
    cr_assert_neq(hash_of(b1, sizeof b1), hash_of(b3, sizeof b3));
    cr_assert_eq(hash_of(p1, sizeof p1), hash_of(p2, sizeof p2));
    cr_assert_neq(hash_of(a1, sizeof a1), hash_of(t1, sizeof t1));
}

Test(ring_key, fast_paths_equal_the_general_path)
{
    const int64_t ints[] = {0,         1,
                            255,       256,
                            -1,        INT32_MAX,
                            INT32_MIN, (int64_t)1 << 31,
                            INT64_MAX, INT64_MIN + 1,
                            INT64_MIN};
    char name[] = "tether";
    uint8_t big[300];
    uint64_t h;

    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        ei_x_buff x;
        ei_x_new_with_version(&x);
        ei_x_encode_longlong(&x, ints[i]);
        cr_assert_eq(
            tether_ring_hash_term((uint8_t *)x.buff, (size_t)x.index, &h), 0);
        cr_assert_eq(h, tether_ring_hash_int(ints[i]), "%lld",
                     (long long)ints[i]);
        ei_x_free(&x);
    }
    memset(big, 'q', sizeof big);
    for (size_t len = 0; len < sizeof big; len += 37) {
        ei_x_buff x;
        ei_x_new_with_version(&x);
        ei_x_encode_binary(&x, big, (long)len);
        cr_assert_eq(
            tether_ring_hash_term((uint8_t *)x.buff, (size_t)x.index, &h), 0);
        cr_assert_eq(h, tether_ring_hash_binary(big, len), "%zu", len);
        ei_x_free(&x);
    }
    {
        ei_x_buff x;
        uint64_t a;
        ei_x_new_with_version(&x);
        ei_x_encode_atom(&x, name);
        cr_assert_eq(
            tether_ring_hash_term((uint8_t *)x.buff, (size_t)x.index, &h), 0);
        cr_assert_eq(tether_ring_hash_atom(name, strlen(name), 0, &a), 0);
        cr_assert_eq(h, a);
        cr_assert_eq(tether_ring_hash_atom(name, strlen(name), 1, &a), 0);
        cr_assert_eq(h, a, "ASCII is the same in Latin-1");
        ei_x_free(&x);
    }
    cr_assert_eq(tether_ring_shard_of_hash(UINT64_C(0x1234567), 64), 0x27);
}

/* The key written piece by piece hashes as its external format does:
 * {user, -7, <<"s">>}, ['été', [], "ab", {}], a tuple of 300 elements,
 * INT64 extremes; and a key too big for the buffer says so. */
Test(ring_key, piecewise_keys_equal_the_general_path)
{
    tether_ring_key_t k;
    ei_x_buff x;
    uint64_t h;
    const char ete[] = "\xe9t\xe9"; /* Latin-1 */

    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "user");
    ei_x_encode_long(&x, -7);
    ei_x_encode_binary(&x, "s", 1);
    cr_assert_eq(tether_ring_hash_term((uint8_t *)x.buff, (size_t)x.index, &h),
                 0);
    ei_x_free(&x);
    tether_ring_key_init(&k);
    cr_assert_eq(tether_ring_key_tuple(&k, 3), 0);
    cr_assert_eq(tether_ring_key_atom(&k, "user", 4, 1), 0);
    cr_assert_eq(tether_ring_key_int(&k, -7), 0);
    cr_assert_eq(tether_ring_key_binary(&k, (const uint8_t *)"s", 1), 0);
    cr_assert_eq(tether_ring_key_hash(&k), h);

    ei_x_new_with_version(&x);
    ei_x_encode_list_header(&x, 4);
    ei_x_encode_atom_len_as(&x, ete, 3, ERLANG_LATIN1, ERLANG_UTF8);
    ei_x_encode_empty_list(&x);
    ei_x_encode_string(&x, "ab"); /* STRING_EXT */
    ei_x_encode_tuple_header(&x, 0);
    ei_x_encode_empty_list(&x);
    cr_assert_eq(tether_ring_hash_term((uint8_t *)x.buff, (size_t)x.index, &h),
                 0);
    ei_x_free(&x);
    tether_ring_key_init(&k);
    cr_assert_eq(tether_ring_key_list(&k, 4), 0);
    cr_assert_eq(tether_ring_key_atom(&k, ete, 3, 1), 0);
    cr_assert_eq(tether_ring_key_list(&k, 0), 0);
    cr_assert_eq(tether_ring_key_nil(&k), 0);
    cr_assert_eq(tether_ring_key_list(&k, 2), 0);
    cr_assert_eq(tether_ring_key_int(&k, 'a'), 0);
    cr_assert_eq(tether_ring_key_int(&k, 'b'), 0);
    cr_assert_eq(tether_ring_key_nil(&k), 0);
    cr_assert_eq(tether_ring_key_tuple(&k, 0), 0);
    cr_assert_eq(tether_ring_key_nil(&k), 0);
    cr_assert_eq(tether_ring_key_hash(&k), h);

    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 300);
    tether_ring_key_init(&k);
    cr_assert_eq(tether_ring_key_tuple(&k, 300), 0);
    for (int i = 0; i < 300; i++) {
        int64_t v = i % 3 == 0 ? INT64_MIN : i % 3 == 1 ? INT64_MAX : i;
        ei_x_encode_longlong(&x, v);
        if (i < 40)
            cr_assert_eq(tether_ring_key_int(&k, v), 0);
        else if (tether_ring_key_int(&k, v) != 0)
            break;
    }
    cr_assert_eq(tether_ring_key_int(&k, INT64_MIN), TETHER_ETOOBIG,
                 "the buffer is full by now");
    ei_x_free(&x);
    {
        uint8_t big[TETHER_RING_KEY_FAST + 1] = {0};
        tether_ring_key_init(&k);
        cr_assert_eq(tether_ring_key_binary(&k, big, sizeof big),
                     TETHER_ETOOBIG);
        cr_assert_eq(tether_ring_key_atom(&k, (const char *)big, 300, 1),
                     TETHER_EPROTO, "an atom over 255 characters");
    }
}

Test(ring_key, bad_terms_are_refused_and_nothing_overreads)
{
    /* a closure, trailing bytes, no version byte, an atom cache ref */
    const uint8_t fun[] = {131, 112, 0, 0, 0, 10, 0};
    const uint8_t trail[] = {131, 97, 1, 97, 2};
    const uint8_t nover[] = {97, 1};
    const uint8_t cache[] = {131, 82, 0};
    /* a nested term, truncated at every length */
    const uint8_t full[] = {131, 116, 0, 0,  0, 1, 104, 2,   119, 1,
                            'k', 109, 0, 0,  0, 2, 'x', 'y', 108, 0,
                            0,   0,   1, 98, 0, 0, 1,   0,   106};
    uint64_t h;

    cr_assert_eq(tether_ring_hash_term(fun, sizeof fun, &h), TETHER_EPROTO);
    cr_assert_eq(tether_ring_hash_term(trail, sizeof trail, &h), TETHER_EPROTO);
    cr_assert_eq(tether_ring_hash_term(nover, sizeof nover, &h), TETHER_EPROTO);
    cr_assert_eq(tether_ring_hash_term(cache, sizeof cache, &h), TETHER_EPROTO);
    cr_assert_eq(tether_ring_hash_term(full, sizeof full, &h), 0);
    for (size_t len = 0; len < sizeof full; len++) {
        uint8_t *b = malloc(len ? len : 1); /* exact: ASan sees overreads */
        memcpy(b, full, len);
        cr_assert_neq(tether_ring_hash_term(b, len, &h), 0, "length %zu", len);
        free(b);
    }
    /* Deeper than TETHER_ETF_DEPTH_MAX: refused, not recursed into. */
    {
        uint8_t deep[200];
        size_t n = 0;
        deep[n++] = 131;
        for (int i = 0; i < 60; i++) {
            deep[n++] = 104;
            deep[n++] = 1;
        }
        deep[n++] = 106;
        cr_assert_eq(tether_ring_hash_term(deep, n, &h), TETHER_EPROTO);
    }
    {
        uint8_t out[4];
        size_t olen;
        cr_assert_eq(
            tether_ring_canon(full, sizeof full, out, sizeof out, &olen),
            TETHER_ETOOBIG);
    }
}

/* The golden vectors: [{Term, ShardOf64, ShardOf1024}] as the first
 * release computed them. */
Test(ring_key, golden_vectors_hold)
{
    const char *paths[] = {"test/data/ring_golden.etf",
                           "../test/data/ring_golden.etf"};
    FILE *f = NULL;
    char *buf;
    long size;
    int idx = 0, ver, n, arity;

    for (size_t i = 0; f == NULL && i < 2; i++)
        f = fopen(paths[i], "rb");
    cr_assert_not_null(f, "test/data/ring_golden.etf");
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    rewind(f);
    buf = malloc((size_t)size);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    cr_assert_eq(ei_decode_version(buf, &idx, &ver), 0);
    cr_assert_eq(ei_decode_list_header(buf, &idx, &n), 0);
    cr_assert_gt(n, 40);
    for (int k = 0; k < n; k++) {
        int start, end;
        unsigned long s64, s1024;
        uint8_t *term;
        uint64_t h;
        cr_assert_eq(ei_decode_tuple_header(buf, &idx, &arity), 0);
        cr_assert_eq(arity, 3);
        start = idx;
        cr_assert_eq(ei_skip_term(buf, &idx), 0);
        end = idx;
        cr_assert_eq(ei_decode_ulong(buf, &idx, &s64), 0);
        cr_assert_eq(ei_decode_ulong(buf, &idx, &s1024), 0);
        term = malloc((size_t)(end - start) + 1);
        term[0] = 131;
        memcpy(term + 1, buf + start, (size_t)(end - start));
        cr_assert_eq(tether_ring_hash_term(term, (size_t)(end - start) + 1, &h),
                     0, "vector %d", k);
        cr_assert_eq(tether_ring_shard_of_hash(h, 64), s64, "vector %d", k);
        cr_assert_eq(tether_ring_shard_of_hash(h, 1024), s1024, "vector %d", k);
        free(term);
    }
    free(buf);
}

/* ------------------------------------------------------------- table */

/* A ring of n members "n<i>@h". */
static tether_ring_t *ring_of(uint32_t shards, int first, int n)
{
    tether_ring_t *r;
    char(*names)[32] = malloc((size_t)(n ? n : 1) * sizeof *names);
    const char **v = malloc((size_t)(n ? n : 1) * sizeof *v);

    cr_assert_eq(tether_ring_new(shards, &r), 0);
    for (int i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "n%d@h", first + i);
        v[i] = names[i];
    }
    cr_assert_eq(tether_ring_set_members(r, v, (size_t)n), 0);
    free(names);
    free(v);
    return r;
}

Test(ring, owners_are_distinct_and_orders_agree)
{
    tether_ring_t *r = ring_of(64, 0, 20);
    const char *a[20], *b[3];

    for (uint32_t s = 0; s < 64; s++) {
        size_t n = tether_ring_owners(r, s, 20, a);
        cr_assert_eq(n, 20);
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                cr_assert_neq(strcmp(a[i], a[j]), 0);
        cr_assert_eq(tether_ring_owners(r, s, 3, b), 3);
        for (size_t i = 0; i < 3; i++)
            cr_assert_str_eq(a[i], b[i], "the table and the full order");
        cr_assert_str_eq(tether_ring_primary(r, s), a[0]);
    }
    cr_assert_eq(tether_ring_owners(r, 64, 3, b), 0, "out of range");
    cr_assert_null(tether_ring_primary(r, 64));
    tether_ring_free(r);
}

/* Shards whose primary differs between two rings. */
static int moved(const tether_ring_t *a, const tether_ring_t *b,
                 const char *joiner)
{
    int m = 0;

    for (uint32_t s = 0; s < tether_ring_shards(a); s++) {
        const char *pa = tether_ring_primary(a, s);
        const char *pb = tether_ring_primary(b, s);
        if (strcmp(pa, pb) != 0) {
            m++;
            cr_assert_str_eq(pb, joiner, "a shard moved between stayers");
        }
    }
    return m;
}

Test(ring, a_join_moves_about_its_share_and_nothing_else)
{
    const int ns[] = {2, 5, 10, 50};

    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        double total = 0;
        for (int set = 0; set < 8; set++) {
            tether_ring_t *before = ring_of(1024, set * 100, ns[t]);
            tether_ring_t *after;
            char joiner[32];
            snprintf(joiner, sizeof joiner, "n%d@h", set * 100 + ns[t]);
            cr_assert_eq(tether_ring_copy(before, &after), 0);
            cr_assert_eq(tether_ring_add(after, joiner), 0);
            total += moved(before, after, joiner);
            cr_assert_eq(tether_ring_remove(after, joiner), 0);
            cr_assert_eq(moved(before, after, joiner), 0, "removed: as before");
            tether_ring_free(before);
            tether_ring_free(after);
        }
        total /= 8;
        cr_assert_leq(total, 1.2 * 1024.0 / (ns[t] + 1), "N=%d moved %.1f",
                      ns[t], total);
    }
}

Test(ring, bad_input_is_refused)
{
    tether_ring_t *r;
    const char *dup[] = {"a@h", "b@h", "a@h"}, *bad[] = {""};

    cr_assert_eq(tether_ring_new(0, &r), TETHER_EINVAL);
    cr_assert_eq(tether_ring_new(3, &r), TETHER_EINVAL);
    cr_assert_eq(tether_ring_new(TETHER_RING_SHARDS_MAX * 2, &r),
                 TETHER_EINVAL);
    cr_assert_eq(tether_ring_new(1, &r), 0);
    cr_assert_null(tether_ring_primary(r, 0), "no members");
    cr_assert_eq(tether_ring_set_members(r, dup, 3), TETHER_EINVAL);
    cr_assert_eq(tether_ring_set_members(r, bad, 1), TETHER_EINVAL);
    cr_assert_eq(tether_ring_add(r, "a@h"), 0);
    cr_assert_eq(tether_ring_add(r, "a@h"), TETHER_EEXIST);
    cr_assert_eq(tether_ring_remove(r, "b@h"), TETHER_ENOTFOUND);
    cr_assert_str_eq(tether_ring_primary(r, 0), "a@h");
    tether_ring_free(r);
    tether_ring_free(NULL);
}

/* ------------------------------------------------- the cluster module */

typedef struct shard_log {
    uint64_t gen;
    uint8_t owned[64]; /* what the events say, per shard */
    int events;
} shard_log_t;

typedef struct ring_h {
    harness_t h;
    tether_ring_module_t *m[H_MAX];
    shard_log_t log[H_MAX];
} ring_h_t;

static void on_shard(void *ctx, int i, const tether_action_t *a)
{
    ring_h_t *x = ctx;

    if (a->kind != TETHER_ACT_SHARD)
        return;
    cr_assert_geq(a->u.shard.generation, x->log[i].gen,
                  "generations never go back");
    x->log[i].gen = a->u.shard.generation;
    cr_assert_neq(x->log[i].owned[a->u.shard.shard], a->u.shard.acquired,
                  "each event is a change");
    x->log[i].owned[a->u.shard.shard] = (uint8_t)a->u.shard.acquired;
    x->log[i].events++;
}

static void start(ring_h_t *x, int n)
{
    tether_ring_config_t cfg = {.shards = 64};

    memset(x, 0, sizeof *x);
    h_init(&x->h, n);
    x->h.on_action = on_shard;
    x->h.action_ctx = x;
    h_start_all(&x->h);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(tether_ring_module_new(&cfg, x->h.e[i], &x->m[i]), 0);
        memset(x->log[i].owned, 1, sizeof x->log[i].owned); /* alone */
    }
    h_join_all(&x->h);
}

/* Every running node agrees on every shard's owners, and each one's
 * events add up to what it owns. */
static void assert_agree(ring_h_t *x, int n)
{
    for (int i = 0; i < n; i++) {
        const tether_ring_t *ri = tether_ring_module_table(x->m[i]);
        const tether_ring_t *r0 = tether_ring_module_table(x->m[0]);
        for (uint32_t s = 0; s < 64; s++) {
            const char *oi[3], *o0[3];
            size_t k = tether_ring_owners(ri, s, 3, oi);
            cr_assert_eq(k, tether_ring_owners(r0, s, 3, o0));
            for (size_t j = 0; j < k; j++)
                cr_assert_str_eq(oi[j], o0[j], "node %d shard %u", i, s);
            cr_assert_eq(tether_ring_module_owns(x->m[i], s),
                         x->log[i].owned[s], "node %d shard %u", i, s);
            cr_assert_eq(tether_ring_module_owns(x->m[i], s),
                         strcmp(tether_ring_primary(ri, s), x->h.names[i]) ==
                             0);
        }
    }
}

Test(ring_module, follows_membership_and_tells_each_node_its_shards)
{
    ring_h_t x;
    tether_ring_module_t *dup;
    tether_ring_config_t cfg = {.shards = 64};
    uint64_t g;

    start(&x, 3);
    assert_agree(&x, 3);
    cr_assert_eq(tether_ring_module_new(&cfg, x.h.e[0], &dup), TETHER_EEXIST);
    for (int i = 0; i < 3; i++)
        cr_assert_gt(x.log[i].events, 0);
    /* c goes: its shards move to the next owners. */
    g = tether_ring_module_generation(x.m[0]);
    h_cut(&x.h, 2, 0);
    h_cut(&x.h, 2, 1);
    h_pump(&x.h);
    cr_assert_eq(tether_ring_module_generation(x.m[0]), g + 1);
    for (uint32_t s = 0; s < 64; s++)
        cr_assert_neq(
            strcmp(tether_ring_primary(tether_ring_module_table(x.m[0]), s),
                   "c@test"),
            0);
    assert_agree(&x, 2);
    h_run(&x.h, 1500); /* c comes back */
    assert_agree(&x, 3);
    h_free(&x.h);
}

/* The cluster ring, through engine membership: when the (N+1)th member
 * joins (its own names each set), every member's table moves about
 * S/(N+1) primaries, all to the joiner (N up to the harness's 7; the
 * table code is the standalone ring's, checked up to N = 50 above). */
Test(ring_module, a_join_moves_about_its_share_in_the_cluster)
{
    const int ns[] = {2, 5, 7};
    static ring_h_t x;
    tether_ring_config_t cfg = {.shards = 1024};

    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int n = ns[t];
        double total = 0;
        for (int set = 0; set < 8; set++) {
            static char before[1024][TETHER_NODE_NAME_MAX + 1];
            const tether_ring_t *r;
            size_t moved = 0;
            memset(&x, 0, sizeof x);
            h_init(&x.h, n + 1);
            for (int i = 0; i <= n; i++)
                snprintf(x.h.names[i], sizeof x.h.names[i], "s%d_%d@test",
                         set, i);
            h_start_all(&x.h);
            for (int i = 0; i <= n; i++)
                cr_assert_eq(tether_ring_module_new(&cfg, x.h.e[i], &x.m[i]),
                             0);
            for (int i = 1; i < n; i++)
                cr_assert_eq(tether_engine_join(x.h.e[i], x.h.names[0]), 0);
            h_run(&x.h, 1000);
            r = tether_ring_module_table(x.m[0]);
            cr_assert_eq(tether_ring_members(r, NULL, 0), (size_t)n);
            for (uint32_t s = 0; s < 1024; s++)
                snprintf(before[s], sizeof before[s], "%s",
                         tether_ring_primary(r, s));
            cr_assert_eq(tether_engine_join(x.h.e[n], x.h.names[0]), 0);
            h_run(&x.h, 1000);
            for (int i = 0; i <= n; i++) {
                r = tether_ring_module_table(x.m[i]);
                cr_assert_eq(tether_ring_members(r, NULL, 0), (size_t)n + 1);
                for (uint32_t s = 0; s < 1024; s++) {
                    const char *p = tether_ring_primary(r, s);
                    if (strcmp(p, before[s]) == 0)
                        continue;
                    cr_assert_str_eq(p, x.h.names[n], "moved between stayers");
                    if (i == 0)
                        moved++;
                }
            }
            total += (double)moved;
            h_free(&x.h);
        }
        total /= 8;
        cr_assert_leq(total, 1.2 * 1024.0 / (n + 1), "N=%d moved %.1f", n,
                      total);
    }
}

Test(ring_module, members_of_different_ring_sizes_never_join)
{
    harness_t h;
    tether_ring_module_t *m[2];
    tether_ring_config_t c64 = {.shards = 64}, c128 = {.shards = 128};
    char buf[64];

    h_init(&h, 2);
    h_start_all(&h);
    cr_assert_eq(tether_ring_module_new(&c64, h.e[0], &m[0]), 0);
    cr_assert_eq(tether_ring_module_new(&c128, h.e[1], &m[1]), 0);
    cr_assert_eq(tether_engine_join(h.e[1], "a@test"), 0);
    h_run(&h, 2000);
    cr_assert_str_eq(h_members(&h, 0, buf, sizeof buf), "a@test");
    cr_assert_str_eq(h_members(&h, 1, buf, sizeof buf), "b@test");
    cr_assert_eq(tether_engine_join_pending(h.e[1]), 0, "refused, not pending");
    cr_assert_geq(tether_engine_stats(h.e[0])->joins_refused, 1);
    cr_assert_geq(tether_engine_stats(h.e[1])->joins_refused, 1);
    h_free(&h);
}

Test(ring_module, sim_invariant_holds_and_catches_a_broken_check)
{
    (void)sim_holds_and_breaks(7, SIM_BREAK(break_ring_check), "rings differ");
}
