/*
 * core/reminders.h: one-shot reminders owned by the key's ring owner, an
 * engine module (engine message type TETHER_MSG_REMINDERS, 0x25).
 *
 * A reminder is a key (the canonical encoding of a term, core/ring.h), a
 * fire time (ms on the shells' wall clock, any int64), a payload (bytes
 * of the shell's: one term in external format) and a policy for a missed
 * fire. The write that set it has an HLC stamp (core/hlc.h) and a writer
 * (its node name's hash, which breaks ties of stamps); its fence is the
 * pair mixed into 64 bits: setting the key again makes a new reminder with
 * a new fence, so the same key and fence twice is one reminder delivered
 * twice, never two.
 *
 * Storage. A record lives on the key's shard's first R owners of the
 * cluster ring (tether_ring_owners(), R = replicas, fewer when the
 * cluster is smaller), last writer wins by (stamp, writer) (a tombstone beats a
 * live record of the same stamp and writer). A set or cancel is sent to those
 * owners and answered (a REMINDER_REPLY action) once a majority of them
 * acknowledged it, or with a timeout after op_timeout_ms. A replica's STORE
 * action (the record to persist) is queued before its acknowledgement's SEND,
 * so a shell that writes STOREs as it drains them has the record on disk before
 * the writer hears of it.
 *
 * Firing. Only the shard's primary arms live records, on one binary heap
 * (O(log n) insert and cancel). At the fire time, with a subscriber on
 * this node (tether_reminders_subscribers()), the primary first marks the
 * record FIRING on every replica, delivers (a REMINDER action) once a
 * majority acknowledged that (or op_timeout_ms passed: at least once),
 * then turns it into a fired tombstone everywhere. A primary that dies
 * between the two leaves a FIRING record: the next primary fires it again
 * (a duplicate with the same fence), so a crash at the fire instant loses
 * nothing. With no subscriber the reminder is held, up to
 * hold_ms past its fire time, then dropped (a log line, counted).
 * Tombstones are kept tomb_ms, then forgotten.
 *
 * Handoff. When ring membership changes, an old primary stops arming a
 * shard it lost at once, sends the shard's records to its new primary and
 * then {rm_release, Shard, Op}; it drops them (when it no longer
 * replicates the shard) only once the new primary acknowledged that, and
 * sends them again otherwise; records a node holds of a shard it does not
 * replicate go to the shard's primary every round. The new primary arms
 * the shard once that
 * release arrived from the previous primary, at once if the previous
 * primary is no longer a live member (left, or declared down by the TTL),
 * or after handoff_ms at the latest (counted). Only the shards that moved
 * are touched. Armed by a handoff or a restart, a record whose fire time
 * passed more than missed_ms ago was missed: fired or tombstoned
 * unfired, as its policy says.
 *
 * Anti-entropy. Every round (and when a session comes up) each node sends
 * each peer the digests of the shards both replicate; for a shard whose
 * digests differ (between a replica and the shard's primary) the
 * receiver offers the fingerprints of what it holds, the other answers
 * with the records the offerer lacks and asks for those it lacks itself:
 * only records that differ cross. A node forwarding a shard it no longer
 * replicates offers it the same way (with an Op), and drops it once the
 * primary took what it lacked and acknowledged.
 *
 * Start. A fresh module arms nothing for settle_ms (it may be restarting
 * into a cluster whose primaries are alive); records persisted earlier are
 * fed back with tether_reminders_load() before that.
 *
 * Messages (type TETHER_MSG_REMINDERS; Rec = {Key, Stamp, Writer, FireAt,
 * Flags, Payload}, ordered by (Stamp, Writer)):
 *   {rm_put, Op, [Rec]}        store (Op > 0: acknowledge with rm_ack)
 *   {rm_ack, Op}
 *   {rm_release, Shard, Op}    the sender stopped arming Shard (and sent
 *                              its records first): acknowledge with
 *                              rm_ack; a sender that does not replicate
 *                              Shard drops its records only then
 *   {rm_digest, [{Shard, Digest}]}
 *   {rm_sync, Shard, Back, [Rec]}  a shard's records (Back: send yours)
 *   {rm_offer, Shard, Op, [Fp]}  the fingerprints of what the sender
 *                              holds of Shard (Op 0: anti-entropy, send
 *                              what it lacks; else a forward: ack Op once
 *                              nothing is missing here)
 *   {rm_want, Shard, Op, [Fp]} the records asked for (sent as rm_put Op)
 *   {rm_get, Op, Key}          a read by a node that holds no copy
 *   {rm_got, Op, Found, FireAt, Payload}
 */
#ifndef TETHER_CORE_REMINDERS_H
#define TETHER_CORE_REMINDERS_H

#include <stddef.h>
#include <stdint.h>

#include "core/engine.h"
#include "core/ring.h"
#include "tether/error.h"

#define TETHER_REMINDER_KEY_MAX     4096  /* canonical bytes of a key */
#define TETHER_REMINDER_PAYLOAD_MAX 65536 /* bytes of a payload's ETF */
#define TETHER_REMINDER_REPLICAS    3
#define TETHER_REMINDER_HOLD_MS     (24u * 3600u * 1000u)
#define TETHER_REMINDER_TOMB_MS     (5u * 60u * 1000u)
#define TETHER_REMINDER_OP_MS       5000
#define TETHER_REMINDER_HANDOFF_MS  10000
#define TETHER_REMINDER_MISSED_MS   1000
#define TETHER_REMINDER_ROUND_MS    5000

/* Record flags (the wire's Flags). */
#define TETHER_REMINDER_SKIP   1u /* missed => skip (default: fire) */
#define TETHER_REMINDER_TOMB   2u /* cancelled or fired */
#define TETHER_REMINDER_FIRED  4u /* a tombstone left by a fire */
#define TETHER_REMINDER_FIRING 8u /* fire decided, delivery under way */

/* REMINDER_REPLY statuses (u.reminder_reply.status). */
#define TETHER_REMINDER_OK        0 /* a majority holds the write */
#define TETHER_REMINDER_TIMEOUT   1 /* no majority within op_timeout_ms */
#define TETHER_REMINDER_FOUND     2 /* a read: fire_at and payload */
#define TETHER_REMINDER_NOT_FOUND 3 /* a read: none (fired, cancelled) */

typedef struct tether_reminders tether_reminders_t;

typedef struct tether_reminders_config {
    tether_ring_module_t *ring; /* the cluster ring of the same engine */
    uint32_t replicas;          /* 0: TETHER_REMINDER_REPLICAS */
    uint64_t hold_ms;           /* 0: TETHER_REMINDER_HOLD_MS */
    uint64_t tomb_ms;           /* 0: TETHER_REMINDER_TOMB_MS */
    uint32_t op_timeout_ms;     /* 0: TETHER_REMINDER_OP_MS */
    uint32_t handoff_ms;        /* 0: TETHER_REMINDER_HANDOFF_MS */
    uint32_t missed_ms;         /* 0: TETHER_REMINDER_MISSED_MS */
    uint32_t round_ms;          /* anti-entropy; 0: TETHER_REMINDER_ROUND_MS */
    uint32_t settle_ms;         /* arm nothing before; 0: none */
} tether_reminders_config_t;

typedef struct tether_reminders_stats {
    uint64_t pending;          /* live records held here */
    uint64_t armed;            /* ... of them armed (we are primary) */
    uint64_t tombs;            /* tombstones held */
    uint64_t sets, cancels;    /* local writes */
    uint64_t fired;            /* REMINDER actions */
    uint64_t fired_unacked;    /* ... delivered after op_timeout_ms */
    uint64_t skipped;          /* missed with the skip policy */
    uint64_t missed_fired;     /* missed with the fire policy */
    uint64_t held;             /* fires held for want of a subscriber */
    uint64_t hold_dropped;     /* held past hold_ms and dropped */
    uint64_t handoffs_out;     /* shards released to a new primary */
    uint64_t handoffs_in;      /* shards armed after a release */
    uint64_t handoff_timeouts; /* ... after handoff_ms without one */
    uint64_t handoff_records;  /* records sent by handoffs */
    uint64_t forward_records;  /* records of shards no longer replicated
                                  here, forwarded to their primary */
    uint64_t syncs;            /* shards exchanged by anti-entropy */
    uint64_t sync_records;     /* records sent by anti-entropy */
    uint64_t timeouts;         /* writes answered with a timeout */
    uint64_t bad_msgs;         /* undecodable or out-of-bounds messages */
    uint64_t load_errors;      /* records refused by load() */
} tether_reminders_stats_t;

#define TETHER_REMINDERS_STATS_N 21

typedef struct tether_reminders_stat {
    const char *name;
    uint64_t value;
} tether_reminders_stat_t;

/*
 * Creates the reminders module of eng (which owns it from then on).
 * Returns 0, TETHER_EINVAL (no ring), TETHER_ENOMEM or TETHER_EEXIST.
 */
TETHER_MUST_CHECK int tether_reminders_new(const tether_reminders_config_t *cfg,
                                           tether_engine_t *eng,
                                           tether_reminders_t **out);

/*
 * Sets key's reminder (key: canonical ETF, 1..TETHER_REMINDER_KEY_MAX
 * bytes; payload: up to TETHER_REMINDER_PAYLOAD_MAX bytes; flags: 0 or
 * TETHER_REMINDER_SKIP). The outcome comes as a REMINDER_REPLY action
 * with `ref`. Returns 0, TETHER_EINVAL, TETHER_ETOOBIG (key or payload
 * too large), TETHER_ECLOSED (we left), TETHER_EAGAIN (the HLC's logical
 * counter is exhausted until the clock moves), TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether_reminders_set(tether_reminders_t *m,
                                           const uint8_t *key, size_t klen,
                                           int64_t fire_at,
                                           const uint8_t *payload, size_t plen,
                                           unsigned flags, uint64_t ref);
/* Cancels key's reminder (a tombstone), answered as set is. */
TETHER_MUST_CHECK int tether_reminders_cancel(tether_reminders_t *m,
                                              const uint8_t *key, size_t klen,
                                              uint64_t ref);
/*
 * Reads key's reminder. When this node holds a copy: 1 with *fire_at and
 * *payload and *plen (pointing into the module: valid until the next input)
 * for a live one, 0 for none. Otherwise the primary is asked and the
 * answer comes as a REMINDER_REPLY with `ref` (FOUND or NOT_FOUND):
 * returns 2. Errors: TETHER_EINVAL, TETHER_ENOMEM.
 */
int tether_reminders_get(tether_reminders_t *m, const uint8_t *key, size_t klen,
                         uint64_t ref, int64_t *fire_at,
                         const uint8_t **payload, size_t *plen);
/* Tells the module how many subscribers this node has: fires held for
 * want of one are delivered once it is above 0. */
void tether_reminders_subscribers(tether_reminders_t *m, size_t n);
/*
 * Feeds one persisted record (the bytes of a STORE action) back at
 * start, merged as a replica's put. Returns 0 or TETHER_EPROTO (counted).
 */
int tether_reminders_load(tether_reminders_t *m, const uint8_t *rec,
                          size_t len);

/* Calls fn for every record held (live ones and tombstones) with the
 * bytes a STORE action would carry: a shell compacting its log. */
void tether_reminders_each(tether_reminders_t *m,
                           void (*fn)(void *ctx, const uint8_t *rec,
                                      size_t len),
                           void *ctx);

/* Bytes of memory the module holds beyond keys and payloads (its
 * records, tables and heap), for the memory benchmark. */
size_t tether_reminders_overhead(const tether_reminders_t *m);

const tether_reminders_stats_t *
tether_reminders_stats(const tether_reminders_t *m);
void tether_reminders_stats_list(
    const tether_reminders_stats_t *st,
    tether_reminders_stat_t out[TETHER_REMINDERS_STATS_N]);

/* For the simulator's failure traces: what this node holds of key (its
 * shard's state, the record's flags, fire time and heap deadline) as one
 * line into out. Returns what snprintf returns. */
int tether__reminders_describe(tether_reminders_t *m, const uint8_t *key,
                               size_t klen, char *out, size_t cap);

#endif /* TETHER_CORE_REMINDERS_H */
