/*
 * fuzz_relay.c: libFuzzer target for relayed messages (core/relay.c)
 * behind the engine.
 *
 * Per input, two engines a@fuzz and b@fuzz (fixed seeds and cookie) join
 * over a perfect in-memory link. The input is records [len, len bytes]...,
 * each an ETF payload that b sends a as a relay message
 * (tether_engine_send, TETHER_MSG_RELAY), so a's envelope opens it and the
 * relay decodes it: {relay, Origin, Inc, Dest, Id, Hops, Payload, Sig}
 * with any fields, forged signatures, hop counts, names of nodes a cannot
 * reach. Between records a relays a message of its own to b, so genuine
 * traffic mixes with the forged. A forged record must never be delivered:
 * a MESSAGE action at a is allowed only from b's genuine relays, which
 * this target never makes, so any MESSAGE at a aborts. Then the link
 * drops and everything is freed (leaks show up under ASan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/relay.h"
#include "fuzz_common.h"

#define SEED_BASE 0x70
#define SEQ_MAX   64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int attach(void *ctx, int i, tether_engine_t *e)
{
    (void)ctx;
    (void)i;
    (void)e;
    return 0; /* every engine has its relay */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t own[] = {131, 100, 0, 3, 'o', 'w', 'n'};
    fz_pair_t p;
    size_t off = 0;
    int records = 0;

    if (fz_pair_new(&p, SEED_BASE, attach, NULL) != 0)
        abort();
    while (off < size && records < SEQ_MAX) {
        size_t len = data[off++];
        if (len > size - off)
            len = size - off;
        (void)tether_engine_send(p.e[1], FZ_NAMES[0], TETHER_MSG_RELAY,
                                 data + off, len, 0);
        (void)tether_relay_send(p.e[0], FZ_NAMES[1], own, sizeof own, 0);
        off += len;
        records++;
        fz_run(&p, FZ_TICK_MS);
        if (tether_engine_stats(p.e[0])->relay_delivered != 0)
            abort(); /* a forged relay was handed on */
    }
    fz_run(&p, FZ_AFTER_MS);
    fz_pair_cut(&p);
    fz_pair_free(&p);
    return 0;
}
