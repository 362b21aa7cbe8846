/*
 * core/membership.h: the member table of one engine, pure state.
 *
 * Each known node has one entry: its name, the highest incarnation heard
 * of, a status (alive or left) and a local lease. Gossip merges entries
 * with one rule: the higher incarnation wins, and at equal incarnation
 * `left` wins over `alive`. So a leave tombstone (name, inc, left) can
 * never be undone by stale gossip; only a restart with a higher
 * incarnation brings the name back, as a new member.
 *
 * Liveness is local, never gossiped: a lease renewed by heartbeats received
 * directly from the node over an authenticated session, cleared by a
 * connection loss. The engine (engine.c) adds partition rules on top.
 *
 * Wire form (inside a MEMBERS engine message), sorted by name:
 *   [{NodeAtom, Incarnation, alive | left}, ...]
 */
#ifndef TETHER_CORE_MEMBERSHIP_H
#define TETHER_CORE_MEMBERSHIP_H

#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "core/keys.h"
#include "tether/error.h"

/* Most entries one table holds (tombstones included). */
#define TETHER_MEMBERS_MAX 1024

enum tether_member_status {
    TETHER_MEMBER_ALIVE = 0,
    TETHER_MEMBER_LEFT = 1,
};

typedef struct tether_member {
    char name[TETHER_NODE_NAME_MAX + 1];
    uint64_t incarnation; /* highest heard of */
    int status;           /* enum tether_member_status */
    int is_self;          /* 1 for our own entry */
    uint64_t lease_until; /* local ms until which it counts as live; 0 none */
    int live;             /* liveness last reported to subscribers */
} tether_member_t;

typedef struct tether_membership {
    tether_member_t *v; /* sorted by name (bytewise), heap, owned */
    size_t n, cap;
    size_t self_idx_hint;
    char self[TETHER_NODE_NAME_MAX + 1];
} tether_membership_t;

/*
 * Sets up a table holding only ourselves (alive at `incarnation`).
 * Returns 0, TETHER_EINVAL (bad name) or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether__membership_init(tether_membership_t *ms,
                                              const char *self,
                                              uint64_t incarnation);

/* Frees the table. NULL is a no-op. */
void tether__membership_fini(tether_membership_t *ms);

/* Finds the entry for `name`, or NULL. */
tether_member_t *tether__membership_find(const tether_membership_t *ms,
                                         const char *name);

/* Our own entry (never NULL after init). */
tether_member_t *tether__membership_self(const tether_membership_t *ms);

/*
 * Merges one gossiped fact (name, incarnation, status) by the rule above.
 * Facts about ourselves are ignored (we are the authority). Returns 1 if
 * the table changed, 0 if not, TETHER_EINVAL, TETHER_ETOOBIG (table full)
 * or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether__membership_merge(tether_membership_t *ms,
                                               const char *name,
                                               uint64_t incarnation,
                                               int status);

/*
 * Records a heartbeat received directly from `name` at incarnation `inc`:
 * merges (name, inc, alive) and renews the lease to now_ms + ttl_ms.
 * Returns 0 if renewed, TETHER_EREPLAY if the heartbeat is stale (an older
 * incarnation, or the node left at this one or later; nothing changes),
 * or a merge error.
 */
TETHER_MUST_CHECK int
tether__membership_heartbeat(tether_membership_t *ms, const char *name,
                             uint64_t inc, uint64_t now_ms, uint64_t ttl_ms);

/* Clears the lease of `name` (its connection went down). */
void tether__membership_expire(tether_membership_t *ms, const char *name);

/* Marks ourselves left (our incarnation unchanged). */
void tether__membership_leave_self(tether_membership_t *ms);

/* 1 if the entry is alive and its lease runs past now_ms (self: alive). */
int tether__membership_lease_ok(const tether_member_t *m, uint64_t now_ms);

/* A digest of every (name, incarnation, status), leases excluded. */
uint64_t tether__membership_digest(const tether_membership_t *ms);

/* Encodes the table as the wire list above. Returns 0 or TETHER_ENOMEM. */
TETHER_MUST_CHECK int tether__membership_encode(const tether_membership_t *ms,
                                                ei_x_buff *x);

/*
 * Decodes a wire list at *index (buffer already validated) and merges
 * every entry. *changed gets 1 if our table changed; *behind gets 1 if the
 * sender's list lacks something we know (its digest differs from ours
 * after the merge), so the caller should answer with our table. Returns 0,
 * TETHER_EPROTO (malformed; entries before the fault stay merged) or a
 * merge error.
 */
TETHER_MUST_CHECK int tether__membership_decode_merge(tether_membership_t *ms,
                                                      const char *buf,
                                                      int *index, int *changed,
                                                      int *behind);

#endif /* TETHER_CORE_MEMBERSHIP_H */
