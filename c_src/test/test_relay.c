/*
 * test/test_relay.c: messages relayed around a cut path (core/relay.c):
 * delivery through a member that reaches both ends, exactly one copy
 * however many relays carry it, and refusals (counted) of forged,
 * altered, replayed, stale and malformed relays and of hop counts over
 * the limit. The relayed terms of the refusal cases are built here from
 * the format core/relay.h documents, signed with keys derived from the
 * harness's cluster secret, and handed to the destination by a member
 * as a dishonest relay would.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/keys.h"
#include "core/relay.h"
#include "test/harness.h"

static const char *GA[] = {"a@test"};
static const char *GC[] = {"c@test"};

/* The MESSAGE actions the engines handed out: engine, origin, payload. */
typedef struct got {
    int n;
    int who[16];
    char from[16][TETHER_NODE_NAME_MAX + 1];
    uint8_t etf[16][64];
    size_t len[16];
} got_t;

static void on_action(void *ctx, int i, const tether_action_t *a)
{
    got_t *g = ctx;

    if (a->kind != TETHER_ACT_MESSAGE || g->n == 16)
        return;
    g->who[g->n] = i;
    snprintf(g->from[g->n], sizeof g->from[g->n], "%s", a->peer);
    g->len[g->n] = a->u.message.etf.len < 64 ? a->u.message.etf.len : 64;
    memcpy(g->etf[g->n], a->u.message.etf.ptr, g->len[g->n]);
    g->n++;
}

/* Three engines in one cluster, a and c cut apart by a drop partition. */
static void setup(harness_t *h, got_t *g)
{
    uint64_t ref;

    memset(g, 0, sizeof *g);
    h_cluster(h, 3);
    h->on_action = on_action;
    h->action_ctx = g;
    cr_assert_eq(tether_engine_partition(h->e[0], GA, 1, GC, 1,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    h_run(h, 200);
}

/* One small payload term: the atom `hello`. */
static void payload(ei_x_buff *x)
{
    cr_assert_eq(ei_x_new_with_version(x), 0);
    cr_assert_eq(ei_x_encode_atom(x, "hello"), 0);
}

static const tether_engine_stats_t *st(harness_t *h, int i)
{
    return tether_engine_stats(h->e[i]);
}

Test(relay, goes_round_a_drop_partition_once)
{
    harness_t h;
    got_t g;
    ei_x_buff p;

    setup(&h, &g);
    payload(&p);
    cr_assert_eq(tether_engine_send(h.e[0], "c@test", TETHER_MSG_SHELL,
                                    (const uint8_t *)p.buff, (size_t)p.index,
                                    0),
                 TETHER_ECLOSED, "the direct path is cut");
    cr_assert_eq(tether_relay_send(h.e[0], "c@test", (const uint8_t *)p.buff,
                                   (size_t)p.index, 0),
                 0);
    h_pump(&h);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.who[0], 2);
    cr_assert_str_eq(g.from[0], "a@test", "the true origin, not the relay");
    cr_assert_eq(g.len[0], (size_t)p.index);
    cr_assert_eq(memcmp(g.etf[0], p.buff, g.len[0]), 0);
    cr_assert_eq(st(&h, 0)->relay_sent, 1);
    cr_assert_eq(st(&h, 1)->relay_forwarded, 1);
    cr_assert_eq(st(&h, 2)->relay_delivered, 1);
    ei_x_free(&p);
    h_free(&h);
}

Test(relay, two_relays_one_delivery)
{
    harness_t h;
    got_t g;
    ei_x_buff p;
    uint64_t ref;

    /* a, b, c, d: a cut from d; b and c both reach d. */
    memset(&g, 0, sizeof g);
    h_cluster(&h, 4);
    h.on_action = on_action;
    h.action_ctx = &g;
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 1,
                                         (const char *[]){"d@test"}, 1,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    h_run(&h, 200);
    payload(&p);
    cr_assert_eq(tether_relay_send(h.e[0], "d@test", (const uint8_t *)p.buff,
                                   (size_t)p.index, 0),
                 0);
    h_pump(&h);
    cr_assert_eq(g.n, 1, "two copies came, one was handed on");
    cr_assert_eq(st(&h, 3)->relay_delivered, 1);
    cr_assert_eq(st(&h, 3)->relay_duplicates, 1);
    ei_x_free(&p);
    h_free(&h);
}

Test(relay, no_route_is_closed)
{
    harness_t h;
    ei_x_buff p;

    h_cluster(&h, 2);
    payload(&p);
    cr_assert_eq(tether_relay_send(h.e[0], "b@test", (const uint8_t *)p.buff,
                                   (size_t)p.index, 0),
                 TETHER_ECLOSED, "no member but the destination");
    cr_assert_eq(st(&h, 0)->relay_no_route, 1);
    cr_assert_eq(tether_relay_send(h.e[0], "a@test", (const uint8_t *)p.buff,
                                   (size_t)p.index, 0),
                 TETHER_EINVAL, "not to ourselves");
    cr_assert_eq(tether_relay_send(h.e[0], "b@test", (const uint8_t *)p.buff,
                                   (size_t)p.index, TETHER_RELAY_HOPS_MAX + 1),
                 TETHER_EINVAL);
    ei_x_free(&p);
    h_free(&h);
}

/* ---------------------------------------------- dishonest relays */

/* A relayed message as a test builds it. */
typedef struct forge {
    const char *origin, *dest, *signer;
    uint64_t inc, id, hops;
    const char *payload;  /* signed */
    const char *carried;  /* sent (NULL: payload) */
    uint64_t carried_id;  /* sent (0: id) */
    size_t siglen;        /* 0: TETHER_SIG_BYTES */
} forge_t;

/* A relay of a's, for c, signed by a: what the tests below alter. */
static forge_t genuine(void)
{
    return (forge_t){.origin = "a@test",
                     .dest = "c@test",
                     .signer = "a@test",
                     .inc = 1,
                     .id = 1,
                     .payload = "payload-x"};
}

/* Signs f as core/relay.h specifies, with signer's key derived from the
 * harness secret, and encodes it into x. */
static void build(harness_t *h, const forge_t *f, ei_x_buff *x)
{
    tether_identity_t id;
    tether_trust_t trust;
    uint8_t msg[512], sig[TETHER_SIG_BYTES];
    size_t n = 0, ol = strlen(f->origin), dl = strlen(f->dest),
           pl = strlen(f->payload);
    const char *carried = f->carried ? f->carried : f->payload;

    memcpy(msg, "tether/v1/relay", 16); /* with its NUL */
    n = 16;
    msg[n++] = (uint8_t)ol;
    memcpy(msg + n, f->origin, ol);
    n += ol;
    for (int i = 0; i < 8; i++)
        msg[n++] = (uint8_t)(f->inc >> (56 - 8 * i));
    msg[n++] = (uint8_t)dl;
    memcpy(msg + n, f->dest, dl);
    n += dl;
    for (int i = 0; i < 8; i++)
        msg[n++] = (uint8_t)(f->id >> (56 - 8 * i));
    memcpy(msg + n, f->payload, pl);
    n += pl;
    cr_assert_eq(tether__keys_from_secret(&id, &trust, f->signer, h->secret),
                 0);
    cr_assert_eq(tether__identity_sign(&id, msg, n, sig), 0);
    tether__identity_fini(&id);
    tether__trust_fini(&trust);
    cr_assert_eq(ei_x_new_with_version(x), 0);
    cr_assert_eq(ei_x_encode_tuple_header(x, 8), 0);
    cr_assert_eq(ei_x_encode_atom(x, "relay"), 0);
    cr_assert_eq(ei_x_encode_atom(x, f->origin), 0);
    cr_assert_eq(ei_x_encode_ulonglong(x, f->inc), 0);
    cr_assert_eq(ei_x_encode_atom(x, f->dest), 0);
    cr_assert_eq(ei_x_encode_ulonglong(x, f->carried_id ? f->carried_id
                                                        : f->id),
                 0);
    cr_assert_eq(ei_x_encode_ulonglong(x, f->hops), 0);
    cr_assert_eq(ei_x_encode_binary(x, carried, (long)strlen(carried)), 0);
    cr_assert_eq(ei_x_encode_binary(x, sig,
                                    f->siglen ? (long)f->siglen
                                              : TETHER_SIG_BYTES),
                 0);
}

/* b hands f to c as a relay would; returns how many messages c has got. */
static int carry(harness_t *h, got_t *g, const forge_t *f)
{
    ei_x_buff x;

    build(h, f, &x);
    h_send_etf(h, 1, 2, TETHER_MSG_RELAY, &x);
    return g->n;
}

Test(relay, genuine_built_here_is_delivered)
{
    harness_t h;
    got_t g;
    forge_t f = genuine();

    setup(&h, &g);
    cr_assert_eq(carry(&h, &g, &f), 1, "the format is as documented");
    cr_assert_str_eq(g.from[0], "a@test");
    h_free(&h);
}

Test(relay, forged_and_altered_refused_and_counted)
{
    harness_t h;
    got_t g;
    forge_t f;

    setup(&h, &g);
    f = genuine();
    f.signer = "b@test"; /* the relay signs what claims to be a's */
    cr_assert_eq(carry(&h, &g, &f), 0);
    f = genuine();
    f.carried = "payload-y"; /* a's signature, another payload */
    cr_assert_eq(carry(&h, &g, &f), 0);
    f = genuine();
    f.carried_id = 9; /* a's signature, another id */
    cr_assert_eq(carry(&h, &g, &f), 0);
    f = genuine();
    f.siglen = 63; /* a truncated signature */
    cr_assert_eq(carry(&h, &g, &f), 0);
    cr_assert_eq(st(&h, 2)->relay_refused, 4);
    /* None of them moved the window: the genuine id 1 still goes. */
    f = genuine();
    cr_assert_eq(carry(&h, &g, &f), 1);
    h_free(&h);
}

Test(relay, replayed_and_stale_refused_and_counted)
{
    harness_t h;
    got_t g;
    forge_t f = genuine();

    setup(&h, &g);
    cr_assert_eq(carry(&h, &g, &f), 1);
    cr_assert_eq(carry(&h, &g, &f), 1, "a replay");
    cr_assert_eq(st(&h, 2)->relay_duplicates, 1);
    /* A newer incarnation resets the window; the older one is stale. */
    f.inc = 2;
    cr_assert_eq(carry(&h, &g, &f), 2);
    f.inc = 1;
    f.id = 7;
    cr_assert_eq(carry(&h, &g, &f), 2);
    cr_assert_eq(st(&h, 2)->relay_stale, 1);
    /* Out of order within the window: once each. */
    f.inc = 2;
    f.id = 5;
    cr_assert_eq(carry(&h, &g, &f), 3);
    f.id = 3;
    cr_assert_eq(carry(&h, &g, &f), 4);
    cr_assert_eq(carry(&h, &g, &f), 4);
    /* Below the window: refused as a replay. */
    f.id = 5 + TETHER_RELAY_WINDOW + 1;
    cr_assert_eq(carry(&h, &g, &f), 5);
    f.id = 4;
    cr_assert_eq(carry(&h, &g, &f), 5);
    cr_assert_eq(st(&h, 2)->relay_duplicates, 3);
    cr_assert_eq(st(&h, 2)->relay_delivered, 5);
    h_free(&h);
}

Test(relay, hop_limit)
{
    harness_t h;
    got_t g;
    forge_t f = genuine();
    uint64_t ref;

    setup(&h, &g);
    /* Over the limit: refused even at the destination. */
    f.hops = TETHER_RELAY_HOPS_MAX + 1;
    cr_assert_eq(carry(&h, &g, &f), 0);
    cr_assert_eq(st(&h, 2)->relay_hop_limit, 1);
    /* b's, for a, reaching c with no hops left: c does not pass it on,
     * though it reaches a (the cut is now between a and b). */
    tether_engine_heal_all(h.e[0]);
    cr_assert_eq(tether_engine_partition(h.e[1], GA, 1,
                                         (const char *[]){"b@test"}, 1,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    h_run(&h, 200);
    f = genuine();
    f.origin = f.signer = "b@test";
    f.dest = "a@test";
    cr_assert_eq(carry(&h, &g, &f), 0);
    cr_assert_eq(st(&h, 2)->relay_hop_limit, 2);
    cr_assert_eq(st(&h, 2)->relay_forwarded, 0);
    /* With a hop left c passes it on to a. */
    f.id = 2;
    f.hops = 1;
    cr_assert_eq(carry(&h, &g, &f), 1);
    cr_assert_eq(g.who[0], 0);
    cr_assert_str_eq(g.from[0], "b@test");
    cr_assert_eq(st(&h, 2)->relay_forwarded, 1);
    h_free(&h);
}

Test(relay, malformed_refused)
{
    harness_t h;
    got_t g;
    forge_t f = genuine();
    ei_x_buff x;

    setup(&h, &g);
    h_etf_begin(&x, 3, "relay");
    cr_assert_eq(ei_x_encode_atom(&x, "a@test"), 0);
    cr_assert_eq(ei_x_encode_atom(&x, "c@test"), 0);
    h_send_etf(&h, 1, 2, TETHER_MSG_RELAY, &x);
    h_etf_begin(&x, 8, "relax");
    for (int i = 0; i < 7; i++)
        cr_assert_eq(ei_x_encode_ulonglong(&x, 1), 0);
    h_send_etf(&h, 1, 2, TETHER_MSG_RELAY, &x);
    cr_assert_eq(g.n, 0);
    cr_assert_eq(st(&h, 2)->relay_refused, 2);
    /* Our own message coming back round a loop. */
    f.origin = f.signer = "c@test";
    f.dest = "a@test";
    cr_assert_eq(carry(&h, &g, &f), 0);
    cr_assert_eq(st(&h, 2)->relay_refused, 3);
    h_free(&h);
}
