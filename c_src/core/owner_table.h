/*
 * core/owner_table.h: the replicated owner table, the storage and
 * replication that engine modules share (the registry and the service
 * table today; maps and reminders are to be built on it).
 *
 * Model. Every entry is owned by one node, the one that wrote it, and
 * only the owner adds, replaces or removes it; every other member holds a
 * copy learnt from the owner's messages. An entry is a key, a value and a
 * meta (byte strings: external-term-format bytes made by the shells, so
 * BEAM nodes and C-nodes write identical entries), 32 module flags carried
 * on the wire, and the hybrid-logical-clock stamp of the owner's write.
 * One key may have one entry per owner (a name held on both sides of a
 * healed partition; a service with an instance per node): the module
 * decides what several entries of one key mean.
 *
 * What the table does for its module, so the module holds only its
 * semantics:
 *   - storage: a chained hash by key, an owner index (owners are never
 *     removed, so an index stays valid; a restarted node reuses its
 *     slot), optionally an index of our own entries by value (a pid holds
 *     one name), per-owner counts and byte totals with limits;
 *   - locking hooks: every change of the table is made between the shell's
 *     wlock/wunlock, so the shell may read (lookups, visits) from other
 *     threads under the matching read lock;
 *   - shell data: attach/detach hooks give each entry data of the shell's
 *     (the NIF keeps the decoded pid term), released once no reader can
 *     reach the entry;
 *   - replication, under the engine's partition rules: our writes are
 *     broadcast; a full exchange of our own entries (sync) goes to a peer
 *     when its session comes up and both ways when it comes back as a
 *     member; every digest_ms each node broadcasts the count and hash of
 *     its own entries, and a receiver whose copy differs pulls a sync (at
 *     most one pull per owner per round); entries of a member that goes
 *     down or leaves are dropped at once.
 *
 * Messages (the module's engine type; Tag = prefix ++ "_" ++ what):
 *   {P_add, Stamp, Flags, Key, Val, Meta}  the owner's new or replaced entry
 *   {P_del, Stamp, Key}                    its removal (of the entry with
 *                                          that stamp or an older one)
 *   {P_sync, [{Stamp, Flags, Key, Val, Meta}]}  the owner's full set; read
 *                                          to its end, then it replaces
 *                                          what we hold of the sender
 *   {P_digest, Count, Hash}                every digest_ms
 *   {P_pull}                               "send me your sync"
 * Any other tag goes to the module's `message` hook. An add applies when
 * we hold no entry of that key and owner, or an older one (by stamp); an
 * equal stamp is the same write. A del removes the held entry if its
 * stamp is not newer than the del's. So duplicates and reordering are
 * harmless, and digests repair what was lost.
 *
 * Writing a module on it: fill a tether_otab_config_t (type and tag
 * prefix, sizes, hooks), create the table with tether__otab_new() (it
 * registers the engine module; the engine frees both), write with
 * tether__otab_put()/tether__otab_del(), read with the lookups, and react
 * to changes in the hooks: `changed` for every insert, replace and
 * removal (to tell the shell, say), `settle` after a remote change of a
 * key (conflict rules), `message` for the module's own tags, `round`
 * before each digest. A hook must not call into the table unless it says
 * so.
 */
#ifndef TETHER_CORE_OWNER_TABLE_H
#define TETHER_CORE_OWNER_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/module.h"
#include "tether/error.h"

#define TETHER_OTAB_DEFAULT_DIGEST 1000 /* ms between digests */
#define TETHER_OTAB_PREFIX_MAX     5    /* bytes of a tag prefix */
#define TETHER_OTAB_OWNERS_MAX     TETHER_MEMBERS_MAX

typedef struct tether_otab tether_otab_t;

/*
 * One entry. The module reads the public fields; only the table writes
 * them (but scratch, the module's own).
 */
typedef struct tether_otab_entry {
    const uint8_t *key, *val, *meta; /* into bytes[] */
    size_t klen, vlen, mlen;
    uint64_t stamp;   /* HLC stamp of the owner's write */
    uint32_t owner;   /* owner index: tether__otab_owner_name() */
    uint32_t flags;   /* the module's, carried on the wire */
    uint64_t scratch; /* the module's, local only (starts 0) */
    void *data;       /* the shell's (attach hook), or NULL */
    /* Private to owner_table.c. */
    struct tether_otab_entry *next;  /* bucket chain */
    struct tether_otab_entry *vnext; /* own-value index chain */
    uint64_t kh, vh;                 /* key and value hashes */
    int mark;                        /* sync sweep */
    uint8_t bytes[];
} tether_otab_entry_t;

/* What a `changed` hook is told. */
enum tether_otab_change {
    TETHER_OTAB_ADDED = 1, /* a new entry (key, owner) */
    TETHER_OTAB_REPLACED,  /* the entry of (key, owner) was rewritten */
    TETHER_OTAB_REMOVED,   /* the entry goes (it is still readable) */
};

typedef struct tether_otab_stats {
    uint64_t added, replaced, removed; /* entries, all owners */
    uint64_t syncs_sent, syncs_recv, pulls_sent;
    uint64_t bad_msgs;   /* undecodable or out-of-bounds messages */
    uint64_t stale_msgs; /* from a node that is not a member, or ourselves */
    uint64_t dropped;    /* a peer's entries refused: the table full */
} tether_otab_stats_t;

typedef struct tether_otab_config {
    uint8_t type;       /* the module's engine message type */
    const char *prefix; /* tag prefix, 1..TETHER_OTAB_PREFIX_MAX bytes */
    const char *name;   /* the module's name (engine module name) */
    uint32_t digest_ms; /* 0: TETHER_OTAB_DEFAULT_DIGEST */
    size_t key_max, val_max, meta_max; /* bytes (key, val >= 1) */
    size_t entries_max;                /* the whole table */
    size_t own_max;                    /* entries of one owner; 0: none */
    size_t own_bytes_max;              /* their key+val+meta bytes; 0: none */
    int value_index;                   /* index our own entries by value */

    /* The module's hooks (module context mctx); each may be NULL. */
    /* Checks a peer's entry beyond sizes: 0 or TETHER_EPROTO (refused:
     * the whole message counts as bad). */
    int (*check)(void *mctx, const tether_otab_entry_t *w);
    /* An entry was added or replaced, or is about to go. No table calls. */
    void (*changed)(void *mctx, const tether_otab_entry_t *e, int what);
    /* A peer's add or del of key was applied (or was a no-op). The table
     * may be changed here (our own entry of key put or deleted). */
    void (*settle)(void *mctx, const uint8_t *key, size_t klen);
    /* A message with a tag of the module's own from member `from` (owner
     * index `o`), idx after the tag. Returns 0, or TETHER_EPROTO to count
     * it bad. The table may be changed. */
    int (*message)(void *mctx, const char *from, uint32_t o, const char *tag,
                   int arity, const char *buf, int idx);
    /* Each digest round, before our digest goes out (not once we left).
     * The table may be changed. */
    void (*round)(void *mctx, uint64_t now_ms);
    /* Frees the module (with the table, at engine free). */
    void (*free)(void *mctx);
    void *mctx;

    /* The shell's hooks; optional, wlock/wunlock both or neither. */
    void (*wlock)(void *lock_ctx);
    void (*wunlock)(void *lock_ctx);
    void *lock_ctx;
    void *(*attach)(void *shell_ctx, const tether_otab_entry_t *e);
    void (*detach)(void *shell_ctx, void *data);
    void *shell_ctx;
} tether_otab_config_t;

/* The wire fields of one entry, for puts: pointers to the caller's bytes. */
typedef struct tether_otab_write {
    const uint8_t *key, *val, *meta;
    size_t klen, vlen, mlen;
    uint32_t flags;
} tether_otab_write_t;

/*
 * Creates a table and registers it as the engine module of cfg->type. The
 * engine owns it from then on (tether_engine_free() frees it, after
 * cfg->free). Returns 0, TETHER_EINVAL, TETHER_ENOMEM or TETHER_EEXIST
 * (type taken); on failure cfg->free is not called.
 */
TETHER_MUST_CHECK int tether__otab_new(const tether_otab_config_t *cfg,
                                       tether_engine_t *eng,
                                       tether_otab_t **out);

/*
 * Writes our own entry of w->key (inserting or replacing it) stamped now,
 * and broadcasts it: as SEND actions, or, with sealed set, as envelopes
 * handed to sealed() for the caller to carry at once (the direct path of
 * tether__engine_broadcast_sealed()). The same value, meta and flags again
 * change nothing and send nothing. Returns 0, TETHER_EINVAL (sizes, we
 * left), TETHER_ETOOBIG (our own or the whole table full, clock
 * overflow), TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether__otab_put(tether_otab_t *t,
                                       const tether_otab_write_t *w,
                                       tether_engine_sealed_t sealed,
                                       void *ctx);
/* Removes our own entry e and broadcasts the removal. */
void tether__otab_del(tether_otab_t *t, tether_otab_entry_t *e);

/* The entry of key held for owner o, or NULL. Reads only. */
tether_otab_entry_t *tether__otab_find(const tether_otab_t *t,
                                       const uint8_t *key, size_t klen,
                                       uint32_t o);
/* Iterates the entries of one key (any owner, no order):
 * for (e = first(t, k, n); e; e = next(t, e)). Reads only. */
tether_otab_entry_t *tether__otab_first(const tether_otab_t *t,
                                        const uint8_t *key, size_t klen);
tether_otab_entry_t *tether__otab_next(const tether_otab_t *t,
                                       const tether_otab_entry_t *e);
/* Our own entry whose value is val (value_index set), or NULL. */
tether_otab_entry_t *tether__otab_find_own_value(const tether_otab_t *t,
                                                 const uint8_t *val,
                                                 size_t vlen);
/* Calls visit for every entry (no order). It must not change the table. */
void tether__otab_foreach(const tether_otab_t *t,
                          void (*visit)(void *ctx,
                                        const tether_otab_entry_t *e),
                          void *ctx);

/* Our own owner index. */
uint32_t tether__otab_self(const tether_otab_t *t);
/* The node name of owner index o. */
const char *tether__otab_owner_name(const tether_otab_t *t, uint32_t o);
/* The owner index of a node that has one, or -1. */
int tether__otab_owner_find(const tether_otab_t *t, const char *name);
/* Entries held, all owners; entries of owner o. */
size_t tether__otab_count(const tether_otab_t *t);
size_t tether__otab_owner_count(const tether_otab_t *t, uint32_t o);
/* An order-independent hash of every entry held (key, value, meta, flags,
 * stamp, owner): equal tables give equal digests. */
uint64_t tether__otab_digest(const tether_otab_t *t);
const tether_otab_stats_t *tether__otab_stats(const tether_otab_t *t);
tether_engine_t *tether__otab_engine(const tether_otab_t *t);

/* Sends a message of the module's own (x from tether__etf_begin()) to
 * `to`, or to every live member but us when to is NULL, under the engine's
 * rules (tether_engine_send()); what cannot go is counted there. */
void tether__otab_send(tether_otab_t *t, const char *to, const ei_x_buff *x,
                       unsigned flags);

#endif /* TETHER_CORE_OWNER_TABLE_H */
