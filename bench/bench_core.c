/*
 * bench_core.c: micro-benchmarks of the cluster engine's building blocks,
 * printed as `name: value` lines for `make bench`.
 *
 *   envelope_seal_open_us   seal + open of a 256-byte payload under an
 *                           established session (crypto_auth MAC, sequence
 *                           number, replay window), microseconds
 *   ed25519_sign_verify_us  Ed25519 sign + verify of the same payload, the
 *                           per-message cost envelopes avoid, microseconds
 *   envelope_vs_ed25519     the first divided by the second
 *   ring_rebuild_us         a ring table of 1,000 members and 1,024 shards
 *                           built from scratch (what every membership
 *                           change costs), microseconds
 *   ring_join_moved_ratio   shard primaries moved when a 51st member joins
 *                           a ring of 50, over the ideal S/(N+1), averaged
 *                           over 8 random member sets at S = 1,024
 *
 * Each figure is the median of several timed rounds. Usage:
 *   bench_core [--rounds N] [--iterations N] [--help]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/envelope.h"
#include "core/keys.h"
#include "core/ring.h"

#define PAYLOAD_BYTES 256

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_core: %s: %s\n", what, tether_strerror(rc));
    exit(1);
}

/* Two identities from one cookie and an established session each way. */
struct pair {
    tether_identity_t id_a, id_b;
    tether_trust_t trust_a, trust_b;
    tether_session_t a, b;
};

static void pair_setup(struct pair *p)
{
    static const uint8_t cookie[] = "bench-cookie";
    uint8_t nonce[TETHER_ENV_NONCE_BYTES], seed[TETHER_ENV_KX_SEED_BYTES];
    uint8_t hello[TETHER_HELLO_MAX_BYTES];
    size_t n;
    int rc;

    if ((rc = tether__keys_from_cookie(&p->id_a, &p->trust_a, "a@127.0.0.1",
                                       cookie, sizeof cookie - 1)) ||
        (rc = tether__keys_from_cookie(&p->id_b, &p->trust_b, "b@127.0.0.1",
                                       cookie, sizeof cookie - 1)))
        die("keys", rc);
    if ((rc = tether__session_init(&p->a, &p->id_a, &p->trust_a, "b@127.0.0.1",
                                   NULL)) ||
        (rc = tether__session_init(&p->b, &p->id_b, &p->trust_b, "a@127.0.0.1",
                                   NULL)))
        die("session init", rc);

    randombytes_buf(nonce, sizeof nonce);
    randombytes_buf(seed, sizeof seed);
    if ((rc = tether__session_hello(&p->a, 1, nonce, seed, hello, sizeof hello,
                                    &n)) ||
        (rc = tether__session_accept(&p->b, hello, n)))
        die("hello a->b", rc);
    randombytes_buf(nonce, sizeof nonce);
    randombytes_buf(seed, sizeof seed);
    if ((rc = tether__session_hello(&p->b, 1, nonce, seed, hello, sizeof hello,
                                    &n)) ||
        (rc = tether__session_accept(&p->a, hello, n)))
        die("hello b->a", rc);
    if (!tether__session_established(&p->a) ||
        !tether__session_established(&p->b))
        die("session", TETHER_ECLOSED);
}

static double seal_open_round(struct pair *p, int iterations)
{
    uint8_t payload[PAYLOAD_BYTES], env[PAYLOAD_BYTES + TETHER_ENV_OVERHEAD];
    const uint8_t *out;
    size_t n, out_len;
    int rc;

    randombytes_buf(payload, sizeof payload);
    double t0 = now_us();
    for (int i = 0; i < iterations; i++) {
        if ((rc = tether__session_seal(&p->a, TETHER_ENV_TYPE_USER_MIN, payload,
                                       sizeof payload, env, sizeof env, &n)))
            die("seal", rc);
        if ((rc = tether__session_open(&p->b, env, n, NULL, &out, &out_len)))
            die("open", rc);
    }
    return (now_us() - t0) / iterations;
}

static double sign_verify_round(int iterations)
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    uint8_t payload[PAYLOAD_BYTES], sig[crypto_sign_BYTES];

    crypto_sign_keypair(pk, sk);
    randombytes_buf(payload, sizeof payload);
    double t0 = now_us();
    for (int i = 0; i < iterations; i++) {
        crypto_sign_detached(sig, NULL, payload, sizeof payload, sk);
        if (crypto_sign_verify_detached(sig, payload, sizeof payload, pk))
            die("verify", TETHER_EAUTH);
    }
    sodium_memzero(sk, sizeof sk);
    return (now_us() - t0) / iterations;
}

/* n random member names into names (each TETHER_NODE_NAME_MAX + 1). */
static void random_names(char (*names)[TETHER_NODE_NAME_MAX + 1],
                         const char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "n%08x_%zu@bench.host",
                 randombytes_random(), i);
        v[i] = names[i];
    }
}

/* Microseconds to set 1,000 members on a ring of 1,024 shards. */
static double ring_rebuild_round(void)
{
    enum { N = 1000 };
    static char names[N][TETHER_NODE_NAME_MAX + 1];
    static const char *v[N];
    tether_ring_t *r;
    int rc;

    random_names(names, v, N);
    if ((rc = tether_ring_new(1024, &r)))
        die("ring", rc);
    double t0 = now_us();
    if ((rc = tether_ring_set_members(r, v, N)))
        die("ring members", rc);
    double t = now_us() - t0;
    tether_ring_free(r);
    return t;
}

/* Shards whose primary moved when one member joined N random ones, over
 * S/(N+1), averaged over `sets` member sets. */
static double ring_join_moved(size_t n, uint32_t shards, int sets)
{
    char(*names)[TETHER_NODE_NAME_MAX + 1] = malloc((n + 1) * sizeof *names);
    const char **v = malloc((n + 1) * sizeof *v);
    double sum = 0;
    int rc;

    if (names == NULL || v == NULL)
        die("ring", TETHER_ENOMEM);
    for (int set = 0; set < sets; set++) {
        tether_ring_t *a, *b;
        size_t moved = 0;
        random_names(names, v, n + 1);
        if ((rc = tether_ring_new(shards, &a)) ||
            (rc = tether_ring_set_members(a, v, n)) ||
            (rc = tether_ring_copy(a, &b)) ||
            (rc = tether_ring_add(b, v[n])))
            die("ring", rc);
        for (uint32_t s = 0; s < shards; s++)
            if (strcmp(tether_ring_primary(a, s), tether_ring_primary(b, s)))
                moved++;
        sum += (double)moved / ((double)shards / (double)(n + 1));
        tether_ring_free(a);
        tether_ring_free(b);
    }
    free(names);
    free(v);
    return sum / sets;
}

static int positive_arg(const char *flag, const char *value)
{
    char *end;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || *end || v <= 0 || v > 100000000) {
        fprintf(stderr, "bench_core: %s needs a positive integer\n", flag);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    int rounds = 7, iterations = 20000;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            puts("Usage: bench_core [--rounds N] [--iterations N]\n"
                 "Prints envelope_seal_open_us, ed25519_sign_verify_us, "
                 "their ratio,\nring_rebuild_us and ring_join_moved_ratio.");
            return 0;
        } else if (!strcmp(argv[i], "--rounds") ||
                   !strcmp(argv[i], "--iterations")) {
            const char *flag = argv[i];
            int v = positive_arg(flag, i + 1 < argc ? argv[i + 1] : NULL);
            i++;
            if (!strcmp(flag, "--rounds"))
                rounds = v;
            else
                iterations = v;
        } else {
            fprintf(stderr, "bench_core: unknown option '%s' (try --help)\n",
                    argv[i]);
            return 2;
        }
    }
    if (rounds > 99)
        rounds = 99;
    if (sodium_init() < 0)
        die("sodium_init", TETHER_EIO);

    struct pair p;
    pair_setup(&p);
    double seal[99], sign[99];
    for (int r = 0; r < rounds; r++) {
        seal[r] = seal_open_round(&p, iterations);
        sign[r] = sign_verify_round(iterations / 20 + 1);
    }
    double s = median(seal, rounds), e = median(sign, rounds);
    printf("envelope_seal_open_us: %.2f\n", s);
    printf("ed25519_sign_verify_us: %.2f\n", e);
    printf("envelope_vs_ed25519: %.3f\n", s / e);

    double rebuild[99];
    for (int r = 0; r < rounds; r++)
        rebuild[r] = ring_rebuild_round();
    printf("ring_rebuild_us: %.0f\n", median(rebuild, rounds));
    printf("ring_join_moved_ratio: %.3f\n", ring_join_moved(50, 1024, 8));

    tether__session_fini(&p.a);
    tether__session_fini(&p.b);
    tether__trust_fini(&p.trust_a);
    tether__trust_fini(&p.trust_b);
    tether__identity_fini(&p.id_a);
    tether__identity_fini(&p.id_b);
    return 0;
}
