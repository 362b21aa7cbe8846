/*
 * Criterion suite for core/envelope.c: signed hellos, session keys, sealed
 * envelopes, the replay window, re-handshakes and wiping. Every decode
 * path gets truncated, oversized, tampered and garbage input.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "core/envelope.h"
#include "core/keys.h"
#include "test/util.h"

static const uint8_t COOKIE[] = "ENVELOPETESTCOOKIE";
#define COOKIE_LEN (sizeof COOKIE - 1)
#define TYPE       0x20 /* a user message type */

/* Two nodes a@h and b@h with one session each towards the other. */
typedef struct pair {
    tether_identity_t ia, ib;
    tether_trust_t ta, tb;
    tether_session_t sa, sb; /* sa: a's session with b; sb: b's with a */
    tether_envelope_stats_t na, nb;
    uint8_t ha[TETHER_HELLO_MAX_BYTES], hb[TETHER_HELLO_MAX_BYTES];
    size_t ha_len, hb_len;
    uint8_t round; /* varies nonces and kx seeds per handshake */
} pair_t;

static pair_t P;

static void seeded(uint8_t out[32], uint8_t who, uint8_t what, uint8_t round)
{
    for (int i = 0; i < 32; i++)
        out[i] = (uint8_t)(who * 31 + what * 17 + round * 7 + i);
}

static void sessions_init(pair_t *p)
{
    cr_assert_eq(tether__session_init(&p->sa, &p->ia, &p->ta, "b@h", &p->na),
                 0);
    cr_assert_eq(tether__session_init(&p->sb, &p->ib, &p->tb, "a@h", &p->nb),
                 0);
}

static void pair_cookie(pair_t *p)
{
    memset(p, 0, sizeof *p);
    cr_assert_eq(
        tether__keys_from_cookie(&p->ia, &p->ta, "a@h", COOKIE, COOKIE_LEN), 0);
    cr_assert_eq(
        tether__keys_from_cookie(&p->ib, &p->tb, "b@h", COOKIE, COOKIE_LEN), 0);
    sessions_init(p);
}

static void pair_list(pair_t *p)
{
    uint8_t seed[32];

    memset(p, 0, sizeof *p);
    seeded(seed, 1, 0, 0);
    cr_assert_eq(tether__identity_from_seed(&p->ia, "a@h", seed), 0);
    seeded(seed, 2, 0, 0);
    cr_assert_eq(tether__identity_from_seed(&p->ib, "b@h", seed), 0);
    cr_assert_eq(tether__trust_init(&p->ta), 0);
    cr_assert_eq(tether__trust_init(&p->tb), 0);
    cr_assert_eq(tether__trust_add_pubkey(&p->ta, "a@h", p->ia.pk), 0);
    cr_assert_eq(tether__trust_add_pubkey(&p->ta, "b@h", p->ib.pk), 0);
    cr_assert_eq(tether__trust_add_pubkey(&p->tb, "a@h", p->ia.pk), 0);
    cr_assert_eq(tether__trust_add_pubkey(&p->tb, "b@h", p->ib.pk), 0);
    sessions_init(p);
}

static void pair_fini(pair_t *p)
{
    tether__session_fini(&p->sa);
    tether__session_fini(&p->sb);
    tether__trust_fini(&p->ta);
    tether__trust_fini(&p->tb);
    tether__identity_fini(&p->ia);
    tether__identity_fini(&p->ib);
}

/* Builds a hello of session s (incarnation inc) into out (of out_max
 * bytes, *out_len set), with the nonce and key-exchange seeds of `who`
 * (1: a, 2: b) in this round. */
static void hello(pair_t *p, tether_session_t *s, uint8_t who, uint64_t inc,
                  uint8_t *out, size_t out_max, size_t *out_len)
{
    uint8_t nonce[32], kx[32];
    p->round++;
    seeded(nonce, who, 1, p->round);
    seeded(kx, who, 2, p->round);
    cr_assert_eq(
        tether__session_hello(s, inc, nonce, kx, out, out_max, out_len), 0);
}

/* Builds a's hello (incarnation inc) into p->ha. */
static void hello_a(pair_t *p, uint64_t inc)
{
    hello(p, &p->sa, 1, inc, p->ha, sizeof p->ha, &p->ha_len);
}

/* Builds b's hello (incarnation inc) into p->hb. */
static void hello_b(pair_t *p, uint64_t inc)
{
    hello(p, &p->sb, 2, inc, p->hb, sizeof p->hb, &p->hb_len);
}

/* Both sides send hellos, both accept: established with one session id. */
static void handshake(pair_t *p, uint64_t inc_a, uint64_t inc_b)
{
    uint8_t sida[32], sidb[32];

    hello_a(p, inc_a);
    hello_b(p, inc_b);
    cr_assert_eq(tether__session_state(&p->sa), TETHER_SESSION_HELLO_SENT);
    cr_assert_eq(tether__session_accept(&p->sb, p->ha, p->ha_len), 0);
    cr_assert_eq(tether__session_accept(&p->sa, p->hb, p->hb_len), 0);
    cr_assert(tether__session_established(&p->sa));
    cr_assert(tether__session_established(&p->sb));
    cr_assert_eq(tether__session_id(&p->sa, sida), 0);
    cr_assert_eq(tether__session_id(&p->sb, sidb), 0);
    cr_assert_eq(memcmp(sida, sidb, 32), 0);
}

static void setup_cookie(void)
{
    pair_cookie(&P);
}

static void setup_established(void)
{
    pair_cookie(&P);
    handshake(&P, 1, 1);
}

static void teardown(void)
{
    pair_fini(&P);
}

/* Seals `len` bytes of a pattern from `from` into out. */
static size_t seal(tether_session_t *from, uint8_t *out, size_t cap, size_t len,
                   uint8_t tag)
{
    uint8_t payload[512];
    size_t n = 0;
    cr_assert_leq(len, sizeof payload);
    for (size_t i = 0; i < len; i++)
        payload[i] = (uint8_t)(tag + i);
    cr_assert_eq(tether__session_seal(from, TYPE, payload, len, out, cap, &n),
                 0);
    cr_assert_eq(n, len + TETHER_ENV_OVERHEAD);
    return n;
}

static int open_env(tether_session_t *to, const uint8_t *in, size_t len)
{
    const uint8_t *pl;
    size_t pl_len;
    return tether__session_open(to, in, len, NULL, &pl, &pl_len);
}

/* Sum of every rejection counter. */
static uint64_t rejections(const tether_envelope_stats_t *s)
{
    return s->truncated + s->oversized + s->bad_version + s->malformed +
           s->tampered + s->replayed + s->too_old + s->unknown_signer +
           s->bad_signature + s->misaddressed + s->no_session;
}

/* ---- hellos --------------------------------------------------------------
 */

TestSuite(hello, .init = setup_cookie, .fini = teardown);

Test(hello, exchange_with_cookie_secret)
{
    uint8_t buf[600];
    handshake(&P, 7, 9);
    cr_assert_eq(tether__session_peer_incarnation(&P.sa), 9);
    cr_assert_eq(tether__session_peer_incarnation(&P.sb), 7);
    cr_assert_eq(P.na.hello_ok, 1);
    cr_assert_eq(P.nb.hello_ok, 1);
    /* Keys agree in both directions. */
    size_t n = seal(&P.sa, buf, sizeof buf, 100, 1);
    cr_assert_eq(open_env(&P.sb, buf, n), 0);
    n = seal(&P.sb, buf, sizeof buf, 100, 2);
    cr_assert_eq(open_env(&P.sa, buf, n), 0);
    /* The ephemeral kx secrets are gone once established. */
    cr_assert(all_zero(P.sa.kx_sk, sizeof P.sa.kx_sk));
    cr_assert(all_zero(P.sb.kx_sk, sizeof P.sb.kx_sk));
}

Test(hello, exchange_with_explicit_trust_list)
{
    uint8_t buf[600];
    pair_fini(&P);
    pair_list(&P);
    handshake(&P, 1, 1);
    size_t n = seal(&P.sa, buf, sizeof buf, 10, 1);
    cr_assert_eq(open_env(&P.sb, buf, n), 0);
}

Test(hello, exchange_when_the_peer_speaks_first)
{
    uint8_t sida[32], sidb[32];
    hello_a(&P, 1);
    cr_assert_eq(tether__session_accept(&P.sb, P.ha, P.ha_len), 0);
    cr_assert(tether__session_wants_hello(&P.sb));
    cr_assert(!tether__session_established(&P.sb));
    hello_b(&P, 1);
    cr_assert(tether__session_established(&P.sb));
    cr_assert(!tether__session_wants_hello(&P.sb));
    cr_assert_eq(tether__session_accept(&P.sa, P.hb, P.hb_len), 0);
    cr_assert(tether__session_established(&P.sa));
    cr_assert_eq(tether__session_id(&P.sa, sida), 0);
    cr_assert_eq(tether__session_id(&P.sb, sidb), 0);
    cr_assert_eq(memcmp(sida, sidb, 32), 0);
}

Test(hello, is_deterministic_from_seeds)
{
    uint8_t first[TETHER_HELLO_MAX_BYTES], sid1[32], sid2[32];
    handshake(&P, 3, 4);
    memcpy(first, P.ha, P.ha_len);
    size_t first_len = P.ha_len;
    cr_assert_eq(tether__session_id(&P.sa, sid1), 0);
    pair_fini(&P);
    pair_cookie(&P);
    handshake(&P, 3, 4);
    cr_assert_eq(P.ha_len, first_len);
    cr_assert_eq(memcmp(P.ha, first, first_len), 0);
    cr_assert_eq(tether__session_id(&P.sa, sid2), 0);
    cr_assert_eq(memcmp(sid1, sid2, 32), 0);
}

Test(hello, layout_is_as_documented)
{
    hello_a(&P, 0x0102030405060708ull);
    cr_assert_eq(P.ha_len, TETHER_HELLO_FIXED_BYTES + 3 + 3);
    cr_assert_eq(P.ha_len, tether__session_hello_size(&P.sa));
    cr_assert_eq(P.ha[0], TETHER_ENVELOPE_VERSION);
    cr_assert_eq(P.ha[1], TETHER_ENV_TYPE_HELLO);
    cr_assert_eq(P.ha[2], 3);
    cr_assert_eq(P.ha[3], 3);
    cr_assert_eq(memcmp(P.ha + 4, "a@hb@h", 6), 0);
    cr_assert_eq(P.ha[10], 1);
    cr_assert_eq(P.ha[17], 8);
    /* The signature covers label || NUL || body. */
    uint8_t tbs[TETHER_HELLO_MAX_BYTES + 32];
    size_t body = P.ha_len - 64;
    memcpy(tbs, TETHER_ENV_LABEL_HELLO, sizeof(TETHER_ENV_LABEL_HELLO));
    memcpy(tbs + sizeof(TETHER_ENV_LABEL_HELLO), P.ha, body);
    cr_assert_eq(
        crypto_sign_verify_detached(
            P.ha + body, tbs, sizeof(TETHER_ENV_LABEL_HELLO) + body, P.ia.pk),
        0);
    cr_assert_eq(tether__envelope_kind(P.ha, P.ha_len), TETHER_ENV_TYPE_HELLO);
    char from[256], to[256];
    cr_assert_eq(tether__hello_peek_names(P.ha, P.ha_len, from, to), 0);
    cr_assert_str_eq(from, "a@h");
    cr_assert_str_eq(to, "b@h");
}

Test(hello, unknown_signer_is_rejected_and_counted)
{
    tether_identity_t ic;
    tether_trust_t tc;
    tether_session_t sc;
    uint8_t h[TETHER_HELLO_MAX_BYTES], nonce[32] = {1}, kx[32] = {2}, seed[32];
    size_t n;

    /* b trusts only an explicit list that lacks a. */
    pair_fini(&P);
    pair_list(&P);
    tether__trust_fini(&P.tb);
    cr_assert_eq(tether__trust_init(&P.tb), 0);
    cr_assert_eq(tether__trust_add_pubkey(&P.tb, "b@h", P.ib.pk), 0);
    hello_a(&P, 1);
    cr_assert_eq(tether__session_accept(&P.sb, P.ha, P.ha_len),
                 TETHER_ENOTFOUND);
    cr_assert_eq(P.sb.stats.unknown_signer, 1);
    cr_assert_eq(P.nb.unknown_signer, 1);
    cr_assert_eq(tether__session_state(&P.sb), TETHER_SESSION_IDLE);

    /* A stranger with its own key claiming to be a@h: bad signature
     * when b does trust a's real key. */
    cr_assert_eq(tether__trust_add_pubkey(&P.tb, "a@h", P.ia.pk), 0);
    seeded(seed, 9, 9, 9);
    cr_assert_eq(tether__identity_from_seed(&ic, "a@h", seed), 0);
    cr_assert_eq(tether__trust_init(&tc), 0);
    cr_assert_eq(tether__session_init(&sc, &ic, &tc, "b@h", NULL), 0);
    cr_assert_eq(tether__session_hello(&sc, 1, nonce, kx, h, sizeof h, &n), 0);
    cr_assert_eq(tether__session_accept(&P.sb, h, n), TETHER_EAUTH);
    cr_assert_eq(P.nb.bad_signature, 1);
    cr_assert_eq(tether__session_state(&P.sb), TETHER_SESSION_IDLE);
    tether__session_fini(&sc);
    tether__trust_fini(&tc);
    tether__identity_fini(&ic);

    /* A different cookie is a different cluster: bad signature. */
    tether_identity_t id2;
    tether_trust_t t2;
    static const uint8_t other[] = "OTHERCOOKIE";
    cr_assert_eq(
        tether__keys_from_cookie(&id2, &t2, "a@h", other, sizeof other - 1), 0);
    cr_assert_eq(tether__session_init(&sc, &id2, &t2, "b@h", NULL), 0);
    cr_assert_eq(tether__session_hello(&sc, 1, nonce, kx, h, sizeof h, &n), 0);
    cr_assert_eq(tether__session_accept(&P.sb, h, n), TETHER_EAUTH);
    cr_assert_eq(P.nb.bad_signature, 2);
    tether__session_fini(&sc);
    tether__trust_fini(&t2);
    tether__identity_fini(&id2);
}

Test(hello, misaddressed_is_rejected)
{
    tether_identity_t ic;
    tether_session_t a_to_c, c_to_b;
    tether_trust_t tc;
    uint8_t h[TETHER_HELLO_MAX_BYTES], nonce[32] = {3}, kx[32] = {4};
    size_t n;

    /* a's hello to c@h, delivered to b. */
    cr_assert_eq(tether__session_init(&a_to_c, &P.ia, &P.ta, "c@h", NULL), 0);
    cr_assert_eq(tether__session_hello(&a_to_c, 1, nonce, kx, h, sizeof h, &n),
                 0);
    cr_assert_eq(tether__session_accept(&P.sb, h, n), TETHER_EPROTO);
    cr_assert_eq(P.nb.misaddressed, 1);

    /* A genuine c@h (same cluster) to b, arriving on b's session with a. */
    cr_assert_eq(tether__keys_from_cookie(&ic, &tc, "c@h", COOKIE, COOKIE_LEN),
                 0);
    cr_assert_eq(tether__session_init(&c_to_b, &ic, &tc, "b@h", NULL), 0);
    cr_assert_eq(tether__session_hello(&c_to_b, 1, nonce, kx, h, sizeof h, &n),
                 0);
    cr_assert_eq(tether__session_accept(&P.sb, h, n), TETHER_EPROTO);
    cr_assert_eq(P.nb.misaddressed, 2);
    cr_assert_eq(tether__session_state(&P.sb), TETHER_SESSION_IDLE);
    cr_assert_eq(P.nb.hello_ok, 0);
    tether__session_fini(&a_to_c);
    tether__session_fini(&c_to_b);
    tether__trust_fini(&tc);
    tether__identity_fini(&ic);
}

Test(hello, every_flipped_byte_is_rejected)
{
    uint8_t h[TETHER_HELLO_MAX_BYTES];
    const uint8_t masks[] = {0x01, 0x80, 0xFF};

    hello_a(&P, 1);
    for (size_t m = 0; m < sizeof masks; m++) {
        for (size_t i = 0; i < P.ha_len; i++) {
            memcpy(h, P.ha, P.ha_len);
            h[i] ^= masks[m];
            uint64_t before = rejections(&P.nb);
            int rc = tether__session_accept(&P.sb, h, P.ha_len);
            cr_assert_neq(rc, 0, "byte %zu ^ %02x accepted", i, masks[m]);
            cr_assert_eq(rejections(&P.nb), before + 1, "byte %zu counted", i);
            cr_assert_eq(tether__session_state(&P.sb), TETHER_SESSION_IDLE);
        }
    }
    cr_assert_eq(P.nb.hello_ok, 0);
    /* Nothing was spoiled: the real hello still goes through. */
    cr_assert_eq(tether__session_accept(&P.sb, P.ha, P.ha_len), 0);
}

Test(hello, truncated_at_every_length_is_rejected)
{
    hello_a(&P, 1);
    for (size_t len = 0; len < P.ha_len; len++) {
        uint8_t *h =
            malloc(len ? len : 1); /* exact size: ASan sees overreads */
        memcpy(h, P.ha, len);
        cr_assert_eq(tether__session_accept(&P.sb, h, len), TETHER_EAGAIN,
                     "length %zu", len);
        free(h);
    }
    cr_assert_eq(P.nb.truncated, P.ha_len);
    cr_assert_eq(tether__session_accept(&P.sb, NULL, 0), TETHER_EAGAIN);
    cr_assert_eq(tether__session_state(&P.sb), TETHER_SESSION_IDLE);
}

Test(hello, oversized_and_garbage_are_rejected)
{
    uint8_t *big = malloc(100000);

    hello_a(&P, 1);
    memcpy(big, P.ha, P.ha_len);
    big[P.ha_len] = 0;
    cr_assert_eq(tether__session_accept(&P.sb, big, P.ha_len + 1),
                 TETHER_ETOOBIG);
    randombytes_buf_deterministic(
        big, 100000, (const uint8_t *)"0123456789abcdef0123456789abcdef");
    big[0] = TETHER_ENVELOPE_VERSION;
    cr_assert_eq(tether__session_accept(&P.sb, big, 100000), TETHER_ETOOBIG);
    cr_assert_eq(P.nb.oversized, 2);
    for (size_t len = 4; len < 1000; len += 13) {
        big[1] = TETHER_ENV_TYPE_HELLO;
        cr_assert_neq(tether__session_accept(&P.sb, big, len), 0);
    }
    big[0] = 0x83; /* an Erlang term, not an envelope */
    cr_assert_eq(tether__session_accept(&P.sb, big, 100), TETHER_EPROTO);
    cr_assert_eq(P.nb.bad_version, 1);
    /* A sealed envelope is not a hello. */
    big[0] = TETHER_ENVELOPE_VERSION;
    big[1] = TYPE;
    cr_assert_eq(tether__session_accept(&P.sb, big, 300), TETHER_EPROTO);
    /* Zero-length names and NUL inside names. */
    memcpy(big, P.ha, P.ha_len);
    big[2] = 0;
    cr_assert_eq(tether__session_accept(&P.sb, big, P.ha_len), TETHER_EPROTO);
    memcpy(big, P.ha, P.ha_len);
    big[5] = 0;
    cr_assert_eq(tether__session_accept(&P.sb, big, P.ha_len), TETHER_EPROTO);
    cr_assert_eq(P.nb.hello_ok, 0);
    cr_assert_eq(tether__session_state(&P.sb), TETHER_SESSION_IDLE);
    free(big);
}

Test(hello, replayed_hello_is_rejected_and_harmless)
{
    uint8_t buf[600];
    handshake(&P, 1, 1);
    cr_assert_eq(tether__session_accept(&P.sb, P.ha, P.ha_len), TETHER_EREPLAY);
    cr_assert_eq(P.nb.replayed, 1);
    cr_assert(tether__session_established(&P.sb));
    size_t n = seal(&P.sa, buf, sizeof buf, 20, 1);
    cr_assert_eq(open_env(&P.sb, buf, n), 0, "the session survived");
    /* Even after b resets (peer_down), the old hello stays refused. */
    tether__session_reset(&P.sb);
    cr_assert_eq(tether__session_accept(&P.sb, P.ha, P.ha_len), TETHER_EREPLAY);
    cr_assert_eq(tether__session_state(&P.sb), TETHER_SESSION_IDLE);
}

Test(hello, an_earlier_hello_of_the_same_incarnation_resets_nothing)
{
    uint8_t old[600], buf[600];
    size_t old_len;

    handshake(&P, 1, 1);
    memcpy(old, P.ha, P.ha_len);
    old_len = P.ha_len;
    handshake(&P, 1, 1); /* a later session, same incarnations */
    cr_assert_eq(tether__session_accept(&P.sb, old, old_len), TETHER_EREPLAY);
    cr_assert_eq(P.nb.too_old, 1);
    cr_assert(tether__session_established(&P.sb));
    size_t n = seal(&P.sa, buf, sizeof buf, 20, 1);
    cr_assert_eq(open_env(&P.sb, buf, n), 0, "the later session survived");
}

Test(hello, older_incarnation_is_too_old)
{
    handshake(&P, 5, 5);
    hello_a(&P, 4);
    cr_assert_eq(tether__session_accept(&P.sb, P.ha, P.ha_len), TETHER_EREPLAY);
    cr_assert_eq(P.nb.too_old, 1);
    cr_assert(tether__session_established(&P.sb));
}

/*
 * Why a replayed hello is useless: an attacker who replays a's hello to a
 * fresh b gets b to derive keys from a's ephemeral kx public key; a has
 * wiped the matching secret, so the attacker cannot produce anything that
 * opens. We model the attacker as holding every public byte.
 */
Test(hello, replay_to_a_fresh_node_yields_nothing_usable)
{
    uint8_t buf[600], old_hello[TETHER_HELLO_MAX_BYTES];
    size_t n;

    handshake(&P, 1, 1);
    memcpy(old_hello, P.ha, P.ha_len);
    size_t old_len = P.ha_len;
    n = seal(&P.sa, buf, sizeof buf, 30, 1); /* recorded old traffic */
    /* b restarts: brand-new session, no memory. */
    tether__session_fini(&P.sb);
    cr_assert_eq(tether__session_init(&P.sb, &P.ib, &P.tb, "a@h", &P.nb), 0);
    hello_b(&P, 2);
    cr_assert_eq(tether__session_accept(&P.sb, old_hello, old_len), 0);
    cr_assert(tether__session_established(&P.sb));
    /* Old recorded traffic does not open under the new keys. */
    cr_assert_eq(open_env(&P.sb, buf, n), TETHER_EAUTH);
}

Test(hello, weak_kx_key_is_refused)
{
    uint8_t h[TETHER_HELLO_MAX_BYTES + 32], tbs[TETHER_HELLO_MAX_BYTES + 32];

    hello_a(&P, 1);
    size_t body = P.ha_len - 64;
    memcpy(h, P.ha, P.ha_len);
    memset(h + body - 32, 0, 32); /* the all-zero point has low order */
    memcpy(tbs, TETHER_ENV_LABEL_HELLO, sizeof(TETHER_ENV_LABEL_HELLO));
    memcpy(tbs + sizeof(TETHER_ENV_LABEL_HELLO), h, body);
    crypto_sign_detached(h + body, NULL, tbs,
                         sizeof(TETHER_ENV_LABEL_HELLO) + body, P.ia.sk);
    cr_assert_eq(tether__session_accept(&P.sb, h, P.ha_len), TETHER_EPROTO);
    cr_assert_eq(P.nb.malformed, 1);
    cr_assert_eq(tether__session_state(&P.sb), TETHER_SESSION_IDLE);
}

Test(hello, bad_arguments)
{
    tether_session_t s;
    uint8_t out[TETHER_HELLO_MAX_BYTES], z[32] = {0};
    size_t n;

    cr_assert_eq(tether__session_init(&s, &P.ia, &P.ta, "a@h", NULL),
                 TETHER_EINVAL, "no session with oneself");
    cr_assert_eq(tether__session_init(&s, &P.ia, &P.ta, "", NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether__session_init(&s, NULL, &P.ta, "b@h", NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether__session_hello(&P.sa, 1, z, z, out,
                                       tether__session_hello_size(&P.sa) - 1,
                                       &n),
                 TETHER_ETOOBIG);
    cr_assert_eq(tether__session_state(&P.sa), TETHER_SESSION_IDLE);
    cr_assert_eq(tether__session_hello(&P.sa, 1, NULL, z, out, sizeof out, &n),
                 TETHER_EINVAL);
    cr_assert_eq(tether__session_accept(NULL, out, 10), TETHER_EINVAL);
    cr_assert_eq(tether__session_set_max_payload(&P.sa, 0), TETHER_EINVAL);
    cr_assert_eq(
        tether__session_set_max_payload(&P.sa, TETHER_ENV_MAX_PAYLOAD + 1),
        TETHER_EINVAL);
}

Test(hello, node_stats_add_up_over_sessions)
{
    tether_session_t b_to_c;
    cr_assert_eq(tether__session_init(&b_to_c, &P.ib, &P.tb, "c@h", &P.nb), 0);
    hello_a(&P, 1);
    cr_assert_eq(tether__session_accept(&b_to_c, P.ha, P.ha_len),
                 TETHER_EPROTO);
    cr_assert_eq(tether__session_accept(&P.sb, P.ha, 5), TETHER_EAGAIN);
    cr_assert_eq(b_to_c.stats.misaddressed, 1);
    cr_assert_eq(P.sb.stats.truncated, 1);
    cr_assert_eq(P.nb.misaddressed, 1);
    cr_assert_eq(P.nb.truncated, 1);
    tether__session_fini(&b_to_c);
}

/* ---- sealed envelopes ---------------------------------------------------
 */

TestSuite(envelope, .init = setup_established, .fini = teardown);

Test(envelope, seal_open_round_trip)
{
    uint8_t buf[600], type = 0;
    const uint8_t *pl;
    size_t pl_len;
    size_t sizes[] = {0, 1, 255, 256, 511};

    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = seal(&P.sa, buf, sizeof buf, sizes[k], (uint8_t)k);
        cr_assert_eq(buf[0], TETHER_ENVELOPE_VERSION);
        cr_assert_eq(buf[1], TYPE);
        cr_assert_eq(buf[9], k + 1, "sequence numbers start at 1");
        cr_assert_eq(tether__envelope_kind(buf, n), TYPE);
        cr_assert_eq(tether__session_open(&P.sb, buf, n, &type, &pl, &pl_len),
                     0);
        cr_assert_eq(type, TYPE);
        cr_assert_eq(pl_len, sizes[k]);
        cr_assert_eq(pl, buf + TETHER_ENV_HEADER_BYTES, "a slice, no copy");
        for (size_t i = 0; i < pl_len; i++)
            cr_assert_eq(pl[i], (uint8_t)(k + i));
    }
    cr_assert_eq(P.nb.ok, 5);
    cr_assert_eq(P.na.sealed, 5);
    cr_assert_eq(rejections(&P.nb), 0);
}

Test(envelope, mac_is_crypto_auth_over_header_and_payload)
{
    uint8_t buf[600];
    size_t n = seal(&P.sa, buf, sizeof buf, 64, 3);
    cr_assert_eq(crypto_auth_verify(buf + n - 32, buf, n - 32, P.sa.tx_key), 0);
    cr_assert_eq(memcmp(P.sa.tx_key, P.sb.rx_key, 32), 0);
    cr_assert_neq(memcmp(P.sa.tx_key, P.sa.rx_key, 32), 0,
                  "each direction has its own key");
}

Test(envelope, seal_in_place_and_overlapping)
{
    uint8_t buf[600];
    const uint8_t *pl;
    size_t pl_len, n;

    for (int i = 0; i < 256; i++)
        buf[TETHER_ENV_HEADER_BYTES + i] = (uint8_t)i;
    cr_assert_eq(tether__session_seal(&P.sa, TYPE,
                                      buf + TETHER_ENV_HEADER_BYTES, 256, buf,
                                      sizeof buf, &n),
                 0);
    cr_assert_eq(tether__session_open(&P.sb, buf, n, NULL, &pl, &pl_len), 0);
    for (int i = 0; i < 256; i++)
        cr_assert_eq(pl[i], (uint8_t)i);
    /* Payload at the start of the output buffer (overlaps the header). */
    for (int i = 0; i < 256; i++)
        buf[i] = (uint8_t)(255 - i);
    cr_assert_eq(
        tether__session_seal(&P.sa, TYPE, buf, 256, buf, sizeof buf, &n), 0);
    cr_assert_eq(tether__session_open(&P.sb, buf, n, NULL, &pl, &pl_len), 0);
    for (int i = 0; i < 256; i++)
        cr_assert_eq(pl[i], (uint8_t)(255 - i));
}

/* An envelope sealed a part at a time (the engine's flush) opens as one
 * sealed at once does, whatever the parts; its MAC is crypto_auth's. */
Test(envelope, sealed_in_parts_opens_as_one)
{
    static const size_t parts[] = {1, 7, 64, 300, 500};
    uint8_t payload[500], buf[600];
    const uint8_t *pl;
    size_t pl_len, n;

    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 13);
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++) {
        tether_sealer_t sealer;
        size_t at = 0;

        cr_assert_eq(tether__session_seal_begin(&P.sa, TYPE, sizeof payload,
                                                buf, sizeof buf, &sealer),
                     0);
        while (at < sizeof payload)
            at += tether__sealer_update(&sealer, payload + at, parts[k]);
        cr_assert_eq(tether__sealer_update(&sealer, payload, 1), 0,
                     "nothing past the announced length");
        n = tether__sealer_end(&sealer);
        cr_assert_eq(n, sizeof payload + TETHER_ENV_OVERHEAD);
        cr_assert_eq(crypto_auth_verify(buf + n - 32, buf, n - 32, P.sa.tx_key),
                     0);
        cr_assert_eq(tether__session_open(&P.sb, buf, n, NULL, &pl, &pl_len), 0,
                     "parts of %zu bytes", parts[k]);
        cr_assert_eq(pl_len, sizeof payload);
        cr_assert_eq(memcmp(pl, payload, sizeof payload), 0);
    }
}

/* Begin refuses what tether__session_seal refuses, and takes no sequence
 * number then. */
Test(envelope, seal_begin_refuses_as_seal_does)
{
    uint8_t buf[64];
    tether_sealer_t sealer;
    uint64_t seq = P.sa.tx_seq;

    cr_assert_eq(tether__session_seal_begin(&P.sa, TYPE, sizeof buf, buf,
                                            sizeof buf, &sealer),
                 TETHER_ETOOBIG, "no room for the MAC");
    cr_assert_eq(
        tether__session_seal_begin(&P.sa, 0, 1, buf, sizeof buf, &sealer),
        TETHER_EINVAL, "a type below the user range");
    cr_assert_eq(
        tether__session_seal_begin(&P.sa, TYPE, 1, buf, sizeof buf, NULL),
        TETHER_EINVAL);
    cr_assert_eq(P.sa.tx_seq, seq);
    tether__session_reset(&P.sa);
    cr_assert_eq(
        tether__session_seal_begin(&P.sa, TYPE, 1, buf, sizeof buf, &sealer),
        TETHER_ECLOSED);
}

Test(envelope, every_flipped_byte_is_rejected)
{
    uint8_t orig[600], buf[600];
    const uint8_t masks[] = {0x01, 0x80, 0xFF};

    size_t n = seal(&P.sa, orig, sizeof orig, 256, 5);
    for (size_t m = 0; m < sizeof masks; m++) {
        for (size_t i = 0; i < n; i++) {
            memcpy(buf, orig, n);
            buf[i] ^= masks[m];
            tether_envelope_stats_t before = P.nb;
            cr_assert_neq(open_env(&P.sb, buf, n), 0, "byte %zu", i);
            cr_assert_eq(rejections(&P.nb), rejections(&before) + 1);
            if (i == 0)
                cr_assert_eq(P.nb.bad_version, before.bad_version + 1);
            else if (i == 1 && (TYPE ^ masks[m]) < TETHER_ENV_TYPE_USER_MIN)
                cr_assert_eq(P.nb.malformed, before.malformed + 1);
            else
                cr_assert_eq(P.nb.tampered, before.tampered + 1,
                             "byte %zu ^ %02x", i, masks[m]);
        }
    }
    cr_assert_eq(P.nb.ok, 0, "never decoded");
    cr_assert_eq(open_env(&P.sb, orig, n), 0, "the window was not touched");
}

Test(envelope, truncated_at_every_length_is_rejected)
{
    uint8_t orig[600];
    size_t n = seal(&P.sa, orig, sizeof orig, 256, 5);
    for (size_t len = 0; len < n; len++) {
        uint8_t *b = malloc(len ? len : 1);
        memcpy(b, orig, len);
        int rc = open_env(&P.sb, b, len);
        if (len < TETHER_ENV_OVERHEAD)
            cr_assert_eq(rc, TETHER_EAGAIN, "length %zu", len);
        else
            cr_assert_eq(rc, TETHER_EAUTH, "length %zu", len);
        free(b);
    }
    cr_assert_eq(P.nb.truncated, TETHER_ENV_OVERHEAD);
    cr_assert_eq(P.nb.tampered, n - TETHER_ENV_OVERHEAD);
    cr_assert_eq(open_env(&P.sb, orig, n), 0);
}

Test(envelope, oversized_and_garbage_are_rejected)
{
    uint8_t buf[600], payload[100] = {0};
    size_t n;
    size_t big_len = 1 << 20;
    uint8_t *big = malloc(big_len);

    cr_assert_eq(tether__session_set_max_payload(&P.sa, 64), 0);
    cr_assert_eq(tether__session_set_max_payload(&P.sb, 64), 0);
    cr_assert_eq(
        tether__session_seal(&P.sa, TYPE, payload, 65, buf, sizeof buf, &n),
        TETHER_ETOOBIG);
    cr_assert_eq(tether__session_seal(&P.sa, TYPE, payload, 64, buf,
                                      64 + TETHER_ENV_OVERHEAD - 1, &n),
                 TETHER_ETOOBIG, "output too small");
    n = seal(&P.sa, buf, sizeof buf, 64, 1);
    cr_assert_eq(open_env(&P.sb, buf, n), 0, "64 is within the cap");

    /* An envelope sealed with a larger cap does not open under 64. */
    cr_assert_eq(tether__session_set_max_payload(&P.sa, 100), 0);
    n = seal(&P.sa, buf, sizeof buf, 65, 1);
    cr_assert_eq(open_env(&P.sb, buf, n), TETHER_ETOOBIG);
    cr_assert_eq(P.nb.oversized, 1);

    randombytes_buf_deterministic(
        big, big_len, (const uint8_t *)"fedcba9876543210fedcba9876543210");
    cr_assert_eq(open_env(&P.sb, big, big_len), TETHER_ETOOBIG);
    cr_assert_eq(P.nb.oversized, 2);
    cr_assert_eq(tether__session_set_max_payload(&P.sb, TETHER_ENV_MAX_PAYLOAD),
                 0);
    big[0] = TETHER_ENVELOPE_VERSION;
    big[1] = TYPE;
    cr_assert_eq(open_env(&P.sb, big, big_len), TETHER_EAUTH);
    for (size_t len = TETHER_ENV_OVERHEAD; len < 2000; len += 7)
        cr_assert_eq(open_env(&P.sb, big, len), TETHER_EAUTH);
    big[0] = 0x83;
    cr_assert_eq(open_env(&P.sb, big, 500), TETHER_EPROTO);
    big[0] = TETHER_ENVELOPE_VERSION;
    big[1] = TETHER_ENV_TYPE_HELLO; /* a hello where an envelope belongs */
    cr_assert_eq(open_env(&P.sb, big, 500), TETHER_EPROTO);
    cr_assert_eq(P.nb.ok, 1);
    free(big);
}

Test(envelope, replay_is_rejected)
{
    uint8_t buf[600];
    size_t n = seal(&P.sa, buf, sizeof buf, 256, 5);
    cr_assert_eq(open_env(&P.sb, buf, n), 0);
    cr_assert_eq(open_env(&P.sb, buf, n), TETHER_EREPLAY);
    cr_assert_eq(open_env(&P.sb, buf, n), TETHER_EREPLAY);
    cr_assert_eq(P.nb.replayed, 2);
    cr_assert_eq(P.nb.ok, 1);
}

#define MANY 2100
static uint8_t envs[MANY][TETHER_ENV_OVERHEAD + 8];
static size_t env_len[MANY];

/* Seals MANY small envelopes a -> b; envs[i] has sequence number i + 1. */
static void seal_many(void)
{
    for (size_t i = 0; i < MANY; i++)
        env_len[i] = seal(&P.sa, envs[i], sizeof envs[i], 8, (uint8_t)i);
}

Test(envelope, reordering_within_the_window_is_accepted)
{
    seal_many();
    for (int i = 99; i >= 0; i--)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0, "seq %d", i + 1);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), TETHER_EREPLAY);
    /* Interleaved: evens first, then odds. */
    for (int i = 100; i < 400; i += 2)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0);
    for (int i = 101; i < 400; i += 2)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0);
    cr_assert_eq(P.nb.ok, 400);
    cr_assert_eq(P.nb.replayed, 100);
}

Test(envelope, too_old_is_rejected_at_the_window_edge)
{
    seal_many();
    /* Highest seen: 1100. Window holds 1100 - 1023 = 77 .. 1100. */
    cr_assert_eq(open_env(&P.sb, envs[1099], env_len[1099]), 0);
    cr_assert_eq(open_env(&P.sb, envs[0], env_len[0]), TETHER_EREPLAY);
    cr_assert_eq(P.nb.too_old, 1);
    cr_assert_eq(open_env(&P.sb, envs[75], env_len[75]), TETHER_EREPLAY,
                 "seq 76 is just outside");
    cr_assert_eq(P.nb.too_old, 2);
    cr_assert_eq(open_env(&P.sb, envs[76], env_len[76]), 0,
                 "seq 77 is the oldest inside");
    cr_assert_eq(open_env(&P.sb, envs[76], env_len[76]), TETHER_EREPLAY);
    cr_assert_eq(P.nb.replayed, 1);
}

Test(envelope, sliding_clears_stale_slots)
{
    seal_many();
    /* seq 1 and seq 1025 share a slot: 1025 must not look replayed. */
    cr_assert_eq(open_env(&P.sb, envs[0], env_len[0]), 0);
    cr_assert_eq(open_env(&P.sb, envs[1024], env_len[1024]), 0);
    /* Step by one across many slots, with gaps. */
    for (int i = 1025; i < 1100; i += 3)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0, "seq %d", i + 1);
    for (int i = 1026; i < 1100; i += 3)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0, "seq %d", i + 1);
    /* Everything from 1 to 1024 that was never opened but is still in the
     * window opens once. */
    for (int i = 1099 - 1023; i < 1024; i++)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0, "seq %d", i + 1);
}

Test(envelope, long_in_order_stream_reuses_every_slot)
{
    seal_many();
    for (int i = 0; i < MANY; i++)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0, "seq %d", i + 1);
    cr_assert_eq(P.nb.ok, MANY);
}

Test(envelope, jump_clears_whole_words_of_stale_slots)
{
    seal_many();
    for (int i = 0; i < 1024; i++)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0);
    /* Jump ahead by 276, then fill the gap: slots of 1025..1299 held the
     * bits of 1..275 and must read as free. */
    cr_assert_eq(open_env(&P.sb, envs[1299], env_len[1299]), 0);
    for (int i = 1024; i < 1299; i++)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0, "seq %d", i + 1);
    for (int i = 276; i < 1300; i += 50)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), TETHER_EREPLAY);
}

Test(envelope, jump_past_the_window_forgets_everything)
{
    seal_many();
    for (int i = 0; i < 1024; i++)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0);
    cr_assert_eq(open_env(&P.sb, envs[MANY - 1], env_len[MANY - 1]), 0);
    /* Window is now MANY - 1023 .. MANY; all but the top are unseen. */
    for (int i = MANY - 1024; i < MANY - 1; i++)
        cr_assert_eq(open_env(&P.sb, envs[i], env_len[i]), 0, "seq %d", i + 1);
    cr_assert_eq(open_env(&P.sb, envs[MANY - 1025], env_len[MANY - 1025]),
                 TETHER_EREPLAY);
    cr_assert_eq(P.nb.too_old, 1);
}

Test(envelope, old_session_fails_after_rehello)
{
    uint8_t old[600], buf[600];
    size_t old_n = seal(&P.sa, old, sizeof old, 50, 1);
    size_t old_back = seal(&P.sb, buf, sizeof buf, 50, 2);
    (void)old_back;

    handshake(&P, 1, 1); /* new nonces and kx keys, same incarnations */
    cr_assert_eq(open_env(&P.sb, old, old_n), TETHER_EAUTH);
    cr_assert_eq(open_env(&P.sa, buf, old_back), TETHER_EAUTH);
    cr_assert_eq(P.nb.tampered, 1);
    size_t n = seal(&P.sa, buf, sizeof buf, 50, 3);
    cr_assert_eq(buf[9], 1, "sequence numbers restart per session");
    cr_assert_eq(open_env(&P.sb, buf, n), 0);
}

Test(envelope, one_sided_rehello_replaces_the_session)
{
    uint8_t old[600], buf[600], sid_old[32], sid_a[32], sid_b[32];
    size_t old_n = seal(&P.sa, old, sizeof old, 50, 1);
    cr_assert_eq(tether__session_id(&P.sa, sid_old), 0);

    /* a reconnects with a new incarnation; b did not notice the drop. */
    hello_a(&P, 2);
    cr_assert(!tether__session_established(&P.sa));
    cr_assert_eq(tether__session_seal(&P.sa, TYPE, buf, 1, buf, sizeof buf,
                                      &(size_t){0}),
                 TETHER_ECLOSED, "no sealing while re-handshaking");
    cr_assert_eq(tether__session_accept(&P.sb, P.ha, P.ha_len), 0);
    cr_assert(tether__session_wants_hello(&P.sb));
    cr_assert_eq(open_env(&P.sb, old, old_n), TETHER_ECLOSED,
                 "the old session is gone at once");
    cr_assert_eq(P.nb.no_session, 1);
    hello_b(&P, 1);
    cr_assert(tether__session_established(&P.sb));
    cr_assert_eq(tether__session_accept(&P.sa, P.hb, P.hb_len), 0);
    cr_assert(tether__session_established(&P.sa));
    cr_assert_eq(tether__session_id(&P.sa, sid_a), 0);
    cr_assert_eq(tether__session_id(&P.sb, sid_b), 0);
    cr_assert_eq(memcmp(sid_a, sid_b, 32), 0);
    cr_assert_neq(memcmp(sid_a, sid_old, 32), 0);
    cr_assert_eq(tether__session_peer_incarnation(&P.sb), 2);
    cr_assert_eq(open_env(&P.sb, old, old_n), TETHER_EAUTH);
    size_t n = seal(&P.sa, buf, sizeof buf, 50, 3);
    cr_assert_eq(open_env(&P.sb, buf, n), 0);
}

Test(envelope, nothing_works_before_a_session)
{
    tether_session_t s;
    uint8_t buf[600];
    size_t n;

    cr_assert_eq(tether__session_init(&s, &P.ia, &P.ta, "b@h", NULL), 0);
    cr_assert_eq(tether__session_seal(&s, TYPE, buf, 10, buf, sizeof buf, &n),
                 TETHER_ECLOSED);
    n = seal(&P.sb, buf, sizeof buf, 10, 1);
    cr_assert_eq(open_env(&s, buf, n), TETHER_ECLOSED);
    cr_assert_eq(s.stats.no_session, 1);
    cr_assert_eq(tether__session_id(&s, buf), TETHER_ECLOSED);
    cr_assert_eq(tether__session_seal(&P.sa, TETHER_ENV_TYPE_HELLO, buf, 10,
                                      buf, sizeof buf, &n),
                 TETHER_EINVAL, "hello's type is not for sealing");
    tether__session_fini(&s);
}

Test(envelope, reset_and_fini_wipe_the_keys)
{
    cr_assert(!all_zero(P.sa.tx_key, 32));
    cr_assert(!all_zero((const uint8_t *)&P.sa.tx_mac, sizeof P.sa.tx_mac));
    tether__session_reset(&P.sa);
    cr_assert_eq(tether__session_state(&P.sa), TETHER_SESSION_IDLE);
    cr_assert(all_zero(P.sa.tx_key, 32));
    cr_assert(all_zero(P.sa.rx_key, 32));
    cr_assert(all_zero((const uint8_t *)&P.sa.tx_mac, sizeof P.sa.tx_mac));
    cr_assert(all_zero((const uint8_t *)&P.sa.rx_mac, sizeof P.sa.rx_mac));
    cr_assert(all_zero(P.sa.sid, 32));
    cr_assert(all_zero(P.sa.kx_sk, 32));

    /* A session with an outstanding hello holds a kx secret; fini wipes
     * the whole struct. */
    hello_b(&P, 9);
    cr_assert(!all_zero(P.sb.kx_sk, 32));
    tether__session_fini(&P.sb);
    cr_assert(all_zero(&P.sb, sizeof P.sb));
    tether__session_fini(NULL);
}

Test(envelope, kind_classifies_without_trusting)
{
    uint8_t b[4] = {TETHER_ENVELOPE_VERSION, 0x05, 0, 0};
    cr_assert_eq(tether__envelope_kind(b, 1), TETHER_EAGAIN);
    cr_assert_eq(tether__envelope_kind(NULL, 0), TETHER_EAGAIN);
    cr_assert_eq(tether__envelope_kind(b, 2), TETHER_EPROTO, "reserved type");
    b[0] = 0x83;
    cr_assert_eq(tether__envelope_kind(b, 4), TETHER_EPROTO);
    char from[256];
    cr_assert_eq(tether__hello_peek_names(b, 4, from, NULL), TETHER_EPROTO);
}

/* ---- restart notices ------------------------------------------------------
 */

TestSuite(restart, .init = setup_established, .fini = teardown);

/* a's restart notice to b (incarnation inc) into buf; returns its size. */
static size_t notice_a(uint8_t *buf, size_t cap, uint64_t inc)
{
    size_t n = 0;

    cr_assert_eq(tether__session_restart_notice(&P.sa, inc, buf, cap, &n), 0);
    cr_assert_eq(n, tether__session_hello_size(&P.sa));
    return n;
}

Test(restart, notice_verifies_and_leaves_the_session_alone)
{
    uint8_t n[TETHER_HELLO_MAX_BYTES], env[64], sid[32], sid2[32];
    size_t len = notice_a(n, sizeof n, 7), elen;
    uint64_t inc = 0;

    cr_assert_eq(n[0], TETHER_ENVELOPE_VERSION);
    cr_assert_eq(n[1], TETHER_ENV_TYPE_RESTART);
    cr_assert_eq(tether__envelope_kind(n, len), TETHER_ENV_TYPE_RESTART);
    cr_assert_eq(tether__session_id(&P.sb, sid), 0);
    cr_assert_eq(tether__session_check_restart(&P.sb, n, len, &inc), 0);
    cr_assert_eq(inc, 7);
    cr_assert_eq(P.nb.restart_ok, 1);
    /* Checking it changes nothing: the session still works. */
    cr_assert(tether__session_established(&P.sb));
    cr_assert_eq(tether__session_id(&P.sb, sid2), 0);
    cr_assert_eq(memcmp(sid, sid2, sizeof sid), 0);
    elen = seal(&P.sa, env, sizeof env, 8, 1);
    cr_assert_eq(open_env(&P.sb, env, elen), 0);
    /* A notice is no hello, and a hello no notice. */
    cr_assert_eq(tether__session_accept(&P.sb, n, len), TETHER_EPROTO);
    hello_a(&P, 2);
    cr_assert_eq(tether__session_check_restart(&P.sb, P.ha, P.ha_len, &inc),
                 TETHER_EPROTO);
    char from[256], to[256];
    cr_assert_eq(tether__hello_peek_names(n, len, from, to), 0);
    cr_assert_str_eq(from, "a@h");
    cr_assert_str_eq(to, "b@h");
}

Test(restart, every_flipped_byte_and_truncation_is_rejected)
{
    uint8_t n[TETHER_HELLO_MAX_BYTES], bad[TETHER_HELLO_MAX_BYTES];
    size_t len = notice_a(n, sizeof n, 3);
    uint64_t inc = 0;

    for (size_t i = 0; i < len; i++) {
        memcpy(bad, n, len);
        bad[i] ^= 0x01;
        uint64_t before = rejections(&P.nb);
        cr_assert_neq(tether__session_check_restart(&P.sb, bad, len, &inc), 0,
                      "byte %zu", i);
        cr_assert_eq(rejections(&P.nb), before + 1, "byte %zu counted", i);
    }
    for (size_t l = 0; l < len; l++) {
        uint8_t *h = malloc(l ? l : 1); /* exact size: ASan sees overreads */
        memcpy(h, n, l);
        cr_assert_neq(tether__session_check_restart(&P.sb, h, l, &inc), 0);
        free(h);
    }
    cr_assert_eq(P.nb.restart_ok, 0);
    cr_assert(tether__session_established(&P.sb));
}

Test(restart, misaddressed_or_unknown_signer_is_rejected)
{
    tether_identity_t ic;
    tether_trust_t tc, empty;
    tether_session_t c_to_b, a_to_c, b_untrusting;
    uint8_t n[TETHER_HELLO_MAX_BYTES];
    size_t len;
    uint64_t inc;

    /* c's genuine notice to b, arriving as if from a. */
    cr_assert_eq(tether__keys_from_cookie(&ic, &tc, "c@h", COOKIE, COOKIE_LEN),
                 0);
    cr_assert_eq(tether__session_init(&c_to_b, &ic, &tc, "b@h", NULL), 0);
    cr_assert_eq(tether__session_restart_notice(&c_to_b, 9, n, sizeof n, &len),
                 0);
    cr_assert_eq(tether__session_check_restart(&P.sb, n, len, &inc),
                 TETHER_EPROTO);
    cr_assert_eq(P.nb.misaddressed, 1);
    /* a's notice meant for c. */
    cr_assert_eq(tether__session_init(&a_to_c, &P.ia, &P.ta, "c@h", NULL), 0);
    cr_assert_eq(tether__session_restart_notice(&a_to_c, 9, n, sizeof n, &len),
                 0);
    cr_assert_eq(tether__session_check_restart(&P.sb, n, len, &inc),
                 TETHER_EPROTO);
    cr_assert_eq(P.nb.misaddressed, 2);
    /* A node that trusts nobody. */
    cr_assert_eq(tether__trust_init(&empty), 0);
    cr_assert_eq(
        tether__session_init(&b_untrusting, &P.ib, &empty, "a@h", NULL), 0);
    len = notice_a(n, sizeof n, 9);
    cr_assert_eq(tether__session_check_restart(&b_untrusting, n, len, &inc),
                 TETHER_ENOTFOUND);
    cr_assert_eq(tether__session_check_restart(&P.sb, n, len, NULL),
                 TETHER_EINVAL);
    cr_assert_eq(tether__session_restart_notice(&P.sa, 1, n, 10, &len),
                 TETHER_ETOOBIG);
    cr_assert_eq(tether__session_restart_notice(NULL, 1, n, sizeof n, &len),
                 TETHER_EINVAL);
    tether__session_fini(&b_untrusting);
    tether__session_fini(&a_to_c);
    tether__session_fini(&c_to_b);
    tether__trust_fini(&empty);
    tether__trust_fini(&tc);
    tether__identity_fini(&ic);
}
