/*
 * fuzz_envelope.c: libFuzzer target for core/envelope.c.
 *
 * Two nodes a@h and b@h share a cookie-derived cluster secret; every key,
 * nonce and seed is fixed, so every run is deterministic. The first input
 * byte picks a mode (byte % 4); the rest is the mode's input:
 *
 *   0  hello: the bytes go to tether__session_accept() on b's session
 *      towards a, which has its own hello outstanding (HELLO_SENT), so a's
 *      genuine hello (seed corpus) establishes it.
 *   1  resigned hello: the bytes are a hello body that gets a valid
 *      signature by a's identity appended, so the checks after the
 *      signature (addressing, replay, kx key, key derivation) are reached.
 *   2  open: the bytes go to tether__session_open() on b's established
 *      session with a.
 *   3  script: the bytes are operations on the established pair (seal,
 *      open, open flipped, open truncated, skip ahead, re-handshake), and
 *      an exact model of the replay window says whether each open must
 *      succeed; any disagreement aborts.
 *
 * Each run starts from snapshots of the sessions taken at init, so no
 * state leaks between inputs.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/envelope.h"
#include "core/keys.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t COOKIE[] = "FUZZCOOKIE";

static tether_identity_t ia, ib;
static tether_trust_t ta, tb;
static tether_session_t a_est, b_est;           /* established pair */
static tether_session_t b_waiting;              /* b: HELLO_SENT towards a */
static uint8_t a_hello[TETHER_HELLO_MAX_BYTES]; /* a's hello to b_waiting */
static size_t a_hello_len;
static uint8_t sealed_one[TETHER_ENV_OVERHEAD + 64]; /* a -> b, seq 1 */
static size_t sealed_one_len;

static void die(const char *why)
{
    (void)why;
    abort();
}

static void seeded(uint8_t out[32], uint8_t who, uint8_t what, uint32_t round)
{
    for (int i = 0; i < 32; i++)
        out[i] = (uint8_t)(who * 31 + what * 17 + round * 7 + (uint32_t)i);
}

/* Makes a and b exchange hellos (round varies the nonces and kx seeds). */
static void handshake(tether_session_t *a, tether_session_t *b, uint32_t round)
{
    uint8_t ha[TETHER_HELLO_MAX_BYTES], hb[TETHER_HELLO_MAX_BYTES];
    uint8_t nonce[32], kx[32];
    size_t na, nb;

    seeded(nonce, 1, 1, round);
    seeded(kx, 1, 2, round);
    if (tether__session_hello(a, 1, nonce, kx, ha, sizeof ha, &na) != 0)
        die("hello a");
    seeded(nonce, 2, 1, round);
    seeded(kx, 2, 2, round);
    if (tether__session_hello(b, 1, nonce, kx, hb, sizeof hb, &nb) != 0)
        die("hello b");
    if (tether__session_accept(b, ha, na) != 0 ||
        tether__session_accept(a, hb, nb) != 0)
        die("accept");
}

/* Sets up the fixed world; exposed for the seed-corpus generator. */
static void setup(void)
{
    uint8_t nonce[32], kx[32], b_hello[TETHER_HELLO_MAX_BYTES];
    size_t b_hello_len;
    tether_session_t a_tmp;

    if (tether__keys_from_cookie(&ia, &ta, "a@h", COOKIE, sizeof COOKIE - 1) ||
        tether__keys_from_cookie(&ib, &tb, "b@h", COOKIE, sizeof COOKIE - 1))
        die("keys");
    if (tether__session_init(&a_est, &ia, &ta, "b@h", NULL) ||
        tether__session_init(&b_est, &ib, &tb, "a@h", NULL))
        die("init");
    handshake(&a_est, &b_est, 0);

    if (tether__session_init(&b_waiting, &ib, &tb, "a@h", NULL) ||
        tether__session_init(&a_tmp, &ia, &ta, "b@h", NULL))
        die("init");
    seeded(nonce, 2, 1, 1000);
    seeded(kx, 2, 2, 1000);
    if (tether__session_hello(&b_waiting, 1, nonce, kx, b_hello, sizeof b_hello,
                              &b_hello_len))
        die("hello");
    seeded(nonce, 1, 1, 1000);
    seeded(kx, 1, 2, 1000);
    if (tether__session_hello(&a_tmp, 1, nonce, kx, a_hello, sizeof a_hello,
                              &a_hello_len))
        die("hello");

    tether_session_t a_copy = a_est;
    static const uint8_t msg[] = "hello envelope";
    if (tether__session_seal(&a_copy, 0x20, msg, sizeof msg, sealed_one,
                             sizeof sealed_one, &sealed_one_len))
        die("seal");
    tether__session_fini(&a_tmp);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setup();
    return 0;
}

static void fuzz_hello(const uint8_t *d, size_t n)
{
    tether_session_t b = b_waiting;
    int rc = tether__session_accept(&b, d, n);
    if (rc == 0 && !tether__session_established(&b))
        die("accepted but not established");
    if (rc != 0 && tether__session_state(&b) != TETHER_SESSION_HELLO_SENT)
        die("rejected hello changed the state");
    char from[TETHER_NODE_NAME_MAX + 1], to[TETHER_NODE_NAME_MAX + 1];
    (void)tether__hello_peek_names(d, n, from, to);
    (void)tether__envelope_kind(d, n);
    tether__session_fini(&b);
}

static void fuzz_resigned_hello(const uint8_t *d, size_t n)
{
    uint8_t tbs[sizeof(TETHER_ENV_LABEL_HELLO) + TETHER_HELLO_MAX_BYTES];
    uint8_t msg[TETHER_HELLO_MAX_BYTES + TETHER_SIG_BYTES];

    if (n > TETHER_HELLO_MAX_BYTES)
        n = TETHER_HELLO_MAX_BYTES;
    memcpy(tbs, TETHER_ENV_LABEL_HELLO, sizeof(TETHER_ENV_LABEL_HELLO));
    memcpy(tbs + sizeof(TETHER_ENV_LABEL_HELLO), d, n);
    memcpy(msg, d, n);
    crypto_sign_detached(msg + n, NULL, tbs, sizeof(TETHER_ENV_LABEL_HELLO) + n,
                         ia.sk);
    fuzz_hello(msg, n + TETHER_SIG_BYTES);
}

static void fuzz_open(const uint8_t *d, size_t n)
{
    tether_session_t b = b_est;
    const uint8_t *pl;
    size_t pl_len;
    uint8_t type;
    int rc = tether__session_open(&b, d, n, &type, &pl, &pl_len);
    if (rc == 0) {
        /* Only the genuine envelope may open. */
        if (n != sealed_one_len || memcmp(d, sealed_one, n) != 0)
            die("forged envelope opened");
        if (pl != d + TETHER_ENV_HEADER_BYTES ||
            pl_len + TETHER_ENV_OVERHEAD != n)
            die("bad slice");
    } else if (pl != NULL || pl_len != 0) {
        die("slice set on error");
    }
    tether__session_fini(&b);
}

/* ---- script mode -------------------------------------------------------- */

#define RING        32
#define MAX_BODY    64
#define MAX_SKIP    3000 /* enough to push anything out of the window */
#define MAX_REHELLO 3    /* handshakes are slow; a few per input suffice */

typedef struct stored {
    uint8_t bytes[TETHER_ENV_OVERHEAD + MAX_BODY];
    size_t len;
    uint64_t seq;
    int opened; /* opened once already */
    int stale;  /* sealed in an earlier session */
    int used;
} stored_t;

typedef struct script {
    tether_session_t a, b;
    stored_t ring[RING];
    size_t next;
    uint64_t top; /* model of b's highest accepted sequence number */
    uint32_t round;
    unsigned skipped; /* envelopes sealed and dropped so far */
} script_t;

static int model_says_new(const script_t *s, const stored_t *e)
{
    if (e->stale || e->opened)
        return 0;
    return e->seq > s->top || s->top - e->seq < TETHER_ENV_REPLAY_WINDOW;
}

static void do_seal(script_t *s, uint8_t arg)
{
    uint8_t body[MAX_BODY];
    size_t len = arg % (MAX_BODY + 1);
    stored_t *e = &s->ring[s->next];

    for (size_t i = 0; i < len; i++)
        body[i] = (uint8_t)(arg + i);
    memset(e, 0, sizeof *e);
    if (tether__session_seal(&s->a, 0x10 + (arg & 0x7f), body, len, e->bytes,
                             sizeof e->bytes, &e->len) != 0)
        die("seal");
    e->seq = 0;
    for (int i = 2; i < 10; i++)
        e->seq = (e->seq << 8) | e->bytes[i];
    e->used = 1;
    s->next = (s->next + 1) % RING;
}

static void do_open(script_t *s, uint8_t arg)
{
    stored_t *e = &s->ring[arg % RING];
    const uint8_t *pl;
    size_t pl_len;

    if (!e->used)
        return;
    int want = model_says_new(s, e);
    int rc = tether__session_open(&s->b, e->bytes, e->len, NULL, &pl, &pl_len);
    if ((rc == 0) != want)
        die("replay window disagrees with the model");
    if (rc == 0) {
        e->opened = 1;
        if (e->seq > s->top)
            s->top = e->seq;
        if (pl_len + TETHER_ENV_OVERHEAD != e->len)
            die("payload length");
    }
}

static void do_open_damaged(script_t *s, uint8_t arg, uint8_t how, int truncate)
{
    stored_t *e = &s->ring[arg % RING];
    uint8_t copy[sizeof e->bytes];
    const uint8_t *pl;
    size_t pl_len, len;

    if (!e->used)
        return;
    memcpy(copy, e->bytes, e->len);
    len = e->len;
    if (truncate)
        len = how % e->len;
    else
        copy[how % e->len] ^= (uint8_t)((arg >> 5) | 1);
    uint8_t *exact = malloc(len ? len : 1); /* exact size: overreads trap */
    if (exact == NULL)
        return;
    memcpy(exact, copy, len);
    if (tether__session_open(&s->b, exact, len, NULL, &pl, &pl_len) == 0)
        die("damaged envelope opened");
    free(exact);
}

static void fuzz_script(const uint8_t *d, size_t n)
{
    static script_t s; /* large; static to keep it off the stack */

    memset(&s, 0, sizeof s);
    s.a = a_est;
    s.b = b_est;
    for (size_t i = 0; i + 1 < n; i += 2) {
        uint8_t op = d[i], arg = d[i + 1];
        switch (op % 6) {
        case 0:
            do_seal(&s, arg);
            break;
        case 1:
            do_open(&s, arg);
            break;
        case 2:
            do_open_damaged(&s, arg, op, 0);
            break;
        case 3:
            do_open_damaged(&s, arg, op, 1);
            break;
        case 4: /* the sender skips ahead: sealed but lost (capped, for speed)
                 */
            for (unsigned k = 0; k < (unsigned)arg * 8 && s.skipped < MAX_SKIP;
                 k++, s.skipped++) {
                uint8_t out[TETHER_ENV_OVERHEAD];
                size_t len;
                if (tether__session_seal(&s.a, 0x10, NULL, 0, out, sizeof out,
                                         &len) != 0)
                    die("seal");
            }
            break;
        case 5: /* re-handshake: everything stored is now stale */
            if (arg < 0xF0 || s.round >= MAX_REHELLO)
                break;
            handshake(&s.a, &s.b, ++s.round);
            for (size_t k = 0; k < RING; k++)
                s.ring[k].stale = 1;
            s.top = 0;
            break;
        }
    }
    tether__session_fini(&s.a);
    tether__session_fini(&s.b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 4) {
    case 0:
        fuzz_hello(data + 1, size - 1);
        break;
    case 1:
        fuzz_resigned_hello(data + 1, size - 1);
        break;
    case 2:
        fuzz_open(data + 1, size - 1);
        break;
    case 3:
        fuzz_script(data + 1, size - 1);
        break;
    }
    return 0;
}
