/*
 * Criterion suite for dist/handshake.c: byte-exact messages (formats of
 * OTP 25 dist_util.erl), full handshakes between two machines in memory,
 * and hostile input.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "dist/flags.h"
#include "dist/handshake.h"

#define A_NODE "a@host"
#define B_NODE "b@host"
#define ADV    TETHER_DIST_FLAGS_ADVERTISED

/* Pending output of hs, consumed. */
static size_t take(tether_hs_t *hs, uint8_t *dst, size_t cap)
{
    size_t n;
    const uint8_t *p = tether__hs_output(hs, &n);

    cr_assert_leq(n, cap);
    memcpy(dst, p, n);
    tether__hs_consume_output(hs, n);
    return n;
}

/* Moves every pending output byte of from into to; returns bytes moved. */
static size_t pump(tether_hs_t *from, tether_hs_t *to, size_t chunk)
{
    uint8_t buf[TETHER_HS_OUT_MAX];
    size_t n = take(from, buf, sizeof(buf)), fed = 0, used;
    size_t pending = 0;
    uint8_t acc[TETHER_HS_OUT_MAX];

    /* Deliver in chunks, keeping unconsumed bytes like a real caller. */
    while (fed < n) {
        size_t k = n - fed < chunk ? n - fed : chunk;
        memcpy(acc + pending, buf + fed, k);
        pending += k;
        fed += k;
        if (tether__hs_input(to, acc, pending, &used) < 0)
            return n;
        memmove(acc, acc + used, pending - used);
        pending -= used;
    }
    cr_assert_eq(pending, 0, "bytes left unconsumed");
    return n;
}

/* Runs a handshake to completion or failure. */
static void run(tether_hs_t *i, tether_hs_t *a, size_t chunk)
{
    for (int round = 0; round < 10; round++) {
        size_t moved = pump(i, a, chunk) + pump(a, i, chunk);
        if (moved == 0)
            break;
    }
}

static void init_pair(tether_hs_t *i, tether_hs_t *a, const char *ci,
                      const char *ca)
{
    cr_assert_eq(tether__hs_init(i, TETHER_HS_INITIATOR, A_NODE, ci,
                                 ADV | TETHER_DFLAG_PUBLISHED, 0x11223344,
                                 12345),
                 0);
    cr_assert_eq(tether__hs_init(a, TETHER_HS_ACCEPTOR, B_NODE, ca, ADV,
                                 0x55667788, 4294967295u),
                 0);
}

Test(handshake, digest_matches_erlang_md5)
{
    /* erlang:md5(["secret"|integer_to_list(12345)]) etc., from erl. */
    const uint8_t d1[] = {212, 4,   125, 62,  86, 230, 214, 214,
                          63,  125, 22,  184, 92, 210, 250, 136};
    const uint8_t d2[] = {222, 86,  255, 157, 17,  176, 113, 144,
                          91,  206, 89,  122, 133, 214, 127, 79};
    const uint8_t d3[] = {87,  117, 113, 190, 77, 233, 220, 206,
                          133, 160, 65,  186, 4,  16,  242, 159};
    uint8_t out[16];

    cr_assert_eq(tether__hs_digest("secret", 6, 12345, out), 0);
    cr_assert_arr_eq(out, d1, 16);
    cr_assert_eq(tether__hs_digest("cookie", 6, 4294967295u, out), 0);
    cr_assert_arr_eq(out, d2, 16);
    cr_assert_eq(tether__hs_digest("abc", 3, 0, out), 0);
    cr_assert_arr_eq(out, d3, 16);
}

Test(handshake, send_name_is_byte_exact)
{
    tether_hs_t hs;
    uint8_t out[64];
    size_t n;
    /* <<Len:16, $N, Flags:64, Creation:32, NameLen:16, Name>> */
    const uint8_t want[] = {0,    21,   'N',  0,    0,    0,    0x0f, 0x07,
                            0xdf, 0x7f, 0xbd, 0x11, 0x22, 0x33, 0x44, 0,
                            6,    'a',  '@',  'h',  'o',  's',  't'};

    cr_assert_eq(tether__hs_init(&hs, TETHER_HS_INITIATOR, A_NODE, "c",
                                 UINT64_C(0x0f07df7fbd), 0x11223344, 1),
                 0);
    n = take(&hs, out, sizeof(out));
    cr_assert_eq(n, sizeof(want));
    cr_assert_arr_eq(out, want, sizeof(want));
}

Test(handshake, v5_opener_is_byte_exact)
{
    tether_hs_t hs;
    uint8_t out[64];
    size_t n;
    /* <<Len:16, $n, 5:16, Flags:32, Name>> */
    const uint8_t want[] = {0,    13,  'n', 0,   5,   0xdf, 0x7f, 0xbd,
                            0x11, 'a', '@', 'h', 'o', 's',  't'};

    cr_assert_eq(tether__hs_init(&hs, TETHER_HS_INITIATOR, A_NODE, "c",
                                 UINT64_C(0x0fdf7fbd11), 1, 1),
                 0);
    cr_assert_eq(tether__hs_set_v5_opener(&hs), 0);
    n = take(&hs, out, sizeof(out));
    cr_assert_eq(n, sizeof(want));
    cr_assert_arr_eq(out, want, sizeof(want));
    cr_assert_eq(tether__hs_set_v5_opener(&hs), TETHER_EINVAL);
}

Test(handshake, init_rejects_bad_arguments)
{
    tether_hs_t hs;
    char big[TETHER_HS_NAME_MAX + 8];

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[3] = '@';
    cr_assert_eq(
        tether__hs_init(&hs, TETHER_HS_ACCEPTOR, "nohost", "c", 0, 0, 0),
        TETHER_EINVAL);
    cr_assert_eq(tether__hs_init(&hs, TETHER_HS_ACCEPTOR, A_NODE, "", 0, 0, 0),
                 TETHER_EINVAL);
    cr_assert_eq(tether__hs_init(&hs, 7, A_NODE, "c", 0, 0, 0), TETHER_EINVAL);
    cr_assert_eq(tether__hs_init(&hs, TETHER_HS_ACCEPTOR, big, "c", 0, 0, 0),
                 TETHER_EINVAL);
    cr_assert_neq(tether__hs_failed(&hs), 0);
}

Test(handshake, full_handshake_succeeds)
{
    tether_hs_t i, a;

    init_pair(&i, &a, "secret", "secret");
    run(&i, &a, 4096);
    cr_assert(tether__hs_done(&i), "initiator: %s", tether__hs_reason(&i));
    cr_assert(tether__hs_done(&a), "acceptor: %s", tether__hs_reason(&a));
    cr_assert_str_eq(tether__hs_peer_name(&i), B_NODE);
    cr_assert_str_eq(tether__hs_peer_name(&a), A_NODE);
    cr_assert_eq(tether__hs_peer_creation(&i), 0x55667788);
    cr_assert_eq(tether__hs_peer_creation(&a), 0x11223344);
    cr_assert_eq(tether__hs_peer_flags(&a), ADV | TETHER_DFLAG_PUBLISHED);
    cr_assert_eq(tether__hs_flags(&a), ADV);
    cr_assert_eq(tether__hs_flags(&i), ADV);
    cr_assert_eq(tether__hs_opener_version(&a), 6);
    cr_assert_eq(tether__hs_failed(&i), 0);
    tether__hs_fini(&i);
    tether__hs_fini(&a);
}

Test(handshake, full_handshake_byte_at_a_time)
{
    tether_hs_t i, a;

    init_pair(&i, &a, "secret", "secret");
    run(&i, &a, 1);
    cr_assert(tether__hs_done(&i));
    cr_assert(tether__hs_done(&a));
}

Test(handshake, initiator_with_wrong_cookie_is_refused)
{
    tether_hs_t i, a;

    init_pair(&i, &a, "wrong", "secret");
    run(&i, &a, 4096);
    cr_assert_eq(tether__hs_failed(&a), TETHER_EAUTH);
    cr_assert_str_eq(tether__hs_peer_name(&a), A_NODE);
    cr_assert(strstr(tether__hs_reason(&a), "wrong cookie"));
    cr_assert(strstr(tether__hs_reason(&a), A_NODE));
    cr_assert(!tether__hs_done(&i));
    /* The initiator sent its reply and waits: a peer that closes now
     * found the digest wrong (the C-node blames the cookie). */
    cr_assert_eq(tether__hs_awaiting_ack(&i), 1);
}

Test(handshake, awaiting_ack_only_between_reply_and_ack)
{
    tether_hs_t i, a;

    init_pair(&i, &a, "secret", "secret");
    cr_assert_eq(tether__hs_awaiting_ack(&i), 0);
    pump(&i, &a, 4096); /* name */
    pump(&a, &i, 4096); /* status, challenge */
    cr_assert_eq(tether__hs_awaiting_ack(&i), 1);
    cr_assert_eq(tether__hs_awaiting_ack(&a), 0);
    run(&i, &a, 4096);
    cr_assert(tether__hs_done(&i));
    cr_assert_eq(tether__hs_awaiting_ack(&i), 0);
    tether__hs_fini(&i);
    tether__hs_fini(&a);
}

Test(handshake, acceptor_with_wrong_cookie_refuses)
{
    tether_hs_t i, a;

    init_pair(&i, &a, "secret", "other");
    run(&i, &a, 4096);
    cr_assert_eq(tether__hs_failed(&a), TETHER_EAUTH);
    cr_assert(!tether__hs_done(&a));
    cr_assert(!tether__hs_done(&i));
}

Test(handshake, initiator_rejects_forged_ack)
{
    tether_hs_t i, a;
    uint8_t buf[TETHER_HS_OUT_MAX];
    size_t n, used;

    init_pair(&i, &a, "secret", "secret");
    pump(&i, &a, 4096); /* name */
    pump(&a, &i, 4096); /* status + challenge */
    pump(&i, &a, 4096); /* reply */
    n = take(&a, buf, sizeof(buf));
    cr_assert_eq(n, 2 + 17);
    buf[5] ^= 1;
    cr_assert_eq(tether__hs_input(&i, buf, n, &used), TETHER_EAUTH);
    cr_assert_eq(tether__hs_failed(&i), TETHER_EAUTH);
    cr_assert(strstr(tether__hs_reason(&i), "wrong cookie"));
}

Test(handshake, v5_opener_handshake_merges_complement)
{
    tether_hs_t i, a;

    init_pair(&i, &a, "secret", "secret");
    cr_assert_eq(tether__hs_set_v5_opener(&i), 0);
    run(&i, &a, 3);
    cr_assert(tether__hs_done(&i), "initiator: %s", tether__hs_reason(&i));
    cr_assert(tether__hs_done(&a), "acceptor: %s", tether__hs_reason(&a));
    cr_assert_eq(tether__hs_opener_version(&a), 5);
    /* High flags (SPAWN, ALIAS, V4_NC) and creation came in 'c'. */
    cr_assert_eq(tether__hs_peer_flags(&a), ADV | TETHER_DFLAG_PUBLISHED);
    cr_assert_eq(tether__hs_peer_creation(&a), 0x11223344);
}

/* Under TLS (inet_tls_dist's {packet, 4}) every message has a 4-byte
 * length: the opener is re-framed, and a whole handshake succeeds. */
Test(handshake, four_byte_lengths_under_tls)
{
    tether_hs_t i, a;
    uint8_t two[TETHER_HS_OUT_MAX], four[TETHER_HS_OUT_MAX];

    init_pair(&i, &a, "secret", "secret");
    size_t n2;
    const uint8_t *opener = tether__hs_output(&i, &n2);
    memcpy(two, opener, n2);
    cr_assert_eq(tether__hs_set_len4(&i), 0);
    cr_assert_eq(tether__hs_set_len4(&i), TETHER_EINVAL, "only once");
    size_t n4 = take(&i, four, sizeof four);
    cr_assert_eq(n4, n2 + 2);
    cr_assert_eq(four[0], 0);
    cr_assert_eq(four[1], 0);
    cr_assert_eq(((size_t)four[2] << 8) | four[3], n2 - 2);
    cr_assert_eq(memcmp(four + 4, two + 2, n2 - 2), 0);

    init_pair(&i, &a, "secret", "secret");
    cr_assert_eq(tether__hs_set_len4(&i), 0);
    cr_assert_eq(tether__hs_set_len4(&a), 0);
    run(&i, &a, 3);
    cr_assert(tether__hs_done(&i), "initiator: %s", tether__hs_reason(&i));
    cr_assert(tether__hs_done(&a), "acceptor: %s", tether__hs_reason(&a));

    /* A 2-byte framed opener read as 4-byte lengths is refused. */
    init_pair(&i, &a, "secret", "secret");
    cr_assert_eq(tether__hs_set_len4(&a), 0);
    run(&i, &a, 64);
    cr_assert_neq(tether__hs_failed(&a), 0);
}

Test(handshake, stops_before_frames_that_follow)
{
    tether_hs_t i, a;
    uint8_t buf[TETHER_HS_OUT_MAX + 16];
    size_t n, used;

    init_pair(&i, &a, "secret", "secret");
    pump(&i, &a, 4096);
    pump(&a, &i, 4096);
    pump(&i, &a, 4096);
    n = take(&a, buf, sizeof(buf));
    memcpy(buf + n, "\0\0\0\0\0\0\0\1p", 9); /* a tick, then a frame */
    cr_assert_eq(tether__hs_input(&i, buf, n + 9, &used), 0);
    cr_assert(tether__hs_done(&i));
    cr_assert_eq(used, n);
    cr_assert_eq(tether__hs_input(&i, buf + used, 9, &used), 0);
    cr_assert_eq(used, 0);
}

Test(handshake, truncated_name_at_every_length_waits)
{
    tether_hs_t i, a;
    uint8_t name[128];
    size_t n, used, out;

    init_pair(&i, &a, "secret", "secret");
    n = take(&i, name, sizeof(name));
    for (size_t k = 0; k < n; k++) {
        cr_assert_eq(tether__hs_input(&a, name, k, &used), 0);
        cr_assert_eq(used, 0);
        cr_assert_eq(tether__hs_failed(&a), 0);
        tether__hs_output(&a, &out);
        cr_assert_eq(out, 0);
    }
    cr_assert_eq(tether__hs_input(&a, name, n, &used), 0);
    cr_assert_eq(used, n);
}

static tether_hs_status_t answer_status(void *ctx, const char *peer,
                                        uint64_t flags, uint32_t creation)
{
    (void)flags;
    (void)creation;
    cr_assert_str_eq(peer, A_NODE);
    return *(tether_hs_status_t *)ctx;
}

/* Feeds an initiator one handshake message body (length added). */
static int feed(tether_hs_t *hs, const void *body, size_t n)
{
    uint8_t buf[TETHER_HS_MSG_MAX + 2];
    size_t used;

    buf[0] = (uint8_t)(n >> 8);
    buf[1] = (uint8_t)n;
    memcpy(buf + 2, body, n);
    return tether__hs_input(hs, buf, n + 2, &used);
}

Test(handshake, acceptor_status_decisions)
{
    static const struct {
        tether_hs_status_t st;
        const char *text;
        int err;
    } cases[] = {
        {TETHER_HS_STATUS_NOK, "snok", TETHER_EEXIST},
        {TETHER_HS_STATUS_NOT_ALLOWED, "snot_allowed", TETHER_EAUTH},
        {TETHER_HS_STATUS_OK_SIMULTANEOUS, "sok_simultaneous", 0},
    };

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        tether_hs_t i, a;
        uint8_t out[TETHER_HS_OUT_MAX];
        tether_hs_status_t st = cases[c].st;
        size_t n, tl = strlen(cases[c].text);

        init_pair(&i, &a, "k", "k");
        tether__hs_set_status_fn(&a, answer_status, &st);
        pump(&i, &a, 4096);
        cr_assert_eq(tether__hs_failed(&a), cases[c].err);
        n = take(&a, out, sizeof(out));
        cr_assert_geq(n, 2 + tl);
        cr_assert_eq(out[1], tl);
        cr_assert_arr_eq(out + 2, cases[c].text, tl);
    }
}

Test(handshake, acceptor_alive_then_true_continues_false_fails)
{
    tether_hs_t i, a;
    tether_hs_status_t st = TETHER_HS_STATUS_ALIVE;

    /* Our own initiator answers "true" to alive. */
    init_pair(&i, &a, "k", "k");
    tether__hs_set_status_fn(&a, answer_status, &st);
    run(&i, &a, 4096);
    cr_assert(tether__hs_done(&a), "%s", tether__hs_reason(&a));
    cr_assert(tether__hs_done(&i), "%s", tether__hs_reason(&i));

    init_pair(&i, &a, "k", "k");
    tether__hs_set_status_fn(&a, answer_status, &st);
    pump(&i, &a, 4096);
    cr_assert_eq(feed(&a, "sfalse", 6), TETHER_EEXIST);
}

Test(handshake, initiator_status_answers)
{
    static const struct {
        const char *status;
        int err;
    } cases[] = {
        {"snok", TETHER_EEXIST},       {"snot_allowed", TETHER_EAUTH},
        {"snamed:xyz", TETHER_EPROTO}, {"swhatever", TETHER_EPROTO},
        {"xok", TETHER_EPROTO},        {"sok", 0},
        {"sok_simultaneous", 0},
    };

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        tether_hs_t i;
        cr_assert_eq(
            tether__hs_init(&i, TETHER_HS_INITIATOR, A_NODE, "k", ADV, 1, 1),
            0);
        feed(&i, cases[c].status, strlen(cases[c].status));
        cr_assert_eq(tether__hs_failed(&i), cases[c].err, "%s",
                     cases[c].status);
    }
}

Test(handshake, initiator_answers_alive_with_true)
{
    tether_hs_t i;
    uint8_t out[TETHER_HS_OUT_MAX];
    size_t n;

    cr_assert_eq(
        tether__hs_init(&i, TETHER_HS_INITIATOR, A_NODE, "k", ADV, 1, 1), 0);
    take(&i, out, sizeof(out));
    cr_assert_eq(feed(&i, "salive", 6), 0);
    n = take(&i, out, sizeof(out));
    cr_assert_eq(n, 7);
    cr_assert_arr_eq(out, "\0\5strue", 7);
}

/* An old-form challenge: 'n' 5:16 Flags:32 Challenge:32 Name. */
static size_t old_challenge(uint8_t *m, uint32_t flags, uint32_t ch)
{
    m[0] = 'n';
    m[1] = 0;
    m[2] = 5;
    m[3] = (uint8_t)(flags >> 24);
    m[4] = (uint8_t)(flags >> 16);
    m[5] = (uint8_t)(flags >> 8);
    m[6] = (uint8_t)flags;
    m[7] = (uint8_t)(ch >> 24);
    m[8] = (uint8_t)(ch >> 16);
    m[9] = (uint8_t)(ch >> 8);
    m[10] = (uint8_t)ch;
    memcpy(m + 11, B_NODE, strlen(B_NODE));
    return 11 + strlen(B_NODE);
}

Test(handshake, initiator_accepts_old_challenge_form)
{
    tether_hs_t i;
    uint8_t m[64], out[TETHER_HS_OUT_MAX], want[16];
    size_t n;

    cr_assert_eq(
        tether__hs_init(&i, TETHER_HS_INITIATOR, A_NODE, "secret", ADV, 1, 777),
        0);
    take(&i, out, sizeof(out));
    cr_assert_eq(feed(&i, "sok", 3), 0);
    n = old_challenge(m, (uint32_t)TETHER_DIST_FLAGS_MANDATORY, 12345);
    cr_assert_eq(feed(&i, m, n), 0, "%s", tether__hs_reason(&i));
    cr_assert_str_eq(tether__hs_peer_name(&i), B_NODE);
    n = take(&i, out, sizeof(out));
    /* Just the reply: no complement since we opened with 'N'. */
    cr_assert_eq(n, 2 + 21);
    cr_assert_eq(out[2], 'r');
    cr_assert_arr_eq(out + 3, "\0\0\3\11", 4); /* 777 */
    tether__hs_digest("secret", 6, 12345, want);
    cr_assert_arr_eq(out + 7, want, 16);
}

Test(handshake, missing_mandatory_flags_are_refused)
{
    tether_hs_t i, a;
    uint8_t m[64], out[TETHER_HS_OUT_MAX];
    size_t n;

    /* Acceptor: the peer advertises nothing. */
    cr_assert_eq(tether__hs_init(&i, TETHER_HS_INITIATOR, A_NODE, "k", 0, 1, 1),
                 0);
    cr_assert_eq(
        tether__hs_init(&a, TETHER_HS_ACCEPTOR, B_NODE, "k", ADV, 1, 1), 0);
    pump(&i, &a, 4096);
    cr_assert_eq(tether__hs_failed(&a), TETHER_EPROTO);
    cr_assert(strstr(tether__hs_reason(&a), "mandatory"));
    n = take(&a, out, sizeof(out));
    cr_assert_eq(n, 2 + 12);
    cr_assert_arr_eq(out + 2, "snot_allowed", 12);

    /* Initiator: an old peer's challenge without HANDSHAKE_23. */
    cr_assert_eq(
        tether__hs_init(&i, TETHER_HS_INITIATOR, A_NODE, "k", ADV, 1, 1), 0);
    cr_assert_eq(feed(&i, "sok", 3), 0);
    n = old_challenge(
        m, (uint32_t)(TETHER_DIST_FLAGS_MANDATORY & ~TETHER_DFLAG_HANDSHAKE_23),
        1);
    cr_assert_eq(feed(&i, m, n), TETHER_EPROTO);
}

Test(handshake, mandatory_25_digest_implies_the_rest)
{
    cr_assert_eq(tether__dflags_missing(TETHER_DFLAG_MANDATORY_25_DIGEST), 0);
    cr_assert_neq(tether__dflags_missing(TETHER_DFLAG_UTF8_ATOMS), 0);
    cr_assert_eq(TETHER_DIST_FLAGS_ADVERTISED &
                     (TETHER_DFLAG_DIST_HDR_ATOM_CACHE |
                      TETHER_DFLAG_ATOM_CACHE | TETHER_DFLAG_PUBLISHED),
                 0);
}

Test(handshake, garbage_and_oversized_messages_fail)
{
    tether_hs_t a;
    size_t used;
    const uint8_t big[] = {0xff, 0xff, 'N'};
    const uint8_t empty[] = {0, 0};
    const uint8_t junk[] = {0, 3, 'Z', 1, 2};
    /* 'N' name with a name length pointing past the message. */
    const uint8_t lie[] = {0, 17, 'N', 0, 0, 0, 0, 0,   0,  0,
                           0, 0,  0,   0, 0, 0, 9, 'a', '@'};
    /* 'N' name without '@'. */
    uint8_t noat[2 + 15 + 3] = {0, 18, 'N'};

    noat[2 + 1 + 7] = 0x10; /* whatever flags */
    noat[2 + 14] = 3;
    memcpy(noat + 17, "abc", 3);

    tether__hs_init(&a, TETHER_HS_ACCEPTOR, B_NODE, "k", ADV, 1, 1);
    cr_assert_eq(tether__hs_input(&a, big, sizeof(big), &used), TETHER_ETOOBIG);
    tether__hs_init(&a, TETHER_HS_ACCEPTOR, B_NODE, "k", ADV, 1, 1);
    cr_assert_eq(tether__hs_input(&a, empty, sizeof(empty), &used),
                 TETHER_EPROTO);
    tether__hs_init(&a, TETHER_HS_ACCEPTOR, B_NODE, "k", ADV, 1, 1);
    cr_assert_eq(tether__hs_input(&a, junk, sizeof(junk), &used),
                 TETHER_EPROTO);
    tether__hs_init(&a, TETHER_HS_ACCEPTOR, B_NODE, "k", ADV, 1, 1);
    cr_assert_eq(tether__hs_input(&a, lie, sizeof(lie), &used), TETHER_EPROTO);
    tether__hs_init(&a, TETHER_HS_ACCEPTOR, B_NODE, "k", ADV, 1, 1);
    cr_assert_eq(tether__hs_input(&a, noat, sizeof(noat), &used),
                 TETHER_EPROTO);
    /* Once failed, input is refused with the same error. */
    cr_assert_eq(tether__hs_input(&a, junk, sizeof(junk), &used),
                 TETHER_EPROTO);
    cr_assert_eq(used, 0);
}

Test(handshake, every_truncation_of_every_message_is_safe)
{
    /* Each message of a real handshake, cut short and delivered to the
       machine expecting it as a complete message, must fail cleanly. */
    tether_hs_t i, a, t;
    uint8_t msgs[4][TETHER_HS_OUT_MAX];
    size_t lens[4];

    init_pair(&i, &a, "s", "s");
    lens[0] = take(&i, msgs[0], sizeof(msgs[0]));
    feed(&a, msgs[0] + 2, lens[0] - 2);
    lens[1] = take(&a, msgs[1], sizeof(msgs[1])); /* status + challenge */
    for (size_t k = 1; k < lens[0] - 2; k++) {
        tether__hs_init(&t, TETHER_HS_ACCEPTOR, B_NODE, "s", ADV, 1, 1);
        cr_assert_lt(feed(&t, msgs[0] + 2, k), 0, "name cut at %zu", k);
    }
    /* The challenge follows the 5-byte status message "\0\3sok". */
    for (size_t k = 1; k < lens[1] - 7; k++) {
        tether__hs_init(&t, TETHER_HS_INITIATOR, A_NODE, "s", ADV, 1, 1);
        cr_assert_eq(feed(&t, "sok", 3), 0);
        cr_assert_lt(feed(&t, msgs[1] + 7, k), 0, "challenge cut at %zu", k);
    }
}
