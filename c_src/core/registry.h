/*
 * core/registry.h: the cluster name registry, an engine module (the
 * :global-compatible registry of the design).
 *
 * Each node is authoritative for its own names: only the owner adds or
 * removes an entry it owns, and every other node holds a copy learned from
 * the owner's messages. A name and a pid are opaque byte strings (their
 * external term format, version byte first; the shells make them), so a
 * BEAM node and a C-node register names with the same messages. An entry
 * carries the owner's node name, a hybrid-logical-clock stamp and the
 * method by which its registrant wants to hear of a lost conflict.
 *
 * Storage and replication are an owner table (core/owner_table.h, tag
 * prefix "reg"): entries keyed by NameEtf, valued PidEtf, flags the
 * registrant's Method, stamped with the engine's hybrid logical clock at
 * registration; full exchanges when sessions come up and members come
 * back, digests every digest_ms, entries of a member that goes down or
 * leaves dropped at once. One message of the registry's own (engine type
 * TETHER_MSG_REGISTRY):
 *   {reg_yield, Stamp, NameEtf, KeptPidEtf | <<>>}  a resolver's verdict:
 *                                               the receiver's entry
 *                                               (NameEtf, Stamp) goes
 *
 * Conflicts (the same name held by two owners, possible only after a
 * partition). Every node keeps the entry of each owner (an owner's set is
 * only ever changed by that owner's messages, so all nodes converge on the
 * same entries whatever the order of arrival); the visible one (whereis,
 * foreach, owner) is the earliest registration: the earlier HLC stamp,
 * equal stamps to the owner whose name sorts first. Call it W and the
 * other L. Then exactly one node acts:
 *   - neither W nor L has method RESOLVE: L's owner removes L, broadcasts
 *     the removal and hands its shell a TETHER_ACT_REG_LOST action (name,
 *     loser, winner, method), so the shell tells the registrant (message
 *     or exit, per Method);
 *   - otherwise the resolver node R is W's owner if W has RESOLVE, else
 *     L's owner. R alone asks its shell, once per rival entry, with a
 *     TETHER_ACT_REG_RESOLVE action (name, W's pid, L's pid). The shell
 *     runs the registrant's resolver and
 *     answers with tether_registry_resolve(): R removes its own entry if
 *     the verdict did not keep it, and sends reg_yield to the owner of
 *     each rival the verdict did not keep, repeating it every digest
 *     period until that entry is gone (lost messages). That owner removes
 *     its entry as a loser (and tells its shell with TETHER_ACT_REG_LOST,
 *     the winner being the kept pid, or empty for none). Until
 *     the verdict, W stays visible everywhere and nobody removes anything;
 *     if R goes down first, its entries go with it and the rival stays.
 * With three or more owners of one name, conflicts resolve pairwise with
 * the visible entry. Entries of a member that goes down or leaves are
 * dropped at once.
 *
 * Threads: the registry runs under the engine's serialization. A shell
 * that reads names from other threads (the NIF's whereis) passes wlock/
 * wunlock hooks: every change of the table is made between them, and
 * tether_registry_whereis() may then run concurrently under the matching
 * read lock.
 */
#ifndef TETHER_CORE_REGISTRY_H
#define TETHER_CORE_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "tether/error.h"

#define TETHER_REG_NAME_MAX       4096 /* bytes of a name's ETF */
#define TETHER_REG_PID_MAX        512  /* bytes of a pid's ETF */
#define TETHER_REG_ENTRIES_MAX    (1u << 20)
#define TETHER_REG_DEFAULT_DIGEST 1000 /* ms between digests */
#define TETHER_REG_OWNERS_MAX     TETHER_MEMBERS_MAX

/* How a registrant hears that it lost a conflict. */
#define TETHER_REG_NOTIFY     0 /* a message to the loser */
#define TETHER_REG_EXIT       1 /* the loser is killed */
#define TETHER_REG_RESOLVE    2 /* the shell's resolver is called */
#define TETHER_REG_METHOD_MAX 2

typedef struct tether_registry tether_registry_t;

typedef struct tether_registry_config {
    uint32_t digest_ms;            /* 0: TETHER_REG_DEFAULT_DIGEST */
    void (*wlock)(void *lock_ctx); /* optional write-lock hooks */
    void (*wunlock)(void *lock_ctx);
    void *lock_ctx;
    /* Optional: per-entry data the shell derives from a pid's bytes (the
     * NIF keeps the decoded pid term), made when an entry is inserted and
     * released once no reader can reach it any more. */
    void *(*pid_attach)(void *shell_ctx, const uint8_t *pid, size_t plen);
    void (*pid_detach)(void *shell_ctx, void *data);
    void *shell_ctx;
} tether_registry_config_t;

typedef struct tether_registry_stats {
    uint64_t added, removed; /* entries inserted / taken out */
    uint64_t conflicts;      /* conflicts seen on this node */
    uint64_t lost;           /* our own entries that lost one */
    uint64_t resolves_asked; /* tether_reg_resolve requests to our shell */
    uint64_t syncs_sent, syncs_recv, pulls_sent;
    uint64_t bad_msgs;   /* undecodable registry messages */
    uint64_t stale_msgs; /* from a node that is not a member */
} tether_registry_stats_t;

/* Called for each entry by tether_registry_foreach(). */
typedef void (*tether_registry_visit_t)(void *ctx, const uint8_t *name,
                                        size_t nlen, const uint8_t *pid,
                                        size_t plen, const char *owner,
                                        uint64_t stamp, int method);

void tether_registry_config_default(tether_registry_config_t *cfg);

/* Creates a registry as a module of eng, which owns it from then on (it
 * goes with tether_engine_free()). Returns 0, TETHER_EINVAL, TETHER_ENOMEM,
 * TETHER_EEXIST (type taken). */
TETHER_MUST_CHECK int tether_registry_new(const tether_registry_config_t *cfg,
                                          tether_engine_t *eng,
                                          tether_registry_t **out);

/*
 * Registers name -> pid as our own, stamped with the engine's HLC at
 * wall_ms (the shell's wall clock, ms: tether_engine_set_wall()), and
 * broadcasts it. A pid holds at most one
 * name of ours, as in global. Returns 0, TETHER_EEXIST (the name is held,
 * by anyone, or pid already holds a name of ours), TETHER_EINVAL (sizes,
 * method, we left), TETHER_ENOMEM, TETHER_ETOOBIG (table full or clock
 * overflow).
 */
TETHER_MUST_CHECK int tether_registry_register(tether_registry_t *r,
                                               const uint8_t *name, size_t nlen,
                                               const uint8_t *pid, size_t plen,
                                               int method, uint64_t wall_ms);

/* Takes one sealed envelope for peer (len bytes, valid during the call).
 * It must not call into the engine. */
typedef void (*tether_registry_sealed_t)(void *ctx, const char *peer,
                                         const uint8_t *bytes, size_t len);

/*
 * tether_registry_register() on the direct path: the broadcast is sealed
 * for each live member (core/module.h) and each envelope handed to
 * sealed() for the caller to send to its peer at once (as {'$tether',
 * OurNode, Bytes}), instead of queued as SEND actions for the shell's
 * engine owner, which saves a hand-over to another process or thread. A
 * defer partition still holds its messages in the engine (they go out as
 * SEND actions on heal). Envelopes sent by two senders may arrive
 * reordered; the replay window takes that, and the registry's digests
 * repair what an order of add and remove from two senders could leave.
 * Same returns, and TETHER_EINVAL for a NULL sealed.
 */
TETHER_MUST_CHECK int
tether_registry_register_sealed(tether_registry_t *r, const uint8_t *name,
                                size_t nlen, const uint8_t *pid, size_t plen,
                                int method, uint64_t wall_ms,
                                tether_registry_sealed_t sealed, void *ctx);
/* Removes our own entry for name and broadcasts it. Returns 0 or
 * TETHER_ENOTFOUND (no such name of ours). */
TETHER_MUST_CHECK int tether_registry_unregister(tether_registry_t *r,
                                                 const uint8_t *name,
                                                 size_t nlen);
/* tether_registry_unregister() only if our entry of name holds pid
 * (plen bytes): a registrant that lost its name never removes the one
 * that holds it now. Returns 0 or TETHER_ENOTFOUND. */
TETHER_MUST_CHECK int tether_registry_unregister_pid(tether_registry_t *r,
                                                     const uint8_t *name,
                                                     size_t nlen,
                                                     const uint8_t *pid,
                                                     size_t plen);
/* 1 if our own entry of name holds pid (plen bytes), else 0. */
int tether_registry_holds(const tether_registry_t *r, const uint8_t *name,
                          size_t nlen, const uint8_t *pid, size_t plen);
/*
 * The shell's answer to TETHER_ACT_REG_RESOLVE: the verdict of our
 * registrant's resolver on name. keep is the pid (ETF, klen bytes) that
 * keeps the name, or NULL (klen 0) for none. Our own entry goes unless
 * kept; every other entry of name but the kept one is told to yield (see
 * the conflict rule above). A verdict comes from a resolver that ran
 * while the table moved on: when keep holds no entry of name any more,
 * ours is kept instead (the others yield to it) and the call returns 1.
 * Returns 0 (done as asked), 1 (ours kept), TETHER_ENOTFOUND (we hold
 * no entry of name any more) or TETHER_EINVAL.
 */
TETHER_MUST_CHECK int tether_registry_resolve(tether_registry_t *r,
                                              const uint8_t *name, size_t nlen,
                                              const uint8_t *keep, size_t klen);
/*
 * Copies the pid of name into pid (cap bytes) and its length into *plen.
 * Reads only: safe under the shell's read lock. Returns 0,
 * TETHER_ENOTFOUND or TETHER_ETOOBIG (cap too small).
 */
TETHER_MUST_CHECK int tether_registry_whereis(const tether_registry_t *r,
                                              const uint8_t *name, size_t nlen,
                                              uint8_t *pid, size_t cap,
                                              size_t *plen);
/* The shell data of name's entry (see pid_attach) into *data. Reads
 * only, like tether_registry_whereis(); *data stays valid while the read
 * lock is held. Returns 0 or TETHER_ENOTFOUND (also when the entry has no
 * data). */
TETHER_MUST_CHECK int tether_registry_whereis_data(const tether_registry_t *r,
                                                   const uint8_t *name,
                                                   size_t nlen, void **data);
/* The owner node of name ("" copied when absent); returns 0 or
 * TETHER_ENOTFOUND. */
TETHER_MUST_CHECK int
tether_registry_owner(const tether_registry_t *r, const uint8_t *name,
                      size_t nlen, char owner[TETHER_NODE_NAME_MAX + 1]);
/* The entries held, counting a name in an unresolved conflict once per
 * owner. */
size_t tether_registry_count(const tether_registry_t *r);
/* Visits every visible entry (in no particular order). */
void tether_registry_foreach(const tether_registry_t *r,
                             tether_registry_visit_t visit, void *ctx);
/* Visits every entry held, rivals of an unresolved conflict included. */
void tether_registry_foreach_held(const tether_registry_t *r,
                                  tether_registry_visit_t visit, void *ctx);
/* An order-independent hash of every entry held (names, pids, owners,
 * stamps; rivals of a conflict included): equal tables give equal
 * digests. */
uint64_t tether_registry_digest(const tether_registry_t *r);
const tether_registry_stats_t *
tether_registry_stats(const tether_registry_t *r);

#endif /* TETHER_CORE_REGISTRY_H */
