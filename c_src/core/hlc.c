/*
 * core/hlc.c: the hybrid logical clock. Pure arithmetic over the packed
 * 48/16-bit timestamp described in hlc.h.
 */
#include "core/hlc.h"

void tether__hlc_init(tether_hlc_t *hlc, uint64_t max_drift_ms)
{
    hlc->last = 0;
    hlc->max_drift_ms =
        max_drift_ms ? max_drift_ms : TETHER_HLC_DEFAULT_MAX_DRIFT_MS;
}

uint64_t tether__hlc_pack(uint64_t wall_ms, uint32_t logical)
{
    return (wall_ms << TETHER_HLC_LOGICAL_BITS) |
           (logical & TETHER_HLC_LOGICAL_MAX);
}

uint64_t tether__hlc_wall(uint64_t ts)
{
    return ts >> TETHER_HLC_LOGICAL_BITS;
}

uint32_t tether__hlc_logical(uint64_t ts)
{
    return (uint32_t)(ts & TETHER_HLC_LOGICAL_MAX);
}

/* Returns the successor of ts at the same wall time, or fails on overflow. */
static int bump(uint64_t ts, uint64_t *out)
{
    if (tether__hlc_logical(ts) == TETHER_HLC_LOGICAL_MAX)
        return TETHER_ETOOBIG;
    *out = ts + 1;
    return 0;
}

int tether__hlc_now(tether_hlc_t *hlc, uint64_t now_ms, uint64_t *out)
{
    uint64_t next;
    int rc;

    if (now_ms > TETHER_HLC_WALL_MAX)
        return TETHER_EINVAL;
    if (now_ms > tether__hlc_wall(hlc->last)) {
        next = tether__hlc_pack(now_ms, 0);
    } else {
        rc = bump(hlc->last, &next);
        if (rc < 0)
            return rc;
    }
    hlc->last = next;
    *out = next;
    return 0;
}

int tether__hlc_update(tether_hlc_t *hlc, uint64_t now_ms, uint64_t remote,
                       uint64_t *out)
{
    uint64_t top, next;
    int rc;

    if (now_ms > TETHER_HLC_WALL_MAX)
        return TETHER_EINVAL;
    if (tether__hlc_wall(remote) > now_ms + hlc->max_drift_ms)
        return TETHER_EINVAL;
    top = hlc->last > remote ? hlc->last : remote;
    if (now_ms > tether__hlc_wall(top)) {
        next = tether__hlc_pack(now_ms, 0);
    } else {
        rc = bump(top, &next);
        if (rc < 0)
            return rc;
    }
    hlc->last = next;
    *out = next;
    return 0;
}
