/*
 * libFuzzer target: the handshake machine in both roles fed arbitrary
 * bytes. The first byte picks the role, the v5 opener, a status decision
 * and the delivery chunk size; the rest is the peer's byte stream.
 * Invariants: consumed never exceeds what was offered, output stays
 * within its buffer, and a finished machine consumes nothing more.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dist/flags.h"
#include "dist/handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tether_hs_status_t decide(void *ctx, const char *peer, uint64_t flags,
                                 uint32_t creation)
{
    (void)peer;
    (void)flags;
    (void)creation;
    return (tether_hs_status_t)(*(const uint8_t *)ctx % 5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tether_hs_t hs;
    uint8_t ctl, pick;
    size_t off = 0, have = 0, step;

    if (size < 1)
        return 0;
    ctl = data[0];
    data++;
    size--;
    if (tether__hs_init(
            &hs, (ctl & 1) ? TETHER_HS_INITIATOR : TETHER_HS_ACCEPTOR,
            "fuzz@host", "cookie", TETHER_DIST_FLAGS_ADVERTISED, 7, 0xdeadbeef))
        __builtin_trap();
    if ((ctl & 1) && (ctl & 2))
        (void)tether__hs_set_v5_opener(&hs);
    pick = (uint8_t)(ctl >> 2);
    if (!(ctl & 1) && (ctl & 2))
        tether__hs_set_status_fn(&hs, decide, &pick);
    step = (size_t)(ctl >> 5) * 7 + 1;
    while (have < size) {
        size_t used = 0, out_len;
        int rc;
        have = have + step < size ? have + step : size;
        rc = tether__hs_input(&hs, data + off, have - off, &used);
        if (used > have - off)
            __builtin_trap();
        off += used;
        tether__hs_output(&hs, &out_len);
        if (out_len > TETHER_HS_OUT_MAX)
            __builtin_trap();
        tether__hs_consume_output(&hs, out_len / 2 + 1);
        if (rc || tether__hs_done(&hs)) {
            if (tether__hs_input(&hs, data + off, size - off, &used) != rc ||
                used != 0)
                __builtin_trap();
            break;
        }
    }
    (void)tether__hs_peer_name(&hs);
    (void)tether__hs_reason(&hs);
    tether__hs_fini(&hs);
    return 0;
}
