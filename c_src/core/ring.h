/*
 * core/ring.h: the consistent-hash ring: where a key lives.
 *
 * Keys map to a fixed number of shards (a power of two, default 64); a
 * shard's owners are the members in rendezvous (highest random weight)
 * order for that shard, precomputed into a table whenever the members
 * change, so placing a key costs a hash and an index whatever the number
 * of members. A shard's primary (its first owner) owns it. Adding a
 * member moves to it only the shards it now tops (about S/(N+1)) and
 * never moves a shard between two members that both stay.
 *
 * Two uses of one table type:
 *   - standalone (tether_ring_new(): a program's own ring, the member set
 *     it gives, as ExHashRing or libring are used);
 *   - the cluster ring (tether_ring_module_new(): an engine module whose
 *     members follow the engine's live membership; each change is a new
 *     generation, and this node's gained and lost shards reach the shell
 *     as TETHER_ACT_SHARD actions). Its members must agree on the shard
 *     count: the module declares it as the engine parameter "ring_size",
 *     so a join between nodes of different sizes is refused.
 *
 * Keys. shard(Key) must be the same on every member, BEAM or C, every OTP
 * version and architecture: a key is one term in external format, hashed
 * through one canonical encoding (tether_ring_canon()): the external term
 * format with every choice fixed: atoms as UTF-8 (SMALL_)ATOM_UTF8_EXT,
 * integers in the smallest of SMALL_INTEGER_EXT, INTEGER_EXT and a
 * minimal SMALL_BIG/LARGE_BIG_EXT, floats as NEW_FLOAT_EXT, full-byte
 * bitstrings as BINARY_EXT, strings as lists of integers, tuples as
 * SMALL_TUPLE_EXT up to 255 elements, map pairs sorted by their encoded
 * keys, pids, ports and references in their newest forms, export funs
 * kept; closures are refused (they have no stable form). The hash is
 * SipHash-2-4 (libsodium's crypto_shorthash) under the fixed key
 * TETHER_RING_HASH_KEY, and shard = hash mod shards. The fast paths
 * (binaries, atoms, integers) write the same canonical bytes without a
 * walk. Golden vectors (test/ring_golden.etf) pin it across releases.
 *
 * Owner weights: a member's weight for shard s is splitmix64(h + (s + 1) *
 * 0x9e3779b97f4a7c15), h the canonical hash of the member's name as an
 * atom; ties (astronomically rare) go to the name that sorts first.
 *
 * Threads: a table is changed only by its owner (the engine's
 * serialization for the cluster ring); a shell that reads the cluster ring
 * from other threads passes lock hooks, and every change is made between
 * them (a rebuild makes the new table aside and swaps it in).
 */
#ifndef TETHER_CORE_RING_H
#define TETHER_CORE_RING_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "tether/error.h"

#define TETHER_RING_DEFAULT_SHARDS 64
#define TETHER_RING_SHARDS_MAX     (1u << 16)
#define TETHER_RING_MEMBERS_MAX    65535      /* a standalone ring */
#define TETHER_RING_TOP            8          /* owners precomputed per shard */
#define TETHER_RING_KEY_MAX        (1u << 20) /* canonical bytes of a key */
#define TETHER_RING_HASH_KEY       "tether/ring/v1\0" /* 16 bytes */

typedef struct tether_ring tether_ring_t;

/* ------------------------------------------------------------- keys */

/*
 * Writes the canonical encoding (see above) of the one term etf[0..len)
 * (external format, version byte first) into out (cap bytes) and its
 * length into *out_len. Bounded: at most TETHER_ETF_DEPTH_MAX levels of
 * nesting. Returns 0, TETHER_EPROTO (not one term, a closure, trailing
 * bytes), TETHER_ETOOBIG (more than cap or TETHER_RING_KEY_MAX bytes).
 */
TETHER_MUST_CHECK int tether_ring_canon(const uint8_t *etf, size_t len,
                                        uint8_t *out, size_t cap,
                                        size_t *out_len);
/* The ring hash of a term in external format (through the canonical
 * encoding). Returns 0, TETHER_EPROTO or TETHER_ETOOBIG. */
TETHER_MUST_CHECK int tether_ring_hash_term(const uint8_t *etf, size_t len,
                                            uint64_t *hash);
/* The ring hash of canonical bytes (as tether_ring_canon() wrote them). */
uint64_t tether_ring_hash_canon(const uint8_t *canon, size_t len);
/* The fast paths: the same hash as tether_ring_hash_term() gives for the
 * binary of those bytes, the atom of that name (UTF-8, or Latin-1 when
 * latin1 is set; TETHER_EPROTO above 255 characters), and that integer. */
uint64_t tether_ring_hash_binary(const uint8_t *bytes, size_t len);
TETHER_MUST_CHECK int tether_ring_hash_atom(const char *name, size_t len,
                                            int latin1, uint64_t *hash);
uint64_t tether_ring_hash_int(int64_t v);
/* The shard of a hash in a ring of `shards` (a power of two). */
uint32_t tether_ring_shard_of_hash(uint64_t hash, uint32_t shards);

/*
 * The canonical encoding written piece by piece, by a shell that walks its
 * own terms instead of encoding them first (the NIF does, for tuples and
 * lists, to skip term_to_binary): the same bytes tether_ring_canon()
 * makes of the same term, so the same hash. Start with
 * tether_ring_key_init(); a tuple is its header then its elements; a
 * proper list of n elements is tether_ring_key_list(n), the elements,
 * then tether_ring_key_nil() (as [] alone). Each put returns 0 or
 * TETHER_ETOOBIG once the key outgrows the buffer (or TETHER_EPROTO for
 * an atom over 255 characters): the shell then takes the general path.
 */
#define TETHER_RING_KEY_FAST 512
typedef struct tether_ring_key {
    uint8_t b[TETHER_RING_KEY_FAST];
    size_t len;
} tether_ring_key_t;

void tether_ring_key_init(tether_ring_key_t *k);
TETHER_MUST_CHECK int tether_ring_key_atom(tether_ring_key_t *k,
                                           const char *name, size_t len,
                                           int latin1);
TETHER_MUST_CHECK int tether_ring_key_int(tether_ring_key_t *k, int64_t v);
TETHER_MUST_CHECK int tether_ring_key_binary(tether_ring_key_t *k,
                                             const uint8_t *bytes, size_t len);
TETHER_MUST_CHECK int tether_ring_key_tuple(tether_ring_key_t *k,
                                            size_t arity);
TETHER_MUST_CHECK int tether_ring_key_list(tether_ring_key_t *k, size_t n);
TETHER_MUST_CHECK int tether_ring_key_nil(tether_ring_key_t *k);
uint64_t tether_ring_key_hash(const tether_ring_key_t *k);

/* ------------------------------------------------------- a ring table */

/* A ring of `shards` (a power of two, 1..TETHER_RING_SHARDS_MAX) with no
 * members. Returns 0, TETHER_EINVAL or TETHER_ENOMEM. */
TETHER_MUST_CHECK int tether_ring_new(uint32_t shards, tether_ring_t **out);
/* A copy of r (for functional updates). Returns 0 or TETHER_ENOMEM. */
TETHER_MUST_CHECK int tether_ring_copy(const tether_ring_t *r,
                                       tether_ring_t **out);
void tether_ring_free(tether_ring_t *r);
/*
 * Sets the members (node names, 1..255 bytes; duplicates refused) and
 * rebuilds the table. Returns 0, TETHER_EINVAL (a bad or repeated name),
 * TETHER_ETOOBIG (more than TETHER_RING_MEMBERS_MAX) or TETHER_ENOMEM (the
 * ring is unchanged then).
 */
TETHER_MUST_CHECK int
tether_ring_set_members(tether_ring_t *r, const char *const *names, size_t n);
/* Adds or removes one member and rebuilds. Returns 0, TETHER_EEXIST (add:
 * already a member), TETHER_ENOTFOUND (remove: none), or as above. */
TETHER_MUST_CHECK int tether_ring_add(tether_ring_t *r, const char *name);
TETHER_MUST_CHECK int tether_ring_remove(tether_ring_t *r, const char *name);

uint32_t tether_ring_shards(const tether_ring_t *r);
/* The members, sorted; fills up to cap pointers (valid until the ring
 * changes) and returns the count. */
size_t tether_ring_members(const tether_ring_t *r, const char **out,
                           size_t cap);
/* Member i of the sorted members (NULL past the last). */
const char *tether_ring_member(const tether_ring_t *r, size_t i);
/* The primary of shard (NULL when the ring has no members or shard is out
 * of range). */
const char *tether_ring_primary(const tether_ring_t *r, uint32_t shard);
/* The index (into tether_ring_members()) of shard's primary, or -1. */
long tether_ring_primary_index(const tether_ring_t *r, uint32_t shard);
/* As tether_ring_owners(), as indexes into tether_ring_members(). */
size_t tether_ring_owner_indexes(const tether_ring_t *r, uint32_t shard,
                                 size_t n, size_t *out);
/* Up to n distinct owners of shard, best first, into out (valid until the
 * ring changes); returns how many (all members when fewer than n; 0 for a
 * shard out of range). */
size_t tether_ring_owners(const tether_ring_t *r, uint32_t shard, size_t n,
                          const char **out);

/* ---------------------------------------------- the cluster ring module */

typedef struct tether_ring_config {
    uint32_t shards; /* 0: TETHER_RING_DEFAULT_SHARDS */
    /* Optional write-lock hooks (both or neither), see Threads above. */
    void (*wlock)(void *lock_ctx);
    void (*wunlock)(void *lock_ctx);
    /* Optional: called under the write lock once a new table is in, for a
     * shell's caches of it (the NIF keeps each member's atom). */
    void (*swapped)(void *lock_ctx, const tether_ring_t *table);
    void *lock_ctx;
} tether_ring_config_t;

typedef struct tether_ring_module tether_ring_module_t;

/*
 * Creates the cluster ring as a module of eng (which owns it from then
 * on): its members follow the engine's live members, rebuilt once per
 * change of the member set. Declares the engine parameter "ring_size".
 * Returns 0, TETHER_EINVAL, TETHER_ENOMEM or TETHER_EEXIST (a ring exists).
 */
TETHER_MUST_CHECK int tether_ring_module_new(const tether_ring_config_t *cfg,
                                             tether_engine_t *eng,
                                             tether_ring_module_t **out);
/* The current table (read it under the shell's read lock; it changes on
 * the engine's thread only, between the lock hooks). */
const tether_ring_t *tether_ring_module_table(const tether_ring_module_t *m);
/* The generation: 0 at start, one more per change of the member set. */
uint64_t tether_ring_module_generation(const tether_ring_module_t *m);
/* 1 if we are shard's primary. Reads only. */
int tether_ring_module_owns(const tether_ring_module_t *m, uint32_t shard);

#endif /* TETHER_CORE_RING_H */
