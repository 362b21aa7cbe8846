/*
 * core/keys.h: node identity keys (Ed25519) and the cluster trust set.
 *
 * Every tether node has an Ed25519 identity key. A cluster decides whom it
 * trusts in one of two ways, which may be combined:
 *
 *   - an explicit list of (node name, public key) pairs, each added with
 *     tether__trust_add_pubkey() (keys made by `tether_cnode keygen`);
 *   - a 32-byte cluster secret. Each node's identity seed derives from
 *     (secret, node name) with keyed BLAKE2b (crypto_generichash) under the
 *     label TETHER_KEYS_LABEL_NODE, so any holder of the secret computes,
 *     and therefore trusts, any member's public key from its name alone.
 *
 * With no configuration at all the cluster secret derives from the Erlang
 * cookie: BLAKE2b keyed with the fixed label TETHER_KEYS_LABEL_COOKIE over
 * the cookie bytes (tether__cluster_secret_from_cookie). That is as strong
 * as the cookie, which already guards the distribution connection.
 *
 * Sans-IO: nothing here reads a clock, a socket, a file or a random
 * source. Seeds are passed in by the caller; key files are the C-node's
 * (cnode/keyfile.h).
 *
 * Secrets (identity secret keys, seeds, cluster secrets) are wiped with
 * sodium_memzero() in every _fini and on every error path that held one.
 *
 * Thread safety: tether__crypto_init() is thread-safe. An identity is
 * read-only after init and may be shared between threads. A trust set
 * caches derived keys on lookup, so it must be owned by one thread (one
 * engine) at a time.
 */
#ifndef TETHER_CORE_KEYS_H
#define TETHER_CORE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "tether/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sizes, equal to libsodium's crypto_sign_* and crypto_generichash ones. */
#define TETHER_KEY_SEED_BYTES       32 /* Ed25519 seed (crypto_sign_SEEDBYTES) */
#define TETHER_KEY_PUBLIC_BYTES     32 /* crypto_sign_PUBLICKEYBYTES */
#define TETHER_KEY_SECRET_BYTES     64 /* crypto_sign_SECRETKEYBYTES */
#define TETHER_SIG_BYTES            64 /* crypto_sign_BYTES */
#define TETHER_CLUSTER_SECRET_BYTES 32

/* Longest node name in bytes, without the NUL (an Erlang atom's limit). */
#define TETHER_NODE_NAME_MAX 255

/*
 * Length of the NUL-terminated node name `name`, or 0 when it is NULL,
 * empty or longer than TETHER_NODE_NAME_MAX: the one check of a node name
 * every core module makes.
 */
size_t tether__node_name_len(const char *name);

/* Derived keys a trust set remembers (oldest replaced first). */
#define TETHER_TRUST_DERIVED_CACHE 64

/*
 * Domain-separation labels. Each is used for exactly one purpose, so a
 * hash or signature made for one purpose is never valid for another.
 * COOKIE is the BLAKE2b key (16..64 bytes) when hashing the cookie; NODE
 * prefixes the node name when deriving an identity seed from the cluster
 * secret; ATTEST prefixes every message signed by tether__identity_sign.
 */
#define TETHER_KEYS_LABEL_COOKIE "tether/v1/cluster-secret-from-cookie"
#define TETHER_KEYS_LABEL_NODE   "tether/v1/node-identity-seed"
#define TETHER_KEYS_LABEL_ATTEST "tether/v1/attestation"

/*
 * Initializes libsodium once per process. Idempotent and thread-safe
 * (pthread_once); every _init function in keys.c and envelope.c calls it,
 * so callers need not. Returns 0, or TETHER_EIO if sodium_init() failed.
 */
TETHER_MUST_CHECK int tether__crypto_init(void);

/*
 * A node's identity: its name and Ed25519 key pair. The struct is caller-
 * owned (stack or embedded); fields are read-only after init. `sk` is the
 * secret and is wiped by tether__identity_fini().
 */
typedef struct tether_identity {
    char name[TETHER_NODE_NAME_MAX + 1]; /* NUL-terminated node name */
    size_t name_len;                     /* strlen(name), 1..255 */
    uint8_t pk[TETHER_KEY_PUBLIC_BYTES]; /* public key */
    uint8_t sk[TETHER_KEY_SECRET_BYTES]; /* secret key (seed || pk) */
} tether_identity_t;

/*
 * Makes an identity for `name` (NUL-terminated, 1..255 bytes) from a
 * caller-given 32-byte seed (crypto_sign_seed_keypair). The seed is not
 * kept; the caller wipes its own copy. Returns 0, or TETHER_EINVAL for a bad
 * name or NULL argument (the struct is then wiped).
 */
TETHER_MUST_CHECK int
tether__identity_from_seed(tether_identity_t *id, const char *name,
                           const uint8_t seed[TETHER_KEY_SEED_BYTES]);

/*
 * Makes the identity of node `name` as derived from the cluster secret:
 * seed = BLAKE2b-256(key = secret, TETHER_KEYS_LABEL_NODE || 0x00 || name).
 * Every holder of the secret derives the same public key for `name`.
 * Returns 0 or TETHER_EINVAL (struct wiped).
 */
TETHER_MUST_CHECK int
tether__identity_from_secret(tether_identity_t *id, const char *name,
                             const uint8_t secret[TETHER_CLUSTER_SECRET_BYTES]);

/* Wipes the whole identity, secret key included. NULL is a no-op. */
void tether__identity_fini(tether_identity_t *id);

/*
 * Signs `msg` (any length, may be NULL when len is 0) with the identity
 * key, for proofs a node shows to third parties (fence tokens, gossiped
 * registrations). The signature covers TETHER_KEYS_LABEL_ATTEST || 0x00 ||
 * msg, so it can never be mistaken for a hello signature. Writes 64 bytes
 * to sig. Returns 0, TETHER_EINVAL or TETHER_ENOMEM (messages over 4 KiB
 * are copied to the heap once to be prefixed).
 */
TETHER_MUST_CHECK int tether__identity_sign(const tether_identity_t *id,
                                            const uint8_t *msg, size_t len,
                                            uint8_t sig[TETHER_SIG_BYTES]);

/*
 * Derives the cluster secret from an Erlang cookie (cookie_len bytes, not
 * NUL-terminated, 1..TETHER_COOKIE_MAX): BLAKE2b-256 keyed with
 * TETHER_KEYS_LABEL_COOKIE over the cookie. Returns 0 or TETHER_EINVAL.
 */
#define TETHER_COOKIE_MAX 1024
TETHER_MUST_CHECK int
tether__cluster_secret_from_cookie(uint8_t secret[TETHER_CLUSTER_SECRET_BYTES],
                                   const uint8_t *cookie, size_t cookie_len);

/* One trusted (name, public key) pair. */
typedef struct tether_trust_entry {
    char name[TETHER_NODE_NAME_MAX + 1];
    size_t name_len;
    uint8_t pk[TETHER_KEY_PUBLIC_BYTES];
} tether_trust_entry_t;

/*
 * The set of identities a node trusts. Caller-owned struct; use only the
 * functions below on it. Explicit entries take precedence over keys derived
 * from the secret. Derived keys are cached (at most
 * TETHER_TRUST_DERIVED_CACHE, oldest replaced) so a name is derived once.
 */
typedef struct tether_trust {
    tether_trust_entry_t *list; /* explicit entries, heap, owned */
    size_t list_len, list_cap;
    int has_secret;                              /* 1 if `secret` is set */
    uint8_t secret[TETHER_CLUSTER_SECRET_BYTES]; /* wiped by _fini */
    tether_trust_entry_t cache[TETHER_TRUST_DERIVED_CACHE];
    size_t cache_len, cache_next; /* used slots; next slot to replace */
} tether_trust_t;

/*
 * Initializes an empty trust set (trusts nobody). Calls
 * tether__crypto_init(). Returns 0 or TETHER_EIO.
 */
TETHER_MUST_CHECK int tether__trust_init(tether_trust_t *t);

/*
 * Frees the explicit list and wipes the secret and the cache; the struct
 * may be initialized again. NULL is a no-op.
 */
void tether__trust_fini(tether_trust_t *t);

/*
 * Makes the set trust every name through the cluster secret (copied; the
 * caller wipes its own copy). Replaces a secret set before and empties the
 * derived cache. Returns 0 or TETHER_EINVAL.
 */
TETHER_MUST_CHECK int
tether__trust_set_secret(tether_trust_t *t,
                         const uint8_t secret[TETHER_CLUSTER_SECRET_BYTES]);

/* tether__trust_set_secret() with the secret derived from a cookie. */
TETHER_MUST_CHECK int tether__trust_set_cookie(tether_trust_t *t,
                                               const uint8_t *cookie,
                                               size_t cookie_len);

/*
 * Adds an explicit trusted key for `name`. Returns 0 (also when the same
 * pair is already there), TETHER_EEXIST if `name` already has a different
 * key, TETHER_EINVAL for a bad name, TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int
tether__trust_add_pubkey(tether_trust_t *t, const char *name,
                         const uint8_t pk[TETHER_KEY_PUBLIC_BYTES]);

/*
 * Finds the public key trusted for `name`: an explicit entry, else the key
 * derived from the secret (then cached). Writes 32 bytes to pk_out.
 * Returns 0, TETHER_ENOTFOUND (no entry and no secret), TETHER_EINVAL.
 */
TETHER_MUST_CHECK int
tether__trust_lookup(tether_trust_t *t, const char *name,
                     uint8_t pk_out[TETHER_KEY_PUBLIC_BYTES]);

/*
 * Same as tether__trust_lookup() for a name given as bytes (name_len
 * 1..255, no NUL inside), as parsed off the wire.
 */
TETHER_MUST_CHECK int
tether__trust_lookup_n(tether_trust_t *t, const char *name, size_t name_len,
                       uint8_t pk_out[TETHER_KEY_PUBLIC_BYTES]);

/*
 * Verifies a signature made by tether__identity_sign() of node `name` over
 * `msg`. Returns 0 if valid, TETHER_ENOTFOUND if `name` is not trusted,
 * TETHER_EAUTH if the signature does not verify, TETHER_EINVAL, ENOMEM.
 */
TETHER_MUST_CHECK int
tether__trust_verify_signed(tether_trust_t *t, const char *name,
                            const uint8_t *msg, size_t len,
                            const uint8_t sig[TETHER_SIG_BYTES]);

/*
 * Convenience set-ups used by the shells: initialize `trust` from the
 * cluster secret (or the cookie) and derive our own identity `id` for
 * `name` from it. On error both are wiped and left finalized. Returns 0,
 * TETHER_EINVAL, TETHER_EIO.
 */
TETHER_MUST_CHECK int
tether__keys_from_secret(tether_identity_t *id, tether_trust_t *trust,
                         const char *name,
                         const uint8_t secret[TETHER_CLUSTER_SECRET_BYTES]);
TETHER_MUST_CHECK int tether__keys_from_cookie(tether_identity_t *id,
                                               tether_trust_t *trust,
                                               const char *name,
                                               const uint8_t *cookie,
                                               size_t cookie_len);

#ifdef __cplusplus
}
#endif

#endif /* TETHER_CORE_KEYS_H */
