/*
 * Criterion suite for the engine's direct path (core/engine.h):
 * tether_engine_seal() hands a sealed module message to the caller and
 * tether_engine_open() opens one outside tether_engine_recv(). Covered:
 * the round trip, tether__engine_broadcast_sealed(), no session, drop and defer
 * partitions on either side, replayed and tampered envelopes, large
 * envelopes verified apart from the engine (recv_begin / recv_verify /
 * recv_end: delivered once, tampered, replayed, session changed meanwhile),
 * hellos and control messages through open, argument checks, and the `opaque`
 * module flag (payloads passed without tether__etf_validate). Engines talk
 * through test/harness.h.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "core/codec.h"
#include "core/module.h"
#include "test/harness.h"

#define REC_TYPE    0x30 /* a module that validates its payloads */
#define OPAQUE_TYPE 0x31 /* an opaque module */
#define REC_MAX     16
#define DEEP_LEVELS 100

static char mb[512];
static const char *const GA[] = {"a@test"};
static const char *const GB[] = {"b@test"};

/* What a module received: copies of each payload. */
typedef struct rec {
    int n;
    uint8_t *data[REC_MAX];
    size_t len[REC_MAX];
    char from[REC_MAX][32];
} rec_t;

static void rec_msg(tether_engine_t *eng, void *ctx, const char *from,
                    const char *etf, size_t len)
{
    rec_t *r = ctx;

    (void)eng;
    cr_assert_lt(r->n, REC_MAX);
    r->data[r->n] = malloc(len ? len : 1);
    cr_assert_not_null(r->data[r->n]);
    memcpy(r->data[r->n], etf, len);
    r->len[r->n] = len;
    snprintf(r->from[r->n], sizeof r->from[r->n], "%s", from);
    r->n++;
}

static void rec_free(rec_t *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->data[i]);
    r->n = 0;
}

static const tether_engine_module_t rec_module = {
    .name = "rec", .type = REC_TYPE, .on_message = rec_msg};
static const tether_engine_module_t opaque_module = {
    .name = "opaque", .type = OPAQUE_TYPE, .opaque = 1, .on_message = rec_msg};

/* A cluster of a and b, with b recording the REC_TYPE messages in r. */
static void rec_pair(harness_t *h, rec_t *r)
{
    h_cluster(h, 2);
    cr_assert_eq(tether__engine_register_module(h->e[1], &rec_module, r), 0);
}

/* The term {direct, Id} in external format into x (fresh). */
static void id_term(ei_x_buff *x, long id)
{
    cr_assert_eq(ei_x_new_with_version(x), 0);
    cr_assert_eq(ei_x_encode_tuple_header(x, 2), 0);
    cr_assert_eq(ei_x_encode_atom(x, "direct"), 0);
    cr_assert_eq(ei_x_encode_long(x, id), 0);
}

/* Seals {direct, Id} from engine i to engine j; returns seal's result. */
static int seal_id(harness_t *h, int i, int j, long id, uint8_t **out,
                   size_t *out_len)
{
    ei_x_buff x;
    int rc;

    id_term(&x, id);
    rc = tether_engine_seal(h->e[i], h->names[j], REC_TYPE,
                            (const uint8_t *)x.buff, (size_t)x.index, out,
                            out_len);
    ei_x_free(&x);
    return rc;
}

/* Engine i opens env (len bytes) as if from node `from`: it must refuse
 * with rc and hand out no payload. */
static void refused(harness_t *h, int i, const char *from, const uint8_t *env,
                    size_t len, int rc)
{
    const uint8_t *payload = NULL;
    size_t plen = 0;
    uint8_t type = 0;

    cr_assert_eq(
        tether_engine_open(h->e[i], from, env, len, &type, &payload, &plen),
        rc);
    cr_assert_null(payload);
    cr_assert_eq(plen, 0);
}

/* 1 if bytes[0..len) is the term {direct, id}. */
static int is_id(const uint8_t *bytes, size_t len, long id)
{
    ei_x_buff x;
    int same;

    id_term(&x, id);
    same = len == (size_t)x.index && memcmp(bytes, x.buff, len) == 0;
    ei_x_free(&x);
    return same;
}

/* Drops every pending action of engine i (what its shell would send). */
static void drain(harness_t *h, int i)
{
    tether_action_t a;

    while (tether_engine_next_action(h->e[i], &a))
        tether_engine_action_release(&a);
}

Test(direct, sealed_envelope_opens_to_the_same_payload)
{
    harness_t h;
    tether_action_t a;
    uint8_t *sealed = NULL, type = 0;
    const uint8_t *payload = NULL;
    size_t slen = 0, plen = 0;
    uint64_t sent;

    h_cluster(&h, 2);
    sent = tether_engine_stats(h.e[0])->sent;
    cr_assert_eq(seal_id(&h, 0, 1, 42, &sealed, &slen), 0);
    cr_assert_not_null(sealed);
    cr_assert_gt(slen, 0);
    cr_assert_eq(tether_engine_stats(h.e[0])->sent, sent + 1);
    cr_assert_eq(tether_engine_next_action(h.e[0], &a), 0,
                 "the caller sends it: no SEND action");
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", sealed, slen, &type,
                                    &payload, &plen),
                 0);
    cr_assert_eq(type, REC_TYPE);
    cr_assert(payload >= sealed && payload + plen <= sealed + slen,
              "the payload points into the envelope");
    cr_assert(is_id(payload, plen, 42));
    free(sealed);
    h_free(&h);
}

/* What tether__engine_broadcast_sealed() handed out: copies, by peer. */
typedef struct got {
    int n;
    char peer[REC_MAX][32];
    uint8_t *env[REC_MAX];
    size_t len[REC_MAX];
} got_t;

static void got_sealed(void *ctx, const char *peer, const uint8_t *bytes,
                       size_t len)
{
    got_t *g = ctx;

    cr_assert_lt(g->n, REC_MAX);
    snprintf(g->peer[g->n], sizeof g->peer[g->n], "%s", peer);
    g->env[g->n] = malloc(len);
    cr_assert_not_null(g->env[g->n]);
    memcpy(g->env[g->n], bytes, len);
    g->len[g->n++] = len;
}

Test(direct, broadcast_seals_for_every_live_member_but_us)
{
    harness_t h;
    got_t g = {0};
    ei_x_buff x;
    uint8_t type = 0;
    const uint8_t *payload = NULL;
    size_t plen = 0;

    h_cluster(&h, 3);
    id_term(&x, 5);
    cr_assert_eq(tether__engine_broadcast_sealed(
                     h.e[0], REC_TYPE, (const uint8_t *)x.buff, (size_t)x.index,
                     got_sealed, &g),
                 0);
    cr_assert_eq(g.n, 2);
    cr_assert_str_eq(g.peer[0], "b@test");
    cr_assert_str_eq(g.peer[1], "c@test");
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(tether_engine_open(h.e[k + 1], "a@test", g.env[k],
                                        g.len[k], &type, &payload, &plen),
                     0);
        cr_assert_eq(type, REC_TYPE);
        cr_assert(is_id(payload, plen, 5));
        free(g.env[k]);
    }
    cr_assert_eq(tether__engine_broadcast_sealed(h.e[0], REC_TYPE,
                                                 (const uint8_t *)x.buff,
                                                 (size_t)x.index, NULL, NULL),
                 TETHER_EINVAL);
    g.n = 0;
    cr_assert_eq(tether_engine_leave(h.e[0]), 0);
    cr_assert_eq(tether__engine_broadcast_sealed(
                     h.e[0], REC_TYPE, (const uint8_t *)x.buff, (size_t)x.index,
                     got_sealed, &g),
                 TETHER_ECLOSED);
    cr_assert_eq(g.n, 0);
    ei_x_free(&x);
    h_free(&h);
}

Test(direct, sealed_envelope_also_goes_through_recv)
{
    harness_t h;
    rec_t r = {0};
    uint8_t *sealed = NULL;
    size_t slen = 0;

    rec_pair(&h, &r);
    cr_assert_eq(seal_id(&h, 0, 1, 7, &sealed, &slen), 0);
    cr_assert_eq(tether_engine_recv(h.e[1], "a@test", sealed, slen), 0);
    cr_assert_eq(r.n, 1);
    cr_assert_str_eq(r.from[0], "a@test");
    cr_assert(is_id(r.data[0], r.len[0], 7));
    free(sealed);
    rec_free(&r);
    h_free(&h);
}

Test(direct, arguments_are_checked)
{
    harness_t h;
    uint8_t *sealed = (uint8_t *)&h, type = 0;
    const uint8_t *payload = (const uint8_t *)&h;
    size_t slen = 1, plen = 1;
    static const uint8_t etf[] = {131, 'j'};

    h_cluster(&h, 2);
    cr_assert_eq(tether_engine_seal(h.e[0], "b@test", TETHER_MSG_HEARTBEAT, etf,
                                    sizeof etf, &sealed, &slen),
                 TETHER_EINVAL, "engine types are not the caller's");
    cr_assert_null(sealed);
    cr_assert_eq(slen, 0);
    cr_assert_eq(
        tether_engine_seal(h.e[0], "b@test", REC_TYPE, etf, 0, &sealed, &slen),
        TETHER_EINVAL);
    cr_assert_eq(
        tether_engine_seal(h.e[0], "b@test", REC_TYPE, NULL, 2, &sealed, &slen),
        TETHER_EINVAL);
    cr_assert_eq(tether_engine_seal(h.e[0], "", REC_TYPE, etf, sizeof etf,
                                    &sealed, &slen),
                 TETHER_EINVAL);
    cr_assert_eq(tether_engine_seal(h.e[0], "b@test", REC_TYPE, etf, sizeof etf,
                                    NULL, &slen),
                 TETHER_EINVAL);
    cr_assert_eq(tether_engine_seal(h.e[0], "b@test", REC_TYPE, etf, sizeof etf,
                                    &sealed, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", etf, sizeof etf, NULL,
                                    &payload, &plen),
                 TETHER_EINVAL);
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", etf, sizeof etf, &type,
                                    NULL, &plen),
                 TETHER_EINVAL);
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", etf, sizeof etf, &type,
                                    &payload, NULL),
                 TETHER_EINVAL);
    /* Garbage, empty and truncated input is refused, never opened. */
    cr_assert_lt(tether_engine_open(h.e[1], "a@test", etf, sizeof etf, &type,
                                    &payload, &plen),
                 0);
    cr_assert_null(payload);
    cr_assert_eq(plen, 0);
    cr_assert_lt(
        tether_engine_open(h.e[1], "a@test", etf, 0, &type, &payload, &plen),
        0);
    cr_assert_lt(
        tether_engine_open(h.e[1], "a@test", NULL, 0, &type, &payload, &plen),
        0);
    cr_assert_eq(seal_id(&h, 0, 1, 1, &sealed, &slen), 0);
    for (size_t cut = 0; cut < slen; cut++)
        cr_assert_lt(tether_engine_open(h.e[1], "a@test", sealed, cut, &type,
                                        &payload, &plen),
                     0, "truncated at %zu", cut);
    cr_assert_lt(tether_engine_open(h.e[1], "b@test", sealed, slen, &type,
                                    &payload, &plen),
                 0, "from ourselves");
    cr_assert_lt(tether_engine_open(h.e[1], "c@test", sealed, slen, &type,
                                    &payload, &plen),
                 0, "from a stranger");
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", sealed, slen, &type,
                                    &payload, &plen),
                 0, "refusals did not spend the genuine one");
    free(sealed);
    h_free(&h);
}

Test(direct, no_session_is_closed)
{
    harness_t h;
    uint8_t *sealed = NULL;
    size_t slen = 0;
    uint64_t nos;

    h_init(&h, 2);
    h_start_all(&h);
    nos = tether_engine_stats(h.e[0])->send_no_session;
    cr_assert_eq(seal_id(&h, 0, 1, 1, &sealed, &slen), TETHER_ECLOSED);
    cr_assert_null(sealed);
    cr_assert_eq(slen, 0);
    cr_assert_eq(tether_engine_stats(h.e[0])->send_no_session, nos + 1);
    h_free(&h);
}

Test(direct, a_node_that_left_neither_seals_nor_opens)
{
    harness_t h;
    uint8_t *sealed = NULL, *late = NULL;
    size_t slen = 0, llen = 0;

    h_cluster(&h, 2);
    cr_assert_eq(seal_id(&h, 0, 1, 1, &sealed, &slen), 0);
    cr_assert_eq(tether_engine_leave(h.e[1]), 0);
    cr_assert_eq(seal_id(&h, 1, 0, 2, &late, &llen), TETHER_ECLOSED);
    cr_assert_null(late);
    refused(&h, 1, "a@test", sealed, slen, TETHER_ECLOSED);
    free(sealed);
    h_free(&h);
}

Test(direct, drop_partition_closes_seal_and_open)
{
    harness_t h;
    uint8_t *sealed = NULL, *early = NULL, type = 0;
    const uint8_t *payload = NULL;
    size_t slen = 0, elen = 0, plen = 0;
    uint64_t ref, dropped;

    h_cluster(&h, 2);
    /* Sealed before anyone knows of the partition. */
    cr_assert_eq(seal_id(&h, 0, 1, 1, &early, &elen), 0);
    /* Only the receiver knows it: a's copy of the table is not pumped. */
    cr_assert_eq(tether_engine_partition(h.e[1], GA, 1, GB, 1,
                                         TETHER_PARTITION_DROP, &ref),
                 0);
    dropped = tether_engine_stats(h.e[1])->part_dropped;
    refused(&h, 1, "a@test", early, elen, TETHER_ECLOSED);
    cr_assert_eq(tether_engine_stats(h.e[1])->part_dropped, dropped + 1);
    /* The sender that knows it does not seal. */
    cr_assert_eq(seal_id(&h, 1, 0, 2, &sealed, &slen), TETHER_ECLOSED);
    cr_assert_null(sealed);
    h_pump(&h); /* now a knows too */
    cr_assert_eq(seal_id(&h, 0, 1, 3, &sealed, &slen), TETHER_ECLOSED);
    cr_assert_null(sealed);
    /* After heal, a fresh seal opens again. */
    cr_assert_eq(tether_engine_heal(h.e[1], ref), 0);
    h_run(&h, 300);
    cr_assert_eq(seal_id(&h, 0, 1, 4, &sealed, &slen), 0);
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", sealed, slen, &type,
                                    &payload, &plen),
                 0);
    cr_assert(is_id(payload, plen, 4));
    free(sealed);
    free(early);
    h_free(&h);
}

Test(direct, defer_partition_holds_a_seal_and_sends_it_on_heal)
{
    harness_t h;
    rec_t r = {0};
    tether_action_t a;
    uint8_t *sealed = NULL;
    size_t slen = 0;
    uint64_t ref;
    int found = 0;

    rec_pair(&h, &r);
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 1, GB, 1,
                                         TETHER_PARTITION_DEFER, &ref),
                 0);
    drain(&h, 0);
    cr_assert_eq(seal_id(&h, 0, 1, 5, &sealed, &slen), TETHER_EAGAIN);
    cr_assert_null(sealed);
    cr_assert_eq(slen, 0);
    cr_assert_eq(tether_engine_stats(h.e[0])->part_deferred, 1);
    cr_assert_eq(tether_engine_heal(h.e[0], ref), 0);
    cr_assert_eq(tether_engine_next_deadline(h.e[0]), h.now);
    tether_engine_tick(h.e[0], h.now);
    /* At the tick after heal the held message goes out as an ordinary
     * SEND action. */
    while (tether_engine_next_action(h.e[0], &a)) {
        if (a.kind == TETHER_ACT_SEND && strcmp(a.peer, "b@test") == 0 &&
            a.u.send.bytes.len > 2 && a.u.send.bytes.ptr[1] == REC_TYPE) {
            cr_assert_eq(found, 0);
            found = 1;
            cr_assert_eq(tether_engine_recv(h.e[1], "a@test",
                                            a.u.send.bytes.ptr,
                                            a.u.send.bytes.len),
                         0);
        }
        tether_engine_action_release(&a);
    }
    cr_assert(found, "a SEND action after heal");
    cr_assert_eq(r.n, 1);
    cr_assert(is_id(r.data[0], r.len[0], 5));
    rec_free(&r);
    h_free(&h);
}

Test(direct, defer_partition_holds_an_open_and_delivers_it_on_heal)
{
    harness_t h;
    rec_t r = {0};
    uint8_t *sealed = NULL;
    size_t slen = 0;

    rec_pair(&h, &r);
    cr_assert_eq(seal_id(&h, 0, 1, 6, &sealed, &slen), 0);
    /* Only the receiver knows the partition. */
    cr_assert_eq(tether_engine_partition(h.e[1], GA, 1, GB, 1,
                                         TETHER_PARTITION_DEFER, NULL),
                 0);
    refused(&h, 1, "a@test", sealed, slen, TETHER_EAGAIN);
    cr_assert_eq(r.n, 0, "held, not delivered");
    /* The engine kept its own copy: the caller's buffer may go. */
    memset(sealed, 0, slen);
    free(sealed);
    tether_engine_heal_all(h.e[1]);
    cr_assert_eq(r.n, 1, "delivered to the module when heal returns");
    cr_assert_str_eq(r.from[0], "a@test");
    cr_assert(is_id(r.data[0], r.len[0], 6));
    h_pump(&h);
    cr_assert_eq(r.n, 1, "once");
    rec_free(&r);
    h_free(&h);
}

Test(direct, replayed_envelope_is_refused)
{
    harness_t h;
    uint8_t *sealed = NULL, type = 0;
    const uint8_t *payload = NULL;
    size_t slen = 0, plen = 0;

    h_cluster(&h, 2);
    cr_assert_eq(seal_id(&h, 0, 1, 8, &sealed, &slen), 0);
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", sealed, slen, &type,
                                    &payload, &plen),
                 0);
    refused(&h, 1, "a@test", sealed, slen, TETHER_EREPLAY);
    cr_assert_eq(tether_engine_recv(h.e[1], "a@test", sealed, slen),
                 TETHER_EREPLAY, "nor through recv");
    cr_assert_eq(tether_engine_envelope_stats(h.e[1])->replayed, 2);
    free(sealed);
    h_free(&h);
}

Test(direct, tampered_envelope_is_refused)
{
    harness_t h;
    uint8_t *sealed = NULL, type = 0;
    const uint8_t *payload = NULL;
    size_t slen = 0, plen = 0;
    uint64_t rejected;

    h_cluster(&h, 2);
    cr_assert_eq(seal_id(&h, 0, 1, 9, &sealed, &slen), 0);
    rejected = tether_engine_stats(h.e[1])->recv_rejected;
    for (size_t i = 2; i < slen; i++) {
        sealed[i] ^= 0x01;
        cr_assert_lt(tether_engine_open(h.e[1], "a@test", sealed, slen, &type,
                                        &payload, &plen),
                     0, "byte %zu changed", i);
        cr_assert_null(payload);
        sealed[i] ^= 0x01;
    }
    cr_assert_eq(tether_engine_stats(h.e[1])->recv_rejected,
                 rejected + (slen - 2), "each refusal is counted");
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", sealed, slen, &type,
                                    &payload, &plen),
                 0);
    cr_assert(is_id(payload, plen, 9));
    free(sealed);
    h_free(&h);
}

Test(direct, hellos_and_control_messages_are_not_for_open)
{
    harness_t h;
    tether_action_t a;
    uint8_t *hello = NULL, *notice = NULL, *hb = NULL;
    size_t hlen = 0, nlen = 0, hblen = 0;

    /* a (the kx client) sends its hello when the connection comes up. */
    h_init(&h, 2);
    h_start_all(&h);
    h.conn[0][1] = h.conn[1][0] = 1;
    cr_assert_eq(tether_engine_peer_up(h.e[0], "b@test"), 0);
    /* With its restart notice first. */
    while (tether_engine_next_action(h.e[0], &a)) {
        if (a.kind == TETHER_ACT_SEND && notice == NULL &&
            a.u.send.bytes.ptr[1] == TETHER_ENV_TYPE_RESTART) {
            nlen = a.u.send.bytes.len;
            notice = tether_engine_action_take(&a);
        } else if (a.kind == TETHER_ACT_SEND && hello == NULL &&
                   a.u.send.bytes.ptr[1] == TETHER_ENV_TYPE_HELLO) {
            cr_assert_not_null(notice, "the notice goes first");
            hlen = a.u.send.bytes.len;
            hello = tether_engine_action_take(&a);
        }
        tether_engine_action_release(&a);
    }
    cr_assert_not_null(hello);
    cr_assert_not_null(notice);
    refused(&h, 1, "a@test", hello, hlen, TETHER_EPROTO);
    refused(&h, 1, "a@test", notice, nlen, TETHER_EPROTO);
    free(hello);
    free(notice);
    h_free(&h);

    /* A sealed heartbeat (an engine message) through open. */
    h_cluster(&h, 2);
    hb = h_catch_heartbeat(&h, 0, &hblen);
    refused(&h, 1, "a@test", hb, hblen, TETHER_EPROTO);
    cr_assert_eq(tether_engine_recv(h.e[1], "a@test", hb, hblen),
                 TETHER_EREPLAY, "it was opened (and handled) once");
    free(hb);
    h_run(&h, 300);
    cr_assert_str_eq(h_members(&h, 1, mb, sizeof mb), "a@test b@test",
                     "the session survived");
    h_free(&h);
}

/* DEEP_LEVELS nested one-element lists: [[[...[]...]]]. */
static size_t deep_term(uint8_t *buf, size_t cap)
{
    size_t n = 0;

    cr_assert_geq(cap, 1 + DEEP_LEVELS * 6 + 1);
    buf[n++] = 131;
    for (int i = 0; i < DEEP_LEVELS; i++) {
        buf[n++] = ERL_LIST_EXT;
        buf[n++] = 0;
        buf[n++] = 0;
        buf[n++] = 0;
        buf[n++] = 1;
    }
    buf[n++] = ERL_NIL_EXT; /* the innermost element */
    for (int i = 0; i < DEEP_LEVELS; i++)
        buf[n++] = ERL_NIL_EXT; /* each list's tail */
    return n;
}

Test(direct, only_an_opaque_module_gets_a_deep_term)
{
    harness_t h;
    rec_t plain = {0}, opaque = {0};
    uint8_t deep[1024], *sealed = NULL, type = 0;
    const uint8_t *payload = NULL;
    size_t dlen = deep_term(deep, sizeof deep), slen = 0, plen = 0;
    uint64_t bad;
    int idx = 1;

    cr_assert_eq(ei_skip_term((const char *)deep, &idx), 0);
    cr_assert_eq((size_t)idx, dlen, "a well-formed term");
    cr_assert_lt(tether__etf_validate((const char *)deep, dlen), 0,
                 "that the engine's validator refuses");
    h_cluster(&h, 2);
    cr_assert_eq(tether__engine_register_module(h.e[1], &rec_module, &plain),
                 0);
    cr_assert_eq(
        tether__engine_register_module(h.e[1], &opaque_module, &opaque), 0);
    bad = tether_engine_stats(h.e[1])->recv_bad_term;
    cr_assert_eq(tether_engine_send(h.e[0], "b@test", REC_TYPE, deep, dlen, 0),
                 0);
    cr_assert_eq(
        tether_engine_send(h.e[0], "b@test", OPAQUE_TYPE, deep, dlen, 0), 0);
    h_pump(&h);
    cr_assert_eq(plain.n, 0, "refused before the plain module");
    cr_assert_eq(tether_engine_stats(h.e[1])->recv_bad_term, bad + 1);
    cr_assert_eq(opaque.n, 1);
    cr_assert_eq(opaque.len[0], dlen);
    cr_assert_eq(memcmp(opaque.data[0], deep, dlen), 0, "as it came");
    /* open hands it over unvalidated whatever the type. */
    cr_assert_eq(tether_engine_seal(h.e[0], "b@test", REC_TYPE, deep, dlen,
                                    &sealed, &slen),
                 0);
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", sealed, slen, &type,
                                    &payload, &plen),
                 0);
    cr_assert_eq(plen, dlen);
    cr_assert_eq(memcmp(payload, deep, dlen), 0);
    free(sealed);
    rec_free(&plain);
    rec_free(&opaque);
    h_free(&h);
}

Test(direct, an_opaque_module_gets_its_deep_term_held_by_defer_on_heal)
{
    harness_t h;
    rec_t opaque = {0};
    uint8_t deep[1024], *sealed = NULL, type = 0;
    const uint8_t *payload = NULL;
    size_t dlen = deep_term(deep, sizeof deep), slen = 0, plen = 0;

    h_cluster(&h, 2);
    cr_assert_eq(
        tether__engine_register_module(h.e[1], &opaque_module, &opaque), 0);
    cr_assert_eq(tether_engine_seal(h.e[0], "b@test", OPAQUE_TYPE, deep, dlen,
                                    &sealed, &slen),
                 0);
    cr_assert_eq(tether_engine_partition(h.e[1], GA, 1, GB, 1,
                                         TETHER_PARTITION_DEFER, NULL),
                 0);
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", sealed, slen, &type,
                                    &payload, &plen),
                 TETHER_EAGAIN);
    tether_engine_heal_all(h.e[1]);
    cr_assert_eq(opaque.n, 1);
    cr_assert_eq(opaque.len[0], dlen);
    cr_assert_eq(memcmp(opaque.data[0], deep, dlen), 0);
    free(sealed);
    rec_free(&opaque);
    h_free(&h);
}

Test(direct, full_defer_queues_refuse_seal_and_open_with_toobig)
{
    harness_t h;
    rec_t r = {0};
    uint8_t *sealed[3] = {NULL}, *held = NULL, type = 0;
    const uint8_t *payload = NULL;
    size_t slen[3] = {0}, hlen = 0, plen = 0;

    h_init(&h, 2);
    h.defer_max = 2;
    h_start_all(&h);
    tether_engine_join(h.e[1], "a@test");
    h_run(&h, 1000);
    cr_assert(tether_engine_session_up(h.e[0], "b@test"));
    cr_assert_eq(tether__engine_register_module(h.e[1], &rec_module, &r), 0);
    for (int k = 0; k < 3; k++)
        cr_assert_eq(seal_id(&h, 0, 1, 10 + k, &sealed[k], &slen[k]), 0);
    cr_assert_eq(tether_engine_partition(h.e[0], GA, 1, GB, 1,
                                         TETHER_PARTITION_DEFER, NULL),
                 0);
    cr_assert_eq(tether_engine_partition(h.e[1], GA, 1, GB, 1,
                                         TETHER_PARTITION_DEFER, NULL),
                 0);
    /* The sender's queue: two held, the third refused. */
    cr_assert_eq(seal_id(&h, 0, 1, 20, &held, &hlen), TETHER_EAGAIN);
    cr_assert_eq(seal_id(&h, 0, 1, 21, &held, &hlen), TETHER_EAGAIN);
    cr_assert_eq(seal_id(&h, 0, 1, 22, &held, &hlen), TETHER_ETOOBIG);
    cr_assert_null(held);
    cr_assert_eq(tether_engine_stats(h.e[0])->defer_overflow, 1);
    /* The receiver's queue: the same bound. */
    for (int k = 0; k < 2; k++)
        cr_assert_eq(tether_engine_open(h.e[1], "a@test", sealed[k], slen[k],
                                        &type, &payload, &plen),
                     TETHER_EAGAIN);
    cr_assert_eq(tether_engine_open(h.e[1], "a@test", sealed[2], slen[2], &type,
                                    &payload, &plen),
                 TETHER_ETOOBIG);
    cr_assert_null(payload);
    cr_assert_eq(tether_engine_stats(h.e[1])->defer_overflow, 1);
    tether_engine_heal_all(h.e[1]);
    cr_assert_eq(r.n, 2, "the two held opens reach the module");
    cr_assert(is_id(r.data[0], r.len[0], 10));
    cr_assert(is_id(r.data[1], r.len[1], 11));
    for (int k = 0; k < 3; k++)
        free(sealed[k]);
    rec_free(&r);
    h_free(&h);
}

/* --------------------------------------- large envelopes verified apart */

#define BIG_BYTES (TETHER_ENGINE_VERIFY_APART_BYTES + 1000)

/* Seals {direct, Id, <<BIG_BYTES bytes>>} from engine i to engine j. */
static uint8_t *seal_big(harness_t *h, int i, int j, long id, size_t *out_len)
{
    ei_x_buff x;
    uint8_t *bin = malloc(BIG_BYTES), *out = NULL;

    cr_assert_not_null(bin);
    memset(bin, 0x5a, BIG_BYTES);
    cr_assert_eq(ei_x_new_with_version(&x), 0);
    cr_assert_eq(ei_x_encode_tuple_header(&x, 3), 0);
    cr_assert_eq(ei_x_encode_atom(&x, "direct"), 0);
    cr_assert_eq(ei_x_encode_long(&x, id), 0);
    cr_assert_eq(ei_x_encode_binary(&x, bin, BIG_BYTES), 0);
    cr_assert_eq(tether_engine_seal(h->e[i], h->names[j], REC_TYPE,
                                    (const uint8_t *)x.buff, (size_t)x.index,
                                    &out, out_len),
                 0);
    ei_x_free(&x);
    free(bin);
    return out;
}

/* Engine i takes env from `from` in recv's three steps: prepare must
 * accept it; returns what recv_verified says. */
static int recv_apart(harness_t *h, int i, const char *from, const uint8_t *env,
                      size_t len)
{
    tether_opener_t o;

    cr_assert_eq(tether_engine_recv_begin(h->e[i], from, env, len, &o), 0);
    (void)tether_engine_recv_verify(&o, env, len);
    return tether_engine_recv_end(h->e[i], from, env, len, &o);
}

Test(direct, large_envelope_verified_apart_is_delivered_once)
{
    harness_t h;
    rec_t r = {0};
    tether_opener_t o;
    uint8_t *big, *small = NULL;
    size_t blen = 0, slen = 0;

    rec_pair(&h, &r);
    big = seal_big(&h, 0, 1, 1, &blen);
    cr_assert_eq(recv_apart(&h, 1, "a@test", big, blen), 0);
    cr_assert_eq(r.n, 1);
    cr_assert_eq(recv_apart(&h, 1, "a@test", big, blen), TETHER_EREPLAY,
                 "a replay is refused");
    cr_assert_eq(tether_engine_recv(h.e[1], "a@test", big, blen),
                 TETHER_EREPLAY, "through recv too");
    cr_assert_eq(r.n, 1);
    cr_assert_eq(tether_engine_envelope_stats(h.e[1])->replayed, 2);
    /* Small envelopes, unknown peers and our own name stay on recv. */
    cr_assert_eq(seal_id(&h, 0, 1, 2, &small, &slen), 0);
    cr_assert_eq(tether_engine_recv_begin(h.e[1], "a@test", small, slen, &o),
                 TETHER_EAGAIN);
    cr_assert_eq(tether_engine_recv_begin(h.e[1], "zz@nowhere", big, blen, &o),
                 TETHER_EAGAIN);
    cr_assert_eq(tether_engine_recv_begin(h.e[1], "b@test", big, blen, &o),
                 TETHER_EAGAIN);
    cr_assert_eq(tether_engine_recv_end(h.e[1], "a@test", big, blen, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether_engine_recv_verify(NULL, big, blen), TETHER_EINVAL);
    cr_assert_eq(tether_engine_recv_verify(&o, NULL, blen), TETHER_EINVAL);
    free(small);
    free(big);
    rec_free(&r);
    h_free(&h);
}

Test(direct, tampered_large_envelope_verified_apart_is_refused)
{
    harness_t h;
    rec_t r = {0};
    tether_opener_t o;
    uint8_t *big;
    size_t blen = 0;
    uint64_t tampered, rejected;

    rec_pair(&h, &r);
    big = seal_big(&h, 0, 1, 3, &blen);
    tampered = tether_engine_envelope_stats(h.e[1])->tampered;
    rejected = tether_engine_stats(h.e[1])->recv_rejected;
    /* A byte of the header, of the payload and of the MAC. */
    size_t at[] = {10, blen / 2, blen - 1};
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        big[at[k]] ^= 0x01;
        cr_assert_lt(recv_apart(&h, 1, "a@test", big, blen), 0,
                     "byte %zu changed", at[k]);
        big[at[k]] ^= 0x01;
    }
    cr_assert_eq(r.n, 0);
    cr_assert_geq(tether_engine_envelope_stats(h.e[1])->tampered, tampered + 2);
    cr_assert_eq(tether_engine_stats(h.e[1])->recv_rejected, rejected + 3,
                 "each refusal is counted");
    cr_assert_eq(tether_engine_recv_begin(h.e[1], "a@test", big, blen, &o), 0);
    cr_assert_eq(tether_engine_recv_end(h.e[1], "a@test", big, blen, &o),
                 TETHER_EAUTH, "an envelope never verified is refused");
    cr_assert_eq(recv_apart(&h, 1, "a@test", big, blen), 0,
                 "the window did not move for the forgeries");
    cr_assert_eq(r.n, 1);
    free(big);
    rec_free(&r);
    h_free(&h);
}

Test(direct, session_changed_during_verify_is_refused)
{
    harness_t h;
    rec_t r = {0};
    tether_opener_t o;
    uint8_t *big;
    size_t blen = 0;

    rec_pair(&h, &r);
    big = seal_big(&h, 0, 1, 4, &blen);
    /* The connection drops while the MAC is verified: no session. */
    cr_assert_eq(tether_engine_recv_begin(h.e[1], "a@test", big, blen, &o), 0);
    h_cut(&h, 0, 1);
    cr_assert_eq(tether_engine_recv_verify(&o, big, blen), 0);
    cr_assert_eq(tether_engine_recv_end(h.e[1], "a@test", big, blen, &o),
                 TETHER_ECLOSED);
    /* A new session is made while the MAC is verified: refused as an
     * envelope of the old session is. */
    h_peer_up(&h, 0, 1);
    h_run(&h, 500);
    cr_assert(tether_engine_session_up(h.e[1], "a@test"));
    free(big);
    big = seal_big(&h, 0, 1, 5, &blen);
    cr_assert_eq(tether_engine_recv_begin(h.e[1], "a@test", big, blen, &o), 0);
    h_cut(&h, 0, 1);
    h_peer_up(&h, 0, 1);
    h_run(&h, 500);
    cr_assert(tether_engine_session_up(h.e[1], "a@test"));
    cr_assert_eq(tether_engine_recv_verify(&o, big, blen), 0);
    cr_assert_eq(tether_engine_recv_end(h.e[1], "a@test", big, blen, &o),
                 TETHER_EAUTH);
    cr_assert_eq(r.n, 0);
    free(big);
    rec_free(&r);
    h_free(&h);
}
