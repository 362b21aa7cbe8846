/*
 * core/keys.c: Ed25519 node identities and the trust set (explicit keys
 * or a cluster secret). See keys.h for the contracts.
 */
#include "core/keys.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(TETHER_KEY_SEED_BYTES == crypto_sign_SEEDBYTES, "seed size");
_Static_assert(TETHER_KEY_PUBLIC_BYTES == crypto_sign_PUBLICKEYBYTES,
               "public key size");
_Static_assert(TETHER_KEY_SECRET_BYTES == crypto_sign_SECRETKEYBYTES,
               "secret key size");
_Static_assert(TETHER_SIG_BYTES == crypto_sign_BYTES, "signature size");
_Static_assert(sizeof(TETHER_KEYS_LABEL_COOKIE) - 1 >=
                       crypto_generichash_KEYBYTES_MIN &&
                   sizeof(TETHER_KEYS_LABEL_COOKIE) - 1 <=
                       crypto_generichash_KEYBYTES_MAX,
               "the cookie label is used as a BLAKE2b key");
_Static_assert(TETHER_CLUSTER_SECRET_BYTES >= crypto_generichash_KEYBYTES_MIN,
               "the cluster secret is used as a BLAKE2b key");

/* Messages up to this size are prefixed with the attestation label on the
 * stack; longer ones on the heap. */
#define ATTEST_STACK_BYTES  4096
#define ATTEST_PREFIX_BYTES (sizeof(TETHER_KEYS_LABEL_ATTEST)) /* with NUL */

/* Key files are small; anything claiming to be bigger is refused. */

static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static int crypto_status = TETHER_EIO;

static void crypto_init_once(void)
{
    /* sodium_init() returns 0 on first success, 1 if already done. */
    crypto_status = sodium_init() < 0 ? TETHER_EIO : 0;
}

int tether__crypto_init(void)
{
    if (pthread_once(&crypto_once, crypto_init_once) != 0)
        return TETHER_EIO;
    return crypto_status;
}

size_t tether__node_name_len(const char *name)
{
    if (name == NULL)
        return 0;
    size_t n = strnlen(name, TETHER_NODE_NAME_MAX + 1);
    return n > TETHER_NODE_NAME_MAX ? 0 : n;
}

/* 1 if (name, len) is a usable node name given as bytes. */
static int name_bytes_ok(const char *name, size_t len)
{
    return name != NULL && len >= 1 && len <= TETHER_NODE_NAME_MAX &&
           memchr(name, '\0', len) == NULL;
}

int tether__identity_from_seed(tether_identity_t *id, const char *name,
                               const uint8_t seed[TETHER_KEY_SEED_BYTES])
{
    if (id == NULL)
        return TETHER_EINVAL;
    sodium_memzero(id, sizeof *id);
    size_t n = tether__node_name_len(name);
    if (n == 0 || seed == NULL)
        return TETHER_EINVAL;
    int rc = tether__crypto_init();
    if (rc != 0)
        return rc;
    memcpy(id->name, name, n);
    id->name[n] = '\0';
    id->name_len = n;
    if (crypto_sign_seed_keypair(id->pk, id->sk, seed) != 0) {
        sodium_memzero(id, sizeof *id);
        return TETHER_EINVAL;
    }
    return 0;
}

/*
 * Derives the identity seed of node (name, len) from the cluster secret
 * into seed_out. The message is the label, a NUL separator, then the name;
 * the label has a fixed length so the encoding is unambiguous.
 */
static void derive_node_seed(uint8_t seed_out[TETHER_KEY_SEED_BYTES],
                             const uint8_t secret[TETHER_CLUSTER_SECRET_BYTES],
                             const char *name, size_t len)
{
    uint8_t msg[sizeof(TETHER_KEYS_LABEL_NODE) + TETHER_NODE_NAME_MAX];
    size_t off = sizeof(TETHER_KEYS_LABEL_NODE); /* label and its NUL */

    memcpy(msg, TETHER_KEYS_LABEL_NODE, off);
    memcpy(msg + off, name, len);
    crypto_generichash(seed_out, TETHER_KEY_SEED_BYTES, msg, off + len, secret,
                       TETHER_CLUSTER_SECRET_BYTES);
}

int tether__identity_from_secret(
    tether_identity_t *id, const char *name,
    const uint8_t secret[TETHER_CLUSTER_SECRET_BYTES])
{
    uint8_t seed[TETHER_KEY_SEED_BYTES];
    int rc;

    if (id == NULL)
        return TETHER_EINVAL;
    size_t n = tether__node_name_len(name);
    if (n == 0 || secret == NULL) {
        sodium_memzero(id, sizeof *id);
        return TETHER_EINVAL;
    }
    rc = tether__crypto_init();
    if (rc != 0) {
        sodium_memzero(id, sizeof *id);
        return rc;
    }
    derive_node_seed(seed, secret, name, n);
    rc = tether__identity_from_seed(id, name, seed);
    sodium_memzero(seed, sizeof seed);
    return rc;
}

void tether__identity_fini(tether_identity_t *id)
{
    if (id != NULL)
        sodium_memzero(id, sizeof *id);
}

/*
 * Builds label || NUL || msg in `stack` if it fits, else on the heap.
 * Returns the buffer (stack or heap; *heap says which) and its length in
 * *out_len, or NULL when the heap allocation failed.
 */
static uint8_t *attest_message(uint8_t *stack, size_t stack_len,
                               const uint8_t *msg, size_t len, size_t *out_len,
                               int *heap)
{
    uint8_t *buf = stack;

    *heap = 0;
    if (len > SIZE_MAX - ATTEST_PREFIX_BYTES)
        return NULL;
    *out_len = ATTEST_PREFIX_BYTES + len;
    if (*out_len > stack_len) {
        buf = malloc(*out_len);
        if (buf == NULL)
            return NULL;
        *heap = 1;
    }
    memcpy(buf, TETHER_KEYS_LABEL_ATTEST, ATTEST_PREFIX_BYTES);
    if (len > 0)
        memcpy(buf + ATTEST_PREFIX_BYTES, msg, len);
    return buf;
}

int tether__identity_sign(const tether_identity_t *id, const uint8_t *msg,
                          size_t len, uint8_t sig[TETHER_SIG_BYTES])
{
    uint8_t stack[ATTEST_PREFIX_BYTES + ATTEST_STACK_BYTES];
    size_t blen = 0;
    int heap = 0;

    if (id == NULL || sig == NULL || (msg == NULL && len > 0))
        return TETHER_EINVAL;
    uint8_t *buf = attest_message(stack, sizeof stack, msg, len, &blen, &heap);
    if (buf == NULL)
        return TETHER_ENOMEM;
    crypto_sign_detached(sig, NULL, buf, blen, id->sk);
    if (heap)
        free(buf);
    return 0;
}

int tether__cluster_secret_from_cookie(
    uint8_t secret[TETHER_CLUSTER_SECRET_BYTES], const uint8_t *cookie,
    size_t cookie_len)
{
    if (secret == NULL)
        return TETHER_EINVAL;
    if (cookie == NULL || cookie_len == 0 || cookie_len > TETHER_COOKIE_MAX) {
        sodium_memzero(secret, TETHER_CLUSTER_SECRET_BYTES);
        return TETHER_EINVAL;
    }
    int rc = tether__crypto_init();
    if (rc != 0)
        return rc;
    crypto_generichash(secret, TETHER_CLUSTER_SECRET_BYTES, cookie, cookie_len,
                       (const uint8_t *)TETHER_KEYS_LABEL_COOKIE,
                       sizeof(TETHER_KEYS_LABEL_COOKIE) - 1);
    return 0;
}

int tether__trust_init(tether_trust_t *t)
{
    if (t == NULL)
        return TETHER_EINVAL;
    memset(t, 0, sizeof *t);
    return tether__crypto_init();
}

void tether__trust_fini(tether_trust_t *t)
{
    if (t == NULL)
        return;
    free(t->list);
    sodium_memzero(t, sizeof *t);
}

int tether__trust_set_secret(tether_trust_t *t,
                             const uint8_t secret[TETHER_CLUSTER_SECRET_BYTES])
{
    if (t == NULL || secret == NULL)
        return TETHER_EINVAL;
    memcpy(t->secret, secret, TETHER_CLUSTER_SECRET_BYTES);
    t->has_secret = 1;
    /* Keys derived from a previous secret are no longer trusted. */
    sodium_memzero(t->cache, sizeof t->cache);
    t->cache_len = 0;
    t->cache_next = 0;
    return 0;
}

int tether__trust_set_cookie(tether_trust_t *t, const uint8_t *cookie,
                             size_t cookie_len)
{
    uint8_t secret[TETHER_CLUSTER_SECRET_BYTES];

    if (t == NULL)
        return TETHER_EINVAL;
    int rc = tether__cluster_secret_from_cookie(secret, cookie, cookie_len);
    if (rc == 0)
        rc = tether__trust_set_secret(t, secret);
    sodium_memzero(secret, sizeof secret);
    return rc;
}

/* The entry named (name, len) among `n` entries, or NULL. */
static tether_trust_entry_t *find_entry(tether_trust_entry_t *entries, size_t n,
                                        const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (entries[i].name_len == len &&
            memcmp(entries[i].name, name, len) == 0)
            return &entries[i];
    return NULL;
}

int tether__trust_add_pubkey(tether_trust_t *t, const char *name,
                             const uint8_t pk[TETHER_KEY_PUBLIC_BYTES])
{
    if (t == NULL || pk == NULL)
        return TETHER_EINVAL;
    size_t n = tether__node_name_len(name);
    if (n == 0)
        return TETHER_EINVAL;

    tether_trust_entry_t *e = find_entry(t->list, t->list_len, name, n);
    if (e != NULL)
        return memcmp(e->pk, pk, TETHER_KEY_PUBLIC_BYTES) == 0 ? 0
                                                               : TETHER_EEXIST;
    if (t->list_len == t->list_cap) {
        size_t cap = t->list_cap == 0 ? 8 : t->list_cap * 2;
        if (cap > SIZE_MAX / sizeof *t->list)
            return TETHER_ENOMEM;
        tether_trust_entry_t *grown = realloc(t->list, cap * sizeof *grown);
        if (grown == NULL)
            return TETHER_ENOMEM;
        t->list = grown;
        t->list_cap = cap;
    }
    e = &t->list[t->list_len++];
    memset(e, 0, sizeof *e);
    memcpy(e->name, name, n);
    e->name_len = n;
    memcpy(e->pk, pk, TETHER_KEY_PUBLIC_BYTES);
    return 0;
}

int tether__trust_lookup_n(tether_trust_t *t, const char *name, size_t len,
                           uint8_t pk_out[TETHER_KEY_PUBLIC_BYTES])
{
    uint8_t seed[TETHER_KEY_SEED_BYTES];
    uint8_t sk[TETHER_KEY_SECRET_BYTES];

    if (t == NULL || pk_out == NULL || !name_bytes_ok(name, len))
        return TETHER_EINVAL;

    const tether_trust_entry_t *e = find_entry(t->list, t->list_len, name, len);
    if (e == NULL)
        e = find_entry(t->cache, t->cache_len, name, len);
    if (e != NULL) {
        memcpy(pk_out, e->pk, TETHER_KEY_PUBLIC_BYTES);
        return 0;
    }
    if (!t->has_secret)
        return TETHER_ENOTFOUND;

    /* Derive, then remember it in the next cache slot (oldest first out). */
    derive_node_seed(seed, t->secret, name, len);
    crypto_sign_seed_keypair(pk_out, sk, seed);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk, sizeof sk);

    tether_trust_entry_t *slot = &t->cache[t->cache_next];
    memset(slot, 0, sizeof *slot);
    memcpy(slot->name, name, len);
    slot->name_len = len;
    memcpy(slot->pk, pk_out, TETHER_KEY_PUBLIC_BYTES);
    t->cache_next = (t->cache_next + 1) % TETHER_TRUST_DERIVED_CACHE;
    if (t->cache_len < TETHER_TRUST_DERIVED_CACHE)
        t->cache_len++;
    return 0;
}

int tether__trust_lookup(tether_trust_t *t, const char *name,
                         uint8_t pk_out[TETHER_KEY_PUBLIC_BYTES])
{
    size_t n = tether__node_name_len(name);
    if (n == 0)
        return TETHER_EINVAL;
    return tether__trust_lookup_n(t, name, n, pk_out);
}

int tether__trust_verify_signed(tether_trust_t *t, const char *name,
                                const uint8_t *msg, size_t len,
                                const uint8_t sig[TETHER_SIG_BYTES])
{
    uint8_t pk[TETHER_KEY_PUBLIC_BYTES];
    uint8_t stack[ATTEST_PREFIX_BYTES + ATTEST_STACK_BYTES];
    size_t blen = 0;
    int heap = 0;

    if (sig == NULL || (msg == NULL && len > 0))
        return TETHER_EINVAL;
    int rc = tether__trust_lookup(t, name, pk);
    if (rc != 0)
        return rc;
    uint8_t *buf = attest_message(stack, sizeof stack, msg, len, &blen, &heap);
    if (buf == NULL)
        return TETHER_ENOMEM;
    rc =
        crypto_sign_verify_detached(sig, buf, blen, pk) == 0 ? 0 : TETHER_EAUTH;
    if (heap)
        free(buf);
    return rc;
}

int tether__keys_from_secret(tether_identity_t *id, tether_trust_t *trust,
                             const char *name,
                             const uint8_t secret[TETHER_CLUSTER_SECRET_BYTES])
{
    if (id == NULL || trust == NULL)
        return TETHER_EINVAL;
    int rc = tether__trust_init(trust);
    if (rc != 0)
        goto fail;
    rc = tether__trust_set_secret(trust, secret);
    if (rc != 0)
        goto fail;
    rc = tether__identity_from_secret(id, name, secret);
    if (rc != 0)
        goto fail;
    return 0;

fail:
    tether__trust_fini(trust);
    tether__identity_fini(id);
    return rc;
}

int tether__keys_from_cookie(tether_identity_t *id, tether_trust_t *trust,
                             const char *name, const uint8_t *cookie,
                             size_t cookie_len)
{
    uint8_t secret[TETHER_CLUSTER_SECRET_BYTES];

    if (id == NULL || trust == NULL)
        return TETHER_EINVAL;
    int rc = tether__cluster_secret_from_cookie(secret, cookie, cookie_len);
    if (rc == 0)
        rc = tether__keys_from_secret(id, trust, name, secret);
    else {
        tether__identity_fini(id);
        memset(trust, 0, sizeof *trust);
    }
    sodium_memzero(secret, sizeof secret);
    return rc;
}
