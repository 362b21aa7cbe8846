/*
 * core/service.h: the cluster service table, an engine module (the
 * services of Malla.Node: many instances of one service, at most one per
 * node).
 *
 * Each node is authoritative for its own instances: only the owner adds,
 * replaces or removes an instance it owns, and every other node holds a
 * copy learned from the owner's messages. A service name, a pid and a
 * meta are opaque byte strings (their external term format, version byte
 * first; the shells make them, the names canonically, so equal terms give
 * equal bytes). Registering a name again on the same node replaces its pid
 * and meta.
 *
 * Every change of an owner's set increments the owner's version. Messages
 * (engine type TETHER_MSG_SERVICE, one term each; every instance described
 * is the sender's own):
 *   {svc_add, Version, NameEtf, PidEtf, MetaEtf}  a new or replaced instance
 *   {svc_del, Version, NameEtf}                   its removal
 *   {svc_sync, Version, [{NameEtf, PidEtf, MetaEtf}]}  the full set; replaces
 *                                                 what we hold of the sender
 *   {svc_digest, Version}                         every digest_ms
 *   {svc_pull}                                    "send me your svc_sync"
 * A receiver applies add and del only when Version is the one after the
 * version it holds of the sender, and otherwise pulls; a digest whose
 * version differs from the one held pulls too. What we hold of a peer is
 * "unknown" (anything pulls) until a sync arrives: at first, after the
 * peer went down, and from each new session on (a restarted peer counts
 * its versions from zero again, and a new session is the one sign of a
 * restart that always comes first). A full exchange (svc_sync both ways)
 * happens when a session comes up and when a member comes back (a drop
 * partition heals). Instances of a member that goes down or leaves are
 * dropped at once.
 *
 * Events: every instance that appears, changes (re-registration) or goes,
 * ours included, is told to the DELIVER subscriber event_sub (0: none) as
 *   {tether_service, up | down, NameEtf :: binary(), Node :: binary()}
 * (a change is an `up`).
 *
 * Threads: the table runs under the engine's serialization. A shell that
 * reads from other threads (the NIF's lookups) passes wlock/wunlock hooks:
 * every change of the table is made between them, and the read-only calls
 * (lookup, local, foreach, names, count, digest) may then run concurrently
 * under the matching read lock.
 */
#ifndef TETHER_CORE_SERVICE_H
#define TETHER_CORE_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "tether/error.h"

#define TETHER_MSG_SERVICE        0x22
#define TETHER_SVC_NAME_MAX       4096        /* bytes of a name's ETF */
#define TETHER_SVC_PID_MAX        512         /* bytes of a pid's ETF */
#define TETHER_SVC_META_MAX       (64u << 10) /* bytes of a meta's ETF */
#define TETHER_SVC_ENTRIES_MAX    (1u << 20)  /* instances in the table */
#define TETHER_SVC_OWN_MAX        4096        /* instances of one owner */
#define TETHER_SVC_OWN_BYTES_MAX  (16u << 20) /* their bytes: a sync fits */
#define TETHER_SVC_DEFAULT_DIGEST 1000        /* ms between digests */
#define TETHER_SVC_OWNERS_MAX     TETHER_MEMBERS_MAX

typedef struct tether_svc tether_svc_t;

typedef struct tether_svc_config {
    uint64_t event_sub;            /* DELIVER subscriber of events, 0: none */
    uint32_t digest_ms;            /* 0: TETHER_SVC_DEFAULT_DIGEST */
    void (*wlock)(void *lock_ctx); /* optional write-lock hooks */
    void (*wunlock)(void *lock_ctx);
    void *lock_ctx;
} tether_svc_config_t;

typedef struct tether_svc_stats {
    uint64_t added;      /* instances inserted */
    uint64_t removed;    /* instances taken out */
    uint64_t replaced;   /* instances whose pid or meta changed */
    uint64_t syncs_sent; /* svc_sync messages sent */
    uint64_t syncs_recv; /* svc_sync messages applied */
    uint64_t pulls_sent; /* svc_pull messages sent */
    uint64_t gaps;       /* add/del out of version order (pulled) */
    uint64_t bad_msgs;   /* undecodable or out-of-bounds messages */
    uint64_t stale_msgs; /* from a node that is not a member, or ourselves */
    uint64_t dropped;    /* peer instances refused: table full */
} tether_svc_stats_t;

/* Called for each instance: the service name, its owner node, the pid and
 * the meta. Pointers are valid during the call only. */
typedef void (*tether_svc_visit_t)(void *ctx, const uint8_t *name, size_t nlen,
                                   const char *owner, const uint8_t *pid,
                                   size_t plen, const uint8_t *meta,
                                   size_t mlen);
/* Called once per distinct service name with its number of instances. */
typedef void (*tether_svc_name_visit_t)(void *ctx, const uint8_t *name,
                                        size_t nlen, size_t instances);

/* Fills cfg with defaults (no subscriber, 1 s digests, no lock hooks). */
void tether_svc_config_default(tether_svc_config_t *cfg);

/* Creates a service table and registers it as a module of eng (which must
 * outlive it, or be freed first: the table is then only freed). Returns 0,
 * TETHER_EINVAL, TETHER_ENOMEM, TETHER_EEXIST (type taken). */
TETHER_MUST_CHECK int tether_svc_new(const tether_svc_config_t *cfg,
                                     tether_engine_t *eng, tether_svc_t **out);
/* Frees the table. NULL: no-op. */
void tether_svc_free(tether_svc_t *t);

/*
 * Registers (or replaces) our own instance of name with pid and meta, and
 * broadcasts it. Each of the three is one term in external format; the pid
 * must be a pid. Registering the same pid and meta again changes nothing.
 * Returns 0, TETHER_EINVAL (empty or malformed bytes, we left),
 * TETHER_ETOOBIG (a size above its TETHER_SVC_*_MAX, our own set or the
 * table full), TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_svc_register(tether_svc_t *t, const uint8_t *name,
                                          size_t nlen, const uint8_t *pid,
                                          size_t plen, const uint8_t *meta,
                                          size_t mlen);
/* Removes our own instance of name and broadcasts it. Returns 0 or
 * TETHER_ENOTFOUND. */
TETHER_MUST_CHECK int tether_svc_unregister(tether_svc_t *t,
                                            const uint8_t *name, size_t nlen);

/* Visits every instance of name (in no particular order) and returns how
 * many there were. Reads only: safe under the shell's read lock. */
size_t tether_svc_lookup(const tether_svc_t *t, const uint8_t *name,
                         size_t nlen, tether_svc_visit_t visit, void *ctx);
/* Visits our own instance of name. Reads only. Returns 0 or
 * TETHER_ENOTFOUND. */
TETHER_MUST_CHECK int tether_svc_local(const tether_svc_t *t,
                                       const uint8_t *name, size_t nlen,
                                       tether_svc_visit_t visit, void *ctx);
/* Visits every instance (in no particular order). Reads only. */
void tether_svc_foreach(const tether_svc_t *t, tether_svc_visit_t visit,
                        void *ctx);
/* Visits every distinct service name once. Reads only. */
void tether_svc_names(const tether_svc_t *t, tether_svc_name_visit_t visit,
                      void *ctx);
/* The number of instances held (all owners). Reads only. */
size_t tether_svc_count(const tether_svc_t *t);
/* An order-independent hash of the whole table (names, owners, pids,
 * metas; not versions): equal tables give equal digests. Reads only. */
uint64_t tether_svc_digest(const tether_svc_t *t);
/* The version of our own set (the number of changes made to it). */
uint64_t tether_svc_version(const tether_svc_t *t);
const tether_svc_stats_t *tether_svc_stats(const tether_svc_t *t);

#endif /* TETHER_CORE_SERVICE_H */
