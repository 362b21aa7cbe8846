/*
 * core/maps.h: replicated last-writer-wins maps (seed 003's replicated
 * maps), an engine module with message type TETHER_MSG_MAPS (0x24).
 *
 * Store. The maps keep their own store, not an owner table
 * (core/owner_table.h): an owner table holds entries owned by the node
 * that wrote them, drops them when that node goes down, and syncs each
 * owner's full set; a map entry belongs to nobody (the last writer of a
 * key wins, whoever it was, and the value outlives the writer), and a map
 * of 100,000 keys must converge by exchanging only what differs. So each
 * map is a chained hash table by the key's canonical bytes (the shells
 * encode keys with tether_ring_canon(), so a BEAM node and a C-node write
 * identical keys), one entry per key whatever the number of rewrites, and
 * 4096 "fine" digest buckets (an XOR of the entry hashes falling in each,
 * kept up to date on every change).
 *
 * Semantics. A write (put or remove) is stamped once with the engine's
 * hybrid logical clock, applied locally and sent to every known host of
 * the map with the same stamp; everyone keeps, per key, the write with
 * the greatest (Stamp, NodeName) (node names compared as bytes). So the
 * hosts that have seen the same writes hold the same contents whatever
 * the order of arrival. A remove is a tombstone ordered the same way;
 * tombstones are collected tombstone_ttl_ms after their stamp's wall time
 * (a late tombstone older than that is not stored again).
 *
 * Messages (ETF; Name and Key are binaries holding a term's canonical
 * bytes, Val a binary holding a term's external format):
 *   {map_hosts, [Name]}           the maps the sender hosts, all of them:
 *                                 sent on session up, member up and when
 *                                 the sender starts or stops hosting one
 *   {map_put, Name, [{Key, Stamp, Node, Val | remove}]}
 *                                 writes (a local write, or the entries an
 *                                 anti-entropy round found different)
 *   {map_digest, Name, Bits, Hashes}
 *                                 the sender's digest: 2^Bits buckets of
 *                                 64-bit XORs (Hashes: 8 bytes each, big
 *                                 endian); a bucket holds the keys whose
 *                                 key hash starts with its Bits bits
 *   {map_hashes, Name, Bits, [{Bucket, Pairs}]}
 *                                 the answer for the buckets that differ:
 *                                 the answerer's (KeyHash, EntryHash)
 *                                 pairs of each (16 bytes a pair)
 *   {map_pull, Name, KeyHashes}   "send me your entries of these key
 *                                 hashes" (8 bytes each)
 * Anti-entropy: when a host learns that a peer hosts one of its maps
 * (map_hosts) and every sync_ms, it sends the peer its digest; the peer
 * answers map_hashes for the differing buckets (or, holding many more
 * keys, its own finer digest), and the first sends the entries the pairs
 * lack (map_put) and pulls the keys whose pair differs (map_pull). Only
 * the differing buckets' pairs and the differing entries cross: 10
 * changed keys of 100,000 cost about 50 KB both ways, both digests
 * included (test_maps.c prints it).
 *
 * Shell. Reads (tether_maps_get/_visit/_size) are made under the shell's
 * read lock; every change of a map is made between cfg->wlock and
 * cfg->wunlock, and cfg->changed is called there for every change of what
 * a get answers (so a shell can keep its own copy, as the NIF keeps terms).
 * A map with notify on also queues a TETHER_ACT_MAP action per such change
 * (for subscribers).
 *
 * Persistence is the shell's (the engine is sans-IO). For a map hosted
 * with persist on, every write applied here (local, received, or found by
 * anti-entropy) yields a record, ETF {Key, Stamp, Node, Val | remove} (the
 * entry as map_put carries it): a TETHER_ACT_MAP_STORE action, or, for a
 * local write on the direct path, handed to the caller (see
 * tether_maps_write). The shell appends the records to a log, feeds them
 * back with tether_maps_load() after hosting the map again, and compacts
 * the log with tether_maps_dump(). Records are applied by the same rule as
 * writes, so their order in the log does not matter.
 */
#ifndef TETHER_CORE_MAPS_H
#define TETHER_CORE_MAPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/module.h"
#include "tether/error.h"

#define TETHER_MAPS_KEY_MAX             (64u << 10) /* canonical bytes of a key */
#define TETHER_MAPS_NAME_MAX            1024 /* canonical bytes of a name */
#define TETHER_MAPS_VALUE_MAX           (4u << 20) /* ETF bytes of a value */
#define TETHER_MAPS_MAX                 256        /* maps one node hosts */
#define TETHER_MAPS_DEFAULT_SYNC_MS     5000
#define TETHER_MAPS_DEFAULT_TOMB_TTL_MS (24u * 3600u * 1000u)
#define TETHER_MAPS_FINE_BITS           12 /* digest buckets kept: 4096 */
#define TETHER_MAPS_BATCH_BYTES         (1u << 20) /* a map_put carries about this */

typedef struct tether_maps tether_maps_t;
typedef struct tether_map tether_map_t;

/*
 * The shell's hooks. changed(): under wlock, once per change of what
 * tether_maps_get() answers for key: val is the new value (ETF), or NULL
 * when the key is gone (removed, collected or its map dropped).
 */
typedef struct tether_maps_config {
    uint32_t sync_ms; /* 0: TETHER_MAPS_DEFAULT_SYNC_MS */
    void (*wlock)(void *lock_ctx);
    void (*wunlock)(void *lock_ctx);
    void *lock_ctx;
    void (*changed)(void *ctx, tether_map_t *map, const uint8_t *key,
                    size_t klen, const uint8_t *val, size_t vlen);
    void *ctx;
} tether_maps_config_t;

/* A map's options (tether_maps_host). */
typedef struct tether_map_opts {
    uint64_t tombstone_ttl_ms; /* 0: TETHER_MAPS_DEFAULT_TOMB_TTL_MS */
    int persist;               /* 1: yield a record per applied write */
} tether_map_opts_t;

typedef struct tether_maps_stats {
    uint64_t applied;    /* writes that changed an entry */
    uint64_t stale;      /* writes older than the entry held */
    uint64_t not_hosted; /* messages for a map we do not host */
    uint64_t bad;        /* undecodable messages or entries */
    uint64_t ae_rounds;  /* digests sent */
    uint64_t ae_bytes;   /* bytes of digests, hashes, pulls and the
                            entries they sent */
    uint64_t ae_entries; /* entries sent by anti-entropy */
    uint64_t tombs_collected;
    uint64_t store_failed; /* records of persisted maps not made (memory) */
} tether_maps_stats_t;

/* Creates the maps module on eng (the engine frees it). Returns 0,
 * TETHER_EINVAL or TETHER_ENOMEM, or the registration's error. */
TETHER_MUST_CHECK int tether_maps_new(const tether_maps_config_t *cfg,
                                      tether_engine_t *eng,
                                      tether_maps_t **out);

/*
 * Hosts map `name` (canonical term bytes) here: idempotent (the options of
 * a map hosted already are kept). Tells the members. *out (optional) gets
 * the map. Returns 0, TETHER_EINVAL, TETHER_ETOOBIG (TETHER_MAPS_MAX
 * maps), TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_maps_host(tether_maps_t *m, const uint8_t *name,
                                       size_t nlen,
                                       const tether_map_opts_t *opts,
                                       tether_map_t **out);
/* Stops hosting it here (its entries go, changed() is called for each
 * live one). Returns 0 or TETHER_ENOTFOUND. */
int tether_maps_unhost(tether_maps_t *m, const uint8_t *name, size_t nlen);
/* The hosted map of that name, or NULL (read under the read lock). */
tether_map_t *tether_maps_find(const tether_maps_t *m, const uint8_t *name,
                               size_t nlen);

/*
 * Writes key -> val (val NULL: removes key) in map, stamped now, and sends
 * the write to the map's hosts. With `sealed` set, on the direct path
 * (tether_engine_seal(): each envelope that is to go now goes to sealed();
 * what a defer partition holds is queued in the engine); else as SEND
 * actions. On the direct path, a persisted map's record of the write goes
 * to sealed() first, with peer NULL (the caller persists it before it
 * answers its own caller); else it is a TETHER_ACT_MAP_STORE action.
 * Returns 0, TETHER_EINVAL (a key or value that is not one
 * valid term, no funs), TETHER_ETOOBIG (TETHER_MAPS_KEY_MAX,
 * TETHER_MAPS_VALUE_MAX), TETHER_ENOMEM, or a stamp error.
 */
TETHER_MUST_CHECK int tether_maps_write(tether_maps_t *m, tether_map_t *map,
                                        const uint8_t *key, size_t klen,
                                        const uint8_t *val, size_t vlen,
                                        tether_engine_sealed_t sealed,
                                        void *ctx);

/*
 * Applies one persisted record (the bytes of a TETHER_ACT_MAP_STORE) to
 * map, as a received write but sent to no one and yielding no record; the
 * clock moves past its stamp. Returns 0 (applied or stale), TETHER_EPROTO
 * (not a record: nothing changes) or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_maps_load(tether_map_t *map, const uint8_t *rec,
                                       size_t len);

/* What tether_maps_dump() calls per record; 0 or a negative error. */
typedef int (*tether_maps_put_fn)(void *ctx, const uint8_t *rec, size_t len);

/* Calls put with the record of every entry of map (tombstones included:
 * a compacted log). Returns 0, put's error, or TETHER_ENOMEM. */
TETHER_MUST_CHECK int tether_maps_dump(const tether_map_t *map,
                                       tether_maps_put_fn put, void *ctx);

/* Under the read lock: 1 and the value of key (pointing into the map,
 * valid until the next change), or 0. */
int tether_maps_get(const tether_map_t *map, const uint8_t *key, size_t klen,
                    const uint8_t **val, size_t *vlen);
/* Under the read lock: calls fn for every live key, in no set order. */
void tether_maps_visit(const tether_map_t *map,
                       void (*fn)(void *ctx, const uint8_t *key, size_t klen,
                                  const uint8_t *val, size_t vlen),
                       void *ctx);
/* Live keys of map. */
size_t tether_maps_size(const tether_map_t *map);
/* The map's name (canonical bytes). */
const uint8_t *tether_maps_name(const tether_map_t *map, size_t *len);
/* A slot for the shell's own data about map (the NIF's term copy). */
void **tether_maps_shell(tether_map_t *map);
/* Turns TETHER_ACT_MAP actions for map on or off (off at start). */
void tether_maps_set_notify(tether_map_t *map, int on);
int tether_maps_notify(const tether_map_t *map);
/* The number of maps hosted and the i-th (for shells that list them). */
size_t tether_maps_count(const tether_maps_t *m);
tether_map_t *tether_maps_at(const tether_maps_t *m, size_t i);

const tether_maps_stats_t *tether_maps_stats(const tether_maps_t *m);

/* For tests and the simulator: the XOR of every entry hash of map
 * (tombstones included), equal on two hosts holding the same writes, the
 * number of entries (tombstones included) and the nodes known to host it. */
uint64_t tether__maps_digest(const tether_map_t *map);
size_t tether__maps_entries(const tether_map_t *map);
size_t tether__maps_hosts(const tether_map_t *map);

#endif /* TETHER_CORE_MAPS_H */
