/*
 * core/election.h: leader election with fencing tokens, an engine module
 * (engine message type TETHER_MSG_ELECTION, 0x23).
 *
 * Any number of names; for each, at most one candidate per node (a
 * process of the shell's, known here by its pid's bytes), with a
 * priority and a mode. Every node publishes one record per name it knows
 * of (its candidacy, the fence it claims or leads with, the highest
 * fence it has seen) and holds the records of the live members; records
 * of a member that goes down are dropped. A name is the canonical
 * encoding of a term (tether_ring_canon(), so BEAM and C shells name it
 * alike); a fence is a uint64 greater than 0.
 *
 * Fences. A node mints a fence as max(HLC stamp, highest fence seen + 1)
 * (core/hlc.h), so it exceeds every fence this node has seen and, with
 * wall clocks in step, every fence minted earlier anywhere (also across
 * restarts). Fences compare as (value, minting node): a value seen from
 * another node that equals ours counts as higher, so two leaders never
 * share a fence within a component.
 *
 * Default mode (eventually consistent, as barrel_p2p): the winner is the
 * live candidate with the highest priority, then the lowest node name.
 * Per name, our candidate's state machine:
 *
 *   IDLE    not the winner in our view, or no candidate here.
 *   CLAIM   the winner: a fresh fence is published in our record and we
 *           wait until (1) we hold a full sync of every live member
 *           (never lead before the first full exchange), and (2) every
 *           live member's record shows our fence as the highest it has
 *           seen (an acknowledgement: each knows it). Then LEAD, with an
 *           ELECTED action. A fence of another node >= ours seen
 *           meanwhile: mint above it and claim again.
 *   LEAD    leading with the fence. When a member comes up (a heal, a
 *           join) or a live member's record shows it leads with a fence
 *           >= ours, a fresh fence is claimed as above once synced with
 *           everyone, and ELECTED is told again with it; the old fence
 *           stays until then.
 *   any -> IDLE when another candidate wins, ours resigns, or the
 *           candidates of the name disagree on the mode or voters (a
 *           REVOKED action when we led; none on resign).
 * So a leader's fence is acknowledged by every member before it leads:
 * whoever acknowledged it mints above it later, and a handover in a
 * stable component is strict (the old leader stepped down before its
 * acknowledgement reached the new one). Each side of a drop partition
 * elects its own leader; a defer partition changes no view, so nothing
 * changes (a new claim then waits for the heal, as its acknowledgements
 * do).
 *
 * Quorum mode (a voter set V, the same for every candidate of a name):
 * the winner among the quorum candidates (same ranking) asks every voter
 * for a lease {el_ask, ..., Term, Fence, LeaseMs, SentAt}. A voter grants
 * when it holds no unexpired lease of another holder (by its own clock),
 * and for a new holder only a fence above every fence it has granted;
 * its lease runs until its receipt time + LeaseMs (at most its own
 * lease_ms). The candidate counts a grant valid until SentAt + LeaseMs -
 * LeaseMs / 8 by its own clock; it leads while a majority of V holds
 * valid grants for its current fence, and renews every lease_ms / 4. It
 * therefore stops leading before any voter can grant another holder,
 * provided no clock runs more than 12% faster than another (a rate
 * bound; offsets do not matter). A voter grants nothing for lease_ms
 * after it starts (it may have granted before a restart). Majorities
 * intersect, so a new leader's fence exceeds the previous leader's:
 * fences increase cluster-wide. A leader that resigns or stops being the
 * winner releases its voters ({el_release}) after stepping down.
 *
 * Messages (type TETHER_MSG_ELECTION; Rec = {NameBin, Ver, Flags, Prio,
 * Claim, Lead, Seen, SeenBy, Term, Cfg, PidBin}):
 *   {el_rec, Rec}            one record of the sender, changed (Ver: the
 *                            sender's counter, one more per change)
 *   {el_sync, Ver, [Rec]}    every record of the sender
 *   {el_digest, Ver}         every round: a receiver that applied fewer of
 *                            the sender's versions pulls a sync
 *   {el_pull}                "send me your sync"
 *   {el_ask, NameBin, Term, Fence, Cfg, LeaseMs, SentAt, [Voter]}
 *   {el_grant, NameBin, Term, Fence, SentAt, LeaseMs, Granted, High,
 *    HighBy}                 a voter's answer (High: the highest fence it
 *                            has granted, minted by HighBy)
 *   {el_release, NameBin, Term}
 * All go as state (skipped, not queued, across a defer partition).
 *
 * Threads: the module runs under the engine's serialization. What
 * readers need (tether_election_fence/_leader/_candidates) is kept in a
 * per-name view rebuilt between the shell's wlock/wunlock after each
 * input, so readers may run concurrently under the matching read lock.
 */
#ifndef TETHER_CORE_ELECTION_H
#define TETHER_CORE_ELECTION_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "tether/error.h"

#define TETHER_ELECTION_NAME_MAX         1024 /* bytes of a name's ETF */
#define TETHER_ELECTION_PID_MAX          512  /* bytes of a candidate pid */
#define TETHER_ELECTION_NAMES_MAX        4096 /* names one node knows of */
#define TETHER_ELECTION_VOTERS_MAX       64
#define TETHER_ELECTION_DEFAULT_LEASE_MS 2000
#define TETHER_ELECTION_DEFAULT_ROUND_MS 1000

/* What tether_election_lead() did, and what the readers answer. */
enum tether_election_outcome {
    TETHER_ELECTION_FOLLOWER = 0,        /* a candidate; not leading now */
    TETHER_ELECTION_LEADER = 1,          /* leading now, with *fence */
    TETHER_ELECTION_NO_QUORUM = 2,       /* fewer than a majority of the voters
                                            are live members here */
    TETHER_ELECTION_VOTERS_MISMATCH = 3, /* a live candidate of the name
                                            has another mode or voter set */
};

typedef struct tether_election tether_election_t;

typedef struct tether_election_config {
    uint32_t lease_ms; /* quorum leases; 0: the default */
    uint32_t round_ms; /* digests and pulls (the heartbeat); 0: default */
    /* Optional write-lock hooks (both or neither), see Threads above. */
    void (*wlock)(void *lock_ctx);
    void (*wunlock)(void *lock_ctx);
    void *lock_ctx;
} tether_election_config_t;

/* A candidacy's options. */
typedef struct tether_election_opts {
    int64_t priority;
    int quorum;                /* 1: quorum mode over voters */
    const char *const *voters; /* node names (any order, repeats ignored) */
    size_t nvoters;            /* 1..TETHER_ELECTION_VOTERS_MAX if quorum */
} tether_election_opts_t;

typedef struct tether_election_stats {
    uint64_t names;      /* names known */
    uint64_t claims;     /* fences minted and claimed */
    uint64_t elected;    /* ELECTED actions (and leads at once) */
    uint64_t revoked;    /* REVOKED actions */
    uint64_t remints;    /* fresh fences claimed while leading */
    uint64_t lease_lost; /* quorum leaderships ended by expiry */
    uint64_t syncs_sent, syncs_recv, pulls_sent;
    uint64_t asks_sent, grants, refusals; /* quorum: as candidate, voter */
    uint64_t bad_msgs;   /* undecodable or out-of-bounds messages */
    uint64_t stale_msgs; /* from a node that is not a live member */
    uint64_t dropped;    /* a name refused: the table full */
} tether_election_stats_t;

#define TETHER_ELECTION_STATS_N 15 /* the counters above */

/* One counter with its name, for the shells' info maps. */
typedef struct tether_election_stat {
    const char *name;
    uint64_t value;
} tether_election_stat_t;

/* One candidate of a name, as tether_election_candidates() lists it. */
typedef struct tether_election_candidate {
    char node[TETHER_NODE_NAME_MAX + 1];
    int64_t priority;
} tether_election_candidate_t;

/*
 * Creates the election module of eng (which owns it from then on).
 * Returns 0, TETHER_EINVAL, TETHER_ENOMEM or TETHER_EEXIST (type taken).
 */
TETHER_MUST_CHECK int tether_election_new(const tether_election_config_t *cfg,
                                          tether_engine_t *eng,
                                          tether_election_t **out);

/*
 * Makes cand (a pid's bytes, clen <= TETHER_ELECTION_PID_MAX) this node's
 * candidate for name (canonical ETF, nlen <= TETHER_ELECTION_NAME_MAX).
 * Returns 0 with *outcome: LEADER (leading now, *fence set; no ELECTED
 * action follows for it), FOLLOWER (a candidate; ELECTED comes as an
 * action when it wins), NO_QUORUM or VOTERS_MISMATCH (refused: not a
 * candidate). Errors: TETHER_EEXIST (a candidate here already),
 * TETHER_EINVAL (bad name, pid or options), TETHER_ECLOSED (we left),
 * TETHER_ETOOBIG (the name table is full), TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_election_lead(tether_election_t *m,
                                           const uint8_t *name, size_t nlen,
                                           const uint8_t *cand, size_t clen,
                                           const tether_election_opts_t *opts,
                                           int *outcome, uint64_t *fence);

/* Ends this node's candidacy for name, stepping down (no REVOKED action:
 * the caller asked). Returns 0 or TETHER_ENOTFOUND (no candidate). */
int tether_election_resign(tether_election_t *m, const uint8_t *name,
                           size_t nlen);

/*
 * Readers (safe under the shell's read lock). now_ms is the engine's
 * time now (the shell's clock, as it ticks the engine): a quorum lease
 * is checked against it, so an expired lease reads as expired even
 * before the next tick.
 *
 * tether_election_fence: LEADER with *fence while we lead name;
 *   NO_QUORUM when our quorum candidate does not lead and fewer than a
 *   majority of its voters are live members; FOLLOWER otherwise.
 */
int tether_election_fence(const tether_election_t *m, const uint8_t *name,
                          size_t nlen, uint64_t now_ms, uint64_t *fence);

/*
 * The fast path of tether_election_fence, for a shell that reads one
 * name often (tether:fence/1, is_leader/1):
 *
 * tether_election_find: the name (NULL when nobody campaigned for it
 *   here yet), as a reader under the shell's read lock. The pointer stays
 *   valid until m is freed: names are never freed before their module.
 * tether_election_name_fence: what tether_election_fence answers for it,
 *   read without any lock (a sequence lock over the name's status, which
 *   the engine stores whenever the name's view changes). clock(clock_ctx)
 *   tells the engine's time now; it is called only when a quorum lease
 *   has to be checked.
 */
typedef struct ename tether_election_name_t;
const tether_election_name_t *tether_election_find(const tether_election_t *m,
                                                   const uint8_t *name,
                                                   size_t nlen);
int tether_election_name_fence(const tether_election_name_t *n,
                               uint64_t (*clock)(const void *),
                               const void *clock_ctx, uint64_t *fence);
/*
 * The leader of name as this node knows it (us while we lead, else the
 * live member whose record says it leads, the highest fence first): its
 * node into node, its candidate's pid bytes into cand (cap bytes, their
 * length into *clen) and its fence into *fence (each may be NULL).
 * Returns 0, TETHER_ENOTFOUND (no leader) or TETHER_ETOOBIG (cap).
 */
int tether_election_leader(const tether_election_t *m, const uint8_t *name,
                           size_t nlen, uint64_t now_ms,
                           char node[TETHER_NODE_NAME_MAX + 1], uint8_t *cand,
                           size_t cap, size_t *clen, uint64_t *fence);
/* The live candidates of name, best first (priority, then node name): up
 * to cap into out; returns how many there are. */
size_t tether_election_candidates(const tether_election_t *m,
                                  const uint8_t *name, size_t nlen,
                                  tether_election_candidate_t *out, size_t cap);
/* Quorum leadership of name: until when it holds (0: none), and since
 * when (for the simulator's overlap check). Engine thread. */
uint64_t tether_election_lease_until(const tether_election_t *m,
                                     const uint8_t *name, size_t nlen,
                                     uint64_t *since);

/* A line describing our state of name and the records we hold, for
 * tests and the simulator's failure reports. Engine thread. */
void tether__election_describe(const tether_election_t *m, const uint8_t *name,
                               size_t nlen, char *buf, size_t cap);

const tether_election_stats_t *
tether_election_stats(const tether_election_t *m);
/* Every counter with its name, in declaration order. */
void tether_election_stats_list(
    const tether_election_stats_t *st,
    tether_election_stat_t out[TETHER_ELECTION_STATS_N]);

#endif /* TETHER_CORE_ELECTION_H */
