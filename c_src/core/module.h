/*
 * core/module.h: what an engine module sees of the engine.
 *
 * A module (registry, service table, and the ring, election, maps and
 * reminders to come) is one .c file of core/ with a header for shells. It
 *   - claims one sealed message type (listed in core/engine.h's table) and
 *     gets hooks (tether_engine_module_t) for its messages, sessions,
 *     members, time and its own end;
 *   - sends with tether_engine_send()/tether__engine_broadcast(), under the
 *     engine's partition rules;
 *   - tells its shell what happened by queueing typed actions
 *     (tether__engine_push(); the kinds are in core/engine.h), never by
 *     calling out;
 *   - stamps its writes with the engine's hybrid logical clock
 *     (tether__engine_stamp()), draws randomness from the engine's seed;
 *   - keeps replicated per-owner state in an owner table
 *     (core/owner_table.h), which does sync, digests and member-down
 *     cleanup for it.
 * The engine owns a module once it is registered: tether_engine_free()
 * calls its `free` hook. Everything runs under the engine's
 * serialization (one caller at a time); a module whose tables are read
 * from other threads takes the shell's lock hooks around each change.
 */
#ifndef TETHER_CORE_MODULE_H
#define TETHER_CORE_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "core/engine.h"

/*
 * A module's hooks; every one may be NULL. Messages reach on_message as
 * ETF bytes already validated by tether__etf_validate(), unless the module
 * is `opaque`: then it gets the authenticated bytes as they came (any
 * nesting, funs) and must check them with a complete decoder of its own
 * before reading them.
 */
typedef struct tether_engine_module {
    const char *name;
    uint8_t type;
    int opaque;
    void (*on_message)(tether_engine_t *eng, void *ctx, const char *from,
                       const char *etf, size_t len);
    void (*on_session_up)(tether_engine_t *eng, void *ctx, const char *peer);
    void (*on_session_down)(tether_engine_t *eng, void *ctx, const char *peer);
    void (*on_member)(tether_engine_t *eng, void *ctx, const char *name,
                      int up);
    void (*on_tick)(tether_engine_t *eng, void *ctx, uint64_t now_ms);
    uint64_t (*next_deadline)(tether_engine_t *eng, void *ctx);
    /* The live member set changed (once per input, after the on_member
     * calls of that input). */
    void (*on_members_changed)(tether_engine_t *eng, void *ctx);
    /* Frees the module (called once, by tether_engine_free()). */
    void (*free)(void *ctx);
} tether_engine_module_t;

/*
 * Registers a module for its type (>= TETHER_MSG_MODULE_MIN, not
 * TETHER_MSG_SHELL; 0 for a module with no messages of its own). The
 * engine owns ctx from now on (see `free`).
 * Returns 0, TETHER_EINVAL, TETHER_EEXIST (type taken) or TETHER_ETOOBIG.
 */
TETHER_MUST_CHECK int
tether__engine_register_module(tether_engine_t *eng,
                               const tether_engine_module_t *m, void *ctx);

/* The ctx registered for message type `type`, or NULL. */
void *tether__engine_module_ctx(tether_engine_t *eng, uint8_t type);

/*
 * The end of a module's constructor: when its own set-up went well
 * (setup_rc is 0), registers ctx with the hooks mod
 * (tether__engine_register_module()); when either failed, frees ctx with
 * mod->free. Returns 0 (the engine owns ctx) or the first error.
 */
TETHER_MUST_CHECK static inline int
tether__module_register(tether_engine_t *eng, const tether_engine_module_t *mod,
                        void *ctx, int setup_rc)
{
    int rc = setup_rc;

    if (rc == 0)
        rc = tether__engine_register_module(eng, mod, ctx);
    if (rc < 0)
        mod->free(ctx);
    return rc;
}

/*
 * The arguments every module constructor checks before it allocates: a
 * config, an engine and an out pointer, and the config's lock hooks
 * either both set or both NULL. A macro: each module has its own config
 * type.
 */
#define TETHER__MODULE_ARGS_OK(cfg, eng, out)                                  \
    ((cfg) != NULL && (eng) != NULL && (out) != NULL &&                        \
     ((cfg)->wlock == NULL) == ((cfg)->wunlock == NULL))

/*
 * Defines the file-local wlock(m) and wunlock(m) of a module (or an owner
 * table) of struct type T whose m->cfg holds the shell's write-lock hooks
 * `wlock` and `wunlock` (both set or both NULL) and their `lock_ctx`:
 * each calls its hook when it is set. A macro, as BSD's RB_GENERATE: the
 * functions are typed by each file's own struct.
 */
#define TETHER__MODULE_LOCK_HOOKS(T)                                           \
    static void wlock(T *m)                                                    \
    {                                                                          \
        if (m->cfg.wlock)                                                      \
            m->cfg.wlock(m->cfg.lock_ctx);                                     \
    }                                                                          \
    static void wunlock(T *m)                                                  \
    {                                                                          \
        if (m->cfg.wunlock)                                                    \
            m->cfg.wunlock(m->cfg.lock_ctx);                                   \
    }

/*
 * Declares a parameter every member must set alike (name: 1..15 bytes of
 * [a-z0-9_]): a join between nodes that both set it and differ is refused
 * on both sides. Returns 0, TETHER_EINVAL, TETHER_EEXIST (set already,
 * to another value) or TETHER_ETOOBIG.
 */
TETHER_MUST_CHECK int tether__engine_set_param(tether_engine_t *eng,
                                               const char *name,
                                               uint64_t value);

/*
 * Sends a module message to every live member but us, as
 * tether_engine_send() would to each of them, in member order (flags as
 * there). What one peer refuses (no session, a partition, a full defer
 * queue) is counted in the stats, not returned. Returns 0, TETHER_ECLOSED
 * (we left) or TETHER_EINVAL.
 */
int tether__engine_broadcast(tether_engine_t *eng, uint8_t type,
                             const uint8_t *etf, size_t len, unsigned flags);

/* Takes one sealed envelope for peer (len bytes, valid during the call).
 * It must not call into the engine. */
typedef void (*tether_engine_sealed_t)(void *ctx, const char *peer,
                                       const uint8_t *bytes, size_t len);

/*
 * tether__engine_broadcast() on the direct path: seals the message for
 * every live member but us, as tether_engine_seal() would, and hands each
 * envelope that is to go now to sealed(); what a defer partition holds
 * stays queued in the engine (a SEND action on heal), what cannot go is
 * counted. Returns 0, TETHER_ECLOSED (we left) or TETHER_EINVAL.
 */
int tether__engine_broadcast_sealed(tether_engine_t *eng, uint8_t type,
                                    const uint8_t *etf, size_t len,
                                    tether_engine_sealed_t sealed, void *ctx);

/*
 * Queues a copy of *a for the shell: the kind, peer and fields of a->u as
 * the caller filled them (byte strings pointing at the caller's bytes,
 * copied here into the action's one block; a->block is ignored). Returns
 * 0 or TETHER_ENOMEM (nothing queued: callers may ignore it, an event lost
 * to memory is lost as on a broken link).
 */
int tether__engine_push(tether_engine_t *eng, const tether_action_t *a);

/*
 * A hybrid-logical-clock stamp for a local write, greater than every stamp
 * issued or merged before (core/hlc.h), at the shell's wall clock
 * (tether_engine_set_wall()). Returns 0, TETHER_ETOOBIG (logical counter
 * overflow) or TETHER_EINVAL (wall clock out of range).
 */
TETHER_MUST_CHECK int tether__engine_stamp(tether_engine_t *eng,
                                           uint64_t *stamp);
/* Merges a stamp received from a peer into the clock (one too far ahead
 * of our wall clock is ignored, never an error). */
void tether__engine_stamp_merge(tether_engine_t *eng, uint64_t stamp);
/* The shell's wall clock now (ms), as tether_engine_set_wall() told it
 * and tick() advanced it; engine time when never told. */
uint64_t tether__engine_wall(const tether_engine_t *eng);

/*
 * Signs msg with the engine's identity key (tether__identity_sign(): the
 * attestation label comes first), for proofs a third party checks.
 * Returns 0, TETHER_EINVAL or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether__engine_sign(tether_engine_t *eng,
                                          const uint8_t *msg, size_t len,
                                          uint8_t sig[TETHER_SIG_BYTES]);
/*
 * Verifies a signature tether__engine_sign() of node `name` made, under
 * the key this engine trusts for name. Returns 0, TETHER_ENOTFOUND (name
 * not trusted), TETHER_EAUTH (does not verify), TETHER_EINVAL or
 * TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether__engine_verify(tether_engine_t *eng,
                                            const char *name,
                                            const uint8_t *msg, size_t len,
                                            const uint8_t sig[TETHER_SIG_BYTES]);
/* The engine's counters, for the parts of the engine kept in their own
 * file (core/relay.c). */
tether_engine_stats_t *tether__engine_stats_rw(tether_engine_t *eng);

/* Fills buf with deterministic random bytes from the engine's seed. */
void tether__engine_random(tether_engine_t *eng, uint8_t *buf, size_t len);

#endif /* TETHER_CORE_MODULE_H */
