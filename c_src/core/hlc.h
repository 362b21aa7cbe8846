/*
 * core/hlc.h: hybrid logical clock (Kulkarni et al.), the timestamp that
 * registry conflicts and replicated maps order events by.
 *
 * A timestamp packs the physical part (milliseconds, 48 bits) above a
 * 16-bit logical counter into one uint64_t, so timestamps compare as plain
 * integers. The clock never reads time itself: callers pass the shell's
 * now_ms. Ties between equal timestamps are broken by the caller (node
 * name), never here.
 */
#ifndef TETHER_CORE_HLC_H
#define TETHER_CORE_HLC_H

#include <stdint.h>

#include "tether/error.h"

#define TETHER_HLC_LOGICAL_BITS 16
#define TETHER_HLC_LOGICAL_MAX  0xFFFFu
#define TETHER_HLC_WALL_MAX     ((UINT64_C(1) << 48) - 1)
/* A remote stamp further ahead of our physical clock than this is refused. */
#define TETHER_HLC_DEFAULT_MAX_DRIFT_MS 60000u

typedef struct tether_hlc {
    uint64_t last;         /* the last timestamp issued or merged */
    uint64_t max_drift_ms; /* refuse remote stamps this far in the future */
} tether_hlc_t;

/* Initializes a clock at zero with the given drift bound (0: default). */
void tether__hlc_init(tether_hlc_t *hlc, uint64_t max_drift_ms);

/* Packs and unpacks a timestamp. */
uint64_t tether__hlc_pack(uint64_t wall_ms, uint32_t logical);
uint64_t tether__hlc_wall(uint64_t ts);
uint32_t tether__hlc_logical(uint64_t ts);

/*
 * Issues a timestamp for a local event at physical time now_ms. The result
 * is strictly greater than every timestamp issued or merged before.
 * Returns 0 and writes *out, or TETHER_EINVAL if now_ms does not fit in 48
 * bits, or TETHER_ETOOBIG if the logical counter would overflow.
 */
TETHER_MUST_CHECK int tether__hlc_now(tether_hlc_t *hlc, uint64_t now_ms,
                                      uint64_t *out);

/*
 * Merges a timestamp received from another node and issues the receive
 * event's timestamp into *out (greater than both the remote stamp and
 * every local one). Returns 0, or TETHER_EINVAL if the
 * remote wall time runs more than max_drift_ms ahead of now_ms (the stamp
 * is then ignored and the clock unchanged), or TETHER_ETOOBIG on logical
 * overflow.
 */
TETHER_MUST_CHECK int tether__hlc_update(tether_hlc_t *hlc, uint64_t now_ms,
                                         uint64_t remote, uint64_t *out);

#endif /* TETHER_CORE_HLC_H */
