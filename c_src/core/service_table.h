/*
 * core/service_table.h: the cluster service table, an engine module (the
 * services of Malla.Node, the Elixir node library seed 002 describes:
 * many instances of one service, at most one per node). Not to be
 * confused with a C gen-service (tether/gen_service.h), a process on a
 * C-node that answers gen_server calls; a C-node announces itself as an
 * instance here with tether_cluster_service_register().
 *
 * Each node is authoritative for its own instances: only the owner adds,
 * replaces or removes an instance it owns, and every other node holds a
 * copy learnt from the owner's messages. A service name, a pid and a
 * meta are opaque byte strings (their external term format, version byte
 * first; the shells make them, the names canonically, so equal terms give
 * equal bytes). Registering a name again on the same node replaces its pid
 * and meta.
 *
 * Storage and replication are an owner table (core/owner_table.h, engine
 * type TETHER_MSG_SERVICE, tag prefix "svc"): entries keyed by NameEtf,
 * valued PidEtf, meta MetaEtf; full exchanges when sessions come up and
 * members come back, digests every digest_ms, instances of a member that
 * goes down or leaves dropped at once. A peer's instance is taken only if
 * its name, pid and meta are each one valid term and the pid a pid.
 *
 * Events: every instance that appears, changes (re-registration) or goes,
 * ours included, is told to the shell as a TETHER_ACT_SERVICE action
 * (up: it appeared or changed; down: it went; peer: its node).
 *
 * Threads: the table runs under the engine's serialization. A shell that
 * reads from other threads (the NIF's lookups) passes wlock/wunlock hooks:
 * every change of the table is made between them, and the read-only calls
 * (lookup, local, foreach, names, count, digest) may then run concurrently
 * under the matching read lock.
 */
#ifndef TETHER_CORE_SERVICE_TABLE_H
#define TETHER_CORE_SERVICE_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "tether/error.h"

#define TETHER_SVC_NAME_MAX       4096        /* bytes of a name's ETF */
#define TETHER_SVC_PID_MAX        512         /* bytes of a pid's ETF */
#define TETHER_SVC_META_MAX       (64u << 10) /* bytes of a meta's ETF */
#define TETHER_SVC_ENTRIES_MAX    (1u << 20)  /* instances in the table */
#define TETHER_SVC_OWN_MAX        4096        /* instances of one owner */
#define TETHER_SVC_OWN_BYTES_MAX  (16u << 20) /* their bytes: a sync fits */
#define TETHER_SVC_DEFAULT_DIGEST 1000        /* ms between digests */

typedef struct tether_svctab tether_svctab_t;

typedef struct tether_svctab_config {
    uint32_t digest_ms;            /* 0: TETHER_SVC_DEFAULT_DIGEST */
    void (*wlock)(void *lock_ctx); /* optional write-lock hooks */
    void (*wunlock)(void *lock_ctx);
    void *lock_ctx;
} tether_svctab_config_t;

typedef struct tether_svctab_stats {
    uint64_t added;      /* instances inserted */
    uint64_t removed;    /* instances taken out */
    uint64_t replaced;   /* instances whose pid or meta changed */
    uint64_t syncs_sent; /* full sets sent */
    uint64_t syncs_recv; /* full sets applied */
    uint64_t pulls_sent; /* full sets asked for */
    uint64_t bad_msgs;   /* undecodable or out-of-bounds messages */
    uint64_t stale_msgs; /* from a node that is not a member, or ourselves */
    uint64_t dropped;    /* peer instances refused: table full */
} tether_svctab_stats_t;

/* Called for each instance: the service name, its owner node, the pid and
 * the meta. Pointers are valid during the call only. */
typedef void (*tether_svctab_visit_t)(void *ctx, const uint8_t *name,
                                      size_t nlen, const char *owner,
                                      const uint8_t *pid, size_t plen,
                                      const uint8_t *meta, size_t mlen);
/* Called once per distinct service name with its number of instances. */
typedef void (*tether_svctab_name_visit_t)(void *ctx, const uint8_t *name,
                                           size_t nlen, size_t instances);

/* Fills cfg with defaults (1 s digests, no lock hooks). */
void tether_svctab_config_default(tether_svctab_config_t *cfg);

/* Creates a service table as a module of eng, which owns it from then on
 * (it goes with tether_engine_free()). Returns 0, TETHER_EINVAL,
 * TETHER_ENOMEM, TETHER_EEXIST (type taken). */
TETHER_MUST_CHECK int tether_svctab_new(const tether_svctab_config_t *cfg,
                                        tether_engine_t *eng,
                                        tether_svctab_t **out);

/*
 * Registers (or replaces) our own instance of name with pid and meta, and
 * broadcasts it. Each of the three is one term in external format; the pid
 * must be a pid. Registering the same pid and meta again changes nothing.
 * Returns 0, TETHER_EINVAL (empty or malformed bytes, we left),
 * TETHER_ETOOBIG (a size above its TETHER_SVC_*_MAX, our own set or the
 * table full), TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_svctab_register(tether_svctab_t *t,
                                             const uint8_t *name, size_t nlen,
                                             const uint8_t *pid, size_t plen,
                                             const uint8_t *meta, size_t mlen);
/* Removes our own instance of name and broadcasts it. Returns 0 or
 * TETHER_ENOTFOUND. */
TETHER_MUST_CHECK int
tether_svctab_unregister(tether_svctab_t *t, const uint8_t *name, size_t nlen);

/* Visits every instance of name (in no particular order) and returns how
 * many there were. Reads only: safe under the shell's read lock. */
size_t tether_svctab_lookup(const tether_svctab_t *t, const uint8_t *name,
                            size_t nlen, tether_svctab_visit_t visit,
                            void *ctx);
/* Visits our own instance of name. Reads only. Returns 0 or
 * TETHER_ENOTFOUND. */
TETHER_MUST_CHECK int tether_svctab_local(const tether_svctab_t *t,
                                          const uint8_t *name, size_t nlen,
                                          tether_svctab_visit_t visit,
                                          void *ctx);
/* Visits every instance (in no particular order). Reads only. */
void tether_svctab_foreach(const tether_svctab_t *t,
                           tether_svctab_visit_t visit, void *ctx);
/* Visits every distinct service name once. Reads only. */
void tether_svctab_names(const tether_svctab_t *t,
                         tether_svctab_name_visit_t visit, void *ctx);
/* The number of instances held (all owners). Reads only. */
size_t tether_svctab_count(const tether_svctab_t *t);
/* An order-independent hash of the whole table (names, owners, pids,
 * metas, stamps): equal tables give equal digests. Reads only. */
uint64_t tether_svctab_digest(const tether_svctab_t *t);
/* Counters, refreshed on each call. */
const tether_svctab_stats_t *tether_svctab_stats(const tether_svctab_t *t);

#endif /* TETHER_CORE_SERVICE_TABLE_H */
