/*
 * core/partition.h: injected network partitions (a test and chaos tool)
 * and the per-peer defer queues that hold messages across them.
 *
 * A partition separates two groups of node names, in one of two modes:
 *   drop   messages between the groups vanish (counted);
 *   defer  they wait in a bounded FIFO per peer and go out, in order, on
 *          heal; overflow is counted, never silent.
 * Entries are identified by a 64-bit ref chosen by the injecting node and
 * gossiped to every member, so each engine enforces every partition on its
 * own sends and receives. The table merges by ref: `healed` wins over
 * `active`, so stale gossip never re-opens a healed partition. Healed
 * entries are kept as tombstones (the oldest is evicted when the table is
 * full).
 *
 * Wire form (inside a PARTITIONS engine message), sorted by ref:
 *   [{Ref, drop | defer, active | healed, [NodeA...], [NodeB...]}, ...]
 */
#ifndef TETHER_CORE_PARTITION_H
#define TETHER_CORE_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "core/keys.h"
#include "tether/error.h"

#define TETHER_PARTITIONS_MAX      64  /* entries, tombstones included */
#define TETHER_PARTITION_GROUP_MAX 256 /* names per group */

enum tether_partition_mode {
    TETHER_PARTITION_NONE = 0,
    TETHER_PARTITION_DEFER = 1,
    TETHER_PARTITION_DROP = 2,
};

typedef struct tether_partition {
    uint64_t ref;
    int mode;       /* TETHER_PARTITION_DROP or _DEFER */
    int healed;     /* 1 once healed (a tombstone) */
    uint64_t order; /* insertion order, for evicting the oldest tombstone */
    char **a, **b;  /* the two groups: heap strings, owned */
    size_t na, nb;
} tether_partition_t;

typedef struct tether_partition_table {
    tether_partition_t v[TETHER_PARTITIONS_MAX]; /* sorted by ref */
    size_t n;
    size_t active; /* entries not healed */
    uint64_t next_order;
} tether_partition_table_t;

/* Sets up an empty table. */
void tether__partition_table_init(tether_partition_table_t *t);

/* Frees every entry. NULL is a no-op. */
void tether__partition_table_fini(tether_partition_table_t *t);

/*
 * Adds (or merges) a partition. Names are copied. A group may not be empty
 * and a name may not be in both groups. Returns 1 if the table changed, 0
 * if the same ref was known (a healed tombstone stays healed),
 * TETHER_EINVAL, TETHER_ETOOBIG (group too big, or the table is full of
 * active entries) or TETHER_ENOMEM.
 */
TETHER_MUST_CHECK int tether__partition_add(tether_partition_table_t *t,
                                            uint64_t ref, int mode, int healed,
                                            const char *const *a, size_t na,
                                            const char *const *b, size_t nb);

/* Marks ref healed. Returns 1 if it changed, 0 if already healed,
 * TETHER_ENOTFOUND. */
TETHER_MUST_CHECK int tether__partition_heal(tether_partition_table_t *t,
                                             uint64_t ref);

/* Heals every entry; returns how many changed. */
size_t tether__partition_heal_all(tether_partition_table_t *t);

/* Finds an entry by ref, or NULL. */
const tether_partition_t *
tether__partition_find(const tether_partition_table_t *t, uint64_t ref);

/*
 * The mode separating nodes x and y (either direction): DROP if any active
 * drop partition separates them, else DEFER if an active defer one does,
 * else NONE.
 */
int tether__partition_between(const tether_partition_table_t *t, const char *x,
                              const char *y);

/* A digest of every (ref, healed) pair. */
uint64_t tether__partition_digest(const tether_partition_table_t *t);

/* Encodes the table (wire form above). Returns 0 or TETHER_ENOMEM. */
TETHER_MUST_CHECK int
tether__partition_encode(const tether_partition_table_t *t, ei_x_buff *x);

/*
 * Decodes a wire list at *index (buffer validated) and merges each entry.
 * *changed and *behind as for tether__membership_decode_merge(). Returns 0,
 * TETHER_EPROTO or an add error.
 */
TETHER_MUST_CHECK int
tether__partition_decode_merge(tether_partition_table_t *t, const char *buf,
                               int *index, int *changed, int *behind);

/*
 * A bounded FIFO of engine messages held for one peer (defer mode). Each
 * item is a message type byte and its payload (copied). The queue is
 * bounded in items and in payload bytes: pushing an item that would pass
 * either bound refuses it and counts it in `overflow`.
 */
typedef struct tether_defer_item {
    uint8_t type;
    uint8_t *data;
    size_t len;
} tether_defer_item_t;

typedef struct tether_defer_queue {
    tether_defer_item_t *v; /* ring buffer, heap, owned */
    size_t cap, head, n;
    size_t max;        /* bound on n */
    size_t bytes;      /* payload bytes held */
    size_t max_bytes;  /* bound on bytes */
    uint64_t overflow; /* items refused because the queue was full */
    uint64_t pushed;   /* items accepted */
} tether_defer_queue_t;

/* Sets up an empty queue holding at most max items (0 counts as 1) and
 * max_bytes payload bytes (0: no byte bound). */
void tether__defer_init(tether_defer_queue_t *q, size_t max,
                        size_t max_bytes);

/* Frees the queue and its items. NULL is a no-op. */
void tether__defer_fini(tether_defer_queue_t *q);

/* Appends a copy of (type, data, len). Returns 0, TETHER_ETOOBIG (full;
 * counted in overflow) or TETHER_ENOMEM. */
TETHER_MUST_CHECK int tether__defer_push(tether_defer_queue_t *q, uint8_t type,
                                         const uint8_t *data, size_t len);

/* Takes the oldest item into *out (the caller frees out->data). Returns 1
 * if an item was taken, 0 if the queue is empty. */
int tether__defer_pop(tether_defer_queue_t *q, tether_defer_item_t *out);

/* Discards every item; returns how many were dropped. */
size_t tether__defer_clear(tether_defer_queue_t *q);

#endif /* TETHER_CORE_PARTITION_H */
