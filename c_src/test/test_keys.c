/*
 * Criterion suite for core/keys.c: identities, cookie and secret
 * derivation, the trust set, attestation signatures, wiping.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/keys.h"
#include "test/util.h"

static const uint8_t COOKIE[] = "SECRETCOOKIEFORTEST";
#define COOKIE_LEN (sizeof COOKIE - 1)

Test(keys, crypto_init_is_idempotent)
{
    cr_assert_eq(tether__crypto_init(), 0);
    cr_assert_eq(tether__crypto_init(), 0);
}

Test(keys, identity_from_seed_is_deterministic)
{
    uint8_t seed[TETHER_KEY_SEED_BYTES];
    tether_identity_t a, b, c;

    fill(seed, sizeof seed, 1);
    cr_assert_eq(tether__identity_from_seed(&a, "a@host", seed), 0);
    cr_assert_eq(tether__identity_from_seed(&b, "a@host", seed), 0);
    cr_assert_str_eq(a.name, "a@host");
    cr_assert_eq(a.name_len, 6);
    cr_assert_eq(memcmp(a.pk, b.pk, sizeof a.pk), 0);
    seed[0] ^= 1;
    cr_assert_eq(tether__identity_from_seed(&c, "a@host", seed), 0);
    cr_assert_neq(memcmp(a.pk, c.pk, sizeof a.pk), 0);
    /* The secret key is libsodium's seed || pk. */
    seed[0] ^= 1;
    cr_assert_eq(memcmp(a.sk, seed, sizeof seed), 0);
    cr_assert_eq(memcmp(a.sk + 32, a.pk, 32), 0);
    tether__identity_fini(&a);
    tether__identity_fini(&b);
    tether__identity_fini(&c);
}

Test(keys, identity_rejects_bad_names)
{
    uint8_t seed[TETHER_KEY_SEED_BYTES] = {0};
    char longname[TETHER_NODE_NAME_MAX + 2];
    tether_identity_t id;

    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    memset(&id, 0xAA, sizeof id);
    cr_assert_eq(tether__identity_from_seed(&id, "", seed), TETHER_EINVAL);
    cr_assert(all_zero(&id, sizeof id));
    cr_assert_eq(tether__identity_from_seed(&id, NULL, seed), TETHER_EINVAL);
    cr_assert_eq(tether__identity_from_seed(&id, longname, seed),
                 TETHER_EINVAL);
    cr_assert_eq(tether__identity_from_seed(&id, "a", NULL), TETHER_EINVAL);
    cr_assert_eq(tether__identity_from_seed(NULL, "a", seed), TETHER_EINVAL);
    cr_assert_eq(tether__identity_from_secret(&id, longname, seed),
                 TETHER_EINVAL);
    cr_assert(all_zero(&id, sizeof id));
    /* 255 bytes is the longest name allowed. */
    longname[TETHER_NODE_NAME_MAX] = '\0';
    cr_assert_eq(tether__identity_from_seed(&id, longname, seed), 0);
    cr_assert_eq(id.name_len, TETHER_NODE_NAME_MAX);
    tether__identity_fini(&id);
}

Test(keys, secret_derivation_follows_the_documented_formula)
{
    uint8_t secret[TETHER_CLUSTER_SECRET_BYTES];
    uint8_t msg[256], seed[32], pk[32], sk[64];
    tether_identity_t id;
    const char *name = "node1@example";

    fill(secret, sizeof secret, 3);
    cr_assert_eq(tether__identity_from_secret(&id, name, secret), 0);
    /* seed = BLAKE2b-256(key = secret, LABEL || 0x00 || name) */
    size_t off = sizeof(TETHER_KEYS_LABEL_NODE);
    memcpy(msg, TETHER_KEYS_LABEL_NODE, off);
    memcpy(msg + off, name, strlen(name));
    crypto_generichash(seed, 32, msg, off + strlen(name), secret, 32);
    crypto_sign_seed_keypair(pk, sk, seed);
    cr_assert_eq(memcmp(pk, id.pk, 32), 0);
    tether__identity_fini(&id);
}

Test(keys, derived_keys_differ_by_name_and_secret)
{
    uint8_t s1[32], s2[32];
    tether_identity_t a1, b1, a2;

    fill(s1, 32, 5);
    fill(s2, 32, 6);
    cr_assert_eq(tether__identity_from_secret(&a1, "a@h", s1), 0);
    cr_assert_eq(tether__identity_from_secret(&b1, "b@h", s1), 0);
    cr_assert_eq(tether__identity_from_secret(&a2, "a@h", s2), 0);
    cr_assert_neq(memcmp(a1.pk, b1.pk, 32), 0);
    cr_assert_neq(memcmp(a1.pk, a2.pk, 32), 0);
    tether__identity_fini(&a1);
    tether__identity_fini(&b1);
    tether__identity_fini(&a2);
}

Test(keys, cookie_secret_follows_the_documented_formula)
{
    uint8_t s[32], again[32], other[32], want[32];

    cr_assert_eq(tether__cluster_secret_from_cookie(s, COOKIE, COOKIE_LEN), 0);
    cr_assert_eq(tether__cluster_secret_from_cookie(again, COOKIE, COOKIE_LEN),
                 0);
    cr_assert_eq(memcmp(s, again, 32), 0);
    crypto_generichash(want, 32, COOKIE, COOKIE_LEN,
                       (const uint8_t *)TETHER_KEYS_LABEL_COOKIE,
                       strlen(TETHER_KEYS_LABEL_COOKIE));
    cr_assert_eq(memcmp(s, want, 32), 0);
    cr_assert_eq(
        tether__cluster_secret_from_cookie(other, COOKIE, COOKIE_LEN - 1), 0);
    cr_assert_neq(memcmp(s, other, 32), 0);
}

Test(keys, cookie_rejects_empty_and_oversized)
{
    uint8_t s[32];
    static uint8_t big[TETHER_COOKIE_MAX + 1];

    memset(s, 0xAA, sizeof s);
    cr_assert_eq(tether__cluster_secret_from_cookie(s, COOKIE, 0),
                 TETHER_EINVAL);
    cr_assert(all_zero(s, sizeof s));
    cr_assert_eq(tether__cluster_secret_from_cookie(s, NULL, 4), TETHER_EINVAL);
    cr_assert_eq(tether__cluster_secret_from_cookie(s, big, sizeof big),
                 TETHER_EINVAL);
    cr_assert_eq(tether__cluster_secret_from_cookie(s, big, sizeof big - 1), 0);
}

Test(keys, cookie_holders_trust_each_other_by_name)
{
    tether_identity_t a, b;
    tether_trust_t ta, tb;
    uint8_t pk[32];

    cr_assert_eq(tether__keys_from_cookie(&a, &ta, "a@h", COOKIE, COOKIE_LEN),
                 0);
    cr_assert_eq(tether__keys_from_cookie(&b, &tb, "b@h", COOKIE, COOKIE_LEN),
                 0);
    cr_assert_eq(tether__trust_lookup(&ta, "b@h", pk), 0);
    cr_assert_eq(memcmp(pk, b.pk, 32), 0);
    cr_assert_eq(tether__trust_lookup(&tb, "a@h", pk), 0);
    cr_assert_eq(memcmp(pk, a.pk, 32), 0);
    /* Cached the second time, same answer. */
    cr_assert_eq(tether__trust_lookup(&tb, "a@h", pk), 0);
    cr_assert_eq(memcmp(pk, a.pk, 32), 0);
    cr_assert_eq(tb.cache_len, 1);
    tether__identity_fini(&a);
    tether__identity_fini(&b);
    tether__trust_fini(&ta);
    tether__trust_fini(&tb);
}

Test(keys, another_cookie_derives_other_keys)
{
    tether_identity_t a;
    tether_trust_t t;
    uint8_t pk[32];
    static const uint8_t other[] = "ANOTHERCOOKIE";

    cr_assert_eq(tether__keys_from_cookie(&a, &t, "a@h", COOKIE, COOKIE_LEN),
                 0);
    cr_assert_eq(tether__trust_set_cookie(&t, other, sizeof other - 1), 0);
    cr_assert_eq(t.cache_len, 0);
    cr_assert_eq(tether__trust_lookup(&t, "a@h", pk), 0);
    cr_assert_neq(memcmp(pk, a.pk, 32), 0);
    tether__identity_fini(&a);
    tether__trust_fini(&t);
}

Test(keys, empty_trust_set_trusts_nobody)
{
    tether_trust_t t;
    uint8_t pk[32];

    cr_assert_eq(tether__trust_init(&t), 0);
    cr_assert_eq(tether__trust_lookup(&t, "a@h", pk), TETHER_ENOTFOUND);
    cr_assert_eq(tether__trust_lookup(&t, "", pk), TETHER_EINVAL);
    cr_assert_eq(tether__trust_lookup_n(&t, "a\0b", 3, pk), TETHER_EINVAL);
    cr_assert_eq(tether__trust_lookup_n(&t, "ab", 0, pk), TETHER_EINVAL);
    tether__trust_fini(&t);
}

Test(keys, explicit_list_add_lookup_and_conflicts)
{
    tether_trust_t t;
    uint8_t pk[32], k1[32], k2[32];
    char name[32];

    fill(k1, 32, 10);
    fill(k2, 32, 11);
    cr_assert_eq(tether__trust_init(&t), 0);
    /* Enough entries to grow the list a few times. */
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "n%d@h", i);
        k1[0] = (uint8_t)i;
        cr_assert_eq(tether__trust_add_pubkey(&t, name, k1), 0);
    }
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof name, "n%d@h", i);
        cr_assert_eq(tether__trust_lookup(&t, name, pk), 0);
        cr_assert_eq(pk[0], (uint8_t)i);
        cr_assert_eq(memcmp(pk + 1, k1 + 1, 31), 0);
    }
    k1[0] = 3;
    cr_assert_eq(tether__trust_add_pubkey(&t, "n3@h", k1), 0);
    cr_assert_eq(tether__trust_add_pubkey(&t, "n3@h", k2), TETHER_EEXIST);
    cr_assert_eq(tether__trust_lookup(&t, "n40@h", pk), TETHER_ENOTFOUND);
    cr_assert_eq(tether__trust_add_pubkey(&t, "", k1), TETHER_EINVAL);
    tether__trust_fini(&t);
}

Test(keys, explicit_entry_overrides_the_secret)
{
    tether_trust_t t;
    uint8_t secret[32], pk[32], k[32];

    fill(secret, 32, 1);
    fill(k, 32, 99);
    cr_assert_eq(tether__trust_init(&t), 0);
    cr_assert_eq(tether__trust_set_secret(&t, secret), 0);
    cr_assert_eq(tether__trust_add_pubkey(&t, "x@h", k), 0);
    cr_assert_eq(tether__trust_lookup(&t, "x@h", pk), 0);
    cr_assert_eq(memcmp(pk, k, 32), 0);
    tether__trust_fini(&t);
}

Test(keys, derived_cache_replaces_oldest_and_stays_correct)
{
    tether_trust_t t;
    uint8_t secret[32], pk[32];
    tether_identity_t id;
    char name[32];

    fill(secret, 32, 2);
    cr_assert_eq(tether__trust_init(&t), 0);
    cr_assert_eq(tether__trust_set_secret(&t, secret), 0);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < TETHER_TRUST_DERIVED_CACHE + 10; i++) {
            snprintf(name, sizeof name, "m%d@h", i);
            cr_assert_eq(tether__trust_lookup(&t, name, pk), 0);
            cr_assert_eq(tether__identity_from_secret(&id, name, secret), 0);
            cr_assert_eq(memcmp(pk, id.pk, 32), 0, "%s", name);
            tether__identity_fini(&id);
        }
    }
    cr_assert_eq(t.cache_len, TETHER_TRUST_DERIVED_CACHE);
    tether__trust_fini(&t);
}

Test(keys, attestation_sign_and_verify)
{
    tether_identity_t a, b;
    tether_trust_t t;
    uint8_t sig[64];
    static const uint8_t msg[] = "fence token 42";

    cr_assert_eq(tether__keys_from_cookie(&a, &t, "a@h", COOKIE, COOKIE_LEN),
                 0);
    cr_assert_eq(tether__identity_from_secret(&b, "b@h", t.secret), 0);
    cr_assert_eq(tether__identity_sign(&a, msg, sizeof msg, sig), 0);
    cr_assert_eq(tether__trust_verify_signed(&t, "a@h", msg, sizeof msg, sig),
                 0);
    /* Wrong signer, altered message, altered signature. */
    cr_assert_eq(tether__trust_verify_signed(&t, "b@h", msg, sizeof msg, sig),
                 TETHER_EAUTH);
    cr_assert_eq(
        tether__trust_verify_signed(&t, "a@h", msg, sizeof msg - 1, sig),
        TETHER_EAUTH);
    for (size_t i = 0; i < sizeof sig; i++) {
        sig[i] ^= 0x40;
        cr_assert_eq(
            tether__trust_verify_signed(&t, "a@h", msg, sizeof msg, sig),
            TETHER_EAUTH, "flip at %zu", i);
        sig[i] ^= 0x40;
    }
    /* Domain separation: it is not a plain Ed25519 signature of msg. */
    cr_assert_neq(crypto_sign_verify_detached(sig, msg, sizeof msg, a.pk), 0);
    tether__identity_fini(&a);
    tether__identity_fini(&b);
    tether__trust_fini(&t);
}

Test(keys, attestation_unknown_signer_and_sizes)
{
    tether_identity_t a;
    tether_trust_t t;
    uint8_t sig[64], seed[32];
    uint8_t *big = malloc(100000);

    cr_assert_not_null(big);
    fill(big, 100000, 4);
    fill(seed, 32, 8);
    cr_assert_eq(tether__identity_from_seed(&a, "a@h", seed), 0);
    cr_assert_eq(tether__trust_init(&t), 0);
    cr_assert_eq(tether__identity_sign(&a, big, 100000, sig), 0);
    cr_assert_eq(tether__trust_verify_signed(&t, "a@h", big, 100000, sig),
                 TETHER_ENOTFOUND);
    cr_assert_eq(tether__trust_add_pubkey(&t, "a@h", a.pk), 0);
    cr_assert_eq(tether__trust_verify_signed(&t, "a@h", big, 100000, sig), 0);
    big[99999] ^= 1;
    cr_assert_eq(tether__trust_verify_signed(&t, "a@h", big, 100000, sig),
                 TETHER_EAUTH);
    cr_assert_eq(tether__identity_sign(&a, NULL, 0, sig), 0);
    cr_assert_eq(tether__trust_verify_signed(&t, "a@h", NULL, 0, sig), 0);
    cr_assert_eq(tether__identity_sign(&a, NULL, 1, sig), TETHER_EINVAL);
    free(big);
    tether__identity_fini(&a);
    tether__trust_fini(&t);
}

Test(keys, fini_wipes_secrets)
{
    tether_identity_t id;
    tether_trust_t t;
    uint8_t pk[32], k[32];

    fill(k, 32, 1);
    cr_assert_eq(tether__keys_from_cookie(&id, &t, "a@h", COOKIE, COOKIE_LEN),
                 0);
    cr_assert_eq(tether__trust_add_pubkey(&t, "z@h", k), 0);
    cr_assert_eq(tether__trust_lookup(&t, "b@h", pk), 0);
    cr_assert(!all_zero(id.sk, sizeof id.sk));
    cr_assert(!all_zero(t.secret, sizeof t.secret));
    tether__identity_fini(&id);
    tether__trust_fini(&t);
    cr_assert(all_zero(&id, sizeof id));
    cr_assert(all_zero(&t, sizeof t));
    tether__identity_fini(NULL);
    tether__trust_fini(NULL);
}

Test(keys, keys_from_secret_failure_leaves_both_wiped)
{
    tether_identity_t id;
    tether_trust_t t;
    uint8_t secret[32];

    fill(secret, 32, 1);
    memset(&id, 0x55, sizeof id);
    cr_assert_eq(tether__keys_from_secret(&id, &t, "", secret), TETHER_EINVAL);
    cr_assert(all_zero(&id, sizeof id));
    cr_assert(all_zero(&t, sizeof t));
    cr_assert_eq(tether__keys_from_cookie(&id, &t, "a@h", COOKIE, 0),
                 TETHER_EINVAL);
    cr_assert(all_zero(&id, sizeof id));
    cr_assert(all_zero(&t, sizeof t));
}
