/*
 * Criterion suite for cnode/lane.c: the messaging lane as a state
 * machine. Two lanes are wired back to back through a lossy in-memory
 * link (what one emits, the other decodes and receives, unless the link
 * drops it); the tests check sequencing, duplicate filtering, cumulative
 * acks, retransmission with bounded backoff, give-ups, parts, and that
 * truncated, oversized and ill-formed input is refused and counted.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/lane.h"

#define DELIVERED_MAX 256
#define LINK_MAX      256

/* One side of the link: what it emitted (not yet carried) and what it
 * delivered. */
typedef struct side {
    tether_lane_t *lane;
    tether_lane_stats_t stats;
    char *out[LINK_MAX];
    size_t outlen[LINK_MAX];
    size_t nout;
    char *got[DELIVERED_MAX];
    size_t gotlen[DELIVERED_MAX];
    size_t ngot;
    bool noproc; /* deliver answers "no process" */
    int undelivered[DELIVERED_MAX];
    size_t nundelivered;
} side_t;

static void emit(void *ctx, const char *etf, size_t len)
{
    side_t *s = ctx;
    cr_assert_lt(s->nout, LINK_MAX);
    s->out[s->nout] = malloc(len);
    memcpy(s->out[s->nout], etf, len);
    s->outlen[s->nout++] = len;
}

static int deliver(void *ctx, const char *ref, size_t ref_len,
                   const char *payload, size_t plen)
{
    side_t *s = ctx;
    (void)ref;
    (void)ref_len;
    if (s->noproc)
        return TETHER_ENOTFOUND;
    cr_assert_lt(s->ngot, DELIVERED_MAX);
    s->got[s->ngot] = malloc(plen);
    memcpy(s->got[s->ngot], payload, plen);
    s->gotlen[s->ngot++] = plen;
    return 0;
}

static void undelivered(void *ctx, void *report, tether_lane_reason_t why)
{
    side_t *s = ctx;
    (void)report;
    s->undelivered[s->nundelivered++] = (int)why;
}

static side_t a, b;

static void side_init(side_t *s, int64_t epoch)
{
    memset(s, 0, sizeof *s);
    tether_lane_cb_t cb = {emit, deliver, undelivered, s};
    s->lane = tether__lane_new("default", 0, epoch, NULL, &cb, &s->stats);
    cr_assert_not_null(s->lane);
}

static void side_fini(side_t *s)
{
    for (size_t i = 0; i < s->nout; i++)
        free(s->out[i]);
    for (size_t i = 0; i < s->ngot; i++)
        free(s->got[i]);
    tether__lane_free(s->lane);
}

static void setup(void)
{
    side_init(&a, 1000);
    side_init(&b, 2000);
}

static void teardown(void)
{
    side_fini(&a);
    side_fini(&b);
}

/* Carries what `from` emitted to `to` (or drops it all). */
static size_t carry(side_t *from, side_t *to, uint64_t now, bool drop)
{
    size_t n = from->nout;
    for (size_t i = 0; i < n; i++) {
        tether_lane_inner_t in;
        if (!drop) {
            cr_assert_eq(
                tether__lane_decode(from->out[i], from->outlen[i], &in), 0);
            tether__lane_recv(to->lane, now, &in);
        }
        free(from->out[i]);
    }
    from->nout = 0;
    return n;
}

/* Carries both ways until quiet. */
static void settle(uint64_t now)
{
    while (carry(&a, &b, now, false) + carry(&b, &a, now, false) > 0)
        ;
}

/* An integer term without 131 (the payloads of these tests). */
static size_t int_term(char *buf, long v)
{
    int idx = 0;
    cr_assert_eq(ei_encode_long(buf, &idx, v), 0);
    return (size_t)idx;
}

static long term_int(const char *buf)
{
    int idx = 0;
    long v;
    cr_assert_eq(ei_decode_long(buf, &idx, &v), 0);
    return v;
}

static const char ref[] = {(char)ERL_SMALL_ATOM_UTF8_EXT, 1, 'r'};

static void push(side_t *s, uint64_t now, long v, bool ack)
{
    char p[16];
    size_t n = int_term(p, v);
    void *report = ack ? malloc(1) : NULL;
    cr_assert_eq(tether__lane_push(s->lane, now, ref, sizeof ref, p, n, report,
                                   ack ? now + 100000 : 0),
                 0);
}

TestSuite(lane, .init = setup, .fini = teardown);

Test(lane, delivers_in_order_and_acks_cumulatively)
{
    for (long i = 0; i < 20; i++)
        push(&a, 0, i, true);
    settle(0);
    cr_assert_eq(b.ngot, 20);
    for (long i = 0; i < 20; i++)
        cr_assert_eq(term_int(b.got[i]), i);
    tether_lane_info_t info;
    tether__lane_info(a.lane, &info);
    cr_assert_eq(info.inflight, 0);
    cr_assert_eq(info.pending, 0);
    cr_assert_eq(tether__lane_deadline(a.lane), 0, "nothing to retransmit");
}

Test(lane, duplicates_are_dropped_by_epoch_and_sequence)
{
    push(&a, 0, 7, true);
    cr_assert_eq(a.nout, 1);
    /* The batch arrives twice (a retransmission crossed the ack). */
    tether_lane_inner_t in;
    cr_assert_eq(tether__lane_decode(a.out[0], a.outlen[0], &in), 0);
    tether__lane_recv(b.lane, 0, &in);
    tether__lane_recv(b.lane, 0, &in);
    cr_assert_eq(b.ngot, 1);
    cr_assert_eq(b.stats.duplicates, 1);
}

Test(lane, retransmits_with_bounded_exponential_backoff)
{
    push(&a, 0, 1, true);
    carry(&a, &b, 0, true); /* lost */
    uint64_t now = 0;
    uint32_t expect = TETHER_LANE_RTO_MS;
    for (int i = 0; i < 8; i++) {
        uint64_t d = tether__lane_deadline(a.lane);
        cr_assert_eq(d, now + expect, "try %d: deadline %lu", i,
                     (unsigned long)d);
        now = d;
        tether__lane_tick(a.lane, now);
        expect = expect * 2 > TETHER_LANE_RTO_MAX_MS ? TETHER_LANE_RTO_MAX_MS
                                                     : expect * 2;
        cr_assert_eq(carry(&a, &b, now, true), 1, "sent again");
    }
    cr_assert_eq(a.stats.retransmissions, 8);
    /* The link heals: the next try arrives once, the ack stops the timer. */
    now = tether__lane_deadline(a.lane);
    tether__lane_tick(a.lane, now);
    settle(now);
    cr_assert_eq(b.ngot, 1);
    cr_assert_eq(tether__lane_deadline(a.lane), 0);
}

Test(lane, peer_up_resends_at_once_with_the_rto_reset)
{
    push(&a, 0, 1, true);
    carry(&a, &b, 0, true);
    tether__lane_tick(a.lane, tether__lane_deadline(a.lane));
    carry(&a, &b, 0, true);
    tether__lane_peer_up(a.lane, 1000);
    settle(1000);
    cr_assert_eq(b.ngot, 1);
}

Test(lane, an_unacknowledged_message_is_given_up_at_its_deadline)
{
    push(&a, 0, 1, true); /* deadline 100000 */
    carry(&a, &b, 0, true);
    uint64_t now = 0;
    while (a.nundelivered == 0 && now < 200000) {
        now = tether__lane_deadline(a.lane);
        tether__lane_tick(a.lane, now);
        carry(&a, &b, now, true);
    }
    cr_assert_eq(a.nundelivered, 1);
    cr_assert_eq(a.undelivered[0], TETHER_LANE_TIMEOUT);
    cr_assert_geq(now, 100000);
    /* The receiver then gets a `skip`, never the message. */
    tether__lane_peer_up(a.lane, now);
    settle(now);
    cr_assert_eq(b.ngot, 0);
}

Test(lane, noproc_at_the_receiver_reports_noproc)
{
    b.noproc = true;
    push(&a, 0, 1, true);
    push(&a, 0, 2, false);
    settle(0);
    cr_assert_eq(a.nundelivered, 1);
    cr_assert_eq(a.undelivered[0], TETHER_LANE_NOPROC);
    cr_assert_eq(b.stats.noproc, 2);
}

Test(lane, large_messages_travel_in_parts_one_window_at_a_time)
{
    size_t n = 3 * TETHER_LANE_PART_BYTES + 17;
    char *payload = malloc(n + 8);
    int idx = 0;
    char *bin = malloc(n);
    for (size_t i = 0; i < n; i++)
        bin[i] = (char)(i * 31);
    cr_assert_eq(ei_encode_binary(payload, &idx, bin, (long)n), 0);
    cr_assert_eq(tether__lane_push(a.lane, 0, ref, sizeof ref, payload,
                                   (size_t)idx, malloc(1), 10000),
                 0);
    push(&a, 0, 99, true); /* behind it on the same lane */
    tether_lane_info_t info;
    tether__lane_info(a.lane, &info);
    cr_assert_eq(info.inflight, 1, "one part in the window");
    settle(0);
    cr_assert_eq(b.ngot, 2);
    cr_assert_eq(b.gotlen[0], (size_t)idx);
    cr_assert_eq(memcmp(b.got[0], payload, (size_t)idx), 0);
    cr_assert_eq(term_int(b.got[1]), 99);
    free(payload);
    free(bin);
}

Test(lane, out_of_order_batches_are_buffered_and_delivered_in_order)
{
    /* Window one frame of 8 KiB: push three small ones in three batches
     * by acking nothing yet: they go out as one batch; build two lanes'
     * worth by hand instead: deliver batch 2 before batch 1. */
    push(&a, 0, 1, false);
    tether__lane_tick(a.lane, tether__lane_deadline(a.lane));
    push(&a, 0, 2, false);
    cr_assert_geq(a.nout, 2);
    tether_lane_inner_t first, last;
    cr_assert_eq(tether__lane_decode(a.out[0], a.outlen[0], &first), 0);
    cr_assert_eq(
        tether__lane_decode(a.out[a.nout - 1], a.outlen[a.nout - 1], &last), 0);
    tether__lane_recv(b.lane, 0, &last);
    tether__lane_recv(b.lane, 0, &first);
    cr_assert_eq(b.ngot, 2);
    cr_assert_eq(term_int(b.got[0]), 1);
    cr_assert_eq(term_int(b.got[1]), 2);
}

Test(lane, a_newer_epoch_resets_the_receiver_an_older_one_is_stale)
{
    push(&a, 0, 1, false);
    settle(0);
    side_t c;
    side_init(&c, 3000); /* the sender restarted */
    tether_lane_cb_t cb = {emit, deliver, undelivered, &c};
    (void)cb;
    push(&c, 0, 2, false);
    carry(&c, &b, 0, false);
    cr_assert_eq(b.ngot, 2);
    push(&a, 0, 3, false); /* the old incarnation */
    carry(&a, &b, 0, false);
    cr_assert_eq(b.ngot, 2);
    cr_assert_eq(b.stats.stale, 1);
    side_fini(&c);
}

Test(lane, a_batch_for_another_lane_is_refused)
{
    side_t c;
    memset(&c, 0, sizeof c);
    tether_lane_cb_t cb = {emit, deliver, undelivered, &c};
    c.lane = tether__lane_new("other", 0, 5, NULL, &cb, &c.stats);
    push(&c, 0, 1, false);
    carry(&c, &b, 0, false);
    cr_assert_eq(b.ngot, 0);
    cr_assert_eq(b.stats.bad_lane, 1);
    side_fini(&c);
}

/* ---- decoding untrusted bytes ----------------------------------------- */

Test(lane, every_truncation_of_a_batch_is_refused)
{
    push(&a, 0, 1, true);
    push(&a, 0, 2, true);
    cr_assert_geq(a.nout, 1);
    tether_lane_inner_t in;
    for (size_t n = 0; n < a.outlen[0]; n++)
        cr_assert_eq(tether__lane_decode(a.out[0], n, &in), TETHER_EPROTO,
                     "truncated to %zu", n);
    cr_assert_eq(tether__lane_decode(a.out[0], a.outlen[0], &in), 0);
}

static void expect_refused(const char *what, ei_x_buff *x)
{
    tether_lane_inner_t in;
    cr_assert_eq(tether__lane_decode(x->buff, (size_t)x->index, &in),
                 TETHER_EPROTO, "%s", what);
    ei_x_free(x);
}

static void header(ei_x_buff *x, const char *kind, long long base)
{
    ei_x_new_with_version(x);
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "tether_channel");
    ei_x_encode_tuple_header(x, 6);
    ei_x_encode_atom(x, kind);
    ei_x_encode_atom(x, "default");
    ei_x_encode_long(x, 0);
    ei_x_encode_longlong(x, 1);
    ei_x_encode_longlong(x, base);
}

Test(lane, ill_formed_terms_are_refused)
{
    ei_x_buff x;
    header(&x, "data", -1);
    ei_x_encode_empty_list(&x);
    expect_refused("negative base", &x);

    header(&x, "data", 0);
    ei_x_encode_empty_list(&x);
    expect_refused("base 0 (sequence numbers start at 1)", &x);

    header(&x, "data", 1);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_long(&x, 0);
    ei_x_encode_atom(&x, "skip");
    ei_x_encode_empty_list(&x);
    expect_refused("sequence number 0", &x);

    header(&x, "nope", 1);
    ei_x_encode_empty_list(&x);
    expect_refused("unknown kind", &x);

    header(&x, "data", 1);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_long(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "p");
    ei_x_encode_long(&x, 5); /* not a binary */
    ei_x_encode_empty_list(&x);
    expect_refused("a part that is not a binary", &x);

    header(&x, "data", 1);
    ei_x_encode_list_header(&x, TETHER_LANE_FRAMES_MAX + 1);
    for (int i = 0; i <= TETHER_LANE_FRAMES_MAX; i++) {
        ei_x_encode_tuple_header(&x, 2);
        ei_x_encode_long(&x, i + 1);
        ei_x_encode_atom(&x, "skip");
    }
    ei_x_encode_empty_list(&x);
    expect_refused("too many frames", &x);

    header(&x, "ack", 1);
    ei_x_encode_list_header(&x, TETHER_LANE_FAILED_MAX + 1);
    for (int i = 0; i <= TETHER_LANE_FAILED_MAX; i++)
        ei_x_encode_long(&x, 1000 + i);
    ei_x_encode_empty_list(&x);
    expect_refused("too many failed", &x);

    header(&x, "ack", 1);
    ei_x_encode_empty_list(&x);
    ei_x_encode_atom(&x, "trailing");
    expect_refused("trailing bytes", &x);
}

Test(lane, an_ack_with_failed_as_a_string_decodes)
{
    ei_x_buff x;
    header(&x, "ack", 9);
    ei_x_encode_string(&x, "\x03\x05");
    tether_lane_inner_t in;
    cr_assert_eq(tether__lane_decode(x.buff, (size_t)x.index, &in), 0);
    cr_assert(in.is_ack);
    cr_assert_eq(in.nfailed, 2);
    cr_assert_eq(in.failed[1], 5);
    ei_x_free(&x);
}

/* A batch of one frame {Kind, <<n bytes>>} or {m, r, 42, false}. */
static void one_frame(ei_x_buff *x, uint64_t seq, const char *kind, size_t n)
{
    header(x, "data", 1);
    ei_x_encode_list_header(x, 1);
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_ulonglong(x, seq);
    if (strcmp(kind, "m") == 0) {
        ei_x_encode_tuple_header(x, 4);
        ei_x_encode_atom(x, "m");
        ei_x_encode_atom(x, "r");
        ei_x_encode_long(x, 42);
        ei_x_encode_boolean(x, 0);
    } else {
        char *bin = calloc(1, n);
        ei_x_encode_tuple_header(x, 2);
        ei_x_encode_atom(x, kind);
        ei_x_encode_binary(x, bin, (long)n);
        free(bin);
    }
    ei_x_encode_empty_list(x);
}

Test(lane, parts_over_the_cap_are_dropped_and_counted)
{
    const char *kinds[] = {"p", "p", "l", "m"};
    size_t sizes[] = {TETHER_LANE_JOINED_MAX - 100, 200, 10, 0};
    for (size_t i = 0; i < 4; i++) {
        ei_x_buff x;
        tether_lane_inner_t in;
        one_frame(&x, i + 1, kinds[i], sizes[i]);
        cr_assert_eq(tether__lane_decode(x.buff, (size_t)x.index, &in), 0);
        tether__lane_recv(b.lane, 0, &in);
        ei_x_free(&x);
    }
    cr_assert_eq(b.stats.malformed, 1, "the oversized message, once");
    cr_assert_eq(b.ngot, 1, "the next message still arrives");
    cr_assert_eq(term_int(b.got[0]), 42);
}

Test(lane, a_relayed_batch_decodes_as_the_direct_one)
{
    ei_x_buff x;
    ei_x_new_with_version(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "tether_channel");
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "relayed");
    ei_x_encode_tuple_header(&x, 6);
    ei_x_encode_atom(&x, "data");
    ei_x_encode_atom(&x, "default");
    ei_x_encode_long(&x, 0);
    ei_x_encode_longlong(&x, 1);
    ei_x_encode_longlong(&x, 1);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_long(&x, 1);
    ei_x_encode_tuple_header(&x, 4);
    ei_x_encode_atom(&x, "m");
    ei_x_encode_atom(&x, "r");
    ei_x_encode_long(&x, 42);
    ei_x_encode_boolean(&x, 1);
    ei_x_encode_empty_list(&x);
    tether_lane_inner_t in;
    cr_assert_eq(tether__lane_decode(x.buff, (size_t)x.index, &in), 0);
    cr_assert(in.relayed);
    tether__lane_recv(b.lane, 0, &in);
    cr_assert_eq(b.ngot, 1);
    cr_assert_eq(term_int(b.got[0]), 42);
    ei_x_free(&x);
}

Test(lane, a_malformed_reassembled_message_is_counted)
{
    ei_x_buff x;
    header(&x, "data", 1);
    ei_x_encode_list_header(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_long(&x, 1);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "l");
    ei_x_encode_binary(&x, "garbage", 7);
    ei_x_encode_empty_list(&x);
    tether_lane_inner_t in;
    cr_assert_eq(tether__lane_decode(x.buff, (size_t)x.index, &in), 0);
    tether__lane_recv(b.lane, 0, &in);
    cr_assert_eq(b.ngot, 0);
    cr_assert_eq(b.stats.malformed, 1);
    cr_assert_eq(b.nout, 1, "still acknowledged");
    ei_x_free(&x);
}
